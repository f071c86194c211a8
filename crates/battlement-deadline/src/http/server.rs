//! The server side: [`ServerDeadlineLayer`] reads the caller's budget and
//! holds the handler to it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{Deadline, DeadlineCarrier, EventSink, InvalidConfig, Leak, Name, SharedRef};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use super::parse::{HeaderError, parse_grpc_timeout, parse_millis};
use super::{GRPC_TIMEOUT, X_REQUEST_TIMEOUT_MS};
use crate::shared::{DeadlineHandle, Observer, Role, Shared, deadline_hit};

/// Reads the caller's time budget from the request's headers into its
/// [`Deadline`], so the handler and every layer and client inside see it,
/// and answers for the handler when the budget passes.
///
/// - `grpc-timeout` (gRPC's format, see
///   [`parse_grpc_timeout`](super::parse_grpc_timeout)) and a millisecond
///   header (default `x-request-timeout-ms`) are read; with both, the
///   smaller wins. A request that already carries an earlier deadline
///   keeps it.
/// - The budget is capped by [`max`](ServerDeadlineConfig::max) (default
///   60 s), so a caller cannot hold the server's resources forever. A
///   budget too long for the clock (a `max` and `default_budget` of
///   `Duration::MAX`) ends about thirty years out, which is "unbounded".
/// - A malformed or overflowing header is answered `400 Bad Request` with
///   `{"error": "invalid deadline header", "header": ..., "reason": ...}`;
///   a budget already spent (`0m`, `0`, or an expired carried deadline) is
///   answered `504 Gateway Timeout` at once. The handler is not called in
///   either case.
/// - **The deadline is enforced** (as Envoy and gRPC servers enforce the
///   incoming timeout): when it passes before the handler has answered,
///   the handler's future is dropped, which cancels it, and the caller
///   gets `504 Gateway Timeout` with `{"error": "deadline exceeded",
///   "header": ..., "reason": ..., "budget_ms": ...}`. The bound covers
///   the handler producing its response head, as `tower-http`'s
///   `TimeoutLayer` does, not the streaming of the body after it. Turn it
///   off with [`enforce(false)`](ServerDeadlineConfig::enforce) for
///   handlers that must decide for themselves (they still see the
///   deadline). A request with no deadline runs unbounded, with no timer.
/// - A gRPC request (`content-type: application/grpc...`) is answered the
///   way gRPC clients understand: HTTP 200 with `grpc-status` in the
///   headers (a Trailers-Only response), `3` (`INVALID_ARGUMENT`) for a
///   bad header and `4` (`DEADLINE_EXCEEDED`) for a spent budget, with the
///   reason in `grpc-message`.
/// - Every deadline hit (spent on arrival or cut) is an
///   [`EventKind::DeadlineExceeded`](battlement_core::EventKind::DeadlineExceeded)
///   to the layer's [`events`](ServerDeadlineConfig::events) sink, traced
///   at `INFO`, and counted by its [`handle`](ServerDeadlineLayer::handle).
///
/// The service answers those responses itself, so the inner service's
/// response must be `http::Response<B>` with `B: From<String>`: axum's
/// `Body`, `http_body_util::Full<Bytes>` and `String` all qualify.
///
/// ```
/// use std::time::Duration;
/// use battlement_core::DeadlineCarrier;
/// use battlement_deadline::http::ServerDeadlineLayer;
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut svc = ServiceBuilder::new()
///     .layer(ServerDeadlineLayer::new())
///     .service(service_fn(|req: http::Request<()>| async move {
///         let left = req.deadline().map(|d| d.remaining()).unwrap_or_default();
///         if req.uri() == "/slow" {
///             tokio::time::sleep(Duration::from_secs(5)).await;
///         }
///         Ok::<_, std::convert::Infallible>(http::Response::new(format!("{left:?}")))
///     }));
/// let req = http::Request::builder().header("grpc-timeout", "250m").body(()).unwrap();
/// let res = svc.ready().await.unwrap().call(req).await.unwrap();
/// assert_eq!(res.body(), "250ms");
///
/// // A handler slower than the caller's budget is cut at the budget.
/// let slow = http::Request::builder()
///     .uri("/slow")
///     .header("x-request-timeout-ms", "300")
///     .body(())
///     .unwrap();
/// let res = svc.ready().await.unwrap().call(slow).await.unwrap();
/// assert_eq!(res.status(), 504);
///
/// let bad = http::Request::builder().header("grpc-timeout", "soon").body(()).unwrap();
/// let res = svc.ready().await.unwrap().call(bad).await.unwrap();
/// assert_eq!(res.status(), 400);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServerDeadlineLayer {
    config: SharedRef<ServerDeadlineConfig>,
    shared: SharedRef<Shared>,
}

impl ServerDeadlineLayer {
    /// Reads `grpc-timeout` and `x-request-timeout-ms`, capped at 60 s,
    /// and enforces the deadline.
    pub fn new() -> Self {
        ServerDeadlineLayer {
            config: SharedRef::new(ServerDeadlineConfig::default()),
            shared: SharedRef::new(Shared::new(Role::Server)),
        }
    }

    /// A validating builder.
    pub fn builder() -> ServerDeadlineConfig {
        ServerDeadlineConfig::default()
    }

    /// A handle on the layer's counter of deadline hits, to register as a
    /// component.
    pub fn handle(&self) -> DeadlineHandle {
        DeadlineHandle::observing(&self.shared)
    }
}

/// Its configuration and counter kept for the rest of the process: the
/// copies of its service that axum's `Router` makes per request count no
/// reference (see [`Leak`]).
impl Leak for ServerDeadlineLayer {
    fn leak(self) -> Self {
        ServerDeadlineLayer {
            config: self.config.leak(),
            shared: self.shared.leak(),
        }
    }
}

impl Default for ServerDeadlineLayer {
    fn default() -> Self {
        ServerDeadlineLayer::new()
    }
}

impl<S> Layer<S> for ServerDeadlineLayer {
    type Service = ServerDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerDeadline {
            inner,
            config: self.config.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// Builds a [`ServerDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct ServerDeadlineConfig {
    grpc_timeout: bool,
    millis_header: Option<HeaderName>,
    max: Duration,
    default_budget: Option<Duration>,
    enforce: bool,
    name: Option<Name>,
    events: Option<EventSink>,
}

impl Default for ServerDeadlineConfig {
    fn default() -> Self {
        ServerDeadlineConfig {
            grpc_timeout: true,
            millis_header: Some(HeaderName::from_static(X_REQUEST_TIMEOUT_MS)),
            max: Duration::from_secs(60),
            default_budget: None,
            enforce: true,
            name: None,
            events: None,
        }
    }
}

impl ServerDeadlineConfig {
    /// Whether to read `grpc-timeout`. Default `true`.
    #[must_use]
    pub fn grpc_timeout(mut self, read: bool) -> Self {
        self.grpc_timeout = read;
        self
    }

    /// The millisecond header to read, or `None` for none. Default
    /// `x-request-timeout-ms`.
    #[must_use]
    pub fn millis_header(mut self, name: Option<HeaderName>) -> Self {
        self.millis_header = name;
        self
    }

    /// The largest budget a caller may ask for; larger ones are cut to
    /// it. Must be greater than zero. Default 60 s.
    #[must_use]
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// The budget of a request that names none. Must be greater than zero
    /// when set. Default: none (such a request gets no deadline).
    #[must_use]
    pub fn default_budget(mut self, budget: Option<Duration>) -> Self {
        self.default_budget = budget;
        self
    }

    /// Whether to cut a handler that has not answered when the deadline
    /// passes (answering 504, or `grpc-status: 4`, for it). With `false`
    /// the deadline is only read and handed on. Default `true`.
    #[must_use]
    pub fn enforce(mut self, enforce: bool) -> Self {
        self.enforce = enforce;
        self
    }

    /// The layer's name in events, traces and its handle. Default
    /// `"server_deadline"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Where deadline hits are sent as events. Default: none (traced
    /// only).
    #[must_use]
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// The layer, or which field is wrong.
    pub fn build(mut self) -> Result<ServerDeadlineLayer, InvalidConfig> {
        if self.max.is_zero() {
            return Err(InvalidConfig::new(
                "server_deadline",
                "max",
                self.max,
                "must be > 0",
            ));
        }
        if let Some(d) = self.default_budget
            && d.is_zero()
        {
            return Err(InvalidConfig::new(
                "server_deadline",
                "default_budget",
                d,
                "must be > 0",
            ));
        }
        let shared = Shared::configured(Role::Server, self.name.take(), self.events.take());
        Ok(ServerDeadlineLayer {
            config: SharedRef::new(self),
            shared: SharedRef::Counted(shared),
        })
    }
}

/// The service of [`ServerDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct ServerDeadline<S> {
    inner: S,
    config: SharedRef<ServerDeadlineConfig>,
    shared: SharedRef<Shared>,
}

impl<S> ServerDeadline<S> {
    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Whether the request speaks gRPC, which wants its errors as
/// `grpc-status` rather than an HTTP status.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// gRPC's `INVALID_ARGUMENT`.
const GRPC_INVALID_ARGUMENT: &str = "3";
/// gRPC's `DEADLINE_EXCEEDED`.
const GRPC_DEADLINE_EXCEEDED: &str = "4";

/// One of the layer's own answers: a JSON error for HTTP, a Trailers-Only
/// response for gRPC.
#[cold]
fn answer<B: From<String>>(
    grpc: bool,
    status: StatusCode,
    grpc_status: &'static str,
    body: serde_json::Value,
) -> Response<B> {
    if grpc {
        let message = body["reason"].as_str().unwrap_or_default();
        let message = match body["header"].as_str() {
            Some(h) => format!("{h}: {message}"),
            None => message.to_owned(),
        };
        let mut res = Response::new(B::from(String::new()));
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static(grpc_status));
        // gRPC percent-encodes the message; the reasons here are ASCII,
        // only a header name chosen by the user could be otherwise.
        if let Ok(v) = HeaderValue::try_from(percent_encode(&message)) {
            headers.insert("grpc-message", v);
        }
        return res;
    }
    let mut res = Response::new(B::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// gRPC's `grpc-message` encoding: printable ASCII except `%` as is, the
/// rest percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn bad_header<B: From<String>>(grpc: bool, header: &str, err: HeaderError) -> Response<B> {
    answer(
        grpc,
        StatusCode::BAD_REQUEST,
        GRPC_INVALID_ARGUMENT,
        serde_json::json!({
            "error": "invalid deadline header",
            "header": header,
            "reason": err.as_str(),
        }),
    )
}

fn already_passed<B: From<String>>(grpc: bool, header: Option<&str>) -> Response<B> {
    answer(
        grpc,
        StatusCode::GATEWAY_TIMEOUT,
        GRPC_DEADLINE_EXCEEDED,
        serde_json::json!({
            "error": "deadline exceeded",
            "header": header,
            "reason": "the caller's time budget was already spent",
        }),
    )
}

fn cut<B: From<String>>(grpc: bool, header: Option<&str>, budget: Duration) -> Response<B> {
    answer(
        grpc,
        StatusCode::GATEWAY_TIMEOUT,
        GRPC_DEADLINE_EXCEEDED,
        serde_json::json!({
            "error": "deadline exceeded",
            "header": header,
            "reason": "the handler did not answer within the caller's time budget",
            "budget_ms": u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
        }),
    )
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ServerDeadline<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: From<String>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ServerResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let mut budget: Option<(Duration, &HeaderName)> = None;
        static GRPC: HeaderName = HeaderName::from_static(GRPC_TIMEOUT);
        if self.config.grpc_timeout
            && let Some(v) = req.headers().get(&GRPC)
        {
            match parse_grpc_timeout(v.as_bytes()) {
                Ok(d) => budget = Some((d, &GRPC)),
                Err(e) => {
                    let grpc = is_grpc(req.headers());
                    return ServerResponseFuture::immediate(bad_header(grpc, GRPC_TIMEOUT, e));
                }
            }
        }
        if let Some(name) = &self.config.millis_header
            && let Some(v) = req.headers().get(name)
        {
            match parse_millis(v.as_bytes()) {
                Ok(d) => {
                    if budget.is_none_or(|(b, _)| d < b) {
                        budget = Some((d, name));
                    }
                }
                Err(e) => {
                    let grpc = is_grpc(req.headers());
                    return ServerResponseFuture::immediate(bad_header(grpc, name.as_str(), e));
                }
            }
        }
        let header = budget.map(|(_, h)| h.clone());
        let budget = budget.map(|(d, _)| d).or(self.config.default_budget);
        let now = Instant::now();
        if let Some(b) = budget {
            let b = b.min(self.config.max);
            req.tighten_deadline(Deadline::after_from(now, b));
        }
        let Some(at) = req.deadline().map(|d| d.instant()) else {
            // No budget: the handler runs as it would without this layer.
            return ServerResponseFuture::pass(self.inner.call(req));
        };
        if at <= now {
            let grpc = is_grpc(req.headers());
            deadline_hit(
                self.shared.for_future().get().as_deref(),
                Role::Server,
                Duration::ZERO,
                Duration::ZERO,
            );
            let header = header.as_ref().map(HeaderName::as_str);
            return ServerResponseFuture::immediate(already_passed(grpc, header));
        }
        if !self.config.enforce {
            return ServerResponseFuture::pass(self.inner.call(req));
        }
        let grpc = is_grpc(req.headers());
        ServerResponseFuture {
            state: ServerState::Bounded {
                inner: self.inner.call(req),
                sleep: tokio::time::sleep_until(at),
                cut: CutInfo {
                    budget: at.saturating_duration_since(now),
                    header,
                    grpc,
                    shared: self.shared.for_future(),
                },
            },
        }
    }
}

/// What a cut needs to answer and report (kept in the future: no
/// allocation per request).
struct CutInfo {
    budget: Duration,
    header: Option<HeaderName>,
    grpc: bool,
    shared: Observer,
}

pin_project! {
    #[project = ServerStateProj]
    enum ServerState<F, B> {
        // No deadline, or not enforced: the handler's future as it is.
        Inner { #[pin] inner: F },
        // The handler raced against the request's deadline.
        Bounded { #[pin] inner: F, #[pin] sleep: Sleep, cut: CutInfo },
        // An answer of the layer's own.
        Immediate { response: Option<Response<B>> },
    }
}

pin_project! {
    /// The response future of [`ServerDeadline`]: the handler's, raced
    /// against the request's deadline when it has one, or an answer of
    /// the layer's own (400, or 504 for a budget spent on arrival or
    /// passed while the handler ran).
    pub struct ServerResponseFuture<F, B> {
        #[pin]
        state: ServerState<F, B>,
    }
}

impl<F, B> ServerResponseFuture<F, B> {
    fn pass(inner: F) -> Self {
        ServerResponseFuture {
            state: ServerState::Inner { inner },
        }
    }

    fn immediate(response: Response<B>) -> Self {
        ServerResponseFuture {
            state: ServerState::Immediate {
                response: Some(response),
            },
        }
    }
}

impl<F, B> fmt::Debug for ServerResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ServerState::Inner { .. } => "inner",
            ServerState::Bounded { .. } => "bounded",
            ServerState::Immediate { .. } => "immediate",
        };
        f.debug_struct("ServerResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ServerResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<String>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        let response = match state.as_mut().project() {
            ServerStateProj::Inner { inner } => return inner.poll(cx),
            ServerStateProj::Immediate { response } => response
                .take()
                .expect("ServerResponseFuture polled after completion"),
            ServerStateProj::Bounded {
                inner,
                mut sleep,
                cut,
            } => {
                if let Poll::Ready(out) = inner.poll(cx) {
                    return Poll::Ready(out);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // The timer fires late, never early.
                let elapsed = cut
                    .budget
                    .saturating_add(Instant::now().saturating_duration_since(sleep.deadline()));
                deadline_hit(
                    cut.shared.get().as_deref(),
                    Role::Server,
                    cut.budget,
                    elapsed,
                );
                let header = cut.header.as_ref().map(HeaderName::as_str);
                let response = self::cut(cut.grpc, header, cut.budget);
                // Drop the handler's future now: that cancels it.
                state.set(ServerState::Immediate { response: None });
                response
            }
        };
        Poll::Ready(Ok(response))
    }
}
