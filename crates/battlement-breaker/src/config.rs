//! Building a [`Breaker`]: [`BreakerBuilder`], [`WindowConfig`] and
//! [`OpenDuration`].

use std::time::Duration;

use battlement_core::{EventSink, InvalidConfig, Name};

use crate::Breaker;

const COMPONENT: &str = "breaker";

/// The sliding window the rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowConfig {
    /// The last `size` calls.
    Count {
        /// How many calls (1 to [`BreakerBuilder::MAX_COUNT_WINDOW`]).
        size: u32,
    },
    /// The last `duration` of time, kept in `buckets` buckets of
    /// `duration / buckets` each. The window covers between
    /// `duration - duration / buckets` and `duration` of the past, as the
    /// oldest bucket ages out whole.
    Time {
        /// How far back (more than zero).
        duration: Duration,
        /// In how many buckets (1 to [`BreakerBuilder::MAX_TIME_BUCKETS`]).
        buckets: u32,
    },
}

/// How long the breaker stays open before it lets probes through.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum OpenDuration {
    /// Always the same.
    Fixed(Duration),
    /// `base × multiplier^n` capped at `max`, where `n` counts the
    /// re-opens from half-open since the breaker last closed.
    Exponential {
        /// The first open duration (more than zero).
        base: Duration,
        /// The growth per re-open (at least 1.0).
        multiplier: f64,
        /// The cap (at least `base`).
        max: Duration,
    },
}

impl OpenDuration {
    /// The open duration after `reopens` re-opens without a close.
    pub fn after(&self, reopens: u32) -> Duration {
        match *self {
            OpenDuration::Fixed(d) => d,
            OpenDuration::Exponential {
                base,
                multiplier,
                max,
            } => {
                // The first open is `base` exactly: through `f64` a
                // large base comes back a few nanoseconds longer.
                if reopens == 0 {
                    return base.min(max);
                }
                let exp = i32::try_from(reopens).unwrap_or(i32::MAX);
                let secs = base.as_secs_f64() * multiplier.powi(exp);
                // Never shorter than `base` for rounding either (`max`
                // wins over `base` when a hand-made value has them the
                // wrong way round).
                Duration::try_from_secs_f64(secs).map_or(max, |d| d.max(base).min(max))
            }
        }
    }
}

/// The validated settings of a breaker.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow_call: Option<(Duration, f64)>,
    pub(crate) window: WindowConfig,
    pub(crate) minimum_calls: u32,
    pub(crate) open_duration: OpenDuration,
    pub(crate) permitted_probes: u32,
    pub(crate) max_concurrent_probes: Option<u32>,
    pub(crate) success_threshold: u32,
    pub(crate) max_half_open_wait: Option<Duration>,
}

impl Config {
    /// The most probes in flight at once, over every half-open round:
    /// `max_concurrent_probes`, or `permitted_probes` when not set.
    pub(crate) fn probe_concurrency(&self) -> u32 {
        self.max_concurrent_probes.unwrap_or(self.permitted_probes)
    }
}

/// Builds a [`Breaker`]; start with [`Breaker::builder`].
///
/// ```
/// use battlement_breaker::Breaker;
/// use std::time::Duration;
///
/// let breaker = Breaker::builder("payments")
///     .failure_rate(0.5)
///     .time_window(Duration::from_secs(30), 10)
///     .minimum_calls(20)
///     .consecutive_failures(5)
///     .slow_calls(Duration::from_secs(2), 0.8)
///     .exponential_open(Duration::from_secs(1), 2.0, Duration::from_secs(60))
///     .permitted_probes(3)
///     .success_threshold(2)
///     .build()
///     .unwrap();
/// assert_eq!(breaker.name(), "payments");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct BreakerBuilder {
    name: Name,
    config: Config,
    /// Whether a trip rule was named (or the rate rule turned off): the
    /// default rule applies only when none was.
    rule_named: bool,
    events: EventSink,
    start: battlement_core::CircuitState,
}

impl BreakerBuilder {
    /// The largest count window, in calls: its memory (one byte a call)
    /// is allocated at build and cleared on every close, so a window of
    /// `u32::MAX` calls would take 4 GiB and seconds per transition. At
    /// 100 000 a close clears 100 KB.
    pub const MAX_COUNT_WINDOW: u32 = 100_000;

    /// The most buckets a time window may have (each is four atomics,
    /// summed on every rate check).
    pub const MAX_TIME_BUCKETS: u32 = 1000;

    pub(crate) fn new(name: impl Into<Name>) -> Self {
        BreakerBuilder {
            name: name.into(),
            config: Config {
                consecutive_failures: None,
                failure_rate: None,
                slow_call: None,
                window: WindowConfig::Count { size: 100 },
                minimum_calls: 20,
                open_duration: OpenDuration::Fixed(Duration::from_secs(5)),
                permitted_probes: 1,
                max_concurrent_probes: None,
                success_threshold: 1,
                max_half_open_wait: None,
            },
            rule_named: false,
            events: EventSink::none(),
            start: battlement_core::CircuitState::Closed,
        }
    }

    /// The rule a builder that names none gets: a failure rate of 50 %
    /// over the window (once it holds `minimum_calls`).
    pub const DEFAULT_FAILURE_RATE: f64 = 0.5;

    /// Trip after `n` failures in a row (at least 1). Default: off.
    /// Naming this rule drops the default failure-rate rule; add
    /// [`failure_rate`](Self::failure_rate) to keep one.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.config.consecutive_failures = Some(n);
        self.rule_named = true;
        self
    }

    /// Trip when the failure rate over the window reaches `threshold`, in
    /// `(0, 1]`, once the window holds [`minimum_calls`](Self::minimum_calls).
    /// Default: [`DEFAULT_FAILURE_RATE`](Self::DEFAULT_FAILURE_RATE) (0.5)
    /// when no rule is named, off otherwise.
    pub fn failure_rate(mut self, threshold: f64) -> Self {
        self.config.failure_rate = Some(threshold);
        self.rule_named = true;
        self
    }

    /// Turns the failure-rate rule off, the default one included (for
    /// breakers that trip only on consecutive failures or slow calls; with
    /// no other rule the breaker never trips).
    pub fn no_failure_rate(mut self) -> Self {
        self.config.failure_rate = None;
        self.rule_named = true;
        self
    }

    /// Trip when the share of calls slower than `threshold` (success or
    /// not) reaches `rate`, in `(0, 1]`, once the window holds
    /// [`minimum_calls`](Self::minimum_calls). Default: off. Naming this
    /// rule drops the default failure-rate rule.
    pub fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        self.config.slow_call = Some((threshold, rate));
        self.rule_named = true;
        self
    }

    /// Rates are over the last `size` calls (1 to
    /// [`MAX_COUNT_WINDOW`](Self::MAX_COUNT_WINDOW), 100 000). Default: a
    /// count window of 100 calls.
    pub fn count_window(mut self, size: u32) -> Self {
        self.config.window = WindowConfig::Count { size };
        self
    }

    /// Rates are over the last `duration`, kept in `buckets` buckets (1 to
    /// [`MAX_TIME_BUCKETS`](Self::MAX_TIME_BUCKETS), 1000). Default: a
    /// count window of 100 calls.
    pub fn time_window(mut self, duration: Duration, buckets: u32) -> Self {
        self.config.window = WindowConfig::Time { duration, buckets };
        self
    }

    /// Rates count only once the window holds at least `n` calls (at least
    /// 1, at most a count window's size). Default: 20.
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.config.minimum_calls = n;
        self
    }

    /// Stay open for `d` (more than zero) every time. Default: fixed 5 s.
    pub fn open_duration(mut self, d: Duration) -> Self {
        self.config.open_duration = OpenDuration::Fixed(d);
        self
    }

    /// Stay open `base`, then `base × multiplier`, `base × multiplier²`, ...
    /// up to `max` on each re-open from half-open; a close resets it.
    /// Default: fixed 5 s.
    pub fn exponential_open(mut self, base: Duration, multiplier: f64, max: Duration) -> Self {
        self.config.open_duration = OpenDuration::Exponential {
            base,
            multiplier,
            max,
        };
        self
    }

    /// The calls admitted per half-open period (1 to 65535), as
    /// resilience4j's `permittedNumberOfCallsInHalfOpenState` and
    /// gobreaker's `MaxRequests`: once `n` probes were admitted, further
    /// calls are refused until their results decide (close or re-open).
    /// A probe that is dropped, or whose outcome is `Ignored`, gives its
    /// admission back. Default: 1.
    pub fn permitted_probes(mut self, n: u32) -> Self {
        self.config.permitted_probes = n;
        self
    }

    /// At most `n` probes in flight at once (1 to 65535), over every
    /// half-open round: a probe of an earlier round still running keeps
    /// its place. Default: `permitted_probes` (all of a period's probes
    /// may run together). `max_concurrent_probes(1)` with
    /// `permitted_probes(3)` and `success_threshold(3)` probes one call at
    /// a time and closes after three successes.
    pub fn max_concurrent_probes(mut self, n: u32) -> Self {
        self.config.max_concurrent_probes = Some(n);
        self
    }

    /// Successful probes needed to close (1 to `permitted_probes`; it may
    /// exceed `max_concurrent_probes`). Default: 1.
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.config.success_threshold = n;
        self
    }

    /// Re-open when half-open has lasted `d` (more than zero) without
    /// closing: probes that hang do not keep the breaker half-open forever.
    /// Checked when a call is refused in half-open (the period's probes
    /// all admitted, or the concurrency cap reached). Default: off.
    pub fn max_half_open_wait(mut self, d: Duration) -> Self {
        self.config.max_half_open_wait = Some(d);
        self
    }

    /// Where state transitions are sent (they are traced either way).
    /// Default: [`EventSink::none`].
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = sink;
        self
    }

    /// Start in `MetricsOnly`: record and report, never trip. Default:
    /// start `Closed`.
    pub fn metrics_only(mut self) -> Self {
        self.start = battlement_core::CircuitState::MetricsOnly;
        self
    }

    /// Checks the settings and builds the breaker.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first field out of bounds.
    pub fn build(mut self) -> Result<Breaker, InvalidConfig> {
        if !self.rule_named {
            self.config.failure_rate = Some(Self::DEFAULT_FAILURE_RATE);
        }
        let c = &self.config;
        let bad = |field, value: &dyn std::fmt::Debug, bound: &'static str| {
            Err(InvalidConfig::new(COMPONENT, field, value, bound))
        };
        if let Some(n) = c.consecutive_failures
            && n == 0
        {
            return bad("consecutive_failures", &n, "must be at least 1");
        }
        if let Some(r) = c.failure_rate
            && !(r > 0.0 && r <= 1.0)
        {
            return bad("failure_rate", &r, "must be in (0, 1]");
        }
        if let Some((d, r)) = c.slow_call {
            if d.is_zero() {
                return bad("slow_call_duration", &d, "must be more than zero");
            }
            if !(r > 0.0 && r <= 1.0) {
                return bad("slow_call_rate", &r, "must be in (0, 1]");
            }
        }
        match c.window {
            WindowConfig::Count { size } => {
                if !(1..=Self::MAX_COUNT_WINDOW).contains(&size) {
                    return bad("window_size", &size, "must be in 1..=100000");
                }
                if c.minimum_calls > size {
                    return bad(
                        "minimum_calls",
                        &c.minimum_calls,
                        "must be at most the count window's size",
                    );
                }
            }
            WindowConfig::Time { duration, buckets } => {
                if duration.is_zero() {
                    return bad("window_duration", &duration, "must be more than zero");
                }
                if !(1..=Self::MAX_TIME_BUCKETS).contains(&buckets) {
                    return bad("window_buckets", &buckets, "must be in 1..=1000");
                }
                if duration.as_nanos() < u128::from(buckets) {
                    return bad(
                        "window_duration",
                        &duration,
                        "must be at least one nanosecond per bucket",
                    );
                }
            }
        }
        if c.minimum_calls == 0 {
            return bad("minimum_calls", &c.minimum_calls, "must be at least 1");
        }
        match c.open_duration {
            OpenDuration::Fixed(d) if d.is_zero() => {
                return bad("open_duration", &d, "must be more than zero");
            }
            OpenDuration::Exponential {
                base,
                multiplier,
                max,
            } => {
                if base.is_zero() {
                    return bad("open_duration_base", &base, "must be more than zero");
                }
                if !(multiplier.is_finite() && multiplier >= 1.0) {
                    return bad(
                        "open_duration_multiplier",
                        &multiplier,
                        "must be at least 1.0",
                    );
                }
                if max < base {
                    return bad("open_duration_max", &max, "must be at least the base");
                }
            }
            OpenDuration::Fixed(_) => {}
        }
        if c.permitted_probes == 0 || c.permitted_probes > u32::from(u16::MAX) {
            return bad(
                "permitted_probes",
                &c.permitted_probes,
                "must be in 1..=65535",
            );
        }
        if let Some(n) = c.max_concurrent_probes
            && (n == 0 || n > u32::from(u16::MAX))
        {
            return bad("max_concurrent_probes", &n, "must be in 1..=65535");
        }
        if c.success_threshold == 0 || c.success_threshold > c.permitted_probes {
            return bad(
                "success_threshold",
                &c.success_threshold,
                "must be in 1..=permitted_probes",
            );
        }
        if let Some(d) = c.max_half_open_wait
            && d.is_zero()
        {
            return bad("max_half_open_wait", &d, "must be more than zero");
        }
        Ok(Breaker::from_parts(
            self.name,
            self.config,
            self.events,
            self.start,
        ))
    }
}
