//! The fan-out's figures and its registry handle: [`FanOutHandle`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use battlement_core::{
    AsComponent, Component, ComponentHealth, ComponentKind, HealthStatus, Metric, MetricType, Name,
    Outcome,
};
use serde_json::{Map, Value};

#[derive(Debug)]
pub(crate) struct BackendStats {
    pub(crate) name: Name,
    successes: AtomicU64,
    failures: AtomicU64,
    skips: AtomicU64,
    abandoned: AtomicU64,
    latency_ns_total: AtomicU64,
    latency_count: AtomicU64,
    last_latency_ns: AtomicU64,
    /// The last settled call: 0 none yet, 1 success, 2 failure, 3 skip.
    last: AtomicU8,
}

const LAST_NONE: u8 = 0;
const LAST_SUCCESS: u8 = 1;
const LAST_FAILURE: u8 = 2;
const LAST_SKIP: u8 = 3;

impl BackendStats {
    pub(crate) fn new(name: Name) -> Self {
        BackendStats {
            name,
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            skips: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            latency_ns_total: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            last_latency_ns: AtomicU64::new(0),
            last: AtomicU8::new(LAST_NONE),
        }
    }

    pub(crate) fn record(&self, outcome: Outcome, skipped: bool, latency: Option<Duration>) {
        if skipped {
            self.skips.fetch_add(1, Relaxed);
            self.last.store(LAST_SKIP, Relaxed);
            return;
        }
        match outcome {
            Outcome::Success => {
                self.successes.fetch_add(1, Relaxed);
                self.last.store(LAST_SUCCESS, Relaxed);
            }
            Outcome::Failure(_) => {
                self.failures.fetch_add(1, Relaxed);
                self.last.store(LAST_FAILURE, Relaxed);
            }
            Outcome::Ignored => {
                self.abandoned.fetch_add(1, Relaxed);
            }
        }
        if let Some(latency) = latency {
            let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
            self.latency_ns_total.fetch_add(ns, Relaxed);
            self.latency_count.fetch_add(1, Relaxed);
            self.last_latency_ns.store(ns, Relaxed);
        }
    }

    pub(crate) fn record_abandoned(&self) {
        self.abandoned.fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> BackendSnapshot {
        let count = self.latency_count.load(Relaxed);
        let total = self.latency_ns_total.load(Relaxed);
        BackendSnapshot {
            successes: self.successes.load(Relaxed),
            failures: self.failures.load(Relaxed),
            skips: self.skips.load(Relaxed),
            abandoned: self.abandoned.load(Relaxed),
            mean_latency: Duration::from_nanos(total.checked_div(count).unwrap_or(0)),
            last_latency: Duration::from_nanos(self.last_latency_ns.load(Relaxed)),
        }
    }
}

/// One backend's figures since the fan-out was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendSnapshot {
    /// Calls the classifier counted as successes.
    pub successes: u64,
    /// Calls that failed (errors, failed responses, timeouts).
    pub failures: u64,
    /// Calls refused by an open circuit.
    pub skips: u64,
    /// Calls cancelled or never started because the fan-out ended first.
    pub abandoned: u64,
    /// Mean latency of the calls that finished.
    pub mean_latency: Duration,
    /// Latency of the last call that finished.
    pub last_latency: Duration,
}

/// The fan-out's shared figures; implements [`Component`].
#[derive(Debug)]
pub(crate) struct FanOutStats {
    pub(crate) name: Name,
    pub(crate) backends: Box<[BackendStats]>,
}

/// A cheap cloneable handle on a fan-out's figures, for the registry
/// ([`AsComponent`]) or for reading them directly.
#[derive(Debug, Clone)]
pub struct FanOutHandle {
    pub(crate) stats: Arc<FanOutStats>,
}

impl FanOutHandle {
    /// The fan-out's name.
    pub fn name(&self) -> &str {
        &self.stats.name
    }

    /// Each backend's name and figures, in the order they were added.
    pub fn backends(&self) -> Vec<(Name, BackendSnapshot)> {
        self.stats
            .backends
            .iter()
            .map(|b| (b.name.clone(), b.snapshot()))
            .collect()
    }

    /// The figures of the backend named `name`.
    pub fn backend(&self, name: &str) -> Option<BackendSnapshot> {
        self.stats
            .backends
            .iter()
            .find(|b| &*b.name == name)
            .map(BackendStats::snapshot)
    }
}

impl AsComponent for FanOutHandle {
    fn as_component(&self) -> Arc<dyn Component> {
        self.stats.clone()
    }
}

impl Component for FanOutStats {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::FanOut
    }

    /// By each backend's last settled call (cancelled calls do not
    /// count): `Healthy` when none failed or was skipped, `Unhealthy` when
    /// every backend's did, `Degraded` in between.
    fn health(&self) -> ComponentHealth {
        let mut details = Map::new();
        let mut health_metrics = Vec::new();
        let mut bad = 0;
        for b in self.backends.iter() {
            let s = b.snapshot();
            let last = b.last.load(Relaxed);
            if last == LAST_FAILURE || last == LAST_SKIP {
                bad += 1;
            }
            let mut m = Map::new();
            m.insert("successes".into(), s.successes.into());
            m.insert("failures".into(), s.failures.into());
            m.insert("skips".into(), s.skips.into());
            m.insert("abandoned".into(), s.abandoned.into());
            m.insert(
                "last".into(),
                match last {
                    LAST_SUCCESS => "success",
                    LAST_FAILURE => "failure",
                    LAST_SKIP => "skipped",
                    _ => "none",
                }
                .into(),
            );
            m.insert(
                "mean_latency_ms".into(),
                Value::from(s.mean_latency.as_secs_f64() * 1000.0),
            );
            m.insert(
                "last_latency_ms".into(),
                Value::from(s.last_latency.as_secs_f64() * 1000.0),
            );
            details.insert(b.name.to_string(), Value::Object(m));
            let label = vec![("backend", std::borrow::Cow::Owned(b.name.to_string()))];
            for (name, help, kind, value) in [
                (
                    "backend_successes_total",
                    "Backend calls counted as successes.",
                    MetricType::Counter,
                    s.successes as f64,
                ),
                (
                    "backend_failures_total",
                    "Backend calls that failed.",
                    MetricType::Counter,
                    s.failures as f64,
                ),
                (
                    "backend_skips_total",
                    "Backend calls refused by an open circuit.",
                    MetricType::Counter,
                    s.skips as f64,
                ),
                (
                    "backend_mean_latency_seconds",
                    "Mean latency of finished backend calls.",
                    MetricType::Gauge,
                    s.mean_latency.as_secs_f64(),
                ),
            ] {
                health_metrics.push(Metric {
                    name,
                    help,
                    kind,
                    labels: label.clone(),
                    value,
                });
            }
        }
        let status = if bad == 0 {
            HealthStatus::Healthy
        } else if bad == self.backends.len() {
            HealthStatus::Unhealthy
        } else {
            HealthStatus::Degraded
        };
        let mut health = ComponentHealth::new(status).detail("backends", Value::Object(details));
        for m in health_metrics {
            health = health.labelled_metric(m);
        }
        health
    }
}
