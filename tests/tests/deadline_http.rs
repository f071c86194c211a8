//! End to end over loopback: an axum server behind `ServerDeadlineLayer`,
//! a hyper client behind `DeadlineLayer(500 ms)` + `PropagateDeadlineLayer`.
//!
//! This runs on real time (a server over loopback cannot use paused time),
//! so its bounds are generous; it takes about a second and a half.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use battlement::DeadlineCarrier;
use battlement::DeadlineExceeded;
use battlement_deadline::DeadlineLayer;
use battlement_deadline::http::{PropagateDeadlineLayer, ServerDeadlineLayer};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

/// `/cut` handlers whose futures were dropped before they answered.
static CUT_CANCELLED: AtomicUsize = AtomicUsize::new(0);

struct CountIfCancelled(&'static AtomicUsize);
impl Drop for CountIfCancelled {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Sleeps 5 s.
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "too late"
}

/// Sleeps 5 s; counts itself cancelled if dropped before.
async fn cut() -> &'static str {
    let guard = CountIfCancelled(&CUT_CANCELLED);
    tokio::time::sleep(Duration::from_secs(5)).await;
    std::mem::forget(guard);
    "too late"
}

/// Starts the server on 127.0.0.1, port 0; returns its base address.
/// `/budget`, `/slow` and `/cut` sit behind the default (enforcing)
/// `ServerDeadlineLayer`; `/uncut` behind one that only reads the budget.
async fn server() -> String {
    let uncut = Router::new().route("/uncut", get(slow)).layer(
        ServerDeadlineLayer::builder()
            .enforce(false)
            .build()
            .unwrap(),
    );
    let app = Router::new()
        .route(
            "/budget",
            get(|req: Request| async move {
                match req.deadline() {
                    Some(d) => d.remaining().as_millis().to_string(),
                    None => "none".to_owned(),
                }
            }),
        )
        .route("/slow", get(slow))
        .route("/cut", get(cut))
        .layer(ServerDeadlineLayer::new())
        .merge(uncut);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn get_req(uri: String, headers: &[(&str, &str)]) -> http::Request<Empty<Bytes>> {
    let mut b = http::Request::get(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Empty::new()).unwrap()
}

async fn body_text<B>(res: http::Response<B>) -> String
where
    B: BodyExt,
    B::Error: std::fmt::Debug,
{
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn the_budget_crosses_the_wire_and_cuts_a_slow_handler() {
    let base = server().await;
    let hyper_client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_millis(500)))
        .layer(PropagateDeadlineLayer::new())
        .service(hyper_client.clone());

    // The handler sees the client's budget, less the margin and the trip.
    let res = client
        .ready()
        .await
        .unwrap()
        .call(get_req(format!("{base}/budget"), &[]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let left: u64 = body_text(res).await.parse().unwrap();
    assert!((400..=500).contains(&left), "handler saw {left} ms left");

    // A slow handler the server does not cut: the client gives up at its
    // 500 ms deadline with `DeadlineExceeded`.
    let start = Instant::now();
    let err = client
        .ready()
        .await
        .unwrap()
        .call(get_req(format!("{base}/uncut"), &[]))
        .await
        .unwrap_err();
    let took = start.elapsed();
    let e = err
        .downcast_ref::<DeadlineExceeded>()
        .expect("DeadlineExceeded");
    assert_eq!(e.budget, Duration::from_millis(500));
    assert!(
        took >= Duration::from_millis(490) && took < Duration::from_millis(1500),
        "gave up after {took:?}"
    );

    // A slow handler behind the enforcing layer: the server cuts it at the
    // budget it was sent (500 ms less the 5 ms margin and the trip), so the
    // client gets the server's 504 just before its own deadline, or, on a
    // machine too busy for the 5 ms margin, its own `DeadlineExceeded`.
    let start = Instant::now();
    let out = client
        .ready()
        .await
        .unwrap()
        .call(get_req(format!("{base}/slow"), &[]))
        .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "answered after {took:?}"
    );
    match out {
        Ok(res) => {
            assert_eq!(res.status(), 504);
            let body: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
            assert_eq!(body["error"], "deadline exceeded");
            assert_eq!(body["header"], "x-request-timeout-ms");
        }
        Err(err) => assert!(err.is::<DeadlineExceeded>(), "{err}"),
    }

    // Straight to the server with a 200 ms budget: the server alone cuts
    // the handler and says why.
    let mut raw = hyper_client.clone();
    let start = Instant::now();
    let res = raw
        .ready()
        .await
        .unwrap()
        .call(get_req(
            format!("{base}/cut"),
            &[("x-request-timeout-ms", "200")],
        ))
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(res.status(), 504);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(body["error"], "deadline exceeded");
    assert_eq!(body["budget_ms"], 200);
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(1200),
        "cut after {took:?}"
    );
    // The server dropped the handler (cancelling it) before it answered.
    assert_eq!(CUT_CANCELLED.load(Ordering::SeqCst), 1);

    // Straight to the server: a bad header is a 400 saying which and why,
    // a spent budget a 504, and neither reaches the handler.
    let res = raw
        .ready()
        .await
        .unwrap()
        .call(get_req(format!("{base}/slow"), &[("grpc-timeout", "soon")]))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(body["header"], "grpc-timeout");
    assert_eq!(body["reason"], "not a decimal number");

    let start = Instant::now();
    let res = raw
        .ready()
        .await
        .unwrap()
        .call(get_req(
            format!("{base}/slow"),
            &[("x-request-timeout-ms", "0")],
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    assert!(start.elapsed() < Duration::from_secs(1));

    // No header: no deadline.
    let res = raw
        .ready()
        .await
        .unwrap()
        .call(get_req(format!("{base}/budget"), &[]))
        .await
        .unwrap();
    assert_eq!(body_text(res).await, "none");
}
