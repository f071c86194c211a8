//! `ReplayBodyLayer` above `Policy::http` over a real hyper client and
//! server on 127.0.0.1: a streaming upload under the bound is retried and
//! the server sees the same bytes on every attempt; one over the bound is
//! sent once, whole, and its failure is the answer.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::put;
use battlement::http::{ReplayBody, ReplayBodyLayer};
use battlement::prelude::*;
use battlement_examples::client::serve;
use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};

/// A streaming upload: one frame per poll, no length known up front, so
/// it goes out chunked, as a file or a socket would.
struct Upload(std::vec::IntoIter<Bytes>);

impl http_body::Body for Upload {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.0.next().map(|b| Ok(http_body::Frame::data(b))))
    }
}

fn upload(chunks: usize, size: usize) -> (Upload, Bytes) {
    let frames: Vec<Bytes> = (0..chunks)
        .map(|i| Bytes::from(vec![b'a' + (i % 26) as u8; size]))
        .collect();
    let whole = frames.concat().into();
    (Upload(frames.into_iter()), whole)
}

type Bodies = Arc<Mutex<HashMap<String, Vec<Bytes>>>>;

/// Records every body it is sent and answers 503 to the first two of
/// each blob.
fn blobs() -> (Router, Bodies) {
    let seen = Bodies::default();
    let router = Router::new()
        .route(
            "/blob/{id}",
            put(
                |State(seen): State<Bodies>, Path(id): Path<String>, body: Bytes| async move {
                    let mut seen = seen.lock().unwrap();
                    let attempts = seen.entry(id).or_default();
                    attempts.push(body);
                    if attempts.len() <= 2 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::CREATED
                    }
                },
            ),
        )
        .with_state(seen.clone());
    (router, seen)
}

async fn put_blob(
    addr: std::net::SocketAddr,
    id: &str,
    body: Upload,
    max_bytes: usize,
) -> StatusCode {
    let policy = Policy::http("blobs")
        .total(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(1))
        .retry(|r| r.max_attempts(3).backoff(Backoff::none()))
        .build()
        .unwrap();
    let client: Client<_, ReplayBody<Upload>> = Client::builder(TokioExecutor::new()).build_http();
    let svc = ServiceBuilder::new()
        .layer(ReplayBodyLayer::new().max_bytes(max_bytes))
        .layer(policy)
        .service(client);
    let req = http::Request::put(format!("http://{addr}/blob/{id}"))
        .body(body)
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), svc.oneshot(req))
        .await
        .expect("an answer in 10 s")
        .unwrap();
    res.status()
}

#[tokio::test]
async fn a_streaming_body_under_the_bound_is_replayed_byte_for_byte() {
    let (router, seen) = blobs();
    let addr = serve(router).await.unwrap();
    let (body, whole) = upload(8, 1000);
    assert_eq!(
        put_blob(addr, "small", body, 64 * 1024).await,
        StatusCode::CREATED
    );
    let seen = seen.lock().unwrap();
    let attempts = &seen["small"];
    assert_eq!(attempts.len(), 3, "two 503s, then stored");
    assert!(
        attempts.iter().all(|b| *b == whole),
        "the same 8000 bytes every time"
    );
}

#[tokio::test]
async fn a_streaming_body_over_the_bound_is_sent_once() {
    let (router, seen) = blobs();
    let addr = serve(router).await.unwrap();
    let (body, whole) = upload(8, 1000);
    let status = put_blob(addr, "large", body, 4096).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the failure is the answer"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen["large"].len(), 1, "not retried");
    assert_eq!(seen["large"][0], whole, "but sent whole");
}
