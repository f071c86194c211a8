//! Synthetic HTTP responses, the registry's view of a chaos component,
//! and its controls through `HealthService`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use battlement_chaos::{Chaos, FailureKind, HttpFault, Injected, InjectedResponse, Phase};
use battlement_core::{BoxError, ComponentKind, Control, ControlError, HealthStatus};
use battlement_http::{HealthBody, HealthService};
use battlement_registry::Registry;
use http::{Request, Response, StatusCode};
use serde_json::Value;
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An HTTP service answering `200 ok` that counts its calls.
fn app() -> (
    impl Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = service_fn(move |_: Request<String>| {
        c.fetch_add(1, Relaxed);
        std::future::ready(Ok::<_, Infallible>(Response::new("ok".to_owned())))
    });
    (svc, calls)
}

fn get() -> Request<String> {
    Request::get("/").body(String::new()).unwrap()
}

fn answering(fault: HttpFault) -> Chaos {
    Chaos::builder("api")
        .phase(Phase::new("answering", secs(60)).respond(1.0, fault))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_429_carries_retry_after_and_the_inner_service_is_not_called() {
    let cases = [
        (
            HttpFault::TooManyRequests {
                retry_after: Duration::from_millis(1_500),
            },
            429,
            Some("2"),
        ),
        (
            HttpFault::ServiceUnavailable {
                retry_after: Some(secs(30)),
            },
            503,
            Some("30"),
        ),
        (HttpFault::UNAVAILABLE, 503, None),
        (HttpFault::InternalServerError, 500, None),
    ];
    for (fault, status, retry_after) in cases {
        let chaos = answering(fault);
        let (inner, calls) = app();
        let res = chaos
            .http_layer()
            .layer(inner)
            .oneshot(get())
            .await
            .unwrap();
        assert_eq!(res.status(), status);
        let header = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap());
        assert_eq!(header, retry_after, "{fault:?}");
        assert_eq!(res.body(), "");
        let marker = res.extensions().get::<InjectedResponse>().unwrap();
        assert_eq!((&*marker.chaos, &*marker.phase), ("api", "answering"));
        assert_eq!(marker.fault, fault);
        assert_eq!(calls.load(Relaxed), 0);
        assert_eq!(chaos.stats().responses, 1);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bodies_come_from_body_fn_and_plain_layers_get_errors() {
    let chaos = answering(HttpFault::TooManyRequests {
        retry_after: secs(1),
    });
    let (inner, _) = app();
    let res = chaos
        .http_layer()
        .body_fn(|fault: &HttpFault| format!("injected {}", fault.status()))
        .layer(inner.clone())
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.body(), "injected 429");

    // The plain layer on the same HTTP service: an error of the fault's kind.
    let err = chaos.layer().layer(inner).oneshot(get()).await.unwrap_err();
    let injected = err.downcast_ref::<Injected>().unwrap();
    assert_eq!(injected.kind, FailureKind::RateLimited);
    let stats = chaos.stats();
    assert_eq!((stats.responses, stats.errors), (1, 1));
}

fn rehearsal() -> Chaos {
    Chaos::builder("upstream")
        .seed(1)
        .phase(Phase::healthy(secs(5)))
        .phase(Phase::new("outage", secs(10)).error_ratio(1.0, FailureKind::Unavailable))
        .build()
        .unwrap()
}

async fn call(svc: &mut (impl Service<u64, Response = u64, Error = BoxError> + Clone)) -> bool {
    svc.ready().await.unwrap().call(1).await.is_ok()
}

fn echo() -> impl Service<u64, Response = u64, Error = BoxError> + Clone {
    service_fn(|x: u64| std::future::ready(Ok::<_, BoxError>(x)))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_registry_shows_the_phase_change_and_the_counts() {
    let registry = Registry::new();
    let chaos = rehearsal();
    registry.register(&chaos).unwrap();
    let mut svc = chaos.layer().layer(echo());
    assert!(call(&mut svc).await);

    let report = registry.get("upstream").unwrap();
    assert_eq!(report.kind, ComponentKind::Chaos);
    assert_eq!(report.status, HealthStatus::Healthy);
    let d = &report.details;
    assert_eq!(
        (&d["phase"], &d["phase_index"]),
        (&Value::from("healthy"), &Value::from(0))
    );
    assert_eq!(d["phase_remaining_ms"], 5_000);
    assert_eq!(
        (&d["enabled"], &d["seed"]),
        (&Value::from(true), &Value::from(1))
    );

    advance(secs(5)).await;
    assert!(!call(&mut svc).await);
    assert!(!call(&mut svc).await);
    let report = registry.get("upstream").unwrap();
    assert_eq!(report.status, HealthStatus::Degraded, "a rehearsal is on");
    let d = &report.details;
    assert_eq!(d["phase"], "outage");
    assert_eq!(d["phase_index"], 1);
    assert_eq!(d["injected"]["errors"], 2);
    assert_eq!(d["injected"]["errors_by_kind"]["unavailable"], 2);
    assert_eq!(d["passed"], 1);
    let text = registry.prometheus_text();
    assert!(
        text.contains("battlement_chaos_injected_total{") && text.contains("upstream"),
        "{text}"
    );

    advance(secs(10)).await;
    let report = registry.get("upstream").unwrap();
    assert_eq!(report.status, HealthStatus::Healthy);
    assert_eq!(
        (&report.details["phase"], &report.details["finished"]),
        (&Value::Null, &Value::from(true))
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn controls_reset_disable_and_enable_and_refuse_the_rest() {
    let registry = Registry::new();
    let chaos = rehearsal();
    registry.register(&chaos).unwrap();
    advance(secs(7)).await;
    registry.control("upstream", &Control::Reset).unwrap();
    assert_eq!(chaos.current().unwrap().index, 0, "the schedule restarted");
    assert_eq!(chaos.elapsed(), Duration::ZERO);
    registry.control("upstream", &Control::Disable).unwrap();
    assert!(!chaos.is_enabled());
    registry.control("upstream", &Control::Enable).unwrap();
    assert!(chaos.is_enabled());
    assert!(matches!(
        registry.control("upstream", &Control::ForceOpen),
        Err(ControlError::Unsupported { .. })
    ));
    let off = Chaos::off("off");
    registry.register(&off).unwrap();
    assert!(matches!(
        registry.control("off", &Control::Enable),
        Err(ControlError::Refused { .. })
    ));
}

async fn post(svc: &HealthService, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::post(path);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let res = svc
        .clone()
        .oneshot(req.body(String::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = HealthBody::into_bytes_now(body);
    (
        parts.status,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn health_service_controls_turn_injection_off_and_on() {
    let registry = Registry::new();
    let chaos = rehearsal();
    registry.register(&chaos).unwrap();
    let health = HealthService::new(registry.clone()).with_bearer_token("ops");
    let mut svc = chaos.layer().layer(echo());
    advance(secs(5)).await;
    assert!(!call(&mut svc).await, "the outage injects");

    // Without credentials nothing changes.
    let (status, _) = post(&health, "/health/upstream/disable", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!call(&mut svc).await);

    let (status, body) = post(&health, "/health/upstream/disable", Some("ops")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["control"], "disable");
    assert_eq!(body["health"]["details"]["enabled"], false);
    assert!(call(&mut svc).await, "disabled: passes through");

    let (status, body) = post(&health, "/health/upstream/enable", Some("ops")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["health"]["details"]["phase"], "outage");
    assert!(!call(&mut svc).await, "enabled again: injects");

    let (status, body) = post(&health, "/health/upstream/reset", Some("ops")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["health"]["details"]["phase"], "healthy");
    assert!(call(&mut svc).await, "the schedule restarted");

    let (status, _) = post(&health, "/health/upstream/open", Some("ops")).await;
    assert_eq!(status, StatusCode::CONFLICT, "unsupported");
    assert_eq!(chaos.stats().errors, 3);
}
