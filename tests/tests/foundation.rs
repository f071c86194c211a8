//! The foundation across crates: the facade's prelude, a real tower stack,
//! and the core vocabulary working together.

use std::time::Duration;

use battlement::prelude::*;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// tower's own timeout, stacked on a slow service and seen through the
/// facade: `Elapsed` classifies as a retryable timeout, and the deadline
/// the request carried is visible inside.
#[tokio::test(start_paused = true)]
async fn tower_timeout_is_classified_through_the_facade() {
    let inner = service_fn(|req: http::Request<()>| async move {
        let left = req.deadline().expect("deadline carried").remaining();
        assert_eq!(left, Duration::from_millis(300));
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, BoxError>("late")
    });
    let mut svc = ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .service(inner);

    let mut req = http::Request::new(());
    req.tighten_deadline(Deadline::after(Duration::from_millis(300)));
    let started = tokio::time::Instant::now();
    let result = svc.ready().await.unwrap().call(req).await;
    assert_eq!(started.elapsed(), Duration::from_millis(100));

    let outcome = ErrorClassifier::new().classify(&result);
    assert_eq!(outcome, Outcome::failure(FailureKind::Timeout));
    assert!(outcome.is_retryable());
}

/// A workspace error returned by a service travels boxed through
/// `map_err` layers and keeps its classification and retry-after.
#[tokio::test(start_paused = true)]
async fn workspace_errors_survive_a_stack() {
    let inner = service_fn(|_: &'static str| async {
        Err::<(), BoxError>(Box::new(CircuitOpen::new(
            "payments",
            CircuitState::Open,
            Some(Duration::from_secs(5)),
        )))
    });
    let mut svc = ServiceBuilder::new()
        .map_err(|e: BoxError| -> BoxError { Box::new(std::io::Error::other(e)) })
        .service(inner);
    let err = svc.ready().await.unwrap().call("x").await.unwrap_err();
    let failure = ErrorClassifier::new().classify_error(&*err);
    assert_eq!(failure.kind, FailureKind::Rejected);
    assert_eq!(failure.retry_after, Some(Duration::from_secs(5)));
}
