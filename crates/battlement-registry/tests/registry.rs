//! The registry: status rules, unique names, weak holding, events,
//! controls, and the instrument's figures.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use battlement_core::{
    BoxError, CircuitState, Component, ComponentHealth, ComponentKind, Control, ControlError,
    EventKind, FailureKind, HealthStatus, Level, Outcome,
};
use battlement_registry::broadcast::error::{RecvError, TryRecvError};
use battlement_registry::{Footprint, Registry};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// A component whose status the test sets: 0 healthy, 1 degraded, 2
/// unhealthy. Supports `Reset` (back to healthy) and `SetLevel`.
struct Fake {
    name: &'static str,
    kind: ComponentKind,
    status: AtomicU8,
    level: Mutex<Level>,
}

impl Fake {
    fn new(name: &'static str, kind: ComponentKind) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            kind,
            status: AtomicU8::new(0),
            level: Mutex::new(Level::Normal),
        })
    }
    fn set(&self, status: HealthStatus) {
        self.status.store(status as u8, Ordering::SeqCst);
    }
}

impl Component for Fake {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> ComponentKind {
        self.kind.clone()
    }
    fn health(&self) -> ComponentHealth {
        let status = match self.status.load(Ordering::SeqCst) {
            0 => HealthStatus::Healthy,
            1 => HealthStatus::Degraded,
            _ => HealthStatus::Unhealthy,
        };
        ComponentHealth::new(status).detail("level", self.level.lock().unwrap().as_str())
    }
    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::Reset => {
                self.set(HealthStatus::Healthy);
                Ok(())
            }
            Control::SetLevel(l) => {
                *self.level.lock().unwrap() = *l;
                Ok(())
            }
            other => Err(ControlError::unsupported(self.name, other)),
        }
    }
}

#[test]
fn overall_is_the_worst_component_by_default() {
    let registry = Registry::new();
    assert_eq!(registry.health().status, HealthStatus::Healthy);
    let a = Fake::new("a", ComponentKind::Breaker);
    let b = Fake::new("b", ComponentKind::Gate);
    registry.register(&a).unwrap();
    registry.register(&b).unwrap();
    assert_eq!(registry.health().status, HealthStatus::Healthy);
    a.set(HealthStatus::Degraded);
    let report = registry.health();
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(report.summary.total, 2);
    assert_eq!(report.summary.degraded, 1);
    assert_eq!(report.summary.healthy, 1);
    assert_eq!(report.by_kind["breaker"].degraded, 1);
    assert_eq!(report.by_kind["gate"].healthy, 1);
    b.set(HealthStatus::Unhealthy);
    let report = registry.health();
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert_eq!(report.summary.unhealthy, 1);
    // Sorted by name; serialises with the summary.
    let names: Vec<_> = report.components.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["a", "b"]);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["status"], "unhealthy");
    assert_eq!(json["summary"]["degraded"], 1);
    assert_eq!(json["components"][0]["kind"], "breaker");
    assert_eq!(json["components"][0]["details"]["level"], "normal");
}

#[test]
fn mappings_thresholds_and_custom_rules() {
    let registry = Registry::builder()
        .map_status(
            Some(ComponentKind::Breaker),
            HealthStatus::Degraded,
            HealthStatus::Unhealthy,
        )
        .escalate_when(
            Some(ComponentKind::Gate),
            HealthStatus::Degraded,
            2,
            HealthStatus::Unhealthy,
        )
        .build()
        .unwrap();
    let breaker = Fake::new("breaker", ComponentKind::Breaker);
    let g1 = Fake::new("g1", ComponentKind::Gate);
    let g2 = Fake::new("g2", ComponentKind::Gate);
    for c in [&breaker, &g1, &g2] {
        registry.register(c).unwrap();
    }
    // Mapping: a degraded breaker counts as unhealthy, and says so.
    breaker.set(HealthStatus::Degraded);
    let report = registry.health();
    assert_eq!(report.status, HealthStatus::Unhealthy);
    let b = report.component("breaker").unwrap();
    assert_eq!(b.reported_status, HealthStatus::Degraded);
    assert_eq!(b.status, HealthStatus::Unhealthy);
    breaker.set(HealthStatus::Healthy);

    // Threshold: one degraded gate degrades, two take the system down.
    g1.set(HealthStatus::Degraded);
    assert_eq!(registry.health().status, HealthStatus::Degraded);
    g2.set(HealthStatus::Degraded);
    assert_eq!(registry.health().status, HealthStatus::Unhealthy);

    // A custom rule can only make it worse.
    let registry = Registry::builder()
        .rule(|cs| (cs.len() < 2).then_some(HealthStatus::Degraded))
        .rule(|_| Some(HealthStatus::Healthy))
        .build()
        .unwrap();
    assert_eq!(registry.health().status, HealthStatus::Degraded);
}

#[test]
fn invalid_config_is_rejected() {
    let err = Registry::builder().event_capacity(0).build().unwrap_err();
    assert_eq!(err.field, "event_capacity");
    let err = Registry::builder()
        .escalate_when(None, HealthStatus::Degraded, 0, HealthStatus::Unhealthy)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "escalate_when.count");
}

#[test]
fn duplicate_names_are_an_error_until_the_first_is_dropped() {
    let registry = Registry::new();
    let first = Fake::new("db", ComponentKind::Breaker);
    registry.register(&first).unwrap();
    let second = Fake::new("db", ComponentKind::Gate);
    let err = registry.register(&second).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a component named `db` is already registered, by a component of kind `breaker`"
    );
    assert_eq!(err.held_by, "breaker");
    // Not replaced.
    assert_eq!(registry.get("db").unwrap().kind, ComponentKind::Breaker);
    // An instrument's name is taken the same way.
    assert!(registry.layer("db").is_err());

    drop(first);
    registry.register(&second).unwrap();
    assert_eq!(registry.get("db").unwrap().kind, ComponentKind::Gate);
}

#[test]
fn components_are_held_weakly() {
    let registry = Registry::new();
    let a = Fake::new("a", ComponentKind::Breaker);
    registry.register(&a).unwrap();
    let layer = registry.layer("api").unwrap();
    assert_eq!(registry.names(), ["a", "api"]);
    assert_eq!(Arc::strong_count(&a), 1, "the registry holds no strong ref");
    drop(a);
    drop(layer);
    assert!(registry.is_empty());
    assert_eq!(registry.health().summary.total, 0);
    assert!(registry.get("a").is_none());
    assert!(matches!(
        registry.control("a", &Control::Reset),
        Err(ControlError::NotFound { .. })
    ));
    let b = Fake::new("b", ComponentKind::Gate);
    registry.register(&b).unwrap();
    assert!(registry.unregister("b"));
    assert!(!registry.unregister("b"));
}

/// Registrations forget dropped components in sweeps, once the map has
/// doubled: it never holds more than twice the live components (or 16),
/// however many come and go, and a dropped name is free at once.
#[test]
fn the_map_never_outgrows_twice_the_live_components() {
    let registry = Registry::new();
    let keep: Vec<_> = (0..20)
        .map(|i| registry.layer(&format!("keep-{i}")).unwrap())
        .collect();
    for round in 0..1_000 {
        let gone = registry.layer(&format!("gone-{round}")).unwrap();
        drop(gone);
        let entries = registry.footprint().entries;
        assert!(entries <= 2 * keep.len() + 1, "round {round}: {entries}");
    }
    assert_eq!(registry.len(), 20);
    // A dropped component's name is free at once, swept or not.
    let again = registry.layer("gone-999").unwrap();
    assert_eq!(registry.len(), 21);
    drop((again, keep));
}

#[test]
fn controls_go_by_name() {
    let registry = Registry::new();
    let gate = Fake::new("gate", ComponentKind::Gate);
    registry.register(&gate).unwrap();
    gate.set(HealthStatus::Unhealthy);
    registry.control("gate", &Control::Reset).unwrap();
    assert_eq!(registry.health().status, HealthStatus::Healthy);
    registry
        .control("gate", &Control::SetLevel(Level::Severe))
        .unwrap();
    assert_eq!(registry.get("gate").unwrap().details["level"], "severe");
    let err = registry.control("gate", &Control::ForceOpen).unwrap_err();
    assert!(matches!(err, ControlError::Unsupported { .. }));
}

#[tokio::test(start_paused = true)]
async fn events_reach_every_subscriber() {
    let registry = Registry::new();
    let sink = registry.event_sink();
    // No subscriber yet: sending is harmless.
    sink.emit(&"b".into(), || EventKind::Reset);
    let mut a = registry.subscribe();
    let mut b = registry.subscribe();
    sink.emit(&"b".into(), || EventKind::StateChanged {
        from: CircuitState::Closed,
        to: CircuitState::Open,
        reason: "test".into(),
    });
    for rx in [&mut a, &mut b] {
        let e = rx.recv().await.unwrap();
        assert_eq!(&*e.component, "b");
        assert!(matches!(
            e.kind,
            EventKind::StateChanged {
                to: CircuitState::Open,
                ..
            }
        ));
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    }
}

#[tokio::test(start_paused = true)]
async fn a_lagging_subscriber_loses_the_oldest_and_is_told() {
    let registry = Registry::builder().event_capacity(4).build().unwrap();
    let sink = registry.event_sink();
    let mut slow = registry.subscribe();
    for attempt in 1..=10 {
        // Never blocks, however far behind the subscriber is.
        sink.emit(&"r".into(), || EventKind::Retry {
            attempt,
            delay: Duration::ZERO,
            kind: FailureKind::Network,
        });
    }
    assert_eq!(slow.recv().await.unwrap_err(), RecvError::Lagged(6));
    let mut seen = Vec::new();
    while let Ok(e) = slow.try_recv() {
        if let EventKind::Retry { attempt, .. } = e.kind {
            seen.push(attempt);
        }
    }
    assert_eq!(seen, [7, 8, 9, 10]);
}

#[tokio::test(start_paused = true)]
async fn the_instrument_counts_outcomes_latency_and_in_flight() {
    let registry = Registry::new();
    let layer = registry.layer("api").unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            match ms {
                0 => Err::<u64, BoxError>(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                ))),
                _ => Ok(ms),
            }
        }));
    for ms in 1..=100 {
        svc.clone().oneshot(ms).await.unwrap();
    }
    svc.clone().oneshot(0).await.unwrap_err();
    svc.clone().oneshot(0).await.unwrap_err();

    let d = registry.get("api").unwrap().details;
    assert_eq!(d["calls"], 102);
    assert_eq!(d["successes"], 100);
    assert_eq!(d["failures"], 2);
    assert_eq!(d["consecutive_failures"], 2);
    assert_eq!(d["failures_by_kind"]["network"], 2);
    assert_eq!(d["in_flight"], 0);
    assert_eq!(d["success_rate"], 100.0 / 102.0);
    let p50 = d["latency_p50_ms"].as_f64().unwrap();
    let p90 = d["latency_p90_ms"].as_f64().unwrap();
    let p99 = d["latency_p99_ms"].as_f64().unwrap();
    // Exact on paused time, up to the bucket's width (12.5%).
    assert!((50.0..=50.0 * 1.125).contains(&p50), "p50 {p50}");
    assert!((90.0..=90.0 * 1.125).contains(&p90), "p90 {p90}");
    assert!((99.0..=99.0 * 1.125).contains(&p99), "p99 {p99}");

    // A success resets the consecutive failures.
    svc.clone().oneshot(5).await.unwrap();
    assert_eq!(
        registry.get("api").unwrap().details["consecutive_failures"],
        0
    );

    // In flight while pending; a dropped call leaves and counts as cancelled.
    let mut s = svc.clone();
    let fut = s.ready().await.unwrap().call(1_000);
    assert_eq!(registry.get("api").unwrap().details["in_flight"], 1);
    drop(fut);
    let d = registry.get("api").unwrap().details;
    assert_eq!(d["in_flight"], 0);
    assert_eq!(d["cancelled"], 1);
    assert_eq!(d["calls"], 104);
}

/// A reset clears the instrument's state (the streak of failures) and
/// never a counter: `calls`, `failures` and the latency histogram keep
/// counting, so Prometheus never reads a reset as a restart.
#[tokio::test(start_paused = true)]
async fn an_instrument_reset_keeps_its_counters() {
    let registry = Registry::new();
    let svc = ServiceBuilder::new()
        .layer(registry.layer("api").unwrap())
        .service(service_fn(|fail: bool| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if fail {
                Err::<(), BoxError>(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                )))
            } else {
                Ok(())
            }
        }));
    svc.clone().oneshot(false).await.unwrap();
    svc.clone().oneshot(true).await.unwrap_err();
    svc.clone().oneshot(true).await.unwrap_err();
    registry.control("api", &Control::Reset).unwrap();
    let d = registry.get("api").unwrap().details;
    assert_eq!(d["consecutive_failures"], 0, "the state is reset");
    assert_eq!(d["calls"], 3);
    assert_eq!(d["failures"], 2);
    assert_eq!(d["successes"], 1);
    assert_eq!(d["latency_count"], 3);
    assert!(d["latency_p50_ms"].is_number());
    let text = registry.prometheus_text();
    assert!(
        text.contains("battlement_instrument_calls_total{component=\"api\"} 3"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_instrument_takes_any_classifier() {
    let registry = Registry::new();
    let layer =
        registry
            .layer("http")
            .unwrap()
            .classifier(|res: &Result<u16, BoxError>| match res {
                Ok(s) if *s >= 500 => Outcome::failure(FailureKind::Unavailable),
                Ok(s) if *s >= 400 => Outcome::Ignored,
                Ok(_) => Outcome::Success,
                Err(_) => Outcome::failure(FailureKind::Unknown),
            });
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|s: u16| async move { Ok::<_, BoxError>(s) }));
    for s in [200, 404, 503, 503] {
        svc.clone().oneshot(s).await.unwrap();
    }
    let d = registry.get("http").unwrap().details;
    assert_eq!(d["successes"], 1);
    assert_eq!(d["ignored"], 1);
    assert_eq!(d["failures_by_kind"]["unavailable"], 2);
}

#[tokio::test(start_paused = true)]
async fn readiness_passes_through() {
    let registry = Registry::new();
    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<u32, u32, _>(registry.layer("mock").unwrap());
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(7);
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 7);
    send.send_response(8);
    assert_eq!(fut.await.unwrap(), 8);
    assert_eq!(registry.get("mock").unwrap().details["successes"], 1);
}

/// Ten million instrumented calls (one million in an unoptimised build,
/// where ten would take minutes) leave the registry's structures exactly
/// as big as they were: the name map's entries and capacity, and the fixed
/// size of the instrument's figures and histogram. Calls are driven without
/// an executor (a no-op waker), with latencies spread over every bucket
/// range by a paused clock advanced per call.
#[test]
fn ten_million_calls_leave_memory_unchanged() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _guard = rt.enter();
    let registry = Registry::new();
    let mut svc = ServiceBuilder::new()
        .layer(registry.layer("hot").unwrap())
        .service(service_fn(|i: u64| async move {
            if i.is_multiple_of(10) {
                Err::<u64, BoxError>("boom".into())
            } else {
                Ok(i)
            }
        }));
    let before = registry.footprint();
    let n: u64 = if cfg!(debug_assertions) {
        1_000_000
    } else {
        10_000_000
    };
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..n {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let fut = pin!(svc.call(i));
        match fut.poll(&mut cx) {
            Poll::Ready(_) => {}
            Poll::Pending => unreachable!("service_fn completes at once"),
        }
    }
    // Some calls with real latencies, from a nanosecond to an hour.
    for shift in 0..42u32 {
        let fut = svc.call(1);
        rt.block_on(async {
            tokio::time::advance(Duration::from_nanos(1 << shift)).await;
        });
        let _ = rt.block_on(fut);
    }
    let after = registry.footprint();
    // The process-wide pool of dropped instruments' figures moves with
    // the other tests of this binary running beside this one; the
    // registry's own structures do not move at all.
    let registry_only = |f: Footprint| {
        (
            f.entries,
            f.map_capacity,
            f.instruments,
            f.instrument_bytes,
            f.histogram_bytes,
        )
    };
    assert_eq!(registry_only(before), registry_only(after));
    assert_eq!(after.entries, 1);
    let d = registry.get("hot").unwrap().details;
    assert_eq!(d["calls"], n + 42);
    assert_eq!(d["failures"], n / 10);
    assert_eq!(d["latency_count"], n + 42);
}

#[tokio::test(start_paused = true)]
async fn sampled_latency_still_counts_every_call() {
    let registry = Registry::new();
    let layer = registry.layer("sampled").unwrap().sample_latency(3); // rounds to 4
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(ms)
        }));
    for ms in 1..=8 {
        svc.clone().oneshot(ms).await.unwrap();
    }
    let d = registry.get("sampled").unwrap().details;
    assert_eq!(d["calls"], 8);
    assert_eq!(d["successes"], 8);
    assert_eq!(d["in_flight"], 0);
    // Calls 0 and 4 (1 ms and 5 ms) were timed.
    assert_eq!(d["latency_count"], 2);
    let max = d["latency_max_ms"].as_f64().unwrap();
    assert!((5.0..=5.0 * 1.125).contains(&max), "{max}");
}

/// D13: `sample_latency` of the largest `u32`s saturates at one call in
/// `MAX_SAMPLE_EVERY` (it used to overflow: a panic in debug, only the
/// first call ever timed in release).
#[test]
fn huge_sample_latency_saturates() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};

    use battlement_registry::MAX_SAMPLE_EVERY;

    let registry = Registry::new();
    for (name, every) in [("max", u32::MAX), ("2^31+1", 2_147_483_649)] {
        let mut svc = ServiceBuilder::new()
            .layer(registry.layer(name).unwrap().sample_latency(every))
            .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
        let mut cx = Context::from_waker(Waker::noop());
        for i in 0..=MAX_SAMPLE_EVERY {
            assert!(svc.poll_ready(&mut cx).is_ready());
            assert!(pin!(svc.call(i)).poll(&mut cx).is_ready());
        }
        let d = registry.get(name).unwrap().details;
        assert_eq!(d["calls"], u64::from(MAX_SAMPLE_EVERY) + 1);
        // Calls 0 and 2^20 were timed.
        assert_eq!(d["latency_count"], 2, "{name}");
    }
}

/// A call whose instrument is dropped before it completes is not counted
/// anywhere: not into the dropped instrument's figures, not into a later
/// instrument's.
#[tokio::test(start_paused = true)]
async fn a_call_outliving_its_instrument_counts_nowhere() {
    let registry = Registry::new();
    let mut svc = ServiceBuilder::new()
        .layer(registry.layer("gone").unwrap())
        .service(service_fn(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(ms)
        }));
    let late = svc.ready().await.unwrap().call(10);
    let cancelled = svc.ready().await.unwrap().call(10);
    drop(svc);
    assert!(registry.get("gone").is_none());

    let next = registry.layer("next").unwrap();
    late.await.unwrap();
    drop(cancelled);
    let d = registry.get("next").unwrap().details;
    assert_eq!(d["calls"], 0);
    assert_eq!(d["successes"], 0);
    assert_eq!(d["cancelled"], 0);
    assert_eq!(d["latency_count"], 0);
    drop(next);
}

/// `LatencyClock::Auto` decides when the layer is made: a layer made
/// outside any runtime times with the fast clock (real time, so a call
/// that waits ten minutes of paused time takes microseconds), and
/// `LatencyClock::Tokio` makes it follow paused time exactly.
#[test]
fn the_latency_clock_is_decided_where_the_layer_is_made() {
    use battlement_registry::LatencyClock;

    let registry = Registry::new();
    let sleepy = || {
        service_fn(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(ms)
        })
    };
    let fast = ServiceBuilder::new()
        .layer(registry.layer("fast").unwrap())
        .service(sleepy());
    let tokio_clock = ServiceBuilder::new()
        .layer(
            registry
                .layer("tokio")
                .unwrap()
                .latency_clock(LatencyClock::Tokio),
        )
        .service(sleepy());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        fast.clone().oneshot(600_000).await.unwrap();
        tokio_clock.clone().oneshot(600_000).await.unwrap();
    });
    let p50 = |name: &str| {
        registry.get(name).unwrap().details["latency_p50_ms"]
            .as_f64()
            .unwrap()
    };
    // Exact on paused time, up to the bucket's width.
    assert!(
        (600_000.0..=600_000.0 * 1.125).contains(&p50("tokio")),
        "{}",
        p50("tokio")
    );
    // Real time: far less than the ten minutes of paused time that passed.
    assert!(p50("fast") < 60_000.0, "{}", p50("fast"));
    drop((fast, tokio_clock));
}

/// A report carries when it was made and the process's uptime (on tokio's
/// clock, exact on paused time), and each component when it last
/// changed: a change event through the registry's sink marks it.
#[tokio::test(start_paused = true)]
async fn reports_carry_a_timestamp_the_uptime_and_each_last_change() {
    let registry = Registry::new();
    let before = battlement_core_unix_ms();
    let gate = Fake::new("gate", ComponentKind::Gate);
    registry.register(&gate).unwrap();
    let first = registry.health();
    assert!(first.timestamp_unix_ms >= before);
    let registered = first.component("gate").unwrap().last_change_unix_ms;
    assert!(registered >= before && registered <= first.timestamp_unix_ms);
    tokio::time::advance(Duration::from_secs(5)).await;
    let second = registry.health();
    assert_eq!(second.uptime_seconds - first.uptime_seconds, 5.0);

    // A change event marks the component at the event's time.
    let mut events = registry.subscribe();
    registry
        .event_sink()
        .emit(&"gate".into(), || battlement_core::EventKind::Reset);
    let event = events.recv().await.unwrap();
    let at = event
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let report = registry.get("gate").unwrap();
    assert_eq!(report.last_change_unix_ms, at.max(registered));
    let json = serde_json::to_value(registry.health()).unwrap();
    assert!(json["timestamp_unix_ms"].is_u64());
    assert!(json["uptime_seconds"].is_f64());
    assert!(json["components"][0]["last_change_unix_ms"].is_u64());
}

fn battlement_core_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
