//! [`GrpcTrailersLayer`]: counts a gRPC status that comes in the trailers
//! into an instrument and a breaker ([`GrpcTrailersDefer`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use battlement_breaker::{Defer, Pending};
use battlement_core::{AsDynError, Failure, FailureKind, Outcome};
use battlement_registry::LateOutcome;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::GrpcClassifier;
use crate::classify::classify_error;

/// Completes [`GrpcClassifier`] on an instrument and a breaker: a gRPC
/// response whose status comes in the **trailers** (after the headers and
/// any messages) is counted by the status in its trailers, not as the
/// success its headers looked like.
///
/// The instrument ([`Registry::layer`](battlement_registry::Registry::layer)
/// with [`GrpcClassifier`]) and the breaker judge each call when the
/// response's headers arrive: a trailers-only response by its
/// `grpc-status`, a response other than HTTP 200 by its status, any other
/// as a success. This layer wraps the body of those others; when the body
/// ends, what the end says is:
///
/// - trailers with a `grpc-status`: that code's outcome in the
///   [`classifier`](Self::classifier)'s table (by default: `OK` a
///   success, `CANCELLED` and the caller's mistakes ignored, the others
///   failures);
/// - the body fails while streaming (a reset stream, a broken connection):
///   a failure, judged as [`GrpcClassifier`] judges errors;
/// - the body ends with no `grpc-status` at all: a failure (`Unknown`), as
///   gRPC clients treat it.
///
/// The instrument counted the call as a success at the headers: the
/// layer [amends](LateOutcome::amend) it to that outcome. A breaker above
/// this layer that defers with [`GrpcTrailersDefer`] has recorded nothing
/// yet: it records the call **once**, with that outcome (never a success
/// then a failure, which would break its consecutive-failure rule and its
/// rates). So the instrument and the breaker agree on every call whose
/// body is read to its end.
///
/// A body dropped before its end (the caller went away) stays a success
/// for the instrument (its count was taken at the headers), and is not
/// recorded by the breaker (a half-open probe gives its admission back), as
/// a call dropped before its response: the caller's leaving tells nothing
/// of the backend. Latency, and a breaker's slow-call duration, stay the
/// time to the response's headers: a long stream is not a slow call.
///
/// Place it below the breaker (the breaker hands the completion to its
/// body) and on either side of the instrument; it costs a reference count
/// per response with an instrument, nothing without.
///
/// ```
/// use battlement_breaker::Breaker;
/// use battlement_http::{GrpcClassifier, GrpcCode, GrpcTrailersDefer, GrpcTrailersLayer};
/// use battlement_registry::Registry;
/// use tower::ServiceBuilder;
/// # use tower::service_fn;
/// # let grpc_service = service_fn(|_: http::Request<String>| async {
/// #     Ok::<_, battlement_core::BoxError>(http::Response::new(String::new()))
/// # });
///
/// // One table for every judge: NOT_FOUND is a failure of this service.
/// let grpc = GrpcClassifier::new().with_failure(GrpcCode::NotFound, false);
/// let registry = Registry::new();
/// let instrument = registry.layer("grpc").unwrap().classifier(grpc);
/// let breaker = Breaker::builder("grpc/breaker").consecutive_failures(5).build().unwrap();
/// let svc = ServiceBuilder::new()
///     .layer(instrument.clone())
///     .layer(breaker.layer().with_classifier(grpc).defer_with(GrpcTrailersDefer))
///     .layer(GrpcTrailersLayer::new(instrument.late_outcome()).classifier(grpc))
///     .service(grpc_service);
/// # drop(svc);
/// ```
#[derive(Debug, Clone)]
pub struct GrpcTrailersLayer {
    late: Option<LateOutcome>,
    classifier: GrpcClassifier,
}

impl GrpcTrailersLayer {
    /// Amends the calls of the instrument `late` came from (and completes
    /// the calls of a breaker above it that defers with
    /// [`GrpcTrailersDefer`]).
    pub const fn new(late: LateOutcome) -> Self {
        GrpcTrailersLayer {
            late: Some(late),
            classifier: GrpcClassifier::new(),
        }
    }

    /// Amends no instrument: only completes the calls of a breaker above
    /// it that defers with [`GrpcTrailersDefer`].
    pub const fn for_breaker() -> Self {
        GrpcTrailersLayer {
            late: None,
            classifier: GrpcClassifier::new(),
        }
    }

    /// Judges the trailers' `grpc-status` with `classifier` (its table of
    /// successes, ignored codes and failures). Default:
    /// [`GrpcClassifier::new`]. Give it the classifier the instrument and
    /// the breaker judge the headers with, so a code means the same
    /// wherever it comes.
    #[must_use]
    pub const fn classifier(mut self, classifier: GrpcClassifier) -> Self {
        self.classifier = classifier;
        self
    }
}

impl<S> Layer<S> for GrpcTrailersLayer {
    type Service = GrpcTrailers<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTrailers {
            inner,
            late: self.late.clone(),
            classifier: self.classifier,
        }
    }
}

/// The service [`GrpcTrailersLayer`] makes: its responses' bodies are
/// [`TrailersBody`].
#[derive(Debug, Clone)]
pub struct GrpcTrailers<S> {
    inner: S,
    late: Option<LateOutcome>,
    classifier: GrpcClassifier,
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
            late: self.late.clone(),
            classifier: self.classifier,
        }
    }
}

pin_project! {
    /// The response future of [`GrpcTrailers`].
    pub struct TrailersFuture<F> {
        #[pin]
        inner: F,
        late: Option<LateOutcome>,
        classifier: GrpcClassifier,
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
        let judging =
            res.status() == http::StatusCode::OK && !res.headers().contains_key("grpc-status");
        let late = if judging { this.late.take() } else { None };
        let classifier = *this.classifier;
        Poll::Ready(Ok(res.map(|inner| TrailersBody {
            inner,
            judging,
            classifier,
            late,
            pending: None,
        })))
    }
}

pin_project! {
    /// A response body that tells its instrument, and the breaker that
    /// deferred to it, the gRPC status of its trailers (see
    /// [`GrpcTrailersLayer`]). Frames pass through unchanged.
    pub struct TrailersBody<B> {
        #[pin]
        inner: B,
        // Until the body's end is judged.
        judging: bool,
        classifier: GrpcClassifier,
        late: Option<LateOutcome>,
        pending: Option<Pending>,
    }
}

impl<B> TrailersBody<B> {
    /// The body it wraps. A breaker's completion it held is dropped
    /// (recording nothing, as for a body dropped before its end).
    pub fn into_inner(self) -> B {
        self.inner
    }

    /// Whether the body's end is still to be judged: the response was a
    /// gRPC answer (HTTP 200) without `grpc-status` in its headers, and
    /// its end has not been read yet.
    pub fn is_judging(&self) -> bool {
        self.judging
    }
}

impl<B> fmt::Debug for TrailersBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrailersBody")
            .field("judged", &!self.judging)
            .field("pending", &self.pending)
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
        if *this.judging {
            let outcome = match &frame {
                Some(Ok(f)) => f.trailers_ref().map(|t| {
                    missing_status(t).unwrap_or_else(|| this.classifier.classify_headers(t))
                }),
                Some(Err(e)) => Some(classify_error(e.as_dyn_error(), this.classifier)),
                None => Some(Outcome::Failure(Failure::new(FailureKind::Unknown))),
            };
            if let Some(outcome) = outcome {
                *this.judging = false;
                if let Some(late) = this.late.take() {
                    late.amend(&outcome);
                }
                if let Some(pending) = this.pending.take() {
                    pending.complete(outcome);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        // Not at the end until the end is judged: one more poll tells.
        !self.judging && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A breaker's [`Defer`] for gRPC: a call whose status comes in the
/// trailers is recorded by the breaker when its body ends, once, with the
/// outcome the trailers give (see [`GrpcTrailersLayer`]).
///
/// Set it on a [`BreakerLayer`](battlement_breaker::BreakerLayer) judging
/// with [`GrpcClassifier`], over a [`GrpcTrailersLayer`] (the body
/// wrapper it hands the completion to):
///
/// ```
/// use battlement_breaker::Breaker;
/// use battlement_http::{GrpcClassifier, GrpcTrailersDefer, GrpcTrailersLayer};
/// use tower::ServiceBuilder;
/// # use tower::service_fn;
/// # let grpc_service = service_fn(|_: http::Request<String>| async {
/// #     Ok::<_, battlement_core::BoxError>(http::Response::new(String::new()))
/// # });
///
/// let breaker = Breaker::builder("grpc").consecutive_failures(3).build().unwrap();
/// let svc = ServiceBuilder::new()
///     .layer(breaker.layer().with_classifier(GrpcClassifier::new()).defer_with(GrpcTrailersDefer))
///     .layer(GrpcTrailersLayer::for_breaker())
///     .service(grpc_service);
/// # drop(svc);
/// ```
///
/// A response judged at its headers (trailers-only, not HTTP 200) gives
/// the completion back and is recorded at once. A body holds one
/// breaker's completion: a second breaker deferring to the same body
/// records at the headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrpcTrailersDefer;

impl<B> Defer<Response<TrailersBody<B>>> for GrpcTrailersDefer {
    fn defer(&self, res: &mut Response<TrailersBody<B>>, pending: Pending) -> Result<(), Pending> {
        let body = res.body_mut();
        if body.judging && body.pending.is_none() {
            body.pending = Some(pending);
            Ok(())
        } else {
            Err(pending)
        }
    }
}

/// Trailers without a `grpc-status`: a failure, as gRPC clients see it.
fn missing_status(trailers: &http::HeaderMap) -> Option<Outcome> {
    (!trailers.contains_key("grpc-status"))
        .then(|| Outcome::Failure(Failure::new(FailureKind::Unknown)))
}
