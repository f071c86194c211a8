//! `HttpClassifier` on real reqwest responses and errors, over 127.0.0.1.
#![cfg(feature = "reqwest")]

use std::time::Duration;

use battlement_core::{BoxError, Classify, FailureKind, Outcome};
use battlement_http::HttpClassifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn judge(result: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    HttpClassifier::new().classify(&result.map_err(BoxError::from))
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_connection_is_a_retryable_network_failure() {
    // A port nobody listens on: bound, then closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let result = reqwest::Client::new()
        .get(format!("http://{addr}/"))
        .send()
        .await;
    assert!(result.as_ref().unwrap_err().is_connect());
    let out = judge(result);
    let failure = out.as_failure().unwrap();
    assert_eq!(failure.kind, FailureKind::Network);
    assert!(failure.retryable);
}

/// A server that accepts and never answers: reqwest's timeout, on paused
/// time (the clock jumps as soon as the runtime has nothing else to do).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_timeout_is_a_retryable_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let result = reqwest::Client::new()
        .get(format!("http://{addr}/"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(result.as_ref().unwrap_err().is_timeout());
    let out = judge(result);
    let failure = out.as_failure().unwrap();
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert!(failure.retryable);
    drop(listener);
}

#[tokio::test(flavor = "current_thread")]
async fn a_response_is_judged_by_status_and_retry_after() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        for answer in [
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ] {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await.unwrap();
            conn.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    // A fresh connection for each answer.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://{addr}/");
    let unavailable = judge(client.get(&url).send().await);
    let failure = unavailable.as_failure().unwrap();
    assert_eq!(failure.kind, FailureKind::Unavailable);
    assert_eq!(failure.retry_after, Some(Duration::from_secs(2)));
    assert!(judge(client.get(&url).send().await).is_ignored());
    assert!(judge(client.get(&url).send().await).is_success());
    server.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_bad_request_is_not_retryable() {
    let result = reqwest::Client::new().get("http://[::1").send().await;
    assert!(result.as_ref().unwrap_err().is_builder());
    let out = judge(result);
    let failure = out.as_failure().unwrap();
    assert_eq!(failure.kind, FailureKind::InvalidRequest);
    assert!(!failure.retryable);
}
