//! The presets that choose a classifier for the whole stack:
//! [`Policy::http`] and [`Policy::grpc`], and the HTTP retry predicates
//! [`Idempotent`] and [`AnyMethod`].

use battlement_http::{GrpcClassifier, HttpClassifier, ReplayState};
use battlement_retry::RetryIf;
use http::{Method, Request};

use crate::{Policy, PolicyBuilder};

/// The header that makes a non-idempotent request safe to repeat.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Retries an HTTP request only when repeating it is safe: its method is
/// idempotent (`GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE`, `TRACE`, as RFC
/// 9110 §9.2.2 defines them) or it carries an `Idempotency-Key` header.
/// `POST` and `PATCH` without the header are sent once; their failures
/// come back as [`RetryStop::NotRepeatable`](battlement_core::RetryStop::NotRepeatable).
/// Use [`AnyMethod`] to retry every method.
///
/// A request whose body went through a
/// [`ReplayBodyLayer`](battlement_http::ReplayBodyLayer) is also retried
/// only while its [`ReplayState`] says the body can be sent again: one
/// that grew past the buffer's bound during the first attempt is sent
/// once, and its failure ends as `NotRepeatable` too.
///
/// ```
/// use battlement::Idempotent;
/// use battlement::retry::RetryIf;
///
/// let get = http::Request::get("/").body(()).unwrap();
/// let post = http::Request::post("/").body(()).unwrap();
/// let keyed = http::Request::post("/").header("idempotency-key", "k1").body(()).unwrap();
/// assert!(Idempotent.may_retry(&get));
/// assert!(!Idempotent.may_retry(&post));
/// assert!(Idempotent.may_retry(&keyed));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Idempotent;

impl<B: Clone> RetryIf<Request<B>> for Idempotent {
    fn may_retry(&self, req: &Request<B>) -> bool {
        is_idempotent(req.method(), req.headers()) && body_replayable(req)
    }

    /// Method, URI, version, headers, extensions and body: an
    /// `http::Request` is not `Clone` only because its parts are kept
    /// together.
    fn clone_request(&self, req: &Request<B>) -> Option<Request<B>> {
        Some(copy_request(req))
    }
}

/// Retries an HTTP request whatever its method: the explicit opt-in for
/// `POST` and `PATCH` calls the server makes safe to repeat by other means
/// (a deduplicating endpoint, a natural key), and the predicate of
/// [`Policy::grpc`] (every gRPC call is a `POST`; whether a failure is
/// worth a retry is the classifier's call, by code). Like [`Idempotent`],
/// it stops retrying a request whose body can no longer be replayed.
///
/// ```
/// use battlement::AnyMethod;
/// use battlement::retry::RetryIf;
///
/// let post = http::Request::post("/orders").body(()).unwrap();
/// assert!(AnyMethod.may_retry(&post));
/// assert!(AnyMethod.clone_request(&post).is_some());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnyMethod;

impl<B: Clone> RetryIf<Request<B>> for AnyMethod {
    fn may_retry(&self, req: &Request<B>) -> bool {
        body_replayable(req)
    }

    fn clone_request(&self, req: &Request<B>) -> Option<Request<B>> {
        Some(copy_request(req))
    }
}

/// `reqwest::Request`s (feature `reqwest`) by the same rules; the copy is
/// reqwest's `try_clone`, so a request whose body is a stream is sent
/// once (its failure ends as `NotRepeatable`).
#[cfg(feature = "reqwest")]
impl RetryIf<reqwest::Request> for Idempotent {
    fn may_retry(&self, req: &reqwest::Request) -> bool {
        is_idempotent(req.method(), req.headers())
    }

    fn clone_request(&self, req: &reqwest::Request) -> Option<reqwest::Request> {
        req.try_clone()
    }
}

/// Any `reqwest::Request` (feature `reqwest`) that `try_clone` can copy.
#[cfg(feature = "reqwest")]
impl RetryIf<reqwest::Request> for AnyMethod {
    fn may_retry(&self, _req: &reqwest::Request) -> bool {
        true
    }

    fn clone_request(&self, req: &reqwest::Request) -> Option<reqwest::Request> {
        req.try_clone()
    }
}

/// RFC 9110's idempotent methods, or an `Idempotency-Key` header.
fn is_idempotent(method: &Method, headers: &http::HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    ) || headers.contains_key(IDEMPOTENCY_KEY)
}

/// `false` when the request's body is a replay body that can no longer be
/// sent again; `true` for any other body.
fn body_replayable<B>(req: &Request<B>) -> bool {
    req.extensions()
        .get::<ReplayState>()
        .is_none_or(ReplayState::is_replayable)
}

fn copy_request<B: Clone>(req: &Request<B>) -> Request<B> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}

impl Policy {
    /// A policy for HTTP clients and servers: every part judges
    /// `http::Response`s with [`HttpClassifier`] (5xx, 408 and 429 are
    /// failures, `Retry-After` is honoured, other 4xx are the caller's
    /// mistakes: neither retried nor counted against the breaker), and
    /// retries only [`Idempotent`] requests.
    pub fn http(name: impl Into<String>) -> PolicyBuilder<HttpClassifier, Idempotent> {
        PolicyBuilder::new(name.into(), HttpClassifier::new(), Idempotent)
    }

    /// A policy for gRPC: every part judges responses by their
    /// `grpc-status` with [`GrpcClassifier`] (`UNAVAILABLE` and friends are
    /// retryable failures, `grpc-retry-pushback-ms` is honoured, the
    /// caller's mistakes are ignored: neither retried nor counted against
    /// the breaker), and retries any call ([`AnyMethod`]) the classifier
    /// calls retryable. A tonic request's body is a stream: put a
    /// [`ReplayBodyLayer`](battlement_http::ReplayBodyLayer) above the
    /// policy so it can be sent again.
    pub fn grpc(name: impl Into<String>) -> PolicyBuilder<GrpcClassifier, AnyMethod> {
        PolicyBuilder::new(name.into(), GrpcClassifier::new(), AnyMethod)
    }
}
