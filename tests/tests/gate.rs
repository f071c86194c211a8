//! The gate with real breakers and the registry: the governor counts open
//! breakers listed by the registry, and the level is controlled by name.

use std::time::Duration;

use battlement_breaker::Breaker;
use battlement_core::{Control, HealthStatus, Level, Priority, Shed};
use battlement_gate::{Gate, OpenBreakers, Rule};
use battlement_registry::Registry;
use tower::{Layer, Service, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn open_breakers_in_the_registry_raise_the_level_and_controls_work_by_name() {
    let registry = Registry::new();
    let breakers: Vec<Breaker> = ["db", "cache", "search"]
        .into_iter()
        .map(|n| Breaker::builder(n).build().unwrap())
        .collect();
    for b in &breakers {
        registry.register(b).unwrap();
    }
    let gate = Gate::new("edge");
    registry.register(&gate).unwrap();

    let reg = registry.clone();
    let mut governor = gate
        .governor()
        .min_dwell(Duration::from_secs(5))
        .rule(
            Rule::new(OpenBreakers::from_fn(move || {
                let names = reg.names();
                names
                    .into_iter()
                    .filter_map(|n| reg.component(&n))
                    .collect::<Vec<_>>()
            }))
            .step(Level::Minimal, 1.0, 1.0)
            .step(Level::Moderate, 2.0, 2.0),
        )
        .build()
        .unwrap();

    governor.tick();
    assert_eq!(gate.level(), Level::Normal);
    breakers[0].force_open();
    breakers[1].force_open();
    governor.tick();
    governor.tick();
    assert_eq!(gate.level(), Level::Moderate);
    assert_eq!(governor.samples().next(), Some(("open_breakers", 2.0)));

    let mut svc = gate.layer().layer(service_fn(|_: http::Request<()>| async {
        Ok::<_, std::io::Error>("ok")
    }));
    let mut req = http::Request::new(());
    req.extensions_mut().insert(Priority::Low);
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    assert!(err.is::<Shed>());

    let report = registry.health();
    let edge = report.component("edge").unwrap();
    assert_eq!(edge.status, HealthStatus::Degraded);

    // Breakers close: down one level per dwell.
    for b in &breakers {
        b.close();
    }
    for _ in 0..6 {
        tokio::time::advance(Duration::from_secs(1)).await;
        governor.tick();
    }
    assert_eq!(gate.level(), Level::Minimal);

    // By name through the registry: set, hold, release, reset.
    registry
        .control("edge", &Control::SetLevel(Level::Critical))
        .unwrap();
    governor.tick();
    assert_eq!(gate.level(), Level::Critical);
    registry.control("edge", &Control::ReleaseLevel).unwrap();
    assert!(!gate.is_manual());
    registry.control("edge", &Control::Reset).unwrap();
    assert_eq!(gate.level(), Level::Normal);
    assert!(registry.control("edge", &Control::ForceOpen).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_slow_tail_behind_a_breaker_raises_the_level_by_p99() {
    let registry = Registry::new();
    let gate = Gate::new("edge");
    registry.register(&gate).unwrap();
    let breaker = Breaker::builder("backend").build().unwrap();
    let mut governor = gate
        .governor()
        .rule(Rule::new(gate.latency_percentile_signal(99.0)).step(Level::Minimal, 1000.0, 500.0))
        .build()
        .unwrap();
    // The request's body is how long the backend takes, in milliseconds.
    let mut svc = gate.layer().layer(breaker.layer().layer(service_fn(
        |req: http::Request<u64>| async move {
            tokio::time::sleep(Duration::from_millis(*req.body())).await;
            Ok::<_, std::io::Error>("ok")
        },
    )));
    let call = |ms: u64, p: Priority| {
        let mut req = http::Request::new(ms);
        req.extensions_mut().insert(p);
        req
    };
    for ms in std::iter::repeat_n(10, 98).chain([1500, 1500]) {
        svc.ready()
            .await
            .unwrap()
            .call(call(ms, Priority::Normal))
            .await
            .unwrap();
    }
    // A mean of 39.8 ms would not have moved it; the p99 of 1.5 s does.
    assert_eq!(governor.tick(), Some(Level::Minimal));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(call(10, Priority::Sheddable))
        .await
        .unwrap_err();
    assert!(err.is::<Shed>());
    let report = registry.health();
    let edge = report.component("edge").unwrap();
    assert_eq!(edge.status, HealthStatus::Degraded);
    let reason = edge.details["reason"].as_str().unwrap();
    assert!(reason.starts_with("latency_p99_ms "), "{reason}");
}
