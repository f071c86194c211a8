//! Fallback over breakers: an open primary triggers the fallback, and a
//! fallback source behind an open breaker is skipped without a call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use battlement_breaker::{Breaker, CircuitState};
use battlement_core::{BoxError, CircuitOpen, EventKind, EventLog, FailureKind, FallbackFailed};
use battlement_fallback::FallbackLayer;
use tower::{Layer, Service, ServiceExt, service_fn};

fn counted(
    calls: Arc<AtomicU32>,
    answer: &'static str,
) -> impl Service<u32, Response = String, Error = BoxError, Future: Send> + Clone + Send + Sync {
    service_fn(move |_: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(answer.to_owned()) }
    })
}

#[tokio::test(start_paused = true)]
async fn open_primary_triggers_and_open_secondary_is_skipped() {
    let log = EventLog::new();
    let primary_breaker = Breaker::builder("primary").build().unwrap();
    let secondary_breaker = Breaker::builder("secondary").build().unwrap();
    primary_breaker.force_open();
    secondary_breaker.force_open();
    assert_eq!(secondary_breaker.state(), CircuitState::ForcedOpen);

    let (primary_calls, secondary_calls, emergency_calls) = (
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicU32::new(0)),
    );
    let secondary = secondary_breaker
        .layer()
        .layer(counted(secondary_calls.clone(), "secondary"));
    let layer = FallbackLayer::builder("reads")
        .service("secondary", secondary)
        .service("emergency", counted(emergency_calls.clone(), "emergency"))
        .events(log.sink())
        .build()
        .unwrap();
    let mut svc = layer.layer(
        primary_breaker
            .layer()
            .layer(counted(primary_calls.clone(), "primary")),
    );

    let res = svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(res, "emergency");
    assert_eq!(primary_calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        secondary_calls.load(Ordering::SeqCst),
        0,
        "skipped without a call"
    );
    assert_eq!(emergency_calls.load(Ordering::SeqCst), 1);
    let kinds = log.kinds();
    assert!(kinds.contains(&EventKind::Skipped {
        backend: "secondary".into(),
        reason: "circuit open".into()
    }));
    assert!(kinds.contains(&EventKind::Fallback {
        source: "emergency".into(),
        kind: FailureKind::Rejected
    }));
    assert_eq!(layer.health().details["sources"]["secondary"]["skipped"], 1);
}

#[tokio::test(start_paused = true)]
async fn all_open_reports_every_rejection() {
    let primary_breaker = Breaker::builder("primary").build().unwrap();
    let secondary_breaker = Breaker::builder("secondary").build().unwrap();
    primary_breaker.force_open();
    secondary_breaker.force_open();
    let calls = Arc::new(AtomicU32::new(0));
    let layer = FallbackLayer::builder("reads")
        .service(
            "secondary",
            secondary_breaker.layer().layer(counted(calls.clone(), "s")),
        )
        .build()
        .unwrap();
    let mut svc = layer.layer(primary_breaker.layer().layer(counted(calls.clone(), "p")));
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    let ff = err.downcast_ref::<FallbackFailed>().unwrap();
    assert_eq!(
        ff.primary
            .downcast_ref::<CircuitOpen>()
            .unwrap()
            .name
            .as_ref(),
        "primary"
    );
    assert_eq!(ff.fallbacks.len(), 1);
    assert!(ff.fallbacks[0].1.is::<CircuitOpen>());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
