//! `GrpcTrailersLayer` with an instrument: a gRPC status in the trailers,
//! a body error and a body without any status correct the instrument's
//! count when the body ends; a trailers-only response is counted once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use battlement_core::BoxError;
use battlement_http::{GrpcClassifier, GrpcTrailersLayer};
use battlement_registry::Registry;
use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// A response body of prepared frames (or errors).
struct Frames(VecDeque<Result<Frame<Bytes>, BoxError>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.get_mut().0.pop_front())
    }
}

/// What the test service answers.
#[derive(Clone, Copy)]
enum Answer {
    /// A message, then trailers with this `grpc-status`.
    Trailers(&'static str),
    /// A message, then the body fails.
    BodyError,
    /// A message and no trailers at all.
    NoStatus,
    /// Trailers-only: `grpc-status` in the headers, empty body.
    TrailersOnly(&'static str),
    /// HTTP 503 from a proxy, no `grpc-status`.
    Proxy503,
}

fn respond(answer: Answer) -> Response<Frames> {
    let message = || Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x01x")));
    let trailers = |code: &'static str| {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", code.parse().unwrap());
        Ok(Frame::trailers(t))
    };
    let frames = match answer {
        Answer::Trailers(code) => vec![message(), trailers(code)],
        Answer::BodyError => vec![
            message(),
            Err(Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)) as BoxError),
        ],
        Answer::NoStatus => vec![message()],
        Answer::TrailersOnly(_) | Answer::Proxy503 => vec![],
    };
    let mut res = Response::new(Frames(frames.into()));
    match answer {
        Answer::TrailersOnly(code) => {
            res.headers_mut()
                .insert("grpc-status", code.parse().unwrap());
        }
        Answer::Proxy503 => *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE,
        _ => {}
    }
    res
}

/// The stack under test: `GrpcTrailersLayer` over an instrument named
/// `grpc` of `registry`, over a backend that answers as told.
fn instrumented(
    registry: &Registry,
) -> impl Service<Answer, Response = Response<impl Body<Error = BoxError> + Unpin>, Error = BoxError>
+ Clone {
    let instrument = registry
        .layer("grpc")
        .unwrap()
        .classifier(GrpcClassifier::new());
    ServiceBuilder::new()
        .layer(GrpcTrailersLayer::new(instrument.late_outcome()))
        .layer(instrument)
        .service(service_fn(|answer: Answer| async move {
            Ok::<_, BoxError>(respond(answer))
        }))
}

async fn call_all(answers: &[Answer]) -> battlement_core::Details {
    let registry = Registry::new();
    let svc = instrumented(&registry);
    for answer in answers {
        let res = svc.clone().oneshot(*answer).await.unwrap();
        // Read the body to its end, as a client does; errors are the
        // body's to report, not this test's.
        let _ = res.into_body().collect().await;
    }
    registry.get("grpc").unwrap().details
}

#[tokio::test(start_paused = true)]
async fn a_status_in_the_trailers_counts() {
    let d = call_all(&[
        Answer::Trailers("0"),
        Answer::Trailers("1"),
        Answer::Trailers("14"),
    ])
    .await;
    assert_eq!(d["calls"], 3);
    assert_eq!(d["successes"], 1);
    assert_eq!(d["failures"], 1);
    assert_eq!(d["ignored"], 1);
    assert_eq!(d["failures_by_kind"]["unavailable"], 1);
    assert_eq!(d["consecutive_failures"], 1);
}

#[tokio::test(start_paused = true)]
async fn a_body_error_or_no_status_is_a_failure() {
    let d = call_all(&[Answer::BodyError, Answer::NoStatus]).await;
    assert_eq!(d["calls"], 2);
    assert_eq!(d["successes"], 0);
    assert_eq!(d["failures"], 2);
    assert_eq!(d["failures_by_kind"]["network"], 1);
    assert_eq!(d["failures_by_kind"]["unknown"], 1);
}

#[tokio::test(start_paused = true)]
async fn a_status_in_the_headers_counts_once() {
    let d = call_all(&[
        Answer::TrailersOnly("14"),
        Answer::TrailersOnly("0"),
        Answer::Proxy503,
    ])
    .await;
    assert_eq!(d["calls"], 3);
    assert_eq!(d["successes"], 1);
    assert_eq!(d["failures"], 2);
    assert_eq!(d["failures_by_kind"]["unavailable"], 2);
}

/// A body dropped before its end (the caller went away) stays the success
/// its headers showed.
#[tokio::test(start_paused = true)]
async fn a_body_dropped_early_stays_a_success() {
    let registry = Registry::new();
    let svc = instrumented(&registry);
    let res = svc.clone().oneshot(Answer::Trailers("14")).await.unwrap();
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    let d = registry.get("grpc").unwrap().details;
    assert_eq!(d["successes"], 1);
    assert_eq!(d["failures"], 0);
}
