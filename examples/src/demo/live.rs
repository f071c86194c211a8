//! What the demo shows while it runs: a progress bar with the current
//! phase and a compact table of the protected side's registry (breaker,
//! gate, retry budget, fallback) and of both sides' last second, redrawn
//! in place on a terminal ([`Output::Terminal`]), or one plain line a
//! second otherwise ([`Output::Plain`]).

use std::net::SocketAddr;
use std::time::Duration;

use battlement::chaos::Chaos;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::front::Protected;
use super::load::Recorder;
use super::report::{Counts, Percentiles, ms};
use super::upstream::Side;
use super::{Config, Output};
use crate::client::{get, http_client, send};

/// The URLs to open during a run.
#[derive(Debug, Clone)]
pub struct Urls {
    /// The protected front.
    pub protected: String,
    /// The unprotected front.
    pub unprotected: String,
    /// The protected side's health report.
    pub health: String,
    /// Its Prometheus metrics.
    pub metrics: String,
    /// Its dashboard page, when `HealthService` serves one.
    pub dashboard: Option<String>,
}

impl Urls {
    /// The URLs of fronts at these addresses; asks the health service
    /// once whether it has a dashboard page (`/ops/health/dashboard`).
    pub async fn probe(protected: SocketAddr, unprotected: SocketAddr) -> Urls {
        let dashboard = format!("http://{protected}/ops/health/dashboard");
        let has_dashboard = send(&http_client(), get(&dashboard, &[]))
            .await
            .is_ok_and(|a| a.status.is_success());
        Urls {
            protected: format!("http://{protected}/api/orders/1"),
            unprotected: format!("http://{unprotected}/api/orders/1"),
            health: format!("http://{protected}/ops/health"),
            metrics: format!("http://{protected}/ops/metrics"),
            dashboard: has_dashboard.then_some(dashboard),
        }
    }
}

/// The live output of one run.
#[derive(Debug)]
pub struct Live<'a> {
    output: Output,
    duration: Duration,
    protected: &'a Protected,
    bars: Option<Bars>,
}

#[derive(Debug)]
struct Bars {
    _multi: MultiProgress,
    progress: ProgressBar,
    lines: [ProgressBar; 4],
}

/// The last second of one side, as the table shows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// Answers completed in the window, by class.
    pub counts: Counts,
    /// Their latency.
    pub latency: Percentiles,
}

/// Answers of `side` completed within `window` before `now` (both since
/// the schedule's start).
pub fn window(recorder: &Recorder, side: Side, now: Duration, window: Duration) -> Window {
    let since = now.saturating_sub(window);
    recorder.with_samples(|samples| {
        let mut counts = Counts::default();
        let mut latencies = Vec::new();
        for s in samples.iter().rev().take_while(|s| s.done >= since) {
            if s.side != side {
                continue;
            }
            counts.sent += 1;
            counts.add(s.class);
            latencies.push(s.latency_ms());
        }
        Window {
            counts,
            latency: Percentiles::of(latencies),
        }
    })
}

/// The columns of the live table.
const COLUMNS: [&str; 6] = ["done", "ok", "fallback", "shed", "errors", "p99"];

fn row(first: &str, cells: &[String; 6]) -> String {
    let [a, b, c, d, e, f] = cells;
    format!("  {first:<12}{a:>6}{b:>6}{c:>9}{d:>6}{e:>8}{f:>10}")
}

impl Window {
    /// The live table's cells: done, ok, fallback, shed, errors, p99.
    pub fn cells(&self) -> [String; 6] {
        let c = &self.counts;
        [
            c.sent.to_string(),
            c.succeeded.to_string(),
            c.fallback.to_string(),
            c.shed.to_string(),
            c.failed.to_string(),
            ms(self.latency.p99_ms),
        ]
    }
}

impl<'a> Live<'a> {
    /// Starts the live output (prints the URLs and, on a terminal, draws
    /// the bars).
    pub fn start(
        output: Output,
        config: &Config,
        chaos: &Chaos,
        protected: &'a Protected,
        urls: &Urls,
    ) -> Live<'a> {
        if output != Output::Quiet {
            println!(
                "battlement demo: {} at {} req/s per side, seed {}; fault schedule:",
                humantime::format_duration(config.duration),
                config.rps,
                chaos.seed()
            );
            for p in super::report::schedule_report(chaos) {
                println!(
                    "  {:>5.1}-{:>5.1} s  {:<14} {}",
                    p.start_ms as f64 / 1000.0,
                    p.end_ms as f64 / 1000.0,
                    p.name,
                    p.faults
                );
            }
            println!("open while it runs:");
            println!("  protected front     {}", urls.protected);
            println!("  unprotected front   {}", urls.unprotected);
            println!("  health (protected)  {}", urls.health);
            println!("  metrics             {}", urls.metrics);
            match &urls.dashboard {
                Some(d) => println!("  dashboard           {d}"),
                None => println!("  dashboard           (not served by this version)"),
            }
            println!();
        }
        let bars = (output == Output::Terminal).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let len = u64::try_from(config.duration.as_millis()).unwrap_or(u64::MAX);
            let progress = multi.add(ProgressBar::new(len));
            progress.set_style(
                ProgressStyle::with_template("{bar:40.cyan/blue} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            let line = || {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar
            };
            let lines = [line(), line(), line(), line()];
            Bars {
                _multi: multi,
                progress,
                lines,
            }
        });
        Live {
            output,
            duration: config.duration,
            protected,
            bars,
        }
    }

    /// Redraws (or prints a line) from the chaos's phase, the registry
    /// and the answers so far.
    pub fn update(&self, chaos: &Chaos, recorder: &Recorder) {
        if self.output == Output::Quiet {
            return;
        }
        let now = chaos.elapsed();
        let phase = match chaos.current() {
            Some(at) => format!(
                "{} ({:.1} s left)",
                at.phase.name(),
                at.remaining.as_secs_f64()
            ),
            None if now < self.duration => "healthy".into(),
            None => "done: waiting for the last answers".into(),
        };
        let p = self.protected;
        let breaker = p.breaker.state().as_str();
        let gate = p.gate.level().as_str();
        let tokens = p.budget.available();
        let denied = p.detail("upstream/budget", "retries_denied");
        let fallbacks = p.detail("upstream/fallback", "served");
        let shed = p.shed();
        let sides = Side::BOTH.map(|s| window(recorder, s, now, Duration::from_secs(1)));
        let state = format!(
            "breaker {breaker} | gate {gate} ({shed} shed) | retry budget {tokens} tokens \
             ({denied} denied) | fallback served {fallbacks}"
        );
        match &self.bars {
            Some(bars) => {
                let pos = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
                bars.progress
                    .set_position(pos.min(bars.progress.length().unwrap_or(pos)));
                bars.progress
                    .set_message(format!("{:>5.1} s  {phase}", now.as_secs_f64()));
                bars.lines[0].set_message(format!("  {state}"));
                bars.lines[1].set_message(row("last 1 s", &COLUMNS.map(String::from)));
                for (i, side) in Side::BOTH.iter().enumerate() {
                    bars.lines[2 + i].set_message(row(side.as_str(), &sides[i].cells()));
                }
            }
            None => {
                let side = |w: &Window| {
                    let cells = w.cells();
                    let named = COLUMNS.iter().zip(&cells).map(|(n, c)| format!("{n} {c}"));
                    named.collect::<Vec<_>>().join(", ")
                };
                println!(
                    "[{:>5.1} s] {phase} | {state} | protected: {} | unprotected: {}",
                    now.as_secs_f64(),
                    side(&sides[0]),
                    side(&sides[1])
                );
            }
        }
    }

    /// The load is over; the last answers are awaited.
    pub fn draining(&self) {
        if let Some(bars) = &self.bars {
            bars.progress
                .set_message("done: waiting for the last answers");
        }
    }

    /// Ends the live output, leaving the last table on screen.
    pub fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.progress.finish();
            for line in &bars.lines {
                line.finish();
            }
        }
    }
}
