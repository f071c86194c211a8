//! The presets that choose a classifier for the whole stack:
//! [`Policy::http`] and [`Policy::grpc`], and the HTTP retry predicate
//! [`Idempotent`].

use battlement_http::{GrpcClassifier, HttpClassifier};
use battlement_retry::{Always, RetryIf};
use http::{Method, Request};

use crate::{Policy, PolicyBuilder};

/// The header that makes a non-idempotent request safe to repeat.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Retries an HTTP request only when repeating it is safe: its method is
/// idempotent (`GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE`, `TRACE`, as RFC
/// 9110 §9.2.2 defines them) or it carries an `Idempotency-Key` header.
/// `POST` and `PATCH` without the header are sent once; their failures
/// come back as [`RetryStop::NotRepeatable`](battlement_core::RetryStop::NotRepeatable).
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
        matches!(
            *req.method(),
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        ) || req.headers().contains_key(IDEMPOTENCY_KEY)
    }

    /// Method, URI, version, headers, extensions and body: an
    /// `http::Request` is not `Clone` only because its parts are kept
    /// together.
    fn clone_request(&self, req: &Request<B>) -> Option<Request<B>> {
        let mut copy = Request::new(req.body().clone());
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
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
    /// caller's mistakes are ignored).
    pub fn grpc(name: impl Into<String>) -> PolicyBuilder<GrpcClassifier, Always> {
        PolicyBuilder::new(name.into(), GrpcClassifier::new(), Always::default())
    }
}
