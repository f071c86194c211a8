//! [`LatencyClock`]: which clock an instrument times calls with.
//!
//! The clock itself is core's [`Clock`]: the CPU's time-stamp counter,
//! or tokio's clock where tokio's time is paused (see its docs for why
//! both). This enum only lets an instrument choose.

use std::sync::LazyLock;

use battlement_core::clock::{Clock, Stamp};

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

impl LatencyClock {
    /// Decides `Auto` here and now.
    pub(crate) fn resolve(self) -> Clock {
        match self {
            LatencyClock::Tokio => Clock::tokio(),
            LatencyClock::Fast => Clock::fast(),
            LatencyClock::Auto => Clock::new(),
        }
    }
}

/// The real-time clock that times how long a released instrument slot
/// has waited (its quarantine): never paused, shared by every slot.
pub(crate) static SLOT_CLOCK: LazyLock<Clock> = LazyLock::new(Clock::fast);

/// When a call started, if it is timed.
pub(crate) type Start = Option<Stamp>;
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn outside_a_runtime_auto_is_fast() {
        assert!(LatencyClock::Auto.resolve().is_fast());
        assert!(!LatencyClock::Tokio.resolve().is_fast());
        assert!(LatencyClock::Fast.resolve().is_fast());
    }

    #[tokio::test(start_paused = true)]
    async fn on_paused_time_auto_is_tokio() {
        let clock = LatencyClock::Auto.resolve();
        assert!(!clock.is_fast());
        let start: Start = Some(clock.stamp());
        tokio::time::advance(Duration::from_millis(3)).await;
        assert_eq!(start.map(|s| s.elapsed_ns()), Some(3_000_000));
    }
}
