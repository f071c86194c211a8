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
//! Threads take stripes in turn as they first use one (the first
//! [`STRIPES`] threads each have their own; later ones share), so the
//! worker threads of a runtime, started together, land on distinct
//! stripes.

use std::cell::Cell;
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};

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

    /// This thread's copy.
    #[inline]
    pub fn local(&self) -> &T {
        // `stripe()` is below `STRIPES` already; the `%` (a mask: it is a
        // power of two) tells the compiler so, and no bounds check is left.
        &self.stripes[stripe() % STRIPES].0
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

/// The next stripe to hand a thread.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe, `usize::MAX` until its first use.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe: taken in turn on the thread's first use.
#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let i = s.get();
        if i != usize::MAX {
            return i;
        }
        let i = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(i);
        i
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use super::*;

    #[test]
    fn a_thread_keeps_its_stripe_and_threads_take_them_in_turn() {
        let here = stripe();
        assert_eq!(stripe(), here);
        let theirs: Vec<usize> = (0..STRIPES)
            .map(|_| std::thread::spawn(stripe).join().unwrap())
            .collect();
        // Other tests' threads take stripes too, so the turn is not ours
        // alone; but STRIPES threads in a row never all land on one.
        let mut distinct = theirs.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 1, "{theirs:?}");
        assert!(theirs.iter().all(|&i| i < STRIPES));
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
