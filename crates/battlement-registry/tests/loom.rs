//! Model checks of the instruments' counters and of their slot pool with
//! `loom`: every interleaving of the threads below, up to loom's bounds.
//!
//! Run with `.ci/extra.d/loom.sh`, or
//! `RUSTFLAGS="--cfg battlement_loom" CARGO_TARGET_DIR=target/loom cargo test -p battlement-registry --test loom --release`.
//!
//! Time is kept out of the models: they run inside a current-thread tokio
//! runtime on paused time that nothing moves (so latencies read zero and
//! no released slot ever ends its quarantine: only a settled slot is
//! reused). (loom runs its threads as coroutines on the test's own thread,
//! so the runtime's context, entered once around `loom::model`, is the
//! context of every modelled thread.)
//!
//! The latency histogram stays on `std`'s atomics (496 buckets of loom
//! atomics would swamp the models), so the calls whose end the models
//! race are unsampled: their last write is the `unsampled` or
//! `cancelled` counter, a loom atomic.
#![cfg(battlement_loom)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use battlement_core::BoxError;
use battlement_registry::{InstrumentLayer, Registry};
use loom::thread;
use serde_json::Value;
use tower::{Layer, Service, service_fn};

type Fut = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
type Inner = tower::util::ServiceFn<fn(bool) -> Fut>;
type Svc = <InstrumentLayer as Layer<Inner>>::Service;

/// Inner service: `true` succeeds, `false` fails, at once.
fn answer(ok: bool) -> Fut {
    Box::pin(async move { if ok { Ok(()) } else { Err("down".into()) } })
}

fn svc(layer: &InstrumentLayer) -> Svc {
    layer.layer(service_fn(answer as fn(bool) -> Fut))
}

fn run(s: &mut Svc, ok: bool) {
    let mut f = s.call(ok);
    let r = Pin::new(&mut f).poll(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(r, Poll::Ready(res) if res.is_ok() == ok));
}

/// The figures `keys` of instrument `name`, from one report.
fn figures<const N: usize>(r: &Registry, name: &str, keys: [&str; N]) -> [u64; N] {
    let report = r.get(name).expect("registered");
    keys.map(|key| match &report.details[key] {
        Value::Number(n) => n.as_u64().expect("a count"),
        other => panic!("{key}: {other}"),
    })
}

/// Runs `f` under loom inside a paused, undriven tokio runtime, with at
/// most three preemptions per run (unless `LOOM_MAX_PREEMPTIONS` says
/// otherwise): a health report is some thirty loads, and unbounded, a
/// report racing two calls runs to hundreds of thousands of
/// interleavings (three is what the known bugs of this kind need; see
/// loom's docs).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _entered = rt.enter();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(3);
    // `loom::model`'s "Completed in N iterations" is not printed through
    // the builder: count the runs here (a `std` atomic, across runs).
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!("loom: {} interleavings", runs.load(Ordering::Relaxed));
}

/// A success and a failure of an instrument that times one call in four,
/// racing (so both untimed: every counter they touch is a loom atomic),
/// with the registry reading the instrument meanwhile.
fn race_with_a_read(check: impl Fn([u64; 6])) {
    let r = Registry::new();
    let layer = r.layer("api").unwrap().sample_latency(4);
    // The timed call (the first of every four) is made here.
    run(&mut svc(&layer), true);
    let handles: Vec<_> = [true, false]
        .into_iter()
        .map(|ok| {
            let mut s = svc(&layer);
            thread::spawn(move || run(&mut s, ok))
        })
        .collect();
    let keys = [
        "calls",
        "successes",
        "failures",
        "cancelled",
        "in_flight",
        "ignored",
    ];
    check(figures(&r, "api", keys));
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(figures(&r, "api", keys), [3, 2, 1, 0, 0, 0]);
}

/// Every read adds up (calls = successes + failures + cancelled + in
/// flight), none above what was made, and once both calls end the figures
/// are exact. A read racing the failure may count it as a success for a
/// moment (see [`a_read_never_counts_a_failure_as_a_success`]).
#[test]
fn counters_add_up_while_read() {
    model(|| {
        race_with_a_read(
            |[calls, successes, failures, cancelled, in_flight, ignored]| {
                assert_eq!(
                    calls,
                    successes + failures + cancelled + in_flight + ignored
                );
                assert!((1..=3).contains(&calls) && successes <= 3 && failures <= 1);
                assert_eq!(cancelled + ignored, 0);
            },
        );
    });
}

/// The strict form: a read never shows more successes than there were
/// (two). A failure counts `failures` and then, last, its completion
/// (with `Release`); the read loads the completions first, with
/// `Acquire`, so a call it sees completed it sees failed too, and it never
/// derives a third success (successes = completed - failures - ignored)
/// that the next read would take back. With both loads `Relaxed` (as they
/// were), loom finds that interleaving: `successes_total` could go down
/// between two scrapes on a weakly ordered CPU.
#[test]
fn a_read_never_counts_a_failure_as_a_success() {
    model(|| {
        race_with_a_read(|[_, successes, ..]| assert!(successes <= 2, "{successes} successes"));
    });
}

/// Two instruments made at once while a third is dropped, with one
/// settled slot in the pool before: the pool hands each slot to one
/// instrument only (a call through one is never seen by the other), and
/// the dropped one's figures do not reach either.
#[test]
fn a_slot_is_never_handed_out_twice() {
    model(|| {
        let r = Registry::new();
        let old = r.layer("old").unwrap();
        run(&mut svc(&old), true);
        drop(old); // settled: in the pool, reusable at once
        let dropped = r.layer("dropped").unwrap();
        run(&mut svc(&dropped), false);

        let r1 = r.clone();
        let a = thread::spawn(move || {
            let layer = r1.layer("a").unwrap();
            run(&mut svc(&layer), true);
            layer
        });
        let r2 = r.clone();
        let b = thread::spawn(move || r2.layer("b").unwrap());
        let c = thread::spawn(move || drop(dropped));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        c.join().unwrap();
        let keys = ["calls", "successes", "failures"];
        assert_eq!(figures(&r, "a", keys), [1, 1, 0]);
        assert_eq!(figures(&r, "b", keys), [0, 0, 0]);
        drop((a, b));
    });
}

/// Set when a run of [`a_call_ending_as_its_instrument_is_dropped`]
/// reused the slot at once, or made a new one (not loom objects: they
/// outlive the runs).
static REUSED: AtomicBool = AtomicBool::new(false);
static NOT_REUSED: AtomicBool = AtomicBool::new(false);

/// A call ends (completes, or is dropped unfinished) while its instrument
/// is dropped and a new instrument is made: the slot goes back to the pool
/// settled only once no call of it can write again, so whether the new
/// instrument reuses it at once (the call ended first) or gets a fresh one
/// (the call was still running at the release), the late call never
/// counts into it, and the new instrument's own calls count exactly.
/// loom reaches both outcomes.
#[test]
fn a_call_ending_as_its_instrument_is_dropped() {
    for complete in [true, false] {
        model(move || {
            let r = Registry::new();
            // One call in two timed: the first (timed) is done here, the
            // racing one is not timed, so it ends with a loom atomic.
            let layer = r.layer("a").unwrap().sample_latency(2);
            let mut s = svc(&layer);
            run(&mut s, true);
            let late = s.call(true);

            let ender = thread::spawn(move || {
                let mut late = late;
                if complete {
                    let r = Pin::new(&mut late).poll(&mut Context::from_waker(Waker::noop()));
                    assert!(matches!(r, Poll::Ready(Ok(()))));
                }
                drop(late);
            });
            let dropper = thread::spawn(move || drop((layer, s)));
            let r2 = r.clone();
            let maker = thread::spawn(move || r2.layer("b").unwrap());
            ender.join().unwrap();
            dropper.join().unwrap();
            let b = maker.join().unwrap();
            // The pool is per loom run: empty if `b` took `a`'s slot.
            let reused = r.footprint().pooled_instruments == 0;
            if reused {
                REUSED.store(true, Ordering::Relaxed);
            } else {
                NOT_REUSED.store(true, Ordering::Relaxed);
            }
            let keys = ["calls", "successes", "cancelled", "in_flight"];
            let late = figures(&r, "b", keys);
            assert_eq!(
                late,
                [0, 0, 0, 0],
                "a late call counted into a new instrument"
            );
            run(&mut svc(&b), true);
            assert_eq!(figures(&r, "b", keys), [1, 1, 0, 0]);
        });
    }
    assert!(REUSED.load(Ordering::Relaxed), "loom never reused the slot");
    assert!(
        NOT_REUSED.load(Ordering::Relaxed),
        "loom always reused the slot"
    );
}
