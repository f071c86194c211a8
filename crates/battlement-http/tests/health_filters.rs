//! `GET /health` filters, `POST /health/reset` and the `metrics_only`
//! control route.

use std::sync::{Arc, Mutex};

use battlement_core::{
    Component, ComponentHealth, ComponentKind, Control, ControlError, HealthStatus,
};
use battlement_http::HealthService;
use battlement_registry::Registry;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A component of a given kind and status that records the controls
/// applied to it; `reset_supported` false refuses `Reset`.
struct Part {
    name: &'static str,
    kind: ComponentKind,
    status: HealthStatus,
    reset_supported: bool,
    applied: Mutex<Vec<&'static str>>,
}

fn part(name: &'static str, kind: ComponentKind, status: HealthStatus) -> Arc<Part> {
    Arc::new(Part {
        name,
        kind,
        status,
        reset_supported: true,
        applied: Mutex::default(),
    })
}

impl Component for Part {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> ComponentKind {
        self.kind.clone()
    }
    fn health(&self) -> ComponentHealth {
        ComponentHealth::new(self.status)
    }
    fn control(&self, control: &Control) -> Result<(), ControlError> {
        if *control == Control::Reset && !self.reset_supported {
            return Err(ControlError::unsupported(self.name, control));
        }
        self.applied.lock().unwrap().push(control.as_str());
        Ok(())
    }
}

async fn send(svc: &HealthService, method: Method, uri: &str, token: bool) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if token {
        req = req.header("authorization", "Bearer t0ken");
    }
    let res = svc
        .clone()
        .oneshot(req.body(String::new()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

fn names(report: &Value) -> Vec<&str> {
    report["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn health_filters_by_kind_and_status_and_refuses_bad_values() {
    let registry = Registry::new();
    let parts = [
        part("a/breaker", ComponentKind::Breaker, HealthStatus::Degraded),
        part("b/breaker", ComponentKind::Breaker, HealthStatus::Healthy),
        part("a/gate", ComponentKind::Gate, HealthStatus::Degraded),
        part(
            "disk",
            ComponentKind::Other("disk".into()),
            HealthStatus::Unhealthy,
        ),
    ];
    for p in &parts {
        registry.register(p).unwrap();
    }
    let svc = HealthService::new(registry);
    let (status, all) = send(&svc, Method::GET, "/health", false).await;
    assert_eq!(status, 503);
    assert_eq!(names(&all).len(), 4);

    let (status, r) = send(&svc, Method::GET, "/health?kind=breaker", false).await;
    // The system's status and counts are kept: a filter hides nothing.
    assert_eq!(
        (status, &r["status"]),
        (StatusCode::SERVICE_UNAVAILABLE, &"unhealthy".into())
    );
    assert_eq!(r["summary"]["total"], 4);
    assert_eq!(names(&r), ["a/breaker", "b/breaker"]);
    let (_, r) = send(&svc, Method::GET, "/health?status=degraded", false).await;
    assert_eq!(names(&r), ["a/breaker", "a/gate"]);
    let (_, r) = send(
        &svc,
        Method::GET,
        "/health?kind=breaker&status=degraded",
        false,
    )
    .await;
    assert_eq!(names(&r), ["a/breaker"]);
    let (_, r) = send(&svc, Method::GET, "/health?kind=disk", false).await;
    assert_eq!(names(&r), ["disk"]);
    let (_, r) = send(&svc, Method::GET, "/health?kind=fan_out", false).await;
    assert!(names(&r).is_empty());

    for bad in [
        "/health?status=sick",
        "/health?kind=Breaker",
        "/health?kind=",
        "/health?kind=a&kind=b",
        "/health?colour=red",
        "/health?kind=%zz",
    ] {
        let (status, r) = send(&svc, Method::GET, bad, false).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(r["error"], "bad_query", "{bad}");
        assert!(r["message"].is_string(), "{bad}");
    }
}

#[tokio::test]
async fn post_health_reset_resets_every_component_with_authorization() {
    let registry = Registry::new();
    let a = part("a", ComponentKind::Breaker, HealthStatus::Healthy);
    let b = part("b", ComponentKind::Gate, HealthStatus::Healthy);
    let c = Arc::new(Part {
        reset_supported: false,
        ..Arc::into_inner(part("c", ComponentKind::FanOut, HealthStatus::Healthy)).unwrap()
    });
    for p in [&a, &b, &c] {
        registry.register(p).unwrap();
    }
    let off = HealthService::new(registry.clone());
    assert_eq!(send(&off, Method::POST, "/health/reset", true).await.0, 403);
    let svc = HealthService::new(registry).with_bearer_token("t0ken");
    let (status, r) = send(&svc, Method::POST, "/health/reset", false).await;
    assert_eq!(
        (status, &r["error"]),
        (StatusCode::UNAUTHORIZED, &"unauthenticated".into())
    );
    assert!(a.applied.lock().unwrap().is_empty());

    let (status, r) = send(&svc, Method::POST, "/health/reset", true).await;
    assert_eq!(status, 200);
    assert_eq!(r["control"], "reset");
    assert_eq!(r["applied"], serde_json::json!(["a", "b"]));
    assert_eq!(r["unsupported"], serde_json::json!(["c"]));
    assert_eq!(r["refused"], serde_json::json!([]));
    assert_eq!(*a.applied.lock().unwrap(), ["reset"]);
    assert_eq!(*b.applied.lock().unwrap(), ["reset"]);

    let res = svc
        .clone()
        .oneshot(Request::put("/health/reset").body(String::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD, POST");

    // metrics_only is a control route like the others.
    let (status, r) = send(&svc, Method::POST, "/health/a/metrics_only", true).await;
    assert_eq!(status, 200);
    assert_eq!(r["control"], "metrics_only");
    assert_eq!(r["applied"], true);
    assert_eq!(r["health"]["name"], "a");
    assert_eq!(*a.applied.lock().unwrap(), ["reset", "metrics_only"]);
}
