//! The `reqwest_client` example: a `reqwest::Client` (a
//! `tower::Service<reqwest::Request>` since reqwest 0.13) wrapped in
//! `Policy::http`, calling the same local flaky server as the
//! `hyper_client` example ([`upstream`](crate::hyper_client::upstream):
//! `503` with `Retry-After: 0` twice for every item, then `200`).
//!
//! `GET`s are retried; a `POST` is sent once unless it carries an
//! `Idempotency-Key`; a request whose body is a stream is sent once
//! (reqwest's `try_clone` cannot copy it); a refused connection is a
//! retryable network failure, so the retries are spent and the error
//! says so.

use std::time::Duration;

use battlement::prelude::*;
use tower::{Service, ServiceBuilder, ServiceExt};

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
