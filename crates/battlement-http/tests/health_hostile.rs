//! `HealthService` against hostile requests: blank tokens, odd
//! `Authorization` headers, bodies that never finish, odd paths.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{
    Component, ComponentHealth, ComponentKind, Control, ControlError, HealthStatus,
};
use battlement_http::{HealthBody, HealthService};
use battlement_registry::Registry;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body::{Body, Frame};
use proptest::prelude::*;
use serde_json::Value;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// A component that records the controls applied to it.
struct Recorder {
    name: &'static str,
    applied: Mutex<Vec<&'static str>>,
}

impl Recorder {
    fn new(name: &'static str) -> Arc<Recorder> {
        Arc::new(Recorder {
            name,
            applied: Mutex::new(Vec::new()),
        })
    }

    fn applied(&self) -> Vec<&'static str> {
        self.applied.lock().unwrap().clone()
    }
}

impl Component for Recorder {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> ComponentKind {
        ComponentKind::Breaker
    }
    fn health(&self) -> ComponentHealth {
        ComponentHealth::new(HealthStatus::Healthy)
    }
    fn control(&self, control: &Control) -> Result<(), ControlError> {
        self.applied.lock().unwrap().push(control.as_str());
        Ok(())
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn send<B>(svc: &HealthService, req: Request<B>) -> Answer
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<battlement_core::BoxError>,
{
    let res = svc.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: HealthBody::into_bytes_now(body),
    }
}

fn post(path: &str, auth: &[&str]) -> Request<String> {
    let mut req = Request::post(path);
    for a in auth {
        req = req.header("authorization", *a);
    }
    req.body(String::new()).unwrap()
}

fn served(token: &str) -> (HealthService, Arc<Recorder>) {
    let registry = Registry::new();
    let db = Recorder::new("db");
    registry.register(&db).unwrap();
    (HealthService::new(registry).with_bearer_token(token), db)
}

/// D9: `with_bearer_token(env::var(..).unwrap_or_default())` with the
/// variable unset must not unlock the controls for `Bearer ` .
#[tokio::test]
async fn a_blank_token_leaves_controls_off() {
    for token in ["", " ", "\t", " \n "] {
        let (svc, db) = served(token);
        for auth in [&["Bearer "][..], &["Bearer \t"], &["Bearer"], &[]] {
            let r = send(&svc, post("/health/db/open", auth)).await;
            assert_eq!(r.status, 403, "token {token:?}, auth {auth:?}");
            assert_eq!(r.json()["message"], "controls are disabled");
        }
        assert!(db.applied().is_empty(), "token {token:?}");
        assert!(format!("{svc:?}").contains("disabled"));
    }
}

/// A token read from a file or a variable often ends with a newline.
#[tokio::test]
async fn the_configured_token_is_trimmed() {
    let (svc, db) = served(" s3cret\n");
    let r = send(&svc, post("/health/db/open", &["Bearer s3cret"])).await;
    assert_eq!(r.status, 200);
    assert_eq!(db.applied(), ["force_open"]);
}

/// D15: the scheme is case-insensitive (RFC 7235), one or more spaces
/// separate it from the token, and nothing else is accepted.
#[tokio::test]
async fn the_scheme_is_case_insensitive_and_spaces_are_tolerated() {
    let (svc, db) = served("s3cret");
    let good = [
        "Bearer s3cret",
        "BEARER s3cret",
        "bearer s3cret",
        "BeArEr s3cret",
        "Bearer    s3cret",
        " Bearer s3cret ",
    ];
    let bad = [
        "Bearer s3cre",
        "Bearer s3crets",
        "Bearer s3cret x",
        "Bearers3cret",
        "Bearer\ts3cret",
        "Basic s3cret",
        "s3cret",
        "Bearer ",
        "",
    ];
    let cases = good
        .iter()
        .map(|a| (a, 200))
        .chain(bad.iter().map(|a| (a, 401)));
    for (auth, want) in cases {
        let r = send(&svc, post("/health/db/reset", &[auth])).await;
        assert_eq!(r.status, want, "{auth:?}");
        if want == 401 {
            assert_eq!(r.headers["www-authenticate"], "Bearer");
        }
    }
    assert_eq!(db.applied().len(), good.len());
}

/// D15: two `Authorization` headers are ambiguous: refused, even when
/// both carry the right token.
#[tokio::test]
async fn the_header_twice_is_refused() {
    let (svc, db) = served("s3cret");
    for pair in [
        ["Bearer s3cret", "Bearer s3cret"],
        ["Bearer s3cret", "Bearer wrong"],
        ["Bearer wrong", "Bearer s3cret"],
    ] {
        let r = send(&svc, post("/health/db/open", &pair)).await;
        assert_eq!(r.status, 401, "{pair:?}");
        assert_eq!(r.json()["error"], "unauthenticated");
    }
    assert!(db.applied().is_empty());
}

/// A body that sends one byte every 5 s, forever.
struct Trickle {
    sleep: Pin<Box<Sleep>>,
}

impl Trickle {
    fn new() -> Self {
        Trickle {
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(5))),
        }
    }
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let next = Instant::now() + Duration::from_secs(5);
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" ")))))
    }
}

fn level<B>(body: B) -> Request<B> {
    Request::post("/health/db/level")
        .header("authorization", "Bearer s3cret")
        .body(body)
        .unwrap()
}

/// D16: a control's body must arrive within the body timeout (default
/// 10 s), or the control is answered `408` with a JSON error.
#[tokio::test(start_paused = true)]
async fn a_body_that_never_finishes_is_answered_408() {
    let (svc, db) = served("s3cret");
    let start = Instant::now();
    let r = send(&svc, level(Trickle::new())).await;
    assert_eq!(
        (r.status, start.elapsed()),
        (StatusCode::REQUEST_TIMEOUT, Duration::from_secs(10))
    );
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.json()["error"], "request_timeout");
    assert!(db.applied().is_empty());

    let svc = svc.with_body_timeout(Duration::from_secs(2));
    let start = Instant::now();
    let r = send(&svc, level(Trickle::new())).await;
    assert_eq!(
        (r.status, start.elapsed()),
        (StatusCode::REQUEST_TIMEOUT, Duration::from_secs(2))
    );

    // A body in time is read as before.
    let body = http_body_util::Full::new(Bytes::from_static(br#"{"level":"severe"}"#));
    let r = send(&svc, level(body)).await;
    assert_eq!(r.status, 200);
    assert_eq!(db.applied(), ["set_level"]);
}

#[test]
#[should_panic(expected = "body timeout must be > 0")]
fn a_zero_body_timeout_is_refused() {
    let _ = HealthService::new(Registry::new()).with_body_timeout(Duration::ZERO);
}

async fn get(svc: &HealthService, path: &str) -> Answer {
    send(svc, Request::get(path).body(String::new()).unwrap()).await
}

/// D17: percent-decoding is strict (two hex digits exactly), and a
/// reserved route name cannot be reached as a component by encoding it.
#[tokio::test]
async fn percent_decoding_is_strict() {
    let registry = Registry::new();
    let events = Recorder::new("events");
    registry.register(&events).unwrap();
    let svc = HealthService::new(registry).with_bearer_token("s3cret");

    for bad in [
        "/health/%zz",
        "/health/%+1",
        "/health/%-1",
        "/health/a%4",
        "/health/a%",
        "/health/%%41",
        "/health/ok%4g",
    ] {
        let r = get(&svc, bad).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["error"], "bad_path", "{bad}");
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains("two hex digits"), "{bad}: {message}");
    }
    let r = get(&svc, "/health/%ff").await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"].as_str().unwrap().contains("UTF-8"),
        "{}",
        r.json()
    );

    // `events` is the event stream however it is spelt.
    for path in [
        "/health/events",
        "/health/%65vents",
        "/health/%65%76ents",
        "/%68ealth/events",
    ] {
        let r = get(&svc, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers["content-type"], "text/event-stream", "{path}");
    }
    // The component named `events` is reached through its controls only.
    let r = send(&svc, post("/health/%65vents/reset", &["Bearer s3cret"])).await;
    assert_eq!(r.status, 200);
    assert_eq!(events.applied(), ["reset"]);
    // Encoded characters still decode in names.
    let r = get(&svc, "/health/ev%65nts%2Fx").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["message"].as_str().unwrap().contains("`events/x`"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any path, any method: an answer, JSON unless it is the metrics
    /// text or the event stream; never a panic.
    #[test]
    fn random_paths_always_get_an_answer(
        path in "(/(health|events|metrics|db|reset|open|level|%[0-9a-fA-F+zZ%]{0,3}|[a-z%]{0,6})){0,4}/?",
        method in prop_oneof![Just(Method::GET), Just(Method::HEAD), Just(Method::POST), Just(Method::PUT)],
        auth in any::<bool>(),
    ) {
        let Ok(uri) = http::Uri::try_from(if path.is_empty() { "/" } else { &path }) else {
            return Ok(());
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let r = rt.block_on(async {
            let registry = Registry::new();
            registry.register(&Recorder::new("db")).unwrap();
            let svc = HealthService::new(registry).with_bearer_token("s3cret");
            let mut req = Request::builder().method(method).uri(uri);
            if auth {
                req = req.header("authorization", "Bearer s3cret");
            }
            send(&svc, req.body(String::new()).unwrap()).await
        });
        let content_type = r.headers.get("content-type").map(|v| v.to_str().unwrap().to_owned());
        match content_type.as_deref() {
            Some("application/json") => {
                let json: Value = serde_json::from_slice(&r.body).unwrap();
                prop_assert!(json.is_object());
                if !r.status.is_success() {
                    prop_assert!(json["error"].is_string(), "{}", json);
                    prop_assert!(json["message"].is_string(), "{}", json);
                }
            }
            Some("text/event-stream") => prop_assert_eq!(r.status, 200),
            Some(t) => prop_assert!(t.starts_with("application/openmetrics-text"), "{t}"),
            None => prop_assert!(false, "no content-type for {path}: {}", r.status),
        }
    }
}

/// Every control route reaches the component as its control, `enable`
/// (which a chaos layer answers) included; an unknown action is `404`.
#[tokio::test]
async fn each_action_route_applies_its_control() {
    let (svc, db) = served("s3cret");
    let routes = [
        ("reset", "reset"),
        ("open", "force_open"),
        ("close", "close"),
        ("disable", "disable"),
        ("enable", "enable"),
        ("release", "release_level"),
    ];
    for (action, _) in routes {
        let r = send(
            &svc,
            post(&format!("/health/db/{action}"), &["Bearer s3cret"]),
        )
        .await;
        assert_eq!(r.status, 200, "{action}");
        assert_eq!(r.json()["applied"], true, "{action}");
    }
    let want: Vec<_> = routes.iter().map(|(_, control)| *control).collect();
    assert_eq!(db.applied(), want);
    let r = send(&svc, post("/health/db/explode", &["Bearer s3cret"])).await;
    assert_eq!(r.status, 404);
    let r = send(&svc, post("/health/db/enable", &[])).await;
    assert_eq!(r.status, 401);
    assert_eq!(db.applied().len(), want.len());
}

/// A policy's parts are named `{policy}/{part}`: reachable with a plain
/// `/` or `%2F`, for reports and controls alike.
#[tokio::test]
async fn names_with_a_slash_are_reachable_unencoded() {
    let registry = Registry::new();
    let db = Recorder::new("checkout/breaker");
    registry.register(&db).unwrap();
    let svc = HealthService::new(registry).with_bearer_token("s3cret");
    for path in ["/health/checkout/breaker", "/health/checkout%2Fbreaker"] {
        let r = get(&svc, path).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        assert_eq!(r.json()["name"], "checkout/breaker", "{path}");
    }
    let r = send(
        &svc,
        post("/health/checkout/breaker/open", &["Bearer s3cret"]),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(db.applied().len(), 1);
    let r = get(&svc, "/health/checkout/breaker/open").await;
    assert_eq!(r.status, 405, "a control is a POST");
    let r = get(&svc, "/health/checkout/nothing").await;
    assert_eq!(r.status, 404);
}
