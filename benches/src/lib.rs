//! Helpers shared by battlement's criterion benches.
//!
//! - A counting global allocator (the `alloc` module) installed for
//!   every bench binary that links this library, and [`allocs_per_call`]
//!   to read it. It counts per thread, and only while a thread measures:
//!   a timed call's allocation costs one relaxed load over `System`'s.
//!   `stats_alloc`'s four `SeqCst` read-modify-writes per allocation and
//!   free made a boxed error cost twice what it does without a counter,
//!   `allocation-counter`'s thread-local `RefCell` update on every
//!   allocation and free about 9 ns, and a bench is there to time the
//!   layer, not the counter.
//! - [`call_now`], which drives a service whose calls complete without
//!   waiting, by polling with a no-op waker: the bench then measures the
//!   layer, not an executor. Both are `#[inline(always)]`: moving a large
//!   response future into a non-inlined driver costs a store-forwarding
//!   stall that belongs to the driver, not to the layer under test.
//! - [`runtime`], a current-thread tokio runtime with time enabled, to
//!   `enter()` before building layers that read tokio's clock or sleep.
//!
//! Every bench reports its figures with [`report`] in one format:
//! `alloc <name>: <n> allocations/call`.

mod alloc;

pub use alloc::allocs_per_call;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// The service trait, for [`ir_loop!`]'s expansion in bench binaries.
pub use tower_service::Service;

/// Prints one allocation figure in the benches' common format.
#[allow(clippy::print_stdout)]
pub fn report(name: &str, allocs_per_call: f64) {
    println!("alloc {name}: {allocs_per_call:.3} allocations/call");
}

/// Polls `fut` once with a no-op waker and returns its output.
///
/// # Panics
///
/// If the future is not ready on the first poll: the benches only drive
/// services whose calls complete at once.
#[inline(always)]
pub fn poll_now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("bench future was not ready on the first poll"),
    }
}

/// Drives one call of `svc` with `req` to completion without an executor:
/// `poll_ready`, `call`, and one poll of the response future.
///
/// # Panics
///
/// If the service is not ready or the call does not complete at once.
#[inline(always)]
pub fn call_now<S, Req>(svc: &mut S, req: Req) -> Result<S::Response, S::Error>
where
    S: Service<Req>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => panic!("bench service was not ready"),
    }
    // Pinned here, not handed to `poll_now`: moving a future wider than two
    // registers into another function is not optimised away even when both
    // are inlined (callgrind: 47 instructions against 23 for a gated call).
    match pin!(svc.call(req)).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("bench future was not ready on the first poll"),
    }
}

/// Defines `fn $name<S: Service<u64>>(svc: &mut S, n: u64)`, which makes
/// `n` calls of `svc` through [`call_now`]: a function of its own, never
/// inlined, so that `valgrind --tool=callgrind` attributes each variant's
/// instructions to it (`callgrind_annotate --inclusive=yes`; divide by
/// `n`). Instruction counts are repeatable on a busy machine, unlike times.
#[macro_export]
macro_rules! ir_loop {
    ($name:ident) => {
        #[inline(never)]
        fn $name<S: $crate::Service<u64>>(svc: &mut S, n: u64) {
            // Keeps the linker from folding identical loops into one.
            ::std::hint::black_box(stringify!($name));
            for i in 0..n {
                ::std::hint::black_box($crate::call_now(svc, ::std::hint::black_box(i)).is_ok());
            }
        }
    };
}

/// The `main` of a bench file with an instruction-count mode: with
/// Whether `BATTLEMENT_MIN_OF_BATCHES` (or the older
/// `BREAKER_MIN_OF_BATCHES`) is set: the benches then also print their
/// single-thread rows as [`min_of_batches`].
pub fn min_of_batches_wanted() -> bool {
    std::env::var_os("BATTLEMENT_MIN_OF_BATCHES").is_some()
        || std::env::var_os("BREAKER_MIN_OF_BATCHES").is_some()
}

/// Prints the minimum time per call of `f` over 300 batches of 20,000 as
/// `min <id>: <ns> ns/call`. Load from other processes only ever makes a
/// batch slower, so on a shared machine the minimum is the figure that
/// survives it.
#[allow(clippy::print_stdout)]
pub fn min_of_batches(id: &str, mut f: impl FnMut()) {
    const BATCH: u32 = 20_000;
    let mut best = f64::MAX;
    for _ in 0..300 {
        let start = tokio::time::Instant::now();
        for _ in 0..BATCH {
            f();
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH));
    }
    println!("min {id}: {best:.1} ns/call (min of 300 batches of {BATCH})");
}

/// `BATTLEMENT_IR=<calls>` set, runs `instructions(calls)` (loops made
/// with [`ir_loop!`]) for `valgrind --tool=callgrind` and exits; otherwise
/// runs the criterion `benches` group as `criterion_main!` would.
pub fn main_with_instructions(instructions: fn(u64), benches: fn()) {
    if let Some(n) = std::env::var("BATTLEMENT_IR")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        instructions(n);
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}

/// A current-thread tokio runtime with the timer enabled. `enter()` it
/// before building or calling layers that read tokio's clock or sleep.
///
/// # Panics
///
/// If the runtime cannot be built.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_allocations() {
        let n = allocs_per_call(10, || {
            std::hint::black_box(Box::new(1u64));
        });
        assert_eq!(n, 1.0, "one box a run");
        let zero = allocs_per_call(10, || {
            std::hint::black_box(1u64 + 1);
        });
        assert_eq!(zero, 0.0);
    }
}
