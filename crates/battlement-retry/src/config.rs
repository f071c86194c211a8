//! The retry policy and its builder: [`RetryPolicy`], [`RetryPolicyBuilder`],
//! and the [`RetryIf`] predicate.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use battlement_core::{
    AsComponent, Component, ErrorClassifier, EventSink, FailureKind, InvalidConfig, Name,
};

use crate::backoff::Backoff;
use crate::budget::RetryBudget;
use crate::layer::RetryLayer;
use crate::random::{FastRandom, RandomSource};
use crate::stats::RetryStats;

const KINDS: usize = FailureKind::ALL.len();

/// Decides whether a request may be sent more than once (is it idempotent,
/// is its body replayable?), and copies it for the next attempt.
///
/// Any `Fn(&Req) -> bool` is one for a `Clone` request; [`Always`] allows
/// every `Clone` request; [`Never`] allows none, for any request type.
/// Implement it for a request that is not `Clone` but can be copied
/// (an `http::Request` with a replayable body, say): a request whose copy
/// is `None` is sent once.
pub trait RetryIf<Req> {
    /// `true` when `req` may be repeated.
    fn may_retry(&self, req: &Req) -> bool;

    /// A copy of `req` for another attempt, or `None` when it cannot be
    /// copied: the request is then sent once, and a retryable failure ends
    /// with [`RetryStop::NotRepeatable`](battlement_core::RetryStop::NotRepeatable).
    fn clone_request(&self, req: &Req) -> Option<Req>;
}

impl<F, Req: Clone> RetryIf<Req> for F
where
    F: Fn(&Req) -> bool,
{
    fn may_retry(&self, req: &Req) -> bool {
        self(req)
    }

    #[inline]
    fn clone_request(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// The default [`RetryIf`]: every `Clone` request may be repeated.
#[derive(Debug, Clone, Copy, Default)]
pub struct Always {
    _priv: (),
}

impl<Req: Clone> RetryIf<Req> for Always {
    #[inline]
    fn may_retry(&self, _req: &Req) -> bool {
        true
    }

    #[inline]
    fn clone_request(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// A [`RetryIf`] that repeats nothing, for any request type (`Clone` or
/// not): each request is sent once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Never {
    _priv: (),
}

impl<Req> RetryIf<Req> for Never {
    #[inline]
    fn may_retry(&self, _req: &Req) -> bool {
        false
    }

    #[inline]
    fn clone_request(&self, _req: &Req) -> Option<Req> {
        None
    }
}

/// Per-[`FailureKind`] overrides of the attempts and the base delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KindOverride {
    pub(crate) max_attempts: Option<u32>,
    pub(crate) base_delay: Option<Duration>,
}

/// Everything a retry decision reads; shared by every clone of the
/// service through one `Arc`.
pub(crate) struct Shared<C, P> {
    pub(crate) classifier: C,
    pub(crate) retry_if: P,
    pub(crate) max_attempts: u32,
    /// The largest number of attempts any kind may get: when 1, no request
    /// is ever cloned.
    pub(crate) max_any_attempts: u32,
    pub(crate) per_kind: [KindOverride; KINDS],
    pub(crate) backoff: Backoff,
    pub(crate) max_retry_after: Duration,
    /// `None`: a tenth of the attempt bound learned at each call.
    pub(crate) min_time_left: Option<Duration>,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) random: Arc<dyn RandomSource>,
    pub(crate) events: EventSink,
    pub(crate) name: Name,
    /// The policy's counters, its [`Component`] face.
    pub(crate) stats: Arc<RetryStats>,
    /// How many services made from this policy, once it was leaked, keep
    /// their spare for the process (at most [`KEPT_SPARES`]).
    pub(crate) kept_spares: AtomicU32,
}

/// The most services a leaked policy's layer makes whose spare (the copy
/// of the inner service retries go through) is kept for the process, so
/// that their calls count no reference to it. Past this many (a leaked
/// layer applied per connection, say), services count one as an unleaked
/// layer's do: the memory kept stays bounded.
pub(crate) const KEPT_SPARES: u32 = 64;

impl<C, P> Shared<C, P> {
    pub(crate) fn max_attempts_for(&self, kind: FailureKind) -> u32 {
        self.per_kind
            .get(kind.index())
            .and_then(|o| o.max_attempts)
            .unwrap_or(self.max_attempts)
    }

    /// Whether a service made now from this leaked policy may keep its
    /// spare for the process: true for the first [`KEPT_SPARES`].
    pub(crate) fn keep_spare(&self) -> bool {
        self.kept_spares
            .fetch_update(Relaxed, Relaxed, |n| (n < KEPT_SPARES).then_some(n + 1))
            .is_ok()
    }

    pub(crate) fn base_delay_for(&self, kind: FailureKind) -> Option<Duration> {
        self.per_kind.get(kind.index()).and_then(|o| o.base_delay)
    }
}

/// When and how to retry: built once with [`RetryPolicy::builder`], then
/// turned into a [`RetryLayer`] with [`RetryPolicy::layer`] or
/// [`RetryLayer::new`]. Cheap to clone (one `Arc`, or a plain reference
/// for a policy kept in a `static`: see [`RetryPolicy::from_static`]).
///
/// `C` is the [`Classify`](battlement_core::Classify) that judges each
/// attempt's result (default [`ErrorClassifier`]), `P` the [`RetryIf`]
/// predicate (default [`Always`]).
pub struct RetryPolicy<C = ErrorClassifier, P = Always>
where
    C: 'static,
    P: 'static,
{
    pub(crate) shared: Handle<Shared<C, P>>,
}

/// How a policy reaches its shared state.
pub(crate) type Handle<T> = battlement_core::SharedRef<T>;

impl<C: 'static, P: 'static> Clone for RetryPolicy<C, P> {
    #[inline]
    fn clone(&self) -> Self {
        RetryPolicy {
            shared: self.shared.clone(),
        }
    }
}

impl<C: 'static, P: 'static> fmt::Debug for RetryPolicy<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &*self.shared;
        f.debug_struct("RetryPolicy")
            .field("name", &s.name)
            .field("max_attempts", &s.max_attempts)
            .field("backoff", &s.backoff)
            .field("max_retry_after", &s.max_retry_after)
            .field("min_time_left", &s.min_time_left)
            .field("budget", &s.budget)
            .finish_non_exhaustive()
    }
}

/// A policy is a [`Component`] (kind `retry`, named as the policy): the
/// requests that entered the retry path (their first attempt failed
/// retryably), their attempts and retries, the requests whose retries ran out by
/// [`RetryStop`](battlement_core::RetryStop) reason (`budget_exhausted`
/// being the retries the budget denied), and the retries that waited the
/// delay a failure asked for (`Retry-After`, pushback). Every layer and
/// service built from the policy (and its clones) counts into it. A
/// request whose first attempt settles it is not counted (that would put
/// an atomic addition on the hot path): the instrument counts every call.
/// Its counters are monotonic: [`Control::Reset`](battlement_core::Control::Reset)
/// is accepted and changes nothing.
///
/// ```
/// use battlement_core::AsComponent;
/// use battlement_retry::RetryPolicy;
///
/// let policy = RetryPolicy::builder().name("payments/retry").build().unwrap();
/// let component = policy.as_component();
/// assert_eq!(component.name(), "payments/retry");
/// assert_eq!(component.health().details["attempts"], 0);
/// ```
impl<C: 'static, P: 'static> AsComponent for RetryPolicy<C, P> {
    fn as_component(&self) -> Arc<dyn Component> {
        self.shared.stats.clone()
    }
}

impl Default for RetryPolicy {
    /// The defaults of [`RetryPolicy::builder`]: [`ErrorClassifier`], 3
    /// attempts, [`Backoff::default`], no budget.
    fn default() -> Self {
        RetryPolicy::builder()
            .build()
            .expect("the default retry configuration is valid")
    }
}

impl RetryPolicy {
    /// A builder with the defaults (see each method).
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::new()
    }
}

impl<C: 'static, P: 'static> RetryPolicy<C, P> {
    /// A handle on a policy that lives as long as the program (kept in a
    /// `static`): its clones, one per request in each response future,
    /// copy a reference instead of counting an `Arc`, which takes an
    /// atomic increment and decrement off every call. Behaviour is the
    /// same in every other respect.
    ///
    /// ```
    /// use battlement_retry::{RetryLayer, RetryPolicy};
    /// use std::sync::LazyLock;
    ///
    /// static POLICY: LazyLock<RetryPolicy> =
    ///     LazyLock::new(|| RetryPolicy::builder().max_attempts(3).build().unwrap());
    ///
    /// let layer = RetryLayer::new(RetryPolicy::from_static(&POLICY));
    /// # let _ = layer;
    /// ```
    pub fn from_static(policy: &'static RetryPolicy<C, P>) -> Self {
        RetryPolicy {
            shared: policy.shared.to_static(),
        }
    }

    /// The layer applying this policy.
    pub fn layer(self) -> RetryLayer<C, P> {
        RetryLayer::new(self)
    }

    /// The policy's name (used in events).
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// The total attempts allowed by default, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.shared.max_attempts
    }

    /// The budget, if one was set.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// The backoff between attempts.
    pub fn backoff(&self) -> &Backoff {
        &self.shared.backoff
    }

    /// The least time that must be left on the deadline to start another
    /// attempt, as set with
    /// [`RetryPolicyBuilder::min_time_left`]; zero when it was not set,
    /// and each request then needs a tenth of the bound per attempt of an
    /// `AttemptTimeoutLayer` inside, when there is one (see the crate
    /// docs, "Deadlines").
    pub fn min_time_left(&self) -> Duration {
        self.shared.min_time_left.unwrap_or(Duration::ZERO)
    }
}

/// Builds a [`RetryPolicy`]. Each method consumes and returns the builder;
/// [`build`](RetryPolicyBuilder::build) checks the configuration.
pub struct RetryPolicyBuilder<C = ErrorClassifier, P = Always> {
    classifier: C,
    retry_if: P,
    max_attempts: u32,
    per_kind: [KindOverride; KINDS],
    backoff: Backoff,
    max_retry_after: Duration,
    min_time_left: Option<Duration>,
    budget: Option<RetryBudget>,
    random: Arc<dyn RandomSource>,
    events: EventSink,
    name: Name,
}

impl<C, P> fmt::Debug for RetryPolicyBuilder<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicyBuilder {
    fn default() -> Self {
        RetryPolicyBuilder::new()
    }
}

impl RetryPolicyBuilder {
    /// The defaults: [`ErrorClassifier`], every request repeatable, 3
    /// attempts, [`Backoff::default`] (exponential from 100 ms, ×2, up to
    /// 10 s, full jitter), `Retry-After` honoured up to 30 s, a minimum
    /// time left of a tenth of the attempt timeout inside (see
    /// [`min_time_left`](Self::min_time_left)), no budget, no events,
    /// name `"retry"`.
    pub fn new() -> Self {
        RetryPolicyBuilder {
            classifier: ErrorClassifier::new(),
            retry_if: Always::default(),
            max_attempts: 3,
            per_kind: [KindOverride::default(); KINDS],
            backoff: Backoff::default(),
            max_retry_after: Duration::from_secs(30),
            min_time_left: None,
            budget: None,
            random: Arc::new(FastRandom::new()),
            events: EventSink::none(),
            name: "retry".into(),
        }
    }
}

impl<C: 'static, P: 'static> RetryPolicyBuilder<C, P> {
    /// Judges each attempt's result (default [`ErrorClassifier`]: errors
    /// by their `source()` chain, every `Ok` a success). Only outcomes the
    /// classifier calls retryable failures are retried; use a closure or
    /// [`ResponseClassifier`](battlement_core::ResponseClassifier) to retry
    /// `Ok` responses such as an HTTP 503.
    pub fn classifier<C2>(self, classifier: C2) -> RetryPolicyBuilder<C2, P> {
        RetryPolicyBuilder {
            classifier,
            retry_if: self.retry_if,
            max_attempts: self.max_attempts,
            per_kind: self.per_kind,
            backoff: self.backoff,
            max_retry_after: self.max_retry_after,
            min_time_left: self.min_time_left,
            budget: self.budget,
            random: self.random,
            events: self.events,
            name: self.name,
        }
    }

    /// Refuses retries for requests for which `predicate` is `false`
    /// (not idempotent, body not replayable). Default: every request may
    /// be retried. A refused request is never cloned; when it fails with
    /// a retryable error it ends with
    /// [`RetryStop::NotRepeatable`](battlement_core::RetryStop::NotRepeatable).
    pub fn retry_if<P2>(self, predicate: P2) -> RetryPolicyBuilder<C, P2> {
        RetryPolicyBuilder {
            classifier: self.classifier,
            retry_if: predicate,
            max_attempts: self.max_attempts,
            per_kind: self.per_kind,
            backoff: self.backoff,
            max_retry_after: self.max_retry_after,
            min_time_left: self.min_time_left,
            budget: self.budget,
            random: self.random,
            events: self.events,
            name: self.name,
        }
    }

    /// Total attempts, the first included (default 3; must be >= 1 and
    /// <= 100). 1 means never retry: failures come back unchanged.
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Total attempts for failures of `kind`, replacing
    /// [`max_attempts`](Self::max_attempts) for them (same bounds). The
    /// count includes every attempt of the request, whatever their kinds.
    #[must_use]
    pub fn max_attempts_for(mut self, kind: FailureKind, n: u32) -> Self {
        if let Some(o) = self.per_kind.get_mut(kind.index()) {
            o.max_attempts = Some(n);
        }
        self
    }

    /// Never retry failures of `kind`, even when classified retryable
    /// (they come back unchanged, as a non-retryable failure does): the
    /// same as `max_attempts_for(kind, 1)`.
    #[must_use]
    pub fn never_retry(self, kind: FailureKind) -> Self {
        self.max_attempts_for(kind, 1)
    }

    /// The backoff's base delay for failures of `kind` (e.g. a longer one
    /// for `RateLimited`). Default: the backoff's own base.
    #[must_use]
    pub fn base_delay_for(mut self, kind: FailureKind, base: Duration) -> Self {
        if let Some(o) = self.per_kind.get_mut(kind.index()) {
            o.base_delay = Some(base);
        }
        self
    }

    /// How to wait between attempts (default [`Backoff::default`]).
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest `Retry-After` (or pushback) honoured (default 30 s).
    /// A failure asking to wait longer ends the retries with
    /// [`RetryStop::RetryAfterTooLong`](battlement_core::RetryStop::RetryAfterTooLong),
    /// keeping the retry-after for the caller.
    #[must_use]
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The least time that must be left before the request's deadline to
    /// start another attempt, after the backoff. Only applies to requests
    /// with a [`Deadline`](battlement_core::Deadline) (carried, or in
    /// scope of a `DeadlineLayer`).
    ///
    /// Default: a tenth of the bound per attempt of the
    /// `AttemptTimeoutLayer` inside this retry (learned as each request
    /// is first called), or zero when there is none to learn from. Set it
    /// (zero included) to replace that rule.
    #[must_use]
    pub fn min_time_left(mut self, min: Duration) -> Self {
        self.min_time_left = Some(min);
        self
    }

    /// A shared [`RetryBudget`] (default none: retries are bounded only
    /// by the attempts). Every request deposits, every retry withdraws.
    #[must_use]
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Where jitter comes from (default [`FastRandom`]); a
    /// [`SeededRandom`](crate::SeededRandom) makes delays repeatable.
    #[must_use]
    pub fn random(mut self, random: impl RandomSource) -> Self {
        self.random = Arc::new(random);
        self
    }

    /// Where `Retry` and `RetriesExhausted` events go (default: only
    /// `tracing`).
    #[must_use]
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = sink;
        self
    }

    /// The name events carry (default `"retry"`).
    #[must_use]
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// Checks the configuration and builds the policy.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the field: `max_attempts` or
    /// `max_attempts_for` outside `1..=100`, a backoff whose multiplier is
    /// below 1 or not finite, whose max is below its base, or a
    /// decorrelated backoff with a zero base.
    pub fn build(self) -> Result<RetryPolicy<C, P>, InvalidConfig> {
        const BOUND: &str = "must be in 1..=100";
        if !(1..=100).contains(&self.max_attempts) {
            return Err(InvalidConfig::new(
                "retry",
                "max_attempts",
                self.max_attempts,
                BOUND,
            ));
        }
        let mut max_any = self.max_attempts;
        for o in &self.per_kind {
            if let Some(n) = o.max_attempts {
                if !(1..=100).contains(&n) {
                    return Err(InvalidConfig::new("retry", "max_attempts_for", n, BOUND));
                }
                max_any = max_any.max(n);
            }
        }
        self.backoff.validate()?;
        Ok(RetryPolicy {
            shared: Handle::Counted(Arc::new(Shared {
                classifier: self.classifier,
                retry_if: self.retry_if,
                max_attempts: self.max_attempts,
                max_any_attempts: max_any,
                per_kind: self.per_kind,
                backoff: self.backoff,
                max_retry_after: self.max_retry_after,
                min_time_left: self.min_time_left,
                budget: self.budget,
                random: self.random,
                events: self.events,
                stats: Arc::new(RetryStats::new(self.name.clone())),
                name: self.name,
                kept_spares: AtomicU32::new(0),
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_rejects_bad_attempts() {
        let e = RetryPolicy::builder().max_attempts(0).build().unwrap_err();
        assert_eq!(e.field, "max_attempts");
        assert!(e.to_string().contains("must be in 1..=100"), "{e}");
        let e = RetryPolicy::builder()
            .max_attempts_for(FailureKind::RateLimited, 1000)
            .build()
            .unwrap_err();
        assert_eq!(e.field, "max_attempts_for");
        let e = RetryPolicy::builder()
            .backoff(Backoff::exponential(Duration::from_secs(1)).multiplier(f64::NAN))
            .build()
            .unwrap_err();
        assert_eq!(e.field, "backoff.multiplier");
    }

    #[test]
    fn overrides_and_max_any() {
        let p = RetryPolicy::builder()
            .max_attempts(2)
            .max_attempts_for(FailureKind::RateLimited, 5)
            .never_retry(FailureKind::Unknown)
            .base_delay_for(FailureKind::RateLimited, Duration::from_secs(1))
            .build()
            .unwrap();
        let s = &p.shared;
        assert_eq!(s.max_any_attempts, 5);
        assert_eq!(s.max_attempts_for(FailureKind::RateLimited), 5);
        assert_eq!(s.max_attempts_for(FailureKind::Unknown), 1);
        assert_eq!(s.max_attempts_for(FailureKind::Network), 2);
        assert_eq!(
            s.base_delay_for(FailureKind::RateLimited),
            Some(Duration::from_secs(1))
        );
        assert_eq!(s.base_delay_for(FailureKind::Network), None);
        assert_eq!(RetryPolicy::default().max_attempts(), 3);
    }
}
