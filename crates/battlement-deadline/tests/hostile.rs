//! Hostile input for the deadline layers: arbitrary header bytes in
//! `grpc-timeout` and `x-request-timeout-ms` through the server layer,
//! and arbitrary numbers (0, NaN, infinities, `Duration::MAX`) for every
//! builder. A bad header is a `400` (or gRPC `INVALID_ARGUMENT`) naming
//! the header and the reason; a bad setting an `InvalidConfig` naming the
//! field; a setting `build()` accepts works, however extreme, and nothing
//! panics.
//!
//! Cases per property: 256 (`PROPTEST_CASES` overrides).
#![cfg(feature = "http")]

use std::convert::Infallible;
use std::time::Duration;

use battlement_core::{AttemptTimedOut, DeadlineExceeded, InvalidConfig};
use battlement_deadline::http::{ServerDeadlineLayer, parse_grpc_timeout, parse_millis};
use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
use http::{HeaderValue, Request, Response};
use proptest::prelude::*;
use tower::{Layer, ServiceExt, service_fn};

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
        Just(Duration::from_secs(u64::MAX)),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_secs),
        (1u64..10_000).prop_map(Duration::from_millis),
    ]
}

fn hostile_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        Just(1.0),
        Just(1.0 + f64::EPSILON),
        Just(f64::MAX),
        Just(-1.0),
        0.0f64..=1.0,
        any::<f64>(),
    ]
}

/// Header bytes as they may arrive: visible ASCII, tab, obs-text, and
/// near misses of both grammars.
fn wire_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        proptest::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff], 0..32),
        "[ +\\-.]?[0-9]{0,22}[HMSmunxs]?[ ]?".prop_map(String::into_bytes),
    ]
    .prop_map(|b| HeaderValue::from_bytes(&b).expect("valid header bytes"))
}

fn assert_names_field(e: &InvalidConfig, fields: &[&str]) {
    assert!(fields.contains(&e.field), "unexpected field in {e}");
    let text = e.to_string();
    assert!(text.contains(&format!("`{}`", e.field)), "{text}");
    assert!(!e.bound.is_empty(), "{text}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(config())]

    /// The server layer with any `grpc-timeout` / `x-request-timeout-ms`
    /// bytes (each absent, present), HTTP or gRPC, and any `max` and
    /// default budget `build()` accepts: the handler's answer, a `400`
    /// (gRPC `3`) naming the header whose value it refused, or a `504`
    /// (gRPC `4`) for a budget already spent. Never a panic.
    #[test]
    fn server_layer_answers_any_header(
        grpc_timeout in proptest::option::of(wire_value()),
        millis in proptest::option::of(wire_value()),
        grpc in any::<bool>(),
        max in hostile_duration(),
        default_budget in proptest::option::of(hostile_duration()),
    ) {
        let built = ServerDeadlineLayer::builder().max(max).default_budget(default_budget).build();
        let layer = match built {
            Ok(l) => l,
            Err(e) => {
                assert_names_field(&e, &["max", "default_budget"]);
                prop_assert!(max.is_zero() || default_budget == Some(Duration::ZERO));
                return Ok(());
            }
        };
        prop_assert!(!max.is_zero());
        let mut req = Request::builder().uri("/");
        if let Some(v) = &grpc_timeout {
            req = req.header("grpc-timeout", v.clone());
        }
        if let Some(v) = &millis {
            req = req.header("x-request-timeout-ms", v.clone());
        }
        if grpc {
            req = req.header("content-type", "application/grpc");
        }
        let req = req.body(()).unwrap();
        let svc = layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("handled")))
        }));
        let res = runtime().block_on(svc.oneshot(req)).unwrap();

        let bad_grpc = grpc_timeout.as_ref().is_some_and(|v| parse_grpc_timeout(v.as_bytes()).is_err());
        let bad_millis = millis.as_ref().is_some_and(|v| parse_millis(v.as_bytes()).is_err());
        let refused = if bad_grpc { Some("grpc-timeout") } else if bad_millis { Some("x-request-timeout-ms") } else { None };
        let (status, body) = (res.status(), res.body().clone());
        let grpc_status = res.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
        match refused {
            Some(header) if grpc => {
                prop_assert_eq!(status, 200);
                prop_assert_eq!(grpc_status.as_deref(), Some("3"));
                let message = res.headers()["grpc-message"].to_str().unwrap();
                prop_assert!(message.starts_with(header), "{}", message);
            }
            Some(header) => {
                prop_assert_eq!(status, 400);
                let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                prop_assert_eq!(&json["header"], header);
                prop_assert!(json["reason"].as_str().is_some_and(|r| !r.is_empty()));
            }
            None if body == "handled" => prop_assert_eq!(status, 200),
            None => {
                // The budget was spent on arrival (a zero budget).
                if grpc {
                    prop_assert_eq!(grpc_status.as_deref(), Some("4"));
                } else {
                    prop_assert_eq!(status, 504, "{}", body);
                }
            }
        }
    }

    /// `DeadlineLayer` and `AttemptTimeoutLayer` with any numbers: an
    /// error naming the field, or layers that work: a call ends with the
    /// answer or `DeadlineExceeded`, at the right time, never a panic
    /// (no `Instant + Duration::MAX` overflow, no NaN fraction).
    #[test]
    fn deadline_builders_any_numbers(
        total in proptest::option::of(hostile_duration()),
        per_attempt in proptest::option::of(hostile_duration()),
        fraction in proptest::option::of(hostile_f64()),
        work in 0u64..5_000,
    ) {
        let mut d = DeadlineLayer::builder();
        if let Some(t) = total {
            d = d.total(t);
        }
        let deadline = match d.build() {
            Ok(l) => l,
            Err(e) => {
                assert_names_field(&e, &["total"]);
                prop_assert!(total.is_none_or(|t| t.is_zero()));
                return Ok(());
            }
        };
        let mut a = AttemptTimeoutLayer::builder();
        if let Some(p) = per_attempt {
            a = a.per_attempt(p);
        }
        if let Some(f) = fraction {
            a = a.fraction(f);
        }
        let attempt = match a.build() {
            Ok(l) => l,
            Err(e) => {
                assert_names_field(&e, &["per_attempt", "fraction"]);
                let bad_fraction = fraction.is_some_and(|f| !(f > 0.0 && f <= 1.0));
                prop_assert!(
                    bad_fraction || per_attempt.is_some_and(|p| p.is_zero())
                        || (per_attempt.is_none() && fraction.is_none()),
                    "{}", e
                );
                return Ok(());
            }
        };
        prop_assert!(fraction.is_none_or(|f| f > 0.0 && f <= 1.0));
        let total = total.unwrap();
        let work = Duration::from_millis(work);
        let svc = deadline.layer(attempt.layer(service_fn(move |()| async move {
            tokio::time::sleep(work).await;
            Ok::<_, Infallible>("done")
        })));
        let rt = runtime();
        let (res, took) = rt.block_on(async {
            let start = tokio::time::Instant::now();
            let res = svc.oneshot(()).await;
            (res, start.elapsed())
        });
        match res {
            Ok(v) => {
                prop_assert_eq!(v, "done");
                prop_assert!(work <= total);
            }
            Err(e) => {
                // The total budget, or the attempt's bound (a tiny
                // fraction of what is left may be nothing at all).
                if let Some(t) = e.downcast_ref::<AttemptTimedOut>() {
                    prop_assert!(per_attempt.is_none_or(|p| t.timeout <= p), "{}", e);
                    prop_assert!(t.timeout <= work, "{}", e);
                } else {
                    prop_assert!(e.is::<DeadlineExceeded>(), "{}", e);
                    prop_assert!(total <= work, "{}", e);
                }
                // Cut no later than the work would have ended.
                prop_assert!(took <= work, "{:?} > {:?}", took, work);
            }
        }
    }
}
