//! The breaker's shared state and its state machine.
//!
//! The state and its generation live in one `AtomicU64` (`gen << 32 |
//! code`), read with one load on every call. The half-open round's probe
//! accounting lives in another (`gen << 32 | admitted << 16 | successes`),
//! changed by compare-and-swap: both belong to the half-open round `gen`,
//! so `permitted_probes` bounds the probes admitted per round and only
//! that round's probes count towards closing. A third atomic counts the
//! probes in flight of every round (a new round does not reset it), so
//! `max_concurrent_probes` bounds the calls probing the backend in total.
//! Transitions are rare: they take a mutex (never held across an
//! `.await` or on the closed hot path), check the state word is still
//! what the caller saw, and publish the new word last.

use std::sync::PoisonError;
use std::sync::atomic::Ordering::*;
use std::time::{Duration, SystemTime};

use battlement_core::clock::{Clock, nanos as duration_ns};
use battlement_core::{
    BoxError, CircuitOpen, CircuitState, EventKind, EventSink, FailureKind, Name, Outcome, Reason,
};

use crate::config::{Config, WindowConfig};
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Mutex, MutexGuard};
use crate::window::{CountWindow, FAILURE, SLOW, SUCCESS, TimeWindow, Window};

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const FORCED_OPEN: u64 = 3;
const DISABLED: u64 = 4;
const METRICS_ONLY: u64 = 5;

fn code_of(state: CircuitState) -> u64 {
    match state {
        CircuitState::Open => OPEN,
        CircuitState::HalfOpen => HALF_OPEN,
        CircuitState::ForcedOpen => FORCED_OPEN,
        CircuitState::Disabled => DISABLED,
        CircuitState::MetricsOnly => METRICS_ONLY,
        _ => CLOSED,
    }
}

fn state_of(code: u64) -> CircuitState {
    match code {
        OPEN => CircuitState::Open,
        HALF_OPEN => CircuitState::HalfOpen,
        FORCED_OPEN => CircuitState::ForcedOpen,
        DISABLED => CircuitState::Disabled,
        METRICS_ONLY => CircuitState::MetricsOnly,
        _ => CircuitState::Closed,
    }
}

#[inline]
const fn word(generation: u32, code: u64) -> u64 {
    (generation as u64) << 32 | code
}

#[inline]
const fn split(word: u64) -> (u32, u64) {
    ((word >> 32) as u32, word & 0xffff_ffff)
}

/// How a call was admitted, so its completion is recorded right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Closed or metrics-only in generation `.0`: record into the window.
    Record(u32),
    /// A half-open probe of generation `.0`: holds a permit.
    Probe(u32),
}

/// Bookkeeping changed only by transitions, under the mutex.
#[derive(Debug)]
struct Slow {
    /// Re-opens from half-open since the last close.
    reopens: u32,
    /// The open duration in force (or last in force).
    open_duration: Duration,
    /// Wall-clock time of the last transition.
    last_transition: SystemTime,
    /// Transitions to `Open` since the breaker was built.
    trips: u64,
}

/// A snapshot of a breaker's figures: see [`Breaker::metrics`](crate::Breaker::metrics).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BreakerMetrics {
    /// The state now.
    pub state: CircuitState,
    /// Calls in the sliding window.
    pub window_calls: u32,
    /// Failures in the sliding window.
    pub window_failures: u32,
    /// Slow calls in the sliding window.
    pub window_slow_calls: u32,
    /// Failures / calls in the window (0 when empty).
    pub failure_rate: f64,
    /// Slow calls / calls in the window (0 when empty).
    pub slow_rate: f64,
    /// Failures in a row, recorded while closed.
    pub consecutive_failures: u32,
    /// Successes in a row, recorded while closed.
    pub consecutive_successes: u32,
    /// Calls that completed and were recorded, since the breaker was built
    /// (successes + failures + ignored).
    pub calls: u64,
    /// Successful calls since the breaker was built.
    pub successes: u64,
    /// Failed calls since the breaker was built.
    pub failures: u64,
    /// Calls whose outcome was `Ignored`, since the breaker was built.
    pub ignored: u64,
    /// Slow calls since the breaker was built.
    pub slow_calls: u64,
    /// Calls refused since the breaker was built.
    pub rejections: u64,
    /// Half-open probes in flight now, of every round (at most
    /// `max_concurrent_probes`; back to 0 once they complete or are
    /// dropped).
    pub probes_in_flight: u32,
    /// Wall-clock time of the last transition (the build, if none).
    pub last_transition: SystemTime,
    /// Time since the last transition.
    pub since_transition: Duration,
    /// The open duration in force, or the one last used.
    pub open_duration: Duration,
    /// Re-opens from half-open since the breaker last closed.
    pub reopens: u32,
    /// Trips (transitions to `Open`, re-opens included) since the breaker
    /// was built.
    pub trips: u64,
    /// Failed calls since the breaker was built, by [`FailureKind`]
    /// (indexed by [`FailureKind::index`]; they add up to `failures`).
    pub failures_by_kind: [u64; FailureKind::ALL.len()],
}

impl BreakerMetrics {
    /// Failed calls of `kind` since the breaker was built.
    pub fn failures_of(&self, kind: FailureKind) -> u64 {
        self.failures_by_kind[kind.index()]
    }

    /// Calls that failed with a timeout (`FailureKind::Timeout`) since the
    /// breaker was built.
    pub fn timeouts(&self) -> u64 {
        self.failures_of(FailureKind::Timeout)
    }
}

/// The fields every closed call writes (besides the `Arc`'s count), kept
/// together on cache lines of their own: under contention they move
/// between cores as one line, and the fields every call only reads (the
/// state word, the config) stay shared in every core's cache. Its
/// alignment also gives the `Arc`'s counts their own line.
#[derive(Debug)]
#[repr(C, align(64))]
struct Hot {
    /// Successes recorded into the window (closed or metrics-only, in the
    /// generation that admitted them): the hot path's one counter.
    successes: AtomicU64,
    window: Window,
}

/// The state every clone of a [`Breaker`](crate::Breaker) and every
/// service built from it share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Name,
    pub(crate) config: Config,
    sink: EventSink,
    /// The one clock of every reading below (`*_ns`): core's fast clock,
    /// or tokio's on paused time, decided when the breaker is built.
    clock: Clock,
    /// Whether a call reads the clock when admitted (a slow-call rule needs
    /// its duration).
    pub(crate) timed: bool,
    /// Whether a completion reads the clock (a slow-call rule, or a time
    /// window that needs one reading, at completion, to find its bucket).
    clocked: bool,
    state: AtomicU64,
    /// The half-open round: `gen << 32 | admitted << 16 | successes`.
    half_open: AtomicU64,
    /// Probes in flight, of every round.
    probes_in_flight: AtomicU32,
    open_until_ns: AtomicU64,
    transition_ns: AtomicU64,
    /// What every closed call writes, on cache lines of its own.
    hot: Hot,
    /// `successes` when the last failure was recorded (or the window was
    /// cleared): successes in a row are `successes - success_mark`, so a
    /// success needs no second read-modify-write for the streak.
    success_mark: AtomicU64,
    /// Failures in a row, recorded while closed; a success resets it.
    fail_streak: AtomicU32,
    /// A time window held a failure or slow call when its rates were last
    /// checked, but fewer than `minimum_calls`: each success checks them
    /// until the window reaches the minimum. (A count window says itself
    /// when it reaches the minimum; a time window keeps no total.)
    rate_check_pending: AtomicBool,
    /// Successes not recorded into the window: probes, and calls that
    /// completed after a transition.
    other_successes: AtomicU64,
    failures: AtomicU64,
    /// `failures` by kind, written beside it (off the hot path).
    failures_by_kind: [AtomicU64; FailureKind::ALL.len()],
    ignored: AtomicU64,
    slow_calls: AtomicU64,
    rejections: Rejections,
    slow: Mutex<Slow>,
}

/// The count of refused calls. Striped (`battlement_core::Striped`, a
/// copy per thread, added to with a plain load and store by a thread that
/// leases its copy), so a refusal takes no `lock`ed instruction: that
/// count was a fifth of an open rejection's time. The 2 KB of stripes are
/// allocated at the breaker's first refusal, so a breaker that never
/// refuses (most of a keyed breaker's keys) keeps one word. Under loom
/// (whose threads share one OS thread) a plain atomic.
#[cfg(not(battlement_loom))]
#[derive(Default)]
struct Rejections(std::sync::OnceLock<Box<battlement_core::Striped<std::sync::atomic::AtomicU64>>>);

impl std::fmt::Debug for Rejections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.total(), f)
    }
}

#[cfg(not(battlement_loom))]
impl Rejections {
    #[inline]
    fn count(&self) {
        self.0
            .get_or_init(|| Box::new(battlement_core::Striped::new(Default::default)))
            .add(1);
    }

    fn total(&self) -> u64 {
        self.0.get().map_or(0, |s| s.sum(|c| c.load(Relaxed)))
    }
}

#[cfg(battlement_loom)]
struct Rejections(AtomicU64);

#[cfg(battlement_loom)]
impl Default for Rejections {
    fn default() -> Self {
        Rejections(AtomicU64::new(0))
    }
}

#[cfg(battlement_loom)]
impl Rejections {
    fn count(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    fn total(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Shared {
    pub(crate) fn new(name: Name, config: Config, sink: EventSink, start: CircuitState) -> Self {
        let timed = config.slow_call.is_some();
        let (window, clocked) = match config.window {
            WindowConfig::Count { size } => (
                Window::Count(CountWindow::new(size as usize, config.minimum_calls)),
                timed,
            ),
            WindowConfig::Time { duration, buckets } => {
                let width = duration.as_nanos() / u128::from(buckets);
                let width = u64::try_from(width).unwrap_or(u64::MAX);
                (Window::Time(TimeWindow::new(buckets as usize, width)), true)
            }
        };
        let open_duration = config.open_duration.after(0);
        Shared {
            name,
            sink,
            clock: Clock::new(),
            timed,
            clocked,
            state: AtomicU64::new(word(0, code_of(start))),
            half_open: AtomicU64::new(0),
            probes_in_flight: AtomicU32::new(0),
            open_until_ns: AtomicU64::new(0),
            transition_ns: AtomicU64::new(0),
            hot: Hot {
                successes: AtomicU64::new(0),
                window,
            },
            success_mark: AtomicU64::new(0),
            fail_streak: AtomicU32::new(0),
            rate_check_pending: AtomicBool::new(false),
            other_successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            failures_by_kind: std::array::from_fn(|_| AtomicU64::new(0)),
            ignored: AtomicU64::new(0),
            slow_calls: AtomicU64::new(0),
            rejections: Rejections::default(),
            slow: Mutex::new(Slow {
                reopens: 0,
                open_duration,
                last_transition: SystemTime::now(),
                trips: 0,
            }),
            config,
        }
    }

    /// Now, on the breaker's clock: nanoseconds since it was built.
    #[inline(always)]
    pub(crate) fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    fn lock(&self) -> MutexGuard<'_, Slow> {
        self.slow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state now: `HalfOpen` for an `Open` breaker whose open duration
    /// has passed (the next call makes the transition).
    pub(crate) fn state(&self) -> CircuitState {
        let code = split(self.state.load(Acquire)).1;
        if code == OPEN && self.open_remaining_ns() == 0 {
            return CircuitState::HalfOpen;
        }
        state_of(code)
    }

    /// Nanoseconds left of the open duration (zero once it has passed);
    /// meaningful only while open.
    fn open_remaining_ns(&self) -> u64 {
        self.open_until_ns
            .load(Acquire)
            .saturating_sub(self.now_ns())
    }

    /// Admits a call, or says why not. `None` means admitted and not
    /// recorded (disabled). The refusal is the boxed [`CircuitOpen`], made
    /// here so the response future only moves a pointer.
    #[inline(always)]
    pub(crate) fn try_acquire(&self) -> Result<Option<Admit>, BoxError> {
        let current = self.state.load(Acquire);
        let (generation, code) = split(current);
        if code == CLOSED || code == METRICS_ONLY {
            return Ok(Some(Admit::Record(generation)));
        }
        self.try_acquire_slow(current)
    }

    /// [`try_acquire`](Self::try_acquire) in any state but closed and
    /// metrics-only.
    #[inline(never)]
    fn try_acquire_slow(&self, mut current: u64) -> Result<Option<Admit>, BoxError> {
        loop {
            let (generation, code) = split(current);
            match code {
                CLOSED | METRICS_ONLY => return Ok(Some(Admit::Record(generation))),
                DISABLED => return Ok(None),
                FORCED_OPEN => return Err(self.reject(CircuitState::ForcedOpen, None)),
                OPEN => {
                    // The one clock read of a rejection: without a timer
                    // task, only the clock tells whether the open duration
                    // has passed.
                    let now = self.now_ns();
                    let until = self.open_until_ns.load(Acquire);
                    if now < until {
                        let wait = Duration::from_nanos(until - now);
                        return Err(self.reject(CircuitState::Open, Some(wait)));
                    }
                    self.transition(current, CircuitState::HalfOpen, || {
                        "open duration elapsed".into()
                    });
                }
                _ => {
                    if self.acquire_probe(generation) {
                        return Ok(Some(Admit::Probe(generation)));
                    }
                    if self.state.load(Acquire) != current {
                        current = self.state.load(Acquire);
                        continue;
                    }
                    if let Some(wait) = self.config.max_half_open_wait {
                        let since = self.transition_ns.load(Acquire);
                        let now = self.now_ns();
                        if now.saturating_sub(since) >= duration_ns(wait) {
                            self.transition(current, CircuitState::Open, || {
                                "probes did not finish within max_half_open_wait".into()
                            });
                            current = self.state.load(Acquire);
                            continue;
                        }
                    }
                    return Err(self.reject(CircuitState::HalfOpen, None));
                }
            }
            current = self.state.load(Acquire);
        }
    }

    /// Counts a refusal and boxes its error: the one allocation of a
    /// rejected call, which the `BoxError` convention makes the floor.
    fn reject(&self, state: CircuitState, retry_after: Option<Duration>) -> BoxError {
        self.rejections.count();
        Box::new(CircuitOpen {
            name: self.name.clone(),
            state,
            retry_after,
        })
    }

    /// Admits a probe in the half-open round `generation`, if the round
    /// has an admission left (`permitted_probes` per round) and a place is
    /// free among the probes in flight (`max_concurrent_probes`, counting
    /// probes of earlier rounds still running).
    fn acquire_probe(&self, generation: u32) -> bool {
        let cap = self.config.probe_concurrency();
        if self
            .probes_in_flight
            .fetch_update(AcqRel, Acquire, |n| (n < cap).then_some(n + 1))
            .is_err()
        {
            return false;
        }
        let permitted = u64::from(self.config.permitted_probes);
        let admitted = self
            .half_open
            .fetch_update(AcqRel, Acquire, |w| {
                let (g, counts) = split(w);
                (g == generation && counts >> 16 < permitted).then_some(w + (1 << 16))
            })
            .is_ok();
        if !admitted {
            self.leave_flight();
        }
        admitted
    }

    /// One probe fewer in flight.
    fn leave_flight(&self) {
        let _ = self
            .probes_in_flight
            .fetch_update(AcqRel, Acquire, |n| n.checked_sub(1));
    }

    /// A probe of round `generation` ends without a result (its future
    /// was dropped, or its outcome was ignored): it leaves the flight and,
    /// if its round is still the current one, gives its admission back.
    #[cold]
    #[inline(never)]
    pub(crate) fn release_probe(&self, generation: u32) {
        self.leave_flight();
        let _ = self.half_open.fetch_update(AcqRel, Acquire, |w| {
            let (g, counts) = split(w);
            (g == generation && counts >> 16 > 0).then_some(w - (1 << 16))
        });
    }

    /// Records a probe's result: it leaves the flight whatever round
    /// admitted it; only a probe of the current round (`generation`)
    /// counts towards closing or re-opens.
    fn finish_probe(&self, generation: u32, outcome: Outcome, slow: bool) {
        self.leave_flight();
        let failed = outcome.is_failure() || (slow && !outcome.is_ignored());
        let expected = word(generation, HALF_OPEN);
        if failed {
            if self.state.load(Acquire) == expected {
                self.transition(expected, CircuitState::Open, || {
                    if slow {
                        "slow probe".into()
                    } else {
                        "probe failed".into()
                    }
                });
            }
            return;
        }
        if !outcome.is_success() {
            return;
        }
        let threshold = u64::from(self.config.success_threshold);
        let mut closes = false;
        let counted = self.half_open.fetch_update(AcqRel, Acquire, |w| {
            let (g, counts) = split(w);
            if g != generation {
                return None;
            }
            closes = (counts & 0xffff) + 1 >= threshold;
            Some(w + 1)
        });
        if counted.is_ok() && closes {
            self.transition(expected, CircuitState::Closed, || "probes succeeded".into());
        }
    }

    /// Records the outcome of a call admitted as `admit`, that started at
    /// `start` (a reading of [`now_ns`](Self::now_ns), when the breaker is
    /// timed).
    #[inline(always)]
    pub(crate) fn complete(&self, admit: Admit, outcome: Outcome, start: Option<u64>) {
        // The hot path, kept small enough to inline into the response
        // future: a success, unclocked (so a count window), recorded in the
        // generation and state (closed or metrics-only) that admitted it.
        if let (Admit::Record(generation), Outcome::Success, false) =
            (admit, &outcome, self.clocked)
        {
            let current = self.state.load(Acquire);
            if current == word(generation, CLOSED) || current == word(generation, METRICS_ONLY) {
                let before = self.hot.successes.fetch_add(1, Relaxed);
                if self.fail_streak.load(Relaxed) != 0 {
                    self.fail_streak.store(0, Relaxed);
                }
                // `true` once per fill of the window, never in the steady
                // state (the slot already holds a success).
                if self.hot.window.record(0, SUCCESS, before) && current == word(generation, CLOSED)
                {
                    self.evaluate(current, 0, 0);
                }
                return;
            }
        }
        self.complete_slow(admit, outcome, start, None);
    }

    /// [`complete`](Self::complete) of a call whose response came at
    /// `responded` (a deferred call, completed when its body ended): its
    /// duration, for the slow-call rule, ends there rather than now.
    pub(crate) fn complete_at(
        &self,
        admit: Admit,
        outcome: Outcome,
        start: Option<u64>,
        responded: Option<u64>,
    ) {
        match responded {
            None => self.complete(admit, outcome, start),
            Some(_) => self.complete_slow(admit, outcome, start, responded),
        }
    }

    /// [`complete`](Self::complete) for every other case; `ended` is when
    /// the call's duration ended, if not now.
    #[inline(never)]
    fn complete_slow(
        &self,
        admit: Admit,
        outcome: Outcome,
        start: Option<u64>,
        ended: Option<u64>,
    ) {
        let (now_ns, slow) = if self.clocked {
            let now = self.now_ns();
            let slow = match (start, self.config.slow_call) {
                (Some(start), Some((t, _))) => {
                    ended.unwrap_or(now).saturating_sub(start) > duration_ns(t)
                }
                _ => false,
            };
            (now, slow)
        } else {
            (0, false)
        };
        let failed = match &outcome {
            Outcome::Success => false,
            Outcome::Failure(f) => {
                self.failures_by_kind[f.kind.index()].fetch_add(1, Relaxed);
                true
            }
            Outcome::Ignored => {
                self.ignored.fetch_add(1, Relaxed);
                if let Admit::Probe(generation) = admit {
                    self.release_probe(generation);
                }
                return;
            }
        };
        if slow {
            self.slow_calls.fetch_add(1, Relaxed);
        }
        let generation = match admit {
            Admit::Probe(generation) => {
                self.count_unrecorded(failed);
                return self.finish_probe(generation, outcome, slow);
            }
            Admit::Record(generation) => generation,
        };
        let current = self.state.load(Acquire);
        let (g, code) = split(current);
        if g != generation || !(code == CLOSED || code == METRICS_ONLY) {
            // Admitted before the last transition: not this state's business.
            return self.count_unrecorded(failed);
        }
        if !failed {
            // The hot path: one read-modify-write for the lifetime total,
            // the streak and the window's next slot, nothing else written
            // in the steady state.
            let before = self.hot.successes.fetch_add(1, Relaxed);
            if self.fail_streak.load(Relaxed) != 0 {
                self.fail_streak.store(0, Relaxed);
            }
            let reached =
                self.hot
                    .window
                    .record(now_ns, if slow { SUCCESS | SLOW } else { SUCCESS }, before);
            if code == CLOSED && (slow || reached || self.rate_check_pending.load(Relaxed)) {
                self.evaluate(current, 0, now_ns);
            }
            return;
        }
        self.record_failure(current, slow, now_ns);
    }

    /// Records a failure into the window of the state word `current`
    /// (closed or metrics-only) and checks the trip rules.
    #[cold]
    #[inline(never)]
    fn record_failure(&self, current: u64, slow: bool, now_ns: u64) {
        self.failures.fetch_add(1, Relaxed);
        let successes = self.hot.successes.load(Relaxed);
        self.success_mark.store(successes, Relaxed);
        let fails_in_row = self.fail_streak.fetch_add(1, Relaxed).saturating_add(1);
        // Checked below whatever `record` says.
        let _ = self.hot.window.record(
            now_ns,
            if slow { FAILURE | SLOW } else { FAILURE },
            successes,
        );
        if split(current).1 == CLOSED {
            self.evaluate(current, fails_in_row, now_ns);
        }
    }

    /// Counts a result that is not recorded into the window (a probe's, or
    /// one that completed after a transition) in the lifetime totals.
    fn count_unrecorded(&self, failed: bool) {
        if failed {
            self.failures.fetch_add(1, Relaxed);
        } else {
            self.other_successes.fetch_add(1, Relaxed);
        }
    }

    /// Checks the trip rules while closed: after a failure or a slow call,
    /// and after the call that brings the window to `minimum_calls`
    /// whatever its outcome (a success can only lower the rates, so once
    /// the window holds the minimum only failures and slow calls need a
    /// check).
    #[cold]
    fn evaluate(&self, current: u64, fails_in_row: u32, now_ns: u64) {
        let c = &self.config;
        if let Some(n) = c.consecutive_failures
            && fails_in_row >= n
        {
            self.transition(current, CircuitState::Open, || {
                format!("{fails_in_row} consecutive failures >= {n}").into()
            });
            return;
        }
        if c.failure_rate.is_none() && c.slow_call.is_none() {
            return;
        }
        let counts = self.hot.window.counts(now_ns);
        if counts.calls < c.minimum_calls {
            if matches!(self.hot.window, Window::Time(_))
                && (counts.failures > 0 || counts.slow > 0)
            {
                self.rate_check_pending.store(true, Relaxed);
            }
            return;
        }
        if self.rate_check_pending.load(Relaxed) {
            self.rate_check_pending.store(false, Relaxed);
        }
        let calls = f64::from(counts.calls);
        if let Some(threshold) = c.failure_rate {
            let rate = f64::from(counts.failures) / calls;
            if rate >= threshold {
                self.transition(current, CircuitState::Open, || {
                    format!(
                        "failure rate {rate:.3} >= {threshold} over {} calls",
                        counts.calls
                    )
                    .into()
                });
                return;
            }
        }
        if let Some((_, threshold)) = c.slow_call {
            let rate = f64::from(counts.slow) / calls;
            if rate >= threshold {
                self.transition(current, CircuitState::Open, || {
                    format!(
                        "slow-call rate {rate:.3} >= {threshold} over {} calls",
                        counts.calls
                    )
                    .into()
                });
            }
        }
    }

    /// Moves from the state word `expected` to `to`; does nothing (and
    /// returns `false`) if another thread moved first.
    #[cold]
    pub(crate) fn transition(
        &self,
        expected: u64,
        to: CircuitState,
        reason: impl FnOnce() -> Reason,
    ) -> bool {
        let mut slow = self.lock();
        let current = self.state.load(Acquire);
        if current != expected {
            return false;
        }
        self.apply(&mut slow, current, to, true);
        drop(slow);
        self.emit(state_of(split(current).1), to, reason());
        true
    }

    /// Moves to `to` whatever the state (a control by hand). Setting the
    /// state it is already in (a `reset` of a closed breaker) still clears
    /// what it clears, but is no transition: no event, and the time of the
    /// last transition stays.
    #[cold]
    pub(crate) fn set(&self, to: CircuitState, reason: &'static str) {
        let mut slow = self.lock();
        let current = self.state.load(Acquire);
        let from = state_of(split(current).1);
        self.apply(&mut slow, current, to, from != to);
        drop(slow);
        if from != to {
            self.emit(from, to, reason.into());
        }
    }

    /// Publishes the state `to` after `current`; `transition` is `false`
    /// when the state stays the same (its time is then kept).
    fn apply(&self, slow: &mut Slow, current: u64, to: CircuitState, transition: bool) {
        let (generation, from) = split(current);
        let next = generation.wrapping_add(1);
        let now_ns = self.now_ns();
        match to {
            CircuitState::Open => {
                if from == HALF_OPEN {
                    slow.reopens = slow.reopens.saturating_add(1);
                } else {
                    slow.reopens = 0;
                }
                slow.open_duration = self.config.open_duration.after(slow.reopens);
                slow.trips = slow.trips.saturating_add(1);
                self.open_until_ns.store(
                    now_ns.saturating_add(duration_ns(slow.open_duration)),
                    Release,
                );
            }
            CircuitState::HalfOpen => {
                // A new round: nothing admitted, no successes yet; the
                // probes of earlier rounds still in flight keep their
                // places (`probes_in_flight` is not reset).
                self.half_open.store(word(next, 0), Release);
            }
            CircuitState::Closed => {
                slow.reopens = 0;
                slow.open_duration = self.config.open_duration.after(0);
                self.hot.window.clear();
                self.rate_check_pending.store(false, Relaxed);
                self.fail_streak.store(0, Relaxed);
                self.success_mark
                    .store(self.hot.successes.load(Relaxed), Relaxed);
            }
            _ => {}
        }
        if transition {
            slow.last_transition = SystemTime::now();
            self.transition_ns.store(now_ns, Release);
        }
        self.state.store(word(next, code_of(to)), Release);
    }

    fn emit(&self, from: CircuitState, to: CircuitState, reason: Reason) {
        self.sink
            .emit(&self.name, || EventKind::StateChanged { from, to, reason });
    }

    pub(crate) fn metrics(&self) -> BreakerMetrics {
        let slow = self.lock();
        let now_ns = self.now_ns();
        let counts = self.hot.window.counts(now_ns);
        let recorded_successes = self.hot.successes.load(Relaxed);
        let in_row = recorded_successes.saturating_sub(self.success_mark.load(Relaxed));
        let rate = |n: u32| {
            if counts.calls == 0 {
                0.0
            } else {
                f64::from(n) / f64::from(counts.calls)
            }
        };
        let successes = recorded_successes + self.other_successes.load(Relaxed);
        let failures = self.failures.load(Relaxed);
        let ignored = self.ignored.load(Relaxed);
        BreakerMetrics {
            state: self.state(),
            window_calls: counts.calls,
            window_failures: counts.failures,
            window_slow_calls: counts.slow,
            failure_rate: rate(counts.failures),
            slow_rate: rate(counts.slow),
            consecutive_failures: self.fail_streak.load(Relaxed),
            consecutive_successes: u32::try_from(in_row).unwrap_or(u32::MAX),
            calls: successes + failures + ignored,
            successes,
            failures,
            ignored,
            slow_calls: self.slow_calls.load(Relaxed),
            rejections: self.rejections.total(),
            probes_in_flight: self.probes_in_flight.load(Acquire),
            last_transition: slow.last_transition,
            since_transition: Duration::from_nanos(
                now_ns.saturating_sub(self.transition_ns.load(Acquire)),
            ),
            open_duration: slow.open_duration,
            reopens: slow.reopens,
            trips: slow.trips,
            failures_by_kind: std::array::from_fn(|i| self.failures_by_kind[i].load(Relaxed)),
        }
    }

    /// Time until the next probe may be admitted, while open and the open
    /// duration has not passed.
    pub(crate) fn open_remaining(&self) -> Option<Duration> {
        if split(self.state.load(Acquire)).1 != OPEN {
            return None;
        }
        let left = self.open_remaining_ns();
        (left > 0).then(|| Duration::from_nanos(left))
    }
}
