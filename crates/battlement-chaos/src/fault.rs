//! Whole responses in place of the inner service's: [`HttpFault`] and
//! [`MakeResponse`], which turns one into the service's response type.

use std::fmt;
use std::time::Duration;

use battlement_core::{FailureKind, InvalidConfig, Name};

/// A synthetic HTTP answer a phase may give instead of calling the inner
/// service ([`Phase::respond`](crate::Phase::respond)).
///
/// Under [`ChaosLayer::http`](crate::ChaosLayer::http) it becomes an
/// `http::Response` with the status (and `Retry-After` in whole seconds,
/// rounded up); under the plain [`ChaosLayer`](crate::ChaosLayer) an
/// [`Injected`](crate::Injected) error of [`kind`](Self::kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpFault {
    /// `503 Service Unavailable`, with `Retry-After` when given.
    ServiceUnavailable {
        /// The wait to advertise.
        retry_after: Option<Duration>,
    },
    /// `429 Too Many Requests` with `Retry-After`.
    TooManyRequests {
        /// The wait to advertise.
        retry_after: Duration,
    },
    /// `500 Internal Server Error`.
    InternalServerError,
}

impl HttpFault {
    /// `503` without `Retry-After`.
    pub const UNAVAILABLE: HttpFault = HttpFault::ServiceUnavailable { retry_after: None };

    /// The status code.
    pub const fn status(&self) -> u16 {
        match self {
            HttpFault::ServiceUnavailable { .. } => 503,
            HttpFault::TooManyRequests { .. } => 429,
            HttpFault::InternalServerError => 500,
        }
    }

    /// The wait the response advertises in `Retry-After`.
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpFault::ServiceUnavailable { retry_after } => *retry_after,
            HttpFault::TooManyRequests { retry_after } => Some(*retry_after),
            HttpFault::InternalServerError => None,
        }
    }

    /// What a classifier makes of it (as `battlement-http`'s
    /// `HttpClassifier` reads the status): `503` is `Unavailable`, `429`
    /// `RateLimited`, `500` `Transient`. The kind of the error that stands
    /// for it under the plain layer.
    pub const fn kind(&self) -> FailureKind {
        match self {
            HttpFault::ServiceUnavailable { .. } => FailureKind::Unavailable,
            HttpFault::TooManyRequests { .. } => FailureKind::RateLimited,
            HttpFault::InternalServerError => FailureKind::Transient,
        }
    }

    /// `Retry-After` in whole seconds, rounded up.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after()
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
    }

    pub(crate) fn validate(&self, at: &dyn fmt::Display) -> Result<(), InvalidConfig> {
        match self.retry_after() {
            Some(d) if d > Duration::from_secs(24 * 3600) => Err(InvalidConfig::new(
                "chaos",
                "phase.response.retry_after",
                format_args!("{d:?} in {at}"),
                "must be at most 24 hours",
            )),
            _ => Ok(()),
        }
    }
}

/// Turns an [`HttpFault`] into the service's response type `Res`, or
/// declines (`None`): the call then fails with an
/// [`Injected`](crate::Injected) error of the fault's kind.
///
/// The layer's type parameter: [`AsErrors`] (the default, any response
/// type) declines always; [`HttpResponses`] (feature `http`) answers for
/// `http::Response<B>`. Implement it to answer with a response type of
/// your own.
pub trait MakeResponse<Res> {
    /// The response that answers the call, made at call time by the chaos
    /// component `chaos` in its phase `phase`.
    fn make_response(&self, fault: &HttpFault, chaos: &Name, phase: &Name) -> Option<Res>;
}

/// The plain layer's [`MakeResponse`]: response faults become errors, on
/// any response type.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsErrors;

impl<Res> MakeResponse<Res> for AsErrors {
    #[inline]
    fn make_response(&self, _: &HttpFault, _: &Name, _: &Name) -> Option<Res> {
        None
    }
}

/// An extension on every synthetic HTTP response: which chaos, which phase
/// and which fault made it, so a test (or a curious caller) can tell it
/// from the real thing.
#[cfg(feature = "http")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedResponse {
    /// The chaos component's name.
    pub chaos: Name,
    /// The phase in force.
    pub phase: Name,
    /// The fault.
    pub fault: HttpFault,
}

/// Answers response faults with an `http::Response<B>`: the fault's status,
/// `Retry-After` when it has one, the [`InjectedResponse`] extension, and
/// a body from `B::default()` or from the closure given to
/// [`ChaosLayer::body_fn`](crate::ChaosLayer::body_fn).
#[cfg(feature = "http")]
#[derive(Clone, Copy)]
pub struct HttpResponses<F = DefaultBody> {
    body: F,
}

/// [`HttpResponses`]' default body maker: `B::default()`.
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultBody;

#[cfg(feature = "http")]
impl HttpResponses {
    /// Bodies from `B::default()`.
    pub const fn new() -> Self {
        HttpResponses { body: DefaultBody }
    }
}

#[cfg(feature = "http")]
impl Default for HttpResponses {
    fn default() -> Self {
        HttpResponses::new()
    }
}

#[cfg(feature = "http")]
impl<F> HttpResponses<F> {
    /// Bodies from `body(&fault)` instead.
    pub fn with_body<G>(self, body: G) -> HttpResponses<G> {
        HttpResponses { body }
    }
}

#[cfg(feature = "http")]
impl<F> fmt::Debug for HttpResponses<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponses").finish_non_exhaustive()
    }
}

/// Makes the bodies of [`HttpResponses`]: [`DefaultBody`] or any
/// `Fn(&HttpFault) -> B`.
#[cfg(feature = "http")]
pub trait MakeBody<B> {
    /// The body of the response for `fault`.
    fn make_body(&self, fault: &HttpFault) -> B;
}

#[cfg(feature = "http")]
impl<B: Default> MakeBody<B> for DefaultBody {
    fn make_body(&self, _: &HttpFault) -> B {
        B::default()
    }
}

#[cfg(feature = "http")]
impl<B, F: Fn(&HttpFault) -> B> MakeBody<B> for F {
    fn make_body(&self, fault: &HttpFault) -> B {
        self(fault)
    }
}

#[cfg(feature = "http")]
impl<B, F: MakeBody<B>> MakeResponse<http::Response<B>> for HttpResponses<F> {
    fn make_response(
        &self,
        fault: &HttpFault,
        chaos: &Name,
        phase: &Name,
    ) -> Option<http::Response<B>> {
        Some(http_response(
            fault,
            chaos,
            phase,
            self.body.make_body(fault),
        ))
    }
}

#[cfg(feature = "http")]
fn http_response<B>(fault: &HttpFault, chaos: &Name, phase: &Name, body: B) -> http::Response<B> {
    let mut res = http::Response::new(body);
    *res.status_mut() =
        http::StatusCode::from_u16(fault.status()).expect("the faults' statuses are valid");
    if let Some(secs) = fault.retry_after_secs() {
        res.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    res.extensions_mut().insert(InjectedResponse {
        chaos: chaos.clone(),
        phase: phase.clone(),
        fault: *fault,
    });
    res
}
