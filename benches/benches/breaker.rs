//! The circuit breaker's overhead per call over a bare `service_fn`, closed
//! and open, side by side with `tower-resilience`'s circuit breaker
//! (`CircuitBreakerLayer::standard()`) and `failsafe`'s; then two threads
//! sharing one breaker (tower-resilience's contended calls are driven by
//! `block_on`, as its future is not always ready on the first poll there).

use std::hint::black_box;
use std::time::Duration;

use battlement_benches::{allocs_per_call, call_now, min_of_batches, poll_now, report, runtime};
use battlement_breaker::Breaker;
use battlement_core::{BoxError, CircuitOpen, CircuitState};
use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::futures::CircuitBreaker as _;
use support::two_threads;
use tower::{Layer, Service, service_fn};

mod support;

fn ok(x: u64) -> std::future::Ready<Result<u64, BoxError>> {
    std::future::ready(Ok(x))
}

fn ok_io(x: u64) -> std::future::Ready<Result<u64, std::io::Error>> {
    std::future::ready(Ok(x))
}

fn battlement_closed() -> impl Service<u64, Response = u64, Error = BoxError> + Clone {
    let breaker = Breaker::builder("bench").build().expect("valid config");
    breaker.layer().layer(service_fn(ok))
}

/// Tripped by a real failure (state `Open`, one hour to go), so each
/// rejection reads the clock for its retry-after.
fn battlement_open() -> impl Service<u64, Response = u64, Error = BoxError> + Clone {
    let breaker = Breaker::builder("bench")
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(3600))
        .build()
        .expect("valid config");
    let mut svc = breaker.layer().layer(service_fn(|x: u64| {
        std::future::ready(if x == 0 {
            Err::<u64, BoxError>("down".into())
        } else {
            Ok(x)
        })
    }));
    let _ = call_now(&mut svc, 0);
    assert!(breaker.state().is_open());
    svc
}

fn failsafe_breaker() -> impl failsafe::futures::CircuitBreaker + Clone + Send + Sync {
    failsafe::Config::new().build()
}

fn failsafe_open() -> impl failsafe::futures::CircuitBreaker + Clone + Send + Sync {
    let policy = failsafe::failure_policy::consecutive_failures(
        1,
        failsafe::backoff::constant(Duration::from_secs(3600)),
    );
    let cb = failsafe::Config::new().failure_policy(policy).build();
    let _ = poll_now(cb.call(std::future::ready(Err::<u64, ()>(()))));
    cb
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let _context = rt.enter();
    let mut group = c.benchmark_group("breaker");

    let mut bare = service_fn(ok);
    group.bench_function("bare_service_fn", |b| {
        b.iter(|| call_now(&mut bare, black_box(1)))
    });

    let mut closed = battlement_closed();
    group.bench_function("battlement_closed", |b| {
        b.iter(|| call_now(&mut closed, black_box(1)))
    });
    // A time window (30 s in 10 buckets, resilience4j's usual shape) reads
    // the clock once per call, at completion, to find its bucket.
    let mut time_window = Breaker::builder("bench")
        .time_window(Duration::from_secs(30), 10)
        .build()
        .expect("valid config")
        .layer()
        .layer(service_fn(ok));
    group.bench_function("battlement_closed_time_window", |b| {
        b.iter(|| call_now(&mut time_window, black_box(1)))
    });
    let mut open = battlement_open();
    group.bench_function("battlement_open_rejection", |b| {
        b.iter(|| call_now(&mut open, black_box(1)))
    });

    let forced_breaker = Breaker::builder("forced").build().expect("valid config");
    forced_breaker.force_open();
    let mut forced = forced_breaker.layer().layer(service_fn(ok));
    group.bench_function("battlement_forced_open_rejection", |b| {
        b.iter(|| call_now(&mut forced, black_box(1)))
    });
    // The floors under a rejection: one read of tokio's clock (a tripped
    // `Open` breaker pays it to know whether its open duration has passed)
    // and boxing a `CircuitOpen` into a `BoxError` and dropping it (every
    // rejection pays it: errors travel as `BoxError`).
    group.bench_function("clock_read", |b| b.iter(tokio::time::Instant::now));
    let name: battlement_core::Name = "bench".into();
    group.bench_function("box_circuit_open_floor", |b| {
        b.iter(|| {
            let e: BoxError = Box::new(CircuitOpen::new(
                name.clone(),
                CircuitState::Open,
                Some(Duration::from_secs(1)),
            ));
            black_box(e)
        })
    });

    let tr_layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::standard()
        .build()
        .expect("tower-resilience config");
    let mut tr = tr_layer.layer(service_fn(ok_io));
    group.bench_function("tower_resilience_closed", |b| {
        b.iter(|| call_now(&mut tr, black_box(1)))
    });
    let mut tr_open = tr_layer.layer(service_fn(ok_io));
    rt.block_on(tr_open.force_open());
    group.bench_function("tower_resilience_open_rejection", |b| {
        b.iter(|| call_now(&mut tr_open, black_box(1)))
    });

    let fs = failsafe_breaker();
    group.bench_function("failsafe_closed", |b| {
        b.iter(|| poll_now(fs.call(ok(black_box(1)))))
    });
    let fs_open = failsafe_open();
    group.bench_function("failsafe_open_rejection", |b| {
        b.iter(|| poll_now(fs_open.call(ok(black_box(1)))))
    });

    // Two threads sharing one breaker: time per call, per thread.
    let shared = battlement_closed();
    group.bench_function("battlement_closed_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, shared.clone(), |s, _| {
                call_now(s, black_box(1)).is_ok()
            })
        })
    });
    // An open breaker refuses on every worker at once: two threads
    // rejecting through one breaker.
    let shared_open = battlement_open();
    group.bench_function("battlement_open_rejection_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, shared_open.clone(), |s, _| {
                call_now(s, black_box(1)).is_err()
            })
        })
    });
    let fs_shared_open = failsafe_open();
    group.bench_function("failsafe_open_rejection_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, fs_shared_open.clone(), |cb, _| {
                poll_now(cb.call(ok(black_box(1)))).is_err()
            })
        })
    });
    let fs_shared = failsafe_breaker();
    group.bench_function("failsafe_closed_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, fs_shared.clone(), |cb, _| {
                poll_now(cb.call(ok(black_box(1)))).is_ok()
            })
        })
    });
    let tr_shared = tr_layer.layer(service_fn(ok_io));
    group.bench_function("tower_resilience_closed_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, tr_shared.clone(), |s, rt| {
                rt.block_on(tower::ServiceExt::oneshot(s, black_box(1)))
                    .is_ok()
            })
        })
    });
    group.finish();

    report(
        "breaker/battlement_closed",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut closed, 1).ok());
        }),
    );
    report(
        "breaker/battlement_open_rejection",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut open, 1).is_err());
        }),
    );
    report(
        "breaker/battlement_forced_open_rejection",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut forced, 1).is_err());
        }),
    );
    report(
        "breaker/tower_resilience_closed",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut tr, 1).ok());
        }),
    );
    report(
        "breaker/failsafe_closed",
        allocs_per_call(10_000, || {
            black_box(poll_now(fs.call(ok(1))).ok());
        }),
    );
    report(
        "breaker/tower_resilience_open_rejection",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut tr_open, 1).is_err());
        }),
    );
    report(
        "breaker/failsafe_open_rejection",
        allocs_per_call(10_000, || {
            black_box(poll_now(fs_open.call(ok(1))).is_err());
        }),
    );

    // With `BATTLEMENT_MIN_OF_BATCHES` set, also print each single-thread row
    // as the minimum over 300 batches of 20,000 calls: load from other
    // processes only ever makes a batch slower, so on a shared machine the
    // minimum is the figure that survives it (the crate docs' table).
    if battlement_benches::min_of_batches_wanted() {
        min_of_batches("breaker/bare_service_fn", || {
            black_box(call_now(&mut bare, black_box(1)).is_ok());
        });
        min_of_batches("breaker/battlement_closed", || {
            black_box(call_now(&mut closed, black_box(1)).is_ok());
        });
        min_of_batches("breaker/battlement_closed_time_window", || {
            black_box(call_now(&mut time_window, black_box(1)).is_ok());
        });
        min_of_batches("breaker/battlement_open_rejection", || {
            black_box(call_now(&mut open, black_box(1)).is_err());
        });
        min_of_batches("breaker/battlement_forced_open_rejection", || {
            black_box(call_now(&mut forced, black_box(1)).is_err());
        });
        min_of_batches("breaker/clock_read", || {
            black_box(tokio::time::Instant::now());
        });
        min_of_batches("breaker/box_circuit_open_floor", || {
            let e: BoxError = Box::new(CircuitOpen::new(
                name.clone(),
                CircuitState::Open,
                Some(Duration::from_secs(1)),
            ));
            black_box(e);
        });
        min_of_batches("breaker/tower_resilience_closed", || {
            black_box(call_now(&mut tr, black_box(1)).is_ok());
        });
        min_of_batches("breaker/tower_resilience_open_rejection", || {
            black_box(call_now(&mut tr_open, black_box(1)).is_err());
        });
        min_of_batches("breaker/failsafe_closed", || {
            black_box(poll_now(fs.call(ok(black_box(1)))).is_ok());
        });
        min_of_batches("breaker/failsafe_open_rejection", || {
            black_box(poll_now(fs_open.call(ok(black_box(1)))).is_err());
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
