//! Tests written for the mutants of `src/slots.rs`, `src/algorithm.rs` and
//! `src/keyed.rs` that the other tests missed (see
//! `docs/reliability/mutants/limit.md`): deterministic, on paused tokio
//! time, through the public API only.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use battlement_core::{
    AsComponent, BoxError, BulkheadFull, CircuitState, HealthStatus, LimitExceeded,
};
use battlement_limit::{
    AdaptiveLimit, Aimd, Bulkhead, BulkheadService, KeyedBreaker, Sample, Vegas,
};
use tokio::time::{advance, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};

mod common;
use common::{backend, poll_once};

/// `Slots::set_limit`: a raise that no release follows (a reset back to a
/// higher initial limit) hands the new slots to the waiters at once. A
/// raise by a closing window is always followed by that call's release,
/// whose own hand-over hides a missing one in `set_limit`.
#[tokio::test(start_paused = true)]
async fn a_reset_that_raises_the_limit_hands_the_new_slot_to_a_waiter_at_once() {
    let limiter = AdaptiveLimit::builder("reset")
        .algorithm(Aimd::new().timeout(Duration::from_millis(100)))
        .initial_limit(4)
        .min_limit(1)
        .max_limit(10)
        .window(Duration::from_millis(10), 1)
        .wait(Duration::from_secs(1), 4)
        .build()
        .unwrap();
    let layer = limiter.layer();
    // One dropped call closes the first window: 4 × 0.9 = 3.6.
    assert!(layer.layer(backend()).oneshot((20, true)).await.is_err());
    assert_eq!(limiter.limit(), 3);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut call = Box::pin(layer.layer(backend()).oneshot((1000, false)));
        assert!(poll_once(&mut call).await.is_pending());
        held.push(call);
    }
    let mut waiter = Box::pin(layer.layer(backend()).oneshot((1000, false)));
    assert!(poll_once(&mut waiter).await.is_pending());
    assert_eq!((limiter.in_flight(), limiter.waiting()), (3, 1));
    limiter.reset();
    assert_eq!(limiter.limit(), 4);
    // Granted in the reset itself, before any call ends.
    assert_eq!((limiter.in_flight(), limiter.waiting()), (4, 0));
    assert!(poll_once(&mut waiter).await.is_pending(), "now in its call");
    assert_eq!(limiter.metrics().admitted, 5);
}

/// `Slots::enqueue` (`in_flight < limit`): with more calls in flight than a
/// limit that just fell, a new caller waits. Every older test lowered the
/// limit only to where the calls in flight were at most as many.
#[tokio::test(start_paused = true)]
async fn a_caller_waits_while_more_calls_are_in_flight_than_a_fallen_limit() {
    let limiter = AdaptiveLimit::builder("fallen")
        .algorithm(
            Aimd::new()
                .backoff_ratio(0.5)
                .timeout(Duration::from_millis(100)),
        )
        .initial_limit(4)
        .min_limit(1)
        .max_limit(10)
        .window(Duration::from_millis(10), 1)
        .wait(Duration::from_secs(1), 4)
        .build()
        .unwrap();
    let layer = limiter.layer();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut call = Box::pin(layer.layer(backend()).oneshot((1000, false)));
        assert!(poll_once(&mut call).await.is_pending());
        held.push(call);
    }
    // The fourth call is dropped and closes the window: 4 × 0.5 = 2, with
    // three calls still in flight.
    assert!(layer.layer(backend()).oneshot((20, true)).await.is_err());
    assert_eq!((limiter.limit(), limiter.in_flight()), (2, 3));
    let mut newcomer = Box::pin(layer.layer(backend()).oneshot((1, false)));
    assert!(poll_once(&mut newcomer).await.is_pending());
    assert_eq!((limiter.in_flight(), limiter.waiting()), (3, 1));
    assert_eq!(limiter.metrics().admitted, 4);
}

/// A service over an inner one that is always ready: call 0 never ends,
/// any other answers its own number.
fn echo() -> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone + Send {
    service_fn(|n: u32| async move {
        if n == 0 {
            std::future::pending::<()>().await;
        }
        Ok::<_, Infallible>(n)
    })
}

fn bulkhead(max: u32, wait: Option<(u64, u32)>) -> Bulkhead {
    let mut b = Bulkhead::builder("pool").max_concurrent(max);
    if let Some((ms, n)) = wait {
        b = b.wait(Duration::from_millis(ms), n);
    }
    b.build().unwrap()
}

/// Counts its wakes.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// `Slots::poll_granted`: a waiter polled again with another waker (it
/// moved to another task) is woken through the new one when granted.
#[tokio::test(start_paused = true)]
async fn a_waiter_polled_with_a_new_waker_is_woken_through_it() {
    let b = bulkhead(1, Some((1000, 1)));
    let mut holder = b.layer().layer(echo());
    let held = holder.ready().await.unwrap().call(0);
    let mut waiter = b.layer().layer(echo());
    let (first, second) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
    let (first_waker, second_waker) = (Waker::from(first.clone()), Waker::from(second.clone()));
    assert!(
        waiter
            .poll_ready(&mut Context::from_waker(&first_waker))
            .is_pending()
    );
    assert!(
        waiter
            .poll_ready(&mut Context::from_waker(&second_waker))
            .is_pending()
    );
    drop(held);
    assert_eq!(first.0.load(Ordering::SeqCst), 0);
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
    assert!(
        waiter
            .poll_ready(&mut Context::from_waker(&second_waker))
            .is_ready()
    );
    assert_eq!(waiter.call(7).await.unwrap(), 7);
}

/// `Ticket::cancel`: a caller that calls while still waiting (its
/// `poll_ready` was pending), after a slot was granted to it meanwhile,
/// gets that slot.
#[tokio::test(start_paused = true)]
async fn a_call_made_while_waiting_takes_the_slot_granted_meanwhile() {
    let b = bulkhead(1, Some((1000, 1)));
    let mut holder = b.layer().layer(echo());
    let held = holder.ready().await.unwrap().call(0);
    let mut waiter = b.layer().layer(echo());
    let waker = Waker::from(Arc::new(Counter::default()));
    assert!(
        waiter
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending()
    );
    drop(held);
    assert_eq!((b.in_flight(), b.waiting()), (1, 0), "granted");
    assert_eq!(waiter.call(3).await.unwrap(), 3);
    assert_eq!(b.in_flight(), 0);
    let m = b.metrics();
    assert_eq!((m.admitted, m.rejected), (2, 0));
}

/// `Admission::take_slow` (`State::Idle if slots.try_acquire()`): a call
/// without `poll_ready` takes a free slot, and is refused when there is
/// none.
#[tokio::test(start_paused = true)]
async fn a_call_without_poll_ready_takes_a_free_slot_or_is_refused() {
    let b = bulkhead(1, None);
    let mut svc = b.layer().layer(echo());
    assert_eq!(svc.call(1).await.unwrap(), 1);
    assert_eq!(b.metrics().admitted, 1);
    let held = svc.call(0);
    assert_eq!(b.in_flight(), 1);
    let err = svc.call(2).await.unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
    assert_eq!(b.in_flight(), 1);
    drop(held);
    assert_eq!(b.in_flight(), 0);
    let m = b.metrics();
    assert_eq!((m.admitted, m.rejected), (2, 1));
}

/// `pool_health`: saturated with nobody waiting is `Degraded` too, and
/// `max_wait_ms` is the wait in milliseconds.
#[tokio::test(start_paused = true)]
async fn the_health_is_degraded_when_saturated_and_shows_the_wait_in_ms() {
    let b = bulkhead(1, Some((250, 2)));
    let health = b.as_component().health();
    assert_eq!(health.status, HealthStatus::Healthy);
    assert_eq!(health.details["max_wait_ms"], 250.0);
    assert_eq!(health.details["max_waiting"], 2);
    let mut svc = b.layer().layer(echo());
    let held = svc.ready().await.unwrap().call(0);
    let health = b.as_component().health();
    assert_eq!((b.in_flight(), b.waiting()), (1, 0));
    assert_eq!(health.status, HealthStatus::Degraded);
    drop(held);
    assert_eq!(b.as_component().health().status, HealthStatus::Healthy);
}

/// `Admission`'s `Debug`, in a service's: the slot held for the next call.
#[tokio::test(start_paused = true)]
async fn a_service_debug_shows_its_admission() {
    let b = bulkhead(1, None);
    let mut svc = b.layer().layer(tower::service_fn(
        |n: u32| async move { Ok::<_, Infallible>(n) },
    ));
    let debug = |svc: &BulkheadService<_>| format!("{svc:?}");
    assert!(
        debug(&svc).contains(r#"Admission { state: "idle" }"#),
        "{}",
        debug(&svc)
    );
    svc.ready().await.unwrap();
    assert!(
        debug(&svc).contains(r#"Admission { state: "permitted" }"#),
        "{}",
        debug(&svc)
    );
}

// --- src/algorithm.rs ---

/// `Aimd::next` at its two boundaries: a mean latency of exactly the
/// timeout is not a drop, and a window that used exactly half the limit
/// grows it while one below half leaves it.
#[test]
fn aimd_boundaries_the_timeout_itself_and_half_the_limit() {
    let aimd = Aimd::new().timeout(Duration::from_millis(100));
    let at_timeout = Sample::new(Duration::from_millis(100), 10, false);
    assert_eq!(aimd.next(10.0, &at_timeout), 11.0);
    let past = Sample::new(Duration::from_millis(101), 10, false);
    assert_eq!(aimd.next(10.0, &past), 9.0);
    let ms = Duration::from_millis(10);
    // 1 × 2 < 3: the client is the bound.
    assert_eq!(aimd.next(3.0, &Sample::new(ms, 1, false)), 3.0);
    // 2 × 2 >= 4: exactly half.
    assert_eq!(aimd.next(4.0, &Sample::new(ms, 2, false)), 5.0);
}

/// One window of `n` calls of `us` microseconds each, all started at
/// once (tokio's timer rounds `us` up to whole milliseconds): with
/// `min_samples` = `n` (and a window shorter than the calls)
/// the last completion closes the window, so the limiter sees one sample
/// of mean latency `us` with `n` calls in flight. Returns the calls
/// refused.
async fn window(limiter: &AdaptiveLimit, n: usize, us: u64) -> usize {
    let layer = limiter.layer();
    let windows = limiter.windows();
    let call = service_fn(move |()| async move {
        sleep(Duration::from_micros(us)).await;
        Ok::<_, BoxError>(())
    });
    let calls = (0..n).map(|_| layer.layer(call).oneshot(()));
    let refused = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .filter(|r| r.as_ref().is_err_and(|e| e.is::<LimitExceeded>()))
        .count();
    assert_eq!(
        limiter.windows(),
        windows + 1,
        "one window per call of window()"
    );
    refused
}

fn vegas(vegas: Vegas, initial: u32, min_samples: u32) -> AdaptiveLimit {
    AdaptiveLimit::builder("vegas")
        .algorithm(vegas)
        .initial_limit(initial)
        .min_limit(1)
        .max_limit(1000)
        .window(Duration::from_millis(5), min_samples)
        .build()
        .unwrap()
}

/// `log10`: from a limit of 100 up, Vegas steps by `⌊log10 L⌋` = 2, not 1:
/// no queue at 100 grows it by 6 × 2, a queue of 4 (below α = 3 × 2) by
/// 2, and a queue of 8 (not above β = 6 × 2) leaves it.
#[tokio::test(start_paused = true)]
async fn vegas_steps_by_two_from_a_limit_of_a_hundred() {
    let limiter = vegas(Vegas::new(), 100, 70);
    assert_eq!(window(&limiter, 70, 100_000).await, 0);
    assert_eq!(limiter.limit(), 112);
    // 112 × (1 − 100 / 103) = 3.26: a queue of 4.
    assert_eq!(window(&limiter, 70, 103_000).await, 0);
    assert_eq!(limiter.limit(), 114);
    // 114 × (1 − 100 / 107) = 7.46: a queue of 8, between α (6) and β (12).
    assert_eq!(window(&limiter, 70, 107_000).await, 0);
    assert_eq!(limiter.limit(), 114);
}

/// `vegas`: a queue of 2 (above log = 1, below α = 3) grows the limit by
/// one.
#[tokio::test(start_paused = true)]
async fn vegas_grows_by_one_on_a_small_queue() {
    let limiter = vegas(Vegas::new(), 20, 16);
    assert_eq!(window(&limiter, 16, 100_000).await, 0);
    assert_eq!(limiter.limit(), 26);
    // 26 × (1 − 100 / 106) = 1.47: a queue of 2.
    assert_eq!(window(&limiter, 16, 106_000).await, 0);
    assert_eq!(limiter.limit(), 27);
}

/// The lowest latency Vegas measures against, from the health report.
fn rtt_noload_ms(limiter: &AdaptiveLimit) -> f64 {
    let health = limiter.as_component().health();
    health.details["rtt_noload_ms"].as_f64().unwrap()
}

/// `vegas` (`max_in_flight × 2 < limit`): a window that used exactly half
/// the limit is judged (no queue: + 6), one below half leaves the limit.
#[tokio::test(start_paused = true)]
async fn vegas_judges_a_window_from_half_the_limit_up() {
    let half = vegas(Vegas::new(), 20, 10);
    assert_eq!(window(&half, 10, 10_000).await, 0);
    assert_eq!(half.limit(), 26);
    let below = vegas(Vegas::new(), 20, 9);
    assert_eq!(window(&below, 9, 10_000).await, 0);
    assert_eq!(below.limit(), 20, "the client is the bound");
    assert_eq!(rtt_noload_ms(&below), 10.0, "still measured");
}

/// `vegas` at its queue boundaries (log = 1 below a limit of 100): a queue
/// of exactly 3 (α) or 6 (β) leaves the limit, 7 lowers it by one.
#[tokio::test(start_paused = true)]
async fn vegas_leaves_the_limit_at_a_queue_of_exactly_alpha_or_beta() {
    let limiter = vegas(Vegas::new(), 20, 16);
    assert_eq!(window(&limiter, 16, 100_000).await, 0);
    assert_eq!(limiter.limit(), 26, "no queue: + 6");
    // 26 × (1 − 100 / 110) = 2.36: a queue of 3.
    assert_eq!(window(&limiter, 16, 110_000).await, 0);
    assert_eq!(limiter.limit(), 26);
    // 26 × (1 − 100 / 125) = 5.2: a queue of 6.
    assert_eq!(window(&limiter, 16, 125_000).await, 0);
    assert_eq!(limiter.limit(), 26);
    // 26 × (1 − 100 / 135) = 6.74: a queue of 7.
    assert_eq!(window(&limiter, 16, 135_000).await, 0);
    assert_eq!(limiter.limit(), 25);
    assert_eq!(rtt_noload_ms(&limiter), 100.0);
}

/// `vegas` (`Some(n) if n <= rtt`): a window faster than the lowest
/// latency so far lowers it, and the next windows measure their queue
/// against the new one.
#[tokio::test(start_paused = true)]
async fn vegas_lowers_its_no_load_latency_on_a_faster_window() {
    let limiter = vegas(Vegas::new(), 20, 16);
    assert_eq!(window(&limiter, 16, 20_000).await, 0);
    assert_eq!((limiter.limit(), rtt_noload_ms(&limiter)), (26, 20.0));
    assert_eq!(window(&limiter, 16, 10_000).await, 0);
    assert_eq!((limiter.limit(), rtt_noload_ms(&limiter)), (32, 10.0));
    // 32 × (1 − 10 / 20) = 16 > β: down by one.
    assert_eq!(window(&limiter, 16, 20_000).await, 0);
    assert_eq!(limiter.limit(), 31);
}

// --- src/keyed.rs ---

fn keyed(max_keys: usize, idle_secs: u64) -> KeyedBreaker<u32> {
    KeyedBreaker::builder("hosts")
        .max_keys(max_keys)
        .idle_timeout(Duration::from_secs(idle_secs))
        .build()
        .unwrap()
}

/// `KeyedShared::insert` (`len >= max_keys || now - last_sweep >= idle / 2`):
/// a new key sweeps only when a sweep is due, half the idle timeout after
/// the last one (or when the map is full), so a key idle for longer than
/// the timeout stays until then.
#[tokio::test(start_paused = true)]
async fn a_sweep_runs_only_half_the_idle_timeout_after_the_last_one() {
    let keyed = keyed(100, 60);
    keyed.breaker(1).unwrap();
    advance(Duration::from_secs(50)).await;
    // Due (50 s >= 30 s): key 1 is 50 s idle, kept.
    keyed.breaker(2).unwrap();
    assert_eq!((keyed.len(), keyed.evictions()), (2, 0));
    advance(Duration::from_secs(20)).await;
    // 20 s after the last sweep: none, though key 1 is 70 s idle.
    keyed.breaker(3).unwrap();
    assert!(keyed.get(&1).is_some());
    assert_eq!((keyed.len(), keyed.evictions()), (3, 0));
    advance(Duration::from_secs(10)).await;
    // 30 s after it: due, and key 1 goes.
    keyed.breaker(4).unwrap();
    assert!(keyed.get(&1).is_none());
    assert_eq!((keyed.len(), keyed.evictions()), (3, 1));
}

/// `KeyedShared::sweep` (`now - last_active < idle`): a key idle for
/// exactly the idle timeout is evicted by the sweep that finds it so; one
/// idle 1 ns less is kept.
#[tokio::test(start_paused = true)]
async fn a_key_idle_for_exactly_the_timeout_is_evicted() {
    let keyed = keyed(100, 60);
    keyed.breaker(1).unwrap();
    advance(Duration::from_nanos(1)).await;
    keyed.breaker(2).unwrap();
    advance(Duration::from_secs(60) - Duration::from_nanos(1)).await;
    // A sweep is due (60 s since the last, at 0 s): key 1 is 60 s idle,
    // key 2 1 ns less.
    keyed.breaker(3).unwrap();
    assert!(keyed.get(&1).is_none());
    assert!(keyed.get(&2).is_some());
    assert_eq!(keyed.evictions(), 1);
}

/// The keyed breaker's name, `is_empty`, its `Debug`, and the idle
/// timeout in its health report, in milliseconds.
#[test]
fn name_is_empty_debug_and_idle_timeout_ms() {
    let keyed = KeyedBreaker::<u32>::builder("hosts")
        .max_keys(7)
        .idle_timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    assert!(keyed.is_empty());
    keyed.breaker(1).unwrap();
    assert!(!keyed.is_empty());
    assert_eq!(keyed.name(), "hosts");
    assert_eq!(
        format!("{keyed:?}"),
        r#"KeyedBreaker { name: "hosts", keys: 1, max_keys: 7, .. }"#
    );
    let health = keyed.as_component().health();
    assert_eq!(health.details["idle_timeout_ms"], 1500.0);
    assert_eq!(health.details["max_keys"], 7);
}

/// `keys` lists every key, and `KeyedBreaker::reset` (not the
/// `Control::Reset` path) closes every key's breaker and keeps the keys.
#[test]
fn keys_and_reset_by_hand() {
    let keyed = keyed(100, 60);
    keyed.breaker(2).unwrap().force_open();
    keyed.breaker(1).unwrap();
    let mut keys = keyed.keys();
    keys.sort_unstable();
    assert_eq!(keys, [1, 2]);
    assert_eq!(keyed.open_keys(), [2]);
    keyed.reset();
    assert_eq!(keyed.get(&2).unwrap().state(), CircuitState::Closed);
    assert!(keyed.open_keys().is_empty());
    assert_eq!(keyed.len(), 2);
}
