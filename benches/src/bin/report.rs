//! Regenerates `benches/README.md`'s tables and `benches/overhead.png`
//! from a bench run, so no figure in them is typed by hand.
//!
//! `cargo run -p battlement-benches --bin report [-- --saved]`
//!
//! 1. Unless `--saved` is given, collects criterion's estimates (the
//!    median of each row, `target/criterion/**/new/estimates.json`, or
//!    under `$CARGO_TARGET_DIR`) into `benches/results/times.txt`, one
//!    `time <group>/<row>: <ns> ns` line each.
//! 2. Reads `benches/results/times.txt` and `benches/results/output.txt`
//!    (the benches' own lines, saved by `benches/run.sh`: `alloc <id>: <n>
//!    allocations/call` and `scenario <id>: <value> <unit>`) and
//!    `benches/results/machine.txt`.
//! 3. Writes the tables between `<!-- report:begin -->` and
//!    `<!-- report:end -->` in `benches/README.md`, and the plot of the
//!    overhead per call over a bare `service_fn` per layer, battlement
//!    beside each peer, to `benches/overhead.png`.
//!
//! Both results files are committed with the README, so `--saved`
//! regenerates the same README and picture from them.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::FontStyle;

type Error = Box<dyn std::error::Error + Send + Sync>;

const BEGIN: &str = "<!-- report:begin -->";
const END: &str = "<!-- report:end -->";

/// One peer of a row: who, its criterion id, and the bare service its
/// overhead is measured against (`None`: the row's).
struct Peer {
    who: &'static str,
    id: &'static str,
    bare: Option<&'static str>,
}

const fn peer(who: &'static str, id: &'static str) -> Peer {
    Peer {
        who,
        id,
        bare: None,
    }
}

/// One row of the per-call table.
struct Row {
    layer: &'static str,
    path: &'static str,
    ours: &'static str,
    bare: Option<&'static str>,
    peers: &'static [Peer],
}

const BREAKER_CLOSED_PEERS: &[Peer] = &[
    peer("tower-resilience", "breaker/tower_resilience_closed"),
    peer("failsafe", "breaker/failsafe_closed"),
];
const BREAKER_OPEN_PEERS: &[Peer] = &[
    peer(
        "tower-resilience",
        "breaker/tower_resilience_open_rejection",
    ),
    peer("failsafe", "breaker/failsafe_open_rejection"),
];
const RETRY_PEERS: &[Peer] = &[
    peer("tower::retry", "retry/tower_retry_never"),
    peer("tower-resilience", "retry/tower_resilience_retry"),
];
const TIMEOUT_PEERS: &[Peer] = &[
    peer("tower::timeout", "deadline/tower_timeout"),
    peer(
        "tower-resilience time limiter",
        "deadline/tower_resilience_time_limiter",
    ),
];
const STACK_PEERS: &[Peer] = &[
    Peer {
        who: "tower-resilience stack of four",
        id: "stack_peers/tower_resilience_standard",
        bare: Some("stack_peers/bare_service_fn"),
    },
    Peer {
        who: "tower built-ins (timeout, retry, timeout)",
        id: "stack_peers/tower_builtins",
        bare: Some("stack_peers/bare_service_fn"),
    },
];

const ROWS: &[Row] = &[
    Row {
        layer: "breaker",
        path: "closed (count window)",
        ours: "breaker/battlement_closed",
        bare: Some("breaker/bare_service_fn"),
        peers: BREAKER_CLOSED_PEERS,
    },
    Row {
        layer: "breaker",
        path: "closed (time window)",
        ours: "breaker/battlement_closed_time_window",
        bare: Some("breaker/bare_service_fn"),
        peers: BREAKER_CLOSED_PEERS,
    },
    Row {
        layer: "breaker",
        path: "open: rejection",
        ours: "breaker/battlement_open_rejection",
        bare: Some("breaker/bare_service_fn"),
        peers: BREAKER_OPEN_PEERS,
    },
    Row {
        layer: "breaker",
        path: "forced open: rejection",
        ours: "breaker/battlement_forced_open_rejection",
        bare: Some("breaker/bare_service_fn"),
        peers: BREAKER_OPEN_PEERS,
    },
    Row {
        layer: "retry",
        path: "success, no retry",
        ours: "retry/battlement_no_retry",
        bare: Some("retry/bare_service_fn"),
        peers: RETRY_PEERS,
    },
    Row {
        layer: "retry",
        path: "success, with budget",
        ours: "retry/battlement_no_retry_with_budget",
        bare: Some("retry/bare_service_fn"),
        peers: RETRY_PEERS,
    },
    Row {
        layer: "deadline",
        path: "total deadline, success",
        ours: "deadline/deadline_layer",
        bare: Some("deadline/bare_service_fn"),
        peers: TIMEOUT_PEERS,
    },
    Row {
        layer: "deadline",
        path: "attempt timeout, success",
        ours: "deadline/attempt_timeout_layer",
        bare: Some("deadline/bare_service_fn"),
        peers: TIMEOUT_PEERS,
    },
    Row {
        layer: "deadline",
        path: "expired: rejection",
        ours: "deadline/deadline_layer_expired_rejection",
        bare: Some("deadline/bare_service_fn"),
        peers: &[],
    },
    Row {
        layer: "fallback",
        path: "success (value)",
        ours: "fallback/success/value",
        bare: Some("fallback/bare_service_fn"),
        peers: &[peer(
            "tower-resilience",
            "fallback/success/tower_resilience_value",
        )],
    },
    Row {
        layer: "fallback",
        path: "failure: fallback served",
        ours: "fallback/failure/value",
        bare: Some("fallback/bare_service_fn"),
        peers: &[peer(
            "tower-resilience",
            "fallback/failure/tower_resilience_value",
        )],
    },
    Row {
        layer: "gate",
        path: "admitted",
        ours: "gate/admitted",
        bare: Some("gate/bare_service_fn"),
        peers: &[peer("tower::load_shed", "gate/tower_load_shed_admitted")],
    },
    Row {
        layer: "gate",
        path: "shed: rejection",
        ours: "gate/shed",
        bare: Some("gate/bare_service_fn"),
        peers: &[peer("tower::load_shed", "gate/tower_load_shed_rejected")],
    },
    Row {
        layer: "bulkhead",
        path: "admitted",
        ours: "limit/bulkhead_admitted",
        bare: Some("limit/bare_service_fn"),
        peers: &[
            peer("tower::limit concurrency", "limit/tower_concurrency_limit"),
            peer("tower::limit rate", "limit/tower_rate_limit"),
            peer("tower-resilience", "limit/tower_resilience_bulkhead"),
        ],
    },
    Row {
        layer: "bulkhead",
        path: "full: rejection",
        ours: "limit/bulkhead_rejected",
        bare: Some("limit/bare_service_fn"),
        peers: &[peer(
            "tower::load_shed + limit",
            "limit/tower_load_shed_concurrency_limit_rejected",
        )],
    },
    Row {
        layer: "adaptive limit",
        path: "admitted",
        ours: "limit/adaptive_admitted",
        bare: Some("limit/bare_service_fn"),
        peers: &[peer(
            "tower-resilience AIMD",
            "limit/tower_resilience_adaptive_aimd",
        )],
    },
    Row {
        layer: "keyed breaker",
        path: "existing key",
        ours: "limit/keyed_breaker_existing_key",
        bare: Some("limit/bare_service_fn"),
        peers: &[],
    },
    Row {
        layer: "hedge",
        path: "primary answers, no backup",
        ours: "hedge/hedge_no_backup",
        bare: Some("hedge/bare"),
        peers: &[peer(
            "tower-resilience",
            "hedge/tower_resilience_hedge_no_backup",
        )],
    },
    Row {
        layer: "fan-out (10 backends)",
        path: "all",
        ours: "fanout_10/fanout_all",
        bare: None,
        peers: &[
            peer("join_all", "fanout_10/join_all"),
            peer("FuturesUnordered", "fanout_10/futures_unordered"),
        ],
    },
    Row {
        layer: "instrument",
        path: "success",
        ours: "registry/instrument",
        bare: Some("registry/bare_service_fn"),
        peers: &[],
    },
    Row {
        layer: "chaos",
        path: "off",
        ours: "chaos/off",
        bare: Some("chaos/bare_service_fn"),
        peers: &[],
    },
    Row {
        layer: "stack",
        path: "canonical (hand-built)",
        ours: "stack/canonical",
        bare: Some("stack/bare_service_fn"),
        peers: STACK_PEERS,
    },
    Row {
        layer: "stack",
        path: "policy (`Policy`)",
        ours: "stack/policy",
        bare: Some("stack/bare_service_fn"),
        peers: STACK_PEERS,
    },
    Row {
        layer: "stack",
        path: "canonical, every layer made once for the process (`Leak`)",
        ours: "stack/canonical_leaked",
        bare: Some("stack/bare_service_fn"),
        peers: &[],
    },
    Row {
        layer: "stack",
        path: "policy, made once for the process (`Leak`)",
        ours: "stack/policy_leaked",
        bare: Some("stack/bare_service_fn"),
        peers: &[],
    },
    Row {
        layer: "http",
        path: "`Policy::http` as a route (deadline in scope only), one request in process (body read)",
        ours: "http_stack/policy",
        bare: Some("http_stack/bare"),
        peers: &[],
    },
    Row {
        layer: "http",
        path: "the same with the deadline written into each request (`Carry::Always`, the default)",
        ours: "http_stack/policy_carried",
        bare: Some("http_stack/bare"),
        peers: &[],
    },
    Row {
        layer: "http",
        path: "`Policy::http`, a clone per request as axum's `Router` makes, two threads",
        ours: "http_stack/policy_cloned_two_threads",
        bare: Some("http_stack/bare_cloned_two_threads"),
        peers: &[],
    },
    Row {
        layer: "http",
        path: "the same, the policy made once for the process (`Leak`)",
        ours: "http_stack/leaked_cloned_two_threads",
        bare: Some("http_stack/bare_cloned_two_threads"),
        peers: &[],
    },
    Row {
        layer: "registry",
        path: "`health()`, 1,000 components",
        ours: "registry/health_1000_components",
        bare: None,
        peers: &[],
    },
    Row {
        layer: "registry",
        path: "`health()`, 1,000 instruments",
        ours: "registry/health_1000_instruments",
        bare: None,
        peers: &[],
    },
    Row {
        layer: "registry",
        path: "Prometheus text, 1,000 components",
        ours: "registry/prometheus_1000_components",
        bare: None,
        peers: &[],
    },
    Row {
        layer: "registry",
        path: "Prometheus text, 1,000 instruments",
        ours: "registry/prometheus_1000_instruments",
        bare: None,
        peers: &[],
    },
];

/// What every call or rejection pays whatever the layer does.
const FLOORS: &[(&str, &str)] = &[
    ("one read of tokio's clock", "breaker/clock_read"),
    (
        "boxing a `CircuitOpen` into a `BoxError` and dropping it",
        "breaker/box_circuit_open_floor",
    ),
    ("an `Arc` clone and drop", "fallback/arc_clone_drop"),
];

/// The contention rows: two threads sharing one of each.
const CONTENDED: &[(&str, &str, &[Peer])] = &[
    (
        "nothing (bare `service_fn`)",
        "contention/bare_service_fn_two_threads",
        &[],
    ),
    (
        "one breaker",
        "breaker/battlement_closed_two_threads",
        &[
            peer(
                "tower-resilience",
                "breaker/tower_resilience_closed_two_threads",
            ),
            peer("failsafe", "breaker/failsafe_closed_two_threads"),
        ],
    ),
    (
        "one open breaker, refusing",
        "breaker/battlement_open_rejection_two_threads",
        &[peer(
            "failsafe",
            "breaker/failsafe_open_rejection_two_threads",
        )],
    ),
    ("one gate", "contention/gate_admitted_two_threads", &[]),
    ("one instrument", "contention/instrument_two_threads", &[]),
    (
        "one retry budget",
        "contention/retry_budget_two_threads",
        &[
            peer(
                "tower::retry TpsBudget",
                "contention/tower_retry_tps_budget_two_threads",
            ),
            peer(
                "tower-resilience token bucket",
                "contention/tower_resilience_retry_budget_two_threads",
            ),
        ],
    ),
    (
        "one bulkhead",
        "contention/bulkhead_admitted_two_threads",
        &[
            peer(
                "tower::limit concurrency",
                "contention/tower_concurrency_limit_two_threads",
            ),
            peer(
                "tower-resilience",
                "contention/tower_resilience_bulkhead_two_threads",
            ),
        ],
    ),
];

/// The figures of one run.
#[derive(Default)]
struct Figures {
    /// Criterion medians, ns per call.
    times: BTreeMap<String, f64>,
    /// Allocations per call.
    allocs: BTreeMap<String, f64>,
    /// Scenario outcomes: value and unit.
    scenarios: BTreeMap<String, (f64, String)>,
    machine: String,
}

impl Figures {
    fn time(&self, id: &str) -> Option<f64> {
        self.times.get(id).copied()
    }

    fn overhead(&self, id: &str, bare: Option<&str>) -> Option<f64> {
        Some(self.time(id)? - self.time(bare?)?)
    }

    fn scenario(&self, id: &str) -> Option<f64> {
        self.scenarios.get(id).map(|(v, _)| *v)
    }
}

fn main() -> Result<(), Error> {
    let saved = std::env::args().any(|a| a == "--saved");
    let benches = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let results = benches.join("results");
    std::fs::create_dir_all(&results)?;
    if !saved {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| benches.join("../target"), PathBuf::from);
        let times = collect(&target.join("criterion"))?;
        let mut out = String::new();
        for (id, ns) in &times {
            writeln!(out, "time {id}: {ns:.3} ns")?;
        }
        std::fs::write(results.join("times.txt"), out)?;
        println!("report: {} criterion rows collected", times.len());
    }
    let figures = read(&results)?;
    let text = render(&figures)?;
    let readme = benches.join("README.md");
    let old = std::fs::read_to_string(&readme)?;
    let (Some(a), Some(b)) = (old.find(BEGIN), old.find(END)) else {
        return Err(format!("{} has no {BEGIN} ... {END} markers", readme.display()).into());
    };
    let new = format!("{}{BEGIN}\n{text}{}", &old[..a], &old[b..]);
    std::fs::write(&readme, new)?;
    plot(&figures, &benches.join("overhead.png"))?;
    println!(
        "report: wrote {} and {}",
        readme.display(),
        benches.join("overhead.png").display()
    );
    Ok(())
}

/// Every `new/estimates.json` under `dir`, by its `group/row` id (from
/// the `benchmark.json` beside it), as the median in ns.
fn collect(dir: &Path) -> Result<BTreeMap<String, f64>, Error> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                let bench = path.join("benchmark.json");
                let estimates = path.join("estimates.json");
                if let (Ok(b), Ok(e)) = (
                    std::fs::read_to_string(&bench),
                    std::fs::read_to_string(&estimates),
                ) {
                    let b: serde_json::Value = serde_json::from_str(&b)?;
                    let e: serde_json::Value = serde_json::from_str(&e)?;
                    if let (Some(id), Some(ns)) = (
                        b["full_id"].as_str(),
                        e["median"]["point_estimate"].as_f64(),
                    ) {
                        out.insert(id.to_owned(), ns);
                    }
                }
            } else {
                stack.push(path);
            }
        }
    }
    Ok(out)
}

/// `<kind> <id>: <value> <unit>` lines of `text`, as (id, value, unit).
fn lines<'a>(text: &'a str, kind: &str) -> impl Iterator<Item = (String, f64, String)> + 'a {
    let prefix = format!("{kind} ");
    text.lines().filter_map(move |l| {
        let rest = l.strip_prefix(&prefix)?;
        let (id, rest) = rest.split_once(": ")?;
        let (value, unit) = rest.split_once(' ').unwrap_or((rest, ""));
        Some((id.to_owned(), value.parse().ok()?, unit.to_owned()))
    })
}

fn read(results: &Path) -> Result<Figures, Error> {
    let mut f = Figures::default();
    let times = std::fs::read_to_string(results.join("times.txt"))?;
    for (id, ns, _) in lines(&times, "time") {
        f.times.insert(id, ns);
    }
    let output = std::fs::read_to_string(results.join("output.txt")).unwrap_or_default();
    for (id, n, _) in lines(&output, "alloc") {
        f.allocs.insert(id, n);
    }
    for (id, v, unit) in lines(&output, "scenario") {
        f.scenarios.insert(id, (v, unit));
    }
    f.machine = std::fs::read_to_string(results.join("machine.txt"))
        .unwrap_or_else(|_| "an unnamed machine".to_owned())
        .trim()
        .to_owned();
    Ok(f)
}

fn ns(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.1} µs", v / 1e3)
    } else {
        format!("{v:.1} ns")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_owned(), f)
}

fn allocs(f: &Figures, id: &str) -> String {
    opt(f.allocs.get(id).copied(), |n| {
        if n >= 100.0 {
            format!("{n:.0}")
        } else {
            format!("{n:.2}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned()
        }
    })
}

fn render(f: &Figures) -> Result<String, Error> {
    let mut s = String::new();
    writeln!(
        s,
        "_Generated by `cargo run -p battlement-benches --bin report` from \
         `benches/results/` (criterion medians; allocations counted per call); \
         do not edit by hand._\n"
    )?;
    writeln!(s, "### Per call, on {}\n", f.machine)?;
    writeln!(
        s,
        "Overhead: time per call minus the same group's bare `service_fn`. \
         Ratio: battlement's time per call ÷ the peer's (below 1: battlement \
         is faster).\n"
    )?;
    writeln!(
        s,
        "| layer | path | battlement | overhead | allocs | peers: time, overhead, allocs, ratio |"
    )?;
    writeln!(s, "|---|---|---:|---:|---:|---|")?;
    for row in ROWS {
        let ours = f.time(row.ours);
        let mut peers = Vec::new();
        for p in row.peers {
            let t = f.time(p.id);
            let over = f.overhead(p.id, p.bare.or(row.bare));
            let ratio = match (ours, t) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "–".to_owned(),
            };
            peers.push(format!(
                "{}: {}, {}, {} allocs, **{ratio}**",
                p.who,
                opt(t, ns),
                opt(over, ns),
                allocs(f, p.id)
            ));
        }
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            row.layer,
            row.path,
            opt(ours, ns),
            opt(f.overhead(row.ours, row.bare), ns),
            allocs(f, row.ours),
            if peers.is_empty() {
                "–".to_owned()
            } else {
                peers.join("<br>")
            }
        )?;
    }

    writeln!(
        s,
        "\nFloors under those figures, from the same run:\n\n| floor | time |\n|---|---:|"
    )?;
    for (what, id) in FLOORS {
        writeln!(s, "| {what} | {} |", opt(f.time(id), ns))?;
    }

    writeln!(
        s,
        "\n### Contention: two threads sharing one of each\n\n\
         Calls per second of both threads together (wall time; \
         tower-resilience's calls are driven by `block_on`).\n"
    )?;
    writeln!(s, "| shared | battlement | peers |")?;
    writeln!(s, "|---|---:|---|")?;
    // Millions a second, or thousands below one million (a slow peer's
    // 0.04 M would print as 0.0).
    let rate = |t: f64| {
        let per_sec = 1e9 / t;
        if per_sec >= 1e6 {
            format!("{:.1} M calls/s", per_sec / 1e6)
        } else {
            format!("{:.0} k calls/s", per_sec / 1e3)
        }
    };
    for (what, id, peers) in CONTENDED {
        let list: Vec<String> = peers
            .iter()
            .map(|p| format!("{}: {}", p.who, opt(f.time(p.id), rate)))
            .collect();
        writeln!(
            s,
            "| {what} | {} | {} |",
            opt(f.time(id), rate),
            if list.is_empty() {
                "–".to_owned()
            } else {
                list.join("<br>")
            }
        )?;
    }

    writeln!(
        s,
        "\n### Scenarios (tokio's paused clock: simulated time, the same on any machine)\n"
    )?;
    scenario_table(
        &mut s,
        f,
        "Upstream load amplification under a total outage (100 requests/s for 60 s, 3 attempts)",
        &["amplification"],
    )?;
    scenario_table(
        &mut s,
        f,
        "Breaker at 10 % failures over 30 s, 5 s open: 30 s healthy, a 20 s outage, recovery",
        &["breaker_1k_rps", "breaker_100k_rps"],
    )?;
    scenario_table(
        &mut s,
        f,
        "Fan-out over five backends, one slow (100 ms + a 100 ms tail), per strategy",
        &["fanout_p50", "fanout_p99"],
    )?;
    scenario_table(
        &mut s,
        f,
        "One backend, 10 ms but 300 ms for 5 % of calls: with and without a hedge",
        &["hedge_p50", "hedge_p99", "hedge_load"],
    )?;
    writeln!(s, "### Over real HTTP (axum on loopback, `oha`)\n")?;
    scenario_table(
        &mut s,
        f,
        "`/bare` against `/policy` (the full `Policy::http`, as a route: the deadline in scope only), `/leaked` (the same made once with `Leak`) and `/carried` (`/policy` with the deadline also written into each request, `Carry::Always`, the policy's default); CPU is the server's per request",
        &["http"],
    )?;

    writeln!(s, "### Targets\n")?;
    for line in targets(f) {
        writeln!(s, "- {line}")?;
    }
    writeln!(s)?;
    Ok(s)
}

/// A table of the scenario lines whose group is one of `columns`, one
/// row per case.
fn scenario_table(s: &mut String, f: &Figures, title: &str, columns: &[&str]) -> Result<(), Error> {
    let mut cases: Vec<String> = Vec::new();
    for id in f.scenarios.keys() {
        if let Some((g, case)) = id.split_once('/')
            && columns.contains(&g)
            && !cases.iter().any(|c| c == case)
        {
            cases.push(case.to_owned());
        }
    }
    writeln!(s, "**{title}**\n")?;
    if cases.is_empty() {
        writeln!(s, "_not run_\n")?;
        return Ok(());
    }
    writeln!(s, "| case | {} |", columns.join(" | "))?;
    writeln!(s, "|---|{}", "---:|".repeat(columns.len()))?;
    for case in cases {
        let cells: Vec<String> = columns
            .iter()
            .map(|g| {
                f.scenarios
                    .get(&format!("{g}/{case}"))
                    .map_or_else(|| "–".to_owned(), |(v, u)| format!("{v:.3} {u}"))
            })
            .collect();
        writeln!(s, "| {case} | {} |", cells.join(" | "))?;
    }
    writeln!(s)?;
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**missed**" }
}

/// What one call of the canonical stack does that costs time beyond its
/// instructions, counted with callgrind (`BATTLEMENT_IR=100000` on the
/// stack bench, `lock`-prefixed and `rdtsc` instructions executed per
/// call, and calls to `clock_gettime`). Counted by hand when the stack's
/// code changes; the report multiplies the counts by the floors measured
/// in the same run.
struct StackProfile {
    counted: &'static str,
    rmws: f64,
    tsc_reads: f64,
    tokio_reads: f64,
    instructions: &'static str,
    why: &'static str,
}

const STACK_PROFILE: StackProfile = StackProfile {
    counted: "3 December 2026, fourth round",
    rmws: 8.0,
    tsc_reads: 2.0,
    tokio_reads: 0.0,
    instructions: "1,134",
    why: "The read-modify-writes: the latency histogram's bucket (1); the \
          `Arc` the fallback's, the retry's and the breaker's futures each \
          hold, counted up and down (6); the breaker's success count, which \
          also places the call in its window (1). The instrument's start \
          and latency sum, the gate's admitted count and the budget's \
          deposit are striped, and a \
          thread that leases its stripe adds to it with a plain load and \
          store (no `lock` prefix). Made once for the process (`Leak`, the \
          `_leaked` rows), the fallback's, the retry's and the breaker's \
          futures count nothing: 2 read-modify-writes (4 until the retry \
          kept its spare for the process, in the sixth round). The TSC reads: the instrument's \
          start and end. The instrument publishes its start for the layers \
          it calls, so the budget takes its slot and the deadline layer its \
          \"now\" from it (mapped onto tokio's clock through a pair of \
          readings each thread renews every 2^22 ticks): no read of tokio's \
          clock on the call path. Before this round: 12 read-modify-writes; \
          before the second round of 2 December, 14, 3 TSC reads and one \
          read of tokio's clock.",
};

/// The targets of DESIGN.md and issue 20, met or missed, with figures.
fn targets(f: &Figures) -> Vec<String> {
    let mut out = Vec::new();
    let open = f.time("breaker/battlement_open_rejection");
    let tr = f.time("breaker/tower_resilience_open_rejection");
    let fs = f.time("breaker/failsafe_open_rejection");
    if let (Some(o), Some(t), Some(s)) = (open, tr, fs) {
        out.push(format!(
            "Breaker open rejection ≤ 30 ns and below failsafe's and tower-resilience's: {} \
             ({} against failsafe {} and tower-resilience {}).",
            verdict(o <= 30.0 && o < t && o < s),
            ns(o),
            ns(s),
            ns(t)
        ));
    }
    out.extend(layer_budgets(f));
    let bare = f.time("stack/bare_service_fn");
    for id in [
        "stack/canonical",
        "stack/policy",
        "stack/canonical_leaked",
        "stack/policy_leaked",
    ] {
        if let (Some(t), Some(b)) = (f.time(id), bare) {
            let a = f.allocs.get(id).copied().unwrap_or(f64::NAN);
            out.push(format!(
                "`{id}` ≤ 150 ns over a bare `service_fn` with zero allocations: {} \
                 ({} overhead, {} per call, {a} allocations).",
                verdict(t - b <= 150.0 && a == 0.0),
                ns(t - b),
                ns(t)
            ));
        }
    }
    if let (Some(t), Some(rmw), Some(tsc), Some(tokio)) = (
        f.time("stack/canonical"),
        f.time("stack_floor/atomic_rmw"),
        f.time("stack_floor/fast_clock_read"),
        f.time("stack_floor/tokio_clock_read"),
    ) {
        let p = STACK_PROFILE;
        let fixed = p.rmws * rmw + p.tsc_reads * tsc + p.tokio_reads * tokio;
        out.push(format!(
            "Where `stack/canonical`'s {} go, from callgrind's counts per call \
             ({}) times this run's floors: {} atomic read-modify-writes × {} ({}), \
             {} TSC reads × {} ({}), {} reads of tokio's clock × {} ({}); \
             {} left for the {} instructions of the layers' own work. {}",
            ns(t),
            p.counted,
            p.rmws,
            ns(rmw),
            ns(p.rmws * rmw),
            p.tsc_reads,
            ns(tsc),
            ns(p.tsc_reads * tsc),
            p.tokio_reads,
            ns(tokio),
            ns(p.tokio_reads * tokio),
            ns((t - fixed).max(0.0)),
            p.instructions,
            p.why,
        ));
    }
    if let (Some(c), Some(p)) = (f.time("stack/canonical"), f.time("stack/policy")) {
        let d = (p / c - 1.0) * 100.0;
        out.push(format!(
            "The `Policy` within 2 % of the hand-built stack: {} ({d:+.1} %).",
            verdict(d <= 2.0)
        ));
    }
    for (case, what) in [
        ("policy", "the policy"),
        ("leaked", "the policy made once for the process (`Leak`)"),
    ] {
        let line = match f.scenario(&format!("http/{case}_throughput_cost")) {
            Some(c) => format!("{} ({c:.1} %)", verdict(c <= 3.0)),
            None => "not run".to_owned(),
        };
        let cpu = f
            .scenario(&format!("http/{case}_cpu_cost"))
            .map_or(String::new(), |c| {
                format!(" The server's CPU per request: {c:+.1} %.")
            });
        out.push(format!(
            "Over HTTP, {what} costs ≤ 3 % of throughput: {line}.{cpu}"
        ));
    }
    out
}

/// DESIGN.md's per-layer budgets (happy path, overhead over the group's
/// bare `service_fn`, zero allocations), met or missed, with figures.
fn layer_budgets(f: &Figures) -> Vec<String> {
    /// What, the row, its bare `service_fn`, the budget in ns.
    const BUDGETS: [(&str, &str, &str, f64); 5] = [
        (
            "breaker",
            "breaker/battlement_closed",
            "breaker/bare_service_fn",
            25.0,
        ),
        (
            "retry without a retry",
            "retry/battlement_no_retry",
            "retry/bare_service_fn",
            15.0,
        ),
        (
            "fallback without a failure",
            "fallback/success/value",
            "fallback/bare_service_fn",
            10.0,
        ),
        ("gate", "gate/admitted", "gate/bare_service_fn", 10.0),
        (
            "instrument",
            "registry/instrument",
            "registry/bare_service_fn",
            40.0,
        ),
    ];
    let allocs = |id: &str| f.allocs.get(id).copied().unwrap_or(f64::NAN);
    let mut out = Vec::new();
    for (what, id, bare, budget) in BUDGETS {
        if let Some(o) = f.overhead(id, Some(bare)) {
            let a = allocs(id);
            out.push(format!(
                "{what} ≤ {} over a bare `service_fn`, zero allocations: {} \
                 (`{id}`: {} overhead, {a} allocations).",
                ns(budget),
                verdict(o <= budget && a == 0.0),
                ns(o)
            ));
        }
    }
    let bare = Some("deadline/bare_service_fn");
    if let (Some(d), Some(t)) = (
        f.overhead("deadline/deadline_layer", bare),
        f.overhead("deadline/tower_timeout", bare),
    ) {
        let a = allocs("deadline/deadline_layer");
        out.push(format!(
            "deadline within 1.2× of `tower::timeout`, zero allocations: {} \
             (`deadline/deadline_layer` {} overhead against {}, {:.2}×; {a} allocations).",
            verdict(d <= 1.2 * t && a == 0.0),
            ns(d),
            ns(t),
            d / t
        ));
    }
    out
}

// ------------------------------------------------------------------ plot

fn register_font() -> Result<(), Error> {
    for style in [FontStyle::Normal, FontStyle::Bold] {
        let bytes = match style {
            FontStyle::Bold => dejavu::sans::bold(),
            _ => dejavu::sans::regular(),
        };
        plotters::style::register_font("sans-serif", style, bytes)
            .map_err(|_| "the embedded font could not be read")?;
    }
    Ok(())
}

fn color(who: &str) -> RGBColor {
    if who.starts_with("battlement") {
        RGBColor(31, 119, 180)
    } else if who.starts_with("tower-resilience") {
        RGBColor(255, 127, 14)
    } else if who.starts_with("tower") {
        RGBColor(44, 160, 44)
    } else if who.starts_with("failsafe") {
        RGBColor(148, 103, 189)
    } else {
        RGBColor(127, 127, 127)
    }
}

/// One bar per implementation, grouped per row that has peers: the
/// overhead per call over the bare `service_fn`.
fn plot(f: &Figures, path: &Path) -> Result<(), Error> {
    struct Bar {
        label: String,
        who: String,
        value: f64,
    }
    let mut groups: Vec<(String, Vec<Bar>)> = Vec::new();
    for row in ROWS
        .iter()
        .filter(|r| !r.peers.is_empty() && r.bare.is_some())
    {
        let mut bars = Vec::new();
        if let Some(v) = f.overhead(row.ours, row.bare) {
            bars.push(Bar {
                label: "battlement".to_owned(),
                who: "battlement".to_owned(),
                value: v,
            });
        }
        for p in row.peers {
            if let Some(v) = f.overhead(p.id, p.bare.or(row.bare)) {
                bars.push(Bar {
                    label: p.who.to_owned(),
                    who: p.who.to_owned(),
                    value: v,
                });
            }
        }
        if !bars.is_empty() {
            groups.push((
                format!("{}: {}", row.layer, row.path).replace('`', ""),
                bars,
            ));
        }
    }
    register_font()?;
    let slots: usize = groups.iter().map(|(_, b)| b.len() + 1).sum();
    let (w, h) = (1400u32, (60 + slots * 26) as u32);
    let max = groups
        .iter()
        .flat_map(|(_, b)| b.iter().map(|b| b.value))
        .fold(1.0f64, f64::max);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Overhead per call over a bare service_fn (ns, lower is better) — {}",
                    f.machine
                ),
                ("sans-serif", 20).into_font().style(FontStyle::Bold),
            )
            .margin(12)
            .x_label_area_size(30)
            .build_cartesian_2d(0f64..max * 1.45, 0f64..slots as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("ns per call")
            .draw()?;
        let mut y = slots as f64;
        for (title, bars) in &groups {
            y -= 1.0;
            chart.draw_series(std::iter::once(Text::new(
                title.clone(),
                (0.0, y + 0.85),
                ("sans-serif", 16).into_font().style(FontStyle::Bold),
            )))?;
            for bar in bars {
                y -= 1.0;
                let c = color(&bar.who);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y + 0.15), (bar.value.max(0.0), y + 0.85)],
                    c.filled(),
                )))?;
                chart.draw_series(std::iter::once(Text::new(
                    format!("{} {}", bar.label, ns(bar.value)),
                    (bar.value.max(0.0) + max * 0.01, y + 0.75),
                    ("sans-serif", 14).into_font(),
                )))?;
            }
        }
        root.present()?;
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut png = png::Encoder::new(file, w, h);
    png.set_color(png::ColorType::Rgb);
    png.set_depth(png::BitDepth::Eight);
    let mut writer = png.write_header()?;
    writer.write_image_data(&buf)?;
    writer.finish()?;
    Ok(())
}
