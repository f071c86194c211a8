//! `DeadlineLayer` and `AttemptTimeoutLayer` on the happy path, side by
//! side with `tower::timeout` and tower-resilience's time limiter over a
//! bare `service_fn`; the rejection path (a request whose deadline has
//! already passed: refused without calling the service); and the
//! deadline header parsers.
//!
//! The request is a `u64`, which carries no deadline (the layers still
//! time out; the inner layers just cannot see it), and a `Call` that
//! carries it in a field, as a user's own request type would: the cost of
//! handing the deadline on without `http::Request`'s extension map.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use battlement_benches::{allocs_per_call, call_now, ir_loop, report, runtime};
use battlement_core::{Deadline, DeadlineCarrier};
use battlement_deadline::http::{parse_grpc_timeout, parse_millis};
use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
use criterion::{Criterion, criterion_group};
use tower::timeout::TimeoutLayer;
use tower::{Layer, service_fn};

/// A request that carries its deadline in a field.
struct Call {
    n: u64,
    deadline: Option<Deadline>,
}

impl DeadlineCarrier for Call {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }
}

fn call(n: u64) -> Call {
    Call { n, deadline: None }
}

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
    let bare_call = || {
        service_fn(
            |c: Call| async move { Ok::<_, Infallible>(c.n + u64::from(c.deadline.is_some())) },
        )
    };
    let mut carried = DeadlineLayer::new(budget).layer(bare_call());
    // A deadline one second in the past: `DeadlineExceeded` at once.
    let past = Deadline::at(tokio::time::Instant::now() - Duration::from_secs(1));
    let expired = move || Call {
        n: 1,
        deadline: Some(past),
    };
    let mut rejecting = DeadlineLayer::new(budget).layer(bare_call());
    let mut time_limiter = tower_resilience::timelimiter::TimeLimiterLayer::builder()
        .timeout_duration(budget)
        .build()
        .layer(bare());

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
    group.bench_function("deadline_layer_carried_in_a_field", |b| {
        b.iter(|| call_now(&mut carried, black_box(call(1))))
    });
    group.bench_function("tower_resilience_time_limiter", |b| {
        b.iter(|| call_now(&mut time_limiter, black_box(1)))
    });
    group.bench_function("deadline_layer_expired_rejection", |b| {
        b.iter(|| call_now(&mut rejecting, black_box(expired())))
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
        "deadline/deadline_layer_carried_in_a_field",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut carried, black_box(call(1))).ok());
        }),
    );
    report(
        "deadline/attempt_timeout_layer",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut attempt, black_box(1)).ok());
        }),
    );
    report(
        "deadline/tower_resilience_time_limiter",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut time_limiter, black_box(1)).ok());
        }),
    );
    report(
        "deadline/deadline_layer_expired_rejection",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut rejecting, black_box(expired())).is_err());
        }),
    );
    report(
        "deadline/deadline_layer_named",
        allocs_per_call(10_000, || {
            black_box(call_now(&mut named, black_box(1)).ok());
        }),
    );
    report(
        "deadline/header_parse",
        allocs_per_call(10_000, || {
            black_box(parse_grpc_timeout(black_box(b"250m")).ok());
        }),
    );
}

ir_loop!(ir_bare);
ir_loop!(ir_tower_timeout);
ir_loop!(ir_deadline_layer);
ir_loop!(ir_attempt_timeout_layer);

/// Instruction counts, repeatable on a busy machine: with
/// `BATTLEMENT_IR=<calls>` set, runs each happy-path variant that many
/// times and exits, for `valgrind --tool=callgrind` to count (each
/// variant's loop is its own function; divide its inclusive count by the
/// calls).
fn instructions(n: u64) {
    let rt = runtime();
    let _guard = rt.enter();
    let budget = Duration::from_secs(30);
    let bare = || service_fn(|n: u64| async move { Ok::<_, Infallible>(n + 1) });
    ir_bare(&mut bare(), n);
    ir_tower_timeout(&mut TimeoutLayer::new(budget).layer(bare()), n);
    ir_deadline_layer(&mut DeadlineLayer::new(budget).layer(bare()), n);
    ir_attempt_timeout_layer(&mut AttemptTimeoutLayer::new(budget).layer(bare()), n);
}

criterion_group!(benches, bench);

fn main() {
    battlement_benches::main_with_instructions(instructions, benches);
}
