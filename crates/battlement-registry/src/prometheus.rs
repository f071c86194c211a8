//! Prometheus exposition of the registry through the `prometheus-client`
//! crate (feature `prometheus`).
//!
//! # What is exposed
//!
//! - Every figure of every component's
//!   [`ComponentHealth::metrics`](battlement_core::ComponentHealth::metrics)
//!   as `battlement_<kind>_<figure>{component="<name>", <its labels>}`.
//!   Components of one kind share a family, so
//!   `battlement_breaker_calls_total` has one sample per breaker. Names are
//!   reduced to `[a-zA-Z0-9_]`; counters keep their `_total` suffix (the
//!   encoder adds it to the family's name).
//! - A stateset (a breaker's `battlement_breaker_state{component, state}`)
//!   comes out as the gauge Prometheus makes of an OpenMetrics stateset:
//!   one sample per state, 1 for the current one (`prometheus-client` has
//!   no stateset type).
//! - `battlement_events_lagged_total`: events missed by event-stream
//!   subscribers that fell behind (slow clients of `GET /health/events`).
//! - Counters never go down: a component's `reset` control resets its
//!   state, never a `_total` (see `Control::Reset`).
//! - `battlement_component_status{component, kind}`: the counted status of
//!   each component (0 healthy, 1 degraded, 2 unhealthy), and
//!   `battlement_status`: the overall one.
//! - `battlement_instrument_latency_seconds{component}`: each instrument's
//!   latency as a Prometheus histogram with the fixed `le` bounds of
//!   [`LATENCY_BOUNDS_SECONDS`]. The fine 496-bucket histogram behind it is
//!   folded into them: a value counts toward a bound when its fine bucket
//!   ends at or below it, so a bucket may miss values up to 12.5% under its
//!   bound (they fall in the next one).

use std::collections::BTreeMap;
use std::fmt;

use battlement_core::{HealthStatus, MetricType as CoreType};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::Registry;

/// The `le` bounds, in seconds, of the exposed latency histograms.
pub const LATENCY_BOUNDS_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

type Labels = Vec<(String, String)>;

struct Family {
    help: &'static str,
    kind: CoreType,
    samples: Vec<(Labels, f64)>,
}

/// Reduces a name to the characters Prometheus allows.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn status_value(s: HealthStatus) -> i64 {
    match s {
        HealthStatus::Healthy => 0,
        HealthStatus::Degraded => 1,
        HealthStatus::Unhealthy => 2,
    }
}

/// A `prometheus-client` [`Collector`] over a [`Registry`]: register it in
/// your own `prometheus_client::registry::Registry` to expose battlement's
/// figures beside yours. Each scrape reads the registry afresh.
#[derive(Clone)]
pub struct RegistryCollector {
    registry: Registry,
}

impl fmt::Debug for RegistryCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCollector").finish_non_exhaustive()
    }
}

impl Registry {
    /// A [`RegistryCollector`] for a `prometheus-client` registry of your
    /// own.
    pub fn collector(&self) -> RegistryCollector {
        RegistryCollector {
            registry: self.clone(),
        }
    }

    /// The Prometheus (OpenMetrics) text exposition of every component.
    ///
    /// ```
    /// use battlement_registry::Registry;
    ///
    /// let registry = Registry::new();
    /// let _layer = registry.layer("api").unwrap();
    /// let text = registry.prometheus_text();
    /// assert!(text.contains(r#"battlement_instrument_calls_total{component="api"} 0"#));
    /// ```
    pub fn prometheus_text(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(self.collector()));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

impl Collector for RegistryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let report = self.registry.health();

        let overall = ConstGauge::new(status_value(report.status));
        overall.encode(encoder.encode_descriptor(
            "battlement_status",
            "Overall health: 0 healthy, 1 degraded, 2 unhealthy.",
            None,
            overall.metric_type(),
        )?)?;

        let lagged = ConstCounter::new(self.registry.events_lagged());
        lagged.encode(encoder.encode_descriptor(
            "battlement_events_lagged",
            "Events missed by event-stream subscribers that fell behind.",
            None,
            lagged.metric_type(),
        )?)?;

        let mut status = encoder.encode_descriptor(
            "battlement_component_status",
            "Counted health of each component: 0 healthy, 1 degraded, 2 unhealthy.",
            None,
            MetricType::Gauge,
        )?;
        for c in &report.components {
            let labels: Labels = vec![
                ("component".into(), c.name.to_string()),
                ("kind".into(), c.kind.as_str().to_owned()),
            ];
            ConstGauge::new(status_value(c.status)).encode(status.encode_family(&labels)?)?;
        }

        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        for c in &report.components {
            let kind = sanitize(c.kind.as_str());
            for m in &c.metrics {
                let figure = match m.kind {
                    CoreType::Counter => m.name.strip_suffix("_total").unwrap_or(m.name),
                    CoreType::Gauge => m.name,
                };
                let name = format!("battlement_{kind}_{}", sanitize(figure));
                let family = families.entry(name).or_insert_with(|| Family {
                    help: m.help,
                    kind: m.kind,
                    samples: Vec::new(),
                });
                if family.kind != m.kind {
                    continue;
                }
                let mut labels: Labels = vec![("component".into(), c.name.to_string())];
                labels.extend(
                    m.labels
                        .iter()
                        .map(|(k, v)| (sanitize(k), v.clone().into_owned())),
                );
                family.samples.push((labels, m.value));
            }
        }
        for (name, family) in &families {
            let ty = match family.kind {
                CoreType::Counter => MetricType::Counter,
                CoreType::Gauge => MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(name, family.help, None, ty)?;
            for (labels, value) in &family.samples {
                let enc = metric.encode_family(labels)?;
                match family.kind {
                    // Whole counts print as integers.
                    CoreType::Counter if value.fract() == 0.0 && *value < 9.0e15 => {
                        ConstCounter::new(value.max(0.0) as u64).encode(enc)?
                    }
                    CoreType::Counter => ConstCounter::new(value.max(0.0)).encode(enc)?,
                    CoreType::Gauge => ConstGauge::new(*value).encode(enc)?,
                }
            }
        }

        let instruments = self.registry.instruments();
        if !instruments.is_empty() {
            let bounds_ns: Vec<u64> = LATENCY_BOUNDS_SECONDS
                .iter()
                .map(|s| (s * 1e9) as u64)
                .collect();
            let mut metric = encoder.encode_descriptor(
                "battlement_instrument_latency_seconds",
                "Latency of instrumented calls.",
                None,
                MetricType::Histogram,
            )?;
            for inst in instruments {
                let (total, sum_ns, cumulative) = inst.counters.latency.cumulative(&bounds_ns);
                let mut buckets = Vec::with_capacity(cumulative.len() + 1);
                let mut prev = 0;
                for (bound, cum) in LATENCY_BOUNDS_SECONDS.iter().zip(&cumulative) {
                    buckets.push((*bound, cum - prev));
                    prev = *cum;
                }
                buckets.push((f64::INFINITY, total - prev));
                let labels: Labels = vec![("component".into(), inst.name.to_string())];
                metric.encode_family(&labels)?.encode_histogram::<Labels>(
                    sum_ns as f64 / 1e9,
                    total,
                    &buckets,
                    None,
                )?;
            }
        }
        Ok(())
    }
}
