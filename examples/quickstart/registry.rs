//! Registry: instrument a service, read the system's health, follow events
//! and scrape Prometheus figures, all in one place.

use std::time::Duration;

use battlement::prelude::*;
use battlement::registry::Registry;
use tower::{ServiceBuilder, ServiceExt};

/// Instruments a flaky `service_fn`, then prints the report, an event and
/// a few Prometheus lines.
pub(crate) async fn run() {
    println!("== registry: one report, one event stream, one scrape");
    let registry = Registry::new();
    let mut events = registry.subscribe();
    let svc = ServiceBuilder::new()
        .layer(registry.layer("users").expect("a unique name"))
        .service_fn(|id: u32| async move {
            tokio::time::sleep(Duration::from_millis(u64::from(id % 5))).await;
            if id.is_multiple_of(4) {
                Err::<u32, BoxError>(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionReset,
                )))
            } else {
                Ok(id)
            }
        });
    for id in 1..=20 {
        let _ = svc.clone().oneshot(id).await;
    }
    let report = registry.health();
    let users = report.component("users").expect("registered");
    println!(
        "  overall {}; users: {} calls, {} failures, success rate {}, p50 {} ms, p99 {} ms",
        report.status,
        users.details["calls"],
        users.details["failures"],
        users.details["success_rate"],
        users.details["latency_p50_ms"],
        users.details["latency_p99_ms"],
    );
    registry
        .event_sink()
        .emit(&"users".into(), || EventKind::Reset);
    if let Ok(event) = events.recv().await {
        println!("  event: {event}");
    }
    for line in registry.prometheus_text().lines().filter(|l| {
        l.starts_with("battlement_instrument_calls") || l.starts_with("battlement_status")
    }) {
        println!("  {line}");
    }
}
