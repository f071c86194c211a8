//! The health endpoint with a real `battlement-breaker` `Breaker`: the SSE
//! stream delivers its transition to open, the report shows it degraded,
//! the open circuit maps to `503` + `Retry-After`, and a reset through the
//! endpoint closes it so it admits calls again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use battlement::core::{BoxError, CircuitOpen, CircuitState};
use battlement_breaker::Breaker;
use battlement_http::{HealthService, error_response};
use battlement_registry::Registry;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::{Service, ServiceBuilder, ServiceExt};

async fn serve(svc: HealthService) -> SocketAddr {
    let app = axum::Router::new().nest_service("/ops", svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

async fn json(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> (u16, Value) {
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn sse_sees_the_breaker_open_and_a_reset_closes_it() {
    let registry = Registry::new();
    let breaker = Breaker::builder("payments")
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(600))
        .events(registry.event_sink())
        .build()
        .unwrap();
    registry.register(&breaker).unwrap();
    let down = Arc::new(AtomicBool::new(true));
    let d = down.clone();
    let mut svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .service_fn(move |n: u32| {
            let down = d.load(Ordering::SeqCst);
            async move {
                if down {
                    Err::<u32, BoxError>(Box::new(std::io::Error::from(
                        std::io::ErrorKind::ConnectionRefused,
                    )))
                } else {
                    Ok(n)
                }
            }
        });

    let addr = serve(HealthService::new(registry.clone()).with_bearer_token("ops")).await;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();

    // Subscribe over SSE, wait for the stream to open.
    let res = client
        .request(
            Request::get(format!("http://{addr}/ops/health/events"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.data_ref().unwrap().starts_with(b":"));

    // Two failures trip it.
    for n in 0..2 {
        svc.ready().await.unwrap().call(n).await.unwrap_err();
    }
    assert_eq!(breaker.state(), CircuitState::Open);

    // The transition arrives on the stream (skipping any other event).
    let mut text = String::new();
    let transition = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
        let Some(end) = text.find("\n\n") else {
            continue;
        };
        let message: String = text.drain(..end + 2).collect();
        // `id: <n>`, `event: <kind>`, `data: <json>`.
        let mut lines = message.lines();
        assert!(lines.next().unwrap().starts_with("id: "), "{message}");
        if lines.next() == Some("event: state_changed") {
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            break serde_json::from_str::<Value>(data).unwrap();
        }
    };
    assert_eq!(transition["component"], "payments");
    assert_eq!(transition["from"], "closed");
    assert_eq!(transition["to"], "open");

    // The report shows it; calls are refused, and the refusal maps to 503.
    let get = |path: &str| {
        Request::get(format!("http://{addr}/ops{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (status, report) = json(&client, get("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(report["status"], "degraded");
    let (_, b) = json(&client, get("/health/payments")).await;
    assert_eq!(b["details"]["state"], "open");
    assert_eq!(b["details"]["consecutive_failures"], 2);
    down.store(false, Ordering::SeqCst);
    let err = svc.ready().await.unwrap().call(9).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    let res = error_response(&*err);
    assert_eq!(res.status(), 503);
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry_after), "{retry_after}");

    // A reset through the endpoint closes it, and it admits calls again.
    let reset = Request::post(format!("http://{addr}/ops/health/payments/reset"))
        .header("authorization", "Bearer ops")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, applied) = json(&client, reset).await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["health"]["details"]["state"], "closed");
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
    let (_, report) = json(&client, get("/health")).await;
    assert_eq!(report["status"], "healthy");

    // Forcing it open through the endpoint refuses calls again.
    let open = Request::post(format!("http://{addr}/ops/health/payments/open"))
        .header("authorization", "Bearer ops")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(json(&client, open).await.0, 200);
    assert_eq!(breaker.state(), CircuitState::ForcedOpen);
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(8)
            .await
            .unwrap_err()
            .is::<CircuitOpen>()
    );
}

/// A real breaker's figures in the Prometheus exposition: its state as a
/// stateset (one gauge sample per state, 1 for the current one), trips,
/// rejections, failures by kind and timeouts as counters.
#[tokio::test(start_paused = true)]
async fn the_breaker_state_and_trips_come_out_in_prometheus() {
    let registry = Registry::new();
    let breaker = Breaker::builder("payments")
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(600))
        .build()
        .unwrap();
    registry.register(&breaker).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .service(tower::service_fn(|()| async {
            Err::<(), BoxError>(std::io::Error::from(std::io::ErrorKind::TimedOut).into())
        }));
    svc.ready().await.unwrap().call(()).await.unwrap_err();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());

    let text = registry.prometheus_text();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let find = |metric: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == metric
                    && s.labels.get("component") == Some("payments")
                    && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v))
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no {metric} {label:?} in\n{text}"))
    };
    for state in CircuitState::ALL {
        let want = if state == CircuitState::Open {
            1.0
        } else {
            0.0
        };
        assert_eq!(
            find("battlement_breaker_state", Some(("state", state.as_str()))),
            want,
            "{state}"
        );
    }
    assert!(
        text.contains("# TYPE battlement_breaker_trips counter"),
        "{text}"
    );
    assert_eq!(find("battlement_breaker_trips_total", None), 1.0);
    assert_eq!(find("battlement_breaker_rejections_total", None), 1.0);
    assert_eq!(find("battlement_breaker_timeouts_total", None), 1.0);
    assert_eq!(
        find(
            "battlement_breaker_failures_by_kind_total",
            Some(("kind", "timeout"))
        ),
        1.0
    );
}
