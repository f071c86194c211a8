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

use battlement_core::Striped;
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

/// Words of the bitmap of non-empty buckets.
const WORDS: usize = BUCKETS.div_ceil(64);

/// A fixed-size histogram of latencies, recorded with relaxed atomics.
///
/// Beside the counters, a bitmap marks the buckets that ever held a value
/// since the last [`take`](Histogram::take), so reading the histogram
/// visits the few buckets a service's latencies fall in, not all 496 (4 KB of counts
/// a histogram, 4 MB for a thousand instruments). Marking costs a plain
/// load per recording once the bucket is marked.
///
/// The sum is striped (one copy per thread on its own cache lines,
/// `battlement_core::Striped`, 2 KB): every recording adds to it, and on
/// one shared line the cores recording into one histogram would pass that
/// line between them on every call. The buckets are spread already (a
/// call lands in the bucket of its latency).
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum_ns: Striped<AtomicU64>,
    /// What the stripes of the sum added up to at the last
    /// [`take`](Histogram::take): the sum is theirs less this. A stripe is
    /// not zeroed, since its thread adds to it with a load and a store
    /// that would write a racing zero over.
    sum_taken: AtomicU64,
    nonempty: [AtomicU64; WORDS],
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("buckets", &BUCKETS)
            .finish_non_exhaustive()
    }
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            counts: [const { AtomicU64::new(0) }; BUCKETS],
            sum_ns: Striped::new(|| AtomicU64::new(0)),
            sum_taken: AtomicU64::new(0),
            nonempty: [const { AtomicU64::new(0) }; WORDS],
        }
    }

    /// Records one latency in nanoseconds: one `fetch_add` on the bucket
    /// and an add to this thread's stripe of the sum (a plain load and
    /// store when the thread leases it), and a `fetch_or` the first time
    /// a bucket is used; no allocation.
    ///
    /// The bucket's count is bumped last, with `Release` (the same
    /// instruction as a relaxed one on x86-64): once [`completed`]
    /// (Self::completed) sees it, every write of this recording, and of
    /// the caller before it, is visible, and none follows.
    #[inline]
    pub(crate) fn record_ns(&self, ns: u64) {
        let i = bucket_of(ns);
        self.sum_ns.add(ns);
        let word = &self.nonempty[i / 64];
        let bit = 1u64 << (i % 64);
        if word.load(Ordering::Relaxed) & bit == 0 {
            word.fetch_or(bit, Ordering::Relaxed);
        }
        self.counts[i].fetch_add(1, Ordering::Release);
    }

    /// How many values were recorded, summed over all 496 buckets with
    /// `Acquire` loads (not the bitmap walk): for the pool's check that a
    /// slot's calls have all ended, off the hot path.
    pub(crate) fn completed(&self) -> u64 {
        self.counts
            .iter()
            .fold(0u64, |n, c| n.saturating_add(c.load(Ordering::Acquire)))
    }

    /// Empties every bucket and returns how many values it removed: a
    /// recording racing it is either removed and counted here, or kept.
    pub(crate) fn take(&self) -> u64 {
        let mut removed = 0u64;
        for w in &self.nonempty {
            w.store(0, Ordering::Relaxed);
        }
        for c in &self.counts {
            removed = removed.saturating_add(c.swap(0, Ordering::AcqRel));
        }
        self.sum_taken.store(self.stripes_sum(), Ordering::Relaxed);
        removed
    }

    /// Calls `f(bucket, count)` for each marked bucket in ascending order,
    /// until it returns `false`. Counts are read one by one: a recording
    /// racing the walk shows up in this walk or the next.
    #[inline]
    fn walk(&self, mut f: impl FnMut(usize, u64) -> bool) {
        for (w, word) in self.nonempty.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // `Acquire`, pairing with the recording's `Release`: a
                // call counted here is seen with its outcome counted.
                if !f(i, self.counts[i].load(Ordering::Acquire)) {
                    return;
                }
            }
        }
    }

    /// How many values were recorded (a sum over the buckets).
    pub(crate) fn count(&self) -> u64 {
        let mut total = 0u64;
        self.walk(|_, c| {
            total = total.saturating_add(c);
            true
        });
        total
    }

    /// The count, the sum and the values at ascending quantiles `qs` (each
    /// in `[0, 1]`), in nanoseconds: the upper bound of the bucket holding
    /// that rank (so never an underestimate, and an overestimate by under
    /// 12.5%), or `None` when nothing was recorded. No allocation; two
    /// walks over the marked buckets.
    pub(crate) fn summary<const N: usize>(&self, qs: [f64; N]) -> Summary<N> {
        let total = self.count();
        let sum_ns = self.sum_ns();
        let mut quantiles = [None; N];
        if total > 0 {
            let ranks =
                qs.map(|q| ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total));
            let mut next = 0;
            let mut seen = 0u64;
            let mut last = None;
            self.walk(|i, c| {
                if c > 0 {
                    last = Some(i);
                }
                seen = seen.saturating_add(c);
                while next < N && seen >= ranks[next] {
                    quantiles[next] = Some(upper_bound(i));
                    next += 1;
                }
                next < N
            });
            // A clear racing the second walk: the rest at the last bucket
            // seen.
            for q in &mut quantiles[next..] {
                *q = last.map(upper_bound);
            }
        }
        Summary {
            total,
            sum_ns,
            quantiles,
        }
    }

    /// The count, the sum, and the cumulative counts at each of `bounds_ns`
    /// (Prometheus `le` buckets, ascending): a fine bucket counts toward a
    /// bound when its upper bound is at or below it, so each figure may
    /// miss values within 12.5% under the bound.
    #[cfg(feature = "prometheus")]
    pub(crate) fn cumulative(&self, bounds_ns: &[u64]) -> (u64, u64, Vec<u64>) {
        let mut out = vec![0u64; bounds_ns.len()];
        let mut total = 0u64;
        self.walk(|i, c| {
            total = total.saturating_add(c);
            let first = bounds_ns.partition_point(|b| *b < upper_bound(i));
            for o in &mut out[first..] {
                *o = o.saturating_add(c);
            }
            true
        });
        (total, self.sum_ns(), out)
    }

    /// The latencies' sum since the last [`take`](Histogram::take).
    fn sum_ns(&self) -> u64 {
        self.stripes_sum()
            .wrapping_sub(self.sum_taken.load(Ordering::Relaxed))
    }

    /// The stripes of the sum added up, read one by one (exact as a
    /// difference while the latencies between add up to under 584 years).
    fn stripes_sum(&self) -> u64 {
        self.sum_ns.wrapping_sum(|s| s.load(Ordering::Relaxed))
    }

    /// The memory the histogram occupies: fixed, whatever it records.
    pub(crate) const fn size_bytes() -> usize {
        std::mem::size_of::<Histogram>()
    }
}

/// What [`Histogram::summary`] reads.
pub(crate) struct Summary<const N: usize> {
    pub(crate) total: u64,
    pub(crate) sum_ns: u64,
    pub(crate) quantiles: [Option<u64>; N],
}

impl<const N: usize> Summary<N> {
    /// The mean in nanoseconds.
    pub(crate) fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum_ns as f64 / self.total as f64)
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
        for ms in (1..=100u64).rev() {
            h.record_ns(ms * 1_000_000);
        }
        let s = h.summary([0.0, 0.5, 0.99, 1.0]);
        assert_eq!(s.total, 100);
        assert_eq!(h.count(), 100);
        let [min, p50, p99, max] = s.quantiles.map(|q| q.unwrap() as f64 / 1e6);
        assert!((1.0..=1.125).contains(&min), "min {min}");
        assert!((50.0..=50.0 * 1.125).contains(&p50), "p50 {p50}");
        assert!((99.0..=99.0 * 1.125).contains(&p99), "p99 {p99}");
        assert!((100.0..=100.0 * 1.125).contains(&max), "max {max}");
        assert!((s.mean().unwrap() / 1e6 - 50.5).abs() < 1e-9);
        assert_eq!(h.take(), 100);
        let s = h.summary([0.5]);
        assert_eq!((s.total, s.quantiles, s.mean()), (0, [None], None));
        assert_eq!(h.count(), 0);
        // The sum starts again from the take, on this thread's stripe and
        // on another thread's.
        h.record_ns(3_000);
        std::thread::scope(|scope| {
            scope.spawn(|| h.record_ns(5_000));
        });
        assert_eq!(h.summary([0.5]).mean(), Some(4_000.0));
    }

    /// The walk over marked buckets gives the same answers as a scan of all
    /// 496 counters, for values spread over every word of the bitmap.
    #[test]
    fn the_bitmap_walk_matches_a_full_scan() {
        let h = Histogram::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            h.record_ns(x >> (x % 64));
        }
        let full: Vec<(usize, u64)> = h
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .enumerate()
            .filter(|(_, c)| *c > 0)
            .collect();
        let mut walked = Vec::new();
        h.walk(|i, c| {
            walked.push((i, c));
            true
        });
        assert_eq!(walked, full);
        assert!(full.len() > 100, "spread over {} buckets", full.len());
        let total: u64 = full.iter().map(|(_, c)| c).sum();
        let s = h.summary([0.25, 0.5, 0.75, 1.0]);
        assert_eq!(s.total, total);
        for (q, got) in [0.25, 0.5, 0.75, 1.0].iter().zip(s.quantiles) {
            let rank = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            let want = full
                .iter()
                .find(|(_, c)| {
                    seen += c;
                    seen >= rank
                })
                .map(|(i, _)| upper_bound(*i));
            assert_eq!(got, want, "q {q}");
        }
    }

    #[cfg(feature = "prometheus")]
    #[test]
    fn cumulative_counts_at_bounds() {
        let h = Histogram::new();
        for ns in [5, 100, 1_000, 1_000, 50_000, u64::MAX] {
            h.record_ns(ns);
        }
        let (total, _, c) = h.cumulative(&[10, 1_000, 1_000_000]);
        assert_eq!(total, 6);
        // 1000 ns sits in a bucket whose upper bound is above 1000.
        assert_eq!(c, [1, 2, 5]);
    }
}
