//! Health endpoint: the registry over HTTP, with controls behind a token,
//! and the workspace's errors mapped to honest status codes.

use std::time::Duration;

use battlement::http::{HealthService, error_response};
use battlement::prelude::*;
use battlement::registry::Registry;
use tower::ServiceExt;

/// Asks a `HealthService` a few questions in-process and prints the
/// answers; then maps an open circuit and a passed deadline to responses.
pub(crate) async fn run() {
    println!("== http: health endpoint and error responses");
    let registry = Registry::new();
    let _instrument = registry.layer("api").expect("a unique name");
    let health = HealthService::new(registry).with_bearer_token("s3cret");
    for (method, path, token) in [
        ("GET", "/health", None),
        ("GET", "/health/nope", None),
        ("POST", "/health/api/reset", None),
        ("POST", "/health/api/reset", Some("Bearer s3cret")),
        ("POST", "/health/api/open", Some("Bearer s3cret")),
    ] {
        let mut req = http::Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        let res = health
            .clone()
            .oneshot(req.body(String::new()).expect("a request"))
            .await
            .expect("infallible");
        let status = res.status();
        let body = res.into_body().into_bytes_now();
        let body = String::from_utf8_lossy(&body);
        let short: String = body.chars().take(90).collect();
        println!("  {method} {path} -> {status} {short}");
    }
    let open: BoxError = Box::new(CircuitOpen::new(
        "payments",
        CircuitState::Open,
        Some(Duration::from_millis(2500)),
    ));
    let res = error_response(&*open);
    println!(
        "  CircuitOpen -> {} Retry-After: {:?}",
        res.status(),
        res.headers()["retry-after"]
    );
    let late: BoxError = Box::new(DeadlineExceeded {
        budget: Duration::from_secs(1),
        elapsed: Duration::from_secs(1),
    });
    println!("  DeadlineExceeded -> {}", error_response(&*late).status());
}
