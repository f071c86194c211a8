//! `ReplayBodyLayer` above `Policy::http` and `Policy::grpc`, on paused
//! time: a body under the bound is retried with the same bytes, one over
//! it is sent once and its failure says why; `Idempotent` and `AnyMethod`
//! choose by method.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use battlement::http::{ReplayBody, ReplayBodyLayer, ReplayState};
use battlement::prelude::*;
use battlement::retry::RetryIf;
use battlement::{AnyMethod, RetryStop};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// A streaming upload: frames handed out one per poll, its length
/// unknown up front (no size hint), as a stream from a file or a socket.
struct Upload(std::vec::IntoIter<Bytes>);

impl http_body::Body for Upload {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        Poll::Ready(self.0.next().map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// `chunks` frames of `size` bytes, each chunk's bytes its index.
fn upload(chunks: usize, size: usize) -> Upload {
    let frames: Vec<Bytes> = (0..chunks)
        .map(|i| Bytes::from(vec![i as u8; size]))
        .collect();
    Upload(frames.into_iter())
}

/// A backend that reads the whole body, records it, and fails the first
/// `fail` calls with a reset connection.
fn backend(
    seen: &Arc<Mutex<Vec<Bytes>>>,
    fail: usize,
) -> impl Service<
    Request<ReplayBody<Upload>>,
    Response = Response<String>,
    Error = BoxError,
    Future = impl Send + use<>,
> + Clone
+ use<> {
    let seen = seen.clone();
    service_fn(move |req: Request<ReplayBody<Upload>>| {
        let seen = seen.clone();
        async move {
            let body = req.into_body().collect().await?.to_bytes();
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(body);
                seen.len()
            };
            if n <= fail {
                return Err(io::Error::from(io::ErrorKind::ConnectionReset).into());
            }
            Ok::<_, BoxError>(Response::new(format!("stored {n}")))
        }
    })
}

/// PUTs 4 frames of 100 bytes through a `ReplayBodyLayer` keeping
/// `max_bytes` above `Policy::http` (3 attempts) to a backend that fails
/// twice.
async fn put_through(
    seen: &Arc<Mutex<Vec<Bytes>>>,
    max_bytes: usize,
) -> Result<Response<String>, BoxError> {
    let policy = Policy::http("blobs")
        .retry(|r| r.max_attempts(3).backoff(Backoff::none()))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(ReplayBodyLayer::new().max_bytes(max_bytes))
        .policy(&policy)
        .service(backend(seen, 2));
    let req = Request::put("http://backend/blob")
        .body(upload(4, 100))
        .unwrap();
    svc.oneshot(req).await
}

#[tokio::test(start_paused = true)]
async fn a_body_under_the_bound_is_retried_with_the_same_bytes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let res = put_through(&seen, 1024).await.unwrap();
    assert_eq!(res.body(), "stored 3");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].len(), 400);
    assert!(
        seen.iter().all(|b| *b == seen[0]),
        "every attempt sent the same bytes"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_bound_is_sent_once_and_says_why() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let err = put_through(&seen, 250).await.unwrap_err();
    let exhausted = err.downcast_ref::<RetriesExhausted>().unwrap();
    assert_eq!(exhausted.reason, RetryStop::NotRepeatable, "{err}");
    assert_eq!(exhausted.attempts, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "sent once");
    assert_eq!(seen[0].len(), 400, "and whole");
}

/// gRPC calls are all `POST`: `Policy::grpc` retries them by code.
#[tokio::test(start_paused = true)]
async fn grpc_retries_a_post_with_a_replayed_body() {
    let policy = Policy::grpc("rpc")
        .retry(|r| r.max_attempts(2).backoff(Backoff::none()))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = ServiceBuilder::new()
        .layer(ReplayBodyLayer::new())
        .policy(&policy)
        .service(backend(&seen, 1));
    let req = Request::post("http://backend/pkg.Svc/Call")
        .body(upload(2, 10))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.body(), "stored 2");
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], seen[1]);
}

#[test]
fn idempotent_and_any_method_choose_by_method_and_replay_state() {
    let req = |m: Method| Request::builder().method(m).body(()).unwrap();
    for m in [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ] {
        assert!(Idempotent.may_retry(&req(m.clone())), "{m}");
    }
    for m in [Method::POST, Method::PATCH] {
        assert!(!Idempotent.may_retry(&req(m.clone())), "{m}");
        assert!(AnyMethod.may_retry(&req(m.clone())), "{m}");
        let keyed = Request::builder()
            .method(m.clone())
            .header("idempotency-key", "k")
            .body(())
            .unwrap();
        assert!(Idempotent.may_retry(&keyed), "{m} with a key");
    }
    // A replay body that is no longer replayable stops both.
    let body = ReplayBody::new(
        http_body_util::Full::new(Bytes::from_static(b"0123456789")),
        4,
    );
    let mut get = Request::get("/").body(body).unwrap();
    let state = get.body().state();
    assert!(!state.is_replayable());
    get.extensions_mut().insert::<ReplayState>(state);
    assert!(!Idempotent.may_retry(&get));
    assert!(!AnyMethod.may_retry(&get));
    // The copy carries the same parts and the same state.
    let copy = AnyMethod.clone_request(&get).unwrap();
    assert_eq!(copy.uri(), "/");
    assert!(copy.extensions().get::<ReplayState>().is_some());
}
