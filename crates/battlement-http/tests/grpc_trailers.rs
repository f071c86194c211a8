//! `GrpcTrailersLayer` with an instrument: a gRPC status in the trailers,
//! a body error and a body without any status correct the instrument's
//! count when the body ends; a trailers-only response is counted once.
//! With a breaker deferring to it (`GrpcTrailersDefer`), the breaker
//! records each call once, with the trailers' outcome, and agrees with
//! the instrument.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use battlement_breaker::{Breaker, CircuitState};
use battlement_core::{BoxError, CircuitOpen, FailureKind};
use battlement_http::{GrpcClassifier, GrpcCode, GrpcTrailersDefer, GrpcTrailersLayer};
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

/// Calls `svc` with each answer in turn and reads each body to its end,
/// as a client does; errors are the body's to report, not the caller's.
async fn read_all<S, B>(svc: &S, answers: &[Answer])
where
    S: Service<Answer, Response = Response<B>, Error = BoxError> + Clone,
    B: Body,
{
    for answer in answers {
        let res = svc.clone().oneshot(*answer).await.unwrap();
        let _ = res.into_body().collect().await;
    }
}

async fn call_all(answers: &[Answer]) -> battlement_core::Details {
    let registry = Registry::new();
    // Kept until the figures are read: the registry holds it weakly.
    let svc = instrumented(&registry);
    read_all(&svc, answers).await;
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

/// The stack of a gRPC client with a breaker: an instrument named `grpc`,
/// a `consecutive_failures(3)` breaker deferring to the trailers, and
/// `GrpcTrailersLayer` below it, all judging with `grpc`.
fn guarded(
    registry: &Registry,
    breaker: &Breaker,
    grpc: GrpcClassifier,
) -> impl Service<Answer, Response = Response<impl Body<Error = BoxError> + Unpin>, Error = BoxError>
+ Clone {
    let instrument = registry.layer("grpc").unwrap().classifier(grpc);
    ServiceBuilder::new()
        .layer(instrument.clone())
        .layer(
            breaker
                .layer()
                .with_classifier(grpc)
                .defer_with(GrpcTrailersDefer),
        )
        .layer(GrpcTrailersLayer::new(instrument.late_outcome()).classifier(grpc))
        .service(service_fn(|answer: Answer| async move {
            Ok::<_, BoxError>(respond(answer))
        }))
}

fn breaker() -> Breaker {
    Breaker::builder("grpc/breaker")
        .consecutive_failures(3)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn unavailable_in_the_trailers_trips_the_breaker_after_three_calls() {
    let (registry, breaker) = (Registry::new(), breaker());
    let svc = guarded(&registry, &breaker, GrpcClassifier::new());
    for i in 1..=3u64 {
        assert_eq!(breaker.state(), CircuitState::Closed);
        let res = svc.clone().oneshot(Answer::Trailers("14")).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            breaker.metrics().calls,
            i - 1,
            "not recorded at the headers"
        );
        let _ = res.into_body().collect().await.unwrap();
        let m = breaker.metrics();
        assert_eq!(
            (m.calls, m.successes, m.failures),
            (i, 0, i),
            "once, as a failure"
        );
        assert_eq!(u64::from(m.consecutive_failures), i);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let d = registry.get("grpc").unwrap().details;
    assert_eq!(
        (d["calls"].as_u64(), d["failures"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(d["successes"], 0);
    assert_eq!(d["failures_by_kind"]["unavailable"], 3);
    let Err(err) = svc.oneshot(Answer::Trailers("0")).await else {
        panic!("an open breaker refuses");
    };
    assert!(err.is::<CircuitOpen>());
}

#[tokio::test(start_paused = true)]
async fn ok_in_the_trailers_keeps_the_breaker_closed() {
    let (registry, breaker) = (Registry::new(), breaker());
    let svc = guarded(&registry, &breaker, GrpcClassifier::new());
    read_all(&svc, &[Answer::Trailers("0"); 5]).await;
    let m = breaker.metrics();
    assert_eq!((m.calls, m.successes, m.failures), (5, 5, 0));
    assert_eq!(breaker.state(), CircuitState::Closed);
    let d = registry.get("grpc").unwrap().details;
    assert_eq!(
        (d["calls"].as_u64(), d["successes"].as_u64()),
        (Some(5), Some(5))
    );
}

/// A body error and a body without status are failures for both; a
/// trailers-only failure is recorded at the headers, once.
#[tokio::test(start_paused = true)]
async fn the_breaker_and_the_instrument_agree_on_every_end() {
    let (registry, breaker) = (Registry::new(), breaker());
    let svc = guarded(&registry, &breaker, GrpcClassifier::new());
    read_all(
        &svc,
        &[
            Answer::Trailers("0"),
            Answer::BodyError,
            Answer::Trailers("0"),
            Answer::NoStatus,
            Answer::Trailers("1"),
            Answer::TrailersOnly("14"),
        ],
    )
    .await;
    let m = breaker.metrics();
    let d = registry.get("grpc").unwrap().details;
    assert_eq!((m.calls, m.successes, m.failures, m.ignored), (6, 2, 3, 1));
    assert_eq!(d["calls"], m.calls);
    assert_eq!(d["successes"], m.successes);
    assert_eq!(d["failures"], m.failures);
    assert_eq!(d["ignored"], m.ignored);
    // No status, then CANCELLED (ignored: the streak holds), then
    // UNAVAILABLE: two in a row, under the rule's three.
    assert_eq!(m.consecutive_failures, 2);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

/// A body dropped before its end: the instrument keeps the success its
/// headers showed, the breaker records nothing (a probe's admission comes
/// back: `battlement-breaker`'s `tests/defer.rs`).
#[tokio::test(start_paused = true)]
async fn a_body_dropped_early_is_not_recorded_by_the_breaker() {
    let (registry, breaker) = (Registry::new(), breaker());
    let svc = guarded(&registry, &breaker, GrpcClassifier::new());
    let res = svc.clone().oneshot(Answer::Trailers("14")).await.unwrap();
    let mut body = res.into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    drop(body);
    assert_eq!(breaker.metrics().calls, 0);
    assert_eq!(registry.get("grpc").unwrap().details["successes"], 1);
}

/// The trailers are judged with the layer's classifier: UNAVAILABLE made
/// ignored is ignored by both; NOT_FOUND made a failure trips the breaker.
#[tokio::test(start_paused = true)]
async fn the_trailers_are_judged_with_the_configured_classifier() {
    let (registry, breaker) = (Registry::new(), breaker());
    let lenient = GrpcClassifier::new().with_ignored(GrpcCode::Unavailable);
    let svc = guarded(&registry, &breaker, lenient);
    read_all(&svc, &[Answer::Trailers("14"); 3]).await;
    let m = breaker.metrics();
    assert_eq!((m.calls, m.ignored, m.failures), (3, 3, 0));
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(registry.get("grpc").unwrap().details["ignored"], 3);

    let (registry, breaker) = (Registry::new(), self::breaker());
    let strict = GrpcClassifier::new().with_failure(GrpcCode::NotFound, false);
    let svc = guarded(&registry, &breaker, strict);
    read_all(&svc, &[Answer::Trailers("5"); 3]).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    let d = registry.get("grpc").unwrap().details;
    assert_eq!(d["failures_by_kind"][FailureKind::NotFound.as_str()], 3);
}

/// Without a breaker, the layer's classifier still judges the instrument's
/// trailers (it used to be the default table whatever was configured).
#[tokio::test(start_paused = true)]
async fn an_instrument_alone_uses_the_configured_classifier() {
    let registry = Registry::new();
    let grpc = GrpcClassifier::new().with_ignored(GrpcCode::Unavailable);
    let instrument = registry.layer("grpc").unwrap().classifier(grpc);
    let svc = ServiceBuilder::new()
        .layer(GrpcTrailersLayer::new(instrument.late_outcome()).classifier(grpc))
        .layer(instrument)
        .service(service_fn(|answer: Answer| async move {
            Ok::<_, BoxError>(respond(answer))
        }));
    let res = svc.clone().oneshot(Answer::Trailers("14")).await.unwrap();
    let _ = res.into_body().collect().await.unwrap();
    let d = registry.get("grpc").unwrap().details;
    assert_eq!(
        (d["ignored"].as_u64(), d["failures"].as_u64()),
        (Some(1), Some(0))
    );
}
