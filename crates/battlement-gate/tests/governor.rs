//! The governor on paused time: escalation, recovery after dwell, no
//! flapping, manual override, the spawned loop, and its invariants.
#![cfg(feature = "http")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use battlement_core::{
    BoxError, Component, ComponentHealth, ComponentKind, EventKind, EventLog, HealthStatus,
};
use battlement_gate::{Gate, Level, OpenBreakers, Priority, Rule, Signal, signal_fn};
use proptest::prelude::*;
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};

const SEC: Duration = Duration::from_secs(1);

/// A signal whose value the test sets.
#[derive(Clone, Default)]
struct Knob(Arc<AtomicU64>);

impl Knob {
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), SeqCst);
    }
    fn signal(&self) -> impl Signal + use<> {
        let k = self.0.clone();
        signal_fn("knob", move |_| f64::from_bits(k.load(SeqCst)))
    }
}

fn rule(signal: impl Signal) -> Rule {
    Rule::new(signal)
        .step(Level::Minimal, 0.05, 0.02)
        .step(Level::Moderate, 0.20, 0.10)
        .step(Level::Severe, 0.50, 0.30)
}

#[tokio::test(start_paused = true)]
async fn escalates_as_the_error_rate_climbs_and_recovers_after_dwell() {
    let log = EventLog::new();
    let gate = Gate::builder("api").events(log.sink()).build().unwrap();
    let mut governor = gate
        .governor()
        .interval(SEC)
        .min_dwell(Duration::from_secs(10))
        .rule(rule(gate.error_rate_signal()))
        .build()
        .unwrap();
    let fail = Arc::new(AtomicU64::new(0)); // failures per 100 calls
    let f = fail.clone();
    let n = Arc::new(AtomicU64::new(0));
    let mut svc = gate.layer().layer(service_fn(move |_: http::Request<()>| {
        let i = n.fetch_add(1, SeqCst) % 100;
        let fail = i < f.load(SeqCst);
        async move {
            if fail {
                Err::<(), BoxError>("boom".into())
            } else {
                Ok(())
            }
        }
    }));
    let critical = || {
        let mut r = http::Request::new(());
        r.extensions_mut().insert(Priority::Critical);
        r
    };
    let mut drive = async |ticks: usize, rate: u64, governor: &mut battlement_gate::Governor| {
        fail.store(rate, SeqCst);
        let mut levels = Vec::new();
        for _ in 0..ticks {
            for _ in 0..100 {
                let _ = svc.ready().await.unwrap().call(critical()).await;
            }
            advance(SEC).await;
            governor.tick();
            levels.push(gate.level());
        }
        levels
    };

    assert_eq!(drive(3, 1, &mut governor).await, [Level::Normal; 3]);
    // 30% errors: one step per tick, up to Moderate (Severe needs 50%).
    assert_eq!(
        drive(3, 30, &mut governor).await,
        [Level::Minimal, Level::Moderate, Level::Moderate]
    );
    assert!(gate.reason().starts_with("error_rate 0.300 >= 0.2"));
    // Healthy again: nothing moves before the dwell (10 s of calm, from
    // the first calm tick).
    let levels = drive(11, 0, &mut governor).await;
    assert_eq!(&levels[..10], [Level::Moderate; 10]);
    assert_eq!(levels[10], Level::Minimal);
    // The dwell starts again for the next step down.
    let levels = drive(10, 0, &mut governor).await;
    assert_eq!(&levels[..9], [Level::Minimal; 9]);
    assert_eq!(levels[9], Level::Normal);
    assert_eq!(gate.changes(), 4);
    let changes: Vec<(Level, Level)> = log
        .kinds()
        .into_iter()
        .filter_map(|k| match k {
            EventKind::LevelChanged { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (Level::Normal, Level::Minimal),
            (Level::Minimal, Level::Moderate),
            (Level::Moderate, Level::Minimal),
            (Level::Minimal, Level::Normal),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn recovery_needs_every_signal_calm_for_the_whole_dwell() {
    let gate = Gate::new("api");
    let (a, b) = (Knob::default(), Knob::default());
    let mut governor = gate
        .governor()
        .min_dwell(Duration::from_secs(5))
        .rule(rule(a.signal()))
        .rule(rule(b.signal()))
        .build()
        .unwrap();
    a.set(0.25);
    governor.tick();
    governor.tick();
    assert_eq!(gate.level(), Level::Moderate);
    a.set(0.0);
    b.set(0.15); // holds Moderate (above its 0.10 recovery threshold)
    for _ in 0..20 {
        advance(SEC).await;
        assert_eq!(governor.tick(), None);
    }
    b.set(0.05);
    for _ in 0..4 {
        advance(SEC).await;
        governor.tick();
    }
    // One blip above the threshold restarts the dwell.
    b.set(0.12);
    advance(SEC).await;
    governor.tick();
    b.set(0.0);
    for _ in 0..5 {
        advance(SEC).await;
        governor.tick();
    }
    assert_eq!(gate.level(), Level::Moderate);
    advance(SEC).await;
    assert_eq!(governor.tick(), Some(Level::Minimal));
    assert_eq!(
        governor.samples().collect::<Vec<_>>(),
        [("knob", 0.0), ("knob", 0.0)]
    );
}

#[tokio::test(start_paused = true)]
async fn no_flapping_around_a_threshold() {
    let gate = Gate::new("api");
    let knob = Knob::default();
    let mut governor = gate
        .governor()
        .min_dwell(Duration::from_secs(5))
        .rule(rule(knob.signal()))
        .build()
        .unwrap();
    // Oscillating around the Moderate raise threshold (0.20): one raise to
    // Minimal, one to Moderate, then it holds.
    for i in 0..200 {
        knob.set(if i % 2 == 0 { 0.21 } else { 0.19 });
        advance(SEC).await;
        governor.tick();
    }
    assert_eq!(gate.level(), Level::Moderate);
    assert_eq!(gate.changes(), 2);
    // Oscillating around its recovery threshold (0.10): never calm for 5 s.
    for i in 0..200 {
        knob.set(if i % 3 == 0 { 0.11 } else { 0.09 });
        advance(SEC).await;
        governor.tick();
    }
    assert_eq!(gate.level(), Level::Moderate);
    assert_eq!(gate.changes(), 2);
}

#[tokio::test(start_paused = true)]
async fn manual_level_overrides_until_released() {
    let gate = Gate::new("api");
    let knob = Knob::default();
    let mut governor = gate
        .governor()
        .min_dwell(Duration::from_secs(3))
        .rule(rule(knob.signal()))
        .build()
        .unwrap();
    knob.set(0.9);
    gate.set_level(Level::Normal);
    for _ in 0..10 {
        advance(SEC).await;
        assert_eq!(governor.tick(), None);
    }
    assert_eq!(gate.level(), Level::Normal);
    gate.set_level(Level::Critical);
    knob.set(0.0);
    for _ in 0..10 {
        advance(SEC).await;
        governor.tick();
    }
    assert_eq!(gate.level(), Level::Critical);
    // Released: the governor takes it from Critical, one step per dwell.
    gate.release();
    let mut levels = Vec::new();
    for _ in 0..6 {
        advance(SEC).await;
        governor.tick();
        levels.push(gate.level());
    }
    assert_eq!(
        levels,
        [
            Level::Critical,
            Level::Critical,
            Level::Critical,
            Level::Severe,
            Level::Severe,
            Level::Severe
        ]
    );
    assert!(gate.reason().contains("recovery threshold"));
}

#[tokio::test(start_paused = true)]
async fn spawned_loop_ticks_on_its_interval() {
    let gate = Gate::new("api");
    let knob = Knob::default();
    knob.set(0.6);
    let governor = gate
        .governor()
        .interval(Duration::from_secs(2))
        .min_dwell(Duration::from_secs(4))
        .rule(rule(knob.signal()))
        .build()
        .unwrap();
    let task = tokio::spawn(governor.run());
    tokio::task::yield_now().await; // first tick at once
    assert_eq!(gate.level(), Level::Minimal);
    advance(Duration::from_secs(2)).await;
    tokio::task::yield_now().await;
    assert_eq!(gate.level(), Level::Moderate);
    advance(Duration::from_secs(2)).await;
    tokio::task::yield_now().await;
    assert_eq!(gate.level(), Level::Severe);
    knob.set(0.0);
    // Calm from the tick at 6 s; lowered at the tick 4 s later.
    for _ in 0..2 {
        advance(Duration::from_secs(2)).await;
        tokio::task::yield_now().await;
        assert_eq!(gate.level(), Level::Severe);
    }
    advance(Duration::from_secs(2)).await;
    tokio::task::yield_now().await;
    assert_eq!(gate.level(), Level::Moderate);
    task.abort();
}

struct FakeBreaker(&'static str, Arc<AtomicBool>);

impl Component for FakeBreaker {
    fn name(&self) -> &str {
        self.0
    }
    fn kind(&self) -> ComponentKind {
        ComponentKind::Breaker
    }
    fn health(&self) -> ComponentHealth {
        let open = self.1.load(SeqCst);
        ComponentHealth::new(HealthStatus::Healthy)
            .detail("state", if open { "open" } else { "closed" })
    }
}

#[tokio::test(start_paused = true)]
async fn open_breakers_signal() {
    let flags: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::default()).collect();
    let names = ["a", "b", "c"];
    let comps: Vec<Arc<dyn Component>> = flags
        .iter()
        .zip(names)
        .map(|(f, n)| Arc::new(FakeBreaker(n, f.clone())) as Arc<dyn Component>)
        .chain([Arc::new(Gate::new("not-a-breaker")) as Arc<dyn Component>])
        .collect();
    let mut signal = OpenBreakers::new(comps.clone());
    let now = Instant::now();
    assert_eq!(signal.sample(now), 0.0);
    flags[0].store(true, SeqCst);
    flags[2].store(true, SeqCst);
    assert_eq!(signal.sample(now), 2.0);
    let mut by_fn = OpenBreakers::from_fn(move || comps.clone());
    assert_eq!(by_fn.sample(now), 2.0);

    let gate = Gate::new("api");
    let mut governor = gate
        .governor()
        .rule(Rule::new(signal).step(Level::Moderate, 2.0, 1.0))
        .build()
        .unwrap();
    governor.tick();
    assert_eq!(gate.level(), Level::Minimal);
    assert!(gate.reason().starts_with("open_breakers 2.000 >= 2"));
}

#[test]
fn invalid_governor_config() {
    let gate = Gate::new("g");
    let err = gate.governor().build().unwrap_err();
    assert_eq!(err.field, "rules");
    let k = Knob::default();
    let err = gate
        .governor()
        .interval(Duration::ZERO)
        .rule(rule(k.signal()))
        .build()
        .unwrap_err();
    assert_eq!(err.field, "interval");
    let bad = [
        Rule::new(k.signal()),
        Rule::new(k.signal()).step(Level::Normal, 1.0, 0.5),
        Rule::new(k.signal()).step(Level::Minimal, 0.5, 0.6),
        Rule::new(k.signal())
            .step(Level::Moderate, 0.5, 0.1)
            .step(Level::Minimal, 0.6, 0.2),
        Rule::new(k.signal())
            .step(Level::Minimal, 0.5, 0.1)
            .step(Level::Moderate, 0.4, 0.2),
        Rule::new(k.signal()).step(Level::Minimal, f64::NAN, 0.1),
    ];
    for r in bad {
        let dbg = format!("{r:?}");
        let err = gate.governor().rule(r).build().unwrap_err();
        assert_eq!(err.component, "governor", "{dbg}");
        assert!(err.field.starts_with("rule"), "{dbg}: {err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the signal does: at most one step per tick, up only when the
    /// signal reached a higher level's raise threshold, down only after
    /// `dwell` ticks in a row below the current level's recovery threshold.
    #[test]
    fn one_step_at_a_time_with_dwell(values in proptest::collection::vec(0.0f64..0.7, 1..120), dwell in 0u64..6) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let gate = Gate::new("p");
            let knob = Knob::default();
            let mut governor = gate.governor().min_dwell(Duration::from_secs(dwell)).rule(rule(knob.signal())).build().unwrap();
            let recover = |l: Level| match l {
                Level::Minimal => 0.02, Level::Moderate => 0.10, _ => 0.30,
            };
            let raise = |l: Level| match l {
                Level::Minimal => 0.05, Level::Moderate => 0.20, Level::Severe => 0.50, _ => f64::INFINITY,
            };
            let mut calm_ticks = 0u64;
            for v in values {
                let before = gate.level();
                knob.set(v);
                advance(SEC).await;
                governor.tick();
                let after = gate.level();
                prop_assert!(after.index().abs_diff(before.index()) <= 1);
                if after > before {
                    prop_assert!(v >= raise(after));
                    calm_ticks = 0;
                } else if after < before {
                    // `dwell` seconds since the first calm tick.
                    prop_assert!(v < recover(before));
                    prop_assert!(calm_ticks >= dwell, "lowered after {} calm ticks", calm_ticks);
                    calm_ticks = u64::from(after > Level::Normal && v < recover(after));
                } else if before > Level::Normal && v < recover(before) {
                    calm_ticks += 1;
                } else {
                    calm_ticks = 0;
                }
                if after == before && before < Level::Severe {
                    prop_assert!(v < raise(before.raised()));
                }
            }
            Ok(())
        })?;
    }
}

/// Issue 13, D5: a latency-percentile window keeps one histogram snapshot
/// (2 KB) per tick, so its length is bounded: over 1000 ticks the
/// governor's `build()` names it, and nothing is allocated for it.
#[test]
fn latency_window_is_bounded() {
    let gate = Gate::new("g");
    for ticks in [1001, usize::MAX] {
        let err = gate
            .governor()
            .rule(
                Rule::new(gate.latency_percentile_signal(99.0).window(ticks)).step(
                    Level::Minimal,
                    500.0,
                    200.0,
                ),
            )
            .build()
            .unwrap_err();
        assert_eq!((err.component, err.field), ("governor", "latency.window"));
        assert!(err.bound.contains("1000"), "{err}");
    }
    let ok = gate
        .governor()
        .rule(
            Rule::new(gate.latency_percentile_signal(99.0).window(1000)).step(
                Level::Minimal,
                500.0,
                200.0,
            ),
        )
        .build();
    assert!(ok.is_ok());
}

/// A backend whose errors depend on the admitted load: past 50 calls a
/// tick it fails. At `Normal` all 100 calls a tick are admitted and half
/// fail; at `Minimal` the 60 sheddable ones are shed and none fail. A
/// plain dwell recovers, sees the errors return and raises again, every
/// ~11 s forever; each relapse doubles the dwell (capped at 16×), so the
/// level settles at `Minimal` with a rare probe, and a later incident
/// after a long calm starts again from `min_dwell`.
#[tokio::test(start_paused = true)]
async fn a_level_dependent_signal_settles_instead_of_cycling() {
    let gate = Gate::new("api");
    let mut governor = gate
        .governor()
        .interval(SEC)
        .min_dwell(Duration::from_secs(10))
        .rule(Rule::new(gate.error_rate_signal()).step(Level::Minimal, 0.05, 0.02))
        .build()
        .unwrap();
    let load = Arc::new(AtomicU64::new(0));
    let capacity = Arc::new(AtomicU64::new(50));
    let (l, c) = (load.clone(), capacity.clone());
    let mut svc = gate.layer().layer(service_fn(move |_: http::Request<()>| {
        let overloaded = l.fetch_add(1, SeqCst) >= c.load(SeqCst);
        async move {
            if overloaded {
                Err::<(), BoxError>("overloaded".into())
            } else {
                Ok(())
            }
        }
    }));
    let mut tick = async |governor: &mut battlement_gate::Governor| {
        load.store(0, SeqCst);
        for i in 0..100 {
            let mut r = http::Request::new(());
            if i < 60 {
                r.extensions_mut().insert(Priority::Sheddable);
            }
            let _ = svc.ready().await.unwrap().call(r).await;
        }
        advance(SEC).await;
        governor.tick();
        gate.level()
    };
    let mut minimal = 0;
    let mut changes_in_last_half = 0;
    for t in 0..3600 {
        let before = gate.changes();
        if tick(&mut governor).await == Level::Minimal {
            minimal += 1;
        }
        if t >= 1800 {
            changes_in_last_half += gate.changes() - before;
        }
    }
    // A plain 10 s dwell: ~160 changes per half hour. Capped at 160 s:
    // a probe (two changes) per ~161 s.
    assert!(changes_in_last_half <= 24, "{changes_in_last_half} changes");
    assert!(minimal >= 3400, "{minimal} s of 3600 at minimal");
    assert_eq!(governor.dwell(), Duration::from_secs(160));
    assert!(governor.relapses() >= 4);

    // The backend is fixed: the next recovery holds...
    capacity.store(1000, SeqCst);
    let mut levels = Vec::new();
    for _ in 0..400 {
        levels.push(tick(&mut governor).await);
    }
    assert_eq!(levels.last(), Some(&Level::Normal));
    let reason = gate.reason();
    assert!(
        reason.contains("minimal -> normal") && reason.contains("dwell 160s"),
        "{reason}"
    );
    // ...and a new incident after that long calm is not a relapse.
    capacity.store(50, SeqCst);
    assert_eq!(tick(&mut governor).await, Level::Minimal);
    assert_eq!(governor.relapses(), 0);
    assert_eq!(governor.dwell(), Duration::from_secs(10));
    let reason = gate.reason();
    assert!(
        reason.contains("normal -> minimal") && !reason.contains("relapse"),
        "{reason}"
    );
}

/// The raise reason names the step taken, not the threshold's level, and
/// a relapse says so.
#[tokio::test(start_paused = true)]
async fn reasons_name_the_step_taken() {
    let gate = Gate::new("api");
    let knob = Knob::default();
    let mut governor = gate
        .governor()
        .interval(SEC)
        .min_dwell(Duration::from_secs(2))
        .rule(rule(knob.signal()))
        .build()
        .unwrap();
    knob.set(0.9);
    advance(SEC).await;
    governor.tick();
    let reason = gate.reason();
    assert!(
        reason.starts_with(
            "knob 0.900 >= 0.5 (raise threshold of severe): normal -> minimal, one step per tick"
        ),
        "{reason}"
    );
    knob.set(0.0);
    for _ in 0..3 {
        advance(SEC).await;
        governor.tick();
    }
    assert_eq!(gate.level(), Level::Normal);
    assert!(
        gate.reason().contains("minimal -> normal (dwell 2s)"),
        "{}",
        gate.reason()
    );
    knob.set(0.06);
    advance(SEC).await;
    governor.tick();
    let reason = gate.reason();
    assert!(
        reason.contains("normal -> minimal; relapse 1 (1s after recovering): next dwell 4s"),
        "{reason}"
    );
}
