//! The canonical stack of DESIGN.md on the happy path (issue 20's target:
//! ≤ 150 ns per call over a bare `service_fn`, zero allocations),
//! outermost first:
//!
//! `InstrumentLayer → FallbackLayer → GateLayer → DeadlineLayer(total) →
//! RetryLayer → BreakerLayer → AttemptTimeoutLayer → service`
//!
//! with the "standard resilience handler" figures (30 s total, 10 s per
//! attempt, 3 attempts with jittered exponential backoff, a breaker at 10 %
//! failures over 30 s, a retry budget). The request carries its deadline,
//! so every layer that reads it pays for reading it.
//!
//! Two rows: `canonical`, the stack written out layer by layer, and
//! `policy`, the same stack built by `battlement::Policy` (which adds a
//! branch per part, since each part can be turned off at run time). And
//! both again leaked (`canonical_leaked`, `policy_leaked`): made once for
//! the process with `Leak`, as a server makes its stack, so the futures of
//! the fallback and the breaker hold a `&'static` to their layer's state
//! instead of counting an `Arc` up and down (the retry's future still
//! counts its service's one).
//!
//! Where the time goes (callgrind, `BATTLEMENT_IR=100000`, 2 December
//! 2026, second round): 1,114 instructions a call for `canonical` and
//! 1,296 for `policy`, no `memcpy`, 12 atomic read-modify-writes, 2 TSC
//! reads and no read of tokio's clock (the instrument's stamp serves the
//! budget and the deadline layer). On the 2-core Xeon VM those cost about
//! 7 and 10 ns each (the `stack_floor` group measures them in the same
//! run). The report (`benches/README.md`) lists them by layer. The first
//! round of 2 December took the stack from 1,248 / 1,458 instructions, 18
//! read-modify-writes and a 700-byte copy of its future per call to 1,093
//! / 1,249, 14 read-modify-writes, 3 TSC reads and one read of tokio's
//! clock.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use battlement_benches::{allocs_per_call, call_now, min_of_batches, report};
use battlement_breaker::Breaker;
use battlement_core::clock::Clock;
use battlement_core::{BoxError, Deadline, DeadlineCarrier, Leak, Priority};
use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
use battlement_fallback::FallbackLayer;
use battlement_gate::{Gate, GateLayer};
use battlement_registry::Registry;
use battlement_retry::{Backoff, Jitter, RetryBudget, RetryLayer, RetryPolicy};
use criterion::{Criterion, criterion_group};
use tower::{Service, ServiceBuilder, service_fn};

/// A small `Copy` request that carries its deadline, as a user's own
/// request type would.
#[derive(Debug, Clone, Copy)]
struct Query {
    id: u64,
    deadline: Option<Deadline>,
}

impl DeadlineCarrier for Query {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }
}

fn query(id: u64) -> Query {
    Query { id, deadline: None }
}

fn bare() -> impl Service<Query, Response = u64, Error = Infallible> + Clone {
    service_fn(|q: Query| std::future::ready(Ok::<u64, Infallible>(q.id)))
}

/// Each layer as it is, or leaked ([`Leak`]): made once for the life of
/// the process, so its services' futures count no reference.
fn kept<L: Leak>(layer: L, leak: bool) -> L {
    if leak { layer.leak() } else { layer }
}

/// The canonical stack written out layer by layer; with `leak`, every
/// layer leaked, as a server makes its stack once.
fn hand_built(
    registry: &Registry,
    leak: bool,
) -> impl Service<Query, Response = u64, Error = BoxError> {
    let breaker = Breaker::builder("stack-db")
        .failure_rate(0.1)
        .build()
        .expect("valid breaker");
    let budget = RetryBudget::builder()
        .name("stack-budget")
        .build()
        .expect("valid budget");
    let retry = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(100)).jitter(Jitter::Full))
        .budget(budget)
        .build()
        .expect("valid retry policy");
    let fallback = FallbackLayer::builder("stack-fallback")
        .value(0u64)
        .build()
        .expect("valid fallback");
    let gate = Gate::new("stack-gate");
    let gate = GateLayer::new(gate).priority_fn(|_: &Query| Some(Priority::Normal));
    ServiceBuilder::new()
        .layer(kept(registry.layer("stack").expect("unique name"), leak))
        .layer(kept(fallback, leak))
        .layer(kept(gate, leak))
        .layer(kept(DeadlineLayer::new(Duration::from_secs(30)), leak))
        .layer(kept(RetryLayer::new(retry), leak))
        .layer(kept(breaker.layer(), leak))
        .layer(kept(
            AttemptTimeoutLayer::new(Duration::from_secs(10)),
            leak,
        ))
        .map_err(BoxError::from)
        .service(bare())
}

/// The same stack built by `battlement::Policy`; with `leak`, the policy
/// leaked.
fn by_policy(
    registry: &Registry,
    leak: bool,
) -> impl Service<Query, Response = u64, Error = BoxError> {
    // The same parts as the hand-built stack: its breaker counts the last
    // 100 calls (the policy's default time window reads the clock at each
    // completion, which the hand-built one does not).
    let policy = battlement::Policy::builder("stack")
        .breaker(|b| b.count_window(100).minimum_calls(20))
        .gate(|g| g)
        .priority(|_: &Query| Some(Priority::Normal))
        .fallback(|f| f.value(0u64))
        .registry(registry)
        .build()
        .expect("valid policy");
    ServiceBuilder::new()
        .layer(kept(policy, leak))
        .map_err(BoxError::from)
        .service(bare())
}

/// `n` calls of `svc`, in a function of its own for callgrind
/// (`BATTLEMENT_IR=<calls>`; `callgrind_annotate --inclusive=yes`).
macro_rules! ir_stack {
    ($name:ident) => {
        #[inline(never)]
        fn $name<S: Service<Query>>(svc: &mut S, n: u64) {
            black_box(stringify!($name));
            for i in 0..n {
                black_box(call_now(svc, black_box(query(i))).is_ok());
            }
        }
    };
}

ir_stack!(ir_canonical);
ir_stack!(ir_policy);
ir_stack!(ir_canonical_leaked);
ir_stack!(ir_policy_leaked);

fn instructions(n: u64) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    let registry = Registry::new();
    let leaked = Registry::new();
    ir_canonical(&mut hand_built(&registry, false), n);
    ir_policy(&mut by_policy(&registry, false), n);
    ir_canonical_leaked(&mut hand_built(&leaked, true), n);
    ir_policy_leaked(&mut by_policy(&leaked, true), n);
}

fn bench(c: &mut Criterion) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    let registry = Registry::new();
    let leaked = Registry::new();
    let mut stacked = hand_built(&registry, false);
    let mut policed = by_policy(&registry, false);
    let mut stacked_leaked = hand_built(&leaked, true);
    let mut policy_leaked = by_policy(&leaked, true);
    let mut plain = bare();
    for (name, size) in [
        ("canonical", future_size(&mut stacked)),
        ("policy", future_size(&mut policed)),
        ("policy_leaked", future_size(&mut policy_leaked)),
    ] {
        println!("size stack/{name}: {size} bytes per response future");
    }

    let mut group = c.benchmark_group("stack");
    group.bench_function("bare_service_fn", |b| {
        b.iter(|| call_now(&mut plain, black_box(query(1))))
    });
    group.bench_function("canonical", |b| {
        b.iter(|| call_now(&mut stacked, black_box(query(1))))
    });
    group.bench_function("policy", |b| {
        b.iter(|| call_now(&mut policed, black_box(query(1))))
    });
    // Leaked, as a server makes its stack once: no reference counted per
    // call by the layers' futures.
    group.bench_function("canonical_leaked", |b| {
        b.iter(|| call_now(&mut stacked_leaked, black_box(query(1))))
    });
    group.bench_function("policy_leaked", |b| {
        b.iter(|| call_now(&mut policy_leaked, black_box(query(1))))
    });
    group.finish();

    // The floors the stack's time is made of (the report multiplies them
    // by the counts callgrind gives per call, see `STACK_PROFILE` there):
    // one uncontended atomic read-modify-write, one read of the core's
    // fast clock (the TSC), one read of tokio's clock.
    let mut floor = c.benchmark_group("stack_floor");
    let counter = AtomicU64::new(0);
    floor.bench_function("atomic_rmw", |b| {
        b.iter(|| black_box(&counter).fetch_add(black_box(1), Relaxed))
    });
    let clock = Clock::fast();
    floor.bench_function("fast_clock_read", |b| b.iter(|| black_box(clock.now_ns())));
    floor.bench_function("tokio_clock_read", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    floor.finish();

    report_allocs("stack/canonical", &mut stacked);
    report_allocs("stack/policy", &mut policed);
    report_allocs("stack/canonical_leaked", &mut stacked_leaked);
    report_allocs("stack/policy_leaked", &mut policy_leaked);

    // `BATTLEMENT_MIN_OF_BATCHES=1`: the rows as the minimum over batches,
    // the figure that survives a loaded machine.
    if battlement_benches::min_of_batches_wanted() {
        min_row("stack/bare_service_fn", &mut plain);
        min_row("stack/canonical", &mut stacked);
        min_row("stack/policy", &mut policed);
        min_row("stack/canonical_leaked", &mut stacked_leaked);
        min_row("stack/policy_leaked", &mut policy_leaked);
    }
}

/// The size of `svc`'s response future.
fn future_size<S: Service<Query>>(svc: &mut S) -> usize {
    std::mem::size_of_val(&svc.call(query(1)))
}

/// Prints the allocations per call of `svc` as row `name`.
fn report_allocs<S: Service<Query>>(name: &str, svc: &mut S)
where
    S::Error: std::fmt::Debug,
{
    report(
        name,
        allocs_per_call(10_000, || {
            black_box(call_now(svc, black_box(query(1))).expect("served"));
        }),
    );
}

/// Prints row `name` of `svc` as the minimum over batches.
fn min_row<S: Service<Query>>(name: &str, svc: &mut S) {
    min_of_batches(name, || {
        black_box(call_now(svc, black_box(query(1))).is_ok());
    });
}

criterion_group!(benches, bench);

fn main() {
    battlement_benches::main_with_instructions(instructions, benches);
}
