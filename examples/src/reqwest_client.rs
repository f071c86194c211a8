//! The `reqwest_client` example: a `reqwest::Client` (a
//! `tower::Service<reqwest::Request>` since reqwest 0.13) wrapped in
//! `Policy::http`, calling a local server that answers `503` with
//! `Retry-After: 0` twice for every path before it answers `200`.
//!
//! `GET`s are retried; a `POST` is sent once unless it carries an
//! `Idempotency-Key`; a request whose body is a stream is sent once
//! (reqwest's `try_clone` cannot copy it); a refused connection is a
//! retryable network failure, so the retries are spent and the error
//! says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::any;
use battlement::prelude::*;
use tower::{Service, ServiceBuilder, ServiceExt};

/// What the flaky server saw: calls per path.
#[derive(Debug, Default)]
pub struct Seen {
    calls: Mutex<HashMap<String, u32>>,
}

impl Seen {
    /// The calls the server answered for `/{path}`.
    pub fn calls(&self, path: &str) -> u32 {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.get(path).copied().unwrap_or(0)
    }
}

async fn flaky(
    State(seen): State<Arc<Seen>>,
    Path(path): Path<String>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let n = {
        let mut calls = seen.calls.lock().unwrap_or_else(|p| p.into_inner());
        let n = calls.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    if n <= 2 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "0")],
            "busy".into(),
        )
    } else {
        (
            StatusCode::OK,
            [("retry-after", "0")],
            format!("done {path}"),
        )
    }
}

/// The flaky server's router: any method on `/{path}`.
pub fn upstream() -> (Router, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let router = Router::new()
        .route("/{path}", any(flaky))
        .with_state(seen.clone());
    (router, seen)
}

/// The client: `Policy::http` ("reqwest") over a `reqwest::Client`, three
/// attempts inside a 2 s budget.
///
/// # Errors
///
/// When the policy is refused (it is not, with these settings) or reqwest
/// cannot build its client.
pub fn client(
    registry: &Registry,
) -> Result<
    impl Service<reqwest::Request, Response = reqwest::Response, Error = BoxError, Future = impl Send>
    + Clone
    + Send,
    BoxError,
> {
    let policy = Policy::http("reqwest")
        .total(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(500))
        .retry(|r| {
            r.max_attempts(3)
                .backoff(Backoff::exponential(Duration::from_millis(10)))
        })
        .allow(Check::RetriesFitTotal)
        .registry(registry)
        .build()?;
    let client = reqwest::Client::builder().build()?;
    Ok(ServiceBuilder::new().layer(policy).service(client))
}

/// Sends `req` through `svc` and answers the status.
///
/// # Errors
///
/// When the call fails (after its retries).
pub async fn send<S>(svc: &mut S, req: reqwest::Request) -> Result<u16, BoxError>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = BoxError>,
{
    let res = svc.ready().await?.call(req).await?;
    Ok(res.status().as_u16())
}

/// A request of `method` to `url`, with an `Idempotency-Key` when `key`
/// is set, and a streaming body when `streaming` (one reqwest cannot
/// copy).
///
/// # Errors
///
/// When `url` is not valid.
pub fn request(
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
    streaming: bool,
) -> Result<reqwest::Request, BoxError> {
    let url = reqwest::Url::parse(url)?;
    let mut req = reqwest::Request::new(method, url);
    if let Some(key) = key {
        req.headers_mut()
            .insert(battlement::IDEMPOTENCY_KEY, key.parse()?);
    }
    if streaming {
        let body = http_body_util::Full::new(bytes::Bytes::from_static(b"{\"item\": 7}"));
        *req.body_mut() = Some(reqwest::Body::wrap(body));
    }
    Ok(req)
}
