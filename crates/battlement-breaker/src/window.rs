//! The sliding windows: the last N calls ([`CountWindow`]) or the last D of
//! time in B buckets ([`TimeWindow`]). Both are O(1) per call with memory
//! fixed at build time, and updated with atomics only.

use std::sync::PoisonError;
use std::sync::atomic::Ordering::*;

use crate::sync::{AtomicU8, AtomicU32, AtomicU64, Mutex};

/// A slot holds no call.
const EMPTY: u8 = 0;
/// The call succeeded.
pub(crate) const SUCCESS: u8 = 1;
/// The call failed.
pub(crate) const FAILURE: u8 = 2;
/// The call was slow (combined with `SUCCESS` or `FAILURE`).
pub(crate) const SLOW: u8 = 4;

/// What a window holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// Records one call, `code` being `SUCCESS` or `FAILURE`, maybe `| SLOW`.
    /// `true` when this call brought a count window to its minimum number
    /// of calls (once per fill from empty), so the rates must be checked
    /// whatever its outcome; always `false` for a time window, whose total
    /// is not kept (see `Shared::rate_check_pending`).
    ///
    /// `successes_before` is the breaker's count of successes recorded
    /// into the window before this call (what its `fetch_add` returned,
    /// for a success): with the window's own count of recorded failures
    /// it places the call in a count window's ring, so a success costs
    /// the one read-modify-write of that count and none for the ring.
    #[inline]
    pub(crate) fn record(&self, now_ns: u64, code: u8, successes_before: u64) -> bool {
        match self {
            Window::Count(w) => w.record(code, successes_before),
            Window::Time(w) => {
                w.record(now_ns, code);
                false
            }
        }
    }

    pub(crate) fn counts(&self, now_ns: u64) -> Counts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => w.counts(now_ns),
        }
    }

    pub(crate) fn clear(&self) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => w.clear(),
        }
    }
}

/// The last `N` calls: a ring of one-byte slots and running totals.
///
/// Each call swaps its code into the next slot and adjusts the totals by
/// the difference with the code it replaced, so the totals always equal
/// the sum of the slots once every in-flight update has landed.
///
/// The next slot is the call's place in the sequence of recorded calls,
/// modulo the size: the successes recorded before it (counted by the
/// breaker, which needs the total anyway) plus the failures recorded
/// before it (counted here). One at a time, calls take consecutive slots.
/// A success and a failure recorded at the same instant by two threads
/// may take the same slot; the swap keeps the totals equal to the slots,
/// and the window then holds one call fewer than the last `N` until the
/// ring comes round. The modulo is Lemire's multiply-and-shift on the low
/// 32 bits of the place (a division would cost more than the rest of
/// `record`); the place wraps every 2^32 calls, where one round of the
/// ring starts early.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    /// `u64::MAX / slots.len() + 1` (wrapping), for [`index`](Self::index).
    fastmod: u64,
    /// The breaker's `minimum_calls`: `record` says when `calls` reaches it.
    minimum: u32,
    /// Failures recorded so far (the window's records that are not
    /// successes), for the next slot.
    failed: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
}

impl CountWindow {
    pub(crate) fn new(size: usize, minimum: u32) -> Self {
        CountWindow {
            slots: (0..size).map(|_| AtomicU8::new(EMPTY)).collect(),
            fastmod: (u64::MAX / size as u64).wrapping_add(1),
            minimum,
            failed: AtomicU64::new(0),
            calls: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            slow: AtomicU32::new(0),
        }
    }

    /// Records `code`; `true` when this call filled an empty slot and so
    /// brought the window to `minimum` calls.
    #[inline]
    fn record(&self, code: u8, successes_before: u64) -> bool {
        let failed = if code & FAILURE != 0 {
            self.failed.fetch_add(1, Relaxed)
        } else {
            self.failed.load(Relaxed)
        };
        let slot = &self.slots[self.index(successes_before.wrapping_add(failed))];
        // Steady state: the slot already holds this outcome, nothing
        // changes, and a load is cheaper than a swap.
        if slot.load(Relaxed) == code {
            return false;
        }
        let old = slot.swap(code, Relaxed);
        if old == code {
            return false;
        }
        let reached = old == EMPTY && self.calls.fetch_add(1, Relaxed) + 1 == self.minimum;
        adjust(&self.failures, old & FAILURE != 0, code & FAILURE != 0);
        adjust(&self.slow, old & SLOW != 0, code & SLOW != 0);
        reached
    }

    /// `place % slots.len()` for the low 32 bits of `place` (Lemire,
    /// "Faster remainder by direct computation", 2019: exact for every
    /// 32-bit dividend and divisor).
    #[inline(always)]
    fn index(&self, place: u64) -> usize {
        let low = self.fastmod.wrapping_mul(u64::from(place as u32));
        ((u128::from(low) * self.slots.len() as u128) >> 64) as usize
    }

    fn counts(&self) -> Counts {
        Counts {
            calls: self.calls.load(Relaxed),
            failures: clamp(self.failures.load(Relaxed)),
            slow: clamp(self.slow.load(Relaxed)),
        }
    }

    fn clear(&self) {
        for slot in self.slots.iter() {
            slot.store(EMPTY, Relaxed);
        }
        self.calls.store(0, Relaxed);
        self.failures.store(0, Relaxed);
        self.slow.store(0, Relaxed);
    }
}

#[inline]
fn adjust(counter: &AtomicU32, was: bool, is: bool) {
    match (was, is) {
        (false, true) => {
            counter.fetch_add(1, Relaxed);
        }
        (true, false) => {
            counter.fetch_sub(1, Relaxed);
        }
        _ => {}
    }
}

/// A counter that two racing updates may briefly take below zero reads as
/// zero.
fn clamp(v: u32) -> u32 {
    if v > u32::MAX / 2 { 0 } else { v }
}

/// The last `buckets × width` of time, in `buckets` buckets.
///
/// A bucket is tagged with the epoch (`now / width`) it counts; a call that
/// finds its bucket tagged with an older epoch resets it first (under a
/// short lock taken only to rotate, once per bucket width). Reading sums
/// only the buckets whose epoch is within the window, so after an idle gap
/// longer than the window everything old is forgotten.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    width_ns: u64,
    rotate: Mutex<()>,
}

#[derive(Debug)]
struct Bucket {
    /// The epoch counted, plus one; zero for a bucket never used.
    tag: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
}

impl TimeWindow {
    pub(crate) fn new(buckets: usize, width_ns: u64) -> Self {
        TimeWindow {
            buckets: (0..buckets)
                .map(|_| Bucket {
                    tag: AtomicU64::new(0),
                    calls: AtomicU32::new(0),
                    failures: AtomicU32::new(0),
                    slow: AtomicU32::new(0),
                })
                .collect(),
            width_ns: width_ns.max(1),
            rotate: Mutex::new(()),
        }
    }

    #[inline]
    fn record(&self, now_ns: u64, code: u8) {
        let epoch = now_ns / self.width_ns;
        let len = self.buckets.len() as u64;
        let bucket = &self.buckets[(epoch % len) as usize];
        if bucket.tag.load(Acquire) != epoch + 1 {
            let _rotating = self.rotate.lock().unwrap_or_else(PoisonError::into_inner);
            let tag = bucket.tag.load(Acquire);
            if tag < epoch + 1 {
                bucket.calls.store(0, Relaxed);
                bucket.failures.store(0, Relaxed);
                bucket.slow.store(0, Relaxed);
                bucket.tag.store(epoch + 1, Release);
            } else if tag > epoch + 1 {
                // A later epoch already took this bucket: this call is
                // older than the window it would land in.
                return;
            }
        }
        bucket.calls.fetch_add(1, Relaxed);
        if code & FAILURE != 0 {
            bucket.failures.fetch_add(1, Relaxed);
        }
        if code & SLOW != 0 {
            bucket.slow.fetch_add(1, Relaxed);
        }
    }

    fn counts(&self, now_ns: u64) -> Counts {
        let epoch = now_ns / self.width_ns;
        let len = self.buckets.len() as u64;
        let mut c = Counts::default();
        for b in self.buckets.iter() {
            let tag = b.tag.load(Acquire);
            // Tags epoch+1-len+1 ..= epoch+1 are within the window.
            if tag != 0 && tag <= epoch + 1 && tag + len > epoch + 1 {
                // Saturating: a window of many busy buckets may hold more
                // than `u32::MAX` calls.
                c.calls = c.calls.saturating_add(b.calls.load(Relaxed));
                c.failures = c.failures.saturating_add(b.failures.load(Relaxed));
                c.slow = c.slow.saturating_add(b.slow.load(Relaxed));
            }
        }
        c
    }

    fn clear(&self) {
        let _rotating = self.rotate.lock().unwrap_or_else(PoisonError::into_inner);
        for b in self.buckets.iter() {
            b.tag.store(0, Relaxed);
            b.calls.store(0, Relaxed);
            b.failures.store(0, Relaxed);
            b.slow.store(0, Relaxed);
        }
    }
}

/// Model checks of the time window's rotation with `loom`: two threads
/// recording into one fresh bucket, every interleaving. Under
/// `--cfg battlement_loom` only (`.ci/extra.d/breaker.sh` runs them, as
/// `cargo test --lib window::loom`). The breaker's models in
/// `tests/loom.rs` go through its public API; this one drives the window
/// alone, so the model stays small.
#[cfg(all(test, battlement_loom))]
mod loom {
    use std::sync::Arc;

    use super::*;

    /// Two calls of the same epoch find their bucket stale (never used) and
    /// race to rotate it: the one that takes the lock second finds it
    /// already rotated to their epoch and records into it, so both count.
    /// (A rotation that re-reset the bucket, or a call that took it for an
    /// older one, would lose a call.)
    #[test]
    fn two_calls_rotating_one_bucket_both_count() {
        ::loom::model(|| {
            let w = Arc::new(TimeWindow::new(2, 10));
            let threads: Vec<_> = [SUCCESS, FAILURE]
                .into_iter()
                .map(|code| {
                    let w = w.clone();
                    ::loom::thread::spawn(move || w.record(15, code))
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(
                w.counts(15),
                Counts {
                    calls: 2,
                    failures: 1,
                    slow: 0
                }
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call whose clock reading is a whole window older than the call
    /// recorded before it (the breaker reads the clock at completion, so it
    /// takes a thread descheduled for that long) finds its bucket already
    /// taken by the later epoch: it is dropped, not counted as current.
    #[test]
    fn a_call_a_window_late_is_dropped_not_counted_as_current() {
        let w = TimeWindow::new(2, 10);
        w.record(35, FAILURE);
        w.record(15, SUCCESS);
        let current = Counts {
            calls: 1,
            failures: 1,
            slow: 0,
        };
        assert_eq!(w.counts(35), current);
        assert_eq!(w.counts(15), Counts::default(), "epoch 1's bucket is gone");
    }

    /// Records into `w` as the breaker does, counting its successes.
    fn rec(w: &CountWindow, successes: &mut u64, code: u8) -> bool {
        let before = *successes;
        if code & FAILURE == 0 {
            *successes += 1;
        }
        w.record(code, before)
    }

    #[test]
    fn the_index_is_the_remainder() {
        for size in [1usize, 2, 3, 7, 10, 100, 1_000, 65_537, 100_000] {
            let w = CountWindow::new(size, 1);
            for place in (0..3 * size as u64).chain([u64::from(u32::MAX) - 1, u64::from(u32::MAX)])
            {
                assert_eq!(
                    w.index(place),
                    (place % size as u64) as usize,
                    "{place} % {size}"
                );
            }
            // The place wraps at 2^32: only its low 32 bits count.
            assert_eq!(w.index(1 << 32), 0);
        }
    }

    #[test]
    fn count_window_wraps() {
        let w = CountWindow::new(3, 3);
        let s = &mut 0;
        rec(&w, s, FAILURE);
        rec(&w, s, FAILURE | SLOW);
        assert_eq!(
            w.counts(),
            Counts {
                calls: 2,
                failures: 2,
                slow: 1
            }
        );
        assert!(rec(&w, s, SUCCESS), "the third call reaches the minimum");
        assert!(!rec(&w, s, SUCCESS)); // replaces the first failure
        assert_eq!(
            w.counts(),
            Counts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        rec(&w, s, SUCCESS); // replaces the slow failure
        assert_eq!(
            w.counts(),
            Counts {
                calls: 3,
                failures: 0,
                slow: 0
            }
        );
        w.clear();
        assert_eq!(w.counts(), Counts::default());
    }

    #[test]
    fn time_window_rolls_buckets_and_forgets_after_idle() {
        // 4 buckets of 10 ns.
        let w = TimeWindow::new(4, 10);
        w.record(0, FAILURE);
        w.record(15, SUCCESS);
        w.record(39, FAILURE | SLOW);
        assert_eq!(
            w.counts(39),
            Counts {
                calls: 3,
                failures: 2,
                slow: 1
            }
        );
        // Epoch 4 reuses bucket 0: the first failure is gone.
        w.record(40, SUCCESS);
        assert_eq!(
            w.counts(40),
            Counts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        // Reading later forgets buckets that left the window, even unused.
        assert_eq!(
            w.counts(65),
            Counts {
                calls: 2,
                failures: 1,
                slow: 1
            }
        );
        // An idle gap far longer than the window forgets everything.
        assert_eq!(w.counts(10_000), Counts::default());
        w.record(10_000, SUCCESS);
        assert_eq!(
            w.counts(10_000),
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn code(c: u8) -> u8 {
            [SUCCESS, FAILURE, SUCCESS | SLOW, FAILURE | SLOW][usize::from(c % 4)]
        }

        fn naive(calls: &[u8]) -> Counts {
            Counts {
                calls: calls.len() as u32,
                failures: calls.iter().filter(|c| *c & FAILURE != 0).count() as u32,
                slow: calls.iter().filter(|c| *c & SLOW != 0).count() as u32,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            /// The count window holds exactly the last `size` calls.
            #[test]
            fn count_window_is_the_last_n(size in 1usize..8, codes in proptest::collection::vec(0u8..4, 0..40)) {
                let w = CountWindow::new(size, size as u32);
                let mut all = vec![];
                let s = &mut 0;
                for c in codes {
                    super::rec(&w, s, code(c));
                    all.push(code(c));
                    let start = all.len().saturating_sub(size);
                    prop_assert_eq!(w.counts(), naive(&all[start..]));
                }
            }

            /// The time window holds exactly the calls whose epoch is one
            /// of the last `buckets` epochs, whatever the gaps between them.
            #[test]
            fn time_window_is_the_last_buckets(
                buckets in 1usize..6,
                steps in proptest::collection::vec((0u64..40, 0u8..4), 0..40),
            ) {
                let width = 10;
                let w = TimeWindow::new(buckets, width);
                let mut now = 0u64;
                let mut all: Vec<(u64, u8)> = vec![];
                for (gap, c) in steps {
                    now += gap;
                    w.record(now, code(c));
                    all.push((now / width, code(c)));
                    let epoch = now / width;
                    let live: Vec<u8> = all
                        .iter()
                        .filter(|(e, _)| epoch - e < buckets as u64)
                        .map(|(_, c)| *c)
                        .collect();
                    prop_assert_eq!(w.counts(now), naive(&live));
                }
            }
        }
    }
}
