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

// ---- src/governor.rs ----

mod governor {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::time::Duration;

    use battlement_core::BoxError;
    use battlement_gate::{
        Gate, GateService, Level, OpenBreakers, Priority, Rule, Signal, signal_fn,
    };
    use tokio::time::Instant;
    use tower::{Layer, Service, ServiceExt, service_fn};

    type Call = std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
    /// A request is `(milliseconds it takes, whether it fails)`.
    type Svc = GateService<
        tower::util::ServiceFn<fn((u64, bool)) -> Call>,
        fn(&(u64, bool)) -> Option<Priority>,
    >;

    fn through(gate: &Gate) -> Svc {
        fn call((ms, fail): (u64, bool)) -> Call {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if fail { Err("failed".into()) } else { Ok(()) }
            })
        }
        fn no_priority(_: &(u64, bool)) -> Option<Priority> {
            None
        }
        gate.layer()
            .priority_fn(no_priority as fn(&(u64, bool)) -> Option<Priority>)
            .layer(service_fn(call as fn((u64, bool)) -> Call))
    }

    /// `calls` calls of `ms` each, the first `failing` of them failing.
    async fn run(svc: &mut Svc, calls: usize, failing: usize, ms: u64) {
        for i in 0..calls {
            let _ = svc.ready().await.unwrap().call((ms, i < failing)).await;
        }
    }

    /// The error rate reads from exactly `min_calls` calls in the interval
    /// (default 10); below that, however many failed, it reads 0.
    #[tokio::test(start_paused = true)]
    async fn the_error_rate_reads_from_exactly_min_calls() {
        let gate = Gate::new("api");
        let mut errors = gate.error_rate_signal();
        let mut svc = through(&gate);
        let now = Instant::now();
        run(&mut svc, 9, 9, 0).await;
        assert_eq!(errors.sample(now), 0.0, "9 calls: a trickle");
        run(&mut svc, 1, 1, 0).await;
        assert_eq!(errors.sample(now), 0.0, "the interval starts again");
        run(&mut svc, 10, 5, 0).await;
        assert_eq!(errors.sample(now), 0.5, "10 calls");
        let mut at_least_3 = gate.error_rate_signal().min_calls(3);
        run(&mut svc, 2, 2, 0).await;
        assert_eq!(at_least_3.sample(now), 0.0);
        run(&mut svc, 3, 1, 0).await;
        assert_eq!(at_least_3.sample(now), 1.0 / 3.0);
    }

    /// A percentile signal made with a `window` counts only the calls
    /// completed after it was made, not those the gate's histogram already
    /// holds.
    #[tokio::test(start_paused = true)]
    async fn a_windowed_percentile_signal_starts_from_the_histogram_as_it_is() {
        let gate = Gate::new("api");
        let mut first = gate.latency_percentile_signal(99.0).min_calls(1);
        let mut svc = through(&gate);
        run(&mut svc, 10, 0, 300).await;
        let mut later = gate.latency_percentile_signal(99.0).min_calls(1).window(2);
        let now = Instant::now();
        assert_eq!(later.sample(now), 0.0, "nothing since it was made");
        assert!(first.sample(now) >= 300.0);
        run(&mut svc, 10, 0, 20).await;
        let v = later.sample(now);
        assert!((20.0..=22.5).contains(&v), "{v}");
    }

    /// Thresholds may be equal: `recover_below == raise_at` in a step, and
    /// the same raise or recovery threshold for two levels; a recovery
    /// threshold that falls as the level grows is refused.
    #[test]
    fn equal_thresholds_are_valid_and_a_falling_recovery_is_not() {
        let gate = Gate::new("g");
        let knob = || signal_fn("knob", |_| 0.0);
        let valid = [
            Rule::new(knob()).step(Level::Minimal, 0.5, 0.5),
            Rule::new(knob())
                .step(Level::Minimal, 0.5, 0.1)
                .step(Level::Moderate, 0.5, 0.2),
            Rule::new(knob())
                .step(Level::Minimal, 0.5, 0.1)
                .step(Level::Moderate, 0.6, 0.1),
        ];
        for r in valid {
            let dbg = format!("{r:?}");
            assert!(gate.governor().rule(r).build().is_ok(), "{dbg}");
        }
        let falling =
            Rule::new(knob())
                .step(Level::Minimal, 0.5, 0.2)
                .step(Level::Moderate, 0.6, 0.1);
        let err = gate.governor().rule(falling).build().unwrap_err();
        assert_eq!(err.field, "rule.step.raise_at");
        assert!(err.bound.contains("must not decrease"), "{err}");
    }

    /// The built-in signals' names, the percentile read back, and the
    /// `Debug` of signals and rules.
    #[test]
    fn signal_names_and_debug() {
        let gate = Gate::new("api");
        assert_eq!(gate.latency_signal().name(), "latency_ms");
        assert_eq!(gate.in_flight_signal().name(), "in_flight");
        let p = gate.latency_percentile_signal(99.5).window(3).min_calls(7);
        assert_eq!(p.percentile(), 99.5);
        assert_eq!(
            format!("{p:?}"),
            "LatencyPercentile { gate: \"api\", percentile: 99.5, window: 3, min_calls: 7, .. }"
        );
        assert_eq!(
            format!("{:?}", signal_fn("queue", |_| 1.0)),
            "FnSignal { name: \"queue\" }"
        );
        assert_eq!(
            format!("{:?}", OpenBreakers::new(vec![])),
            "OpenBreakers { .. }"
        );
        let rule = Rule::new(signal_fn("queue", |_| 1.0)).step(Level::Minimal, 0.5, 0.25);
        let s = format!("{rule:?}");
        assert!(s.starts_with("Rule { signal: \"queue\", steps: ["), "{s}");
        assert!(s.contains("raise_at: 0.5, recover_below: 0.25"), "{s}");
    }

    /// The governor's `Debug` shows its gate, rules and timings.
    #[test]
    fn governor_debug_shows_its_settings() {
        let gate = Gate::new("api");
        let governor = gate
            .governor()
            .interval(Duration::from_secs(2))
            .min_dwell(Duration::from_secs(7))
            .rule(Rule::new(signal_fn("queue", |_| 1.0)).step(Level::Minimal, 0.5, 0.25))
            .build()
            .unwrap();
        let s = format!("{governor:?}");
        assert!(
            s.starts_with("Governor { gate: \"api\", rules: [Rule {"),
            "{s}"
        );
        for part in [
            "interval: 2s",
            "min_dwell: 7s",
            "dwell: 7s",
            "relapses: 0",
            "calm_since: None",
        ] {
            assert!(s.contains(part), "{part} in {s}");
        }
    }

    /// A signal the test sets.
    fn knob(name: &'static str) -> (impl Signal + use<>, Arc<AtomicU64>) {
        let v = Arc::new(AtomicU64::new(0f64.to_bits()));
        let k = v.clone();
        (signal_fn(name, move |_| f64::from_bits(k.load(SeqCst))), v)
    }

    fn set(knob: &AtomicU64, v: f64) {
        knob.store(v.to_bits(), SeqCst);
    }

    /// With several rules asking for a raise, the highest level asked for
    /// counts, whichever rule asks it; on a tie the reason names the first
    /// rule in order.
    #[tokio::test(start_paused = true)]
    async fn the_highest_raise_asked_for_wins_and_a_tie_names_the_first_rule() {
        let gate = Gate::builder("api")
            .initial_level(Level::Minimal)
            .build()
            .unwrap();
        let (low, l) = knob("low");
        let (high, h) = knob("high");
        let steps = |r: Rule| {
            r.step(Level::Minimal, 0.1, 0.05)
                .step(Level::Moderate, 0.5, 0.2)
        };
        let mut governor = gate
            .governor()
            .rule(steps(Rule::new(low)))
            .rule(steps(Rule::new(high)))
            .build()
            .unwrap();
        // `low` asks for Minimal (already there), `high` for Moderate.
        set(&l, 0.2);
        set(&h, 0.9);
        assert_eq!(governor.tick(), Some(Level::Moderate));
        assert!(
            gate.reason().starts_with("high 0.900 >= 0.5"),
            "{}",
            gate.reason()
        );
        // Both ask for Moderate, from Minimal again.
        gate.set_level(Level::Minimal);
        gate.release();
        set(&l, 0.6);
        set(&h, 0.7);
        assert_eq!(governor.tick(), Some(Level::Moderate));
        assert!(
            gate.reason().starts_with("low 0.600 >= 0.5"),
            "{}",
            gate.reason()
        );
    }

    /// A raise exactly one dwell after a step down is a new incident, not
    /// a relapse; one nanosecond earlier it is a relapse.
    #[tokio::test(start_paused = true)]
    async fn a_raise_exactly_one_dwell_after_recovering_is_not_a_relapse() {
        let dwell = Duration::from_secs(2);
        for (after, relapses) in [(dwell, 0), (dwell - Duration::from_nanos(1), 1)] {
            let gate = Gate::new("api");
            let (signal, k) = knob("knob");
            let mut governor = gate
                .governor()
                .min_dwell(dwell)
                .rule(Rule::new(signal).step(Level::Minimal, 0.1, 0.05))
                .build()
                .unwrap();
            let t0 = Instant::now();
            set(&k, 0.2);
            assert_eq!(governor.evaluate(t0), Some(Level::Minimal));
            set(&k, 0.0);
            assert_eq!(governor.evaluate(t0 + Duration::from_secs(1)), None);
            let recovered = t0 + Duration::from_secs(3);
            assert_eq!(governor.evaluate(recovered), Some(Level::Normal));
            set(&k, 0.2);
            assert_eq!(governor.evaluate(recovered + after), Some(Level::Minimal));
            assert_eq!(governor.relapses(), relapses, "raised {after:?} after");
            assert_eq!(gate.reason().contains("relapse"), relapses == 1);
        }
    }

    /// `max_dwell` may equal `min_dwell` (also both zero, the default cap
    /// of a zero `min_dwell`); below it the build names `max_dwell`.
    #[test]
    fn a_max_dwell_equal_to_min_dwell_is_valid() {
        let gate = Gate::new("api");
        let rule = || Rule::new(signal_fn("queue", |_| 0.0)).step(Level::Minimal, 0.5, 0.25);
        let five = Duration::from_secs(5);
        let equal = gate.governor().min_dwell(five).max_dwell(five).rule(rule());
        assert_eq!(equal.build().unwrap().dwell(), five);
        let zero = gate.governor().min_dwell(Duration::ZERO).rule(rule());
        assert_eq!(zero.build().unwrap().dwell(), Duration::ZERO);
        let below = gate
            .governor()
            .min_dwell(five)
            .max_dwell(five - Duration::from_nanos(1))
            .rule(rule());
        assert_eq!(below.build().unwrap_err().field, "max_dwell");
    }

    /// After a step down to a level the signals still hold, the dwell for
    /// the next step starts at the first tick that is calm for that level,
    /// not at the step down.
    #[tokio::test(start_paused = true)]
    async fn the_next_dwell_starts_when_the_lower_level_is_calm() {
        let gate = Gate::builder("api")
            .initial_level(Level::Moderate)
            .build()
            .unwrap();
        let (signal, k) = knob("knob");
        let mut governor = gate
            .governor()
            .min_dwell(Duration::from_secs(2))
            .rule(
                Rule::new(signal)
                    .step(Level::Minimal, 0.1, 0.05)
                    .step(Level::Moderate, 0.5, 0.2),
            )
            .build()
            .unwrap();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        set(&k, 0.1); // calm for Moderate, holds Minimal
        assert_eq!(governor.evaluate(at(0)), None);
        assert_eq!(governor.evaluate(at(2)), Some(Level::Minimal));
        set(&k, 0.0); // calm for Minimal from 3 s
        assert_eq!(governor.evaluate(at(3)), None);
        assert_eq!(governor.evaluate(at(4)), None, "calm for 1 s only");
        assert_eq!(governor.evaluate(at(5)), Some(Level::Normal));
    }
}
