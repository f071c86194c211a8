//! Quickstart: stack battlement's layers on a `service_fn` and print what
//! happened.
//!
//! Run with `cargo run -p battlement-examples --example quickstart`.
//!
//! Each section lives in its own module beside this file and shows one
//! layer on its own; `main` runs them in order.

mod breaker;
mod classify;
mod deadline;
mod fallback;
mod fanout;
mod gate;
mod http;
mod limit;
mod registry;
mod retry;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    classify::run().await;
    breaker::run().await;
    retry::run().await;
    gate::run().await;
    fallback::run().await;
    fanout::run().await;
    deadline::run().await;
    registry::run().await;
    limit::run().await;
    http::run().await;
}
