//! Tests that kill the mutants cargo-mutants left alive in `src/state.rs`
//! and `src/window.rs` (issue 19; see `docs/reliability/mutants.md` for each survivor, its
//! verdict and the test that kills it). Deterministic: paused time,
//! response futures held unpolled to keep a probe in flight, and an event
//! listener to act at the exact point of a transition.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use battlement_breaker::future::ResponseFuture;
use battlement_breaker::{Breaker, BreakerService, CircuitState};
use battlement_core::{BoxError, CircuitOpen, ErrorClassifier, Event, EventKind, EventSink};
use tokio::time::{advance, sleep};
use tower::{Service, ServiceExt, service_fn};

type Fut = Pin<Box<dyn Future<Output = Result<&'static str, BoxError>> + Send>>;
type Svc = BreakerService<tower::util::ServiceFn<fn(Req) -> Fut>>;
type Call = ResponseFuture<Fut, ErrorClassifier>;

/// What the inner service does: fail or succeed, after a delay.
#[derive(Clone, Copy)]
struct Req {
    fail: bool,
    delay: Duration,
}

const OK: Req = Req {
    fail: false,
    delay: Duration::ZERO,
};
const FAIL: Req = Req {
    fail: true,
    delay: Duration::ZERO,
};
/// A success slower than the 100 ms slow-call threshold used below.
const SLOW_OK: Req = Req {
    fail: false,
    delay: Duration::from_millis(200),
};

fn inner(req: Req) -> Fut {
    Box::pin(async move {
        if !req.delay.is_zero() {
            sleep(req.delay).await;
        }
        if req.fail {
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
        } else {
            Ok("ok")
        }
    })
}

fn svc(breaker: &Breaker) -> Svc {
    BreakerService::new(service_fn(inner as fn(Req) -> Fut), breaker.clone())
}

/// Starts a call and hands back its response future, unpolled: while it
/// is held, a probe it was admitted as stays in flight; dropping it gives
/// the probe back.
async fn start(s: &mut Svc, req: Req) -> Call {
    s.ready().await.unwrap().call(req)
}

async fn call(s: &mut Svc, req: Req) -> Result<&'static str, BoxError> {
    start(s, req).await.await
}

fn open_err(r: Result<&'static str, BoxError>) -> CircuitOpen {
    r.unwrap_err()
        .downcast::<CircuitOpen>()
        .map(|b| *b)
        .expect("a CircuitOpen")
}

/// Kills `delete match arm DISABLED in Shared::try_acquire_slow`: without
/// the arm a disabled breaker refused every call as half-open, and the
/// older test only called it with a failing request (a refusal is an
/// error too).
#[tokio::test(start_paused = true)]
async fn disabled_admits_every_call_to_the_inner_service() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let mut s = svc(&b);
    b.disable();
    assert_eq!(call(&mut s, OK).await.unwrap(), "ok");
    let err = call(&mut s, FAIL).await.unwrap_err();
    assert!(
        err.downcast_ref::<std::io::Error>().is_some(),
        "the inner service's error, not a refusal: {err}"
    );
    assert_eq!(b.state(), CircuitState::Disabled);
    assert_eq!(b.metrics().rejections, 0);
}

/// Kills `delete match arm CLOSED | METRICS_ONLY in
/// Shared::try_acquire_slow`: the slow path re-reads the state after the
/// open → half-open transition, and the breaker may be closed by then (an
/// operator's `reset` racing the call; here the event listener resets it
/// at that exact point). A closed breaker must admit the call, not refuse
/// it as half-open.
#[tokio::test(start_paused = true)]
async fn a_call_that_finds_the_breaker_reset_during_its_transition_is_admitted() {
    let handle: Arc<OnceLock<Breaker>> = Arc::new(OnceLock::new());
    let listener = {
        let handle = handle.clone();
        move |e: &Event| {
            if let EventKind::StateChanged {
                to: CircuitState::HalfOpen,
                ..
            } = e.kind
            {
                handle.get().expect("set before any call").reset();
            }
        }
    };
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .events(EventSink::new(listener))
        .build()
        .unwrap();
    handle.set(b.clone()).unwrap();
    let mut s = svc(&b);
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
    advance(Duration::from_secs(1)).await;
    // Open → half-open at this call; the listener resets to closed before
    // the call reads the state again.
    assert_eq!(call(&mut s, OK).await.unwrap(), "ok");
    assert_eq!(b.state(), CircuitState::Closed);
    let m = b.metrics();
    assert_eq!(m.rejections, 0);
    assert_eq!(m.window_calls, 1, "recorded as a closed call");
    assert_eq!(m.probes_in_flight, 0);
    // Break the cycle breaker → sink → listener → breaker.
    drop(handle);
}

/// Kills `replace && with || in Shared::release_probe`: a probe of an
/// earlier half-open round that is dropped must free only its place in
/// flight, not give an admission back to the current round (which would
/// then admit more than `permitted_probes`).
#[tokio::test(start_paused = true)]
async fn a_stale_probe_dropped_gives_no_admission_to_the_current_round() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .permitted_probes(2)
        .max_concurrent_probes(3)
        .success_threshold(2)
        .build()
        .unwrap();
    let mut s = svc(&b);
    call(&mut s, FAIL).await.unwrap_err();
    advance(Duration::from_secs(1)).await;

    // Round 1: probe A hangs (held unpolled), probe B fails and re-opens.
    let a = start(&mut s, OK).await;
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.metrics().probes_in_flight, 1);
    advance(Duration::from_secs(1)).await;

    // Round 2: probe C is admitted (1 of 2), then A, of round 1, is dropped.
    let c = start(&mut s, OK).await;
    drop(a);
    assert_eq!(b.metrics().probes_in_flight, 1);
    let d = start(&mut s, OK).await; // 2 of 2
    assert_eq!(b.metrics().probes_in_flight, 2);
    // A place is free in flight (2 < 3) but the round has no admission left.
    let e = open_err(call(&mut s, OK).await);
    assert_eq!(e.state, CircuitState::HalfOpen);
    assert_eq!(b.metrics().rejections, 1);
    // C and D succeed and close.
    c.await.unwrap();
    d.await.unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().probes_in_flight, 0);
}

/// Kills `replace && with || in Shared::complete` (the check after a fast
/// success that brings the window to `minimum_calls`): a metrics-only
/// breaker records but never trips, even when the call that reaches the
/// minimum finds the rate over the threshold. Unclocked (count window, no
/// slow-call rule), so the success takes `complete`'s inlined path.
#[tokio::test(start_paused = true)]
async fn metrics_only_never_trips_when_a_fast_success_reaches_the_minimum() {
    let b = Breaker::builder("b")
        .failure_rate(0.5)
        .count_window(4)
        .minimum_calls(4)
        .metrics_only()
        .build()
        .unwrap();
    let mut s = svc(&b);
    for _ in 0..3 {
        call(&mut s, FAIL).await.unwrap_err();
    }
    assert_eq!(call(&mut s, OK).await.unwrap(), "ok"); // the 4th call
    let m = b.metrics();
    assert_eq!((m.window_calls, m.window_failures), (4, 3));
    assert_eq!(m.state, CircuitState::MetricsOnly);
    assert_eq!(m.trips, 0);
    assert_eq!(call(&mut s, OK).await.unwrap(), "ok");

    // The same in `Closed` trips at that call: the check does run there.
    let c = Breaker::builder("c")
        .failure_rate(0.5)
        .count_window(4)
        .minimum_calls(4)
        .build()
        .unwrap();
    let mut s = svc(&c);
    for _ in 0..3 {
        call(&mut s, FAIL).await.unwrap_err();
    }
    assert_eq!(c.state(), CircuitState::Closed);
    call(&mut s, OK).await.unwrap();
    assert_eq!(c.state(), CircuitState::Open);
}

/// Kills `replace && with || in Shared::complete_slow`: a slow success
/// in a metrics-only breaker is recorded (it is clocked: a slow-call rule)
/// but checks no trip rule.
#[tokio::test(start_paused = true)]
async fn metrics_only_never_trips_on_slow_successes() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .slow_calls(Duration::from_millis(100), 0.5)
        .count_window(4)
        .minimum_calls(1)
        .metrics_only()
        .build()
        .unwrap();
    let mut s = svc(&b);
    for _ in 0..3 {
        assert_eq!(call(&mut s, SLOW_OK).await.unwrap(), "ok");
    }
    let m = b.metrics();
    assert_eq!((m.window_calls, m.window_slow_calls), (3, 3));
    assert_eq!(m.state, CircuitState::MetricsOnly);
    assert_eq!(m.trips, 0);
}

/// Kills `replace > with == in Shared::evaluate` and `replace > with < in
/// Shared::evaluate` (on `counts.slow > 0`): a slow call in a time window
/// that holds fewer than `minimum_calls` leaves the rates to be checked
/// by the next success, which here brings the window to the minimum with
/// a slow-call rate of 1/2, at the threshold.
#[tokio::test(start_paused = true)]
async fn time_window_checks_the_slow_rate_when_a_success_reaches_the_minimum() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .slow_calls(Duration::from_millis(100), 0.5)
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(2)
        .build()
        .unwrap();
    let mut s = svc(&b);
    call(&mut s, SLOW_OK).await.unwrap();
    assert_eq!(b.state(), CircuitState::Closed, "1 call < minimum_calls");
    call(&mut s, OK).await.unwrap();
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.metrics().trips, 1);
}

/// Kills `replace != with == in Shared::set`: setting the state by hand
/// is a transition (its time is now) only when the state changes; a
/// `reset` of a closed breaker keeps the time of the last transition.
#[tokio::test(start_paused = true)]
async fn setting_the_same_state_by_hand_keeps_the_transition_time() {
    let b = Breaker::builder("b").build().unwrap();
    advance(Duration::from_secs(10)).await;
    assert_eq!(b.metrics().since_transition, Duration::from_secs(10));
    let before = b.metrics().last_transition;
    b.reset(); // closed → closed: no transition
    let m = b.metrics();
    assert_eq!(m.since_transition, Duration::from_secs(10));
    assert_eq!(m.last_transition, before);

    b.force_open(); // closed → forced open: a transition, now
    assert_eq!(b.metrics().since_transition, Duration::ZERO);
    advance(Duration::from_secs(3)).await;
    b.force_open(); // forced open → forced open: none
    assert_eq!(b.metrics().since_transition, Duration::from_secs(3));
    b.close(); // forced open → closed: a transition
    assert_eq!(b.metrics().since_transition, Duration::ZERO);
}

// ---- src/window.rs ----

/// Kills `replace > with >= in TimeWindow::counts` and `replace + with *
/// in TimeWindow::counts` (`tag + len > epoch + 1`): a bucket leaves the
/// window exactly `duration` after its epoch began, even when no call has
/// rotated its slot yet. Trip checks always follow a record in the same
/// epoch (which rotates that slot first), so only a reading without a
/// call, as `metrics` is, sees the boundary.
#[tokio::test(start_paused = true)]
async fn a_time_window_bucket_ages_out_exactly_at_the_window_end() {
    let b = Breaker::builder("b")
        .failure_rate(0.5)
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(5)
        .build()
        .unwrap();
    let mut s = svc(&b);
    call(&mut s, FAIL).await.unwrap_err(); // epoch 0, at t = 0
    assert_eq!(b.metrics().window_calls, 1);
    advance(Duration::from_secs(10) - Duration::from_nanos(1)).await; // epoch 9
    let m = b.metrics();
    assert_eq!((m.window_calls, m.window_failures), (1, 1));
    advance(Duration::from_nanos(1)).await; // epoch 10: epoch 0 is out
    let m = b.metrics();
    assert_eq!((m.window_calls, m.window_failures), (0, 0));
    assert_eq!(m.failure_rate, 0.0);
}

/// Kills `replace TimeWindow::clear with ()`: closing (from half-open, or
/// by hand) empties a time window, so the failures that opened the
/// breaker do not count again after it closes.
#[tokio::test(start_paused = true)]
async fn closing_empties_a_time_window() {
    let b = Breaker::builder("b")
        .failure_rate(0.5)
        .time_window(Duration::from_secs(60), 6)
        .minimum_calls(3)
        .open_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut s = svc(&b);
    for _ in 0..3 {
        call(&mut s, FAIL).await.unwrap_err();
    }
    assert_eq!(b.state(), CircuitState::Open);
    advance(Duration::from_secs(1)).await;
    call(&mut s, OK).await.unwrap(); // the probe closes
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().window_calls, 0, "closing emptied the window");
    // One failure of one call is under minimum_calls: no trip.
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().window_calls, 1);

    // A reset of a closed breaker empties it too.
    call(&mut s, OK).await.unwrap();
    assert_eq!(b.metrics().window_calls, 2);
    b.reset();
    let m = b.metrics();
    assert_eq!((m.window_calls, m.window_failures), (0, 0));
    call(&mut s, FAIL).await.unwrap_err();
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Closed, "2 calls < minimum_calls");
}
