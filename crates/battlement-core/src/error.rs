//! The workspace's own error types.
//!
//! Each is a small concrete type that travels as [`BoxError`] and is checked
//! by downcast (`err.is::<CircuitOpen>()`), as tower's `Elapsed` and
//! `Overloaded` are, so layers stack freely. Each carries what a caller
//! needs: the component's name, how long to wait, how many attempts were
//! made, and the inner error as [`source()`](std::error::Error::source).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::{CircuitState, Level, Priority};

/// The error type every layer of the workspace returns: tower's boxed error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub use crate::name::Name;

/// Formats an optional wait as `; retry after 1.5s`, or nothing.
struct RetryAfter(Option<Duration>);

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "; retry after {d:?}"),
            None => Ok(()),
        }
    }
}

/// A circuit breaker refused the call without calling the service.
///
/// Classified as [`FailureKind::Rejected`](crate::FailureKind::Rejected),
/// not retryable, with `retry_after` as its retry-after.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit `{name}` is {state}{}", RetryAfter(*.retry_after))]
pub struct CircuitOpen {
    /// The breaker's name.
    pub name: Name,
    /// The state that refused the call (`Open`, `ForcedOpen`, or `HalfOpen`
    /// when every probe permit is taken).
    pub state: CircuitState,
    /// The time until the next probe may be admitted, when known.
    pub retry_after: Option<Duration>,
}

impl CircuitOpen {
    /// A rejection by the breaker `name` in `state`.
    pub fn new(name: impl Into<Name>, state: CircuitState, retry_after: Option<Duration>) -> Self {
        CircuitOpen {
            name: name.into(),
            state,
            retry_after,
        }
    }
}

/// A degradation gate shed the call: its priority is not admitted at the
/// gate's current level.
///
/// Classified as [`FailureKind::Rejected`](crate::FailureKind::Rejected),
/// not retryable, with `retry_after` as its retry-after.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gate `{gate}` at level {level} shed a {priority}-priority request{}", RetryAfter(*.retry_after))]
pub struct Shed {
    /// The gate's name.
    pub gate: Name,
    /// The gate's level when it refused the call.
    pub level: Level,
    /// The request's priority.
    pub priority: Priority,
    /// How long the caller should wait before trying again.
    pub retry_after: Option<Duration>,
}

/// A client-side throttle refused the call locally because the backend has
/// been rejecting too much of the recent traffic (the SRE book's adaptive
/// throttling).
///
/// Classified as [`FailureKind::Rejected`](crate::FailureKind::Rejected),
/// not retryable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("throttle `{name}` refused the request locally (rejection probability {probability:.3})")]
pub struct Throttled {
    /// The throttle's name.
    pub name: Name,
    /// The rejection probability in force when the call was refused.
    pub probability: f64,
}

/// A bulkhead refused the call: all its slots were taken and it had no
/// room to wait in, or the wait for a slot ran out.
///
/// Classified as [`FailureKind::Rejected`](crate::FailureKind::Rejected),
/// not retryable, with `retry_after` as its retry-after.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bulkhead `{name}` is full ({max_concurrent} call(s) in flight{}){}", Waited(*.waited), RetryAfter(*.retry_after))]
pub struct BulkheadFull {
    /// The bulkhead's name.
    pub name: Name,
    /// Its bound on calls in flight.
    pub max_concurrent: u32,
    /// How long the call waited for a slot before it was refused (zero when
    /// it was refused at once).
    pub waited: Duration,
    /// How long the caller should wait before trying again.
    pub retry_after: Option<Duration>,
}

impl BulkheadFull {
    /// A refusal by the bulkhead `name` of `max_concurrent` slots after a
    /// wait of `waited`.
    pub fn new(
        name: impl Into<Name>,
        max_concurrent: u32,
        waited: Duration,
        retry_after: Option<Duration>,
    ) -> Self {
        BulkheadFull {
            name: name.into(),
            max_concurrent,
            waited,
            retry_after,
        }
    }
}

/// An adaptive concurrency limit refused the call: as many calls as its
/// current limit were in flight (and it had no room to wait in, or the wait
/// ran out).
///
/// Classified as [`FailureKind::Rejected`](crate::FailureKind::Rejected),
/// not retryable, with `retry_after` as its retry-after.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("concurrency limit `{name}` exceeded ({limit} call(s) in flight{}){}", Waited(*.waited), RetryAfter(*.retry_after))]
pub struct LimitExceeded {
    /// The limiter's name.
    pub name: Name,
    /// The limit in force when the call was refused.
    pub limit: u32,
    /// How long the call waited for a slot before it was refused (zero when
    /// it was refused at once).
    pub waited: Duration,
    /// How long the caller should wait before trying again.
    pub retry_after: Option<Duration>,
}

impl LimitExceeded {
    /// A refusal by the limiter `name` at `limit` after a wait of `waited`.
    pub fn new(
        name: impl Into<Name>,
        limit: u32,
        waited: Duration,
        retry_after: Option<Duration>,
    ) -> Self {
        LimitExceeded {
            name: name.into(),
            limit,
            waited,
            retry_after,
        }
    }
}

/// Formats a wait as `, waited 5ms`, or nothing when zero.
struct Waited(Duration);

impl fmt::Display for Waited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            Ok(())
        } else {
            write!(f, ", waited {:?}", self.0)
        }
    }
}

/// The request's total time budget passed before it completed.
///
/// Classified as [`FailureKind::Timeout`](crate::FailureKind::Timeout) and
/// **not** retryable: there is no time left to retry in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline exceeded: budget {budget:?}, elapsed {elapsed:?}")]
pub struct DeadlineExceeded {
    /// The budget the request was given (the time from the start of the
    /// layer that enforced it to the deadline).
    pub budget: Duration,
    /// How long the request ran before it was cut.
    pub elapsed: Duration,
}

/// One attempt took longer than it was allowed to.
///
/// Classified as [`FailureKind::Timeout`](crate::FailureKind::Timeout),
/// retryable: another attempt may be faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("attempt timed out after {timeout:?}")]
pub struct AttemptTimedOut {
    /// The bound the attempt was given.
    pub timeout: Duration,
}

/// Why a retry layer stopped retrying and gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetryStop {
    /// Every permitted attempt was made.
    MaxAttempts,
    /// The retry budget had no token for another attempt.
    BudgetExhausted,
    /// The request's deadline left too little time for another attempt.
    Deadline,
    /// The other side asked to wait longer than allowed or than the time
    /// left.
    RetryAfterTooLong,
    /// The request could not be cloned for another attempt, or the
    /// `retry_if` predicate refused it.
    NotRepeatable,
}

impl RetryStop {
    /// The reason's name in `snake_case`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RetryStop::MaxAttempts => "max_attempts",
            RetryStop::BudgetExhausted => "budget_exhausted",
            RetryStop::Deadline => "deadline",
            RetryStop::RetryAfterTooLong => "retry_after_too_long",
            RetryStop::NotRepeatable => "not_repeatable",
        }
    }
}

impl fmt::Display for RetryStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A retry layer gave up on a request whose last attempt failed with a
/// retryable error.
///
/// `source()` is the last attempt's error. Classified by that error's kind
/// but **not** retryable, so an outer retry layer does not multiply the
/// attempts.
#[derive(Debug, thiserror::Error)]
#[error("gave up after {attempts} attempt(s) ({reason}){}", RetryAfter(*.retry_after))]
pub struct RetriesExhausted {
    /// How many attempts were made, the first included.
    pub attempts: u32,
    /// Why no further attempt was made.
    pub reason: RetryStop,
    /// The retry-after the last failure carried, kept for the caller.
    pub retry_after: Option<Duration>,
    /// The last attempt's error.
    #[source]
    pub last: BoxError,
}

/// Every backend of a fan-out failed (or was skipped).
///
/// `source()` is the first backend's error. Classified as
/// [`FailureKind::Unavailable`](crate::FailureKind::Unavailable), not
/// retryable.
#[derive(Debug)]
pub struct AllFailed {
    /// Each backend's name and error, in the order they were configured.
    pub errors: Vec<(Name, BoxError)>,
}

impl fmt::Display for AllFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "all {} backend(s) failed: {}",
            self.errors.len(),
            DisplayNamed(&self.errors)
        )
    }
}

impl std::error::Error for AllFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        first_source(&self.errors)
    }
}

/// A fan-out could not reach its quorum: too few backends succeeded, and
/// too few were left to make it up.
///
/// `source()` is the first failed backend's error. Classified as
/// [`FailureKind::Unavailable`](crate::FailureKind::Unavailable), not
/// retryable.
#[derive(Debug)]
pub struct QuorumNotReached {
    /// How many backends succeeded.
    pub succeeded: usize,
    /// How many successes were needed.
    pub needed: usize,
    /// How many backends there were.
    pub total: usize,
    /// Each failed or skipped backend's name and error.
    pub errors: Vec<(Name, BoxError)>,
}

impl fmt::Display for QuorumNotReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "quorum not reached: {} of {} needed succeeded out of {} backend(s)",
            self.succeeded, self.needed, self.total
        )?;
        if !self.errors.is_empty() {
            write!(f, ": {}", DisplayNamed(&self.errors))?;
        }
        Ok(())
    }
}

impl std::error::Error for QuorumNotReached {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        first_source(&self.errors)
    }
}

fn first_source(errors: &[(Name, BoxError)]) -> Option<&(dyn std::error::Error + 'static)> {
    errors
        .first()
        .map(|(_, e)| &**e as &(dyn std::error::Error + 'static))
}

/// The primary failed and so did every fallback source.
///
/// `source()` is the primary's error; `fallbacks` holds each fallback
/// source's name and error in the order they were tried. Classified by the
/// primary error's kind, not retryable.
#[derive(Debug, thiserror::Error)]
#[error("primary failed ({primary}) and every fallback failed: {}", DisplayNamed(.fallbacks))]
pub struct FallbackFailed {
    /// The primary service's error.
    #[source]
    pub primary: BoxError,
    /// Each fallback source's name and error, in the order tried.
    pub fallbacks: Vec<(Name, BoxError)>,
}

/// A configuration was rejected at `build()`: names the field, the bound it
/// broke and the value given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {component} configuration: `{field}` = {value} {bound}")]
pub struct InvalidConfig {
    /// The kind of component being built (`"breaker"`, `"retry"`, ...).
    pub component: &'static str,
    /// The field that is wrong.
    pub field: &'static str,
    /// The bound it broke, as a phrase (`"must be in (0, 1]"`).
    pub bound: Cow<'static, str>,
    /// The value that was given, formatted.
    pub value: String,
}

impl InvalidConfig {
    /// A rejection of `field` = `value` in a `component` configuration for
    /// breaking `bound`.
    pub fn new(
        component: &'static str,
        field: &'static str,
        value: impl fmt::Debug,
        bound: impl Into<Cow<'static, str>>,
    ) -> Self {
        InvalidConfig {
            component,
            field,
            bound: bound.into(),
            value: format!("{value:?}"),
        }
    }
}

/// Formats a list of named errors as `a: e1; b: e2`.
struct DisplayNamed<'a>(&'a [(Name, BoxError)]);

impl fmt::Display for DisplayNamed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, err)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{name}: {err}")?;
        }
        Ok(())
    }
}
