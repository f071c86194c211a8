//! Validating builders: [`DeadlineConfig`] and [`AttemptTimeoutConfig`].

use std::time::Duration;

use battlement_core::{EventSink, InvalidConfig, Name};

use crate::carry::Carry;
use crate::layer::{AttemptTimeoutLayer, DeadlineLayer};
use crate::shared::{Role, Shared};

/// Builds a [`DeadlineLayer`], rejecting a bad configuration with
/// [`InvalidConfig`].
///
/// ```
/// use std::time::Duration;
/// use battlement_deadline::DeadlineLayer;
///
/// let layer = DeadlineLayer::builder().total(Duration::from_secs(30)).build().unwrap();
/// assert_eq!(layer.total(), Duration::from_secs(30));
/// assert!(DeadlineLayer::builder().total(Duration::ZERO).build().is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct DeadlineConfig {
    total: Option<Duration>,
    name: Option<Name>,
    events: Option<EventSink>,
    carry: Carry,
}

impl DeadlineConfig {
    /// The total budget per request. Required; must be greater than zero.
    /// No default.
    #[must_use]
    pub fn total(mut self, total: Duration) -> Self {
        self.total = Some(total);
        self
    }

    /// The layer's name in events, traces and its handle. Default
    /// `"deadline"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Where deadline hits are sent as events. Default: none (traced
    /// only).
    #[must_use]
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// Whether a request that carries no deadline is given this one, or
    /// has it in scope only. Default [`Carry::Always`]; see [`Carry`].
    #[must_use]
    pub fn carry(mut self, carry: Carry) -> Self {
        self.carry = carry;
        self
    }

    /// The layer, or which field is wrong.
    pub fn build(self) -> Result<DeadlineLayer, InvalidConfig> {
        let total = match self.total {
            None => {
                return Err(InvalidConfig::new(
                    "deadline",
                    "total",
                    Option::<Duration>::None,
                    "is required",
                ));
            }
            Some(t) if t.is_zero() => {
                return Err(InvalidConfig::new("deadline", "total", t, "must be > 0"));
            }
            Some(t) => t,
        };
        Ok(DeadlineLayer::from_parts(
            total,
            Shared::configured(Role::Total, self.name, self.events),
            self.carry,
        ))
    }
}

/// Builds an [`AttemptTimeoutLayer`], rejecting a bad configuration with
/// [`InvalidConfig`].
///
/// At least one of [`per_attempt`](AttemptTimeoutConfig::per_attempt) and
/// [`fraction`](AttemptTimeoutConfig::fraction) must be set. With both, an
/// attempt gets the smaller of the two; with only a fraction, a request
/// that carries no deadline runs unbounded.
///
/// The seeds' split of one budget between a setup phase (30%) and an
/// execution phase (the rest):
///
/// ```
/// use battlement_deadline::AttemptTimeoutLayer;
///
/// let setup = AttemptTimeoutLayer::builder().fraction(0.3).build().unwrap();
/// let execution = AttemptTimeoutLayer::builder().fraction(1.0).build().unwrap();
/// assert!(AttemptTimeoutLayer::builder().fraction(1.5).build().is_err());
/// # let _ = (setup, execution);
/// ```
#[derive(Debug, Clone, Default)]
pub struct AttemptTimeoutConfig {
    per_attempt: Option<Duration>,
    fraction: Option<f64>,
    name: Option<Name>,
    events: Option<EventSink>,
    carry: Carry,
}

impl AttemptTimeoutConfig {
    /// A fixed bound per attempt, further bounded by the time left. Must be
    /// greater than zero. Default: none.
    #[must_use]
    pub fn per_attempt(mut self, per_attempt: Duration) -> Self {
        self.per_attempt = Some(per_attempt);
        self
    }

    /// Bounds each attempt by this fraction of the time left on the
    /// request's deadline when the attempt starts. Must be in `(0, 1]`;
    /// `1.0` means "whatever is left". Default: none.
    #[must_use]
    pub fn fraction(mut self, fraction: f64) -> Self {
        self.fraction = Some(fraction);
        self
    }

    /// The layer's name in events, traces and its handle. Default
    /// `"attempt_timeout"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Where hits are sent as events. Default: none (traced only).
    #[must_use]
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// Whether a request that carries no deadline is given this one, or
    /// has it in scope only. Default [`Carry::Always`]; see [`Carry`].
    #[must_use]
    pub fn carry(mut self, carry: Carry) -> Self {
        self.carry = carry;
        self
    }

    /// The layer, or which field is wrong.
    pub fn build(self) -> Result<AttemptTimeoutLayer, InvalidConfig> {
        if let Some(d) = self.per_attempt
            && d.is_zero()
        {
            return Err(InvalidConfig::new(
                "attempt_timeout",
                "per_attempt",
                d,
                "must be > 0",
            ));
        }
        if let Some(f) = self.fraction
            && !(f > 0.0 && f <= 1.0)
        {
            return Err(InvalidConfig::new(
                "attempt_timeout",
                "fraction",
                f,
                "must be in (0, 1]",
            ));
        }
        if self.per_attempt.is_none() && self.fraction.is_none() {
            return Err(InvalidConfig::new(
                "attempt_timeout",
                "per_attempt",
                Option::<Duration>::None,
                "per_attempt or fraction is required",
            ));
        }
        Ok(AttemptTimeoutLayer::from_parts(
            self.per_attempt,
            self.fraction,
            Shared::configured(Role::Attempt, self.name, self.events),
            self.carry,
        ))
    }
}
