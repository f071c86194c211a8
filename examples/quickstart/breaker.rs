//! Circuit breaker: trips on consecutive failures, rejects fast while
//! open, probes and closes again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use battlement::breaker::{Breaker, CircuitState};
use battlement::prelude::*;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Calls a backend that is down, then up again, through a breaker and
/// prints every transition and rejection.
pub(crate) async fn run() {
    println!("== breaker: trip, reject fast, probe, close");
    let log = battlement::EventLog::new();
    let breaker = Breaker::builder("backend")
        .consecutive_failures(3)
        .open_duration(Duration::from_millis(200))
        .events(log.sink())
        .build()
        .expect("valid breaker config");
    let down = Arc::new(AtomicBool::new(true));
    let d = down.clone();
    let mut svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .service_fn(move |n: u32| {
            let down = d.load(Ordering::SeqCst);
            async move {
                if down {
                    Err::<String, BoxError>(Box::new(std::io::Error::from(
                        std::io::ErrorKind::ConnectionRefused,
                    )))
                } else {
                    Ok(format!("call {n} served"))
                }
            }
        });
    for n in 1..=5 {
        match svc.ready().await.expect("ready").call(n).await {
            Ok(body) => println!("  call {n}: {body}"),
            Err(e) if e.is::<CircuitOpen>() => println!("  call {n}: rejected fast: {e}"),
            Err(e) => println!("  call {n}: failed: {e}"),
        }
    }
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probe = svc.ready().await.expect("ready").call(6).await;
    println!("  call 6 (probe): {probe:?}");
    assert_eq!(breaker.state(), CircuitState::Closed);
    for event in log.events() {
        println!("  event: {event}");
    }
    let m = breaker.metrics();
    println!(
        "  state {}, {} calls, {} failures, {} rejections",
        m.state, m.calls, m.failures, m.rejections
    );
}
