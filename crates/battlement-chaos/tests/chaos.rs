//! The schedule, the draws, latency and the off path, on paused time.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use battlement_chaos::{Chaos, ChaosBuilder, FailureKind, HttpFault, Injected, Latency, Phase};
use battlement_core::{BoxError, Classify, ErrorClassifier};
use proptest::prelude::*;
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

const NS: Duration = Duration::from_nanos(1);

/// An echo service that counts its calls.
fn counted() -> (
    impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = service_fn(move |x: u64| {
        c.fetch_add(1, Relaxed);
        std::future::ready(Ok::<_, BoxError>(x))
    });
    (svc, calls)
}

/// Polls `fut` once.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// Which of `n` calls (made one after another, completing at once) fail.
fn failures(chaos: &Chaos, n: u64) -> Vec<bool> {
    let (inner, _) = counted();
    let mut svc = chaos.layer().layer(inner);
    (0..n)
        .map(|i| {
            let fut = pin!(svc.call(i));
            match poll_once(fut) {
                Poll::Ready(res) => res.is_err(),
                Poll::Pending => panic!("call {i} was delayed"),
            }
        })
        .collect()
}

/// A chaos of one phase.
fn only(phase: Phase) -> Chaos {
    Chaos::builder("db").phase(phase).build().unwrap()
}

fn outage_schedule() -> ChaosBuilder {
    Chaos::builder("db")
        .seed(3)
        .phase(Phase::healthy(secs(5)))
        .phase(Phase::new("outage", secs(10)).error_ratio(1.0, FailureKind::Network))
        .phase(Phase::healthy(secs(5)).named("recovery"))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn phase_boundaries_are_exact_on_paused_time() {
    let chaos = outage_schedule().build().unwrap();
    let (inner, calls) = counted();
    let mut svc = chaos.layer().layer(inner);
    // (time since the last step, phase expected, does a call fail)
    let steps = [
        (Duration::ZERO, Some("healthy"), false),
        (secs(5) - NS, Some("healthy"), false),
        (NS, Some("outage"), true),
        (secs(10) - NS, Some("outage"), true),
        (NS, Some("recovery"), false),
        (secs(5) - NS, Some("recovery"), false),
        (NS, None, false),
        (secs(3600), None, false),
    ];
    let mut expected_calls = 0;
    for (i, (step, phase, fails)) in steps.into_iter().enumerate() {
        advance(step).await;
        let current = chaos.current().map(|at| at.phase.name().to_string());
        assert_eq!(current.as_deref(), phase, "step {i}");
        let res = svc.ready().await.unwrap().call(i as u64).await;
        assert_eq!(res.is_err(), fails, "step {i}");
        expected_calls += usize::from(!fails);
        assert_eq!(calls.load(Relaxed), expected_calls, "step {i}");
    }
    let stats = chaos.stats();
    assert_eq!((stats.errors, stats.passed), (2, 6));
    assert_eq!(stats.errors_of(FailureKind::Network), 2);
}

#[test]
fn phase_at_is_pure_and_a_repeating_schedule_cycles() {
    let chaos = outage_schedule().repeat(true).build().unwrap();
    let schedule = chaos.schedule();
    assert_eq!(schedule.total(), secs(20));
    for cycle in 0..3u64 {
        let base = secs(20 * cycle);
        for (t, index, remaining) in [
            (Duration::ZERO, 0, secs(5)),
            (secs(5) - NS, 0, NS),
            (secs(5), 1, secs(10)),
            (secs(15), 2, secs(5)),
            (secs(20) - NS, 2, NS),
        ] {
            let at = schedule.phase_at(base + t).unwrap();
            assert_eq!(
                (at.index, at.remaining, at.cycle),
                (index, remaining, cycle)
            );
            assert_eq!(chaos.phase_at(base + t), Some(at));
        }
    }
    let once = outage_schedule().build().unwrap();
    assert!(once.phase_at(secs(20)).is_none());
    assert!(Chaos::off("x").phase_at(Duration::ZERO).is_none());
    assert!(
        schedule
            .phase_at(Duration::MAX)
            .is_some_and(|at| at.cycle > 0)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_seed_repeats_exactly_and_the_share_is_tight() {
    let flaky = |seed| {
        Chaos::builder("db")
            .seed(seed)
            .phase(Phase::new("flaky", secs(60)).error_ratio(0.3, FailureKind::Transient))
            .build()
            .unwrap()
    };
    let first = failures(&flaky(42), 10_000);
    let second = failures(&flaky(42), 10_000);
    assert_eq!(first, second, "the same seed gives the same failures");
    let count = first.iter().filter(|f| **f).count();
    assert!((2_800..=3_200).contains(&count), "{count} failures at 0.3");
    let other = failures(&flaky(43), 10_000);
    assert_ne!(first, other, "another seed, other failures");

    // A restart repeats the run on the same `Chaos`; the counters go on.
    let chaos = flaky(42);
    assert_eq!(failures(&chaos, 10_000), first);
    chaos.start();
    assert_eq!(failures(&chaos, 10_000), first);
    assert_eq!(chaos.stats().errors, 2 * count as u64);
    assert_eq!(chaos.stats().passed, 2 * (10_000 - count) as u64);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_phase_draws_from_its_own_sequence() {
    // Calls in the first phase do not shift the second phase's draws.
    let two = |calls_in_first: u64| {
        let chaos = Chaos::builder("db")
            .seed(9)
            .phase(Phase::new("a", secs(5)).error_ratio(0.5, FailureKind::Network))
            .phase(Phase::new("b", secs(5)).error_ratio(0.5, FailureKind::Timeout))
            .build()
            .unwrap();
        failures(&chaos, calls_in_first);
        chaos
    };
    let (a, b) = (two(10), two(1_000));
    advance(secs(5)).await;
    assert_eq!(failures(&a, 1_000), failures(&b, 1_000));
    assert_eq!(
        a.stats().errors_of(FailureKind::Timeout),
        b.stats().errors_of(FailureKind::Timeout)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn response_and_error_shares_split_one_draw() {
    let chaos = Chaos::builder("api")
        .seed(5)
        .phase(
            Phase::new("mixed", secs(60))
                .respond(0.2, HttpFault::UNAVAILABLE)
                .error_ratio(0.3, FailureKind::Timeout),
        )
        .build()
        .unwrap();
    failures(&chaos, 10_000);
    let stats = chaos.stats();
    // Without an HTTP layer, a response fault is an error of its kind.
    let (unavailable, timeouts) = (
        stats.errors_of(FailureKind::Unavailable),
        stats.errors_of(FailureKind::Timeout),
    );
    assert!((1_800..=2_200).contains(&unavailable), "{unavailable}");
    assert!((2_800..=3_200).contains(&timeouts), "{timeouts}");
    assert_eq!(stats.passed + stats.errors, 10_000);
    assert_eq!(stats.responses, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn off_or_disabled_passes_straight_through() {
    let disabled = outage_schedule().enabled(false).build().unwrap();
    advance(secs(6)).await; // in the outage
    for chaos in [Chaos::off("off"), disabled] {
        let (inner, calls) = counted();
        let mut svc = chaos.layer().layer(inner);
        let before = Instant::now();
        for i in 0..100 {
            let mut fut = pin!(svc.call(i));
            assert_eq!(format!("{fut:?}"), r#"ResponseFuture { state: "called" }"#);
            assert!(matches!(poll_once(fut.as_mut()), Poll::Ready(Ok(x)) if x == i));
        }
        assert_eq!(Instant::now(), before, "no sleep");
        assert_eq!(calls.load(Relaxed), 100);
        assert_eq!(chaos.stats(), Default::default(), "nothing counted");
    }
    // Without phases it cannot be turned on.
    let off = Chaos::off("off");
    assert!(!off.enable() && !off.is_enabled());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_delay_sleeps_before_calling_the_inner_service() {
    let chaos = only(Phase::new("slow", secs(60)).latency(Latency::fixed(ms(100))));
    let (inner, calls) = counted();
    let mut svc = chaos.layer().layer(inner);
    let mut fut = pin!(svc.ready().await.unwrap().call(7));
    assert!(poll_once(fut.as_mut()).is_pending());
    advance(ms(100) - NS).await;
    assert!(poll_once(fut.as_mut()).is_pending());
    assert_eq!(calls.load(Relaxed), 0, "not called while sleeping");
    advance(NS).await;
    assert!(matches!(poll_once(fut.as_mut()), Poll::Ready(Ok(7))));
    assert_eq!(calls.load(Relaxed), 1);
    assert_eq!((chaos.stats().delayed, chaos.stats().passed), (1, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_delayed_call_never_calls_the_inner_service() {
    let chaos = only(Phase::new("slow", secs(60)).latency(Latency::fixed(secs(1))));
    let (mut svc, mut handle) = tower_test::mock::spawn_layer::<u64, u64, _>(chaos.layer());
    handle.allow(2);
    assert!(svc.poll_ready().is_ready());
    let mut delayed = Box::pin(svc.call(1));
    assert!(poll_once(delayed.as_mut()).is_pending());
    advance(ms(500)).await;
    drop(delayed);
    advance(secs(5)).await;
    // Nothing reached the mock; the service is usable (and ready) again.
    assert!(handle.poll_request().is_pending());
    chaos.disable();
    assert!(svc.poll_ready().is_ready());
    let call = svc.call(2);
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 2);
    send.send_response(20);
    assert_eq!(call.await.unwrap(), 20);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_delayed_fault_answers_after_the_sleep_without_a_call() {
    let chaos = only(
        Phase::new("slow failure", secs(60))
            .latency(Latency::fixed(secs(2)))
            .error_ratio(1.0, FailureKind::Timeout),
    );
    let (inner, calls) = counted();
    let mut svc = chaos.layer().layer(inner);
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(start.elapsed(), secs(2));
    assert!(err.is::<Injected>());
    assert_eq!(calls.load(Relaxed), 0);
    let stats = chaos.stats();
    assert_eq!((stats.delayed, stats.errors), (1, 1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn delays_through_the_layer_stay_in_bounds_and_repeat() {
    let run = || async {
        let chaos = Chaos::builder("db")
            .seed(11)
            .phase(
                Phase::new("spike", secs(3600))
                    .latency_ratio(0.5, Latency::uniform(ms(100), ms(400))),
            )
            .build()
            .unwrap();
        let (inner, _) = counted();
        let mut svc = chaos.layer().layer(inner);
        let mut delays = Vec::new();
        for i in 0..200 {
            let start = Instant::now();
            svc.ready().await.unwrap().call(i).await.unwrap();
            delays.push(start.elapsed());
        }
        (delays, chaos.stats().delayed)
    };
    let (delays, delayed) = run().await;
    let slow: Vec<_> = delays.iter().filter(|d| !d.is_zero()).collect();
    assert_eq!(slow.len() as u64, delayed);
    assert!(
        (70..=130).contains(&slow.len()),
        "{} delayed of 200",
        slow.len()
    );
    assert!(slow.iter().all(|d| (ms(100)..=ms(400)).contains(*d)));
    assert_eq!(
        run().await,
        (delays, delayed),
        "the same seed, the same delays"
    );
}

#[test]
fn a_long_tail_has_its_median_and_p99() {
    let tail = Latency::long_tail(ms(20), ms(250));
    let mut delays: Vec<_> = (0..20_000).map(|n| tail.draw(3, n)).collect();
    delays.sort();
    let at = |q: f64| delays[(q * delays.len() as f64) as usize].as_secs_f64() * 1e3;
    assert!((19.0..21.0).contains(&at(0.5)), "p50 {}", at(0.5));
    assert!((225.0..275.0).contains(&at(0.99)), "p99 {}", at(0.99));
    assert!(delays.last().unwrap() <= &ms(2_500), "clamped to 10 × p99");
}

proptest! {
    #[test]
    fn uniform_delays_stay_within_their_bounds(
        a in 0u64..86_400_000_000_000,
        b in 0u64..86_400_000_000_000,
        seed: u64,
        n: u64,
    ) {
        let (lo, hi) = (Duration::from_nanos(a.min(b)), Duration::from_nanos(a.max(b)));
        let d = Latency::uniform(lo, hi).draw(seed, n);
        prop_assert!(lo <= d && d <= hi, "{d:?} outside {lo:?}..={hi:?}");
    }

    #[test]
    fn long_tail_delays_stay_within_their_clamp(
        p50 in 1u64..10_000_000_000,
        spread in 1.0f64..1_000.0,
        max in proptest::option::of(1u64..100_000_000_000),
        seed: u64,
        n: u64,
    ) {
        let p50 = Duration::from_nanos(p50);
        let p99 = p50.mul_f64(spread).min(Latency::MAX);
        let mut tail = Latency::long_tail(p50, p99);
        if let Some(max) = max {
            tail = tail.max(Duration::from_nanos(max));
        }
        let (lo, hi) = tail.bounds();
        let d = tail.draw(seed, n);
        prop_assert!(lo <= d && d <= hi, "{d:?} outside {lo:?}..={hi:?} for {tail:?}");
        let built = Chaos::builder("x").phase(Phase::new("p", secs(1)).latency(tail)).build();
        prop_assert!(built.is_ok(), "{built:?}");
    }

    #[test]
    fn fixed_delays_are_fixed(d in 0u64..86_400_000_000_000, seed: u64, n: u64) {
        let d = Duration::from_nanos(d);
        prop_assert_eq!(Latency::fixed(d).draw(seed, n), d);
        prop_assert_eq!(Latency::fixed(d).max(d / 2).draw(seed, n), d / 2);
    }
}

#[test]
fn the_default_classifier_reads_the_injected_kind() {
    use FailureKind::*;
    let table = [
        (Network, Network),
        (Timeout, Timeout),
        (Transient, Transient),
        (Unavailable, Unavailable),
        (InvalidRequest, InvalidRequest),
        (NotFound, NotFound),
        (Authorization, Authorization),
        (Configuration, Configuration),
        (RateLimited, Unavailable),
        (Authentication, Authorization),
        (Rejected, Unknown),
        (Unknown, Unknown),
    ];
    assert_eq!(table.len(), FailureKind::ALL.len());
    for (injected, read) in table {
        let err: BoxError = Box::new(Injected::new("db", "outage", injected));
        let outcome = ErrorClassifier::new().classify(&Err::<(), _>(err));
        assert_eq!(outcome.as_failure().unwrap().kind, read, "{injected}");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn error_fn_makes_the_error() {
    let chaos = Chaos::builder("db")
        .phase(Phase::new("down", secs(60)).error_ratio(1.0, FailureKind::Network))
        .error_fn(|kind| format!("my {kind} error").into())
        .build()
        .unwrap();
    let (inner, _) = counted();
    let mut svc = chaos.layer().layer(inner);
    let err = match poll_once(pin!(svc.call(1))) {
        Poll::Ready(Err(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(err.to_string(), "my network error");
    assert_eq!(chaos.stats().errors_of(FailureKind::Network), 1);
}

#[test]
fn invalid_schedules_name_the_field_and_the_phase() {
    let phase = || Phase::new("bad", secs(1));
    let cases = [
        (
            Phase::new("bad", Duration::ZERO),
            "phase.duration",
            "above zero",
        ),
        (
            phase().error_ratio(1.5, FailureKind::Network),
            "phase.error_ratio",
            "[0, 1]",
        ),
        (
            phase().error_ratio(f64::NAN, FailureKind::Network),
            "phase.error_ratio",
            "[0, 1]",
        ),
        (
            phase().latency_ratio(-0.1, Latency::fixed(ms(1))),
            "phase.latency_ratio",
            "[0, 1]",
        ),
        (
            phase().respond(2.0, HttpFault::InternalServerError),
            "phase.response_ratio",
            "[0, 1]",
        ),
        (
            phase()
                .error_ratio(0.6, FailureKind::Network)
                .respond(0.5, HttpFault::InternalServerError),
            "phase.error_ratio",
            "at most 1",
        ),
        (
            phase().latency(Latency::uniform(ms(2), ms(1))),
            "latency",
            "min must be at most max",
        ),
        (
            phase().latency(Latency::long_tail(Duration::ZERO, ms(1))),
            "latency",
            "above zero",
        ),
        (
            phase().latency(Latency::long_tail(ms(2), ms(1))),
            "latency",
            "p50 must be at most p99",
        ),
        (
            phase().latency(Latency::fixed(secs(90_000))),
            "latency",
            "24 hours",
        ),
        (
            phase().respond(
                1.0,
                HttpFault::TooManyRequests {
                    retry_after: secs(90_000),
                },
            ),
            "phase.response.retry_after",
            "24 hours",
        ),
    ];
    for (bad, field, bound) in cases {
        let err = Chaos::builder("x")
            .phase(Phase::healthy(secs(1)))
            .phase(bad.clone())
            .build()
            .unwrap_err();
        assert_eq!((err.component, err.field), ("chaos", field), "{bad:?}");
        assert!(err.bound.contains(bound), "{err}");
        assert!(err.to_string().contains("phase 1 (`bad`)"), "{err}");
    }
    let overflow = Chaos::builder("x")
        .phase(Phase::healthy(Duration::MAX))
        .phase(Phase::healthy(secs(1)))
        .build()
        .unwrap_err();
    assert!(overflow.bound.contains("fit in a Duration"), "{overflow}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn phase_changes_controls_and_resets_are_events() {
    use battlement_core::{EventKind, EventLog};
    let log = EventLog::new();
    let chaos = outage_schedule().events(log.sink()).build().unwrap();
    let (inner, _) = counted();
    let mut svc = chaos.layer().layer(inner);
    let _ = svc.ready().await.unwrap().call(1).await;
    let _ = svc.ready().await.unwrap().call(2).await; // same phase: no event
    advance(secs(5)).await;
    let _ = svc.ready().await.unwrap().call(3).await;
    chaos.disable();
    chaos.disable(); // no change: no event
    chaos.enable();
    chaos.start();
    advance(secs(60)).await;
    let _ = svc.ready().await.unwrap().call(4).await;
    let told: Vec<String> = log
        .kinds()
        .into_iter()
        .map(|kind| match kind {
            EventKind::Custom { name, detail } => format!("{name}: {detail}"),
            other => other.to_string(),
        })
        .collect();
    assert_eq!(
        told,
        [
            "phase: phase 0 `healthy` for 5s (cycle 0)",
            "phase: phase 1 `outage` for 10s (cycle 0)",
            "disabled: fault injection disabled by hand",
            "enabled: fault injection enabled by hand",
            "reset",
            "phase: schedule finished: every call passes through",
        ]
    );
}
