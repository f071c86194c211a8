//! A hyper-util client wrapped in `Policy::http` against a local flaky
//! server: idempotent requests are retried inside one budget, the time
//! left travels in `x-request-timeout-ms`, a `POST` is sent once unless
//! it carries an `Idempotency-Key`.
//!
//! `cargo run -p battlement-examples --example hyper_client`

use battlement::prelude::*;
use battlement_examples::client::serve;
use battlement_examples::hyper_client::{call, client, upstream};
use http::Method;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (router, seen) = upstream();
    let addr = serve(router).await?;
    let registry = Registry::new();
    let mut svc = client(&registry)?;

    for (method, path, key) in [
        (Method::GET, "/items/a", None),
        (Method::POST, "/items/b", None),
        (Method::POST, "/items/c", Some("order-c")),
    ] {
        let status = call(
            &mut svc,
            method.clone(),
            &format!("http://{addr}{path}"),
            key,
        )
        .await?;
        let calls = seen.calls.lock().map(|c| c[&path[7..]]).unwrap_or(0);
        println!(
            "{method} {path}{}: {status} after {calls} call(s)",
            key.map(|k| format!(" (Idempotency-Key: {k})"))
                .unwrap_or_default()
        );
    }
    let budgets = seen
        .budgets_ms
        .lock()
        .map(|b| b.clone())
        .unwrap_or_default();
    println!("x-request-timeout-ms the server saw, in order: {budgets:?}");
    if let Some(report) = registry.get("upstream/instrument") {
        let d = &report.details;
        println!(
            "upstream/instrument: {} calls, {} successes, {} failures",
            d["calls"], d["successes"], d["failures"]
        );
    }
    Ok(())
}
