//! Mapping the workspace's errors to HTTP responses.

use std::error::Error;
use std::time::Duration;

use battlement_core::{
    AttemptTimedOut, BulkheadFull, CircuitOpen, DeadlineExceeded, LimitExceeded, RetriesExhausted,
    Shed, Throttled,
};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::json;

use crate::body::HealthBody;

/// The status (and `Retry-After`) an error of the workspace maps to,
/// looking through its `source()` chain:
///
/// | error | status | `Retry-After` |
/// |---|---|---|
/// | [`CircuitOpen`], [`Shed`], [`Throttled`], [`BulkheadFull`], [`LimitExceeded`] | `503 Service Unavailable` | the error's retry-after, in whole seconds rounded up (at least 1, saturating at `u64::MAX`) |
/// | [`DeadlineExceeded`], [`AttemptTimedOut`], tower's `Elapsed` | `504 Gateway Timeout` | — |
/// | [`RetriesExhausted`] | as its last error, else `502 Bad Gateway` | its retry-after |
/// | anything else | `500 Internal Server Error` | — |
///
/// ```
/// use battlement_core::{BoxError, CircuitOpen, CircuitState, DeadlineExceeded};
/// use battlement_http::error_status;
/// use std::time::Duration;
///
/// let open: BoxError = Box::new(CircuitOpen::new("db", CircuitState::Open, Some(Duration::from_millis(1500))));
/// assert_eq!(error_status(&*open), (http::StatusCode::SERVICE_UNAVAILABLE, Some(Duration::from_secs(2))));
/// ```
pub fn error_status(err: &(dyn Error + 'static)) -> (StatusCode, Option<Duration>) {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(open) = e.downcast_ref::<CircuitOpen>() {
            return (StatusCode::SERVICE_UNAVAILABLE, round_up(open.retry_after));
        }
        if let Some(shed) = e.downcast_ref::<Shed>() {
            return (StatusCode::SERVICE_UNAVAILABLE, round_up(shed.retry_after));
        }
        if e.is::<Throttled>() {
            return (StatusCode::SERVICE_UNAVAILABLE, None);
        }
        if let Some(full) = e.downcast_ref::<BulkheadFull>() {
            return (StatusCode::SERVICE_UNAVAILABLE, round_up(full.retry_after));
        }
        if let Some(over) = e.downcast_ref::<LimitExceeded>() {
            return (StatusCode::SERVICE_UNAVAILABLE, round_up(over.retry_after));
        }
        if e.is::<DeadlineExceeded>() || e.is::<AttemptTimedOut>() || is_elapsed(e) {
            return (StatusCode::GATEWAY_TIMEOUT, None);
        }
        if let Some(ex) = e.downcast_ref::<RetriesExhausted>() {
            let (status, after) = error_status(&*ex.last);
            let status = if status == StatusCode::INTERNAL_SERVER_ERROR {
                StatusCode::BAD_GATEWAY
            } else {
                status
            };
            return (status, round_up(ex.retry_after).or(after));
        }
        // `io::Error::other(e)`: its own `source()` skips what it wraps.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            return error_status(inner);
        }
        current = e.source();
    }
    (StatusCode::INTERNAL_SERVER_ERROR, None)
}

fn is_elapsed(e: &(dyn Error + 'static)) -> bool {
    // tower's `Elapsed` displays as "request timed out"; core classifies
    // it, so ask the classifier rather than depend on tower here.
    matches!(
        battlement_core::ErrorClassifier::new()
            .classify_error(e)
            .kind,
        battlement_core::FailureKind::Timeout
    ) && e.to_string() == "request timed out"
}

/// Whole seconds, rounded up, at least 1, saturating at `u64::MAX`.
fn round_up(d: Option<Duration>) -> Option<Duration> {
    d.map(|d| {
        let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
        Duration::from_secs(secs.max(1))
    })
}

/// A JSON response for an error of the workspace, with the status and
/// `Retry-After` of [`error_status`] and the body
/// `{"error": "<status reason>", "message": "<error>"}`.
///
/// ```
/// use battlement_core::{BoxError, DeadlineExceeded};
/// use battlement_http::error_response;
/// use std::time::Duration;
///
/// let err: BoxError = Box::new(DeadlineExceeded { budget: Duration::from_secs(1), elapsed: Duration::from_secs(1) });
/// assert_eq!(error_response(&*err).status(), 504);
/// ```
pub fn error_response(err: &(dyn Error + 'static)) -> Response<HealthBody> {
    let (status, retry_after) = error_status(err);
    let body = json!({
        "error": status.canonical_reason().unwrap_or("error"),
        "message": err.to_string(),
    });
    let mut res = Response::new(HealthBody::full(
        serde_json::to_vec(&body).unwrap_or_default(),
    ));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(after) = retry_after {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use battlement_core::{BoxError, CircuitState, Level, Priority, RetryStop};
    use proptest::prelude::*;

    /// The longest wait saturates at `u64::MAX` seconds: no overflow in
    /// debug, no wrap to `Retry-After: 1` in release.
    #[test]
    fn the_longest_retry_after_saturates() {
        let open = CircuitOpen::new("db", CircuitState::Open, Some(Duration::MAX));
        let res = error_response(&open);
        assert_eq!(res.headers()["retry-after"], u64::MAX.to_string().as_str());
    }

    proptest! {
        /// Rounded up to whole seconds, at least 1, saturating.
        #[test]
        fn retry_after_rounds_up(
            secs in prop_oneof![any::<u64>(), u64::MAX - 2..=u64::MAX],
            nanos in 0u32..1_000_000_000,
        ) {
            let d = Duration::new(secs, nanos);
            let open = CircuitOpen::new("db", CircuitState::Open, Some(d));
            let (_, after) = error_status(&open);
            let after = after.unwrap();
            prop_assert!(after >= d || after.as_secs() == u64::MAX);
            prop_assert!(after >= Duration::from_secs(1));
            prop_assert!(after.saturating_sub(d) < Duration::from_secs(1) || d < Duration::from_secs(1));
        }
    }

    /// The load-protection refusals are 503s with the error's retry-after,
    /// rounded up, as a shed is; wrapped in an `io::Error`, too.
    #[test]
    fn bulkhead_and_limit_refusals_are_503_with_retry_after() {
        let full: BoxError = Box::new(BulkheadFull::new(
            "pool",
            4,
            Duration::from_millis(20),
            Some(Duration::from_millis(1500)),
        ));
        let res = error_response(&*full);
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "2");
        let over: BoxError = Box::new(std::io::Error::other(LimitExceeded::new(
            "api",
            20,
            Duration::ZERO,
            Some(Duration::from_secs(3)),
        )));
        assert_eq!(
            error_status(&*over),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(Duration::from_secs(3))
            )
        );
        let no_hint = LimitExceeded::new("api", 20, Duration::ZERO, None);
        let res = error_response(&no_hint);
        assert_eq!(res.status(), 503);
        assert!(res.headers().get("retry-after").is_none());
        let body = res.into_body().into_bytes_now();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json["message"],
            "concurrency limit `api` exceeded (20 call(s) in flight)"
        );
    }

    #[test]
    fn the_table() {
        let shed: BoxError = Box::new(Shed {
            gate: "g".into(),
            level: Level::Severe,
            priority: Priority::Low,
            retry_after: Some(Duration::from_millis(10)),
        });
        assert_eq!(
            error_status(&*shed),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(Duration::from_secs(1))
            )
        );
        let open: BoxError = Box::new(CircuitOpen::new(
            "b",
            battlement_core::CircuitState::Open,
            None,
        ));
        let res = error_response(&*open);
        assert_eq!(res.status(), 503);
        assert!(res.headers().get("retry-after").is_none());
        let late = DeadlineExceeded {
            budget: Duration::from_secs(1),
            elapsed: Duration::from_secs(1),
        };
        // Wrapped in an io::Error, the chain is still walked.
        let wrapped: BoxError = Box::new(std::io::Error::other(late));
        assert_eq!(error_status(&*wrapped).0, StatusCode::GATEWAY_TIMEOUT);
        let exhausted: BoxError = Box::new(RetriesExhausted {
            attempts: 3,
            reason: RetryStop::MaxAttempts,
            retry_after: None,
            last: Box::new(late),
        });
        assert_eq!(error_status(&*exhausted).0, StatusCode::GATEWAY_TIMEOUT);
        let exhausted: BoxError = Box::new(RetriesExhausted {
            attempts: 3,
            reason: RetryStop::MaxAttempts,
            retry_after: Some(Duration::from_secs(4)),
            last: "boom".into(),
        });
        assert_eq!(
            error_status(&*exhausted),
            (StatusCode::BAD_GATEWAY, Some(Duration::from_secs(4)))
        );
        let plain: BoxError = "boom".into();
        let res = error_response(&*plain);
        assert_eq!(res.status(), 500);
        let body = res.into_body().into_bytes_now();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["message"], "boom");
    }
}
