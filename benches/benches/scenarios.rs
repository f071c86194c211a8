//! Scenarios that print outcomes, not times, on tokio's paused clock
//! (simulated time: the figures are the same on any machine, however
//! busy):
//!
//! - upstream load amplification under a total outage, 100 requests per
//!   second for 60 s, 3 attempts each: no budget, this crate's
//!   `RetryBudget`, tower's `TpsBudget`, tower-resilience's budgets;
//! - a breaker's time to open and to recover at 1k and 100k requests per
//!   second of simulated traffic;
//! - the p50 and p99 of a fan-out over five backends, one of them slow,
//!   per strategy;
//! - the p99 of one backend with a slow tail, with and without a hedge
//!   (fixed delay, latency percentile), beside tower's percentile hedge and
//!   tower-resilience's fixed-delay hedge.
//!
//! Every figure is one line, `scenario <group>/<case>: <value> <unit>`,
//! for `benches/run.sh` to save and the report bin to read. Run with
//! `cargo bench -p battlement-benches --bench scenarios`; under
//! `cargo test --benches` (or with `BATTLEMENT_BENCH_QUICK=1`) it runs a
//! shorter version.
//!
//! tower-resilience's retry budgets and breaker read `std::time::Instant`,
//! which a paused tokio clock does not move: its token bucket refills on
//! the wall clock (a few milliseconds for the whole run), so its figure
//! is what its initial tokens allow, and its breaker cannot be simulated
//! here at all (no row).

#![allow(clippy::print_stdout)]

use std::future::{Ready, ready};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use battlement_benches::call_now;
use support::{benching, quick};

mod support;
use battlement_breaker::Breaker;
use battlement_core::{BoxError, CircuitState};
use battlement_fanout::{FanOut, HedgeLayer, Strategy};
use battlement_retry::{Backoff, RetryBudget, RetryLayer, RetryPolicy};
use tokio::time::{Instant, sleep};
use tower::retry::budget::{Budget as _, TpsBudget};
use tower::{Layer, Service, ServiceExt, service_fn};

fn main() {
    // `cargo test --benches` runs this once too: a short version there.
    let short = quick() || !benching();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a paused runtime");
    rt.block_on(async {
        amplification(if short { 1_000 } else { 6_000 }).await;
        for rps in [1_000, 100_000] {
            if short && rps > 1_000 {
                continue;
            }
            breaker(rps).await;
        }
        fanout(if short { 200 } else { 2_000 }).await;
        hedge(if short { 300 } else { 5_000 }).await;
    });
}

fn line(name: &str, value: f64, unit: &str) {
    println!("scenario {name}: {value:.3} {unit}");
}

/// A small deterministic generator (xorshift64*), shared by the
/// simulated backends.
#[derive(Clone)]
struct Rng(Arc<Mutex<u64>>);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(seed.max(1))))
    }

    /// A uniform draw in [0, 1).
    fn next(&self) -> f64 {
        let mut s = self.0.lock().expect("not poisoned");
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        let x = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponential draw with mean `mean`.
    fn exp(&self, mean: Duration) -> Duration {
        mean.mul_f64(-(1.0 - self.next()).ln())
    }
}

/// The error every simulated backend fails with: `Clone`, as
/// tower-resilience's hedge needs.
#[derive(Debug, Clone)]
struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection refused")
    }
}

impl std::error::Error for Down {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        None
    }
}

/// `p` (0..=100) of `samples`, nearest rank.
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------- retry

/// A backend that is down: every call is refused at once.
#[derive(Clone)]
struct Dead {
    calls: Arc<AtomicU64>,
}

impl Service<u64> for Dead {
    type Response = u64;
    type Error = BoxError;
    type Future = Ready<Result<u64, BoxError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: u64) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        ready(Err(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        ))))
    }
}

/// Sends `requests` at 100 per second to a dead backend through `layer`;
/// returns upstream calls per request.
async fn amplify<L>(layer: L, requests: u64) -> f64
where
    L: Layer<Dead>,
    L::Service: Service<u64, Response = u64>,
{
    let calls = Arc::new(AtomicU64::new(0));
    let mut svc = layer.layer(Dead {
        calls: calls.clone(),
    });
    for i in 0..requests {
        if let Ok(ready) = svc.ready().await {
            let _ = ready.call(i).await;
        }
        sleep(Duration::from_millis(10)).await;
    }
    calls.load(Ordering::Relaxed) as f64 / requests as f64
}

/// A `tower::retry` policy: 3 attempts, over a shared `TpsBudget` when it
/// has one, which it feeds as linkerd does (a deposit per request, a
/// withdrawal per retry).
#[derive(Clone)]
struct TowerPolicy {
    budget: Option<Arc<TpsBudget>>,
    attempts: u32,
    deposited: bool,
}

impl<E> tower::retry::Policy<u64, u64, E> for TowerPolicy {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        if !self.deposited {
            self.deposited = true;
            if let Some(b) = &self.budget {
                b.deposit();
            }
        }
        if result.is_ok() {
            return None;
        }
        self.attempts += 1;
        if self.attempts >= 3 {
            return None;
        }
        match &self.budget {
            Some(b) if !b.withdraw() => None,
            _ => Some(ready(())),
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

async fn amplification(requests: u64) {
    let policy = || {
        RetryPolicy::builder()
            .max_attempts(3)
            .backoff(Backoff::none())
    };
    let budget = RetryBudget::builder()
        .ratio(0.1)
        .min_per_sec(10)
        .ttl(Duration::from_secs(10))
        .build()
        .expect("budget");
    let tower_policy = |budget| TowerPolicy {
        budget,
        attempts: 0,
        deposited: false,
    };
    let tr = || {
        tower_resilience::retry::RetryLayer::<u64, u64, BoxError>::builder()
            .max_attempts(3)
            .fixed_backoff(Duration::ZERO)
    };
    let bucket = tower_resilience::retry::RetryBudgetBuilder::new()
        .token_bucket()
        .tokens_per_second(10.0)
        .max_tokens(100)
        .build()
        .expect("token bucket");
    let n = requests;
    let g = "amplification";
    let unit = "upstream calls per request";
    line(
        &format!("{g}/battlement_no_budget"),
        amplify(RetryLayer::new(policy().build().expect("policy")), n).await,
        unit,
    );
    line(
        &format!("{g}/battlement_budget"),
        amplify(
            RetryLayer::new(policy().budget(budget).build().expect("policy")),
            n,
        )
        .await,
        unit,
    );
    line(
        &format!("{g}/tower_retry_no_budget"),
        amplify(tower::retry::RetryLayer::new(tower_policy(None)), n).await,
        unit,
    );
    let tps = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.1));
    line(
        &format!("{g}/tower_retry_tps_budget"),
        amplify(tower::retry::RetryLayer::new(tower_policy(Some(tps))), n).await,
        unit,
    );
    line(
        &format!("{g}/tower_resilience_no_budget"),
        amplify(tr().build(), n).await,
        unit,
    );
    line(
        &format!("{g}/tower_resilience_token_bucket_wall_clock"),
        amplify(tr().budget(bucket).build(), n).await,
        unit,
    );
}

// -------------------------------------------------------------- breaker

/// A breaker at the canonical stack's figures (10 % failures over a 30 s
/// window of 10 buckets, at least 20 calls, 5 s open) under `rps` of
/// traffic: 30 s healthy, then a total outage of 20 s, then healthy
/// again. Prints the time from the outage to `Open`, the calls that
/// reached the backend during the outage, and the time from the
/// backend's recovery to `Closed`.
async fn breaker(rps: u64) {
    let breaker = Breaker::builder("sim")
        .failure_rate(0.1)
        .time_window(Duration::from_secs(30), 10)
        .minimum_calls(20)
        .open_duration(Duration::from_secs(5))
        .build()
        .expect("valid breaker");
    let failing = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut svc = {
        let (failing, calls) = (failing.clone(), calls.clone());
        breaker.layer().layer(service_fn(move |x: u64| {
            calls.fetch_add(1, Ordering::Relaxed);
            ready(if failing.load(Ordering::Relaxed) {
                Err::<u64, BoxError>(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                )))
            } else {
                Ok(x)
            })
        }))
    };
    let per_ms = (rps / 1000).max(1);
    let tick = |svc: &mut _| {
        for i in 0..per_ms {
            let _ = call_now(svc, i);
        }
    };
    for _ in 0..30_000 {
        tick(&mut svc);
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    failing.store(true, Ordering::Relaxed);
    let outage = Instant::now();
    let before = calls.load(Ordering::Relaxed);
    let mut opened = None;
    for _ in 0..20_000 {
        tick(&mut svc);
        if opened.is_none() && breaker.state().is_open() {
            opened = Some(outage.elapsed());
        }
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    let reached = calls.load(Ordering::Relaxed) - before;
    let sent = 20_000 * per_ms;
    failing.store(false, Ordering::Relaxed);
    let recovery = Instant::now();
    let mut closed = None;
    for _ in 0..60_000 {
        tick(&mut svc);
        if breaker.state() == CircuitState::Closed {
            closed = Some(recovery.elapsed());
            break;
        }
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    let g = format!("breaker_{}k_rps", rps / 1000);
    let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    line(&format!("{g}/time_to_open"), secs(opened), "s");
    line(
        &format!("{g}/outage_calls_reaching_backend"),
        reached as f64 / sent as f64 * 100.0,
        "% of calls",
    );
    line(
        &format!("{g}/time_to_close_after_recovery"),
        secs(closed),
        "s",
    );
}

// --------------------------------------------------------------- fan-out

/// A backend whose latency is `base` plus an exponential tail of mean
/// `tail`, drawn per call.
fn backend(
    rng: Rng,
    base: Duration,
    tail: Duration,
    calls: Arc<AtomicU64>,
) -> impl Service<
    u32,
    Response = u32,
    Error = Down,
    Future = impl Future<Output = Result<u32, Down>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(move |r: u32| {
        calls.fetch_add(1, Ordering::Relaxed);
        let latency = base + rng.exp(tail);
        async move {
            sleep(latency).await;
            Ok::<u32, Down>(r)
        }
    })
}

/// Five backends (four answer in 5 ms plus a 5 ms tail, one in 100 ms
/// plus a 100 ms tail): p50 and p99 per strategy over `requests`.
async fn fanout(requests: u32) {
    let strategies = [
        ("all", Strategy::All),
        ("first_success", Strategy::FirstSuccess),
        (
            "best_effort_50ms",
            Strategy::BestEffort(Duration::from_millis(50)),
        ),
        ("quorum_3", Strategy::Quorum(3)),
    ];
    for (name, strategy) in strategies {
        let rng = Rng::new(7);
        let calls = Arc::new(AtomicU64::new(0));
        let mut builder = FanOut::builder("sim").strategy(strategy);
        for i in 0..5 {
            let (base, tail) = if i == 4 {
                (Duration::from_millis(100), Duration::from_millis(100))
            } else {
                (Duration::from_millis(5), Duration::from_millis(5))
            };
            builder = builder.backend(
                format!("b{i}"),
                backend(rng.clone(), base, tail, calls.clone()),
            );
        }
        let mut fan = builder.build().expect("valid fan-out");
        p50_p99("fanout", name, &mut fan, requests).await;
    }
}

/// Sends `requests` one after another through `svc` and prints their p50
/// and p99 as `<what>_p50/<name>` and `<what>_p99/<name>`.
async fn p50_p99<S>(what: &str, name: &str, svc: &mut S, requests: u32)
where
    S: Service<u32>,
    S::Error: std::fmt::Debug,
{
    let mut latencies = Vec::with_capacity(requests as usize);
    for r in 0..requests {
        let start = Instant::now();
        let _ = svc.ready().await.expect("ready").call(r).await;
        latencies.push(start.elapsed());
    }
    line(
        &format!("{what}_p50/{name}"),
        ms(percentile(&mut latencies, 50.0)),
        "ms",
    );
    line(
        &format!("{what}_p99/{name}"),
        ms(percentile(&mut latencies, 99.0)),
        "ms",
    );
}

// ----------------------------------------------------------------- hedge

/// One backend: 10 ms, but 300 ms for 5 % of calls (drawn per call).
fn tailed(
    rng: Rng,
    calls: Arc<AtomicU64>,
) -> impl Service<
    u32,
    Response = u32,
    Error = Down,
    Future = impl Future<Output = Result<u32, Down>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(move |r: u32| {
        calls.fetch_add(1, Ordering::Relaxed);
        let latency = if rng.next() < 0.95 {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(300)
        };
        async move {
            sleep(latency).await;
            Ok::<u32, Down>(r)
        }
    })
}

/// tower's hedge policy: every request may be hedged.
#[derive(Clone, Copy)]
struct HedgeAll;

impl tower::hedge::Policy<u32> for HedgeAll {
    fn clone_request(&self, req: &u32) -> Option<u32> {
        Some(*req)
    }

    fn can_retry(&self, _req: &u32) -> bool {
        true
    }
}

/// Sends `requests` one after another; prints their p99 and the backend
/// calls per request.
async fn hedged<S>(name: &str, mut svc: S, calls: Arc<AtomicU64>, requests: u32)
where
    S: Service<u32>,
    S::Error: std::fmt::Debug,
{
    p50_p99("hedge", name, &mut svc, requests).await;
    line(
        &format!("hedge_load/{name}"),
        calls.load(Ordering::Relaxed) as f64 / f64::from(requests),
        "backend calls per request",
    );
}

async fn hedge(requests: u32) {
    let fresh = || {
        let calls = Arc::new(AtomicU64::new(0));
        (tailed(Rng::new(11), calls.clone()), calls)
    };
    let (svc, calls) = fresh();
    hedged("none", svc, calls, requests).await;
    let (svc, calls) = fresh();
    let layer = HedgeLayer::builder("fixed")
        .delay(Duration::from_millis(50))
        .build()
        .expect("valid hedge");
    hedged("battlement_fixed_50ms", layer.layer(svc), calls, requests).await;
    let (svc, calls) = fresh();
    let layer = HedgeLayer::builder("p90")
        .percentile(90.0, 1000)
        .build()
        .expect("valid hedge");
    hedged(
        "battlement_percentile_p90",
        layer.layer(svc),
        calls,
        requests,
    )
    .await;
    let (svc, calls) = fresh();
    let tower_hedge = tower::hedge::Hedge::new(svc, HedgeAll, 10, 0.9, Duration::from_secs(1));
    hedged("tower_hedge_p90", tower_hedge, calls, requests).await;
    let (svc, calls) = fresh();
    let layer = tower_resilience::hedge::HedgeLayer::builder()
        .delay(Duration::from_millis(50))
        .max_hedged_attempts(2)
        .build();
    hedged(
        "tower_resilience_fixed_50ms",
        layer.layer(svc),
        calls,
        requests,
    )
    .await;
}
