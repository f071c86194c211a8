//! Turning a call's result into an [`Outcome`]: [`Classify`],
//! [`ErrorClassifier`] and [`ResponseClassifier`].

use std::error::Error;
use std::fmt;
use std::io;

use crate::error::{
    AllFailed, AttemptTimedOut, BoxError, BulkheadFull, CircuitOpen, DeadlineExceeded,
    FallbackFailed, InvalidConfig, LimitExceeded, QuorumNotReached, RetriesExhausted, Shed,
    Throttled,
};
use crate::outcome::{Failure, FailureKind, Outcome};

/// Judges the result of one call.
///
/// Layers take a classifier as a value and call it once per completed call.
/// Any `Fn(&Result<Res, Err>) -> Outcome` is a classifier:
///
/// ```
/// use battlement_core::{Classify, FailureKind, Outcome};
///
/// // HTTP-ish: a status of 500 or more is a failure worth a retry.
/// let by_status = |res: &Result<u16, std::io::Error>| match res {
///     Ok(s) if *s >= 500 => Outcome::failure(FailureKind::Unavailable),
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::failure(FailureKind::Network),
/// };
/// assert!(by_status.classify(&Ok(503)).is_retryable());
/// assert!(by_status.classify(&Ok(200)).is_success());
/// ```
pub trait Classify<Res, Err> {
    /// The outcome of `result`.
    fn classify(&self, result: &Result<Res, Err>) -> Outcome;
}

impl<F, Res, Err> Classify<Res, Err> for F
where
    F: Fn(&Result<Res, Err>) -> Outcome,
{
    fn classify(&self, result: &Result<Res, Err>) -> Outcome {
        self(result)
    }
}

/// An error that can be looked at as `&dyn Error`, so [`ErrorClassifier`]
/// can walk its `source()` chain.
///
/// Implemented for tower's [`BoxError`] (the error every layer returns),
/// the other boxed `dyn Error` forms, [`std::io::Error`], and the
/// workspace's own errors. For an error type of your own, implement it in
/// one line:
///
/// ```
/// use battlement_core::AsDynError;
///
/// #[derive(Debug)]
/// struct MyError;
/// impl std::fmt::Display for MyError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("my error")
///     }
/// }
/// impl std::error::Error for MyError {}
///
/// impl AsDynError for MyError {
///     fn as_dyn_error(&self) -> &(dyn std::error::Error + 'static) {
///         self
///     }
/// }
/// ```
pub trait AsDynError {
    /// `self` as a `dyn Error`.
    fn as_dyn_error(&self) -> &(dyn Error + 'static);
}

impl AsDynError for BoxError {
    fn as_dyn_error(&self) -> &(dyn Error + 'static) {
        &**self
    }
}

impl AsDynError for Box<dyn Error + Send + 'static> {
    fn as_dyn_error(&self) -> &(dyn Error + 'static) {
        &**self
    }
}

impl AsDynError for Box<dyn Error + 'static> {
    fn as_dyn_error(&self) -> &(dyn Error + 'static) {
        &**self
    }
}

macro_rules! as_dyn_error_for {
    ($($ty:ty),* $(,)?) => {$(
        impl AsDynError for $ty {
            fn as_dyn_error(&self) -> &(dyn Error + 'static) {
                self
            }
        }
    )*};
}

as_dyn_error_for!(
    io::Error,
    CircuitOpen,
    Shed,
    Throttled,
    BulkheadFull,
    LimitExceeded,
    DeadlineExceeded,
    AttemptTimedOut,
    RetriesExhausted,
    AllFailed,
    QuorumNotReached,
    FallbackFailed,
    InvalidConfig,
    tower::timeout::error::Elapsed,
    tower::load_shed::error::Overloaded,
);

impl AsDynError for std::convert::Infallible {
    fn as_dyn_error(&self) -> &(dyn Error + 'static) {
        match *self {}
    }
}

/// The default classifier: every `Ok` is a success, and an error is judged
/// by walking its whole `source()` chain, outermost first, until an error
/// it recognises.
///
/// # The table
///
/// | error (anywhere in the chain)                                     | kind              | retryable | retry-after |
/// |-------------------------------------------------------------------|-------------------|-----------|-------------|
/// | [`CircuitOpen`]                                                   | `Rejected`        | no        | its `retry_after` |
/// | [`Shed`]                                                          | `Rejected`        | no        | its `retry_after` |
/// | [`Throttled`]                                                     | `Rejected`        | no        | —           |
/// | [`BulkheadFull`], [`LimitExceeded`]                               | `Rejected`        | no        | its `retry_after` |
/// | [`DeadlineExceeded`]                                              | `Timeout`         | **no**    | —           |
/// | [`AttemptTimedOut`]                                               | `Timeout`         | yes       | —           |
/// | tower's `Elapsed` (`tower::timeout`)                              | `Timeout`         | yes       | —           |
/// | tower's `Overloaded` (`tower::load_shed`)                         | `Unavailable`     | yes       | —           |
/// | [`RetriesExhausted`]                                              | kind of its last error | **no** | its `retry_after` |
/// | [`FallbackFailed`]                                                | kind of its primary error | no | —       |
/// | [`AllFailed`], [`QuorumNotReached`]                               | `Unavailable`     | no        | —           |
/// | [`InvalidConfig`]                                                 | `Configuration`   | no        | —           |
/// | `io::Error` `ConnectionRefused`, `ConnectionReset`, `ConnectionAborted`, `NotConnected`, `BrokenPipe`, `AddrNotAvailable`, `AddrInUse`, `NetworkUnreachable`, `HostUnreachable`, `NetworkDown`, `UnexpectedEof` | `Network` | yes | — |
/// | `io::Error` `TimedOut`                                            | `Timeout`         | yes       | —           |
/// | `io::Error` `WouldBlock`, `Interrupted`                           | `Transient`       | yes       | —           |
/// | `io::Error` `ResourceBusy`                                        | `Unavailable`     | yes       | —           |
/// | `io::Error` `InvalidInput`, `InvalidData`                         | `InvalidRequest`  | no        | —           |
/// | `io::Error` `NotFound`                                            | `NotFound`        | no        | —           |
/// | `io::Error` `PermissionDenied`                                    | `Authorization`   | no        | —           |
/// | `io::Error` `Unsupported`                                         | `Configuration`   | no        | —           |
/// | any other `io::Error` that wraps an error (`io::Error::other(e)`) | judged by what it wraps | | |
/// | any other `io::Error`                                             | `Unknown`         | yes       | —           |
/// | anything else, at the end of the chain                            | `Unknown`         | yes       | —           |
///
/// The first recognised error in the chain decides; an `io::Error` is
/// looked through when it only wraps another error (kind `Other` with an
/// inner error), so `io::Error::other(CircuitOpen { .. })` is still an open
/// circuit.
///
/// ```
/// use battlement_core::{BoxError, Classify, ErrorClassifier, FailureKind, Outcome};
/// use std::io;
///
/// let err: BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionRefused));
/// let outcome = ErrorClassifier::new().classify(&Err::<(), _>(err));
/// assert_eq!(outcome.as_failure().unwrap().kind, FailureKind::Network);
/// assert!(outcome.is_retryable());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorClassifier {
    _priv: (),
}

impl ErrorClassifier {
    /// The default classifier.
    pub const fn new() -> Self {
        ErrorClassifier { _priv: () }
    }

    /// Classifies one error by walking its `source()` chain.
    pub fn classify_error(&self, err: &(dyn Error + 'static)) -> Failure {
        let mut current = Some(err);
        while let Some(e) = current {
            if let Some(failure) = recognise(e) {
                return failure;
            }
            current = e.source();
        }
        Failure::new(FailureKind::Unknown)
    }

    /// Pairs this classifier for errors with `f` for `Ok` responses: see
    /// [`ResponseClassifier`].
    pub const fn with_responses<F>(self, f: F) -> ResponseClassifier<F> {
        ResponseClassifier { responses: f }
    }
}

/// What one error in a chain says on its own, if anything.
fn recognise(e: &(dyn Error + 'static)) -> Option<Failure> {
    use FailureKind::*;
    if let Some(open) = e.downcast_ref::<CircuitOpen>() {
        return Some(
            Failure::new(Rejected)
                .retryable(false)
                .with_retry_after(open.retry_after),
        );
    }
    if let Some(shed) = e.downcast_ref::<Shed>() {
        return Some(
            Failure::new(Rejected)
                .retryable(false)
                .with_retry_after(shed.retry_after),
        );
    }
    if e.is::<Throttled>() {
        return Some(Failure::new(Rejected).retryable(false));
    }
    if let Some(full) = e.downcast_ref::<BulkheadFull>() {
        return Some(
            Failure::new(Rejected)
                .retryable(false)
                .with_retry_after(full.retry_after),
        );
    }
    if let Some(over) = e.downcast_ref::<LimitExceeded>() {
        return Some(
            Failure::new(Rejected)
                .retryable(false)
                .with_retry_after(over.retry_after),
        );
    }
    if e.is::<DeadlineExceeded>() {
        return Some(Failure::new(Timeout).retryable(false));
    }
    if e.is::<AttemptTimedOut>() || e.is::<tower::timeout::error::Elapsed>() {
        return Some(Failure::new(Timeout).retryable(true));
    }
    if e.is::<tower::load_shed::error::Overloaded>() {
        return Some(Failure::new(Unavailable).retryable(true));
    }
    if let Some(ex) = e.downcast_ref::<RetriesExhausted>() {
        let inner = ErrorClassifier::new().classify_error(&*ex.last);
        return Some(
            inner
                .retryable(false)
                .with_retry_after(ex.retry_after.or(inner.retry_after)),
        );
    }
    if let Some(ff) = e.downcast_ref::<FallbackFailed>() {
        return Some(
            ErrorClassifier::new()
                .classify_error(&*ff.primary)
                .retryable(false),
        );
    }
    if e.is::<AllFailed>() || e.is::<QuorumNotReached>() {
        return Some(Failure::new(Unavailable).retryable(false));
    }
    if e.is::<InvalidConfig>() {
        return Some(Failure::new(Configuration).retryable(false));
    }
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return Some(io_failure(io));
    }
    None
}

/// The table's rows for `std::io::Error`.
fn io_failure(err: &io::Error) -> Failure {
    use FailureKind::*;
    use io::ErrorKind as K;
    let kind = match err.kind() {
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::AddrNotAvailable
        | K::AddrInUse
        | K::NetworkUnreachable
        | K::HostUnreachable
        | K::NetworkDown
        | K::UnexpectedEof => Network,
        K::TimedOut => Timeout,
        K::WouldBlock | K::Interrupted => Transient,
        K::ResourceBusy => Unavailable,
        K::InvalidInput | K::InvalidData => InvalidRequest,
        K::NotFound => NotFound,
        K::PermissionDenied => Authorization,
        K::Unsupported => Configuration,
        // `io::Error::other(e)` and friends: judge by what is inside (an
        // `io::Error`'s own `source()` skips the error it wraps).
        _ => match err.get_ref() {
            Some(inner) => return ErrorClassifier::new().classify_error(inner),
            None => Unknown,
        },
    };
    Failure::new(kind)
}

impl<Res, Err: AsDynError> Classify<Res, Err> for ErrorClassifier {
    fn classify(&self, result: &Result<Res, Err>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Failure(self.classify_error(e.as_dyn_error())),
        }
    }
}

/// Classifies `Ok` responses with a function and errors with
/// [`ErrorClassifier`]: the shape most services need, where an HTTP 503 is
/// an `Ok` that is really a failure.
///
/// ```
/// use battlement_core::{BoxError, Classify, ErrorClassifier, FailureKind, Outcome};
///
/// let classify = ErrorClassifier::new().with_responses(|status: &u16| {
///     if *status >= 500 { Outcome::failure(FailureKind::Unavailable) } else { Outcome::Success }
/// });
/// assert!(classify.classify(&Ok::<u16, BoxError>(503)).is_failure());
/// assert!(classify.classify(&Ok::<u16, BoxError>(200)).is_success());
/// ```
#[derive(Clone, Copy)]
pub struct ResponseClassifier<F> {
    responses: F,
}

impl<F> ResponseClassifier<F> {
    /// A classifier that judges `Ok` responses with `f`.
    pub const fn new(f: F) -> Self {
        ResponseClassifier { responses: f }
    }
}

impl<F> fmt::Debug for ResponseClassifier<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseClassifier").finish_non_exhaustive()
    }
}

impl<F, Res, Err> Classify<Res, Err> for ResponseClassifier<F>
where
    F: Fn(&Res) -> Outcome,
    Err: AsDynError,
{
    fn classify(&self, result: &Result<Res, Err>) -> Outcome {
        match result {
            Ok(res) => (self.responses)(res),
            Err(e) => Outcome::Failure(ErrorClassifier::new().classify_error(e.as_dyn_error())),
        }
    }
}
