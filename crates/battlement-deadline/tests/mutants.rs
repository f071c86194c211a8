//! Tests written for the mutants of `src/http/parse.rs`, `src/future.rs` and
//! `src/service.rs` that the other tests missed (see
//! `docs/reliability/mutants/deadline.md`):
//! deterministic, on paused tokio time, through the public API only. They
//! carry the deadline on `http::Request`, so they need the `http` feature.
#![cfg(feature = "http")]

use std::time::Duration;

use battlement_core::{BoxError, Deadline, DeadlineCarrier, DeadlineExceeded};
use battlement_deadline::http::HeaderError;
use battlement_deadline::{AttemptTimeout, AttemptTimeoutLayer, DeadlineLayer, DeadlineService};
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

/// The services' getters (`src/service.rs`): the bounds they were built
/// with, and the inner service.
#[test]
fn the_services_show_their_bounds_and_inner_service() {
    let attempt = AttemptTimeoutLayer::new(Duration::from_secs(1))
        .fraction(0.25)
        .layer(7u8);
    assert_eq!(
        (attempt.per_attempt(), attempt.fraction()),
        (None, Some(0.25))
    );
    let mut fixed = AttemptTimeout::new(8u8, Duration::from_millis(300));
    assert_eq!(
        (fixed.per_attempt(), fixed.fraction()),
        (Some(Duration::from_millis(300)), None)
    );
    *fixed.get_mut() += 1;
    assert_eq!((*fixed.get_ref(), fixed.into_inner()), (9, 9));
    let mut total = DeadlineService::new(5u8, Duration::from_millis(250));
    assert_eq!(total.total(), Duration::from_millis(250));
    *total.get_mut() += 1;
    assert_eq!((*total.get_ref(), total.into_inner()), (6, 6));
}

/// `AttemptTimeout::poll_ready` forwards the inner service's readiness.
#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_is_ready_only_when_its_inner_service_is() {
    let (mock, mut handle) = tower_test::mock::pair::<Req, ()>();
    handle.allow(0);
    let mut svc = AttemptTimeoutLayer::new(Duration::from_secs(1)).layer(mock);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(svc.poll_ready(&mut cx).is_pending());
    handle.allow(1);
    assert!(svc.poll_ready(&mut cx).is_ready());
}

/// `AttemptTimeout::call` (`owned_outside` only when the request's
/// deadline is the one in scope): a request carrying a deadline of its own,
/// tighter than the one in scope, is this layer's to count when it passes.
#[tokio::test(start_paused = true)]
async fn a_deadline_of_the_request_not_the_scopes_is_counted_by_the_attempt() {
    let slow = tower::service_fn(|_req: Req| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, BoxError>(())
    });
    let layer = AttemptTimeoutLayer::new(Duration::from_secs(2));
    let handle = layer.handle();
    let mut svc = layer.layer(slow);
    let mut req = Req::new(());
    req.set_deadline(Deadline::after(Duration::from_millis(200)));
    svc.ready().await.unwrap();
    let fut =
        battlement_core::deadline::scope(Deadline::after(Duration::from_secs(5)), || svc.call(req));
    let err = fut.await.unwrap_err();
    let e = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!(e.budget, Duration::from_millis(200));
    assert_eq!(handle.deadline_exceeded(), 1);
}

/// `AttemptTimeout::call` (`expired_meta(Role::Attempt) | owned_outside`):
/// a request that arrives with its deadline passed fails at once with
/// `DeadlineExceeded`, not as a timed-out attempt.
#[tokio::test(start_paused = true)]
async fn an_attempt_on_an_expired_request_fails_with_the_deadline() {
    let never = tower::service_fn(|_req: Req| async {
        unreachable!("an expired request is not called");
        #[allow(unreachable_code)]
        Ok::<_, BoxError>(())
    });
    let layer = AttemptTimeoutLayer::new(Duration::from_secs(1));
    let handle = layer.handle();
    let mut svc = layer.layer(never);
    let mut req = Req::new(());
    req.set_deadline(Deadline::after(Duration::ZERO));
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(
        (handle.deadline_exceeded(), handle.attempts_timed_out()),
        (1, 0)
    );
}
