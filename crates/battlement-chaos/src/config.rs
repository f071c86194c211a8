//! The fault injector's builder: [`ChaosBuilder`].

use std::fmt;

use battlement_core::{BoxError, EventSink, FailureKind, InvalidConfig, Name};

use crate::chaos::ErrorFn;
use crate::{Chaos, Phase, Schedule};

/// Configures a [`Chaos`]. Made by [`Chaos::builder`]; each method
/// consumes and returns the builder; [`build`](Self::build) validates and
/// starts the schedule's clock.
///
/// ```
/// use std::time::Duration;
/// use battlement_chaos::{Chaos, FailureKind, HttpFault, Latency, Phase};
///
/// let (ms, secs) = (Duration::from_millis, Duration::from_secs);
/// let chaos = Chaos::builder("upstream")
///     .seed(42)
///     .phase(Phase::healthy(secs(5)))
///     .phase(Phase::new("latency spike", secs(5)).latency(Latency::uniform(ms(100), ms(400))))
///     .phase(Phase::new("outage", secs(10)).error_ratio(1.0, FailureKind::Unavailable))
///     .phase(
///         Phase::new("rate limited", secs(5))
///             .respond(0.5, HttpFault::TooManyRequests { retry_after: secs(1) }),
///     )
///     .phase(Phase::healthy(secs(5)).named("recovery"))
///     .repeat(false)
///     .build()
///     .unwrap();
/// assert_eq!(chaos.schedule().total(), secs(30));
/// ```
pub struct ChaosBuilder {
    pub(crate) name: Name,
    pub(crate) phases: Vec<Phase>,
    pub(crate) repeat: bool,
    pub(crate) seed: u64,
    pub(crate) enabled: bool,
    pub(crate) error_fn: Option<ErrorFn>,
    pub(crate) events: EventSink,
}

impl ChaosBuilder {
    /// A builder for a fault injector named `name`, with no phases (it
    /// injects nothing until given some), not repeating, enabled, and a
    /// random seed.
    pub fn new(name: impl Into<Name>) -> Self {
        ChaosBuilder {
            name: name.into(),
            phases: Vec::new(),
            repeat: false,
            // Below 2^53, so a JSON reader that parses numbers as doubles
            // reads the seed of the registry's report exactly.
            seed: fastrand::u64(..1 << 53),
            enabled: true,
            error_fn: None,
            events: EventSink::none(),
        }
    }

    /// Appends a phase to the schedule.
    #[must_use]
    pub fn phase(mut self, phase: Phase) -> Self {
        self.phases.push(phase);
        self
    }

    /// Appends phases to the schedule.
    #[must_use]
    pub fn phases(mut self, phases: impl IntoIterator<Item = Phase>) -> Self {
        self.phases.extend(phases);
        self
    }

    /// Whether the schedule starts again after its last phase. Default:
    /// `false` (once finished, every call passes through).
    #[must_use]
    pub fn repeat(mut self, repeat: bool) -> Self {
        self.repeat = repeat;
        self
    }

    /// The seed of the draws: the same seed and the same calls give the
    /// same faults. Default: a random seed, shown by [`Chaos::seed`] and
    /// in the registry's report.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Whether it injects from the start. Default: `true`. Built disabled,
    /// it waits for [`Chaos::enable`] (or an `enable` control).
    #[must_use]
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Makes injected errors with `f` instead of
    /// [`Injected`](crate::Injected) (which the default classifier reads
    /// by its kind): for an error type your classifier knows.
    #[must_use]
    pub fn error_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(FailureKind) -> BoxError + Send + Sync + 'static,
    {
        self.error_fn = Some(std::sync::Arc::new(f));
        self
    }

    /// Where phase changes (seen at the first call or report in the new
    /// phase), enable/disable and resets go. Default: nowhere but
    /// `tracing`.
    #[must_use]
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = sink;
        self
    }

    /// Validates the schedule, builds the fault injector and starts its
    /// schedule's clock.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the field and the phase when a phase lasts
    /// zero, a ratio is outside `[0, 1]`, a phase's error and response
    /// ratios add up to more than 1, a latency's bounds are inverted
    /// (uniform `min > max`, long-tail `p50 > p99` or `p50 = 0`), a
    /// latency or `Retry-After` is over 24 hours, or the phases' total
    /// overflows a `Duration`.
    pub fn build(mut self) -> Result<Chaos, InvalidConfig> {
        let schedule = Schedule::new(std::mem::take(&mut self.phases), self.repeat)?;
        Ok(Chaos::from_builder(self, schedule))
    }
}

impl fmt::Debug for ChaosBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosBuilder")
            .field("name", &self.name)
            .field("phases", &self.phases)
            .field("repeat", &self.repeat)
            .field("seed", &self.seed)
            .field("enabled", &self.enabled)
            .field("error_fn", &self.error_fn.is_some())
            .finish_non_exhaustive()
    }
}
