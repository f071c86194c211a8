//! The two front services: the same axum routes, calling the upstream
//! through a full `Policy::http` (protected) or through a plain client
//! with a generous timeout (unprotected).
//!
//! | route | priority | upstream call |
//! |---|---|---|
//! | `GET /api/orders/{id}` | high | `GET /orders/{id}` |
//! | `GET /api/recommendations?user=N` | low: shed first | `GET /recommendations?user=N` |
//!
//! The protected client, outermost first:
//!
//! 1. `ErrorResponseLayer`: every refusal becomes a response (`503` with
//!    `Retry-After` for a shed request or an open circuit, `504` for the
//!    deadline, `502` for exhausted retries).
//! 2. `Policy::http("upstream")`: instrument, fallback to the last good
//!    answer per URL, a gate whose governor raises the level to
//!    `moderate` (shedding low priority) while the breaker is open or
//!    the calls through it fail, a 500 ms total, 3 attempts with backoff
//!    and a retry budget, a breaker on 8 failed attempts in a row or half the attempts of the last
//!    second (a latency spike that slows a quarter of the calls does not
//!    trip it; an outage does, within one attempt timeout), a 150 ms attempt
//!    timeout.
//! 3. The upstream's answer read whole into a [`Reply`], a small `Clone`
//!    type the fallback's cache can keep (an `http::Response` is not
//!    `Clone`).
//! 4. A hyper-util client.
//!
//! Every answer that came from the upstream (fresh or from the cache)
//! carries `x-demo-from: upstream`, so a `503` without it is a refusal of
//! the front's own layers; the fallback marks what it served with
//! `x-battlement-fallback: <source>`.

use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use battlement::AsComponent;
use battlement::breaker::Breaker;
use battlement::fallback::CacheConfig;
use battlement::gate::{Gate, Governor, OpenBreakers, Rule};
use battlement::http::{ErrorResponseLayer, HealthService, HttpClassifier};
use battlement::prelude::*;
use battlement::retry::RetryBudget;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

use super::upstream::{SIDE_HEADER, Side};
use crate::client::http_client;

/// The header on every answer that came from the upstream.
pub const FROM_HEADER: &str = "x-demo-from";
/// The header the fallback marks its answers with.
pub const FALLBACK_HEADER: &str = "x-battlement-fallback";
/// How long the unprotected client waits for an answer.
pub const PLAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The protected policy's total budget per request.
pub const TOTAL: Duration = Duration::from_millis(500);
/// The protected policy's budget per attempt.
pub const ATTEMPT: Duration = Duration::from_millis(150);

/// A front's way to the upstream: any error already turned into a
/// response.
pub type UpstreamClient = BoxCloneSyncService<Request<Full<Bytes>>, Response<Body>, Infallible>;

/// The upstream's answer, read whole: small and `Clone`, so the
/// fallback's last-known-good cache can keep it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers a classifier and the caller need: `Retry-After` and
    /// `Content-Type`.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The fallback source that served it, when one did.
    pub fallback: Option<String>,
}

impl Reply {
    /// Reads `res` whole.
    ///
    /// # Errors
    ///
    /// When the body fails to arrive.
    pub async fn read<B>(res: Response<B>) -> Result<Reply, BoxError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(Into::into)?.to_bytes();
        let mut headers = HeaderMap::new();
        for name in [header::RETRY_AFTER, header::CONTENT_TYPE] {
            if let Some(v) = parts.headers.get(&name) {
                headers.insert(name, v.clone());
            }
        }
        Ok(Reply {
            status: parts.status,
            headers,
            body,
            fallback: None,
        })
    }

    /// The front's answer: the same status, headers and body, marked as
    /// from the upstream (and by the fallback's source, when it served).
    pub fn into_response(self) -> Response<Body> {
        let mut res = Response::new(Body::from(self.body));
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers;
        res.headers_mut()
            .insert(FROM_HEADER, HeaderValue::from_static("upstream"));
        if let Some(source) = self.fallback
            && let Ok(v) = HeaderValue::from_str(&source)
        {
            res.headers_mut().insert(FALLBACK_HEADER, v);
        }
        res
    }
}

/// Judges a [`Reply`] as `HttpClassifier` judges a response (5xx, 408,
/// 429 are failures, `Retry-After` read) and an error as it judges one.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplyClassifier;

struct ErrRef<'a>(&'a BoxError);

impl battlement::AsDynError for ErrRef<'_> {
    fn as_dyn_error(&self) -> &(dyn Error + 'static) {
        &**self.0
    }
}

impl Classify<Reply, BoxError> for ReplyClassifier {
    fn classify(&self, result: &Result<Reply, BoxError>) -> Outcome {
        let http = HttpClassifier::new();
        match result {
            Ok(reply) => http.classify_status(reply.status, &reply.headers),
            Err(e) => http.classify(&Err::<Response<()>, _>(ErrRef(e))),
        }
    }
}

/// A front service and what the demo watches of it.
#[derive(Debug)]
pub struct Front {
    /// The router (`/api/...`, and `/ops/...` on the protected side).
    pub router: Router,
    /// Which side it is.
    pub side: Side,
}

/// The protected front and its parts.
#[derive(Debug)]
pub struct Protected {
    /// The router.
    pub router: Router,
    /// Every component of the policy, and the chaos.
    pub registry: Registry,
    /// The policy's breaker.
    pub breaker: Breaker,
    /// The policy's gate.
    pub gate: Gate,
    /// The policy's retry budget.
    pub budget: RetryBudget,
    /// The gate's governor, to take and spawn once
    /// (`tokio::spawn(governor.run())`).
    pub governor: Option<Governor>,
}

impl Protected {
    /// The number `key` in the details of component `name`, 0 when
    /// absent.
    pub fn detail(&self, name: &str, key: &str) -> u64 {
        self.registry
            .get(name)
            .and_then(|r| r.details.get(key).and_then(serde_json::Value::as_u64))
            .unwrap_or(0)
    }

    /// Requests the gate shed so far, every priority.
    pub fn shed(&self) -> u64 {
        Priority::ALL.iter().map(|p| self.gate.shed(*p)).sum()
    }
}

#[derive(Clone)]
struct FrontState {
    client: UpstreamClient,
    base: String,
    side: Side,
}

impl FrontState {
    async fn call(&self, path: &str, priority: Priority) -> Response<Body> {
        let req = Request::get(format!("{}{path}", self.base))
            .header(SIDE_HEADER, self.side.as_str())
            .extension(priority)
            .body(Full::default());
        let Ok(req) = req else {
            let mut res = Response::new(Body::from("bad request"));
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return res;
        };
        match self.client.clone().oneshot(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        }
    }
}

async fn order(State(s): State<FrontState>, Path(id): Path<u32>) -> Response<Body> {
    s.call(&format!("/orders/{id}"), Priority::High).await
}

async fn recommendations(State(s): State<FrontState>, RawQuery(q): RawQuery) -> Response<Body> {
    let path = match q {
        Some(q) => format!("/recommendations?{q}"),
        None => "/recommendations".to_owned(),
    };
    s.call(&path, Priority::Low).await
}

fn routes(client: UpstreamClient, upstream: SocketAddr, side: Side) -> Router {
    Router::new()
        .route("/api/orders/{id}", get(order))
        .route("/api/recommendations", get(recommendations))
        .with_state(FrontState {
            client,
            base: format!("http://{upstream}"),
            side,
        })
}

/// How long the breaker stays open, and the gate's calm before each step
/// down, for a run of `duration`: short enough that both recover within
/// the schedule's last phase.
pub fn recovery_times(duration: Duration) -> (Duration, Duration) {
    let open = duration
        .mul_f64(0.03)
        .clamp(Duration::from_millis(200), Duration::from_secs(1));
    let dwell = duration
        .mul_f64(0.02)
        .clamp(Duration::from_millis(100), Duration::from_millis(800));
    (open, dwell)
}

/// The protected front: its routes call `upstream` through
/// `Policy::http("upstream")`; `/ops/health` and `/ops/metrics` show its registry
/// (the chaos included).
///
/// # Errors
///
/// When a component is refused (none is, with these settings).
pub fn protected(
    upstream: SocketAddr,
    chaos: &battlement::chaos::Chaos,
    duration: Duration,
) -> Result<Protected, BoxError> {
    let registry = Registry::new();
    registry.register(chaos)?;
    let (open, dwell) = recovery_times(duration);
    let policy = Policy::http("upstream")
        .classifier(ReplyClassifier)
        .total(TOTAL)
        .attempt_timeout(ATTEMPT)
        .retry(|r| {
            r.max_attempts(3)
                .backoff(Backoff::exponential(Duration::from_millis(25)))
        })
        .allow(Check::RetriesFitTotal)
        .breaker(move |b| {
            b.consecutive_failures(8)
                .failure_rate(0.5)
                .time_window(Duration::from_secs(1), 10)
                .minimum_calls(20)
                .open_duration(open)
        })
        .gate(|g| g)
        .fallback(move |f| {
            f.key(|req: &Request<Full<Bytes>>| req.uri().path_and_query().map(|p| p.to_string()))
                .cache(
                    CacheConfig::new()
                        .fresh_for(Duration::from_secs(1))
                        .stale_if_error(duration.saturating_mul(2))
                        .max_entries(256),
                )
                .on_fallback(|reply: &mut Reply, how| {
                    reply.fallback = Some(how.source.as_str().to_owned());
                })
        })
        .registry(&registry)
        .build()?;

    // The policy's parts, kept as handles (the policy's own type is long
    // and names every part's parameters).
    let gate = policy.gate().ok_or("the policy has a gate")?.clone();
    let breaker = policy.breaker().ok_or("the policy has a breaker")?.clone();
    let budget = policy.budget().ok_or("the policy has a budget")?.clone();
    let governor = gate
        .governor()
        .interval(Duration::from_millis(100))
        .min_dwell(dwell)
        .rule(
            Rule::new(OpenBreakers::new(vec![breaker.as_component()])).step(
                Level::Moderate,
                1.0,
                0.5,
            ),
        )
        .rule(
            Rule::new(gate.error_rate_signal().min_calls(10))
                .step(Level::Minimal, 0.25, 0.1)
                .step(Level::Moderate, 0.5, 0.2),
        )
        .build()?;

    let client: UpstreamClient = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(|res: Response<battlement::http::ResponseBody<Body>>| res.map(Body::new))
            .layer(ErrorResponseLayer::new())
            .map_response(Reply::into_response)
            .layer(policy)
            .and_then(Reply::read)
            .map_err(BoxError::from)
            .service(http_client()),
    );
    let router = routes(client, upstream, Side::Protected)
        .nest_service("/ops", HealthService::new(registry.clone()));
    Ok(Protected {
        router,
        registry,
        breaker,
        gate,
        budget,
        governor: Some(governor),
    })
}

/// The unprotected front: the same routes over a plain client that waits
/// up to [`PLAIN_TIMEOUT`]; a failed call is a `502`, a timeout a `504`.
pub fn unprotected(upstream: SocketAddr) -> Front {
    let client = http_client();
    let plain = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let client = client.clone();
        async move {
            let call = async {
                let res = client.request(req).await?;
                Reply::read(res).await
            };
            let res = match tokio::time::timeout(PLAIN_TIMEOUT, call).await {
                Ok(Ok(reply)) => reply.into_response(),
                Ok(Err(e)) => status(StatusCode::BAD_GATEWAY, e.to_string()),
                Err(_) => status(StatusCode::GATEWAY_TIMEOUT, "upstream timed out".into()),
            };
            Ok::<_, Infallible>(res)
        }
    });
    Front {
        router: routes(BoxCloneSyncService::new(plain), upstream, Side::Unprotected),
        side: Side::Unprotected,
    }
}

fn status(status: StatusCode, message: String) -> Response<Body> {
    let mut res = Response::new(Body::from(message));
    *res.status_mut() = status;
    res
}
