//! The gate's percentile latency signal on paused time: it sees the slow
//! tail a mean hides, follows its window, ignores a trickle, and drives
//! the governor.

use std::time::Duration;

use battlement_core::BoxError;
use battlement_gate::{Gate, GateService, Level, Priority, Rule, Signal};
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};

type Svc = GateService<
    tower::util::ServiceFn<
        fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>,
    >,
    fn(&u64) -> Option<Priority>,
>;

/// A service through `gate` whose request is how many milliseconds it takes.
fn sleeper(gate: &Gate) -> Svc {
    fn call(ms: u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        })
    }
    fn no_priority(_: &u64) -> Option<Priority> {
        None
    }
    gate.layer()
        .priority_fn(no_priority as fn(&u64) -> Option<Priority>)
        .layer(service_fn(call as fn(u64) -> _))
}

/// Runs calls of the given latencies one after the other.
async fn run(svc: &mut Svc, latencies_ms: impl IntoIterator<Item = u64>) {
    for ms in latencies_ms {
        svc.ready().await.unwrap().call(ms).await.unwrap();
    }
}

/// `value` is the bucketed reading of `exact_ms`: not below it, at most
/// 12.5% above.
fn reads(value: f64, exact_ms: f64) -> bool {
    value >= exact_ms && value <= exact_ms * 1.125
}

#[tokio::test(start_paused = true)]
async fn p99_sees_the_slow_tail_the_mean_hides() {
    let gate = Gate::new("api");
    let mut p99 = gate.latency_percentile_signal(99.0);
    let mut p50 = gate.latency_percentile_signal(50.0);
    let mut mean = gate.latency_signal();
    assert_eq!(p99.name(), "latency_p99_ms");
    let mut svc = sleeper(&gate);
    // 98 calls of 10 ms and 2 of 1 s.
    run(&mut svc, std::iter::repeat_n(10, 98).chain([1000, 1000])).await;
    let now = Instant::now();
    let (p99, p50, mean) = (p99.sample(now), p50.sample(now), mean.sample(now));
    assert!(reads(p99, 1000.0), "p99 {p99}");
    assert!(reads(p50, 10.0), "p50 {p50}");
    assert!((mean - 29.8).abs() < 1e-6, "mean {mean}");
}

#[tokio::test(start_paused = true)]
async fn reads_only_the_calls_of_its_window() {
    let gate = Gate::new("api");
    let mut since_last = gate.latency_percentile_signal(99.0);
    let mut three_ticks = gate.latency_percentile_signal(99.0).window(3);
    let mut svc = sleeper(&gate);
    let now = Instant::now();

    run(&mut svc, [200; 10]).await;
    assert!(reads(since_last.sample(now), 200.0));
    assert!(reads(three_ticks.sample(now), 200.0));

    run(&mut svc, [20; 10]).await;
    assert!(reads(since_last.sample(now), 20.0), "the 200 ms calls left");
    assert!(reads(three_ticks.sample(now), 200.0), "still in the window");

    run(&mut svc, [20; 10]).await;
    assert!(reads(three_ticks.sample(now), 200.0));
    run(&mut svc, [20; 10]).await;
    let v = three_ticks.sample(now);
    assert!(
        reads(v, 20.0),
        "three ticks later the 200 ms calls left: {v}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_trickle_below_min_calls_reads_zero() {
    let gate = Gate::new("api");
    let mut default = gate.latency_percentile_signal(99.0);
    let mut one = gate.latency_percentile_signal(99.0).min_calls(1);
    let mut svc = sleeper(&gate);
    let now = Instant::now();
    assert_eq!(default.sample(now), 0.0, "no calls yet");
    run(&mut svc, [5000]).await;
    assert_eq!(default.sample(now), 0.0, "one slow call is not a p99");
    assert!(reads(one.sample(now), 5000.0));
}

#[tokio::test(start_paused = true)]
async fn the_governor_raises_on_p99_and_recovers_after_dwell() {
    let gate = Gate::new("api");
    let mut governor = gate
        .governor()
        .min_dwell(Duration::from_secs(5))
        .rule(
            Rule::new(gate.latency_percentile_signal(99.0))
                .step(Level::Minimal, 500.0, 200.0)
                .step(Level::Moderate, 2000.0, 1000.0),
        )
        .build()
        .unwrap();
    let mut svc = sleeper(&gate);

    // A slow 2% tail: the mean (about 30 ms) would not move the level.
    run(&mut svc, std::iter::repeat_n(10, 98).chain([1000, 1000])).await;
    assert_eq!(governor.tick(), Some(Level::Minimal));
    let reason = gate.reason();
    assert!(reason.starts_with("latency_p99_ms "), "{reason}");

    // Fast again: recovery only after the dwell.
    for _ in 0..5 {
        run(&mut svc, [10; 20]).await;
        assert_eq!(governor.tick(), None);
        advance(Duration::from_secs(1)).await;
    }
    run(&mut svc, [10; 20]).await;
    assert_eq!(governor.tick(), Some(Level::Normal));
}

#[test]
fn an_invalid_percentile_fails_the_governor_build() {
    let gate = Gate::new("api");
    for p in [0.0, -1.0, 100.5, f64::NAN] {
        let err = gate
            .governor()
            .rule(Rule::new(gate.latency_percentile_signal(p)).step(Level::Minimal, 1.0, 0.5))
            .build()
            .unwrap_err();
        assert_eq!(err.field, "latency.percentile", "{p}");
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_percentile_signal_no_histogram_is_kept() {
    // The mean signal alone leaves the histogram unmade; making a
    // percentile signal later starts from that moment.
    let gate = Gate::new("api");
    let mut mean = gate.latency_signal();
    let mut svc = sleeper(&gate);
    run(&mut svc, [300; 10]).await;
    let mut p99 = gate.latency_percentile_signal(99.0).min_calls(1);
    let now = Instant::now();
    assert!((mean.sample(now) - 300.0).abs() < 1e-6);
    assert_eq!(
        p99.sample(now),
        0.0,
        "calls before the signal are not in it"
    );
    run(&mut svc, [40; 10]).await;
    assert!(reads(p99.sample(now), 40.0));
}
