//! Building the three: [`BulkheadBuilder`], [`AdaptiveLimitBuilder`] and
//! [`KeyedBreakerBuilder`].

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use battlement_breaker::{Breaker, BreakerBuilder};
use battlement_core::{InvalidConfig, Name};

use crate::adaptive::AdaptiveConfig;
use crate::algorithm::{Algorithm, Vegas};
use crate::slots::Wait;
use crate::{AdaptiveLimit, Bulkhead, KeyedBreaker};

/// The most slots a bulkhead or a limiter may have: the in-flight count
/// shares one 64-bit word with the waiting count, 32 bits each.
pub const MAX_SLOTS: u32 = 1 << 30;

/// The most callers allowed to wait at once (each holds a waker in the
/// queue, allocated as the queue grows and kept).
pub const MAX_WAITING: u32 = 100_000;

/// The longest `retry_after` a refusal may suggest, and the longest wait.
const HOUR: Duration = Duration::from_secs(3600);

fn bad(
    component: &'static str,
    field: &'static str,
    value: impl fmt::Debug,
    bound: &'static str,
) -> InvalidConfig {
    InvalidConfig::new(component, field, value, bound)
}

/// Checks the settings both pools share.
fn check_pool(
    component: &'static str,
    wait: Wait,
    retry_after: Option<Duration>,
) -> Result<(), InvalidConfig> {
    if wait.max_waiting > 0 {
        if wait.max_wait.is_zero() || wait.max_wait > HOUR {
            return Err(bad(
                component,
                "max_wait",
                wait.max_wait,
                "must be more than zero and at most an hour",
            ));
        }
        if wait.max_waiting > MAX_WAITING {
            return Err(bad(
                component,
                "max_waiting",
                wait.max_waiting,
                "must be at most 100000",
            ));
        }
    }
    if let Some(d) = retry_after
        && d > HOUR
    {
        return Err(bad(component, "retry_after", d, "must be at most an hour"));
    }
    Ok(())
}

/// Builds a [`Bulkhead`]; start with [`Bulkhead::builder`].
///
/// ```
/// use battlement_limit::Bulkhead;
/// use std::time::Duration;
///
/// let err = Bulkhead::builder("db").max_concurrent(0).build().unwrap_err();
/// assert_eq!(err.field, "max_concurrent");
/// let ok = Bulkhead::builder("db")
///     .max_concurrent(8)
///     .wait(Duration::from_millis(20), 16)
///     .retry_after(None)
///     .build()
///     .unwrap();
/// assert_eq!(ok.max_concurrent(), 8);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct BulkheadBuilder {
    name: Name,
    max_concurrent: u32,
    wait: Wait,
    retry_after: Option<Duration>,
}

impl BulkheadBuilder {
    /// The default bound on calls in flight: 25 (resilience4j's).
    pub const DEFAULT_MAX_CONCURRENT: u32 = 25;

    pub(crate) fn new(name: impl Into<Name>) -> Self {
        BulkheadBuilder {
            name: name.into(),
            max_concurrent: Self::DEFAULT_MAX_CONCURRENT,
            wait: Wait::NONE,
            retry_after: Some(Duration::from_secs(1)),
        }
    }

    /// At most `n` calls in flight (1 to [`MAX_SLOTS`]). Default: 25.
    pub fn max_concurrent(mut self, n: u32) -> Self {
        self.max_concurrent = n;
        self
    }

    /// Lets a call that finds every slot taken wait for one, at most
    /// `max_wait` (more than zero, at most an hour), with at most
    /// `max_waiting` callers waiting at once (at most [`MAX_WAITING`]; 0
    /// turns waiting off). Default: no waiting, a full bulkhead refuses at
    /// once.
    pub fn wait(mut self, max_wait: Duration, max_waiting: u32) -> Self {
        self.wait = Wait {
            max_wait,
            max_waiting,
        };
        self
    }

    /// The wait a [`BulkheadFull`](battlement_core::BulkheadFull) suggests
    /// (the `Retry-After` of an HTTP 503), at most an hour; `None` suggests
    /// nothing. Default: 1 s.
    pub fn retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Checks the settings and builds the bulkhead.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first field out of bounds.
    pub fn build(self) -> Result<Bulkhead, InvalidConfig> {
        if !(1..=MAX_SLOTS).contains(&self.max_concurrent) {
            return Err(bad(
                "bulkhead",
                "max_concurrent",
                self.max_concurrent,
                "must be in 1..=1073741824",
            ));
        }
        check_pool("bulkhead", self.wait, self.retry_after)?;
        Ok(Bulkhead::from_parts(
            self.name,
            self.max_concurrent,
            self.wait,
            self.retry_after,
        ))
    }
}

/// Builds an [`AdaptiveLimit`]; start with [`AdaptiveLimit::builder`].
///
/// Defaults: [`Vegas`] with Netflix's parameters, initial limit 20, within
/// `[1, 1000]`, windows of at least 1 s and 10 calls, no waiting, a
/// retry-after of 1 s.
///
/// ```
/// use battlement_limit::{AdaptiveLimit, Aimd};
/// use std::time::Duration;
///
/// let limiter = AdaptiveLimit::builder("search")
///     .algorithm(Aimd::new().backoff_ratio(0.8))
///     .initial_limit(10)
///     .min_limit(2)
///     .max_limit(200)
///     .window(Duration::from_millis(500), 20)
///     .build()
///     .unwrap();
/// assert_eq!(limiter.limit(), 10);
/// let err = AdaptiveLimit::builder("x").min_limit(50).max_limit(10).build().unwrap_err();
/// assert_eq!(err.field, "max_limit");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct AdaptiveLimitBuilder {
    name: Name,
    config: AdaptiveConfig,
    wait: Wait,
    retry_after: Option<Duration>,
}

impl AdaptiveLimitBuilder {
    /// The default initial limit, 20 (Netflix's).
    pub const DEFAULT_INITIAL_LIMIT: u32 = 20;
    /// The default lowest limit, 1.
    pub const DEFAULT_MIN_LIMIT: u32 = 1;
    /// The default highest limit, 1000 (Netflix's Vegas).
    pub const DEFAULT_MAX_LIMIT: u32 = 1000;
    /// The default window, 1 s (Netflix's `WindowedLimit`).
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(1);
    /// The default fewest calls a window needs, 10 (Netflix's).
    pub const DEFAULT_MIN_SAMPLES: u32 = 10;

    pub(crate) fn new(name: impl Into<Name>) -> Self {
        AdaptiveLimitBuilder {
            name: name.into(),
            config: AdaptiveConfig {
                algorithm: Algorithm::Vegas(Vegas::new()),
                initial: Self::DEFAULT_INITIAL_LIMIT,
                min: Self::DEFAULT_MIN_LIMIT,
                max: Self::DEFAULT_MAX_LIMIT,
                window: Self::DEFAULT_WINDOW,
                min_samples: Self::DEFAULT_MIN_SAMPLES,
            },
            wait: Wait::NONE,
            retry_after: Some(Duration::from_secs(1)),
        }
    }

    /// The algorithm: an [`Aimd`](crate::Aimd) or a [`Vegas`]. Default:
    /// `Vegas::new()`.
    pub fn algorithm(mut self, algorithm: impl Into<Algorithm>) -> Self {
        self.config.algorithm = algorithm.into();
        self
    }

    /// The limit to start from (clamped into `[min, max]`). Default: 20.
    pub fn initial_limit(mut self, n: u32) -> Self {
        self.config.initial = n;
        self
    }

    /// The lowest the limit goes (at least 1). Default: 1.
    pub fn min_limit(mut self, n: u32) -> Self {
        self.config.min = n;
        self
    }

    /// The highest the limit goes (at least `min`, at most [`MAX_SLOTS`]).
    /// Default: 1000.
    pub fn max_limit(mut self, n: u32) -> Self {
        self.config.max = n;
        self
    }

    /// Windows last at least `window` (1 ms to an hour) and hold at least
    /// `min_samples` calls (at least 1); the algorithm sees one sample per
    /// window. Default: 1 s and 10 calls.
    pub fn window(mut self, window: Duration, min_samples: u32) -> Self {
        self.config.window = window;
        self.config.min_samples = min_samples;
        self
    }

    /// Lets a call over the limit wait for a slot, as
    /// [`BulkheadBuilder::wait`]. Default: refused at once.
    pub fn wait(mut self, max_wait: Duration, max_waiting: u32) -> Self {
        self.wait = Wait {
            max_wait,
            max_waiting,
        };
        self
    }

    /// The wait a [`LimitExceeded`](battlement_core::LimitExceeded)
    /// suggests, at most an hour; `None` suggests nothing. Default: 1 s.
    pub fn retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Checks the settings and builds the limiter.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first field out of bounds.
    pub fn build(self) -> Result<AdaptiveLimit, InvalidConfig> {
        const C: &str = "adaptive_limit";
        let c = &self.config;
        if c.min == 0 {
            return Err(bad(C, "min_limit", c.min, "must be at least 1"));
        }
        if c.max < c.min || c.max > MAX_SLOTS {
            return Err(bad(
                C,
                "max_limit",
                c.max,
                "must be at least min_limit and at most 1073741824",
            ));
        }
        if c.window < Duration::from_millis(1) || c.window > HOUR {
            return Err(bad(
                C,
                "window",
                c.window,
                "must be at least 1ms and at most an hour",
            ));
        }
        if c.min_samples == 0 {
            return Err(bad(C, "min_samples", c.min_samples, "must be at least 1"));
        }
        match c.algorithm {
            Algorithm::Aimd(a) => {
                let r = a.get_backoff_ratio();
                if !(0.5..1.0).contains(&r) {
                    return Err(bad(C, "backoff_ratio", r, "must be in [0.5, 1)"));
                }
                if a.get_timeout().is_zero() {
                    return Err(bad(C, "timeout", a.get_timeout(), "must be more than zero"));
                }
            }
            Algorithm::Vegas(v) => {
                let s = v.get_smoothing();
                if !(s > 0.0 && s <= 1.0) {
                    return Err(bad(C, "smoothing", s, "must be in (0, 1]"));
                }
                if v.get_probe_multiplier() == 0 {
                    return Err(bad(
                        C,
                        "probe_multiplier",
                        v.get_probe_multiplier(),
                        "must be at least 1",
                    ));
                }
            }
        }
        check_pool(C, self.wait, self.retry_after)?;
        Ok(AdaptiveLimit::from_parts(
            self.name,
            self.config,
            self.wait,
            self.retry_after,
        ))
    }
}

/// How every key's breaker is configured: applied to
/// `Breaker::builder("{name}/{key}")`.
pub(crate) type Configure = Arc<dyn Fn(BreakerBuilder) -> BreakerBuilder + Send + Sync>;

/// Builds a [`KeyedBreaker`]; start with [`KeyedBreaker::builder`].
///
/// ```
/// use battlement_limit::KeyedBreaker;
/// use std::time::Duration;
///
/// let hosts = KeyedBreaker::<String>::builder("hosts")
///     .breaker(|b| b.consecutive_failures(5).open_duration(Duration::from_secs(10)))
///     .max_keys(256)
///     .idle_timeout(Duration::from_secs(600))
///     .build()
///     .unwrap();
/// assert_eq!(hosts.len(), 0);
/// let err = KeyedBreaker::<String>::builder("hosts")
///     .breaker(|b| b.consecutive_failures(0))
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field, "consecutive_failures");
/// ```
#[must_use]
pub struct KeyedBreakerBuilder<K> {
    name: Name,
    configure: Configure,
    max_keys: usize,
    idle_timeout: Duration,
    _key: std::marker::PhantomData<fn() -> K>,
}

impl<K> fmt::Debug for KeyedBreakerBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerBuilder")
            .field("name", &self.name)
            .field("max_keys", &self.max_keys)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<K> KeyedBreakerBuilder<K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    /// The default bound on keys, 1024.
    pub const DEFAULT_MAX_KEYS: usize = 1024;
    /// The most keys a keyed breaker may hold: a new key copies the map of
    /// keys, so the bound keeps that copy small.
    pub const MAX_KEYS: usize = 65_536;
    /// The default time without a call after which a key may be evicted,
    /// 5 minutes.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

    pub(crate) fn new(name: impl Into<Name>) -> Self {
        KeyedBreakerBuilder {
            name: name.into(),
            configure: Arc::new(|b| b),
            max_keys: Self::DEFAULT_MAX_KEYS,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            _key: std::marker::PhantomData,
        }
    }

    /// How each key's breaker is configured: `f` gets
    /// `Breaker::builder("{name}/{key}")` and returns it configured (trip
    /// rules, windows, open duration, events). The same for every key.
    /// Default: the breaker's own defaults.
    pub fn breaker<F>(mut self, f: F) -> Self
    where
        F: Fn(BreakerBuilder) -> BreakerBuilder + Send + Sync + 'static,
    {
        self.configure = Arc::new(f);
        self
    }

    /// At most `n` keys (1 to [`MAX_KEYS`](Self::MAX_KEYS)); a new key past
    /// that evicts the idlest one, closed breakers first. Default: 1024.
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// A key without a call for `d` (more than zero) is evicted at the next
    /// sweep (sweeps run when a new key arrives). Default: 5 minutes.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Checks the settings (building one breaker to check its
    /// configuration) and builds the keyed breaker.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first field out of bounds, the
    /// breaker's included.
    pub fn build(self) -> Result<KeyedBreaker<K>, InvalidConfig> {
        const C: &str = "keyed_breaker";
        if !(1..=Self::MAX_KEYS).contains(&self.max_keys) {
            return Err(bad(C, "max_keys", self.max_keys, "must be in 1..=65536"));
        }
        if self.idle_timeout.is_zero() {
            return Err(bad(
                C,
                "idle_timeout",
                self.idle_timeout,
                "must be more than zero",
            ));
        }
        (self.configure)(Breaker::builder(self.name.clone())).build()?;
        Ok(KeyedBreaker::from_parts(
            self.name,
            self.configure,
            self.max_keys,
            self.idle_timeout,
        ))
    }
}
