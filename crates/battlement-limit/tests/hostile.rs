//! Hostile configuration for the load-protection layers: `Bulkhead`,
//! `AdaptiveLimit` (AIMD and Vegas parameters) and `KeyedBreaker` with
//! arbitrary numbers (0, `u32::MAX`, NaN, infinities, `Duration::MAX`).
//! `build()` answers an `InvalidConfig` naming the field exactly when a
//! documented bound is broken; what it accepts runs without a panic: a
//! bulkhead never has more than `max_concurrent` in flight, an adaptive
//! limit fed latencies from zero to an hour stays within
//! `[min_limit, max_limit]`, a keyed breaker never holds more than
//! `max_keys` keys.
//!
//! Cases per property: 256 (`PROPTEST_CASES` overrides).

use std::convert::Infallible;
use std::time::Duration;

use battlement_core::InvalidConfig;
use battlement_limit::{AdaptiveLimit, Aimd, Bulkhead, KeyedBreaker, Vegas};
use proptest::prelude::*;
use tower::{Layer, ServiceExt, service_fn};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig::with_cases(cases)
}

const HOUR: Duration = Duration::from_secs(3600);
const MAX_SLOTS: u32 = 1 << 30;

fn hostile_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(HOUR),
        Just(HOUR + Duration::from_nanos(1)),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_secs),
        (0u64..5_000).prop_map(Duration::from_millis),
    ]
}

fn hostile_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(5e-324),
        Just(0.5),
        Just(0.5 - f64::EPSILON),
        Just(1.0),
        Just(1.0 - f64::EPSILON),
        Just(f64::MAX),
        Just(-1.0),
        0.0f64..=1.0,
        any::<f64>(),
    ]
}

fn hostile_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(100_000),
        Just(100_001),
        Just(MAX_SLOTS),
        Just(MAX_SLOTS + 1),
        Just(u32::MAX),
        any::<u32>(),
        1u32..50,
    ]
}

fn assert_names_field(e: &InvalidConfig, fields: &[&str]) {
    assert!(fields.contains(&e.field), "unexpected field in {e}");
    assert!(e.to_string().contains(&format!("`{}`", e.field)), "{e}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// The shared pool settings' validity: `wait(max_wait, max_waiting)` and
/// `retry_after`.
fn pool_ok(wait: Option<(Duration, u32)>, retry_after: Option<Option<Duration>>) -> bool {
    let wait_ok = wait.is_none_or(|(d, n)| n == 0 || (!d.is_zero() && d <= HOUR && n <= 100_000));
    let after_ok = retry_after.flatten().is_none_or(|d| d <= HOUR);
    wait_ok && after_ok
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn bulkhead_any_numbers(
        max in proptest::option::of(hostile_u32()),
        wait in proptest::option::of((hostile_duration(), hostile_u32())),
        retry_after in proptest::option::of(proptest::option::of(hostile_duration())),
        calls in 1usize..40,
    ) {
        let rt = runtime();
        let _guard = rt.enter();
        let mut b = Bulkhead::builder("hostile");
        if let Some(n) = max {
            b = b.max_concurrent(n);
        }
        if let Some((d, n)) = wait {
            b = b.wait(d, n);
        }
        if let Some(r) = retry_after {
            b = b.retry_after(r);
        }
        let valid = max.is_none_or(|n| (1..=MAX_SLOTS).contains(&n)) && pool_ok(wait, retry_after);
        let bulkhead = match b.build() {
            Err(e) => {
                assert_names_field(&e, &["max_concurrent", "max_wait", "max_waiting", "retry_after"]);
                prop_assert!(!valid, "refused a valid bulkhead: {}", e);
                return Ok(());
            }
            Ok(b) => b,
        };
        prop_assert!(valid, "accepted an invalid bulkhead");
        let cap = bulkhead.max_concurrent();
        let layer = bulkhead.layer();
        rt.block_on(async {
            let mut running = Vec::new();
            for _ in 0..calls {
                let svc = layer.layer(service_fn(|()| async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok::<_, Infallible>(())
                }));
                running.push(tokio::spawn(svc.oneshot(())));
                tokio::task::yield_now().await;
                prop_assert!(bulkhead.in_flight() <= cap);
            }
            for r in running {
                let _ = r.await.unwrap();
            }
            prop_assert_eq!(bulkhead.in_flight(), 0);
            Ok(())
        })?;
    }

    #[test]
    fn adaptive_limit_any_numbers(
        vegas in any::<bool>(),
        ratio in hostile_f64(),
        timeout in hostile_duration(),
        smoothing in hostile_f64(),
        probe in hostile_u32(),
        initial in proptest::option::of(hostile_u32()),
        min in proptest::option::of(hostile_u32()),
        max in proptest::option::of(hostile_u32()),
        window in proptest::option::of((hostile_duration(), hostile_u32())),
        retry_after in proptest::option::of(proptest::option::of(hostile_duration())),
        latencies in proptest::collection::vec(prop_oneof![Just(Duration::ZERO), Just(HOUR), (0u64..2_000).prop_map(Duration::from_millis)], 1..60),
    ) {
        let rt = runtime();
        let _guard = rt.enter();
        let mut b = AdaptiveLimit::builder("hostile");
        b = if vegas {
            b.algorithm(Vegas::new().smoothing(smoothing).probe_multiplier(probe))
        } else {
            b.algorithm(Aimd::new().backoff_ratio(ratio).timeout(timeout))
        };
        if let Some(n) = initial {
            b = b.initial_limit(n);
        }
        if let Some(n) = min {
            b = b.min_limit(n);
        }
        if let Some(n) = max {
            b = b.max_limit(n);
        }
        if let Some((d, n)) = window {
            b = b.window(d, n);
        }
        if let Some(r) = retry_after {
            b = b.retry_after(r);
        }
        let (lo, hi) = (min.unwrap_or(1), max.unwrap_or(1000));
        let algo_ok = if vegas {
            smoothing > 0.0 && smoothing <= 1.0 && probe >= 1
        } else {
            (0.5..1.0).contains(&ratio) && !timeout.is_zero()
        };
        let valid = lo >= 1
            && hi >= lo
            && hi <= MAX_SLOTS
            && window.is_none_or(|(d, n)| d >= Duration::from_millis(1) && d <= HOUR && n >= 1)
            && algo_ok
            && pool_ok(None, retry_after);
        let limiter = match b.build() {
            Err(e) => {
                assert_names_field(&e, &[
                    "min_limit", "max_limit", "window", "min_samples", "backoff_ratio", "timeout",
                    "smoothing", "probe_multiplier", "max_wait", "max_waiting", "retry_after",
                ]);
                prop_assert!(!valid, "refused a valid adaptive limit: {}", e);
                return Ok(());
            }
            Ok(l) => l,
        };
        prop_assert!(valid, "accepted an invalid adaptive limit");
        prop_assert!((lo..=hi).contains(&limiter.limit()), "initial limit {}", limiter.limit());
        let layer = limiter.layer();
        rt.block_on(async {
            for d in latencies {
                let svc = layer.layer(service_fn(move |()| async move {
                    tokio::time::sleep(d).await;
                    Ok::<_, Infallible>(())
                }));
                let _ = svc.oneshot(()).await;
                let limit = limiter.limit();
                prop_assert!((lo..=hi).contains(&limit), "limit {} outside [{}, {}]", limit, lo, hi);
            }
            Ok(())
        })?;
    }

    #[test]
    fn keyed_breaker_any_numbers(
        max_keys in proptest::option::of(prop_oneof![Just(0usize), Just(1), Just(65_536), Just(65_537), Just(usize::MAX), 1usize..20]),
        idle in proptest::option::of(hostile_duration()),
        consecutive in proptest::option::of(hostile_u32()),
        keys in proptest::collection::vec(0u16..100, 0..60),
    ) {
        let rt = runtime();
        let _guard = rt.enter();
        let mut b = KeyedBreaker::<u16>::builder("hostile");
        if let Some(n) = max_keys {
            b = b.max_keys(n);
        }
        if let Some(d) = idle {
            b = b.idle_timeout(d);
        }
        if let Some(n) = consecutive {
            b = b.breaker(move |b| b.consecutive_failures(n));
        }
        let valid = max_keys.is_none_or(|n| (1..=65_536).contains(&n))
            && idle.is_none_or(|d| !d.is_zero())
            && consecutive != Some(0);
        let keyed = match b.build() {
            Err(e) => {
                assert_names_field(&e, &["max_keys", "idle_timeout", "consecutive_failures"]);
                prop_assert!(!valid, "refused a valid keyed breaker: {}", e);
                return Ok(());
            }
            Ok(k) => k,
        };
        prop_assert!(valid, "accepted an invalid keyed breaker");
        let cap = max_keys.unwrap_or(usize::MAX);
        for k in keys {
            keyed.breaker(k).unwrap();
            prop_assert!(keyed.len() <= cap, "{} keys over {}", keyed.len(), cap);
        }
    }
}
