//! A `reqwest::Client` wrapped in `Policy::http` against a local flaky
//! server: `GET`s are retried, a `POST` is sent once unless it carries an
//! `Idempotency-Key`, a streaming body is sent once, and a refused
//! connection spends the retries and says so.
//!
//! `cargo run -p battlement-examples --example reqwest_client`

use battlement::prelude::*;
use battlement_examples::client::serve;
use battlement_examples::reqwest_client::{client, request, send, upstream};
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
        (Method::PUT, "d", None, true),
    ] {
        let url = format!("http://{addr}/{path}");
        let status = send(&mut svc, request(method.clone(), &url, key, streaming)?).await?;
        let what = match (key, streaming) {
            (Some(k), _) => format!(" (Idempotency-Key: {k})"),
            (_, true) => " (streaming body)".into(),
            _ => String::new(),
        };
        println!(
            "{method} /{path}{what}: {status} after {} call(s)",
            seen.calls(path)
        );
    }

    // Nobody listens on this port: a network failure, retried, then given up.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let url = format!("http://{closed}/");
    match send(&mut svc, request(Method::GET, &url, None, false)?).await {
        Ok(status) => println!("GET {url}: {status}?"),
        Err(err) => println!("GET {url}: {err}"),
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
