//! The states of a circuit breaker: [`CircuitState`].
//!
//! It lives in core (and is re-exported by `battlement-breaker`) because
//! events, the registry's health rules, the fan-out and the fallback all
//! need to tell an open breaker from a closed one without depending on the
//! breaker crate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls flow and outcomes are recorded; a trip rule may open it.
    Closed,
    /// Calls are rejected until the open duration has passed.
    Open,
    /// A bounded number of probe calls decide whether to close or re-open.
    HalfOpen,
    /// Opened by hand: calls are rejected until released.
    ForcedOpen,
    /// Switched off by hand: every call is admitted and nothing recorded.
    Disabled,
    /// Records and reports, never trips.
    MetricsOnly,
}

impl CircuitState {
    /// Every state.
    pub const ALL: [CircuitState; 6] = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
        CircuitState::ForcedOpen,
        CircuitState::Disabled,
        CircuitState::MetricsOnly,
    ];

    /// The state's name in `snake_case`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::Disabled => "disabled",
            CircuitState::MetricsOnly => "metrics_only",
        }
    }

    /// `true` when calls are being rejected (`Open` or `ForcedOpen`).
    pub const fn is_open(self) -> bool {
        matches!(self, CircuitState::Open | CircuitState::ForcedOpen)
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
