//! [`HealthService`]: the registry over HTTP.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use battlement_core::{BoxError, Control, ControlError, HealthStatus, Level};
use battlement_registry::{ComponentReport, Registry};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, request::Parts};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};
use tower_service::Service;

use crate::body::HealthBody;

/// The largest control body read, in bytes.
const MAX_BODY: usize = 16 * 1024;

/// What an authorizer decides about a control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authorization {
    /// The request may apply the control.
    Granted,
    /// No (or unusable) credentials: `401 Unauthorized`.
    Unauthenticated,
    /// Credentials that may not do this: `403 Forbidden`.
    Forbidden,
}

type Authorizer = dyn Fn(&Parts) -> Authorization + Send + Sync;

enum Access {
    Disabled,
    Bearer(String),
    Custom(Box<Authorizer>),
}

/// The registry as an HTTP service, to mount in axum (`nest_service`) or
/// serve with hyper.
///
/// | route | answer |
/// |---|---|
/// | `GET /health` | the [`HealthReport`](battlement_registry::HealthReport) as JSON: `200` when healthy or degraded, `503` when unhealthy |
/// | `GET /health/{name}` | one component's report: `200`, or `404` if unknown |
/// | `GET /health/events` | a Server-Sent Events stream of every event (`event: <kind>`, `data: <json>`); a lagging client gets `event: lagged` with the number missed |
/// | `GET /metrics` | the Prometheus (OpenMetrics) text exposition |
/// | `POST /health/{name}/reset` | [`Control::Reset`] |
/// | `POST /health/{name}/open` | [`Control::ForceOpen`] |
/// | `POST /health/{name}/close` | [`Control::Close`] |
/// | `POST /health/{name}/disable` | [`Control::Disable`] |
/// | `POST /health/{name}/level` | [`Control::SetLevel`], body `{"level": "severe"}` |
/// | `POST /health/{name}/release` | [`Control::ReleaseLevel`] |
///
/// `HEAD` is accepted wherever `GET` is. Paths are relative to where the
/// service is mounted (axum's `nest_service` strips its prefix); a trailing
/// slash is ignored and names are percent-decoded. `events` is a route, so
/// a component named `events` is reachable only through its controls.
///
/// # Controls and errors
///
/// Controls are **off by default** (`403`). Enable them with
/// [`with_bearer_token`](Self::with_bearer_token) or
/// [`with_authorizer`](Self::with_authorizer); without credentials a
/// control answers `401` (with `WWW-Authenticate: Bearer` for the token).
/// Every error is JSON, `{"error": "<code>", "message": "<what>"}`:
/// `400` for a malformed or oversized body or an unknown level, `404` for an
/// unknown route or component, `405` with `Allow` for a wrong method, `409`
/// for a control the component does not support or refuses. A control that
/// succeeds answers `200` with the component's report after it.
///
/// ```
/// use battlement_http::HealthService;
/// use battlement_registry::Registry;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let registry = Registry::new();
/// let svc = HealthService::new(registry.clone()).with_bearer_token("s3cret");
/// let res = svc
///     .oneshot(http::Request::get("/health").body(String::new()).unwrap())
///     .await
///     .unwrap();
/// assert_eq!(res.status(), 200);
/// # }
/// ```
#[derive(Clone)]
pub struct HealthService {
    registry: Registry,
    access: Arc<Access>,
}

impl fmt::Debug for HealthService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = match &*self.access {
            Access::Disabled => "disabled",
            Access::Bearer(_) => "bearer token",
            Access::Custom(_) => "authorizer",
        };
        f.debug_struct("HealthService")
            .field("registry", &self.registry)
            .field("controls", &access)
            .finish()
    }
}

impl HealthService {
    /// Serves `registry`, with controls disabled.
    pub fn new(registry: Registry) -> Self {
        HealthService {
            registry,
            access: Arc::new(Access::Disabled),
        }
    }

    /// Enables controls for requests carrying `Authorization: Bearer
    /// <token>`; a missing or wrong token answers `401`.
    #[must_use]
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.access = Arc::new(Access::Bearer(token.into()));
        self
    }

    /// Enables controls for the requests `authorize` grants.
    #[must_use]
    pub fn with_authorizer(
        mut self,
        authorize: impl Fn(&Parts) -> Authorization + Send + Sync + 'static,
    ) -> Self {
        self.access = Arc::new(Access::Custom(Box::new(authorize)));
        self
    }

    /// The registry served.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The response future of [`HealthService`].
pub type HealthFuture =
    Pin<Box<dyn Future<Output = Result<Response<HealthBody>, Infallible>> + Send>>;

impl<B> Service<Request<B>> for HealthService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<HealthBody>;
    type Error = Infallible;
    type Future = HealthFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// A JSON response.
fn json_response(status: StatusCode, value: &Value) -> Response<HealthBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut res = Response::new(HealthBody::full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// A JSON error: `{"error": code, "message": message}`.
fn error(status: StatusCode, code: &str, message: impl fmt::Display) -> Response<HealthBody> {
    json_response(
        status,
        &json!({ "error": code, "message": message.to_string() }),
    )
}

fn method_not_allowed(allow: &'static str) -> Response<HealthBody> {
    let mut res = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format_args!("allowed: {allow}"),
    );
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

fn not_found(what: impl fmt::Display) -> Response<HealthBody> {
    error(StatusCode::NOT_FOUND, "not_found", what)
}

/// Percent-decodes a path segment; `None` if it is not valid UTF-8.
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn component_json(report: &ComponentReport) -> Value {
    serde_json::to_value(report).unwrap_or(Value::Null)
}

fn is_get(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

impl HealthService {
    async fn handle<B>(self, req: Request<B>) -> Response<HealthBody>
    where
        B: Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = req.method().clone();
        match segments.as_slice() {
            ["health"] => {
                if !is_get(&method) {
                    return method_not_allowed("GET, HEAD");
                }
                let report = self.registry.health();
                let status = if report.status == HealthStatus::Unhealthy {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                json_response(
                    status,
                    &serde_json::to_value(&report).unwrap_or(Value::Null),
                )
            }
            ["metrics"] => {
                if !is_get(&method) {
                    return method_not_allowed("GET, HEAD");
                }
                let mut res = Response::new(HealthBody::full(self.registry.prometheus_text()));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                res
            }
            ["health", "events"] => {
                if !is_get(&method) {
                    return method_not_allowed("GET, HEAD");
                }
                let mut res = Response::new(HealthBody::events(self.registry.subscribe()));
                let h = res.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                res
            }
            ["health", name] => {
                if !is_get(&method) {
                    return method_not_allowed("GET, HEAD");
                }
                let Some(name) = decode(name) else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_name",
                        "name is not valid UTF-8",
                    );
                };
                match self.registry.get(&name) {
                    Some(report) => json_response(StatusCode::OK, &component_json(&report)),
                    None => not_found(format_args!("no component named `{name}`")),
                }
            }
            ["health", name, action] => {
                let action = *action;
                if !matches!(
                    action,
                    "reset" | "open" | "close" | "disable" | "level" | "release"
                ) {
                    return not_found(format_args!("no route `{path}`"));
                }
                if method != Method::POST {
                    return method_not_allowed("POST");
                }
                let Some(name) = decode(name) else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_name",
                        "name is not valid UTF-8",
                    );
                };
                self.control(req, &name, action).await
            }
            _ => not_found(format_args!("no route `{path}`")),
        }
    }

    async fn control<B>(&self, req: Request<B>, name: &str, action: &str) -> Response<HealthBody>
    where
        B: Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        match self.authorize(&parts) {
            Authorization::Granted => {}
            Authorization::Unauthenticated => {
                let mut res = error(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "controls need credentials",
                );
                if matches!(&*self.access, Access::Bearer(_)) {
                    res.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                return res;
            }
            Authorization::Forbidden => {
                let message = match &*self.access {
                    Access::Disabled => "controls are disabled",
                    _ => "not allowed to apply controls",
                };
                return error(StatusCode::FORBIDDEN, "forbidden", message);
            }
        }
        if self.registry.component(name).is_none() {
            return not_found(format_args!("no component named `{name}`"));
        }
        let control = match action {
            "reset" => Control::Reset,
            "open" => Control::ForceOpen,
            "close" => Control::Close,
            "disable" => Control::Disable,
            "release" => Control::ReleaseLevel,
            _ => match read_level(body).await {
                Ok(level) => Control::SetLevel(level),
                Err(res) => return *res,
            },
        };
        match self.registry.control(name, &control) {
            Ok(()) => {
                let health = self.registry.get(name).map(|r| component_json(&r));
                json_response(
                    StatusCode::OK,
                    &json!({ "component": name, "control": control.as_str(), "applied": true, "health": health }),
                )
            }
            Err(ControlError::NotFound { name }) => {
                not_found(format_args!("no component named `{name}`"))
            }
            Err(e @ ControlError::Unsupported { .. }) => {
                error(StatusCode::CONFLICT, "unsupported", e)
            }
            Err(e) => error(StatusCode::CONFLICT, "refused", e),
        }
    }

    fn authorize(&self, parts: &Parts) -> Authorization {
        match &*self.access {
            Access::Disabled => Authorization::Forbidden,
            Access::Custom(f) => f(parts),
            Access::Bearer(token) => {
                let given = parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                    });
                match given {
                    Some(given) if constant_time_eq(given.trim(), token) => Authorization::Granted,
                    _ => Authorization::Unauthenticated,
                }
            }
        }
    }
}

/// Compares two strings in time that depends only on their lengths.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Reads `{"level": "<level>"}` from a body of at most [`MAX_BODY`] bytes.
async fn read_level<B>(body: B) -> Result<Level, Box<Response<HealthBody>>>
where
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let bad = |msg: String| Box::new(error(StatusCode::BAD_REQUEST, "bad_request", msg));
    let bytes: Bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Err(bad(format!("could not read the body: {e}"))),
    };
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    let Some(level) = value.get("level") else {
        return Err(bad(
            "missing field `level` (expected {\"level\": \"severe\"})".to_owned(),
        ));
    };
    let Some(level) = level.as_str() else {
        return Err(bad(format!("field `level` must be a string, got {level}")));
    };
    level.parse::<Level>().map_err(|e| bad(e.to_string()))
}
