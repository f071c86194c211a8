//! The `hyper_client` example: a hyper-util client wrapped in
//! `Policy::http`, calling a local flaky server that answers `503` with
//! `Retry-After: 0` twice for every item before it answers `200`. The
//! policy retries the `GET`s inside one 2 s budget and stamps the time
//! left on each attempt (`x-request-timeout-ms`), which the server
//! records; a `POST` is sent once; a `POST` with an `Idempotency-Key` is
//! retried. The policy's settings are read from `examples/policies.toml`
//! with `PolicyConfig`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use battlement::deadline::http::PropagateDeadlineLayer;
use battlement::prelude::*;
use bytes::Bytes;
use http_body_util::Full;
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::client::{HttpClient, http_client};

/// The policies file of the example, `examples/policies.toml`.
pub const POLICIES: &str = include_str!("../policies.toml");

/// What the flaky server saw.
#[derive(Debug, Default)]
pub struct Upstream {
    /// Calls per item so far.
    pub calls: Mutex<HashMap<String, u32>>,
    /// The `x-request-timeout-ms` of every call, in order.
    pub budgets_ms: Mutex<Vec<u64>>,
}

async fn item(
    State(upstream): State<Arc<Upstream>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    if let Some(ms) = headers
        .get("x-request-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        upstream
            .budgets_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ms);
    }
    let n = {
        let mut calls = upstream.calls.lock().unwrap_or_else(|p| p.into_inner());
        let n = calls.entry(id.clone()).or_insert(0);
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
        (StatusCode::OK, [("retry-after", "0")], format!("item {id}"))
    }
}

/// The flaky server's router.
pub fn upstream() -> (Router, Arc<Upstream>) {
    let state = Arc::new(Upstream::default());
    let router = Router::new()
        .route("/items/{id}", get(item).post(item))
        .with_state(state.clone());
    (router, state)
}

/// The client: `Policy::http` over a hyper-util client, with the time
/// left stamped on each attempt.
///
/// # Errors
///
/// When the policy is refused (it is not, with these settings).
pub fn client(
    registry: &Registry,
) -> Result<
    impl Service<
        http::Request<Full<Bytes>>,
        Response = http::Response<hyper::body::Incoming>,
        Error = BoxError,
        Future = impl Send,
    > + Clone
    + Send,
    BoxError,
> {
    // The settings come from `examples/policies.toml`; the preset (the
    // HTTP classifier, idempotent-only retries) and the registry from code.
    let config: PolicyConfig = toml::from_str(POLICIES)?;
    config.validate()?;
    let policy = config
        .apply_to(Policy::http("upstream"))?
        .registry(registry)
        .build()?;
    let inner: HttpClient = http_client();
    Ok(ServiceBuilder::new()
        .layer(policy)
        .layer(PropagateDeadlineLayer::new())
        .service(inner))
}

/// Sends `method` to `url` through `svc` (with an `Idempotency-Key` when
/// `key` is set) and answers the status.
///
/// # Errors
///
/// When the call fails.
pub async fn call<S>(
    svc: &mut S,
    method: http::Method,
    url: &str,
    key: Option<&str>,
) -> Result<StatusCode, BoxError>
where
    S: Service<
            http::Request<Full<Bytes>>,
            Response = http::Response<hyper::body::Incoming>,
            Error = BoxError,
        >,
{
    let mut req = http::Request::builder().method(method).uri(url);
    if let Some(key) = key {
        req = req.header(battlement::IDEMPOTENCY_KEY, key);
    }
    let req = req.body(Full::default())?;
    let res = svc.ready().await?.call(req).await?;
    Ok(res.status())
}
