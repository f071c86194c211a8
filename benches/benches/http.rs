//! Over real HTTP: an axum server on 127.0.0.1 with the same handler on
//! four routes, `/bare`, `/policy` (behind `ErrorResponseLayer` and the
//! full `Policy::http` of the `axum_server` example's shape: instrument,
//! fallback, gate, total deadline, breaker, attempt timeout; no retry: a
//! server does not retry its own handler, and an axum `Body` cannot be
//! sent twice without a replay buffer; the deadline in scope only,
//! `Carry::IfCarried`, as the example sets it for a route) and `/leaked` (the same policy
//! made once for the process with `Leak::leak`, as the example does:
//! axum clones a route's service per request, and a leaked policy's
//! clone counts no reference) and `/carried` (`/policy` with the
//! policy's default `Carry::Always`: the deadline also written into each
//! request's extensions), loaded in turn by `oha` (a real
//! load generator, `cargo install oha --locked`; `benches/http.sh`
//! installs it when missing) for a bounded time.
//!
//! Prints, in the scenarios' format (`scenario <group>/<case>: <value>
//! <unit>`), each route's requests per second, p99 and the server's CPU
//! time per request (this process's, read from `/proc/self/stat` around
//! each run; oha is a process apart), and the throughput and the CPU per
//! request each policy route costs in percent (the target: ≤ 3 % of
//! throughput). The
//! routes are loaded alternately, each round starting one route later,
//! three rounds of 10 s each (one of 2 s
//! with `BATTLEMENT_BENCH_QUICK=1`), and the figures are the medians of
//! the rounds, so a burst of load from elsewhere on a shared machine
//! lands on both.
//!
//! `OHA` names the binary (default: `oha` on the `PATH`);
//! `BATTLEMENT_HTTP_CONNECTIONS` the connections (default 50);
//! `BATTLEMENT_HTTP_SERVE=1` only serves the routes until killed, for
//! a profiler (`perf record -p`) and a load generator of one's own. Under
//! `cargo test --benches` it only serves one request per route and
//! checks the answers.

#![allow(clippy::print_stdout)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use battlement::http::ErrorResponseLayer;
use battlement::prelude::*;
use support::{benching, quick};

#[macro_use]
mod support;
use tower::ServiceBuilder;

async fn hello() -> &'static str {
    "hello"
}

/// The routes, in the order they are loaded.
const ROUTES: [&str; 4] = ["/bare", "/policy", "/leaked", "/carried"];

/// `/policy` registers in `registry`, `/leaked` in `leaked`, `/carried`
/// (the policy with its default `Carry::Always`: the deadline written
/// into each request's extensions) in `carried` (the policies are all
/// named `bench`).
fn app(registry: &Registry, leaked: &Registry, carried: &Registry) -> Result<Router, BoxError> {
    let policy = http_policy!(registry)?;
    let kept = http_policy!(leaked)?.leak();
    let carrying = http_policy!(carried, battlement::deadline::Carry::Always)?;
    // The same route, behind `ErrorResponseLayer` and either policy.
    let guarded = |policy| {
        get(hello).route_layer(
            ServiceBuilder::new()
                .layer(ErrorResponseLayer::new())
                .layer(policy),
        )
    };
    Ok(Router::new()
        .route("/bare", get(hello))
        .route("/policy", guarded(policy))
        .route("/leaked", guarded(kept))
        .route("/carried", guarded(carrying)))
}

/// One GET over a fresh connection; the status line and the body.
fn get_once(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
}

/// What one oha run measured.
struct Run {
    rps: f64,
    p99_ms: f64,
    /// The server's CPU time (this process: every thread but oha's,
    /// which runs apart) per request answered, in microseconds.
    cpu_us: f64,
}

/// This process's CPU time so far (user and system, every thread), in
/// microseconds: `/proc/self/stat`'s `utime` and `stime`, in the kernel's
/// fixed 100 ticks a second. `None` off Linux.
fn cpu_us() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may
    // hold spaces: `utime` and `stime` are the 12th and 13th of those.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 1e4)
}

/// One oha run.
fn load(oha: &str, url: &str, secs: u64, connections: u64) -> Run {
    let cpu_before = cpu_us();
    let out = Command::new(oha)
        .args([
            "-z",
            &format!("{secs}s"),
            "-c",
            &connections.to_string(),
            "--no-tui",
            "--output-format",
            "json",
            url,
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {oha} (benches/http.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "oha failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("oha's JSON");
    let rps = json["summary"]["requestsPerSec"]
        .as_f64()
        .expect("summary.requestsPerSec");
    let p99 = json["latencyPercentiles"]["p99"]
        .as_f64()
        .expect("latencyPercentiles.p99");
    let cpu = cpu_before.zip(cpu_us()).map(|(b, a)| a - b);
    let codes = &json["statusCodeDistribution"];
    assert!(
        codes
            .as_object()
            .is_some_and(|c| c.keys().all(|k| k == "200")),
        "non-200 answers from {url}: {codes}"
    );
    let answered = codes["200"].as_f64().unwrap_or(0.0);
    Run {
        rps,
        p99_ms: p99 * 1e3,
        cpu_us: cpu.map_or(f64::NAN, |c| c / answered.max(1.0)),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let registry = Registry::new();
    let leaked_registry = Registry::new();
    let carried_registry = Registry::new();
    let router = app(&registry, &leaked_registry, &carried_registry).expect("a valid policy");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("an address");
    rt.spawn(async move { axum::serve(listener, router).await });

    for path in ROUTES {
        let answer = get_once(addr, path);
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
            "{path}: {answer}"
        );
    }
    if std::env::var_os("BATTLEMENT_HTTP_SERVE").is_some() {
        // For a profiler attached to this process: serve until killed.
        println!("http: serving {} on {addr} until killed", ROUTES.join(", "));
        rt.block_on(std::future::pending::<()>());
    }
    if !benching() {
        println!("http: every route answers 200 on {addr} (run `benches/http.sh` to load them)");
        return;
    }

    let oha = std::env::var("OHA").unwrap_or_else(|_| "oha".to_owned());
    let connections = std::env::var("BATTLEMENT_HTTP_CONNECTIONS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(50);
    let (rounds, secs) = if quick() { (1, 2) } else { (ROUTES.len(), 10) };
    let mut figures = ROUTES.map(|_| [Vec::new(), Vec::new(), Vec::new()]);
    // Warm every route (connections, the policies' first calls).
    for path in ROUTES {
        load(&oha, &format!("http://{addr}{path}"), 1, connections);
    }
    for round in 0..rounds {
        // Each round starts one route later, so over the rounds the
        // routes take turns at each position: a position that
        // costs (the machine warming, the loopback's closed connections
        // piling up) lands on each.
        for k in 0..ROUTES.len() {
            let i = (k + round) % ROUTES.len();
            let path = ROUTES[i];
            let run = load(&oha, &format!("http://{addr}{path}"), secs, connections);
            for (figure, value) in figures[i].iter_mut().zip([run.rps, run.p99_ms, run.cpu_us]) {
                figure.push(value);
            }
        }
    }
    let medians = figures.map(|f| f.map(median));
    let line = |name: &str, value: f64, unit: &str| {
        println!("scenario http/{name}: {value:.3} {unit}");
    };
    let [bare_rps, _, bare_cpu] = medians[0];
    for (path, [rps, p99, cpu]) in ROUTES.into_iter().zip(medians) {
        let name = &path[1..];
        line(&format!("{name}_rps"), rps, "requests/s");
        line(&format!("{name}_p99"), p99, "ms");
        // The server's CPU per request: steadier than throughput on a
        // shared machine (a neighbour's burst slows both alike), and what
        // the policy adds to it is what it costs a busy server.
        line(&format!("{name}_cpu_per_request"), cpu, "us");
        if name != "bare" {
            line(
                &format!("{name}_throughput_cost"),
                (1.0 - rps / bare_rps) * 100.0,
                "%",
            );
            line(
                &format!("{name}_cpu_cost"),
                (cpu / bare_cpu - 1.0) * 100.0,
                "%",
            );
        }
    }
    println!(
        "http: {rounds} rounds of {secs} s per route, {connections} connections, medians (oha, loopback)"
    );
    let served = registry.health();
    std::hint::black_box(served);
    rt.shutdown_timeout(Duration::from_secs(1));
}
