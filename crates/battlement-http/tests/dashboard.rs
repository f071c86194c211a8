//! `GET /health/dashboard`: the page's headers, that it is self-contained
//! (relative URLs only, nothing external), that its control buttons follow
//! the service's controls, and that a component cannot shadow it.

use std::time::Duration;

use battlement_breaker::Breaker;
use battlement_http::HealthService;
use battlement_registry::Registry;
use http::{Method, Request, Response, StatusCode};
use tower::ServiceExt;

async fn get(svc: HealthService, method: Method, path: &str) -> (Response<()>, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(String::new())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let text = String::from_utf8(body.into_bytes_now().to_vec()).unwrap();
    (Response::from_parts(parts, ()), text)
}

async fn page(svc: HealthService) -> String {
    let (res, body) = get(svc, Method::GET, "/health/dashboard").await;
    assert_eq!(res.status(), StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn serves_html_with_a_strict_content_security_policy() {
    let (res, body) = get(
        HealthService::new(Registry::new()),
        Method::GET,
        "/health/dashboard",
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'unsafe-inline'",
        "style-src 'unsafe-inline'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp} lacks {directive}");
    }
    assert!(!csp.contains("http"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(body.starts_with("<!doctype html>"), "{}", &body[..40]);
    assert!(body.trim_end().ends_with("</html>"));

    // HEAD as GET; any other method is refused.
    let (res, _) = get(
        HealthService::new(Registry::new()),
        Method::HEAD,
        "/health/dashboard",
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (res, _) = get(
        HealthService::new(Registry::new()),
        Method::POST,
        "/health/dashboard",
    )
    .await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn the_page_is_self_contained_and_uses_relative_urls() {
    let body = page(HealthService::new(Registry::new())).await;
    let lower = body.to_ascii_lowercase();
    for banned in [
        "http://",
        "https://",
        "<script src",
        " src=",
        " href=",
        "<link",
        "@import",
        "url(",
        "<iframe",
        "<img",
        "websocket",
    ] {
        assert!(!lower.contains(banned), "the page contains `{banned}`");
    }
    // One inline script, no external one.
    assert_eq!(lower.matches("<script").count(), 1);
    assert!(lower.contains("<script>\n"));
    // What it talks to: the report, the stream and the controls, all
    // relative to the page's own path (so under any mount prefix).
    assert!(body.contains("location.pathname"));
    assert!(body.contains(r#"new EventSource(base + "events")"#));
    assert!(body.contains("fetch(base,"));
    assert!(body.contains(r#"authorization = "Bearer " + token"#));
    assert!(body.contains(r#"type="password""#));
}

#[tokio::test]
async fn control_buttons_follow_the_services_controls() {
    let off = page(HealthService::new(Registry::new())).await;
    assert!(off.contains(r#"<body data-controls="false">"#));
    let on = page(HealthService::new(Registry::new()).with_bearer_token("ops")).await;
    assert!(on.contains(r#"<body data-controls="true">"#));
    // A blank token leaves controls off, and so the buttons.
    let blank = page(HealthService::new(Registry::new()).with_bearer_token("  ")).await;
    assert!(blank.contains(r#"<body data-controls="false">"#));
    let custom = page(
        HealthService::new(Registry::new())
            .with_authorizer(|_| battlement_http::Authorization::Forbidden),
    )
    .await;
    assert!(custom.contains(r#"<body data-controls="true">"#));
}

#[tokio::test]
async fn a_component_named_dashboard_does_not_shadow_the_page() {
    let registry = Registry::new();
    let breaker = Breaker::builder("dashboard")
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(60))
        .build()
        .unwrap();
    registry.register(&breaker).unwrap();
    let svc = HealthService::new(registry).with_bearer_token("ops");
    let (res, body) = get(svc.clone(), Method::GET, "/health/dashboard").await;
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    assert!(body.contains("<title>battlement dashboard</title>"));
    let (res, _) = get(svc.clone(), Method::GET, "/health/%64ashboard").await;
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    // The component is still controlled through its own routes.
    let req = Request::post("/health/dashboard/open")
        .header("authorization", "Bearer ops")
        .body(String::new())
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (res, body) = get(svc, Method::GET, "/health").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(body.contains(r#""state":"forced_open""#), "{body}");
}

#[tokio::test]
async fn served_under_a_prefix() {
    let app = axum::Router::new().nest_service("/ops", HealthService::new(Registry::new()));
    let res = app
        .oneshot(
            Request::get("/ops/health/dashboard")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
}
