//! The Prometheus exposition, parsed back by a parser crate.

#![cfg(feature = "prometheus")]

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use battlement_core::{
    BoxError, Component, ComponentHealth, ComponentKind, HealthStatus, Metric, MetricType,
};
use battlement_registry::Registry;
use prometheus_parse::{Scrape, Value};
use tower::{ServiceBuilder, ServiceExt, service_fn};

struct Breakerish(&'static str, f64);

impl Component for Breakerish {
    fn name(&self) -> &str {
        self.0
    }
    fn kind(&self) -> ComponentKind {
        ComponentKind::Breaker
    }
    fn health(&self) -> ComponentHealth {
        ComponentHealth::new(HealthStatus::Degraded)
            .metric(
                "calls_total",
                "Calls admitted.",
                MetricType::Counter,
                self.1,
            )
            .metric("failure_rate", "Failure rate.", MetricType::Gauge, 0.25)
            .labelled_metric(Metric {
                name: "state",
                help: "1 for the current state.",
                kind: MetricType::Gauge,
                labels: vec![("state", Cow::Borrowed("open"))],
                value: 1.0,
            })
    }
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// A sample's number. OpenMetrics declares a counter's type on its base
/// name (`# TYPE x counter`, sample `x_total`), which the Prometheus-format
/// parser reads as untyped: accept either.
fn num(v: Value) -> f64 {
    match v {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        other => panic!("not a number: {other:?}"),
    }
}

fn value(scrape: &Scrape, metric: &str, component: &str) -> Value {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && s.labels.get("component") == Some(component))
        .unwrap_or_else(|| panic!("no {metric}{{component={component}}}"))
        .value
        .clone()
}

#[tokio::test(start_paused = true)]
async fn every_figure_is_exposed_and_parses_back() {
    let registry = Registry::new();
    let a = Arc::new(Breakerish("payments", 12.0));
    let b = Arc::new(Breakerish("search", 3.0));
    registry.register(&a).unwrap();
    registry.register(&b).unwrap();
    let svc = ServiceBuilder::new()
        .layer(registry.layer("api").unwrap())
        .service(service_fn(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(ms)
        }));
    for ms in [1, 2, 30, 700] {
        svc.clone().oneshot(ms).await.unwrap();
    }

    let text = registry.prometheus_text();
    let scrape = parse(&text);

    // One family per kind and figure, one sample per component.
    assert_eq!(
        num(value(&scrape, "battlement_breaker_calls_total", "payments")),
        12.0
    );
    assert_eq!(
        num(value(&scrape, "battlement_breaker_calls_total", "search")),
        3.0
    );
    assert_eq!(
        value(&scrape, "battlement_breaker_failure_rate", "search"),
        Value::Gauge(0.25)
    );
    let state = scrape
        .samples
        .iter()
        .find(|s| s.metric == "battlement_breaker_state")
        .unwrap();
    assert_eq!(state.labels.get("state"), Some("open"));
    assert_eq!(
        num(value(&scrape, "battlement_instrument_calls_total", "api")),
        4.0
    );
    assert_eq!(
        value(&scrape, "battlement_component_status", "payments"),
        Value::Gauge(1.0)
    );
    assert!(
        text.contains("# TYPE battlement_breaker_calls counter"),
        "{text}"
    );

    // The latency histogram, cumulative by `le`.
    let Value::Histogram(buckets) = value(&scrape, "battlement_instrument_latency_seconds", "api")
    else {
        panic!("not a histogram: {text}");
    };
    let at = |le: f64| {
        buckets
            .iter()
            .find(|b| b.less_than == le || (b.less_than - le).abs() < 1e-12)
            .unwrap_or_else(|| panic!("no le={le} in {buckets:?}\n{text}"))
            .count
    };
    assert_eq!(at(0.0025), 2.0);
    assert_eq!(at(0.05), 3.0);
    assert_eq!(at(1.0), 4.0);
    assert_eq!(at(f64::INFINITY), 4.0);
    let sum = scrape
        .samples
        .iter()
        .find(|s| s.metric == "battlement_instrument_latency_seconds_sum")
        .unwrap();
    assert!((num(sum.value.clone()) - 0.733).abs() < 1e-9, "{sum:?}");
}
