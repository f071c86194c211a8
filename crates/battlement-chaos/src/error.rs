//! [`Injected`]: the error a chaos layer fails a call with.

use std::io;

use battlement_core::{FailureKind, Name};

/// A failure injected by a chaos layer instead of calling the inner
/// service. Travels as [`BoxError`](battlement_core::BoxError); check it
/// with `err.is::<Injected>()`.
///
/// Its [`source()`](std::error::Error::source) is an [`io::Error`] whose
/// kind `battlement_core::ErrorClassifier` reads as the injected kind, so
/// every layer's default classifier judges an injected failure as the real
/// one it stands for:
///
/// | kind | `io::ErrorKind` of the source | the classifier reads |
/// |---|---|---|
/// | `Network` | `ConnectionRefused` | `Network` |
/// | `Timeout` | `TimedOut` | `Timeout` |
/// | `Transient` | `Interrupted` | `Transient` |
/// | `Unavailable` | `ResourceBusy` | `Unavailable` |
/// | `InvalidRequest` | `InvalidData` | `InvalidRequest` |
/// | `NotFound` | `NotFound` | `NotFound` |
/// | `Authorization` | `PermissionDenied` | `Authorization` |
/// | `Configuration` | `Unsupported` | `Configuration` |
/// | `RateLimited` | `ResourceBusy` | **`Unavailable`** (no I/O error means "slow down"; both are retryable overload) |
/// | `Authentication` | `PermissionDenied` | **`Authorization`** (neither is retryable) |
/// | `Rejected`, `Unknown` | `Other` | `Unknown` |
///
/// For the exact kind in the last three rows, inject your own error with
/// [`ChaosBuilder::error_fn`](crate::ChaosBuilder::error_fn) (a core
/// `Shed` for `Rejected`, say) or, over HTTP, answer with a 429 response
/// ([`HttpFault::TooManyRequests`](crate::HttpFault::TooManyRequests)),
/// which an HTTP classifier reads as `RateLimited`.
///
/// ```
/// use battlement_chaos::{FailureKind, Injected};
/// use battlement_core::{BoxError, Classify, ErrorClassifier};
///
/// let err: BoxError = Box::new(Injected::new("db", "outage", FailureKind::Timeout));
/// assert_eq!(err.to_string(), "chaos `db` injected a timeout failure in phase `outage`");
/// let outcome = ErrorClassifier::new().classify(&Err::<(), _>(err));
/// assert_eq!(outcome.as_failure().unwrap().kind, FailureKind::Timeout);
/// ```
#[derive(Debug, thiserror::Error)]
#[error("chaos `{chaos}` injected a {kind} failure in phase `{phase}`")]
pub struct Injected {
    /// The chaos component's name.
    pub chaos: Name,
    /// The phase in force when the call was made.
    pub phase: Name,
    /// The kind of failure it stands for.
    pub kind: FailureKind,
    #[source]
    source: io::Error,
}

impl Injected {
    /// A failure of `kind` injected by `chaos` in its phase `phase`.
    pub fn new(chaos: impl Into<Name>, phase: impl Into<Name>, kind: FailureKind) -> Self {
        Injected {
            chaos: chaos.into(),
            phase: phase.into(),
            kind,
            source: io::Error::from(io_kind(kind)),
        }
    }

    /// The I/O error it carries as its source.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

/// The `io::ErrorKind` that `ErrorClassifier` reads as `kind` (or the
/// nearest: see [`Injected`]).
pub(crate) const fn io_kind(kind: FailureKind) -> io::ErrorKind {
    use io::ErrorKind as K;
    match kind {
        FailureKind::Network => K::ConnectionRefused,
        FailureKind::Timeout => K::TimedOut,
        FailureKind::Transient => K::Interrupted,
        FailureKind::Unavailable | FailureKind::RateLimited => K::ResourceBusy,
        FailureKind::InvalidRequest => K::InvalidData,
        FailureKind::NotFound => K::NotFound,
        FailureKind::Authorization | FailureKind::Authentication => K::PermissionDenied,
        FailureKind::Configuration => K::Unsupported,
        _ => K::Other,
    }
}
