//! Retry: the cost of a call that succeeds first time, side by side with a
//! bare `service_fn`, `tower::retry` (a policy that never retries) and
//! `tower-resilience`'s retry; then a simulation of the load a total
//! outage sends upstream (upstream calls / requests) with no budget, this
//! crate's budget and `tower-resilience`'s budgets.
//!
//! Instruction counts, repeatable on a busy machine:
//! `BATTLEMENT_IR=100000 valgrind --tool=callgrind <bench binary>`, then
//! `callgrind_annotate --inclusive=yes callgrind.out.* | grep ::ir_` and
//! divide each loop's count by 100 000.

#![allow(clippy::print_stdout)]

use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use battlement_benches::{allocs_per_call, call_now, ir_loop, report, runtime};
use battlement_core::BoxError;
use battlement_retry::{Backoff, RetryBudget, RetryLayer, RetryPolicy};
use criterion::{Criterion, criterion_group};
use tower::{Layer, Service, ServiceExt, service_fn};

/// The bare service: a `Copy` request answered at once.
fn bare()
-> impl Service<u64, Response = u64, Error = BoxError, Future = Ready<Result<u64, BoxError>>> + Clone
{
    service_fn(|x: u64| ready(Ok::<u64, BoxError>(x)))
}

/// A `tower::retry` policy that never retries.
#[derive(Clone, Copy)]
struct NeverRetry;

impl<E> tower::retry::Policy<u64, u64, E> for NeverRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut u64, _result: &mut Result<u64, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// The default policy, kept in a `static` (`RetryPolicy::from_static`).
static STATIC_POLICY: LazyLock<RetryPolicy> = LazyLock::new(RetryPolicy::default);

fn tower_resilience_layer() -> tower_resilience::retry::RetryLayer<u64, u64, BoxError> {
    tower_resilience::retry::RetryLayer::<u64, u64, BoxError>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_millis(100))
        .build()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();

    let mut plain = bare();
    let mut ours = RetryLayer::new(RetryPolicy::default()).layer(bare());
    let mut ours_static = RetryLayer::new(RetryPolicy::from_static(&STATIC_POLICY)).layer(bare());
    let budget = RetryBudget::builder().ratio(0.1).build().expect("budget");
    let mut ours_budget = RetryLayer::new(
        RetryPolicy::builder()
            .budget(budget)
            .build()
            .expect("policy"),
    )
    .layer(bare());
    let mut ours_single = RetryLayer::new(
        RetryPolicy::builder()
            .max_attempts(1)
            .build()
            .expect("policy"),
    )
    .layer(bare());
    let mut tower_retry = tower::retry::RetryLayer::new(NeverRetry).layer(bare());
    let mut resilience = tower_resilience_layer().layer(bare());

    let mut group = c.benchmark_group("retry");
    group.bench_function("bare_service_fn", |b| {
        b.iter(|| call_now(&mut plain, black_box(7)))
    });
    group.bench_function("battlement_no_retry", |b| {
        b.iter(|| call_now(&mut ours, black_box(7)))
    });
    group.bench_function("battlement_no_retry_static_policy", |b| {
        b.iter(|| call_now(&mut ours_static, black_box(7)))
    });
    group.bench_function("battlement_no_retry_with_budget", |b| {
        b.iter(|| call_now(&mut ours_budget, black_box(7)))
    });
    group.bench_function("battlement_max_attempts_1", |b| {
        b.iter(|| call_now(&mut ours_single, black_box(7)))
    });
    group.bench_function("tower_retry_never", |b| {
        b.iter(|| call_now(&mut tower_retry, black_box(7)))
    });
    group.bench_function("tower_resilience_retry", |b| {
        b.iter(|| call_now(&mut resilience, black_box(7)))
    });
    group.finish();

    report(
        "retry/battlement_no_retry",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut ours, black_box(7)).ok());
        }),
    );
    report(
        "retry/battlement_no_retry_with_budget",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut ours_budget, black_box(7)).ok());
        }),
    );
    report(
        "retry/battlement_no_retry_static_policy",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut ours_static, black_box(7)).ok());
        }),
    );
    report(
        "retry/battlement_max_attempts_1",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut ours_single, black_box(7)).ok());
        }),
    );
    report(
        "retry/tower_retry_never",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut tower_retry, black_box(7)).ok());
        }),
    );
    report(
        "retry/tower_resilience_retry",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut resilience, black_box(7)).ok());
        }),
    );

    drop(_guard);
    amplification(&rt);
}

/// A backend that is down: every call fails with a refused connection.
#[derive(Clone)]
struct Down {
    calls: Arc<AtomicU64>,
}

impl Service<u64> for Down {
    type Response = u64;
    type Error = BoxError;
    type Future = Ready<Result<u64, BoxError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: u64) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        ready(Err(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        ))))
    }
}

/// Sends `requests` requests to a dead backend through `layer` and returns
/// the upstream calls per request.
fn drive<L>(rt: &tokio::runtime::Runtime, layer: L, requests: u64) -> f64
where
    L: Layer<Down>,
    L::Service: Service<u64, Response = u64, Error = BoxError>,
{
    let calls = Arc::new(AtomicU64::new(0));
    let mut svc = layer.layer(Down {
        calls: calls.clone(),
    });
    rt.block_on(async {
        for i in 0..requests {
            let _ = svc.ready().await.expect("ready").call(i).await;
        }
    });
    calls.load(Ordering::Relaxed) as f64 / requests as f64
}

/// Upstream load amplification under a total outage: 10 000 requests sent
/// back to back (a burst, so time-based refills do not come into it), 3
/// attempts each, no backoff.
fn amplification(rt: &tokio::runtime::Runtime) {
    const REQUESTS: u64 = 10_000;
    let policy = || {
        RetryPolicy::builder()
            .max_attempts(3)
            .backoff(Backoff::none())
    };
    let none = drive(
        rt,
        RetryLayer::new(policy().build().expect("policy")),
        REQUESTS,
    );
    let ours_budget = {
        let _g = rt.enter();
        RetryBudget::builder()
            .ratio(0.1)
            .min_per_sec(10)
            .ttl(Duration::from_secs(10))
            .build()
            .expect("budget")
    };
    let ours = drive(
        rt,
        RetryLayer::new(policy().budget(ours_budget).build().expect("policy")),
        REQUESTS,
    );
    let tr_none = drive(
        rt,
        tower_resilience::retry::RetryLayer::<u64, u64, BoxError>::builder()
            .max_attempts(3)
            .fixed_backoff(Duration::ZERO)
            .build(),
        REQUESTS,
    );
    let bucket = tower_resilience::retry::RetryBudgetBuilder::new()
        .token_bucket()
        .tokens_per_second(10.0)
        .max_tokens(100)
        .build()
        .expect("token bucket");
    let tr_bucket = drive(
        rt,
        tower_resilience::retry::RetryLayer::<u64, u64, BoxError>::builder()
            .max_attempts(3)
            .fixed_backoff(Duration::ZERO)
            .budget(bucket)
            .build(),
        REQUESTS,
    );
    let aimd = tower_resilience::retry::RetryBudgetBuilder::new()
        .aimd()
        .build()
        .expect("aimd");
    let tr_aimd = drive(
        rt,
        tower_resilience::retry::RetryLayer::<u64, u64, BoxError>::builder()
            .max_attempts(3)
            .fixed_backoff(Duration::ZERO)
            .budget(aimd)
            .build(),
        REQUESTS,
    );
    println!(
        "amplification (upstream calls / requests, {REQUESTS} requests, total outage, 3 attempts):"
    );
    println!("amplification battlement no budget: {none:.3}");
    println!("amplification battlement RetryBudget(ratio 0.1, min_per_sec 10, ttl 10s): {ours:.3}");
    println!("amplification tower-resilience no budget: {tr_none:.3}");
    println!("amplification tower-resilience token bucket (10/s, max 100): {tr_bucket:.3}");
    println!("amplification tower-resilience aimd (defaults): {tr_aimd:.3}");
}

ir_loop!(ir_bare);
ir_loop!(ir_battlement);
ir_loop!(ir_battlement_static);
ir_loop!(ir_battlement_budget);
ir_loop!(ir_battlement_single);
ir_loop!(ir_tower_retry);

/// Instruction counts, repeatable on a busy machine: with
/// `BATTLEMENT_IR=<calls>` set, runs each variant that many times and exits,
/// for `valgrind --tool=callgrind` to count (each variant's loop is its own
/// function; divide its inclusive count by the calls).
fn instructions(n: u64) {
    let rt = runtime();
    let _guard = rt.enter();
    let budget = RetryBudget::builder().ratio(0.1).build().expect("budget");
    ir_bare(&mut bare(), n);
    ir_battlement(
        &mut RetryLayer::new(RetryPolicy::default()).layer(bare()),
        n,
    );
    ir_battlement_static(
        &mut RetryLayer::new(RetryPolicy::from_static(&STATIC_POLICY)).layer(bare()),
        n,
    );
    ir_battlement_budget(
        &mut RetryLayer::new(
            RetryPolicy::builder()
                .budget(budget)
                .build()
                .expect("policy"),
        )
        .layer(bare()),
        n,
    );
    ir_battlement_single(
        &mut RetryLayer::new(
            RetryPolicy::builder()
                .max_attempts(1)
                .build()
                .expect("policy"),
        )
        .layer(bare()),
        n,
    );
    ir_tower_retry(
        &mut tower::retry::RetryLayer::new(NeverRetry).layer(bare()),
        n,
    );
}

criterion_group!(benches, bench);

fn main() {
    battlement_benches::main_with_instructions(instructions, benches);
}
