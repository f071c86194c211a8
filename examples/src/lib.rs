//! Runnable examples of battlement. See `quickstart/` beside this
//! package's manifest; run with
//! `cargo run -p battlement-examples --example quickstart`.
