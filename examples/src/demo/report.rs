//! The summary of a run: per side, the outcome of every request and its
//! latency, overall, per phase and per second; what the upstream saw;
//! where the protected side's components ended. `Serialize` for
//! `--json`; `Display` for the table printed at the end.

use std::fmt;
use std::time::Duration;

use battlement::chaos::{Chaos, Phase};
use serde::Serialize;

use super::Config;
use super::front::Protected;
use super::load::{Class, Recorded, Sample};
use super::upstream::{Side, Upstream};

/// The run's settings.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// How long the load ran, in milliseconds.
    pub duration_ms: u64,
    /// Requests per second to each side.
    pub rps: u32,
    /// The seed.
    pub seed: u64,
}

/// One phase of the fault schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseReport {
    /// Its position.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// When it starts, since the schedule's start, in milliseconds.
    pub start_ms: u64,
    /// When it ends.
    pub end_ms: u64,
    /// What it injects, in words.
    pub faults: String,
}

/// Latency percentiles, in milliseconds (0 when there was no request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// The median.
    pub p50_ms: f64,
    /// The 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Of these latencies (any order).
    pub fn of(mut latencies: Vec<f64>) -> Percentiles {
        if latencies.is_empty() {
            return Percentiles::default();
        }
        latencies.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = (p * latencies.len() as f64).ceil() as usize;
            latencies[i.clamp(1, latencies.len()) - 1]
        };
        Percentiles {
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: latencies[latencies.len() - 1],
        }
    }
}

/// Requests by what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests sent.
    pub sent: u64,
    /// Answered `2xx` by the upstream.
    pub succeeded: u64,
    /// Answered `2xx` by the fallback.
    pub fallback: u64,
    /// Refused by the front's own layers (`503`).
    pub shed: u64,
    /// Anything else.
    pub failed: u64,
}

impl Counts {
    /// Counts one answer of `class` (not the request: `sent` is apart).
    pub fn add(&mut self, class: Class) {
        match class {
            Class::Success => self.succeeded += 1,
            Class::Fallback => self.fallback += 1,
            Class::Shed => self.shed += 1,
            Class::Failed => self.failed += 1,
        }
    }

    /// Requests with an answer of some class.
    pub fn classified(&self) -> u64 {
        self.succeeded + self.fallback + self.shed + self.failed
    }

    /// The share of requests that got a useful `2xx` (fresh or from the
    /// fallback), from 0 to 1 (1 when none was sent).
    pub fn answered_rate(&self) -> f64 {
        if self.sent == 0 {
            1.0
        } else {
            (self.succeeded + self.fallback) as f64 / self.sent as f64
        }
    }
}

/// One side during one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseSide {
    /// The phase's name.
    pub phase: String,
    /// Requests sent during it, by outcome.
    #[serde(flatten)]
    pub counts: Counts,
    /// Their latency.
    pub latency: Percentiles,
    /// Calls the upstream received from this side during it (retries
    /// included).
    pub upstream_calls: u64,
}

/// One side over the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct SideSummary {
    /// Requests by outcome.
    #[serde(flatten)]
    pub counts: Counts,
    /// Their latency.
    pub latency: Percentiles,
    /// Calls the upstream received from this side.
    pub upstream_calls: u64,
    /// The same, per phase of the schedule.
    pub phases: Vec<PhaseSide>,
}

/// One side during one second of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SecondSide {
    /// Requests sent in that second.
    pub sent: u64,
    /// The share answered `2xx` (fresh or fallback).
    pub answered_rate: f64,
    /// The 99th percentile latency of those requests.
    pub p99_ms: f64,
}

/// One second of the run (by when the requests were sent).
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Seconds since the start.
    pub second: u64,
    /// The phase in force at the second's start.
    pub phase: Option<String>,
    /// Whether the protected side's breaker was seen open.
    pub breaker_open: bool,
    /// The highest gate level seen.
    pub gate_level: String,
    /// The protected side.
    pub protected: SecondSide,
    /// The unprotected side.
    pub unprotected: SecondSide,
}

/// The outage phase, side by side: the point of the demo.
#[derive(Debug, Clone, Serialize)]
pub struct Outage {
    /// The phase's name.
    pub phase: String,
    /// How long it lasted, in milliseconds.
    pub duration_ms: u64,
    /// The protected side's p99 for requests sent during it.
    pub protected_p99_ms: f64,
    /// The unprotected side's.
    pub unprotected_p99_ms: f64,
    /// Calls the upstream received from the protected side during it.
    pub protected_upstream_calls: u64,
    /// From the unprotected side.
    pub unprotected_upstream_calls: u64,
}

/// Where the protected side's components ended, from its registry.
#[derive(Debug, Clone, Serialize)]
pub struct EndState {
    /// The breaker's state (`closed`, `open`, `half_open`, ...).
    pub breaker: String,
    /// When the breaker was first seen open, since the start.
    pub breaker_first_open_ms: Option<u64>,
    /// When it was last seen open.
    pub breaker_last_open_ms: Option<u64>,
    /// Calls the breaker refused.
    pub breaker_rejections: u64,
    /// The gate's level.
    pub gate_level: String,
    /// Requests the gate shed.
    pub gate_shed: u64,
    /// Retries the budget allowed.
    pub retries_allowed: u64,
    /// Retries the budget refused.
    pub retries_denied: u64,
    /// Answers the fallback served.
    pub fallback_served: u64,
}

/// The state of the protected side's breaker and gate, sampled while the
/// load ran.
#[derive(Debug, Clone, Copy)]
pub struct StateSample {
    /// Since the schedule's start.
    pub at: Duration,
    /// The breaker was open (or forced open).
    pub breaker_open: bool,
    /// The gate's level.
    pub level: battlement::Level,
}

/// The summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The settings.
    pub config: RunConfig,
    /// From the start of the load to the last answer, in milliseconds.
    pub elapsed_ms: u64,
    /// The chaos's seed (the same as the config's).
    pub chaos_seed: u64,
    /// The fault schedule.
    pub schedule: Vec<PhaseReport>,
    /// The protected side.
    pub protected: SideSummary,
    /// The unprotected side.
    pub unprotected: SideSummary,
    /// The outage, side by side.
    pub outage: Option<Outage>,
    /// Upstream calls that named no side (none, unless something else
    /// called it).
    pub upstream_unnamed_calls: u64,
    /// The protected side at the end.
    pub end: EndState,
    /// Per second.
    pub timeline: Vec<Second>,
}

impl Summary {
    /// The summary of `side`.
    pub fn side(&self, side: Side) -> &SideSummary {
        match side {
            Side::Protected => &self.protected,
            Side::Unprotected => &self.unprotected,
        }
    }
}

/// What a phase injects, in words.
pub fn describe(phase: &Phase) -> String {
    let mut parts = Vec::new();
    if let Some((ratio, latency)) = phase.latency_config() {
        let (lo, hi) = latency.bounds();
        parts.push(format!(
            "{:.0}% delayed {}-{}",
            ratio * 100.0,
            ms(lo.as_secs_f64() * 1000.0),
            ms(hi.as_secs_f64() * 1000.0)
        ));
    }
    if let Some((ratio, fault)) = phase.response_config() {
        parts.push(format!("{:.0}% answered {}", ratio * 100.0, fault.status()));
    }
    if let Some((ratio, kind)) = phase.error_config() {
        parts.push(format!("{:.0}% failed ({kind})", ratio * 100.0));
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

/// The schedule of `chaos`, phase by phase.
pub fn schedule_report(chaos: &Chaos) -> Vec<PhaseReport> {
    let mut start = Duration::ZERO;
    chaos
        .schedule()
        .phases()
        .iter()
        .enumerate()
        .map(|(index, phase)| {
            let end = start + phase.duration();
            let report = PhaseReport {
                index,
                name: phase.name().to_string(),
                start_ms: millis(start),
                end_ms: millis(end),
                faults: describe(phase),
            };
            start = end;
            report
        })
        .collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn side_summary(
    side: Side,
    samples: &[Sample],
    sent: u64,
    schedule: &[PhaseReport],
    upstream: &Upstream,
) -> SideSummary {
    let mine = || samples.iter().filter(move |s| s.side == side);
    let mut counts = Counts {
        sent,
        ..Counts::default()
    };
    for s in mine() {
        counts.add(s.class);
    }
    let phases = schedule
        .iter()
        .map(|p| {
            let mut counts = Counts::default();
            let mut latencies = Vec::new();
            for s in mine().filter(|s| s.phase == Some(p.index)) {
                counts.sent += 1;
                counts.add(s.class);
                latencies.push(s.latency_ms());
            }
            PhaseSide {
                phase: p.name.clone(),
                counts,
                latency: Percentiles::of(latencies),
                upstream_calls: upstream.calls.in_phase(side, p.index),
            }
        })
        .collect();
    SideSummary {
        counts,
        latency: Percentiles::of(mine().map(Sample::latency_ms).collect()),
        upstream_calls: upstream.calls.total(side),
        phases,
    }
}

fn timeline(
    samples: &[Sample],
    states: &[StateSample],
    chaos: &Chaos,
    duration: Duration,
) -> Vec<Second> {
    let seconds = duration.as_secs_f64().ceil() as u64;
    (0..seconds)
        .map(|second| {
            let in_second = |at: Duration| at.as_secs() == second;
            let side = |side: Side| {
                let mut counts = Counts::default();
                let mut latencies = Vec::new();
                for s in samples
                    .iter()
                    .filter(|s| s.side == side && in_second(s.sent))
                {
                    counts.sent += 1;
                    counts.add(s.class);
                    latencies.push(s.latency_ms());
                }
                SecondSide {
                    sent: counts.sent,
                    answered_rate: counts.answered_rate(),
                    p99_ms: Percentiles::of(latencies).p99_ms,
                }
            };
            let seen = || states.iter().filter(|s| in_second(s.at));
            Second {
                second,
                phase: chaos
                    .schedule()
                    .phase_at(Duration::from_secs(second))
                    .map(|at| at.phase.name().to_string()),
                breaker_open: seen().any(|s| s.breaker_open),
                gate_level: seen()
                    .map(|s| s.level)
                    .max()
                    .unwrap_or_default()
                    .as_str()
                    .to_owned(),
                protected: side(Side::Protected),
                unprotected: side(Side::Unprotected),
            }
        })
        .collect()
}

/// Sums up a run.
pub fn summarize(
    config: &Config,
    chaos: &Chaos,
    upstream: &Upstream,
    protected: &Protected,
    recorded: &Recorded,
    states: &[StateSample],
) -> Summary {
    let schedule = schedule_report(chaos);
    let sides = Side::BOTH.map(|side| {
        side_summary(
            side,
            &recorded.samples,
            recorded.sent[side.index()],
            &schedule,
            upstream,
        )
    });
    let [protected_side, unprotected_side] = sides;
    let outage = schedule
        .iter()
        .find(|p| p.name == "outage")
        .map(|p| Outage {
            phase: p.name.clone(),
            duration_ms: p.end_ms - p.start_ms,
            protected_p99_ms: protected_side.phases[p.index].latency.p99_ms,
            unprotected_p99_ms: unprotected_side.phases[p.index].latency.p99_ms,
            protected_upstream_calls: protected_side.phases[p.index].upstream_calls,
            unprotected_upstream_calls: unprotected_side.phases[p.index].upstream_calls,
        });
    let open_at = || {
        states
            .iter()
            .filter(|s| s.breaker_open)
            .map(|s| millis(s.at))
    };
    let end = EndState {
        breaker: protected.breaker.state().as_str().to_owned(),
        breaker_first_open_ms: open_at().next(),
        breaker_last_open_ms: open_at().next_back(),
        breaker_rejections: protected.detail("upstream/breaker", "rejections"),
        gate_level: protected.gate.level().as_str().to_owned(),
        gate_shed: protected.shed(),
        retries_allowed: protected.detail("upstream/budget", "retries_allowed"),
        retries_denied: protected.detail("upstream/budget", "retries_denied"),
        fallback_served: protected.detail("upstream/fallback", "served"),
    };
    Summary {
        config: RunConfig {
            duration_ms: millis(config.duration),
            rps: config.rps,
            seed: config.seed,
        },
        elapsed_ms: millis(recorded.elapsed),
        chaos_seed: chaos.seed(),
        timeline: timeline(&recorded.samples, states, chaos, config.duration),
        schedule,
        protected: protected_side,
        unprotected: unprotected_side,
        outage,
        upstream_unnamed_calls: upstream.calls.unnamed(),
        end,
    }
}

/// A latency in words: `850 ms`, `2.41 s`.
pub fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, u) = (&self.protected, &self.unprotected);
        writeln!(
            f,
            "battlement demo: {} at {} req/s per side, seed {}",
            humantime::format_duration(Duration::from_millis(self.config.duration_ms)),
            self.config.rps,
            self.config.seed
        )?;
        writeln!(f)?;
        writeln!(f, "{:<28}{:>14}{:>14}", "", "protected", "unprotected")?;
        let rows: [(&str, u64, u64); 5] = [
            ("requests", p.counts.sent, u.counts.sent),
            ("succeeded", p.counts.succeeded, u.counts.succeeded),
            ("served by fallback", p.counts.fallback, u.counts.fallback),
            ("shed (503 from the front)", p.counts.shed, u.counts.shed),
            ("errors", p.counts.failed, u.counts.failed),
        ];
        for (name, a, b) in rows {
            writeln!(f, "{name:<28}{a:>14}{b:>14}")?;
        }
        let pct = |c: &Counts| format!("{:.1}%", c.answered_rate() * 100.0);
        writeln!(
            f,
            "{:<28}{:>14}{:>14}",
            "useful answers (2xx)",
            pct(&p.counts),
            pct(&u.counts)
        )?;
        type Get = fn(&Percentiles) -> f64;
        let lat: [(&str, Get); 3] = [
            ("p50 latency", |l| l.p50_ms),
            ("p99 latency", |l| l.p99_ms),
            ("max latency", |l| l.max_ms),
        ];
        for (name, get) in lat {
            writeln!(
                f,
                "{name:<28}{:>14}{:>14}",
                ms(get(&p.latency)),
                ms(get(&u.latency))
            )?;
        }
        writeln!(
            f,
            "{:<28}{:>14}{:>14}",
            "upstream calls", p.upstream_calls, u.upstream_calls
        )?;
        if let Some(o) = &self.outage {
            writeln!(
                f,
                "{:<28}{:>14}{:>14}",
                "  during the outage", o.protected_upstream_calls, o.unprotected_upstream_calls
            )?;
            writeln!(
                f,
                "{:<28}{:>14}{:>14}",
                "p99 during the outage",
                ms(o.protected_p99_ms),
                ms(o.unprotected_p99_ms)
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "per phase (protected | unprotected: useful answers, p99, upstream calls):"
        )?;
        for (a, b) in p.phases.iter().zip(&u.phases) {
            writeln!(
                f,
                "  {:<14} {:>6.1}% {:>9} {:>6} | {:>6.1}% {:>9} {:>6}",
                a.phase,
                a.counts.answered_rate() * 100.0,
                ms(a.latency.p99_ms),
                a.upstream_calls,
                b.counts.answered_rate() * 100.0,
                ms(b.latency.p99_ms),
                b.upstream_calls
            )?;
        }
        writeln!(f)?;
        let e = &self.end;
        write!(
            f,
            "protected side at the end: breaker {} (open from {} to {}, {} calls refused), \
             gate {} ({} shed), retry budget {} allowed / {} denied, fallback served {}",
            e.breaker,
            e.breaker_first_open_ms
                .map_or("-".into(), |t| format!("{:.1} s", t as f64 / 1000.0)),
            e.breaker_last_open_ms
                .map_or("-".into(), |t| format!("{:.1} s", t as f64 / 1000.0)),
            e.breaker_rejections,
            e.gate_level,
            e.gate_shed,
            e.retries_allowed,
            e.retries_denied,
            e.fallback_served
        )
    }
}
