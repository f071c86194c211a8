//! Helpers of the benches added for the performance record (issue 20),
//! kept beside them (`mod support;`) rather than in the library: rows that
//! time a call and report its allocations in one go, two threads sharing
//! one service, and the quick-mode switches of the plain-`main` benches.
//!
//! Quick mode for the criterion benches is criterion's own flags
//! (`--warm-up-time`, `--measurement-time`, `--sample-size`; see
//! `benches/run.sh --quick`); the benches with a plain `main` (scenarios,
//! http) read [`quick`].

#![allow(dead_code, unused_macros)]

use std::time::Duration;

use battlement_benches::{Service, allocs_per_call, call_now, report, runtime};
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;

/// Times one call of `svc` with `req` as the row `name` of `group`, then
/// counts and [`report`]s its allocations per call as `{group_name}/{name}`
/// (criterion does not expose a group's name). Returns the allocations.
pub(crate) fn row<S, Req>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    group_name: &str,
    name: &str,
    svc: &mut S,
    req: Req,
) -> f64
where
    S: Service<Req>,
    Req: Clone,
{
    group.bench_function(name, |b| {
        b.iter(|| call_now(svc, std::hint::black_box(req.clone())).is_ok())
    });
    let allocs = allocs_per_call(10_000, || {
        std::hint::black_box(call_now(svc, std::hint::black_box(req.clone())).is_ok());
    });
    report(&format!("{group_name}/{name}"), allocs);
    allocs
}

/// Runs `iters` calls split over two threads, each with a clone of
/// `shared` and its own current-thread runtime entered (as a server's
/// worker threads have); returns the wall time, so criterion reports the
/// time per call with both threads busy (calls per second: 1e9 / ns).
pub(crate) fn two_threads<T: Clone + Send>(
    iters: u64,
    shared: T,
    call: impl Fn(&mut T, &tokio::runtime::Runtime) -> bool + Sync,
) -> Duration {
    let call = &call;
    let start = tokio::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let mut mine = shared.clone();
            s.spawn(move || {
                let rt = runtime();
                let _context = rt.enter();
                for _ in 0..iters / 2 {
                    std::hint::black_box(call(&mut mine, &rt));
                }
            });
        }
    });
    start.elapsed()
}

/// Whether `BATTLEMENT_BENCH_QUICK` is set (to anything but `0`): the
/// plain-`main` benches then run a shorter version of themselves.
pub(crate) fn quick() -> bool {
    std::env::var("BATTLEMENT_BENCH_QUICK").is_ok_and(|v| v != "0")
}

/// Whether the binary was started by `cargo bench` (which passes
/// `--bench`) rather than `cargo test --benches` (which does not): the
/// plain-`main` benches only smoke-run under the latter.
pub(crate) fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The `Policy::http` of the HTTP benches (`http`, over loopback, and
/// `http_stack`, in process), of the `axum_server` example's shape:
/// instrument, fallback, gate by the priority header, total deadline,
/// breaker, attempt timeout; no retry (a server does not retry its own
/// handler, and an axum `Body` cannot be sent twice without a replay
/// buffer); the deadline in scope only (`Carry::IfCarried`: the handler
/// runs inside it, so the request gets no extension entry), as the example
/// sets it for its routes. A macro: the built policy's type names every
/// part. The benches' `/leaked` and `leaked_*` rows `leak` it, as the
/// example does; `http_policy!(registry, Carry::Always)` is the same with
/// the deadline written into each request (the policy's default).
macro_rules! http_policy {
    ($registry:expr) => {
        http_policy!($registry, battlement::deadline::Carry::IfCarried)
    };
    ($registry:expr, $carry:expr) => {
        battlement::Policy::http("bench")
            .without_retry()
            .carry_deadline($carry)
            .gate(|g| g)
            .priority(battlement::gate::HeaderPriority::new())
            .fallback(|f| {
                f.value_fn(|_| {
                    Ok(axum::http::Response::new(axum::body::Body::from(
                        "fallback",
                    )))
                })
            })
            .registry($registry)
            .build()
    };
}
