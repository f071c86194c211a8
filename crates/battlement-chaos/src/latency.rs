//! [`Latency`]: how long an injected delay lasts.

use std::fmt;
use std::time::Duration;

use battlement_core::InvalidConfig;

use crate::rng::{Draws, Slot};

/// The standard normal's 99th percentile: `Φ⁻¹(0.99)`.
const Z99: f64 = 2.326_347_874_040_841;

/// How long an injected delay lasts: a fixed time, uniform between two
/// bounds, or a long tail (log-normal) given by its median and 99th
/// percentile. Every value is clamped to [`max`](Self::max) when one is set.
///
/// ```
/// use std::time::Duration;
/// use battlement_chaos::Latency;
///
/// let ms = Duration::from_millis;
/// let fixed = Latency::fixed(ms(50));
/// let uniform = Latency::uniform(ms(100), ms(400));
/// // Half the calls under 20 ms, one in a hundred over 250 ms, none over 1 s.
/// let tail = Latency::long_tail(ms(20), ms(250)).max(Duration::from_secs(1));
/// assert_eq!(uniform.bounds(), (ms(100), ms(400)));
/// assert_eq!(tail.bounds(), (Duration::ZERO, Duration::from_secs(1)));
/// # let _ = fixed;
/// ```
#[derive(Clone, Copy, PartialEq)]
pub struct Latency {
    dist: Dist,
    max: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dist {
    Fixed(Duration),
    Uniform { min: Duration, max: Duration },
    LongTail { p50: Duration, p99: Duration },
}

impl Latency {
    /// The longest delay a configuration may ask for: 24 hours.
    pub const MAX: Duration = Duration::from_secs(24 * 3600);

    /// Always `delay`.
    pub const fn fixed(delay: Duration) -> Self {
        Latency {
            dist: Dist::Fixed(delay),
            max: None,
        }
    }

    /// Uniform in `[min, max]` (to the nanosecond). `min` must be at most
    /// `max`.
    pub const fn uniform(min: Duration, max: Duration) -> Self {
        Latency {
            dist: Dist::Uniform { min, max },
            max: None,
        }
    }

    /// A long tail: log-normal with median `p50` and 99th percentile
    /// `p99` (`ln X ~ N(ln p50, σ)` with `σ = ln(p99 / p50) / Φ⁻¹(0.99)`),
    /// clamped to `10 × p99` (at most [`Latency::MAX`]) unless
    /// [`max`](Self::max) says otherwise.
    /// `p50` must be above zero and at most `p99`.
    pub const fn long_tail(p50: Duration, p99: Duration) -> Self {
        Latency {
            dist: Dist::LongTail { p50, p99 },
            max: None,
        }
    }

    /// Clamps every delay to at most `max`.
    #[must_use]
    pub const fn max(mut self, max: Duration) -> Self {
        self.max = Some(max);
        self
    }

    /// The shortest and longest delay this can give.
    pub fn bounds(&self) -> (Duration, Duration) {
        let (lo, hi) = match self.dist {
            Dist::Fixed(d) => (d, d),
            Dist::Uniform { min, max } => (min, max),
            Dist::LongTail { p99, .. } => (Duration::ZERO, tail_cap(p99)),
        };
        match self.max {
            Some(max) => (lo.min(max), hi.min(max)),
            None => (lo, hi),
        }
    }

    /// The delay drawn for call `n` of a sequence seeded `seed` (in a
    /// schedule each phase's sequence is seeded from the chaos's seed and
    /// the phase's index): to preview a distribution, or check one in a
    /// test.
    ///
    /// ```
    /// use std::time::Duration;
    /// use battlement_chaos::Latency;
    ///
    /// let tail = Latency::long_tail(Duration::from_millis(20), Duration::from_millis(250));
    /// let mut delays: Vec<_> = (0..10_000).map(|n| tail.draw(1, n)).collect();
    /// delays.sort();
    /// let p50 = delays[5_000].as_secs_f64() * 1e3;
    /// assert!((18.0..22.0).contains(&p50), "{p50}");
    /// ```
    pub fn draw(&self, seed: u64, n: u64) -> Duration {
        self.sample(Draws::new(seed, n))
    }

    /// Checks the bounds of [`uniform`](Self::uniform) and
    /// [`long_tail`](Self::long_tail), and that the fixed delay, the
    /// uniform maximum and the p99 are at most [`Latency::MAX`]; `at` says
    /// which phase, for the error.
    pub(crate) fn validate(&self, at: &dyn fmt::Display) -> Result<(), InvalidConfig> {
        let bad = |bound: &'static str| {
            Err(InvalidConfig::new(
                "chaos",
                "latency",
                format_args!("{self:?} in {at}"),
                bound,
            ))
        };
        match self.dist {
            Dist::Uniform { min, max } if min > max => return bad("min must be at most max"),
            Dist::LongTail { p50, .. } if p50.is_zero() => return bad("p50 must be above zero"),
            Dist::LongTail { p50, p99 } if p50 > p99 => return bad("p50 must be at most p99"),
            _ => {}
        }
        let longest = match self.dist {
            Dist::Fixed(d) => d,
            Dist::Uniform { max, .. } => max,
            Dist::LongTail { p99, .. } => p99,
        };
        if longest > Self::MAX {
            return bad("must be at most 24 hours");
        }
        Ok(())
    }

    /// The delay for one call's draws.
    #[inline]
    pub(crate) fn sample(&self, draws: Draws) -> Duration {
        let d = match self.dist {
            Dist::Fixed(d) => d,
            Dist::Uniform { min, max } => {
                // `span` fits: both bounds are at most `MAX` (validated).
                let span = (max - min).as_nanos() as u64;
                let r = u128::from(draws.bits(Slot::Value));
                let offset = (r * (u128::from(span) + 1)) >> 64;
                min + Duration::from_nanos(offset as u64)
            }
            Dist::LongTail { p50, p99 } => {
                let cap = self.max.unwrap_or(tail_cap(p99));
                long_tail(p50, p99, draws).map_or(cap, |d| d.min(cap))
            }
        };
        match self.max {
            Some(max) => d.min(max),
            None => d,
        }
    }
}

/// The default clamp of a long tail: `10 × p99`, at most [`Latency::MAX`].
fn tail_cap(p99: Duration) -> Duration {
    p99.saturating_mul(10).min(Latency::MAX)
}

/// A log-normal draw (Box–Muller); `None` when it does not fit a
/// `Duration` (the caller clamps).
fn long_tail(p50: Duration, p99: Duration, draws: Draws) -> Option<Duration> {
    let mu = p50.as_secs_f64().ln();
    let sigma = (p99.as_secs_f64().ln() - mu) / Z99;
    // `u1` in (0, 1]: its logarithm is finite.
    let u1 = 1.0 - draws.unit(Slot::Value);
    let u2 = draws.unit(Slot::Value2);
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    Duration::try_from_secs_f64((mu + sigma * z).exp()).ok()
}

impl fmt::Debug for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.dist {
            Dist::Fixed(d) => write!(f, "fixed({d:?})")?,
            Dist::Uniform { min, max } => write!(f, "uniform({min:?}, {max:?})")?,
            Dist::LongTail { p50, p99 } => write!(f, "long_tail(p50 {p50:?}, p99 {p99:?})")?,
        }
        if let Some(max) = self.max {
            write!(f, ".max({max:?})")?;
        }
        Ok(())
    }
}
