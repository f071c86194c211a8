//! Runnable examples of battlement. See `quickstart/` beside this
//! package's manifest; run with
//! `cargo run -p battlement-examples --example quickstart`.
//!
//! The HTTP examples keep their app here, so that the example's `main`
//! and its end-to-end test (in `tests/`) drive the same code:
//! [`axum_server`] (`--example axum_server`) and [`hyper_client`]
//! (`--example hyper_client`).
//!
//! [`demo`] is the project's main job, run by the `demo` binary:
//! `cargo run --release -p battlement-examples --bin demo`.

pub mod axum_server;
pub mod client;
pub mod demo;
pub mod hyper_client;
pub mod reqwest_client;
#[cfg(feature = "tonic")]
pub mod tonic_grpc;
