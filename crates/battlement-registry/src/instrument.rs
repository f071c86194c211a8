//! The shared figures of one instrumented service, and how they read as a
//! [`Component`].

use std::sync::atomic::{AtomicU64, Ordering};

use battlement_core::{
    Component, ComponentHealth, ComponentKind, Control, ControlError, FailureKind, HealthStatus,
    Metric, MetricType, Name, Outcome,
};
use serde_json::{Map, Value};

use crate::histogram::Histogram;

/// The figures of one instrumented service: relaxed atomics of fixed size.
///
/// To keep a successful call to three atomic additions (calls started, a
/// histogram bucket, the latency sum), successes and calls in flight are
/// derived rather than counted: every completed call is in the histogram,
/// so successes = completed − failures − ignored, and in flight = started −
/// completed − cancelled.
#[derive(Debug)]
pub(crate) struct InstrumentState {
    pub(crate) name: Name,
    pub(crate) started: AtomicU64,
    /// Completed calls whose latency was not sampled.
    pub(crate) unsampled: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) ignored: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) consecutive_failures: AtomicU64,
    pub(crate) by_kind: [AtomicU64; FailureKind::ALL.len()],
    pub(crate) latency: Histogram,
}

impl InstrumentState {
    pub(crate) fn new(name: Name) -> Self {
        InstrumentState {
            name,
            started: AtomicU64::new(0),
            unsampled: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            by_kind: [const { AtomicU64::new(0) }; FailureKind::ALL.len()],
            latency: Histogram::new(),
        }
    }

    /// A call started.
    #[inline]
    /// Returns the call's sequence number.
    pub(crate) fn start(&self) -> u64 {
        self.started.fetch_add(1, Ordering::Relaxed)
    }

    /// A call that started ended: completed with `outcome` after `latency`,
    /// or dropped unfinished (`None`).
    #[inline]
    /// A completed call's latency is `None` when it was not sampled.
    pub(crate) fn finish(&self, done: Option<(Outcome, Option<u64>)>) {
        match done {
            Some((outcome, latency)) => {
                match latency {
                    Some(ns) => self.latency.record_ns(ns),
                    None => {
                        self.unsampled.fetch_add(1, Ordering::Relaxed);
                    }
                }
                match outcome {
                    Outcome::Success => {
                        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                            self.consecutive_failures.store(0, Ordering::Relaxed);
                        }
                    }
                    Outcome::Failure(f) => {
                        self.failures.fetch_add(1, Ordering::Relaxed);
                        self.by_kind[f.kind.index()].fetch_add(1, Ordering::Relaxed);
                        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Ignored => {
                        self.ignored.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            None => {
                self.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Clears every figure except the calls in flight.
    fn reset(&self) {
        let in_flight = self.figures(self.latency.count()).in_flight;
        self.started.store(in_flight, Ordering::Relaxed);
        for c in [
            &self.unsampled,
            &self.failures,
            &self.ignored,
            &self.cancelled,
            &self.consecutive_failures,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        for c in &self.by_kind {
            c.store(0, Ordering::Relaxed);
        }
        self.latency.clear();
    }

    /// The counts, read one by one (a call racing the read may show in
    /// one figure and not yet in another; derived figures saturate).
    fn figures(&self, sampled: u64) -> Figures {
        let completed = sampled.saturating_add(self.unsampled.load(Ordering::Relaxed));
        // Read `started` last so it is never behind what it derives from.
        let failures = self.failures.load(Ordering::Relaxed);
        let ignored = self.ignored.load(Ordering::Relaxed);
        let cancelled = self.cancelled.load(Ordering::Relaxed);
        let started = self.started.load(Ordering::Relaxed);
        Figures {
            successes: completed.saturating_sub(failures + ignored),
            failures,
            ignored,
            cancelled,
            in_flight: started.saturating_sub(completed + cancelled),
        }
    }
}

struct Figures {
    successes: u64,
    failures: u64,
    ignored: u64,
    cancelled: u64,
    in_flight: u64,
}

fn ms(ns: Option<u64>) -> Value {
    ns.map_or(Value::Null, |ns| Value::from(ns as f64 / 1e6))
}

impl Component for InstrumentState {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Instrument
    }

    /// Always `Healthy` on its own: an instrument observes, it does not
    /// protect. Use the registry's rules to judge it by its figures.
    fn health(&self) -> ComponentHealth {
        let latency = self.latency.summary([0.5, 0.9, 0.99, 1.0]);
        let Figures {
            successes,
            failures,
            ignored,
            cancelled,
            in_flight,
        } = self.figures(latency.total);
        let consecutive = self.consecutive_failures.load(Ordering::Relaxed);
        let calls = successes + failures + ignored + cancelled + in_flight;
        let judged = successes + failures;
        let success_rate = if judged == 0 {
            Value::Null
        } else {
            Value::from(successes as f64 / judged as f64)
        };
        let mut health = ComponentHealth::new(HealthStatus::Healthy);
        // One allocation for the figures, however many there are.
        health.metrics.reserve_exact(7 + FailureKind::ALL.len());
        let mut by_kind = Map::new();
        for kind in FailureKind::ALL {
            let n = self.by_kind[kind.index()].load(Ordering::Relaxed);
            if n > 0 {
                by_kind.insert(kind.as_str().to_owned(), n.into());
                health = health.labelled_metric(Metric {
                    name: "failures_by_kind_total",
                    help: "Failed calls by kind of failure.",
                    kind: MetricType::Counter,
                    labels: vec![("kind", kind.as_str().into())],
                    value: n as f64,
                });
            }
        }
        let [p50, p90, p99, max] = latency.quantiles;
        let mut figures = Map::new();
        figures.insert("count".into(), latency.total.into());
        figures.insert(
            "mean_ms".into(),
            latency.mean().map_or(Value::Null, |m| (m / 1e6).into()),
        );
        figures.insert("p50_ms".into(), ms(p50));
        figures.insert("p90_ms".into(), ms(p90));
        figures.insert("p99_ms".into(), ms(p99));
        figures.insert("max_ms".into(), ms(max));
        health
            .detail("calls", calls)
            .detail("successes", successes)
            .detail("failures", failures)
            .detail("ignored", ignored)
            .detail("cancelled", cancelled)
            .detail("in_flight", in_flight)
            .detail("success_rate", success_rate)
            .detail("consecutive_failures", consecutive)
            .detail("failures_by_kind", by_kind)
            .detail("latency", figures)
            .metric(
                "calls_total",
                "Calls started.",
                MetricType::Counter,
                calls as f64,
            )
            .metric(
                "successes_total",
                "Calls classified as successes.",
                MetricType::Counter,
                successes as f64,
            )
            .metric(
                "failures_total",
                "Calls classified as failures.",
                MetricType::Counter,
                failures as f64,
            )
            .metric(
                "ignored_total",
                "Calls classified as neither success nor failure.",
                MetricType::Counter,
                ignored as f64,
            )
            .metric(
                "cancelled_total",
                "Calls whose future was dropped before completing.",
                MetricType::Counter,
                cancelled as f64,
            )
            .metric(
                "in_flight",
                "Calls in flight.",
                MetricType::Gauge,
                in_flight as f64,
            )
            .metric(
                "consecutive_failures",
                "Failures since the last success.",
                MetricType::Gauge,
                consecutive as f64,
            )
    }

    /// Supports [`Control::Reset`]: clears the counters and the histogram.
    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::Reset => {
                self.reset();
                Ok(())
            }
            other => Err(ControlError::unsupported(&self.name, other)),
        }
    }
}
