//! What the HTTP examples share: serving a router on `127.0.0.1:0` and a
//! small hyper client that answers `(status, headers, body)`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A plain hyper-util client over HTTP/1.1.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A new [`HttpClient`].
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Serves `router` on `127.0.0.1` at a port the system picks, in a
/// background task, and returns the address.
///
/// # Errors
///
/// When no port can be bound.
pub async fn serve(router: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        // The server ends with the process (or the test's runtime).
        let _ = axum::serve(listener, router).await;
    });
    Ok(addr)
}

/// One answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
}

impl Answer {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `req` with `client` and reads the whole answer, giving up after
/// 10 s.
///
/// # Errors
///
/// When the request fails or takes longer.
pub async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> Result<Answer, String> {
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "no answer in 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A `GET` of `url` with `headers`.
///
/// # Panics
///
/// If `url` or a header is not valid.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Full::default()).expect("a valid request")
}

/// A `POST` of `body` to `url` with `headers`.
///
/// # Panics
///
/// If `url` or a header is not valid.
pub fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut req = Request::post(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Full::from(body.to_string()))
        .expect("a valid request")
}
