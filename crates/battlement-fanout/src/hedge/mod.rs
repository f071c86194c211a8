//! Hedged requests: [`HedgeLayer`] sends a backup copy of a request that
//! has not been answered after a delay, and takes the first success.
//!
//! Tail latency of one service is often caused by a few slow instances or
//! a GC pause: a second copy of the slow request, sent after (say) the
//! 95th-percentile latency, usually comes back sooner, for a few percent
//! more load ("The Tail at Scale", Dean & Barroso). The budget keeps
//! that extra load bounded when the service slows down as a whole.
//!
//! ```
//! use std::time::Duration;
//! use battlement_fanout::HedgeLayer;
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let hedge = HedgeLayer::builder("lookup")
//!     .delay(Duration::from_millis(50))   // until the window has samples
//!     .percentile(95.0, 1000)             // then the p95 of the last 1000
//!     .max_hedges(1)
//!     .budget(0.1)                        // at most 1 backup per 10 requests
//!     .build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(hedge)
//!     .service(service_fn(|id: u64| async move { Ok::<_, BoxError>(id * 2) }));
//! assert_eq!(svc.ready().await?.call(21).await?, 42);
//! # Ok(()) }
//! ```
//!
//! # Decisions
//!
//! - The first `Ok` wins and every other attempt is dropped at once. An
//!   error does not end the request while another attempt is in flight;
//!   once every attempt sent has failed, the last error is returned at
//!   once (an error does not trigger a backup early: that is a retry's
//!   job).
//! - Each backup is sent `delay` after the previous attempt, on a clone of
//!   the inner service that is driven to readiness inside the response
//!   future; the request is cloned once per call, for the backups.
//! - The latency recorded for the percentile is the winning attempt's,
//!   from when that attempt was sent. Until `min_samples` latencies are
//!   recorded, the fixed `delay` is used.
//! - **The percentile window** is two fixed histograms of atomics (249
//!   log-linear buckets each, about 4 KB in all, whatever the window's
//!   size), each taking half of the window in turn: recording a latency is
//!   one relaxed increment, with no lock and no allocation, and the older
//!   half is emptied when a new half starts, so the percentile covers
//!   between the last `window / 2` and `window` latencies. Every
//!   `window / 16` samples (at least every sample) the recording call
//!   rescans the buckets (a fixed cost of a few hundred loads). The delay
//!   is the upper bound of the percentile's bucket: never below the exact
//!   nearest-rank percentile of those latencies, at most 12.5% above it.
//! - Services made by one layer share its latency window, budget and
//!   figures.
//! - The budget is a token bucket: each request credits `ratio` of a
//!   hedge, each backup costs one, and the bucket holds at most ten hedges
//!   of credit (so a quiet spell does not allow a burst of backups). It
//!   starts empty. A backup refused by the budget is not sent, and no
//!   later backup is sent for that request.
//! - **Deadline.** The request's [`Deadline`](battlement_core::Deadline)
//!   (read through [`DeadlineCarrier`](battlement_core::DeadlineCarrier),
//!   or the one in scope of an enclosing `DeadlineLayer` for a request
//!   that carries none) bounds the hedged call as a whole: when it passes before any attempt
//!   succeeded, every attempt is dropped and the call fails with
//!   [`DeadlineExceeded`](battlement_core::DeadlineExceeded) (`budget` the
//!   time from the call to the deadline, `elapsed` the time run), even if
//!   the inner service does not watch the deadline itself. A request whose
//!   deadline has already passed fails at once without calling the inner
//!   service. A backup is sent only while at least the hedge delay is left
//!   before the deadline: the delay is what the layer expects an answer to
//!   take (with a percentile, by definition), so a copy sent with less time
//!   left would most likely be cut by the deadline and only add load. That
//!   is decided when a backup is due, without touching the budget, and
//!   ends the backups for that request (counted in
//!   [`HedgeHandle::deadline_skipped`]). Each copy carries the request's
//!   deadline, so the inner service can also stop at it. A request with no
//!   deadline is hedged as before and never times out here.

mod budget;
mod future;
mod latency;
mod service;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use battlement_core::{
    AsComponent, Component, ComponentHealth, ComponentKind, EventSink, HealthStatus, InvalidConfig,
    MetricType, Name,
};

pub use future::ResponseFuture as HedgeFuture;
pub use service::{Hedge, HedgeLayer};

use budget::HedgeBudget;
use latency::LatencyWindow;

/// Builds a [`HedgeLayer`].
///
/// | setting | default |
/// |---|---|
/// | [`delay`](HedgeBuilder::delay) | 100 ms |
/// | [`percentile`](HedgeBuilder::percentile) | off: the fixed delay is used |
/// | [`min_samples`](HedgeBuilder::min_samples) | 10 (or the window size, if smaller) |
/// | [`max_hedges`](HedgeBuilder::max_hedges) | 1 |
/// | [`budget`](HedgeBuilder::budget) | none: every backup is allowed |
/// | [`events`](HedgeBuilder::events) | [`EventSink::none()`] |
#[derive(Debug, Clone)]
pub struct HedgeBuilder {
    name: Name,
    delay: Duration,
    percentile: Option<(f64, usize)>,
    min_samples: Option<usize>,
    max_hedges: u32,
    budget: Option<f64>,
    events: EventSink,
}

impl HedgeBuilder {
    /// The fixed delay before a backup, and the delay used while the
    /// percentile window has too few samples. Default: 100 ms.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sends backups after the `percentile` (in (0, 100]) of the last
    /// `window` latencies (1..=65536; see the module docs for how the
    /// window slides and how precise the value is) instead of the fixed
    /// delay. Default: off.
    #[must_use]
    pub fn percentile(mut self, percentile: f64, window: usize) -> Self {
        self.percentile = Some((percentile, window));
        self
    }

    /// How many latencies the window needs before the percentile is used.
    /// Default: 10, or the window size if smaller. Must be in
    /// `1..=window`.
    #[must_use]
    pub fn min_samples(mut self, n: usize) -> Self {
        self.min_samples = Some(n);
        self
    }

    /// At most this many backups per request (1..=16). Default: 1.
    #[must_use]
    pub fn max_hedges(mut self, n: u32) -> Self {
        self.max_hedges = n;
        self
    }

    /// Backups may be at most `ratio` of requests (in (0, 16]; 0.1: one
    /// backup per ten requests). Default: no budget.
    #[must_use]
    pub fn budget(mut self, ratio: f64) -> Self {
        self.budget = Some(ratio);
        self
    }

    /// Where [`Hedged`](battlement_core::EventKind::Hedged) events go.
    /// Default: [`EventSink::none()`] (they are only traced).
    #[must_use]
    pub fn events(mut self, events: EventSink) -> Self {
        self.events = events;
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the field when a bound above is broken.
    pub fn build(self) -> Result<HedgeLayer, InvalidConfig> {
        let window = match self.percentile {
            None => None,
            Some((p, _)) if !(p > 0.0 && p <= 100.0) => {
                return Err(InvalidConfig::new(
                    "hedge",
                    "percentile",
                    p,
                    "must be in (0, 100]",
                ));
            }
            Some((_, w)) if !(1..=65_536).contains(&w) => {
                return Err(InvalidConfig::new(
                    "hedge",
                    "window",
                    w,
                    "must be in 1..=65536",
                ));
            }
            Some((p, w)) => {
                let min = self.min_samples.unwrap_or(10.min(w));
                if min == 0 || min > w {
                    return Err(InvalidConfig::new(
                        "hedge",
                        "min_samples",
                        min,
                        format!("must be in 1..={w} (the window)"),
                    ));
                }
                Some(LatencyWindow::new(w, p, min))
            }
        };
        if !(1..=16).contains(&self.max_hedges) {
            return Err(InvalidConfig::new(
                "hedge",
                "max_hedges",
                self.max_hedges,
                "must be in 1..=16",
            ));
        }
        let budget = match self.budget {
            Some(r) if !(r > 0.0 && r <= 16.0) => {
                return Err(InvalidConfig::new(
                    "hedge",
                    "budget",
                    r,
                    "must be in (0, 16]",
                ));
            }
            Some(r) => Some(HedgeBudget::new(r)),
            None => None,
        };
        Ok(HedgeLayer {
            state: Arc::new(HedgeState {
                name: self.name,
                delay: self.delay,
                window,
                max_hedges: self.max_hedges,
                budget,
                events: self.events,
                requests: AtomicU64::new(0),
                hedges_sent: AtomicU64::new(0),
                hedges_won: AtomicU64::new(0),
                budget_denied: AtomicU64::new(0),
                deadline_skipped: AtomicU64::new(0),
                deadline_exceeded: AtomicU64::new(0),
            }),
        })
    }
}

/// The state one layer's services share; implements [`Component`].
#[derive(Debug)]
pub(crate) struct HedgeState {
    pub(crate) name: Name,
    delay: Duration,
    window: Option<LatencyWindow>,
    pub(crate) max_hedges: u32,
    budget: Option<HedgeBudget>,
    pub(crate) events: EventSink,
    pub(crate) requests: AtomicU64,
    pub(crate) hedges_sent: AtomicU64,
    pub(crate) hedges_won: AtomicU64,
    budget_denied: AtomicU64,
    pub(crate) deadline_skipped: AtomicU64,
    pub(crate) deadline_exceeded: AtomicU64,
}

impl HedgeState {
    /// Counts a request and returns the delay before its first backup.
    pub(crate) fn on_request(&self) -> Duration {
        self.requests.fetch_add(1, Relaxed);
        if let Some(b) = &self.budget {
            b.deposit();
        }
        self.current_delay()
    }

    pub(crate) fn current_delay(&self) -> Duration {
        self.window
            .as_ref()
            .and_then(LatencyWindow::current)
            .unwrap_or(self.delay)
    }

    pub(crate) fn record_latency(&self, latency: Duration) {
        if let Some(w) = &self.window {
            w.record(latency);
        }
    }

    /// Whether the budget allows one more backup now (and takes it).
    pub(crate) fn allow_hedge(&self) -> bool {
        match &self.budget {
            Some(b) if !b.withdraw() => {
                self.budget_denied.fetch_add(1, Relaxed);
                false
            }
            _ => true,
        }
    }
}

/// A cheap cloneable handle on a hedge layer's figures, for the registry
/// ([`AsComponent`]) or for reading them directly.
#[derive(Debug, Clone)]
pub struct HedgeHandle {
    pub(crate) state: Arc<HedgeState>,
}

impl HedgeHandle {
    /// Requests seen.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Relaxed)
    }

    /// Backups sent.
    pub fn hedges_sent(&self) -> u64 {
        self.state.hedges_sent.load(Relaxed)
    }

    /// Requests a backup answered first.
    pub fn hedges_won(&self) -> u64 {
        self.state.hedges_won.load(Relaxed)
    }

    /// Backups the budget refused.
    pub fn budget_denied(&self) -> u64 {
        self.state.budget_denied.load(Relaxed)
    }

    /// Backups not sent because too little time was left before the
    /// request's deadline (counted once per request).
    pub fn deadline_skipped(&self) -> u64 {
        self.state.deadline_skipped.load(Relaxed)
    }

    /// Requests the layer ended with
    /// [`DeadlineExceeded`](battlement_core::DeadlineExceeded) (their
    /// deadline passed before any attempt succeeded, or before they were
    /// sent).
    pub fn deadline_exceeded(&self) -> u64 {
        self.state.deadline_exceeded.load(Relaxed)
    }

    /// The delay a request arriving now would wait before its backup.
    pub fn current_delay(&self) -> Duration {
        self.state.current_delay()
    }
}

impl AsComponent for HedgeHandle {
    fn as_component(&self) -> Arc<dyn Component> {
        self.state.clone()
    }
}

impl Component for HedgeState {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Hedge
    }

    /// Always healthy: hedging is an optimisation; the figures say how
    /// much it is used.
    fn health(&self) -> ComponentHealth {
        let requests = self.requests.load(Relaxed) as f64;
        let sent = self.hedges_sent.load(Relaxed) as f64;
        let won = self.hedges_won.load(Relaxed) as f64;
        let denied = self.budget_denied.load(Relaxed) as f64;
        let deadline_skipped = self.deadline_skipped.load(Relaxed) as f64;
        let deadline_exceeded = self.deadline_exceeded.load(Relaxed) as f64;
        let delay = self.current_delay().as_secs_f64();
        ComponentHealth::new(HealthStatus::Healthy)
            .detail("requests", requests)
            .detail("hedges_sent", sent)
            .detail("hedges_won", won)
            .detail("budget_denied", denied)
            .detail("deadline_skipped", deadline_skipped)
            .detail("deadline_exceeded", deadline_exceeded)
            .detail("delay_ms", delay * 1000.0)
            .metric(
                "requests_total",
                "Requests seen.",
                MetricType::Counter,
                requests,
            )
            .metric(
                "hedges_sent_total",
                "Backup requests sent.",
                MetricType::Counter,
                sent,
            )
            .metric(
                "hedges_won_total",
                "Requests a backup answered first.",
                MetricType::Counter,
                won,
            )
            .metric(
                "budget_denied_total",
                "Backups refused by the budget.",
                MetricType::Counter,
                denied,
            )
            .metric(
                "deadline_skipped_total",
                "Backups not sent for lack of time before the deadline.",
                MetricType::Counter,
                deadline_skipped,
            )
            .metric(
                "deadline_exceeded_total",
                "Requests ended by their deadline.",
                MetricType::Counter,
                deadline_exceeded,
            )
            .metric(
                "delay_seconds",
                "Current delay before a backup.",
                MetricType::Gauge,
                delay,
            )
    }
}
