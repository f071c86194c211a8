//! The degradation gate: shed low-priority work first when the level rises,
//! set by hand and by a governor watching the gate's own error rate.

use std::time::Duration;

use battlement::gate::{Gate, Level, Priority, Rule};
use battlement::{BoxError, EventLog, Shed};
use tower::{Layer, Service, ServiceExt, service_fn};

fn request(priority: Priority) -> http::Request<()> {
    let mut req = http::Request::new(());
    req.extensions_mut().insert(priority);
    req
}

pub(crate) async fn run() {
    println!("== gate ==");
    let log = EventLog::new();
    let gate = Gate::builder("checkout")
        .events(log.sink())
        .build()
        .expect("valid gate");
    let mut svc = gate
        .layer()
        .layer(service_fn(|req: http::Request<()>| async move {
            // Sheddable work fails here, to give the governor something to see.
            match req.extensions().get::<Priority>() {
                Some(Priority::Sheddable) => Err::<&str, BoxError>("backend overloaded".into()),
                _ => Ok("served"),
            }
        }));

    // By hand: at Severe only Critical and High work gets through.
    gate.set_level(Level::Severe);
    for p in Priority::ALL {
        let res = svc.ready().await.expect("ready").call(request(p)).await;
        match res {
            Ok(r) => println!("  level {} / {:<9} -> {r}", gate.level(), p.as_str()),
            Err(e) if e.is::<Shed>() => {
                println!("  level {} / {:<9} -> shed: {e}", gate.level(), p.as_str())
            }
            Err(e) => println!("  level {} / {:<9} -> error: {e}", gate.level(), p.as_str()),
        }
    }
    gate.release();
    gate.reset();

    // Automatically: a governor raises the level on the gate's error rate.
    let mut governor = gate
        .governor()
        .interval(Duration::from_secs(1))
        .min_dwell(Duration::from_secs(10))
        .rule(
            Rule::new(gate.error_rate_signal())
                .step(Level::Minimal, 0.05, 0.02)
                .step(Level::Moderate, 0.20, 0.10),
        )
        .build()
        .expect("valid governor");
    // Simulated ticks, one second apart (evaluate takes the tick's time).
    let t0 = tokio::time::Instant::now();
    for tick in 0..25u64 {
        for p in [Priority::Normal, Priority::Sheddable, Priority::High] {
            for _ in 0..5 {
                let _ = svc.ready().await.expect("ready").call(request(p)).await;
            }
        }
        if let Some(level) = governor.evaluate(t0 + Duration::from_secs(tick)) {
            println!("  t={tick:>2}s governor -> {level} ({})", gate.reason());
        }
    }
    println!(
        "  admitted sheddable {}, shed sheddable {}, {} event(s)",
        gate.admitted(Priority::Sheddable),
        gate.shed(Priority::Sheddable),
        log.events().len()
    );
}
