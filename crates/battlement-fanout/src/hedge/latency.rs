//! The latency window a percentile hedge delay is read from: a fixed ring
//! of atomics, written without a lock; the percentile is recomputed every
//! few samples into a scratch buffer allocated once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct LatencyWindow {
    ring: Box<[AtomicU64]>,
    recorded: AtomicU64,
    percentile: f64,
    min_samples: u64,
    refresh: u64,
    current_ns: AtomicU64,
    scratch: Mutex<Vec<u64>>,
}

impl LatencyWindow {
    /// A window of the last `size` latencies; `percentile` in (0, 100].
    pub(crate) fn new(size: usize, percentile: f64, min_samples: usize) -> Self {
        LatencyWindow {
            ring: (0..size).map(|_| AtomicU64::new(0)).collect(),
            recorded: AtomicU64::new(0),
            percentile,
            min_samples: min_samples as u64,
            refresh: (size as u64 / 16).max(1),
            current_ns: AtomicU64::new(0),
            scratch: Mutex::new(Vec::with_capacity(size)),
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
        let len = self.ring.len() as u64;
        self.ring[(i % len) as usize].store(ns, Relaxed);
        let n = i + 1;
        if n >= self.min_samples && (n - self.min_samples).is_multiple_of(self.refresh) {
            self.recompute(n.min(len) as usize);
        }
    }

    fn recompute(&self, filled: usize) {
        // Another thread recomputing is as good as this one doing it.
        let Ok(mut scratch) = self.scratch.try_lock() else {
            return;
        };
        scratch.clear();
        scratch.extend(self.ring[..filled].iter().map(|a| a.load(Relaxed)));
        let value = percentile_of(&mut scratch, self.percentile);
        self.current_ns.store(value, Relaxed);
    }

    /// The current percentile, or `None` before `min_samples` latencies.
    pub(crate) fn current(&self) -> Option<Duration> {
        if self.recorded() < self.min_samples.max(1) {
            return None;
        }
        Some(Duration::from_nanos(self.current_ns.load(Relaxed)))
    }

    #[cfg(test)]
    pub(crate) fn force_recompute(&self) {
        let filled = self.recorded().min(self.ring.len() as u64) as usize;
        self.recompute(filled);
    }
}

/// The nearest-rank `percentile` (0, 100] of `values` (reorders them).
pub(crate) fn percentile_of(values: &mut [u64], percentile: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let rank = ((percentile / 100.0) * values.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, values.len()) - 1;
    *values.select_nth_unstable(idx).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentile_follows_the_newest_window() {
        let w = LatencyWindow::new(20, 90.0, 5);
        assert_eq!(w.current(), None);
        for ms in 1..=20 {
            w.record(Duration::from_millis(ms));
        }
        assert_eq!(w.current(), Some(Duration::from_millis(18)));
        for _ in 0..20 {
            w.record(Duration::from_millis(500));
        }
        assert_eq!(w.current(), Some(Duration::from_millis(500)));
        w.force_recompute();
        assert_eq!(w.current(), Some(Duration::from_millis(500)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn nearest_rank_matches_sorting(mut v in proptest::collection::vec(0u64..1000, 1..200), p in 1.0f64..=100.0) {
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            let expected = sorted[rank.clamp(1, sorted.len()) - 1];
            prop_assert_eq!(percentile_of(&mut v, p), expected);
            // at least p% of the values are <= it
            let below = sorted.iter().filter(|&&x| x <= expected).count() as f64;
            prop_assert!(below / sorted.len() as f64 >= p / 100.0 - 1e-9);
        }
    }
}
