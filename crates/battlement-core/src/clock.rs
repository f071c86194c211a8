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

use std::fmt;
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
        let start = clock.now_ns();
        let stamp = clock.stamp();
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

    #[test]
    fn nanos_saturate() {
        assert_eq!(nanos(Duration::MAX), u64::MAX);
        assert_eq!(nanos(Duration::from_micros(2)), 2_000);
    }
}
