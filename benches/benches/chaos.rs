//! The fault injector's cost per call over a bare `service_fn`: off (no
//! phases: the budget is ~0 and zero allocations), on in a healthy phase
//! (a clock read, the phase lookup and one counter: zero allocations), and
//! injecting an error (one allocation: the boxed `Injected`).

use std::hint::black_box;
use std::time::Duration;

use battlement_benches::{allocs_per_call, call_now, ir_loop, report};
use battlement_chaos::{Chaos, FailureKind, Phase};
use battlement_core::BoxError;
use criterion::{Criterion, criterion_group};
use tower::{Layer, Service, service_fn};

const HOUR: Duration = Duration::from_secs(3600);

fn ok(x: u64) -> std::future::Ready<Result<u64, BoxError>> {
    std::future::ready(Ok(x))
}

fn bare() -> impl Service<u64, Response = u64, Error = BoxError> + Clone {
    service_fn(ok)
}

fn off() -> impl Service<u64, Response = u64, Error = BoxError> + Clone {
    Chaos::off("bench").layer().layer(bare())
}

fn healthy() -> impl Service<u64, Response = u64, Error = BoxError> + Clone {
    let chaos = Chaos::builder("bench")
        .phase(Phase::healthy(HOUR))
        .build()
        .expect("valid config");
    chaos.layer().layer(bare())
}

fn failing() -> impl Service<u64, Response = u64, Error = BoxError> + Clone {
    let chaos = Chaos::builder("bench")
        .seed(1)
        .phase(Phase::new("outage", HOUR).error_ratio(1.0, FailureKind::Unavailable))
        .build()
        .expect("valid config");
    chaos.layer().layer(bare())
}

fn bench(c: &mut Criterion) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    let (mut plain, mut off, mut healthy, mut failing) = (bare(), off(), healthy(), failing());

    let mut group = c.benchmark_group("chaos");
    group.bench_function("bare_service_fn", |b| {
        b.iter(|| call_now(&mut plain, black_box(1)))
    });
    group.bench_function("off", |b| b.iter(|| call_now(&mut off, black_box(1))));
    group.bench_function("healthy_phase", |b| {
        b.iter(|| call_now(&mut healthy, black_box(1)))
    });
    group.bench_function("injected_error", |b| {
        b.iter(|| call_now(&mut failing, black_box(1)))
    });
    group.finish();

    report(
        "chaos/off",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut off, black_box(1)).unwrap());
        }),
    );
    report(
        "chaos/healthy_phase",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut healthy, black_box(1)).unwrap());
        }),
    );
    report(
        "chaos/injected_error",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut failing, black_box(1)).unwrap_err());
        }),
    );
}

ir_loop!(ir_bare);
ir_loop!(ir_off);
ir_loop!(ir_healthy);
ir_loop!(ir_failing);

/// Instruction counts, repeatable on a busy machine: with
/// `BATTLEMENT_IR=<calls>` set, runs each variant that many times and
/// exits, for `valgrind --tool=callgrind` to count.
fn instructions(n: u64) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    ir_bare(&mut bare(), n);
    ir_off(&mut off(), n);
    ir_healthy(&mut healthy(), n);
    ir_failing(&mut failing(), n);
}

criterion_group!(benches, bench);

fn main() {
    battlement_benches::main_with_instructions(instructions, benches);
}
