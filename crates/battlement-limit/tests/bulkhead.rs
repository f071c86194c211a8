//! The bulkhead: admission, refusal, the bounded wait (first come first
//! served), cancellation at every await point, readiness, the component.

use std::convert::Infallible;
use std::time::Duration;

use battlement_core::{
    BoxError, BulkheadFull, Classify, Control, ErrorClassifier, FailureKind, HealthStatus,
};
use battlement_limit::{Bulkhead, BulkheadService};
use futures_util::FutureExt;
use tokio::time::{advance, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

mod common;
use common::poll_once;

type Mock = mock::Mock<u32, u32>;

fn bulkhead(max: u32, wait: Option<(u64, u32)>) -> Bulkhead {
    let mut b = Bulkhead::builder("pool").max_concurrent(max);
    if let Some((ms, n)) = wait {
        b = b.wait(Duration::from_millis(ms), n);
    }
    b.build().unwrap()
}

fn pair() -> (Mock, mock::Handle<u32, u32>) {
    let (svc, mut handle) = mock::pair::<u32, u32>();
    handle.allow(1000);
    (svc, handle)
}

fn full(err: BoxError) -> BulkheadFull {
    *err.downcast::<BulkheadFull>().expect("a BulkheadFull")
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_refuses_at_once_and_frees_slots_when_calls_end() {
    let b = bulkhead(2, None);
    let (mock, mut handle) = pair();
    let mut svc = b.layer().layer(mock);
    let one = svc.ready().await.unwrap().call(1);
    let two = svc.ready().await.unwrap().call(2);
    assert_eq!(b.in_flight(), 2);
    let err = full(svc.ready().await.unwrap().call(3).await.unwrap_err());
    assert_eq!(&*err.name, "pool");
    assert_eq!(err.max_concurrent, 2);
    assert_eq!(err.waited, Duration::ZERO);
    assert_eq!(err.retry_after, Some(Duration::from_secs(1)));
    // The refused request never reached the inner service.
    let (req, respond) = handle.next_request().await.unwrap();
    assert_eq!(req, 1);
    respond.send_response(10);
    assert_eq!(one.await.unwrap(), 10);
    assert_eq!(b.in_flight(), 1);
    let (req, respond) = handle.next_request().await.unwrap();
    assert_eq!(req, 2);
    respond.send_response(20);
    assert_eq!(two.await.unwrap(), 20);
    assert_eq!(b.in_flight(), 0);
    assert!(handle.next_request().now_or_never().is_none());
    let m = b.metrics();
    assert_eq!((m.admitted, m.rejected, m.waited), (2, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn waiters_get_freed_slots_first_come_first_served() {
    let b = bulkhead(1, Some((1000, 4)));
    let (mock, mut handle) = pair();
    let mut first = b.layer().layer(mock.clone());
    let mut second = b.layer().layer(mock.clone());
    let mut third = b.layer().layer(mock);
    let call = first.ready().await.unwrap().call(1);
    {
        let mut r2 = second.ready();
        assert!(poll_once(&mut r2).await.is_pending());
    }
    {
        let mut r3 = third.ready();
        assert!(poll_once(&mut r3).await.is_pending());
    }
    assert_eq!(b.waiting(), 2);
    // A new caller does not overtake the waiters.
    let (other_mock, _other_handle) = pair();
    let mut newcomer = b.layer().layer(other_mock);
    assert!(poll_once(&mut newcomer.ready()).await.is_pending());
    assert_eq!(b.waiting(), 3);

    handle.next_request().await.unwrap().1.send_response(1);
    call.await.unwrap();
    // The slot went to the first waiter: still one in flight.
    assert_eq!((b.in_flight(), b.waiting()), (1, 2));
    assert!(poll_once(&mut third.ready()).await.is_pending());
    let second_call = second.ready().await.unwrap().call(2);
    handle.next_request().await.unwrap().1.send_response(2);
    second_call.await.unwrap();
    let third_call = third.ready().await.unwrap().call(3);
    assert_eq!(b.waiting(), 1);
    drop(third_call);
    newcomer.ready().await.unwrap();
    assert_eq!((b.in_flight(), b.waiting()), (1, 0));
    assert_eq!(b.metrics().waited, 3);
}

#[tokio::test(start_paused = true)]
async fn a_wait_runs_out_after_max_wait_and_refuses_with_the_time_waited() {
    let b = bulkhead(1, Some((50, 1)));
    let (mock, _handle) = pair();
    let mut holder = b.layer().layer(mock.clone());
    let _held = holder.ready().await.unwrap().call(1);
    let mut waiter = b.layer().layer(mock.clone());
    let mut ready = Box::pin(waiter.ready());
    assert!(poll_once(&mut ready).await.is_pending());
    // Room for one waiter only: the next caller is refused at once.
    let mut other = b.layer().layer(mock);
    let err = full(other.ready().await.unwrap().call(2).await.unwrap_err());
    assert_eq!(err.waited, Duration::ZERO);
    advance(Duration::from_millis(49)).await;
    assert!(poll_once(&mut ready).await.is_pending());
    advance(Duration::from_millis(1)).await;
    // Ready (poll_ready never fails for a full bulkhead), refused in call.
    let svc = ready.await.unwrap();
    let err = full(svc.call(3).await.unwrap_err());
    assert_eq!(err.waited, Duration::from_millis(50));
    let m = b.metrics();
    assert_eq!((m.waiting, m.timed_out, m.rejected, m.waited), (0, 1, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn poll_ready_waits_no_longer_than_max_wait_whatever_the_load() {
    let b = bulkhead(1, Some((20, 100)));
    let slow = service_fn(|_: u32| async {
        sleep(Duration::from_secs(10)).await;
        Ok::<_, Infallible>(0u32)
    });
    let mut holder = b.layer().layer(slow);
    let _held = holder.ready().await.unwrap().call(0);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let svc = b.layer().layer(slow);
        tasks.push(tokio::spawn(async move { svc.oneshot(i).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap_err().is::<BulkheadFull>());
    }
    assert_eq!(start.elapsed(), Duration::from_millis(20));
    let m = b.metrics();
    assert_eq!((m.in_flight, m.waiting, m.timed_out), (1, 0, 10));
}

/// Await point 1: dropping a call that waits for a slot (a `oneshot`, which
/// owns its service) gives its place back.
#[tokio::test(start_paused = true)]
async fn dropping_a_waiting_call_gives_its_place_back() {
    let b = bulkhead(1, Some((1000, 1)));
    let (mock, mut handle) = pair();
    let held = b.layer().layer(mock.clone()).oneshot(1);
    let mut held = Box::pin(held);
    assert!(poll_once(&mut held).await.is_pending());
    let mut waiting = Box::pin(b.layer().layer(mock.clone()).oneshot(2));
    assert!(poll_once(&mut waiting).await.is_pending());
    assert_eq!(b.waiting(), 1);
    drop(waiting);
    assert_eq!(b.waiting(), 0);
    // The place is free for another waiter, which gets the slot.
    let mut next = Box::pin(b.layer().layer(mock).oneshot(3));
    assert!(poll_once(&mut next).await.is_pending());
    assert_eq!(b.waiting(), 1);
    handle.next_request().await.unwrap().1.send_response(1);
    held.await.unwrap();
    // Granted: its poll makes the call.
    assert!(poll_once(&mut next).await.is_pending());
    let (req, respond) = handle.next_request().await.unwrap();
    assert_eq!(req, 3);
    respond.send_response(3);
    assert_eq!(next.await.unwrap(), 3);
    assert_eq!((b.in_flight(), b.waiting()), (0, 0));
}

/// Await point 1b: a waiter granted a slot but dropped before it ran hands
/// the slot to the next waiter.
#[tokio::test(start_paused = true)]
async fn a_granted_waiter_dropped_before_its_call_passes_the_slot_on() {
    let b = bulkhead(1, Some((1000, 2)));
    let (mock, mut handle) = pair();
    let mut held = Box::pin(b.layer().layer(mock.clone()).oneshot(1));
    assert!(poll_once(&mut held).await.is_pending());
    let mut granted = Box::pin(b.layer().layer(mock.clone()).oneshot(2));
    assert!(poll_once(&mut granted).await.is_pending());
    let mut next = Box::pin(b.layer().layer(mock).oneshot(3));
    assert!(poll_once(&mut next).await.is_pending());
    handle.next_request().await.unwrap().1.send_response(1);
    held.await.unwrap();
    // The first waiter holds the slot now, without having run: drop it.
    assert_eq!((b.in_flight(), b.waiting()), (1, 1));
    drop(granted);
    assert_eq!((b.in_flight(), b.waiting()), (1, 0));
    assert!(poll_once(&mut next).await.is_pending());
    let (req, respond) = handle.next_request().await.unwrap();
    assert_eq!(req, 3);
    respond.send_response(3);
    assert_eq!(next.await.unwrap(), 3);
    assert_eq!(b.in_flight(), 0);
}

/// Await point 2: a slot taken while the inner service is not ready goes
/// back when the call is dropped.
#[tokio::test(start_paused = true)]
async fn dropping_a_call_whose_inner_service_is_not_ready_frees_its_slot() {
    let b = bulkhead(1, None);
    let (mock, mut handle) = mock::pair::<u32, u32>();
    handle.allow(0);
    let mut call = Box::pin(b.layer().layer(mock).oneshot(1));
    assert!(poll_once(&mut call).await.is_pending());
    assert_eq!(b.in_flight(), 1);
    drop(call);
    assert_eq!(b.in_flight(), 0);
}

/// Await point 3: dropping a response future in flight frees its slot.
#[tokio::test(start_paused = true)]
async fn dropping_a_call_in_flight_frees_its_slot() {
    let b = bulkhead(1, None);
    let (mock, _handle) = pair();
    let mut svc = b.layer().layer(mock);
    let mut fut = svc.ready().await.unwrap().call(1);
    assert!(poll_once(&mut fut).await.is_pending());
    assert_eq!(b.in_flight(), 1);
    drop(fut);
    assert_eq!(b.in_flight(), 0);
    svc.ready().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_clone_does_not_copy_the_slot_of_its_original() {
    let b = bulkhead(1, None);
    let (mock, mut handle) = pair();
    let mut svc: BulkheadService<Mock> = b.layer().layer(mock);
    svc.ready().await.unwrap();
    let mut clone = svc.clone();
    assert_eq!(b.in_flight(), 1, "the clone took no slot");
    assert!(
        clone
            .ready()
            .await
            .unwrap()
            .call(2)
            .await
            .unwrap_err()
            .is::<BulkheadFull>()
    );
    let fut = svc.call(1);
    handle.next_request().await.unwrap().1.send_response(1);
    assert_eq!(fut.await.unwrap(), 1);
    // Dropping a service that holds a slot for its next call frees it.
    clone.ready().await.unwrap();
    assert_eq!(b.in_flight(), 1);
    drop(clone);
    assert_eq!(b.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_inner_readiness_error_frees_the_slot_and_is_returned() {
    let b = bulkhead(1, None);
    let (mock, mut handle) = mock::pair::<u32, u32>();
    handle.send_error("dead");
    let mut svc = b.layer().layer(mock);
    let err = svc.ready().await.unwrap_err();
    assert_eq!(err.to_string(), "dead");
    assert_eq!(b.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_a_non_retryable_rejection_with_its_retry_after() {
    let b = Bulkhead::builder("pool")
        .max_concurrent(1)
        .retry_after(Some(Duration::from_secs(3)))
        .build()
        .unwrap();
    let (mock, _handle) = pair();
    let mut svc = b.layer().layer(mock);
    let _held = svc.ready().await.unwrap().call(1);
    let result: Result<u32, BoxError> = svc.ready().await.unwrap().call(2).await;
    let failure = ErrorClassifier::new()
        .classify(&result)
        .as_failure()
        .copied()
        .unwrap();
    assert_eq!(failure.kind, FailureKind::Rejected);
    assert!(!failure.retryable);
    assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
}

#[tokio::test(start_paused = true)]
async fn the_registry_shows_in_flight_waiting_and_rejected() {
    let registry = battlement_registry::Registry::new();
    let b = bulkhead(1, Some((100, 1)));
    registry.register(&b).unwrap();
    let (mock, _handle) = pair();
    let mut held = Box::pin(b.layer().layer(mock.clone()).oneshot(1));
    assert!(poll_once(&mut held).await.is_pending());
    let mut waiting = Box::pin(b.layer().layer(mock.clone()).oneshot(2));
    assert!(poll_once(&mut waiting).await.is_pending());
    assert!(b.layer().layer(mock).oneshot(3).await.is_err());

    let report = registry.get("pool").unwrap();
    assert_eq!(report.kind.as_str(), "bulkhead");
    assert_eq!(report.reported_status, HealthStatus::Degraded);
    let d = &report.details;
    assert_eq!(d["in_flight"], 1);
    assert_eq!(d["waiting"], 1);
    assert_eq!(d["limit"], 1);
    assert_eq!(d["rejected"], 1);
    assert_eq!(d["admitted"], 1);
    registry.control("pool", &Control::Reset).unwrap();
    assert!(registry.control("pool", &Control::ForceOpen).is_err());
    drop((held, waiting));
    let report = registry.get("pool").unwrap();
    assert_eq!(report.reported_status, HealthStatus::Healthy);
    assert_eq!(report.details["rejected"], 1, "totals never go down");
}

#[test]
fn build_names_the_field_and_the_bound() {
    let cases: [(battlement_limit::BulkheadBuilder, &str); 5] = [
        (Bulkhead::builder("b").max_concurrent(0), "max_concurrent"),
        (
            Bulkhead::builder("b").max_concurrent(battlement_limit::MAX_SLOTS + 1),
            "max_concurrent",
        ),
        (Bulkhead::builder("b").wait(Duration::ZERO, 3), "max_wait"),
        (
            Bulkhead::builder("b").wait(Duration::from_secs(1), 100_001),
            "max_waiting",
        ),
        (
            Bulkhead::builder("b").retry_after(Some(Duration::from_secs(3601))),
            "retry_after",
        ),
    ];
    for (builder, field) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.field, field);
        assert_eq!(err.component, "bulkhead");
        assert!(err.to_string().contains("must be"), "{err}");
    }
    // No waiting at all needs no max_wait.
    Bulkhead::builder("b")
        .wait(Duration::ZERO, 0)
        .build()
        .unwrap();
}
