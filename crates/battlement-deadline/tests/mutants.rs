//! Tests written for the mutants of `src/http/parse.rs` and `src/future.rs`
//! that the other tests missed (see `docs/reliability/mutants/deadline.md`):
//! deterministic, on paused tokio time, through the public API only.

use std::time::Duration;

use battlement_core::{BoxError, Deadline, DeadlineCarrier, DeadlineExceeded};
use battlement_deadline::http::HeaderError;
use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
use tower::{Layer, Service, ServiceExt};

/// `HeaderError::as_str` and its `Display`: the `reason` of the 400 answer,
/// word for word.
#[test]
fn each_header_error_reads_as_its_reason() {
    let cases = [
        (HeaderError::Empty, "empty value"),
        (HeaderError::Negative, "negative value"),
        (HeaderError::InvalidCharacter, "not a decimal number"),
        (HeaderError::NoDigits, "no digits before the unit"),
        (HeaderError::TooManyDigits, "more than 8 digits"),
        (
            HeaderError::MissingUnit,
            "missing unit (one of H, M, S, m, u, n)",
        ),
        (
            HeaderError::InvalidUnit,
            "unknown unit (expected one of H, M, S, m, u, n)",
        ),
        (HeaderError::Overflow, "value too large"),
    ];
    for (err, reason) in cases {
        assert_eq!(err.as_str(), reason);
        assert_eq!(err.to_string(), reason);
    }
}

type Req = http::Request<()>;

/// `ResponseFuture`'s `Debug` (`src/future.rs`): running with its bound,
/// then done once its timer fired; a request that arrived expired reads
/// `expired` until polled.
#[tokio::test(start_paused = true)]
async fn a_response_future_debug_shows_its_state_and_bound() {
    let slow = tower::service_fn(|_req: Req| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, BoxError>(())
    });
    let mut svc = DeadlineLayer::new(Duration::from_millis(300)).layer(slow);
    let mut fut = Box::pin(svc.ready().await.unwrap().call(Req::new(())));
    assert_eq!(
        format!("{fut:?}"),
        r#"ResponseFuture { state: "running", bound: 300ms }"#
    );
    let err = fut.as_mut().await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(
        format!("{fut:?}"),
        r#"ResponseFuture { state: "done", bound: 300ms }"#
    );

    let mut late = Req::new(());
    late.set_deadline(Deadline::after(Duration::ZERO));
    let mut fut = Box::pin(svc.ready().await.unwrap().call(late));
    assert_eq!(
        format!("{fut:?}"),
        r#"ResponseFuture { state: "expired", bound: 0ns }"#
    );
    let err = fut.as_mut().await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(
        format!("{fut:?}"),
        r#"ResponseFuture { state: "done", bound: 0ns }"#
    );
}

/// `inner_failed` (`total && now >= at && hit_a_deadline(..)`): an inner
/// layer's tighter deadline, hit before the outer one, passes through as
/// the inner layer's error; the outer layer neither answers for it nor
/// counts it.
#[tokio::test(start_paused = true)]
async fn an_inner_deadline_hit_before_the_outer_one_is_the_inner_layers() {
    let slow = tower::service_fn(|_req: Req| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, BoxError>(())
    });
    let outer = DeadlineLayer::new(Duration::from_secs(1));
    let inner = DeadlineLayer::new(Duration::from_millis(100));
    let (outer_handle, inner_handle) = (outer.handle(), inner.handle());
    let mut svc = outer.layer(inner.layer(slow));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Req::new(()))
        .await
        .unwrap_err();
    let e = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!(e.budget, Duration::from_millis(100));
    assert_eq!(
        (
            outer_handle.deadline_exceeded(),
            inner_handle.deadline_exceeded()
        ),
        (0, 1)
    );
}

/// `hit_a_deadline`: an inner failure that is not a deadline, at the very
/// instant the deadline passes, stays the inner failure.
#[tokio::test(start_paused = true)]
async fn another_failure_at_the_deadline_instant_passes_as_it_is() {
    let failing = tower::service_fn(|_req: Req| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Err::<(), BoxError>("boom".into())
    });
    let layer = DeadlineLayer::new(Duration::from_millis(300));
    let handle = layer.handle();
    let mut svc = layer.layer(failing);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Req::new(()))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert_eq!(handle.deadline_exceeded(), 0);
}

/// `poll` (`meta & SCOPED != 0`): an attempt timeout with no bound to
/// apply (a fraction only, and no deadline on the request or in scope)
/// puts no deadline in scope while its inner future runs.
#[tokio::test(start_paused = true)]
async fn an_unbounded_attempt_puts_no_deadline_in_scope() {
    let seen = tower::service_fn(|_req: Req| async {
        // Runs at the first poll, inside the attempt's `poll`.
        Ok::<_, BoxError>(battlement_core::deadline::current())
    });
    let layer = AttemptTimeoutLayer::new(Duration::from_secs(1)).fraction(0.5);
    let mut svc = layer.layer(seen);
    let seen = svc.ready().await.unwrap().call(Req::new(())).await.unwrap();
    assert_eq!(seen, None);
}

/// `ROLE_ATTEMPT` (in `inner_failed`, only a total layer takes over a
/// deadline hit inside it): an attempt timeout cut by the request's
/// deadline, whose inner deadline layer hits that same deadline first,
/// passes the inner layer's error on and counts nothing itself.
#[tokio::test(start_paused = true)]
async fn an_attempt_leaves_a_deadline_hit_inside_it_to_the_inner_layer() {
    let slow = tower::service_fn(|_req: Req| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, BoxError>(())
    });
    let attempt = AttemptTimeoutLayer::new(Duration::from_secs(1));
    let total = DeadlineLayer::new(Duration::from_secs(5));
    let (attempt_handle, total_handle) = (attempt.handle(), total.handle());
    let mut svc = attempt.layer(total.layer(slow));
    let mut req = Req::new(());
    req.set_deadline(Deadline::after(Duration::from_millis(200)));
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    let e = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!(e.budget, Duration::from_millis(200));
    assert_eq!(total_handle.deadline_exceeded(), 1);
    assert_eq!(
        (
            attempt_handle.deadline_exceeded(),
            attempt_handle.attempts_timed_out()
        ),
        (0, 0)
    );
}
