//! Retry: a flaky backend made reliable, an outage kept from amplifying.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use battlement::prelude::*;
use battlement::retry::{Backoff, Jitter, RetryBudget, RetryLayer, RetryPolicy};
use battlement::{EventLog, RetryStop};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A backend that refuses the connection on two calls out of three (or on
/// every call when `always_down`), and counts every call it receives.
fn backend(
    calls: Arc<AtomicU32>,
    always_down: bool,
) -> impl Service<u32, Response = String, Error = BoxError> + Clone {
    service_fn(move |id: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if always_down || n % 3 != 2 {
                return Err::<String, BoxError>(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                )));
            }
            Ok(format!("request {id} served on call {}", n + 1))
        }
    })
}

/// Retries a flaky backend with jittered backoff, then shows a budget
/// holding retries to 10% of the traffic under a total outage.
pub(crate) async fn run() {
    println!("== retry: classifier-driven retries with backoff and a budget");
    let log = EventLog::new();
    let policy = RetryPolicy::builder()
        .name("flaky-api")
        .max_attempts(4)
        .backoff(Backoff::exponential(Duration::from_millis(10)).jitter(Jitter::Equal))
        .events(log.sink())
        .build()
        .expect("valid retry policy");
    let calls = Arc::new(AtomicU32::new(0));
    let svc = RetryLayer::new(policy).layer(backend(calls.clone(), false));
    let answer = svc.oneshot(7).await;
    println!(
        "  {answer:?} after {} call(s)",
        calls.load(Ordering::SeqCst)
    );
    for event in log.events() {
        println!("  event: {event}");
    }

    // A total outage: without a budget every request would cost 4 calls.
    let budget = RetryBudget::builder()
        .name("outage-budget")
        .ratio(0.1)
        .min_per_sec(1)
        .build()
        .expect("valid budget");
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .backoff(Backoff::none())
        .budget(budget.clone())
        .build()
        .expect("valid retry policy");
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = RetryLayer::new(policy).layer(backend(calls.clone(), true));
    let (requests, mut by_budget) = (200, 0);
    for id in 0..requests {
        let err = svc
            .ready()
            .await
            .expect("ready")
            .call(id)
            .await
            .unwrap_err();
        if err
            .downcast_ref::<RetriesExhausted>()
            .is_some_and(|ex| ex.reason == RetryStop::BudgetExhausted)
        {
            by_budget += 1;
        }
    }
    let upstream = calls.load(Ordering::SeqCst);
    println!(
        "  outage: {requests} requests -> {upstream} upstream calls (x{:.2}), {by_budget} stopped by the budget, {} retries allowed",
        f64::from(upstream) / f64::from(requests),
        budget.retries_allowed()
    );
}
