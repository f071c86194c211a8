//! The fallback layer on the success path (the budget: ≤ 10 ns over a bare
//! `service_fn`, zero allocations, value source), with a cache, and on the
//! failure path; side by side with `tower-resilience`'s fallback.

use std::hint::black_box;

use battlement_benches::{allocs_per_call, call_now, report};
use battlement_core::BoxError;
use battlement_fallback::{CacheConfig, FallbackLayer};
use criterion::{Criterion, criterion_group, criterion_main};
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

criterion_group!(benches, bench);
criterion_main!(benches);
