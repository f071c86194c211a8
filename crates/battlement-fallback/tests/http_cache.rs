//! The last-known-good cache of HTTP responses whose body is not `Clone`
//! (`http_cache`), on paused time: a success is stored as its bytes, a
//! later failure answers a response rebuilt from them (marked), a body
//! too large or of unknown size passes untouched and is not stored.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{BoxError, FallbackFailed};
use battlement_fallback::{CacheMiss, Fallback, FallbackLayer, HEADER, HttpCacheConfig, Source};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};

/// What the primary does next: answer its body, or fail.
const OK: u8 = 0;
const FAIL: u8 = 1;

/// A primary answering `body()` (with a status and headers worth
/// keeping) while `mode` is `OK`, failing while it is `FAIL`.
fn primary<B: Send + 'static>(
    mode: Arc<AtomicU8>,
    body: impl Fn() -> B + Clone + Send + 'static,
) -> impl Service<Request<()>, Response = Response<B>, Error = BoxError, Future: Send> + Clone {
    service_fn(move |_: Request<()>| {
        let (mode, body) = (mode.clone(), body.clone());
        async move {
            if mode.load(Ordering::Relaxed) == FAIL {
                return Err::<_, BoxError>("backend down".into());
            }
            let mut res = Response::new(body());
            *res.status_mut() = StatusCode::CREATED;
            res.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok(res)
        }
    })
}

fn get(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap()
}

async fn call<S: Service<Request<()>>>(svc: &mut S, path: &str) -> Result<S::Response, S::Error> {
    svc.ready().await?.call(get(path)).await
}

async fn read<B: Body<Data = Bytes>>(res: Response<B>) -> Bytes
where
    B::Error: std::fmt::Debug,
{
    res.into_body().collect().await.unwrap().to_bytes()
}

type OrdersLayer<B> = FallbackLayer<Request<()>, Response<B>, String>;

/// The stack under test: an HTTP cache (fresh 1 s, stale 10 s more)
/// keyed by path, marking with the header, over `primary`.
fn cached<B, S>(
    primary: S,
    config: HttpCacheConfig,
) -> (
    OrdersLayer<B>,
    impl Service<Request<()>, Response = Response<B>, Error = BoxError>,
)
where
    B: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    S: Service<Request<()>, Response = Response<B>, Error = BoxError, Future: Send>,
{
    let layer = FallbackLayer::builder("orders")
        .key(|req: &Request<()>| Some(req.uri().path().to_owned()))
        .http_cache(
            config
                .fresh_for(Duration::from_secs(1))
                .stale_if_error(Duration::from_secs(10)),
        )
        .http_header()
        .build()
        .unwrap();
    let svc = layer.layer(primary);
    (layer, svc)
}

/// A success is stored; failures answer its status, headers and bytes,
/// marked `cache` then `cache_stale`; `B` is rebuilt from the bytes.
async fn stores_and_serves<B>(body: impl Fn() -> B + Clone + Send + 'static)
where
    B: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: Into<BoxError> + std::fmt::Debug,
{
    let mode = Arc::new(AtomicU8::new(OK));
    let (layer, mut svc) = cached(primary(mode.clone(), body), HttpCacheConfig::new());
    let res = call(&mut svc, "/orders/7").await.unwrap();
    assert!(res.headers().get(HEADER).is_none(), "the primary answered");
    assert_eq!(
        read(res).await,
        "{\"order\":7}",
        "the caller gets the whole body"
    );
    assert_eq!(layer.health().details["cache_entries"], 1);

    mode.store(FAIL, Ordering::Relaxed);
    let res = call(&mut svc, "/orders/7").await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()[HEADER], "cache");
    assert_eq!(
        res.extensions().get::<Fallback>().unwrap().source,
        Source::Cache
    );
    assert_eq!(read(res).await, "{\"order\":7}");

    tokio::time::advance(Duration::from_secs(2)).await;
    let res = call(&mut svc, "/orders/7").await.unwrap();
    assert_eq!(res.headers()[HEADER], "cache_stale");
    assert_eq!(
        read(res).await,
        "{\"order\":7}",
        "served again: rebuilt each time"
    );

    // Another key was never stored.
    let Err(err) = call(&mut svc, "/orders/8").await else {
        panic!("nothing stored for /orders/8");
    };
    let failed = err.downcast_ref::<FallbackFailed>().unwrap();
    assert!(failed.fallbacks[0].1.is::<CacheMiss>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_full_body_is_stored_and_served_rebuilt() {
    stores_and_serves(|| Full::new(Bytes::from_static(b"{\"order\":7}"))).await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_axum_body_is_stored_and_served_rebuilt() {
    stores_and_serves(|| axum::body::Body::from("{\"order\":7}")).await;
}

/// A body over `max_body_bytes` reaches the caller whole and is not
/// stored: the next failure finds nothing.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_over_the_bound_passes_whole_and_is_not_stored() {
    let mode = Arc::new(AtomicU8::new(OK));
    let big = || Full::new(Bytes::from(vec![b'x'; 100]));
    let (layer, mut svc) = cached(
        primary(mode.clone(), big),
        HttpCacheConfig::new().max_body_bytes(99),
    );
    let res = call(&mut svc, "/big").await.unwrap();
    assert_eq!(read(res).await.len(), 100);
    assert_eq!(layer.health().details["cache_entries"], 0);
    mode.store(FAIL, Ordering::Relaxed);
    let err = call(&mut svc, "/big").await.unwrap_err();
    assert!(err.is::<FallbackFailed>());
}

/// A body for tests: bytes, or one that never ends (of unknown size), or
/// one that fails after promising four bytes.
enum TestBody {
    Bytes(Option<Bytes>),
    Endless,
    Broken,
}

impl From<Bytes> for TestBody {
    fn from(bytes: Bytes) -> Self {
        TestBody::Bytes(Some(bytes))
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            TestBody::Bytes(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            TestBody::Endless => Poll::Pending,
            TestBody::Broken => Poll::Ready(Some(Err(std::io::ErrorKind::ConnectionReset.into()))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            TestBody::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            TestBody::Endless => SizeHint::new(),
            TestBody::Broken => SizeHint::with_exact(4),
        }
    }
}

/// A body of unknown size (a stream that never ends) is handed over at
/// once, untouched: no response is held back waiting for its end.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_of_unknown_size_is_not_waited_for() {
    let mode = Arc::new(AtomicU8::new(OK));
    let (layer, svc) = cached(primary(mode, || TestBody::Endless), HttpCacheConfig::new());
    let res = tokio::time::timeout(Duration::from_secs(1), svc.oneshot(get("/stream")))
        .await
        .expect("not delayed")
        .unwrap();
    assert!(matches!(res.body(), TestBody::Endless));
    assert_eq!(layer.health().details["cache_entries"], 0);
}

/// A body that fails while it is read is the primary's failure: the cache
/// answers for it with the last good response.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_failing_while_read_is_answered_from_the_cache() {
    let mode = Arc::new(AtomicU8::new(OK));
    let broken = Arc::new(AtomicU8::new(0));
    let body = {
        let broken = broken.clone();
        move || match broken.load(Ordering::Relaxed) {
            0 => TestBody::from(Bytes::from_static(b"good")),
            _ => TestBody::Broken,
        }
    };
    let (layer, mut svc) = cached(primary(mode, body), HttpCacheConfig::new());
    let res = call(&mut svc, "/o").await.unwrap();
    assert_eq!(read(res).await, "good");
    broken.store(1, Ordering::Relaxed);
    let res = call(&mut svc, "/o").await.unwrap();
    assert_eq!(res.headers()[HEADER], "cache");
    assert_eq!(read(res).await, "good");
    assert_eq!(layer.activations(), 1);
}
