//! What building a [`Policy`](crate::Policy) can refuse: [`PolicyError`],
//! [`Conflict`] and [`Check`].

use std::fmt;
use std::time::Duration;

use battlement_core::InvalidConfig;
use battlement_registry::DuplicateName;

/// Why [`PolicyBuilder::build`](crate::PolicyBuilder::build) refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// One part's own builder refused its settings (the error names the
    /// part's field and bound).
    #[error("policy `{policy}`: {source}")]
    Invalid {
        /// The policy's name.
        policy: String,
        /// The part's refusal.
        #[source]
        source: InvalidConfig,
    },
    /// Two parts' settings do not fit together.
    #[error("policy `{}`: {}", .0.policy, .0)]
    Conflict(Conflict),
    /// A component name the policy registers is taken in the registry.
    #[error("policy `{policy}`: {source}")]
    Duplicate {
        /// The policy's name.
        policy: String,
        /// The registry's refusal (it names the holder's kind).
        #[source]
        source: DuplicateName,
    },
}

impl PolicyError {
    /// The conflict, when this is one.
    pub fn as_conflict(&self) -> Option<&Conflict> {
        match self {
            PolicyError::Conflict(c) => Some(c),
            _ => None,
        }
    }
}

/// A cross-part rule that [`build`](crate::PolicyBuilder::build) checks.
///
/// Every rule is an error but [`Check::RetriesFitTotal`], which is a
/// warning: it is reported as an error unless allowed with
/// [`PolicyBuilder::allow`](crate::PolicyBuilder::allow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// The attempt timeout is at most the total: an attempt bound above
    /// the total could never fire.
    AttemptWithinTotal,
    /// A breaker's time window is at least twice the attempt timeout, so
    /// that the window holds the outcome of more than one slow attempt
    /// (the rule of .NET's standard resilience handler).
    BreakerWindowCoversAttempts,
    /// Every retry the policy allows can start before the total runs out,
    /// even when each attempt before it runs to its timeout and each
    /// backoff to its maximum: `(max_attempts - 1) × attempt + Σ backoff +
    /// min_time_left ≤ total`. A warning: a total that cuts the last
    /// retries short may be meant.
    RetriesFitTotal,
    /// A fallback service is bounded in time by at most the total
    /// (`FallbackBuilder::source_timeout`, which a policy sets to the total
    /// by default): a fallback must not be slower than the budget it
    /// rescues.
    FallbackWithinTotal,
}

impl Check {
    /// `true` for the rules that [`allow`](crate::PolicyBuilder::allow)
    /// can turn off.
    pub const fn is_warning(self) -> bool {
        matches!(self, Check::RetriesFitTotal)
    }

    /// The rule's name in `snake_case`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Check::AttemptWithinTotal => "attempt_within_total",
            Check::BreakerWindowCoversAttempts => "breaker_window_covers_attempts",
            Check::RetriesFitTotal => "retries_fit_total",
            Check::FallbackWithinTotal => "fallback_within_total",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Two settings of a policy that break a [`Check`], with both values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The policy's name.
    pub policy: String,
    /// The rule broken.
    pub check: Check,
    /// The first setting: its path and value.
    pub left: (&'static str, Duration),
    /// The setting it is measured against: its path and value.
    pub right: (&'static str, Duration),
    /// The rule as a phrase over the two (`"must be at most"`).
    pub bound: &'static str,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` ({:?}) {} `{}` ({:?}) [{}{}]",
            self.left.0,
            self.left.1,
            self.bound,
            self.right.0,
            self.right.1,
            self.check,
            if self.check.is_warning() {
                ", a warning: allow it with `.allow(Check::RetriesFitTotal)`"
            } else {
                ""
            }
        )
    }
}
