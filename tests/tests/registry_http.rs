//! The health endpoint end to end: a real axum server on loopback, a real
//! hyper client, every route and every error status, the SSE stream, and
//! the Prometheus text parsed back.
//!
//! These tests use a small breaker-like component of their own
//! (`Switch`), so they need nothing but the registry and the HTTP glue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use battlement::core::{
    BoxError, CircuitState, Component, ComponentHealth, ComponentKind, Control, ControlError,
    EventKind, EventSink, HealthStatus, MetricType, Name,
};
use battlement_http::{Authorization, HealthService};
use battlement_registry::Registry;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// A breaker-like component: open or closed, `Degraded` while open,
/// emitting a `StateChanged` event on each change. Supports `Reset`,
/// `Close` and `ForceOpen`; nothing else.
struct Switch {
    name: Name,
    open: AtomicBool,
    events: EventSink,
}

impl Switch {
    fn new(name: &str, events: EventSink) -> Arc<Switch> {
        Arc::new(Switch {
            name: Name::copied(name),
            open: AtomicBool::new(false),
            events,
        })
    }

    fn set_open(&self, open: bool, reason: &'static str) {
        let was = self.open.swap(open, Ordering::SeqCst);
        if was != open {
            let (from, to) = if open {
                (CircuitState::Closed, CircuitState::Open)
            } else {
                (CircuitState::Open, CircuitState::Closed)
            };
            self.events.emit(&self.name, || EventKind::StateChanged {
                from,
                to,
                reason: reason.into(),
            });
        }
    }
}

impl Component for Switch {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> ComponentKind {
        ComponentKind::Breaker
    }
    fn health(&self) -> ComponentHealth {
        let open = self.open.load(Ordering::SeqCst);
        let status = if open {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        ComponentHealth::new(status)
            .detail("state", if open { "open" } else { "closed" })
            .metric(
                "open",
                "1 while open.",
                MetricType::Gauge,
                f64::from(u8::from(open)),
            )
    }
    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::Reset | Control::Close => {
                self.set_open(false, "closed by hand");
                Ok(())
            }
            Control::ForceOpen => {
                self.set_open(true, "opened by hand");
                Ok(())
            }
            other => Err(ControlError::unsupported(&self.name, other)),
        }
    }
}

/// An always-unhealthy component, to see `503`.
struct Broken;

impl Component for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn kind(&self) -> ComponentKind {
        ComponentKind::Other("disk".into())
    }
    fn health(&self) -> ComponentHealth {
        ComponentHealth::new(HealthStatus::Unhealthy)
    }
}

async fn serve(svc: HealthService) -> SocketAddr {
    let app = axum::Router::new().nest_service("/ops", svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}/ops"),
        }
    }

    async fn send(&self, method: Method, path: &str, token: Option<&str>, body: &str) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let res = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .expect("a reply in time")
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, "").await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &str) -> Reply {
        self.send(Method::POST, path, token, body).await
    }
}

const TOKEN: &str = "t0ken";

#[tokio::test]
async fn every_route_and_every_error_status() {
    let registry = Registry::new();
    let switch = Switch::new("payments", registry.event_sink());
    registry.register(&switch).unwrap();
    let svc = ServiceBuilder::new()
        .layer(registry.layer("api").unwrap())
        .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    svc.clone().oneshot(1).await.unwrap();

    let http =
        Http::new(serve(HealthService::new(registry.clone()).with_bearer_token(TOKEN)).await);

    // GET /health: healthy, then degraded (still 200), then unhealthy (503).
    let r = http.get("/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    let j = r.json();
    assert_eq!(j["status"], "healthy");
    assert_eq!(j["summary"]["total"], 2);
    switch.set_open(true, "test");
    let j = http.get("/health/").await.json();
    assert_eq!(j["status"], "degraded");
    assert_eq!(j["summary"]["degraded"], 1);
    assert_eq!(j["by_kind"]["breaker"]["degraded"], 1);
    let broken = Arc::new(Broken);
    registry.register(&broken).unwrap();
    let r = http.get("/health").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["summary"]["unhealthy"], 1);
    drop(broken);
    assert_eq!(http.get("/health").await.status, 200);

    // GET /health/{name}
    let r = http.get("/health/api").await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["kind"], "instrument");
    assert_eq!(j["details"]["calls"], 1);
    assert_eq!(j["details"]["success_rate"], 1.0);
    let r = http.get("/health/payments").await;
    assert_eq!(r.json()["details"]["state"], "open");
    let r = http.get("/health/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    assert_eq!(http.get("/nowhere").await.status, 404);
    assert_eq!(http.get("/health/api/frobnicate").await.status, 404);

    // Wrong methods: 405 with Allow.
    let r = http.post("/health", Some(TOKEN), "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET, HEAD");
    assert_eq!(r.json()["error"], "method_not_allowed");
    let r = http.get("/health/payments/reset").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "POST");
    let r = http.send(Method::DELETE, "/metrics", None, "").await;
    assert_eq!(r.status, 405);

    // Controls: 401 without (or with a wrong) token.
    let r = http.post("/health/payments/reset", None, "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert_eq!(r.json()["error"], "unauthenticated");
    let r = http.post("/health/payments/reset", Some("wrong"), "").await;
    assert_eq!(r.status, 401);
    // Unknown component: 404.
    let r = http.post("/health/nope/reset", Some(TOKEN), "").await;
    assert_eq!(r.status, 404);
    // Bad bodies: 400 naming the problem.
    let r = http
        .post("/health/payments/level", Some(TOKEN), "{not json")
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{}",
        r.json()
    );
    let r = http
        .post("/health/payments/level", Some(TOKEN), r#"{"level":"loud"}"#)
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("unknown level `loud`")
    );
    let r = http.post("/health/payments/level", Some(TOKEN), "{}").await;
    assert_eq!(r.status, 400);
    // Over the 16 KiB cap: 413.
    let big = format!(r#"{{"level":"{}"}}"#, "x".repeat(64 * 1024));
    let r = http.post("/health/payments/level", Some(TOKEN), &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "payload_too_large");
    // A control the component does not support: 409.
    let r = http
        .post(
            "/health/payments/level",
            Some(TOKEN),
            r#"{"level":"severe"}"#,
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"], "unsupported");
    assert_eq!(
        http.post("/health/payments/disable", Some(TOKEN), "")
            .await
            .status,
        409
    );
    // A supported one: 200 with the component after it.
    let r = http.post("/health/payments/close", Some(TOKEN), "").await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["applied"], true);
    assert_eq!(j["health"]["details"]["state"], "closed");
    let r = http.post("/health/payments/open", Some(TOKEN), "").await;
    assert_eq!(r.json()["health"]["status"], "degraded");
    let r = http.post("/health/payments/reset", Some(TOKEN), "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["health"]["details"]["state"], "closed");
    // Percent-encoded names.
    let r = http.get("/health/p%61yments").await;
    assert_eq!(r.status, 200);
    assert_eq!(http.get("/health/%ff").await.status, 400);
}

#[tokio::test]
async fn controls_are_off_by_default_and_follow_a_custom_authorizer() {
    let registry = Registry::new();
    let switch = Switch::new("db", EventSink::none());
    registry.register(&switch).unwrap();

    let off = Http::new(serve(HealthService::new(registry.clone())).await);
    let r = off.post("/health/db/open", Some(TOKEN), "").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "forbidden");
    assert_eq!(r.json()["message"], "controls are disabled");
    assert_eq!(
        off.get("/health/db").await.json()["details"]["state"],
        "closed"
    );

    let custom = HealthService::new(registry.clone()).with_authorizer(|parts| {
        match parts.headers.get("x-operator").map(|v| v.as_bytes()) {
            None => Authorization::Unauthenticated,
            Some(b"alice") => Authorization::Granted,
            Some(_) => Authorization::Forbidden,
        }
    });
    let addr = serve(custom).await;
    let http = Http::new(addr);
    assert_eq!(http.post("/health/db/open", None, "").await.status, 401);
    let client = &http.client;
    let send = |who: &'static str| {
        let req = Request::post(format!("http://{addr}/ops/health/db/open"))
            .header("x-operator", who)
            .body(Full::new(Bytes::new()))
            .unwrap();
        client.request(req)
    };
    assert_eq!(send("mallory").await.unwrap().status(), 403);
    assert_eq!(send("alice").await.unwrap().status(), 200);
    assert!(switch.open.load(Ordering::SeqCst));
}

#[tokio::test]
async fn sse_delivers_a_state_transition() {
    let registry = Registry::new();
    let switch = Switch::new("payments", registry.event_sink());
    registry.register(&switch).unwrap();
    let addr = serve(HealthService::new(registry.clone())).await;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = Request::get(format!("http://{addr}/ops/health/events"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();

    // The stream is open (its first comment arrived): now trip the switch.
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.data_ref().unwrap().starts_with(b":"));
    switch.set_open(true, "failure rate 0.6 >= 0.5");

    let mut text = String::new();
    while !text.contains("\n\n") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
    }
    let mut lines = text.lines();
    // Numbered by the registry, so a reconnecting client can resume.
    assert_eq!(lines.next(), Some("id: 1"));
    assert_eq!(lines.next(), Some("event: state_changed"));
    let data: Value =
        serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(data["component"], "payments");
    assert_eq!(data["from"], "closed");
    assert_eq!(data["to"], "open");
    assert_eq!(data["reason"], "failure rate 0.6 >= 0.5");
}

#[tokio::test]
async fn metrics_parse_back() {
    let registry = Registry::new();
    let switch = Switch::new("payments", EventSink::none());
    registry.register(&switch).unwrap();
    switch.set_open(true, "test");
    let svc = ServiceBuilder::new()
        .layer(registry.layer("api").unwrap())
        .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    for i in 0..3 {
        svc.clone().oneshot(i).await.unwrap();
    }
    let http = Http::new(serve(HealthService::new(registry.clone())).await);
    let r = http.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = std::str::from_utf8(&r.body).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let find = |metric: &str, component: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get("component") == Some(component))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no {metric}{{component={component}}} in\n{text}"))
    };
    assert_eq!(find("battlement_breaker_open", "payments"), 1.0);
    assert_eq!(find("battlement_component_status", "payments"), 1.0);
    assert_eq!(find("battlement_instrument_calls_total", "api"), 3.0);
    assert_eq!(find("battlement_instrument_successes_total", "api"), 3.0);
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "battlement_instrument_latency_seconds"
                && matches!(s.value, prometheus_parse::Value::Histogram(_)))
    );
}
