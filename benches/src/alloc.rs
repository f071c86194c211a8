//! The benches' counting allocator: [`System`] with a count of the
//! allocations a thread makes while it runs [`allocs_per_call`].
//!
//! It costs a timed call nothing it would not pay in production: while no
//! thread measures, an allocation is one relaxed load of a process-wide
//! flag over `System`'s, and a free is `System`'s. `allocation-counter`,
//! which the benches used before, updated a thread-local `RefCell` of six
//! counters on every allocation and free, measured or not: about 9 ns an
//! allocation and its free on the EPYC VM of 7 December 2026 (boxing a
//! `CircuitOpen` and dropping it read 17.3–19.1 ns with it, 11.0–12.5
//! without; perf put 14.5 % of the open-rejection row's samples in its
//! `alloc` and `dealloc`), paid by every row that allocates, the peers'
//! included.
//! The integration tests that need bytes and peaks (`tests/churn.rs`) keep
//! `allocation-counter`.
//!
//! The one module of the workspace with `unsafe`: a global allocator is an
//! unsafe trait. The benches crate denies `unsafe_code` (the others forbid
//! it) so that this module alone can allow it; each method only forwards
//! to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// How many threads are inside [`allocs_per_call`] now.
static MEASURING: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's allocations since it began measuring; `None` while
    /// it is not. Constant-initialised and without a destructor, so the
    /// allocator can read it without allocating.
    static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// [`System`], counting allocations for threads that measure.
struct Counting;

#[inline(always)]
fn count() {
    if MEASURING.load(Relaxed) != 0 {
        // `try_with`: an exiting thread's locals may already be gone.
        let _ = COUNT.try_with(|c| {
            if let Some(n) = c.get() {
                c.set(Some(n + 1));
            }
        });
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the count touches no memory the allocator hands out.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as given (see the impl).
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as given (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded as given (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as given (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Ends a measurement when dropped, so a panicking `f` leaves the flag
/// as it found it.
struct Measuring;

impl Measuring {
    fn start() -> Self {
        MEASURING.fetch_add(1, Relaxed);
        COUNT.set(Some(0));
        Measuring
    }
}

impl Drop for Measuring {
    fn drop(&mut self) {
        COUNT.set(None);
        MEASURING.fetch_sub(1, Relaxed);
    }
}

/// Runs `f` `iters` times and returns the heap allocations it made per run
/// (reallocations included), counted by the global allocator.
///
/// Counts the calling thread's allocations only: work `f` hands to other
/// threads is not counted.
pub fn allocs_per_call(iters: u64, mut f: impl FnMut()) -> f64 {
    let iters = iters.max(1);
    let measuring = Measuring::start();
    for _ in 0..iters {
        f();
    }
    let total = COUNT.get().unwrap_or(0);
    drop(measuring);
    total as f64 / iters as f64
}

#[cfg(test)]
mod tests {
    use super::allocs_per_call;
    use std::hint::black_box;

    #[test]
    fn counts_this_threads_allocations_per_run() {
        assert_eq!(allocs_per_call(10, || {}), 0.0);
        assert_eq!(allocs_per_call(10, || drop(black_box(Box::new(1u64)))), 1.0);
        let grows = allocs_per_call(4, || {
            let mut v: Vec<u64> = black_box(Vec::with_capacity(1));
            v.extend([1, 2]);
            black_box(v);
        });
        assert_eq!(grows, 2.0, "the allocation and one reallocation");
    }

    #[test]
    fn other_threads_are_not_counted() {
        // The first spawn sets up what later ones reuse.
        std::thread::scope(|s| {
            s.spawn(|| black_box(0));
        });
        let n = allocs_per_call(3, || {
            std::thread::scope(|s| {
                s.spawn(|| drop(black_box(vec![0u8; 64])));
            });
        });
        // The spawn allocates on this thread (its closure, its packet);
        // the vector inside the thread is not counted.
        let spawn_only = allocs_per_call(3, || {
            std::thread::scope(|s| {
                s.spawn(|| black_box(0));
            });
        });
        assert_eq!(n, spawn_only);
    }
}
