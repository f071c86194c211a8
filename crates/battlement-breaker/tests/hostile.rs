//! Hostile configuration: every setter of `Breaker::builder` with
//! arbitrary numbers (0, `u32::MAX`, NaN, infinities, subnormals,
//! `Duration::MAX`). `build()` answers an `InvalidConfig` naming the
//! field, and accepts only settings within the documented bounds; a
//! breaker it accepts, however extreme, trips, stays open no longer than
//! configured, probes and closes without a panic (no overflow of
//! `now + open_duration`, no NaN rate).
//!
//! Cases per property: 256 (`PROPTEST_CASES` overrides).

use std::time::Duration;

use battlement_breaker::{Breaker, BreakerBuilder, BreakerService, CircuitState};
use battlement_core::{BoxError, CircuitOpen, InvalidConfig};
use proptest::prelude::*;
use tower::{Service, ServiceExt, service_fn};

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
        Just(Duration::from_secs(u64::MAX)),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_secs),
        (1u64..120_000).prop_map(Duration::from_millis),
        (1u64..120_000).prop_map(Duration::from_millis),
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
        Just(1.0 + f64::EPSILON),
        Just(f64::MAX),
        Just(-1.0),
        0.0f64..=1.0,
        1.0f64..=4.0,
        any::<f64>(),
    ]
}

fn hostile_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(u32::MAX),
        Just(65_535),
        Just(65_536),
        Just(100_000),
        Just(100_001),
        any::<u32>(),
        1u32..40,
    ]
}

/// One builder call, with its numbers.
#[derive(Debug, Clone)]
enum Set {
    Consecutive(u32),
    FailureRate(f64),
    NoFailureRate,
    SlowCalls(Duration, f64),
    CountWindow(u32),
    TimeWindow(Duration, u32),
    MinimumCalls(u32),
    OpenFixed(Duration),
    OpenExponential(Duration, f64, Duration),
    PermittedProbes(u32),
    MaxConcurrentProbes(u32),
    SuccessThreshold(u32),
    MaxHalfOpenWait(Duration),
}

fn set() -> impl Strategy<Value = Set> {
    prop_oneof![
        hostile_u32().prop_map(Set::Consecutive),
        hostile_f64().prop_map(Set::FailureRate),
        Just(Set::NoFailureRate),
        (hostile_duration(), hostile_f64()).prop_map(|(d, r)| Set::SlowCalls(d, r)),
        hostile_u32().prop_map(Set::CountWindow),
        (hostile_duration(), hostile_u32()).prop_map(|(d, b)| Set::TimeWindow(d, b)),
        hostile_u32().prop_map(Set::MinimumCalls),
        hostile_duration().prop_map(Set::OpenFixed),
        (hostile_duration(), hostile_f64(), hostile_duration())
            .prop_map(|(b, m, x)| Set::OpenExponential(b, m, x)),
        hostile_u32().prop_map(Set::PermittedProbes),
        hostile_u32().prop_map(Set::MaxConcurrentProbes),
        hostile_u32().prop_map(Set::SuccessThreshold),
        hostile_duration().prop_map(Set::MaxHalfOpenWait),
    ]
}

const FIELDS: &[&str] = &[
    "consecutive_failures",
    "failure_rate",
    "slow_call_duration",
    "slow_call_rate",
    "window_size",
    "window_duration",
    "window_buckets",
    "minimum_calls",
    "open_duration",
    "open_duration_base",
    "open_duration_multiplier",
    "open_duration_max",
    "permitted_probes",
    "max_concurrent_probes",
    "success_threshold",
    "max_half_open_wait",
];

/// What the settings are after the calls, as the builder documents its
/// defaults; `None` where unset.
#[derive(Debug, Default)]
struct Settled {
    consecutive: Option<u32>,
    rate: Option<f64>,
    rule_named: bool,
    slow: Option<(Duration, f64)>,
    count: Option<u32>,
    time: Option<(Duration, u32)>,
    minimum: Option<u32>,
    open: Option<Set>,
    permitted: Option<u32>,
    concurrent: Option<u32>,
    threshold: Option<u32>,
    wait: Option<Duration>,
}

fn settle(sets: &[Set]) -> Settled {
    let mut s = Settled::default();
    for x in sets {
        match x.clone() {
            Set::Consecutive(n) => (s.consecutive, s.rule_named) = (Some(n), true),
            Set::FailureRate(r) => (s.rate, s.rule_named) = (Some(r), true),
            Set::NoFailureRate => (s.rate, s.rule_named) = (None, true),
            Set::SlowCalls(d, r) => (s.slow, s.rule_named) = (Some((d, r)), true),
            Set::CountWindow(n) => (s.count, s.time) = (Some(n), None),
            Set::TimeWindow(d, b) => (s.time, s.count) = (Some((d, b)), None),
            Set::MinimumCalls(n) => s.minimum = Some(n),
            o @ (Set::OpenFixed(_) | Set::OpenExponential(..)) => s.open = Some(o),
            Set::PermittedProbes(n) => s.permitted = Some(n),
            Set::MaxConcurrentProbes(n) => s.concurrent = Some(n),
            Set::SuccessThreshold(n) => s.threshold = Some(n),
            Set::MaxHalfOpenWait(d) => s.wait = Some(d),
        }
    }
    s
}

fn unit(r: f64) -> bool {
    r > 0.0 && r <= 1.0
}

impl Settled {
    /// Whether every setting is within the bounds the builder documents.
    fn valid(&self) -> bool {
        let rate = if self.rule_named {
            self.rate
        } else {
            Some(BreakerBuilder::DEFAULT_FAILURE_RATE)
        };
        let minimum = self.minimum.unwrap_or(20);
        let window_ok = match (self.count, self.time) {
            (_, Some((d, b))) => {
                !d.is_zero() && (1..=1000).contains(&b) && d.as_nanos() >= u128::from(b)
            }
            (n, None) => {
                let n = n.unwrap_or(100);
                (1..=100_000).contains(&n) && minimum <= n
            }
        };
        let open_ok = match &self.open {
            None => true,
            Some(Set::OpenFixed(d)) => !d.is_zero(),
            Some(Set::OpenExponential(b, m, x)) => {
                !b.is_zero() && m.is_finite() && *m >= 1.0 && x >= b
            }
            Some(_) => unreachable!(),
        };
        let permitted = self.permitted.unwrap_or(1);
        let threshold = self.threshold.unwrap_or(1);
        self.consecutive != Some(0)
            && rate.is_none_or(unit)
            && self.slow.is_none_or(|(d, r)| !d.is_zero() && unit(r))
            && window_ok
            && minimum >= 1
            && open_ok
            && (1..=65_535).contains(&permitted)
            && self.concurrent.is_none_or(|n| (1..=65_535).contains(&n))
            && (1..=permitted).contains(&threshold)
            && self.wait.is_none_or(|d| !d.is_zero())
    }

    /// The longest a first open may last.
    fn first_open(&self) -> Duration {
        match &self.open {
            None => Duration::from_secs(5),
            Some(Set::OpenFixed(d)) => *d,
            Some(Set::OpenExponential(b, ..)) => *b,
            Some(_) => unreachable!(),
        }
    }
}

fn build(sets: &[Set]) -> Result<Breaker, InvalidConfig> {
    let mut b = Breaker::builder("hostile");
    for x in sets {
        b = match x.clone() {
            Set::Consecutive(n) => b.consecutive_failures(n),
            Set::FailureRate(r) => b.failure_rate(r),
            Set::NoFailureRate => b.no_failure_rate(),
            Set::SlowCalls(d, r) => b.slow_calls(d, r),
            Set::CountWindow(n) => b.count_window(n),
            Set::TimeWindow(d, n) => b.time_window(d, n),
            Set::MinimumCalls(n) => b.minimum_calls(n),
            Set::OpenFixed(d) => b.open_duration(d),
            Set::OpenExponential(base, m, max) => b.exponential_open(base, m, max),
            Set::PermittedProbes(n) => b.permitted_probes(n),
            Set::MaxConcurrentProbes(n) => b.max_concurrent_probes(n),
            Set::SuccessThreshold(n) => b.success_threshold(n),
            Set::MaxHalfOpenWait(d) => b.max_half_open_wait(d),
        };
    }
    b.build()
}

type Call = std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

fn inner(fail: bool) -> Call {
    Box::pin(async move {
        if fail {
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
        } else {
            Ok(())
        }
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_numbers_build_or_name_the_field(sets in proptest::collection::vec(set(), 0..6)) {
        let settled = settle(&sets);
        // Built on the paused runtime, so the breaker's clock is tokio's.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let built = rt.block_on(async { build(&sets) });
        let breaker = match built {
            Err(e) => {
                prop_assert!(FIELDS.contains(&e.field), "{}", e);
                let text = e.to_string();
                prop_assert!(text.contains(&format!("`{}`", e.field)), "{}", text);
                prop_assert!(!settled.valid(), "refused a valid config: {} for {:?}", text, sets);
                return Ok(());
            }
            Ok(b) => b,
        };
        prop_assert!(settled.valid(), "accepted an invalid config: {:?}", settled);

        // Drive it: failures until it trips (or 300 calls), the wait,
        // then successes until it closes. Paused time, so a long open
        // duration costs nothing but the arithmetic.
        rt.block_on(async {
            let mut svc = BreakerService::new(service_fn(inner as fn(bool) -> Call), breaker.clone());
            let mut calls = 0;
            while breaker.state() == CircuitState::Closed && calls < 300 {
                let _ = svc.ready().await.unwrap().call(true).await;
                calls += 1;
            }
            if let Some(n) = settled.consecutive
                && n <= 300
            {
                prop_assert_eq!(breaker.state(), CircuitState::Open, "after {} failures in a row", calls);
                prop_assert!(calls <= n);
            }
            if breaker.state() != CircuitState::Open {
                return Ok(());
            }
            let first_open = settled.first_open();
            let left = breaker.open_remaining().expect("open has a remaining time");
            prop_assert!(left <= first_open, "{:?} > {:?}", left, first_open);
            // Refused at once while open.
            let err = svc.ready().await.unwrap().call(false).await.unwrap_err();
            prop_assert!(err.is::<CircuitOpen>(), "{}", err);
            if left > Duration::from_secs(86_400 * 365) {
                return Ok(());
            }
            tokio::time::advance(left).await;
            for _ in 0..settled.threshold.unwrap_or(1).min(64) {
                let _ = svc.ready().await.unwrap().call(false).await;
            }
            if settled.threshold.unwrap_or(1) <= 64 && settled.concurrent.is_none() {
                prop_assert_eq!(breaker.state(), CircuitState::Closed);
            }
            Ok(())
        })?;
    }
}

/// Found by `any_numbers_build_or_name_the_field`: an exponential open
/// duration went through `f64` even for the first open, and a large
/// base came back longer than configured (16859203.890207125 s opened
/// for 16859203.890207127 s). The first open is `base` exactly, and no
/// later one is shorter than `base` or longer than `max`.
#[test]
fn exponential_open_is_exact_at_its_base() {
    use battlement_breaker::OpenDuration;
    let base = Duration::new(16_859_203, 890_207_125);
    for multiplier in [1.0, 1.000_000_1, 2.0, f64::MAX] {
        let open = OpenDuration::Exponential {
            base,
            multiplier,
            max: Duration::MAX,
        };
        assert_eq!(open.after(0), base, "{multiplier}");
        for n in [1, 2, 10, u32::MAX] {
            assert!(open.after(n) >= base, "{multiplier} {n}");
        }
    }
    // A hand-made value with `max` below `base`: `max`, no panic.
    let odd = OpenDuration::Exponential {
        base: Duration::from_secs(10),
        multiplier: 2.0,
        max: Duration::from_secs(1),
    };
    assert_eq!(odd.after(0), Duration::from_secs(1));
    assert_eq!(odd.after(3), Duration::from_secs(1));
}
