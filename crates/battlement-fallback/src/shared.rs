//! The state every clone of a layer and its services shares: the sources,
//! the cache, the counters, and the [`Component`] view of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use battlement_core::{
    BoxError, Component, ComponentHealth, ComponentKind, EventSink, Failure, FailureKind,
    HealthStatus, Metric, MetricType, Name,
};
use serde_json::{Map, Value};
use tower::util::BoxCloneSyncService;

use crate::cache::Store;
use crate::marker::Fallback;

/// What a value closure is given: the primary's failure, its error (none
/// when the primary answered `Ok` with a response the classifier called a
/// failure) and the key saved from the request (none without
/// [`key`](crate::FallbackBuilder::key), or when the key function returned
/// `None`).
#[derive(Debug)]
#[non_exhaustive]
pub struct Failed<'a, K> {
    /// How the primary failed.
    pub failure: Failure,
    /// The primary's error, when it returned one.
    pub error: Option<&'a BoxError>,
    /// The key computed from the request before the call.
    pub key: Option<&'a K>,
}

pub(crate) type ValueFn<Res, K> =
    Arc<dyn for<'a> Fn(&Failed<'a, K>) -> Result<Res, BoxError> + Send + Sync>;
pub(crate) type KeyFn<Req, K> = Arc<dyn Fn(&Req) -> Option<K> + Send + Sync>;
pub(crate) type TriggerFn = Arc<dyn Fn(&Failure) -> bool + Send + Sync>;
pub(crate) type MarkFn<Res> = Arc<dyn Fn(&mut Res, &Fallback) + Send + Sync>;

/// One configured source.
pub(crate) enum SourceEntry<Req, Res, K> {
    Value(ValueFn<Res, K>),
    Service {
        name: Name,
        svc: BoxCloneSyncService<Req, Res, BoxError>,
    },
    Cache,
}

impl<Req, Res, K> SourceEntry<Req, Res, K> {
    pub(crate) fn label(&self) -> Name {
        match self {
            SourceEntry::Value(_) => Name::from_static("value"),
            SourceEntry::Service { name, .. } => name.clone(),
            SourceEntry::Cache => Name::from_static("cache"),
        }
    }
}

/// Counters of one source.
#[derive(Default)]
pub(crate) struct SourceStats {
    pub(crate) served: AtomicU64,
    pub(crate) served_stale: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) skipped: AtomicU64,
    /// Responses served, by the kind of the primary's failure.
    pub(crate) served_by_reason: [AtomicU64; FailureKind::ALL.len()],
}

pub(crate) struct Shared<Req, Res, K, C> {
    pub(crate) name: Name,
    pub(crate) classifier: C,
    pub(crate) trigger: Option<TriggerFn>,
    pub(crate) key: Option<KeyFn<Req, K>>,
    pub(crate) clone_req: Option<fn(&Req) -> Req>,
    pub(crate) sources: Vec<SourceEntry<Req, Res, K>>,
    pub(crate) cache: Option<Box<dyn Store<K, Res>>>,
    pub(crate) mark: Option<MarkFn<Res>>,
    pub(crate) events: EventSink,
    /// The bound on each fallback service's call, if any.
    pub(crate) source_timeout: Option<Duration>,
    pub(crate) source_stats: Vec<SourceStats>,
    pub(crate) by_reason: [AtomicU64; FailureKind::ALL.len()],
    pub(crate) triggered: AtomicU64,
    pub(crate) passed_through: AtomicU64,
    pub(crate) all_failed: AtomicU64,
}

/// How a layer, its services and their futures reach the shared state.
pub(crate) type Handle<T> = battlement_core::SharedRef<T>;

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl<Req, Res, K, C> Shared<Req, Res, K, C> {
    /// Fallbacks served, all sources together.
    pub(crate) fn served(&self) -> u64 {
        self.source_stats.iter().map(|s| get(&s.served)).sum()
    }

    pub(crate) fn health(&self) -> ComponentHealth {
        let mut sources = Map::new();
        let mut health = ComponentHealth::new(HealthStatus::Healthy);
        for (entry, stats) in self.sources.iter().zip(&self.source_stats) {
            let label = entry.label().to_string();
            let mut s = Map::new();
            s.insert("served".into(), get(&stats.served).into());
            if matches!(entry, SourceEntry::Cache) {
                s.insert("served_stale".into(), get(&stats.served_stale).into());
            }
            s.insert("failed".into(), get(&stats.failed).into());
            s.insert("skipped".into(), get(&stats.skipped).into());
            let mut by_reason = Map::new();
            for kind in FailureKind::ALL {
                let n = get(&stats.served_by_reason[kind.index()]);
                if n > 0 {
                    by_reason.insert(kind.as_str().into(), n.into());
                    health = health.labelled_metric(Metric {
                        name: "activations_total",
                        help: "Responses served by fallback, by source and reason.",
                        kind: MetricType::Counter,
                        labels: vec![
                            ("source", label.clone().into()),
                            ("reason", kind.as_str().into()),
                        ],
                        value: n as f64,
                    });
                }
            }
            s.insert("served_by_reason".into(), Value::Object(by_reason));
            sources.insert(label.clone(), Value::Object(s));
            for (metric, help, value) in [
                (
                    "source_failures_total",
                    "Fallback sources that failed, by source.",
                    get(&stats.failed),
                ),
                (
                    "source_skipped_total",
                    "Fallback sources skipped (open circuit), by source.",
                    get(&stats.skipped),
                ),
            ] {
                health = health.labelled_metric(Metric {
                    name: metric,
                    help,
                    kind: MetricType::Counter,
                    labels: vec![("source", label.clone().into())],
                    value: value as f64,
                });
            }
        }
        let mut reasons = Map::new();
        for kind in FailureKind::ALL {
            let n = get(&self.by_reason[kind.index()]);
            if n > 0 {
                reasons.insert(kind.as_str().into(), n.into());
                health = health.labelled_metric(Metric {
                    name: "triggers_by_reason_total",
                    help: "Primary failures that triggered the fallback, by kind.",
                    kind: MetricType::Counter,
                    labels: vec![("reason", kind.as_str().into())],
                    value: n as f64,
                });
            }
        }
        health = health
            .detail("triggered", get(&self.triggered))
            .detail("served", self.served())
            .detail("all_failed", get(&self.all_failed))
            .detail("passed_through", get(&self.passed_through))
            .detail("sources", Value::Object(sources))
            .detail("reasons", Value::Object(reasons))
            .metric(
                "triggered_total",
                "Primary failures that triggered the fallback.",
                MetricType::Counter,
                get(&self.triggered) as f64,
            )
            .metric(
                "all_failed_total",
                "Requests where every fallback source failed too.",
                MetricType::Counter,
                get(&self.all_failed) as f64,
            );
        if let Some(cache) = &self.cache {
            let (hits, misses) = (cache.hits(), cache.misses());
            let lookups = hits + misses;
            let rate = if lookups == 0 {
                0.0
            } else {
                hits as f64 / lookups as f64
            };
            health = health
                .detail("cache_entries", cache.len())
                .detail("cache_hits", hits)
                .detail("cache_misses", misses)
                .detail("cache_hit_rate", rate)
                .metric(
                    "cache_entries",
                    "Responses in the last-known-good cache.",
                    MetricType::Gauge,
                    cache.len() as f64,
                )
                .metric(
                    "cache_hits_total",
                    "Cache lookups that found a usable response.",
                    MetricType::Counter,
                    hits as f64,
                )
                .metric(
                    "cache_misses_total",
                    "Cache lookups that found nothing usable.",
                    MetricType::Counter,
                    misses as f64,
                );
        }
        health
    }
}

impl<Req, Res, K, C> Component for Shared<Req, Res, K, C>
where
    Req: 'static,
    Res: 'static,
    K: 'static,
    C: Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Fallback
    }

    fn health(&self) -> ComponentHealth {
        Shared::health(self)
    }
}
