//! Where jitter comes from: [`RandomSource`], [`FastRandom`] (the default)
//! and [`SeededRandom`] (deterministic, for tests).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of uniform random numbers in `[0, 1)` for backoff jitter.
///
/// Injectable so tests can pin the exact delay sequence. It is only asked
/// for a number when a retry is about to wait, never on the happy path.
///
/// ```
/// use battlement_retry::RandomSource;
///
/// /// Always the middle of the range: jitter becomes predictable.
/// #[derive(Debug)]
/// struct Half;
/// impl RandomSource for Half {
///     fn next_f64(&self) -> f64 { 0.5 }
/// }
/// assert_eq!(Half.next_f64(), 0.5);
/// ```
pub trait RandomSource: Send + Sync + 'static {
    /// A number in `[0, 1)`. Values outside are clamped by the caller.
    fn next_f64(&self) -> f64;
}

impl<F> RandomSource for F
where
    F: Fn() -> f64 + Send + Sync + 'static,
{
    fn next_f64(&self) -> f64 {
        self()
    }
}

/// The default source: `fastrand`'s thread-local generator (no lock, no
/// allocation).
#[derive(Debug, Clone, Copy, Default)]
pub struct FastRandom {
    _priv: (),
}

impl FastRandom {
    /// The default source.
    pub const fn new() -> Self {
        FastRandom { _priv: () }
    }
}

impl RandomSource for FastRandom {
    fn next_f64(&self) -> f64 {
        fastrand::f64()
    }
}

/// A deterministic source from a seed (SplitMix64 over an atomic counter):
/// the same seed gives the same sequence, shared safely between threads
/// without a lock. For tests and simulations.
///
/// ```
/// use battlement_retry::{RandomSource, SeededRandom};
///
/// let (a, b) = (SeededRandom::new(7), SeededRandom::new(7));
/// assert_eq!(a.next_f64(), b.next_f64());
/// ```
pub struct SeededRandom {
    state: AtomicU64,
}

impl SeededRandom {
    /// A source whose sequence is fixed by `seed`.
    pub const fn new(seed: u64) -> Self {
        SeededRandom {
            state: AtomicU64::new(seed),
        }
    }
}

impl fmt::Debug for SeededRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeededRandom").finish_non_exhaustive()
    }
}

impl RandomSource for SeededRandom {
    fn next_f64(&self) -> f64 {
        const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut z = self
            .state
            .fetch_add(GOLDEN, Ordering::Relaxed)
            .wrapping_add(GOLDEN);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 random bits into [0, 1).
        (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_repeatable_and_in_range() {
        let a = SeededRandom::new(42);
        let b = SeededRandom::new(42);
        let c = SeededRandom::new(43);
        let xs: Vec<f64> = (0..100).map(|_| a.next_f64()).collect();
        let ys: Vec<f64> = (0..100).map(|_| b.next_f64()).collect();
        let zs: Vec<f64> = (0..100).map(|_| c.next_f64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let fast = FastRandom::new().next_f64();
        assert!((0.0..1.0).contains(&fast));
    }
}
