//! `dashboards/battlement.json` queries only what the registry exposes:
//! every metric name in every panel's `expr` (and in the template
//! variables' `label_values(...)`), every label in its `{...}` selectors
//! and every label of its `by (...)`/`without (...)` groupings exist in the
//! Prometheus exposition of a registry holding one of each component (a
//! policy's breaker, gate, retry budget, fallback, instrument and
//! deadlines) after traffic that trips the breaker and serves fallbacks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use battlement::prelude::*;
use serde_json::Value;
use tower::{Service, ServiceBuilder, ServiceExt};

const DASHBOARD: &str = include_str!("../../dashboards/battlement.json");

/// Metric name → the label names its samples carry.
type Exposed = BTreeMap<String, BTreeSet<String>>;

/// What one PromQL expression queries.
#[derive(Debug, Default)]
struct Queried {
    /// Each metric, with the labels its selector matches on.
    metrics: Vec<(String, Vec<String>)>,
    /// The labels of its `by (...)` and `without (...)` clauses.
    grouping: Vec<String>,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// The index just past the quoted string starting at `i`.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    let quote = b[i];
    i += 1;
    while i < b.len() && b[i] != quote {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// The text up to the `close` matching the opener at `i` (quoted strings
/// skipped), and the index past it.
fn enclosed(b: &[u8], i: usize, close: u8) -> (String, usize) {
    let mut j = i + 1;
    let mut text = Vec::new();
    while j < b.len() && b[j] != close {
        if b[j] == b'"' || b[j] == b'\'' {
            let end = skip_string(b, j);
            text.extend_from_slice(b"\"\"");
            j = end;
        } else {
            text.push(b[j]);
            j += 1;
        }
    }
    (String::from_utf8(text).unwrap(), j + 1)
}

/// A small PromQL scanner: enough for metric names, selector labels and
/// groupings (strings and `[range]`s skipped, function names ignored).
fn scan(expr: &str) -> Queried {
    let b = expr.as_bytes();
    let mut q = Queried::default();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' {
            i = skip_string(b, i);
        } else if c == b'[' {
            i = enclosed(b, i, b']').1;
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            let ident = &expr[start..i];
            let mut next = i;
            while next < b.len() && b[next].is_ascii_whitespace() {
                next += 1;
            }
            let opens = |ch: u8| b.get(next) == Some(&ch);
            if matches!(ident, "by" | "without") && opens(b'(') {
                let (inside, end) = enclosed(b, next, b')');
                q.grouping
                    .extend(inside.split(',').map(|l| l.trim().to_owned()));
                i = end;
            } else if opens(b'{') {
                let (inside, end) = enclosed(b, next, b'}');
                let labels = inside
                    .split(',')
                    .filter(|m| !m.trim().is_empty())
                    .map(|m| {
                        let name_end = m.find(['=', '!', '~']).unwrap_or(m.len());
                        m[..name_end].trim().to_owned()
                    })
                    .collect();
                q.metrics.push((ident.to_owned(), labels));
                i = end;
            } else if !opens(b'(') && ident.starts_with("battlement_") {
                q.metrics.push((ident.to_owned(), Vec::new()));
            }
        } else {
            i += 1;
        }
    }
    q
}

/// What in `q` the exposition lacks, one line each.
fn missing(q: &Queried, exposed: &Exposed) -> Vec<String> {
    let mut out = Vec::new();
    for (metric, labels) in &q.metrics {
        let Some(has) = exposed.get(metric) else {
            out.push(format!("no metric `{metric}`"));
            continue;
        };
        for label in labels.iter().chain(&q.grouping) {
            if !has.contains(label) {
                out.push(format!("`{metric}` has no label `{label}`"));
            }
        }
    }
    out
}

/// The exposition of a registry with one of each component, after calls
/// that trip the breaker and make the fallback answer.
async fn exposition() -> Exposed {
    let registry = Registry::new();
    let policy = Policy::builder("checkout")
        .total(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(500))
        .breaker(|b| b.consecutive_failures(2))
        .gate(|g| g)
        .priority(|_: &u32| Some(Priority::Normal))
        .fallback(|f| f.value(0u32))
        .registry(&registry)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .policy(&policy)
        .service_fn(|n: u32| async move {
            if n.is_multiple_of(2) {
                Ok::<_, BoxError>(n)
            } else {
                Err::<u32, BoxError>(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                )))
            }
        });
    for n in 0..6 {
        svc.ready().await.unwrap().call(n).await.unwrap();
    }
    let report = registry.health();
    for kind in [
        "breaker",
        "gate",
        "retry",
        "fallback",
        "instrument",
        "deadline",
    ] {
        assert!(report.by_kind.contains_key(kind), "no {kind}: {report:?}");
    }

    let text = registry.prometheus_text();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let mut exposed = Exposed::new();
    for sample in scrape.samples {
        let mut labels: BTreeSet<String> = sample.labels.keys().cloned().collect();
        // The parser folds a histogram's `_bucket` lines into one sample
        // named after the family, without `le`.
        let name = if matches!(sample.value, prometheus_parse::Value::Histogram(_)) {
            labels.insert("le".to_owned());
            format!("{}_bucket", sample.metric)
        } else {
            sample.metric
        };
        exposed.entry(name).or_default().extend(labels);
    }
    exposed
}

/// Every `expr` of every panel (rows hold their panels when collapsed).
fn exprs(panels: &[Value], out: &mut Vec<(String, String)>) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        if panel["type"] == "row" {
            exprs(panel["panels"].as_array().unwrap(), out);
            continue;
        }
        let targets = panel["targets"].as_array();
        assert!(
            targets.is_some_and(|t| !t.is_empty()),
            "panel `{title}` has no targets"
        );
        for target in targets.unwrap() {
            let expr = target["expr"].as_str().unwrap_or_else(|| {
                panic!("panel `{title}`: a target without expr");
            });
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            out.push((title.clone(), expr.to_owned()));
        }
    }
}

#[test]
fn the_scanner_finds_names_labels_and_groupings() {
    let q = scan(
        r#"histogram_quantile(0.99, sum by (component, le) (rate(battlement_instrument_latency_seconds_bucket{component=~"$a,b}"}[$__rate_interval])))"#,
    );
    assert_eq!(
        q.metrics,
        [(
            "battlement_instrument_latency_seconds_bucket".to_owned(),
            vec!["component".to_owned()]
        )]
    );
    assert_eq!(q.grouping, ["component", "le"]);
    let q = scan("max(battlement_status) / battlement_gate_level");
    let names: Vec<_> = q.metrics.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, ["battlement_status", "battlement_gate_level"]);
}

#[tokio::test(start_paused = true)]
async fn the_check_reports_what_the_exposition_lacks() {
    let exposed = exposition().await;
    let lacks = missing(
        &scan(
            r#"sum by (nope) (rate(battlement_breaker_no_such_total{component="x"}[5m])) + battlement_gate_level{tier="a"}"#,
        ),
        &exposed,
    );
    assert_eq!(
        lacks,
        [
            "no metric `battlement_breaker_no_such_total`",
            "`battlement_gate_level` has no label `tier`",
            "`battlement_gate_level` has no label `nope`",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn every_metric_and_label_the_dashboard_queries_is_exposed() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    assert!(dashboard["schemaVersion"].as_u64() >= Some(36));
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    let ds = vars.iter().find(|v| v["name"] == "datasource").unwrap();
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");

    let exposed = exposition().await;
    let mut problems = Vec::new();
    let mut queried = BTreeSet::new();

    let mut all = Vec::new();
    exprs(dashboard["panels"].as_array().unwrap(), &mut all);
    // Template variables: `label_values(metric, label)`.
    for var in vars.iter().filter(|v| v["type"] == "query") {
        let query = var["query"]["query"].as_str().unwrap();
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("unexpected variable query {query}"));
        let (metric, label) = inner.split_once(',').unwrap();
        all.push((
            format!("variable {}", var["name"]),
            format!("{}{{{}=\"\"}}", metric.trim(), label.trim()),
        ));
    }
    for (title, expr) in &all {
        let q = scan(expr);
        assert!(!q.metrics.is_empty(), "{title}: no metric in {expr}");
        for lack in missing(&q, &exposed) {
            problems.push(format!("{title}: {lack} (in {expr})"));
        }
        queried.extend(q.metrics.into_iter().map(|(m, _)| m));
    }
    assert!(problems.is_empty(), "{problems:#?}");

    // What issue 18 asks the dashboard to show.
    for metric in [
        "battlement_breaker_open",
        "battlement_breaker_trips_total",
        "battlement_breaker_state",
        "battlement_breaker_rejections_total",
        "battlement_retry_retries_allowed_total",
        "battlement_retry_retries_denied_total",
        "battlement_gate_level",
        "battlement_gate_shed_total",
        "battlement_fallback_activations_total",
        "battlement_instrument_latency_seconds_bucket",
    ] {
        assert!(
            queried.contains(metric),
            "the dashboard never queries {metric}"
        );
    }

    // Panel ids are unique, and every panel has a place on the grid.
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "{panel}");
        for k in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][k].is_u64(), "{panel}");
        }
    }
}
