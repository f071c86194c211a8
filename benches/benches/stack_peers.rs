//! The peers' stacks on the happy path, beside `stack/canonical` and
//! `stack/policy` (in `stack.rs`), over the same kind of bare
//! `service_fn`:
//!
//! - `tower_resilience_standard`: tower-resilience's own "standard
//!   stack" of four (its `composition::stacks` docs, outermost first):
//!   `TimeLimiter(30 s) → Retry(3 attempts, exponential 100 ms) →
//!   CircuitBreaker(50 % failures) → TimeLimiter(10 s) → service`.
//! - `tower_builtins`: what tower itself offers for the same shape:
//!   `Timeout(30 s) → Retry(a policy that never retries) → Timeout(10 s)
//!   → service` (tower has no breaker).

use std::future::{Ready, ready};
use std::hint::black_box;
use std::time::Duration;

use battlement_benches::call_now;
use support::row;

mod support;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::timeout::TimeoutLayer;
use tower::{BoxError, Layer, service_fn};
use tower_resilience::circuitbreaker::{CircuitBreakerError, CircuitBreakerLayer};
use tower_resilience::retry::RetryLayer as TrRetryLayer;
use tower_resilience::timelimiter::{TimeLimiterError, TimeLimiterLayer};

/// The error tower-resilience's layers need (`Clone`, `Send + Sync`).
#[derive(Debug, Clone)]
struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("down")
    }
}

impl std::error::Error for Down {}

/// The error the retry layer of tower-resilience's stack sees.
type InnerError = CircuitBreakerError<TimeLimiterError<Down>>;

/// A `tower::retry` policy that never retries.
#[derive(Clone, Copy)]
struct NeverRetry;

impl<E> tower::retry::Policy<u64, u64, E> for NeverRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut u64, _result: &mut Result<u64, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn bench(c: &mut Criterion) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    let bare = || service_fn(|x: u64| ready(Ok::<u64, Down>(x)));

    let attempt = TimeLimiterLayer::builder()
        .timeout_duration(Duration::from_secs(10))
        .build();
    let breaker = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .build()
        .expect("tower-resilience breaker");
    let retry = TrRetryLayer::<u64, u64, InnerError>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_millis(100))
        .build();
    let total = TimeLimiterLayer::builder()
        .timeout_duration(Duration::from_secs(30))
        .build();
    let mut tr_stack = total.layer(retry.layer(breaker.layer(attempt.layer(bare()))));

    let mut builtins = TimeoutLayer::new(Duration::from_secs(30)).layer(
        tower::retry::RetryLayer::new(NeverRetry)
            .layer(TimeoutLayer::new(Duration::from_secs(10)).layer(bare())),
    );
    let mut plain = bare();

    // The peers' futures must be ready on the first poll for `call_now`.
    let _: Result<u64, _> = call_now(&mut tr_stack, 1);
    let _: Result<u64, BoxError> = call_now(&mut builtins, 1);

    let mut group = c.benchmark_group("stack_peers");
    row(
        &mut group,
        "stack_peers",
        "bare_service_fn",
        &mut plain,
        1u64,
    );
    row(
        &mut group,
        "stack_peers",
        "tower_resilience_standard",
        &mut tr_stack,
        1u64,
    );
    row(
        &mut group,
        "stack_peers",
        "tower_builtins",
        &mut builtins,
        1u64,
    );
    group.finish();
    black_box(&tr_stack);
}

criterion_group!(benches, bench);
criterion_main!(benches);
