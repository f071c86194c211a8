//! A tonic server and a tonic client whose channel is wrapped in
//! `Policy::grpc`: `UNAVAILABLE` is retried, `INVALID_ARGUMENT` is
//! neither retried nor counted by the breaker, and an open circuit
//! reaches the caller as `UNAVAILABLE` with a pushback, not as tonic's
//! `UNKNOWN`.
//!
//! `cargo run -p battlement-examples --example tonic_grpc`

use battlement::prelude::*;
use battlement_examples::tonic_grpc::{client, reserve, serve};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (addr, seen) = serve().await?;
    let registry = Registry::new();
    let (mut stock, policy) = client(addr, &registry)?;
    let breaker = policy.breaker().ok_or("the policy has a breaker")?;

    let reserved = reserve(&mut stock, "flaky-1", 2).await?;
    println!(
        "Reserve(flaky-1): reserved {reserved} after {} call(s): UNAVAILABLE is retried",
        seen.calls("flaky-1")
    );

    let status = reserve(&mut stock, "bad-1", 1).await.unwrap_err();
    println!(
        "Reserve(bad-1): {:?} after {} call(s), breaker failures {}: the caller's mistake is not retried nor counted",
        status.code(),
        seen.calls("bad-1"),
        breaker.metrics().consecutive_failures
    );

    let status = reserve(&mut stock, "down-1", 1).await.unwrap_err();
    println!(
        "Reserve(down-1): {:?} after {} call(s); breaker now {:?}",
        status.code(),
        seen.calls("down-1"),
        breaker.state()
    );

    let status = reserve(&mut stock, "down-2", 1).await.unwrap_err();
    let pushback = status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    println!(
        "Reserve(down-2): {:?} \"{}\" (grpc-retry-pushback-ms: {pushback}) after {} call(s) to the server",
        status.code(),
        status.message(),
        seen.calls("down-2")
    );
    Ok(())
}
