//! The `hyper_client` example end to end over 127.0.0.1: retries of
//! idempotent requests inside the budget, the budget stamped on every
//! attempt, and `POST` sent once without an `Idempotency-Key`.

use battlement::prelude::*;
use battlement_examples::client::serve;
use battlement_examples::hyper_client::{call, client, upstream};
use http::{Method, StatusCode};

#[tokio::test]
async fn retries_are_safe_and_carry_the_budget() {
    let (router, seen) = upstream();
    let addr = serve(router).await.unwrap();
    let registry = Registry::new();
    let mut svc = client(&registry).unwrap();
    let url = |p: &str| format!("http://{addr}{p}");

    let get = call(&mut svc, Method::GET, &url("/items/a"), None)
        .await
        .unwrap();
    assert_eq!(get, StatusCode::OK);
    let post = call(&mut svc, Method::POST, &url("/items/b"), None)
        .await
        .unwrap();
    assert_eq!(
        post,
        StatusCode::SERVICE_UNAVAILABLE,
        "a POST is not retried"
    );
    let keyed = call(&mut svc, Method::POST, &url("/items/c"), Some("k"))
        .await
        .unwrap();
    assert_eq!(keyed, StatusCode::OK);

    let calls = seen.calls.lock().unwrap().clone();
    assert_eq!((calls["a"], calls["b"], calls["c"]), (3, 1, 3));
    // Every attempt carried the time left, never more than the attempt's
    // 500 ms bound (less the 5 ms margin) nor the total.
    let budgets = seen.budgets_ms.lock().unwrap().clone();
    assert_eq!(budgets.len(), 7);
    assert!(budgets.iter().all(|&ms| ms > 0 && ms <= 495), "{budgets:?}");

    let report = registry.get("upstream/instrument").unwrap();
    assert_eq!(report.details["calls"], serde_json::json!(3));
    assert_eq!(report.details["failures"], serde_json::json!(1));
    let breaker = registry.get("upstream/breaker").unwrap();
    assert_eq!(breaker.details["state"], serde_json::json!("closed"));
}
