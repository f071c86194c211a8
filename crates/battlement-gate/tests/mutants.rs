//! Tests written for the mutants of `src/gate.rs` that the other tests
//! missed (see `docs/reliability/mutants.md`): deterministic, on paused
//! tokio time, through the public API only.

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
