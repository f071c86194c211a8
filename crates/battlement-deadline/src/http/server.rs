//! The server side: [`ServerDeadlineLayer`] reads the caller's budget.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{Deadline, DeadlineCarrier, InvalidConfig};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::parse::{HeaderError, parse_grpc_timeout, parse_millis};
use super::{GRPC_TIMEOUT, X_REQUEST_TIMEOUT_MS};

/// Reads the caller's time budget from the request's headers into its
/// [`Deadline`], so the handler and every layer and client inside see it.
///
/// - `grpc-timeout` (gRPC's format, see
///   [`parse_grpc_timeout`](super::parse_grpc_timeout)) and a millisecond
///   header (default `x-request-timeout-ms`) are read; with both, the
///   smaller wins. A request that already carries an earlier deadline
///   keeps it.
/// - The budget is capped by [`max`](ServerDeadlineConfig::max) (default
///   60 s), so a caller cannot hold the server's resources forever.
/// - A malformed or overflowing header is answered `400 Bad Request` with
///   `{"error": "invalid deadline header", "header": ..., "reason": ...}`;
///   a budget already spent (`0m`, `0`, or an expired carried deadline) is
///   answered `504 Gateway Timeout` at once. The handler is not called in
///   either case.
///
/// It does not cut a slow handler: it tells it when to give up. Stack a
/// timeout inside if the handler cannot be trusted to.
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
///         Ok::<_, std::convert::Infallible>(http::Response::new(format!("{left:?}")))
///     }));
/// let req = http::Request::builder().header("grpc-timeout", "250m").body(()).unwrap();
/// let res = svc.ready().await.unwrap().call(req).await.unwrap();
/// assert_eq!(res.body(), "250ms");
///
/// let bad = http::Request::builder().header("grpc-timeout", "soon").body(()).unwrap();
/// let res = svc.ready().await.unwrap().call(bad).await.unwrap();
/// assert_eq!(res.status(), 400);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServerDeadlineLayer {
    config: ServerDeadlineConfig,
}

impl ServerDeadlineLayer {
    /// Reads `grpc-timeout` and `x-request-timeout-ms`, capped at 60 s.
    pub fn new() -> Self {
        ServerDeadlineLayer {
            config: ServerDeadlineConfig::default(),
        }
    }

    /// A validating builder.
    pub fn builder() -> ServerDeadlineConfig {
        ServerDeadlineConfig::default()
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
}

impl Default for ServerDeadlineConfig {
    fn default() -> Self {
        ServerDeadlineConfig {
            grpc_timeout: true,
            millis_header: Some(HeaderName::from_static(X_REQUEST_TIMEOUT_MS)),
            max: Duration::from_secs(60),
            default_budget: None,
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

    /// The layer, or which field is wrong.
    pub fn build(self) -> Result<ServerDeadlineLayer, InvalidConfig> {
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
        Ok(ServerDeadlineLayer { config: self })
    }
}

/// The service of [`ServerDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct ServerDeadline<S> {
    inner: S,
    config: ServerDeadlineConfig,
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

fn json_response<B: From<String>>(status: StatusCode, body: serde_json::Value) -> Response<B> {
    let mut res = Response::new(B::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn bad_header<B: From<String>>(header: &str, err: HeaderError) -> Response<B> {
    json_response(
        StatusCode::BAD_REQUEST,
        serde_json::json!({
            "error": "invalid deadline header",
            "header": header,
            "reason": err.as_str(),
        }),
    )
}

fn already_passed<B: From<String>>(header: Option<&str>) -> Response<B> {
    json_response(
        StatusCode::GATEWAY_TIMEOUT,
        serde_json::json!({
            "error": "deadline exceeded",
            "header": header,
            "reason": "the caller's time budget was already spent",
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
        let mut budget: Option<(Duration, &str)> = None;
        if self.config.grpc_timeout
            && let Some(v) = req.headers().get(GRPC_TIMEOUT)
        {
            match parse_grpc_timeout(v.as_bytes()) {
                Ok(d) => budget = Some((d, GRPC_TIMEOUT)),
                Err(e) => return ServerResponseFuture::immediate(bad_header(GRPC_TIMEOUT, e)),
            }
        }
        if let Some(name) = &self.config.millis_header
            && let Some(v) = req.headers().get(name)
        {
            match parse_millis(v.as_bytes()) {
                Ok(d) => {
                    if budget.is_none_or(|(b, _)| d < b) {
                        budget = Some((d, name.as_str()));
                    }
                }
                Err(e) => return ServerResponseFuture::immediate(bad_header(name.as_str(), e)),
            }
        }
        let header = budget.map(|(_, h)| h);
        let budget = budget.map(|(d, _)| d).or(self.config.default_budget);
        let now = Instant::now();
        if let Some(b) = budget {
            let b = b.min(self.config.max);
            req.tighten_deadline(Deadline::at(now + b));
        }
        if req.deadline().is_some_and(|d| d.instant() <= now) {
            let header = header.map(str::to_owned);
            return ServerResponseFuture::immediate(already_passed(header.as_deref()));
        }
        ServerResponseFuture {
            state: ServerState::Inner {
                inner: self.inner.call(req),
            },
        }
    }
}

pin_project! {
    #[project = ServerStateProj]
    enum ServerState<F, B> {
        Inner { #[pin] inner: F },
        Immediate { response: Option<Response<B>> },
    }
}

pin_project! {
    /// The response future of [`ServerDeadline`]: the handler's, or an
    /// answer of the layer's own (400 or 504).
    pub struct ServerResponseFuture<F, B> {
        #[pin]
        state: ServerState<F, B>,
    }
}

impl<F, B> ServerResponseFuture<F, B> {
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
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ServerStateProj::Inner { inner } => inner.poll(cx),
            ServerStateProj::Immediate { response } => Poll::Ready(Ok(response
                .take()
                .expect("ServerResponseFuture polled after completion"))),
        }
    }
}
