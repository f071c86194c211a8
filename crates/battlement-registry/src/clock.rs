//! [`LatencyClock`]: which clock an instrument times calls with.
//!
//! # Why not always tokio's clock
//!
//! Timing a call takes two clock reads. `tokio::time::Instant::now()` is
//! `clock_gettime(CLOCK_MONOTONIC)` plus a `Timespec` subtraction and a
//! `Duration` conversion: measured on the development machine (an AMD EPYC
//! virtual machine, `tsc` clock source) at about 33 ns a read under
//! criterion, so two reads alone were over the instrument's 40 ns budget.
//! Reading the CPU's time-stamp counter directly (through the `quanta`
//! crate, which calibrates it against the OS clock once per process, in
//! about 2.5 ms, and falls back to the OS monotonic clock where the counter
//! is not invariant) costs the `rdtsc` instruction, and the difference of
//! two reads is scaled to nanoseconds with one multiplication and a shift.
//!
//! # Why not always the fast clock
//!
//! The fast clock does not know about tokio's paused time: a test on
//! `#[tokio::test(start_paused = true)]` that advances time by 100 ms
//! during a call would see the call take a few microseconds of real time.
//! So the default, [`LatencyClock::Auto`], looks once, when the layer is
//! made, whether tokio's clock is paused there (tokio's time does not move
//! while real time does), and then times with tokio's clock, exactly as
//! before; otherwise with the fast clock.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// Which clock an [`InstrumentLayer`](crate::InstrumentLayer) times calls
/// with. Set with
/// [`InstrumentLayer::latency_clock`](crate::InstrumentLayer::latency_clock);
/// the default is [`Auto`](LatencyClock::Auto).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LatencyClock {
    /// The default: [`Tokio`](LatencyClock::Tokio) when tokio's clock is
    /// paused where the layer is made (in a test on paused time), otherwise
    /// [`Fast`](LatencyClock::Fast). Decided once, when the layer is made
    /// (or when this is set): a layer made outside a paused runtime and
    /// then used inside one times with the fast clock; choose `Tokio` for
    /// it.
    #[default]
    Auto,
    /// `tokio::time::Instant`: follows paused and advanced time exactly;
    /// two reads cost about 60 ns on the development machine.
    Tokio,
    /// The CPU's time-stamp counter through the `quanta` crate (the OS
    /// monotonic clock where the counter is not usable): real time, even
    /// when tokio's time is paused; two reads cost a third to a half of
    /// tokio's.
    Fast,
}

/// A [`LatencyClock`] once decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Tokio,
    Fast,
}

impl LatencyClock {
    /// Decides `Auto` here and now.
    pub(crate) fn resolve(self) -> Mode {
        match self {
            LatencyClock::Tokio => Mode::Tokio,
            LatencyClock::Fast => {
                fast();
                Mode::Fast
            }
            LatencyClock::Auto => {
                if tokio_time_is_paused() {
                    Mode::Tokio
                } else {
                    fast();
                    Mode::Fast
                }
            }
        }
    }
}

/// The process's calibrated fast clock.
static FAST: OnceLock<quanta::Clock> = OnceLock::new();

pub(crate) fn fast() -> &'static quanta::Clock {
    FAST.get_or_init(quanta::Clock::new)
}

/// Whether tokio's clock is paused in the current context: tokio's time
/// does not move while a microsecond of real time passes (a spin of one
/// microsecond, once per layer). Only a current-thread runtime's clock can
/// be paused, and it cannot auto-advance while this thread spins; outside
/// a runtime, tokio's time is real time. A clock coarser than the spin
/// reads as paused, and so times with tokio's clock: slower, never wrong.
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

/// When a call started, if it is timed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start {
    /// Not sampled.
    Untimed,
    Tokio(Instant),
    /// A raw reading of the fast clock.
    Fast(u64),
}

impl Mode {
    /// Reads the clock at the start of a call.
    #[inline]
    pub(crate) fn start(self) -> Start {
        match self {
            Mode::Tokio => Start::Tokio(Instant::now()),
            // Set by `resolve` before any `Mode::Fast` exists.
            Mode::Fast => FAST.get().map_or(Start::Untimed, |c| Start::Fast(c.raw())),
        }
    }
}

impl Start {
    /// The nanoseconds since the start, or `None` if the call is not timed.
    #[inline]
    pub(crate) fn elapsed_ns(self) -> Option<u64> {
        match self {
            Start::Untimed => None,
            Start::Tokio(start) => Some(nanos(Instant::now().saturating_duration_since(start))),
            Start::Fast(start) => FAST.get().map(|c| c.delta_as_nanos(start, c.raw())),
        }
    }
}

/// A duration in whole nanoseconds, saturating (584 years).
#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_runtime_auto_is_fast() {
        assert_eq!(LatencyClock::Auto.resolve(), Mode::Fast);
        assert_eq!(LatencyClock::Tokio.resolve(), Mode::Tokio);
        assert_eq!(LatencyClock::Fast.resolve(), Mode::Fast);
    }

    #[tokio::test(start_paused = true)]
    async fn on_paused_time_auto_is_tokio() {
        assert_eq!(LatencyClock::Auto.resolve(), Mode::Tokio);
        let start = Mode::Tokio.start();
        tokio::time::advance(Duration::from_millis(3)).await;
        assert_eq!(start.elapsed_ns(), Some(3_000_000));
    }

    #[tokio::test]
    async fn on_running_time_auto_is_fast() {
        assert_eq!(LatencyClock::Auto.resolve(), Mode::Fast);
    }

    #[test]
    fn the_fast_clock_measures_real_time() {
        assert_eq!(LatencyClock::Fast.resolve(), Mode::Fast);
        // Real time by nature, so checked against tokio's (running) clock
        // over a half-millisecond busy loop nested inside the fast reads.
        let start = Mode::Fast.start();
        assert!(matches!(start, Start::Fast(_)));
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_micros(500) {
            std::hint::spin_loop();
        }
        let real = nanos(t0.elapsed());
        let ns = start.elapsed_ns().unwrap();
        // Calibrated to well within 5%.
        assert!(ns as f64 >= real as f64 * 0.95, "{ns} < {real}");
        assert!(ns < 1_000_000_000, "{ns}");
        assert_eq!(Start::Untimed.elapsed_ns(), None);
    }
}
