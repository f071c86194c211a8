//! The fallback layer on the success path (the budget: ≤ 10 ns over a bare
//! `service_fn`, zero allocations, value source), with a cache, and on the
//! failure path; side by side with `tower-resilience`'s fallback.
//!
//! Instruction counts, repeatable on a busy machine:
//! `BATTLEMENT_IR=100000 valgrind --tool=callgrind <bench binary>`, then
//! `callgrind_annotate --inclusive=yes callgrind.out.* | grep ::ir_` and
//! divide each loop's count by 100 000.

use std::hint::black_box;
use std::sync::LazyLock;

use battlement_benches::{allocs_per_call, call_now, ir_loop, report};
use battlement_core::BoxError;
use battlement_fallback::{CacheConfig, FallbackLayer};
use criterion::{Criterion, criterion_group};
use tower::{Layer, service_fn};
use tower_resilience::fallback::FallbackLayer as TrFallbackLayer;

/// The error the peer's layer needs (`Clone`-free, `Send + Sync`).
#[derive(Debug, Clone)]
struct Down;

fn bench(c: &mut Criterion) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    let bare = || service_fn(|x: u64| std::future::ready(Ok::<u64, BoxError>(x)));
    let failing = || service_fn(|_: u64| std::future::ready(Err::<u64, BoxError>("down".into())));
    let bare_peer = || service_fn(|x: u64| std::future::ready(Ok::<u64, Down>(x)));
    let failing_peer = || service_fn(|_: u64| std::future::ready(Err::<u64, Down>(Down)));

    let value = FallbackLayer::builder("bench").value(0u64).build().unwrap();
    let cached = FallbackLayer::builder("bench-cache")
        .key(|x: &u64| Some(*x & 63))
        .cache(CacheConfig::new())
        .value(0u64)
        .build()
        .unwrap();
    let mut plain = bare();
    let mut ours = value.layer(bare());
    let mut ours_static = FallbackLayer::from_static(&STATIC_LAYER).layer(bare());
    let mut ours_cache = cached.layer(bare());
    let mut ours_fail = value.layer(failing());
    let mut peer = TrFallbackLayer::<u64, u64, Down>::value(0).layer(bare_peer());
    let mut peer_fail = TrFallbackLayer::<u64, u64, Down>::value(0).layer(failing_peer());

    let mut group = c.benchmark_group("fallback");
    group.bench_function("bare_service_fn", |b| {
        b.iter(|| call_now(&mut plain, black_box(1)))
    });
    group.bench_function("success/value", |b| {
        b.iter(|| call_now(&mut ours, black_box(1)))
    });
    group.bench_function("success/value_static_layer", |b| {
        b.iter(|| call_now(&mut ours_static, black_box(1)))
    });
    group.bench_function("success/tower_resilience_value", |b| {
        b.iter(|| call_now(&mut peer, black_box(1)))
    });
    group.bench_function("success/cache_store", |b| {
        b.iter(|| call_now(&mut ours_cache, black_box(1)))
    });
    group.bench_function("failure/value", |b| {
        b.iter(|| call_now(&mut ours_fail, black_box(1)))
    });
    group.bench_function("failure/tower_resilience_value", |b| {
        b.iter(|| call_now(&mut peer_fail, black_box(1)))
    });
    let arc = std::sync::Arc::new(1u64);
    group.bench_function("arc_clone_drop", |b| {
        b.iter(|| drop(black_box(arc.clone())))
    });
    group.finish();

    report(
        "fallback/success/value",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut ours, black_box(1)).unwrap());
        }),
    );
    report(
        "fallback/success/value_static_layer",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut ours_static, black_box(1)).unwrap());
        }),
    );
    report(
        "fallback/success/tower_resilience_value",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut peer, black_box(1)).unwrap());
        }),
    );
    report(
        "fallback/success/cache_store",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut ours_cache, black_box(1)).unwrap());
        }),
    );
    report(
        "fallback/failure/value",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut ours_fail, black_box(1)).unwrap());
        }),
    );
    report(
        "fallback/failure/tower_resilience_value",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut peer_fail, black_box(1)).unwrap());
        }),
    );
}

ir_loop!(ir_bare);
ir_loop!(ir_value);
ir_loop!(ir_value_static);
ir_loop!(ir_tower_resilience);

/// Instruction counts, repeatable on a busy machine: with
/// `BATTLEMENT_IR=<calls>` set, runs each success-path variant that many
/// times and exits, for `valgrind --tool=callgrind` to count (each
/// variant's loop is its own function; divide its inclusive count by the
/// calls).
fn instructions(n: u64) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    let bare = || service_fn(|x: u64| std::future::ready(Ok::<u64, BoxError>(x)));
    ir_bare(&mut bare(), n);
    ir_value(
        &mut FallbackLayer::builder("bench")
            .value(0u64)
            .build()
            .unwrap()
            .layer(bare()),
        n,
    );
    ir_value_static(
        &mut FallbackLayer::from_static(&STATIC_LAYER).layer(bare()),
        n,
    );
    ir_tower_resilience(
        &mut TrFallbackLayer::<u64, u64, Down>::value(0)
            .layer(service_fn(|x: u64| std::future::ready(Ok::<u64, Down>(x)))),
        n,
    );
}

/// A value-source layer kept in a `static` (`FallbackLayer::from_static`).
static STATIC_LAYER: LazyLock<FallbackLayer<u64, u64>> = LazyLock::new(|| {
    FallbackLayer::builder("bench-static")
        .value(0u64)
        .build()
        .unwrap()
});

criterion_group!(benches, bench);

fn main() {
    battlement_benches::main_with_instructions(instructions, benches);
}
