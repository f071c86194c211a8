//! The `reqwest_client` example end to end over 127.0.0.1: a
//! `reqwest::Client` in `Policy::http` against a server that fails and
//! then recovers.

use battlement::prelude::*;
use battlement::{FailureKind, RetryStop};
use battlement_examples::client::serve;
use battlement_examples::hyper_client::upstream;
use battlement_examples::reqwest_client::{client, request, send};
use reqwest::Method;

#[tokio::test]
async fn safe_requests_are_retried_until_the_server_recovers() {
    let (router, seen) = upstream();
    let addr = serve(router).await.unwrap();
    let registry = Registry::new();
    let mut svc = client(&registry).unwrap();
    let url = |p: &str| format!("http://{addr}/items/{p}");
    let mut call = async |m: Method, p: &str, key: Option<&str>, streaming: bool| {
        send(&mut svc, request(m, &url(p), key, streaming).unwrap())
            .await
            .unwrap()
    };

    assert_eq!(call(Method::GET, "a", None, false).await, 200);
    assert_eq!(call(Method::POST, "b", None, false).await, 503);
    assert_eq!(call(Method::POST, "c", Some("k"), false).await, 200);
    assert_eq!(call(Method::POST, "d", Some("k"), true).await, 503);
    let calls = seen.calls.lock().unwrap().clone();
    assert_eq!(calls["a"], 3, "two 503s, then 200");
    assert_eq!(calls["b"], 1, "a POST is sent once");
    assert_eq!(calls["c"], 3, "a POST with an Idempotency-Key is retried");
    assert_eq!(
        calls["d"], 1,
        "a streaming body cannot be copied: sent once"
    );

    let report = registry.get("reqwest/instrument").unwrap();
    assert_eq!(report.details["calls"], serde_json::json!(4));
}

#[tokio::test]
async fn a_refused_connection_spends_the_retries() {
    let registry = Registry::new();
    let mut svc = client(&registry).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let req = request(Method::GET, &format!("http://{closed}/"), None, false).unwrap();
    let err = send(&mut svc, req).await.unwrap_err();
    let exhausted = err.downcast_ref::<RetriesExhausted>().expect("retried");
    assert_eq!(exhausted.attempts, 3);
    assert_eq!(exhausted.reason, RetryStop::MaxAttempts);
    let last = exhausted.last.downcast_ref::<reqwest::Error>().unwrap();
    assert!(last.is_connect());
    let kind = battlement::http::HttpClassifier::new()
        .classify(&Err::<reqwest::Response, BoxError>(err))
        .as_failure()
        .unwrap()
        .kind;
    assert_eq!(kind, FailureKind::Network);
}
