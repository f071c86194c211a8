//! Load protection on its admit paths (zero allocations), side by side with
//! `tower::limit::ConcurrencyLimit`, `tower::limit::RateLimit` (a rate it
//! never reaches) and tower-resilience 0.13's bulkhead and adaptive
//! limiter: our bulkhead admitted and rejected (beside tower's
//! `LoadShed` over a full `ConcurrencyLimit`, tower's way to refuse), the
//! adaptive limit admitted, the keyed breaker on an existing key.
//! (tower-resilience's bulkhead refuses a full call only after a timer
//! fires, so it has no rejection row that completes without an executor.)

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use battlement_benches::{allocs_per_call, call_now, ir_loop, main_with_instructions, report};
use battlement_limit::{AdaptiveLimit, Bulkhead, KeyedBreaker, Vegas};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use tower::Layer;
use tower::limit::ConcurrencyLimitLayer;
use tower::service_fn;
use tower_resilience::adaptive::{AdaptiveLimiterLayer, Aimd as TrAimd};
use tower_resilience::bulkhead::BulkheadLayer as TrBulkheadLayer;

fn bare()
-> impl tower::Service<u64, Response = u64, Error = Infallible, Future: Send> + Clone + Send {
    service_fn(|x: u64| async move { Ok::<_, Infallible>(x) })
}

ir_loop!(ir_bare);
ir_loop!(ir_bulkhead);
ir_loop!(ir_adaptive);
ir_loop!(ir_keyed);

fn instructions(n: u64) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    ir_bare(&mut bare(), n);
    let bulkhead = Bulkhead::builder("ir").max_concurrent(64).build().unwrap();
    ir_bulkhead(&mut bulkhead.layer().layer(bare()), n);
    let limiter = AdaptiveLimit::builder("ir").build().unwrap();
    ir_adaptive(&mut limiter.layer().layer(bare()), n);
    let keyed = KeyedBreaker::<u32>::builder("ir").build().unwrap();
    ir_keyed(&mut keyed.layer(|_: &u64| 7u32).layer(bare()), n);
}

fn bench(c: &mut Criterion) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();

    let mut plain = bare();
    let mut tower_limit = ConcurrencyLimitLayer::new(64).layer(bare());
    let bulkhead = Bulkhead::builder("bench")
        .max_concurrent(64)
        .build()
        .unwrap();
    let mut ours = bulkhead.layer().layer(bare());
    let waiting = Bulkhead::builder("bench_wait")
        .max_concurrent(64)
        .wait(Duration::from_millis(10), 64)
        .build()
        .unwrap();
    let mut ours_wait = waiting.layer().layer(bare());
    // Full: one call holds the only slot.
    let full = Bulkhead::builder("full").max_concurrent(1).build().unwrap();
    let mut holder = full.layer().layer(bare());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(tower::Service::poll_ready(&mut holder, &mut cx).is_ready());
    let held = tower::Service::call(&mut holder, 0);
    let mut rejected = full.layer().layer(bare());
    let limiter = AdaptiveLimit::builder("bench")
        .algorithm(Vegas::new())
        .initial_limit(64)
        .build()
        .unwrap();
    let mut adaptive = limiter.layer().layer(bare());
    let keyed = KeyedBreaker::<u32>::builder("bench").build().unwrap();
    let mut keyed_svc = keyed.layer(|req: &u64| (*req % 4) as u32).layer(bare());
    for k in 0..4 {
        call_now(&mut keyed_svc, k).unwrap();
    }
    let mut tr_bulkhead = TrBulkheadLayer::builder()
        .max_concurrent_calls(64)
        .reject_when_full()
        .build()
        .unwrap()
        .layer(bare());
    let mut tr_adaptive = AdaptiveLimiterLayer::new(
        TrAimd::builder()
            .initial_limit(64)
            .min_limit(1)
            .max_limit(1000)
            .latency_threshold(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .layer(bare());

    let mut tower_rate =
        tower::limit::RateLimitLayer::new(u64::MAX / 2, Duration::from_secs(3600)).layer(bare());
    let tower_full = ConcurrencyLimitLayer::new(1).layer(bare());
    let mut tower_holder = tower_full.clone();
    assert!(tower::Service::poll_ready(&mut tower_holder, &mut cx).is_ready());
    let mut tower_rejected = tower::load_shed::LoadShedLayer::new().layer(tower_full);

    let mut group = c.benchmark_group("limit");
    row(&mut group, "bare_service_fn", &mut plain);
    row(&mut group, "tower_concurrency_limit", &mut tower_limit);
    let admitted = [
        row(&mut group, "bulkhead_admitted", &mut ours),
        row(&mut group, "bulkhead_admitted_wait_on", &mut ours_wait),
        row(&mut group, "adaptive_admitted", &mut adaptive),
        row(&mut group, "keyed_breaker_existing_key", &mut keyed_svc),
    ];
    row(&mut group, "tower_rate_limit", &mut tower_rate);
    row(&mut group, "bulkhead_rejected", &mut rejected);
    row(
        &mut group,
        "tower_load_shed_concurrency_limit_rejected",
        &mut tower_rejected,
    );
    row(&mut group, "tower_resilience_bulkhead", &mut tr_bulkhead);
    row(
        &mut group,
        "tower_resilience_adaptive_aimd",
        &mut tr_adaptive,
    );
    group.finish();
    assert_eq!(admitted, [0.0; 4], "an admit path allocates");
    drop(held);
    drop(tower_holder);
    assert_eq!(bulkhead.in_flight(), 0);
    assert_eq!(keyed.len(), 4);
}

/// One row: the criterion timing of a call, then its allocations per call
/// (reported, and returned).
fn row<S: tower::Service<u64>>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    svc: &mut S,
) -> f64 {
    group.bench_function(name, |b| b.iter(|| call_now(svc, black_box(1)).is_ok()));
    let allocs = allocs_per_call(10_000, || {
        black_box(call_now(svc, black_box(1)).is_ok());
    });
    report(&format!("limit/{name}"), allocs);
    allocs
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
}

fn main() {
    main_with_instructions(instructions, benches);
}
