//! [`Clock`]: the one clock every hot path reads for "now".
//!
//! A breaker checks whether its open duration has passed, a retry budget
//! finds its slot, an instrument times a call: each needs only the time
//! since some origin, in nanoseconds, and needs it on every call. That is
//! what a [`Clock`] gives, from one of two sources, decided once where the
//! layer is made.
//!
//! # Why not always tokio's clock
//!
//! `tokio::time::Instant::now()` is `clock_gettime(CLOCK_MONOTONIC)` plus a
//! `Timespec` subtraction and a `Duration` conversion: about 25–33 ns a read
//! on the development machine (an AMD EPYC virtual machine with the `tsc`
//! clock source), more than a closed breaker's whole call. Reading the
//! CPU's time-stamp counter directly (through the `quanta` crate, which
//! calibrates it against the OS clock once per process and falls back to
//! the OS monotonic clock where the counter is not invariant) costs the
//! `rdtsc` instruction and one multiply-and-shift.
//!
//! # Why not always the fast clock
//!
//! The fast clock does not know about tokio's paused time: a test on
//! `#[tokio::test(start_paused = true)]` that advances time by 30 s to let
//! a breaker's open duration pass would see a few microseconds go by. So
//! [`Clock::new`] looks, once, whether tokio's clock is paused where it is
//! called (tokio's time does not move while real time does) and then reads
//! tokio's clock, exactly as a test expects; otherwise the fast clock.
//! A layer made outside a paused runtime and used inside one reads the
//! fast clock; make its clock with [`Clock::tokio`] instead.
//!
//! Deadlines stay `tokio::time::Instant`s: they are compared with timers,
//! which run on tokio's clock.
//!
//! # One read per call chain
//!
//! A `call` runs through the layers of a stack synchronously, in
//! nanoseconds, so the layers do not each need to read the clock. The
//! outermost one that reads it (the registry's instrument, timing the
//! call) publishes its [`Stamp`] with [`enter_call`] while it calls the
//! layers inside; they take "now" from it: a retry budget's slot through
//! [`Clock::call_now_ns`], a deadline's start through [`call_instant`]
//! (which maps a fast-clock stamp onto tokio's clock, and falls back to
//! tokio's own reading on paused time). Futures, when polled, read the
//! clock themselves. In the canonical stack this takes a TSC read and a
//! read of tokio's clock off every call (about 30 ns).
//!
//! ```
//! use battlement_core::clock::Clock;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // On paused time, as in a test: tokio's clock, advanced exactly.
//! let clock = Clock::new();
//! assert!(!clock.is_fast());
//! let start = clock.now_ns();
//! tokio::time::advance(std::time::Duration::from_millis(3)).await;
//! assert_eq!(clock.now_ns() - start, 3_000_000);
//! # }
//! ```

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// A monotonic clock read as nanoseconds since it was made: tokio's clock
/// on paused time, the CPU's time-stamp counter otherwise (see the
/// [module docs](self)). `Copy`, 24 bytes; a read takes no lock and never
/// allocates.
#[derive(Clone, Copy)]
pub struct Clock {
    source: Source,
}

#[derive(Clone, Copy)]
enum Source {
    /// tokio's clock, and the instant it was made.
    Tokio(Instant),
    /// The calibrated counter, and its raw reading when it was made.
    Fast(&'static quanta::Clock, u64),
}

/// The process's calibrated fast clock (calibration takes a few
/// milliseconds, once).
static FAST: OnceLock<quanta::Clock> = OnceLock::new();

fn fast() -> &'static quanta::Clock {
    FAST.get_or_init(quanta::Clock::new)
}

impl Clock {
    /// tokio's clock where tokio's time is paused here (a test on paused
    /// time), the fast clock otherwise. Decided here and now: the check
    /// spins for a microsecond of real time.
    pub fn new() -> Self {
        if tokio_time_is_paused() {
            Self::tokio()
        } else {
            Self::fast()
        }
    }

    /// tokio's clock: follows paused and advanced time exactly.
    pub fn tokio() -> Self {
        Clock {
            source: Source::Tokio(Instant::now()),
        }
    }

    /// The CPU's time-stamp counter (the OS monotonic clock where it is not
    /// usable): real time, even when tokio's time is paused.
    pub fn fast() -> Self {
        let clock = fast();
        Clock {
            source: Source::Fast(clock, clock.raw()),
        }
    }

    /// Whether this is the fast clock rather than tokio's.
    pub fn is_fast(&self) -> bool {
        matches!(self.source, Source::Fast(..))
    }

    /// Nanoseconds since the clock was made (saturating at 584 years).
    #[inline(always)]
    pub fn now_ns(&self) -> u64 {
        match self.source {
            Source::Tokio(origin) => nanos(Instant::now().saturating_duration_since(origin)),
            Source::Fast(clock, origin) => clock.delta_as_nanos(origin, clock.raw()),
        }
    }

    /// Nanoseconds from `earlier` (a reading of this clock) to now; zero if
    /// `earlier` is in the future.
    #[inline(always)]
    pub fn elapsed_ns(&self, earlier: u64) -> u64 {
        self.now_ns().saturating_sub(earlier)
    }

    /// A reading of this clock that measures the time since itself
    /// ([`Stamp::elapsed_ns`]) without the clock: what a response future
    /// carries to time its call.
    #[inline(always)]
    pub fn stamp(&self) -> Stamp {
        match self.source {
            Source::Tokio(_) => Stamp(StampSource::Tokio(Instant::now())),
            Source::Fast(clock, _) => Stamp(StampSource::Fast(clock, clock.raw())),
        }
    }
}

impl Clock {
    /// "Now" for a layer being called, in this clock's nanoseconds: the
    /// stamp an enclosing layer took when it was called and published for
    /// the layers it calls ([`enter_call`]), when it came from the same
    /// kind of source as this clock; otherwise a read ([`now_ns`](Self::now_ns)).
    ///
    /// A call runs through the layers synchronously, in nanoseconds, so the
    /// instrument's stamp serves a retry budget inside it as well as a
    /// read of its own would, and costs a thread-local load instead of a
    /// clock read.
    #[inline(always)]
    pub fn call_now_ns(&self) -> u64 {
        match (self.source, CALL.with(Cell::get)) {
            (Source::Fast(clock, origin), Call::Fast(raw)) => clock.delta_as_nanos(origin, raw),
            (Source::Tokio(origin), Call::Tokio(at)) => nanos(at.saturating_duration_since(origin)),
            _ => self.now_ns(),
        }
    }
}

/// The stamp published for the layers an outer layer calls, on this
/// thread ([`enter_call`]).
#[derive(Clone, Copy)]
enum Call {
    None,
    Tokio(Instant),
    /// A raw reading of the process's fast clock ([`fast()`]).
    Fast(u64),
}

thread_local! {
    static CALL: Cell<Call> = const { Cell::new(Call::None) };
    /// Where this thread last read tokio's clock against the fast one
    /// ([`call_instant`]).
    static ANCHOR: Cell<Anchor> = const {
        Cell::new(Anchor {
            raw: 0,
            at: None,
            trusted: false,
        })
    };
}

/// Publishes `stamp` as "now" for the layers called synchronously inside
/// ([`Clock::call_now_ns`], [`call_instant`]) until the guard drops, which
/// restores what was published before. The guard is neither `Send` nor
/// `Sync`: hold it across one `call`, never across an `.await`.
#[inline(always)]
pub fn enter_call(stamp: Stamp) -> CallGuard {
    let call = match stamp.0 {
        StampSource::Tokio(at) => Call::Tokio(at),
        StampSource::Fast(_, raw) => Call::Fast(raw),
    };
    CallGuard {
        previous: CALL.with(|c| c.replace(call)),
        _not_send: PhantomData,
    }
}

/// Restores the stamp published before [`enter_call`] when dropped.
#[must_use = "the stamp is published only while the guard lives"]
pub struct CallGuard {
    previous: Call,
    _not_send: PhantomData<*const ()>,
}

impl Drop for CallGuard {
    #[inline(always)]
    fn drop(&mut self) {
        CALL.with(|c| c.set(self.previous));
    }
}

impl fmt::Debug for CallGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallGuard").finish_non_exhaustive()
    }
}

/// How long a thread maps fast-clock readings onto tokio's clock from one
/// pair of readings before it reads tokio's clock again, in the fast
/// clock's raw ticks: 2^22, 1.4 ms at 3 GHz, 4.2 ms where the counter is
/// the OS clock's nanoseconds.
const WINDOW_TICKS: u64 = 1 << 22;

/// A pair of readings, tokio's clock and the fast clock's raw counter,
/// taken together on this thread.
#[derive(Clone, Copy)]
struct Anchor {
    raw: u64,
    at: Option<Instant>,
    /// Whether tokio's clock moved with the fast clock, to within 1/256,
    /// from the pair before to this one: real time, not paused.
    trusted: bool,
}

/// "Now" on tokio's clock for a layer being called (a deadline is an
/// instant on tokio's clock): the stamp an enclosing layer published
/// ([`enter_call`]), or a read of tokio's clock when there is none.
///
/// A stamp of tokio's clock is used as it is. A stamp of the fast clock is
/// mapped onto tokio's clock through a pair of readings of both that this
/// thread takes every 2^22 ticks of the counter (1.4 ms at 3 GHz). The
/// mapping is used only while the last two pairs agree that tokio's clock
/// moves with real time (to within 1/256, about 5 µs in 1.4 ms); on
/// paused time tokio's clock stands still or jumps, the pairs disagree,
/// and this reads tokio's clock, so a test on paused time stays exact. In
/// a running program the mapping is off by the fast clock's calibration
/// error over one window (nanoseconds), and saves a read of tokio's clock
/// per call.
#[inline(always)]
pub fn call_instant() -> Instant {
    match CALL.with(Cell::get) {
        Call::Tokio(at) => at,
        Call::Fast(raw) => {
            let a = ANCHOR.with(Cell::get);
            if let (true, Some(at)) = (a.trusted, a.at) {
                // A reading before the anchor wraps to a huge gap.
                if raw.wrapping_sub(a.raw) < WINDOW_TICKS {
                    return at + Duration::from_nanos(fast().delta_as_nanos(a.raw, raw));
                }
            }
            reanchor(raw, a)
        }
        Call::None => Instant::now(),
    }
}

/// [`call_instant`] off its fast path: a stamp from before this thread's
/// pair (taken earlier in the same call chain), a window that is not
/// trusted (tokio's clock is read), or one that has passed (tokio's clock
/// and the counter are read back to back as the new pair, and checked
/// against the last one).
#[cold]
#[inline(never)]
fn reanchor(raw: u64, a: Anchor) -> Instant {
    let clock = fast();
    if let Some(at) = a.at {
        let behind = a.raw.wrapping_sub(raw);
        if a.trusted && behind < WINDOW_TICKS {
            let earlier = Duration::from_nanos(clock.delta_as_nanos(raw, a.raw));
            return at.checked_sub(earlier).unwrap_or(at);
        }
        if behind < WINDOW_TICKS || raw.wrapping_sub(a.raw) < WINDOW_TICKS {
            return Instant::now();
        }
    }
    // The pair is read here rather than taken from the stamp, which may
    // be microseconds older (the layers between the instrument and this
    // one): the check below compares two pairs to 1/256 of a window.
    let now = Instant::now();
    let counter = clock.raw();
    let trusted = a.at.is_some_and(|prev| {
        let tokio = nanos(now.saturating_duration_since(prev));
        let real = clock.delta_as_nanos(a.raw, counter);
        tokio.abs_diff(real) <= real / 256
    });
    ANCHOR.with(|c| {
        c.set(Anchor {
            raw: counter,
            at: Some(now),
            trusted,
        })
    });
    now
}

/// When something started, read from a [`Clock`] by [`Clock::stamp`].
#[derive(Debug, Clone, Copy)]
pub struct Stamp(StampSource);

#[derive(Debug, Clone, Copy)]
enum StampSource {
    Tokio(Instant),
    Fast(&'static quanta::Clock, u64),
}

impl Stamp {
    /// Nanoseconds since the stamp was taken, on the clock it was taken
    /// from (saturating at 584 years).
    #[inline(always)]
    pub fn elapsed_ns(&self) -> u64 {
        match self.0 {
            StampSource::Tokio(at) => nanos(Instant::now().saturating_duration_since(at)),
            StampSource::Fast(clock, at) => clock.delta_as_nanos(at, clock.raw()),
        }
    }
}

impl Default for Clock {
    /// [`Clock::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("source", &if self.is_fast() { "fast" } else { "tokio" })
            .field("now_ns", &self.now_ns())
            .finish()
    }
}

/// Whether tokio's clock is paused in the current context: tokio's time
/// does not move while a microsecond of real time passes. Only a
/// current-thread runtime's clock can be paused, and it cannot
/// auto-advance while this thread spins; outside a runtime, tokio's time
/// is real time. A clock coarser than the spin reads as paused, and so
/// reads tokio's clock: slower, never wrong.
fn tokio_time_is_paused() -> bool {
    let clock = fast();
    let before = Instant::now();
    let start = clock.raw();
    // Bounded, should the fast clock not move at all.
    for _ in 0..1_000_000 {
        if clock.delta_as_nanos(start, clock.raw()) >= 1_000 {
            break;
        }
        std::hint::spin_loop();
    }
    Instant::now() == before
}

/// A duration in whole nanoseconds, saturating (584 years).
#[inline]
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_runtime_the_clock_is_fast() {
        assert!(Clock::new().is_fast());
        assert!(!Clock::tokio().is_fast());
        assert!(Clock::fast().is_fast());
    }

    #[tokio::test(start_paused = true)]
    async fn on_paused_time_the_clock_is_tokio_and_exact() {
        let clock = Clock::new();
        assert!(!clock.is_fast());
        let start = clock.now_ns();
        let stamp = clock.stamp();
        tokio::time::advance(Duration::from_millis(3)).await;
        assert_eq!(clock.elapsed_ns(start), 3_000_000);
        assert_eq!(stamp.elapsed_ns(), 3_000_000);
        assert_eq!(clock.elapsed_ns(u64::MAX), 0);
    }

    #[tokio::test]
    async fn on_running_time_the_clock_is_fast() {
        assert!(Clock::new().is_fast());
    }

    #[test]
    fn the_fast_clock_measures_real_time() {
        let clock = Clock::fast();
        // Real time by nature, so checked against tokio's (running) clock
        // over a half-millisecond busy loop nested inside the fast reads.
        // The stamp before the reading, and read after it: `stamped >= ns`
        // holds whatever preempts the test between the lines.
        let stamp = clock.stamp();
        let start = clock.now_ns();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_micros(500) {
            std::hint::spin_loop();
        }
        let real = nanos(t0.elapsed());
        let ns = clock.elapsed_ns(start);
        // Calibrated to well within 5%.
        assert!(ns as f64 >= real as f64 * 0.95, "{ns} < {real}");
        assert!(ns < 1_000_000_000, "{ns}");
        let stamped = stamp.elapsed_ns();
        assert!(stamped >= ns, "{stamped} < {ns}");
        assert!(stamped < 1_000_000_000, "{stamped}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_published_stamp_is_now_for_the_layers_inside() {
        let clock = Clock::new();
        let stamp = clock.stamp();
        let at = Instant::now();
        let published_at = clock.now_ns();
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(
            clock.call_now_ns(),
            published_at + 5_000_000,
            "nothing published"
        );
        assert_eq!(call_instant(), Instant::now());
        {
            let _outer = enter_call(stamp);
            assert_eq!(clock.call_now_ns(), published_at);
            assert_eq!(call_instant(), at);
            {
                let later = clock.stamp();
                let _inner = enter_call(later);
                assert_eq!(clock.call_now_ns(), published_at + 5_000_000);
            }
            assert_eq!(
                clock.call_now_ns(),
                published_at,
                "the inner guard restored"
            );
        }
        assert_eq!(clock.call_now_ns(), published_at + 5_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stamp_of_the_other_source_is_not_used() {
        let tokio = Clock::tokio();
        let fast = Clock::fast();
        let start = tokio.now_ns();
        let _call = enter_call(fast.stamp());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_eq!(tokio.call_now_ns(), start + 2_000_000);
        drop(_call);
        let _call = enter_call(tokio.stamp());
        let before = fast.now_ns();
        let now = fast.call_now_ns();
        assert!(
            now >= before && now < before + 1_000_000_000,
            "{now} vs {before}"
        );
    }

    /// Spins real time past `windows` anchoring windows, publishing a
    /// fresh fast stamp each round and checking `call_instant` each time.
    fn spin_windows(windows: u64, mut check: impl FnMut(Instant)) {
        let clock = fast();
        let start = clock.raw();
        while clock.raw().wrapping_sub(start) < windows * WINDOW_TICKS {
            let _call = enter_call(Clock::fast().stamp());
            check(call_instant());
            std::hint::spin_loop();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_stamp_reads_as_paused_time_exactly() {
        // Real time runs through several windows while tokio's stands
        // still, and then jumps: the pairs never agree, so every "now" is
        // tokio's own.
        for _ in 0..3 {
            spin_windows(3, |at| assert_eq!(at, Instant::now()));
            tokio::time::advance(Duration::from_millis(7)).await;
        }
        assert!(!ANCHOR.with(Cell::get).trusted);
    }

    #[test]
    fn on_real_time_a_fast_stamp_maps_onto_tokio_time() {
        // Outside a runtime tokio's clock is real time: once two pairs
        // agree the mapping is used (a pair taken across a preemption
        // makes its window untrusted, hence the bounded retries).
        for _ in 0..100 {
            spin_windows(1, |_| ());
            if ANCHOR.with(Cell::get).trusted {
                break;
            }
        }
        assert!(ANCHOR.with(Cell::get).trusted);
        let tolerance = Duration::from_micros(100);
        // A stamp from before the pair (the pair is read after the stamp
        // that starts a new window): mapped back from the pair, not read.
        spin_windows(1, |_| ());
        let stamp = Clock::fast().stamp();
        let first = {
            let _call = enter_call(stamp);
            call_instant()
        };
        let again = {
            let _call = enter_call(stamp);
            call_instant()
        };
        let off = if again > first {
            again - first
        } else {
            first - again
        };
        assert!(
            off < tolerance,
            "the same stamp read {first:?} then {again:?}"
        );
        for _ in 0..1_000 {
            let before = Instant::now();
            let _call = enter_call(Clock::fast().stamp());
            let mapped = call_instant();
            let after = Instant::now();
            assert!(
                mapped + tolerance >= before && mapped <= after + tolerance,
                "{mapped:?} outside {before:?}..{after:?}"
            );
        }
    }

    #[test]
    fn nanos_saturate() {
        assert_eq!(nanos(Duration::MAX), u64::MAX);
        assert_eq!(nanos(Duration::from_micros(2)), 2_000);
    }
}
