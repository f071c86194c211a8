//! How long to wait between attempts: [`Backoff`] and [`Jitter`].

use std::time::Duration;

use battlement_core::InvalidConfig;

use crate::random::RandomSource;

/// The shape of the wait before each retry, before [`Jitter`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Constant,
    Exponential,
    Decorrelated,
}

/// How long to wait before each retry.
///
/// - [`Backoff::constant`]: the same delay every time.
/// - [`Backoff::exponential`]: `base × multiplier^(retry-1)`, capped at
///   `max` (defaults: multiplier 2, max 10 s).
/// - [`Backoff::decorrelated`]: AWS's "decorrelated jitter",
///   `min(max, uniform(base, 3 × previous))`; it is random by itself, so
///   [`Jitter`] does not apply to it.
///
/// [`Jitter`] (default [`Jitter::None`]) then spreads the delay so that
/// clients failing together do not retry together: [`Jitter::Full`] waits
/// `uniform(0, d)`, [`Jitter::Equal`] waits `d/2 + uniform(0, d/2)`.
///
/// A per-[`FailureKind`](battlement_core::FailureKind) base delay set on the
/// policy replaces `base` (or the constant delay) for failures of that kind.
///
/// ```
/// use battlement_retry::{Backoff, Jitter};
/// use std::time::Duration;
///
/// let backoff = Backoff::exponential(Duration::from_millis(100))
///     .multiplier(3.0)
///     .max(Duration::from_secs(2))
///     .jitter(Jitter::Equal);
/// assert_eq!(backoff.base(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    shape: Shape,
    base: Duration,
    multiplier: f64,
    max: Duration,
    jitter: Jitter,
}

/// How a [`Backoff`]'s delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// The delay as computed (the default).
    #[default]
    None,
    /// `uniform(0, d)`: the best spread, may retry at once.
    Full,
    /// `d/2 + uniform(0, d/2)`: spread, but never less than half.
    Equal,
}

impl Default for Backoff {
    /// Exponential from 100 ms, ×2, up to 10 s, full jitter.
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(100)).jitter(Jitter::Full)
    }
}

impl Backoff {
    /// No wait at all between attempts.
    pub const fn none() -> Self {
        Backoff::constant(Duration::ZERO)
    }

    /// The same `delay` before every retry.
    pub const fn constant(delay: Duration) -> Self {
        Backoff {
            shape: Shape::Constant,
            base: delay,
            multiplier: 1.0,
            max: delay,
            jitter: Jitter::None,
        }
    }

    /// `base`, then `base × multiplier`, `base × multiplier²`, ... capped at
    /// `max`. Defaults: multiplier 2, max 10 s (or `base` if larger).
    pub fn exponential(base: Duration) -> Self {
        Backoff {
            shape: Shape::Exponential,
            base,
            multiplier: 2.0,
            max: base.max(Duration::from_secs(10)),
            jitter: Jitter::None,
        }
    }

    /// Decorrelated jitter: each delay is `uniform(base, 3 × previous)`,
    /// capped at `max` (default 10 s, or `base` if larger).
    pub fn decorrelated(base: Duration) -> Self {
        Backoff {
            shape: Shape::Decorrelated,
            base,
            multiplier: 3.0,
            max: base.max(Duration::from_secs(10)),
            jitter: Jitter::None,
        }
    }

    /// Sets the growth factor of an exponential backoff (default 2; must be
    /// finite and at least 1). Ignored by the other shapes.
    #[must_use]
    pub const fn multiplier(mut self, multiplier: f64) -> Self {
        if matches!(self.shape, Shape::Exponential) {
            self.multiplier = multiplier;
        }
        self
    }

    /// Sets the cap of an exponential or decorrelated backoff (default
    /// 10 s; must be at least `base`). Ignored by a constant backoff.
    #[must_use]
    pub const fn max(mut self, max: Duration) -> Self {
        if !matches!(self.shape, Shape::Constant) {
            self.max = max;
        }
        self
    }

    /// Sets the jitter (default [`Jitter::None`] for the constructors,
    /// [`Jitter::Full`] for [`Backoff::default`]). Ignored by a
    /// decorrelated backoff.
    #[must_use]
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The base delay (the constant delay of a constant backoff).
    pub const fn base(&self) -> Duration {
        self.base
    }

    /// The cap on any delay.
    pub const fn max_delay(&self) -> Duration {
        self.max
    }

    /// Checks the parameters; called by the policy's `build()`.
    pub(crate) fn validate(&self) -> Result<(), InvalidConfig> {
        match self.shape {
            Shape::Constant => Ok(()),
            Shape::Exponential => {
                if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
                    return Err(InvalidConfig::new(
                        "retry",
                        "backoff.multiplier",
                        self.multiplier,
                        "must be finite and >= 1",
                    ));
                }
                self.check_max()
            }
            Shape::Decorrelated => {
                if self.base.is_zero() {
                    return Err(InvalidConfig::new(
                        "retry",
                        "backoff.base",
                        self.base,
                        "must be > 0 for a decorrelated backoff",
                    ));
                }
                self.check_max()
            }
        }
    }

    fn check_max(&self) -> Result<(), InvalidConfig> {
        if self.max < self.base {
            return Err(InvalidConfig::new(
                "retry",
                "backoff.max",
                self.max,
                format!("must be >= backoff.base ({:?})", self.base),
            ));
        }
        Ok(())
    }

    /// The delay before retry number `retry` (1 for the first retry),
    /// with `base` in place of the configured base, after a previous delay
    /// of `prev` (zero before the first retry).
    ///
    /// Never panics and never exceeds the cap ([`max_delay`](Self::max_delay),
    /// or `base` if larger), whatever the parameters: the arithmetic is in
    /// floating point and converted back saturating, a growth that
    /// overflows (`multiplier(1e300)`, a `Duration::MAX` cap) reads as the
    /// cap, and one that is not a number (a zero base grown by an infinite
    /// factor) or negative reads as zero.
    pub fn delay(
        &self,
        retry: u32,
        base: Option<Duration>,
        prev: Duration,
        random: &dyn RandomSource,
    ) -> Duration {
        let base = base.unwrap_or(self.base);
        // A per-kind base above the cap lifts the cap with it.
        let cap = self.max.max(base);
        let max = cap.as_secs_f64();
        let base_s = base.as_secs_f64();
        let raw = match self.shape {
            Shape::Constant => base_s,
            Shape::Exponential => {
                let exp = retry.saturating_sub(1).min(i32::MAX as u32) as i32;
                let grown = base_s * self.multiplier.powi(exp);
                if grown.is_nan() { 0.0 } else { grown.min(max) }
            }
            Shape::Decorrelated => {
                let hi = (prev.as_secs_f64() * 3.0).max(base_s);
                let r = unit(random);
                return secs(base_s + (hi - base_s) * r).min(cap);
            }
        };
        let jittered = match self.jitter {
            Jitter::None => raw,
            Jitter::Full => raw * unit(random),
            Jitter::Equal => raw / 2.0 + raw / 2.0 * unit(random),
        };
        // Seconds in `f64` round: converted back, a delay at the cap may
        // come out a few nanoseconds above it.
        secs(jittered).min(cap)
    }
}

/// One draw from `random`, clamped into `[0, 1]`.
fn unit(random: &dyn RandomSource) -> f64 {
    let r = random.next_f64();
    if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) }
}

/// Seconds to a duration, saturating instead of panicking: not a number
/// or negative is zero, past `Duration::MAX` is `Duration::MAX`.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn seq(b: &Backoff, n: u32, r: &dyn RandomSource) -> Vec<Duration> {
        let mut prev = Duration::ZERO;
        (1..=n)
            .map(|i| {
                prev = b.delay(i, None, prev, r);
                prev
            })
            .collect()
    }

    #[test]
    fn constant_and_exponential_without_jitter() {
        let r = SeededRandom::new(1);
        assert_eq!(seq(&Backoff::constant(ms(50)), 3, &r), [ms(50); 3]);
        assert_eq!(seq(&Backoff::none(), 2, &r), [Duration::ZERO; 2]);
        let exp = Backoff::exponential(ms(100)).max(ms(700));
        assert_eq!(
            seq(&exp, 5, &r),
            [ms(100), ms(200), ms(400), ms(700), ms(700)]
        );
        let triple = Backoff::exponential(ms(10)).multiplier(3.0);
        assert_eq!(seq(&triple, 3, &r), [ms(10), ms(30), ms(90)]);
        // per-kind base override
        assert_eq!(exp.delay(2, Some(ms(300)), ms(0), &r), ms(600));
    }

    #[test]
    fn jitter_modes_follow_the_source() {
        let half = || 0.5;
        let exp = Backoff::exponential(ms(100));
        assert_eq!(
            seq(&exp.jitter(Jitter::Full), 3, &half),
            [ms(50), ms(100), ms(200)]
        );
        assert_eq!(
            seq(&exp.jitter(Jitter::Equal), 3, &half),
            [ms(75), ms(150), ms(300)]
        );
        // decorrelated: uniform(base, 3 * prev), capped
        let dec = Backoff::decorrelated(ms(100)).max(ms(1000));
        // prev 0 -> hi = base -> 100; then hi 300 -> 100 + 200*0.5 = 200;
        // then hi 600 -> 350; then hi 1050 -> 575; then hi 1725 -> capped 912.5 -> 912.5
        assert_eq!(
            seq(&dec, 5, &half),
            [
                ms(100),
                ms(200),
                ms(350),
                ms(575),
                Duration::from_micros(912_500)
            ]
        );
    }

    #[test]
    fn seeded_sequences_repeat() {
        let b = Backoff::exponential(ms(100)).jitter(Jitter::Full);
        let a = seq(&b, 6, &SeededRandom::new(9));
        let c = seq(&b, 6, &SeededRandom::new(9));
        assert_eq!(a, c);
        // each one is within [0, nominal]
        let nominal = seq(&Backoff::exponential(ms(100)), 6, &SeededRandom::new(0));
        for (j, n) in a.iter().zip(&nominal) {
            assert!(j <= n);
        }
    }

    #[test]
    fn validation_names_the_field() {
        let e = Backoff::exponential(ms(100))
            .multiplier(0.5)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "backoff.multiplier");
        let e = Backoff::exponential(ms(100))
            .max(ms(10))
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "backoff.max");
        let e = Backoff::decorrelated(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "backoff.base");
        assert!(Backoff::default().validate().is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn delays_never_exceed_the_cap(
            base_ms in 0u64..5_000,
            mult in 1.0f64..10.0,
            max_extra in 0u64..60_000,
            retry in 1u32..200,
            prev_ms in 0u64..100_000,
            r in 0.0f64..1.0,
            shape in 0u8..3,
            jitter in 0u8..3,
        ) {
            let base = ms(base_ms.max(1));
            let max = base + ms(max_extra);
            let b = match shape {
                0 => Backoff::constant(base),
                1 => Backoff::exponential(base).multiplier(mult).max(max),
                _ => Backoff::decorrelated(base).max(max),
            }
            .jitter(match jitter { 0 => Jitter::None, 1 => Jitter::Full, _ => Jitter::Equal });
            prop_assert!(b.validate().is_ok());
            let src = move || r;
            let d = b.delay(retry, None, ms(prev_ms), &src);
            prop_assert!(d <= b.max_delay().max(base));
            if shape == 2 {
                prop_assert!(d >= base.min(b.max_delay()));
            }
        }
    }
}
