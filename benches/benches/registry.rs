//! The registry: `InstrumentLayer` per call over a bare `service_fn` (the
//! budget: ≤ 40 ns, zero allocations), and `health()` and the Prometheus
//! text exposition over 1,000 components (the budget: ≤ 1 ms).

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use battlement_benches::{allocs_per_call, call_now, report};
use battlement_core::{Component, ComponentHealth, ComponentKind, HealthStatus, MetricType};
use battlement_registry::{LatencyClock, Registry};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Layer, service_fn};

/// A component like a breaker's: a state, a few figures.
struct Plain(String);

impl Component for Plain {
    fn name(&self) -> &str {
        &self.0
    }
    fn kind(&self) -> ComponentKind {
        ComponentKind::Breaker
    }
    fn health(&self) -> ComponentHealth {
        ComponentHealth::new(HealthStatus::Healthy)
            .detail("state", "closed")
            .detail("calls", 1200)
            .detail("failure_rate", 0.01)
            .metric("calls_total", "Calls.", MetricType::Counter, 1200.0)
    }
}

fn bench(c: &mut Criterion) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    let bare = || service_fn(|x: u32| async move { Ok::<_, Infallible>(x) });

    let registry = Registry::new();
    let layer = registry.layer("bench").unwrap();
    let mut instrumented = layer.layer(bare());
    let mut plain = bare();

    let mut group = c.benchmark_group("registry");
    group.bench_function("bare_service_fn", |b| {
        b.iter(|| call_now(&mut plain, black_box(1)))
    });
    // What one read of tokio's clock costs (the instrument reads a clock
    // twice per call).
    group.bench_function("tokio_instant_now", |b| b.iter(tokio::time::Instant::now));
    // The default clock off paused time: the time-stamp counter.
    group.bench_function("instrument", |b| {
        b.iter(|| call_now(&mut instrumented, black_box(1)))
    });
    // The same instrument timing with tokio's clock.
    let mut tokio_clock = registry
        .layer("tokio-clock")
        .unwrap()
        .latency_clock(LatencyClock::Tokio)
        .layer(bare());
    group.bench_function("instrument_tokio_clock", |b| {
        b.iter(|| call_now(&mut tokio_clock, black_box(1)))
    });

    // Timing one call in 16: the clock reads leave the hot path.
    let mut sampled = registry
        .layer("sampled")
        .unwrap()
        .sample_latency(16)
        .layer(bare());
    group.bench_function("instrument_sampled_1_in_16", |b| {
        b.iter(|| call_now(&mut sampled, black_box(1)))
    });

    let components = Registry::new();
    let held: Vec<Arc<Plain>> = (0..1000)
        .map(|i| Arc::new(Plain(format!("breaker-{i}"))))
        .collect();
    for c in &held {
        components.register(c).unwrap();
    }
    group.bench_function("health_1000_components", |b| {
        b.iter(|| black_box(components.health()))
    });

    let instruments = Registry::new();
    let layers: Vec<_> = (0..1000)
        .map(|i| instruments.layer(&format!("svc-{i}")).unwrap())
        .collect();
    let mut services: Vec<_> = layers.iter().map(|l| l.layer(bare())).collect();
    for (i, s) in services.iter_mut().enumerate() {
        for _ in 0..(i % 7) {
            call_now(s, 1).unwrap();
        }
    }
    group.bench_function("health_1000_instruments", |b| {
        b.iter(|| black_box(instruments.health()))
    });
    group.bench_function("prometheus_1000_components", |b| {
        b.iter(|| black_box(components.prometheus_text()))
    });
    group.bench_function("prometheus_1000_instruments", |b| {
        b.iter(|| black_box(instruments.prometheus_text()))
    });
    group.finish();

    report(
        "registry/health_1000_components",
        allocs_per_call(10, || {
            black_box(components.health());
        }),
    );
    report(
        "registry/prometheus_1000_components",
        allocs_per_call(10, || {
            black_box(components.prometheus_text());
        }),
    );
    report(
        "registry/prometheus_1000_instruments",
        allocs_per_call(10, || {
            black_box(instruments.prometheus_text());
        }),
    );
    report(
        "registry/instrument_tokio_clock",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut tokio_clock, black_box(1)).unwrap());
        }),
    );

    report(
        "registry/instrument",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut instrumented, black_box(1)).unwrap());
        }),
    );
    report(
        "registry/health_1000_instruments",
        allocs_per_call(10, || {
            black_box(instruments.health());
        }),
    );
    report(
        "registry/instrument_sampled_1_in_16",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut sampled, black_box(1)).unwrap());
        }),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
