//! The degradation gate on the admitted path (the budget: ≤ 10 ns over a
//! bare `service_fn`, zero allocations), the shed path, and the adaptive
//! throttle when it lets everything through; side by side with
//! `tower::load_shed`, admitting (its inner service ready) and shedding
//! (its inner `ConcurrencyLimit` full).

use std::convert::Infallible;
use std::hint::black_box;

use battlement_benches::{allocs_per_call, call_now, report};
use battlement_gate::{AdaptiveThrottle, Gate, GateLayer, Level, Priority, ThrottleLayer};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::{Layer, service_fn};

fn priority(req: &u32) -> Option<Priority> {
    (*req == 0).then_some(Priority::Sheddable)
}

fn bench(c: &mut Criterion) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    let bare = || service_fn(|x: u32| async move { Ok::<_, Infallible>(x) });

    let gate = Gate::new("bench");
    let mut gated = GateLayer::new(gate.clone())
        .priority_fn(|req: &u32| priority(req))
        .layer(bare());
    let shedding = Gate::new("shedding");
    shedding.set_level(Level::Critical);
    let mut shed = GateLayer::new(shedding)
        .priority_fn(|req: &u32| priority(req))
        .layer(bare());
    // Outcome recording on, as with a governor on the gate's own signals
    // (error rate, p99 latency): a clock read and a few atomic adds.
    let observed = Gate::new("observed");
    let _p99 = observed.latency_percentile_signal(99.0);
    let mut observing = GateLayer::new(observed)
        .priority_fn(|req: &u32| priority(req))
        .layer(bare());
    let throttle = AdaptiveThrottle::new("bench");
    let mut throttled = ThrottleLayer::new(throttle).layer(bare());
    let mut plain = bare();
    let mut load_shed = LoadShedLayer::new().layer(bare());
    // A `ConcurrencyLimit` of one whose only permit a clone holds (taken
    // by its `poll_ready`, never consumed): `LoadShed` over it refuses
    // every call with `Overloaded`.
    let limit = ConcurrencyLimitLayer::new(1).layer(bare());
    let mut holder = limit.clone();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(tower::Service::poll_ready(&mut holder, &mut cx).is_ready());
    let mut load_shed_full = LoadShedLayer::new().layer(limit);

    let mut group = c.benchmark_group("gate");
    group.bench_function("bare_service_fn", |b| {
        b.iter(|| call_now(&mut plain, black_box(1)))
    });
    group.bench_function("admitted", |b| {
        b.iter(|| call_now(&mut gated, black_box(1)))
    });
    group.bench_function("admitted_observed", |b| {
        b.iter(|| call_now(&mut observing, black_box(1)))
    });
    group.bench_function("shed", |b| b.iter(|| call_now(&mut shed, black_box(1))));
    group.bench_function("throttle_pass", |b| {
        b.iter(|| call_now(&mut throttled, black_box(1)))
    });
    group.bench_function("tower_load_shed_admitted", |b| {
        b.iter(|| call_now(&mut load_shed, black_box(1)))
    });
    group.bench_function("tower_load_shed_rejected", |b| {
        b.iter(|| call_now(&mut load_shed_full, black_box(1)))
    });
    group.finish();

    report(
        "gate/admitted",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut gated, black_box(1)).unwrap());
        }),
    );
    report(
        "gate/admitted_observed",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut observing, black_box(1)).unwrap());
        }),
    );
    report(
        "gate/shed",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut shed, black_box(1)).unwrap_err());
        }),
    );
    report(
        "gate/throttle_pass",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut throttled, black_box(1)).unwrap());
        }),
    );
    report(
        "gate/tower_load_shed_admitted",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut load_shed, black_box(1)).unwrap());
        }),
    );
    report(
        "gate/tower_load_shed_rejected",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut load_shed_full, black_box(1)).unwrap_err());
        }),
    );
    drop(holder);
    assert_eq!(gate.level(), Level::Normal);
}

criterion_group!(benches, bench);
criterion_main!(benches);
