//! A fixed log-linear latency histogram of atomics, for the layers that
//! read a latency percentile on their own (the gate's percentile signal,
//! the hedge's percentile delay): recording is one `leading_zeros`, two
//! shifts and one relaxed `fetch_add`; no lock, no allocation.
//!
//! Buckets: one for everything under 2^10 ns (about 1 µs), then each power
//! of two from 2^10 ns to 2^41 ns (about 37 minutes) split into 8 equal
//! sub-buckets, and everything above in the last bucket. A bucket is at
//! most 1/8 of its lower bound wide, so a percentile read as the upper
//! bound of its bucket is never below the exact nearest-rank value and at
//! most 12.5% above it.
//!
//! Nothing here is sized by a caller: a histogram is [`BUCKETS`] counters
//! (about 2 KB) whatever it records, and [`nearest_rank`] saturates its
//! sums, so no count, however large, overflows it.
//!
//! ```
//! use battlement_core::histogram::{AtomicHistogram, nearest_rank};
//!
//! let h = AtomicHistogram::new();
//! for ms in 1..=100u64 {
//!     h.record(ms * 1_000_000);
//! }
//! let (p90, total) = nearest_rank(|i| h.count(i), 90.0).unwrap();
//! assert_eq!(total, 100);
//! assert!(p90 >= 90_000_000 && p90 <= 90_000_000 + 90_000_000 / 8);
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Sub-buckets per power of two, as a number of bits.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Below 2^MIN_EXP ns, one bucket.
const MIN_EXP: u32 = 10;
/// The last power of two with sub-buckets; from 2^(MAX_EXP+1) ns on, the
/// last bucket.
const MAX_EXP: u32 = 40;

/// How many buckets a histogram has.
pub const BUCKETS: usize = 1 + (MAX_EXP - MIN_EXP + 1) as usize * SUB;

/// The bucket of a latency of `nanos`.
#[inline]
pub fn bucket_of(nanos: u64) -> usize {
    if nanos < (1 << MIN_EXP) {
        return 0;
    }
    let exp = 63 - nanos.leading_zeros();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (nanos >> (exp - SUB_BITS)) as usize & (SUB - 1);
    1 + (exp - MIN_EXP) as usize * SUB + sub
}

/// The (exclusive) upper bound of bucket `i`, in nanoseconds.
///
/// # Panics
///
/// If `i` is not below [`BUCKETS`].
pub fn upper_bound(i: usize) -> u64 {
    assert!(i < BUCKETS, "bucket {i} out of range");
    if i == 0 {
        return 1 << MIN_EXP;
    }
    let exp = MIN_EXP + ((i - 1) / SUB) as u32;
    let sub = ((i - 1) % SUB) as u64;
    (1u64 << exp) + (sub + 1) * (1u64 << (exp - SUB_BITS))
}

/// The nearest-rank `percentile` (in (0, 100], clamped; NaN reads as 100)
/// of the counts `count(i)` of buckets `0..BUCKETS`, as the upper bound of
/// its bucket in nanoseconds, with the total count (saturating at
/// `u64::MAX`); `None` when every count is zero. A fixed scan of
/// [`BUCKETS`] counters; no count can overflow it.
pub fn nearest_rank(count: impl Fn(usize) -> u64, percentile: f64) -> Option<(u64, u64)> {
    let total = (0..BUCKETS).fold(0u64, |sum, i| sum.saturating_add(count(i)));
    if total == 0 {
        return None;
    }
    let fraction = if percentile.is_nan() {
        1.0
    } else {
        (percentile / 100.0).clamp(0.0, 1.0)
    };
    let rank = ((fraction * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for i in 0..BUCKETS {
        seen = seen.saturating_add(count(i));
        if seen >= rank {
            return Some((upper_bound(i), total));
        }
    }
    Some((upper_bound(BUCKETS - 1), total))
}

/// [`BUCKETS`] relaxed atomic counters: one allocation when made, none
/// after.
#[derive(Debug)]
pub struct AtomicHistogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram::new()
    }
}

impl AtomicHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        AtomicHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one latency of `nanos`.
    #[inline]
    pub fn record(&self, nanos: u64) {
        self.buckets[bucket_of(nanos)].fetch_add(1, Relaxed);
    }

    /// The count of bucket `i`.
    ///
    /// # Panics
    ///
    /// If `i` is not below [`BUCKETS`].
    #[inline]
    pub fn count(&self, i: usize) -> u64 {
        self.buckets[i].load(Relaxed)
    }

    /// Copies the counts into `into` (up to its length or [`BUCKETS`]).
    pub fn snapshot(&self, into: &mut [u64]) {
        for (dst, b) in into.iter_mut().zip(self.buckets.iter()) {
            *dst = b.load(Relaxed);
        }
    }

    /// Sets every count to zero (not atomically as a whole: a latency
    /// recorded meanwhile may be lost).
    pub fn clear(&self) {
        for b in self.buckets.iter() {
            b.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_edges() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1023), 0);
        assert_eq!(bucket_of(1024), 1);
        assert_eq!(upper_bound(0), 1024);
        assert_eq!(upper_bound(1), 1024 + 128);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(upper_bound(BUCKETS - 1), 1 << (MAX_EXP + 1));
        // Buckets are contiguous and increasing.
        for i in 1..BUCKETS {
            assert!(upper_bound(i) > upper_bound(i - 1));
            assert_eq!(bucket_of(upper_bound(i - 1)), i);
            assert_eq!(bucket_of(upper_bound(i) - 1), i);
        }
    }

    #[test]
    fn empty_and_cleared_read_nothing() {
        let h = AtomicHistogram::new();
        assert_eq!(nearest_rank(|i| h.count(i), 99.0), None);
        h.record(5_000);
        assert!(nearest_rank(|i| h.count(i), 99.0).is_some());
        h.clear();
        assert_eq!(nearest_rank(|i| h.count(i), 99.0), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Counts of any size (a caller's own, or a histogram of an
        /// unbounded run) never overflow the scan: the result is a bucket
        /// bound and the total saturates.
        #[test]
        fn huge_counts_do_not_overflow(
            counts in proptest::collection::vec(any::<u64>(), BUCKETS),
            p in any::<f64>(),
        ) {
            let got = nearest_rank(|i| counts[i], p);
            let exact: u128 = counts.iter().map(|&c| u128::from(c)).sum();
            match got {
                None => prop_assert_eq!(exact, 0),
                Some((bound, total)) => {
                    prop_assert_eq!(u128::from(total), exact.min(u128::from(u64::MAX)));
                    prop_assert!((0..BUCKETS).any(|i| upper_bound(i) == bound));
                }
            }
        }

        #[test]
        fn a_value_is_below_its_upper_bound_by_at_most_an_eighth(nanos in 1024u64..(1 << (MAX_EXP + 1))) {
            let upper = upper_bound(bucket_of(nanos));
            prop_assert!(upper > nanos);
            prop_assert!((upper - nanos) as f64 <= nanos as f64 / 8.0);
        }

        #[test]
        fn percentile_is_the_bucket_of_the_nearest_rank(
            values in proptest::collection::vec(0u64..10_000_000_000, 1..300),
            p in 0.1f64..=100.0,
        ) {
            let h = AtomicHistogram::new();
            for v in &values {
                h.record(*v);
            }
            let mut counts = vec![0; BUCKETS];
            h.snapshot(&mut counts);
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            let exact = sorted[rank.clamp(1, sorted.len()) - 1];
            let (got, n) = nearest_rank(|i| counts[i], p).unwrap();
            prop_assert_eq!(n, values.len() as u64);
            prop_assert_eq!(got, upper_bound(bucket_of(exact)));
        }
    }
}
