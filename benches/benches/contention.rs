//! Contention: two threads sharing one gate, one instrument, one retry
//! budget and one bulkhead, side by side with the peers that share the
//! same kind of state (tower's `ConcurrencyLimit` and tower-resilience's
//! bulkhead; tower's `TpsBudget` and tower-resilience's token bucket).
//! Each row is the wall time per call with both threads busy, so calls
//! per second are 1e9 / ns. The breaker's rows are in `breaker.rs`
//! (`*_two_threads`).
//!
//! tower-resilience's calls are driven by `block_on`: their futures are
//! not always ready on the first poll when another thread holds a lock.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use battlement_benches::call_now;
use support::two_threads;

mod support;
use battlement_core::BoxError;
use battlement_gate::{Gate, GateLayer, Priority};
use battlement_limit::Bulkhead;
use battlement_registry::Registry;
use battlement_retry::{RetryBudget, RetryLayer, RetryPolicy};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::limit::ConcurrencyLimitLayer;
use tower::retry::budget::{Budget as _, TpsBudget};
use tower::{Layer, Service, ServiceExt, service_fn};

fn bare()
-> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>>
+ Clone
+ Send {
    service_fn(|x: u64| ready(Ok::<u64, Infallible>(x)))
}

fn bare_boxed()
-> impl Service<u64, Response = u64, Error = BoxError, Future = Ready<Result<u64, BoxError>>>
+ Clone
+ Send {
    service_fn(|x: u64| ready(Ok::<u64, BoxError>(x)))
}

/// A `tower::retry` policy over a shared `TpsBudget`, as tower's docs
/// write it: a success deposits, a failure withdraws before retrying.
#[derive(Clone)]
struct Budgeted(Arc<TpsBudget>);

impl<E> tower::retry::Policy<u64, u64, E> for Budgeted {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.0.deposit();
                None
            }
            Err(_) => self.0.withdraw().then(|| ready(())),
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn bench(c: &mut Criterion) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("contention");

    let plain = bare();
    group.bench_function("bare_service_fn_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, plain.clone(), |s, _| {
                call_now(s, black_box(1)).is_ok()
            })
        })
    });

    let gate = Gate::new("contended");
    let gated = GateLayer::new(gate)
        .priority_fn(|_: &u64| Some(Priority::Normal))
        .layer(bare());
    group.bench_function("gate_admitted_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, gated.clone(), |s, _| {
                call_now(s, black_box(1)).is_ok()
            })
        })
    });

    let registry = Registry::new();
    let instrumented = registry.layer("contended").expect("unique").layer(bare());
    group.bench_function("instrument_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, instrumented.clone(), |s, _| {
                call_now(s, black_box(1)).is_ok()
            })
        })
    });

    let budget = RetryBudget::builder()
        .name("contended")
        .build()
        .expect("valid budget");
    let retried = RetryLayer::new(
        RetryPolicy::builder()
            .budget(budget)
            .build()
            .expect("valid policy"),
    )
    .layer(bare_boxed());
    group.bench_function("retry_budget_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, retried.clone(), |s, _| {
                call_now(s, black_box(1)).is_ok()
            })
        })
    });
    let tps = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2));
    let tower_retried = tower::retry::RetryLayer::new(Budgeted(tps)).layer(bare_boxed());
    group.bench_function("tower_retry_tps_budget_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, tower_retried.clone(), |s, _| {
                call_now(s, black_box(1)).is_ok()
            })
        })
    });
    let bucket = tower_resilience::retry::RetryBudgetBuilder::new()
        .token_bucket()
        .tokens_per_second(10.0)
        .max_tokens(100)
        .build()
        .expect("token bucket");
    let tr_retried = tower_resilience::retry::RetryLayer::<u64, u64, BoxError>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_millis(100))
        .budget(bucket)
        .build()
        .layer(bare_boxed());
    group.bench_function("tower_resilience_retry_budget_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, tr_retried.clone(), |s, rt| {
                rt.block_on(ServiceExt::oneshot(&mut *s, black_box(1)))
                    .is_ok()
            })
        })
    });

    let bulkhead = Bulkhead::builder("contended")
        .max_concurrent(64)
        .build()
        .expect("valid bulkhead");
    let limited = bulkhead.layer().layer(bare());
    group.bench_function("bulkhead_admitted_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, limited.clone(), |s, _| {
                call_now(s, black_box(1)).is_ok()
            })
        })
    });
    let tower_limited = ConcurrencyLimitLayer::new(64).layer(bare());
    group.bench_function("tower_concurrency_limit_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, tower_limited.clone(), |s, _| {
                call_now(s, black_box(1)).is_ok()
            })
        })
    });
    let tr_bulkhead = tower_resilience::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(64)
        .reject_when_full()
        .build()
        .expect("valid bulkhead")
        .layer(bare());
    group.bench_function("tower_resilience_bulkhead_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, tr_bulkhead.clone(), |s, rt| {
                rt.block_on(ServiceExt::oneshot(&mut *s, black_box(1)))
                    .is_ok()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
