//! [`AdaptiveLimit`]: a concurrency limit that finds its own value, window
//! by window.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use battlement_core::{
    AsComponent, BoxError, Component, ComponentHealth, ComponentKind, Control, ControlError,
    FailureKind, LimitExceeded, MetricType, Name, Outcome,
};
use tokio::time::Instant;

use crate::algorithm::{Algorithm, LimitState, Sample};
use crate::config::AdaptiveLimitBuilder;
use crate::layer::AdaptiveLimitLayer;
use crate::slots::{Flavour, LoadMetrics, Slots, Wait};
use crate::sync::{AtomicU32, AtomicU64, Mutex, MutexGuard};

/// The validated settings of an adaptive limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdaptiveConfig {
    pub(crate) algorithm: Algorithm,
    pub(crate) initial: u32,
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) window: Duration,
    pub(crate) min_samples: u32,
}

/// What an adaptive limit adds to the slot pool: the current window's
/// accumulators and the algorithm.
pub(crate) struct Adaptive {
    pub(crate) config: AdaptiveConfig,
    base: Instant,
    window_ns: u64,
    window_end_ns: AtomicU64,
    samples: AtomicU64,
    rtt_sum_ns: AtomicU64,
    max_in_flight: AtomicU32,
    drops: AtomicU64,
    windows: AtomicU64,
    dropped: AtomicU64,
    state: Mutex<Algo>,
}

struct Algo {
    limit: LimitState,
    last: Option<Sample>,
}

impl Flavour for Adaptive {
    fn refusal(slots: &Slots<Self>, waited: Duration) -> BoxError {
        Box::new(LimitExceeded::new(
            slots.name.clone(),
            slots.limit(),
            waited,
            slots.retry_after,
        ))
    }
}

/// Whether an outcome is a sample, a drop, or neither.
fn judge(outcome: &Outcome) -> Option<bool> {
    match outcome {
        Outcome::Success => Some(false),
        Outcome::Failure(f) => match f.kind {
            FailureKind::Timeout
            | FailureKind::RateLimited
            | FailureKind::Unavailable
            | FailureKind::Rejected => Some(true),
            _ => None,
        },
        _ => None,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Adaptive {
    pub(crate) fn new(config: AdaptiveConfig) -> Self {
        let window_ns = nanos(config.window);
        Adaptive {
            config,
            base: Instant::now(),
            window_ns,
            window_end_ns: AtomicU64::new(window_ns),
            samples: AtomicU64::new(0),
            rtt_sum_ns: AtomicU64::new(0),
            max_in_flight: AtomicU32::new(0),
            drops: AtomicU64::new(0),
            windows: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            state: Mutex::new(Algo {
                limit: LimitState::new(config.algorithm, config.initial, config.min, config.max),
                last: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Algo> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Records one completed call into the window, and closes the window when
/// it is due.
pub(crate) fn record(slots: &Slots<Adaptive>, start: Instant, outcome: &Outcome) {
    let Some(dropped) = judge(outcome) else {
        return;
    };
    let a = &slots.flavour;
    let now = Instant::now();
    a.samples.fetch_add(1, Relaxed);
    a.rtt_sum_ns
        .fetch_add(nanos(now.saturating_duration_since(start)), Relaxed);
    a.max_in_flight.fetch_max(slots.in_flight(), Relaxed);
    if dropped {
        a.drops.fetch_add(1, Relaxed);
        a.dropped.fetch_add(1, Relaxed);
    }
    let now_ns = nanos(now.saturating_duration_since(a.base));
    if now_ns >= a.window_end_ns.load(Relaxed) {
        close_window(slots, now_ns);
    }
}

/// Feeds the window to the algorithm once it has lasted `window` and holds
/// `min_samples` calls (a window short of samples goes on); one completion
/// does it, the others carry on.
#[cold]
fn close_window(slots: &Slots<Adaptive>, now_ns: u64) {
    let a = &slots.flavour;
    let Ok(mut algo) = a.state.try_lock() else {
        return;
    };
    if now_ns < a.window_end_ns.load(Relaxed)
        || a.samples.load(Relaxed) < u64::from(a.config.min_samples)
    {
        return;
    }
    a.window_end_ns
        .store(now_ns.saturating_add(a.window_ns), Relaxed);
    let samples = a.samples.swap(0, Relaxed).max(1);
    let sum = a.rtt_sum_ns.swap(0, Relaxed);
    let sample = Sample::new(
        Duration::from_nanos(sum / samples),
        a.max_in_flight.swap(0, Relaxed),
        a.drops.swap(0, Relaxed) > 0,
    );
    let limit = algo.limit.update(&sample);
    algo.last = Some(sample);
    a.windows.fetch_add(1, Relaxed);
    drop(algo);
    slots.set_limit(limit);
}

fn reset(slots: &Slots<Adaptive>) {
    let a = &slots.flavour;
    let mut algo = a.lock();
    algo.limit.reset(a.config.initial);
    algo.last = None;
    a.samples.store(0, Relaxed);
    a.rtt_sum_ns.store(0, Relaxed);
    a.max_in_flight.store(0, Relaxed);
    a.drops.store(0, Relaxed);
    let now_ns = nanos(Instant::now().saturating_duration_since(a.base));
    a.window_end_ns
        .store(now_ns.saturating_add(a.window_ns), Relaxed);
    let limit = algo.limit.limit();
    drop(algo);
    slots.set_limit(limit);
}

/// An adaptive concurrency limit: a cheap cloneable handle to the state
/// every [`AdaptiveLimitLayer`] built from it shares.
///
/// At most [`limit`](Self::limit) calls are in flight; the limit moves once
/// per window, by the [`Algorithm`] chosen at build ([`Vegas`](crate::Vegas)
/// by default), within `[min, max]`. A call over the limit is refused at
/// once with [`LimitExceeded`] or, with
/// [`wait`](AdaptiveLimitBuilder::wait), waits for a slot as a bulkhead's
/// callers do.
///
/// ```
/// use battlement_limit::{AdaptiveLimit, Aimd};
///
/// let limiter = AdaptiveLimit::builder("backend")
///     .algorithm(Aimd::new())
///     .initial_limit(10)
///     .build()
///     .unwrap();
/// assert_eq!(limiter.limit(), 10);
/// assert_eq!(limiter.in_flight(), 0);
/// ```
#[derive(Clone)]
pub struct AdaptiveLimit {
    pub(crate) slots: Arc<Slots<Adaptive>>,
}

impl AdaptiveLimit {
    /// Starts building a limiter named `name`.
    pub fn builder(name: impl Into<Name>) -> AdaptiveLimitBuilder {
        AdaptiveLimitBuilder::new(name)
    }

    pub(crate) fn from_parts(
        name: Name,
        config: AdaptiveConfig,
        wait: Wait,
        retry_after: Option<Duration>,
    ) -> Self {
        let initial = config.initial.clamp(config.min, config.max);
        AdaptiveLimit {
            slots: Arc::new(Slots::new(
                name,
                initial,
                wait,
                retry_after,
                Adaptive::new(config),
            )),
        }
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.slots.name
    }

    /// The limit in force.
    pub fn limit(&self) -> u32 {
        self.slots.limit()
    }

    /// Calls holding a slot now.
    pub fn in_flight(&self) -> u32 {
        self.slots.in_flight()
    }

    /// Callers waiting for a slot now.
    pub fn waiting(&self) -> u32 {
        self.slots.waiting()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.slots.flavour.config.algorithm
    }

    /// Windows fed to the algorithm so far.
    pub fn windows(&self) -> u64 {
        self.slots.flavour.windows.load(Relaxed)
    }

    /// The last window's sample, if a window has closed.
    pub fn last_sample(&self) -> Option<Sample> {
        self.slots.flavour.lock().last
    }

    /// A snapshot of the figures.
    pub fn metrics(&self) -> LoadMetrics {
        self.slots.metrics()
    }

    /// `in_flight / limit` now: 1.0 when saturated. For a governor, wrap
    /// [`utilisation_signal`](Self::utilisation_signal) in
    /// `battlement_gate::signal_fn`.
    pub fn utilisation(&self) -> f64 {
        self.slots.metrics().utilisation()
    }

    /// A closure of the tick's time that reads
    /// [`utilisation`](Self::utilisation), in the shape
    /// `battlement_gate::signal_fn` takes:
    /// `signal_fn("limit_utilisation", limiter.utilisation_signal())`.
    pub fn utilisation_signal(&self) -> impl FnMut(Instant) -> f64 + Send + 'static {
        self.slots.clone().utilisation()
    }

    /// A closure of the tick's time that reads the share of calls refused
    /// since its previous call (`0.0` with no calls), for
    /// `battlement_gate::signal_fn`.
    pub fn rejection_rate_signal(&self) -> impl FnMut(Instant) -> f64 + Send + 'static {
        self.slots.clone().rejection_rate()
    }

    /// Back to the initial limit, with the window and what the algorithm
    /// remembers cleared. Totals are kept.
    pub fn reset(&self) {
        reset(&self.slots);
    }

    /// A layer that limits services with this limiter, judging outcomes
    /// with [`ErrorClassifier`](battlement_core::ErrorClassifier).
    pub fn layer(&self) -> AdaptiveLimitLayer {
        AdaptiveLimitLayer::new(self.clone())
    }
}

impl fmt::Debug for AdaptiveLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("name", &self.slots.name)
            .field("algorithm", &self.algorithm().as_str())
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl AsComponent for AdaptiveLimit {
    fn as_component(&self) -> Arc<dyn Component> {
        self.slots.clone()
    }
}

impl Component for Slots<Adaptive> {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Other("adaptive_limit".into())
    }

    fn health(&self) -> ComponentHealth {
        let a = &self.flavour;
        let (rtt_noload, last) = {
            let algo = a.lock();
            (algo.limit.rtt_noload(), algo.last)
        };
        let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let windows = a.windows.load(Relaxed);
        let dropped = a.dropped.load(Relaxed);
        self.pool_health()
            .detail("algorithm", a.config.algorithm.as_str())
            .detail("min_limit", a.config.min)
            .detail("max_limit", a.config.max)
            .detail("initial_limit", a.config.initial)
            .detail("windows", windows)
            .detail("dropped", dropped)
            .detail("rtt_noload_ms", ms(rtt_noload))
            .detail("last_rtt_ms", ms(last.map(|s| s.rtt)))
            .metric(
                "windows_total",
                "Windows fed to the limit algorithm.",
                MetricType::Counter,
                windows as f64,
            )
            .metric(
                "dropped_total",
                "Admitted calls that failed with an overload failure.",
                MetricType::Counter,
                dropped as f64,
            )
    }

    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::Reset => {
                reset(self);
                Ok(())
            }
            other => Err(ControlError::unsupported(&self.name, other)),
        }
    }
}
