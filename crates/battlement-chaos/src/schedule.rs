//! The schedule: [`Phase`]s one after another, [`Schedule::phase_at`].

use std::fmt;
use std::time::Duration;

use battlement_core::{FailureKind, InvalidConfig, Name};

use crate::{HttpFault, Latency};

/// One stretch of a [`Schedule`]: how long it lasts and what it injects.
///
/// A phase with nothing configured ([`Phase::healthy`]) passes every call
/// through. Within a phase, each call draws once for a fault and once for
/// latency: a share `response_ratio` of the calls is answered with the
/// phase's [`HttpFault`], the next `error_ratio` fails with its
/// [`FailureKind`] (the two never overlap, so their sum may be at most 1),
/// and independently a share of the calls is delayed by the phase's
/// [`Latency`] first.
///
/// ```
/// use std::time::Duration;
/// use battlement_chaos::{FailureKind, HttpFault, Latency, Phase};
///
/// let secs = Duration::from_secs;
/// let spike = Phase::new("latency spike", secs(5))
///     .latency(Latency::uniform(Duration::from_millis(100), Duration::from_millis(400)));
/// let outage = Phase::new("outage", secs(10)).error_ratio(1.0, FailureKind::Unavailable);
/// let limited = Phase::new("rate limited", secs(5))
///     .respond(0.5, HttpFault::TooManyRequests { retry_after: secs(1) });
/// let recovery = Phase::healthy(secs(5)).named("recovery");
/// assert!(recovery.is_healthy() && !outage.is_healthy());
/// # let _ = (spike, limited);
/// ```
#[derive(Clone, PartialEq)]
pub struct Phase {
    pub(crate) name: Name,
    pub(crate) duration: Duration,
    pub(crate) latency: Option<(f64, Latency)>,
    pub(crate) error: Option<(f64, FailureKind)>,
    pub(crate) response: Option<(f64, HttpFault)>,
}

impl Phase {
    /// A phase named `name` that lasts `duration` and injects nothing
    /// until configured.
    pub fn new(name: impl Into<Name>, duration: Duration) -> Self {
        Phase {
            name: name.into(),
            duration,
            latency: None,
            error: None,
            response: None,
        }
    }

    /// A phase named `healthy` that injects nothing for `duration`.
    pub fn healthy(duration: Duration) -> Self {
        Phase::new("healthy", duration)
    }

    /// Renames the phase.
    #[must_use]
    pub fn named(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// Delays every call by `latency` before calling the inner service.
    #[must_use]
    pub fn latency(self, latency: Latency) -> Self {
        self.latency_ratio(1.0, latency)
    }

    /// Delays a share `ratio` (in `[0, 1]`) of the calls by `latency`.
    #[must_use]
    pub fn latency_ratio(mut self, ratio: f64, latency: Latency) -> Self {
        self.latency = Some((ratio, latency));
        self
    }

    /// Fails a share `ratio` (in `[0, 1]`) of the calls with an
    /// [`Injected`](crate::Injected) error of `kind` (or the builder's
    /// [`error_fn`](crate::ChaosBuilder::error_fn)), without calling the
    /// inner service.
    #[must_use]
    pub fn error_ratio(mut self, ratio: f64, kind: FailureKind) -> Self {
        self.error = Some((ratio, kind));
        self
    }

    /// Answers a share `ratio` (in `[0, 1]`) of the calls with `fault`,
    /// without calling the inner service: a synthetic HTTP response under
    /// [`ChaosLayer::http`](crate::ChaosLayer::http), an
    /// [`Injected`](crate::Injected) error of [`HttpFault::kind`]
    /// otherwise.
    #[must_use]
    pub fn respond(mut self, ratio: f64, fault: HttpFault) -> Self {
        self.response = Some((ratio, fault));
        self
    }

    /// The phase's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// How long it lasts.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The share of calls delayed and by what.
    pub fn latency_config(&self) -> Option<(f64, Latency)> {
        self.latency
    }

    /// The share of calls failed and with what kind.
    pub fn error_config(&self) -> Option<(f64, FailureKind)> {
        self.error
    }

    /// The share of calls answered and with what.
    pub fn response_config(&self) -> Option<(f64, HttpFault)> {
        self.response
    }

    /// `true` when the phase injects nothing (no share above zero).
    pub fn is_healthy(&self) -> bool {
        let none = |r: Option<f64>| r.is_none_or(|r| r <= 0.0);
        none(self.latency.map(|l| l.0))
            && none(self.error.map(|e| e.0))
            && none(self.response.map(|r| r.0))
    }

    fn validate(&self, index: usize) -> Result<(), InvalidConfig> {
        let at = At(index, &self.name);
        let bad = |field: &'static str, value: f64, bound: &'static str| {
            Err(InvalidConfig::new(
                "chaos",
                field,
                format_args!("{value} in {at}"),
                bound,
            ))
        };
        if self.duration.is_zero() {
            return Err(InvalidConfig::new(
                "chaos",
                "phase.duration",
                format_args!("0s in {at}"),
                "must be above zero",
            ));
        }
        let ratios = [
            ("phase.latency_ratio", self.latency.map(|l| l.0)),
            ("phase.error_ratio", self.error.map(|e| e.0)),
            ("phase.response_ratio", self.response.map(|r| r.0)),
        ];
        for (field, ratio) in ratios {
            if let Some(r) = ratio
                && !(0.0..=1.0).contains(&r)
            {
                return bad(field, r, "must be in [0, 1]");
            }
        }
        let faults = self.error.map_or(0.0, |e| e.0) + self.response.map_or(0.0, |r| r.0);
        if faults > 1.0 + 1e-9 {
            return bad(
                "phase.error_ratio",
                faults,
                "plus response_ratio must be at most 1",
            );
        }
        if let Some((_, latency)) = &self.latency {
            latency.validate(&at)?;
        }
        if let Some((_, fault)) = &self.response {
            fault.validate(&at)?;
        }
        Ok(())
    }
}

/// `phase 2 (`outage`)`, for configuration errors.
struct At<'a>(usize, &'a str);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "phase {} (`{}`)", self.0, self.1)
    }
}

impl fmt::Debug for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Phase");
        d.field("name", &self.name)
            .field("duration", &self.duration);
        if let Some(l) = &self.latency {
            d.field("latency", l);
        }
        if let Some(e) = &self.error {
            d.field("error", e);
        }
        if let Some(r) = &self.response {
            d.field("response", r);
        }
        d.finish()
    }
}

/// Where a schedule is at a given time: made by [`Schedule::phase_at`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PhaseAt<'a> {
    /// The phase's position in the schedule.
    pub index: usize,
    /// The phase.
    pub phase: &'a Phase,
    /// The time left until the next phase (or the end).
    pub remaining: Duration,
    /// How many times the whole schedule has run before this pass (0
    /// unless it repeats).
    pub cycle: u64,
}

/// The phases one after another, from the schedule's start; once the last
/// ends, the schedule is finished (every call passes through) or, when it
/// repeats, starts again from the first.
///
/// ```
/// use std::time::Duration;
/// use battlement_chaos::{Chaos, FailureKind, Phase};
///
/// let secs = Duration::from_secs;
/// let chaos = Chaos::builder("db")
///     .phase(Phase::healthy(secs(5)))
///     .phase(Phase::new("outage", secs(10)).error_ratio(1.0, FailureKind::Network))
///     .build()
///     .unwrap();
/// let schedule = chaos.schedule();
/// assert_eq!(schedule.phase_at(secs(4)).unwrap().phase.name().as_ref(), "healthy");
/// let at = schedule.phase_at(secs(5)).unwrap();
/// assert_eq!((at.index, at.remaining), (1, secs(10)));
/// assert!(schedule.phase_at(secs(15)).is_none()); // finished
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    phases: Vec<Phase>,
    /// Where each phase ends, from the start.
    ends: Vec<Duration>,
    repeat: bool,
}

impl Schedule {
    pub(crate) fn new(phases: Vec<Phase>, repeat: bool) -> Result<Schedule, InvalidConfig> {
        let mut ends = Vec::with_capacity(phases.len());
        let mut total = Duration::ZERO;
        for (i, phase) in phases.iter().enumerate() {
            phase.validate(i)?;
            total = total.checked_add(phase.duration).ok_or_else(|| {
                InvalidConfig::new(
                    "chaos",
                    "phase.duration",
                    format_args!("{:?} in {}", phase.duration, At(i, &phase.name)),
                    "the phases' total must fit in a Duration",
                )
            })?;
            ends.push(total);
        }
        Ok(Schedule {
            phases,
            ends,
            repeat,
        })
    }

    /// The phases, in order.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// Whether the schedule starts again after its last phase.
    pub fn repeats(&self) -> bool {
        self.repeat
    }

    /// The length of one pass through every phase.
    pub fn total(&self) -> Duration {
        self.ends.last().copied().unwrap_or_default()
    }

    /// The phase `elapsed` after the schedule's start; `None` once a
    /// schedule that does not repeat is finished, or when it has no phases.
    /// A phase covers `[start, end)`: at its exact end, the next one is in
    /// force. Pure: the same `elapsed` always gives the same answer.
    pub fn phase_at(&self, elapsed: Duration) -> Option<PhaseAt<'_>> {
        let (index, cycle, into) = self.locate(elapsed)?;
        Some(PhaseAt {
            index,
            phase: &self.phases[index],
            remaining: self.ends[index] - into,
            cycle,
        })
    }

    /// The phase's index, the cycle and the time into the cycle.
    #[inline]
    pub(crate) fn locate(&self, elapsed: Duration) -> Option<(usize, u64, Duration)> {
        let total = *self.ends.last()?;
        let (cycle, into) = if elapsed < total {
            (0, elapsed)
        } else if self.repeat {
            let (e, t) = (elapsed.as_nanos(), total.as_nanos());
            let into = e % t;
            // `into < total`, which is a `Duration`: it fits.
            let into = Duration::new((into / 1_000_000_000) as u64, (into % 1_000_000_000) as u32);
            (u64::try_from(e / t).unwrap_or(u64::MAX), into)
        } else {
            return None;
        };
        let index = self.ends.partition_point(|end| *end <= into);
        Some((index, cycle, into))
    }
}
