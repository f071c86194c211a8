//! The SRE book's client-side adaptive throttle: [`AdaptiveThrottle`],
//! [`ThrottleLayer`], [`ThrottleService`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use battlement_core::{
    AsComponent, BoxError, Classify, Component, ComponentHealth, ComponentKind, ErrorClassifier,
    FailureKind, HealthStatus, InvalidConfig, MetricType, Name, Outcome, Throttled,
};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::Signal;
use crate::sync::AtomicU64;

type Random = Arc<dyn Fn() -> f64 + Send + Sync>;

/// Client-side adaptive throttling (Google SRE book, "Handling Overload"):
/// over a sliding window the client counts `requests` (every call it
/// attempted, throttled ones included) and `accepts` (calls the backend
/// did not reject), and refuses a new call locally with probability
///
/// `min(max_probability, max(0, (requests − K·accepts) / (requests + 1)))`
///
/// failing it with [`Throttled`]. While the backend accepts at least one
/// call in `K`, nothing is refused; the more it rejects, the less traffic
/// it is sent, and the throttle lets more through as accepts come back.
///
/// A cheap cloneable handle; apply it with [`ThrottleLayer`], read it as a
/// governor [`Signal`] with [`signal`](Self::signal).
///
/// A call counts as rejected by the backend when its outcome (the
/// classifier's; [`ErrorClassifier`] by default) is a failure of kind
/// `RateLimited`, `Unavailable` or `Rejected`; any other outcome is an
/// accept. The window is a ring of time buckets updated with atomics (no
/// lock); a call racing a bucket's rotation may be miscounted, which the
/// estimate tolerates.
///
/// A call whose response future is dropped before the backend answered
/// (a caller's deadline, a hedge or first-success fan-out cancelling the
/// losers) counts as **neither**: its request is un-counted from the
/// bucket it was counted in, since it tells nothing about whether the
/// backend would have accepted it. Counting it as a request without an
/// accept would read as a rejection and make the client refuse a healthy
/// backend afterwards. When throttling by hand, give an abandoned call
/// back with [`cancel`](Self::cancel).
///
/// ```
/// use battlement_gate::AdaptiveThrottle;
///
/// let throttle = AdaptiveThrottle::builder("backend").k(2.0).build().unwrap();
/// assert_eq!(throttle.probability(), 0.0);
/// ```
#[derive(Clone)]
pub struct AdaptiveThrottle {
    shared: Arc<ThrottleShared>,
}

struct Bucket {
    epoch: AtomicU64,
    requests: AtomicU64,
    accepts: AtomicU64,
}

struct ThrottleShared {
    name: Name,
    k: f64,
    max_probability: f64,
    window: Duration,
    bucket_nanos: u64,
    buckets: Box<[Bucket]>,
    start: Instant,
    random: Random,
    throttled: AtomicU64,
}

/// Configures an [`AdaptiveThrottle`]. Made by [`AdaptiveThrottle::builder`].
#[derive(Clone)]
pub struct ThrottleBuilder {
    name: Name,
    k: f64,
    max_probability: f64,
    window: Duration,
    buckets: usize,
    random: Random,
}

impl fmt::Debug for ThrottleBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleBuilder")
            .field("name", &self.name)
            .field("k", &self.k)
            .field("max_probability", &self.max_probability)
            .field("window", &self.window)
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

impl ThrottleBuilder {
    /// The most buckets a window may have: `build()` rejects more.
    pub const MAX_BUCKETS: usize = 1000;

    /// The multiplier `K`: the backend may reject up to `1 − 1/K` of the
    /// calls before the client throttles. Default: 2. At least 1.
    #[must_use]
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// The highest rejection probability, so some traffic always probes the
    /// backend. Default: 0.9. In `[0, 1]`.
    #[must_use]
    pub fn max_probability(mut self, p: f64) -> Self {
        self.max_probability = p;
        self
    }

    /// The length of the sliding window. Default: 2 minutes (the SRE
    /// book's). Above zero.
    #[must_use]
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How many buckets the window is split into (three atomics each,
    /// summed on every call). Default: 10. In
    /// `1..=`[`MAX_BUCKETS`](Self::MAX_BUCKETS).
    #[must_use]
    pub fn buckets(mut self, buckets: usize) -> Self {
        self.buckets = buckets;
        self
    }

    /// The source of uniform random numbers in `[0, 1)` the throttle draws
    /// against the probability. Default: `fastrand::f64`. Inject a fixed
    /// or scripted source for deterministic tests.
    #[must_use]
    pub fn random(mut self, random: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.random = Arc::new(random);
        self
    }

    /// Validates the configuration and builds the throttle.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first field out of its bounds.
    pub fn build(self) -> Result<AdaptiveThrottle, InvalidConfig> {
        if !(self.k.is_finite() && self.k >= 1.0) {
            return Err(InvalidConfig::new("throttle", "k", self.k, "must be >= 1"));
        }
        if !(0.0..=1.0).contains(&self.max_probability) {
            return Err(InvalidConfig::new(
                "throttle",
                "max_probability",
                self.max_probability,
                "must be in [0, 1]",
            ));
        }
        if !(1..=Self::MAX_BUCKETS).contains(&self.buckets) {
            return Err(InvalidConfig::new(
                "throttle",
                "buckets",
                self.buckets,
                "must be in 1..=1000",
            ));
        }
        let bucket_nanos =
            u64::try_from(self.window.as_nanos() / self.buckets as u128).unwrap_or(u64::MAX);
        if bucket_nanos == 0 {
            return Err(InvalidConfig::new(
                "throttle",
                "window",
                self.window,
                "must be above zero (and at least one nanosecond per bucket)",
            ));
        }
        let buckets = (0..self.buckets)
            .map(|_| Bucket {
                epoch: AtomicU64::new(u64::MAX),
                requests: AtomicU64::new(0),
                accepts: AtomicU64::new(0),
            })
            .collect();
        Ok(AdaptiveThrottle {
            shared: Arc::new(ThrottleShared {
                name: self.name,
                k: self.k,
                max_probability: self.max_probability,
                window: self.window,
                bucket_nanos,
                buckets,
                start: Instant::now(),
                random: self.random,
                throttled: AtomicU64::new(0),
            }),
        })
    }
}

impl ThrottleShared {
    fn epoch(&self, now: Instant) -> u64 {
        let nanos =
            u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        nanos / self.bucket_nanos
    }

    fn bucket(&self, now: Instant) -> &Bucket {
        self.bucket_at(self.epoch(now))
    }

    fn bucket_at(&self, epoch: u64) -> &Bucket {
        let b = &self.buckets[(epoch % self.buckets.len() as u64) as usize];
        let seen = b.epoch.load(Relaxed);
        if seen != epoch
            && b.epoch
                .compare_exchange(seen, epoch, Relaxed, Relaxed)
                .is_ok()
        {
            b.requests.store(0, Relaxed);
            b.accepts.store(0, Relaxed);
        }
        b
    }

    fn totals(&self, now: Instant) -> (u64, u64) {
        let epoch = self.epoch(now);
        let n = self.buckets.len() as u64;
        let (mut requests, mut accepts) = (0, 0);
        for b in self.buckets.iter() {
            let e = b.epoch.load(Relaxed);
            if e <= epoch && epoch - e < n {
                requests += b.requests.load(Relaxed);
                accepts += b.accepts.load(Relaxed);
            }
        }
        (requests, accepts)
    }

    fn probability(&self, now: Instant) -> f64 {
        let (requests, accepts) = self.totals(now);
        let r = requests as f64;
        let p = (r - self.k * accepts as f64) / (r + 1.0);
        p.clamp(0.0, self.max_probability)
    }
}

impl AdaptiveThrottle {
    /// A builder for a throttle named `name`, with the defaults given on
    /// each method.
    pub fn builder(name: impl Into<Name>) -> ThrottleBuilder {
        ThrottleBuilder {
            name: name.into(),
            k: 2.0,
            max_probability: 0.9,
            window: Duration::from_secs(120),
            buckets: 10,
            random: Arc::new(fastrand::f64),
        }
    }

    /// A throttle named `name` with the default configuration.
    pub fn new(name: impl Into<Name>) -> Self {
        Self::builder(name)
            .build()
            .expect("the default throttle configuration is valid")
    }

    /// The throttle's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// The rejection probability now.
    pub fn probability(&self) -> f64 {
        self.shared.probability(Instant::now())
    }

    /// `(requests, accepts)` in the window now.
    pub fn totals(&self) -> (u64, u64) {
        self.shared.totals(Instant::now())
    }

    /// Calls refused locally so far.
    pub fn throttled(&self) -> u64 {
        self.shared.throttled.load(Relaxed)
    }

    /// Decides one call: `Err(Throttled)` to refuse it, else `Ok(())` (the
    /// request is counted either way). Use this to throttle by hand; the
    /// layer calls it for you. Follow a call let through with
    /// [`record`](Self::record) once the backend answers, or with
    /// [`cancel`](Self::cancel) if it is abandoned first.
    ///
    /// # Errors
    ///
    /// [`Throttled`] when the call is refused.
    pub fn try_acquire(&self) -> Result<(), Throttled> {
        self.acquire().map(|_| ())
    }

    /// As `try_acquire`, returning the epoch of the bucket the request was
    /// counted in, so its answer is counted in the same bucket without
    /// another clock read.
    fn acquire(&self) -> Result<u64, Throttled> {
        let now = Instant::now();
        let s = &self.shared;
        let p = s.probability(now);
        let epoch = s.epoch(now);
        s.bucket_at(epoch).requests.fetch_add(1, Relaxed);
        if p > 0.0 && (s.random)() < p {
            s.throttled.fetch_add(1, Relaxed);
            return Err(Throttled {
                name: s.name.clone(),
                probability: p,
            });
        }
        Ok(epoch)
    }

    /// Counts an accept in the bucket of `epoch`, unless that bucket has
    /// been reused for a later epoch since (the answer came after the
    /// request left the window).
    fn record_at(&self, epoch: u64, accepted: bool) {
        if !accepted {
            return;
        }
        let s = &self.shared;
        let b = &s.buckets[(epoch % s.buckets.len() as u64) as usize];
        if b.epoch.load(Relaxed) == epoch {
            b.accepts.fetch_add(1, Relaxed);
        }
    }

    /// Un-counts the request of an abandoned call `epoch` counted it in,
    /// unless that bucket has been reused since (the request already left
    /// the window). Saturates at zero, so a race with the bucket's reset
    /// cannot wrap the count.
    fn forget_at(&self, epoch: u64) {
        let s = &self.shared;
        let b = &s.buckets[(epoch % s.buckets.len() as u64) as usize];
        if b.epoch.load(Relaxed) == epoch {
            let _ = b
                .requests
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Un-counts a call [`try_acquire`](Self::try_acquire) let through and
    /// that was abandoned before the backend answered (cancelled, timed
    /// out locally): it then counts as neither a request nor an accept.
    /// The layer does this when a response future is dropped.
    pub fn cancel(&self) {
        let s = &self.shared;
        self.forget_at(s.epoch(Instant::now()));
    }

    /// Records the backend's answer to a call [`try_acquire`](Self::try_acquire)
    /// let through: `accepted` unless the backend rejected it.
    pub fn record(&self, accepted: bool) {
        if accepted {
            self.shared
                .bucket(Instant::now())
                .accepts
                .fetch_add(1, Relaxed);
        }
    }

    /// A layer applying this throttle.
    pub fn layer(&self) -> ThrottleLayer {
        ThrottleLayer::new(self.clone())
    }

    /// A governor [`Signal`] reading the rejection probability
    /// (`throttle_probability`, in `[0, 1]`).
    pub fn signal(&self) -> ThrottleSignal {
        ThrottleSignal {
            throttle: self.clone(),
        }
    }
}

/// `true` when an outcome means the backend refused the call (overload).
fn rejected_by_backend(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Failure(f) if matches!(
            f.kind,
            FailureKind::RateLimited | FailureKind::Unavailable | FailureKind::Rejected
        )
    )
}

impl fmt::Debug for AdaptiveThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottle")
            .field("name", &self.shared.name)
            .field("k", &self.shared.k)
            .field("max_probability", &self.shared.max_probability)
            .field("window", &self.shared.window)
            .finish_non_exhaustive()
    }
}

impl Component for ThrottleShared {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Throttle
    }

    fn health(&self) -> ComponentHealth {
        let now = Instant::now();
        let (requests, accepts) = self.totals(now);
        let p = self.probability(now);
        let throttled = self.throttled.load(Relaxed);
        let status = if p > 0.0 {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        ComponentHealth::new(status)
            .detail("probability", p)
            .detail("requests", requests)
            .detail("accepts", accepts)
            .detail("throttled", throttled)
            .detail("k", self.k)
            .detail("window_ms", self.window.as_millis() as u64)
            .metric(
                "probability",
                "Local rejection probability.",
                MetricType::Gauge,
                p,
            )
            .metric(
                "throttled_total",
                "Calls refused locally.",
                MetricType::Counter,
                throttled as f64,
            )
    }
}

impl AsComponent for AdaptiveThrottle {
    fn as_component(&self) -> Arc<dyn Component> {
        self.shared.clone()
    }
}

/// The rejection probability of an [`AdaptiveThrottle`] as a governor
/// [`Signal`]: made by [`AdaptiveThrottle::signal`].
#[derive(Debug)]
pub struct ThrottleSignal {
    throttle: AdaptiveThrottle,
}

impl Signal for ThrottleSignal {
    fn name(&self) -> &str {
        "throttle_probability"
    }

    fn sample(&mut self, now: Instant) -> f64 {
        self.throttle.shared.probability(now)
    }
}

/// Applies an [`AdaptiveThrottle`] to a service; `C` judges whether the
/// backend accepted a call ([`ErrorClassifier`] by default).
///
/// ```
/// use battlement_gate::{AdaptiveThrottle, ThrottleLayer};
/// use tower::ServiceBuilder;
///
/// let throttle = AdaptiveThrottle::new("backend");
/// let svc = ServiceBuilder::new()
///     .layer(ThrottleLayer::new(throttle))
///     .service(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// # let _ = svc;
/// ```
#[derive(Debug, Clone)]
pub struct ThrottleLayer<C = ErrorClassifier> {
    throttle: AdaptiveThrottle,
    classifier: C,
}

impl ThrottleLayer {
    /// A layer for `throttle`, judging calls with [`ErrorClassifier`].
    pub fn new(throttle: AdaptiveThrottle) -> Self {
        ThrottleLayer {
            throttle,
            classifier: ErrorClassifier::new(),
        }
    }
}

impl<C> ThrottleLayer<C> {
    /// Judges calls with `classifier` instead (for example one that sees an
    /// HTTP 429 or 503 response as a rejection).
    pub fn classifier<D>(self, classifier: D) -> ThrottleLayer<D> {
        ThrottleLayer {
            throttle: self.throttle,
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for ThrottleLayer<C> {
    type Service = ThrottleService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ThrottleService {
            inner,
            throttle: self.throttle.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// A service behind an [`AdaptiveThrottle`]: made by [`ThrottleLayer`].
#[derive(Debug, Clone)]
pub struct ThrottleService<S, C = ErrorClassifier> {
    inner: S,
    throttle: AdaptiveThrottle,
    classifier: C,
}

impl<S, C> ThrottleService<S, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the throttle service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for ThrottleService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ThrottleFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.throttle.acquire() {
            Ok(epoch) => ThrottleFuture {
                kind: ThrottleKind::Called {
                    fut: self.inner.call(req),
                    ticket: Ticket {
                        throttle: self.throttle.clone(),
                        epoch,
                        answered: false,
                    },
                    classifier: self.classifier.clone(),
                },
            },
            Err(e) => ThrottleFuture {
                kind: ThrottleKind::Throttled { error: Some(e) },
            },
        }
    }
}

pin_project! {
    /// The response future of [`ThrottleService`].
    pub struct ThrottleFuture<F, C> {
        #[pin]
        kind: ThrottleKind<F, C>,
    }
}

pin_project! {
    #[project = ThrottleKindProj]
    enum ThrottleKind<F, C> {
        Called { #[pin] fut: F, ticket: Ticket, classifier: C },
        Throttled { error: Option<Throttled> },
    }
}

/// The request a call let through counted: un-counted when the call is
/// dropped before the backend answered, so a cancelled call counts as
/// neither a request nor an accept.
struct Ticket {
    throttle: AdaptiveThrottle,
    epoch: u64,
    answered: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.answered {
            self.throttle.forget_at(self.epoch);
        }
    }
}

impl<F, C> fmt::Debug for ThrottleFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleFuture").finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ThrottleFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ThrottleKindProj::Called {
                fut,
                ticket,
                classifier,
            } => {
                let res = ready!(fut.poll(cx)).map_err(Into::into);
                let accepted = !rejected_by_backend(&classifier.classify(&res));
                ticket.answered = true;
                ticket.throttle.record_at(ticket.epoch, accepted);
                Poll::Ready(res)
            }
            ThrottleKindProj::Throttled { error } => Poll::Ready(Err(Box::new(
                error
                    .take()
                    .expect("ThrottleFuture polled after completion"),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn formula_and_window() {
        let t = AdaptiveThrottle::builder("t")
            .max_probability(1.0)
            .window(Duration::from_secs(10))
            .buckets(10)
            .random(|| 0.999_999)
            .build()
            .unwrap();
        // 10 requests, 2 accepts: (10 - 4) / 11.
        for i in 0..10 {
            t.try_acquire().unwrap();
            t.record(i < 2);
        }
        assert_eq!(t.totals(), (10, 2));
        assert!((t.probability() - 6.0 / 11.0).abs() < 1e-9);
        // A call abandoned by hand counts as neither.
        t.try_acquire().unwrap();
        t.cancel();
        assert_eq!(t.totals(), (10, 2));
        // Everything slides out of the window.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(t.totals(), (0, 0));
        assert_eq!(t.probability(), 0.0);
    }
}
