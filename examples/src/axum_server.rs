//! The `axum_server` example: an axum service with a different `Policy`
//! on each of two routes (`route_layer`), the health endpoint mounted
//! under `/ops`, priorities read from an `x-priority` header, and every
//! refusal of a layer answered as an HTTP response (no `HandleErrorLayer`).
//!
//! - `GET /orders/{id}`: policy `orders`: a 2 s budget, a breaker that
//!   opens after 3 failed calls in a row (an HTTP 5xx is a failure: the
//!   policy judges responses with `HttpClassifier`) and probes again
//!   after `open`, a gate that sheds `x-priority: low` first, and a
//!   fallback that answers an open circuit with the order's last good
//!   answer (a last-known-good cache of its bytes: an axum `Response` is
//!   not `Clone`), or a placeholder for an order it never served, each
//!   marked `x-battlement-fallback: cache` (or `cache_stale`) or `value`.
//! - `GET /reports`: policy `reports`: a 500 ms budget and no breaker.
//! - `/ops/health`, `/ops/metrics`: the registry over HTTP; controls are
//!   on with a bearer token.
//!
//! A server does not retry its own handler (the caller does, if it may):
//! both policies are `without_retry`. Their handlers run inside the
//! deadline's scope, so both keep it there only
//! (`carry_deadline(Carry::IfCarried)`): a request gets no `Deadline`
//! extension entry, which would cost it an allocation or two. Both are
//! made once for the life of the process and `leak`ed: axum's `Router`
//! calls a clone of a route's service per request, and a leaked policy's
//! clone counts no reference (see `battlement::Leak`; the HTTP bench
//! measures the difference).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use battlement::deadline::Carry;
use battlement::fallback::HttpCacheConfig;
use battlement::gate::HeaderPriority;
use battlement::http::{ErrorResponseLayer, HealthService};
use battlement::prelude::*;
use tower::ServiceBuilder;

/// The bearer token the example's controls take.
pub const OPS_TOKEN: &str = "example-token";

/// What the example's backend does: fail on demand, count what it served.
#[derive(Debug, Default)]
pub struct Backend {
    /// When set, `/orders` answers 500.
    pub failing: AtomicBool,
    /// Calls that reached the orders handler.
    pub orders_calls: AtomicU32,
    /// Calls that reached the reports handler.
    pub reports_calls: AtomicU32,
}

/// The app and the handles the example and its test look at.
#[derive(Debug)]
pub struct App {
    /// The router, ready to serve.
    pub router: Router,
    /// The registry every component reports into.
    pub registry: Registry,
    /// The backend's switches and counts.
    pub backend: Arc<Backend>,
    /// The `orders` policy (its breaker and gate).
    pub orders: Policy<
        HttpClassifier,
        battlement::retry::Never,
        GateLayer<HeaderPriority, HttpClassifier>,
        OrdersFallback,
        battlement::registry::InstrumentLayer<HttpClassifier>,
    >,
}

/// The fallback layer of the `orders` policy, keyed by the request's path.
pub type OrdersFallback = battlement::fallback::FallbackLayer<
    Request<Body>,
    Response<Body>,
    String,
    battlement::FallbackClassifier<HttpClassifier>,
>;

async fn order(State(backend): State<Arc<Backend>>, Path(id): Path<u32>) -> Response<Body> {
    backend.orders_calls.fetch_add(1, Ordering::SeqCst);
    if backend.failing.load(Ordering::SeqCst) {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("database down"))
            .unwrap_or_default();
    }
    Response::new(Body::from(format!("order {id}")))
}

async fn reports(State(backend): State<Arc<Backend>>) -> &'static str {
    backend.reports_calls.fetch_add(1, Ordering::SeqCst);
    "report"
}

/// Builds the app; `open` is how long the orders breaker stays open.
///
/// # Errors
///
/// When a policy is refused (it is not, with these settings).
pub fn app(open: Duration) -> Result<App, BoxError> {
    let registry = Registry::new();
    let backend = Arc::new(Backend::default());

    let orders = Policy::http("orders")
        .without_retry()
        .carry_deadline(Carry::IfCarried)
        .total(Duration::from_secs(2))
        .attempt_timeout(Duration::from_secs(1))
        .breaker(move |b| {
            b.consecutive_failures(3)
                .no_failure_rate()
                .open_duration(open)
        })
        .gate(|g| g)
        .priority(HeaderPriority::new())
        .fallback(|f| {
            f.trigger_on_kinds([FailureKind::Rejected])
                // The last good answer of each order: its status, headers
                // and body bytes, rebuilt per use (an axum `Response` is
                // not `Clone`).
                .key(|req: &Request<Body>| Some(req.uri().path().to_owned()))
                .http_cache(
                    HttpCacheConfig::new()
                        .fresh_for(Duration::from_secs(60))
                        .stale_if_error(Duration::from_secs(600))
                        .max_entries(10_000)
                        .max_body_bytes(64 << 10),
                )
                // An order never served: a placeholder, built per use.
                .value_fn(|_| Ok(Response::new(Body::from("order (unavailable)"))))
                .http_header()
        })
        .registry(&registry)
        .build()?
        .leak();
    let reports_policy = Policy::http("reports")
        .without_retry()
        .carry_deadline(Carry::IfCarried)
        .total(Duration::from_millis(500))
        .attempt_timeout(Duration::from_millis(500))
        .without_breaker()
        .registry(&registry)
        .build()?
        .leak();

    let health = HealthService::new(registry.clone()).with_bearer_token(OPS_TOKEN);
    let router = Router::new()
        .route("/orders/{id}", get(order))
        .route_layer(
            ServiceBuilder::new()
                .layer(ErrorResponseLayer::new())
                .layer(orders.clone()),
        )
        .route(
            "/reports",
            get(reports).route_layer(
                ServiceBuilder::new()
                    .layer(ErrorResponseLayer::new())
                    .layer(reports_policy),
            ),
        )
        .nest_service("/ops", health)
        .with_state(backend.clone());
    Ok(App {
        router,
        registry,
        backend,
        orders,
    })
}

/// How the tour brings the breaker back: by waiting out its open
/// duration (a probe then closes it), or through the `close` control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recover {
    /// Wait `open`, then let a probe through.
    Wait(Duration),
    /// `POST /ops/health/orders/breaker/close`.
    Control,
}

/// One request of the tour and its answer.
#[derive(Debug, Clone)]
pub struct Step {
    /// What the step shows.
    pub what: &'static str,
    /// The request line.
    pub request: String,
    /// The answer.
    pub answer: crate::client::Answer,
}

/// Walks the app served at `addr` through a failure and its recovery:
/// healthy calls, a failing database that trips the breaker, the
/// fallback answering the open circuit, the gate shedding low priority
/// first, the recovery, and the health report.
///
/// # Errors
///
/// When a request gets no answer.
pub async fn tour(
    addr: std::net::SocketAddr,
    app: &App,
    recover: Recover,
) -> Result<Vec<Step>, String> {
    use crate::client::{get, http_client, post, send};

    let client = http_client();
    let url = |path: &str| format!("http://{addr}{path}");
    let auth = format!("Bearer {OPS_TOKEN}");
    let mut steps = Vec::new();
    macro_rules! step {
        ($what:expr, $line:expr, $req:expr) => {{
            let answer = send(&client, $req).await?;
            steps.push(Step {
                what: $what,
                request: $line.to_string(),
                answer,
            });
        }};
    }

    step!(
        "a healthy order",
        "GET /orders/1",
        get(&url("/orders/1"), &[])
    );
    step!("a report", "GET /reports", get(&url("/reports"), &[]));
    app.backend.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        step!(
            "the database fails: a 500 is a failure for the breaker",
            "GET /orders/2",
            get(&url("/orders/2"), &[])
        );
    }
    step!(
        "the breaker is open: order 1 answers its last good body, marked cache",
        "GET /orders/1",
        get(&url("/orders/1"), &[])
    );
    step!(
        "an operator raises the gate to severe",
        "POST /ops/health/orders/gate/level",
        post(
            &url("/ops/health/orders/gate/level"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json")
            ],
            r#"{"level": "severe"}"#,
        )
    );
    step!(
        "low priority is shed first: 503 with Retry-After",
        "GET /orders/4 (x-priority: low)",
        get(&url("/orders/4"), &[("x-priority", "low")])
    );
    step!(
        "critical work still goes through (to the fallback's placeholder: order 5 was never served)",
        "GET /orders/5 (x-priority: critical)",
        get(&url("/orders/5"), &[("x-priority", "critical")])
    );
    step!(
        "the operator releases the gate",
        "POST /ops/health/orders/gate/level",
        post(
            &url("/ops/health/orders/gate/level"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json")
            ],
            r#"{"level": "normal"}"#,
        )
    );
    app.backend.failing.store(false, Ordering::SeqCst);
    match recover {
        Recover::Wait(open) => tokio::time::sleep(open).await,
        Recover::Control => step!(
            "the operator closes the breaker",
            "POST /ops/health/orders/breaker/close",
            post(
                &url("/ops/health/orders/breaker/close"),
                &[("authorization", &auth)],
                ""
            )
        ),
    }
    step!(
        "the database is back: the probe succeeds and closes the breaker",
        "GET /orders/6",
        get(&url("/orders/6"), &[])
    );
    step!(
        "the health report of every component",
        "GET /ops/health",
        get(&url("/ops/health"), &[])
    );
    Ok(steps)
}
