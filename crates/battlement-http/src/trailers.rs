//! [`GrpcTrailersLayer`]: counts a gRPC status that comes in the trailers
//! into an instrument.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use battlement_core::{AsDynError, ErrorClassifier, Failure, FailureKind, Outcome};
use battlement_registry::LateOutcome;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::GrpcClassifier;

/// Completes [`GrpcClassifier`] on an instrument: a gRPC response whose
/// status comes in the **trailers** (after the headers and any messages)
/// is counted by the status in its trailers, not as the success its
/// headers looked like.
///
/// The instrument ([`Registry::layer`](battlement_registry::Registry::layer)
/// with [`GrpcClassifier`]) counts each call when the response's headers
/// arrive: a trailers-only response by its `grpc-status`, a response
/// other than HTTP 200 by its status, any other as a success. This layer wraps the body of those others; when the body ends
/// it [amends](LateOutcome::amend) the success to what the end says:
///
/// - trailers with a failing `grpc-status`: that failure (the table on
///   [`GrpcClassifier`]); `CANCELLED`: ignored; `OK`: stays a success;
/// - the body fails while streaming (a reset stream, a broken connection):
///   a failure, judged by [`ErrorClassifier`];
/// - the body ends with no `grpc-status` at all: a failure (`Unknown`), as
///   gRPC clients treat it.
///
/// A body dropped before its end (the caller went away) stays a success.
/// Latency stays the time to the response's headers. Place it on either
/// side of the instrument; it costs a reference count per response.
///
/// ```
/// use battlement_http::{GrpcClassifier, GrpcTrailersLayer};
/// use battlement_registry::Registry;
/// use tower::ServiceBuilder;
/// # use tower::service_fn;
/// # let grpc_service = service_fn(|_: http::Request<String>| async {
/// #     Ok::<_, battlement_core::BoxError>(http::Response::new(String::new()))
/// # });
///
/// let registry = Registry::new();
/// let instrument = registry.layer("grpc").unwrap().classifier(GrpcClassifier::new());
/// let svc = ServiceBuilder::new()
///     .layer(GrpcTrailersLayer::new(instrument.late_outcome()))
///     .layer(instrument)
///     .service(grpc_service);
/// # drop(svc);
/// ```
#[derive(Debug, Clone)]
pub struct GrpcTrailersLayer {
    late: LateOutcome,
}

impl GrpcTrailersLayer {
    /// Amends the calls of the instrument `late` came from.
    pub const fn new(late: LateOutcome) -> Self {
        GrpcTrailersLayer { late }
    }
}

impl<S> Layer<S> for GrpcTrailersLayer {
    type Service = GrpcTrailers<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTrailers {
            inner,
            late: self.late.clone(),
        }
    }
}

/// The service [`GrpcTrailersLayer`] makes: its responses' bodies are
/// [`TrailersBody`].
#[derive(Debug, Clone)]
pub struct GrpcTrailers<S> {
    inner: S,
    late: LateOutcome,
}

impl<S> GrpcTrailers<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, B> Service<Req> for GrpcTrailers<S>
where
    S: Service<Req, Response = Response<B>>,
{
    type Response = Response<TrailersBody<B>>;
    type Error = S::Error;
    type Future = TrailersFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        TrailersFuture {
            inner: self.inner.call(req),
            late: Some(self.late.clone()),
        }
    }
}

pin_project! {
    /// The response future of [`GrpcTrailers`].
    pub struct TrailersFuture<F> {
        #[pin]
        inner: F,
        late: Option<LateOutcome>,
    }
}

impl<F> fmt::Debug for TrailersFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrailersFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for TrailersFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrailersBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx))?;
        // A trailers-only response, or one that is not a gRPC answer (not
        // HTTP 200), was judged by its headers already.
        let late =
            if res.status() != http::StatusCode::OK || res.headers().contains_key("grpc-status") {
                None
            } else {
                this.late.take()
            };
        Poll::Ready(Ok(res.map(|inner| TrailersBody { inner, late })))
    }
}

pin_project! {
    /// A response body that tells its instrument the gRPC status of its
    /// trailers (see [`GrpcTrailersLayer`]). Frames pass through unchanged.
    pub struct TrailersBody<B> {
        #[pin]
        inner: B,
        // Until the body's end is judged.
        late: Option<LateOutcome>,
    }
}

impl<B> TrailersBody<B> {
    /// The body it wraps.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> fmt::Debug for TrailersBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrailersBody")
            .field("judged", &self.late.is_none())
            .finish_non_exhaustive()
    }
}

impl<B> Body for TrailersBody<B>
where
    B: Body,
    B::Error: AsDynError,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(late) = this.late.as_ref() {
            let outcome = match &frame {
                Some(Ok(f)) => f.trailers_ref().map(|t| {
                    missing_status(t).unwrap_or_else(|| GrpcClassifier::new().classify_headers(t))
                }),
                Some(Err(e)) => Some(Outcome::Failure(
                    ErrorClassifier::new().classify_error(e.as_dyn_error()),
                )),
                None => Some(Outcome::Failure(Failure::new(FailureKind::Unknown))),
            };
            if let Some(outcome) = outcome {
                late.amend(&outcome);
                *this.late = None;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        // Not at the end until the end is judged: one more poll tells.
        self.late.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Trailers without a `grpc-status`: a failure, as gRPC clients see it.
fn missing_status(trailers: &http::HeaderMap) -> Option<Outcome> {
    (!trailers.contains_key("grpc-status"))
        .then(|| Outcome::Failure(Failure::new(FailureKind::Unknown)))
}
