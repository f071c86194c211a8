//! HTTP propagation: header parsing, the server and client layers.
#![cfg(feature = "http")]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use battlement_core::{BoxError, Deadline, DeadlineCarrier, EventKind, EventLog};
use battlement_deadline::http::{
    HeaderError, PropagateDeadlineLayer, ServerDeadlineLayer, format_grpc_timeout, format_millis,
    parse_grpc_timeout, parse_millis,
};
use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

#[test]
fn grpc_every_unit() {
    let cases = [
        ("3H", Duration::from_secs(3 * 3600)),
        ("7M", Duration::from_secs(420)),
        ("12S", Duration::from_secs(12)),
        ("250m", Duration::from_millis(250)),
        ("15u", Duration::from_micros(15)),
        ("99n", Duration::from_nanos(99)),
        ("0m", Duration::ZERO),
        ("00000001S", Duration::from_secs(1)),
        (" 5S ", Duration::from_secs(5)),
        ("99999999H", Duration::from_secs(99_999_999 * 3600)),
    ];
    for (text, want) in cases {
        assert_eq!(parse_grpc_timeout(text.as_bytes()), Ok(want), "{text}");
    }
}

#[test]
fn grpc_rejects_garbage() {
    let cases = [
        ("", HeaderError::Empty),
        ("   ", HeaderError::Empty),
        ("123456789S", HeaderError::TooManyDigits),
        ("-5S", HeaderError::Negative),
        ("10", HeaderError::MissingUnit),
        ("S", HeaderError::NoDigits),
        ("10s", HeaderError::InvalidUnit),
        ("10x", HeaderError::InvalidUnit),
        ("1.5S", HeaderError::InvalidCharacter),
        ("+5S", HeaderError::InvalidCharacter),
        ("soon", HeaderError::InvalidCharacter),
        ("１S", HeaderError::InvalidCharacter),
    ];
    for (text, want) in cases {
        assert_eq!(parse_grpc_timeout(text.as_bytes()), Err(want), "{text:?}");
    }
}

#[test]
fn millis_parse() {
    assert_eq!(parse_millis(b"0"), Ok(Duration::ZERO));
    assert_eq!(parse_millis(b" 1500 "), Ok(Duration::from_millis(1500)));
    assert_eq!(
        parse_millis(b"18446744073709551615"),
        Ok(Duration::from_millis(u64::MAX))
    );
    assert_eq!(
        parse_millis(b"18446744073709551616"),
        Err(HeaderError::Overflow)
    );
    assert_eq!(parse_millis(b""), Err(HeaderError::Empty));
    assert_eq!(parse_millis(b"-1"), Err(HeaderError::Negative));
    assert_eq!(parse_millis(b"1e3"), Err(HeaderError::InvalidCharacter));
    assert_eq!(parse_millis(b"2.5"), Err(HeaderError::InvalidCharacter));
}

#[test]
fn grpc_format_picks_the_finest_unit() {
    assert_eq!(format_grpc_timeout(Duration::ZERO), "0n");
    assert_eq!(
        format_grpc_timeout(Duration::from_nanos(99_999_999)),
        "99999999n"
    );
    assert_eq!(format_grpc_timeout(Duration::from_millis(100)), "100000u");
    assert_eq!(format_grpc_timeout(Duration::from_secs(3600)), "3600000m");
    assert_eq!(
        format_grpc_timeout(Duration::from_secs(86_400 * 365)),
        "31536000S"
    );
    assert_eq!(format_grpc_timeout(Duration::MAX), "99999999H");
    assert_eq!(format_millis(Duration::from_micros(1999)), "1");
    // Beyond what the parser reads, the writer saturates to its largest.
    assert_eq!(
        format_millis(Duration::from_secs(u64::MAX)),
        u64::MAX.to_string()
    );
    assert_eq!(format_millis(Duration::MAX), u64::MAX.to_string());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
        let _ = parse_grpc_timeout(&bytes);
        let _ = parse_millis(&bytes);
    }

    #[test]
    fn parse_never_panics_on_near_misses(s in "[ -]?[0-9]{0,12}[HMSmunx]?") {
        let _ = parse_grpc_timeout(s.as_bytes());
        let _ = parse_millis(s.as_bytes());
    }

    #[test]
    fn grpc_format_then_parse_round_trips(secs in 0u64..359_999_996_400, nanos in 0u32..1_000_000_000) {
        let d = Duration::new(secs, nanos);
        let text = format_grpc_timeout(d);
        let back = parse_grpc_timeout(text.as_bytes()).unwrap();
        // Never more time than was left, and less by under one unit.
        prop_assert!(back <= d);
        let unit = match text.as_bytes()[text.len() - 1] {
            b'n' => Duration::from_nanos(1),
            b'u' => Duration::from_micros(1),
            b'm' => Duration::from_millis(1),
            b'S' => Duration::from_secs(1),
            b'M' => Duration::from_secs(60),
            _ => Duration::from_secs(3600),
        };
        prop_assert!(d - back < unit);
        // Formatting what was parsed gives the same text.
        prop_assert_eq!(format_grpc_timeout(back), text);
    }

    /// D14: whatever the duration, what one hop writes the next can read
    /// (a far-future deadline must not become a 400 downstream), and
    /// never more time than was left.
    #[test]
    fn every_duration_formats_to_what_parses(
        secs in prop_oneof![any::<u64>(), u64::MAX - 1000..=u64::MAX, 0u64..1_000_000],
        nanos in 0u32..1_000_000_000,
    ) {
        let d = Duration::new(secs, nanos);
        let millis = parse_millis(format_millis(d).as_bytes());
        prop_assert!(millis.is_ok(), "{}: {:?}", format_millis(d), millis);
        prop_assert!(millis.unwrap() <= d);
        let text = format_grpc_timeout(d);
        let grpc = parse_grpc_timeout(text.as_bytes());
        prop_assert!(grpc.is_ok(), "{}: {:?}", text, grpc);
        prop_assert!(grpc.unwrap() <= d);
        prop_assert!(text.len() <= 9, "{}", text);
    }

    #[test]
    fn millis_format_then_parse_round_trips(ms in any::<u64>(), sub in 0u64..1_000_000) {
        let d = Duration::from_millis(ms) + Duration::from_nanos(sub);
        let back = parse_millis(format_millis(d).as_bytes()).unwrap();
        prop_assert_eq!(back, Duration::from_millis(ms));
    }
}

type Res = http::Response<String>;

/// A handler that reports the budget it saw, in ms.
fn handler()
-> impl Service<http::Request<()>, Response = Res, Error = Infallible, Future: Send> + Clone {
    service_fn(|req: http::Request<()>| async move {
        let left = req
            .deadline()
            .map(|d| d.remaining().as_millis().to_string())
            .unwrap_or_else(|| "none".into());
        Ok::<_, Infallible>(http::Response::new(left))
    })
}

fn req(headers: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder();
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

async fn call<S>(svc: &mut S, r: http::Request<()>) -> Res
where
    S: Service<http::Request<()>, Response = Res, Error = Infallible>,
{
    svc.ready().await.unwrap().call(r).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn server_reads_both_headers_and_takes_the_smaller() {
    let mut svc = ServerDeadlineLayer::new().layer_on(handler());
    assert_eq!(
        call(&mut svc, req(&[("grpc-timeout", "2S")])).await.body(),
        "2000"
    );
    assert_eq!(
        call(&mut svc, req(&[("x-request-timeout-ms", "750")]))
            .await
            .body(),
        "750"
    );
    assert_eq!(
        call(
            &mut svc,
            req(&[("x-request-timeout-ms", "750"), ("grpc-timeout", "300m")])
        )
        .await
        .body(),
        "300"
    );
    assert_eq!(call(&mut svc, req(&[])).await.body(), "none");
    // Capped by the server's maximum.
    assert_eq!(
        call(&mut svc, req(&[("grpc-timeout", "5H")])).await.body(),
        "60000"
    );
    let mut capped = ServerDeadlineLayer::builder()
        .max(Duration::from_secs(1))
        .default_budget(Some(Duration::from_millis(400)))
        .millis_header(Some(http::HeaderName::from_static("x-budget")))
        .build()
        .unwrap()
        .layer_on(handler());
    assert_eq!(
        call(&mut capped, req(&[("x-budget", "90000")]))
            .await
            .body(),
        "1000"
    );
    assert_eq!(call(&mut capped, req(&[])).await.body(), "400");
    // The default header is no longer read.
    assert_eq!(
        call(&mut capped, req(&[("x-request-timeout-ms", "5")]))
            .await
            .body(),
        "400"
    );
}

#[tokio::test(start_paused = true)]
async fn server_answers_400_for_a_bad_header() {
    let mut svc = ServerDeadlineLayer::new().layer_on(handler());
    for (header, value, reason) in [
        ("grpc-timeout", "123456789S", "more than 8 digits"),
        ("grpc-timeout", "-1S", "negative value"),
        (
            "x-request-timeout-ms",
            "99999999999999999999",
            "value too large",
        ),
        ("x-request-timeout-ms", "soon", "not a decimal number"),
    ] {
        let res = call(&mut svc, req(&[(header, value)])).await;
        assert_eq!(res.status(), 400);
        assert_eq!(res.headers()["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
        assert_eq!(body["header"], header);
        assert_eq!(body["reason"], reason);
        assert_eq!(body["error"], "invalid deadline header");
    }
}

#[tokio::test(start_paused = true)]
async fn server_answers_504_at_once_without_calling_the_handler() {
    let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = called.clone();
    let mut svc = ServerDeadlineLayer::new().layer_on(service_fn(move |_: http::Request<()>| {
        c.store(true, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, Infallible>(http::Response::new(String::new())) }
    }));
    for r in [
        req(&[("grpc-timeout", "0m")]),
        req(&[("x-request-timeout-ms", "0")]),
    ] {
        let res = call(&mut svc, r).await;
        assert_eq!(res.status(), 504);
        let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
        assert_eq!(body["error"], "deadline exceeded");
    }
    // An expired deadline set by an outer layer.
    let mut r = req(&[]);
    r.set_deadline(Deadline::after(Duration::from_millis(1)));
    tokio::time::advance(Duration::from_millis(5)).await;
    assert_eq!(call(&mut svc, r).await.status(), 504);
    assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn client_writes_the_time_left_minus_the_margin() {
    let echo = service_fn(|req: http::Request<()>| async move {
        let get = |h: &str| req.headers().get(h).map(|v| v.to_str().unwrap().to_owned());
        Ok::<_, BoxError>((get("x-request-timeout-ms"), get("grpc-timeout")))
    });
    let mut client = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_millis(500)))
        .layer(
            PropagateDeadlineLayer::new()
                .margin(Duration::from_millis(20))
                .grpc_timeout(true),
        )
        .service(echo);
    let sent = client.ready().await.unwrap().call(req(&[])).await.unwrap();
    assert_eq!(sent, (Some("480".into()), Some("480000u".into())));

    // No deadline: nothing written.
    let mut bare = PropagateDeadlineLayer::new().layer_on(echo);
    let sent = bare.ready().await.unwrap().call(req(&[])).await.unwrap();
    assert_eq!(sent, (None, None));

    // Less left than the margin: a zero budget.
    let mut r = req(&[]);
    r.set_deadline(Deadline::after(Duration::from_millis(3)));
    let sent = bare.ready().await.unwrap().call(r).await.unwrap();
    assert_eq!(sent, (Some("0".into()), None));

    // Client and server agree: the server sees what the client sent.
    let mut chain = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_millis(800)))
        .layer(PropagateDeadlineLayer::new().margin(Duration::ZERO))
        // The wire: only the headers cross it.
        .map_request(|r: http::Request<()>| {
            let mut fresh = http::Request::new(());
            *fresh.headers_mut() = r.headers().clone();
            fresh
        })
        .layer(ServerDeadlineLayer::new())
        .service(service_fn(|req: http::Request<()>| async move {
            let left = req.deadline().unwrap().remaining();
            Ok::<_, Infallible>(http::Response::new(format!("{left:?}")))
        }));
    let res = chain.ready().await.unwrap().call(req(&[])).await.unwrap();
    assert_eq!(res.body(), "800ms");
}

/// A handler that takes `delay` to answer and flags when its future is
/// dropped.
fn slow_handler(
    delay: Duration,
    dropped: Arc<AtomicBool>,
) -> impl Service<http::Request<()>, Response = Res, Error = Infallible> + Clone {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    service_fn(move |_: http::Request<()>| {
        let flag = Flag(dropped.clone());
        async move {
            let _flag = flag;
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(http::Response::new("done".to_owned()))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn server_cuts_a_slow_handler_at_the_budget_and_reports() {
    let log = EventLog::new();
    let layer = ServerDeadlineLayer::builder()
        .name("api")
        .events(log.sink())
        .build()
        .unwrap();
    let handle = layer.handle();
    let dropped = Arc::new(AtomicBool::new(false));
    let mut svc = layer.layer_on(slow_handler(Duration::from_secs(5), dropped.clone()));

    let start = Instant::now();
    let res = call(&mut svc, req(&[("x-request-timeout-ms", "300")])).await;
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(res.status(), 504);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["error"], "deadline exceeded");
    assert_eq!(body["header"], "x-request-timeout-ms");
    assert_eq!(body["budget_ms"], 300);
    // The handler was cancelled.
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(
        log.kinds(),
        vec![EventKind::DeadlineExceeded {
            budget: Duration::from_millis(300),
            elapsed: Duration::from_millis(300),
        }]
    );
    assert_eq!(log.events()[0].component.as_ref(), "api");
    assert_eq!(handle.deadline_exceeded(), 1);

    // A budget spent on arrival is a hit too.
    let res = call(&mut svc, req(&[("grpc-timeout", "0n")])).await;
    assert_eq!(res.status(), 504);
    assert_eq!(handle.deadline_exceeded(), 2);
    assert_eq!(log.kinds().len(), 2);
}

/// A leaked server layer (a server's, made once) still cuts and counts,
/// and its handle sees the hits of every copy of its service.
#[tokio::test(start_paused = true)]
async fn a_leaked_server_layer_cuts_and_counts_the_same() {
    use battlement_core::Leak;

    let layer = ServerDeadlineLayer::builder()
        .name("api")
        .max(Duration::from_secs(1))
        .build()
        .unwrap()
        .leak();
    let handle = layer.handle();
    let dropped = Arc::new(AtomicBool::new(false));
    let svc = layer.layer_on(slow_handler(Duration::from_secs(5), dropped.clone()));

    // The header asks for 5 s; the cap (kept through the leak) cuts at 1 s.
    let start = Instant::now();
    let res = call(&mut svc.clone(), req(&[("x-request-timeout-ms", "5000")])).await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(res.status(), 504);
    assert!(dropped.load(Ordering::SeqCst));
    let res = call(&mut svc.clone(), req(&[("grpc-timeout", "0n")])).await;
    assert_eq!(res.status(), 504);
    assert_eq!(handle.deadline_exceeded(), 2);
}

#[tokio::test(start_paused = true)]
async fn server_passes_a_handler_that_answers_in_time() {
    let dropped = Arc::new(AtomicBool::new(false));
    let mut svc = ServerDeadlineLayer::new()
        .layer_on(slow_handler(Duration::from_millis(290), dropped.clone()));
    let start = Instant::now();
    let res = call(&mut svc, req(&[("grpc-timeout", "300m")])).await;
    assert_eq!(start.elapsed(), Duration::from_millis(290));
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), "done");

    // No budget at all: no timer, however long the handler takes.
    let start = Instant::now();
    let res = call(&mut svc, req(&[])).await;
    assert_eq!(res.body(), "done");
    assert_eq!(start.elapsed(), Duration::from_millis(290));
    let mut unbounded =
        ServerDeadlineLayer::new().layer_on(slow_handler(Duration::from_secs(600), dropped));
    let start = Instant::now();
    assert_eq!(call(&mut unbounded, req(&[])).await.body(), "done");
    assert_eq!(start.elapsed(), Duration::from_secs(600));
}

#[tokio::test(start_paused = true)]
async fn server_enforces_the_default_budget_and_the_cap() {
    let dropped = Arc::new(AtomicBool::new(false));
    let mut svc = ServerDeadlineLayer::builder()
        .default_budget(Some(Duration::from_millis(200)))
        .max(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer_on(slow_handler(Duration::from_secs(5), dropped));
    let start = Instant::now();
    let res = call(&mut svc, req(&[])).await;
    assert_eq!(
        (res.status().as_u16(), start.elapsed()),
        (504, Duration::from_millis(200))
    );
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["header"], serde_json::Value::Null);

    let start = Instant::now();
    let res = call(&mut svc, req(&[("grpc-timeout", "1H")])).await;
    assert_eq!(
        (res.status().as_u16(), start.elapsed()),
        (504, Duration::from_secs(1))
    );
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["budget_ms"], 1000);
}

/// D4: a default budget and a cap of `Duration::MAX` are accepted, and
/// a request without a deadline header gets a far-future deadline
/// instead of panicking on `now + budget`.
#[tokio::test(start_paused = true)]
async fn server_saturates_the_longest_budgets() {
    for enforce in [true, false] {
        let mut svc = ServerDeadlineLayer::builder()
            .max(Duration::MAX)
            .default_budget(Some(Duration::MAX))
            .enforce(enforce)
            .build()
            .unwrap()
            .layer_on(handler());
        for headers in [
            &[][..],
            &[("grpc-timeout", "99999999H")],
            &[("x-request-timeout-ms", "18446744073709551615")],
        ] {
            let res = call(&mut svc, req(headers)).await;
            assert_eq!(res.status(), 200, "{headers:?}");
            let left: u128 = res.body().parse().unwrap();
            // About thirty years or more: far enough to mean "unbounded".
            assert!(left > 86_400_000 * 365 * 29, "{headers:?}: {left}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn server_without_enforcement_only_reads_the_deadline() {
    let dropped = Arc::new(AtomicBool::new(false));
    let mut svc = ServerDeadlineLayer::builder()
        .enforce(false)
        .build()
        .unwrap()
        .layer_on(slow_handler(Duration::from_secs(1), dropped.clone()));
    let start = Instant::now();
    let res = call(&mut svc, req(&[("x-request-timeout-ms", "100")])).await;
    assert_eq!(res.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    // A spent budget is still answered at once.
    let res = call(&mut svc, req(&[("x-request-timeout-ms", "0")])).await;
    assert_eq!(res.status(), 504);
}

#[tokio::test(start_paused = true)]
async fn server_answers_grpc_requests_with_grpc_status() {
    let dropped = Arc::new(AtomicBool::new(false));
    let mut svc =
        ServerDeadlineLayer::new().layer_on(slow_handler(Duration::from_secs(5), dropped.clone()));
    let grpc = |timeout: &str| {
        req(&[
            ("content-type", "application/grpc+proto"),
            ("grpc-timeout", timeout),
        ])
    };
    for (timeout, status, message) in [
        ("soon", "3", "grpc-timeout: not a decimal number"),
        (
            "0m",
            "4",
            "grpc-timeout: the caller's time budget was already spent",
        ),
        (
            "250m",
            "4",
            "grpc-timeout: the handler did not answer within the caller's time budget",
        ),
    ] {
        let res = call(&mut svc, grpc(timeout)).await;
        assert_eq!(res.status(), 200, "{timeout}");
        assert_eq!(res.headers()["content-type"], "application/grpc");
        assert_eq!(res.headers()["grpc-status"], status, "{timeout}");
        assert_eq!(res.headers()["grpc-message"], message);
        assert_eq!(res.body(), "");
    }
    assert!(dropped.load(Ordering::SeqCst));
}

trait LayerOn {
    fn layer_on<S>(self, svc: S) -> <Self as tower::Layer<S>>::Service
    where
        Self: tower::Layer<S> + Sized,
    {
        tower::Layer::layer(&self, svc)
    }
}
impl LayerOn for ServerDeadlineLayer {}
impl LayerOn for PropagateDeadlineLayer {}

/// A timeout the caller already wrote (a tonic `set_timeout`, a budget
/// passed on) is never loosened: the header sent is the smaller of it and
/// the time left; one that does not parse is replaced.
#[tokio::test(start_paused = true)]
async fn client_never_loosens_a_timeout_already_set() {
    let echo = service_fn(|req: http::Request<()>| async move {
        let get = |h: &str| req.headers().get(h).map(|v| v.to_str().unwrap().to_owned());
        Ok::<_, BoxError>((get("x-request-timeout-ms"), get("grpc-timeout")))
    });
    let mut client = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .layer(
            PropagateDeadlineLayer::new()
                .margin(Duration::ZERO)
                .grpc_timeout(true),
        )
        .service(echo);
    let tight = req(&[("grpc-timeout", "200m"), ("x-request-timeout-ms", "150")]);
    let sent = client.ready().await.unwrap().call(tight).await.unwrap();
    assert_eq!(sent, (Some("150".into()), Some("200000u".into())));

    let loose = req(&[("grpc-timeout", "5S"), ("x-request-timeout-ms", "9000")]);
    let sent = client.ready().await.unwrap().call(loose).await.unwrap();
    assert_eq!(sent, (Some("1000".into()), Some("1000000u".into())));

    let garbage = req(&[("grpc-timeout", "soon"), ("x-request-timeout-ms", "-1")]);
    let sent = client.ready().await.unwrap().call(garbage).await.unwrap();
    assert_eq!(sent, (Some("1000".into()), Some("1000000u".into())));
}

/// Its errors are boxed like every layer's, so a layer whose error is
/// `BoxError` stacks below it, and the error keeps its type.
#[tokio::test(start_paused = true)]
async fn client_boxes_errors_so_layers_stack_below_it() {
    let failing = service_fn(|_: http::Request<()>| async {
        Err::<(), _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    });
    let mut client = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .layer(PropagateDeadlineLayer::new())
        .layer(AttemptTimeoutLayer::new(Duration::from_millis(500)))
        .service(failing);
    let err = client
        .ready()
        .await
        .unwrap()
        .call(req(&[]))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<std::io::Error>().unwrap().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}
