//! `PolicyBuilder::carry_deadline` over a real axum server and a reqwest
//! client on 127.0.0.1: with `Carry::IfCarried` a route's handler finds
//! no `Deadline` in the request's extensions but has it in scope, and the
//! route still answers `504` when its budget passes; with the default
//! (`Carry::Always`) the request carries it.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use battlement::deadline::Carry;
use battlement::http::ErrorResponseLayer;
use battlement::prelude::*;
use battlement_examples::client::serve;
use http::Request;
use tower::ServiceBuilder;

/// What a handler sees of its deadline: on the request, and in scope.
async fn seen(req: Request<Body>) -> String {
    let on_request = req.extensions().get::<Deadline>().is_some();
    let in_scope = battlement::core::deadline::current().map(|d| d.remaining().as_millis() as u64);
    serde_json::json!({ "on_request": on_request, "in_scope_ms": in_scope }).to_string()
}

fn router(carry: Carry, total: Duration) -> Router {
    let policy = Policy::http("route")
        .without_retry()
        .total(total)
        .attempt_timeout(total)
        .carry_deadline(carry)
        .build()
        .unwrap()
        .leak();
    Router::new()
        .route("/seen", get(seen))
        .route("/hang", get(std::future::pending::<&'static str>))
        .route_layer(
            ServiceBuilder::new()
                .layer(ErrorResponseLayer::new())
                .layer(policy),
        )
}

async fn fetch(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let res = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn a_route_in_scope_only_sees_and_enforces_its_deadline() {
    let addr = serve(router(Carry::IfCarried, Duration::from_millis(400)))
        .await
        .unwrap();
    let (status, body) = fetch(addr, "/seen").await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["on_request"], false, "{body}");
    let left = body["in_scope_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 400, "{body}");

    // The budget still cuts a handler that never answers.
    let (status, body) = fetch(addr, "/hang").await;
    assert_eq!(status, 504, "{body}");
}

#[tokio::test]
async fn by_default_the_request_carries_it() {
    let addr = serve(router(Carry::Always, Duration::from_secs(5)))
        .await
        .unwrap();
    let (status, body) = fetch(addr, "/seen").await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["on_request"], true, "{body}");
    assert!(body["in_scope_ms"].as_u64().unwrap() <= 5_000, "{body}");
}
