//! The dashboard page (`GET /health/dashboard`) in a real browser:
//! headless Chromium, driven over WebDriver by `chromedriver`, against a
//! `HealthService` mounted under `/ops` on 127.0.0.1 with live components
//! (a policy's breaker, gate, retry budget, fallback, deadlines and
//! instrument, a standalone breaker, and a second policy taking traffic).
//!
//! It checks the rendered DOM: the cards grouped by policy, a breaker
//! shown `open` after it trips (and the `state_changed` event in the list,
//! which only the event stream delivers), a level set through the page's
//! own control with the token, and no control buttons when controls are
//! off. It ends with a screenshot, written to `$DASHBOARD_SCREENSHOT` when
//! set (`docs/dashboard.png` is made so), else under the target directory.
//!
//! Ignored by default: it needs `chromium` and `chromedriver` (Debian's
//! `chromium` and `chromium-driver`). `.ci/extra.d/dashboard.sh` installs
//! them and runs it with `--ignored`. WebDriver rather than `chromium
//! --dump-dom`: the page keeps its event stream open, so a virtual time
//! budget never runs out, and a plain dump is taken before the first
//! report arrives.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use battlement::http::HealthService;
use battlement::prelude::*;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt};

/// How long the page may take to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

/// The flags Chromium needs on this machine (no sandbox as root, no GPU,
/// no background connections on a closed network).
const CHROMIUM_ARGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A WebDriver session, deleted (browser closed) when dropped.
struct Browser {
    client: HttpClient,
    base: String,
    session: String,
    _driver: Killed,
    _profile: Profile,
}

/// A fresh, empty Chromium profile directory, removed when dropped.
struct Profile(std::path::PathBuf);

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn send(client: &HttpClient, method: Method, url: &str, body: Option<&Value>) -> Value {
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let res = tokio::time::timeout(PATIENCE, client.request(req))
        .await
        .unwrap_or_else(|_| panic!("{url}: no answer"))
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!("{url}: {e}: {}", String::from_utf8_lossy(&bytes));
    })
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `{driver}` (apt-get install chromium-driver): {e}")
            });
        let driver = Killed(child);
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let base = format!("http://127.0.0.1:{port}");
        // Wait (bounded) for the driver to listen.
        let ready = async {
            loop {
                let req = Request::get(format!("{base}/status"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                if let Ok(res) = client.request(req).await {
                    let bytes = res.into_body().collect().await.unwrap().to_bytes();
                    let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                    if v["value"]["ready"] == true {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(PATIENCE, ready)
            .await
            .expect("chromedriver did not become ready");
        let profile = std::env::temp_dir().join(format!("battlement-chromium-{port}"));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": args},
        }}});
        let res = send(
            &client,
            Method::POST,
            &format!("{base}/session"),
            Some(&caps),
        )
        .await;
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {res}"))
            .to_owned();
        Browser {
            client,
            base,
            session,
            _driver: driver,
            _profile: Profile(profile),
        }
    }

    async fn command(&self, method: Method, what: &str, body: Option<&Value>) -> Value {
        let url = format!("{}/session/{}/{what}", self.base, self.session);
        let res = send(&self.client, method, &url, body).await;
        assert!(
            res["value"].get("error").is_none(),
            "webdriver {what}: {res}"
        );
        res["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command(Method::POST, "url", Some(&json!({ "url": url })))
            .await;
    }

    async fn run(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.command(Method::POST, "execute/sync", Some(&body))
            .await
    }

    /// What the page shows, read from its DOM.
    async fn view(&self) -> Value {
        self.run(VIEW).await
    }

    /// Reads the page until `ok` holds of what it shows; panics with the
    /// last view after [`PATIENCE`].
    async fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let view = self.view().await;
            if ok(&view) {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never showed {what}: {view:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self) -> Vec<u8> {
        let png = self.command(Method::GET, "screenshot", None).await;
        base64_decode(png.as_str().expect("a base64 string"))
    }

    async fn close(self) {
        let url = format!("{}/session/{}", self.base, self.session);
        send(&self.client, Method::DELETE, &url, None).await;
    }
}

/// The page's state as JSON: each card's status, breaker state and gate
/// level, the policies, the event kinds listed, the connection label and
/// whether the controls are shown.
const VIEW: &str = r##"
const cards = {};
document.querySelectorAll("article.card").forEach((a) => {
  const text = (sel) => { const e = a.querySelector(sel); return e ? e.textContent : null; };
  cards[a.dataset.name] = { kind: a.dataset.kind, class: a.className, state: text(".state"),
    level: text(".level"), buttons: a.querySelectorAll("button").length };
});
return {
  cards,
  policies: [...document.querySelectorAll("section.policy")].map((s) => s.dataset.policy),
  events: [...document.querySelectorAll("#event-list .ev")].map((e) => e.textContent),
  conn: document.getElementById("conn").textContent,
  controls: !document.getElementById("controls").hidden,
  overall: document.getElementById("overall").textContent,
};
"##;

/// Standard base64 (with or without padding), as WebDriver sends
/// screenshots.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let digits: Vec<u32> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | d << (18 - 6 * i));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
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

fn refused() -> BoxError {
    Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
}

#[test]
fn base64_decodes_what_webdriver_sends() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aGk"), b"hi");
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver: run by .ci/extra.d/dashboard.sh"]
async fn the_dashboard_shows_live_components_in_chromium() {
    // A local set: the policy's service future is not `Send`-general
    // enough for `tokio::spawn`, so the traffic task is a local one.
    tokio::task::LocalSet::new().run_until(scenario()).await;
}

async fn scenario() {
    let registry = Registry::new();
    let checkout = Policy::builder("checkout")
        .total(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(500))
        .breaker(|b| {
            b.consecutive_failures(3)
                .open_duration(Duration::from_secs(600))
        })
        .gate(|g| g)
        .priority(|_: &u32| Some(Priority::Normal))
        .fallback(|f| f.value(0u32))
        .registry(&registry)
        .build()
        .unwrap();
    let search = Policy::builder("search")
        .without_breaker()
        .registry(&registry)
        .build()
        .unwrap();
    let payments = Breaker::builder("payments")
        .events(registry.event_sink())
        .build()
        .unwrap();
    registry.register(&payments).unwrap();

    let down = Arc::new(AtomicBool::new(false));
    let d = down.clone();
    let mut checkout_svc = ServiceBuilder::new()
        .policy(&checkout)
        .service_fn(move |n: u32| {
            let down = d.load(Ordering::SeqCst);
            async move { if down { Err(refused()) } else { Ok(n) } }
        });
    for i in 0..20 {
        checkout_svc.ready().await.unwrap().call(i).await.unwrap();
    }
    // Traffic on `search` for its call-rate sparkline, every 20 ms.
    let mut search_svc = ServiceBuilder::new()
        .policy(&search)
        .service_fn(|n: u32| std::future::ready(Ok::<u32, BoxError>(n)));
    let traffic = tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0.. {
            tick.tick().await;
            let _ = search_svc.ready().await.unwrap().call(i).await;
        }
    });

    let addr = serve(HealthService::new(registry.clone()).with_bearer_token("ops-token")).await;
    let browser = Browser::start().await;
    browser
        .open(&format!("http://{addr}/ops/health/dashboard"))
        .await;

    // Every component has a card, grouped by policy; the breaker is closed.
    let view = browser
        .wait_for("the cards", |v| {
            v["cards"]["checkout/breaker"]["state"] == "closed" && v["conn"] == "live"
        })
        .await;
    for name in [
        "checkout/breaker",
        "checkout/gate",
        "checkout/budget",
        "checkout/fallback",
        "checkout/instrument",
        "checkout/deadline",
        "search/instrument",
        "payments",
    ] {
        assert!(
            view["cards"].get(name).is_some(),
            "no card for {name}: {view:#}"
        );
    }
    let policies = view["policies"].as_array().unwrap();
    for group in ["checkout", "search", "(standalone)"] {
        assert!(policies.iter().any(|p| p == group), "{group}: {view:#}");
    }
    assert_eq!(view["controls"], true);
    assert_eq!(view["cards"]["checkout/gate"]["level"], "normal");
    assert!(view["cards"]["checkout/breaker"]["buttons"].as_u64() >= Some(3));

    // Trip the breaker: the card turns open, and the transition arrives
    // over the event stream (the list holds only streamed events).
    down.store(true, Ordering::SeqCst);
    for i in 0..3 {
        let _ = checkout_svc.ready().await.unwrap().call(i).await;
    }
    assert_eq!(
        checkout.breaker().unwrap().state(),
        battlement::core::CircuitState::Open
    );
    let view = browser
        .wait_for("the breaker open", |v| {
            v["cards"]["checkout/breaker"]["state"] == "open"
                && v["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|k| k == "state_changed"))
        })
        .await;
    assert!(
        view["cards"]["checkout/breaker"]["class"]
            .as_str()
            .unwrap()
            .contains("degraded"),
        "{view:#}"
    );

    // Set the gate's level with the page's own control and the token.
    browser
        .run(
            r#"
document.getElementById("token").value = "ops-token";
const card = document.querySelector('article[data-name="checkout/gate"]');
card.querySelector("select").value = "severe";
card.querySelector('button[data-act="level"]').click();
return null;
"#,
        )
        .await;
    browser
        .wait_for("the level change", |v| {
            v["cards"]["checkout/gate"]["level"] == "severe"
                && v["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|k| k == "level_changed"))
        })
        .await;
    assert_eq!(
        checkout.gate().unwrap().level(),
        battlement::core::Level::Severe
    );

    // Let the sparklines gather a few samples, then keep a picture.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let path = std::env::var_os("DASHBOARD_SCREENSHOT").map_or_else(
        || std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png"),
        std::path::PathBuf::from,
    );
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());

    // Without controls, the page shows no buttons.
    let plain = serve(HealthService::new(registry.clone())).await;
    browser
        .open(&format!("http://{plain}/ops/health/dashboard"))
        .await;
    let view = browser
        .wait_for("the cards without controls", |v| {
            v["cards"].get("checkout/gate").is_some()
        })
        .await;
    assert_eq!(view["controls"], false);
    for (name, card) in view["cards"].as_object().unwrap() {
        assert_eq!(card["buttons"], 0, "{name} has buttons: {view:#}");
    }

    browser.close().await;
    traffic.abort();
}
