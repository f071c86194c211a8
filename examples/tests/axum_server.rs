//! The `axum_server` example end to end: over a real socket on
//! 127.0.0.1, and in process on paused time for the breaker's recovery.

use std::sync::atomic::Ordering;
use std::time::Duration;

use battlement::prelude::*;
use battlement_examples::axum_server::{Recover, app, tour};
use battlement_examples::client::serve;
use tower::ServiceExt;

#[tokio::test]
async fn the_tour_over_loopback() {
    let app = app(Duration::from_secs(600)).unwrap();
    let addr = serve(app.router.clone()).await.unwrap();
    let steps = tour(addr, &app, Recover::Control).await.unwrap();
    let statuses: Vec<u16> = steps.iter().map(|s| s.answer.status.as_u16()).collect();
    assert_eq!(
        statuses,
        [
            200, 200, 500, 500, 500, 200, 200, 503, 200, 200, 200, 200, 200
        ],
        "{steps:#?}"
    );
    // The open circuit is answered by the fallback, marked: order 1 by its
    // last good body (the cache of its bytes), order 5, never served, by
    // the placeholder.
    let cached = &steps[5].answer;
    assert_eq!(cached.header("x-battlement-fallback"), Some("cache"));
    assert_eq!(cached.body, "order 1");
    let placeholder = &steps[8].answer;
    assert_eq!(placeholder.header("x-battlement-fallback"), Some("value"));
    assert_eq!(placeholder.body, "order (unavailable)");
    // The shed request is a 503 with Retry-After and a JSON body.
    let shed = &steps[7].answer;
    assert!(shed.header("retry-after").is_some());
    let body: serde_json::Value = serde_json::from_str(&shed.body).unwrap();
    assert!(body["message"].as_str().unwrap().contains("shed"), "{body}");
    // Three failures reached the handler; the rejected calls did not.
    assert_eq!(app.backend.orders_calls.load(Ordering::SeqCst), 5);
    // Per-route policies: the orders route has a breaker, reports none.
    assert!(app.registry.get("orders/breaker").is_some());
    assert!(app.registry.get("reports/breaker").is_none());
    assert!(app.registry.get("reports/deadline").is_some());
    let health: serde_json::Value = serde_json::from_str(&steps[12].answer.body).unwrap();
    assert_eq!(health["status"], "healthy", "{health}");
}

fn get(path: &str, priority: Option<&str>) -> http::Request<axum::body::Body> {
    let mut req = http::Request::get(path);
    if let Some(p) = priority {
        req = req.header("x-priority", p);
    }
    req.body(axum::body::Body::empty()).unwrap()
}

/// On paused time, in process: a burst of 500s trips the breaker, the
/// open circuit is answered by the order's last good body, and once its
/// open duration has passed a probe closes it again.
#[tokio::test(start_paused = true)]
async fn a_burst_trips_the_breaker_and_a_probe_closes_it() {
    let app = app(Duration::from_secs(5)).unwrap();
    let breaker = app.orders.breaker().unwrap().clone();
    let call = |path: &'static str| app.router.clone().oneshot(get(path, None));

    assert_eq!(call("/orders/1").await.unwrap().status(), 200);
    app.backend.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(call("/orders/1").await.unwrap().status(), 500);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    app.backend.failing.store(false, Ordering::SeqCst);
    // Still open: the fallback answers without calling the handler, with
    // order 1's last good body.
    let res = call("/orders/1").await.unwrap();
    assert_eq!(res.headers()["x-battlement-fallback"], "cache");
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(body, "order 1");
    assert_eq!(app.backend.orders_calls.load(Ordering::SeqCst), 4);

    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(call("/orders/1").await.unwrap().status(), 200);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

/// The gate reads `x-priority`: at `severe`, low is shed and critical is
/// not, on the orders route only.
#[tokio::test(start_paused = true)]
async fn priorities_come_from_the_header() {
    let app = app(Duration::from_secs(5)).unwrap();
    app.orders.gate().unwrap().set_level(Level::Severe);
    let res = app
        .router
        .clone()
        .oneshot(get("/orders/1", Some("low")))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let res = app
        .router
        .clone()
        .oneshot(get("/orders/1", Some("critical")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .router
        .clone()
        .oneshot(get("/reports", Some("low")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the reports route has no gate");
}
