//! A `reqwest::Client` wrapped in `Policy::http` against a local flaky
//! server: `GET`s are retried, a `POST` is sent once unless it carries an
//! `Idempotency-Key`, a streaming body is sent once, and a refused
//! connection spends the retries and says so.
//!
//! `cargo run -p battlement-examples --example reqwest_client`

use battlement::prelude::*;
use battlement_examples::client::serve;
use battlement_examples::hyper_client::upstream;
use battlement_examples::reqwest_client::{client, request, send};
use reqwest::Method;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (router, seen) = upstream();
    let addr = serve(router).await?;
    let registry = Registry::new();
    let mut svc = client(&registry)?;

    for (method, path, key, streaming) in [
        (Method::GET, "a", None, false),
        (Method::POST, "b", None, false),
        (Method::POST, "c", Some("order-c"), false),
        (Method::POST, "d", Some("order-d"), true),
    ] {
        let url = format!("http://{addr}/items/{path}");
        let status = send(&mut svc, request(method.clone(), &url, key, streaming)?).await?;
        let what = match (key, streaming) {
            (Some(k), false) => format!(" (Idempotency-Key: {k})"),
            (Some(k), true) => format!(" (Idempotency-Key: {k}, streaming body)"),
            _ => String::new(),
        };
        let calls = seen.calls.lock().map(|c| c[path]).unwrap_or(0);
        println!("{method} /items/{path}{what}: {status} after {calls} call(s)");
    }

    // Nobody listens on this port: a network failure, retried, then given up.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let url = format!("http://{closed}/");
    match send(&mut svc, request(Method::GET, &url, None, false)?).await {
        Ok(status) => println!("GET {url}: {status}?"),
        Err(err) => match std::error::Error::source(&*err) {
            Some(last) => println!("GET {url}: {err}; last: {last}"),
            None => println!("GET {url}: {err}"),
        },
    }
    if let Some(report) = registry.get("reqwest/instrument") {
        let d = &report.details;
        println!(
            "reqwest/instrument: {} calls, {} successes, {} failures",
            d["calls"], d["successes"], d["failures"]
        );
    }
    Ok(())
}
