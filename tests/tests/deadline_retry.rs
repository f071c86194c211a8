//! `DeadlineLayer` stacked with `RetryLayer` and `AttemptTimeoutLayer` on
//! paused time: the total budget cuts the third of three 400 ms attempts
//! under a 1 s budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use battlement::{
    BoxError, Classify, Deadline, DeadlineCarrier, DeadlineExceeded, ErrorClassifier, EventKind,
    EventLog,
};
use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
use battlement_retry::{Backoff, RetryLayer, RetryPolicy};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// A cloneable request that carries its deadline.
#[derive(Clone, Debug, Default)]
struct Job {
    deadline: Option<Deadline>,
}

impl DeadlineCarrier for Job {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }
}

#[tokio::test(start_paused = true)]
async fn total_budget_cuts_the_third_attempt() {
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    let hangs = service_fn(move |_: Job| {
        seen.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, BoxError>("done")
        }
    });
    let log = EventLog::new();
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(Backoff::none())
        .events(log.sink())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)).events(log.sink()))
        .layer(RetryLayer::new(policy))
        .layer(AttemptTimeoutLayer::new(Duration::from_millis(400)).events(log.sink()))
        .service(hangs);

    let start = Instant::now();
    let res = svc.ready().await.unwrap().call(Job::default()).await;
    assert!(!ErrorClassifier::new().classify(&res).is_retryable());
    let err = res.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    // The third attempt had 200 ms, and the total ran out in it: the
    // total owns its expiry, so the error is the total's (its budget, its
    // elapsed), not the attempt's slice of it.
    let e = err
        .downcast_ref::<DeadlineExceeded>()
        .expect("DeadlineExceeded");
    assert_eq!(e.budget, Duration::from_secs(1));
    assert_eq!(e.elapsed, Duration::from_secs(1));

    let kinds = log.kinds();
    let timed_out = kinds
        .iter()
        .filter(|k| matches!(k, EventKind::AttemptTimedOut { .. }))
        .count();
    let retries = kinds
        .iter()
        .filter(|k| matches!(k, EventKind::Retry { .. }))
        .count();
    assert_eq!((timed_out, retries), (2, 2), "{kinds:?}");
    // The total layer reports the hit, once, with its own figures.
    let total_hits: Vec<_> = kinds
        .iter()
        .filter(|k| matches!(k, EventKind::DeadlineExceeded { .. }))
        .collect();
    assert_eq!(
        total_hits,
        [&EventKind::DeadlineExceeded {
            budget: Duration::from_secs(1),
            elapsed: Duration::from_secs(1),
        }],
        "{kinds:?}"
    );
}
