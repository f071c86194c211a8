//! The automatic governor: [`Signal`]s, [`Rule`]s and the [`Governor`]
//! that moves a gate's level with hysteresis.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use battlement_core::{Component, ComponentKind, InvalidConfig, Level, Reason};
use tokio::time::Instant;

use crate::Gate;
use crate::gate::Shared;
use battlement_core::histogram::{AtomicHistogram, BUCKETS, nearest_rank};

/// A number the governor samples on every tick: an error rate, a latency,
/// a count. Higher means worse.
///
/// Implemented by the built-ins ([`Gate::error_rate_signal`],
/// [`Gate::latency_percentile_signal`], [`Gate::latency_signal`],
/// [`Gate::in_flight_signal`], [`OpenBreakers`],
/// [`AdaptiveThrottle::signal`](crate::AdaptiveThrottle::signal)) and by
/// [`signal_fn`] for closures.
pub trait Signal: Send + 'static {
    /// The signal's name, used in level-change reasons.
    fn name(&self) -> &str;

    /// The signal's value now. Called once per governor tick, by one task.
    fn sample(&mut self, now: Instant) -> f64;

    /// Checks the signal's own configuration; [`GovernorBuilder::build`]
    /// calls it for every rule. Default: always valid.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the setting that is out of bounds.
    fn validate(&self) -> Result<(), InvalidConfig> {
        Ok(())
    }
}

/// A [`Signal`] from a name and a closure of the tick's time.
///
/// ```
/// use battlement_gate::{Signal, signal_fn};
///
/// let mut queue = signal_fn("queue_depth", |_now| 12.0);
/// assert_eq!(queue.sample(tokio::time::Instant::now()), 12.0);
/// ```
pub fn signal_fn<F>(name: impl Into<String>, f: F) -> FnSignal<F>
where
    F: FnMut(Instant) -> f64 + Send + 'static,
{
    FnSignal {
        name: name.into(),
        f,
    }
}

/// A [`Signal`] made by [`signal_fn`].
pub struct FnSignal<F> {
    name: String,
    f: F,
}

impl<F> fmt::Debug for FnSignal<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnSignal")
            .field("name", &self.name)
            .finish()
    }
}

impl<F> Signal for FnSignal<F>
where
    F: FnMut(Instant) -> f64 + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn sample(&mut self, now: Instant) -> f64 {
        (self.f)(now)
    }
}

/// The fraction of calls through the gate that failed (returned `Err`)
/// since the previous sample: made by [`Gate::error_rate_signal`].
///
/// Below `min_calls` completed calls in the interval it reads `0.0`, so a
/// trickle of traffic cannot raise the level on one failure.
#[derive(Debug)]
pub struct ErrorRate {
    shared: Arc<Shared>,
    min_calls: u64,
    last_completed: u64,
    last_failed: u64,
}

impl ErrorRate {
    /// Reads `0.0` when fewer than `min_calls` calls completed since the
    /// previous sample. Default: 10.
    #[must_use]
    pub fn min_calls(mut self, min_calls: u64) -> Self {
        self.min_calls = min_calls;
        self
    }
}

impl Signal for ErrorRate {
    fn name(&self) -> &str {
        "error_rate"
    }

    fn sample(&mut self, _now: Instant) -> f64 {
        let completed = self.shared.completed.load(Relaxed);
        let failed = self.shared.failed.load(Relaxed);
        let calls = completed.wrapping_sub(self.last_completed);
        let failures = failed.wrapping_sub(self.last_failed);
        self.last_completed = completed;
        self.last_failed = failed;
        if calls == 0 || calls < self.min_calls {
            0.0
        } else {
            failures as f64 / calls as f64
        }
    }
}

/// The mean latency, in milliseconds, of the calls through the gate that
/// completed since the previous sample (`0.0` when none did): made by
/// [`Gate::latency_signal`].
///
/// A mean hides a slow tail (one call in a hundred taking seconds barely
/// moves it); prefer [`LatencyPercentile`] to govern on latency, as
/// Envoy and resilience4j users expect.
#[derive(Debug)]
pub struct Latency {
    shared: Arc<Shared>,
    last_completed: u64,
    last_nanos: u64,
}

impl Signal for Latency {
    fn name(&self) -> &str {
        "latency_ms"
    }

    fn sample(&mut self, _now: Instant) -> f64 {
        let completed = self.shared.completed.load(Relaxed);
        let nanos = self.shared.latency_nanos.load(Relaxed);
        let calls = completed.wrapping_sub(self.last_completed);
        let total = nanos.wrapping_sub(self.last_nanos);
        self.last_completed = completed;
        self.last_nanos = nanos;
        if calls == 0 {
            0.0
        } else {
            total as f64 / calls as f64 / 1e6
        }
    }
}

/// A high percentile (p99 by default in the docs' examples) of the latency,
/// in milliseconds, of the calls through the gate that completed in the
/// last [`window`](Self::window) samples: made by
/// [`Gate::latency_percentile_signal`].
///
/// Calls are counted in a fixed histogram of the gate's (one relaxed
/// atomic increment per call, no lock, no allocation; 249 buckets, made
/// once, when the first such signal is made). Each bucket spans at most an
/// eighth of its lower bound, and the signal reads the upper bound of the
/// bucket the percentile falls in: never below the true nearest-rank
/// percentile, at most 12.5% above it (latencies under about 1 µs read as
/// 1.024 µs; over about 37 minutes, as 37 minutes). Below
/// [`min_calls`](Self::min_calls) calls in the window it reads `0.0`, so a
/// trickle of traffic cannot raise the level on one slow call.
///
/// ```
/// use battlement_gate::{Gate, Level, Rule};
///
/// let gate = Gate::new("api");
/// // Raise at a p99 of 500 ms over the last 10 ticks; recover under 200 ms.
/// let rule = Rule::new(gate.latency_percentile_signal(99.0).window(10))
///     .step(Level::Minimal, 500.0, 200.0);
/// # let _ = rule;
/// ```
pub struct LatencyPercentile {
    shared: Arc<Shared>,
    name: String,
    percentile: f64,
    min_calls: u64,
    /// The cumulative counts at each of the last `window` samples, oldest
    /// at `oldest`.
    snapshots: Vec<Box<[u64]>>,
    oldest: usize,
    scratch: Box<[u64]>,
    /// A window asked for above [`MAX_WINDOW`](Self::MAX_WINDOW), not
    /// allocated; the governor's `build()` reports it.
    too_long: Option<usize>,
}

impl fmt::Debug for LatencyPercentile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyPercentile")
            .field("gate", &self.shared.name)
            .field("percentile", &self.percentile)
            .field("window", &self.snapshots.len())
            .field("min_calls", &self.min_calls)
            .finish_non_exhaustive()
    }
}

impl LatencyPercentile {
    /// The longest [`window`](Self::window), in ticks: each tick keeps one
    /// snapshot of the histogram (249 counters, 2 KB), so 1000 ticks are
    /// 2 MB (about 17 minutes at the default one-second interval).
    pub const MAX_WINDOW: usize = 1000;

    /// Reads over the calls completed during the last `ticks` samples
    /// (1 to [`MAX_WINDOW`](Self::MAX_WINDOW); 0 reads as 1) rather than
    /// since the previous one. Default: 1. A longer window is not
    /// allocated: [`GovernorBuilder::build`] rejects it.
    #[must_use]
    pub fn window(mut self, ticks: usize) -> Self {
        if ticks > Self::MAX_WINDOW {
            self.too_long = Some(ticks);
            return self;
        }
        self.too_long = None;
        let ticks = ticks.max(1);
        let current = self.current();
        self.snapshots = (0..ticks).map(|_| current.clone()).collect();
        self.oldest = 0;
        self
    }

    /// Reads `0.0` when fewer than `min_calls` calls completed in the
    /// window. Default: 10.
    #[must_use]
    pub fn min_calls(mut self, min_calls: u64) -> Self {
        self.min_calls = min_calls;
        self
    }

    /// The percentile this signal reads.
    pub fn percentile(&self) -> f64 {
        self.percentile
    }

    fn histogram(&self) -> &AtomicHistogram {
        self.shared.histogram.get_or_init(AtomicHistogram::new)
    }

    fn current(&self) -> Box<[u64]> {
        let mut counts = vec![0; BUCKETS].into_boxed_slice();
        self.histogram().snapshot(&mut counts);
        counts
    }
}

impl Signal for LatencyPercentile {
    fn name(&self) -> &str {
        &self.name
    }

    fn sample(&mut self, _now: Instant) -> f64 {
        let histogram = self.shared.histogram.get_or_init(AtomicHistogram::new);
        histogram.snapshot(&mut self.scratch);
        let oldest = &mut self.snapshots[self.oldest];
        let newest = &self.scratch;
        let calls_in = |i: usize| newest[i].wrapping_sub(oldest[i]);
        let value = match nearest_rank(calls_in, self.percentile) {
            Some((nanos, calls)) if calls >= self.min_calls => nanos as f64 / 1e6,
            _ => 0.0,
        };
        // The newest snapshot takes the oldest's place; no allocation.
        std::mem::swap(oldest, &mut self.scratch);
        self.oldest = (self.oldest + 1) % self.snapshots.len();
        value
    }

    fn validate(&self) -> Result<(), InvalidConfig> {
        if let Some(ticks) = self.too_long {
            return Err(InvalidConfig::new(
                "governor",
                "latency.window",
                ticks,
                "must be in 1..=1000 ticks",
            ));
        }
        if self.percentile > 0.0 && self.percentile <= 100.0 {
            Ok(())
        } else {
            Err(InvalidConfig::new(
                "governor",
                "latency.percentile",
                self.percentile,
                "must be in (0, 100]",
            ))
        }
    }
}

/// The number of calls admitted by the gate and not finished yet: made by
/// [`Gate::in_flight_signal`].
#[derive(Debug)]
pub struct InFlight {
    shared: Arc<Shared>,
}

impl Signal for InFlight {
    fn name(&self) -> &str {
        "in_flight"
    }

    fn sample(&mut self, _now: Instant) -> f64 {
        self.shared.in_flight.load(Relaxed) as f64
    }
}

impl Gate {
    /// A signal of the error rate the gate itself sees. Making it turns on
    /// outcome recording for calls through this gate (an atomic counter
    /// and two clock reads per call).
    pub fn error_rate_signal(&self) -> ErrorRate {
        self.shared.observe.store(true, Relaxed);
        ErrorRate {
            shared: self.shared.arc(),
            min_calls: 10,
            last_completed: self.shared.completed.load(Relaxed),
            last_failed: self.shared.failed.load(Relaxed),
        }
    }

    /// A signal of the `percentile` (in (0, 100], e.g. `99.0`) of the
    /// latency (milliseconds) the gate itself sees: see
    /// [`LatencyPercentile`]. Turns on outcome recording, as
    /// [`error_rate_signal`](Self::error_rate_signal), plus one atomic
    /// increment per call into the gate's latency histogram. An invalid
    /// percentile is reported by [`GovernorBuilder::build`].
    pub fn latency_percentile_signal(&self, percentile: f64) -> LatencyPercentile {
        self.shared.observe.store(true, Relaxed);
        let histogram = self.shared.histogram.get_or_init(AtomicHistogram::new);
        let mut now = vec![0; BUCKETS].into_boxed_slice();
        histogram.snapshot(&mut now);
        LatencyPercentile {
            shared: self.shared.arc(),
            name: format!("latency_p{percentile}_ms"),
            percentile,
            min_calls: 10,
            snapshots: vec![now.clone()],
            oldest: 0,
            scratch: now,
            too_long: None,
        }
    }

    /// A signal of the mean latency (milliseconds) the gate itself sees.
    /// Turns on outcome recording, as [`error_rate_signal`](Self::error_rate_signal).
    /// To govern on latency, prefer
    /// [`latency_percentile_signal`](Self::latency_percentile_signal): a
    /// mean hides the slow tail.
    pub fn latency_signal(&self) -> Latency {
        self.shared.observe.store(true, Relaxed);
        Latency {
            shared: self.shared.arc(),
            last_completed: self.shared.completed.load(Relaxed),
            last_nanos: self.shared.latency_nanos.load(Relaxed),
        }
    }

    /// A signal of the calls in flight through the gate. Turns on outcome
    /// recording, as [`error_rate_signal`](Self::error_rate_signal).
    pub fn in_flight_signal(&self) -> InFlight {
        self.shared.observe.store(true, Relaxed);
        InFlight {
            shared: self.shared.arc(),
        }
    }
}

/// The number of open circuit breakers among some components.
///
/// A component counts when its `kind()` is [`ComponentKind::Breaker`] and
/// its health's `details["state"]` is `"open"` or `"forced_open"` (the
/// convention `battlement-breaker` follows), so this needs no breaker
/// crate. Give it the breakers' handles (`breaker.as_component()`), or a
/// closure that lists them (for example from a registry).
pub struct OpenBreakers {
    source: Box<dyn FnMut() -> usize + Send>,
}

impl fmt::Debug for OpenBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBreakers").finish_non_exhaustive()
    }
}

impl OpenBreakers {
    /// Counts the open breakers among `components`.
    pub fn new(components: Vec<Arc<dyn Component>>) -> Self {
        OpenBreakers {
            source: Box::new(move || components.iter().filter(|c| is_open_breaker(&***c)).count()),
        }
    }

    /// Counts the open breakers among the components `list` returns on each
    /// tick.
    pub fn from_fn<F, I>(mut list: F) -> Self
    where
        F: FnMut() -> I + Send + 'static,
        I: IntoIterator<Item = Arc<dyn Component>>,
    {
        OpenBreakers {
            source: Box::new(move || list().into_iter().filter(|c| is_open_breaker(&**c)).count()),
        }
    }
}

/// `true` when `c` is a breaker whose state is `open` or `forced_open`.
pub fn is_open_breaker(c: &dyn Component) -> bool {
    c.kind() == ComponentKind::Breaker
        && matches!(
            c.health().details.get("state").and_then(|v| v.as_str()),
            Some("open" | "forced_open")
        )
}

impl Signal for OpenBreakers {
    fn name(&self) -> &str {
        "open_breakers"
    }

    fn sample(&mut self, _now: Instant) -> f64 {
        (self.source)() as f64
    }
}

/// One step of a [`Rule`]: raise to `level` when the signal reaches
/// `raise_at`; leave `level` only once it is below `recover_below`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    level: Level,
    raise_at: f64,
    recover_below: f64,
}

/// A [`Signal`] and the thresholds at which it raises the level, each with
/// a lower recovery threshold (hysteresis).
///
/// ```
/// use battlement_gate::{Gate, Level, Rule};
///
/// let gate = Gate::new("api");
/// let rule = Rule::new(gate.error_rate_signal())
///     .step(Level::Minimal, 0.05, 0.02) // raise at 5% errors, recover under 2%
///     .step(Level::Moderate, 0.20, 0.10)
///     .step(Level::Severe, 0.50, 0.30);
/// # let _ = rule;
/// ```
pub struct Rule {
    signal: Box<dyn Signal>,
    steps: Vec<Step>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("signal", &self.signal.name())
            .field("steps", &self.steps)
            .finish()
    }
}

impl Rule {
    /// A rule on `signal`, with no steps yet.
    pub fn new(signal: impl Signal) -> Self {
        Rule {
            signal: Box::new(signal),
            steps: Vec::new(),
        }
    }

    /// Adds a step: the signal at or above `raise_at` asks for at least
    /// `level`; the gate leaves `level` (for the one below) only after the
    /// signal has stayed below `recover_below` for the governor's dwell
    /// time. Steps must be given in increasing level order, above
    /// `Normal`, with `recover_below <= raise_at` and thresholds that grow
    /// with the level.
    #[must_use]
    pub fn step(mut self, level: Level, raise_at: f64, recover_below: f64) -> Self {
        self.steps.push(Step {
            level,
            raise_at,
            recover_below,
        });
        self
    }

    fn validate(&self) -> Result<(), InvalidConfig> {
        let bad = |field, value: &dyn fmt::Debug, bound: &'static str| {
            Err(InvalidConfig::new(
                "governor",
                field,
                format!("{value:?} (signal `{}`)", self.signal.name()),
                bound,
            ))
        };
        self.signal.validate()?;
        if self.steps.is_empty() {
            return bad("rule.steps", &self.steps, "must hold at least one step");
        }
        let mut prev: Option<&Step> = None;
        for s in &self.steps {
            if s.level == Level::Normal {
                return bad("rule.step.level", &s.level, "must be above normal");
            }
            if !s.raise_at.is_finite() || !s.recover_below.is_finite() {
                return bad("rule.step", s, "thresholds must be finite");
            }
            if s.recover_below > s.raise_at {
                return bad("rule.step.recover_below", s, "must be <= raise_at");
            }
            if let Some(p) = prev {
                if s.level <= p.level {
                    return bad("rule.step.level", s, "steps must increase in level");
                }
                if s.raise_at < p.raise_at || s.recover_below < p.recover_below {
                    return bad(
                        "rule.step.raise_at",
                        s,
                        "thresholds must not decrease as the level grows",
                    );
                }
            }
            prev = Some(s);
        }
        Ok(())
    }

    /// The highest level the value asks to raise to, with its step.
    fn raise_target(&self, value: f64) -> Option<&Step> {
        self.steps.iter().rev().find(|s| value >= s.raise_at)
    }

    /// The highest level the value still holds (not below its recovery
    /// threshold).
    fn hold(&self, value: f64) -> Level {
        self.steps
            .iter()
            .rev()
            .find(|s| value >= s.recover_below)
            .map_or(Level::Normal, |s| s.level)
    }
}

/// Configures a [`Governor`]. Made by [`Gate::governor`].
#[derive(Debug)]
pub struct GovernorBuilder {
    gate: Gate,
    rules: Vec<Rule>,
    interval: Duration,
    min_dwell: Duration,
    max_dwell: Option<Duration>,
}

/// The default cap of a relapsing recovery's dwell, as a multiple of
/// `min_dwell`: four doublings.
const MAX_DWELL_FACTOR: u32 = 16;

impl GovernorBuilder {
    pub(crate) fn new(gate: Gate) -> Self {
        GovernorBuilder {
            gate,
            rules: Vec::new(),
            interval: Duration::from_secs(1),
            min_dwell: Duration::from_secs(30),
            max_dwell: None,
        }
    }

    /// Adds a rule.
    #[must_use]
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// How often [`Governor::run`] samples the signals. Default: 1 second.
    /// Must be above zero.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long every signal must stay below its recovery threshold before
    /// the level is lowered by one (and again before each further step
    /// down). Default: 30 seconds.
    #[must_use]
    pub fn min_dwell(mut self, min_dwell: Duration) -> Self {
        self.min_dwell = min_dwell;
        self
    }

    /// The longest the dwell grows to when recoveries relapse. A level
    /// that is raised again within one dwell of a step down (the signal
    /// depends on the level: the shed work was the failing work) doubles
    /// the next dwell, up to this cap; a raise after a longer calm starts
    /// again from `min_dwell`. Default: 16 × `min_dwell`. Must be at
    /// least `min_dwell`.
    #[must_use]
    pub fn max_dwell(mut self, max_dwell: Duration) -> Self {
        self.max_dwell = Some(max_dwell);
        self
    }

    /// Validates the configuration and builds the governor.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] when there is no rule, a rule's steps are out of
    /// order or inconsistent, or the interval is zero.
    pub fn build(self) -> Result<Governor, InvalidConfig> {
        if self.rules.is_empty() {
            return Err(InvalidConfig::new(
                "governor",
                "rules",
                0,
                "must hold at least one rule",
            ));
        }
        if self.interval.is_zero() {
            return Err(InvalidConfig::new(
                "governor",
                "interval",
                self.interval,
                "must be above zero",
            ));
        }
        let max_dwell = self
            .max_dwell
            .unwrap_or_else(|| self.min_dwell.saturating_mul(MAX_DWELL_FACTOR));
        if max_dwell < self.min_dwell {
            return Err(InvalidConfig::new(
                "governor",
                "max_dwell",
                max_dwell,
                "must be at least min_dwell",
            ));
        }
        for r in &self.rules {
            r.validate()?;
        }
        let last = vec![0.0; self.rules.len()];
        self.gate.shared.governed(1);
        Ok(Governor {
            last_level: self.gate.level(),
            gate: self.gate,
            rules: self.rules,
            interval: self.interval,
            min_dwell: self.min_dwell,
            max_dwell,
            relapses: 0,
            recovered_at: None,
            calm_since: None,
            last,
        })
    }
}

/// Moves a [`Gate`]'s level from [`Signal`]s, with hysteresis.
///
/// On each tick it samples every rule's signal. If any signal reached the
/// raise threshold of a level above the current one, the level goes **up
/// one step** at once. The level goes **down one step** only after every
/// signal has stayed below the recovery threshold of the current level for
/// the dwell; the dwell starts again after each step. While the level is
/// set by hand ([`Gate::set_level`]) the governor samples but changes
/// nothing, until [`Gate::release`].
///
/// **It does not cycle.** A signal that depends on the level is the
/// normal case: the work a higher level sheds is often the work that was
/// failing, so raising the level removes the errors the governor reads,
/// and a plain dwell would recover, see the errors return, raise again,
/// forever. So a raise within one dwell of a step down is a *relapse*:
/// the next dwell doubles (`min_dwell`, 2×, 4×, ... up to
/// [`max_dwell`](GovernorBuilder::max_dwell)), as a breaker's open
/// duration grows with each re-open; a raise after a longer calm is a new
/// incident and starts again from `min_dwell`. Each level change's reason
/// names the step taken (`normal -> minimal`), the signal and threshold
/// that caused it, and the dwell in force.
///
/// The governor runs no task of its own: drive it with [`tick`](Self::tick)
/// / [`evaluate`](Self::evaluate), or spawn [`run`](Self::run) once
/// (`tokio::spawn(governor.run())`; abort the handle to stop it).
///
/// ```
/// use std::time::Duration;
/// use battlement_gate::{Gate, Level, Rule, signal_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let gate = Gate::new("api");
/// let mut governor = gate
///     .governor()
///     .min_dwell(Duration::from_secs(10))
///     .rule(Rule::new(signal_fn("load", |_| 0.9)).step(Level::Minimal, 0.8, 0.5))
///     .build()
///     .unwrap();
/// governor.tick();
/// assert_eq!(gate.level(), Level::Minimal);
/// # }
/// ```
pub struct Governor {
    gate: Gate,
    rules: Vec<Rule>,
    interval: Duration,
    min_dwell: Duration,
    max_dwell: Duration,
    /// Raises that followed a step down within one dwell, since the last
    /// calm start: the dwell is `min_dwell × 2^relapses`, capped.
    relapses: u32,
    /// When the level last stepped down, until the next raise looks.
    recovered_at: Option<Instant>,
    calm_since: Option<Instant>,
    last_level: Level,
    last: Vec<f64>,
}

impl Drop for Governor {
    fn drop(&mut self) {
        self.gate.shared.governed(-1);
    }
}

impl fmt::Debug for Governor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Governor")
            .field("gate", &self.gate.name())
            .field("rules", &self.rules)
            .field("interval", &self.interval)
            .field("min_dwell", &self.min_dwell)
            .field("dwell", &self.dwell())
            .field("relapses", &self.relapses)
            .field("calm_since", &self.calm_since)
            .finish()
    }
}

impl Governor {
    /// The gate it governs.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The calm needed now before the next step down: `min_dwell`,
    /// doubled for each relapse, at most `max_dwell`.
    pub fn dwell(&self) -> Duration {
        let factor = 1u32.checked_shl(self.relapses).unwrap_or(u32::MAX);
        self.min_dwell.saturating_mul(factor).min(self.max_dwell)
    }

    /// Raises that came within one dwell of a step down, in a row.
    pub fn relapses(&self) -> u32 {
        self.relapses
    }

    /// The values read on the last tick, by signal name, in rule order.
    pub fn samples(&self) -> impl Iterator<Item = (&str, f64)> {
        self.rules
            .iter()
            .zip(&self.last)
            .map(|(r, v)| (r.signal.name(), *v))
    }

    /// One tick now: [`evaluate`](Self::evaluate) at `Instant::now()`.
    pub fn tick(&mut self) -> Option<Level> {
        self.evaluate(Instant::now())
    }

    /// Samples every signal as of `now` and moves the level by at most one
    /// step. Returns the new level when it changed.
    pub fn evaluate(&mut self, now: Instant) -> Option<Level> {
        for (rule, last) in self.rules.iter_mut().zip(self.last.iter_mut()) {
            *last = rule.signal.sample(now);
        }
        let current = self.gate.level();
        if current != self.last_level {
            // Moved by hand or reset since the last tick: start afresh.
            self.calm_since = None;
            self.last_level = current;
        }
        if self.gate.is_manual() {
            self.calm_since = None;
            return None;
        }

        let mut up: Option<(usize, &Step)> = None;
        let mut hold = Level::Normal;
        for (i, rule) in self.rules.iter().enumerate() {
            let value = self.last[i];
            if let Some(step) = rule.raise_target(value)
                && up.is_none_or(|(_, s)| step.level > s.level)
            {
                up = Some((i, step));
            }
            hold = hold.max(rule.hold(value));
        }

        if let Some((i, step)) = up.filter(|(_, s)| s.level > current) {
            let to = current.raised();
            let mut reason = format!(
                "{} {:.3} >= {} (raise threshold of {}): {current} -> {to}",
                self.rules[i].signal.name(),
                self.last[i],
                step.raise_at,
                step.level
            );
            if step.level > to {
                reason.push_str(", one step per tick");
            }
            // The first raise after a step down tells whether that
            // recovery held.
            if let Some(recovered) = self.recovered_at.take() {
                let after = now.saturating_duration_since(recovered);
                if after < self.dwell() {
                    self.relapses = self.relapses.saturating_add(1);
                    reason.push_str(&format!(
                        "; relapse {} ({after:?} after recovering): next dwell {:?}",
                        self.relapses,
                        self.dwell()
                    ));
                } else {
                    self.relapses = 0;
                }
            }
            self.calm_since = None;
            return self.apply(current, to, reason.into());
        }

        if hold >= current {
            self.calm_since = None;
            return None;
        }
        let since = *self.calm_since.get_or_insert(now);
        let calm = now.saturating_duration_since(since);
        let dwell = self.dwell();
        if calm < dwell {
            return None;
        }
        let to = current.lowered();
        let reason: Reason = format!(
            "every signal below its recovery threshold for {current} for {calm:?}: \
             {current} -> {to} (dwell {dwell:?})"
        )
        .into();
        // Still calm for the level below? Then its dwell starts now.
        self.calm_since = (hold < to).then_some(now);
        let changed = self.apply(current, to, reason);
        if changed.is_some() {
            self.recovered_at = Some(now);
        }
        changed
    }

    fn apply(&mut self, from: Level, to: Level, reason: Reason) -> Option<Level> {
        if self.gate.govern(from, to, reason) {
            self.last_level = to;
            Some(to)
        } else {
            None
        }
    }

    /// Ticks every `interval`, forever. Spawn it once:
    /// `tokio::spawn(governor.run())`.
    pub async fn run(mut self) {
        let mut interval = tokio::time::interval(self.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = interval.tick().await;
            self.evaluate(now);
        }
    }
}
