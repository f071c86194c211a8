//! Concurrency stress: 16 tasks on a multi-thread runtime share one
//! breaker, gate, retry budget, instrument and bulkhead (one `Policy`,
//! one service per task), while another task flips the gate's level.
//!
//! Phase 1 holds the breaker between open and half-open: after one
//! failure trips it, the backend's probes mostly succeed (slowly, so they
//! overlap), some are ignored, some fail (re-opening it), some are dropped
//! by their caller, and none can close it (a round needs 1 000 successes
//! in a row). So every call that reaches the backend is a half-open probe,
//! and the backend counts them: at no instant may more than
//! `max_concurrent_probes` run at once. Phase 2 lets every call succeed
//! until the breaker closes.
//!
//! Afterwards: nothing is held (calls in flight, probes, slots, waiters,
//! gate counts) and every total adds up. Real time, so the assertions are
//! on counts only.
//!
//! `BATTLEMENT_STRESS_CALLS` sets the calls per task in phase 1 (default
//! 20 000 in debug, about 3 s; 100 000 in release). The long run:
//! `BATTLEMENT_STRESS_CALLS=1000000 cargo test --release -p battlement-tests --test stress -- --nocapture`.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use battlement::prelude::*;
mod support;

use tower::{Layer, Service, ServiceExt};

const TASKS: u64 = 16;
const PROBES: u32 = 3;
/// What the backend answers for a call the classifier ignores.
const IGNORED: u32 = u32::MAX;

/// The backend's behaviour.
const TRIP: u8 = 0;
const PROBING: u8 = 1;
const HEALTHY: u8 = 2;

/// Counts the calls running in the backend and the most at once.
#[derive(Debug, Default)]
struct Probes {
    running: AtomicU64,
    max: AtomicU64,
    entered: AtomicU64,
}

/// Leaves the count when the call ends or is dropped.
struct Running(Arc<Probes>);

impl Running {
    fn enter(p: &Arc<Probes>) -> Self {
        p.entered.fetch_add(1, Relaxed);
        let now = p.running.fetch_add(1, Relaxed) + 1;
        p.max.fetch_max(now, Relaxed);
        Running(p.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Relaxed);
    }
}

/// The backend: fails at once while `TRIP`; otherwise stays in flight
/// for a few polls (counted as a probe while `PROBING`) and answers by
/// the call's number. Hand-written rather than an `async` block: a
/// generator in the stack trips the spawned future's `Send` check on
/// `BoxError`'s lifetime.
#[derive(Clone)]
struct Backend {
    mode: Arc<AtomicU8>,
    probes: Arc<Probes>,
}

impl Service<u32> for Backend {
    type Response = u32;
    type Error = BoxError;
    type Future = BackendCall;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> BackendCall {
        let mode = self.mode.load(Relaxed);
        BackendCall {
            mode,
            n,
            polls: 3,
            _running: (mode == PROBING).then(|| Running::enter(&self.probes)),
        }
    }
}

struct BackendCall {
    mode: u8,
    n: u32,
    polls: u8,
    _running: Option<Running>,
}

impl Future for BackendCall {
    type Output = Result<u32, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.mode == TRIP {
            return Poll::Ready(Err(error("down")));
        }
        if self.polls > 0 {
            self.polls -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self._running = None;
        Poll::Ready(match (self.mode, mix(u64::from(self.n)) % 100) {
            (PROBING, 0..2) => Err(error("flaky")),
            (PROBING, 2..7) => Ok(IGNORED),
            (_, _) => Ok(self.n),
        })
    }
}

#[derive(Debug, Default)]
struct Seen {
    ok: AtomicU64,
    ignored: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

fn env_calls(default: u64) -> u64 {
    support::env_count("BATTLEMENT_STRESS_CALLS", default)
}

/// A cheap, well-spread hash of a call's number.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The policy's classifier: `IGNORED` is neither a success nor a
/// failure. (A type rather than a closure: a closure over a `BoxError`
/// makes the spawned future's `Send` check trip on higher-ranked
/// lifetimes.)
#[derive(Debug, Clone, Copy)]
struct Classifier;

impl<E> Classify<u32, E> for Classifier
where
    ErrorClassifier: Classify<u32, E>,
{
    fn classify(&self, r: &Result<u32, E>) -> Outcome {
        match r {
            Ok(IGNORED) => Outcome::Ignored,
            other => ErrorClassifier::new().classify(other),
        }
    }
}

fn error(msg: &'static str) -> BoxError {
    msg.into()
}

fn detail(registry: &Registry, component: &str, key: &str) -> u64 {
    let report = registry.get(component).expect("registered");
    report
        .details
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{component}.{key} in {:?}", report.details))
}

#[test]
fn sixteen_tasks_share_one_stack() {
    let per_task = env_calls(if cfg!(debug_assertions) {
        20_000
    } else {
        100_000
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    rt.block_on(stress(per_task, handle));
}

async fn stress(per_task: u64, handle: tokio::runtime::Handle) {
    let registry = Registry::new();
    let policy = Policy::builder("stress")
        .registry(&registry)
        .classifier(Classifier)
        .total(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(1))
        .retry(|r| r.max_attempts(2).backoff(Backoff::none()))
        .budget(|b| b.ratio(0.1).min_per_sec(10).ttl(Duration::from_secs(60)))
        .breaker(|b| {
            b.consecutive_failures(1)
                .no_failure_rate()
                .open_duration(Duration::from_millis(1))
                .permitted_probes(1000)
                .success_threshold(1000)
                .max_concurrent_probes(PROBES)
        })
        .bulkhead(|b| b.max_concurrent(8).wait(Duration::from_secs(1), 16))
        .gate(|g| g)
        .priority(|n: &u32| {
            Some(if n.is_multiple_of(4) {
                Priority::Low
            } else {
                Priority::Normal
            })
        })
        .build()
        .unwrap();
    let breaker = policy.breaker().unwrap().clone();
    let gate = policy.gate().unwrap().clone();
    // The gate counts calls in flight only once a signal needs them:
    // without this, `gate.in_flight()` below would be 0 whatever happens.
    let _gate_in_flight = gate.in_flight_signal();
    let budget = policy.budget().unwrap().clone();
    let bulkhead = policy.bulkhead().clone();

    let mode = Arc::new(AtomicU8::new(TRIP));
    let probes = Arc::new(Probes::default());
    let backend = Backend {
        mode: mode.clone(),
        probes: probes.clone(),
    };
    let svc = policy.layer(backend);

    // One failure trips the breaker: from now on, until the backend is
    // healthy, every call that reaches it is a half-open probe.
    // (Its retry finds the circuit open.)
    let err = svc.clone().oneshot(u32::MAX - 1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_ne!(breaker.state(), CircuitState::Closed);
    mode.store(PROBING, Relaxed);

    let seen = Arc::new(Seen::default());
    let done = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (gate, done) = (gate.clone(), done.clone());
        tokio::spawn(async move {
            let mut flips = 0u64;
            while !done.load(Relaxed) {
                let level = if flips.is_multiple_of(2) {
                    Level::Moderate
                } else {
                    Level::Normal
                };
                gate.set_level(level);
                flips += 1;
                for _ in 0..50 {
                    tokio::task::yield_now().await;
                }
            }
            gate.set_level(Level::Normal);
            flips
        })
    };

    let issued = Arc::new(AtomicU64::new(0));
    let spawn_phase = |phase: u64, until_closed: bool| {
        (0..TASKS)
            .map(|t| {
                let mut svc = svc.clone();
                let (seen, issued, breaker) = (seen.clone(), issued.clone(), breaker.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    loop {
                        if until_closed {
                            // Until closed, then as many calls again.
                            if breaker.state() == CircuitState::Closed && i >= per_task {
                                break;
                            }
                            assert!(
                                i < 2_000_000,
                                "the breaker never closed: {:?}",
                                breaker.metrics()
                            );
                        } else if i == per_task {
                            break;
                        }
                        // A rejection by an open circuit is ready at once and
                        // touches no tokio resource, so a task that is refused
                        // over and over never yields by itself: on two workers
                        // two such tasks would starve the very probes that
                        // could close the circuit. Yield once per call.
                        tokio::task::yield_now().await;
                        let n = ((phase * TASKS + t) * 1_000_000_000 + i) as u32 % (u32::MAX - 2);
                        i += 1;
                        issued.fetch_add(1, Relaxed);
                        let ready = svc.ready().await.unwrap();
                        let mut call = pin!(ready.call(n));
                        if mix(u64::from(n) ^ 0x5555).is_multiple_of(50) {
                            // Poll once, then drop: a caller that gives up.
                            let first = poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
                            if first.is_pending() {
                                seen.dropped.fetch_add(1, Relaxed);
                                continue;
                            }
                            count(&seen, first.map(|r| r.map_err(drop)));
                            continue;
                        }
                        count(&seen, Poll::Ready(call.await.map_err(drop)));
                    }
                })
            })
            .collect::<Vec<_>>()
    };
    fn count(seen: &Seen, result: Poll<Result<u32, ()>>) {
        match result {
            Poll::Ready(Ok(IGNORED)) => seen.ignored.fetch_add(1, Relaxed),
            Poll::Ready(Ok(_)) => seen.ok.fetch_add(1, Relaxed),
            Poll::Ready(Err(())) => seen.failed.fetch_add(1, Relaxed),
            Poll::Pending => unreachable!(),
        };
    }

    for task in spawn_phase(1, false) {
        task.await.unwrap();
    }
    let max_probes = probes.max.load(Relaxed);
    let probed = probes.entered.load(Relaxed);
    assert!(
        max_probes <= u64::from(PROBES),
        "{max_probes} probes at once, {PROBES} permitted"
    );
    assert_eq!(probes.running.load(Relaxed), 0);
    assert!(probed > 0, "no probe reached the backend");
    let b = breaker.metrics();
    assert_eq!(b.probes_in_flight, 0, "{b:?}");
    assert_ne!(b.state, CircuitState::Closed, "{b:?}");

    mode.store(HEALTHY, Relaxed);
    for task in spawn_phase(2, true) {
        task.await.unwrap();
    }
    done.store(true, Relaxed);
    let flips = flipper.await.unwrap();

    support::assert_no_task_alive(&handle);

    // Nothing held.
    let b = breaker.metrics();
    assert_eq!(b.state, CircuitState::Closed, "{b:?}");
    assert_eq!(b.probes_in_flight, 0, "{b:?}");
    assert_eq!(gate.in_flight(), 0);
    let load = bulkhead.metrics();
    assert_eq!((load.in_flight, load.waiting), (0, 0), "{load:?}");

    // Totals. The trip call counts too.
    let issued = issued.load(Relaxed) + 1;
    let (ok, ignored, failed, dropped) = (
        seen.ok.load(Relaxed),
        seen.ignored.load(Relaxed),
        seen.failed.load(Relaxed) + 1,
        seen.dropped.load(Relaxed),
    );
    assert_eq!(ok + ignored + failed + dropped, issued);
    let inst = "stress/instrument";
    assert_eq!(detail(&registry, inst, "calls"), issued);
    assert_eq!(detail(&registry, inst, "in_flight"), 0);
    assert_eq!(detail(&registry, inst, "cancelled"), dropped);
    assert_eq!(detail(&registry, inst, "successes"), ok);
    assert_eq!(detail(&registry, inst, "ignored"), ignored);
    assert_eq!(detail(&registry, inst, "failures"), failed);

    let admitted: u64 = Priority::ALL.iter().map(|p| gate.admitted(*p)).sum();
    let shed: u64 = Priority::ALL.iter().map(|p| gate.shed(*p)).sum();
    assert_eq!(admitted + shed, issued);

    assert_eq!(b.calls, b.successes + b.failures + b.ignored, "{b:?}");
    let retries = detail(&registry, "stress/retry", "retries");
    let requests = detail(&registry, "stress/budget", "requests");
    // Every request into the retry layer (one deposit each) and every
    // retry reached the breaker; a dropped one may not have completed
    // there.
    let attempts = requests + retries;
    assert!(b.calls + b.rejections <= attempts, "{b:?} {attempts}");
    assert!(
        attempts <= b.calls + b.rejections + dropped,
        "{b:?} {attempts}"
    );

    // Budget: withdrawals cover the retries sent; the tokens left lie
    // between the floor plus deposits minus every withdrawal and the
    // floor plus deposits minus the retries sent (a withdrawn token whose
    // retry was dropped is refunded).
    let allowed = budget.retries_allowed();
    assert!(allowed >= retries && allowed - retries <= dropped);
    let floor = 10 * 60 * 1000;
    let tokens = budget.available();
    let low = (floor + requests * 100).saturating_sub(allowed * 1000) / 1000;
    let high = (floor + requests * 100 - retries * 1000) / 1000;
    assert!(
        (low..=high).contains(&tokens),
        "{low} <= {tokens} <= {high}"
    );

    println!(
        "stress: {TASKS} tasks, {issued} calls (ok {ok}, ignored {ignored}, failed {failed}, \
         dropped {dropped}); {probed} probes, at most {max_probes} at once ({PROBES} permitted); \
         breaker trips {}, rejections {}; gate shed {shed} over {flips} level flips; \
         bulkhead waited {}, rejected {}; retries {retries}",
        b.trips, b.rejections, load.waited, load.rejected,
    );
}
