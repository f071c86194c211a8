//! [`Policy`], the canonical stack as one layer, and its builder
//! [`PolicyBuilder`].

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use battlement_breaker::{Breaker, BreakerBuilder, BreakerLayer, BreakerService, WindowConfig};
use battlement_core::{
    AsComponent, BoxError, Classify, Component, ErrorClassifier, EventSink, InvalidConfig, Leak,
    Name, Outcome, Shed,
};
use battlement_deadline::{
    AttemptTimeout, AttemptTimeoutLayer, Carry, DeadlineLayer, DeadlineService,
};
use battlement_fallback::{FallbackBuilder, FallbackLayer};
use battlement_gate::{FromExtensions, Gate, GateBuilder, GateLayer};
use battlement_limit::{
    AdaptiveLimit, AdaptiveLimitBuilder, AdaptiveLimitLayer, Bulkhead, BulkheadBuilder,
    BulkheadLayer, KeyedBreaker, KeyedBreakerBuilder, KeyedBreakerLayer,
};
use battlement_registry::{InstrumentLayer, Registry};
use battlement_retry::{
    Always, Backoff, Never, RandomSource, Retry, RetryBudget, RetryBudgetBuilder, RetryLayer,
    RetryPolicy, RetryPolicyBuilder,
};
use tower_layer::{Identity, Layer};

use crate::error::{Check, Conflict, PolicyError};
use crate::protect::{BulkheadSpec, KeyedSpec, LimitSpec, Protect, ProtectPart};
use crate::toggle::Toggle;

/// A configuration step over one part's own builder.
type Step<B> = Box<dyn FnOnce(B) -> B + Send>;

/// The canonical stack of resilience layers as one [`Layer`], built by
/// [`Policy::builder`], [`Policy::http`] or [`Policy::grpc`].
///
/// Outermost first: instrument → fallback → gate → deadline (total) →
/// retry → breaker → attempt timeout → your service. See the [crate
/// docs](crate#the-canonical-stack) for why the order is so.
///
/// A `Policy` is cheap to clone, and every service it wraps shares its
/// components: one breaker, one budget, one gate, one set of counters per
/// policy, however many routes or clients it is applied to.
pub struct Policy<
    C = ErrorClassifier,
    P = Always,
    G = Identity,
    F = Identity,
    I = Identity,
    L = Protect,
> where
    C: 'static,
    P: 'static,
{
    name: Name,
    instrument: I,
    protect: L,
    fallback: F,
    gate: G,
    deadline: Option<DeadlineLayer>,
    retry: Option<RetryLayer<C, P>>,
    breaker: Option<BreakerLayer<C>>,
    attempt: Option<AttemptTimeoutLayer>,
    budget: Option<RetryBudget>,
    gate_handle: Option<Gate>,
}

impl Policy {
    /// A policy named `name` for any request type, judging results with
    /// [`ErrorClassifier`] (every `Ok` a success, errors by their
    /// `source()` chain). Defaults as in the [crate
    /// docs](crate#defaults).
    pub fn builder(name: impl Into<String>) -> PolicyBuilder {
        PolicyBuilder::new(name.into(), ErrorClassifier::new(), Always::default())
    }
}

impl<C: 'static, P: 'static, G, F, I, L> Policy<C, P, G, F, I, L> {
    /// The policy's name: the prefix of its components' names.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The breaker, when the policy has one.
    pub fn breaker(&self) -> Option<&Breaker> {
        self.breaker.as_ref().map(BreakerLayer::breaker)
    }

    /// The retry budget, when the policy has one.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// The gate, when the policy has one.
    pub fn gate(&self) -> Option<&Gate> {
        self.gate_handle.as_ref()
    }

    /// The retry policy, when retries are on.
    pub fn retry(&self) -> Option<&RetryPolicy<C, P>> {
        self.retry.as_ref().map(RetryLayer::policy)
    }

    /// The total budget each request gets, when the deadline is on.
    pub fn total(&self) -> Option<Duration> {
        self.deadline.as_ref().map(DeadlineLayer::total)
    }

    /// Whether the deadline is written into a request that carries none
    /// ([`PolicyBuilder::carry_deadline`]).
    pub fn carry_deadline(&self) -> Carry {
        self.deadline
            .as_ref()
            .map(DeadlineLayer::carries)
            .or_else(|| self.attempt.as_ref().map(AttemptTimeoutLayer::carries))
            .unwrap_or_default()
    }
}

impl<C: Clone + 'static, P: 'static, G: Clone, F: Clone, I: Clone, L: Clone> Clone
    for Policy<C, P, G, F, I, L>
{
    fn clone(&self) -> Self {
        Policy {
            name: self.name.clone(),
            instrument: self.instrument.clone(),
            protect: self.protect.clone(),
            fallback: self.fallback.clone(),
            gate: self.gate.clone(),
            deadline: self.deadline.clone(),
            retry: self.retry.clone(),
            breaker: self.breaker.clone(),
            attempt: self.attempt.clone(),
            budget: self.budget.clone(),
            gate_handle: self.gate_handle.clone(),
        }
    }
}

/// Every part's shared state kept for the rest of the process: copies of
/// the policy's services and of their response futures count no
/// reference (see [`Leak`]).
///
/// For a server's policy, made once at start-up: axum's `Router` calls a
/// clone of a route's service for every request, and without `leak` that
/// clone counts a reference per part (instrument, fallback, gate,
/// deadline, breaker, attempt timeout), dropped once the call is made:
/// two atomic read-modify-writes per part and request, on cache lines
/// every core serving the route writes. The state is never freed, so do
/// not leak a policy made per connection or per test. The retry part
/// keeps the spare copy of the inner service its retries are sent through
/// for the process as well, for the first 64 services the policy makes
/// (past those, each counts one reference to its spare, so a leaked
/// policy applied per connection keeps bounded memory). A policy with a
/// bulkhead, an adaptive limit or a breaker per key has no `leak` yet.
///
/// ```
/// use battlement::prelude::*;
/// use tower::Layer;
///
/// let registry = Registry::new();
/// let policy = Policy::builder("checkout")
///     .registry(&registry)
///     .build()
///     .unwrap()
///     .leak();
/// let svc = policy.layer(tower::service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
/// # let _ = svc;
/// assert!(registry.get("checkout/breaker").is_some());
/// ```
impl<C, P, G, F, I, L> Leak for Policy<C, P, G, F, I, L>
where
    C: 'static,
    P: 'static,
    G: Leak,
    F: Leak,
    I: Leak,
    L: Leak,
{
    fn leak(self) -> Self {
        Policy {
            name: self.name,
            instrument: self.instrument.leak(),
            protect: self.protect.leak(),
            fallback: self.fallback.leak(),
            gate: self.gate.leak(),
            deadline: self.deadline.map(Leak::leak),
            retry: self.retry.map(Leak::leak),
            breaker: self.breaker.map(Leak::leak),
            attempt: self.attempt.map(Leak::leak),
            budget: self.budget,
            gate_handle: self.gate_handle,
        }
    }
}

impl<C: 'static, P: 'static, G, F, I, L> fmt::Debug for Policy<C, P, G, F, I, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("instrument", &std::any::type_name::<I>())
            .field("gate", &self.gate_handle.as_ref().map(Gate::name))
            .field("total", &self.total())
            .field(
                "retry",
                &self.retry.as_ref().map(|r| r.policy().max_attempts()),
            )
            .field("breaker", &self.breaker().map(Breaker::name))
            .field("attempt", &self.attempt.is_some())
            .finish_non_exhaustive()
    }
}

/// The attempt-timeout part over `S`.
pub type AttemptPart<S> = Toggle<AttemptTimeout<S>, S>;
/// What the breaker part wraps: the attempt part, under the keyed
/// breaker slot `Kb` ([`Identity`] when there is none).
pub type KeyedPart<S, Kb = Identity> = <Kb as Layer<AttemptPart<S>>>::Service;
/// The breaker part over `S`.
pub type BreakerPart<S, C, Kb = Identity> =
    Toggle<BreakerService<KeyedPart<S, Kb>, C>, KeyedPart<S, Kb>>;
/// What the retry part wraps: the breaker part under the adaptive limit
/// slot `Lm`.
pub type LimitedPart<S, C, Kb = Identity, Lm = Identity> =
    <Lm as Layer<BreakerPart<S, C, Kb>>>::Service;
/// The retry part over `S`.
pub type RetryPart<S, C, P, Kb = Identity, Lm = Identity> =
    Toggle<Retry<LimitedPart<S, C, Kb, Lm>, C, P>, LimitedPart<S, C, Kb, Lm>>;
/// What the deadline part wraps: the retry part under the bulkhead slot
/// `Bh`.
pub type BulkheadPart<S, C, P, Kb = Identity, Lm = Identity, Bh = Identity> =
    <Bh as Layer<RetryPart<S, C, P, Kb, Lm>>>::Service;
/// The deadline (total) part over `S`.
pub type DeadlinePart<S, C, P, Kb = Identity, Lm = Identity, Bh = Identity> =
    Toggle<DeadlineService<BulkheadPart<S, C, P, Kb, Lm, Bh>>, BulkheadPart<S, C, P, Kb, Lm, Bh>>;

type Gated<S, C, P, G, Kb, Lm, Bh> = <G as Layer<DeadlinePart<S, C, P, Kb, Lm, Bh>>>::Service;
type Fallen<S, C, P, G, F, Kb, Lm, Bh> = <F as Layer<Gated<S, C, P, G, Kb, Lm, Bh>>>::Service;

impl<S, C, P, G, F, I, Bh, Lm, Kb> Layer<S> for Policy<C, P, G, F, I, Protect<Bh, Lm, Kb>>
where
    C: Clone + 'static,
    P: 'static,
    Kb: Layer<AttemptPart<S>>,
    Lm: Layer<BreakerPart<S, C, Kb>>,
    // The retry keeps a spare clone of what it wraps to send retries (for
    // the process, once leaked: hence `'static`).
    LimitedPart<S, C, Kb, Lm>: Clone + 'static,
    Bh: Layer<RetryPart<S, C, P, Kb, Lm>>,
    G: Layer<DeadlinePart<S, C, P, Kb, Lm, Bh>>,
    F: Layer<Gated<S, C, P, G, Kb, Lm, Bh>>,
    I: Layer<Fallen<S, C, P, G, F, Kb, Lm, Bh>>,
{
    type Service = I::Service;

    fn layer(&self, inner: S) -> Self::Service {
        let svc = Toggle::wrap(self.attempt.as_ref(), inner);
        let svc = self.protect.keyed.layer(svc);
        let svc = Toggle::wrap(self.breaker.as_ref(), svc);
        let svc = self.protect.limit.layer(svc);
        let svc = Toggle::wrap(self.retry.as_ref(), svc);
        let svc = self.protect.bulkhead.layer(svc);
        let svc = Toggle::wrap(self.deadline.as_ref(), svc);
        let svc = self.gate.layer(svc);
        let svc = self.fallback.layer(svc);
        self.instrument.layer(svc)
    }
}

impl<C: 'static, P: 'static, G, F, I, Lm, Kb>
    Policy<C, P, G, F, I, Protect<BulkheadLayer, Lm, Kb>>
{
    /// The bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead {
        self.protect.bulkhead.bulkhead()
    }
}

impl<C: 'static, P: 'static, G, F, I, Bh, Kb, Cl>
    Policy<C, P, G, F, I, Protect<Bh, AdaptiveLimitLayer<Cl>, Kb>>
{
    /// The adaptive concurrency limit.
    pub fn adaptive_limit(&self) -> &AdaptiveLimit {
        self.protect.limit.limiter()
    }
}

impl<C: 'static, P: 'static, G, F, I, Bh, Lm, K, Fk, Ck>
    Policy<C, P, G, F, I, Protect<Bh, Lm, KeyedBreakerLayer<K, Fk, Ck>>>
{
    /// The breaker per key.
    pub fn keyed_breaker(&self) -> &KeyedBreaker<K> {
        self.protect.keyed.keyed()
    }
}

/// The classifier a policy's fallback judges with: the policy's own, but
/// a request the gate shed passes through unless
/// [`fallback_on_shed`](PolicyBuilder::fallback_on_shed) says otherwise
/// (answering shed work from the fallback would undo the shedding).
#[derive(Debug, Clone, Copy)]
pub struct FallbackClassifier<C> {
    inner: C,
    on_shed: bool,
}

impl<C, Res> Classify<Res, BoxError> for FallbackClassifier<C>
where
    C: Classify<Res, BoxError>,
{
    fn classify(&self, result: &Result<Res, BoxError>) -> Outcome {
        match result {
            Err(e) if !self.on_shed && e.is::<Shed>() => Outcome::Ignored,
            _ => self.inner.classify(result),
        }
    }
}

/// How a part of the builder is set.
enum Part<B, H> {
    /// Off.
    Off,
    /// Made by the policy, through these steps over its builder.
    Build(Vec<Step<B>>),
    /// A handle passed in, shared with whoever else holds it.
    Shared(H),
}

impl<B, H> Part<B, H> {
    fn push(&mut self, step: Step<B>) {
        match self {
            Part::Build(steps) => steps.push(step),
            _ => *self = Part::Build(vec![step]),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Part::Off => "off",
            Part::Build(_) => "built",
            Part::Shared(_) => "shared",
        }
    }
}

/// The types a fallback part is over.
type Types<Req, Res, K, C> = PhantomData<fn(Req, C) -> (Res, K)>;

/// What a gate part builds: the layer, and the gate with whether the
/// policy made it.
type GateBuilt<L> = (L, Option<(Gate, bool)>);

/// What a fallback part builds: the layer, the component to register, and
/// the bound on its service sources (`None` when it has none; `Some(None)`
/// when they are unbounded).
type FallbackBuilt<L> = (L, Option<Arc<dyn Component>>, Option<Option<Duration>>);

/// The instrument part of a builder without a registry (or told
/// [`without_instrument`](PolicyBuilder::without_instrument)).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInstrument;

/// The instrument part of a builder with a registry: the policy counts
/// its calls as `{name}/instrument`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WithInstrument;

/// An instrument part of a [`PolicyBuilder`]: [`NoInstrument`] or
/// [`WithInstrument`]. A type, not a flag, so a policy without an
/// instrument costs nothing for it.
pub trait InstrumentPart<C>: sealed::Sealed {
    /// The layer it becomes.
    type Layer: Clone;
    /// Builds the layer.
    #[doc(hidden)]
    fn build(
        registry: Option<&Registry>,
        name: &str,
        classifier: &C,
    ) -> Result<Self::Layer, battlement_registry::DuplicateName>;
}

impl<C> InstrumentPart<C> for NoInstrument {
    type Layer = Identity;

    fn build(
        _: Option<&Registry>,
        _: &str,
        _: &C,
    ) -> Result<Identity, battlement_registry::DuplicateName> {
        Ok(Identity::new())
    }
}

impl<C: Clone> InstrumentPart<C> for WithInstrument {
    type Layer = InstrumentLayer<C>;

    fn build(
        registry: Option<&Registry>,
        name: &str,
        classifier: &C,
    ) -> Result<InstrumentLayer<C>, battlement_registry::DuplicateName> {
        let registry = registry.expect("a WithInstrument builder always has a registry");
        Ok(registry.layer(name)?.classifier(classifier.clone()))
    }
}

/// The gate part of a builder that has none.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGate;

/// The gate part of a builder that has one, reading priorities with `X`.
pub struct WithGate<X> {
    gate: Part<GateBuilder, Gate>,
    extract: X,
}

impl<X> fmt::Debug for WithGate<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithGate")
            .field("gate", &self.gate.label())
            .finish_non_exhaustive()
    }
}

/// The fallback part of a builder that has none.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFallback;

/// The fallback part of a builder that has one: the steps over its
/// [`FallbackBuilder`].
pub struct WithFallback<Req, Res, K, C, Fcfg> {
    configure: Fcfg,
    on_shed: bool,
    _types: Types<Req, Res, K, C>,
}

impl<Req, Res, K, C, Fcfg> fmt::Debug for WithFallback<Req, Res, K, C, Fcfg> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithFallback")
            .field("on_shed", &self.on_shed)
            .finish_non_exhaustive()
    }
}

/// What every part is built with: the policy's name, classifier, events
/// and registry.
pub struct BuildContext<'a, C> {
    name: &'a str,
    classifier: &'a C,
    events: &'a EventSink,
    total: Option<Duration>,
}

impl<C> fmt::Debug for BuildContext<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildContext")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<C> BuildContext<'_, C> {
    /// `{policy}/{part}`.
    pub(crate) fn part(&self, part: &str) -> String {
        format!("{}/{part}", self.name)
    }

    /// The policy's classifier.
    pub(crate) fn classifier(&self) -> &C {
        self.classifier
    }

    /// Where the parts send their events.
    pub(crate) fn events(&self) -> &EventSink {
        self.events
    }
}

/// A gate part of a [`PolicyBuilder`]: [`NoGate`] or [`WithGate`].
pub trait GatePart<C>: sealed::Sealed {
    /// The layer it becomes.
    type Layer: Clone;
    /// Builds the layer; returns the gate, and whether the policy made it
    /// (and so registers it).
    #[doc(hidden)]
    fn build(self, cx: &BuildContext<'_, C>) -> Result<GateBuilt<Self::Layer>, InvalidConfig>;
}

impl<C> GatePart<C> for NoGate {
    type Layer = Identity;

    fn build(self, _: &BuildContext<'_, C>) -> Result<GateBuilt<Identity>, InvalidConfig> {
        Ok((Identity::new(), None))
    }
}

impl<C: Clone, X: Clone> GatePart<C> for WithGate<X> {
    type Layer = GateLayer<X, C>;

    fn build(self, cx: &BuildContext<'_, C>) -> Result<GateBuilt<GateLayer<X, C>>, InvalidConfig> {
        let (gate, own) = match self.gate {
            Part::Shared(gate) => (gate, false),
            Part::Build(steps) => {
                let builder = Gate::builder(cx.part("gate")).events(cx.events.clone());
                let gate = steps.into_iter().fold(builder, |b, step| step(b)).build()?;
                (gate, true)
            }
            Part::Off => unreachable!("a WithGate always holds a gate"),
        };
        let layer = GateLayer::new(gate.clone())
            .extractor(self.extract)
            .classifier(cx.classifier.clone());
        Ok((layer, Some((gate, own))))
    }
}

/// A fallback part of a [`PolicyBuilder`]: [`NoFallback`] or
/// [`WithFallback`].
pub trait FallbackPart<C>: sealed::Sealed {
    /// The layer it becomes.
    type Layer: Clone;
    /// Builds the layer, and the component to register.
    #[doc(hidden)]
    fn build(self, cx: &BuildContext<'_, C>) -> Result<FallbackBuilt<Self::Layer>, InvalidConfig>;
}

impl<C> FallbackPart<C> for NoFallback {
    type Layer = Identity;

    fn build(self, _: &BuildContext<'_, C>) -> Result<FallbackBuilt<Identity>, InvalidConfig> {
        Ok((Identity::new(), None, None))
    }
}

impl<Req, Res, K, C, Fcfg> FallbackPart<C> for WithFallback<Req, Res, K, C, Fcfg>
where
    Req: 'static,
    Res: 'static,
    K: 'static,
    C: Clone + Send + Sync + 'static,
    Fcfg: FnOnce(
        FallbackBuilder<Req, Res, battlement_fallback::NoKey, FallbackClassifier<C>>,
    ) -> FallbackBuilder<Req, Res, K, FallbackClassifier<C>>,
{
    type Layer = FallbackLayer<Req, Res, K, FallbackClassifier<C>>;

    fn build(self, cx: &BuildContext<'_, C>) -> Result<FallbackBuilt<Self::Layer>, InvalidConfig> {
        let mut builder = FallbackLayer::<Req, Res>::builder(cx.part("fallback"))
            .classifier(FallbackClassifier {
                inner: cx.classifier.clone(),
                on_shed: self.on_shed,
            })
            .events(cx.events.clone());
        // A fallback service answers after the primary failed, often after
        // the whole total: bound it by the total unless told otherwise.
        if let Some(total) = cx.total {
            builder = builder.source_timeout(total);
        }
        let layer = (self.configure)(builder).build()?;
        let component = layer.as_component();
        let bound = layer.has_service_source().then(|| layer.source_timeout());
        Ok((layer, Some(component), bound))
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::NoGate {}
    impl<X> Sealed for super::WithGate<X> {}
    impl Sealed for super::NoFallback {}
    impl Sealed for super::NoInstrument {}
    impl Sealed for super::WithInstrument {}
    impl<Req, Res, K, C, F> Sealed for super::WithFallback<Req, Res, K, C, F> {}
}

/// Builds a [`Policy`]: start with [`Policy::builder`], [`Policy::http`]
/// or [`Policy::grpc`]. Every method consumes and returns the builder and
/// may come in any order; [`build`](Self::build) checks each part and the
/// rules between them.
///
/// `C` is the classifier every part judges with, `P` the retry
/// predicate, `G` and `F` the gate and fallback parts (none by default).
#[must_use]
pub struct PolicyBuilder<
    C = ErrorClassifier,
    P = Always,
    G = NoGate,
    F = NoFallback,
    I = NoInstrument,
    L = Protect,
> {
    name: String,
    classifier: C,
    retry_if: P,
    registry: Option<Registry>,
    events: Option<EventSink>,
    instrument: PhantomData<fn() -> I>,
    total: Option<Duration>,
    attempt: Option<Duration>,
    carry: Carry,
    retry: Part<RetryPolicyBuilder, ()>,
    budget: Part<RetryBudgetBuilder, RetryBudget>,
    breaker: Part<BreakerBuilder, Breaker>,
    gate: G,
    fallback: F,
    protect: L,
    allowed: Vec<Check>,
}

impl<C, P, G: fmt::Debug, F: fmt::Debug, I, L> fmt::Debug for PolicyBuilder<C, P, G, F, I, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBuilder")
            .field("name", &self.name)
            .field("registry", &self.registry.is_some())
            .field("total", &self.total)
            .field("attempt", &self.attempt)
            .field("carry", &self.carry)
            .field("retry", &self.retry.label())
            .field("budget", &self.budget.label())
            .field("breaker", &self.breaker.label())
            .field("gate", &self.gate)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

/// The policy defaults: the figures of the "standard resilience handler".
pub(crate) mod defaults {
    use std::time::Duration;

    /// Each request's whole budget.
    pub(crate) const TOTAL: Duration = Duration::from_secs(30);
    /// One attempt's bound.
    pub(crate) const ATTEMPT: Duration = Duration::from_secs(10);
    /// Attempts, the first included.
    pub(crate) const MAX_ATTEMPTS: u32 = 3;
    /// The backoff's first delay (exponential, ×2, full jitter).
    pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(100);
    /// The breaker's failure-rate threshold.
    pub(crate) const FAILURE_RATE: f64 = 0.1;
    /// The breaker's time window.
    pub(crate) const WINDOW: Duration = Duration::from_secs(30);
    /// The breaker window's buckets.
    pub(crate) const WINDOW_BUCKETS: u32 = 10;
    /// Calls the window must hold before a rate counts.
    pub(crate) const MINIMUM_CALLS: u32 = 100;
    /// How long the breaker stays open.
    pub(crate) const OPEN: Duration = Duration::from_secs(5);
    /// The share of the attempt timeout that must be left to start a
    /// retry, when `min_time_left` is not set.
    pub(crate) const MIN_TIME_LEFT_FRACTION: u32 = 10;
}

impl<C, P> PolicyBuilder<C, P> {
    pub(crate) fn new(name: String, classifier: C, retry_if: P) -> Self {
        PolicyBuilder {
            name,
            classifier,
            retry_if,
            registry: None,
            events: None,
            instrument: PhantomData,
            total: Some(defaults::TOTAL),
            attempt: Some(defaults::ATTEMPT),
            carry: Carry::Always,
            retry: Part::Build(Vec::new()),
            budget: Part::Build(Vec::new()),
            breaker: Part::Build(Vec::new()),
            gate: NoGate,
            fallback: NoFallback,
            protect: Protect::default(),
            allowed: Vec::new(),
        }
    }
}

impl<C, P, G, F, I, L> PolicyBuilder<C, P, G, F, I, L> {
    /// The policy's name, the prefix of its components' names.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Judges every result with `classifier`, in every part that judges
    /// outcomes (instrument, fallback, gate, retry, breaker). Any
    /// [`Classify<Res, BoxError>`](Classify), closures included.
    pub fn classifier<C2>(self, classifier: C2) -> PolicyBuilder<C2, P, G, F, I, L> {
        self.rebuild(|_, retry_if, gate, fallback, protect| {
            (classifier, retry_if, gate, fallback, protect)
        })
    }

    /// Retries only requests for which `predicate` is `true` (any
    /// [`RetryIf`](battlement_retry::RetryIf)); the HTTP preset's is
    /// [`Idempotent`](crate::Idempotent).
    pub fn retry_if<P2>(self, predicate: P2) -> PolicyBuilder<C, P2, G, F, I, L> {
        self.rebuild(|classifier, _, gate, fallback, protect| {
            (classifier, predicate, gate, fallback, protect)
        })
    }

    /// Registers every component the policy makes in `registry`, as
    /// `{name}/{part}` (`checkout/breaker`, `checkout/retry`,
    /// `checkout/budget`, `checkout/gate`, `checkout/fallback`, `checkout/deadline`,
    /// `checkout/attempt_timeout`), counts its calls with an instrument
    /// `checkout/instrument`, and sends their events to it. Handles
    /// passed in with `shared_*` are not registered: they are yours.
    pub fn registry(mut self, registry: &Registry) -> PolicyBuilder<C, P, G, F, WithInstrument, L> {
        self.registry = Some(registry.clone());
        self.rebuild_instrument()
    }

    /// Sends every part's events to `sink` (default: the registry's, or
    /// only `tracing` without one).
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// No instrument, even with a registry (its other components are
    /// still registered). Call it after [`registry`](Self::registry).
    pub fn without_instrument(self) -> PolicyBuilder<C, P, G, F, NoInstrument, L> {
        self.rebuild_instrument()
    }

    /// The same builder with another instrument part.
    fn rebuild_instrument<I2>(self) -> PolicyBuilder<C, P, G, F, I2, L> {
        self.rebuild(|c, p, g, f, l| (c, p, g, f, l))
    }

    /// Each request's whole budget, retries and backoff included (default
    /// 30 s; more than zero).
    pub fn total(mut self, total: Duration) -> Self {
        self.total = Some(total);
        self
    }

    /// No total deadline.
    pub fn without_total(mut self) -> Self {
        self.total = None;
        self
    }

    /// One attempt's bound (default 10 s; more than zero, at most the
    /// total).
    pub fn attempt_timeout(mut self, attempt: Duration) -> Self {
        self.attempt = Some(attempt);
        self
    }

    /// No attempt timeout.
    pub fn without_attempt_timeout(mut self) -> Self {
        self.attempt = None;
        self
    }

    /// Whether the total deadline and the attempt timeout write their
    /// deadline into a request that carries none ([`Carry::Always`], the
    /// default), or leave it in scope only ([`Carry::IfCarried`]): the
    /// parts inside see it either way. For an axum or hyper route,
    /// `IfCarried` saves an `http::Request` its extension entry (one to
    /// three allocations a request, about a third of what the policy
    /// costs a request in process); keep `Always` when something between
    /// the policy and the code that reads the deadline runs in another
    /// task (a `tower::buffer`, a spawned task) or a handler reads it
    /// from the request (`Extension<Deadline>`). See
    /// [`Carry`](battlement_deadline::Carry).
    pub fn carry_deadline(mut self, carry: Carry) -> Self {
        self.carry = carry;
        self
    }

    /// Adjusts the retry policy: `f` gets the policy's defaults (3
    /// attempts, exponential backoff from 100 ms with full jitter,
    /// `min_time_left` a tenth of the attempt timeout) and returns the
    /// builder to use. Turns retries back on after
    /// [`without_retry`](Self::without_retry). The classifier, the
    /// predicate, the budget, the events and the name are the policy's:
    /// setting them in `f` has no effect.
    pub fn retry(
        mut self,
        f: impl FnOnce(RetryPolicyBuilder) -> RetryPolicyBuilder + Send + 'static,
    ) -> Self {
        self.retry.push(Box::new(f));
        self
    }

    /// Turns retries on or off at run time without changing the builder's
    /// type (a config file's `retry.enabled`); off, the request type must
    /// still fit the predicate. [`without_retry`](Self::without_retry)
    /// lifts that too.
    pub fn retry_enabled(mut self, on: bool) -> Self {
        match (on, &self.retry) {
            (false, _) => self.retry = Part::Off,
            (true, Part::Off) => self.retry = Part::Build(Vec::new()),
            (true, _) => {}
        }
        self
    }

    /// No retries: each request is sent once and never copied, so the
    /// request type need not be `Clone`. The predicate becomes
    /// [`Never`]; a later [`retry`](Self::retry) turns retries back on,
    /// but [`Never`] still repeats nothing.
    pub fn without_retry(mut self) -> PolicyBuilder<C, Never, G, F, I, L> {
        self.retry = Part::Off;
        self.retry_if(Never::default())
    }

    /// Adjusts the retry budget the policy makes (default: 20 % of
    /// requests plus 10 a second, over 10 s).
    pub fn budget(
        mut self,
        f: impl FnOnce(RetryBudgetBuilder) -> RetryBudgetBuilder + Send + 'static,
    ) -> Self {
        self.budget.push(Box::new(f));
        self
    }

    /// Withdraws retries from `budget` instead of a budget of its own, to
    /// share one between policies.
    pub fn shared_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Part::Shared(budget);
        self
    }

    /// No retry budget: retries are bounded by the attempts alone.
    pub fn without_budget(mut self) -> Self {
        self.budget = Part::Off;
        self
    }

    /// Adjusts the breaker: `f` gets the policy's defaults (10 % failures
    /// over a 30 s window of 10 buckets, once it holds 100 calls; open 5 s)
    /// and returns the builder to use. The name and events are the
    /// policy's.
    pub fn breaker(
        mut self,
        f: impl FnOnce(BreakerBuilder) -> BreakerBuilder + Send + 'static,
    ) -> Self {
        self.breaker.push(Box::new(f));
        self
    }

    /// Uses `breaker` instead of one of its own, to share it between
    /// policies.
    pub fn shared_breaker(mut self, breaker: Breaker) -> Self {
        self.breaker = Part::Shared(breaker);
        self
    }

    /// No breaker.
    pub fn without_breaker(mut self) -> Self {
        self.breaker = Part::Off;
        self
    }

    /// Lets [`build`](Self::build) pass a warning-level [`Check`].
    pub fn allow(mut self, check: Check) -> Self {
        if check.is_warning() && !self.allowed.contains(&check) {
            self.allowed.push(check);
        }
        self
    }

    /// The same builder with its gate and fallback parts mapped by `f`.
    fn map_parts<G2, F2>(
        self,
        f: impl FnOnce(G, F) -> (G2, F2),
    ) -> PolicyBuilder<C, P, G2, F2, I, L> {
        self.rebuild(|classifier, retry_if, gate, fallback, protect| {
            let (gate, fallback) = f(gate, fallback);
            (classifier, retry_if, gate, fallback, protect)
        })
    }

    /// The same builder with its typed parts (classifier, predicate, gate,
    /// fallback, load protection) mapped by `f`, and its instrument part
    /// `I2`: the one place that moves every field.
    fn rebuild<C2, P2, G2, F2, I2, L2>(
        self,
        f: impl FnOnce(C, P, G, F, L) -> (C2, P2, G2, F2, L2),
    ) -> PolicyBuilder<C2, P2, G2, F2, I2, L2> {
        let (classifier, retry_if, gate, fallback, protect) = f(
            self.classifier,
            self.retry_if,
            self.gate,
            self.fallback,
            self.protect,
        );
        PolicyBuilder {
            name: self.name,
            classifier,
            retry_if,
            registry: self.registry,
            events: self.events,
            instrument: PhantomData,
            total: self.total,
            attempt: self.attempt,
            carry: self.carry,
            retry: self.retry,
            budget: self.budget,
            breaker: self.breaker,
            gate,
            fallback,
            protect,
            allowed: self.allowed,
        }
    }
}

impl<C, P, F, I, L> PolicyBuilder<C, P, NoGate, F, I, L> {
    /// A degradation gate of its own, adjusted by `f` (default: level
    /// `Normal`, every priority admitted); priorities are read from the
    /// request ([`FromExtensions`]) unless set with
    /// [`priority`](PolicyBuilder::priority).
    pub fn gate(
        self,
        f: impl FnOnce(GateBuilder) -> GateBuilder + Send + 'static,
    ) -> PolicyBuilder<C, P, WithGate<FromExtensions>, F, I, L> {
        self.map_parts(|NoGate, fallback| {
            let gate = WithGate {
                gate: Part::Build(vec![Box::new(f) as Step<GateBuilder>]),
                extract: FromExtensions,
            };
            (gate, fallback)
        })
    }

    /// Sheds through `gate` instead of a gate of its own, to share it
    /// between policies.
    pub fn shared_gate(self, gate: Gate) -> PolicyBuilder<C, P, WithGate<FromExtensions>, F, I, L> {
        self.map_parts(|NoGate, fallback| {
            let gate = WithGate {
                gate: Part::Shared(gate),
                extract: FromExtensions,
            };
            (gate, fallback)
        })
    }
}

impl<C, P, X, F, I, L> PolicyBuilder<C, P, WithGate<X>, F, I, L> {
    /// Reads each request's priority with `extract` (any
    /// [`ExtractPriority`](battlement_gate::ExtractPriority), closures
    /// `Fn(&Req) -> Option<Priority>` included).
    pub fn priority<X2>(self, extract: X2) -> PolicyBuilder<C, P, WithGate<X2>, F, I, L> {
        self.map_parts(|gate, fallback| {
            let gate = WithGate {
                gate: gate.gate,
                extract,
            };
            (gate, fallback)
        })
    }
}

impl<C, P, G, I, L> PolicyBuilder<C, P, G, NoFallback, I, L> {
    /// A fallback: `f` adds its sources (`value`, `value_fn`, `service`,
    /// `cache` and `key`, in any order) to a [`FallbackBuilder`] that already carries
    /// the policy's name, classifier and events. It answers every failure
    /// the classifier sees, open circuits and exhausted retries included,
    /// but not a request the gate shed (see
    /// [`fallback_on_shed`](PolicyBuilder::fallback_on_shed)).
    pub fn fallback<Req, Res, K, Fcfg>(
        self,
        f: Fcfg,
    ) -> PolicyBuilder<C, P, G, WithFallback<Req, Res, K, C, Fcfg>, I, L>
    where
        Fcfg: FnOnce(
            FallbackBuilder<Req, Res, battlement_fallback::NoKey, FallbackClassifier<C>>,
        ) -> FallbackBuilder<Req, Res, K, FallbackClassifier<C>>,
    {
        self.map_parts(|gate, NoFallback| {
            let fallback = WithFallback {
                configure: f,
                on_shed: false,
                _types: PhantomData,
            };
            (gate, fallback)
        })
    }
}

impl<C, P, G, F, I, Bh, Lm, Kb> PolicyBuilder<C, P, G, F, I, Protect<Bh, Lm, Kb>> {
    fn map_protect<L2>(
        self,
        f: impl FnOnce(Protect<Bh, Lm, Kb>) -> L2,
    ) -> PolicyBuilder<C, P, G, F, I, L2> {
        self.rebuild(|c, p, g, fb, l| (c, p, g, fb, f(l)))
    }
}

impl<C, P, G, F, I, Lm, Kb> PolicyBuilder<C, P, G, F, I, Protect<Identity, Lm, Kb>> {
    /// A bulkhead (`battlement-limit`), adjusted by `f`: at most so many
    /// calls in flight, an optional bounded wait for a slot, a fast
    /// `BulkheadFull` otherwise. It sits inside the total deadline and
    /// outside the retries, so the deadline caps a wait and the retries
    /// of one request share its slot. Registered as `{name}/bulkhead`.
    pub fn bulkhead(
        self,
        f: impl FnOnce(BulkheadBuilder) -> BulkheadBuilder + Send + 'static,
    ) -> PolicyBuilder<C, P, G, F, I, Protect<BulkheadSpec, Lm, Kb>> {
        self.map_protect(|p| Protect {
            bulkhead: BulkheadSpec(Box::new(f)),
            limit: p.limit,
            keyed: p.keyed,
        })
    }
}

impl<C, P, G, F, I, Bh, Kb> PolicyBuilder<C, P, G, F, I, Protect<Bh, Identity, Kb>> {
    /// An adaptive concurrency limit (`battlement-limit`), adjusted by
    /// `f`. It sits between the retries and the breaker: it measures
    /// attempts, reads an attempt timeout as overload, and the breaker
    /// never counts its refusals. It judges with the policy's classifier.
    /// Registered as `{name}/limit`.
    pub fn adaptive_limit(
        self,
        f: impl FnOnce(AdaptiveLimitBuilder) -> AdaptiveLimitBuilder + Send + 'static,
    ) -> PolicyBuilder<C, P, G, F, I, Protect<Bh, LimitSpec, Kb>> {
        self.map_protect(|p| Protect {
            bulkhead: p.bulkhead,
            limit: LimitSpec(Box::new(f)),
            keyed: p.keyed,
        })
    }
}

impl<C, P, G, F, I, Bh, Lm> PolicyBuilder<C, P, G, F, I, Protect<Bh, Lm, Identity>> {
    /// A breaker per key instead of one for all: `key` finds each
    /// request's key (its host, its tenant), and each key gets a breaker
    /// with the policy's breaker defaults (see
    /// [`breaker_per_with`](Self::breaker_per_with) to change them).
    /// Registered as one component `{name}/breaker`, each key's breaker
    /// named `{name}/breaker/{key}`.
    pub fn breaker_per<K, Fk, Req>(
        self,
        key: Fk,
    ) -> PolicyBuilder<C, P, G, F, I, Protect<Bh, Lm, KeyedSpec<K, Fk>>>
    where
        Fk: Fn(&Req) -> K + Clone,
        K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        self.breaker_per_with(key, |k| k)
    }

    /// [`breaker_per`](Self::breaker_per), adjusted by `f` over the keyed
    /// breaker's builder (`max_keys`, `idle_timeout`, and `breaker(|b| ..)`
    /// to configure each key's breaker in place of the policy's defaults).
    pub fn breaker_per_with<K, Fk, Req>(
        mut self,
        key: Fk,
        f: impl FnOnce(KeyedBreakerBuilder<K>) -> KeyedBreakerBuilder<K> + Send + 'static,
    ) -> PolicyBuilder<C, P, G, F, I, Protect<Bh, Lm, KeyedSpec<K, Fk>>>
    where
        Fk: Fn(&Req) -> K + Clone,
        K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        self.breaker = Part::Off;
        self.map_protect(|p| Protect {
            bulkhead: p.bulkhead,
            limit: p.limit,
            keyed: KeyedSpec {
                key,
                configure: Box::new(f),
                _key: PhantomData,
            },
        })
    }
}

impl<C, P, G, Req, Res, K, Fcfg, I, L>
    PolicyBuilder<C, P, G, WithFallback<Req, Res, K, C, Fcfg>, I, L>
{
    /// Answers requests the gate shed from the fallback too (default:
    /// they fail with [`Shed`]).
    pub fn fallback_on_shed(mut self) -> Self {
        self.fallback.on_shed = true;
        self
    }
}

/// `b` with the policy's breaker defaults: 10 % failures over a 30 s
/// window of 10 buckets, once it holds 100 calls; open 5 s.
pub(crate) fn default_breaker(b: BreakerBuilder) -> BreakerBuilder {
    b.failure_rate(defaults::FAILURE_RATE)
        .time_window(defaults::WINDOW, defaults::WINDOW_BUCKETS)
        .minimum_calls(defaults::MINIMUM_CALLS)
        .open_duration(defaults::OPEN)
}

/// A random source that always draws the top of the range: the largest
/// delay a jittered backoff can give.
struct Worst;

impl RandomSource for Worst {
    fn next_f64(&self) -> f64 {
        1.0
    }
}

/// The largest total of the backoff delays before retries `1..attempts`.
fn worst_backoff(backoff: &Backoff, attempts: u32) -> Duration {
    let mut prev = Duration::ZERO;
    let mut sum = Duration::ZERO;
    for retry in 1..attempts {
        prev = backoff.delay(retry, None, prev, &Worst);
        sum = sum.saturating_add(prev);
    }
    sum
}

impl<C, P, G, F, I, L> PolicyBuilder<C, P, G, F, I, L>
where
    C: Clone + Send + Sync + 'static,
    P: 'static,
    G: GatePart<C>,
    F: FallbackPart<C>,
    I: InstrumentPart<C>,
    L: ProtectPart<C>,
{
    /// Builds every part, checks the rules between them, and registers
    /// the components.
    ///
    /// # Errors
    ///
    /// - [`PolicyError::Invalid`]: a part's own builder refused (a zero
    ///   total or attempt timeout, a failure rate outside `(0, 1]`, ...),
    ///   naming the part's field and bound.
    /// - [`PolicyError::Conflict`]: two parts do not fit (a [`Check`]),
    ///   naming both settings and their values.
    /// - [`PolicyError::Duplicate`]: a name the policy registers is taken.
    pub fn build(
        self,
    ) -> Result<Policy<C, P, G::Layer, F::Layer, I::Layer, L::Layers>, PolicyError> {
        let policy = self.name.clone();
        let invalid = |source: InvalidConfig| PolicyError::Invalid {
            policy: policy.clone(),
            source,
        };
        let name = Name::copied(&self.name);
        let events = match (&self.events, &self.registry) {
            (Some(sink), _) => sink.clone(),
            (None, Some(registry)) => registry.event_sink(),
            (None, None) => EventSink::none(),
        };
        let cx = BuildContext {
            name: &self.name,
            classifier: &self.classifier,
            events: &events,
            total: self.total,
        };

        let deadline = match self.total {
            None => None,
            Some(total) => Some(
                DeadlineLayer::builder()
                    .total(total)
                    .name(cx.part("deadline"))
                    .events(events.clone())
                    .carry(self.carry)
                    .build()
                    .map_err(&invalid)?,
            ),
        };
        let attempt = match self.attempt {
            None => None,
            Some(per_attempt) => Some(
                AttemptTimeoutLayer::builder()
                    .per_attempt(per_attempt)
                    .name(cx.part("attempt_timeout"))
                    .events(events.clone())
                    .carry(self.carry)
                    .build()
                    .map_err(&invalid)?,
            ),
        };

        let (budget, own_budget) = match self.budget {
            Part::Off => (None, false),
            Part::Shared(budget) => (Some(budget), false),
            Part::Build(steps) => {
                let builder = RetryBudget::builder().name(cx.part("budget"));
                let budget = steps
                    .into_iter()
                    .fold(builder, |b, step| step(b))
                    .name(cx.part("budget"))
                    .build()
                    .map_err(&invalid)?;
                (Some(budget), true)
            }
        };
        let retry = match self.retry {
            Part::Off | Part::Shared(()) => None,
            Part::Build(steps) => {
                let mut builder = RetryPolicyBuilder::new()
                    .max_attempts(defaults::MAX_ATTEMPTS)
                    .backoff(
                        Backoff::exponential(defaults::BACKOFF_BASE)
                            .jitter(battlement_retry::Jitter::Full),
                    );
                if let Some(attempt) = self.attempt {
                    builder = builder.min_time_left(attempt / defaults::MIN_TIME_LEFT_FRACTION);
                }
                let mut builder = steps
                    .into_iter()
                    .fold(builder, |b, step| step(b))
                    .name(cx.part("retry"))
                    .events(events.clone());
                if let Some(budget) = &budget {
                    builder = builder.budget(budget.clone());
                }
                let built = builder
                    .classifier(self.classifier.clone())
                    .retry_if(self.retry_if)
                    .build()
                    .map_err(&invalid)?;
                Some(RetryLayer::new(built))
            }
        };
        let (breaker, own_breaker) = match self.breaker {
            Part::Off => (None, false),
            Part::Shared(breaker) => (Some(breaker), false),
            Part::Build(steps) => {
                let builder = default_breaker(Breaker::builder(cx.part("breaker")));
                let breaker = steps
                    .into_iter()
                    .fold(builder, |b, step| step(b))
                    .events(events.clone())
                    .build()
                    .map_err(&invalid)?;
                (Some(breaker), true)
            }
        };

        // The rules between parts.
        let conflict = |check, left, right, bound| {
            PolicyError::Conflict(Conflict {
                policy: policy.clone(),
                check,
                left,
                right,
                bound,
            })
        };
        if let (Some(total), Some(per_attempt)) = (self.total, self.attempt)
            && per_attempt > total
        {
            return Err(conflict(
                Check::AttemptWithinTotal,
                ("attempt_timeout", per_attempt),
                ("total", total),
                "must be at most",
            ));
        }
        if let (Some(breaker), Some(per_attempt)) = (&breaker, self.attempt)
            && let WindowConfig::Time { duration, .. } = breaker.window()
        {
            let twice = per_attempt.saturating_mul(2);
            if duration < twice {
                return Err(conflict(
                    Check::BreakerWindowCoversAttempts,
                    ("breaker.window", duration),
                    ("2 × attempt_timeout", twice),
                    "must be at least",
                ));
            }
        }
        if let (Some(retry), Some(total), Some(per_attempt)) = (&retry, self.total, self.attempt) {
            let policy = retry.policy();
            let attempts = policy.max_attempts();
            if attempts > 1 && !self.allowed.contains(&Check::RetriesFitTotal) {
                let needed = per_attempt
                    .saturating_mul(attempts - 1)
                    .saturating_add(worst_backoff(policy.backoff(), attempts))
                    .saturating_add(policy.min_time_left());
                if needed > total {
                    return Err(conflict(
                        Check::RetriesFitTotal,
                        ("total", total),
                        (
                            "(max_attempts - 1) × attempt_timeout + backoff + min_time_left",
                            needed,
                        ),
                        "is less than",
                    ));
                }
            }
        }

        let (gate, gate_handle) = self.gate.build(&cx).map_err(&invalid)?;
        let (protect, protect_components) = self.protect.build(&cx).map_err(&invalid)?;
        let (fallback, fallback_component, fallback_bound) =
            self.fallback.build(&cx).map_err(&invalid)?;
        if let (Some(total), Some(bound)) = (self.total, fallback_bound) {
            let bound = bound.unwrap_or(Duration::MAX);
            if bound > total {
                return Err(conflict(
                    Check::FallbackWithinTotal,
                    ("fallback.source_timeout", bound),
                    ("total", total),
                    "must be at most",
                ));
            }
        }

        let instrument = I::build(
            self.registry.as_ref(),
            &cx.part("instrument"),
            &self.classifier,
        )
        .map_err(|source| PolicyError::Duplicate {
            policy: policy.clone(),
            source,
        })?;
        if let Some(registry) = &self.registry {
            let duplicate = |source| PolicyError::Duplicate {
                policy: policy.clone(),
                source,
            };
            if let (Some(breaker), true) = (&breaker, own_breaker) {
                registry.register(breaker).map_err(duplicate)?;
            }
            if let (Some(budget), true) = (&budget, own_budget) {
                registry.register(budget).map_err(duplicate)?;
            }
            if let Some(retry) = &retry {
                registry.register(retry.policy()).map_err(duplicate)?;
            }
            if let Some((gate, true)) = &gate_handle {
                registry.register(gate).map_err(duplicate)?;
            }
            for component in &protect_components {
                registry.register(component).map_err(duplicate)?;
            }
            if let Some(fallback) = &fallback_component {
                registry.register(fallback).map_err(duplicate)?;
            }
            if let Some(deadline) = &deadline {
                registry.register(&deadline.handle()).map_err(duplicate)?;
            }
            if let Some(attempt) = &attempt {
                registry.register(&attempt.handle()).map_err(duplicate)?;
            }
        }

        Ok(Policy {
            name,
            instrument,
            protect,
            fallback,
            gate,
            deadline,
            retry,
            breaker: breaker.map(|b| b.layer().with_classifier(self.classifier.clone())),
            attempt,
            budget,
            gate_handle: gate_handle.map(|(gate, _)| gate),
        })
    }
}
