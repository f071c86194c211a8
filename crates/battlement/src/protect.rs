//! The load-protection parts of a [`Policy`](crate::Policy): a bulkhead,
//! an adaptive concurrency limit and a breaker per key, from
//! `battlement-limit`. Each is chosen by type, so a policy without one
//! costs nothing for it.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use battlement_core::{AsComponent, Component, InvalidConfig};
use battlement_limit::{
    AdaptiveLimit, AdaptiveLimitBuilder, AdaptiveLimitLayer, Bulkhead, BulkheadBuilder,
    BulkheadLayer, KeyedBreaker, KeyedBreakerBuilder, KeyedBreakerLayer,
};
use tower_layer::Identity;

use crate::policy::BuildContext;

/// A configuration step over one part's own builder.
type Step<B> = Box<dyn FnOnce(B) -> B + Send>;

/// The three load-protection slots of a policy, each [`Identity`] when
/// absent: the bulkhead (between the total deadline and the retries, so
/// the deadline caps a wait for a slot), the adaptive limit (between the
/// retries and the breaker, so it measures attempts and the breaker never
/// counts its refusals) and the breaker per key (in the breaker's place).
#[derive(Debug, Clone, Default)]
pub struct Protect<Bh = Identity, Lm = Identity, Kb = Identity> {
    pub(crate) bulkhead: Bh,
    pub(crate) limit: Lm,
    pub(crate) keyed: Kb,
}

/// Each part's state kept for the rest of the process (see
/// [`Leak`](battlement_core::Leak)); implemented when every part is one
/// that can be leaked.
impl<Bh, Lm, Kb> battlement_core::Leak for Protect<Bh, Lm, Kb>
where
    Bh: battlement_core::Leak,
    Lm: battlement_core::Leak,
    Kb: battlement_core::Leak,
{
    fn leak(self) -> Self {
        Protect {
            bulkhead: self.bulkhead.leak(),
            limit: self.limit.leak(),
            keyed: self.keyed.leak(),
        }
    }
}

/// A bulkhead to build: the steps over its [`BulkheadBuilder`].
pub struct BulkheadSpec(pub(crate) Step<BulkheadBuilder>);

/// An adaptive limit to build: the steps over its [`AdaptiveLimitBuilder`].
pub struct LimitSpec(pub(crate) Step<AdaptiveLimitBuilder>);

/// A breaker per key to build: the key function and the steps over its
/// [`KeyedBreakerBuilder`].
pub struct KeyedSpec<K, Fk> {
    pub(crate) key: Fk,
    pub(crate) configure: Step<KeyedBreakerBuilder<K>>,
    pub(crate) _key: PhantomData<fn() -> K>,
}

macro_rules! opaque_debug {
    ($($ty:ident $(<$($p:ident),*>)?),*) => {$(
        impl $(<$($p),*>)? fmt::Debug for $ty $(<$($p),*>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty)).finish_non_exhaustive()
            }
        }
    )*};
}
opaque_debug!(BulkheadSpec, LimitSpec, KeyedSpec<K, Fk>);

/// What a slot builds: its layer, and the component to register.
pub(crate) type SlotBuilt<L> = (L, Option<Arc<dyn Component>>);

/// One load-protection slot of a [`PolicyBuilder`](crate::PolicyBuilder):
/// [`Identity`] (none) or a spec.
pub trait ProtectSlot<C>: sealed::Sealed {
    /// The layer it becomes.
    type Layer: Clone;
    /// Builds the layer.
    #[doc(hidden)]
    fn build(self, cx: &BuildContext<'_, C>) -> Result<SlotBuilt<Self::Layer>, InvalidConfig>;
}

impl<C> ProtectSlot<C> for Identity {
    type Layer = Identity;

    fn build(self, _: &BuildContext<'_, C>) -> Result<SlotBuilt<Identity>, InvalidConfig> {
        Ok((Identity::new(), None))
    }
}

impl<C> ProtectSlot<C> for BulkheadSpec {
    type Layer = BulkheadLayer;

    fn build(self, cx: &BuildContext<'_, C>) -> Result<SlotBuilt<BulkheadLayer>, InvalidConfig> {
        let bulkhead: Bulkhead = (self.0)(Bulkhead::builder(cx.part("bulkhead"))).build()?;
        let component = bulkhead.as_component();
        Ok((bulkhead.layer(), Some(component)))
    }
}

impl<C: Clone> ProtectSlot<C> for LimitSpec {
    type Layer = AdaptiveLimitLayer<C>;

    fn build(
        self,
        cx: &BuildContext<'_, C>,
    ) -> Result<SlotBuilt<AdaptiveLimitLayer<C>>, InvalidConfig> {
        let limit: AdaptiveLimit = (self.0)(AdaptiveLimit::builder(cx.part("limit"))).build()?;
        let component = limit.as_component();
        Ok((
            limit.layer().with_classifier(cx.classifier().clone()),
            Some(component),
        ))
    }
}

impl<C, K, Fk> ProtectSlot<C> for KeyedSpec<K, Fk>
where
    C: Clone,
    Fk: Clone,
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    type Layer = KeyedBreakerLayer<K, Fk, C>;

    fn build(
        self,
        cx: &BuildContext<'_, C>,
    ) -> Result<SlotBuilt<KeyedBreakerLayer<K, Fk, C>>, InvalidConfig> {
        let events = cx.events().clone();
        let builder = KeyedBreaker::<K>::builder(cx.part("breaker"))
            .breaker(move |b| crate::policy::default_breaker(b).events(events.clone()));
        let keyed = (self.configure)(builder).build()?;
        let component = keyed.as_component();
        Ok((
            keyed
                .layer(self.key)
                .with_classifier(cx.classifier().clone()),
            Some(component),
        ))
    }
}

/// The three slots of a [`PolicyBuilder`](crate::PolicyBuilder), built
/// together.
pub trait ProtectPart<C>: sealed::Sealed {
    /// The layers they become.
    type Layers: Clone;
    /// Builds the layers, and the components to register.
    #[doc(hidden)]
    fn build(
        self,
        cx: &BuildContext<'_, C>,
    ) -> Result<(Self::Layers, Vec<Arc<dyn Component>>), InvalidConfig>;
}

impl<C, Bh, Lm, Kb> ProtectPart<C> for Protect<Bh, Lm, Kb>
where
    Bh: ProtectSlot<C>,
    Lm: ProtectSlot<C>,
    Kb: ProtectSlot<C>,
{
    type Layers = Protect<Bh::Layer, Lm::Layer, Kb::Layer>;

    fn build(
        self,
        cx: &BuildContext<'_, C>,
    ) -> Result<(Self::Layers, Vec<Arc<dyn Component>>), InvalidConfig> {
        let (bulkhead, b) = self.bulkhead.build(cx)?;
        let (limit, l) = self.limit.build(cx)?;
        let (keyed, k) = self.keyed.build(cx)?;
        let components = [b, l, k].into_iter().flatten().collect();
        Ok((
            Protect {
                bulkhead,
                limit,
                keyed,
            },
            components,
        ))
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for tower_layer::Identity {}
    impl Sealed for super::BulkheadSpec {}
    impl Sealed for super::LimitSpec {}
    impl<K, F> Sealed for super::KeyedSpec<K, F> {}
    impl<Bh, Lm, Kb> Sealed for super::Protect<Bh, Lm, Kb> {}
}
