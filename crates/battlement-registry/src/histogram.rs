//! A fixed-size, lock-free, log-linear latency histogram.
//!
//! # Why hand-written
//!
//! The well-kept histogram crates do not fit a shared hot path:
//! `hdrhistogram` records through `&mut self` (so a shared one needs a lock
//! or a per-thread copy and a merge), and its buckets can resize. What the
//! instrument needs is the simplest thing that is lock-free and of fixed
//! size: an array of [`AtomicU64`] counters, one per bucket, bumped with a
//! relaxed `fetch_add`.
//!
//! # Buckets
//!
//! Values are nanoseconds. Values below 8 have a bucket each; above, every
//! power of two is split into 8 linear sub-buckets, so a bucket's width is
//! at most 1/8 of its lower bound (a relative error under 12.5%). The 496
//! buckets cover every `u64`, from 1 ns to 584 years: 3,968 bytes of
//! counters, allocated once and never grown.

use std::sync::atomic::{AtomicU64, Ordering};

/// Linear sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 3;
/// Linear sub-buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// The number of buckets: enough for every `u64`.
pub(crate) const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// The bucket of a value in nanoseconds.
#[inline]
pub(crate) const fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let sub = (v >> (msb - SUB_BITS)) & (SUB - 1);
    ((msb - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The smallest value of bucket `i`.
pub(crate) const fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let msb = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = i % SUB;
    (SUB + sub) << (msb - SUB_BITS)
}

/// The largest value of bucket `i`.
pub(crate) const fn upper_bound(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        u64::MAX
    } else {
        lower_bound(i + 1) - 1
    }
}

/// A fixed-size histogram of latencies, recorded with relaxed atomics.
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("buckets", &BUCKETS)
            .finish_non_exhaustive()
    }
}

impl Histogram {
    pub(crate) const fn new() -> Self {
        Histogram {
            counts: [const { AtomicU64::new(0) }; BUCKETS],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one latency in nanoseconds: two relaxed `fetch_add`s, no
    /// allocation.
    #[inline]
    pub(crate) fn record_ns(&self, ns: u64) {
        self.counts[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// How many values were recorded (a sum over the buckets).
    pub(crate) fn count(&self) -> u64 {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .fold(0, u64::saturating_add)
    }

    /// Clears every bucket.
    pub(crate) fn clear(&self) {
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
        self.sum_ns.store(0, Ordering::Relaxed);
    }

    /// A copy of the counters, read bucket by bucket (not an atomic
    /// snapshot of the whole: a recording that races the read shows up in
    /// this snapshot or the next).
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut counts = [0u64; BUCKETS];
        let mut total = 0u64;
        for (c, a) in counts.iter_mut().zip(&self.counts) {
            *c = a.load(Ordering::Relaxed);
            total = total.saturating_add(*c);
        }
        Snapshot {
            counts,
            total,
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }

    /// The memory the histogram occupies: fixed, whatever it records.
    pub(crate) const fn size_bytes() -> usize {
        std::mem::size_of::<Histogram>()
    }
}

/// A copy of a [`Histogram`]'s counters.
pub(crate) struct Snapshot {
    pub(crate) counts: [u64; BUCKETS],
    pub(crate) total: u64,
    pub(crate) sum_ns: u64,
}

impl Snapshot {
    /// The value at quantile `q` in `[0, 1]`, in nanoseconds: the upper
    /// bound of the bucket holding that rank (so never an underestimate by
    /// more than a bucket), or `None` when nothing was recorded.
    #[cfg(test)]
    pub(crate) fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        // The 1-based rank of the value at q.
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper_bound(i));
            }
        }
        Some(u64::MAX)
    }

    /// The values at several ascending quantiles, in one pass.
    pub(crate) fn quantiles<const N: usize>(&self, qs: [f64; N]) -> [Option<u64>; N] {
        let mut out = [None; N];
        if self.total == 0 {
            return out;
        }
        let ranks = qs
            .map(|q| ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).clamp(1, self.total));
        let mut next = 0;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            while next < N && seen >= ranks[next] {
                out[next] = Some(upper_bound(i));
                next += 1;
            }
            if next == N {
                break;
            }
        }
        out
    }

    /// The largest value recorded, as its bucket's upper bound.
    #[cfg(test)]
    pub(crate) fn max(&self) -> Option<u64> {
        self.counts.iter().rposition(|c| *c > 0).map(upper_bound)
    }

    /// The mean in nanoseconds.
    pub(crate) fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum_ns as f64 / self.total as f64)
    }

    /// Cumulative counts at each of `bounds_ns` (Prometheus `le` buckets):
    /// a fine bucket counts toward a bound when its upper bound is at or
    /// below it, so each figure may miss values within 12.5% under the
    /// bound.
    #[cfg(feature = "prometheus")]
    pub(crate) fn cumulative(&self, bounds_ns: &[u64]) -> Vec<u64> {
        let mut out = Vec::with_capacity(bounds_ns.len());
        let mut seen = 0u64;
        let mut i = 0;
        for bound in bounds_ns {
            while i < BUCKETS && upper_bound(i) <= *bound {
                seen += self.counts[i];
                i += 1;
            }
            out.push(seen);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        assert_eq!(BUCKETS, 496);
        assert_eq!(lower_bound(0), 0);
        for i in 1..BUCKETS {
            assert_eq!(lower_bound(i), upper_bound(i - 1) + 1, "bucket {i}");
            assert_eq!(bucket_of(lower_bound(i)), i);
            assert_eq!(bucket_of(upper_bound(i)), i);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn relative_error_is_bounded() {
        for v in [
            9u64,
            100,
            1_000,
            12_345,
            1_000_000,
            987_654_321,
            u64::MAX / 3,
        ] {
            let i = bucket_of(v);
            let width = upper_bound(i) - lower_bound(i) + 1;
            assert!(width as f64 <= lower_bound(i) as f64 / 8.0 + 1.0, "{v}");
        }
    }

    #[test]
    fn quantiles() {
        let h = Histogram::new();
        for ms in 1..=100u64 {
            h.record_ns(ms * 1_000_000);
        }
        let s = h.snapshot();
        assert_eq!(s.total, 100);
        let p50 = s.quantile(0.5).unwrap() as f64 / 1e6;
        let p99 = s.quantile(0.99).unwrap() as f64 / 1e6;
        assert!((50.0..=50.0 * 1.125).contains(&p50), "p50 {p50}");
        assert!((99.0..=99.0 * 1.125).contains(&p99), "p99 {p99}");
        assert!((s.mean().unwrap() / 1e6 - 50.5).abs() < 1e-9);
        assert!(s.max().unwrap() >= 100_000_000);
        let [a, b, c] = s.quantiles([0.5, 0.99, 1.0]);
        assert_eq!(a, s.quantile(0.5));
        assert_eq!(b, s.quantile(0.99));
        assert_eq!(c, s.max());
        h.clear();
        assert_eq!(h.snapshot().quantile(0.5), None);
    }
}
