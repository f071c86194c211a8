//! Deferred recording ([`Defer`], [`Pending`]): a call whose outcome its
//! response tells later is recorded once, with that outcome.

use std::time::Duration;

use battlement_breaker::{Breaker, BreakerLayer, CircuitState, Defer, Pending};
use battlement_core::{BoxError, FailureKind, Outcome};
use tokio::time::{advance, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A response that may carry a pending completion; `defer` says whether
/// it takes one.
#[derive(Debug, Default)]
struct Res {
    defer: bool,
    pending: Option<Pending>,
}

#[derive(Clone)]
struct TakeIt;

impl Defer<Res> for TakeIt {
    fn defer(&self, res: &mut Res, pending: Pending) -> Result<(), Pending> {
        if res.defer {
            res.pending = Some(pending);
            Ok(())
        } else {
            Err(pending)
        }
    }
}

/// A service answering `Res { defer }` after `delay`, or an error.
fn svc(
    breaker: &Breaker,
) -> impl Service<(bool, Duration), Response = Res, Error = BoxError> + Clone {
    BreakerLayer::new(breaker.clone())
        .defer_with(TakeIt)
        .layer(service_fn(|(defer, delay): (bool, Duration)| async move {
            sleep(delay).await;
            Ok::<_, BoxError>(Res {
                defer,
                pending: None,
            })
        }))
}

fn unavailable() -> Outcome {
    Outcome::failure(FailureKind::Unavailable)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_deferred_failure_is_recorded_once_as_a_failure() {
    let breaker = Breaker::builder("b")
        .consecutive_failures(3)
        .build()
        .unwrap();
    let s = svc(&breaker);
    for i in 1..=3 {
        let res = s.clone().oneshot((true, Duration::ZERO)).await.unwrap();
        let pending = res.pending.expect("the response took the completion");
        assert!(!pending.is_probe());
        assert_eq!(pending.breaker_name(), "b");
        assert_eq!(
            breaker.metrics().calls,
            i - 1,
            "not recorded at the response"
        );
        pending.complete(unavailable());
        let m = breaker.metrics();
        assert_eq!((m.calls, m.successes, m.failures), (i, 0, i));
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_response_that_gives_the_completion_back_is_recorded_at_once() {
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let res = svc(&breaker)
        .oneshot((false, Duration::ZERO))
        .await
        .unwrap();
    assert!(res.pending.is_none());
    let m = breaker.metrics();
    assert_eq!((m.calls, m.successes), (1, 1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failures_at_the_response_are_never_offered() {
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let failing = BreakerLayer::new(breaker.clone())
        .defer_with(TakeIt)
        .layer(service_fn(|_: ()| async {
            Err::<Res, _>(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
        }));
    failing.oneshot(()).await.unwrap_err();
    assert_eq!(breaker.metrics().failures, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_pending_probe_gives_its_admission_back_and_records_nothing() {
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    // Trip it, wait for half-open.
    let res = svc(&breaker).oneshot((true, Duration::ZERO)).await.unwrap();
    res.pending.unwrap().complete(unavailable());
    advance(Duration::from_secs(1)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);

    let res = svc(&breaker).oneshot((true, Duration::ZERO)).await.unwrap();
    let pending = res.pending.unwrap();
    assert!(pending.is_probe());
    // The one probe is out: the next call is refused.
    let refused = svc(&breaker).oneshot((true, Duration::ZERO)).await;
    assert!(refused.is_err());
    let before = breaker.metrics();
    drop(pending);
    let after = breaker.metrics();
    assert_eq!(after.calls, before.calls, "nothing recorded");
    // Its admission is back: the next call probes, and its success closes.
    let res = svc(&breaker).oneshot((true, Duration::ZERO)).await.unwrap();
    res.pending.unwrap().complete(Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_deferred_calls_duration_is_the_time_to_its_response() {
    let breaker = Breaker::builder("b")
        .slow_calls(Duration::from_millis(100), 0.5)
        .minimum_calls(1)
        .build()
        .unwrap();
    // Fast to respond, long to end: not slow.
    let res = svc(&breaker)
        .oneshot((true, Duration::from_millis(10)))
        .await
        .unwrap();
    advance(Duration::from_secs(10)).await;
    res.pending.unwrap().complete(Outcome::Success);
    assert_eq!(breaker.metrics().slow_calls, 0);
    assert_eq!(breaker.state(), CircuitState::Closed);
    // Slow to respond: slow, and the rate trips it.
    let res = svc(&breaker)
        .oneshot((true, Duration::from_millis(200)))
        .await
        .unwrap();
    res.pending.unwrap().complete(Outcome::Success);
    assert_eq!(breaker.metrics().slow_calls, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
}
