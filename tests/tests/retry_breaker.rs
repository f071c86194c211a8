//! Retry outside a breaker (the canonical order): retries stop as soon as
//! the circuit opens, and the open circuit comes back unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use battlement_breaker::Breaker;
use battlement_core::{BoxError, CircuitOpen, EventKind, EventLog, RetriesExhausted, RetryStop};
use battlement_retry::{Backoff, RetryBudget, RetryLayer, RetryPolicy};
use tower::{Service, ServiceBuilder, ServiceExt};

fn down(
    calls: Arc<AtomicU32>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    tower::service_fn(move |_req: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async {
            Err::<u32, BoxError>(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_stops_the_retries_and_is_returned_unchanged() {
    let breaker = Breaker::builder("backend")
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(5))
        .build()
        .unwrap();
    let log = EventLog::new();
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(
            RetryPolicy::builder()
                .max_attempts(5)
                .backoff(Backoff::constant(Duration::from_millis(10)))
                .events(log.sink())
                .build()
                .unwrap(),
        ))
        .layer(breaker.layer())
        .service(down(calls.clone()));

    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    // Three real attempts trip the breaker; the fourth is refused by the
    // open circuit, which is not retryable: it comes back as it is.
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let retries = log
        .kinds()
        .iter()
        .filter(|k| matches!(k, EventKind::Retry { .. }))
        .count();
    assert_eq!(retries, 3);

    // While open, a request costs one refusal and no upstream call.
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_retries_before_the_breaker_trips() {
    let breaker = Breaker::builder("backend-2")
        .consecutive_failures(1_000)
        .no_failure_rate()
        .build()
        .unwrap();
    let budget = RetryBudget::builder()
        .ratio(0.1)
        .min_per_sec(0)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(
            RetryPolicy::builder()
                .max_attempts(3)
                .backoff(Backoff::none())
                .budget(budget.clone())
                .build()
                .unwrap(),
        ))
        .layer(breaker.layer())
        .service(down(calls.clone()));
    let mut by_budget = 0;
    for i in 0..100 {
        let err = svc.ready().await.unwrap().call(i).await.unwrap_err();
        let ex = err.downcast_ref::<RetriesExhausted>().expect("exhausted");
        if ex.reason == RetryStop::BudgetExhausted {
            by_budget += 1;
        }
    }
    // 100 requests deposit 10 retries' worth: at most 110 upstream calls.
    assert!(calls.load(Ordering::SeqCst) <= 110);
    assert!(by_budget >= 90);
    assert_eq!(budget.retries_allowed(), 10);
}
