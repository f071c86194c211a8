//! Classifiers for HTTP and gRPC responses: [`HttpClassifier`] and
//! [`GrpcClassifier`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::error::Error;

use battlement_core::{
    AsDynError, Classify, ErrorClassifier, Failure, FailureKind, FallbackFailed, Outcome,
    RetriesExhausted,
};
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
/// Errors are judged by [`ErrorClassifier`]'s table, through the
/// workspace's wrappers, with the errors of the integrations this crate is
/// built with recognised anywhere in the chain.
///
/// # reqwest (feature `reqwest`)
///
/// reqwest 0.13's `Client` is a `tower::Service<reqwest::Request>`; this
/// classifier judges its `reqwest::Response` by the same table (status,
/// `Retry-After`), and a `reqwest::Error` like this:
///
/// | `reqwest::Error` | kind | retryable |
/// |---|---|---|
/// | `is_timeout()` (reqwest's own timeouts, a timeout while connecting) | `Timeout` | yes |
/// | `is_connect()` (refused, unreachable, DNS: nothing was sent) | `Network` | yes |
/// | `is_request()` (the connection failed while sending or waiting) | `Network` | yes |
/// | `status()` (from `error_for_status`) | as the status in the table above; a 4xx is `InvalidRequest`, not retryable | |
/// | `is_body()` (the request's or the response's body failed) | `Network` | no: a body that failed (or cannot be replayed) fails again |
/// | `is_decode()` (the response's body is not what was expected) | `Unknown` | no |
/// | `is_builder()` (a bad URL, a bad header) | `InvalidRequest` | no |
/// | `is_redirect()` (too many redirects, a loop) | `Configuration` | no |
/// | any other | `Unknown` | yes |
///
/// A timeout is checked first: reqwest reports a connect timeout as both.
/// Whether a request is repeated at all is the retry predicate's call
/// (the facade's `Idempotent` copies a `reqwest::Request` with
/// `try_clone`; one with a streaming body is sent once).
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
            Err(e) => classify_error(e.as_dyn_error(), &GrpcClassifier::new()),
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
    // Each field in its range: a negative hour would pass `h > 23` and,
    // large enough, overflow the arithmetic below.
    if parts.next()? != "GMT"
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&m)
        || !(0..=60).contains(&sec)
    {
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

/// A gRPC status code, as `grpc-status` carries it, for configuring
/// [`GrpcClassifier`] without depending on tonic (with the `tonic` feature,
/// `tonic::Code` converts into it, so `.with_ignored(tonic::Code::NotFound)`
/// works too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum GrpcCode {
    /// 0: not an error.
    Ok = 0,
    /// 1: the caller cancelled the call.
    Cancelled = 1,
    /// 2: an unknown error.
    Unknown = 2,
    /// 3: the caller sent a bad argument.
    InvalidArgument = 3,
    /// 4: the deadline passed before the call completed.
    DeadlineExceeded = 4,
    /// 5: something asked for was not found.
    NotFound = 5,
    /// 6: what the caller wanted to create exists.
    AlreadyExists = 6,
    /// 7: the caller may not do this.
    PermissionDenied = 7,
    /// 8: a quota or a resource ran out.
    ResourceExhausted = 8,
    /// 9: the system is not in the state the call needs.
    FailedPrecondition = 9,
    /// 10: aborted, typically by a concurrency conflict.
    Aborted = 10,
    /// 11: past the valid range.
    OutOfRange = 11,
    /// 12: not implemented or not supported.
    Unimplemented = 12,
    /// 13: an internal error.
    Internal = 13,
    /// 14: the service is unavailable for now.
    Unavailable = 14,
    /// 15: unrecoverable data loss or corruption.
    DataLoss = 15,
    /// 16: the caller did not authenticate.
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The code's number.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The code with number `n`, if there is one.
    pub const fn from_u64(n: u64) -> Option<Self> {
        use GrpcCode::*;
        Some(match n {
            0 => Ok,
            1 => Cancelled,
            2 => Unknown,
            3 => InvalidArgument,
            4 => DeadlineExceeded,
            5 => NotFound,
            6 => AlreadyExists,
            7 => PermissionDenied,
            8 => ResourceExhausted,
            9 => FailedPrecondition,
            10 => Aborted,
            11 => OutOfRange,
            12 => Unimplemented,
            13 => Internal,
            14 => Unavailable,
            15 => DataLoss,
            16 => Unauthenticated,
            _ => return None,
        })
    }

    const fn bit(self) -> u32 {
        1 << self as u8
    }

    /// The kind of failure the code is, when it counts as one.
    const fn kind(self) -> FailureKind {
        use FailureKind::*;
        match self {
            GrpcCode::DeadlineExceeded => Timeout,
            GrpcCode::ResourceExhausted => RateLimited,
            GrpcCode::Aborted => Transient,
            GrpcCode::Unavailable => Unavailable,
            GrpcCode::Unauthenticated => Authentication,
            GrpcCode::PermissionDenied => Authorization,
            GrpcCode::InvalidArgument
            | GrpcCode::FailedPrecondition
            | GrpcCode::OutOfRange
            | GrpcCode::AlreadyExists => InvalidRequest,
            GrpcCode::NotFound => NotFound,
            GrpcCode::Unimplemented => Configuration,
            _ => Unknown,
        }
    }
}

/// Codes whose repetition is never safe, whatever the configuration:
/// `ALREADY_EXISTS` (the first attempt may be what created it) and
/// `DATA_LOSS` (nothing a retry can mend).
const NEVER_RETRIED: u32 = GrpcCode::AlreadyExists.bit() | GrpcCode::DataLoss.bit();

/// Judges gRPC responses by the `grpc-status` header (a trailers-only
/// response, or a server that sends it in the headers), and errors with
/// [`ErrorClassifier`] (a `tonic::Status` or tonic's `TimeoutExpired` in
/// the error, with the `tonic` feature, by the same table). A response
/// without `grpc-status` in its headers is a success here: its status
/// comes in the trailers, which a response classifier does not see.
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
///   instrument and a breaker:** a status sent in the trailers after the
///   headers and any messages (a streaming call that fails mid-stream, a
///   server that always sends headers first), an error while streaming the
///   body, and a body that ends without any status: the instrument's count
///   is corrected when the body ends, and a breaker that defers with
///   [`GrpcTrailersDefer`](crate::GrpcTrailersDefer) records the call then,
///   once.
/// - **Not covered:** a retry acts on the outcome when the response's
///   headers arrive and cannot wait for the trailers: for it such a call
///   is the success its headers showed.
///   [`classify_headers`](Self::classify_headers) judges a trailers map as
///   well, for a body wrapper of your own.
///
/// # The default table
///
/// | code | outcome | retryable |
/// |---|---|---|
/// | 0 `OK` | success | |
/// | 1 `CANCELLED` | ignored | |
/// | 3 `INVALID_ARGUMENT`, 5 `NOT_FOUND`, 6 `ALREADY_EXISTS`, 7 `PERMISSION_DENIED`, 9 `FAILED_PRECONDITION`, 11 `OUT_OF_RANGE`, 16 `UNAUTHENTICATED` | ignored: the caller's mistake, neither a success nor a failure of the service (as [`HttpClassifier`] ignores 4xx); never retried | |
/// | 4 `DEADLINE_EXCEEDED` | `Timeout` | yes |
/// | 8 `RESOURCE_EXHAUSTED` | `RateLimited` | yes |
/// | 10 `ABORTED` | `Transient` | yes |
/// | 14 `UNAVAILABLE` | `Unavailable` | yes |
/// | 12 `UNIMPLEMENTED` | `Configuration` | no |
/// | 15 `DATA_LOSS` | `Unknown` | **never** |
/// | 2 `UNKNOWN`, 13 `INTERNAL`, any code above 16 (read as `UNKNOWN`) | `Unknown` | yes |
///
/// Each code's outcome can be changed, as tower-http's
/// `GrpcErrorsAsFailures` does (a bitmask per outcome, so the classifier
/// stays `Copy` and judging is a shift and a mask):
/// [`with_success`](Self::with_success), [`with_ignored`](Self::with_ignored)
/// and [`with_failure`](Self::with_failure). A code made a failure keeps
/// its kind (`NOT_FOUND` is `NotFound`, `PERMISSION_DENIED`
/// `Authorization`, ...). `ALREADY_EXISTS` and `DATA_LOSS` are never
/// retryable, even when asked: the first attempt may be what created the
/// thing, and lost data is not mended by asking again.
///
/// `grpc-retry-pushback-ms` sets the retry-after (saturating at
/// `u64::MAX` ms); a negative or unparseable pushback means "do not retry"
/// (gRPC's retry design, A6) and makes the failure not retryable. A
/// `grpc-status` that is not a number counts as 2 `UNKNOWN`.
///
/// ```
/// use battlement_core::{BoxError, Classify, FailureKind};
/// use battlement_http::{GrpcClassifier, GrpcCode};
///
/// let res = |code: &str| {
///     http::Response::builder().header("grpc-status", code).body(()).unwrap()
/// };
/// let grpc = GrpcClassifier::new();
/// let outcome = grpc.classify(&Ok::<_, BoxError>(res("14")));
/// assert_eq!(outcome.as_failure().unwrap().kind, FailureKind::Unavailable);
/// // NOT_FOUND is the caller's business by default...
/// assert!(grpc.classify(&Ok::<_, BoxError>(res("5"))).is_ignored());
/// // ...unless this service is expected to have everything.
/// let strict = grpc.with_failure(GrpcCode::NotFound, false);
/// let outcome = strict.classify(&Ok::<_, BoxError>(res("5")));
/// assert_eq!(outcome.as_failure().unwrap().kind, FailureKind::NotFound);
/// assert!(!outcome.is_retryable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcClassifier {
    success: u32,
    ignored: u32,
    retryable: u32,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcClassifier {
    /// The classifier, with the default table.
    pub const fn new() -> Self {
        use GrpcCode::*;
        GrpcClassifier {
            success: Ok.bit(),
            ignored: Cancelled.bit()
                | InvalidArgument.bit()
                | NotFound.bit()
                | AlreadyExists.bit()
                | PermissionDenied.bit()
                | FailedPrecondition.bit()
                | OutOfRange.bit()
                | Unauthenticated.bit(),
            retryable: Unknown.bit()
                | DeadlineExceeded.bit()
                | ResourceExhausted.bit()
                | Aborted.bit()
                | Internal.bit()
                | Unavailable.bit(),
        }
    }

    /// Counts `code` as a success.
    #[must_use]
    pub fn with_success(mut self, code: impl Into<GrpcCode>) -> Self {
        let bit = code.into().bit();
        self.success |= bit;
        self.ignored &= !bit;
        self
    }

    /// Counts `code` as neither a success nor a failure (a breaker does
    /// not count it, a retry does not repeat it).
    #[must_use]
    pub fn with_ignored(mut self, code: impl Into<GrpcCode>) -> Self {
        let bit = code.into().bit();
        self.ignored |= bit;
        self.success &= !bit;
        self
    }

    /// Counts `code` as a failure, worth a retry when `retryable` (never
    /// for `ALREADY_EXISTS` and `DATA_LOSS`).
    #[must_use]
    pub fn with_failure(mut self, code: impl Into<GrpcCode>, retryable: bool) -> Self {
        let bit = code.into().bit();
        self.success &= !bit;
        self.ignored &= !bit;
        if retryable && bit & NEVER_RETRIED == 0 {
            self.retryable |= bit;
        } else {
            self.retryable &= !bit;
        }
        self
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
        let pushback = headers
            .get("grpc-retry-pushback-ms")
            .map(|v| v.to_str().unwrap_or(""));
        self.classify_code(code, pushback)
    }

    /// The outcome of status `code` (any number: one above 16 is
    /// `UNKNOWN`) with a `grpc-retry-pushback-ms` value, if there is one.
    pub fn classify_code(&self, code: u64, pushback: Option<&str>) -> Outcome {
        let code = GrpcCode::from_u64(code).unwrap_or(GrpcCode::Unknown);
        let bit = code.bit();
        if self.success & bit != 0 {
            return Outcome::Success;
        }
        if self.ignored & bit != 0 {
            return Outcome::Ignored;
        }
        let mut failure = Failure::new(code.kind()).retryable(self.retryable & bit != 0);
        if let Some(pushback) = pushback {
            match saturating_digits(pushback.trim()) {
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
            Err(e) => classify_error(e.as_dyn_error(), self),
        }
    }
}

/// Judges an error for [`HttpClassifier`] and [`GrpcClassifier`]: the
/// errors of the integrations this crate was built with (reqwest's, a
/// `tonic::Status`, tonic's `TimeoutExpired` and `ConnectError`) wherever
/// they are in the `source()` chain, through the workspace's wrappers
/// (`RetriesExhausted`, `FallbackFailed`, which say "not retryable" of
/// what they wrap), and everything else as [`ErrorClassifier`] does.
pub(crate) fn classify_error(err: &(dyn Error + 'static), grpc: &GrpcClassifier) -> Outcome {
    let mut link = Some(err);
    while let Some(e) = link {
        if let Some(outcome) = integration_error(e, grpc) {
            return outcome;
        }
        if let Some(ex) = e.downcast_ref::<RetriesExhausted>() {
            return match classify_error(&*ex.last, grpc) {
                Outcome::Failure(inner) => Outcome::Failure(
                    inner
                        .retryable(false)
                        .with_retry_after(ex.retry_after.or(inner.retry_after)),
                ),
                other => other,
            };
        }
        if let Some(ff) = e.downcast_ref::<FallbackFailed>() {
            return match classify_error(&*ff.primary, grpc) {
                Outcome::Failure(inner) => Outcome::Failure(inner.retryable(false)),
                other => other,
            };
        }
        link = e.source();
    }
    Outcome::Failure(ErrorClassifier::new().classify_error(err))
}

/// One link of an error chain, if it is an integration's error.
#[allow(unused_variables)]
fn integration_error(e: &(dyn Error + 'static), grpc: &GrpcClassifier) -> Option<Outcome> {
    #[cfg(feature = "tonic")]
    if let Some(outcome) = crate::tonic::recognise(e, grpc) {
        return Some(outcome);
    }
    #[cfg(feature = "reqwest")]
    if let Some(failure) = crate::reqwest::recognise(e) {
        return Some(Outcome::Failure(failure));
    }
    None
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
        assert!(g(&[("grpc-status", "5")]).is_ignored());
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

    /// The default table, code by code, and each override.
    #[test]
    fn grpc_codes_by_default_and_configured() {
        use GrpcCode::*;
        let grpc = GrpcClassifier::new();
        let of = |c: &GrpcClassifier, code: GrpcCode| c.classify_code(code.as_u8().into(), None);
        for code in [
            Cancelled,
            InvalidArgument,
            NotFound,
            AlreadyExists,
            PermissionDenied,
            FailedPrecondition,
            OutOfRange,
            Unauthenticated,
        ] {
            assert!(of(&grpc, code).is_ignored(), "{code:?}");
        }
        for (code, kind) in [
            (Unknown, FailureKind::Unknown),
            (DeadlineExceeded, FailureKind::Timeout),
            (ResourceExhausted, FailureKind::RateLimited),
            (Aborted, FailureKind::Transient),
            (Internal, FailureKind::Unknown),
            (Unavailable, FailureKind::Unavailable),
        ] {
            let out = of(&grpc, code);
            assert_eq!(out.as_failure().unwrap().kind, kind, "{code:?}");
            assert!(out.is_retryable(), "{code:?}");
        }
        for code in [Unimplemented, DataLoss] {
            let out = of(&grpc, code);
            assert!(out.is_failure() && !out.is_retryable(), "{code:?}");
        }
        assert!(of(&grpc, Ok).is_success());
        // Above 16: UNKNOWN.
        assert_eq!(grpc.classify_code(99, None), of(&grpc, Unknown));

        let custom = grpc
            .with_failure(NotFound, true)
            .with_ignored(Unavailable)
            .with_success(Cancelled)
            .with_failure(AlreadyExists, true)
            .with_failure(DataLoss, true)
            .with_failure(Internal, false);
        let nf = of(&custom, NotFound);
        assert_eq!(nf.as_failure().unwrap().kind, FailureKind::NotFound);
        assert!(nf.is_retryable());
        assert!(of(&custom, Unavailable).is_ignored());
        assert!(of(&custom, Cancelled).is_success());
        assert!(!of(&custom, Internal).is_retryable());
        // Never retried, even when asked.
        for code in [AlreadyExists, DataLoss] {
            let out = of(&custom, code);
            assert!(out.is_failure() && !out.is_retryable(), "{code:?}");
        }
        // A success made a failure again.
        assert!(of(&custom.with_failure(Cancelled, false), Cancelled).is_failure());
        for n in 0..=16 {
            assert_eq!(GrpcCode::from_u64(n).map(GrpcCode::as_u8), Some(n as u8));
        }
        assert_eq!(GrpcCode::from_u64(17), None);
    }

    /// The workspace's wrappers are looked through: a retries-exhausted
    /// network error is a network failure, no longer retryable.
    #[test]
    fn wrapped_errors_keep_their_kind() {
        let last: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let err: BoxError = Box::new(RetriesExhausted {
            attempts: 3,
            reason: battlement_core::RetryStop::MaxAttempts,
            retry_after: Some(Duration::from_secs(1)),
            last,
        });
        let out = GrpcClassifier::new().classify(&Err::<Response<()>, _>(err));
        let f = out.as_failure().unwrap();
        assert_eq!(f.kind, FailureKind::Network);
        assert!(!f.retryable);
        assert_eq!(f.retry_after, Some(Duration::from_secs(1)));
    }
}
