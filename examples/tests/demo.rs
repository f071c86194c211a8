//! The demo end to end: a short run over real sockets on 127.0.0.1 (the
//! only wall-clock test here, about 5 s plus the last answers), the
//! schedule's determinism on paused time, and the command line.

use std::time::Duration;

use battlement::chaos::Chaos;
use battlement_examples::demo::load::{Route, request_for};
use battlement_examples::demo::report::schedule_report;
use battlement_examples::demo::{Class, Cli, Config, Output, run, schedule};
use clap::Parser;
use http::StatusCode;
use tower::{Layer, ServiceExt};

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("battlement-demo-{}-{name}", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_shows_the_difference_and_accounts_for_every_request() {
    let (json, png) = (temp("summary.json"), temp("summary.png"));
    let config = Config {
        duration: Duration::from_secs(5),
        rps: 40,
        seed: 7,
        json: Some(json.clone()),
        plot: Some(png.clone()),
        output: Output::Quiet,
    };
    let summary = run(config).await.unwrap();

    // Every request sent landed in exactly one class, on both sides.
    for side in [&summary.protected, &summary.unprotected] {
        assert_eq!(side.counts.sent, 200, "{side:?}");
        assert_eq!(side.counts.classified(), side.counts.sent, "{side:?}");
        let per_phase: u64 = side.phases.iter().map(|p| p.counts.sent).sum();
        assert_eq!(per_phase, side.counts.sent, "every request fell in a phase");
    }
    // The unprotected side has nothing to shed or fall back to.
    assert_eq!(summary.unprotected.counts.fallback, 0);
    assert_eq!(summary.unprotected.counts.shed, 0);
    assert!(summary.protected.counts.fallback > 0, "{summary}");

    // During the outage the protected side answers far faster and calls
    // the upstream less.
    let outage = summary.outage.as_ref().unwrap();
    assert!(
        outage.protected_p99_ms * 2.0 < outage.unprotected_p99_ms,
        "{outage:?}\n{summary}"
    );
    assert!(
        outage.protected_upstream_calls < outage.unprotected_upstream_calls,
        "{outage:?}"
    );
    // The breaker opened at some point, and is closed again after the
    // recovery.
    assert!(summary.end.breaker_first_open_ms.is_some(), "{summary}");
    assert_eq!(summary.end.breaker, "closed", "{summary}");
    assert_eq!(summary.upstream_unnamed_calls, 0);

    // The JSON file says the same.
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for side in ["protected", "unprotected"] {
        let s = &written[side];
        let classes: u64 = ["succeeded", "fallback", "shed", "failed"]
            .iter()
            .map(|k| s[k].as_u64().unwrap())
            .sum();
        assert_eq!(s["sent"].as_u64(), Some(classes), "{side}: {s}");
    }
    assert_eq!(written["end"]["breaker"], "closed");
    assert_eq!(written["config"]["seed"], 7);
    assert_eq!(written["schedule"].as_array().unwrap().len(), 5);
    assert_eq!(
        written["outage"]["protected_upstream_calls"].as_u64(),
        Some(outage.protected_upstream_calls)
    );
    assert_eq!(written["timeline"].as_array().unwrap().len(), 5);

    // The picture is a PNG of the announced size.
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    assert_eq!(width, battlement_examples::demo::plot::SIZE.0);
    let _ = std::fs::remove_file(json);
    let _ = std::fs::remove_file(png);
}

/// What a chaos does to calls made one after another at fixed times:
/// the status of each answer and how long it was delayed.
async fn draws(chaos: &Chaos, calls: u32) -> Vec<(u16, Duration)> {
    let step = chaos.schedule().total() / calls;
    let svc = chaos
        .http_layer()
        .layer(tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        }));
    chaos.start();
    let start = tokio::time::Instant::now();
    let mut seen = Vec::new();
    for k in 0..calls {
        tokio::time::sleep_until(start + step * k).await;
        let before = tokio::time::Instant::now();
        let res = svc.clone().oneshot(http::Request::new(())).await.unwrap();
        seen.push((res.status().as_u16(), before.elapsed()));
    }
    seen
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_same_seed_gives_the_same_fault_schedule() {
    let d = Duration::from_secs(30);
    let (a, b, other) = (
        schedule(d, 42).unwrap(),
        schedule(d, 42).unwrap(),
        schedule(d, 43).unwrap(),
    );
    assert_eq!(schedule_report(&a), schedule_report(&b));
    assert_eq!(a.seed(), 42);

    let (da, db, dother) = (
        draws(&a, 600).await,
        draws(&b, 600).await,
        draws(&other, 600).await,
    );
    assert_eq!(da, db);
    assert_ne!(da, dother, "another seed draws other faults");
    // And the draws are faults, where the schedule says.
    assert!(da.iter().any(|(s, _)| *s == 503));
    assert!(da.iter().any(|(s, _)| *s == 429));
    assert!(
        da.iter().any(|(s, d)| *s == 200 && !d.is_zero()),
        "slow successes in the spike"
    );

    // The request mix is the seed's too.
    let mix = |seed| (0..200).map(|n| request_for(seed, n)).collect::<Vec<_>>();
    assert_eq!(mix(42), mix(42));
    assert_ne!(mix(42), mix(43));
    let orders = mix(42).iter().filter(|(r, _)| *r == Route::Orders).count();
    assert!((110..=170).contains(&orders), "about 70% orders: {orders}");
}

#[test]
fn every_answer_lands_in_one_class() {
    let cases = [
        ((StatusCode::OK, true, false), Class::Success),
        ((StatusCode::OK, true, true), Class::Fallback),
        ((StatusCode::SERVICE_UNAVAILABLE, false, false), Class::Shed),
        (
            (StatusCode::SERVICE_UNAVAILABLE, true, false),
            Class::Failed,
        ),
        ((StatusCode::TOO_MANY_REQUESTS, true, false), Class::Failed),
        ((StatusCode::GATEWAY_TIMEOUT, false, false), Class::Failed),
    ];
    for ((status, from, fallback), class) in cases {
        assert_eq!(
            Class::of(status, from, fallback),
            class,
            "{status} {from} {fallback}"
        );
    }
}

#[test]
fn flags_parse_and_bad_flags_are_usage_errors() {
    let cli =
        Cli::try_parse_from(["demo", "--duration", "4500ms", "--rps", "10", "--plain"]).unwrap();
    let config = cli.config();
    assert_eq!(config.duration, Duration::from_millis(4500));
    assert_eq!((config.rps, config.output), (10, Output::Plain));
    let defaults = Cli::try_parse_from(["demo"]).unwrap();
    assert!(defaults.duration <= Duration::from_secs(30));

    for bad in [
        &["demo", "--bogus"][..],
        &["demo", "--rps", "0"],
        &["demo", "--rps", "lots"],
        &["demo", "--duration", "banana"],
        &["demo", "--duration", "1s"],
        &["demo", "--duration", "2h"],
        &["demo", "--json"],
    ] {
        let err = Cli::try_parse_from(bad).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
    }
}

#[test]
fn the_binary_exits_non_zero_with_usage_on_a_bad_flag() {
    let demo = |arg: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_demo"))
            .arg(arg)
            .output()
            .unwrap()
    };
    let unknown = demo("--bogus");
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("Usage: demo"), "{stderr}");
    let out_of_range = demo("--rps=-3");
    assert_eq!(out_of_range.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out_of_range.stderr);
    assert!(stderr.contains("--rps"), "{stderr}");
}
