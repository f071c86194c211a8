//! The degradation gate on the admitted path (the budget: ≤ 10 ns over a
//! bare `service_fn`, zero allocations), the shed path, and the adaptive
//! throttle when it lets everything through.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use battlement_benches::{allocs_per_call, call_now, report};
use battlement_gate::{AdaptiveThrottle, Gate, GateLayer, Level, Priority, ThrottleLayer};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Layer, Service, service_fn};

/// `call_now` with the response future built in place: `call_now` hands
/// the future by value to `poll_now`, and that move of a future wider than
/// two registers is not optimised away even with both `#[inline(always)]`
/// (callgrind: 47 instructions per admitted call through `call_now`, 23
/// here, 5 for the bare `service_fn` either way). Both figures are kept:
/// `admitted` is the budget's line, `admitted_inline` the gate's own work.
#[inline(always)]
fn call_inline<S: Service<u32>>(svc: &mut S, req: u32) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => panic!("not ready"),
    }
    let mut fut = pin!(svc.call(req));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("not ready at once"),
    }
}

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

    let mut group = c.benchmark_group("gate");
    group.bench_function("bare_service_fn", |b| {
        b.iter(|| call_now(&mut plain, black_box(1)))
    });
    group.bench_function("admitted", |b| {
        b.iter(|| call_now(&mut gated, black_box(1)))
    });
    group.bench_function("bare_service_fn_inline", |b| {
        b.iter(|| call_inline(&mut plain, black_box(1)))
    });
    group.bench_function("admitted_inline", |b| {
        b.iter(|| call_inline(&mut gated, black_box(1)))
    });
    group.bench_function("admitted_observed_inline", |b| {
        b.iter(|| call_inline(&mut observing, black_box(1)))
    });
    group.bench_function("shed", |b| b.iter(|| call_now(&mut shed, black_box(1))));
    group.bench_function("throttle_pass", |b| {
        b.iter(|| call_now(&mut throttled, black_box(1)))
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
    assert_eq!(gate.level(), Level::Normal);
}

criterion_group!(benches, bench);
criterion_main!(benches);
