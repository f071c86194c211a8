//! Fan-out behaviour on paused time.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use battlement_core::{
    AllFailed, AsComponent, BoxError, Deadline, DeadlineExceeded, EventKind, EventLog,
    HealthStatus, QuorumNotReached,
};
use battlement_fanout::{FanOut, Reply, Responses, Strategy};
use common::{Answer, Counters, Mock, Req, ms};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

fn fan(
    strategy: Strategy,
    backends: &[(&'static str, u64, Answer)],
    counters: &Arc<Counters>,
) -> FanOut<Mock> {
    let mut b = FanOut::builder("fan").strategy(strategy);
    for &(name, delay, answer) in backends {
        b = b.backend(name, Mock::new(name, ms(delay), answer, counters));
    }
    b.build().unwrap()
}

async fn run<S: Service<Req, Error = BoxError>>(
    svc: &mut S,
    req: Req,
) -> Result<S::Response, BoxError> {
    svc.ready().await?.call(req).await
}

#[tokio::test(start_paused = true)]
async fn all_runs_backends_concurrently() {
    let c = Arc::new(Counters::default());
    let mut svc = fan(
        Strategy::All,
        &[
            ("a", 1000, Answer::Ok),
            ("b", 1000, Answer::Ok),
            ("c", 1000, Answer::Ok),
        ],
        &c,
    );
    let start = Instant::now();
    let res = run(&mut svc, Req::default()).await.unwrap();
    assert_eq!(start.elapsed(), ms(1000), "concurrent, not 3 s");
    assert_eq!(res.success_count(), 3);
    let names: Vec<_> = res.successes().map(|(n, r)| (n.to_string(), *r)).collect();
    assert_eq!(
        names,
        [("a".into(), "a"), ("b".into(), "b"), ("c".into(), "c")]
    );
    assert_eq!(res.get("b").unwrap().latency, Some(ms(1000)));
    assert_eq!(c.dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn deadline_bounds_the_whole_fan_out() {
    let c = Arc::new(Counters::default());
    let mut svc = fan(
        Strategy::All,
        &[
            ("a", 1000, Answer::Ok),
            ("b", 2000, Answer::Ok),
            ("slow", 10_000, Answer::Ok),
        ],
        &c,
    );
    let start = Instant::now();
    let req = Req {
        deadline: Some(Deadline::after(ms(5000))),
    };
    let res = run(&mut svc, req).await.unwrap();
    assert_eq!(start.elapsed(), ms(5000));
    assert_eq!(res.success_count(), 2);
    let slow = res.get("slow").unwrap();
    assert!(matches!(slow.reply, Reply::TimedOut));
    assert!(slow.outcome.is_failure());
    assert_eq!(c.dropped(), 1, "the slow call was dropped");
    assert_eq!(res.elapsed(), ms(5000));
}

#[tokio::test(start_paused = true)]
async fn deadline_with_nothing_done_is_all_failed_with_deadline_errors() {
    let c = Arc::new(Counters::default());
    let mut svc = fan(Strategy::All, &[("a", 10_000, Answer::Ok)], &c);
    let req = Req {
        deadline: Some(Deadline::after(ms(100))),
    };
    let err = run(&mut svc, req).await.unwrap_err();
    let all = err.downcast_ref::<AllFailed>().expect("AllFailed");
    assert!(all.errors[0].1.is::<DeadlineExceeded>());
}

#[tokio::test(start_paused = true)]
async fn an_expired_deadline_calls_no_backend() {
    let c = Arc::new(Counters::default());
    let mut svc = fan(
        Strategy::All,
        &[("a", 10, Answer::Ok), ("b", 10, Answer::Ok)],
        &c,
    );
    let req = Req {
        deadline: Some(Deadline::after(ms(50))),
    };
    tokio::time::advance(ms(50)).await;
    let start = Instant::now();
    let err = run(&mut svc, req).await.unwrap_err();
    assert_eq!(start.elapsed(), ms(0), "fails at once");
    assert_eq!(c.calls(), 0, "no backend was called");
    let all = err.downcast_ref::<AllFailed>().expect("AllFailed");
    assert_eq!(all.errors.len(), 2);
    for (_, e) in &all.errors {
        let e = e.downcast_ref::<DeadlineExceeded>().unwrap();
        assert_eq!(e.budget, ms(0));
    }
    let abandoned = svc.handle().backend("a").unwrap().abandoned;
    assert_eq!(abandoned, 1);
    // The backends' readiness was kept: the next request goes through.
    let res = run(&mut svc, Req::default()).await.unwrap();
    assert_eq!(res.success_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn backends_left_waiting_for_a_slot_at_the_deadline_report_it() {
    let c = Arc::new(Counters::default());
    let mut b = FanOut::builder("fan").max_concurrency(1);
    for name in ["a", "b"] {
        b = b.backend(name, Mock::new(name, ms(10_000), Answer::Ok, &c));
    }
    let req = Req {
        deadline: Some(Deadline::after(ms(1000))),
    };
    let err = run(&mut b.build().unwrap(), req).await.unwrap_err();
    let all = err.downcast_ref::<AllFailed>().expect("AllFailed");
    assert_eq!(c.calls(), 1);
    for (name, e) in &all.errors {
        let e = e.downcast_ref::<DeadlineExceeded>().expect("deadline");
        assert_eq!((e.budget, e.elapsed), (ms(1000), ms(1000)), "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn first_success_returns_at_once_and_drops_the_losers() {
    let c = Arc::new(Counters::default());
    let mut svc = fan(
        Strategy::FirstSuccess,
        &[
            ("fails", 500, Answer::Fail),
            ("fast", 1000, Answer::Ok),
            ("slow", 3000, Answer::Ok),
            ("slower", 4000, Answer::Ok),
        ],
        &c,
    );
    let start = Instant::now();
    let res = run(&mut svc, Req::default()).await.unwrap();
    assert_eq!(start.elapsed(), ms(1000));
    assert_eq!(res.success_count(), 1);
    assert!(matches!(res.get("fails").unwrap().reply, Reply::Error(_)));
    assert!(matches!(res.get("slow").unwrap().reply, Reply::Cancelled));
    assert_eq!(c.dropped(), 2, "both losers dropped at once");
    assert_eq!(c.in_flight.load(SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn first_success_when_all_fail_is_all_failed() {
    let c = Arc::new(Counters::default());
    let mut svc = fan(
        Strategy::FirstSuccess,
        &[("a", 100, Answer::Fail), ("b", 200, Answer::Fail)],
        &c,
    );
    let err = run(&mut svc, Req::default()).await.unwrap_err();
    let all = err.downcast_ref::<AllFailed>().expect("AllFailed");
    let names: Vec<_> = all.errors.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn best_effort_returns_what_finished_in_the_window() {
    let c = Arc::new(Counters::default());
    let mut svc = fan(
        Strategy::BestEffort(ms(1500)),
        &[
            ("a", 1000, Answer::Ok),
            ("b", 2000, Answer::Ok),
            ("c", 3000, Answer::Ok),
        ],
        &c,
    );
    let start = Instant::now();
    let res = run(&mut svc, Req::default()).await.unwrap();
    assert_eq!(start.elapsed(), ms(1500));
    assert_eq!(res.success_count(), 1);
    assert!(matches!(res.get("b").unwrap().reply, Reply::TimedOut));
    assert_eq!(c.dropped(), 2);
}

#[tokio::test(start_paused = true)]
async fn best_effort_ends_early_when_everything_is_done() {
    let c = Arc::new(Counters::default());
    let mut svc = fan(
        Strategy::BestEffort(ms(5000)),
        &[("a", 100, Answer::Ok), ("b", 200, Answer::Ok)],
        &c,
    );
    let start = Instant::now();
    let res = run(&mut svc, Req::default()).await.unwrap();
    assert_eq!(start.elapsed(), ms(200));
    assert_eq!(res.success_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn quorum_fails_as_soon_as_it_is_out_of_reach() {
    let c = Arc::new(Counters::default());
    let mut svc = fan(
        Strategy::Quorum(2),
        &[
            ("a", 1000, Answer::Fail),
            ("b", 2000, Answer::Fail),
            ("c", 10_000, Answer::Ok),
        ],
        &c,
    );
    let start = Instant::now();
    let err = run(&mut svc, Req::default()).await.unwrap_err();
    assert_eq!(
        start.elapsed(),
        ms(2000),
        "fails once 2 can no longer succeed"
    );
    let q = err
        .downcast_ref::<QuorumNotReached>()
        .expect("QuorumNotReached");
    assert_eq!((q.succeeded, q.needed, q.total), (0, 2, 3));
    assert_eq!(q.errors.len(), 3);
    assert_eq!(c.dropped(), 1);
    assert!(err.to_string().contains("0 of 2 needed"));
}

#[tokio::test(start_paused = true)]
async fn quorum_returns_once_reached() {
    let c = Arc::new(Counters::default());
    let mut svc = fan(
        Strategy::Quorum(2),
        &[
            ("a", 1000, Answer::Ok),
            ("b", 1500, Answer::Fail),
            ("c", 2000, Answer::Ok),
            ("d", 9000, Answer::Ok),
        ],
        &c,
    );
    let start = Instant::now();
    let res = run(&mut svc, Req::default()).await.unwrap();
    assert_eq!(start.elapsed(), ms(2000));
    assert_eq!(res.success_count(), 2);
    assert!(matches!(res.get("d").unwrap().reply, Reply::Cancelled));
    assert_eq!(c.dropped(), 1);
}

#[tokio::test(start_paused = true)]
async fn max_concurrency_is_never_exceeded() {
    let c = Arc::new(Counters::default());
    let mut svc = FanOut::builder("fan").max_concurrency(2);
    for name in ["a", "b", "c", "d", "e"] {
        svc = svc.backend(name, Mock::new(name, ms(1000), Answer::Ok, &c));
    }
    let mut svc = svc.build().unwrap();
    let start = Instant::now();
    let res = run(&mut svc, Req::default()).await.unwrap();
    assert_eq!(c.peak(), 2);
    assert_eq!(c.calls(), 5);
    assert_eq!(res.success_count(), 5);
    assert_eq!(start.elapsed(), ms(3000));
}

#[tokio::test(start_paused = true)]
async fn queued_backends_are_reported_not_called() {
    let c = Arc::new(Counters::default());
    let mut svc = FanOut::builder("fan")
        .strategy(Strategy::FirstSuccess)
        .max_concurrency(1);
    for name in ["a", "b", "c"] {
        svc = svc.backend(name, Mock::new(name, ms(100), Answer::Ok, &c));
    }
    let res = run(&mut svc.build().unwrap(), Req::default())
        .await
        .unwrap();
    assert_eq!(c.calls(), 1);
    assert!(matches!(res.get("c").unwrap().reply, Reply::NotCalled));
}

#[tokio::test(start_paused = true)]
async fn open_circuits_are_skipped_not_failed() {
    let c = Arc::new(Counters::default());
    let log = EventLog::new();
    let mut b = FanOut::builder("fan").events(log.sink());
    b = b
        .backend("up", Mock::new("up", ms(100), Answer::Ok, &c))
        .backend("open", Mock::new("open", ms(100), Answer::Open, &c));
    let mut svc = b.build().unwrap();
    let handle = svc.handle();
    let res = run(&mut svc, Req::default()).await.unwrap();
    let open = res.get("open").unwrap();
    assert!(open.reply.is_skipped());
    assert_eq!(res.success_count(), 1);
    assert!(
        log.kinds()
            .iter()
            .any(|k| matches!(k, EventKind::Skipped { backend, .. } if &**backend == "open"))
    );
    let snap = handle.backend("open").unwrap();
    assert_eq!((snap.skips, snap.failures), (1, 0));
    let up = handle.backend("up").unwrap();
    assert_eq!((up.successes, up.mean_latency), (1, ms(100)));
    let health = handle.as_component().health();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert_eq!(health.details["backends"]["up"]["successes"], 1);
}

#[tokio::test(start_paused = true)]
async fn all_skipped_is_all_failed() {
    let c = Arc::new(Counters::default());
    let mut svc = fan(
        Strategy::All,
        &[("x", 0, Answer::Open), ("y", 0, Answer::Open)],
        &c,
    );
    let err = run(&mut svc, Req::default()).await.unwrap_err();
    let all = err.downcast_ref::<AllFailed>().unwrap();
    assert!(
        all.errors
            .iter()
            .all(|(_, e)| e.is::<battlement_core::CircuitOpen>())
    );
}

#[tokio::test(start_paused = true)]
async fn merge_reduces_to_one_response() {
    let c = Arc::new(Counters::default());
    let mut svc = FanOut::builder("fan")
        .backend("a", Mock::new("a", ms(10), Answer::Ok, &c))
        .backend("b", Mock::new("b", ms(20), Answer::Ok, &c))
        .merge(|r: Responses<&'static str>| -> Result<String, BoxError> {
            Ok(r.into_successes()
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
                .join("+"))
        })
        .build()
        .unwrap();
    assert_eq!(run(&mut svc, Req::default()).await.unwrap(), "a+b");
}

#[tokio::test(start_paused = true)]
async fn a_backend_not_ready_does_not_hold_the_others_back() {
    let (mut svc, mut h1, mut h2) = one_ready_two_not(Strategy::FirstSuccess);
    assert!(ready_now(&mut svc), "ready although `two` is not");
    let start = Instant::now();
    let fut = svc.call(Req::default());
    let (_, send) = h1.next_request().await.unwrap();
    send.send_response("one");
    let res = fut.await.unwrap();
    assert_eq!(start.elapsed(), ms(0));
    assert_eq!(res.get("one").unwrap().reply.response(), Some(&"one"));
    assert!(matches!(res.get("two").unwrap().reply, Reply::NotCalled));
    assert!(
        h2.poll_request().is_pending(),
        "the backend that was not ready was never called"
    );
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_gets_ready_later_is_called_inside_the_fan_out() {
    let (mut svc, mut h1, mut h2) = one_ready_two_not(Strategy::All);
    assert!(ready_now(&mut svc));
    let fut = tokio::spawn(svc.call(Req::default()));
    let (_, send) = h1.next_request().await.unwrap();
    send.send_response("one");
    tokio::time::advance(ms(100)).await;
    // `two` gets capacity: the fan-out's future is woken and calls it.
    h2.allow(1);
    let (_, send) = h2.next_request().await.unwrap();
    send.send_response("two");
    let res = fut.await.unwrap().unwrap();
    assert_eq!(res.success_count(), 2);
    assert_eq!(res.get("two").unwrap().reply.response(), Some(&"two"));
}

#[tokio::test(start_paused = true)]
async fn a_backend_not_ready_by_the_deadline_is_reported_not_called() {
    let (mut svc, mut h1, _h2) = one_ready_two_not(Strategy::All); // `two` is never ready
    assert!(ready_now(&mut svc));
    let start = Instant::now();
    let fut = svc.call(Req {
        deadline: Some(Deadline::after(ms(500))),
    });
    let responder = async {
        let (_, send) = h1.next_request().await.unwrap();
        send.send_response("one");
    };
    let (res, ()) = tokio::join!(fut, responder);
    let res = res.unwrap();
    assert_eq!(
        start.elapsed(),
        ms(500),
        "All waits for `two` until the deadline"
    );
    assert_eq!(res.success_count(), 1);
    assert!(matches!(res.get("two").unwrap().reply, Reply::NotCalled));
}

#[tokio::test(start_paused = true)]
async fn readiness_failing_inside_the_fan_out_is_reported_as_the_backends_error() {
    let (mut svc, mut h1, mut h2) = one_ready_two_not(Strategy::All);
    assert!(ready_now(&mut svc));
    let fut = tokio::spawn(svc.call(Req::default()));
    let (_, send) = h1.next_request().await.unwrap();
    send.send_response("one");
    tokio::task::yield_now().await;
    h2.send_error(std::io::Error::other("broken"));
    let res = fut.await.unwrap().unwrap();
    let two = res.get("two").unwrap();
    assert!(matches!(two.reply, Reply::Error(_)));
    assert!(two.outcome.is_failure());
    assert_eq!(res.success_count(), 1);
}

/// A `tower_test` mock backend and its handle.
type Backend = tower_test::mock::Mock<Req, &'static str>;
type BackendHandle = tower_test::mock::Handle<Req, &'static str>;

/// A fan-out named `fan` over two mock backends: `one`, ready for one
/// call, and `two`, not ready until its handle allows it; and their
/// handles.
fn one_ready_two_not(strategy: Strategy) -> (FanOut<Backend>, BackendHandle, BackendHandle) {
    let (m1, mut h1) = tower_test::mock::pair::<Req, &'static str>();
    let (m2, mut h2) = tower_test::mock::pair::<Req, &'static str>();
    let svc = FanOut::builder("fan")
        .backend("one", m1)
        .backend("two", m2)
        .strategy(strategy)
        .build()
        .unwrap();
    h1.allow(1);
    h2.allow(0);
    (svc, h1, h2)
}

/// Polls `svc.poll_ready` once with a no-op waker: `true` when ready.
fn ready_now<S: Service<Req>>(svc: &mut S) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    matches!(svc.poll_ready(&mut cx), std::task::Poll::Ready(Ok(())))
}

#[test]
fn invalid_configs_are_rejected() {
    let c = Arc::new(Counters::default());
    let m = || Mock::new("m", ms(1), Answer::Ok, &c);
    let err = FanOut::<Mock>::builder("f").build().unwrap_err();
    assert_eq!(err.field, "backends");
    let err = FanOut::builder("f")
        .backend("a", m())
        .backend("a", m())
        .build()
        .unwrap_err();
    assert!(err.bound.contains("unique"));
    let err = FanOut::builder("f")
        .backend("a", m())
        .max_concurrency(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "max_concurrency");
    let err = FanOut::builder("f")
        .backend("a", m())
        .strategy(Strategy::Quorum(2))
        .build()
        .unwrap_err();
    assert_eq!(err.field, "strategy");
    assert!(err.to_string().contains("1..=1"));
    let err = FanOut::builder("f")
        .backend("a", m())
        .strategy(Strategy::BestEffort(ms(0)))
        .build()
        .unwrap_err();
    assert_eq!(err.field, "strategy");
}

/// Any duration: microseconds to `Duration::MAX`, and the edges.
fn any_duration() -> impl proptest::strategy::Strategy<Value = std::time::Duration> {
    use proptest::prelude::*;
    prop_oneof![
        (1u64..u64::MAX, 0u32..1_000_000_000).prop_map(|(s, n)| std::time::Duration::new(s, n)),
        (1u64..10_000_000).prop_map(std::time::Duration::from_micros),
        Just(std::time::Duration::MAX),
        Just(std::time::Duration::from_secs(u64::MAX)),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Sweep: a `BestEffort` window of any length, up to `Duration::MAX`,
    /// with or without a deadline of any length, never overflows the
    /// clock: the fan-out ends when its backends are done (or at the
    /// deadline).
    #[test]
    fn best_effort_windows_of_any_length_do_not_overflow(
        window in any_duration(),
        deadline in proptest::option::of(any_duration()),
    ) {
        let (elapsed, successes) = common::paused_runtime().block_on(async {
            let c = Arc::new(Counters::default());
            let mut svc = fan(
                Strategy::BestEffort(window),
                &[("a", 100, Answer::Ok), ("b", 200, Answer::Ok)],
                &c,
            );
            let req = Req { deadline: deadline.map(Deadline::after) };
            let start = Instant::now();
            let res = run(&mut svc, req).await;
            (start.elapsed(), res.map_or(0, |r| r.success_count()))
        });
        let end = window.min(deadline.unwrap_or(std::time::Duration::MAX));
        if end >= ms(200) {
            proptest::prop_assert_eq!((elapsed, successes), (ms(200), 2));
        } else {
            // Tokio's timers have millisecond granularity.
            proptest::prop_assert!(elapsed >= end && elapsed <= end + ms(1), "{elapsed:?} for {end:?}");
        }
    }
}
