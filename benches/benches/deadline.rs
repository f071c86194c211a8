//! `DeadlineLayer` and `AttemptTimeoutLayer` on the happy path, side by
//! side with `tower::timeout` over a bare `service_fn`; and the deadline
//! header parsers.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use battlement_benches::{allocs_per_call, call_now, report, runtime};
use battlement_deadline::http::{parse_grpc_timeout, parse_millis};
use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::timeout::TimeoutLayer;
use tower::{Layer, service_fn};

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let budget = Duration::from_secs(30);
    let bare = || service_fn(|n: u64| async move { Ok::<_, Infallible>(n + 1) });

    let mut plain = bare();
    let mut timeout = TimeoutLayer::new(budget).layer(bare());
    let mut deadline = DeadlineLayer::new(budget).layer(bare());
    let mut attempt = AttemptTimeoutLayer::new(budget).layer(bare());
    let mut named = DeadlineLayer::new(budget).name("bench").layer(bare());

    let mut group = c.benchmark_group("deadline");
    group.bench_function("bare_service_fn", |b| {
        b.iter(|| call_now(&mut plain, black_box(1)))
    });
    group.bench_function("tower_timeout", |b| {
        b.iter(|| call_now(&mut timeout, black_box(1)))
    });
    group.bench_function("deadline_layer", |b| {
        b.iter(|| call_now(&mut deadline, black_box(1)))
    });
    group.bench_function("attempt_timeout_layer", |b| {
        b.iter(|| call_now(&mut attempt, black_box(1)))
    });
    group.bench_function("deadline_layer_named", |b| {
        b.iter(|| call_now(&mut named, black_box(1)))
    });
    group.finish();

    let mut group = c.benchmark_group("deadline_header_parse");
    group.bench_function("grpc_timeout_250m", |b| {
        b.iter(|| parse_grpc_timeout(black_box(b"250m")))
    });
    group.bench_function("grpc_timeout_8_digits", |b| {
        b.iter(|| parse_grpc_timeout(black_box(b"99999999u")))
    });
    group.bench_function("millis_1500", |b| {
        b.iter(|| parse_millis(black_box(b"1500")))
    });
    group.finish();

    report(
        "deadline/tower_timeout",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut timeout, black_box(1)).ok());
        }),
    );
    report(
        "deadline/deadline_layer",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut deadline, black_box(1)).ok());
        }),
    );
    report(
        "deadline/attempt_timeout_layer",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut attempt, black_box(1)).ok());
        }),
    );
    report(
        "deadline/header_parse",
        allocs_per_call(10_000, || {
            black_box(parse_grpc_timeout(black_box(b"250m")).ok());
        }),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
