//! The adaptive limit: the limit moves window by window within its bounds,
//! refusals, cancellation, the component, and the gate's governor reading
//! it as a signal.

use std::time::Duration;

use battlement_core::{Control, HealthStatus, Level, LimitExceeded};
use battlement_gate::{Gate, Rule, signal_fn};
use battlement_limit::{AdaptiveLimit, Aimd, Vegas};
use proptest::prelude::*;
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};

mod common;
use common::{Req, backend, poll_once};

/// Runs `n` concurrent calls of `req` through `limiter`, all started at
/// once; returns how many were refused.
async fn burst(limiter: &AdaptiveLimit, n: usize, req: Req) -> usize {
    let layer = limiter.layer();
    let calls = (0..n).map(|_| layer.layer(backend()).oneshot(req));
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .filter(|r| r.as_ref().is_err_and(|e| e.is::<LimitExceeded>()))
        .count()
}

fn aimd(initial: u32, min: u32, max: u32) -> AdaptiveLimit {
    AdaptiveLimit::builder("aimd")
        .algorithm(Aimd::new().timeout(Duration::from_millis(100)))
        .initial_limit(initial)
        .min_limit(min)
        .max_limit(max)
        .window(Duration::from_millis(10), 1)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn aimd_grows_while_saturated_and_backs_off_on_drops_and_slow_windows() {
    let limiter = aimd(10, 2, 100);
    // Saturated windows: each grows the limit by one.
    for expected in 11..=15 {
        let refused = burst(&limiter, 40, (20, false)).await;
        assert_eq!(refused, 40 - (expected as usize - 1));
        assert_eq!(limiter.limit(), expected);
    }
    assert_eq!(limiter.windows(), 5);
    // Each burst's first completion closes the window; the burst's other
    // calls, completing at the same instant, land in the next window, so
    // each phase's first window also holds the previous phase's calls.
    //
    // Windows with drops back off by 0.9 each: 15 × 0.9³ = 10.9.
    for _ in 0..3 {
        burst(&limiter, 40, (20, true)).await;
    }
    assert_eq!(limiter.limit(), 10);
    // So do windows slower than the timeout: 10.9 × 0.9² = 8.86.
    for _ in 0..2 {
        burst(&limiter, 40, (150, false)).await;
    }
    assert_eq!(limiter.limit(), 8);
    // Windows that use less than half the limit leave it alone (after the
    // first, which still holds the slow calls: 8.86 × 0.9 = 7.97).
    for _ in 0..4 {
        burst(&limiter, 2, (20, false)).await;
    }
    assert_eq!(limiter.limit(), 7);
    assert_eq!(limiter.windows(), 5 + 3 + 2 + 4);
    let sample = limiter.last_sample().unwrap();
    assert_eq!(sample.max_in_flight, 2);
    assert_eq!(sample.rtt, Duration::from_millis(20));
}

#[tokio::test(start_paused = true)]
async fn caller_mistakes_and_cancelled_calls_are_not_samples() {
    let limiter = aimd(4, 1, 10);
    let layer = limiter.layer();
    // An invalid request (a caller's mistake) is neither a sample nor a drop.
    let invalid = service_fn(|_: ()| async {
        sleep(Duration::from_millis(20)).await;
        Err::<(), _>(std::io::Error::from(std::io::ErrorKind::InvalidInput))
    });
    assert!(layer.layer(invalid).oneshot(()).await.is_err());
    // Dropped before it completed: its slot comes back, nothing recorded.
    let mut svc = layer.layer(backend());
    let mut fut = Box::pin(svc.ready().await.unwrap().call((50, false)));
    assert!(poll_once(&mut fut).await.is_pending());
    assert_eq!(limiter.in_flight(), 1);
    drop(fut);
    assert_eq!(limiter.in_flight(), 0);
    sleep(Duration::from_millis(100)).await;
    layer.layer(backend()).oneshot((1, false)).await.unwrap();
    let sample = limiter.last_sample().unwrap();
    assert_eq!(sample.rtt, Duration::from_millis(1), "only the last call");
    assert!(!sample.dropped);
}

#[tokio::test(start_paused = true)]
async fn a_window_short_of_samples_goes_on_until_it_has_them() {
    let limiter = AdaptiveLimit::builder("w")
        .algorithm(Aimd::new())
        .initial_limit(2)
        .window(Duration::from_millis(10), 3)
        .build()
        .unwrap();
    burst(&limiter, 2, (20, false)).await;
    assert_eq!(limiter.windows(), 0, "two samples of three");
    burst(&limiter, 1, (20, false)).await;
    assert_eq!(limiter.windows(), 1);
    assert_eq!(limiter.limit(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_raise_hands_new_slots_to_waiters() {
    let limiter = AdaptiveLimit::builder("wait")
        .algorithm(Aimd::new())
        .initial_limit(1)
        .window(Duration::from_millis(1), 1)
        .wait(Duration::from_secs(1), 4)
        .build()
        .unwrap();
    let layer = limiter.layer();
    let start = Instant::now();
    let calls = (0..3).map(|_| layer.layer(backend()).oneshot((10, false)));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    // 1 → 2 when the first call completes: the two waiters then run side
    // by side (and their window takes the limit to 3).
    assert_eq!(start.elapsed(), Duration::from_millis(20));
    assert_eq!(limiter.limit(), 3);
    assert_eq!(limiter.metrics().waited, 2);
}

#[tokio::test(start_paused = true)]
async fn the_component_reports_the_limit_and_resets_to_the_initial_one() {
    let registry = battlement_registry::Registry::new();
    let limiter = aimd(5, 1, 50);
    registry.register(&limiter).unwrap();
    for _ in 0..3 {
        burst(&limiter, 10, (20, false)).await;
    }
    assert_eq!(limiter.limit(), 8);
    let report = registry.get("aimd").unwrap();
    assert_eq!(report.kind.as_str(), "adaptive_limit");
    let d = &report.details;
    assert_eq!(d["algorithm"], "aimd");
    assert_eq!(d["limit"], 8);
    assert_eq!(d["windows"], 3);
    assert_eq!(d["rejected"], 12, "10 − 5, 10 − 6, 10 − 7");
    assert_eq!(d["last_rtt_ms"], 20.0);
    assert_eq!(report.reported_status, HealthStatus::Healthy);
    registry.control("aimd", &Control::Reset).unwrap();
    assert_eq!(limiter.limit(), 5);
    assert_eq!(registry.get("aimd").unwrap().details["rejected"], 12);
    assert!(registry.control("aimd", &Control::ForceOpen).is_err());
}

#[tokio::test(start_paused = true)]
async fn the_gate_governor_reads_utilisation_and_rejection_rate() {
    let limiter = aimd(4, 1, 50);
    let gate = Gate::new("edge");
    let mut governor = gate
        .governor()
        .rule(
            Rule::new(signal_fn("limit_utilisation", limiter.utilisation_signal())).step(
                Level::Minimal,
                0.9,
                0.5,
            ),
        )
        .rule(
            Rule::new(signal_fn(
                "limit_rejections",
                limiter.rejection_rate_signal(),
            ))
            .step(Level::Moderate, 0.5, 0.1),
        )
        .build()
        .unwrap();
    governor.tick();
    assert_eq!(gate.level(), Level::Normal);
    // Four calls in flight at a limit of four, and twelve refused of
    // sixteen: saturated, and mostly refused.
    let layer = limiter.layer();
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut call = Box::pin(layer.layer(backend()).oneshot((1000, false)));
        let _ = poll_once(&mut call).await;
        held.push(call);
    }
    assert_eq!(limiter.utilisation(), 1.0);
    // One level per tick.
    governor.tick();
    assert_eq!(gate.level(), Level::Minimal);
    let samples: Vec<(String, f64)> = governor
        .samples()
        .map(|(name, v)| (name.to_owned(), v))
        .collect();
    assert_eq!(
        samples,
        [
            ("limit_utilisation".to_owned(), 1.0),
            ("limit_rejections".to_owned(), 0.75)
        ]
    );
    // The rejection rate is per tick: refusals since the last one.
    for _ in 0..4 {
        assert!(layer.layer(backend()).oneshot((1, false)).await.is_err());
    }
    governor.tick();
    assert_eq!(gate.level(), Level::Moderate, "rejections 4 / 4");
    drop(held);
    assert_eq!(limiter.utilisation(), 0.0);
}

#[test]
fn build_names_the_field_and_the_bound() {
    let b = || AdaptiveLimit::builder("x");
    let cases = [
        (b().min_limit(0), "min_limit"),
        (b().min_limit(10).max_limit(9), "max_limit"),
        (b().max_limit(battlement_limit::MAX_SLOTS + 1), "max_limit"),
        (b().window(Duration::from_micros(10), 10), "window"),
        (b().window(Duration::from_secs(1), 0), "min_samples"),
        (
            b().algorithm(Aimd::new().backoff_ratio(1.0)),
            "backoff_ratio",
        ),
        (
            b().algorithm(Aimd::new().backoff_ratio(0.4)),
            "backoff_ratio",
        ),
        (
            b().algorithm(Aimd::new().timeout(Duration::ZERO)),
            "timeout",
        ),
        (b().algorithm(Vegas::new().smoothing(0.0)), "smoothing"),
        (
            b().algorithm(Vegas::new().probe_multiplier(0)),
            "probe_multiplier",
        ),
        (b().wait(Duration::from_secs(7200), 1), "max_wait"),
    ];
    for (builder, field) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!((err.component, err.field), ("adaptive_limit", field));
    }
    assert_eq!(
        b().initial_limit(5000).build().unwrap().limit(),
        1000,
        "clamped"
    );
}

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the traffic (bursts of any size, latencies, failures), the
    /// limit stays within [min, max] and every slot comes back.
    #[test]
    fn the_limit_stays_within_its_bounds_through_the_service(
        vegas in any::<bool>(),
        min in 1u32..20,
        span in 0u32..40,
        initial in 0u32..80,
        windows in prop::collection::vec((1usize..60, 0u64..300, any::<bool>()), 1..25),
    ) {
        let max = min + span;
        let limiter = AdaptiveLimit::builder("p")
            .algorithm(if vegas { Vegas::new().into() } else { battlement_limit::Algorithm::from(Aimd::new().timeout(Duration::from_millis(150))) })
            .initial_limit(initial)
            .min_limit(min)
            .max_limit(max)
            .window(Duration::from_millis(5), 1)
            .build()
            .unwrap();
        paused().block_on(async {
            for (n, ms, fail) in windows {
                burst(&limiter, n, (ms, fail)).await;
                let limit = limiter.limit();
                prop_assert!((min..=max).contains(&limit), "{limit} outside [{min}, {max}]");
                prop_assert_eq!(limiter.in_flight(), 0);
            }
            Ok(())
        })?;
    }
}

#[tokio::test(start_paused = true)]
async fn a_refusal_needs_no_poll_of_the_inner_service() {
    let limiter = aimd(1, 1, 1);
    let (mock, mut handle) = tower_test::mock::pair::<(), ()>();
    handle.allow(1);
    let mut svc = limiter.layer().layer(mock);
    let _first = svc.ready().await.unwrap().call(());
    // No readiness left in the mock: a refusal must not ask for it.
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    let over = err.downcast_ref::<LimitExceeded>().unwrap();
    assert_eq!((over.limit, over.waited), (1, Duration::ZERO));
}
