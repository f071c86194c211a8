//! The latency window a percentile hedge delay is read from: two fixed
//! log-linear histograms of atomics, each filled with half of the window,
//! written without a lock and without allocating. The percentile is
//! recomputed every few samples from the buckets (a fixed scan of a few
//! hundred counters, whatever the window's size).
//!
//! The buckets are [`battlement_core::histogram`]'s: the percentile reads
//! as the upper bound of its bucket, never below the exact nearest-rank
//! value, at most 12.5% above it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use battlement_core::histogram::{AtomicHistogram, nearest_rank};

/// The last `window` latencies, roughly: two halves of `ceil(window / 2)`
/// samples each; when a half is full the older one is emptied and
/// refilled, so the percentile covers between the last `window / 2` and
/// `window` latencies (rounded up). Under concurrency a sample recorded
/// while its half is being emptied may be lost: the window is a
/// statistic, not a ledger.
#[derive(Debug)]
pub(crate) struct LatencyWindow {
    halves: [AtomicHistogram; 2],
    half: u64,
    recorded: AtomicU64,
    percentile: f64,
    min_samples: u64,
    refresh: u64,
    current_ns: AtomicU64,
}

impl LatencyWindow {
    /// A window of the last `size` latencies; `percentile` in (0, 100].
    pub(crate) fn new(size: usize, percentile: f64, min_samples: usize) -> Self {
        LatencyWindow {
            halves: [AtomicHistogram::new(), AtomicHistogram::new()],
            half: (size as u64).div_ceil(2).max(1),
            recorded: AtomicU64::new(0),
            percentile,
            min_samples: min_samples as u64,
            refresh: (size as u64 / 16).max(1),
            current_ns: AtomicU64::new(0),
        }
    }

    /// How many latencies were recorded since the start.
    pub(crate) fn recorded(&self) -> u64 {
        self.recorded.load(Relaxed)
    }

    /// Records one latency and, every few samples, recomputes the
    /// percentile.
    pub(crate) fn record(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let i = self.recorded.fetch_add(1, Relaxed);
        let epoch = i / self.half;
        let half = &self.halves[(epoch % 2) as usize];
        if i > 0 && i.is_multiple_of(self.half) {
            // The first sample of a new half empties what it held.
            half.clear();
        }
        half.record(ns);
        let n = i + 1;
        if n >= self.min_samples && (n - self.min_samples).is_multiple_of(self.refresh) {
            self.recompute();
        }
    }

    fn recompute(&self) {
        let [older, newer] = &self.halves;
        let count = |i: usize| older.count(i) + newer.count(i);
        if let Some((nanos, _)) = nearest_rank(count, self.percentile) {
            self.current_ns.store(nanos, Relaxed);
        }
    }

    /// The current percentile, or `None` before `min_samples` latencies.
    pub(crate) fn current(&self) -> Option<Duration> {
        if self.recorded() < self.min_samples.max(1) {
            return None;
        }
        Some(Duration::from_nanos(self.current_ns.load(Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use battlement_core::histogram::{bucket_of, upper_bound};
    use proptest::prelude::*;

    /// The reading for an exact value: its bucket's upper bound.
    fn read(d: Duration) -> Duration {
        Duration::from_nanos(upper_bound(bucket_of(d.as_nanos() as u64)))
    }

    #[test]
    fn percentile_follows_the_newest_window() {
        let w = LatencyWindow::new(20, 90.0, 5);
        assert_eq!(w.current(), None);
        for ms in 1..=20 {
            w.record(Duration::from_millis(ms));
        }
        assert_eq!(w.current(), Some(read(Duration::from_millis(18))));
        for _ in 0..10 {
            w.record(Duration::from_millis(500));
        }
        // Half the window is new: 10 of 20 samples are 500 ms.
        assert_eq!(w.current(), Some(read(Duration::from_millis(500))));
        for _ in 0..10 {
            w.record(Duration::from_millis(3));
        }
        // The 1..=20 ms half is gone; of 500 ms ×10 and 3 ms ×10, p90 is 500.
        assert_eq!(w.current(), Some(read(Duration::from_millis(500))));
        for _ in 0..10 {
            w.record(Duration::from_millis(3));
        }
        assert_eq!(w.current(), Some(read(Duration::from_millis(3))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn matches_the_nearest_rank_of_the_covered_samples(
            values in proptest::collection::vec(0u64..10_000_000_000, 1..200),
            size in 1usize..100,
            p in 1.0f64..=100.0,
        ) {
            let w = LatencyWindow::new(size, p, 1);
            for v in &values {
                w.record(Duration::from_nanos(*v));
            }
            // The samples covered: the current half and the one before.
            let half = size.div_ceil(2);
            let n = values.len();
            let start_of_current = (n - 1) / half * half;
            let covered = &values[start_of_current.saturating_sub(half)..];
            let mut sorted = covered.to_vec();
            sorted.sort_unstable();
            let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            let exact = sorted[rank.clamp(1, sorted.len()) - 1];
            // Recomputed on the last sample only when it fell on a refresh.
            let refresh = (size / 16).max(1);
            if (n - 1).is_multiple_of(refresh) {
                prop_assert_eq!(w.current(), Some(Duration::from_nanos(upper_bound(bucket_of(exact)))));
            }
            prop_assert!(covered.len() >= half.min(n) && covered.len() <= 2 * half);
        }
    }
}
