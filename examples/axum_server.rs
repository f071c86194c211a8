//! An axum service with a `Policy` per route, the health endpoint under
//! `/ops`, priorities from a header and errors answered as responses.
//! Starts on 127.0.0.1, walks through a failure and its recovery, prints
//! each request and answer, and exits.
//!
//! `cargo run -p battlement-examples --example axum_server`

use std::time::Duration;

use battlement_examples::axum_server::{Recover, app, tour};
use battlement_examples::client::serve;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let open = Duration::from_secs(1);
    let app = app(open)?;
    let addr = serve(app.router.clone()).await?;
    println!("serving on http://{addr} (health: http://{addr}/ops/health)\n");
    for step in tour(addr, &app, Recover::Wait(open)).await? {
        let a = &step.answer;
        let mut body = a.body.clone();
        if body.len() > 160 {
            body.truncate(160);
            body.push_str("...");
        }
        let marks: Vec<String> = ["retry-after", "x-battlement-fallback"]
            .iter()
            .filter_map(|h| a.header(h).map(|v| format!("{h}: {v}")))
            .collect();
        println!(
            "# {}\n{}\n  -> {} {} {}\n",
            step.what,
            step.request,
            a.status,
            marks.join(", "),
            body
        );
    }
    println!(
        "breaker orders/breaker: {:?}; calls that reached the orders handler: {}",
        app.orders.breaker().map(|b| b.state()),
        app.backend
            .orders_calls
            .load(std::sync::atomic::Ordering::SeqCst)
    );
    Ok(())
}
