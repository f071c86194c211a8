//! Model checks of the lock-free state machine with `loom`: every
//! interleaving of the threads below, up to loom's bounds.
//!
//! Run with
//! `RUSTFLAGS="--cfg battlement_loom" CARGO_TARGET_DIR=target/loom cargo test -p battlement-breaker --test loom --release`.
#![cfg(battlement_loom)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use battlement_breaker::{Breaker, BreakerService, CircuitState};
use battlement_core::{BoxError, EventKind, EventLog};
use loom::thread;
use tower::{Service, service_fn};

type Fut = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// Inner service: `Some(true)` fails at once, `Some(false)` succeeds at
/// once, `None` never completes (a call held in flight).
fn svc(
    b: Breaker,
) -> BreakerService<impl Service<Option<bool>, Response = (), Error = BoxError, Future = Fut> + Clone>
{
    BreakerService::new(
        service_fn(|r: Option<bool>| -> Fut {
            Box::pin(async move {
                match r {
                    Some(true) => Err("down".into()),
                    Some(false) => Ok(()),
                    None => std::future::pending().await,
                }
            })
        }),
        b,
    )
}

fn poll<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// A breaker tripped open, whose first open duration (1 ns) has passed by
/// the next call, which moves it to half-open; a re-open lasts an hour.
fn tripped(probes: u32, log: &EventLog) -> Breaker {
    tripped_with(probes, probes, log)
}

/// As [`tripped`], with `probes` admitted per half-open period (and
/// needed to close) but at most `concurrent` in flight.
fn tripped_with(probes: u32, concurrent: u32, log: &EventLog) -> Breaker {
    let b = Breaker::builder("loom")
        .no_failure_rate()
        .consecutive_failures(1)
        .exponential_open(Duration::from_nanos(1), 1e13, Duration::from_secs(3600))
        .permitted_probes(probes)
        .max_concurrent_probes(concurrent)
        .success_threshold(probes)
        .events(log.sink())
        .build()
        .unwrap();
    let mut s = svc(b.clone());
    let mut f = Box::pin(s.call(Some(true)));
    assert!(poll(f.as_mut()).is_ready());
    // Open for 1 ns: `state()` may already read half-open.
    assert_eq!(
        transitions(log),
        [(CircuitState::Closed, CircuitState::Open)]
    );
    b
}

/// Two threads call at once with calls that never complete; returns how
/// many were admitted. The admitted calls are held until both threads
/// are done, then dropped (a dropped probe gives its place back).
fn two_held_callers(b: &Breaker) -> usize {
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let mut s = svc(b.clone());
            thread::spawn(move || {
                let mut f = Box::pin(s.call(None));
                let admitted = poll(f.as_mut()).is_pending();
                admitted.then_some(f)
            })
        })
        .collect();
    let held: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    held.iter().filter(|f| f.is_some()).count()
}

fn transitions(log: &EventLog) -> Vec<(CircuitState, CircuitState)> {
    log.kinds()
        .into_iter()
        .filter_map(|k| match k {
            EventKind::StateChanged { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect()
}

/// Two callers race for the only probe permit: exactly one is admitted,
/// the Open -> HalfOpen transition happens once, and a dropped probe gives
/// the permit back.
#[test]
fn one_permit_two_callers() {
    loom::model(|| {
        let log = EventLog::new();
        let b = tripped(1, &log);
        assert_eq!(two_held_callers(&b), 1);
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let mut s = svc(b.clone());
        let mut f = Box::pin(s.call(Some(false)));
        assert!(matches!(poll(f.as_mut()), Poll::Ready(Ok(()))));
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(
            transitions(&log),
            [
                (CircuitState::Closed, CircuitState::Open),
                (CircuitState::Open, CircuitState::HalfOpen),
                (CircuitState::HalfOpen, CircuitState::Closed),
            ]
        );
    });
}

/// Two probes finish at once, one failing, one succeeding: the breaker ends
/// open (the failure wins whatever the order, since closing needs both),
/// with exactly one transition out of half-open.
#[test]
fn probe_success_and_failure_race() {
    loom::model(|| {
        let log = EventLog::new();
        let b = tripped(2, &log);
        let handles: Vec<_> = [Some(false), Some(true)]
            .into_iter()
            .map(|r| {
                let mut s = svc(b.clone());
                thread::spawn(move || {
                    let mut f = Box::pin(s.call(r));
                    poll(f.as_mut()).is_ready()
                })
            })
            .collect();
        let done: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let t = transitions(&log);
        let from_half_open = t
            .iter()
            .filter(|(f, _)| *f == CircuitState::HalfOpen)
            .count();
        // Either both were probes (fail re-opens), or the failing one
        // re-opened before the other was admitted (rejected): open either way.
        assert_eq!(b.state(), CircuitState::Open, "{t:?} {done:?}");
        assert_eq!(from_half_open, 1, "{t:?}");
    });
}

/// Two concurrent failures with `consecutive_failures(2)` trip the breaker
/// exactly once.
#[test]
fn concurrent_failures_trip_once() {
    loom::model(|| {
        let log = EventLog::new();
        let b = Breaker::builder("loom")
            .no_failure_rate()
            .consecutive_failures(2)
            .events(log.sink())
            .build()
            .unwrap();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let mut s = svc(b.clone());
                thread::spawn(move || {
                    let mut f = Box::pin(s.call(Some(true)));
                    poll(f.as_mut()).is_ready()
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap());
        }
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(
            transitions(&log),
            [(CircuitState::Closed, CircuitState::Open)]
        );
    });
}

/// A probe of an earlier half-open round, still in flight, keeps its
/// permit into the next round (`permitted_probes` bounds the probes in
/// flight in total): its drop racing a new probe's admission is counted
/// exactly once, so of the two callers after it exactly one is admitted.
#[test]
fn earlier_round_probe_keeps_its_permit() {
    loom::model(|| {
        let log = EventLog::new();
        let b = tripped(2, &log);
        let mut s = svc(b.clone());
        // Round one: a probe that hangs.
        let mut old = Box::pin(s.call(None));
        assert!(poll(old.as_mut()).is_pending());
        // A new round: closed by hand, tripped again (open for 1 ns), and
        // a probe of the new round takes the second permit.
        b.reset();
        let mut f = Box::pin(s.call(Some(true)));
        assert!(poll(f.as_mut()).is_ready());
        let mut first = Box::pin(s.call(None));
        assert!(poll(first.as_mut()).is_pending());
        assert_eq!(b.state(), CircuitState::HalfOpen);

        let dropper = thread::spawn(move || drop(old));
        let mut s2 = svc(b.clone());
        let caller = thread::spawn(move || {
            let mut f = Box::pin(s2.call(None));
            let admitted = poll(f.as_mut()).is_pending();
            (admitted, admitted.then_some(f))
        });
        dropper.join().unwrap();
        let (second, held) = caller.join().unwrap();
        let mut f = Box::pin(s.call(None));
        let third = poll(f.as_mut()).is_pending();
        assert!(second ^ third, "second {second}, third {third}");
        drop((held, f, first));
    });
}

/// Two probes admitted per period but one at a time: of two racing
/// callers exactly one is admitted (the concurrency cap and the period's
/// admissions are two atomics, taken in turn); once it is dropped, its
/// admission is back and two successes in turn close.
#[test]
fn concurrency_cap_below_the_permitted_probes() {
    loom::model(|| {
        let log = EventLog::new();
        let b = tripped_with(2, 1, &log);
        assert_eq!(two_held_callers(&b), 1);
        for want in [CircuitState::HalfOpen, CircuitState::Closed] {
            let mut s = svc(b.clone());
            let mut f = Box::pin(s.call(Some(false)));
            assert!(matches!(poll(f.as_mut()), Poll::Ready(Ok(()))));
            assert_eq!(b.state(), want);
        }
    });
}

/// A success and a failure recorded at once into a one-slot count window
/// that holds a success, watched by a third thread. The failure swaps its
/// code in first and the success swaps it back out, but the success's
/// decrement of the failure total can land before the failure's
/// increment: the total is then 0 - 1 for an instant, which the window
/// reads as 0 (`clamp`). Whatever the order, a reader never sees more
/// failures or calls than the window holds, and once both are recorded
/// the window holds one call, a failure exactly when that is its slot's
/// code (checked through the rate: 0 or 1).
#[test]
fn a_success_and_a_failure_racing_for_one_slot_never_read_above_the_window() {
    // Three threads through the whole breaker: bounded at two preemptions
    // (the race needs one: the success's decrement between the failure's
    // swap and its increment).
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(2);
    builder.check(|| {
        // Metrics-only: it records as a closed breaker does, and never
        // trips, so both calls are admitted whatever the order.
        let b = Breaker::builder("loom")
            .count_window(1)
            .minimum_calls(1)
            .metrics_only()
            .build()
            .unwrap();
        let mut s = svc(b.clone());
        assert!(poll(Box::pin(s.call(Some(false))).as_mut()).is_ready());
        let writers: Vec<_> = [true, false]
            .into_iter()
            .map(|fail| {
                let mut s = svc(b.clone());
                thread::spawn(move || {
                    let mut f = Box::pin(s.call(Some(fail)));
                    assert!(poll(f.as_mut()).is_ready());
                })
            })
            .collect();
        let reader = b.clone();
        let reader = thread::spawn(move || {
            let m = reader.metrics();
            assert!(
                m.window_calls <= 1,
                "{} calls in a window of 1",
                m.window_calls
            );
            assert!(
                m.window_failures <= m.window_calls.max(1),
                "{} failures in a window of 1",
                m.window_failures
            );
        });
        for w in writers {
            w.join().unwrap();
        }
        reader.join().unwrap();
        let m = b.metrics();
        assert_eq!(m.window_calls, 1);
        assert!(m.window_failures <= 1, "{}", m.window_failures);
        assert_eq!(m.failures, 1);
        assert_eq!(m.successes, 2);
    });
}
