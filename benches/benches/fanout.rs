//! Coordination overhead of a 10-backend `All` fan-out over immediately
//! ready services, against `join_all` over the same services; and the
//! happy path of a hedge (primary answers at once, no backup), beside
//! tower-resilience's hedge (100 ms delay, one backup) over the same
//! backend (with a `Clone` error, which it needs).

use std::future::{Ready, ready};
use std::hint::black_box;

use battlement_benches::{allocs_per_call, call_now, poll_now, report, runtime};
use battlement_core::BoxError;
use battlement_fanout::{FanOut, HedgeLayer, Strategy};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::future::join_all;
use tower::{Layer, Service, service_fn};

const BACKENDS: u32 = 10;

/// The error tower-resilience's hedge needs (`Clone`).
#[derive(Debug, Clone)]
struct Down;

fn backend(
    i: u32,
) -> impl Service<u32, Response = u32, Error = BoxError, Future = Ready<Result<u32, BoxError>>> + Clone
{
    service_fn(move |r: u32| ready(Ok::<u32, BoxError>(r + i)))
}

/// The baseline: make every service ready, call each, join the futures.
fn join_all_call<S>(svcs: &mut [S], req: u32) -> Vec<Result<u32, BoxError>>
where
    S: Service<u32, Response = u32, Error = BoxError>,
{
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for s in svcs.iter_mut() {
        assert!(s.poll_ready(&mut cx).is_ready());
    }
    poll_now(join_all(svcs.iter_mut().map(|s| s.call(req))))
}

fn bench(c: &mut Criterion) {
    let mut builder = FanOut::builder("bench");
    let mut builder_first = FanOut::builder("bench-first").strategy(Strategy::FirstSuccess);
    let names = ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9"];
    for (i, name) in (0..BACKENDS).zip(names) {
        builder = builder.backend(name, backend(i));
        builder_first = builder_first.backend(name, backend(i));
    }
    let mut fan = builder.build().unwrap();
    let mut first = builder_first.build().unwrap();
    let mut svcs: Vec<_> = (0..BACKENDS).map(backend).collect();

    let mut group = c.benchmark_group("fanout_10");
    group.bench_function("join_all", |b| {
        b.iter(|| join_all_call(&mut svcs, black_box(1)))
    });
    // For comparison: the same calls joined by a `FuturesUnordered` (what
    // the fan-out used before it boxed each call in its slot).
    group.bench_function("futures_unordered", |b| {
        b.iter(|| {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            for s in svcs.iter_mut() {
                assert!(s.poll_ready(&mut cx).is_ready());
            }
            let mut set: futures_util::stream::FuturesUnordered<_> =
                svcs.iter_mut().map(|s| s.call(black_box(1))).collect();
            let mut n = 0;
            while let std::task::Poll::Ready(Some(r)) =
                futures_util::StreamExt::poll_next_unpin(&mut set, &mut cx)
            {
                n += r.unwrap();
            }
            n
        })
    });
    group.bench_function("fanout_all", |b| {
        b.iter(|| call_now(&mut fan, black_box(1)).unwrap())
    });
    group.bench_function("fanout_first_success", |b| {
        b.iter(|| call_now(&mut first, black_box(1)).unwrap())
    });
    group.finish();

    let rt = runtime();
    let _guard = rt.enter();
    let hedge = HedgeLayer::builder("bench").build().unwrap();
    let mut hedged = hedge.layer(backend(0));
    let mut bare = backend(0);
    let mut peer = tower_resilience::hedge::HedgeLayer::builder()
        .delay(std::time::Duration::from_millis(100))
        .max_hedged_attempts(2)
        .build()
        .layer(service_fn(|r: u32| ready(Ok::<u32, Down>(r))));
    let mut group = c.benchmark_group("hedge");
    group.bench_function("bare", |b| {
        b.iter(|| call_now(&mut bare, black_box(1)).unwrap())
    });
    group.bench_function("hedge_no_backup", |b| {
        b.iter(|| call_now(&mut hedged, black_box(1)).unwrap())
    });
    group.bench_function("tower_resilience_hedge_no_backup", |b| {
        b.iter(|| call_now(&mut peer, black_box(1)).unwrap())
    });
    group.finish();

    report(
        "hedge/tower_resilience_hedge_no_backup",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut peer, 1).unwrap());
        }),
    );
    report(
        "fanout_10/fanout_first_success",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut first, 1).unwrap());
        }),
    );
    report(
        "fanout_10/join_all",
        allocs_per_call(10_000, || {
            black_box(join_all_call(&mut svcs, 1));
        }),
    );
    report(
        "fanout_10/fanout_all",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut fan, 1).unwrap());
        }),
    );
    report(
        "hedge/hedge_no_backup",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut hedged, 1).unwrap());
        }),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
