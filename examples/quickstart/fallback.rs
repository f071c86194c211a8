//! Fallback: answer from a replica, the last known good response, or a
//! default when the primary fails.

use std::time::Duration;

use battlement::fallback::{CacheConfig, Fallback, FallbackLayer};
use battlement::prelude::*;
use tower::{Layer, Service, ServiceExt, service_fn};

/// Prints what the fallback layer did for a few calls to a backend that
/// goes down after its second call.
pub(crate) async fn run() {
    println!("== fallback: value, service chain, last-known-good cache");
    let primary = service_fn(|req: http::Request<u32>| async move {
        let n = *req.body();
        if n > 2 {
            return Err::<http::Response<String>, BoxError>(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )));
        }
        Ok(http::Response::new(format!("fresh answer for user {n}")))
    });
    // A replica behind an open circuit: skipped, never called.
    let replica = service_fn(|_: http::Request<u32>| async {
        Err::<http::Response<String>, BoxError>(Box::new(CircuitOpen::new(
            "replica",
            CircuitState::Open,
            Some(Duration::from_secs(5)),
        )))
    });
    let layer = FallbackLayer::builder("users")
        .key(|req: &http::Request<u32>| Some(*req.body() % 3))
        .service("replica", replica)
        .cache(CacheConfig::new().fresh_for(Duration::from_secs(30)))
        .value_fn(|failed| {
            Ok(http::Response::new(format!(
                "default answer ({})",
                failed.failure.kind
            )))
        })
        .http_header()
        .build()
        .expect("valid fallback config");
    let mut svc = layer.layer(primary);
    for n in [1, 2, 4, 5, 6] {
        let res = svc
            .ready()
            .await
            .expect("ready")
            .call(http::Request::new(n))
            .await
            .expect("fallback answers");
        match res.extensions().get::<Fallback>() {
            Some(marker) => println!("  call {n}: {:?} <- fallback {marker}", res.body()),
            None => println!("  call {n}: {:?}", res.body()),
        }
    }
    let health = layer.health();
    println!(
        "  activations {}, cache entries {}, hit rate {}",
        layer.activations(),
        health.details["cache_entries"],
        health.details["cache_hit_rate"]
    );
}
