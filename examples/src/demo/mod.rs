//! The demo, the project's main job: in one process on 127.0.0.1, an
//! upstream that fails on a seeded schedule, two identical front services
//! calling it (one through a full `Policy::http`, one with a plain
//! client), and a load generator driving both at once; live progress
//! while it runs, a side-by-side summary at the end (also as JSON and as
//! a PNG).
//!
//! `cargo run --release -p battlement-examples --bin demo -- --help`
//!
//! - [`upstream`]: an axum service behind `Chaos::http_layer()`, whose
//!   schedule ([`schedule`]) is scaled to the run's duration and seeded;
//!   it counts the calls it receives per side and per phase.
//! - [`front`]: `/api/orders/{id}` (high priority) and
//!   `/api/recommendations?user=N` (low priority), protected or not.
//! - [`load`]: an open-loop generator at a fixed rate per side, with a
//!   fixed mix, that sorts every answer into exactly one [`Class`].
//! - [`report`]: the [`Summary`] (serde), its text table and JSON.
//! - [`plot`]: the PNG.
//! - [`live`]: the progress bar and the live table.
//!
//! [`run`] ties them together; the binary (`examples/demo.rs`) parses
//! [`Cli`] and calls it, and so does the test, with a short duration.

pub mod front;
pub mod live;
pub mod load;
pub mod plot;
pub mod report;
pub mod upstream;

use std::path::PathBuf;
use std::time::Duration;

use battlement::chaos::{Chaos, HttpFault, Latency, Phase};
use battlement::prelude::*;
use clap::Parser;

pub use load::Class;
pub use report::Summary;

/// The shortest run the schedule can be scaled to.
pub const MIN_DURATION: Duration = Duration::from_secs(2);
/// The longest run the demo accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// The highest request rate per side the demo accepts.
pub const MAX_RPS: u32 = 2000;

/// The demo's command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "demo",
    about = "battlement's demo: the same service with and without the resilience stack, \
             side by side, against an upstream that fails on a schedule"
)]
pub struct Cli {
    /// How long the load runs (humantime: `30s`, `1m`, `4500ms`); the fault
    /// schedule is scaled to it. Between 2 s and 10 min.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Requests per second sent to each side (1 to 2000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RPS)))]
    pub rps: u32,
    /// The seed of the fault schedule's draws and of the request mix.
    #[arg(long, default_value_t = 17)]
    pub seed: u64,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Also draw latency and success rate per second to this PNG file.
    #[arg(long, value_name = "PATH")]
    pub plot: Option<PathBuf>,
    /// Plain periodic lines instead of a table redrawn in place (the
    /// default when stdout is not a terminal).
    #[arg(long)]
    pub plain: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e}"))?;
    if d < MIN_DURATION || d > MAX_DURATION {
        return Err(format!(
            "{} is out of range: between {} and {}",
            humantime::format_duration(d),
            humantime::format_duration(MIN_DURATION),
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(d)
}

/// What the live output looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A progress bar and a table redrawn in place.
    Terminal,
    /// One plain line a second.
    Plain,
    /// Nothing while it runs (tests).
    Quiet,
}

/// One run of the demo.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long the load runs.
    pub duration: Duration,
    /// Requests per second to each side.
    pub rps: u32,
    /// The seed.
    pub seed: u64,
    /// Where to write the JSON summary.
    pub json: Option<PathBuf>,
    /// Where to write the PNG.
    pub plot: Option<PathBuf>,
    /// The live output.
    pub output: Output,
}

impl Cli {
    /// The run these flags ask for; `Terminal` output only when stdout
    /// is a terminal and `--plain` is not given.
    pub fn config(&self) -> Config {
        use std::io::IsTerminal;
        let output = if self.plain || !std::io::stdout().is_terminal() {
            Output::Plain
        } else {
            Output::Terminal
        };
        Config {
            duration: self.duration,
            rps: self.rps,
            seed: self.seed,
            json: self.json.clone(),
            plot: self.plot.clone(),
            output,
        }
    }
}

/// What the demo's upstream does over a run of `duration`: healthy (20%),
/// a latency spike where a quarter of the calls take 0.2-1.2 s (15%), a hard outage where every call hangs 1-2.5 s
/// and then answers 503 (30%), rate limited with 429 and `Retry-After`
/// (15%), and healthy again (20%). The draws (which call is slow, which
/// is refused) come from `seed`.
///
/// # Errors
///
/// When the chaos refuses the schedule (it does not, for durations
/// within [`MIN_DURATION`] and [`MAX_DURATION`]).
pub fn schedule(duration: Duration, seed: u64) -> Result<Chaos, BoxError> {
    let ms = Duration::from_millis;
    let part = |share: f64| duration.mul_f64(share);
    Ok(Chaos::builder("chaos")
        .seed(seed)
        .phase(Phase::healthy(part(0.20)))
        .phase(
            Phase::new("latency spike", part(0.15))
                .latency_ratio(0.25, Latency::uniform(ms(200), ms(1200))),
        )
        .phase(
            Phase::new("outage", part(0.30))
                .latency(Latency::uniform(ms(1000), ms(2500)))
                .respond(1.0, HttpFault::UNAVAILABLE),
        )
        .phase(Phase::new("rate limited", part(0.15)).respond(
            0.6,
            HttpFault::TooManyRequests {
                retry_after: Duration::from_secs(1),
            },
        ))
        .phase(Phase::healthy(part(0.20)).named("recovery"))
        .build()?)
}

/// Runs the demo: starts the upstream and both fronts on 127.0.0.1,
/// drives them for `config.duration`, waits for every request's answer,
/// and returns the summary (written as JSON and drawn as a PNG when the
/// config asks for them).
///
/// # Errors
///
/// When a port cannot be bound, a component is refused, or a file
/// cannot be written.
pub async fn run(config: Config) -> Result<Summary, BoxError> {
    let chaos = schedule(config.duration, config.seed)?;
    let upstream = upstream::start(chaos.clone()).await?;
    let mut protected = front::protected(upstream.addr, &chaos, config.duration)?;
    let unprotected = front::unprotected(upstream.addr);
    let protected_addr = crate::client::serve(protected.router.clone()).await?;
    let unprotected_addr = crate::client::serve(unprotected.router.clone()).await?;
    let governor = protected.governor.take().map(|g| tokio::spawn(g.run()));

    let urls = live::Urls::probe(protected_addr, unprotected_addr).await;
    let view = live::Live::start(config.output, &config, &chaos, &protected, &urls);

    chaos.start();
    let sampler = sample_states(&chaos, &protected);
    let recorded = load::drive(
        load::Targets {
            protected: protected_addr,
            unprotected: unprotected_addr,
        },
        &config,
        &chaos,
        &view,
    )
    .await;
    if let Some(governor) = governor {
        governor.abort();
    }
    let states = sampler.stop().await;

    let summary = report::summarize(&config, &chaos, &upstream, &protected, &recorded, &states);
    view.finish();
    if let Some(path) = &config.json {
        let json = serde_json::to_vec_pretty(&summary)?;
        std::fs::write(path, json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &config.plot {
        plot::draw(&summary, path).map_err(|e| format!("drawing {}: {e}", path.display()))?;
    }
    Ok(summary)
}

/// A task sampling the protected side's breaker and gate every 50 ms.
struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<report::StateSample>>,
}

impl Sampler {
    async fn stop(self) -> Vec<report::StateSample> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

fn sample_states(chaos: &Chaos, protected: &front::Protected) -> Sampler {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let chaos = chaos.clone();
    let breaker = protected.breaker.clone();
    let gate = protected.gate.clone();
    let task = tokio::spawn(async move {
        let mut states = Vec::new();
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = &mut stopped => return states,
                _ = every.tick() => states.push(report::StateSample {
                    at: chaos.elapsed(),
                    breaker_open: matches!(
                        breaker.state(),
                        CircuitState::Open | CircuitState::ForcedOpen
                    ),
                    level: gate.level(),
                }),
            }
        }
    });
    Sampler { stop, task }
}
