//! Cancellation: for every layer, a response future (or a service, or a
//! `ready()` future) dropped at each point where it can wait gives back
//! everything it held: probe permits, bulkhead and limit slots and places
//! in their queues, budget tokens, gate and instrument in-flight counts,
//! the inner futures themselves (counted alive by the test backend), and
//! no attempt starts after the drop.
//!
//! The points: the inner future pending; sleeping in the retry's backoff;
//! waiting for the inner service's readiness for a retry, a hedge, a
//! fan-out backend or a fallback source; waiting for a bulkhead or limit
//! slot; waiting for the hedge delay; a response holding a breaker's
//! deferred completion. Each test reads the public state only (handles'
//! accessors, registry details) and first checks that the thing is held,
//! so that it can fail if it is not given back.
//!
//! Paused time, one test per layer and point; the whole file runs in well
//! under a second: `cargo test -p battlement-tests --test cancellation`.
//! There is no longer mode.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use battlement::prelude::{Backoff, BoxError, FailureKind, Policy, Priority};
use battlement_breaker::{Breaker, BreakerLayer, Defer, Pending};
use battlement_core::{CircuitOpen, CircuitState};
use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
use battlement_fallback::FallbackLayer;
use battlement_fanout::{FanOut, HedgeLayer, Strategy};
use battlement_gate::Gate;
use battlement_limit::{AdaptiveLimit, Bulkhead, KeyedBreaker};
use battlement_registry::Registry;
use battlement_retry::{RetryBudget, RetryLayer, RetryPolicy};
use tokio::time::{Sleep, advance};
use tower::{Layer, Service, ServiceExt};

const LONG: Duration = Duration::from_secs(100);
const SEC: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------
// The backend: answers each call after a delay from its script (or the
// default), failing or not, and counts its calls and its futures alive.

#[derive(Clone)]
struct Backend {
    script: Arc<Mutex<VecDeque<(Duration, bool)>>>,
    default: (Duration, bool),
    calls: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
}

impl Backend {
    /// Every call answers `Ok(n)` after `delay`.
    fn slow(delay: Duration) -> Self {
        Backend::scripted([], (delay, false))
    }

    /// The calls follow `script` (delay, fails), then `default`.
    fn scripted<const N: usize>(script: [(Duration, bool); N], default: (Duration, bool)) -> Self {
        Backend {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            default,
            calls: Arc::default(),
            live: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }

    fn live(&self) -> usize {
        self.live.load(SeqCst)
    }
}

struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

struct Call {
    sleep: Option<Pin<Box<Sleep>>>,
    n: u32,
    fail: bool,
    _live: Live,
}

impl Future for Call {
    type Output = Result<u32, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(sleep) = self.sleep.as_mut() {
            ready!(sleep.as_mut().poll(cx));
        }
        Poll::Ready(if self.fail {
            Err(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )))
        } else {
            Ok(self.n)
        })
    }
}

impl Service<u32> for Backend {
    type Response = u32;
    type Error = BoxError;
    type Future = Call;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Call {
        self.calls.fetch_add(1, SeqCst);
        self.live.fetch_add(1, SeqCst);
        let (delay, fail) = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(self.default);
        Call {
            sleep: (!delay.is_zero()).then(|| Box::pin(tokio::time::sleep(delay))),
            n,
            fail,
            _live: Live(self.live.clone()),
        }
    }
}

/// Polls `fut` once.
async fn poll_once<F: Future + ?Sized>(fut: &mut Pin<Box<F>>) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// Polls `fut` once and checks that it waits.
async fn pending<F: Future + ?Sized>(fut: &mut Pin<Box<F>>) {
    assert!(poll_once(fut).await.is_pending(), "expected to wait");
}

fn bulkhead(name: &str, max: u32) -> Bulkhead {
    Bulkhead::builder(name.to_owned())
        .max_concurrent(max)
        .wait(LONG, 8)
        .build()
        .unwrap()
}

/// A bulkhead of one slot, and a call holding it (keep it alive).
async fn held(bulkhead: &Bulkhead) -> Pin<Box<impl Future<Output = Result<u32, BoxError>>>> {
    let mut holder = bulkhead.layer().layer(Backend::slow(LONG));
    let mut call = Box::pin(holder.ready().await.unwrap().call(0));
    pending(&mut call).await;
    assert_eq!(bulkhead.in_flight(), 1);
    call
}

fn detail(registry: &Registry, name: &str, key: &str) -> u64 {
    let report = registry.get(name).unwrap_or_else(|| panic!("{name}"));
    report
        .details
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{name}.{key} in {:?}", report.details))
}

/// A breaker tripped by one failure, open for a second, one probe at a
/// time, closed by one success.
fn one_probe_breaker(name: &str) -> Breaker {
    Breaker::builder(name.to_owned())
        .consecutive_failures(1)
        .no_failure_rate()
        .open_duration(SEC)
        .permitted_probes(1)
        .max_concurrent_probes(1)
        .success_threshold(1)
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------
// Breaker

#[tokio::test(start_paused = true)]
async fn breaker_closed_call_dropped_while_inner_pending_records_nothing() {
    let breaker = one_probe_breaker("closed-drop");
    let backend = Backend::slow(LONG);
    let mut svc = breaker.layer().layer(backend.clone());
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    assert_eq!(backend.live(), 1);
    drop(call);
    assert_eq!(backend.live(), 0);
    let m = breaker.metrics();
    assert_eq!((m.calls, m.probes_in_flight), (0, 0), "{m:?}");
    assert_eq!(m.state, CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn breaker_probe_dropped_while_inner_pending_gives_its_permit_back() {
    let breaker = one_probe_breaker("probe-drop");
    let backend = Backend::scripted([(Duration::ZERO, true)], (LONG, false));
    let mut svc = breaker.layer().layer(backend.clone());
    assert!(svc.ready().await.unwrap().call(1).await.is_err());
    assert!(breaker.state().is_open());
    advance(SEC).await;

    let mut probe = Box::pin(svc.ready().await.unwrap().call(2));
    pending(&mut probe).await;
    assert_eq!(breaker.metrics().probes_in_flight, 1);
    // The permit is held: a second probe is refused.
    let err = svc.ready().await.unwrap().call(3).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");

    drop(probe);
    let m = breaker.metrics();
    assert_eq!(m.probes_in_flight, 0, "{m:?}");
    assert_eq!(m.calls, 1, "the dropped probe is not recorded: {m:?}");
    assert_eq!(backend.live(), 0);
    // The permit is really back: the next probe is admitted and closes.
    let mut probe = Box::pin(svc.ready().await.unwrap().call(4));
    pending(&mut probe).await;
    assert_eq!(breaker.metrics().probes_in_flight, 1);
    advance(LONG).await;
    assert_eq!(probe.await.unwrap(), 4);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().probes_in_flight, 0);
}

/// A response whose outcome its body will tell.
struct Later(Option<Pending>);

#[derive(Clone)]
struct IntoLater;

impl Defer<Later> for IntoLater {
    fn defer(&self, res: &mut Later, pending: Pending) -> Result<(), Pending> {
        res.0 = Some(pending);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn breaker_probe_response_dropped_before_its_deferred_outcome_gives_the_permit_back() {
    let breaker = one_probe_breaker("defer-drop");
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let inner = {
        let fail = fail.clone();
        tower::service_fn(move |_: u32| {
            std::future::ready(if fail.load(SeqCst) {
                Err::<Later, BoxError>("down".into())
            } else {
                Ok(Later(None))
            })
        })
    };
    let mut svc = BreakerLayer::new(breaker.clone())
        .defer_with(IntoLater)
        .layer(inner);
    assert!(svc.ready().await.unwrap().call(1).await.is_err());
    advance(SEC).await;
    fail.store(false, SeqCst);

    let res = svc.ready().await.unwrap().call(2).await.unwrap();
    assert!(res.0.as_ref().unwrap().is_probe());
    assert_eq!(breaker.metrics().probes_in_flight, 1);
    assert_ne!(breaker.state(), CircuitState::Closed);
    drop(res);
    let m = breaker.metrics();
    assert_eq!(m.probes_in_flight, 0, "{m:?}");
    assert_eq!(m.calls, 1, "{m:?}");
    // And the next probe may run.
    let res = svc.ready().await.unwrap().call(3).await.unwrap();
    assert_eq!(breaker.metrics().probes_in_flight, 1);
    res.0.unwrap().complete(battlement_core::Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn keyed_breaker_probe_dropped_while_inner_pending_gives_its_permit_back() {
    let keyed = KeyedBreaker::<u32>::builder("keyed-drop")
        .breaker(|b| {
            b.consecutive_failures(1)
                .no_failure_rate()
                .open_duration(SEC)
                .permitted_probes(1)
                .max_concurrent_probes(1)
        })
        .build()
        .unwrap();
    // Key 1 fails once; every later call is slow.
    let backend = Backend::scripted([(Duration::ZERO, true)], (LONG, false));
    let mut svc = keyed.layer(|n: &u32| n % 2).layer(backend.clone());
    assert!(svc.ready().await.unwrap().call(1).await.is_err());
    let one = keyed.get(&1).unwrap();
    assert!(one.state().is_open());
    advance(SEC).await;

    let mut probe = Box::pin(svc.ready().await.unwrap().call(3));
    pending(&mut probe).await;
    assert_eq!(one.metrics().probes_in_flight, 1);
    // Key 0 is not concerned.
    let mut other = Box::pin(svc.ready().await.unwrap().call(2));
    pending(&mut other).await;
    assert_eq!(backend.live(), 2);
    drop(probe);
    drop(other);
    assert_eq!(one.metrics().probes_in_flight, 0, "{:?}", one.metrics());
    assert_eq!(keyed.get(&0).unwrap().metrics().calls, 0);
    assert_eq!(backend.live(), 0);
    let mut probe = Box::pin(svc.ready().await.unwrap().call(5));
    pending(&mut probe).await;
    assert_eq!(one.metrics().probes_in_flight, 1, "the permit came back");
}

// ---------------------------------------------------------------------
// Retry with a budget

/// A budget with a floor of ten retries and one token per request.
fn budget(name: &str) -> RetryBudget {
    RetryBudget::builder()
        .name(name.to_owned())
        .ratio(1.0)
        .min_per_sec(1)
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn retry_layer(budget: &RetryBudget) -> RetryLayer {
    RetryLayer::new(
        RetryPolicy::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(SEC))
            .budget(budget.clone())
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn retry_dropped_while_the_first_attempt_is_pending_takes_no_token() {
    let budget = budget("first");
    assert_eq!(budget.available(), 10);
    let backend = Backend::slow(LONG);
    let mut svc = retry_layer(&budget).layer(backend.clone());
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    assert_eq!(budget.available(), 11, "the request's deposit");
    drop(call);
    assert_eq!(backend.live(), 0);
    assert_eq!(budget.available(), 11);
    assert_eq!(budget.retries_allowed(), 0);
    advance(LONG * 2).await;
    assert_eq!(backend.calls(), 1, "no attempt after the drop");
}

#[tokio::test(start_paused = true)]
async fn retry_dropped_while_sleeping_in_backoff_refunds_its_token() {
    let budget = budget("backoff");
    let backend = Backend::scripted([(Duration::ZERO, true)], (LONG, false));
    let mut svc = retry_layer(&budget).layer(backend.clone());
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    // The first attempt failed; the retry's token is taken while it waits.
    assert_eq!(backend.calls(), 1);
    assert_eq!(budget.retries_allowed(), 1);
    assert_eq!(budget.available(), 10);
    advance(SEC / 2).await;
    pending(&mut call).await;
    drop(call);
    assert_eq!(budget.available(), 11, "the token is refunded");
    advance(LONG).await;
    assert_eq!(backend.calls(), 1, "no retry after the drop");
    assert_eq!(backend.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn retry_dropped_while_waiting_for_readiness_refunds_its_token_and_its_place() {
    let budget = budget("ready");
    let pool = bulkhead("retry-ready", 1);
    let backend = Backend::scripted([(Duration::ZERO, true)], (LONG, false));
    let mut svc = retry_layer(&budget).layer(pool.layer().layer(backend.clone()));
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    assert_eq!(budget.available(), 10);
    assert_eq!(pool.in_flight(), 0, "the failed attempt gave its slot back");
    // Someone else takes the slot during the backoff: the retry waits for
    // readiness.
    let holder = held(&pool).await;
    advance(SEC).await;
    pending(&mut call).await;
    assert_eq!(pool.waiting(), 1);
    assert_eq!(backend.calls(), 1);

    drop(call);
    assert_eq!(pool.waiting(), 0, "the place in the queue is given back");
    assert_eq!(budget.available(), 10 + 1, "the token is refunded");
    drop(holder);
    assert_eq!(pool.in_flight(), 0);
    assert_eq!(backend.calls(), 1);
    assert_eq!(backend.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn retry_dropped_while_the_retry_is_pending_spends_its_token_and_its_slot_back() {
    let budget = budget("retry-pending");
    let pool = bulkhead("retry-pending", 1);
    let backend = Backend::scripted([(Duration::ZERO, true)], (LONG, false));
    let mut svc = retry_layer(&budget).layer(pool.layer().layer(backend.clone()));
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    advance(SEC).await;
    pending(&mut call).await;
    assert_eq!(backend.calls(), 2, "the retry is in flight");
    assert_eq!(pool.in_flight(), 1);
    drop(call);
    assert_eq!(pool.in_flight(), 0);
    assert_eq!(backend.live(), 0);
    // The retry was sent: its token stays spent.
    assert_eq!(budget.retries_allowed(), 1);
    assert_eq!(budget.available(), 10);
    advance(LONG).await;
    assert_eq!(backend.calls(), 2);
}

// ---------------------------------------------------------------------
// Deadline and attempt timeout

#[tokio::test(start_paused = true)]
async fn deadline_dropped_while_inner_pending_fires_nothing_and_leaves_no_scope() {
    let layer = DeadlineLayer::new(Duration::from_secs(5));
    let handle = layer.handle();
    let backend = Backend::slow(LONG);
    let mut svc = layer.layer(backend.clone());
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    assert_eq!(backend.live(), 1);
    drop(call);
    assert_eq!(backend.live(), 0);
    assert!(battlement_core::deadline::current().is_none());
    advance(LONG).await;
    assert_eq!(handle.deadline_exceeded(), 0);
    // Still usable, and its timer works.
    let mut call = Box::pin(svc.ready().await.unwrap().call(2));
    pending(&mut call).await;
    advance(Duration::from_secs(6)).await;
    assert!(call.await.is_err());
    assert_eq!(handle.deadline_exceeded(), 1);
    assert_eq!(backend.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_dropped_while_inner_pending_fires_nothing() {
    let layer = AttemptTimeoutLayer::new(Duration::from_secs(5));
    let handle = layer.handle();
    let backend = Backend::slow(LONG);
    let mut svc = layer.layer(backend.clone());
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    drop(call);
    assert_eq!(backend.live(), 0);
    advance(LONG).await;
    assert_eq!(handle.attempts_timed_out(), 0);
    let mut call = Box::pin(svc.ready().await.unwrap().call(2));
    pending(&mut call).await;
    advance(Duration::from_secs(6)).await;
    assert!(call.await.is_err());
    assert_eq!(handle.attempts_timed_out(), 1);
}

// ---------------------------------------------------------------------
// Fallback

#[tokio::test(start_paused = true)]
async fn fallback_dropped_while_the_primary_is_pending_triggers_nothing() {
    let layer = FallbackLayer::<u32, u32>::builder("fb-primary")
        .value(0)
        .build()
        .unwrap();
    let backend = Backend::slow(LONG);
    let mut svc = layer.layer(backend.clone());
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    drop(call);
    assert_eq!(backend.live(), 0);
    advance(LONG * 2).await;
    assert_eq!(layer.activations(), 0);
}

#[tokio::test(start_paused = true)]
async fn fallback_dropped_while_its_source_is_pending_gives_the_sources_slot_back() {
    let pool = bulkhead("fb-source", 1);
    let source = Backend::slow(LONG);
    let layer = FallbackLayer::<u32, u32>::builder("fb-source")
        .service("secondary", pool.layer().layer(source.clone()))
        .build()
        .unwrap();
    let primary = Backend::scripted([], (Duration::ZERO, true));
    let mut svc = layer.layer(primary);
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    let triggered = |layer: &FallbackLayer<u32, u32>| {
        layer
            .health()
            .details
            .get("triggered")
            .and_then(serde_json::Value::as_u64)
    };
    assert_eq!(triggered(&layer), Some(1));
    assert_eq!((pool.in_flight(), source.live()), (1, 1));
    drop(call);
    assert_eq!((pool.in_flight(), source.live()), (0, 0));
    assert_eq!(layer.activations(), 0, "nothing served");
}

#[tokio::test(start_paused = true)]
async fn fallback_dropped_while_its_source_waits_for_readiness_gives_the_place_back() {
    let pool = bulkhead("fb-ready", 1);
    let source = Backend::slow(LONG);
    let layer = FallbackLayer::<u32, u32>::builder("fb-ready")
        .service("secondary", pool.layer().layer(source.clone()))
        .build()
        .unwrap();
    let holder = held(&pool).await;
    let mut svc = layer.layer(Backend::scripted([], (Duration::ZERO, true)));
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    assert_eq!(pool.waiting(), 1);
    drop(call);
    assert_eq!(pool.waiting(), 0);
    assert_eq!(source.calls(), 0);
    drop(holder);
    assert_eq!(pool.in_flight(), 0);
}

// ---------------------------------------------------------------------
// Gate

#[tokio::test(start_paused = true)]
async fn gate_dropped_while_inner_pending_leaves_its_in_flight_count() {
    let gate = Gate::new("gate-drop");
    // The gate counts calls in flight once a signal needs them.
    let _signal = gate.in_flight_signal();
    let backend = Backend::slow(LONG);
    let mut svc = gate
        .layer()
        .priority_fn(|_: &u32| None)
        .layer(backend.clone());
    let mut calls: Vec<_> = Vec::new();
    for n in 0..3 {
        let mut call = Box::pin(svc.ready().await.unwrap().call(n));
        pending(&mut call).await;
        calls.push(call);
    }
    assert_eq!(gate.in_flight(), 3);
    calls.clear();
    assert_eq!(gate.in_flight(), 0);
    assert_eq!(gate.admitted(Priority::Normal), 3);
    assert_eq!(backend.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn gate_over_a_full_bulkhead_dropped_while_waiting_for_readiness_holds_nothing() {
    let gate = Gate::new("gate-ready");
    let _signal = gate.in_flight_signal();
    let pool = bulkhead("gate-ready", 1);
    let holder = held(&pool).await;
    let backend = Backend::slow(LONG);
    let svc = gate
        .layer()
        .priority_fn(|_: &u32| None)
        .layer(pool.layer().layer(backend.clone()));
    let mut call = Box::pin(svc.oneshot(1));
    pending(&mut call).await;
    assert_eq!(pool.waiting(), 1);
    drop(call);
    assert_eq!((pool.waiting(), gate.in_flight()), (0, 0));
    drop(holder);
    assert_eq!(pool.in_flight(), 0);
    assert_eq!(backend.calls(), 0);
}

// ---------------------------------------------------------------------
// Bulkhead

#[tokio::test(start_paused = true)]
async fn bulkhead_call_dropped_in_flight_gives_its_slot_to_the_next() {
    let pool = bulkhead("bh-flight", 1);
    let backend = Backend::slow(LONG);
    let mut svc = pool.layer().layer(backend.clone());
    let mut first = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut first).await;
    let mut second = Box::pin(svc.clone().oneshot(2));
    pending(&mut second).await;
    assert_eq!((pool.in_flight(), pool.waiting()), (1, 1));
    drop(first);
    // The slot passes to the waiter, which then calls.
    pending(&mut second).await;
    assert_eq!((pool.in_flight(), pool.waiting()), (1, 0));
    assert_eq!((backend.calls(), backend.live()), (2, 1));
    drop(second);
    assert_eq!(pool.in_flight(), 0);
    assert_eq!(backend.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn bulkhead_waiter_dropped_gives_its_place_back() {
    let pool = bulkhead("bh-wait", 1);
    let holder = held(&pool).await;
    let svc = pool.layer().layer(Backend::slow(LONG));
    let mut waiter = Box::pin(svc.oneshot(1));
    pending(&mut waiter).await;
    assert_eq!(pool.waiting(), 1);
    drop(waiter);
    assert_eq!(pool.waiting(), 0);
    drop(holder);
    assert_eq!(pool.in_flight(), 0);
    assert_eq!(pool.metrics().timed_out, 0);
}

#[tokio::test(start_paused = true)]
async fn bulkhead_waiter_granted_a_slot_then_dropped_passes_it_on() {
    let pool = bulkhead("bh-granted", 1);
    let holder = held(&pool).await;
    let backend = Backend::slow(LONG);
    let svc = pool.layer().layer(backend.clone());
    let mut b = Box::pin(svc.clone().oneshot(1));
    let mut c = Box::pin(svc.clone().oneshot(2));
    pending(&mut b).await;
    pending(&mut c).await;
    assert_eq!(pool.waiting(), 2);
    // The holder ends: the slot is granted to `b` (still counted in
    // flight), which is dropped before it is polled again.
    drop(holder);
    assert_eq!(pool.in_flight(), 1);
    drop(b);
    pending(&mut c).await;
    assert_eq!((pool.in_flight(), pool.waiting()), (1, 0));
    assert_eq!(backend.calls(), 1, "`c` called");
    drop(c);
    assert_eq!((pool.in_flight(), pool.waiting()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn bulkhead_service_dropped_holding_a_slot_for_its_next_call_gives_it_back() {
    let pool = bulkhead("bh-ready", 2);
    let mut svc = pool.layer().layer(Backend::slow(LONG));
    svc.ready().await.unwrap();
    assert_eq!(pool.in_flight(), 1, "readiness holds a slot");
    // A clone does not copy it.
    let clone = svc.clone();
    assert_eq!(pool.in_flight(), 1);
    drop(svc);
    assert_eq!(pool.in_flight(), 0);
    drop(clone);
    assert_eq!(pool.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn bulkhead_ready_future_dropped_mid_wait_leaves_the_place_with_its_service() {
    let pool = bulkhead("bh-ready-wait", 1);
    let holder = held(&pool).await;
    let mut svc = pool.layer().layer(Backend::slow(LONG));
    {
        let mut ready = Box::pin(svc.ready());
        pending(&mut ready).await;
    }
    // As documented: the place stays with the service until it is
    // dropped (or polled past max_wait).
    assert_eq!(pool.waiting(), 1);
    drop(svc);
    assert_eq!(pool.waiting(), 0);
    drop(holder);
    assert_eq!(pool.in_flight(), 0);
}

// ---------------------------------------------------------------------
// Adaptive limit

fn limiter(name: &str) -> AdaptiveLimit {
    AdaptiveLimit::builder(name.to_owned())
        .initial_limit(1)
        .min_limit(1)
        .max_limit(1)
        .wait(LONG, 8)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn adaptive_limit_call_dropped_in_flight_gives_its_slot_back() {
    let limit = limiter("al-flight");
    let backend = Backend::slow(LONG);
    let mut svc = limit.layer().layer(backend.clone());
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    assert_eq!(limit.in_flight(), 1);
    drop(call);
    assert_eq!(limit.in_flight(), 0);
    assert_eq!(backend.live(), 0);
    // The slot is free for the next.
    let mut call = Box::pin(svc.ready().await.unwrap().call(2));
    pending(&mut call).await;
    assert_eq!(limit.in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn adaptive_limit_waiter_dropped_gives_its_place_back() {
    let limit = limiter("al-wait");
    let backend = Backend::slow(LONG);
    let mut svc = limit.layer().layer(backend.clone());
    let mut first = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut first).await;
    let mut waiter = Box::pin(svc.clone().oneshot(2));
    pending(&mut waiter).await;
    assert_eq!(limit.waiting(), 1);
    drop(waiter);
    assert_eq!(limit.waiting(), 0);
    drop(first);
    assert_eq!(limit.in_flight(), 0);
    assert_eq!(backend.calls(), 1);
    let m = limit.metrics();
    assert_eq!((m.rejected, m.timed_out), (0, 0), "{m:?}");
}

// ---------------------------------------------------------------------
// Fan-out and hedge

#[tokio::test(start_paused = true)]
async fn fanout_dropped_while_backends_are_pending_drops_every_call() {
    let (pa, pb) = (bulkhead("fo-a", 4), bulkhead("fo-b", 4));
    let (a, b) = (Backend::slow(LONG), Backend::slow(LONG));
    let mut fan = FanOut::builder("fo-pending")
        .backend("a", pa.layer().layer(a.clone()))
        .backend("b", pb.layer().layer(b.clone()))
        .strategy(Strategy::All)
        .build()
        .unwrap();
    let mut call = Box::pin(fan.ready().await.unwrap().call(1));
    pending(&mut call).await;
    assert_eq!((a.live(), b.live()), (1, 1));
    assert_eq!((pa.in_flight(), pb.in_flight()), (1, 1));
    drop(call);
    assert_eq!((a.live(), b.live()), (0, 0));
    assert_eq!((pa.in_flight(), pb.in_flight()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn fanout_first_success_drops_the_others_probe_and_its_permit() {
    let (ba, bb) = (one_probe_breaker("fo-ba"), one_probe_breaker("fo-bb"));
    let a = Backend::slow(Duration::ZERO);
    let b = Backend::scripted([(Duration::ZERO, true)], (LONG, false));
    let sa = ba.layer().layer(a.clone());
    let mut sb = bb.layer().layer(b.clone());
    assert!(sb.ready().await.unwrap().call(0).await.is_err());
    advance(SEC).await;
    let mut fan = FanOut::builder("fo-first")
        .backend("a", sa)
        .backend("b", sb)
        .strategy(Strategy::FirstSuccess)
        .build()
        .unwrap();
    let handle = fan.handle();
    let answer = fan.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(answer.success_count(), 1);
    assert_eq!(b.calls(), 2, "b's probe was sent");
    assert_eq!(b.live(), 0, "and dropped");
    let m = bb.metrics();
    assert_eq!(m.probes_in_flight, 0, "{m:?}");
    assert_eq!(handle.backend("b").unwrap().abandoned, 1);
}

#[tokio::test(start_paused = true)]
async fn fanout_dropped_while_a_backend_waits_for_readiness_gives_the_place_back() {
    let (pa, pb) = (bulkhead("fo-ready-a", 4), bulkhead("fo-ready-b", 1));
    let holder = held(&pb).await;
    let (a, b) = (Backend::slow(LONG), Backend::slow(LONG));
    let mut fan = FanOut::builder("fo-ready")
        .backend("a", pa.layer().layer(a.clone()))
        .backend("b", pb.layer().layer(b.clone()))
        .strategy(Strategy::All)
        .build()
        .unwrap();
    let mut call = Box::pin(fan.ready().await.unwrap().call(1));
    pending(&mut call).await;
    assert_eq!(a.live(), 1);
    // The fan-out's own `b` waits (its poll_ready), and so does the clone
    // driven inside the call.
    let waiting = pb.waiting();
    assert!((1..=2).contains(&waiting), "{waiting}");
    drop(call);
    assert_eq!((a.live(), pa.in_flight()), (0, 0));
    assert!(pb.waiting() < waiting, "the call's place is given back");
    drop(fan);
    assert_eq!(pb.waiting(), 0);
    drop(holder);
    assert_eq!(pb.in_flight(), 0);
    assert_eq!(b.calls(), 0);
}

fn hedge(name: &str) -> HedgeLayer {
    HedgeLayer::builder(name.to_owned())
        .delay(SEC)
        .max_hedges(1)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn hedge_dropped_while_waiting_for_the_hedge_delay_sends_no_backup() {
    let layer = hedge("hedge-delay");
    let handle = layer.handle();
    let pool = bulkhead("hedge-delay", 4);
    let backend = Backend::slow(LONG);
    let mut svc = layer.layer(pool.layer().layer(backend.clone()));
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    assert_eq!(pool.in_flight(), 1);
    drop(call);
    assert_eq!((pool.in_flight(), backend.live()), (0, 0));
    advance(LONG).await;
    assert_eq!(backend.calls(), 1);
    assert_eq!(handle.hedges_sent(), 0);
}

#[tokio::test(start_paused = true)]
async fn hedge_dropped_with_primary_and_backup_in_flight_drops_both() {
    let layer = hedge("hedge-both");
    let handle = layer.handle();
    let pool = bulkhead("hedge-both", 4);
    let backend = Backend::slow(LONG);
    let mut svc = layer.layer(pool.layer().layer(backend.clone()));
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    advance(SEC).await;
    pending(&mut call).await;
    assert_eq!(handle.hedges_sent(), 1);
    assert_eq!((pool.in_flight(), backend.live()), (2, 2));
    drop(call);
    assert_eq!((pool.in_flight(), backend.live()), (0, 0));
    advance(LONG).await;
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn hedge_dropped_while_the_backup_waits_for_readiness_gives_the_place_back() {
    let layer = hedge("hedge-ready");
    let handle = layer.handle();
    let pool = bulkhead("hedge-ready", 1);
    let backend = Backend::slow(LONG);
    let mut svc = layer.layer(pool.layer().layer(backend.clone()));
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    advance(SEC).await;
    pending(&mut call).await;
    // The primary holds the only slot: the backup's clone waits for one.
    assert_eq!((pool.in_flight(), pool.waiting()), (1, 1));
    assert_eq!(handle.hedges_sent(), 0);
    drop(call);
    assert_eq!((pool.in_flight(), pool.waiting()), (0, 0));
    assert_eq!(backend.live(), 0);
    assert_eq!(backend.calls(), 1);
}

// ---------------------------------------------------------------------
// Instrument (registry)

#[tokio::test(start_paused = true)]
async fn instrument_dropped_while_inner_pending_counts_a_cancellation() {
    let registry = Registry::new();
    let backend = Backend::slow(LONG);
    let mut svc = registry.layer("inst").unwrap().layer(backend.clone());
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    assert_eq!(detail(&registry, "inst", "in_flight"), 1);
    drop(call);
    assert_eq!(detail(&registry, "inst", "in_flight"), 0);
    assert_eq!(detail(&registry, "inst", "cancelled"), 1);
    assert_eq!(detail(&registry, "inst", "calls"), 1);
    for key in ["successes", "failures", "ignored"] {
        assert_eq!(detail(&registry, "inst", key), 0, "{key}");
    }
    assert_eq!(backend.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn instrument_over_a_full_bulkhead_dropped_while_waiting_counts_nothing_in_flight() {
    let registry = Registry::new();
    let pool = bulkhead("inst-ready", 1);
    let holder = held(&pool).await;
    let svc = registry
        .layer("inst-ready")
        .unwrap()
        .layer(pool.layer().layer(Backend::slow(LONG)));
    // (The registry holds the instrument weakly: keep a service.)
    let mut call = Box::pin(svc.clone().oneshot(1));
    pending(&mut call).await;
    assert_eq!(pool.waiting(), 1);
    drop(call);
    assert_eq!(pool.waiting(), 0);
    assert_eq!(detail(&registry, "inst-ready", "in_flight"), 0);
    let calls = detail(&registry, "inst-ready", "calls");
    assert_eq!(detail(&registry, "inst-ready", "cancelled"), calls);
    drop(holder);
}

// ---------------------------------------------------------------------
// The whole stack, built by `Policy`

struct Stack<S> {
    registry: Registry,
    svc: S,
    backend: Backend,
    breaker: Breaker,
    policy: String,
    _in_flight: battlement_gate::InFlight,
}

fn stack(
    name: &str,
    backend: Backend,
) -> Stack<impl Service<u32, Response = u32, Error = BoxError> + Clone> {
    let registry = Registry::new();
    let policy = Policy::builder(name.to_owned())
        .registry(&registry)
        .total(Duration::from_secs(60))
        .attempt_timeout(Duration::from_secs(10))
        .retry(|r| r.max_attempts(3).backoff(Backoff::constant(SEC)))
        .budget(|b| b.ratio(1.0).min_per_sec(1).ttl(Duration::from_secs(10)))
        .breaker(|b| {
            b.consecutive_failures(100)
                .no_failure_rate()
                .max_concurrent_probes(1)
        })
        .bulkhead(|b| b.max_concurrent(1).wait(LONG, 8))
        .gate(|g| g)
        .priority(|_: &u32| Some(Priority::Normal))
        .fallback(|f| f.value(0).trigger_on_kinds([FailureKind::Rejected]))
        .build()
        .unwrap();
    // The gate counts calls in flight once a signal needs them.
    let in_flight = policy.gate().unwrap().in_flight_signal();
    let breaker = policy.breaker().unwrap().clone();
    let svc = policy.layer(backend.clone());
    Stack {
        registry,
        svc,
        backend,
        breaker,
        policy: name.to_owned(),
        _in_flight: in_flight,
    }
}

impl<S> Stack<S> {
    fn get(&self, part: &str, key: &str) -> u64 {
        detail(&self.registry, &format!("{}/{part}", self.policy), key)
    }

    /// Nothing held anywhere in the stack.
    fn at_rest(&self) {
        assert_eq!(self.get("instrument", "in_flight"), 0);
        assert_eq!(self.get("gate", "in_flight"), 0);
        assert_eq!(self.get("bulkhead", "in_flight"), 0);
        assert_eq!(self.get("bulkhead", "waiting"), 0);
        let m = self.breaker.metrics();
        assert_eq!(m.probes_in_flight, 0, "{m:?}");
        assert_eq!(self.backend.live(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn policy_dropped_while_the_attempt_is_pending_releases_everything() {
    let s = stack("p-pending", Backend::slow(LONG));
    let mut svc = s.svc.clone();
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    assert_eq!(s.get("instrument", "in_flight"), 1);
    assert_eq!(s.get("gate", "in_flight"), 1);
    assert_eq!(s.get("bulkhead", "in_flight"), 1);
    drop(call);
    drop(svc);
    s.at_rest();
    assert_eq!(s.get("instrument", "cancelled"), 1);
    assert_eq!(s.get("breaker", "calls"), 0);
    advance(LONG * 2).await;
    assert_eq!(s.get("deadline", "deadline_exceeded"), 0);
    assert_eq!(s.get("attempt_timeout", "attempts_timed_out"), 0);
    assert_eq!(s.backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn policy_dropped_while_sleeping_in_backoff_releases_everything_and_refunds() {
    let s = stack(
        "p-backoff",
        Backend::scripted([(Duration::ZERO, true)], (LONG, false)),
    );
    let tokens = s.get("budget", "tokens");
    let mut svc = s.svc.clone();
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    pending(&mut call).await;
    assert_eq!(s.backend.calls(), 1);
    assert_eq!(s.get("budget", "retries_allowed"), 1);
    // One deposit in, one token out.
    assert_eq!(s.get("budget", "tokens"), tokens);
    // The retries of one request keep its bulkhead slot.
    assert_eq!(s.get("bulkhead", "in_flight"), 1);
    assert_eq!(s.get("gate", "in_flight"), 1);
    drop(call);
    drop(svc);
    s.at_rest();
    assert_eq!(s.get("budget", "tokens"), tokens + 1, "refunded");
    advance(LONG).await;
    assert_eq!(s.backend.calls(), 1, "no retry after the drop");
    assert_eq!(s.get("instrument", "cancelled"), 1);
}

#[tokio::test(start_paused = true)]
async fn policy_dropped_while_waiting_for_a_bulkhead_slot_releases_everything() {
    let s = stack("p-slot", Backend::slow(LONG));
    let mut first = Box::pin(s.svc.clone().oneshot(1));
    pending(&mut first).await;
    let mut second = Box::pin(s.svc.clone().oneshot(2));
    pending(&mut second).await;
    assert_eq!(s.get("bulkhead", "waiting"), 1);
    drop(second);
    assert_eq!(s.get("bulkhead", "waiting"), 0);
    assert_eq!(s.get("instrument", "in_flight"), 1);
    drop(first);
    s.at_rest();
    assert_eq!(s.backend.calls(), 1);
    advance(LONG * 2).await;
    assert_eq!(s.get("deadline", "deadline_exceeded"), 0);
}
