//! Soak: millions of calls through the whole canonical stack that
//! `Policy` builds (instrument, fallback, gate, deadline, bulkhead, retry
//! with a budget, breaker, attempt timeout), on a multi-thread runtime,
//! against a backend under rotating faults (errors, latency, outage,
//! recovery) injected by `ChaosLayer`s.
//!
//! Afterwards: the memory is back where it was after the warm-up, nothing
//! is held (calls in flight, probes, bulkhead slots and waiters, budget
//! tokens), every component's totals agree with the driver's own counts
//! and with each other, and no task is left alive.
//!
//! The count: `BATTLEMENT_SOAK_CALLS` (default 2 000 000 in debug and release; about 6 s in a debug build, 2 000 000
//! in release). The full run of RELIABILITY.md:
//! `BATTLEMENT_SOAK_CALLS=10000000 cargo test --release -p battlement-tests --test soak -- --nocapture`
//! (or `--ignored` for the ten million without the variable).
//!
//! Time is real here (a multi-thread runtime cannot be paused), so every
//! assertion is on counts, never on how long anything took. The faults
//! rotate by rounds of calls, not by the clock: each round enables one
//! chaos (or none), so which calls see which fault does not depend on the
//! machine's speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use battlement::prelude::*;
use battlement_chaos::{Chaos, Latency, Phase};
mod support;

use tower::{Layer, Service, ServiceExt, service_fn};

/// What the fallback answers with (never a request number the driver
/// sends).
const FALLBACK: u32 = u32::MAX;
/// Concurrent callers.
const TASKS: u64 = 32;
/// Rounds per fault cycle (errors, latency, outage, recovery).
const PHASES: [&str; 4] = ["errors", "latency", "outage", "recovery"];

fn env_calls(default: u64) -> u64 {
    support::env_count("BATTLEMENT_SOAK_CALLS", default)
}

/// Resident memory in bytes (`/proc/self/statm`'s second field, in pages
/// of 4 KiB), or `None` off Linux.
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A chaos that injects `phase` for a day, off until the driver turns it
/// on.
fn chaos(name: &str, phase: Phase, seed: u64) -> Chaos {
    Chaos::builder(name.to_owned())
        .seed(seed)
        .phase(phase)
        .enabled(false)
        .build()
        .unwrap()
}

fn priority_of(n: u32) -> Priority {
    match n % 8 {
        0 => Priority::Sheddable,
        1 => Priority::Low,
        2 => Priority::High,
        _ => Priority::Normal,
    }
}

/// What the driver saw.
#[derive(Debug, Default)]
struct Seen {
    ok: AtomicU64,
    fallback: AtomicU64,
    shed: AtomicU64,
    failed: AtomicU64,
}

fn detail(registry: &Registry, component: &str, key: &str) -> u64 {
    let report = registry
        .get(component)
        .unwrap_or_else(|| panic!("{component} is registered"));
    report
        .details
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{component}.{key} in {:?}", report.details))
}

/// Prints every registered component's details and checks that each
/// one's totals add up: for whatever counts calls, each call ended one way
/// (success, failure, ignored or, for the instrument, cancelled); the
/// gate admitted or shed each call; the fallback served or failed each
/// trigger; the bulkhead holds nothing.
fn ledger(registry: &Registry, issued: u64) {
    let mut checked = 0;
    for name in registry.names() {
        let report = registry.get(&name).unwrap();
        let d = &report.details;
        println!("soak: {name}: {}", serde_json::Value::Object(d.to_json()));
        let n = |key: &str| d.get(key).and_then(serde_json::Value::as_u64);
        let sum = |key: &str| -> u64 {
            d.get(key)
                .and_then(serde_json::Value::as_object)
                .unwrap_or_else(|| panic!("{name}.{key}"))
                .values()
                .filter_map(serde_json::Value::as_u64)
                .sum()
        };
        if let (Some(calls), Some(ok), Some(failed)) = (n("calls"), n("successes"), n("failures")) {
            let ignored = n("ignored").unwrap();
            let cancelled = n("cancelled").unwrap_or(0);
            assert_eq!(calls, ok + failed + ignored + cancelled, "{name}: {d:?}");
            if d.contains_key("failures_by_kind") {
                assert_eq!(sum("failures_by_kind"), failed, "{name}: {d:?}");
            }
            if let Some(in_flight) = n("in_flight") {
                assert_eq!(in_flight, 0, "{name}: {d:?}");
            }
            checked += 1;
        }
        match report.kind.as_str() {
            "gate" => {
                assert_eq!(sum("admitted") + sum("shed"), issued, "{name}: {d:?}");
                assert_eq!(n("in_flight"), Some(0), "{name}: {d:?}");
                checked += 1;
            }
            "fallback" => {
                let served = n("served").unwrap();
                assert_eq!(
                    n("triggered"),
                    Some(served + n("all_failed").unwrap()),
                    "{name}: {d:?}"
                );
                assert_eq!(sum("reasons"), n("triggered").unwrap(), "{name}: {d:?}");
                checked += 1;
            }
            "bulkhead" => {
                assert_eq!(
                    (n("in_flight"), n("waiting")),
                    (Some(0), Some(0)),
                    "{name}: {d:?}"
                );
                checked += 1;
            }
            _ => {}
        }
    }
    // instrument, breaker, gate, fallback, bulkhead
    assert!(checked >= 5, "only {checked} ledgers found");
}

/// Counts the calls into `inner`.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    entered: Arc<AtomicU64>,
}

impl<S: Service<u32>> Service<u32> for Counted<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, n: u32) -> S::Future {
        self.entered.fetch_add(1, Relaxed);
        self.inner.call(n)
    }
}

/// One caller: `count` calls numbered from `first`, one at a time.
async fn drive<S>(mut svc: S, first: u32, count: u64, seen: Arc<Seen>)
where
    S: Service<u32, Response = u32, Error = BoxError> + Send,
    S::Future: Send,
{
    for i in 0..count {
        let n = first + i as u32;
        let result = match svc.ready().await {
            Ok(ready) => ready.call(n).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(FALLBACK) => seen.fallback.fetch_add(1, Relaxed),
            Ok(m) => {
                assert_eq!(m, n, "the answer to its own request");
                seen.ok.fetch_add(1, Relaxed)
            }
            Err(e) if e.is::<Shed>() => seen.shed.fetch_add(1, Relaxed),
            Err(_) => seen.failed.fetch_add(1, Relaxed),
        };
    }
}

#[test]
fn soak() {
    run(env_calls(2_000_000));
}

/// The full count of RELIABILITY.md; run with `--release -- --ignored`.
#[test]
#[ignore = "ten million calls: run in release with --ignored"]
fn soak_ten_million() {
    run(env_calls(10_000_000));
}

fn run(calls: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(soak_on(calls, &rt.handle().clone()));
    drop(rt);
}

async fn soak_on(calls: u64, handle: &tokio::runtime::Handle) {
    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    const fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }
    let day = Duration::from_secs(24 * 3600);
    let registry = Registry::new();

    let errors = chaos(
        "soak/chaos/errors",
        Phase::new("errors", day).error_ratio(0.2, FailureKind::Transient),
        1,
    );
    // Microseconds: on a real-time runtime a sleep lasts until the timer's
    // next millisecond tick, so this is about a millisecond per delayed
    // call.
    let latency = chaos(
        "soak/chaos/latency",
        Phase::new("latency", day).latency_ratio(0.01, Latency::uniform(us(1), us(20))),
        2,
    );
    let outage = chaos(
        "soak/chaos/outage",
        Phase::new("outage", day).error_ratio(1.0, FailureKind::Unavailable),
        3,
    );
    for c in [&errors, &latency, &outage] {
        registry.register(c).unwrap();
    }

    let policy = Policy::builder("soak")
        .registry(&registry)
        .total(Duration::from_secs(2))
        .attempt_timeout(ms(200))
        .retry(|r| {
            r.max_attempts(3)
                .backoff(Backoff::none())
                .base_delay_for(FailureKind::Unavailable, us(20))
        })
        .budget(|b| b.ratio(0.2).min_per_sec(10).ttl(Duration::from_secs(60)))
        .breaker(|b| {
            b.failure_rate(0.5)
                .count_window(200)
                .minimum_calls(100)
                .open_duration(ms(1))
                .permitted_probes(4)
                .max_concurrent_probes(2)
                .success_threshold(2)
        })
        .bulkhead(|b| b.max_concurrent(12).wait(ms(50), 64))
        .gate(|g| g)
        .priority(|n: &u32| Some(priority_of(*n)))
        .fallback(|f| f.value(FALLBACK).trigger_on_kinds([FailureKind::Rejected]))
        .build()
        .unwrap();
    let breaker = policy.breaker().unwrap().clone();
    let budget = policy.budget().unwrap().clone();
    let gate = policy.gate().unwrap().clone();
    // The gate counts calls in flight only once a signal needs them:
    // without this, `gate.in_flight()` below would be 0 whatever happens.
    let _gate_in_flight = gate.in_flight_signal();
    let bulkhead = policy.bulkhead().clone();

    // Calls that reach the backend (under the attempt timeout), and the
    // backend behind the three chaos layers.
    let entered = Arc::new(AtomicU64::new(0));
    // Plain futures, no `async` blocks: a generator in the stack trips
    // the spawned future's `Send` check on `BoxError`'s lifetime.
    let backend =
        outage.layer().layer(
            latency
                .layer()
                .layer(errors.layer().layer(service_fn(|n: u32| {
                    std::future::ready(Ok::<u32, BoxError>(n))
                }))),
        );
    let counted = Counted {
        inner: backend,
        entered: entered.clone(),
    };
    let svc = policy.layer(counted);

    let seen = Arc::new(Seen::default());
    let cycles = 10u64;
    let rounds = cycles * PHASES.len() as u64;
    let per_task = (calls / rounds / TASKS).max(1);
    let issued = per_task * TASKS * rounds;

    // Real time (this runtime is not paused): only for the printed rate.
    let started = tokio::time::Instant::now();
    let mut warm = None;
    let mut peak = 0u64;
    let mut samples = Vec::with_capacity(rounds as usize);
    for round in 0..rounds {
        let phase = PHASES[(round % PHASES.len() as u64) as usize];
        errors.disable();
        latency.disable();
        outage.disable();
        gate.set_level(Level::Normal);
        match phase {
            "errors" => {
                errors.enable();
            }
            "latency" => {
                latency.enable();
            }
            "outage" => {
                outage.enable();
                // Shed the sheddable while the backend is down.
                gate.set_level(Level::Minimal);
            }
            _ => {}
        }
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let first = ((round * TASKS + t) * per_task) as u32;
                tokio::spawn(drive(svc.clone(), first, per_task, seen.clone()))
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        if let Some(now) = rss() {
            // The first whole cycle is the warm-up: allocator arenas,
            // timer wheel, histograms, the instrument's slot.
            if round + 1 == PHASES.len() as u64 {
                warm = Some(now);
            }
            peak = peak.max(now);
            samples.push(now);
        }
    }
    let elapsed = started.elapsed();
    errors.disable();
    latency.disable();
    outage.disable();

    support::assert_no_task_alive(handle);

    let ok = seen.ok.load(Relaxed);
    let fallback = seen.fallback.load(Relaxed);
    let shed = seen.shed.load(Relaxed);
    let failed = seen.failed.load(Relaxed);
    assert_eq!(ok + fallback + shed + failed, issued);

    // Instrument (outermost): every call, judged as the driver saw it.
    let inst = "soak/instrument";
    assert_eq!(detail(&registry, inst, "calls"), issued);
    assert_eq!(detail(&registry, inst, "in_flight"), 0);
    assert_eq!(detail(&registry, inst, "cancelled"), 0);
    assert_eq!(detail(&registry, inst, "successes"), ok + fallback);
    assert_eq!(
        detail(&registry, inst, "failures") + detail(&registry, inst, "ignored"),
        shed + failed
    );

    // Fallback: the answers the driver got from it.
    assert_eq!(detail(&registry, "soak/fallback", "served"), fallback);

    // Gate: every call admitted or shed, none still counted in flight.
    let admitted: u64 = Priority::ALL.iter().map(|p| gate.admitted(*p)).sum();
    let gate_shed: u64 = Priority::ALL.iter().map(|p| gate.shed(*p)).sum();
    assert_eq!(admitted + gate_shed, issued);
    assert_eq!(gate_shed, shed);
    assert_eq!(gate.in_flight(), 0);
    assert_eq!(
        gate.shed(Priority::Normal),
        0,
        "Minimal sheds only sheddable"
    );

    // Bulkhead: all slots and places in the queue given back. A slot is
    // taken in `poll_ready`, before the gate (outside it) decides in
    // `call`: a shed call leaves it with its service for the next call,
    // and the last one is given back unused when the task's service is
    // dropped, so at most one slot per task and round was never called.
    let load = bulkhead.metrics();
    assert_eq!(load.in_flight, 0, "{load:?}");
    assert_eq!(load.waiting, 0, "{load:?}");
    let decided = load.admitted + load.rejected;
    assert!(
        (admitted..=admitted + TASKS * rounds).contains(&decided),
        "{load:?}, {admitted} admitted by the gate"
    );

    // Retry: every request that got a bulkhead slot deposits into the
    // budget; it and each of its retries reached the breaker, admitted
    // or refused. (The retry layer's own `requests` counts only those
    // whose first attempt failed retryably.)
    let b = breaker.metrics();
    let requests = detail(&registry, "soak/budget", "requests");
    let retries = detail(&registry, "soak/retry", "retries");
    let attempts = requests + retries;
    assert!(
        requests <= load.admitted && load.admitted - requests <= TASKS * rounds,
        "{requests} requests, {load:?}"
    );
    assert_eq!(
        detail(&registry, "soak/retry", "attempts"),
        detail(&registry, "soak/retry", "requests_retryable") + retries
    );
    assert_eq!(attempts, b.calls + b.rejections, "{b:?}");

    // Breaker: its totals add up, no probe still holds a permit, and every
    // call it recorded reached the backend.
    assert_eq!(b.calls, b.successes + b.failures + b.ignored, "{b:?}");
    assert_eq!(b.probes_in_flight, 0, "{b:?}");
    assert_eq!(b.calls, entered.load(Relaxed), "{b:?}");
    assert!(b.trips > 0, "the outages opened the breaker: {b:?}");

    // Budget: one token per retry sent (no
    // retry was cancelled, so none was refunded); and, while no deposit
    // has expired (the run is shorter than the ttl), the tokens left are
    // exactly the floor plus the deposits minus the retries.
    assert_eq!(budget.retries_allowed(), retries);
    let ttl = Duration::from_secs(60);
    if elapsed < ttl - Duration::from_secs(6) {
        let floor = 10 * ttl.as_secs() * 1000;
        let expect = (floor + requests * 200 - retries * 1000) / 1000;
        assert_eq!(budget.available(), expect);
    }

    // The chaos injected what each phase says.
    let (e, l, o) = (errors.stats(), latency.stats(), outage.stats());
    assert!(
        e.errors > 0 && l.delayed > 0 && o.errors > 0,
        "{e:?} {l:?} {o:?}"
    );

    // Every component's own ledger adds up, read from the registry.
    ledger(&registry, issued);
    let rate = issued as f64 / elapsed.as_secs_f64();
    println!(
        "soak: {issued} calls in {elapsed:.2?} ({rate:.0} calls/s, {} build); \
         ok {ok}, fallback {fallback}, shed {shed}, failed {failed}; \
         attempts {attempts} (retries {retries}), breaker trips {}, rejections {}; \
         bulkhead waited {}, rejected {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        b.trips,
        b.rejections,
        load.waited,
        load.rejected,
    );
    match (warm, rss()) {
        (Some(warm), Some(end)) => {
            println!(
                "soak: RSS after warm-up {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
                mib(warm),
                mib(peak),
                mib(end)
            );
            let series: Vec<String> = samples.iter().map(|b| format!("{:.1}", mib(*b))).collect();
            println!("soak: RSS after each round (MiB): {}", series.join(" "));
            // Nothing grows with the number of calls: the end is within a
            // few MiB of the warm-up (allocator arenas settle).
            let bound = 4 * 1024 * 1024 + warm / 10;
            assert!(
                end <= warm + bound,
                "RSS grew from {:.1} MiB to {:.1} MiB",
                mib(warm),
                mib(end)
            );
        }
        _ => println!("soak: no /proc/self/statm, RSS not checked"),
    }
}
