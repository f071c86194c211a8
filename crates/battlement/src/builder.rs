//! [`ServiceBuilderExt`]: one method per layer on `tower::ServiceBuilder`.

use std::time::Duration;

use tower::ServiceBuilder;
use tower_layer::Stack;

/// Adds battlement's layers to a [`ServiceBuilder`] by name, as
/// tower-http's extension trait does for its own. Sealed: implemented for
/// `ServiceBuilder` only. Each method adds one layer, outermost first in
/// the order they are called, so writing the canonical order out by hand
/// reads as it runs:
///
/// ```
/// use std::time::Duration;
/// use battlement::prelude::*;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let registry = Registry::new();
/// let breaker = Breaker::builder("users-db").consecutive_failures(5).build()?;
/// let mut svc = ServiceBuilder::new()
///     .instrument(&registry, "users")?
///     .deadline(Duration::from_secs(2))
///     .retries(RetryPolicy::builder().max_attempts(3).build()?)
///     .breaker(&breaker)
///     .attempt_timeout(Duration::from_millis(500))
///     .service_fn(|id: u32| async move { Ok::<_, BoxError>(id * 2) });
/// assert_eq!(svc.ready().await?.call(21).await?, 42);
/// # Ok(())
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    /// Adds a whole [`Policy`](crate::Policy): the canonical stack.
    #[cfg(feature = "policy")]
    fn policy<C, P, G, F, I, Lp>(
        self,
        policy: &crate::Policy<C, P, G, F, I, Lp>,
    ) -> ServiceBuilder<Stack<crate::Policy<C, P, G, F, I, Lp>, L>>
    where
        C: Clone + 'static,
        P: 'static,
        G: Clone,
        F: Clone,
        I: Clone,
        Lp: Clone;

    /// Adds `breaker` (judging with [`ErrorClassifier`](battlement_core::ErrorClassifier);
    /// use [`BreakerLayer::with_classifier`](battlement_breaker::BreakerLayer::with_classifier)
    /// through `.layer(..)` for another).
    #[cfg(feature = "breaker")]
    fn breaker(
        self,
        breaker: &battlement_breaker::Breaker,
    ) -> ServiceBuilder<Stack<battlement_breaker::BreakerLayer, L>>;

    /// Adds retries under `policy`. (Not `retry`: `ServiceBuilder` has an
    /// inherent `retry` for tower's own retry layer when tower's `retry`
    /// feature is on, and an inherent method always wins.)
    #[cfg(feature = "retry")]
    fn retries<C: 'static, P: 'static>(
        self,
        policy: battlement_retry::RetryPolicy<C, P>,
    ) -> ServiceBuilder<Stack<battlement_retry::RetryLayer<C, P>, L>>;

    /// Gives each request a total budget of `total` (more than zero).
    ///
    /// # Panics
    ///
    /// If `total` is zero, as [`DeadlineLayer::new`](battlement_deadline::DeadlineLayer::new).
    #[cfg(feature = "deadline")]
    fn deadline(
        self,
        total: Duration,
    ) -> ServiceBuilder<Stack<battlement_deadline::DeadlineLayer, L>>;

    /// Bounds each attempt by `min(per_attempt, time left)`.
    ///
    /// # Panics
    ///
    /// If `per_attempt` is zero, as
    /// [`AttemptTimeoutLayer::new`](battlement_deadline::AttemptTimeoutLayer::new).
    #[cfg(feature = "deadline")]
    fn attempt_timeout(
        self,
        per_attempt: Duration,
    ) -> ServiceBuilder<Stack<battlement_deadline::AttemptTimeoutLayer, L>>;

    /// Adds a built fallback.
    #[cfg(feature = "fallback")]
    fn fallback<Req: 'static, Res: 'static, K: 'static, C: 'static>(
        self,
        fallback: battlement_fallback::FallbackLayer<Req, Res, K, C>,
    ) -> ServiceBuilder<Stack<battlement_fallback::FallbackLayer<Req, Res, K, C>, L>>;

    /// Sheds through `gate`, reading priorities from the request's
    /// extensions (use [`GateLayer`](battlement_gate::GateLayer) through
    /// `.layer(..)` for another extractor).
    #[cfg(feature = "gate")]
    fn gate(
        self,
        gate: &battlement_gate::Gate,
    ) -> ServiceBuilder<Stack<battlement_gate::GateLayer, L>>;

    /// Counts the calls in `registry` as `name`.
    ///
    /// # Errors
    ///
    /// When `name` is taken in `registry`.
    #[cfg(feature = "registry")]
    fn instrument(
        self,
        registry: &battlement_registry::Registry,
        name: &str,
    ) -> Result<
        ServiceBuilder<Stack<battlement_registry::InstrumentLayer, L>>,
        battlement_registry::DuplicateName,
    >;

    /// Adds a hedge.
    #[cfg(feature = "fanout")]
    fn hedge(
        self,
        hedge: battlement_fanout::HedgeLayer,
    ) -> ServiceBuilder<Stack<battlement_fanout::HedgeLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "policy")]
    fn policy<C, P, G, F, I, Lp>(
        self,
        policy: &crate::Policy<C, P, G, F, I, Lp>,
    ) -> ServiceBuilder<Stack<crate::Policy<C, P, G, F, I, Lp>, L>>
    where
        C: Clone + 'static,
        P: 'static,
        G: Clone,
        F: Clone,
        I: Clone,
        Lp: Clone,
    {
        self.layer(policy.clone())
    }

    #[cfg(feature = "breaker")]
    fn breaker(
        self,
        breaker: &battlement_breaker::Breaker,
    ) -> ServiceBuilder<Stack<battlement_breaker::BreakerLayer, L>> {
        self.layer(breaker.layer())
    }

    #[cfg(feature = "retry")]
    fn retries<C: 'static, P: 'static>(
        self,
        policy: battlement_retry::RetryPolicy<C, P>,
    ) -> ServiceBuilder<Stack<battlement_retry::RetryLayer<C, P>, L>> {
        self.layer(battlement_retry::RetryLayer::new(policy))
    }

    #[cfg(feature = "deadline")]
    #[track_caller]
    fn deadline(
        self,
        total: Duration,
    ) -> ServiceBuilder<Stack<battlement_deadline::DeadlineLayer, L>> {
        self.layer(battlement_deadline::DeadlineLayer::new(total))
    }

    #[cfg(feature = "deadline")]
    #[track_caller]
    fn attempt_timeout(
        self,
        per_attempt: Duration,
    ) -> ServiceBuilder<Stack<battlement_deadline::AttemptTimeoutLayer, L>> {
        self.layer(battlement_deadline::AttemptTimeoutLayer::new(per_attempt))
    }

    #[cfg(feature = "fallback")]
    fn fallback<Req: 'static, Res: 'static, K: 'static, C: 'static>(
        self,
        fallback: battlement_fallback::FallbackLayer<Req, Res, K, C>,
    ) -> ServiceBuilder<Stack<battlement_fallback::FallbackLayer<Req, Res, K, C>, L>> {
        self.layer(fallback)
    }

    #[cfg(feature = "gate")]
    fn gate(
        self,
        gate: &battlement_gate::Gate,
    ) -> ServiceBuilder<Stack<battlement_gate::GateLayer, L>> {
        self.layer(gate.layer())
    }

    #[cfg(feature = "registry")]
    fn instrument(
        self,
        registry: &battlement_registry::Registry,
        name: &str,
    ) -> Result<
        ServiceBuilder<Stack<battlement_registry::InstrumentLayer, L>>,
        battlement_registry::DuplicateName,
    > {
        Ok(self.layer(registry.layer(name)?))
    }

    #[cfg(feature = "fanout")]
    fn hedge(
        self,
        hedge: battlement_fanout::HedgeLayer,
    ) -> ServiceBuilder<Stack<battlement_fanout::HedgeLayer, L>> {
        self.layer(hedge)
    }
}

mod sealed {
    pub trait Sealed<L> {}
    impl<L> Sealed<L> for tower::ServiceBuilder<L> {}
}
