//! [`ErrorResponseLayer`]: every error of a stack becomes an HTTP response,
//! so the stack's error type is `Infallible`, as axum's `route_layer` and
//! hyper's `serve_connection` want.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use battlement_core::BoxError;
use bytes::Bytes;
use http::Response;
use http_body_util::Either;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::HealthBody;
use crate::response::error_response;

/// The body of a response from an [`ErrorResponse`] service: the inner
/// service's own body, or the small JSON body of an error.
pub type ResponseBody<B> = Either<B, HealthBody>;

/// Turns every error of the service it wraps into a response with
/// [`error_response`]: `503` with `Retry-After` for an open circuit or a
/// shed request, `504` for a deadline, `502` for exhausted retries and
/// failed fan-outs, `500` for anything else, each with a body
/// `{"error": .., "message": ..}`. The service's error becomes
/// `Infallible`, so the stack fits axum's `route_layer` with no
/// `HandleErrorLayer`, and hyper serves it as it is.
///
/// Readiness errors are answered the same way, at the next call: a
/// service that is not ready with an error is reported ready, and the
/// call that follows answers the error without calling it.
///
/// ```
/// use std::time::Duration;
/// use battlement_core::{BoxError, CircuitOpen, CircuitState};
/// use battlement_http::ErrorResponseLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let svc = ErrorResponseLayer::new().layer(service_fn(|_req: http::Request<()>| async {
///     let open = CircuitOpen::new("db", CircuitState::Open, Some(Duration::from_secs(3)));
///     Err::<http::Response<String>, BoxError>(open.into())
/// }));
/// let res = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(res.status(), 503);
/// assert_eq!(res.headers()["retry-after"], "3");
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorResponseLayer {
    _priv: (),
}

impl ErrorResponseLayer {
    /// The layer.
    pub const fn new() -> Self {
        ErrorResponseLayer { _priv: () }
    }
}

impl<S> Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponse<S>;

    fn layer(&self, inner: S) -> ErrorResponse<S> {
        ErrorResponse {
            inner,
            not_ready: None,
        }
    }
}

/// The service of an [`ErrorResponseLayer`].
pub struct ErrorResponse<S> {
    inner: S,
    /// A readiness error, answered at the next call.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for ErrorResponse<S> {
    fn clone(&self) -> Self {
        // A readiness error belongs to the service that saw it.
        ErrorResponse {
            inner: self.inner.clone(),
            not_ready: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ErrorResponse<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorResponse")
            .field("inner", &self.inner)
            .field("not_ready", &self.not_ready.is_some())
            .finish()
    }
}

impl<S> ErrorResponse<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, B> Service<Req> for ErrorResponse<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<B>>;
    type Error = Infallible;
    type Future = ErrorResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.not_ready.is_none()
            && let Err(e) = ready!(self.inner.poll_ready(cx))
        {
            self.not_ready = Some(e.into());
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.not_ready.take() {
            Some(err) => ErrorResponseFuture {
                kind: Kind::Failed { err: Some(err) },
            },
            None => ErrorResponseFuture {
                kind: Kind::Called {
                    inner: self.inner.call(req),
                },
            },
        }
    }
}

pin_project! {
    /// The response future of an [`ErrorResponse`] service.
    pub struct ErrorResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] inner: F },
        Failed { err: Option<BoxError> },
    }
}

impl<F> fmt::Debug for ErrorResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorResponseFuture")
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ErrorResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let err = match self.project().kind.project() {
            KindProj::Called { inner } => match ready!(inner.poll(cx)) {
                Ok(res) => return Poll::Ready(Ok(res.map(Either::Left))),
                Err(e) => e.into(),
            },
            KindProj::Failed { err } => err
                .take()
                .expect("ErrorResponseFuture polled after completion"),
        };
        Poll::Ready(Ok(error_response(&*err).map(Either::Right)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use battlement_core::{CircuitOpen, CircuitState, DeadlineExceeded, Shed};
    use battlement_core::{Level, Priority, RetriesExhausted, RetryStop};
    use http_body_util::BodyExt;
    use std::time::Duration;
    use tower::ServiceExt;

    async fn answer(err: BoxError) -> (u16, Option<String>, serde_json::Value) {
        let mut once = Some(err);
        let svc = ErrorResponseLayer::new().layer(tower::service_fn(move |_: ()| {
            std::future::ready(Err::<Response<String>, BoxError>(once.take().unwrap()))
        }));
        let res = svc.oneshot(()).await.unwrap();
        let status = res.status().as_u16();
        let after = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, after, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn every_workspace_error_is_an_answer() {
        let open = CircuitOpen::new("db", CircuitState::Open, Some(Duration::from_millis(2500)));
        let (status, after, body) = answer(open.into()).await;
        assert_eq!((status, after.as_deref()), (503, Some("3")));
        assert_eq!(body["error"], "Service Unavailable");

        let shed = Shed {
            gate: "gate".into(),
            level: Level::Critical,
            priority: Priority::Low,
            retry_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(answer(shed.into()).await.0, 503);

        let late = DeadlineExceeded {
            budget: Duration::from_secs(1),
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(answer(late.into()).await.0, 504);

        let exhausted = RetriesExhausted {
            attempts: 3,
            reason: RetryStop::MaxAttempts,
            retry_after: None,
            last: "boom".into(),
        };
        assert_eq!(answer(exhausted.into()).await.0, 502);

        let (status, _, body) = answer("anything else".into()).await;
        assert_eq!(status, 500);
        assert_eq!(body["message"], "anything else");
    }

    /// A service whose readiness fails: the error is the next call's answer.
    #[derive(Clone)]
    struct Broken;

    impl Service<()> for Broken {
        type Response = Response<String>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Response<String>, BoxError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Err("not ready".into()))
        }

        fn call(&mut self, _: ()) -> Self::Future {
            panic!("called without being ready");
        }
    }

    #[tokio::test]
    async fn a_readiness_error_is_the_next_answer() {
        let mut svc = ErrorResponseLayer::new().layer(Broken);
        let res = svc.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(res.status(), 500);
    }
}
