//! The refusal count is striped (a copy per thread, a plain load and
//! store for a thread that leases its copy, `fetch_add` on the copy the
//! threads beyond the leases share): refusals from more threads at once
//! than there are leased copies all count, and a breaker that never
//! refused reports none.

use battlement_breaker::Breaker;
use battlement_core::{BoxError, CircuitOpen};
use futures_util::FutureExt;
use tower::{Layer, Service, service_fn};

#[test]
fn refusals_from_many_threads_all_count() {
    const THREADS: u64 = 24;
    const CALLS: u64 = 5_000;
    let breaker = Breaker::builder("many").build().unwrap();
    assert_eq!(breaker.metrics().rejections, 0);
    breaker.force_open();
    let layer = breaker.layer();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let mut svc = layer.layer(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
            s.spawn(move || {
                for _ in 0..CALLS {
                    // A forced-open breaker refuses at once: the future is
                    // ready on its first poll.
                    let err = svc.call(()).now_or_never().unwrap().unwrap_err();
                    assert!(err.is::<CircuitOpen>());
                }
            });
        }
    });
    assert_eq!(breaker.metrics().rejections, THREADS * CALLS);
}
