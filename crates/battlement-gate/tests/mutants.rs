//! Tests written for the mutants of `src/gate.rs`, `src/throttle.rs` and
//! `src/governor.rs` that the other tests missed (see
//! `docs/reliability/mutants.md` and `docs/reliability/mutants/gate.md`):
//! deterministic, on paused tokio time, through the public API only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use battlement_core::{EventKind, EventLog};
use battlement_gate::{Gate, Level, Priority, Rule, Signal};
use tokio::time::Instant;

/// `admits` follows the level and the table: the default table at
/// `Critical` admits only `Critical` work.
#[test]
fn admits_refuses_what_the_level_sheds() {
    let gate = Gate::builder("api")
        .initial_level(Level::Critical)
        .build()
        .unwrap();
    assert!(gate.admits(Priority::Critical));
    for p in [
        Priority::High,
        Priority::Normal,
        Priority::Low,
        Priority::Sheddable,
    ] {
        assert!(!gate.admits(p), "{p}");
    }
    gate.set_level(Level::Normal);
    assert!(gate.admits(Priority::Sheddable));
}

/// `name` is the name the gate was built with.
#[test]
fn name_is_the_built_name() {
    let gate = Gate::new("checkout");
    assert_eq!(gate.name().as_ref() as &str, "checkout");
}

/// `Gate::reset` (not the `Control::Reset` path): back to `Normal`, not
/// manual, reason `reset`, a `Reset` event; counters kept.
#[test]
fn reset_returns_to_normal_under_the_governor() {
    let log = EventLog::new();
    let gate = Gate::builder("api").events(log.sink()).build().unwrap();
    gate.set_level(Level::Severe);
    assert!(gate.is_manual());
    let changes = gate.changes();
    gate.reset();
    assert_eq!(gate.level(), Level::Normal);
    assert!(!gate.is_manual());
    assert_eq!(gate.reason(), "reset");
    assert_eq!(gate.changes(), changes + 1);
    assert_eq!(log.kinds().last(), Some(&EventKind::Reset));
}

/// `in_flight` counts the admitted calls not finished yet, from 0.
#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn in_flight_counts_calls_in_progress() {
    use battlement_core::BoxError;
    use std::time::Duration;
    use tower::{Layer, Service, ServiceExt, service_fn};
    let gate = Gate::new("api");
    let _signal = gate.in_flight_signal(); // counting starts with a signal
    assert_eq!(gate.in_flight(), 0);
    let mut svc = gate
        .layer()
        .layer(service_fn(|_r: http::Request<()>| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, BoxError>(())
        }));
    let a = svc.ready().await.unwrap().call(http::Request::new(()));
    let b = svc.ready().await.unwrap().call(http::Request::new(()));
    assert_eq!(gate.in_flight(), 2);
    a.await.unwrap();
    assert_eq!(gate.in_flight(), 1);
    b.await.unwrap();
    assert_eq!(gate.in_flight(), 0);
}

/// A signal that always asks for a raise and, the first time the governor
/// reads its name for the raise's reason (between reading the level and
/// applying the change), resets the gate: the level moved under the
/// governor.
struct ResetsOnName {
    gate: Gate,
    armed: Arc<AtomicBool>,
}

impl Signal for ResetsOnName {
    fn name(&self) -> &str {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.gate.reset();
        }
        "resets"
    }

    fn sample(&mut self, _now: Instant) -> f64 {
        1.0
    }
}

/// The governor's change is dropped when the level moved since it read
/// it, even with the gate not manual (a reset meanwhile).
#[tokio::test(start_paused = true)]
async fn a_governor_change_is_dropped_when_the_level_moved_meanwhile() {
    let gate = Gate::builder("api")
        .initial_level(Level::Minimal)
        .build()
        .unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let mut governor = gate
        .governor()
        .rule(
            Rule::new(ResetsOnName {
                gate: gate.clone(),
                armed: armed.clone(),
            })
            .step(Level::Critical, 0.5, 0.1),
        )
        .build()
        .unwrap();
    assert!(!gate.is_manual());
    armed.store(true, Ordering::SeqCst);
    assert_eq!(governor.tick(), None, "Minimal -> Moderate is stale");
    assert_eq!(gate.level(), Level::Normal, "the reset holds");
    assert_eq!(gate.reason(), "reset");
    // Next tick, from where the gate is.
    assert_eq!(governor.tick(), Some(Level::Minimal));
}

/// `Gate`'s `Debug` shows its name, level and whether it is manual.
#[test]
fn debug_shows_the_gate() {
    let gate = Gate::new("checkout");
    gate.set_level(Level::Severe);
    let s = format!("{gate:?}");
    assert!(s.starts_with("Gate {"), "{s}");
    assert!(s.contains("checkout"), "{s}");
    assert!(s.contains(&format!("{:?}", Level::Severe)), "{s}");
    assert!(s.contains("manual: true"), "{s}");
}

/// The gate's own signals show the shared state (name and level) in
/// their `Debug`.
#[test]
fn a_signal_debug_shows_the_shared_gate() {
    let gate = Gate::builder("checkout")
        .initial_level(Level::Moderate)
        .build()
        .unwrap();
    let s = format!("{:?}", gate.in_flight_signal());
    assert!(s.contains("Shared {"), "{s}");
    assert!(s.contains("checkout"), "{s}");
    assert!(s.contains(&format!("{:?}", Level::Moderate)), "{s}");
}

/// `Gate` is a `Component` itself (not only through `as_component`):
/// its name, health and controls are the shared state's.
#[test]
fn the_gate_itself_is_the_component() {
    use battlement_core::{Component, Control, ControlError, HealthStatus};
    let gate = Gate::new("checkout");
    assert_eq!(Component::name(&gate), "checkout");
    Component::control(&gate, &Control::SetLevel(Level::Severe)).unwrap();
    assert_eq!(gate.level(), Level::Severe);
    assert!(gate.is_manual());
    let h = Component::health(&gate);
    assert_eq!(h.status, HealthStatus::Unhealthy);
    assert_eq!(h.details["level"], "severe");
    assert!(matches!(
        Component::control(&gate, &Control::ForceOpen),
        Err(ControlError::Unsupported { .. })
    ));
    Component::control(&gate, &Control::Reset).unwrap();
    assert_eq!(gate.level(), Level::Normal);
}

// ---- src/throttle.rs ----

mod throttle {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::task::Poll;
    use std::time::Duration;

    use battlement_core::{AsComponent, BoxError};
    use battlement_gate::{AdaptiveThrottle, ThrottleBuilder, ThrottleLayer};
    use tokio::time::advance;
    use tower::{Layer, Service, ServiceExt, service_fn};

    /// A random source that returns whatever the test stored in `draw`,
    /// and counts how often it was drawn.
    fn scripted(draw: &Arc<AtomicU64>, draws: &Arc<AtomicU64>) -> impl Fn() -> f64 + use<> {
        let (d, n) = (draw.clone(), draws.clone());
        move || {
            n.fetch_add(1, SeqCst);
            f64::from_bits(d.load(SeqCst))
        }
    }

    /// A 10 s window of ten 1 s buckets.
    fn ten_by_one_second() -> ThrottleBuilder {
        AdaptiveThrottle::builder("backend")
            .window(Duration::from_secs(10))
            .buckets(10)
    }

    /// Calls answered in buckets other than the first each count in their
    /// own bucket: the request, the accept of its answer, and the
    /// un-count of a call dropped unanswered, all read back from a later
    /// epoch of the window.
    #[tokio::test(start_paused = true)]
    async fn calls_in_later_buckets_count_in_their_own_bucket() {
        let throttle = ten_by_one_second().random(|| 1.0).build().unwrap();
        let mut svc = throttle.layer().layer(service_fn(|slow: bool| async move {
            if slow {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok::<_, BoxError>(())
        }));
        advance(Duration::from_secs(5)).await;
        for answered in 1..=5 {
            svc.ready().await.unwrap().call(false).await.unwrap();
            let abandoned = svc.ready().await.unwrap().call(true);
            assert_eq!(throttle.totals(), (answered + 1, answered), "one in flight");
            drop(abandoned);
            assert_eq!(throttle.totals(), (answered, answered), "dropped: neither");
            advance(Duration::from_secs(1)).await;
        }
        // Epoch 10: the buckets of epochs 5 to 9 are all still in the window.
        assert_eq!(throttle.totals(), (5, 5));
        assert_eq!(throttle.probability(), 0.0);
    }

    /// A bucket leaves the window exactly `window` after its epoch began
    /// (its slot is the one the current epoch will reuse), even before a
    /// call rotates it.
    #[tokio::test(start_paused = true)]
    async fn a_bucket_leaves_the_window_exactly_at_the_window_end() {
        let throttle = ten_by_one_second().random(|| 1.0).build().unwrap();
        throttle.try_acquire().unwrap();
        advance(Duration::from_secs(10) - Duration::from_nanos(1)).await;
        assert_eq!(throttle.totals(), (1, 0));
        advance(Duration::from_nanos(1)).await;
        assert_eq!(throttle.totals(), (0, 0));
    }

    /// A draw equal to the probability lets the call through (the call is
    /// refused with probability `p` for draws uniform in `[0, 1)`: draws
    /// in `[0, p)`).
    #[tokio::test(start_paused = true)]
    async fn a_draw_equal_to_the_probability_lets_the_call_through() {
        let (draw, draws) = (Arc::new(AtomicU64::new(1.0f64.to_bits())), Arc::default());
        let throttle = AdaptiveThrottle::builder("backend")
            .max_probability(0.5)
            .random(scripted(&draw, &draws))
            .build()
            .unwrap();
        for _ in 0..10 {
            throttle.try_acquire().unwrap(); // requests, never an accept
        }
        assert_eq!(throttle.probability(), 0.5, "capped");
        draw.store(0.5f64.to_bits(), SeqCst);
        throttle.try_acquire().unwrap();
        draw.store(0.499_999f64.to_bits(), SeqCst);
        assert!(throttle.try_acquire().is_err());
    }

    /// While the probability is zero no random number is drawn: a scripted
    /// source's draws line up with the calls that could be refused (and
    /// the healthy path costs no draw).
    #[tokio::test(start_paused = true)]
    async fn no_draw_is_taken_while_the_probability_is_zero() {
        let (draw, draws) = (Arc::new(AtomicU64::new(0.0f64.to_bits())), Arc::default());
        let throttle = AdaptiveThrottle::builder("backend")
            .random(scripted(&draw, &draws))
            .build()
            .unwrap();
        let mut svc = throttle
            .layer()
            .layer(service_fn(|()| async { Ok::<_, BoxError>(()) }));
        for _ in 0..20 {
            svc.ready().await.unwrap().call(()).await.unwrap();
        }
        assert_eq!(draws.load(SeqCst), 0);
        // Requests without accepts: now each decision draws once.
        for _ in 0..3 {
            throttle.try_acquire().unwrap();
        }
        assert_eq!(throttle.probability(), 0.0, "(23 - 2 * 20) / 24 < 0");
        assert_eq!(draws.load(SeqCst), 0);
        for _ in 0..20 {
            let _ = throttle.try_acquire();
        }
        assert!(throttle.probability() > 0.0);
        assert!(draws.load(SeqCst) > 0);
    }

    /// The service is ready only when the inner service is, and passes its
    /// readiness error on.
    #[tokio::test(start_paused = true)]
    async fn readiness_is_the_inner_services() {
        let throttle = AdaptiveThrottle::new("backend");
        let (mut svc, mut handle) =
            tower_test::mock::spawn_layer::<(), (), _>(ThrottleLayer::new(throttle));
        handle.allow(0);
        assert!(svc.poll_ready().is_pending());
        handle.allow(1);
        assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
        let call = svc.call(());
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req, ());
        send.send_response(());
        call.await.unwrap();
        handle.send_error("inner is dead");
        match svc.poll_ready() {
            Poll::Ready(Err(e)) => assert_eq!(e.to_string(), "inner is dead"),
            other => panic!("expected the inner error, got {other:?}"),
        }
    }

    /// The builder's, the throttle's and the future's `Debug`, the name and
    /// the component's name.
    #[tokio::test(start_paused = true)]
    async fn name_and_debug_show_the_throttle() {
        let builder = AdaptiveThrottle::builder("backend").k(3.0).buckets(7);
        let s = format!("{builder:?}");
        assert!(s.starts_with("ThrottleBuilder {"), "{s}");
        for part in ["backend", "k: 3.0", "max_probability: 0.9", "buckets: 7"] {
            assert!(s.contains(part), "{part} in {s}");
        }
        let throttle = builder.build().unwrap();
        assert_eq!(throttle.name().as_ref() as &str, "backend");
        assert_eq!(throttle.as_component().name(), "backend");
        let s = format!("{throttle:?}");
        assert!(s.starts_with("AdaptiveThrottle {"), "{s}");
        for part in ["backend", "k: 3.0", "window: 120s"] {
            assert!(s.contains(part), "{part} in {s}");
        }
        let mut svc = throttle
            .layer()
            .layer(service_fn(|()| async { Ok::<_, BoxError>(()) }));
        let fut = svc.ready().await.unwrap().call(());
        assert_eq!(format!("{fut:?}"), "ThrottleFuture { .. }");
    }
}
