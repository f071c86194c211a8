//! The gate on a service: admission at every level, custom tables, the
//! priority extractors, the `Shed` error, counters, health and controls.
#![cfg(feature = "http")]

use std::time::Duration;

use battlement_core::{BoxError, Control, ControlError, EventKind, EventLog, HealthStatus, Shed};
use battlement_gate::{
    AdmissionTable, Gate, GateLayer, HeaderPriority, Level, Priority, Rule, Signal, signal_fn,
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

type Req = http::Request<()>;

fn req(p: Option<Priority>) -> Req {
    let mut r = http::Request::new(());
    if let Some(p) = p {
        r.extensions_mut().insert(p);
    }
    r
}

fn echo() -> impl Service<Req, Response = &'static str, Error = BoxError, Future: Send> + Clone {
    service_fn(|_r: Req| async { Ok::<_, BoxError>("ok") })
}

#[tokio::test(start_paused = true)]
async fn default_table_at_every_level() {
    let gate = Gate::new("api");
    let mut svc = gate.layer().layer(echo());
    let mut expected_admitted = [0u64; 5];
    let mut expected_shed = [0u64; 5];
    for (l, level) in Level::ALL.into_iter().enumerate() {
        gate.set_level(level);
        for (p, priority) in Priority::ALL.into_iter().enumerate() {
            let res = svc.ready().await.unwrap().call(req(Some(priority))).await;
            let admitted = p + l < 5; // each level up sheds one more priority
            assert_eq!(res.is_ok(), admitted, "{level} {priority}");
            if admitted {
                expected_admitted[p] += 1;
            } else {
                expected_shed[p] += 1;
                let err = res.unwrap_err();
                let shed = err.downcast_ref::<Shed>().expect("a Shed error");
                assert_eq!(shed.level, level);
                assert_eq!(shed.priority, priority);
            }
        }
    }
    for p in Priority::ALL {
        assert_eq!(gate.admitted(p), expected_admitted[p.index()], "{p}");
        assert_eq!(gate.shed(p), expected_shed[p.index()], "{p}");
    }
}

#[tokio::test(start_paused = true)]
async fn custom_table() {
    // Only critical work at Moderate and above; High survives Minimal.
    let table = AdmissionTable::from_lowest_admitted([
        Priority::Sheddable,
        Priority::High,
        Priority::Critical,
        Priority::Critical,
        Priority::Critical,
    ]);
    let gate = Gate::builder("api").table(table).build().unwrap();
    let mut svc = gate.layer().layer(echo());
    gate.set_level(Level::Minimal);
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(req(Some(Priority::High)))
            .await
            .is_ok()
    );
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(req(Some(Priority::Normal)))
            .await
            .is_err()
    );
    gate.set_level(Level::Moderate);
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(req(Some(Priority::High)))
            .await
            .is_err()
    );
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(req(Some(Priority::Critical)))
            .await
            .is_ok()
    );
    assert_eq!(gate.table(), &table);
}

#[test]
fn invalid_config_rejected() {
    let err = Gate::builder("g")
        .table(AdmissionTable::default().admit(Level::Critical, Priority::Sheddable, true))
        .build()
        .unwrap_err();
    assert_eq!(err.component, "gate");
    assert_eq!(err.field, "admission_table");
    let err = Gate::builder("g")
        .retry_after(Some(Duration::from_secs(7200)))
        .build()
        .unwrap_err();
    assert_eq!(err.field, "retry_after");
    assert!(err.bound.contains("1 hour"));
}

#[tokio::test(start_paused = true)]
async fn priority_extractors() {
    // Default priority when the request says nothing.
    let gate = Gate::builder("api")
        .default_priority(Priority::Sheddable)
        .build()
        .unwrap();
    gate.set_level(Level::Minimal);
    let mut svc = gate.layer().layer(echo());
    assert!(svc.ready().await.unwrap().call(req(None)).await.is_err());
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(req(Some(Priority::Low)))
            .await
            .is_ok()
    );
    assert_eq!(gate.shed(Priority::Sheddable), 1);

    // A header, then the extensions.
    let mut svc = GateLayer::new(gate.clone())
        .extractor(HeaderPriority::new())
        .layer(echo());
    let with_header = |v: &'static str| {
        http::Request::builder()
            .header("x-priority", v)
            .body(())
            .unwrap()
    };
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(with_header("low"))
            .await
            .is_ok()
    );
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(with_header("sheddable"))
            .await
            .is_err()
    );
    // Unparsable header: extensions, then the default.
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(with_header("??"))
            .await
            .is_err()
    );

    // A function of the request (any request type).
    let mut svc = GateLayer::new(gate.clone())
        .priority_fn(|path: &&str| path.starts_with("/health").then_some(Priority::Critical))
        .layer(service_fn(|_: &str| async { Ok::<_, BoxError>(()) }));
    gate.set_level(Level::Critical);
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call("/health/live")
            .await
            .is_ok()
    );
    assert!(svc.ready().await.unwrap().call("/orders").await.is_err());
}

#[tokio::test(start_paused = true)]
async fn shed_fails_fast_without_calling_inner() {
    let log = EventLog::new();
    let gate = Gate::builder("edge")
        .retry_after(Some(Duration::from_secs(3)))
        .events(log.sink())
        .build()
        .unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, &'static str, _>(gate.layer());
    gate.set_level(Level::Severe);
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let err = svc.call(req(Some(Priority::Normal))).await.unwrap_err();
    let shed = err.downcast_ref::<Shed>().unwrap();
    assert_eq!(
        *shed,
        Shed {
            gate: "edge".into(),
            level: Level::Severe,
            priority: Priority::Normal,
            retry_after: Some(Duration::from_secs(3)),
        }
    );
    // The inner service saw nothing and kept its readiness for the next call.
    assert!(handle.poll_request().is_pending());
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req(Some(Priority::High)));
    let (r, send) = handle.next_request().await.unwrap();
    assert_eq!(r.extensions().get::<Priority>(), Some(&Priority::High));
    send.send_response("ok");
    assert_eq!(fut.await.unwrap(), "ok");
    let kinds = log.kinds();
    assert!(kinds.contains(&EventKind::Shed {
        level: Level::Severe,
        priority: Priority::Normal
    }));
    assert!(kinds.iter().any(|k| matches!(
        k,
        EventKind::LevelChanged { from: Level::Normal, to: Level::Severe, reason } if reason == "set by hand"
    )));
}

#[tokio::test(start_paused = true)]
async fn readiness_and_inner_errors_pass_through() {
    let gate = Gate::new("g");
    let (mut svc, mut handle) = mock::spawn_layer::<Req, &'static str, _>(gate.layer());
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req(None));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(std::io::Error::other("boom"));
    assert_eq!(fut.await.unwrap_err().to_string(), "boom");
}

#[tokio::test(start_paused = true)]
async fn health_and_controls() {
    let log = EventLog::new();
    let gate = Gate::builder("api").events(log.sink()).build().unwrap();
    let c = battlement_core::AsComponent::as_component(&gate);
    assert_eq!(c.kind(), battlement_core::ComponentKind::Gate);
    assert_eq!(c.name(), "api");
    let expect = [
        (Level::Normal, HealthStatus::Healthy),
        (Level::Minimal, HealthStatus::Degraded),
        (Level::Moderate, HealthStatus::Degraded),
        (Level::Severe, HealthStatus::Unhealthy),
        (Level::Critical, HealthStatus::Unhealthy),
    ];
    for (level, status) in expect {
        c.control(&Control::SetLevel(level)).unwrap();
        assert_eq!(gate.level(), level);
        assert_eq!(c.health().status, status, "{level}");
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    let mut svc = gate.layer().layer(echo());
    let _ = svc
        .ready()
        .await
        .unwrap()
        .call(req(Some(Priority::Low)))
        .await;
    let h = c.health();
    assert_eq!(h.details["level"], "critical");
    assert_eq!(h.details["manual"], true);
    assert_eq!(h.details["reason"], "set by hand");
    assert_eq!(h.details["since_ms"], 5000);
    assert_eq!(h.details["shed"]["low"], 1);
    assert_eq!(h.details["admitted"]["low"], 0);
    assert!(
        h.metrics
            .iter()
            .any(|m| m.name == "shed_total" && m.value == 1.0)
    );
    assert_eq!(gate.since(), Instant::now() - Duration::from_secs(5));

    c.control(&Control::ReleaseLevel).unwrap();
    assert!(!gate.is_manual());
    // No governor to hand the level to: back to Normal, not shedding.
    assert_eq!(gate.level(), Level::Normal);
    assert_eq!(gate.reason(), "released, no governor");
    c.control(&Control::SetLevel(Level::Critical)).unwrap();
    c.control(&Control::Reset).unwrap();
    assert_eq!(gate.level(), Level::Normal);
    assert_eq!(gate.reason(), "reset");
    assert_eq!(log.kinds().last(), Some(&EventKind::Reset));
    assert!(matches!(
        c.control(&Control::ForceOpen),
        Err(ControlError::Unsupported { .. })
    ));
    // Counters survive a reset.
    assert_eq!(gate.shed(Priority::Low), 1);
}

/// Calls `svc` once at `Low` priority and three times at `High`.
async fn one_low_three_high<S: Service<Req>>(svc: &mut S) {
    for p in [
        Priority::Low,
        Priority::High,
        Priority::High,
        Priority::High,
    ] {
        let _ = svc.ready().await.ok().unwrap().call(req(Some(p))).await;
    }
}

#[tokio::test(start_paused = true)]
async fn own_signals_see_outcomes_latency_and_in_flight() {
    let gate = Gate::new("api");
    let mut errors = gate.error_rate_signal().min_calls(1);
    let mut latency = gate.latency_signal();
    let mut in_flight = gate.in_flight_signal();
    let mut svc = gate.layer().layer(service_fn(|r: Req| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if r.extensions().get::<Priority>() == Some(&Priority::Low) {
            Err::<(), BoxError>("bad".into())
        } else {
            Ok(())
        }
    }));
    let now = Instant::now();
    assert_eq!(errors.sample(now), 0.0);
    one_low_three_high(&mut svc).await;
    assert_eq!(errors.sample(now), 0.25);
    assert!((latency.sample(now) - 20.0).abs() < 1e-6);
    // The next interval saw nothing.
    assert_eq!(errors.sample(now), 0.0);
    assert_eq!(latency.sample(now), 0.0);

    let fut = svc.ready().await.unwrap().call(req(None));
    assert_eq!(in_flight.sample(now), 1.0);
    assert_eq!(gate.in_flight(), 1);
    drop(fut); // cancelled: leaves the in-flight count, counts as nothing
    assert_eq!(in_flight.sample(now), 0.0);
    assert_eq!(errors.sample(now), 0.0);
}

/// `release` with no governor alive returns the gate to `Normal`; with
/// one, the governor takes the level from where it is.
#[tokio::test(start_paused = true)]
async fn release_without_a_governor_returns_to_normal() {
    let gate = Gate::new("api");
    gate.set_level(Level::Severe);
    gate.release();
    assert_eq!(gate.level(), Level::Normal);
    assert!(gate.admits(Priority::Sheddable));

    let governor = gate
        .governor()
        .rule(Rule::new(signal_fn("quiet", |_| 0.0)).step(Level::Minimal, 1.0, 0.5))
        .build()
        .unwrap();
    gate.set_level(Level::Severe);
    gate.release();
    assert_eq!(
        gate.level(),
        Level::Severe,
        "the governor lowers it after its dwell"
    );
    drop(governor);
    gate.set_level(Level::Moderate);
    gate.release();
    assert_eq!(gate.level(), Level::Normal, "its governor is gone");
}

/// The error-rate signal counts failures by the layer's classifier: a
/// 5xx that travels as `Ok` (as behind axum) is an error.
#[tokio::test(start_paused = true)]
async fn the_error_rate_counts_failures_by_the_classifier() {
    use battlement_core::{Failure, FailureKind, Outcome};
    let gate = Gate::new("api");
    let mut errors = gate.error_rate_signal().min_calls(1);
    let backend = service_fn(|r: Req| async move {
        let low = r.extensions().get::<Priority>() == Some(&Priority::Low);
        Ok::<u16, BoxError>(if low { 503 } else { 200 })
    });
    let mut by_default = gate.layer().layer(backend);
    let mut by_status = GateLayer::new(gate.clone())
        .classifier(|res: &Result<u16, BoxError>| match res {
            Ok(status) if *status >= 500 => {
                Outcome::Failure(Failure::new(FailureKind::Unavailable))
            }
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure(Failure::new(FailureKind::Unknown)),
        })
        .layer(backend);
    let now = Instant::now();
    one_low_three_high(&mut by_default).await;
    assert_eq!(
        errors.sample(now),
        0.0,
        "the default classifier: every Ok succeeds"
    );
    one_low_three_high(&mut by_status).await;
    assert_eq!(errors.sample(now), 0.25);
}

/// A flood of sheds is a count and an event per level change or per
/// interval, not an event per shed.
#[tokio::test(start_paused = true)]
async fn a_flood_of_sheds_is_a_count_and_a_few_events() {
    let log = EventLog::new();
    let gate = Gate::builder("edge").events(log.sink()).build().unwrap();
    let mut svc = gate.layer().layer(echo());
    let sheds = |log: &EventLog| {
        log.kinds()
            .into_iter()
            .filter(|k| matches!(k, EventKind::Shed { .. }))
            .count()
    };
    gate.set_level(Level::Severe);
    for _ in 0..1000 {
        assert!(
            svc.ready()
                .await
                .unwrap()
                .call(req(Some(Priority::Low)))
                .await
                .is_err()
        );
    }
    assert_eq!(gate.shed(Priority::Low), 1000);
    assert_eq!(sheds(&log), 1);
    tokio::time::advance(Duration::from_millis(999)).await;
    let _ = svc
        .ready()
        .await
        .unwrap()
        .call(req(Some(Priority::Low)))
        .await;
    assert_eq!(sheds(&log), 1, "within the interval");
    tokio::time::advance(Duration::from_millis(1)).await;
    let _ = svc
        .ready()
        .await
        .unwrap()
        .call(req(Some(Priority::Low)))
        .await;
    assert_eq!(sheds(&log), 2, "one per interval");
    gate.set_level(Level::Critical);
    let _ = svc
        .ready()
        .await
        .unwrap()
        .call(req(Some(Priority::Low)))
        .await;
    assert_eq!(sheds(&log), 3, "the first at a new level is told");
    assert_eq!(gate.shed(Priority::Low), 1003);

    // Zero tells every shed.
    let log = EventLog::new();
    let gate = Gate::builder("all")
        .events(log.sink())
        .shed_event_interval(Duration::ZERO)
        .initial_level(Level::Critical)
        .build()
        .unwrap();
    let mut svc = gate.layer().layer(echo());
    for _ in 0..3 {
        let _ = svc
            .ready()
            .await
            .unwrap()
            .call(req(Some(Priority::Low)))
            .await;
    }
    assert_eq!(sheds(&log), 3);
}
