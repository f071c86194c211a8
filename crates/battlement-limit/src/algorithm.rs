//! The limit algorithms: [`Aimd`] and [`Vegas`], as Netflix's
//! concurrency-limits library defines them, fed one [`Sample`] per window.

use std::time::Duration;

/// What one window of calls says: the mean latency of its calls, the most
/// calls that were in flight at once, and whether any call was dropped (an
/// overload failure: timeout, rate limited, unavailable, refused).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Sample {
    /// The mean round-trip time of the window's calls.
    pub rtt: Duration,
    /// The most calls in flight when one of the window's calls completed.
    pub max_in_flight: u32,
    /// Whether any of the window's calls was dropped.
    pub dropped: bool,
}

impl Sample {
    /// A sample of mean latency `rtt`, `max_in_flight` calls at most in
    /// flight and whether any call was `dropped`.
    pub const fn new(rtt: Duration, max_in_flight: u32, dropped: bool) -> Self {
        Sample {
            rtt,
            max_in_flight,
            dropped,
        }
    }
}

/// Additive increase, multiplicative decrease (Netflix's `AIMDLimit`).
///
/// On each window: a drop, or a mean latency above `timeout`, multiplies
/// the limit by `backoff_ratio`; otherwise, when the calls used at least
/// half of the limit, it grows by one. A window that used less than half
/// leaves it alone (the client, not the backend, is the bound).
///
/// ```
/// use battlement_limit::Aimd;
/// use std::time::Duration;
///
/// let aimd = Aimd::new().backoff_ratio(0.8).timeout(Duration::from_millis(500));
/// assert_eq!(aimd.get_backoff_ratio(), 0.8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    backoff_ratio: f64,
    timeout: Duration,
}

impl Aimd {
    /// The default backoff ratio, 0.9 (Netflix's).
    pub const DEFAULT_BACKOFF_RATIO: f64 = 0.9;
    /// The default latency above which a window counts as a drop, 5 s
    /// (Netflix's).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// AIMD with the defaults: backoff 0.9, timeout 5 s.
    pub const fn new() -> Self {
        Aimd {
            backoff_ratio: Self::DEFAULT_BACKOFF_RATIO,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The factor a drop multiplies the limit by, in `[0.5, 1)`.
    #[must_use]
    pub const fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// A window whose mean latency is above `timeout` (more than zero)
    /// counts as a drop.
    #[must_use]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The backoff ratio.
    pub const fn get_backoff_ratio(&self) -> f64 {
        self.backoff_ratio
    }

    /// The timeout.
    pub const fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// The next limit after `sample`, unclamped.
    pub fn next(&self, limit: f64, sample: &Sample) -> f64 {
        if sample.dropped || sample.rtt > self.timeout {
            limit * self.backoff_ratio
        } else if f64::from(sample.max_in_flight) * 2.0 >= limit {
            limit + 1.0
        } else {
            limit
        }
    }
}

impl Default for Aimd {
    fn default() -> Self {
        Aimd::new()
    }
}

/// TCP Vegas applied to concurrency (Netflix's `VegasLimit`): the limit
/// follows the estimated queue at the backend.
///
/// With `rtt_noload` the lowest window latency seen, a window of mean
/// latency `rtt` at limit `L` estimates the queue as
/// `ceil(L × (1 − rtt_noload / rtt))`. With `log = max(1, ⌊log10 L⌋)`:
///
/// | the window | the next limit |
/// |---|---|
/// | a drop | `L − log` |
/// | fewer than `L / 2` calls in flight (the client is the bound) | `L` |
/// | queue ≤ `log` (no queue) | `L + 6·log` (β) |
/// | queue < `3·log` (α) | `L + log` |
/// | queue > `6·log` (β) | `L − log` |
/// | in between | `L` |
///
/// then `L + smoothing × (next − L)`. Every `probe_multiplier × L`
/// windows, `rtt_noload` is reset to the window's latency, so a backend
/// that became slower for good (or faster) is measured afresh.
///
/// ```
/// use battlement_limit::Vegas;
///
/// let vegas = Vegas::new().smoothing(0.5).probe_multiplier(30);
/// assert_eq!(vegas.get_smoothing(), 0.5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vegas {
    smoothing: f64,
    probe_multiplier: u32,
}

impl Vegas {
    /// The default smoothing, 1.0: no smoothing (Netflix's).
    pub const DEFAULT_SMOOTHING: f64 = 1.0;
    /// The default probe multiplier, 30 (Netflix's).
    pub const DEFAULT_PROBE_MULTIPLIER: u32 = 30;

    /// Vegas with the defaults: smoothing 1.0, probe every `30 × limit`
    /// windows.
    pub const fn new() -> Self {
        Vegas {
            smoothing: Self::DEFAULT_SMOOTHING,
            probe_multiplier: Self::DEFAULT_PROBE_MULTIPLIER,
        }
    }

    /// How far each window moves the limit towards the algorithm's
    /// target, in `(0, 1]`.
    #[must_use]
    pub const fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// Forget the lowest latency every `multiplier × limit` windows (at
    /// least 1).
    #[must_use]
    pub const fn probe_multiplier(mut self, multiplier: u32) -> Self {
        self.probe_multiplier = multiplier;
        self
    }

    /// The smoothing.
    pub const fn get_smoothing(&self) -> f64 {
        self.smoothing
    }

    /// The probe multiplier.
    pub const fn get_probe_multiplier(&self) -> u32 {
        self.probe_multiplier
    }
}

impl Default for Vegas {
    fn default() -> Self {
        Vegas::new()
    }
}

/// `max(1, ⌊log10 limit⌋)`, as Netflix's `Log10RootFunction`.
fn log10(limit: f64) -> f64 {
    limit.max(1.0).log10().floor().max(1.0)
}

/// Which algorithm an [`AdaptiveLimit`](crate::AdaptiveLimit) runs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Algorithm {
    /// [`Aimd`].
    Aimd(Aimd),
    /// [`Vegas`].
    Vegas(Vegas),
}

impl Algorithm {
    /// The algorithm's name in `snake_case`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Algorithm::Aimd(_) => "aimd",
            Algorithm::Vegas(_) => "vegas",
        }
    }
}

impl From<Aimd> for Algorithm {
    fn from(a: Aimd) -> Self {
        Algorithm::Aimd(a)
    }
}

impl From<Vegas> for Algorithm {
    fn from(v: Vegas) -> Self {
        Algorithm::Vegas(v)
    }
}

/// An algorithm and what it remembers between windows, with the limit
/// kept within `[min, max]`.
#[derive(Debug, Clone)]
pub(crate) struct LimitState {
    algorithm: Algorithm,
    min: f64,
    max: f64,
    estimate: f64,
    /// Vegas: the lowest window latency since the last probe, in seconds.
    rtt_noload: Option<f64>,
    /// Vegas: windows since the last probe.
    since_probe: u64,
}

impl LimitState {
    /// `algorithm` starting at `initial`, kept within `[min, max]` (`initial`
    /// is clamped into it; `min` is at least 1 and at most `max`).
    pub(crate) fn new(algorithm: Algorithm, initial: u32, min: u32, max: u32) -> Self {
        let min = f64::from(min.max(1));
        let max = f64::from(max).max(min);
        LimitState {
            algorithm,
            min,
            max,
            estimate: f64::from(initial).clamp(min, max),
            rtt_noload: None,
            since_probe: 0,
        }
    }

    /// The limit in force: the estimate rounded down, within `[min, max]`.
    pub(crate) fn limit(&self) -> u32 {
        self.estimate.floor() as u32
    }

    /// The lowest latency the algorithm measures queueing against (Vegas),
    /// if it has one.
    pub(crate) fn rtt_noload(&self) -> Option<Duration> {
        self.rtt_noload
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    }

    /// Feeds one window's sample and returns the new limit.
    pub(crate) fn update(&mut self, sample: &Sample) -> u32 {
        let limit = self.estimate;
        let next = match self.algorithm {
            Algorithm::Aimd(aimd) => aimd.next(limit, sample),
            Algorithm::Vegas(vegas) => self.vegas(vegas, limit, sample),
        };
        if next.is_finite() {
            self.estimate = next.clamp(self.min, self.max);
        }
        self.limit()
    }

    fn vegas(&mut self, vegas: Vegas, limit: f64, sample: &Sample) -> f64 {
        let rtt = sample.rtt.as_secs_f64();
        if rtt <= 0.0 {
            return limit;
        }
        self.since_probe += 1;
        let probe_after = u64::from(vegas.probe_multiplier).saturating_mul(limit as u64);
        if self.since_probe >= probe_after.max(1) {
            self.since_probe = 0;
            self.rtt_noload = Some(rtt);
            return limit;
        }
        let noload = match self.rtt_noload {
            Some(n) if n <= rtt => n,
            _ => {
                self.rtt_noload = Some(rtt);
                rtt
            }
        };
        let log = log10(limit);
        let target = if sample.dropped {
            limit - log
        } else if f64::from(sample.max_in_flight) * 2.0 < limit {
            return limit;
        } else {
            let queue = (limit * (1.0 - noload / rtt)).ceil();
            if queue <= log {
                limit + 6.0 * log
            } else if queue < 3.0 * log {
                limit + log
            } else if queue > 6.0 * log {
                limit - log
            } else {
                return limit;
            }
        };
        limit + vegas.smoothing * (target - limit)
    }

    /// Back to `initial` with nothing remembered.
    pub(crate) fn reset(&mut self, initial: u32) {
        self.estimate = f64::from(initial).clamp(self.min, self.max);
        self.rtt_noload = None;
        self.since_probe = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn algorithm() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            (0.5f64..1.0, 1u64..10_000).prop_map(|(r, t)| Aimd::new()
                .backoff_ratio(r)
                .timeout(Duration::from_millis(t))
                .into()),
            (0.01f64..=1.0, 1u32..100)
                .prop_map(|(s, p)| Vegas::new().smoothing(s).probe_multiplier(p).into()),
        ]
    }

    proptest! {
        /// Any algorithm, any bounds, any samples (zero and huge latencies,
        /// any in-flight count, drops): the limit stays within [min, max].
        #[test]
        fn the_limit_stays_within_min_and_max(
            algorithm in algorithm(),
            min in 1u32..500,
            span in 0u32..2000,
            initial in any::<u32>(),
            samples in prop::collection::vec(
                (prop_oneof![Just(0u64), any::<u64>(), 0u64..1_000_000_000], any::<u32>(), any::<bool>()),
                1..200,
            ),
        ) {
            let max = min.saturating_add(span);
            let mut state = LimitState::new(algorithm, initial, min, max);
            prop_assert!((min..=max).contains(&state.limit()));
            for (nanos, in_flight, dropped) in samples {
                let limit = state.update(&Sample::new(Duration::from_nanos(nanos), in_flight, dropped));
                prop_assert!((min..=max).contains(&limit), "{limit} outside [{min}, {max}]");
            }
            state.reset(initial);
            prop_assert!((min..=max).contains(&state.limit()));
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn aimd_grows_by_one_and_backs_off() {
        let mut s = LimitState::new(Aimd::new().into(), 20, 1, 100);
        assert_eq!(s.update(&Sample::new(ms(10), 20, false)), 21);
        assert_eq!(s.update(&Sample::new(ms(10), 5, false)), 21, "app-limited");
        assert_eq!(s.update(&Sample::new(ms(10), 21, true)), 18, "21 × 0.9");
        assert_eq!(
            s.update(&Sample::new(Duration::from_secs(6), 18, false)),
            17,
            "slower than the timeout counts as a drop"
        );
    }

    #[test]
    fn vegas_steps_by_the_estimated_queue() {
        let mut s = LimitState::new(Vegas::new().into(), 20, 1, 1000);
        // First window sets rtt_noload: no queue, so + 6.
        assert_eq!(s.update(&Sample::new(ms(10), 20, false)), 26);
        // 26 × (1 − 10/12) = 4.33 → queue 5: between α (3) and β (6).
        assert_eq!(s.update(&Sample::new(ms(12), 26, false)), 26);
        // 26 × (1 − 10/20) = 13 > β: down by one.
        assert_eq!(s.update(&Sample::new(ms(20), 26, false)), 25);
        // A drop: down by one.
        assert_eq!(s.update(&Sample::new(ms(10), 25, true)), 24);
        assert_eq!(s.rtt_noload(), Some(ms(10)));
    }
}
