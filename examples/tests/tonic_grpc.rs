//! The `tonic_grpc` example end to end over 127.0.0.1: `UNAVAILABLE` is
//! retried, `INVALID_ARGUMENT` is neither retried nor counted against the
//! breaker, and an open circuit reaches the tonic caller as `UNAVAILABLE`
//! with a pushback.
#![cfg(feature = "tonic")]

use battlement::prelude::*;
use std::time::Duration;

use battlement_examples::tonic_grpc::{client, reserve, reserve_within, serve};
use tonic::Code;

#[tokio::test]
async fn unavailable_is_retried_and_a_caller_mistake_is_not() {
    let (addr, seen) = serve().await.unwrap();
    let registry = Registry::new();
    let (mut stock, policy) = client(addr, &registry).unwrap();
    let breaker = policy.breaker().unwrap();

    assert_eq!(reserve(&mut stock, "flaky-1", 2).await.unwrap(), 2);
    assert_eq!(seen.calls("flaky-1"), 3, "two UNAVAILABLE, then served");
    assert_eq!(breaker.metrics().consecutive_failures, 0);

    let status = reserve(&mut stock, "bad-1", 1).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "no such SKU format");
    assert_eq!(seen.calls("bad-1"), 1, "not retried");
    let metrics = breaker.metrics();
    assert_eq!(metrics.window_failures, 2, "only flaky-1's two failures");
    assert_eq!(metrics.consecutive_failures, 0, "not counted as a failure");
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test]
async fn an_open_circuit_reaches_the_caller_as_unavailable() {
    let (addr, seen) = serve().await.unwrap();
    let registry = Registry::new();
    let (mut stock, policy) = client(addr, &registry).unwrap();
    let breaker = policy.breaker().unwrap();

    // Three attempts, three failures in a row: the breaker opens.
    let status = reserve(&mut stock, "down-1", 1).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "warehouse offline");
    assert_eq!(seen.calls("down-1"), 3);
    assert_eq!(breaker.state(), CircuitState::Open);

    let status = reserve(&mut stock, "down-2", 1).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("stock/breaker"), "{status:?}");
    let pushback: u64 = status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pushback > 0 && pushback <= 30_000, "{pushback}");
    assert_eq!(seen.calls("down-2"), 0, "the server was not called");
}

/// The `grpc-timeout` the server sees is below the client's budget (each
/// attempt's 500 ms bound, less the margin) and never above a timeout the
/// caller set: tonic's `set_timeout(200ms)` stays 200 ms or less.
#[tokio::test]
async fn the_server_sees_a_budget_below_the_clients_and_the_callers() {
    let (addr, seen) = serve().await.unwrap();
    let registry = Registry::new();
    let (mut stock, _policy) = client(addr, &registry).unwrap();

    reserve(&mut stock, "ok-1", 1).await.unwrap();
    reserve_within(&mut stock, "ok-2", 1, Some(Duration::from_millis(200)))
        .await
        .unwrap();
    let timeouts = seen.timeouts();
    assert_eq!(timeouts.len(), 2, "{timeouts:?}");
    let first = timeouts[0].expect("a grpc-timeout on the first call");
    assert!(
        first > Duration::ZERO && first <= Duration::from_millis(500),
        "{first:?}"
    );
    let second = timeouts[1].expect("a grpc-timeout on the second call");
    assert!(
        second > Duration::ZERO && second <= Duration::from_millis(200),
        "the caller's 200 ms was loosened: {second:?}"
    );
}
