//! [`Breaker`], the cheap cloneable handle, and its [`Component`] face.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use battlement_core::{
    AsComponent, CircuitState, Component, ComponentHealth, ComponentKind, Control, ControlError,
    ErrorClassifier, EventSink, FailureKind, HealthStatus, Leak, Metric, MetricType, Name,
    SharedRef,
};

use crate::config::{BreakerBuilder, Config};
use crate::layer::BreakerLayer;
use crate::state::{BreakerMetrics, Shared};

/// A circuit breaker: a cheap cloneable handle to state shared by every
/// service built from it.
///
/// ```
/// use battlement_breaker::{Breaker, CircuitState};
///
/// let breaker = Breaker::builder("inventory").consecutive_failures(3).build().unwrap();
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// breaker.force_open();
/// assert_eq!(breaker.state(), CircuitState::ForcedOpen);
/// breaker.reset();
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// ```
#[derive(Clone)]
pub struct Breaker {
    pub(crate) shared: SharedRef<Shared>,
}

impl Breaker {
    /// Starts building a breaker named `name`.
    pub fn builder(name: impl Into<Name>) -> BreakerBuilder {
        BreakerBuilder::new(name)
    }

    pub(crate) fn from_parts(
        name: Name,
        config: Config,
        events: EventSink,
        start: CircuitState,
    ) -> Self {
        Breaker {
            shared: SharedRef::new(Shared::new(name, config, events, start)),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The window its rates are computed over.
    pub fn window(&self) -> crate::WindowConfig {
        self.shared.config.window
    }

    /// The state now. An `Open` breaker whose open duration has passed
    /// reads `HalfOpen`: it admits the next call as a probe. The
    /// transition itself (and its event) happens at that call.
    pub fn state(&self) -> CircuitState {
        self.shared.state()
    }

    /// The time left before an `Open` breaker admits probes; `None` in
    /// any other state (`ForcedOpen` has no end) and once the open
    /// duration has passed.
    pub fn open_remaining(&self) -> Option<Duration> {
        self.shared.open_remaining()
    }

    /// A snapshot of the breaker's figures.
    pub fn metrics(&self) -> BreakerMetrics {
        self.shared.metrics()
    }

    /// Back to `Closed` with an empty window and the open duration reset.
    pub fn reset(&self) {
        self.shared.set(CircuitState::Closed, "reset by hand");
    }

    /// `Closed` with an empty window (same as [`reset`](Self::reset); the
    /// name an operator expects after `force_open`).
    pub fn close(&self) {
        self.shared.set(CircuitState::Closed, "closed by hand");
    }

    /// Rejects every call until [`reset`](Self::reset) or
    /// [`close`](Self::close).
    pub fn force_open(&self) {
        self.shared
            .set(CircuitState::ForcedOpen, "forced open by hand");
    }

    /// Admits every call and records nothing until reset.
    pub fn disable(&self) {
        self.shared.set(CircuitState::Disabled, "disabled by hand");
    }

    /// Records and reports, never trips, until reset.
    pub fn metrics_only(&self) {
        self.shared
            .set(CircuitState::MetricsOnly, "metrics only by hand");
    }

    /// A layer that wraps services in this breaker, judging results with
    /// [`ErrorClassifier`].
    pub fn layer(&self) -> BreakerLayer<ErrorClassifier> {
        BreakerLayer::new(self.clone())
    }
}

/// The breaker's state is kept for the rest of the process: copies of the
/// handle, of its services and of their response futures count no
/// reference (see [`Leak`]).
///
/// ```
/// use battlement_breaker::Breaker;
/// use battlement_core::Leak;
///
/// let breaker = Breaker::builder("inventory").build().unwrap().leak();
/// let copy = breaker.clone();
/// copy.force_open();
/// assert_eq!(breaker.state(), battlement_breaker::CircuitState::ForcedOpen);
/// ```
impl Leak for Breaker {
    fn leak(self) -> Self {
        Breaker {
            shared: self.shared.leak(),
        }
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .finish()
    }
}

impl AsComponent for Breaker {
    fn as_component(&self) -> Arc<dyn Component> {
        self.shared.arc()
    }
}

impl Component for Shared {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Breaker
    }

    fn health(&self) -> ComponentHealth {
        let m = self.metrics();
        let status = match m.state {
            CircuitState::Open | CircuitState::HalfOpen | CircuitState::ForcedOpen => {
                HealthStatus::Degraded
            }
            _ => HealthStatus::Healthy,
        };
        let unix_ms = m
            .last_transition
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let open_ms = self
            .open_remaining()
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        use MetricType::{Counter, Gauge};
        let mut by_kind = battlement_core::Details::new();
        let mut health = ComponentHealth::new(status);
        for kind in FailureKind::ALL {
            let n = m.failures_of(kind);
            if n > 0 {
                by_kind.insert(kind.as_str(), n);
                health = health.labelled_metric(Metric {
                    name: "failures_by_kind_total",
                    help: "Failed calls by kind of failure.",
                    kind: Counter,
                    labels: vec![("kind", kind.as_str().into())],
                    value: n as f64,
                });
            }
        }
        // A stateset, OpenMetrics style: one sample per state, 1 for the
        // state the breaker is in, so a dashboard shows the state without
        // decoding a number. (prometheus-client has no stateset type: it is
        // exposed as the gauge Prometheus makes of one.)
        for state in CircuitState::ALL {
            health = health.labelled_metric(Metric {
                name: "state",
                help: "The breaker's state: 1 for the state it is in, 0 for the others.",
                kind: Gauge,
                labels: vec![("state", state.as_str().into())],
                value: if state == m.state { 1.0 } else { 0.0 },
            });
        }
        health
            .detail("state", m.state.as_str())
            .detail("window_calls", m.window_calls)
            .detail("window_failures", m.window_failures)
            .detail("window_slow_calls", m.window_slow_calls)
            .detail("failure_rate", m.failure_rate)
            .detail("slow_rate", m.slow_rate)
            .detail("consecutive_failures", m.consecutive_failures)
            .detail("consecutive_successes", m.consecutive_successes)
            .detail("calls", m.calls)
            .detail("successes", m.successes)
            .detail("failures", m.failures)
            .detail("failures_by_kind", by_kind)
            .detail("timeouts", m.timeouts())
            .detail("trips", m.trips)
            .detail("ignored", m.ignored)
            .detail("slow_calls", m.slow_calls)
            .detail("rejections", m.rejections)
            .detail("last_transition_unix_ms", unix_ms)
            .detail(
                "since_transition_ms",
                m.since_transition.as_secs_f64() * 1000.0,
            )
            .detail("open_duration_ms", m.open_duration.as_secs_f64() * 1000.0)
            .detail("open_remaining_ms", open_ms)
            .detail("reopens", m.reopens)
            .metric(
                "calls_total",
                "Calls completed and recorded.",
                Counter,
                m.calls as f64,
            )
            .metric(
                "successes_total",
                "Successful calls.",
                Counter,
                m.successes as f64,
            )
            .metric(
                "failures_total",
                "Failed calls.",
                Counter,
                m.failures as f64,
            )
            .metric(
                "trips_total",
                "Trips: transitions to open, re-opens included.",
                Counter,
                m.trips as f64,
            )
            .metric(
                "timeouts_total",
                "Calls that failed with a timeout.",
                Counter,
                m.timeouts() as f64,
            )
            .metric(
                "rejections_total",
                "Calls refused by the breaker.",
                Counter,
                m.rejections as f64,
            )
            .metric(
                "slow_calls_total",
                "Calls slower than the slow-call threshold.",
                Counter,
                m.slow_calls as f64,
            )
            .metric(
                "failure_rate",
                "Failure rate over the sliding window.",
                Gauge,
                m.failure_rate,
            )
            .metric(
                "slow_rate",
                "Slow-call rate over the sliding window.",
                Gauge,
                m.slow_rate,
            )
            .metric(
                "consecutive_failures",
                "Failures in a row.",
                Gauge,
                f64::from(m.consecutive_failures),
            )
            .metric(
                "consecutive_successes",
                "Successes in a row.",
                Gauge,
                f64::from(m.consecutive_successes),
            )
            .metric(
                "since_transition_seconds",
                "Seconds since the last state transition.",
                Gauge,
                m.since_transition.as_secs_f64(),
            )
            .metric(
                "open_duration_seconds",
                "The open duration in force or last used.",
                Gauge,
                m.open_duration.as_secs_f64(),
            )
            .metric(
                "open",
                "1 when the breaker rejects calls (open or forced open).",
                Gauge,
                if m.state.is_open() { 1.0 } else { 0.0 },
            )
    }

    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::Reset => self.set(CircuitState::Closed, "reset by hand"),
            Control::Close => self.set(CircuitState::Closed, "closed by hand"),
            Control::ForceOpen => self.set(CircuitState::ForcedOpen, "forced open by hand"),
            Control::Disable => self.set(CircuitState::Disabled, "disabled by hand"),
            Control::MetricsOnly => self.set(CircuitState::MetricsOnly, "metrics only by hand"),
            other => return Err(ControlError::unsupported(&self.name, other)),
        }
        Ok(())
    }
}
