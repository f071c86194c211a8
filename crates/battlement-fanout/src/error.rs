//! The crate's own small errors, reported per backend inside
//! [`AllFailed`](battlement_core::AllFailed) and
//! [`QuorumNotReached`](battlement_core::QuorumNotReached).

use battlement_core::Failure;

/// A backend answered, but the classifier judged the response a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifiedFailure {
    /// The classifier's verdict.
    pub failure: Failure,
}

impl std::fmt::Display for ClassifiedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "response classified as a failure: {}", self.failure)
    }
}

impl std::error::Error for ClassifiedFailure {}

/// A backend's call was dropped or never started because the fan-out
/// ended first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned {
    /// Why: `"cancelled"`, `"not called"` or `"window closed"`.
    pub reason: &'static str,
}

impl std::fmt::Display for Abandoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "backend call abandoned ({})", self.reason)
    }
}

impl std::error::Error for Abandoned {}
