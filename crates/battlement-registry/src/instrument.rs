//! The shared figures of one instrumented service, and how they read as a
//! [`Component`].

use std::collections::VecDeque;
use std::sync::PoisonError;
// Not loom's: a count of slots ever made, process-wide, kept across loom's
// runs.
use std::sync::atomic::{AtomicUsize, Ordering};

use battlement_core::{
    Component, ComponentHealth, ComponentKind, Control, ControlError, FailureKind, HealthStatus,
    Line, Metric, MetricType, Name, Outcome, Striped,
};
use serde_json::{Map, Value};

use crate::clock::SLOT_CLOCK;
use crate::histogram::Histogram;
use crate::sync::{AtomicU64, Mutex, MutexGuard};

/// The counters of one instrumented service: relaxed atomics of fixed size.
///
/// To keep a successful call to three atomic additions (calls started, a
/// histogram bucket, the latency sum), successes and calls in flight are
/// derived rather than counted: every completed call is in the histogram,
/// so successes = completed − failures − ignored, and in flight = started −
/// completed − cancelled.
///
/// # Never freed, reused
///
/// A call's future needs the counters after `call` returns, and it may
/// outlive its service. Holding them through an `Arc` would cost each call
/// two more atomic read-modify-writes (the clone and the drop: about 6 ns,
/// a sixth of the budget). Instead counters live in a slot that is never
/// freed (`&'static`): when its [`InstrumentState`] is dropped, the slot's
/// `generation` moves on and the slot waits in a process-wide pool for the
/// next instrument. A call records only while the generation it started
/// with is current, so the calls of a dropped instrument do not count into
/// the next one.
///
/// # When a slot is reused
///
/// Recording is a check and then a few additions, not one atomic step: a
/// call preempted between the two could count into the next instrument.
/// So every call ends with exactly one last increment, after everything
/// else it writes, with `Release`: a completion (a histogram bucket or
/// `unsampled`), a cancellation, or, for a call that ends after its
/// instrument was dropped, `stale`. A slot is *settled* when those add up
/// to `started` (read with `Acquire`): no call of it can touch it again.
/// A settled slot is reused at once, by the next instrument made; one with
/// calls still running waits until they end (checked when an instrument
/// is made) or, should one never end (a leaked future, a panicking
/// classifier), [`QUARANTINE_NS`] (one second). So the slots follow the
/// most instruments alive at once, not how many were ever made: making,
/// using and dropping instruments one after another reuses one slot.
/// Slots are never freed (a call may hold a `&'static` to one), so their
/// memory (about 8 KB each: the histogram's buckets and the stripes of
/// its sum and of `started`) stays at that peak.
///
/// # Across cores
///
/// `started` is striped (one copy per thread, each on its own cache
/// lines, summed by a reader: `battlement_core::Striped`; a thread that
/// leases its copy adds with a plain load and store, no `lock`ed
/// instruction) and
/// `generation`, read by every call's end, sits on a line of its own: on
/// a shared line, every core serving the instrument would take the line
/// from the others on each call (perf on two threads sharing a server's
/// policy put that at a tenth of the call). The settle check sums the
/// stripes: each is monotonic (until the slot is cleared), so the sums
/// keep the single counter's argument.
#[derive(Debug)]
pub(crate) struct Counters {
    generation: Line<AtomicU64>,
    started: Striped<AtomicU64>,
    /// Calls that ended after their generation ended (counted nowhere
    /// else).
    stale: AtomicU64,
    /// Completed calls whose latency was not sampled.
    pub(crate) unsampled: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) ignored: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) consecutive_failures: AtomicU64,
    pub(crate) by_kind: [AtomicU64; FailureKind::ALL.len()],
    pub(crate) latency: Histogram,
}

/// How long a released slot with calls still running waits, at most,
/// before it is reused.
pub(crate) const QUARANTINE_NS: u64 = 1_000_000_000;

/// How many of the oldest unsettled slots making an instrument looks at.
const CHECKED: usize = 8;

/// The released slots.
struct Pool {
    /// Settled: reusable at once (last released first).
    settled: Vec<&'static Counters>,
    /// With calls still running at release, oldest first, with the fast
    /// clock's reading at release.
    running: VecDeque<(u64, &'static Counters)>,
}

#[cfg(not(battlement_loom))]
static POOL: Mutex<Pool> = Mutex::new(Pool {
    settled: Vec::new(),
    running: VecDeque::new(),
});

// loom's mutex is made at run time, and a fresh pool for each of loom's
// runs keeps one run's slots (their loom atomics) out of the next.
#[cfg(battlement_loom)]
loom::lazy_static! {
    static ref POOL: Mutex<Pool> = Mutex::new(Pool {
        settled: Vec::new(),
        running: VecDeque::new(),
    });
}

/// Every slot ever made, process-wide (none is freed).
static SLOTS: AtomicUsize = AtomicUsize::new(0);

fn pool() -> MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many released slots wait in the pool.
pub(crate) fn pooled() -> usize {
    let pool = pool();
    pool.settled.len() + pool.running.len()
}

/// How many slots were ever made, process-wide: those of live instruments
/// plus the pooled ones.
pub(crate) fn slots() -> usize {
    SLOTS.load(Ordering::Relaxed)
}

impl Counters {
    fn new() -> Self {
        Counters {
            generation: Line(AtomicU64::new(0)),
            started: Striped::new(|| AtomicU64::new(0)),
            stale: AtomicU64::new(0),
            unsampled: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            by_kind: Default::default(),
            latency: Histogram::new(),
        }
    }

    /// A settled slot, or one of the oldest unsettled ones that has
    /// settled since or was released at least `quarantine_ns` ago,
    /// cleared; or a new one. And its current generation.
    pub(crate) fn acquire(quarantine_ns: u64) -> (&'static Counters, u64) {
        let reused = {
            let mut pool = pool();
            pool.settled.pop().or_else(|| {
                let now = SLOT_CLOCK.now_ns();
                let i =
                    pool.running.iter().take(CHECKED).position(|&(at, c)| {
                        c.settled() || now.saturating_sub(at) >= quarantine_ns
                    })?;
                pool.running.remove(i).map(|(_, c)| c)
            })
        };
        let counters = match reused {
            Some(c) => {
                c.clear();
                c
            }
            None => {
                SLOTS.fetch_add(1, Ordering::Relaxed);
                Box::leak(Box::new(Counters::new()))
            }
        };
        (counters, counters.generation.load(Ordering::Relaxed))
    }

    /// Ends the current generation and puts the slot in the pool: with
    /// the settled ones if no call of it is running.
    fn release(&'static self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        if self.settled() {
            pool().settled.push(self);
        } else {
            let at = SLOT_CLOCK.now_ns();
            pool().running.push_back((at, self));
        }
    }

    /// Whether every call started has ended for good (see the type's
    /// docs): no call can touch the slot again. Reads every bucket; off
    /// the hot path.
    fn settled(&self) -> bool {
        let ended = self
            .latency
            .completed()
            .saturating_add(self.unsampled.load(Ordering::Acquire))
            .saturating_add(self.cancelled.load(Ordering::Acquire))
            .saturating_add(self.stale.load(Ordering::Acquire));
        self.started_sum(Ordering::Acquire) == ended
    }

    /// Calls started: the stripes' sum, each read with `order`.
    pub(crate) fn started_sum(&self, order: Ordering) -> u64 {
        self.started.sum(|s| s.load(order))
    }

    /// Clears every counter (a slot out of the pool).
    fn clear(&self) {
        for s in self.started.iter() {
            s.store(0, Ordering::Relaxed);
        }
        self.stale.store(0, Ordering::Relaxed);
        self.take_outcomes();
    }

    /// Clears every figure but the count of calls started, and returns
    /// how many ended calls (completed or cancelled) it removed.
    fn take_outcomes(&self) -> u64 {
        for c in [&self.failures, &self.ignored, &self.consecutive_failures] {
            c.store(0, Ordering::Relaxed);
        }
        for c in &self.by_kind {
            c.store(0, Ordering::Relaxed);
        }
        self.latency
            .take()
            .saturating_add(self.unsampled.swap(0, Ordering::AcqRel))
            .saturating_add(self.cancelled.swap(0, Ordering::AcqRel))
    }

    /// A call started. Returns the call's sequence number on this
    /// thread's stripe (what sampling every 2^k-th call counts).
    #[inline]
    pub(crate) fn start(&self) -> u64 {
        // Without a `lock`ed instruction when the thread leases its
        // stripe; loom's threads share one OS thread, so under loom it is
        // always a `fetch_add`.
        #[cfg(not(battlement_loom))]
        return self.started.add(1);
        #[cfg(battlement_loom)]
        return self.started.local().fetch_add(1, Ordering::Relaxed);
    }

    /// A call that started in `generation` ended: completed with `outcome`
    /// after `latency` nanoseconds (`None` when not sampled), or dropped
    /// unfinished (`done` is `None`). Not counted if the instrument it
    /// started in is gone (then only `stale` counts it). The last write,
    /// with `Release`, is the one that ends the call (see the type's docs).
    #[inline]
    pub(crate) fn finish(&self, generation: u64, done: Option<(Outcome, Option<u64>)>) {
        if self.generation.load(Ordering::Relaxed) != generation {
            self.stale.fetch_add(1, Ordering::Release);
            return;
        }
        match done {
            Some((outcome, latency)) => {
                if let Outcome::Success = outcome {
                    if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                        self.consecutive_failures.store(0, Ordering::Relaxed);
                    }
                } else {
                    self.count_unsuccessful(&outcome);
                }
                match latency {
                    Some(ns) => self.latency.record_ns(ns),
                    None => {
                        self.unsampled.fetch_add(1, Ordering::Release);
                    }
                }
            }
            None => {
                self.cancelled.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// A completed call counted as a success turns out to be `outcome`.
    /// Successes are derived (completed − failures − ignored), so counting
    /// the failure (or the ignored call) takes the success back.
    pub(crate) fn amend(&self, generation: u64, outcome: &Outcome) {
        if self.generation.load(Ordering::Relaxed) != generation {
            return;
        }
        self.count_unsuccessful(outcome);
    }

    /// Counts a failure (with its kind and the streak) or an ignored
    /// call; a success is derived, not counted, so it changes nothing
    /// here.
    #[inline(always)]
    fn count_unsuccessful(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Success => {}
            Outcome::Failure(f) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.by_kind[f.kind.index()].fetch_add(1, Ordering::Relaxed);
                self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Ignored => {
                self.ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Clears the state an operator can reset: the streak of failures.
    /// Every `_total` counter and the latency histogram (whose buckets are
    /// counters too) keep counting: a counter that went down would read,
    /// to Prometheus, as a restart of the process.
    fn reset(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// The counts, read one by one (a call racing the read may show in
    /// one figure and not yet in another; derived figures saturate).
    ///
    /// The completions are read first and with `Acquire` (each call's last
    /// write, with `Release`, is its completion): a call seen completed is
    /// seen with its failure or ignore counted, so a success derived here
    /// is never taken back by the next read. On x86-64 it is the same
    /// instruction as a relaxed load.
    fn figures(&self, sampled: u64) -> Figures {
        let completed = sampled.saturating_add(self.unsampled.load(Ordering::Acquire));
        // Read `started` last so it is never behind what it derives from.
        let failures = self.failures.load(Ordering::Relaxed);
        let ignored = self.ignored.load(Ordering::Relaxed);
        let cancelled = self.cancelled.load(Ordering::Relaxed);
        let started = self.started_sum(Ordering::Relaxed);
        Figures {
            successes: completed.saturating_sub(failures + ignored),
            failures,
            ignored,
            cancelled,
            in_flight: started.saturating_sub(completed + cancelled),
        }
    }
}

struct Figures {
    successes: u64,
    failures: u64,
    ignored: u64,
    cancelled: u64,
    in_flight: u64,
}

fn ms(ns: Option<u64>) -> Value {
    ns.map_or(Value::Null, |ns| Value::from(ns as f64 / 1e6))
}

/// One instrument: its name and the slot of its counters, which goes back
/// to the pool when the last layer or service holding it is dropped.
#[derive(Debug)]
pub(crate) struct InstrumentState {
    pub(crate) name: Name,
    pub(crate) counters: &'static Counters,
    /// The slot's generation while this instrument holds it.
    pub(crate) generation: u64,
}

impl InstrumentState {
    pub(crate) fn new(name: Name) -> Self {
        let (counters, generation) = Counters::acquire(QUARANTINE_NS);
        InstrumentState {
            name,
            counters,
            generation,
        }
    }
}

impl Drop for InstrumentState {
    fn drop(&mut self) {
        self.counters.release();
    }
}

impl Component for InstrumentState {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Instrument
    }

    /// Always `Healthy` on its own: an instrument observes, it does not
    /// protect. Use the registry's rules to judge it by its figures.
    fn health(&self) -> ComponentHealth {
        let latency = self.counters.latency.summary([0.5, 0.9, 0.99, 1.0]);
        let Figures {
            successes,
            failures,
            ignored,
            cancelled,
            in_flight,
        } = self.counters.figures(latency.total);
        let consecutive = self.counters.consecutive_failures.load(Ordering::Relaxed);
        let calls = successes + failures + ignored + cancelled + in_flight;
        let judged = successes + failures;
        let success_rate = if judged == 0 {
            Value::Null
        } else {
            Value::from(successes as f64 / judged as f64)
        };
        let mut health = ComponentHealth::new(HealthStatus::Healthy);
        // One allocation for the figures, of exactly their number: kept
        // small, a report's blocks stay in the allocator's per-thread
        // caches (glibc's hold blocks up to about 1 KB); larger ones
        // are trimmed and faulted back in on every report.
        let failing_kinds = FailureKind::ALL
            .iter()
            .filter(|kind| self.counters.by_kind[kind.index()].load(Ordering::Relaxed) > 0)
            .count();
        health.metrics.reserve_exact(7 + failing_kinds);
        let mut by_kind = Map::new();
        for kind in FailureKind::ALL {
            let n = self.counters.by_kind[kind.index()].load(Ordering::Relaxed);
            if n > 0 {
                by_kind.insert(kind.as_str().to_owned(), n.into());
                health = health.labelled_metric(Metric {
                    name: "failures_by_kind_total",
                    help: "Failed calls by kind of failure.",
                    kind: MetricType::Counter,
                    labels: vec![("kind", kind.as_str().into())],
                    value: n as f64,
                });
            }
        }
        let [p50, p90, p99, max] = latency.quantiles;
        let mean = latency.mean().map_or(Value::Null, |m| (m / 1e6).into());
        // Flat `latency_*` keys rather than a nested `latency` object: a
        // nested object is a `serde_json::Map` whose every key is a
        // `String`, seven allocations per instrument per report, a third of
        // a report's cost. In key order, into room made once: each
        // insertion is a push.
        let d = &mut health.details;
        d.reserve(15);
        d.insert("calls", calls);
        d.insert("cancelled", cancelled);
        d.insert("consecutive_failures", consecutive);
        d.insert("failures", failures);
        d.insert("failures_by_kind", by_kind);
        d.insert("ignored", ignored);
        d.insert("in_flight", in_flight);
        d.insert("latency_count", latency.total);
        d.insert("latency_max_ms", ms(max));
        d.insert("latency_mean_ms", mean);
        d.insert("latency_p50_ms", ms(p50));
        d.insert("latency_p90_ms", ms(p90));
        d.insert("latency_p99_ms", ms(p99));
        d.insert("success_rate", success_rate);
        d.insert("successes", successes);
        health
            .metric(
                "calls_total",
                "Calls started.",
                MetricType::Counter,
                calls as f64,
            )
            .metric(
                "successes_total",
                "Calls classified as successes.",
                MetricType::Counter,
                successes as f64,
            )
            .metric(
                "failures_total",
                "Calls classified as failures.",
                MetricType::Counter,
                failures as f64,
            )
            .metric(
                "ignored_total",
                "Calls classified as neither success nor failure.",
                MetricType::Counter,
                ignored as f64,
            )
            .metric(
                "cancelled_total",
                "Calls whose future was dropped before completing.",
                MetricType::Counter,
                cancelled as f64,
            )
            .metric(
                "in_flight",
                "Calls in flight.",
                MetricType::Gauge,
                in_flight as f64,
            )
            .metric(
                "consecutive_failures",
                "Failures since the last success.",
                MetricType::Gauge,
                consecutive as f64,
            )
    }

    /// Supports [`Control::Reset`]: clears the streak of failures
    /// (`consecutive_failures`); the counters and the latency histogram
    /// are monotonic and keep their values.
    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::Reset => {
                self.counters.reset();
                Ok(())
            }
            other => Err(ControlError::unsupported(&self.name, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(counters: &Counters) -> u64 {
        counters.latency.count()
    }

    /// A released slot is reused (cleared, with a new generation) once its
    /// quarantine is over, and a call of the old generation that completes
    /// or is dropped afterwards counts nowhere. The only test in this
    /// binary that touches the pool (it goes on with
    /// `settled_slots_are_reused_at_once`).
    #[test]
    fn slots_are_reused_after_quarantine_and_old_calls_count_nowhere() {
        let state = InstrumentState::new("old".into());
        let (slot, old) = (state.counters, state.generation);
        slot.start();
        slot.start();
        slot.finish(old, Some((Outcome::Success, Some(1_000))));
        assert_eq!(sampled(slot), 1);
        drop(state);

        // Still in quarantine: a fresh slot.
        let (other, _) = Counters::acquire(QUARANTINE_NS);
        assert!(!std::ptr::eq(other, slot));
        // Quarantine over: the same slot, cleared, a new generation.
        let (again, new) = Counters::acquire(0);
        assert!(std::ptr::eq(again, slot));
        assert_ne!(new, old);
        assert_eq!(sampled(again), 0);
        assert_eq!(again.started_sum(Ordering::Relaxed), 0);

        // The old instrument's second call ends now: not counted.
        again.finish(old, Some((Outcome::Success, Some(1_000))));
        again.finish(old, None);
        assert_eq!(sampled(again), 0);
        assert_eq!(again.cancelled.load(Ordering::Relaxed), 0);
        // The new generation's calls are.
        again.start();
        again.finish(new, Some((Outcome::Success, None)));
        assert_eq!(again.unsampled.load(Ordering::Relaxed), 1);

        settled_slots_are_reused_at_once();
    }

    /// A slot whose calls have all ended is reused at once, quarantine or
    /// not; one with a call running is reused as soon as that call ends
    /// (counted as stale), without waiting out the quarantine.
    fn settled_slots_are_reused_at_once() {
        let state = InstrumentState::new("done".into());
        let (slot, generation) = (state.counters, state.generation);
        for outcome in [Outcome::Success, Outcome::Ignored] {
            slot.start();
            slot.finish(generation, Some((outcome, Some(5))));
        }
        slot.start();
        slot.finish(generation, None);
        slot.start();
        slot.finish(generation, Some((Outcome::Success, None)));
        assert!(slot.settled());
        drop(state);
        let (again, _) = Counters::acquire(u64::MAX);
        assert!(std::ptr::eq(again, slot), "reused at once");

        let state = InstrumentState {
            name: "running".into(),
            counters: again,
            generation: again.generation.load(Ordering::Relaxed),
        };
        let generation = state.generation;
        again.start();
        // Reset while the call runs: it still settles when the call ends.
        state.counters.reset();
        assert_eq!(again.started_sum(Ordering::Relaxed), 1, "kept by reset");
        drop(state);
        let (other, _) = Counters::acquire(u64::MAX);
        assert!(!std::ptr::eq(other, again), "a call is running");
        again.finish(generation, Some((Outcome::Success, Some(5))));
        assert_eq!(again.stale.load(Ordering::Relaxed), 1);
        assert_eq!(again.latency.count(), 0, "counted nowhere");
        let (last, _) = Counters::acquire(u64::MAX);
        assert!(std::ptr::eq(last, again), "reused once the call ended");
    }
}
