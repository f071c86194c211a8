//! `HealthService` served by hyper on a real socket (127.0.0.1:0),
//! HTTP/1.1 and HTTP/2 prior knowledge (h2c) on the same port, under
//! abuse: malformed requests, oversize and endless control bodies, event
//! stream clients that never read, and attempts to get past the bearer
//! token. Every answer's status is checked exactly, and `GET /health`
//! must keep answering `200` during and after the abuse.
//!
//! HTTP/1.1 malformations go over raw TCP (bytes a client library would
//! refuse to write); HTTP/2 goes through hyper's client. Nothing sleeps
//! to synchronize: where a timeout is the behaviour under test (the body
//! timeout) it is configured short, and every test is bounded by
//! `tokio::time::timeout`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{
    Component, ComponentHealth, ComponentKind, Control, ControlError, EventKind, HealthStatus, Name,
};
use battlement_http::HealthService;
use battlement_registry::Registry;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tower::ServiceExt;

const TOKEN: &str = "s3cret";
const BODY_TIMEOUT: Duration = Duration::from_millis(150);
/// The bound on each whole test: far above what it needs, so only a hang
/// (the bug) reaches it.
const BOUND: Duration = Duration::from_secs(20);

/// A component that records the controls applied to it.
struct Recorder {
    applied: Mutex<Vec<&'static str>>,
}

impl Component for Recorder {
    fn name(&self) -> &str {
        "db"
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

struct Server {
    addr: SocketAddr,
    registry: Registry,
    db: Arc<Recorder>,
}

impl Server {
    fn applied(&self) -> Vec<&'static str> {
        self.db.applied.lock().unwrap().clone()
    }
}

/// Serves a `HealthService` (controls on, bearer token, short body
/// timeout) over hyper-util's auto builder: HTTP/1.1 or h2c per
/// connection. `send_buffer` shrinks the accepted sockets' send buffer
/// (inherited from the listener), so a client that does not read blocks
/// the server's writes quickly.
async fn serve(event_capacity: usize, send_buffer: Option<u32>) -> Server {
    let registry = Registry::builder()
        .event_capacity(event_capacity)
        .build()
        .unwrap();
    let db = Arc::new(Recorder {
        applied: Mutex::new(Vec::new()),
    });
    registry.register(&db).unwrap();
    let svc = HealthService::new(registry.clone())
        .with_bearer_token(TOKEN)
        .with_body_timeout(BODY_TIMEOUT);

    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = send_buffer {
        socket.set_send_buffer_size(size).unwrap();
    }
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1024).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let svc = svc.clone();
            tokio::spawn(async move {
                let hyper_svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    svc.clone().oneshot(req)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper_svc)
                    .await;
            });
        }
    });
    Server { addr, registry, db }
}

/// A response read off a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    /// The head, lowercased (status line and headers).
    head: String,
    body: String,
}

impl Raw {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response: the head, then `content-length` bytes of body (or
/// to the end of the stream without one).
async fn read_response(stream: &mut (impl AsyncReadExt + Unpin)) -> Raw {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let mut body = buf.split_off(head_end);
    loop {
        if length.is_some_and(|len| body.len() >= len) {
            break;
        }
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => body.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    Raw {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Writes `bytes` on a new connection and reads the answer.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_response(&mut stream).await
}

/// A request over HTTP/1.1 (raw), closing the connection after it.
fn h1(method: &str, path: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut s = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    if !body.is_empty() {
        s.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    s.push_str("\r\n");
    s.push_str(body);
    s.into_bytes()
}

/// `GET /health` over HTTP/1.1 must answer 200 with the report.
async fn health_h1(addr: SocketAddr) {
    let r = raw(addr, &h1("GET", "/health", &[], "")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["status"], "healthy", "{r:?}");
}

/// A request body fed from a channel: ends when every sender is dropped,
/// never ends while one is kept.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

fn channel_body() -> (mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, ChannelBody { rx })
}

fn full(bytes: impl Into<Bytes>) -> ChannelBody {
    let (tx, body) = channel_body();
    tx.try_send(bytes.into()).unwrap();
    body
}

fn empty() -> ChannelBody {
    channel_body().1
}

type H2 = hyper::client::conn::http2::SendRequest<ChannelBody>;

/// An h2c (prior knowledge) connection. `window` caps what the server may
/// send before the client reads (stream and connection windows).
async fn h2(addr: SocketAddr, window: Option<u32>) -> H2 {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    if let Some(w) = window {
        builder
            .initial_stream_window_size(w)
            .initial_connection_window_size(w);
    }
    let (sender, conn) = builder.handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

struct H2Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: serde_json::Value,
}

async fn send_h2(sender: &mut H2, req: Request<ChannelBody>) -> H2Answer {
    sender.ready().await.unwrap();
    let res = sender.send_request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    H2Answer {
        status: parts.status,
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    }
}

fn h2_req(method: Method, path: &str, auth: &[&str], body: ChannelBody) -> Request<ChannelBody> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://test{path}"));
    for a in auth {
        req = req.header("authorization", *a);
    }
    req.body(body).unwrap()
}

async fn health_h2(sender: &mut H2) {
    let r = send_h2(sender, h2_req(Method::GET, "/health", &[], empty())).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "healthy");
}

/// Bad paths, percent-encoding garbage, overlong paths, bad methods and
/// bad request lines, over HTTP/1.1 (raw bytes) and h2c: each gets its
/// exact status, from hyper for what cannot be parsed and from
/// `HealthService` (with a JSON error) for the rest.
#[tokio::test]
async fn malformed_requests_get_their_exact_status() {
    tokio::time::timeout(BOUND, async {
        let s = serve(64, None).await;
        let long = |n: usize| format!("/health/{}", "a".repeat(n));
        // (request bytes, status, JSON error code when HealthService answers)
        let cases: Vec<(Vec<u8>, u16, Option<&str>)> = vec![
            (h1("GET", "/nothing", &[], ""), 404, Some("not_found")),
            (h1("GET", "/", &[], ""), 404, Some("not_found")),
            (h1("GET", "/health/nobody", &[], ""), 404, Some("not_found")),
            (h1("GET", "/health/%zz", &[], ""), 400, Some("bad_path")),
            (h1("GET", "/health/%", &[], ""), 400, Some("bad_path")),
            (h1("GET", "/health/a%4", &[], ""), 400, Some("bad_path")),
            (h1("GET", "/health/%%41", &[], ""), 400, Some("bad_path")),
            (h1("GET", "/health/%ff%fe", &[], ""), 400, Some("bad_path")),
            (h1("GET", "/health/%C0%AF", &[], ""), 400, Some("bad_path")),
            (h1("GET", "/health/%00", &[], ""), 404, Some("not_found")),
            (
                h1("GET", "/health/../../etc/passwd", &[], ""),
                404,
                Some("not_found"),
            ),
            (
                h1("POST", "/health/../health/db/open", &[], ""),
                401,
                Some("unauthenticated"),
            ),
            (
                h1("GET", "/health?kind=%zz", &[], ""),
                400,
                Some("bad_query"),
            ),
            (
                h1("GET", "/health?kind=Breaker", &[], ""),
                400,
                Some("bad_query"),
            ),
            (h1("GET", "/health?x=1", &[], ""), 400, Some("bad_query")),
            (
                h1("GET", "/health?status=healthy&status=healthy", &[], ""),
                400,
                Some("bad_query"),
            ),
            // Long, but within hyper's URI limit: HealthService answers.
            (h1("GET", &long(60_000), &[], ""), 404, Some("not_found")),
            // Past hyper's 65534-byte URI limit: hyper answers 414.
            (h1("GET", &long(70_000), &[], ""), 414, None),
            // Past hyper's read buffer (~400 KiB) for a request head: 431.
            (h1("GET", &long(500_000), &[], ""), 431, None),
            // Methods: unknown tokens are methods hyper passes on (405
            // with `Allow`); bytes that are no token are a parse error.
            (
                h1("FROB", "/health", &[], ""),
                405,
                Some("method_not_allowed"),
            ),
            (
                h1("DELETE", "/health/db", &[], ""),
                405,
                Some("method_not_allowed"),
            ),
            (
                h1("PUT", "/health/db/open", &[], ""),
                405,
                Some("method_not_allowed"),
            ),
            (
                h1("GET", "/health/db/open", &[], ""),
                405,
                Some("method_not_allowed"),
            ),
            (
                h1("POST", "/metrics", &[], ""),
                405,
                Some("method_not_allowed"),
            ),
            (
                h1("POST", "/health/events", &[], ""),
                405,
                Some("method_not_allowed"),
            ),
            (h1("G(T", "/health", &[], ""), 400, None),
            (h1("G\x01T", "/health", &[], ""), 400, None),
            (
                b"GET /health HTTP/9.9\r\nhost: t\r\n\r\n".to_vec(),
                400,
                None,
            ),
            (b"GET /health\r\n\r\n".to_vec(), 400, None),
            (
                b"GET /hea lth HTTP/1.1\r\nhost: t\r\n\r\n".to_vec(),
                400,
                None,
            ),
            (
                b"GET /health/\xff HTTP/1.1\r\nhost: t\r\n\r\n".to_vec(),
                400,
                None,
            ),
            // hyper reads this as authority-form (its path is `/`): no
            // route.
            (
                b"GET health HTTP/1.1\r\nhost: t\r\n\r\n".to_vec(),
                404,
                Some("not_found"),
            ),
            (
                b"POST health HTTP/1.1\r\nhost: t\r\n\r\n".to_vec(),
                404,
                Some("not_found"),
            ),
            (
                b"GET * HTTP/1.1\r\nhost: t\r\n\r\n".to_vec(),
                404,
                Some("not_found"),
            ),
            (
                b"GET http://evil/health/db HTTP/1.1\r\nhost: t\r\n\r\n".to_vec(),
                200,
                None,
            ),
            (
                b"GET /health HTTP/1.1\r\nhost: t\r\nno colon here\r\n\r\n".to_vec(),
                400,
                None,
            ),
            (
                b"GET /health HTTP/1.1\r\nhost: t\r\nx: a\r\n b\r\n\r\n".to_vec(),
                400,
                None,
            ),
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
                400,
                None,
            ),
        ];
        let sent = cases.len();
        for (bytes, want, code) in cases {
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
            let r = raw(s.addr, &bytes).await;
            assert_eq!(r.status, want, "{shown:?}: {}", r.head);
            if let Some(code) = code {
                assert!(
                    r.head.contains("content-type: application/json"),
                    "{shown:?}"
                );
                assert_eq!(r.json()["error"], code, "{shown:?}: {}", r.body);
                assert!(r.json()["message"].is_string(), "{shown:?}");
            }
            if want == 405 {
                assert!(r.head.contains("\r\nallow: "), "{shown:?}: {}", r.head);
            }
        }
        health_h1(s.addr).await;

        // The same over h2c, on one connection.
        let mut c = h2(s.addr, None).await;
        for (method, path, want, code) in [
            (Method::GET, "/nothing", 404, "not_found"),
            (Method::GET, "/health/%zz", 400, "bad_path"),
            (Method::GET, "/health/%ff", 400, "bad_path"),
            (Method::GET, "/health?kind=%", 400, "bad_query"),
            (Method::DELETE, "/health", 405, "method_not_allowed"),
            (Method::PATCH, "/health/db/reset", 405, "method_not_allowed"),
            (
                Method::from_bytes(b"FROB").unwrap(),
                "/metrics",
                405,
                "method_not_allowed",
            ),
            (Method::POST, "/health/db%2Fopen", 405, "method_not_allowed"),
            (Method::POST, "/health/db/%6Fpen", 401, "unauthenticated"),
        ] {
            let r = send_h2(&mut c, h2_req(method.clone(), path, &[], empty())).await;
            assert_eq!(r.status, want, "h2 {method} {path}");
            assert_eq!(r.body["error"], code, "h2 {method} {path}");
        }
        // A path within hyper's h2 header-list limit (16 KiB) reaches the
        // service; past it the server refuses the headers.
        let r = send_h2(&mut c, h2_req(Method::GET, &long(8_000), &[], empty())).await;
        assert_eq!(r.status, 404);
        let big = h2_req(Method::GET, &long(40_000), &[], empty());
        c.ready().await.unwrap();
        match c.send_request(big).await {
            Ok(res) => assert_eq!(res.status(), 431),
            Err(e) => assert!(e.to_string().contains("stream"), "{e}"),
        }
        // Whatever the connection went through, a new one is served.
        let mut c = h2(s.addr, None).await;
        health_h2(&mut c).await;
        health_h1(s.addr).await;
        assert!(
            s.applied().is_empty(),
            "no control applied: {:?}",
            s.applied()
        );
        sent + 9 + 2
    })
    .await
    .expect("bounded");
}

/// The raw bytes of `POST /health/db/level` with `headers`, without a
/// body.
fn level_head(headers: &[&str]) -> String {
    let mut s = format!(
        "POST /health/db/level HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {TOKEN}\r\n"
    );
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s
}

/// Control bodies: oversize ones are `413` (announced by
/// `content-length`, or streamed past the 16 KiB cap), endless ones are
/// `408` at the body timeout, malformed ones `400`; none applies the
/// control, and none is read before the request is authorized. Over
/// HTTP/1.1 and h2c.
#[tokio::test]
async fn oversize_and_endless_bodies_are_refused() {
    tokio::time::timeout(BOUND, async {
        let s = serve(64, None).await;

        // Announced oversize: refused from the header, nothing read.
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        let head = level_head(&["content-length: 1073741824"]);
        stream.write_all(head.as_bytes()).await.unwrap();
        let r = read_response(&mut stream).await;
        assert_eq!(r.status, 413, "{r:?}");
        assert_eq!(r.json()["error"], "payload_too_large");
        drop(stream);

        // Streamed oversize (chunked, no length): refused once past the
        // cap. The writer goes on until the server stops reading.
        let stream = TcpStream::connect(s.addr).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let writer = tokio::spawn(async move {
            let head = level_head(&["transfer-encoding: chunked"]);
            wr.write_all(head.as_bytes()).await?;
            let chunk = format!("1000\r\n{}\r\n", "x".repeat(0x1000));
            for _ in 0..1024 {
                wr.write_all(chunk.as_bytes()).await?;
            }
            Ok::<_, std::io::Error>(wr)
        });
        let r = read_response(&mut rd).await;
        assert_eq!(r.status, 413, "{r:?}");
        assert_eq!(r.json()["error"], "payload_too_large");
        writer.abort();

        // Endless: the first bytes of a chunked body, then nothing.
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        let head = level_head(&["transfer-encoding: chunked"]);
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(b"5\r\n{\"lev\r\n").await.unwrap();
        let r = read_response(&mut stream).await;
        assert_eq!(r.status, 408, "{r:?}");
        assert_eq!(r.json()["error"], "request_timeout");
        drop(stream);

        // Endless with a length that never arrives.
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        let head = level_head(&["content-length: 100"]);
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(b"{\"level\":").await.unwrap();
        let r = read_response(&mut stream).await;
        assert_eq!(r.status, 408, "{r:?}");
        drop(stream);

        // Endless but unauthenticated: refused at once, the body unread.
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        let head = "POST /health/db/level HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n1\r\n{\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let r = read_response(&mut stream).await;
        assert_eq!(r.status, 401, "{r:?}");
        drop(stream);

        // Malformed bodies.
        let auth = format!("authorization: Bearer {TOKEN}");
        for (body, want) in [
            ("{\"level\":\"severe\"", 400),
            ("{\"level\":7}", 400),
            ("{\"level\":\"apocalyptic\"}", 400),
            ("{}", 400),
            ("\u{feff}{\"level\":\"severe\"}", 400),
            ("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 400),
        ] {
            let r = raw(s.addr, &h1("POST", "/health/db/level", &[&auth], body)).await;
            assert_eq!(r.status, want, "{body:?}: {r:?}");
            assert_eq!(r.json()["error"], "bad_request", "{body:?}");
        }
        let deep = "[".repeat(15_000);
        let r = raw(s.addr, &h1("POST", "/health/db/level", &[&auth], &deep)).await;
        assert_eq!(r.status, 400, "deep nesting: {r:?}");
        assert!(s.applied().is_empty(), "{:?}", s.applied());
        health_h1(s.addr).await;

        // h2c: oversize by content-length, streamed oversize, endless.
        let auth = format!("Bearer {TOKEN}");
        let mut c = h2(s.addr, None).await;
        let (tx, body) = channel_body();
        let mut req = h2_req(Method::POST, "/health/db/level", &[&auth], body);
        req.headers_mut()
            .insert("content-length", http::HeaderValue::from_static("1000000"));
        let r = send_h2(&mut c, req).await;
        assert_eq!(r.status, 413);
        assert_eq!(r.body["error"], "payload_too_large");
        drop(tx);

        let (tx, body) = channel_body();
        let feeder = tokio::spawn(async move {
            let chunk = Bytes::from(vec![b' '; 4096]);
            while tx.send(chunk.clone()).await.is_ok() {}
        });
        let r = send_h2(
            &mut c,
            h2_req(Method::POST, "/health/db/level", &[&auth], body),
        )
        .await;
        assert_eq!(r.status, 413);
        feeder.abort();

        let (tx, body) = channel_body();
        tx.send(Bytes::from_static(b"{\"level\"")).await.unwrap();
        let r = send_h2(
            &mut c,
            h2_req(Method::POST, "/health/db/level", &[&auth], body),
        )
        .await;
        assert_eq!(r.status, 408);
        assert_eq!(r.body["error"], "request_timeout");
        drop(tx);

        // A good body after all that is applied.
        let good = full(&br#"{"level":"severe"}"#[..]);
        let r = send_h2(&mut c, h2_req(Method::POST, "/health/db/level", &[&auth], good)).await;
        assert_eq!(r.status, 200);
        assert_eq!(s.applied(), ["set_level"]);
        health_h2(&mut c).await;
        health_h1(s.addr).await;
    })
    .await
    .expect("bounded");
}

/// Ways around the bearer token, over HTTP/1.1 (header names in any
/// case, the header twice, folded lines) and h2c: only the exact token
/// after the `Bearer` scheme (any case) applies a control.
#[tokio::test]
async fn auth_bypass_attempts_are_refused() {
    tokio::time::timeout(BOUND, async {
        let s = serve(64, None).await;
        let bad_values = [
            "",
            "Bearer",
            "Bearer ",
            "Bearer  ",
            "Bearer s3cre",
            "Bearer s3crett",
            "Bearer xs3cret",
            "Bearer S3CRET",
            "Bearer s3cret,",
            "Bearer s3cret x",
            "Bearer \"s3cret\"",
            "Bearer s3cret;",
            "Bearer%20s3cret",
            "Bearers3cret",
            "Bearer\ts3cret",
            "xBearer s3cret",
            "Bearer: s3cret",
            "Basic s3cret",
            "Basic czNjcmV0",
            "Token s3cret",
            "Digest s3cret",
            "s3cret",
            "Bearer Bearer s3cret",
            "Bearer s3cret Bearer s3cret",
            "Bearer s3crets3cret",
        ];
        let mut sent = 0;
        for value in bad_values {
            let header = format!("authorization: {value}");
            let r = raw(s.addr, &h1("POST", "/health/db/open", &[&header], "")).await;
            sent += 1;
            assert_eq!(r.status, 401, "{value:?}: {r:?}");
            assert_eq!(r.json()["error"], "unauthenticated", "{value:?}");
            assert!(r.head.contains("www-authenticate: bearer"), "{value:?}");
        }
        let good = format!("Bearer {TOKEN}");
        for headers in [
            // The token elsewhere than `Authorization`.
            vec![format!("proxy-authorization: {good}")],
            vec![format!("x-authorization: {good}")],
            vec![format!("cookie: token={TOKEN}")],
            // Twice, in any spelling of the name, right or wrong.
            vec![
                format!("authorization: {good}"),
                format!("authorization: {good}"),
            ],
            vec![
                format!("Authorization: {good}"),
                format!("AUTHORIZATION: {good}"),
            ],
            vec![
                format!("authorization: {good}"),
                "authorization: Bearer no".into(),
            ],
            vec![
                "authorization: Bearer no".into(),
                format!("authorization: {good}"),
            ],
            vec![format!("authorization: {good}"), "authorization:".into()],
        ] {
            let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            let r = raw(s.addr, &h1("POST", "/health/db/open", &refs, "")).await;
            sent += 1;
            assert_eq!(r.status, 401, "{headers:?}: {r:?}");
        }
        // The token in the query is no credential.
        let r = raw(
            s.addr,
            &h1("POST", "/health/db/open?access_token=s3cret", &[], ""),
        )
        .await;
        sent += 1;
        assert_eq!(r.status, 401);
        // A folded (obs-fold) header line is no header hyper accepts.
        let folded =
            b"POST /health/db/open HTTP/1.1\r\nhost: t\r\nauthorization: Bearer\r\n s3cret\r\n\r\n";
        let r = raw(s.addr, folded).await;
        sent += 1;
        assert_eq!(r.status, 400, "{r:?}");
        // A NUL inside the value: refused by hyper before routing.
        let r = raw(
            s.addr,
            b"POST /health/db/open HTTP/1.1\r\nhost: t\r\nauthorization: Bearer s3cret\0\r\n\r\n",
        )
        .await;
        sent += 1;
        assert_eq!(r.status, 400, "{r:?}");
        // Resetting everything needs the token as much.
        let r = raw(
            s.addr,
            &h1("POST", "/health/reset", &["authorization: Bearer "], ""),
        )
        .await;
        sent += 1;
        assert_eq!(r.status, 401);
        assert!(s.applied().is_empty(), "{:?}", s.applied());

        // The right token, in the spellings the scheme allows: applied.
        for header in [
            format!("authorization: {good}"),
            format!("AUTHORIZATION: {good}"),
            format!("Authorization: bearer {TOKEN}"),
            format!("authorization: BEARER    {TOKEN}"),
        ] {
            let r = raw(s.addr, &h1("POST", "/health/db/open", &[&header], "")).await;
            sent += 1;
            assert_eq!(r.status, 200, "{header:?}: {r:?}");
        }
        assert_eq!(s.applied().len(), 4);

        // h2c: the same refusals.
        let mut c = h2(s.addr, None).await;
        for value in bad_values
            .iter()
            .filter(|v| http::HeaderValue::from_str(v).is_ok())
        {
            let r = send_h2(
                &mut c,
                h2_req(Method::POST, "/health/db/close", &[value], empty()),
            )
            .await;
            sent += 1;
            assert_eq!(r.status, 401, "h2 {value:?}");
            assert_eq!(r.headers["www-authenticate"], "Bearer");
        }
        for pair in [
            [&*good, &*good],
            [&*good, "Bearer no"],
            ["Bearer no", &*good],
        ] {
            let r = send_h2(
                &mut c,
                h2_req(Method::POST, "/health/db/close", &pair, empty()),
            )
            .await;
            sent += 1;
            assert_eq!(r.status, 401, "h2 {pair:?}");
        }
        assert_eq!(s.applied().len(), 4, "no h2 refusal applied a control");
        let r = send_h2(
            &mut c,
            h2_req(Method::POST, "/health/db/close", &[&good], empty()),
        )
        .await;
        sent += 1;
        assert_eq!(r.status, 200);
        assert_eq!(
            s.applied(),
            [
                "force_open",
                "force_open",
                "force_open",
                "force_open",
                "close"
            ]
        );
        health_h2(&mut c).await;
        health_h1(s.addr).await;
        sent
    })
    .await
    .expect("bounded");
}

/// Opens `GET /health/events` over HTTP/1.1 with a small receive buffer
/// and reads only until the opening comment: the stream is subscribed.
/// The caller then never reads it (or only much later).
async fn stuck_sse_h1(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(b"GET /health/events HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 256];
    while find(&seen, b": battlement events").is_none() {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"), "{seen:?}");
    stream
}

/// Many event-stream clients that never read (HTTP/1.1 with a small
/// receive buffer, h2c with a 4 KiB window) while thousands of events
/// are emitted: emitting never waits, `GET /health` answers 200 during
/// and after, a new client still gets new events, and a stuck client
/// that reads at last is told `event: lagged` (the server dropped what it
/// could not hold for it, and counted it).
#[tokio::test]
async fn slow_event_stream_clients_hold_nothing_back() {
    tokio::time::timeout(BOUND, async {
        let s = serve(64, Some(4096)).await;
        let mut stuck = Vec::new();
        for _ in 0..24 {
            stuck.push(stuck_sse_h1(s.addr).await);
        }
        // h2c streams that are never read, 8 on one connection with a
        // 4 KiB window, and their response bodies held unread.
        let mut c = h2(s.addr, Some(4096)).await;
        let mut stuck_h2 = Vec::new();
        for _ in 0..8 {
            c.ready().await.unwrap();
            let res = c
                .send_request(h2_req(Method::GET, "/health/events", &[], empty()))
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            stuck_h2.push(res);
        }

        let sink = s.registry.event_sink();
        let name = Name::from("db");
        let mut emitted = 0u64;
        for round in 0..20 {
            for _ in 0..250 {
                sink.emit(&name, || EventKind::Reset);
                emitted += 1;
            }
            // Let the connections write what their sockets take.
            tokio::task::yield_now().await;
            if round % 5 == 0 {
                health_h1(s.addr).await;
                let mut fresh = h2(s.addr, None).await;
                health_h2(&mut fresh).await;
            }
        }
        assert_eq!(emitted, 5000);
        health_h1(s.addr).await;

        // A new client gets a new event at once.
        let mut fresh = stuck_sse_h1(s.addr).await;
        sink.emit(&name, || EventKind::Reset);
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while find(&seen, b"event: reset").is_none() {
            let n = fresh.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&chunk[..n]);
        }
        assert!(
            find(&seen, b"id: 5001").is_some(),
            "{:?}",
            String::from_utf8_lossy(&seen)
        );

        // A stuck client reads at last: what the server could not hold
        // for it is told as lagged.
        let mut first = stuck.swap_remove(0);
        let mut seen = Vec::new();
        while find(&seen, b"event: lagged\ndata: {\"missed\":").is_none() {
            let n = first.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&chunk[..n]);
            // Keep memory small: only the tail matters.
            if seen.len() > 1 << 16 {
                seen.drain(..seen.len() - 64);
            }
        }
        assert!(s.registry.events_lagged() > 0);
        health_h1(s.addr).await;
        // (Not on `c`: its stuck streams hold its connection window.)
        let mut fresh = h2(s.addr, None).await;
        health_h2(&mut fresh).await;
        drop(stuck);
        drop(stuck_h2);
        health_h1(s.addr).await;
    })
    .await
    .expect("bounded");
}
