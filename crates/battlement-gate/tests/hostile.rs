//! Hostile configuration and signals for the gate crate: `Gate::builder`
//! (`retry_after`, `shed_event_interval`), the governor (step
//! thresholds, interval, dwell) and the adaptive throttle (`k`,
//! `max_probability`, window, buckets, a random source out of range)
//! with arbitrary numbers (0, NaN, infinities, `Duration::MAX`). `build()`
//! answers an `InvalidConfig` naming the field exactly when a documented
//! bound is broken; what it accepts runs without a panic: a governor fed
//! NaN, infinite or huge samples at any instants moves the level at most
//! one step per tick, and a throttle's probability stays in
//! `[0, max_probability]`.
//!
//! Cases per property: 256 (`PROPTEST_CASES` overrides).

use std::time::Duration;

use battlement_core::{InvalidConfig, Level};
use battlement_gate::{AdaptiveThrottle, Gate, Rule, Signal};
use proptest::prelude::*;
use tokio::time::Instant;

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
        Just(Duration::from_secs(3600)),
        Just(Duration::from_secs(3600) + Duration::from_nanos(1)),
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
        Just(1.0 + f64::EPSILON),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(-1.0),
        0.0f64..=1.0,
        0.0f64..=4.0,
        any::<f64>(),
    ]
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![
        Just(Level::Normal),
        Just(Level::Minimal),
        Just(Level::Moderate),
        Just(Level::Severe),
        Just(Level::Critical),
    ]
}

fn assert_names_field(e: &InvalidConfig, fields: &[&str]) {
    assert!(fields.contains(&e.field), "unexpected field in {e}");
    assert!(e.to_string().contains(&format!("`{}`", e.field)), "{e}");
}

/// A signal that plays back hostile samples.
struct Playback {
    values: Vec<f64>,
    i: usize,
}

impl Signal for Playback {
    fn name(&self) -> &str {
        "playback"
    }
    fn sample(&mut self, _now: Instant) -> f64 {
        let v = self.values[self.i % self.values.len()];
        self.i += 1;
        v
    }
}

fn rank(l: Level) -> i32 {
    match l {
        Level::Normal => 0,
        Level::Minimal => 1,
        Level::Moderate => 2,
        Level::Severe => 3,
        _ => 4,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn gate_builder_any_numbers(
        retry_after in proptest::option::of(hostile_duration()),
        interval in proptest::option::of(hostile_duration()),
    ) {
        let mut b = Gate::builder("hostile").retry_after(retry_after);
        if let Some(i) = interval {
            b = b.shed_event_interval(i);
        }
        match b.build() {
            Err(e) => {
                assert_names_field(&e, &["retry_after", "shed_event_interval"]);
                let too_long = retry_after.is_some_and(|d| d > Duration::from_secs(3600));
                prop_assert!(too_long || interval.is_some(), "{}", e);
            }
            Ok(gate) => {
                prop_assert!(retry_after.is_none_or(|d| d <= Duration::from_secs(3600)));
                gate.set_level(Level::Critical);
                prop_assert_eq!(gate.level(), Level::Critical);
            }
        }
    }

    /// Governor steps and timings with any numbers, then samples that
    /// are NaN, infinite or huge at steps of any size: refused naming
    /// the field, or at most one level per tick and no panic.
    #[test]
    fn governor_any_numbers(
        steps in proptest::collection::vec((level(), hostile_f64(), hostile_f64()), 0..4),
        interval in proptest::option::of(hostile_duration()),
        min_dwell in proptest::option::of(hostile_duration()),
        max_dwell in proptest::option::of(hostile_duration()),
        samples in proptest::collection::vec(hostile_f64(), 1..12),
        gaps in proptest::collection::vec(hostile_duration(), 1..12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let _guard = rt.enter();
        let gate = Gate::new("hostile");
        let mut rule = Rule::new(Playback { values: samples.clone(), i: 0 });
        for (l, raise, recover) in &steps {
            rule = rule.step(*l, *raise, *recover);
        }
        let mut b = gate.governor().rule(rule);
        if let Some(d) = interval {
            b = b.interval(d);
        }
        if let Some(d) = min_dwell {
            b = b.min_dwell(d);
        }
        if let Some(d) = max_dwell {
            b = b.max_dwell(d);
        }
        let mut governor = match b.build() {
            Err(e) => {
                assert_names_field(&e, &[
                    "interval", "max_dwell", "rule.steps", "rule.step", "rule.step.level",
                    "rule.step.recover_below", "rule.step.raise_at",
                ]);
                let finite = steps.iter().all(|(_, a, b)| a.is_finite() && b.is_finite());
                let ordered = steps.windows(2).all(|w| {
                    w[0].0 < w[1].0 && w[0].1 <= w[1].1 && w[0].2 <= w[1].2
                });
                let sane = steps.iter().all(|(l, a, b)| *l != Level::Normal && b <= a);
                let dwell = min_dwell.unwrap_or(Duration::from_secs(30));
                let max_ok = max_dwell.is_none_or(|m| m >= dwell);
                prop_assert!(
                    steps.is_empty() || !finite || !ordered || !sane
                        || interval == Some(Duration::ZERO) || !max_ok,
                    "refused a valid governor: {}", e
                );
                return Ok(());
            }
            Ok(g) => g,
        };
        prop_assert!(!steps.is_empty());
        prop_assert!(steps.iter().all(|(_, a, b)| a.is_finite() && b.is_finite() && b <= a));
        let mut now = Instant::now();
        for gap in &gaps {
            let before = gate.level();
            now = now.checked_add(*gap).unwrap_or(now);
            governor.evaluate(now);
            let after = gate.level();
            prop_assert!((rank(after) - rank(before)).abs() <= 1, "{:?} -> {:?}", before, after);
        }
    }

    /// The adaptive throttle with any numbers and a random source that
    /// answers out of range: refused naming the field, or a probability
    /// in `[0, max_probability]` whatever the history.
    #[test]
    fn throttle_any_numbers(
        k in proptest::option::of(hostile_f64()),
        max_p in proptest::option::of(hostile_f64()),
        window in proptest::option::of(hostile_duration()),
        buckets in proptest::option::of(prop_oneof![Just(0usize), Just(1), Just(1000), Just(1001), Just(usize::MAX), 0usize..20]),
        random in hostile_f64(),
        history in proptest::collection::vec(any::<bool>(), 0..200),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let _guard = rt.enter();
        let mut b = AdaptiveThrottle::builder("hostile").random(move || random);
        if let Some(k) = k {
            b = b.k(k);
        }
        if let Some(p) = max_p {
            b = b.max_probability(p);
        }
        if let Some(w) = window {
            b = b.window(w);
        }
        if let Some(n) = buckets {
            b = b.buckets(n);
        }
        let throttle = match b.build() {
            Err(e) => {
                assert_names_field(&e, &["k", "max_probability", "window", "buckets"]);
                let k_bad = k.is_some_and(|k| !(k.is_finite() && k >= 1.0));
                let p_bad = max_p.is_some_and(|p| !(0.0..=1.0).contains(&p));
                let n_bad = buckets.is_some_and(|n| !(1..=1000).contains(&n));
                let n = buckets.unwrap_or(10) as u128;
                let w_bad = window.is_some_and(|w| n == 0 || w.as_nanos() / n.max(1) == 0);
                prop_assert!(k_bad || p_bad || n_bad || w_bad, "refused a valid throttle: {}", e);
                return Ok(());
            }
            Ok(t) => t,
        };
        let cap = max_p.unwrap_or(0.9);
        for accepted in history {
            if throttle.try_acquire().is_ok() {
                throttle.record(accepted);
            }
            let p = throttle.probability();
            prop_assert!((0.0..=cap).contains(&p), "probability {} outside [0, {}]", p, cap);
        }
    }
}
