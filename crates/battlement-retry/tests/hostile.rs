//! Hostile configuration: `RetryPolicy::builder`, `Backoff` and
//! `RetryBudget::builder` with arbitrary numbers (0, `u32::MAX`, NaN,
//! infinities, subnormals, `Duration::MAX`), and failures carrying
//! arbitrary retry-afters (the parsed `Retry-After` /
//! `grpc-retry-pushback-ms`). `build()` answers an `InvalidConfig`
//! naming the field and accepts only documented bounds; a policy it
//! accepts retries at most `max_attempts` times, never waits longer than
//! its caps, and never panics (no overflow of a sleep's instant, no NaN
//! delay).
//!
//! Cases per property: 256 (`PROPTEST_CASES` overrides).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use battlement_core::{BoxError, Failure, FailureKind, InvalidConfig, Outcome};
use battlement_retry::{Backoff, Jitter, RetryBudget, RetryPolicy, SeededRandom};
use proptest::prelude::*;
use tower::{Layer, ServiceExt, service_fn};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig::with_cases(cases)
}

fn hostile_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(60)),
        Just(Duration::from_secs(61)),
        Just(Duration::from_secs(u64::MAX)),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_secs),
        (0u64..120_000).prop_map(Duration::from_millis),
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
        Just(1.0),
        Just(1000.0),
        Just(1_000.000_000_1),
        Just(f64::MAX),
        Just(-1.0),
        0.0f64..=4.0,
        any::<f64>(),
    ]
}

fn hostile_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(100),
        Just(101),
        Just(i32::MAX as u32),
        Just(i32::MAX as u32 + 1),
        Just(u32::MAX),
        any::<u32>(),
        1u32..8,
    ]
}

#[derive(Debug, Clone)]
struct BackoffSpec {
    shape: u8,
    base: Duration,
    multiplier: Option<f64>,
    max: Option<Duration>,
    jitter: u8,
}

fn backoff() -> impl Strategy<Value = BackoffSpec> {
    (
        0u8..4,
        hostile_duration(),
        proptest::option::of(hostile_f64()),
        proptest::option::of(hostile_duration()),
        0u8..3,
    )
        .prop_map(|(shape, base, multiplier, max, jitter)| BackoffSpec {
            shape,
            base,
            multiplier,
            max,
            jitter,
        })
}

impl BackoffSpec {
    fn make(&self) -> Backoff {
        let mut b = match self.shape {
            0 => Backoff::none(),
            1 => Backoff::constant(self.base),
            2 => Backoff::exponential(self.base),
            _ => Backoff::decorrelated(self.base),
        };
        if let Some(m) = self.multiplier {
            b = b.multiplier(m);
        }
        if let Some(m) = self.max {
            b = b.max(m);
        }
        b.jitter(match self.jitter {
            0 => Jitter::None,
            1 => Jitter::Full,
            _ => Jitter::Equal,
        })
    }
}

#[derive(Debug, Clone)]
struct BudgetSpec {
    ratio: Option<f64>,
    min_per_sec: Option<u32>,
    ttl: Option<Duration>,
}

fn budget() -> impl Strategy<Value = BudgetSpec> {
    (
        proptest::option::of(hostile_f64()),
        proptest::option::of(hostile_u32()),
        proptest::option::of(hostile_duration()),
    )
        .prop_map(|(ratio, min_per_sec, ttl)| BudgetSpec {
            ratio,
            min_per_sec,
            ttl,
        })
}

impl BudgetSpec {
    fn build(&self) -> Result<RetryBudget, InvalidConfig> {
        let mut b = RetryBudget::builder();
        if let Some(r) = self.ratio {
            b = b.ratio(r);
        }
        if let Some(n) = self.min_per_sec {
            b = b.min_per_sec(n);
        }
        if let Some(t) = self.ttl {
            b = b.ttl(t);
        }
        b.build()
    }

    fn valid(&self) -> bool {
        self.ratio
            .is_none_or(|r| r.is_finite() && (0.0..=1000.0).contains(&r))
            && self.min_per_sec.is_none_or(|n| n <= i32::MAX as u32)
            && self
                .ttl
                .is_none_or(|t| (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&t))
    }
}

fn assert_names_field(e: &InvalidConfig, fields: &[&str]) {
    assert!(fields.contains(&e.field), "unexpected field in {e}");
    assert!(e.to_string().contains(&format!("`{}`", e.field)), "{e}");
}

proptest! {
    #![proptest_config(config())]

    /// A budget with any numbers: refused naming the field exactly when
    /// a bound is broken; accepted, it withdraws and deposits without a
    /// panic and never allows more than it was given.
    #[test]
    fn budget_any_numbers(spec in budget(), requests in 0u32..50, retries in 0u32..200) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let built = rt.block_on(async { spec.build() });
        match built {
            Err(e) => {
                assert_names_field(&e, &["ratio", "min_per_sec", "ttl"]);
                prop_assert!(!spec.valid(), "refused a valid budget: {}", e);
            }
            Ok(b) => {
                prop_assert!(spec.valid(), "accepted {:?}", spec);
                rt.block_on(async {
                    for _ in 0..requests {
                        b.deposit();
                    }
                    let mut allowed = 0u64;
                    for _ in 0..retries {
                        allowed += u64::from(b.withdraw());
                    }
                    prop_assert_eq!(b.retries_allowed(), allowed);
                    prop_assert_eq!(b.retries_denied(), u64::from(retries) - allowed);
                    // The floor over the ttl plus the ratio of requests.
                    let ratio = spec.ratio.unwrap_or(0.2);
                    let floor = u64::from(spec.min_per_sec.unwrap_or(10))
                        * spec.ttl.unwrap_or(Duration::from_secs(10)).as_secs();
                    let bound = floor + (ratio * f64::from(requests)).ceil() as u64;
                    prop_assert!(allowed <= bound, "{} > {}", allowed, bound);
                    Ok(())
                })?;
            }
        }
    }

    /// A policy with any numbers: refused naming the field, or a layer
    /// that makes at most `max_attempts` attempts against a service that
    /// always fails (with any retry-after), with no panic whatever the
    /// delays, and ends with the service's error or `RetriesExhausted`.
    #[test]
    fn policy_any_numbers(
        max_attempts in proptest::option::of(hostile_u32()),
        per_kind in proptest::option::of(hostile_u32()),
        base_for in proptest::option::of(hostile_duration()),
        spec in backoff(),
        max_retry_after in proptest::option::of(hostile_duration()),
        min_time_left in proptest::option::of(hostile_duration()),
        budget in proptest::option::of(budget()),
        retry_after in proptest::option::of(hostile_duration()),
        seed in any::<u64>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let _guard = rt.enter();
        let classify = move |_: &Result<(), BoxError>| -> Outcome {
            Failure::new(FailureKind::Unavailable).retryable(true).with_retry_after(retry_after).into()
        };
        let mut b = RetryPolicy::builder()
            .classifier(classify)
            .backoff(spec.make())
            .random(SeededRandom::new(seed));
        if let Some(n) = max_attempts {
            b = b.max_attempts(n);
        }
        if let Some(n) = per_kind {
            b = b.max_attempts_for(FailureKind::Unavailable, n);
        }
        if let Some(d) = base_for {
            b = b.base_delay_for(FailureKind::Unavailable, d);
        }
        if let Some(d) = max_retry_after {
            b = b.max_retry_after(d);
        }
        if let Some(d) = min_time_left {
            b = b.min_time_left(d);
        }
        let mut with_budget = false;
        if let Some(spec) = &budget {
            match spec.build() {
                Ok(budget) => {
                    b = b.budget(budget);
                    with_budget = true;
                }
                Err(e) => assert_names_field(&e, &["ratio", "min_per_sec", "ttl"]),
            }
        }
        let policy = match b.build() {
            Ok(p) => p,
            Err(e) => {
                assert_names_field(
                    &e,
                    &["max_attempts", "max_attempts_for", "backoff.multiplier", "backoff.base", "backoff.max"],
                );
                let attempts_bad = max_attempts.is_some_and(|n| !(1..=100).contains(&n))
                    || per_kind.is_some_and(|n| !(1..=100).contains(&n));
                let made = spec.make();
                let m = spec.multiplier.unwrap_or(2.0);
                let below = made.max_delay() < made.base();
                let backoff_bad = match spec.shape {
                    2 => !(m.is_finite() && m >= 1.0) || below,
                    3 => spec.base.is_zero() || below,
                    _ => false,
                };
                prop_assert!(attempts_bad || backoff_bad, "refused a valid policy: {}", e);
                return Ok(());
            }
        };
        prop_assert!(max_attempts.is_none_or(|n| (1..=100).contains(&n)));
        prop_assert!(per_kind.is_none_or(|n| (1..=100).contains(&n)));
        let limit = per_kind.or(max_attempts).unwrap_or(3);

        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let svc = policy.layer().layer(service_fn(move |()| {
            counted.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), BoxError>(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into()) }
        }));
        let res = rt.block_on(svc.oneshot(()));
        let made = calls.load(Ordering::Relaxed);
        prop_assert!(res.is_err());
        prop_assert!((1..=limit).contains(&made), "{} attempts, limit {}", made, limit);
        // Without a budget or a retry-after to refuse, every attempt is
        // made.
        let too_long = retry_after.is_some_and(|r| r > max_retry_after.unwrap_or(Duration::from_secs(30)));
        if !with_budget && !too_long {
            prop_assert_eq!(made, limit);
        }
    }
}
