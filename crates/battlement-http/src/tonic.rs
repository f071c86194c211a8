//! tonic glue (feature `tonic`): the workspace's errors as a
//! [`tonic::Status`] ([`status_from_error`], [`GrpcErrorLayer`]), and
//! tonic's own errors for [`GrpcClassifier`].
//!
//! Without this, a tonic client behind a breaker sees an open circuit as
//! `Code::Unknown`: tonic turns any error it does not know into `UNKNOWN`.
//! With [`GrpcErrorLayer`] outermost in the client's stack (or the
//! server's), the caller gets the code gRPC means for it:
//!
//! | error (anywhere in the `source()` chain, outermost first) | code | `grpc-retry-pushback-ms` |
//! |---|---|---|
//! | a `tonic::Status` | its own | its own |
//! | `CircuitOpen`, `Shed`, `BulkheadFull`, `LimitExceeded` | `UNAVAILABLE` | from its `retry_after` |
//! | `Throttled`, `AllFailed`, `QuorumNotReached` | `UNAVAILABLE` | |
//! | `DeadlineExceeded`, `AttemptTimedOut`, tonic's `TimeoutExpired` | `DEADLINE_EXCEEDED` | |
//! | `RetriesExhausted` | the code of its last error | its `retry_after`, if the last error had none |
//! | `FallbackFailed` | the code of its primary error | |
//! | `InvalidConfig` | `INTERNAL` | |
//! | any other timeout `ErrorClassifier` recognises (tower's `Elapsed`, an `io::Error` that timed out) | `DEADLINE_EXCEEDED` | |
//! | anything else | as tonic maps it (`Status::from_error`: connection errors `UNAVAILABLE`, h2 resets by reason, others `UNKNOWN`) | |
//!
//! The status's message is the error's own `Display` (what a caller
//! needs: which circuit, how long), and its source is the error.
//! A pushback goes in milliseconds, rounded up so a wait of less than a
//! millisecond is not read as "retry now".

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use battlement_core::{
    AllFailed, AttemptTimedOut, BoxError, BulkheadFull, CircuitOpen, DeadlineExceeded,
    ErrorClassifier, FailureKind, FallbackFailed, InvalidConfig, LimitExceeded, Outcome,
    QuorumNotReached, RetriesExhausted, Shed, Throttled,
};
use pin_project_lite::pin_project;
use tonic::metadata::MetadataValue;
use tonic::{Code, ConnectError, Status, TimeoutExpired};
use tower_layer::Layer;
use tower_service::Service;

use crate::{GrpcClassifier, GrpcCode};

/// The header of a server's pushback (gRPC's retry design, A6).
const PUSHBACK: &str = "grpc-retry-pushback-ms";

/// The [`tonic::Status`] a caller should see for `err`: see the table in
/// the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use battlement_core::{BoxError, CircuitOpen, CircuitState};
/// use battlement_http::tonic::status_from_error;
///
/// let err: BoxError = Box::new(CircuitOpen {
///     name: "users/breaker".into(),
///     state: CircuitState::Open,
///     retry_after: Some(Duration::from_millis(1500)),
/// });
/// let status = status_from_error(err);
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "1500");
/// ```
pub fn status_from_error(err: BoxError) -> Status {
    let err = match err.downcast::<Status>() {
        Ok(status) => return *status,
        Err(err) => err,
    };
    let Some((code, pushback)) = code_of(&*err) else {
        return match find_status(&*err) {
            Some(status) => {
                let mut copy = Status::with_metadata(
                    status.code(),
                    status.message(),
                    status.metadata().clone(),
                );
                copy.set_source(Arc::from(err));
                copy
            }
            // tower's `Elapsed`, an `io::Error` that timed out.
            None if ErrorClassifier::new().classify_error(&*err).kind == FailureKind::Timeout => {
                let mut status = Status::deadline_exceeded(err.to_string());
                status.set_source(Arc::from(err));
                status
            }
            None => Status::from_error(err),
        };
    };
    let mut status = Status::new(code, err.to_string());
    if let Some(after) = pushback {
        let ms = after.as_nanos().div_ceil(1_000_000);
        if let Ok(value) = MetadataValue::try_from(ms.to_string()) {
            status.metadata_mut().insert(PUSHBACK, value);
        }
    }
    status.set_source(Arc::from(err));
    status
}

/// The code (and pushback) of the first error in the chain this crate
/// recognises; `None` when it is a `Status` or none is recognised.
fn code_of(err: &(dyn Error + 'static)) -> Option<(Code, Option<Duration>)> {
    let mut link = Some(err);
    while let Some(e) = link {
        if e.is::<Status>() {
            return None;
        }
        if let Some(open) = e.downcast_ref::<CircuitOpen>() {
            return Some((Code::Unavailable, open.retry_after));
        }
        if let Some(shed) = e.downcast_ref::<Shed>() {
            return Some((Code::Unavailable, shed.retry_after));
        }
        if let Some(full) = e.downcast_ref::<BulkheadFull>() {
            return Some((Code::Unavailable, full.retry_after));
        }
        if let Some(limit) = e.downcast_ref::<LimitExceeded>() {
            return Some((Code::Unavailable, limit.retry_after));
        }
        if e.is::<Throttled>() || e.is::<AllFailed>() || e.is::<QuorumNotReached>() {
            return Some((Code::Unavailable, None));
        }
        if e.is::<DeadlineExceeded>() || e.is::<AttemptTimedOut>() || e.is::<TimeoutExpired>() {
            return Some((Code::DeadlineExceeded, None));
        }
        if let Some(ex) = e.downcast_ref::<RetriesExhausted>() {
            let (code, pushback) =
                code_of(&*ex.last).or_else(|| find_status(&*ex.last).map(|s| (s.code(), None)))?;
            return Some((code, pushback.or(ex.retry_after)));
        }
        if let Some(ff) = e.downcast_ref::<FallbackFailed>() {
            return code_of(&*ff.primary);
        }
        if e.is::<InvalidConfig>() {
            return Some((Code::Internal, None));
        }
        link = e.source();
    }
    None
}

/// The first `Status` in the chain.
fn find_status<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a Status> {
    let mut link = Some(err);
    while let Some(e) = link {
        if let Some(status) = e.downcast_ref::<Status>() {
            return Some(status);
        }
        link = e.source();
    }
    None
}

/// What [`GrpcClassifier`] (and `HttpClassifier`) make of tonic's errors
/// in a chain: a `Status` by its code (and pushback) with the classifier's
/// table, `TimeoutExpired` a retryable `Timeout`, `ConnectError` a
/// retryable `Network` failure.
pub(crate) fn recognise(e: &(dyn Error + 'static), grpc: &GrpcClassifier) -> Option<Outcome> {
    if let Some(status) = e.downcast_ref::<Status>() {
        let pushback = status
            .metadata()
            .get(PUSHBACK)
            .map(|v| v.to_str().unwrap_or(""));
        return Some(grpc.classify_code(status.code() as u64, pushback));
    }
    if e.is::<TimeoutExpired>() {
        return Some(Outcome::failure(FailureKind::Timeout));
    }
    if e.is::<ConnectError>() {
        return Some(Outcome::failure(FailureKind::Network));
    }
    None
}

impl From<Code> for GrpcCode {
    fn from(code: Code) -> Self {
        GrpcCode::from_u64(code as u64).unwrap_or(GrpcCode::Unknown)
    }
}

impl From<GrpcCode> for Code {
    fn from(code: GrpcCode) -> Self {
        Code::from_i32(i32::from(code.as_u8()))
    }
}

/// Makes a service's error a [`tonic::Status`] with
/// [`status_from_error`], so the workspace's refusals reach a gRPC caller
/// with the right code.
///
/// - **Client:** put it outermost in the stack a generated client is
///   built on; tonic hands a `Status` error to the caller as it is.
/// - **Server:** put it outermost in `Server::builder().layer(..)`; tonic
///   answers a `Status` error as a trailers-only response with that code
///   (and any pushback as a header).
///
/// ```
/// use std::time::Duration;
/// use battlement_core::{BoxError, DeadlineExceeded};
/// use battlement_http::tonic::GrpcErrorLayer;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = ServiceBuilder::new().layer(GrpcErrorLayer::new()).service(service_fn(|_: ()| async {
///     let err: BoxError =
///         Box::new(DeadlineExceeded { budget: Duration::from_secs(1), elapsed: Duration::from_secs(1) });
///     Err::<(), _>(err)
/// }));
/// let status = svc.oneshot(()).await.unwrap_err();
/// assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcErrorLayer {
    _priv: (),
}

impl GrpcErrorLayer {
    /// The layer.
    pub const fn new() -> Self {
        GrpcErrorLayer { _priv: () }
    }
}

impl<S> Layer<S> for GrpcErrorLayer {
    type Service = GrpcError<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcError::new(inner)
    }
}

/// The service of [`GrpcErrorLayer`].
#[derive(Debug, Clone)]
pub struct GrpcError<S> {
    inner: S,
}

impl<S> GrpcError<S> {
    /// Wraps `inner`.
    pub const fn new(inner: S) -> Self {
        GrpcError { inner }
    }

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

impl<S, Req> Service<Req> for GrpcError<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = Status;
    type Future = GrpcErrorFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| status_from_error(e.into()))
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        GrpcErrorFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The future of [`GrpcError`].
    #[derive(Debug)]
    pub struct GrpcErrorFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, Res, E> Future for GrpcErrorFuture<F>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Res, Status>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map_err(|e| status_from_error(e.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use battlement_core::{CircuitState, Classify, RetryStop};
    use http::Response;

    fn status(err: impl Into<BoxError>) -> Status {
        status_from_error(err.into())
    }

    fn pushback(s: &Status) -> Option<&str> {
        s.metadata().get(PUSHBACK).map(|v| v.to_str().unwrap())
    }

    fn open(after: Option<Duration>) -> CircuitOpen {
        CircuitOpen {
            name: "db/breaker".into(),
            state: CircuitState::Open,
            retry_after: after,
        }
    }

    #[test]
    fn the_workspace_errors_map_to_their_codes() {
        let s = status(open(Some(Duration::from_micros(1500))));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(pushback(&s), Some("2"), "rounded up");
        assert!(s.message().contains("db/breaker"), "{}", s.message());
        assert!(s.source().is_some());
        assert_eq!(pushback(&status(open(None))), None);

        let deadline = DeadlineExceeded {
            budget: Duration::from_secs(1),
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(status(deadline).code(), Code::DeadlineExceeded);
        let attempt = AttemptTimedOut {
            timeout: Duration::from_secs(1),
        };
        assert_eq!(status(attempt).code(), Code::DeadlineExceeded);
        assert_eq!(status(TimeoutExpired(())).code(), Code::DeadlineExceeded);
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(status(timed_out).code(), Code::DeadlineExceeded);

        let exhausted = RetriesExhausted {
            attempts: 3,
            reason: RetryStop::MaxAttempts,
            retry_after: Some(Duration::from_millis(40)),
            last: Box::new(Status::unavailable("down")),
        };
        let s = status(exhausted);
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(pushback(&s), Some("40"));

        let exhausted = RetriesExhausted {
            attempts: 2,
            reason: RetryStop::BudgetExhausted,
            retry_after: None,
            last: Box::new(open(Some(Duration::from_secs(5)))),
        };
        assert_eq!(pushback(&status(exhausted)), Some("5000"));

        // A status stays itself; anything unknown is tonic's UNKNOWN.
        let s = status(Status::not_found("no such user"));
        assert_eq!((s.code(), s.message()), (Code::NotFound, "no such user"));
        assert_eq!(status(std::io::Error::other("odd")).code(), Code::Unknown);
        let bad = InvalidConfig {
            component: "retry",
            field: "max_attempts",
            bound: "must be at least 1".into(),
            value: "0".into(),
        };
        assert_eq!(status(bad).code(), Code::Internal);
    }

    #[test]
    fn tonic_errors_are_classified() {
        let grpc = GrpcClassifier::new();
        let judge = |e: BoxError| grpc.classify(&Err::<Response<()>, _>(e));
        let out = judge(Box::new(TimeoutExpired(())));
        assert_eq!(out.as_failure().unwrap().kind, FailureKind::Timeout);
        assert!(out.is_retryable());
        let out = judge(Box::new(ConnectError(Box::new(std::io::Error::other(
            "refused",
        )))));
        assert_eq!(out.as_failure().unwrap().kind, FailureKind::Network);
        assert!(judge(Box::new(Status::invalid_argument("bad"))).is_ignored());
        let mut unavailable = Status::unavailable("down");
        unavailable
            .metadata_mut()
            .insert(PUSHBACK, MetadataValue::from_static("25"));
        let out = judge(Box::new(unavailable));
        assert_eq!(
            out.as_failure().unwrap().retry_after,
            Some(Duration::from_millis(25))
        );
        // Configured per code, with tonic's codes.
        let strict = grpc.with_failure(Code::NotFound, false);
        let out = strict.classify(&Err::<Response<()>, BoxError>(Box::new(Status::not_found(
            "x",
        ))));
        assert_eq!(out.as_failure().unwrap().kind, FailureKind::NotFound);
        assert_eq!(Code::from(GrpcCode::DataLoss), Code::DataLoss);
    }
}
