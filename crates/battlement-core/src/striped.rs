//! [`Striped`]: a counter (or a small group of them) split into one copy
//! per thread, each on its own cache lines, for figures every call writes
//! and only a report reads.
//!
//! One atomic counter written by every call is one cache line every core
//! serving the calls takes in turn: on two cores a relaxed `fetch_add` on
//! such a line costs tens of nanoseconds (the line's trip between the
//! cores), where an uncontended one costs a few. Striped, each thread
//! adds to its own copy; a reader sums the copies. What it gives up: a
//! sum read while calls run is a sum of reads made one after another, as
//! reading several plain counters already is, and the memory of
//! [`STRIPES`] copies of 128 bytes each.
//!
//! A thread leases a stripe of its own at its first use and gives it back
//! when it exits, so up to `STRIPES - 1` threads alive at once (a
//! runtime's workers) each have one and are its only writer: they add with
//! a plain load and store ([`Striped::add`]), no read-modify-write, no
//! `lock` prefix. Threads beyond those share stripe 0 and add to it with a
//! `fetch_add`. What a thread wrote stays in its stripe when it exits; the
//! next thread to lease the stripe adds to it.

use std::cell::Cell;
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// How many copies a [`Striped`] keeps.
pub const STRIPES: usize = 16;

/// A value alone on its cache lines (128 bytes: x86 fetches lines in
/// adjacent pairs): each copy of a [`Striped`], or a value read by every
/// call that must not share a line with counters every call writes.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use battlement_core::Line;
///
/// let generation = Line(AtomicU64::new(0));
/// assert_eq!(generation.load(Relaxed), 0);
/// assert_eq!(std::mem::align_of_val(&generation), 128);
/// ```
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct Line<T>(pub T);

impl<T> Deref for Line<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// `T` once per stripe: [`local`](Striped::local) is this thread's copy,
/// [`iter`](Striped::iter) every copy, for a reader to sum.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use battlement_core::Striped;
///
/// let calls: Striped<AtomicU64> = Striped::default();
/// calls.local().fetch_add(1, Relaxed);
/// std::thread::scope(|s| {
///     s.spawn(|| calls.local().fetch_add(1, Relaxed));
/// });
/// assert_eq!(calls.sum(|c| c.load(Relaxed)), 2);
/// ```
pub struct Striped<T> {
    stripes: [Line<T>; STRIPES],
}

impl<T> Striped<T> {
    /// Every copy made by `make`.
    pub fn new(mut make: impl FnMut() -> T) -> Self {
        Striped {
            stripes: std::array::from_fn(|_| Line(make())),
        }
    }

    /// This thread's copy. Write to it with read-modify-writes (other
    /// threads may share it) unless [`local_owned`](Self::local_owned)
    /// says the thread owns it.
    #[inline]
    pub fn local(&self) -> &T {
        self.local_owned().0
    }

    /// This thread's copy, and `true` when no other thread writes to it
    /// while this one lives: then a plain load and store adds to it.
    #[inline]
    pub fn local_owned(&self) -> (&T, bool) {
        let lease = lease();
        // The stripe is below `STRIPES` already; the `%` (a mask: it is a
        // power of two) tells the compiler so, and no bounds check is left.
        (&self.stripes[(lease >> 1) % STRIPES].0, lease & 1 == 1)
    }

    /// Every copy, in stripe order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.stripes.iter().map(|p| &p.0)
    }

    /// The sum of `read` over every copy, saturating: what a report of a
    /// striped counter reads.
    pub fn sum(&self, mut read: impl FnMut(&T) -> u64) -> u64 {
        self.iter().fold(0u64, |n, c| n.saturating_add(read(c)))
    }

    /// The sum of `read` over every copy, wrapping as an add to a copy
    /// does: for a counter reset by remembering this total rather than
    /// zeroing its copies (a thread that owns a copy writes over a zero).
    /// The difference of two such totals is exact while what was added
    /// between them is below 2^64.
    pub fn wrapping_sum(&self, mut read: impl FnMut(&T) -> u64) -> u64 {
        self.iter().fold(0u64, |n, c| n.wrapping_add(read(c)))
    }
}

impl Striped<AtomicU64> {
    /// Adds `n` to this thread's copy and returns what the copy held
    /// (wrapping at `u64::MAX`, as `fetch_add` does).
    #[inline]
    pub fn add(&self, n: u64) -> u64 {
        let (copy, owned) = self.local_owned();
        add(copy, n, owned)
    }
}

impl<const N: usize> Striped<[AtomicU64; N]> {
    /// Adds `n` to counter `i` of this thread's copy.
    ///
    /// # Panics
    ///
    /// If `i` is not below `N`.
    #[inline]
    pub fn add_at(&self, i: usize, n: u64) {
        let (copy, owned) = self.local_owned();
        add(&copy[i], n, owned);
    }
}

/// Adds `n` to `counter` and returns what it held: a relaxed load and
/// store when `owned` (this thread is the counter's only writer), a
/// relaxed `fetch_add` otherwise.
#[inline(always)]
fn add(counter: &AtomicU64, n: u64, owned: bool) -> u64 {
    if owned {
        let held = counter.load(Ordering::Relaxed);
        counter.store(held.wrapping_add(n), Ordering::Relaxed);
        held
    } else {
        counter.fetch_add(n, Ordering::Relaxed)
    }
}

impl<T: Default> Default for Striped<T> {
    fn default() -> Self {
        Striped::new(T::default)
    }
}

impl<T: fmt::Debug> fmt::Debug for Striped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Which stripes a living thread holds (stripe 0, the shared one, is
/// never leased).
static LEASED: [AtomicBool; STRIPES] = [const { AtomicBool::new(false) }; STRIPES];

/// Where the next thread starts looking for a free stripe, so threads
/// started together do not all try the same one first.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// No lease taken yet on this thread.
const UNSET: usize = usize::MAX;

/// Stripe 0, shared, written with read-modify-writes.
const SHARED: usize = 0;

thread_local! {
    /// This thread's stripe times two, plus one when the thread leases it;
    /// [`UNSET`] until its first use. No destructor, so it can be read
    /// while the thread's other thread-locals are torn down.
    static STRIPE: Cell<usize> = const { Cell::new(UNSET) };
    /// Gives the leased stripe back when the thread exits.
    static LEASE: Lease = const { Lease };
}

/// The owner of this thread's leased stripe, if it has one.
struct Lease;

impl Drop for Lease {
    fn drop(&mut self) {
        let held = STRIPE.with(|s| s.replace(SHARED));
        if held != UNSET && held & 1 == 1 {
            // `Release`: the owner's last stores come before the next
            // owner's `Acquire` of the stripe.
            LEASED[held >> 1].store(false, Ordering::Release);
        }
    }
}

/// This thread's stripe, encoded as in [`STRIPE`]: leased on first use.
#[inline(always)]
fn lease() -> usize {
    let held = STRIPE.with(Cell::get);
    if held != UNSET {
        return held;
    }
    take_lease()
}

/// Leases a free stripe for this thread, or settles for the shared one.
#[cold]
#[inline(never)]
fn take_lease() -> usize {
    // The destructor must be able to run before a stripe is owned: a
    // thread already tearing down its thread-locals shares stripe 0.
    if LEASE.try_with(|_| ()).is_err() {
        STRIPE.with(|s| s.set(SHARED));
        return SHARED;
    }
    let start = NEXT.fetch_add(1, Ordering::Relaxed);
    let free = (0..STRIPES - 1)
        .map(|k| 1 + (start + k) % (STRIPES - 1))
        .find(|&i| {
            LEASED[i]
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        });
    let held = free.map_or(SHARED, |i| (i << 1) | 1);
    STRIPE.with(|s| s.set(held));
    held
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::{Barrier, Mutex, MutexGuard, PoisonError};

    use super::*;

    /// One lease test at a time: each takes most of the stripes.
    fn alone() -> MutexGuard<'static, ()> {
        static SERIAL: Mutex<()> = Mutex::new(());
        SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This thread's stripe and whether it owns it.
    fn held() -> (usize, bool) {
        let lease = lease();
        (lease >> 1, lease & 1 == 1)
    }

    #[test]
    fn threads_alive_at_once_own_distinct_stripes_and_the_rest_share_stripe_0() {
        let _alone = alone();
        let n = 2 * STRIPES;
        let all_in = Barrier::new(n);
        let seen: Vec<(usize, bool)> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..n)
                .map(|_| {
                    scope.spawn(|| {
                        let here = held();
                        assert_eq!(held(), here, "a thread keeps its stripe");
                        // Every thread holds its lease until all have one.
                        all_in.wait();
                        here
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut owned: Vec<usize> = seen.iter().filter(|s| s.1).map(|s| s.0).collect();
        owned.sort_unstable();
        let leased = owned.len();
        owned.dedup();
        assert_eq!(owned.len(), leased, "a stripe leased twice: {seen:?}");
        assert!(owned.iter().all(|&i| (1..STRIPES).contains(&i)), "{seen:?}");
        assert!(leased < STRIPES);
        // Other tests' threads may hold some; most are free.
        assert!(leased >= STRIPES / 2, "{seen:?}");
        assert!(
            seen.iter().filter(|s| !s.1).all(|s| s.0 == SHARED),
            "{seen:?}"
        );
    }

    #[test]
    fn a_stripe_given_back_is_leased_again_and_keeps_what_was_added() {
        let _alone = alone();
        let s: Striped<AtomicU64> = Striped::default();
        let rounds = 3 * STRIPES;
        let mut owned = 0;
        for _ in 0..rounds {
            owned += std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        for _ in 0..100 {
                            s.add(1);
                        }
                        held().1
                    })
                    .join()
                    .unwrap()
            }) as usize;
        }
        assert_eq!(s.sum(|c| c.load(Relaxed)), 100 * rounds as u64);
        // Were leases never given back, no thread after the first
        // STRIPES - 1 would own one.
        assert!(
            owned > rounds / 2,
            "{owned} of {rounds} threads owned a stripe"
        );
    }

    #[test]
    fn owners_and_sharers_adding_at_once_lose_nothing() {
        let _alone = alone();
        let s: Striped<AtomicU64> = Striped::default();
        let a: Striped<[AtomicU64; 3]> = Striped::default();
        let n = 3 * STRIPES;
        let calls = 20_000;
        let all_in = Barrier::new(n);
        std::thread::scope(|scope| {
            for _ in 0..n {
                scope.spawn(|| {
                    // Leased (or not) before any adds, all at once: the
                    // sharers of stripe 0 race each other.
                    held();
                    all_in.wait();
                    for k in 0..calls {
                        let before = s.add(2);
                        assert_eq!(before % 2, 0);
                        a.add_at(k % 3, 1);
                    }
                });
            }
        });
        assert_eq!(s.sum(|c| c.load(Relaxed)), 2 * calls as u64 * n as u64);
        let total = a.sum(|c| c.iter().map(|x| x.load(Relaxed)).sum());
        assert_eq!(total, calls as u64 * n as u64);
    }

    #[test]
    fn copies_are_on_their_own_lines_and_sum_to_every_add() {
        let s: Striped<AtomicU64> = Striped::default();
        let at = |i: usize| std::ptr::from_ref(&s.stripes[i]) as usize;
        assert_eq!(at(1) - at(0), 128);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        s.local().fetch_add(1, Relaxed);
                    }
                });
            }
        });
        assert_eq!(s.sum(|c| c.load(Relaxed)), 4000);
    }
}
