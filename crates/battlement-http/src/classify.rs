//! Classifiers for HTTP and gRPC responses: [`HttpClassifier`] and
//! [`GrpcClassifier`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use battlement_core::{AsDynError, Classify, ErrorClassifier, Failure, FailureKind, Outcome};
use http::{HeaderMap, Response, StatusCode};

/// Judges `http::Response`s by status, and errors with [`ErrorClassifier`].
///
/// | status | outcome | retryable | retry-after |
/// |---|---|---|---|
/// | 1xx, 2xx, 3xx | success | | |
/// | 408 | `Timeout` | yes | |
/// | 429 | `RateLimited` | yes | `Retry-After` |
/// | 500 | `Transient` | yes | |
/// | 501 | `Configuration` | no | |
/// | 502, 503 | `Unavailable` | yes | `Retry-After` |
/// | 504 | `Timeout` | yes | |
/// | other 5xx | `Unknown` | yes | |
/// | other 4xx | ignored: the caller's mistake, neither a success nor a failure of the service | | |
///
/// `Retry-After` is read as delay-seconds (digits only) or as an HTTP date
/// (`Sun, 06 Nov 1994 08:49:37 GMT`; a date in the past is no wait). A
/// value from the network never panics: a number or a date beyond what a
/// `Duration` holds saturates at `u64::MAX` seconds (a retry layer caps it
/// by its own maximum), anything unreadable is ignored.
///
/// ```
/// use battlement_core::{BoxError, Classify, FailureKind};
/// use battlement_http::HttpClassifier;
/// use std::time::Duration;
///
/// let res = http::Response::builder().status(503).header("retry-after", "3").body(()).unwrap();
/// let outcome = HttpClassifier::new().classify(&Ok::<_, BoxError>(res));
/// let failure = outcome.as_failure().unwrap();
/// assert_eq!(failure.kind, FailureKind::Unavailable);
/// assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpClassifier {
    _priv: (),
}

impl HttpClassifier {
    /// The classifier.
    pub const fn new() -> Self {
        HttpClassifier { _priv: () }
    }

    /// The outcome of a status with its headers.
    pub fn classify_status(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        let retry_after = || retry_after(headers);
        let kind = match status.as_u16() {
            100..=399 => return Outcome::Success,
            408 => FailureKind::Timeout,
            429 => {
                return Failure::new(FailureKind::RateLimited)
                    .with_retry_after(retry_after())
                    .into();
            }
            500 => FailureKind::Transient,
            501 => FailureKind::Configuration,
            502 | 503 => {
                return Failure::new(FailureKind::Unavailable)
                    .with_retry_after(retry_after())
                    .into();
            }
            504 => FailureKind::Timeout,
            400..=499 => return Outcome::Ignored,
            _ => FailureKind::Unknown,
        };
        Outcome::failure(kind)
    }
}

impl<B, E: AsDynError> Classify<Response<B>, E> for HttpClassifier {
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        match result {
            Ok(res) => self.classify_status(res.status(), res.headers()),
            Err(e) => Outcome::Failure(ErrorClassifier::new().classify_error(e.as_dyn_error())),
        }
    }
}

/// Reads `Retry-After` as delay-seconds or an HTTP date. A value too
/// large to hold saturates at `u64::MAX` seconds; garbage is ignored.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Some(secs) = saturating_digits(value) {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // Before 1970 is in the past; beyond `u64` seconds, the longest wait.
    let at = u64::try_from(at.max(0)).unwrap_or(u64::MAX);
    Some(Duration::from_secs(at).saturating_sub(now))
}

/// A non-empty run of ASCII digits as a number, saturating at `u64::MAX`;
/// `None` for anything else (a sign, a space, a fraction).
pub(crate) fn saturating_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into seconds
/// since the Unix epoch (negative before 1970). Any year that fits an
/// `i64` is read; the arithmetic is in `i128`, so none overflows.
fn parse_http_date(s: &str) -> Option<i128> {
    let rest = s.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: i128 = parts.next()?.parse().ok()?;
    let month: i128 = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year = i128::from(parts.next()?.parse::<i64>().ok()?);
    let mut hms = parts.next()?.split(':');
    let h: i128 = hms.next()?.parse().ok()?;
    let m: i128 = hms.next()?.parse().ok()?;
    let sec: i128 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

/// Judges gRPC responses by the `grpc-status` header (a trailers-only
/// response, or a server that sends it in the headers), and errors with
/// [`ErrorClassifier`]. A response without `grpc-status` in its headers is
/// a success here: its status comes in the trailers, which a response
/// classifier does not see.
///
/// # What is and is not covered
///
/// A classifier judges the response when its headers arrive, before the
/// body, so on its own only a status in the headers counts:
///
/// - **Covered:** every *trailers-only* response, which is how gRPC
///   servers answer a call that fails before sending a message. On a
///   tonic server, a unary (or client-streaming) handler returning
///   `Err(Status)`, a request tonic rejects (bad encoding, missing
///   message) and an unimplemented method are all trailers-only; so are
///   the errors a proxy synthesises. A response without `grpc-status` and
///   with an HTTP status other than 200 (a proxy's error page) is judged
///   by gRPC's mapping of HTTP statuses: 401 `Authentication`, 403
///   `Authorization`, 404 `Configuration` (gRPC's `UNIMPLEMENTED`), 429,
///   502, 503 and 504 `Unavailable`, others `Unknown`. Transport errors
///   (connection refused, reset) come as `Err` and go to
///   [`ErrorClassifier`].
/// - **With [`GrpcTrailersLayer`](crate::GrpcTrailersLayer), for an
///   instrument:** a status sent in the trailers after the headers and any
///   messages (a streaming call that fails mid-stream, a server that always
///   sends headers first), an error while streaming the body, and a body
///   that ends without any status: the instrument's count is corrected when
///   the body ends.
/// - **Not covered:** layers that act on the outcome when the response's
///   headers arrive (a breaker, a retry) cannot wait for the trailers: for
///   them such a call is the success its headers showed.
///   [`classify_headers`](Self::classify_headers) judges a trailers map as
///   well, for a body wrapper of your own.
///
/// | code | outcome | retryable |
/// |---|---|---|
/// | 0 `OK` | success | |
/// | 1 `CANCELLED` | ignored | |
/// | 4 `DEADLINE_EXCEEDED` | `Timeout` | yes |
/// | 8 `RESOURCE_EXHAUSTED` | `RateLimited` | yes |
/// | 10 `ABORTED` | `Transient` | yes |
/// | 14 `UNAVAILABLE` | `Unavailable` | yes |
/// | 16 `UNAUTHENTICATED` | `Authentication` | no |
/// | 7 `PERMISSION_DENIED` | `Authorization` | no |
/// | 3 `INVALID_ARGUMENT`, 9 `FAILED_PRECONDITION`, 11 `OUT_OF_RANGE` | `InvalidRequest` | no |
/// | 5 `NOT_FOUND` | `NotFound` | no |
/// | 12 `UNIMPLEMENTED` | `Configuration` | no |
/// | 2, 6, 13, 15 and others | `Unknown` | yes |
///
/// `grpc-retry-pushback-ms` sets the retry-after (saturating at
/// `u64::MAX` ms); a negative or unparseable pushback means "do not retry"
/// (gRPC's retry design, A6) and makes the failure not retryable. A
/// `grpc-status` that is not a number counts as 2 `UNKNOWN`.
///
/// ```
/// use battlement_core::{BoxError, Classify, FailureKind};
/// use battlement_http::GrpcClassifier;
///
/// let res = http::Response::builder().header("grpc-status", "14").body(()).unwrap();
/// let outcome = GrpcClassifier::new().classify(&Ok::<_, BoxError>(res));
/// assert_eq!(outcome.as_failure().unwrap().kind, FailureKind::Unavailable);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrpcClassifier {
    _priv: (),
}

impl GrpcClassifier {
    /// The classifier.
    pub const fn new() -> Self {
        GrpcClassifier { _priv: () }
    }

    /// The outcome of a response's (or trailers') headers.
    pub fn classify_headers(&self, headers: &HeaderMap) -> Outcome {
        let Some(code) = headers.get("grpc-status") else {
            return Outcome::Success;
        };
        // A status that is not a number is `UNKNOWN`, as gRPC clients read it.
        let code = code
            .to_str()
            .ok()
            .and_then(|v| saturating_digits(v.trim()))
            .unwrap_or(2);
        use FailureKind::*;
        let kind = match code {
            0 => return Outcome::Success,
            1 => return Outcome::Ignored,
            4 => Timeout,
            8 => RateLimited,
            10 => Transient,
            14 => Unavailable,
            16 => Authentication,
            7 => Authorization,
            3 | 9 | 11 => InvalidRequest,
            5 => NotFound,
            12 => Configuration,
            _ => Unknown,
        };
        let mut failure = Failure::new(kind);
        if let Some(pushback) = headers.get("grpc-retry-pushback-ms") {
            match pushback
                .to_str()
                .ok()
                .and_then(|v| saturating_digits(v.trim()))
            {
                Some(ms) => failure = failure.with_retry_after(Some(Duration::from_millis(ms))),
                None => failure = failure.retryable(false),
            }
        }
        failure.into()
    }
}

impl<B, E: AsDynError> Classify<Response<B>, E> for GrpcClassifier {
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        match result {
            Ok(res)
                if res.status() != StatusCode::OK && !res.headers().contains_key("grpc-status") =>
            {
                http_status_as_grpc(res.status())
            }
            Ok(res) => self.classify_headers(res.headers()),
            Err(e) => Outcome::Failure(ErrorClassifier::new().classify_error(e.as_dyn_error())),
        }
    }
}

/// A response that is not a gRPC answer (no `grpc-status`, HTTP status
/// other than 200, typically from a proxy), judged by gRPC's mapping of
/// HTTP statuses to codes: 401 `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`,
/// 404 `UNIMPLEMENTED`, 429, 502, 503, 504 `UNAVAILABLE`, 400 `INTERNAL`,
/// any other `UNKNOWN`.
fn http_status_as_grpc(status: StatusCode) -> Outcome {
    let kind = match status.as_u16() {
        401 => FailureKind::Authentication,
        403 => FailureKind::Authorization,
        404 => FailureKind::Configuration,
        429 | 502 | 503 | 504 => FailureKind::Unavailable,
        _ => FailureKind::Unknown,
    };
    Failure::new(kind).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use battlement_core::BoxError;
    use proptest::prelude::*;

    fn http(status: u16, headers: &[(&str, &str)]) -> Outcome {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        HttpClassifier::new().classify(&Ok::<_, BoxError>(b.body(()).unwrap()))
    }

    #[test]
    fn http_table() {
        assert!(http(200, &[]).is_success());
        assert!(http(304, &[]).is_success());
        assert!(http(404, &[]).is_ignored());
        assert!(http(400, &[]).is_ignored());
        let f = |s| *http(s, &[]).as_failure().unwrap();
        assert_eq!(f(408).kind, FailureKind::Timeout);
        assert_eq!(f(500).kind, FailureKind::Transient);
        assert!(!f(501).retryable);
        assert_eq!(f(504).kind, FailureKind::Timeout);
        assert_eq!(f(599).kind, FailureKind::Unknown);
        let r = http(429, &[("retry-after", "7")]);
        assert_eq!(r.as_failure().unwrap().kind, FailureKind::RateLimited);
        assert_eq!(
            r.as_failure().unwrap().retry_after,
            Some(Duration::from_secs(7))
        );
        let past = http(503, &[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(past.as_failure().unwrap().retry_after, Some(Duration::ZERO));
        let junk = http(503, &[("retry-after", "soon")]);
        assert_eq!(junk.as_failure().unwrap().retry_after, None);
        let err: Result<Response<()>, BoxError> = Err(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(
            HttpClassifier::new()
                .classify(&err)
                .as_failure()
                .unwrap()
                .kind,
            FailureKind::Network
        );
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(1_709_164_800)
        );
        assert!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT").is_none());
        assert!(parse_http_date("06 Nov 1994").is_none());
    }

    /// A date beyond what the platform's clock holds saturates to the
    /// longest wait; it never panics (it used to overflow the instant).
    #[test]
    fn far_future_dates_saturate() {
        for date in [
            "Sun, 06 Nov 300000000000 08:49:37 GMT",
            "Sun, 06 Nov 9223372036854775807 23:59:60 GMT",
            "Sun, 06 Nov -9223372036854775808 00:00:00 GMT",
        ] {
            let out = http(503, &[("retry-after", date)]);
            let after = out.as_failure().unwrap().retry_after.unwrap();
            if date.contains(" -") {
                assert_eq!(after, Duration::ZERO, "{date}");
            } else {
                assert!(after > Duration::from_secs(u64::MAX / 2), "{date}");
            }
        }
        let huge = http(429, &[("retry-after", "99999999999999999999999")]);
        assert_eq!(
            huge.as_failure().unwrap().retry_after,
            Some(Duration::from_secs(u64::MAX))
        );
        // delay-seconds is digits only.
        assert_eq!(
            http(503, &[("retry-after", "+5")])
                .as_failure()
                .unwrap()
                .retry_after,
            None
        );
    }

    fn headers(pairs: &[(&'static str, &str)]) -> Option<HeaderMap> {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, http::HeaderValue::from_str(v).ok()?);
        }
        Some(map)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any header value from the network: an outcome, never a panic.
        #[test]
        fn header_values_never_panic(v in "[\\t -~]{0,48}") {
            let Some(map) = headers(&[
                ("retry-after", &v),
                ("grpc-status", &v),
                ("grpc-retry-pushback-ms", &v),
            ]) else {
                return Ok(());
            };
            let _ = HttpClassifier::new().classify_status(StatusCode::SERVICE_UNAVAILABLE, &map);
            let _ = GrpcClassifier::new().classify_headers(&map);
        }

        /// Well-formed dates with extreme fields: a wait, never a panic.
        #[test]
        fn extreme_dates_never_panic(
            year in prop_oneof![any::<i64>(), -10_000i64..100_000],
            day in 0u8..40,
            month in 0usize..13,
            (h, m, sec) in (0u8..30, 0u8..70, 0u8..70),
        ) {
            const MONTHS: [&str; 13] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
                "Foo",
            ];
            let date = format!("Sun, {day:02} {} {year} {h:02}:{m:02}:{sec:02} GMT", MONTHS[month]);
            let map = headers(&[("retry-after", &date)]).unwrap();
            let _ = HttpClassifier::new().classify_status(StatusCode::TOO_MANY_REQUESTS, &map);
        }

        #[test]
        fn pushback_never_panics(ms in any::<i128>()) {
            let map = headers(&[("grpc-status", "14"), ("grpc-retry-pushback-ms", &ms.to_string())])
                .unwrap();
            let out = GrpcClassifier::new().classify_headers(&map);
            let failure = out.as_failure().unwrap();
            prop_assert_eq!(failure.retryable, ms >= 0);
        }
    }

    #[test]
    fn grpc_table() {
        let g = |h: &[(&str, &str)]| {
            let mut b = Response::builder();
            for (k, v) in h {
                b = b.header(*k, *v);
            }
            GrpcClassifier::new().classify(&Ok::<_, BoxError>(b.body(()).unwrap()))
        };
        assert!(g(&[]).is_success());
        assert!(g(&[("grpc-status", "0")]).is_success());
        assert!(g(&[("grpc-status", "1")]).is_ignored());
        let f = g(&[("grpc-status", "14"), ("grpc-retry-pushback-ms", "250")]);
        let f = f.as_failure().unwrap();
        assert_eq!(f.kind, FailureKind::Unavailable);
        assert_eq!(f.retry_after, Some(Duration::from_millis(250)));
        let f = g(&[("grpc-status", "8"), ("grpc-retry-pushback-ms", "-1")]);
        assert!(!f.is_retryable());
        assert_eq!(
            g(&[("grpc-status", "5")]).as_failure().unwrap().kind,
            FailureKind::NotFound
        );
        assert_eq!(
            g(&[("grpc-status", "13")]).as_failure().unwrap().kind,
            FailureKind::Unknown
        );
        // A status that is not a number is UNKNOWN, not a success.
        for junk in ["ok", "-1", "99999999999999999999999", ""] {
            let out = g(&[("grpc-status", junk)]);
            assert_eq!(
                out.as_failure().unwrap().kind,
                FailureKind::Unknown,
                "{junk}"
            );
        }
        // An unparseable pushback means "do not retry".
        let f = g(&[("grpc-status", "14"), ("grpc-retry-pushback-ms", "soon")]);
        assert!(!f.is_retryable());
    }

    /// Not a gRPC answer (no `grpc-status`, not HTTP 200): gRPC's mapping
    /// of HTTP statuses. A `grpc-status` wins over the HTTP status.
    #[test]
    fn grpc_http_status_mapping() {
        let g = |status: u16, h: &[(&str, &str)]| {
            let mut b = Response::builder().status(status);
            for (k, v) in h {
                b = b.header(*k, *v);
            }
            GrpcClassifier::new().classify(&Ok::<_, BoxError>(b.body(()).unwrap()))
        };
        let kind = |status| g(status, &[]).as_failure().unwrap().kind;
        assert_eq!(kind(401), FailureKind::Authentication);
        assert_eq!(kind(403), FailureKind::Authorization);
        assert_eq!(kind(404), FailureKind::Configuration);
        for s in [429, 502, 503, 504] {
            assert_eq!(kind(s), FailureKind::Unavailable, "{s}");
        }
        assert_eq!(kind(400), FailureKind::Unknown);
        assert_eq!(kind(500), FailureKind::Unknown);
        assert!(g(200, &[]).is_success());
        assert!(g(503, &[("grpc-status", "0")]).is_success());
    }
}
