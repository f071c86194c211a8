//! Hostile header values for the classifiers' parsers: `Retry-After`
//! (delay-seconds or an HTTP date), `grpc-status` and
//! `grpc-retry-pushback-ms`, as any bytes a peer may send (obs-text
//! included), given once or twice. Never a panic, and an answer that
//! follows the documented reading: digits or a well-formed date are a
//! wait, anything else none; a `grpc-status` other than a known code's
//! digits is `UNKNOWN`; a pushback that is not digits means "do not
//! retry".
//!
//! Cases per property: 256 (`PROPTEST_CASES` overrides).

use std::time::Duration;

use battlement_core::{BoxError, Classify, FailureKind, Outcome};
use battlement_http::{GrpcClassifier, HttpClassifier};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // 256 unless PROPTEST_CASES says otherwise.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig::with_cases(cases)
}

/// Any bytes a header value may hold on the wire: visible ASCII, space,
/// tab and obs-text (0x80..=0xff), which `HeaderValue` accepts but
/// `to_str` refuses.
fn wire_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        proptest::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff], 0..40),
        // Near misses of the grammars: digits, signs, dots, spaces.
        "[ +\\-.0-9eE]{0,24}".prop_map(String::into_bytes),
    ]
    .prop_map(|b| HeaderValue::from_bytes(&b).expect("only valid header bytes"))
}

/// Dates in the `IMF-fixdate` shape, well-formed but for one or two
/// fields replaced by a hostile number (huge, negative, 45 digits).
fn date_like() -> impl Strategy<Value = String> {
    let num = prop_oneof![
        any::<i128>().prop_map(|n| n.to_string()),
        Just(i128::MIN.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (-100i64..100).prop_map(|n| n.to_string()),
        "[0-9]{1,45}",
    ];
    (0usize..6, num.clone(), 0usize..7, num).prop_map(|(i, a, j, b)| {
        let mut f: Vec<String> = ["01", "Jan", "2020", "00", "00", "00"]
            .map(String::from)
            .to_vec();
        f[i] = if i == 1 { "Foo".into() } else { a };
        if j < 6 && j != 1 {
            f[j] = b;
        }
        format!(
            "Sun, {} {} {} {}:{}:{} GMT",
            f[0], f[1], f[2], f[3], f[4], f[5]
        )
    })
}

fn with(pairs: &[(&'static str, HeaderValue)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(*k, v.clone());
    }
    map
}

fn all_digits(v: &HeaderValue) -> bool {
    let t = v.as_bytes().trim_ascii();
    !t.is_empty() && t.iter().all(u8::is_ascii_digit)
}

proptest! {
    #![proptest_config(config())]

    /// `Retry-After` with any bytes, on every status the classifier
    /// reads it for: never a panic; digits are that many seconds
    /// (saturating), a value that is neither digits nor a date no wait.
    #[test]
    fn retry_after_any_bytes(v in wire_value(), status in prop_oneof![Just(429u16), Just(503), Just(500), Just(200)]) {
        let status = StatusCode::from_u16(status).unwrap();
        let out = HttpClassifier::new().classify_status(status, &with(&[("retry-after", v.clone())]));
        let after = out.as_failure().and_then(|f| f.retry_after);
        if status.is_success() {
            prop_assert!(out.is_success());
        }
        let reads_it = matches!(status.as_u16(), 429 | 502 | 503);
        if !reads_it {
            prop_assert_eq!(after, None);
        }
        if let (true, true, Some(f)) = (reads_it, all_digits(&v), out.as_failure()) {
            let digits = std::str::from_utf8(v.as_bytes().trim_ascii()).unwrap();
            let want = digits.parse::<u64>().unwrap_or(u64::MAX);
            prop_assert_eq!(f.retry_after, Some(Duration::from_secs(want)));
        }
        // Only digits or something shaped like a date give a wait.
        if after.is_some() && !all_digits(&v) {
            let text = v.to_str().unwrap();
            prop_assert!(text.contains(", ") && text.trim_end().ends_with("GMT"), "{text:?}");
        }
    }

    /// Date-shaped `Retry-After` values with huge or negative fields
    /// (D1's overflow class): never a panic, and a wait only when every
    /// field is in its range.
    #[test]
    fn retry_after_hostile_dates(date in date_like()) {
        let v = HeaderValue::from_str(&date).unwrap();
        let out = HttpClassifier::new().classify_status(StatusCode::SERVICE_UNAVAILABLE, &with(&[("retry-after", v)]));
        let f = out.as_failure().expect("503 is a failure");
        let fields: Vec<&str> = date
            .trim_end_matches(" GMT")
            .split([' ', ':'])
            .skip(1)
            .collect();
        let n = |i: usize| fields[i].parse::<i128>().ok();
        let in_range = n(0).is_some_and(|d| (1..=31).contains(&d))
            && fields[1] != "Foo"
            && fields[2].parse::<i64>().is_ok()
            && n(3).is_some_and(|h| (0..=23).contains(&h))
            && n(4).is_some_and(|m| (0..=59).contains(&m))
            && n(5).is_some_and(|s| (0..=60).contains(&s));
        if !in_range {
            prop_assert_eq!(f.retry_after, None, "{}", date);
        }
    }

    /// `grpc-status` and `grpc-retry-pushback-ms` with any bytes, in the
    /// headers (once or twice) or as a status code: never a panic; a
    /// success only for the code `0`, a status that is no number
    /// `UNKNOWN`, a pushback that is no number not retryable.
    #[test]
    fn grpc_headers_any_bytes(
        status in wire_value(),
        second in proptest::option::of(wire_value()),
        pushback in proptest::option::of(wire_value()),
    ) {
        let mut pairs = vec![("grpc-status", status.clone())];
        if let Some(s) = &second {
            pairs.push(("grpc-status", s.clone()));
        }
        if let Some(p) = &pushback {
            pairs.push(("grpc-retry-pushback-ms", p.clone()));
        }
        let map = with(&pairs);
        let grpc = GrpcClassifier::new();
        let out = grpc.classify_headers(&map);
        // The first value is the one read.
        let code = std::str::from_utf8(status.as_bytes()).ok().map(str::trim);
        let digits = code.is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()));
        if out.is_success() {
            prop_assert!(digits && code.unwrap().bytes().all(|b| b == b'0'), "{:?}", code);
        }
        if !digits {
            let f = out.as_failure().expect("a status that is no number is UNKNOWN");
            prop_assert_eq!(f.kind, FailureKind::Unknown);
            if pushback.as_ref().is_some_and(|p| !all_digits(p)) {
                prop_assert!(!f.retryable);
                prop_assert_eq!(f.retry_after, None);
            }
        }
        // The same headers on a response, through `Classify`.
        let mut res = Response::new(());
        *res.headers_mut() = map;
        let via = grpc.classify(&Ok::<_, BoxError>(res));
        prop_assert_eq!(format!("{via:?}"), format!("{out:?}"));
    }

    /// Any number as a status code: one above 16 is `UNKNOWN`.
    #[test]
    fn grpc_any_code(code in any::<u64>(), pushback in proptest::option::of("[ -~]{0,24}")) {
        let out = GrpcClassifier::new().classify_code(code, pushback.as_deref());
        match code {
            0 => prop_assert!(out.is_success()),
            17.. => prop_assert_eq!(out.as_failure().map(|f| f.kind), Some(FailureKind::Unknown)),
            _ => {}
        }
        if let (Outcome::Failure(f), Some(p)) = (&out, &pushback)
            && (p.trim().is_empty() || !p.trim().bytes().all(|b| b.is_ascii_digit()))
        {
            prop_assert!(!f.retryable);
        }
    }
}

/// The overflow found by `retry_after_hostile_dates`: a negative hour
/// passed `h > 23` and `h * 3600` overflowed (a panic in debug, a wrong
/// wait in release). Now out of range: no wait.
#[test]
fn a_negative_time_field_is_no_date() {
    for date in [
        "Sun, 01 Jan 2020 -170141183460469231731687303715884105728:00:00 GMT",
        "Sun, 01 Jan 2020 00:-170141183460469231731687303715884105728:00 GMT",
        "Sun, 01 Jan 2020 00:00:-170141183460469231731687303715884105728 GMT",
        "Sun, 01 Jan 2020 -1:00:00 GMT",
    ] {
        let map = with(&[("retry-after", HeaderValue::from_static(date))]);
        let out = HttpClassifier::new().classify_status(StatusCode::SERVICE_UNAVAILABLE, &map);
        assert_eq!(out.as_failure().unwrap().retry_after, None, "{date}");
    }
}
