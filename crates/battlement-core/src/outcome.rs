//! What a call came to: [`Outcome`], [`Failure`] and [`FailureKind`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one call came to, as a [`Classify`](crate::Classify) judged it.
///
/// Every layer of the workspace acts on outcomes rather than on raw results:
/// a breaker counts them, a retry decides on them, a fallback triggers on
/// them. `Outcome` is `Copy` and small, so classifying costs nothing on the
/// hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call did what was asked.
    Success,
    /// The call failed; the [`Failure`] says how and whether to retry.
    Failure(Failure),
    /// Neither a success nor a failure: a client cancellation, a caller's
    /// own mistake a breaker should not count, a rejection to pass through.
    /// Layers count it neither way.
    Ignored,
}

impl Outcome {
    /// A failure of `kind` with the kind's default retryability.
    pub const fn failure(kind: FailureKind) -> Self {
        Outcome::Failure(Failure::new(kind))
    }

    /// `true` for [`Outcome::Success`].
    pub const fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// `true` for [`Outcome::Failure`].
    pub const fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failure(_))
    }

    /// `true` for [`Outcome::Ignored`].
    pub const fn is_ignored(&self) -> bool {
        matches!(self, Outcome::Ignored)
    }

    /// The failure, if this is one.
    pub const fn as_failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Failure(f) => Some(f),
            _ => None,
        }
    }

    /// `true` when this is a failure a retry may repeat.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Failure(f) if f.retryable)
    }
}

/// How a call failed, whether repeating it may help, and how long to wait
/// first if the other side said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Failure {
    /// The kind of failure.
    pub kind: FailureKind,
    /// Whether the same request may succeed if sent again.
    pub retryable: bool,
    /// How long the other side (or one of our layers) asked us to wait
    /// before trying again (`Retry-After`, gRPC pushback, an open circuit).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure of `kind` with [`FailureKind::default_retryable`] and no
    /// retry-after.
    pub const fn new(kind: FailureKind) -> Self {
        Failure {
            kind,
            retryable: kind.default_retryable(),
            retry_after: None,
        }
    }

    /// Sets whether the failure may be retried.
    #[must_use]
    pub const fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Sets how long to wait before trying again.
    #[must_use]
    pub const fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }
}

impl From<Failure> for Outcome {
    fn from(failure: Failure) -> Self {
        Outcome::Failure(failure)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        if self.retryable {
            f.write_str(" (retryable)")?;
        }
        if let Some(after) = self.retry_after {
            write!(f, ", retry after {after:?}")?;
        }
        Ok(())
    }
}

/// The kinds of failure every layer of the workspace understands.
///
/// The defaults of [`FailureKind::default_retryable`] follow what the
/// resilience libraries agree on: trouble on the way or on the other side
/// is worth another try, a request that is wrong or not allowed is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The connection could not be made or broke (refused, reset, aborted).
    Network,
    /// The call took longer than it was allowed to.
    Timeout,
    /// The other side asked us to slow down (HTTP 429, gRPC
    /// `RESOURCE_EXHAUSTED`).
    RateLimited,
    /// The other side is down or overloaded (HTTP 502/503, gRPC
    /// `UNAVAILABLE`).
    Unavailable,
    /// A passing fault worth another try (HTTP 500, gRPC `ABORTED`).
    Transient,
    /// The caller is not known (HTTP 401, gRPC `UNAUTHENTICATED`).
    Authentication,
    /// The caller may not do this (HTTP 403, gRPC `PERMISSION_DENIED`).
    Authorization,
    /// The request is malformed (HTTP 400, gRPC `INVALID_ARGUMENT`).
    InvalidRequest,
    /// What was asked for does not exist (HTTP 404, gRPC `NOT_FOUND`).
    NotFound,
    /// The system is set up wrong (invalid configuration, HTTP 501).
    Configuration,
    /// One of this workspace's own layers refused the call: an open
    /// circuit, a shed by a gate, an exhausted budget.
    Rejected,
    /// Nothing recognised it.
    Unknown,
}

impl FailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [FailureKind; 12] = [
        FailureKind::Network,
        FailureKind::Timeout,
        FailureKind::RateLimited,
        FailureKind::Unavailable,
        FailureKind::Transient,
        FailureKind::Authentication,
        FailureKind::Authorization,
        FailureKind::InvalidRequest,
        FailureKind::NotFound,
        FailureKind::Configuration,
        FailureKind::Rejected,
        FailureKind::Unknown,
    ];

    /// Whether a failure of this kind is retryable unless a classifier says
    /// otherwise: `Network`, `Timeout`, `RateLimited`, `Unavailable`,
    /// `Transient` and `Unknown` are; the rest are not.
    pub const fn default_retryable(self) -> bool {
        matches!(
            self,
            FailureKind::Network
                | FailureKind::Timeout
                | FailureKind::RateLimited
                | FailureKind::Unavailable
                | FailureKind::Transient
                | FailureKind::Unknown
        )
    }

    /// The kind's name in `snake_case`, as it appears in JSON and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::Network => "network",
            FailureKind::Timeout => "timeout",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Transient => "transient",
            FailureKind::Authentication => "authentication",
            FailureKind::Authorization => "authorization",
            FailureKind::InvalidRequest => "invalid_request",
            FailureKind::NotFound => "not_found",
            FailureKind::Configuration => "configuration",
            FailureKind::Rejected => "rejected",
            FailureKind::Unknown => "unknown",
        }
    }

    /// The kind's position in [`FailureKind::ALL`], for fixed-size
    /// per-kind tables.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_all() {
        for (i, kind) in FailureKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }

    #[test]
    fn builders() {
        let f = Failure::new(FailureKind::RateLimited)
            .retryable(false)
            .with_retry_after(Some(Duration::from_secs(2)));
        assert!(!f.retryable);
        assert_eq!(f.to_string(), "rate_limited, retry after 2s");
        assert!(Outcome::from(f).is_failure());
        assert!(!Outcome::from(f).is_retryable());
        assert!(Outcome::failure(FailureKind::Network).is_retryable());
        assert!(!Outcome::failure(FailureKind::NotFound).is_retryable());
        assert!(Outcome::Ignored.is_ignored() && Outcome::Success.is_success());
    }
}
