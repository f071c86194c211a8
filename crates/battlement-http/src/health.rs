//! [`HealthService`]: the registry over HTTP.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{BoxError, Control, ControlError, HealthStatus, Level};
use battlement_registry::{ComponentReport, Registry};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, request::Parts};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};
use tower_service::Service;

use crate::body::HealthBody;

/// The largest control body read, in bytes.
const MAX_BODY: usize = 16 * 1024;

/// The time a control's body has to arrive, unless set otherwise.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The quiet interval after which the event stream sends a keep-alive
/// comment, unless set otherwise.
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

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
/// | `GET /health` | the [`HealthReport`](battlement_registry::HealthReport) as JSON: `200` when healthy or degraded, `503` when unhealthy; `?kind=breaker` and `?status=degraded` (together or alone) keep only the matching `components` (see [filters](#filters)) |
/// | `GET /health/{name}` | one component's report: `200`, or `404` if unknown |
/// | `GET /health/events` | a Server-Sent Events stream of every event (`id: <n>`, `event: <kind>`, `data: <json>`), resumed after `Last-Event-ID`, with keep-alive comments (see [the event stream](#the-event-stream)) |
/// | `GET /health/dashboard` | a self-contained HTML page over the report and the event stream, with control buttons when controls are enabled (see [the dashboard](#the-dashboard)) |
/// | `GET /metrics` | the Prometheus (OpenMetrics) text exposition |
/// | `POST /health/reset` | [`Control::Reset`] to every component (see [resetting everything](#resetting-everything)) |
/// | `POST /health/{name}/reset` | [`Control::Reset`] |
/// | `POST /health/{name}/open` | [`Control::ForceOpen`] |
/// | `POST /health/{name}/close` | [`Control::Close`] |
/// | `POST /health/{name}/disable` | [`Control::Disable`] |
/// | `POST /health/{name}/enable` | [`Control::Enable`] |
/// | `POST /health/{name}/level` | [`Control::SetLevel`], body `{"level": "severe"}` |
/// | `POST /health/{name}/release` | [`Control::ReleaseLevel`] |
/// | `POST /health/{name}/metrics_only` | [`Control::MetricsOnly`]: a breaker records and reports, never trips |
///
/// `HEAD` is accepted wherever `GET` is. Paths are relative to where the
/// service is mounted (axum's `nest_service` strips its prefix); a trailing
/// slash is ignored. Each segment is percent-decoded strictly (`%` and
/// exactly two hex digits, UTF-8 once decoded; anything else is `400`)
/// **before** routing, so an encoded spelling is the same path:
/// `/health/%65vents` is the event stream, like `/health/events`, and a
/// component named `events` is reachable only through its controls
/// (`POST /health/events/reset`). A name may hold `/`, as a policy's parts
/// do (`GET /health/checkout/breaker`, `POST /health/checkout/breaker/open`);
/// `%2F` spells the same.
///
/// # The event stream
///
/// `GET /health/events` opens with a comment, then sends one message per
/// event, numbered by the registry (`id:`, from 1, one more per event).
/// A client that reconnects with `Last-Event-ID: <n>` (as browsers'
/// `EventSource` does by itself) first gets the events after `n` that
/// the registry still keeps (the last
/// [`REPLAY`](battlement_registry::REPLAY)), preceded by `event: lagged`
/// with `{"missed": k}` when `k` of them are no longer kept. After
/// [`with_keep_alive`](Self::with_keep_alive)'s interval (15 s by
/// default) without a message the stream sends a `: keep-alive`
/// comment. A slow client never holds memory or the layers back: each
/// stream buffers at most the registry's event capacity, the oldest
/// events it has not read are dropped for it and it gets `event: lagged`
/// with the number missed, counted in
/// [`Registry::events_lagged`](battlement_registry::Registry::events_lagged)
/// (`battlement_events_lagged_total` in `/metrics`). Emitting an event
/// never waits for a client.
///
/// # Filters
///
/// `GET /health?kind=<kind>&status=<status>` keeps in `components` only
/// those of that kind (`breaker`, `gate`, `retry`, ...: a `snake_case`
/// name) and counted as that status (`healthy`, `degraded`,
/// `unhealthy`). The overall `status`, the counts and the HTTP status
/// stay those of the whole system, so a filtered check never hides an
/// unhealthy process. A malformed kind, an unknown status, a parameter
/// given twice or an unknown parameter is `400` (`bad_query`).
///
/// # Resetting everything
///
/// `POST /health/reset` applies [`Control::Reset`] to every live
/// component, with the same authorization as any control, and answers
/// `200` with `{"control": "reset", "applied": [names], "unsupported":
/// [names], "refused": [{"component", "message"}]}`. A reset resets
/// state, never a counter (see [`Control::Reset`]). A component named
/// `reset` is reset with `POST /health/reset/reset`.
///
/// # The dashboard
///
/// `GET /health/dashboard` answers one self-contained HTML page (inline
/// CSS and script, a `content-security-policy` allowing nothing else and
/// connections to its own origin only): a card per component, grouped by
/// policy (the part of the name before the first `/`), with the breaker
/// state in colour, failure and call rates as sparklines, the gate level,
/// the retry budget, fallback activations, instrument p50/p99 and the last
/// events. It follows the event stream and re-reads the report on each
/// event and every 3 s, all through URLs relative to its own, so it works
/// under any mount prefix (`/ops/health/dashboard`). When controls are
/// enabled it shows their buttons and asks for the bearer token; when
/// they are off it shows none. The repository keeps a screenshot, taken
/// by the browser test `tests/tests/dashboard_browser.rs`, in
/// `docs/dashboard.png`.
///
/// # Controls and errors
///
/// Controls are **off by default** (`403`). Enable them with
/// [`with_bearer_token`](Self::with_bearer_token) or
/// [`with_authorizer`](Self::with_authorizer); without usable credentials
/// a control answers `401` with the JSON error `unauthenticated` and, for
/// the bearer token, `WWW-Authenticate: Bearer`: a bare challenge without
/// RFC 6750's `error="invalid_token"`, the same for a missing and a wrong
/// token, so the answer tells a prober nothing.
/// Every error is JSON, `{"error": "<code>", "message": "<what>"}`:
/// `400` for a malformed path (`bad_path`), a malformed body or an
/// unknown level, `404` for an unknown route or component, `405`
/// with `Allow` for a wrong method, `408` (`request_timeout`) for a body
/// that does not arrive within the [body
/// timeout](Self::with_body_timeout), `413` (`payload_too_large`) for a
/// body over 16 KiB (refused before reading when its `content-length`
/// says so), `409` for a control the component
/// does not support or refuses. A control that succeeds answers `200`
/// with `{"component": "<name>", "control": "<control>", "applied": true,
/// "health": <report>}`, where `health` is the component's report (as
/// `GET /health/{name}` answers it) taken after the control.
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
    body_timeout: Duration,
    keep_alive: Duration,
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
            .field("body_timeout", &self.body_timeout)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

impl HealthService {
    /// Serves `registry`, with controls disabled.
    pub fn new(registry: Registry) -> Self {
        HealthService {
            registry,
            access: Arc::new(Access::Disabled),
            body_timeout: DEFAULT_BODY_TIMEOUT,
            keep_alive: DEFAULT_KEEP_ALIVE,
        }
    }

    /// Enables controls for requests carrying `Authorization: Bearer
    /// <token>`; a missing or wrong token answers `401`.
    ///
    /// - **A blank token leaves controls off** (`403`, as without this
    ///   call): `with_bearer_token(env::var("TOKEN").unwrap_or_default())`
    ///   with the variable unset must not let `Authorization: Bearer `
    ///   in. Surrounding whitespace is trimmed first (a token read from a
    ///   file often ends with a newline).
    /// - The scheme is matched in any case (`bearer`, `BEARER`, RFC 7235),
    ///   followed by one or more spaces and the token, which has no
    ///   whitespace in it. A request with more than one `Authorization`
    ///   header is ambiguous and answers `401`.
    /// - The token is compared in time that does not depend on its
    ///   content or length.
    #[must_use]
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        let token = token.trim();
        self.access = Arc::new(if token.is_empty() {
            Access::Disabled
        } else {
            Access::Bearer(token.to_owned())
        });
        self
    }

    /// The time a control's body (`POST /health/{name}/level`) has to
    /// arrive once the control is authorized; past it the control answers
    /// `408` and is not applied. Default 10 s. Needs tokio's timer (a
    /// runtime with time enabled, as `#[tokio::main]` builds).
    ///
    /// # Panics
    ///
    /// If `timeout` is zero: no body could ever arrive.
    #[must_use]
    #[track_caller]
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "HealthService: body timeout must be > 0"
        );
        self.body_timeout = timeout;
        self
    }

    /// The quiet interval after which the event stream
    /// (`GET /health/events`) sends a keep-alive comment (`: keep-alive`),
    /// so proxies and clients do not time the connection out. Default
    /// 15 s. Needs tokio's timer.
    ///
    /// # Panics
    ///
    /// If `interval` is zero.
    #[must_use]
    #[track_caller]
    pub fn with_keep_alive(mut self, interval: Duration) -> Self {
        assert!(
            !interval.is_zero(),
            "HealthService: keep-alive interval must be > 0"
        );
        self.keep_alive = interval;
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

/// Percent-decodes a path segment strictly: `%` must be followed by
/// exactly two hex digits, and the result must be UTF-8. The error is the
/// message of the `400` answer.
fn decode(segment: &str) -> Result<Cow<'_, str>, String> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |j: usize| bytes.get(j).and_then(|&b| char::from(b).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            let end = segment.len().min(i + 3);
            let bad = segment.get(i..end).unwrap_or(&segment[i..]);
            return Err(format!(
                "invalid percent-encoding `{bad}` in `{segment}`: `%` must be followed by two hex digits"
            ));
        };
        // Two hex digits: at most 0xff.
        out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
        i += 3;
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| format!("path segment `{segment}` is not valid UTF-8 once percent-decoded"))
}

fn component_json(report: &ComponentReport) -> Value {
    serde_json::to_value(report).unwrap_or(Value::Null)
}

/// The actions of `POST /health/{name}/{action}`.
fn is_action(segment: &str) -> bool {
    matches!(
        segment,
        "reset" | "open" | "close" | "disable" | "enable" | "level" | "release" | "metrics_only"
    )
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
        let decoded = match path
            .trim_start_matches('/')
            .split('/')
            .map(decode)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(decoded) => decoded,
            Err(message) => return error(StatusCode::BAD_REQUEST, "bad_path", message),
        };
        let segments: Vec<&str> = decoded.iter().map(|s| &**s).collect();
        let method = req.method().clone();
        match segments.as_slice() {
            ["health"] => {
                if !is_get(&method) {
                    return method_not_allowed("GET, HEAD");
                }
                let filter = match Filter::parse(req.uri().query()) {
                    Ok(filter) => filter,
                    Err(message) => return error(StatusCode::BAD_REQUEST, "bad_query", message),
                };
                let mut report = self.registry.health();
                let status = if report.status == HealthStatus::Unhealthy {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                report.components.retain(|c| filter.admits(c));
                json_response(
                    status,
                    &serde_json::to_value(&report).unwrap_or(Value::Null),
                )
            }
            ["health", "reset"] if method == Method::POST => self.reset_all(req).await,
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
                // A reconnecting client's last id; anything unreadable is
                // a new client.
                let last_id = req
                    .headers()
                    .get("last-event-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let resume = self.registry.subscribe_after(last_id);
                let mut res = Response::new(HealthBody::events(
                    self.registry.clone(),
                    resume,
                    self.keep_alive,
                ));
                let h = res.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                res
            }
            ["health", "dashboard"] => {
                if !is_get(&method) {
                    return method_not_allowed("GET, HEAD");
                }
                crate::dashboard::response(!matches!(&*self.access, Access::Disabled))
            }
            // `/health/{name}/{action}`, where a name may hold `/` (a
            // policy's `checkout/breaker`): the last segment is the
            // action when it is one and the method is `POST`; otherwise
            // the whole rest is a name to report.
            ["health", rest @ .., action] if method == Method::POST && is_action(action) => {
                let name = rest.join("/");
                self.control(req, &name, action).await
            }
            ["health", rest @ ..] if !rest.is_empty() => {
                let last = rest.last().copied().unwrap_or_default();
                if !is_get(&method) {
                    return if rest == ["reset"] {
                        // `POST` resets everything; `GET` reports a
                        // component named `reset`.
                        method_not_allowed("GET, HEAD, POST")
                    } else if is_action(last) && rest.len() > 1 {
                        method_not_allowed("POST")
                    } else if method == Method::POST && rest.len() > 1 {
                        not_found(format_args!("no route `{path}`"))
                    } else {
                        method_not_allowed("GET, HEAD")
                    };
                }
                let name = rest.join("/");
                match self.registry.get(&name) {
                    Some(report) => json_response(StatusCode::OK, &component_json(&report)),
                    None if is_action(last) && rest.len() > 1 => method_not_allowed("POST"),
                    None => not_found(format_args!("no component named `{name}`")),
                }
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
        if let Some(refusal) = self.refusal(&parts) {
            return refusal;
        }
        if self.registry.component(name).is_none() {
            return not_found(format_args!("no component named `{name}`"));
        }
        let control = match action {
            "reset" => Control::Reset,
            "open" => Control::ForceOpen,
            "close" => Control::Close,
            "disable" => Control::Disable,
            "enable" => Control::Enable,
            "release" => Control::ReleaseLevel,
            "metrics_only" => Control::MetricsOnly,
            _ => match read_level(body, self.body_timeout).await {
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

    /// The answer refusing a control request, or `None` when it may go
    /// on: `401` (with `WWW-Authenticate: Bearer` for the bearer token)
    /// without usable credentials, `403` when controls are off or the
    /// authorizer forbids it.
    fn refusal(&self, parts: &Parts) -> Option<Response<HealthBody>> {
        match self.authorize(parts) {
            Authorization::Granted => None,
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
                Some(res)
            }
            Authorization::Forbidden => {
                let message = match &*self.access {
                    Access::Disabled => "controls are disabled",
                    _ => "not allowed to apply controls",
                };
                Some(error(StatusCode::FORBIDDEN, "forbidden", message))
            }
        }
    }

    /// `POST /health/reset`: [`Control::Reset`] to every live component.
    async fn reset_all<B>(&self, req: Request<B>) -> Response<HealthBody> {
        let (parts, _body) = req.into_parts();
        if let Some(refusal) = self.refusal(&parts) {
            return refusal;
        }
        let (mut applied, mut unsupported, mut refused) = (Vec::new(), Vec::new(), Vec::new());
        for name in self.registry.names() {
            match self.registry.control(&name, &Control::Reset) {
                Ok(()) => applied.push(name),
                // Dropped since the names were read: nothing to reset.
                Err(ControlError::NotFound { .. }) => {}
                Err(ControlError::Unsupported { .. }) => unsupported.push(name),
                Err(e) => refused.push(json!({ "component": name, "message": e.to_string() })),
            }
        }
        json_response(
            StatusCode::OK,
            &json!({
                "control": "reset",
                "applied": applied,
                "unsupported": unsupported,
                "refused": refused,
            }),
        )
    }

    fn authorize(&self, parts: &Parts) -> Authorization {
        match &*self.access {
            Access::Disabled => Authorization::Forbidden,
            Access::Custom(f) => f(parts),
            Access::Bearer(token) => {
                // More than one `Authorization` is ambiguous: refused.
                let mut given = parts.headers.get_all(header::AUTHORIZATION).iter();
                let (Some(given), None) = (given.next(), given.next()) else {
                    return Authorization::Unauthenticated;
                };
                match bearer_token(given.as_bytes()) {
                    Some(given) if constant_time_eq(given, token.as_bytes()) => {
                        Authorization::Granted
                    }
                    _ => Authorization::Unauthenticated,
                }
            }
        }
    }
}

/// The token of `Bearer <token>`: the scheme in any case (RFC 7235), one
/// or more spaces, then a token without whitespace; `None` otherwise.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.trim_ascii().split_at_checked(b"bearer".len())?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii_start();
    (!token.is_empty() && !token.iter().any(u8::is_ascii_whitespace)).then_some(token)
}

/// Compares `given` with `expected` in time that depends only on the
/// length of `given` (the caller's choice), never on `expected`'s content
/// or length: every byte of `given` is compared (against `expected` read
/// cyclically), the lengths are folded into the result instead of
/// checked first, and nothing returns early.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (g, e) in given.iter().zip(expected.iter().cycle()) {
        #[cfg(test)]
        probe::byte_compared();
        diff |= usize::from(g ^ e);
    }
    std::hint::black_box(diff) == 0
}

/// Reads `{"level": "<level>"}` from a body of at most [`MAX_BODY`] bytes
/// that arrives within `timeout`.
async fn read_level<B>(body: B, timeout: Duration) -> Result<Level, Box<Response<HealthBody>>>
where
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let bad = |msg: String| Box::new(error(StatusCode::BAD_REQUEST, "bad_request", msg));
    let too_large = || {
        Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format_args!("the body is over {MAX_BODY} bytes"),
        ))
    };
    // A length announced over the cap is refused before reading a byte.
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large());
    }
    let read = tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect());
    let bytes: Bytes = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large()),
        Ok(Err(e)) => return Err(bad(format!("could not read the body: {e}"))),
        Err(_) => {
            return Err(Box::new(error(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format_args!("the body did not arrive within {timeout:?}"),
            )));
        }
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

/// The filters of `GET /health`: `?kind=<kind>` and `?status=<status>`.
#[derive(Debug, Default)]
struct Filter {
    kind: Option<String>,
    status: Option<HealthStatus>,
}

impl Filter {
    /// Parses the query; the error is the message of the `400` answer.
    fn parse(query: Option<&str>) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(&value.replace('+', " "))?.into_owned();
            match key {
                "kind" if filter.kind.is_some() => {
                    return Err("`kind` given more than once".to_owned());
                }
                "kind" => {
                    if value.is_empty()
                        || !value
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    {
                        return Err(format!(
                            "invalid kind `{value}`: a kind is a snake_case name (`breaker`, `gate`, `retry`, ...)"
                        ));
                    }
                    filter.kind = Some(value);
                }
                "status" if filter.status.is_some() => {
                    return Err("`status` given more than once".to_owned());
                }
                "status" => {
                    filter.status = Some(match value.as_str() {
                        "healthy" => HealthStatus::Healthy,
                        "degraded" => HealthStatus::Degraded,
                        "unhealthy" => HealthStatus::Unhealthy,
                        _ => {
                            return Err(format!(
                                "invalid status `{value}`: expected `healthy`, `degraded` or `unhealthy`"
                            ));
                        }
                    });
                }
                other => {
                    return Err(format!(
                        "unknown query parameter `{other}`: expected `kind` or `status`"
                    ));
                }
            }
        }
        Ok(filter)
    }

    /// Whether the component is kept: of the kind asked for and counted
    /// as the status asked for.
    fn admits(&self, c: &ComponentReport) -> bool {
        self.kind.as_deref().is_none_or(|k| c.kind.as_str() == k)
            && self.status.is_none_or(|s| c.status == s)
    }
}

/// Counts, in tests, the bytes [`constant_time_eq`] compares, so a test
/// can check that a bearer token is judged by it, byte for byte, and
/// never by an early-returning comparison.
#[cfg(test)]
mod probe {
    use std::cell::Cell;

    thread_local! {
        static COMPARED: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) fn byte_compared() {
        COMPARED.with(|c| c.set(c.get() + 1));
    }

    /// The bytes compared on this thread since the last call.
    pub(super) fn take() -> usize {
        COMPARED.with(|c| c.replace(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parts(auth: &[&str]) -> Parts {
        let mut req = Request::post("/health/db/open");
        for a in auth {
            req = req.header(header::AUTHORIZATION, *a);
        }
        req.body(()).unwrap().into_parts().0
    }

    /// Constant time by construction: every bearer token the scheme lets
    /// through is judged by `constant_time_eq`, which looks at every byte
    /// of it whatever the token configured (shorter, longer, a prefix,
    /// differing at the first byte or the last), so the time depends on
    /// the caller's input only. Counted, not timed.
    #[test]
    fn the_token_is_compared_in_constant_time() {
        let svc = HealthService::new(Registry::new()).with_bearer_token("s3cret-token");
        let _ = probe::take();
        for given in [
            "s3cret-token",
            "x3cret-token",
            "s3cret-tokex",
            "s",
            "s3cret",
            "s3cret-token-and-more",
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        ] {
            let want = if given == "s3cret-token" {
                Authorization::Granted
            } else {
                Authorization::Unauthenticated
            };
            assert_eq!(svc.authorize(&parts(&[&format!("Bearer {given}")])), want);
            assert_eq!(probe::take(), given.len(), "{given}: every byte compared");
        }
        // What the scheme refuses is refused before any comparison: the
        // answer depends on the header's shape, never on the token.
        for auth in [
            &["Basic s3cret-token"][..],
            &["Bearer "],
            &[],
            &["Bearer s3cret-token"; 2],
        ] {
            assert_eq!(svc.authorize(&parts(auth)), Authorization::Unauthenticated);
            assert_eq!(probe::take(), 0, "{auth:?}");
        }
    }

    proptest! {
        /// Equal exactly when the bytes are, whatever the lengths (a
        /// prefix, a longer string, one repeating the token).
        #[test]
        fn constant_time_eq_is_equality(
            given in proptest::collection::vec(any::<u8>(), 0..40),
            expected in proptest::collection::vec(any::<u8>(), 1..20),
        ) {
            prop_assert_eq!(constant_time_eq(&given, &expected), given == expected);
            prop_assert!(constant_time_eq(&expected, &expected));
            let twice = [&expected[..], &expected[..]].concat();
            prop_assert!(!constant_time_eq(&twice, &expected));
        }

        /// Any header value: a token or nothing, never a panic; a token
        /// has no whitespace.
        #[test]
        fn bearer_token_never_panics(value in proptest::collection::vec(any::<u8>(), 0..24)) {
            if let Some(token) = bearer_token(&value) {
                prop_assert!(!token.is_empty());
                prop_assert!(!token.iter().any(u8::is_ascii_whitespace));
            }
        }
    }

    #[test]
    fn decode_is_strict() {
        assert_eq!(decode("p%61y").unwrap(), "pay");
        assert_eq!(decode("a%2Fb").unwrap(), "a/b");
        assert_eq!(decode("%C3%A9").unwrap(), "é");
        for bad in ["%", "%4", "%zz", "%+1", "%-1", "% 1", "%4é"] {
            assert!(decode(bad).unwrap_err().contains("two hex digits"), "{bad}");
        }
        assert!(decode("%ff").unwrap_err().contains("UTF-8"));
    }
}
