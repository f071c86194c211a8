//! Transitions of every trip rule, on paused time.

use std::time::Duration;

use battlement_breaker::{Breaker, BreakerService, CircuitState};
use battlement_core::{
    BoxError, CircuitOpen, Control, EventKind, EventLog, FailureKind, HealthStatus, InvalidConfig,
    Outcome,
};
use tokio::time::{advance, sleep};
use tower::{Service, ServiceExt, service_fn};

type Svc = BreakerService<
    tower::util::ServiceFn<
        fn(Req) -> std::pin::Pin<Box<dyn Future<Output = Result<&'static str, BoxError>> + Send>>,
    >,
>;

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

fn inner(
    req: Req,
) -> std::pin::Pin<Box<dyn Future<Output = Result<&'static str, BoxError>> + Send>> {
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
    BreakerService::new(service_fn(inner as fn(Req) -> _), breaker.clone())
}

async fn call(s: &mut Svc, req: Req) -> Result<&'static str, BoxError> {
    s.ready().await.unwrap().call(req).await
}

fn open_err(r: Result<&'static str, BoxError>) -> CircuitOpen {
    r.unwrap_err()
        .downcast::<CircuitOpen>()
        .map(|b| *b)
        .expect("a CircuitOpen")
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_and_success_resets_the_streak() {
    let log = EventLog::new();
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(3)
        .events(log.sink())
        .build()
        .unwrap();
    let mut s = svc(&b);
    call(&mut s, FAIL).await.unwrap_err();
    call(&mut s, FAIL).await.unwrap_err();
    call(&mut s, OK).await.unwrap();
    assert_eq!(b.metrics().consecutive_successes, 1);
    call(&mut s, FAIL).await.unwrap_err();
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().consecutive_failures, 2);
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
    let e = open_err(call(&mut s, OK).await);
    assert_eq!(e.state, CircuitState::Open);
    assert_eq!(e.retry_after, Some(Duration::from_secs(5)));
    assert_eq!(b.metrics().rejections, 1);
    match &log.kinds()[0] {
        EventKind::StateChanged { from, to, reason } => {
            assert_eq!((*from, *to), (CircuitState::Closed, CircuitState::Open));
            assert!(reason.contains("3 consecutive failures"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The streaks and lifetime totals through every path a result can take:
/// recorded while closed, a probe, and a stale result that lands after the
/// breaker moved on (counted in the totals, not in the streak).
#[tokio::test(start_paused = true)]
async fn streaks_and_lifetime_totals_count_every_path() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut stale_caller = svc(&b);
    let stale = tokio::spawn(async move {
        call(
            &mut stale_caller,
            Req {
                fail: false,
                delay: Duration::from_secs(10),
            },
        )
        .await
    });
    tokio::task::yield_now().await;
    let mut s = svc(&b);
    let streaks = |b: &Breaker| {
        let m = b.metrics();
        (m.consecutive_successes, m.consecutive_failures)
    };
    call(&mut s, OK).await.unwrap();
    call(&mut s, OK).await.unwrap();
    assert_eq!(streaks(&b), (2, 0));
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(streaks(&b), (0, 1));
    call(&mut s, OK).await.unwrap();
    assert_eq!(streaks(&b), (1, 0));
    call(&mut s, FAIL).await.unwrap_err();
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(streaks(&b), (0, 2));
    open_err(call(&mut s, OK).await);
    advance(Duration::from_secs(1)).await;
    call(&mut s, OK).await.unwrap(); // the probe closes
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(streaks(&b), (0, 0), "a close starts both streaks afresh");
    call(&mut s, OK).await.unwrap();
    assert_eq!(streaks(&b), (1, 0));
    advance(Duration::from_secs(10)).await;
    stale.await.unwrap().unwrap();
    let m = b.metrics();
    assert_eq!((m.consecutive_successes, m.consecutive_failures), (1, 0));
    // 3 closed successes + the probe + 1 after the close + the stale one.
    assert_eq!((m.successes, m.failures, m.ignored), (6, 3, 0));
    assert_eq!((m.calls, m.rejections), (9, 1));
}

#[tokio::test(start_paused = true)]
async fn failure_rate_needs_minimum_calls() {
    let b = Breaker::builder("b")
        .failure_rate(0.5)
        .count_window(10)
        .minimum_calls(4)
        .build()
        .unwrap();
    let mut s = svc(&b);
    call(&mut s, FAIL).await.unwrap_err();
    call(&mut s, FAIL).await.unwrap_err();
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Closed, "3 calls < minimum 4");
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
    let m = b.metrics();
    assert_eq!((m.window_calls, m.window_failures), (4, 4));
    assert_eq!(m.failure_rate, 1.0);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_below_threshold_stays_closed_and_count_window_wraps() {
    let b = Breaker::builder("b")
        .failure_rate(0.5)
        .count_window(4)
        .minimum_calls(4)
        .build()
        .unwrap();
    let mut s = svc(&b);
    for r in [FAIL, OK, OK, OK, FAIL, OK] {
        let _ = call(&mut s, r).await;
    }
    // Window now holds [FAIL, OK, OK, OK, FAIL, OK][2..] = OK OK FAIL OK.
    let m = b.metrics();
    assert_eq!((m.window_calls, m.window_failures), (4, 1));
    assert_eq!(b.state(), CircuitState::Closed);
    call(&mut s, FAIL).await.unwrap_err(); // OK FAIL OK FAIL: 0.5
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_even_when_successful() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .slow_calls(Duration::from_millis(100), 0.5)
        .count_window(4)
        .minimum_calls(2)
        .build()
        .unwrap();
    let mut s = svc(&b);
    let slow = Req {
        fail: false,
        delay: Duration::from_millis(150),
    };
    let exactly = Req {
        fail: false,
        delay: Duration::from_millis(100),
    };
    call(&mut s, exactly).await.unwrap(); // not longer than: not slow
    assert_eq!(b.metrics().window_slow_calls, 0);
    call(&mut s, OK).await.unwrap();
    call(&mut s, slow).await.unwrap(); // 1/3 < 0.5
    assert_eq!(b.state(), CircuitState::Closed);
    call(&mut s, slow).await.unwrap(); // 2/4
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.metrics().slow_calls, 2);
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_old_failures() {
    let b = Breaker::builder("b")
        .failure_rate(0.5)
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(3)
        .build()
        .unwrap();
    let mut s = svc(&b);
    call(&mut s, FAIL).await.unwrap_err();
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.metrics().window_calls, 2);
    // An idle gap longer than the window.
    advance(Duration::from_secs(30)).await;
    assert_eq!(b.metrics().window_calls, 0);
    call(&mut s, OK).await.unwrap();
    call(&mut s, OK).await.unwrap();
    call(&mut s, FAIL).await.unwrap_err(); // 1/3
    assert_eq!(b.state(), CircuitState::Closed);
    // Buckets roll: after 5 s the first calls are still in, after 10 s gone.
    advance(Duration::from_secs(5)).await;
    assert_eq!(b.metrics().window_calls, 3);
    advance(Duration::from_secs(6)).await;
    assert_eq!(b.metrics().window_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn half_open_closes_after_success_threshold() {
    let log = EventLog::new();
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .permitted_probes(2)
        .success_threshold(2)
        .events(log.sink())
        .build()
        .unwrap();
    let mut s = svc(&b);
    call(&mut s, FAIL).await.unwrap_err();
    advance(Duration::from_millis(999)).await;
    let e = open_err(call(&mut s, OK).await);
    assert_eq!(e.retry_after, Some(Duration::from_millis(1)));
    advance(Duration::from_millis(1)).await;
    call(&mut s, OK).await.unwrap();
    assert_eq!(b.state(), CircuitState::HalfOpen);
    call(&mut s, OK).await.unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
    let states: Vec<_> = log
        .kinds()
        .into_iter()
        .filter_map(|k| match k {
            EventKind::StateChanged { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            CircuitState::Open,
            CircuitState::HalfOpen,
            CircuitState::Closed
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn exponential_open_duration_grows_and_resets_on_close() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .exponential_open(Duration::from_secs(1), 2.0, Duration::from_secs(5))
        .build()
        .unwrap();
    let mut s = svc(&b);
    call(&mut s, FAIL).await.unwrap_err();
    let mut seen = vec![];
    for _ in 0..4 {
        let m = b.metrics();
        seen.push(m.open_duration);
        advance(m.open_duration).await;
        call(&mut s, FAIL).await.unwrap_err(); // failed probe: re-open
        assert_eq!(b.state(), CircuitState::Open);
    }
    seen.push(b.metrics().open_duration);
    let secs = |n| Duration::from_secs(n);
    assert_eq!(seen, [secs(1), secs(2), secs(4), secs(5), secs(5)]);
    // A successful probe closes and resets the sequence.
    advance(secs(5)).await;
    call(&mut s, OK).await.unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.metrics().open_duration, secs(1));
    assert_eq!(b.metrics().reopens, 0);
}

#[tokio::test(start_paused = true)]
async fn stale_result_from_before_a_transition_is_not_a_probe() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut slow_caller = svc(&b);
    let mut s = svc(&b);
    // A slow call admitted while closed...
    let slow_ok = tokio::spawn(async move {
        call(
            &mut slow_caller,
            Req {
                fail: true,
                delay: Duration::from_secs(3),
            },
        )
        .await
    });
    tokio::task::yield_now().await;
    call(&mut s, FAIL).await.unwrap_err(); // opens
    advance(Duration::from_secs(1)).await;
    // ... a probe is admitted in half-open and holds the only permit ...
    let probe = s.ready().await.unwrap().call(Req {
        fail: false,
        delay: Duration::from_secs(5),
    });
    assert_eq!(b.state(), CircuitState::HalfOpen);
    // ... the stale slow failure lands now: it must not re-open.
    advance(Duration::from_secs(2)).await;
    slow_ok.await.unwrap().unwrap_err();
    assert_eq!(b.state(), CircuitState::HalfOpen);
    let (r, ()) = tokio::join!(probe, advance(Duration::from_secs(5)));
    r.unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn dropped_probe_returns_its_permit() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut s = svc(&b);
    call(&mut s, FAIL).await.unwrap_err();
    advance(Duration::from_secs(1)).await;
    let hanging = Req {
        fail: false,
        delay: Duration::from_secs(60),
    };
    let probe = s.ready().await.unwrap().call(hanging);
    let e = open_err(call(&mut s, OK).await);
    assert_eq!(e.state, CircuitState::HalfOpen);
    drop(probe);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    call(&mut s, OK).await.unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn max_half_open_wait_reopens_when_probes_hang() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .max_half_open_wait(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut s = svc(&b);
    call(&mut s, FAIL).await.unwrap_err();
    advance(Duration::from_secs(1)).await;
    let _probe = s.ready().await.unwrap().call(Req {
        fail: false,
        delay: Duration::from_secs(60),
    });
    advance(Duration::from_secs(2)).await;
    let e = open_err(call(&mut s, OK).await);
    assert_eq!(e.state, CircuitState::Open);
    assert_eq!(b.metrics().reopens, 1);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_count_neither_way() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let mut s = tower::ServiceBuilder::new()
        .layer(
            b.layer()
                .with_classifier(|_: &Result<(), BoxError>| Outcome::Ignored),
        )
        .service_fn(|()| async { Err::<(), BoxError>("boom".into()) });
    for _ in 0..5 {
        s.ready().await.unwrap().call(()).await.unwrap_err();
    }
    assert_eq!(b.state(), CircuitState::Closed);
    let m = b.metrics();
    assert_eq!((m.ignored, m.window_calls, m.failures), (5, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn response_classifier_counts_5xx() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let mut s = tower::ServiceBuilder::new()
        .layer(b.layer().classify_responses(|s: &u16| {
            if *s >= 500 {
                Outcome::failure(FailureKind::Unavailable)
            } else {
                Outcome::Success
            }
        }))
        .service_fn(|s: u16| async move { Ok::<u16, std::io::Error>(s) });
    s.ready().await.unwrap().call(503).await.unwrap();
    s.ready().await.unwrap().call(502).await.unwrap();
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn manual_controls_disabled_forced_metrics_only() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let mut s = svc(&b);
    b.disable();
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Disabled);
    assert_eq!(b.metrics().calls, 0, "disabled records nothing");
    b.force_open();
    let e = open_err(call(&mut s, OK).await);
    assert_eq!((e.state, e.retry_after), (CircuitState::ForcedOpen, None));
    b.metrics_only();
    call(&mut s, FAIL).await.unwrap_err();
    call(&mut s, FAIL).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::MetricsOnly);
    assert_eq!(b.metrics().window_failures, 2);
    b.reset();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().window_calls, 0);

    let c = Breaker::builder("m").metrics_only().build().unwrap();
    assert_eq!(c.state(), CircuitState::MetricsOnly);
}

#[tokio::test(start_paused = true)]
async fn component_health_and_controls() {
    use battlement_core::AsComponent;
    let b = Breaker::builder("payments")
        .no_failure_rate()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let c = b.as_component();
    assert_eq!(c.name(), "payments");
    let h = c.health();
    assert_eq!(h.status, HealthStatus::Healthy);
    assert_eq!(h.details["state"], "closed");
    c.control(&Control::ForceOpen).unwrap();
    let h = c.health();
    assert_eq!(h.status, HealthStatus::Degraded);
    assert_eq!(h.details["state"], "forced_open");
    assert!(h.metrics.iter().any(|m| m.name == "rejections_total"));
    c.control(&Control::Disable).unwrap();
    assert_eq!(c.health().details["state"], "disabled");
    c.control(&Control::Close).unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
    c.control(&Control::Reset).unwrap();
    assert!(c.control(&Control::ReleaseLevel).is_err());
    let mut s = svc(&b);
    call(&mut s, FAIL).await.unwrap_err();
    let h = c.health();
    assert_eq!(h.details["state"], "open");
    assert_eq!(h.details["failures"], 1);
    assert_eq!(h.details["open_remaining_ms"], 5000.0);
}

#[test]
fn build_rejects_bad_config() {
    fn field(r: Result<Breaker, InvalidConfig>) -> &'static str {
        r.unwrap_err().field
    }
    let b = || Breaker::builder("b");
    assert_eq!(field(b().failure_rate(0.0).build()), "failure_rate");
    assert_eq!(field(b().failure_rate(1.5).build()), "failure_rate");
    assert_eq!(field(b().failure_rate(f64::NAN).build()), "failure_rate");
    assert_eq!(
        field(b().count_window(0).minimum_calls(1).build()),
        "window_size"
    );
    assert_eq!(
        field(b().count_window(5).minimum_calls(6).build()),
        "minimum_calls"
    );
    assert_eq!(field(b().minimum_calls(0).build()), "minimum_calls");
    assert_eq!(
        field(b().time_window(Duration::ZERO, 4).build()),
        "window_duration"
    );
    assert_eq!(
        field(b().time_window(Duration::from_secs(1), 0).build()),
        "window_buckets"
    );
    assert_eq!(field(b().permitted_probes(0).build()), "permitted_probes");
    assert_eq!(
        field(b().permitted_probes(2).success_threshold(3).build()),
        "success_threshold"
    );
    assert_eq!(
        field(b().consecutive_failures(0).build()),
        "consecutive_failures"
    );
    assert_eq!(
        field(b().open_duration(Duration::ZERO).build()),
        "open_duration"
    );
    let s = Duration::from_secs;
    assert_eq!(
        field(b().exponential_open(s(2), 2.0, s(1)).build()),
        "open_duration_max"
    );
    assert_eq!(
        field(b().exponential_open(s(1), 0.5, s(4)).build()),
        "open_duration_multiplier"
    );
    assert_eq!(field(b().slow_calls(s(1), 0.0).build()), "slow_call_rate");
    assert_eq!(
        field(b().slow_calls(Duration::ZERO, 0.5).build()),
        "slow_call_duration"
    );
    assert_eq!(
        field(b().max_half_open_wait(Duration::ZERO).build()),
        "max_half_open_wait"
    );
    let err = b().failure_rate(2.0).build().unwrap_err();
    assert!(err.to_string().contains("failure_rate"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn poll_ready_forwards_inner_readiness_only() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let (mut svc, mut handle) = tower_test::mock::spawn_layer::<u32, u32, _>(b.layer());
    handle.allow(0);
    assert!(svc.poll_ready().is_pending(), "inner not ready: not ready");
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(1);
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 1);
    send.send_error(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    fut.await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
    // Open: still ready (readiness is the inner's), and `call` rejects
    // without reaching the inner service.
    handle.allow(1);
    assert!(matches!(svc.poll_ready(), std::task::Poll::Ready(Ok(()))));
    let err = svc.call(2).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert!(handle.poll_request().is_pending(), "inner was not called");
}

/// Issue 13, D11: `permitted_probes` bounds the probes in flight in total,
/// not per half-open round. Each round one probe hangs for 60 s and one
/// fails (re-opening); the hanging probes of earlier rounds still count
/// against the limit, so the backend never holds more than 2 calls.
#[tokio::test(start_paused = true)]
async fn probes_of_earlier_rounds_count_against_the_limit() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// Counts the calls the backend holds; one lives in each call's future.
    struct Held(Arc<AtomicUsize>);
    impl Drop for Held {
        fn drop(&mut self) {
            self.0.fetch_sub(1, SeqCst);
        }
    }

    let b = Breaker::builder("b")
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .permitted_probes(2)
        .success_threshold(2)
        .build()
        .unwrap();
    let held = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (h, m) = (held.clone(), most.clone());
    let mut s = BreakerService::new(
        service_fn(move |req: Req| {
            let n = h.fetch_add(1, SeqCst) + 1;
            m.fetch_max(n, SeqCst);
            let guard = Held(h.clone());
            async move {
                let _guard = guard;
                inner(req).await
            }
        }),
        b.clone(),
    );
    let hang = Req {
        fail: false,
        delay: Duration::from_secs(60),
    };
    s.ready().await.unwrap().call(FAIL).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
    let mut rounds = vec![];
    for _ in 1..=5 {
        advance(Duration::from_secs(1)).await;
        let probe = s.ready().await.unwrap().call(hang);
        let _hanging = tokio::spawn(probe);
        let _ = s.ready().await.unwrap().call(FAIL).await;
        tokio::task::yield_now().await;
        rounds.push(held.load(SeqCst));
    }
    assert_eq!(rounds, [1, 2, 2, 2, 2]);
    assert_eq!(most.load(SeqCst), 2);
    assert_eq!(b.state(), CircuitState::HalfOpen);

    // Once the hanging probes are done their permits are free again: the
    // current round's one counts as a success, one more closes.
    advance(Duration::from_secs(61)).await;
    tokio::task::yield_now().await;
    assert_eq!(held.load(SeqCst), 0);
    s.ready().await.unwrap().call(OK).await.unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
}

/// Issue 13, D5: every size that allocates has a documented maximum,
/// rejected at `build()` naming the field and the bound (a
/// `count_window(u32::MAX)` used to allocate 4 GiB).
mod size_bounds {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn oversized_windows_are_rejected() {
        let err = Breaker::builder("b")
            .count_window(u32::MAX)
            .build()
            .unwrap_err();
        assert_eq!((err.component, err.field), ("breaker", "window_size"));
        assert!(err.bound.contains("100000"), "{err}");
        let err = Breaker::builder("b")
            .time_window(Duration::from_secs(10), 1001)
            .build()
            .unwrap_err();
        assert_eq!(err.field, "window_buckets");
        assert!(err.bound.contains("1000"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A count window builds exactly when its size is in
        /// `1..=100_000`.
        #[test]
        fn count_window_size_is_bounded(size in prop_oneof![
            0u32..=200_000,
            any::<u32>(),
            Just(u32::MAX),
        ]) {
            let r = Breaker::builder("b").count_window(size).minimum_calls(1).build();
            prop_assert_eq!(r.is_ok(), (1..=100_000).contains(&size), "{:?}", r.err());
            if let Err(e) = r {
                prop_assert_eq!(e.field, "window_size");
            }
        }
    }
}

/// Issue 16: when the rates are checked, which rules a builder names, and
/// what the handle reports while open.
mod issue16 {
    use super::*;

    /// Five failures then five successes, `minimum_calls = 10`, a 50 %
    /// threshold: the rates are checked when the window reaches ten calls,
    /// whatever that call's outcome, so the breaker opens at the 10th.
    #[tokio::test(start_paused = true)]
    async fn rates_are_checked_when_the_window_reaches_minimum_calls() {
        let count = Breaker::builder("count")
            .failure_rate(0.5)
            .minimum_calls(10)
            .build()
            .unwrap();
        let time = Breaker::builder("time")
            .failure_rate(0.5)
            .minimum_calls(10)
            .time_window(Duration::from_secs(10), 10)
            .build()
            .unwrap();
        for b in [count, time] {
            let mut s = svc(&b);
            for _ in 0..5 {
                call(&mut s, FAIL).await.unwrap_err();
            }
            for _ in 0..4 {
                call(&mut s, OK).await.unwrap();
            }
            assert_eq!(b.state(), CircuitState::Closed, "{}", b.name());
            call(&mut s, OK).await.unwrap();
            assert_eq!(b.state(), CircuitState::Open, "{}", b.name());
        }
        // Below the threshold at ten calls: stays closed, and successes
        // after that cannot trip it.
        let b = Breaker::builder("b")
            .failure_rate(0.5)
            .minimum_calls(10)
            .build()
            .unwrap();
        let mut s = svc(&b);
        for _ in 0..4 {
            call(&mut s, FAIL).await.unwrap_err();
        }
        for _ in 0..20 {
            call(&mut s, OK).await.unwrap();
        }
        assert_eq!(b.state(), CircuitState::Closed);
    }

    /// Naming a rule replaces the default rate rule; the defaults apply
    /// only when no rule is named.
    #[tokio::test(start_paused = true)]
    async fn naming_a_rule_replaces_the_defaults() {
        let named = Breaker::builder("named")
            .consecutive_failures(5)
            .build()
            .unwrap();
        let mut s = svc(&named);
        // 11 failures in 21 calls, never two in a row: over the default
        // 50 % over 20 calls, but not 5 in a row.
        for i in 0..21 {
            let _ = call(&mut s, if i % 2 == 0 { FAIL } else { OK }).await;
        }
        assert_eq!(named.state(), CircuitState::Closed);
        let slow_only = Breaker::builder("slow")
            .slow_calls(Duration::from_secs(1), 0.5)
            .build()
            .unwrap();
        let mut s = svc(&slow_only);
        for _ in 0..30 {
            call(&mut s, FAIL).await.unwrap_err();
        }
        assert_eq!(slow_only.state(), CircuitState::Closed);

        // No rule named: the default 50 % over at least 20 calls.
        let default = Breaker::builder("default").build().unwrap();
        let mut s = svc(&default);
        for _ in 0..19 {
            call(&mut s, FAIL).await.unwrap_err();
        }
        assert_eq!(default.state(), CircuitState::Closed);
        call(&mut s, FAIL).await.unwrap_err();
        assert_eq!(default.state(), CircuitState::Open);
    }

    /// `state()` reads `HalfOpen` once the open duration has passed (the
    /// transition itself waits for the next call), `open_remaining()` is
    /// the time left open, and resetting a closed breaker is no
    /// transition.
    #[tokio::test(start_paused = true)]
    async fn state_and_open_remaining_follow_the_clock() {
        let log = EventLog::new();
        let b = Breaker::builder("b")
            .consecutive_failures(1)
            .open_duration(Duration::from_secs(1))
            .events(log.sink())
            .build()
            .unwrap();
        assert_eq!(b.open_remaining(), None);
        b.reset();
        assert!(log.kinds().is_empty(), "{:?}", log.kinds());

        let mut s = svc(&b);
        call(&mut s, FAIL).await.unwrap_err();
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.open_remaining(), Some(Duration::from_secs(1)));
        advance(Duration::from_millis(600)).await;
        assert_eq!(b.open_remaining(), Some(Duration::from_millis(400)));
        advance(Duration::from_millis(400)).await;
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_eq!(b.metrics().state, CircuitState::HalfOpen);
        assert_eq!(b.open_remaining(), None);
        // Lazy: no event until a call moves it.
        assert_eq!(log.kinds().len(), 1);
        call(&mut s, OK).await.unwrap();
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(log.kinds().len(), 3);

        b.force_open();
        assert_eq!(b.open_remaining(), None);
        b.reset();
        b.reset();
        let changes: Vec<_> = log
            .kinds()
            .into_iter()
            .filter_map(|k| match k {
                EventKind::StateChanged { from, to, .. } => Some((from, to)),
                _ => None,
            })
            .collect();
        assert_eq!(
            changes[3..],
            [
                (CircuitState::Closed, CircuitState::ForcedOpen),
                (CircuitState::ForcedOpen, CircuitState::Closed),
            ]
        );
    }
}

/// A call that succeeds after a second.
const SLOW: Req = Req {
    fail: false,
    delay: Duration::from_secs(1),
};

/// A breaker tripped by one failure, open for 1 s (already passed: the
/// next call probes), with the half-open settings `half` gives it.
async fn half_open_after_one_failure(
    half: impl FnOnce(battlement_breaker::BreakerBuilder) -> battlement_breaker::BreakerBuilder,
) -> (Breaker, Svc) {
    let b = half(
        Breaker::builder("b")
            .no_failure_rate()
            .consecutive_failures(1)
            .open_duration(Duration::from_secs(1)),
    )
    .build()
    .unwrap();
    let mut s = svc(&b);
    call(&mut s, FAIL).await.unwrap_err();
    advance(Duration::from_secs(1)).await;
    (b, s)
}

/// Issue 16: half-open as resilience4j (`permittedNumberOfCallsInHalfOpenState`)
/// and gobreaker (`MaxRequests`) count it: `permitted_probes` calls per
/// half-open period, decided on their results. With 3 permitted and a
/// threshold of 3, after one probe succeeds only two more are admitted
/// (a fourth call is refused, where an in-flight bound let it through).
#[tokio::test(start_paused = true)]
async fn half_open_admits_permitted_probes_per_period() {
    let (b, mut s) =
        half_open_after_one_failure(|b| b.permitted_probes(3).success_threshold(3)).await;
    call(&mut s, OK).await.unwrap();
    let second = tokio::spawn(s.ready().await.unwrap().call(SLOW));
    let third = tokio::spawn(s.ready().await.unwrap().call(SLOW));
    tokio::task::yield_now().await;
    let e = open_err(call(&mut s, OK).await);
    assert_eq!(
        e.state,
        CircuitState::HalfOpen,
        "the period's 3 probes are out"
    );
    advance(Duration::from_secs(1)).await;
    second.await.unwrap().unwrap();
    third.await.unwrap().unwrap();
    assert_eq!(b.state(), CircuitState::Closed);

    // A dropped probe gives its admission back.
    call(&mut s, FAIL).await.unwrap_err();
    advance(Duration::from_secs(1)).await;
    drop(s.ready().await.unwrap().call(SLOW));
    for _ in 0..3 {
        call(&mut s, OK).await.unwrap();
    }
    assert_eq!(b.state(), CircuitState::Closed);
}

/// One probe at a time, three successes to close: `success_threshold`
/// may exceed `max_concurrent_probes`.
#[tokio::test(start_paused = true)]
async fn one_probe_at_a_time_three_to_close() {
    let (b, mut s) = half_open_after_one_failure(|b| {
        b.permitted_probes(3)
            .max_concurrent_probes(1)
            .success_threshold(3)
    })
    .await;
    for n in 1..=3 {
        let probe = tokio::spawn(s.ready().await.unwrap().call(SLOW));
        tokio::task::yield_now().await;
        let e = open_err(call(&mut s, OK).await);
        assert_eq!(e.state, CircuitState::HalfOpen, "probe {n}: one at a time");
        advance(Duration::from_secs(1)).await;
        probe.await.unwrap().unwrap();
        let want = if n < 3 {
            CircuitState::HalfOpen
        } else {
            CircuitState::Closed
        };
        assert_eq!(b.state(), want, "after probe {n}");
    }
    let field = |r: Result<Breaker, battlement_core::InvalidConfig>| r.unwrap_err().field;
    assert_eq!(
        field(Breaker::builder("x").max_concurrent_probes(0).build()),
        "max_concurrent_probes"
    );
}

/// The breaker's figures: trips (re-opens included), failures by kind and
/// timeouts, rejections, and a state gauge per state (a stateset) that is
/// 1 only for the state the breaker is in; a reset keeps every counter.
#[tokio::test(start_paused = true)]
async fn figures_count_trips_failures_by_kind_timeouts_and_show_the_state() {
    use battlement_core::AsComponent;
    use std::io::ErrorKind;
    let b = Breaker::builder("figures")
        .no_failure_rate()
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut s = tower::ServiceBuilder::new()
        .layer(b.layer())
        .service(service_fn(|kind: Option<ErrorKind>| async move {
            match kind {
                Some(kind) => Err::<(), BoxError>(std::io::Error::from(kind).into()),
                None => Ok(()),
            }
        }));
    let mut call = async |kind| s.ready().await.unwrap().call(kind).await;
    call(Some(ErrorKind::TimedOut)).await.unwrap_err();
    call(Some(ErrorKind::ConnectionReset)).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
    open_err(call(None).await.map(|()| "ok"));
    // The probe fails: a re-open, a second trip.
    advance(Duration::from_secs(1)).await;
    call(Some(ErrorKind::TimedOut)).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);

    let m = b.metrics();
    assert_eq!((m.trips, m.rejections, m.failures), (2, 1, 3));
    assert_eq!(m.timeouts(), 2);
    assert_eq!(m.failures_of(FailureKind::Network), 1);
    let component = b.as_component();
    let h = component.health();
    assert_eq!(h.details["trips"], 2);
    assert_eq!(h.details["timeouts"], 2);
    assert_eq!(h.details["failures_by_kind"]["timeout"], 2);
    assert_eq!(h.details["failures_by_kind"]["network"], 1);
    let gauge = |h: &battlement_core::ComponentHealth, state: &str| {
        h.metrics
            .iter()
            .find(|m| m.name == "state" && m.labels == [("state", state.to_owned().into())])
            .map(|m| m.value)
    };
    assert_eq!(gauge(&h, "open"), Some(1.0));
    assert_eq!(gauge(&h, "closed"), Some(0.0));
    assert_eq!(gauge(&h, "metrics_only"), Some(0.0));
    let value = |h: &battlement_core::ComponentHealth, name: &str| {
        h.metrics.iter().find(|m| m.name == name).map(|m| m.value)
    };
    assert_eq!(value(&h, "trips_total"), Some(2.0));
    assert_eq!(value(&h, "timeouts_total"), Some(2.0));

    // Reset closes the breaker and keeps every counter.
    component.control(&Control::Reset).unwrap();
    let h = component.health();
    assert_eq!(gauge(&h, "closed"), Some(1.0));
    assert_eq!(gauge(&h, "open"), Some(0.0));
    assert_eq!(h.details["trips"], 2);
    assert_eq!(h.details["rejections"], 1);
    assert_eq!(h.details["failures"], 3);
}

/// `Control::MetricsOnly` puts the breaker in `MetricsOnly`: it records,
/// reports, never trips; `Reset` brings it back to `Closed`.
#[tokio::test(start_paused = true)]
async fn the_metrics_only_control_records_and_never_trips() {
    use battlement_core::AsComponent;
    let b = Breaker::builder("observe")
        .no_failure_rate()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let component = b.as_component();
    component.control(&Control::MetricsOnly).unwrap();
    assert_eq!(b.state(), CircuitState::MetricsOnly);
    let mut s = svc(&b);
    for _ in 0..3 {
        call(&mut s, FAIL).await.unwrap_err();
    }
    assert_eq!(b.state(), CircuitState::MetricsOnly);
    assert_eq!(b.metrics().failures, 3);
    assert_eq!(component.health().details["state"], "metrics_only");
    component.control(&Control::Reset).unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
}
