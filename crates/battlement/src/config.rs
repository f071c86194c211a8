//! [`PolicyConfig`]: policies described in a file (TOML, JSON, YAML, any
//! serde format), with global defaults and per-name overrides.
//!
//! ```
//! use battlement::PolicyConfig;
//!
//! let config: PolicyConfig = toml::from_str(r#"
//!     [defaults]
//!     total = "10s"
//!     attempt_timeout = "2s"
//!
//!     [defaults.breaker]
//!     failure_rate = 0.25
//!
//!     [policies.checkout]
//!     total = "3s"
//!     attempt_timeout = "1s"
//!     retry = { max_attempts = 2 }
//!
//!     [policies.search.breaker]
//!     enabled = false
//! "#).unwrap();
//! config.validate().unwrap();
//!
//! let checkout = config.policy("checkout").unwrap().build().unwrap();
//! assert_eq!(checkout.total(), Some(std::time::Duration::from_secs(3)));
//! assert_eq!(checkout.retry().unwrap().max_attempts(), 2);
//! let search = config.policy("search").unwrap().build().unwrap();
//! assert!(search.breaker().is_none());
//! ```
//!
//! Every field is optional; a missing one takes the value of `[defaults]`,
//! and a missing default the builder's own (the [crate
//! defaults](crate#defaults)). A policy asked for by a name the file does
//! not list gets the defaults. Durations are human strings (`"250ms"`,
//! `"1m 30s"`). Unknown fields are refused, and every value is checked
//! with the path of its field:
//! `policies.checkout.breaker.failure_rate: 1.5 must be in (0, 1]`.
//!
//! With a registry (set in code, [`PolicyBuilder::registry`]) a policy
//! has an instrument; the gate and the fallback are set in code
//! ([`PolicyBuilder::gate`], [`PolicyBuilder::fallback`]): they carry
//! types of your own (priorities read from your request, values of your
//! response).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use battlement_retry::{Backoff, Jitter};
use serde::{Deserialize, Serialize};

use crate::{PolicyBuilder, PolicyError};

/// One or more named policies: global `defaults` and per-name overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// What every policy gets unless it says otherwise.
    #[serde(default)]
    pub defaults: PolicySettings,
    /// The policies by name, each over the defaults.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicySettings>,
}

/// One policy's settings; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Each request's whole budget (`"off"` is not a duration: use
    /// `total_enabled = false`).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub total: Option<Duration>,
    /// Whether the total deadline is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_enabled: Option<bool>,
    /// One attempt's bound.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_timeout: Option<Duration>,
    /// Whether the attempt timeout is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_timeout_enabled: Option<bool>,
    /// Whether the deadline is written into a request that carries none
    /// (`"always"`, the default) or left in scope only (`"if_carried"`,
    /// for a server's routes); see
    /// [`PolicyBuilder::carry_deadline`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carry_deadline: Option<CarryKind>,
    /// Warning-level checks to pass (`["retries_fit_total"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// The retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySettings>,
    /// The retry budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSettings>,
    /// The breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSettings>,
}

/// Retry settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Whether retries are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Attempts, the first included (1 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The wait between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffSettings>,
    /// The least time left on the deadline to start another attempt.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_time_left: Option<Duration>,
    /// The longest `Retry-After` honoured.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_retry_after: Option<Duration>,
}

/// A backoff's shape and figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffSettings {
    /// `"exponential"`, `"constant"`, `"decorrelated"` or `"none"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<BackoffKind>,
    /// The first (or constant) delay.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub base: Option<Duration>,
    /// The cap.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max: Option<Duration>,
    /// The growth per retry of an exponential backoff (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// `"none"`, `"full"` or `"equal"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<JitterKind>,
}

/// Whether a deadline is written into the request (see
/// [`Carry`](battlement_deadline::Carry)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CarryKind {
    /// Always.
    Always,
    /// Only into a request that carries one already.
    IfCarried,
}

impl From<CarryKind> for battlement_deadline::Carry {
    fn from(kind: CarryKind) -> Self {
        match kind {
            CarryKind::Always => battlement_deadline::Carry::Always,
            CarryKind::IfCarried => battlement_deadline::Carry::IfCarried,
        }
    }
}

/// A backoff's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    /// `base × multiplier^n`, capped.
    Exponential,
    /// The same delay every time.
    Constant,
    /// Decorrelated jitter.
    Decorrelated,
    /// No wait.
    None,
}

/// A backoff's jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitterKind {
    /// As computed.
    None,
    /// `uniform(0, d)`.
    Full,
    /// `d/2 + uniform(0, d/2)`.
    Equal,
}

/// Retry budget settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSettings {
    /// Whether the budget is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Retries per request allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Retries per second allowed whatever the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_per_sec: Option<u32>,
    /// How long a deposit counts.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<Duration>,
}

/// Breaker settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Whether the breaker is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Trip on this failure rate, in `(0, 1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// Trip after this many failures in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// Calls slower than this are slow.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub slow_call_threshold: Option<Duration>,
    /// Trip on this share of slow calls, in `(0, 1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_rate: Option<f64>,
    /// A time window over this long (with `window_buckets`).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub window: Option<Duration>,
    /// The time window's buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_buckets: Option<u32>,
    /// A count window of this many calls, instead of a time window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_calls: Option<u32>,
    /// Calls the window must hold before a rate counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_calls: Option<u32>,
    /// How long it stays open (the first time, when `open_max` is set).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub open: Option<Duration>,
    /// With `open_multiplier`: grow the open duration up to this on each
    /// re-open.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub open_max: Option<Duration>,
    /// The growth per re-open (default 2 when `open_max` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_multiplier: Option<f64>,
    /// Calls admitted per half-open period, decided on their results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permitted_probes: Option<u32>,
    /// Probes in flight at once in half-open (default `permitted_probes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_probes: Option<u32>,
    /// Probe successes that close it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
}

/// A configuration refused: the path of the field, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The field's path (`policies.checkout.breaker.failure_rate`).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, message: impl fmt::Display) -> Self {
        ConfigError {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

/// `override` where set, else `base`.
fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
    over.clone().or_else(|| base.clone())
}

/// Merges two optional sections field by field.
fn merge_section<T: Clone>(
    over: &Option<T>,
    base: &Option<T>,
    merge: impl Fn(&T, &T) -> T,
) -> Option<T> {
    match (over, base) {
        (Some(o), Some(b)) => Some(merge(o, b)),
        (o, b) => pick(o, b),
    }
}

impl PolicySettings {
    /// `self` over `base`: every field `self` sets wins.
    pub fn over(&self, base: &PolicySettings) -> PolicySettings {
        PolicySettings {
            total: pick(&self.total, &base.total),
            total_enabled: pick(&self.total_enabled, &base.total_enabled),
            attempt_timeout: pick(&self.attempt_timeout, &base.attempt_timeout),
            attempt_timeout_enabled: pick(
                &self.attempt_timeout_enabled,
                &base.attempt_timeout_enabled,
            ),
            carry_deadline: pick(&self.carry_deadline, &base.carry_deadline),
            allow: pick(&self.allow, &base.allow),
            retry: merge_section(&self.retry, &base.retry, |o, b| RetrySettings {
                enabled: pick(&o.enabled, &b.enabled),
                max_attempts: pick(&o.max_attempts, &b.max_attempts),
                backoff: merge_section(&o.backoff, &b.backoff, |o, b| BackoffSettings {
                    kind: pick(&o.kind, &b.kind),
                    base: pick(&o.base, &b.base),
                    max: pick(&o.max, &b.max),
                    multiplier: pick(&o.multiplier, &b.multiplier),
                    jitter: pick(&o.jitter, &b.jitter),
                }),
                min_time_left: pick(&o.min_time_left, &b.min_time_left),
                max_retry_after: pick(&o.max_retry_after, &b.max_retry_after),
            }),
            budget: merge_section(&self.budget, &base.budget, |o, b| BudgetSettings {
                enabled: pick(&o.enabled, &b.enabled),
                ratio: pick(&o.ratio, &b.ratio),
                min_per_sec: pick(&o.min_per_sec, &b.min_per_sec),
                ttl: pick(&o.ttl, &b.ttl),
            }),
            breaker: merge_section(&self.breaker, &base.breaker, |o, b| BreakerSettings {
                enabled: pick(&o.enabled, &b.enabled),
                failure_rate: pick(&o.failure_rate, &b.failure_rate),
                consecutive_failures: pick(&o.consecutive_failures, &b.consecutive_failures),
                slow_call_threshold: pick(&o.slow_call_threshold, &b.slow_call_threshold),
                slow_call_rate: pick(&o.slow_call_rate, &b.slow_call_rate),
                window: pick(&o.window, &b.window),
                window_buckets: pick(&o.window_buckets, &b.window_buckets),
                window_calls: pick(&o.window_calls, &b.window_calls),
                minimum_calls: pick(&o.minimum_calls, &b.minimum_calls),
                open: pick(&o.open, &b.open),
                open_max: pick(&o.open_max, &b.open_max),
                open_multiplier: pick(&o.open_multiplier, &b.open_multiplier),
                permitted_probes: pick(&o.permitted_probes, &b.permitted_probes),
                max_concurrent_probes: pick(&o.max_concurrent_probes, &b.max_concurrent_probes),
                success_threshold: pick(&o.success_threshold, &b.success_threshold),
            }),
        }
    }

    /// Applies these settings to `builder`; `path` is where they are in
    /// the file, for errors.
    pub fn apply<C, P, G, F, I>(
        &self,
        path: &str,
        mut b: PolicyBuilder<C, P, G, F, I>,
    ) -> Result<PolicyBuilder<C, P, G, F, I>, ConfigError> {
        if self.total_enabled == Some(false) {
            b = b.without_total();
        } else if let Some(total) = self.total {
            b = b.total(total);
        }
        if self.attempt_timeout_enabled == Some(false) {
            b = b.without_attempt_timeout();
        } else if let Some(attempt) = self.attempt_timeout {
            b = b.attempt_timeout(attempt);
        }
        if let Some(carry) = self.carry_deadline {
            b = b.carry_deadline(carry.into());
        }
        for (i, name) in self.allow.iter().flatten().enumerate() {
            match name.as_str() {
                "retries_fit_total" => b = b.allow(crate::Check::RetriesFitTotal),
                other => {
                    return Err(ConfigError::new(
                        format!("{path}.allow[{i}]"),
                        format!(
                            "`{other}` is not a warning that can be allowed (retries_fit_total)"
                        ),
                    ));
                }
            }
        }
        if let Some(retry) = &self.retry {
            b = retry.apply(&format!("{path}.retry"), b)?;
        }
        if let Some(budget) = &self.budget {
            b = budget.apply(b);
        }
        if let Some(breaker) = &self.breaker {
            b = breaker.apply(&format!("{path}.breaker"), b)?;
        }
        Ok(b)
    }
}

/// A rate must be in `(0, 1]`.
fn check_rate(path: String, rate: Option<f64>) -> Result<(), ConfigError> {
    match rate {
        Some(r) if !(r > 0.0 && r <= 1.0) => {
            Err(ConfigError::new(path, format!("{r} must be in (0, 1]")))
        }
        _ => Ok(()),
    }
}

impl RetrySettings {
    fn apply<C, P, G, F, I>(
        &self,
        path: &str,
        b: PolicyBuilder<C, P, G, F, I>,
    ) -> Result<PolicyBuilder<C, P, G, F, I>, ConfigError> {
        if self.enabled == Some(false) {
            return Ok(b.retry_enabled(false));
        }
        if let Some(n) = self.max_attempts
            && !(1..=100).contains(&n)
        {
            return Err(ConfigError::new(
                format!("{path}.max_attempts"),
                format!("{n} must be in 1..=100"),
            ));
        }
        let backoff = match &self.backoff {
            None => None,
            Some(s) => Some(s.backoff(&format!("{path}.backoff"))?),
        };
        let settings = self.clone();
        Ok(b.retry(move |mut r| {
            if let Some(n) = settings.max_attempts {
                r = r.max_attempts(n);
            }
            if let Some(backoff) = backoff {
                r = r.backoff(backoff);
            }
            if let Some(min) = settings.min_time_left {
                r = r.min_time_left(min);
            }
            if let Some(max) = settings.max_retry_after {
                r = r.max_retry_after(max);
            }
            r
        }))
    }
}

impl BackoffSettings {
    /// The backoff described, checked.
    fn backoff(&self, path: &str) -> Result<Backoff, ConfigError> {
        let base = self.base.unwrap_or(crate::policy::defaults::BACKOFF_BASE);
        let mut backoff = match self.kind.unwrap_or(BackoffKind::Exponential) {
            BackoffKind::Exponential => Backoff::exponential(base),
            BackoffKind::Constant => Backoff::constant(base),
            BackoffKind::Decorrelated => Backoff::decorrelated(base),
            BackoffKind::None => Backoff::none(),
        };
        if let Some(m) = self.multiplier {
            if !(m.is_finite() && m >= 1.0) {
                return Err(ConfigError::new(
                    format!("{path}.multiplier"),
                    format!("{m} must be finite and at least 1"),
                ));
            }
            backoff = backoff.multiplier(m);
        }
        if let Some(max) = self.max {
            if max < base {
                return Err(ConfigError::new(
                    format!("{path}.max"),
                    format!("{max:?} must be at least base ({base:?})"),
                ));
            }
            backoff = backoff.max(max);
        }
        backoff = backoff.jitter(match self.jitter {
            None if self.kind.is_none() => Jitter::Full,
            None | Some(JitterKind::None) => Jitter::None,
            Some(JitterKind::Full) => Jitter::Full,
            Some(JitterKind::Equal) => Jitter::Equal,
        });
        Ok(backoff)
    }
}

impl BudgetSettings {
    fn apply<C, P, G, F, I>(
        &self,
        b: PolicyBuilder<C, P, G, F, I>,
    ) -> PolicyBuilder<C, P, G, F, I> {
        if self.enabled == Some(false) {
            return b.without_budget();
        }
        let settings = self.clone();
        b.budget(move |mut budget| {
            if let Some(ratio) = settings.ratio {
                budget = budget.ratio(ratio);
            }
            if let Some(min) = settings.min_per_sec {
                budget = budget.min_per_sec(min);
            }
            if let Some(ttl) = settings.ttl {
                budget = budget.ttl(ttl);
            }
            budget
        })
    }
}

impl BreakerSettings {
    fn apply<C, P, G, F, I>(
        &self,
        path: &str,
        b: PolicyBuilder<C, P, G, F, I>,
    ) -> Result<PolicyBuilder<C, P, G, F, I>, ConfigError> {
        if self.enabled == Some(false) {
            return Ok(b.without_breaker());
        }
        check_rate(format!("{path}.failure_rate"), self.failure_rate)?;
        check_rate(format!("{path}.slow_call_rate"), self.slow_call_rate)?;
        if self.slow_call_rate.is_some() != self.slow_call_threshold.is_some() {
            return Err(ConfigError::new(
                format!("{path}.slow_call_threshold"),
                "slow_call_threshold and slow_call_rate go together",
            ));
        }
        if self.window_calls.is_some() && (self.window.is_some() || self.window_buckets.is_some()) {
            return Err(ConfigError::new(
                format!("{path}.window_calls"),
                "a count window (window_calls) excludes a time window (window, window_buckets)",
            ));
        }
        let s = self.clone();
        Ok(b.breaker(move |mut br| {
            if let Some(rate) = s.failure_rate {
                br = br.failure_rate(rate);
            }
            if let Some(n) = s.consecutive_failures {
                br = br.consecutive_failures(n);
            }
            if let (Some(threshold), Some(rate)) = (s.slow_call_threshold, s.slow_call_rate) {
                br = br.slow_calls(threshold, rate);
            }
            if let Some(size) = s.window_calls {
                br = br.count_window(size);
            } else if s.window.is_some() || s.window_buckets.is_some() {
                br = br.time_window(
                    s.window.unwrap_or(crate::policy::defaults::WINDOW),
                    s.window_buckets
                        .unwrap_or(crate::policy::defaults::WINDOW_BUCKETS),
                );
            }
            if let Some(n) = s.minimum_calls {
                br = br.minimum_calls(n);
            }
            let open = s.open.unwrap_or(crate::policy::defaults::OPEN);
            br = match (s.open_max, s.open_multiplier) {
                (None, None) => br.open_duration(open),
                (max, mult) => br.exponential_open(open, mult.unwrap_or(2.0), max.unwrap_or(open)),
            };
            if let Some(n) = s.permitted_probes {
                br = br.permitted_probes(n);
            }
            if let Some(n) = s.max_concurrent_probes {
                br = br.max_concurrent_probes(n);
            }
            if let Some(n) = s.success_threshold {
                br = br.success_threshold(n);
            }
            br
        }))
    }
}

impl PolicyConfig {
    /// Reads a config from any serde `Deserializer`, with the path of the
    /// field in the error when a value has the wrong type or a field is
    /// unknown, then [`validate`](Self::validate)s it.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field's path.
    pub fn from_deserializer<'de, D>(deserializer: D) -> Result<Self, ConfigError>
    where
        D: serde::Deserializer<'de>,
    {
        let config: PolicyConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::new(path, e.into_inner())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The names of the policies the config lists.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }

    /// The settings of `name`: its overrides over the defaults.
    pub fn settings(&self, name: &str) -> PolicySettings {
        match self.policies.get(name) {
            Some(over) => over.over(&self.defaults),
            None => self.defaults.clone(),
        }
    }

    fn path_of(&self, name: &str) -> String {
        if self.policies.contains_key(name) {
            format!("policies.{name}")
        } else {
            "defaults".to_string()
        }
    }

    /// A [`Policy::builder`](crate::Policy::builder) named `name`,
    /// pre-filled from the defaults and `name`'s overrides; code can still
    /// adjust it, or change its classifier or preset with
    /// [`apply_to`](Self::apply_to).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field's path.
    pub fn policy(&self, name: &str) -> Result<PolicyBuilder, ConfigError> {
        self.apply_to(crate::Policy::builder(name))
    }

    /// Applies the settings of the builder's name to `builder` (from
    /// [`Policy::http`](crate::Policy::http), say).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field's path.
    pub fn apply_to<C, P, G, F, I>(
        &self,
        builder: PolicyBuilder<C, P, G, F, I>,
    ) -> Result<PolicyBuilder<C, P, G, F, I>, ConfigError> {
        let name = builder.name().to_string();
        self.settings(&name).apply(&self.path_of(&name), builder)
    }

    /// Checks every policy the config lists (and the defaults alone) by
    /// building it, without a registry.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`], naming the field's path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |path: String, builder: Result<PolicyBuilder, ConfigError>| {
            builder?
                .build()
                .map(drop)
                .map_err(|e| policy_error_path(&path, &e))
        };
        check(
            "defaults".into(),
            self.defaults
                .apply("defaults", crate::Policy::builder("defaults")),
        )?;
        for name in self.policies.keys() {
            check(format!("policies.{name}"), self.policy(name))?;
        }
        Ok(())
    }
}

/// Where a builder's field is in the file: its section and the name the
/// file gives it (`open_max`, not the breaker builder's
/// `open_duration_max`), so an error names what the user wrote.
fn config_field(component: &str, field: &'static str) -> (&'static str, &'static str) {
    match component {
        "breaker" => (
            ".breaker",
            match field {
                "open_duration" | "open_duration_base" => "open",
                "open_duration_multiplier" => "open_multiplier",
                "open_duration_max" => "open_max",
                "window_size" => "window_calls",
                "window_duration" => "window",
                "slow_call_duration" => "slow_call_threshold",
                f => f,
            },
        ),
        "retry" => (".retry", field),
        "retry budget" | "retry_budget" | "budget" => (".budget", field),
        "attempt_timeout" if field == "per_attempt" => ("", "attempt_timeout"),
        _ => ("", field),
    }
}

/// A build error as a [`ConfigError`] at `path`.
fn policy_error_path(path: &str, e: &PolicyError) -> ConfigError {
    match e {
        PolicyError::Invalid { source, .. } => {
            let (section, field) = config_field(source.component, source.field);
            ConfigError::new(
                format!("{path}{section}.{field}"),
                format!("{} {}", source.value, source.bound),
            )
        }
        PolicyError::Conflict(c) => ConfigError::new(path, c),
        other => ConfigError::new(path, other),
    }
}
