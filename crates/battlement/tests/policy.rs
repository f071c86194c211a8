//! `Policy` on paused time: the canonical order, the one classifier, the
//! registry names and the checks at `build()`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use battlement::prelude::*;
use battlement::{Conflict, Toggle};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

fn refused() -> BoxError {
    io::Error::from(io::ErrorKind::ConnectionRefused).into()
}

/// A backend that fails every call with a retryable network error and
/// counts the calls.
// `use<>`: the service holds its own `Arc`, not the borrow (a policy's
// retry keeps a spare copy of what it wraps, so needs it `'static`).
fn failing(
    calls: &Arc<AtomicU32>,
) -> impl Service<u32, Response = u32, Error = BoxError> + Clone + use<> {
    let calls = calls.clone();
    service_fn(move |_: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err::<u32, BoxError>(refused()) }
    })
}

#[tokio::test(start_paused = true)]
async fn the_total_deadline_cuts_the_retries() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let policy = Policy::builder("slow")
        .total(Duration::from_secs(1))
        .attempt_timeout(Duration::from_millis(300))
        .retry(|r| r.max_attempts(10).backoff(Backoff::none()))
        .without_breaker()
        .allow(Check::RetriesFitTotal)
        .build()
        .unwrap();
    let mut svc = policy.layer(service_fn(move |_: u32| {
        counted.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<Result<u32, BoxError>>()
    }));
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(1), "{err}");
    // 300 ms attempts inside 1 s, each retry needing 30 ms left: four
    // attempts start (0, 300, 600, 900 ms), not ten.
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_sees_every_attempt_and_stops_the_retries() {
    let calls = Arc::new(AtomicU32::new(0));
    let policy = Policy::builder("db")
        .retry(|r| r.max_attempts(5).backoff(Backoff::none()))
        .breaker(|b| b.consecutive_failures(3).no_failure_rate())
        .without_budget()
        .allow(Check::RetriesFitTotal)
        .build()
        .unwrap();
    let breaker = policy.breaker().unwrap().clone();
    let mut svc = policy.layer(failing(&calls));
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    // Three attempts trip the breaker; the fourth is refused without a
    // call, and an open circuit is not retried.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(breaker.state(), CircuitState::Open);
    // The open circuit comes back as it is: it is not a retryable failure.
    assert!(err.is::<CircuitOpen>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_fallback_answers_an_open_circuit() {
    let calls = Arc::new(AtomicU32::new(0));
    let policy = Policy::builder("prices")
        .without_retry()
        .breaker(|b| b.consecutive_failures(1).no_failure_rate())
        .fallback(|f| f.value(0u32))
        .build()
        .unwrap();
    let mut svc = policy.layer(failing(&calls));
    // The failure itself is answered by the fallback, and so is the
    // open circuit after it.
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 0);
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A request with a priority, as a route or a header would give it.
#[derive(Debug, Clone, Copy)]
struct Job(Priority);

impl DeadlineCarrier for Job {}

#[tokio::test(start_paused = true)]
async fn the_fallback_answers_a_shed_request_only_when_told_to() {
    let ok = || service_fn(|_: Job| async { Ok::<u32, BoxError>(1) });
    let shedding = |on_shed: bool| {
        let b = Policy::builder(format!("jobs-{on_shed}"))
            .gate(|g| g.initial_level(Level::Critical))
            .priority(|job: &Job| Some(job.0))
            .fallback(|f| f.value(0u32));
        if on_shed { b.fallback_on_shed() } else { b }
            .build()
            .unwrap()
    };

    let mut plain = shedding(false).layer(ok());
    let err = plain
        .ready()
        .await
        .unwrap()
        .call(Job(Priority::Low))
        .await
        .unwrap_err();
    assert!(err.is::<Shed>(), "{err}");
    let critical = plain.ready().await.unwrap().call(Job(Priority::Critical));
    assert_eq!(critical.await.unwrap(), 1);

    let mut answering = shedding(true).layer(ok());
    let low = answering.ready().await.unwrap().call(Job(Priority::Low));
    assert_eq!(low.await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn components_register_as_policy_slash_part() {
    let registry = Registry::new();
    let policy = Policy::builder("checkout")
        .gate(|g| g)
        .priority(|_: &u32| None)
        .fallback(|f| f.value(0u32))
        .registry(&registry)
        .build()
        .unwrap();
    let mut names = registry.names();
    names.sort();
    assert_eq!(
        names,
        [
            "checkout/attempt_timeout",
            "checkout/breaker",
            "checkout/budget",
            "checkout/deadline",
            "checkout/fallback",
            "checkout/gate",
            "checkout/instrument",
            "checkout/retry",
        ]
    );
    let retry = registry.get("checkout/retry").unwrap();
    assert_eq!(retry.details["attempts"], 0, "{retry:?}");

    // One policy, two services: one breaker and one instrument.
    let calls = Arc::new(AtomicU32::new(0));
    let mut a = policy.layer(failing(&calls));
    let mut b = policy.clone().layer(failing(&calls));
    a.ready().await.unwrap().call(1).await.unwrap();
    b.ready().await.unwrap().call(2).await.unwrap();
    let report = registry.get("checkout/instrument").unwrap();
    assert_eq!(report.details["calls"], serde_json::json!(2), "{report:?}");

    // The same name again is refused, naming the holder's kind.
    let err = Policy::builder("checkout")
        .registry(&registry)
        .build()
        .unwrap_err();
    assert!(matches!(err, PolicyError::Duplicate { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "policy `checkout`: a component named `checkout/instrument` is already registered, by a component of kind `instrument`"
    );

    // A second policy never collides with the first; the registry holds
    // components weakly, so they go with the policy.
    let search = Policy::builder("search")
        .registry(&registry)
        .build()
        .unwrap();
    assert!(registry.get("search/breaker").is_some());
    drop(search);
    assert!(registry.get("search/breaker").is_none());
}

#[test]
fn build_refuses_parts_that_do_not_fit() {
    let err = Policy::builder("a")
        .total(Duration::from_secs(1))
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap_err();
    let conflict: &Conflict = err.as_conflict().unwrap();
    assert_eq!(conflict.check, Check::AttemptWithinTotal);
    let text = err.to_string();
    assert!(
        text.contains("attempt_timeout") && text.contains("2s"),
        "{text}"
    );
    assert!(text.contains("total") && text.contains("1s"), "{text}");

    let err = Policy::builder("b")
        .breaker(|b| b.time_window(Duration::from_secs(5), 5))
        .build()
        .unwrap_err();
    assert_eq!(
        err.as_conflict().unwrap().check,
        Check::BreakerWindowCoversAttempts
    );
    assert!(err.to_string().contains("20s"), "{err}");

    let tight = || {
        Policy::builder("c")
            .total(Duration::from_secs(10))
            .attempt_timeout(Duration::from_secs(4))
            .retry(|r| r.max_attempts(4))
    };
    let err = tight().build().unwrap_err();
    assert_eq!(err.as_conflict().unwrap().check, Check::RetriesFitTotal);
    assert!(Check::RetriesFitTotal.is_warning());
    assert!(err.to_string().contains("allow"), "{err}");
    tight().allow(Check::RetriesFitTotal).build().unwrap();

    // A part's own bound is named with the policy.
    let err = Policy::builder("d")
        .breaker(|b| b.failure_rate(1.5))
        .build()
        .unwrap_err();
    assert!(matches!(err, PolicyError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("failure_rate"), "{err}");

    // The defaults pass every check.
    Policy::builder("e").build().unwrap();
}

#[test]
fn the_defaults_are_the_standard_handlers() {
    let policy = Policy::builder("std").build().unwrap();
    assert_eq!(policy.total(), Some(Duration::from_secs(30)));
    let retry = policy.retry().unwrap();
    assert_eq!(retry.max_attempts(), 3);
    assert_eq!(retry.min_time_left(), Duration::from_secs(1));
    assert!(policy.budget().is_some());
    let breaker = policy.breaker().unwrap();
    assert_eq!(
        breaker.window(),
        battlement::breaker::WindowConfig::Time {
            duration: Duration::from_secs(30),
            buckets: 10
        }
    );
}

#[tokio::test(start_paused = true)]
async fn parts_turned_off_are_not_in_the_stack() {
    let policy = Policy::builder("bare")
        .without_total()
        .without_attempt_timeout()
        .without_retry()
        .without_breaker()
        .build()
        .unwrap();
    assert!(policy.breaker().is_none() && policy.retry().is_none());
    let svc = policy.layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    // No registry: no instrument either.
    assert!(matches!(svc, Toggle::Off(_)));
    assert_eq!(svc.oneshot(3).await.unwrap(), 3);
}

/// An HTTP client over a local service: a status the classifier calls a
/// failure is one for the breaker and the instrument alike, and only
/// idempotent requests are retried.
mod http_preset {
    use super::*;

    fn backend(
        calls: &Arc<AtomicU32>,
        status: u16,
    ) -> impl Service<http::Request<String>, Response = http::Response<String>, Error = BoxError>
    + Clone
    + use<> {
        let calls = calls.clone();
        service_fn(move |req: http::Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(req.body(), "payload", "every attempt carries the body");
            async move {
                Ok::<_, BoxError>(
                    http::Response::builder()
                        .status(status)
                        .body(String::new())
                        .unwrap(),
                )
            }
        })
    }

    fn request(method: http::Method, key: bool) -> http::Request<String> {
        let mut b = http::Request::builder().method(method).uri("/orders");
        if key {
            b = b.header(battlement::IDEMPOTENCY_KEY, "order-7");
        }
        b.body("payload".to_string()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_500_is_a_failure_everywhere_and_post_is_sent_once() {
        let registry = Registry::new();
        let policy = Policy::http("orders")
            .retry(|r| r.max_attempts(3).backoff(Backoff::none()))
            .breaker(|b| b.consecutive_failures(100).no_failure_rate())
            .registry(&registry)
            .build()
            .unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        let mut svc = ServiceBuilder::new()
            .policy(&policy)
            .service(backend(&calls, 503));

        let res = svc
            .ready()
            .await
            .unwrap()
            .call(request(http::Method::GET, false))
            .await
            .unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(calls.swap(0, Ordering::SeqCst), 3, "GET is retried");

        let post = svc
            .ready()
            .await
            .unwrap()
            .call(request(http::Method::POST, false));
        assert_eq!(post.await.unwrap().status(), 503);
        assert_eq!(calls.swap(0, Ordering::SeqCst), 1, "POST is sent once");

        let keyed = svc
            .ready()
            .await
            .unwrap()
            .call(request(http::Method::POST, true));
        assert_eq!(keyed.await.unwrap().status(), 503);
        assert_eq!(
            calls.swap(0, Ordering::SeqCst),
            3,
            "POST with an Idempotency-Key is retried"
        );

        // 7 attempts, 7 failures for the breaker; 3 calls, 3 failures for
        // the instrument.
        let breaker = policy.breaker().unwrap().metrics();
        assert_eq!(breaker.failures, 7, "{breaker:?}");
        let report = registry.get("orders/instrument").unwrap();
        assert_eq!(
            report.details["failures"],
            serde_json::json!(3),
            "{report:?}"
        );
    }
}

/// The gate's error-rate signal judges with the policy's classifier: a
/// 500 that travels as `Ok` is an error for the gate too.
#[tokio::test(start_paused = true)]
async fn the_gate_judges_with_the_policy_classifier() {
    use battlement::gate::Signal;
    let policy = Policy::http("api")
        .without_retry()
        .without_breaker()
        .gate(|g| g)
        .priority(|_: &http::Request<String>| None)
        .build()
        .unwrap();
    let mut errors = policy.gate().unwrap().error_rate_signal().min_calls(1);
    let mut svc = policy.layer(service_fn(|req: http::Request<String>| async move {
        let status = if req.uri().path() == "/bad" { 500 } else { 200 };
        Ok::<_, BoxError>(http::Response::builder().status(status).body(()).unwrap())
    }));
    for path in ["/bad", "/ok", "/ok", "/ok"] {
        let req = http::Request::get(path).body(String::new()).unwrap();
        svc.ready().await.unwrap().call(req).await.unwrap();
    }
    assert_eq!(errors.sample(Instant::now()), 0.25);
}

/// A fallback service is bounded by the total unless told otherwise, and
/// a bound above the total is refused.
#[tokio::test(start_paused = true)]
async fn a_fallback_service_is_bounded_by_the_total() {
    let hung = || service_fn(|_: u32| std::future::pending::<Result<u32, BoxError>>());
    let calls = Arc::new(AtomicU32::new(0));
    let policy = Policy::builder("rescue")
        .total(Duration::from_secs(2))
        .attempt_timeout(Duration::from_secs(1))
        .without_retry()
        .without_breaker()
        .fallback(move |f| f.service("secondary", hung()).value(7u32))
        .build()
        .unwrap();
    let mut svc = policy.layer(failing(&calls));
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 7);
    assert_eq!(start.elapsed(), Duration::from_secs(2), "cut at the total");

    let err = Policy::builder("slow-rescue")
        .total(Duration::from_secs(2))
        .attempt_timeout(Duration::from_secs(1))
        .without_retry()
        .fallback(move |f| {
            f.service("secondary", hung())
                .source_timeout(Duration::from_secs(10))
        })
        .build()
        .unwrap_err();
    assert_eq!(err.as_conflict().unwrap().check, Check::FallbackWithinTotal);
    assert!(err.to_string().contains("10s"), "{err}");
}

/// Over a `tower-test` mock (which panics on a call without readiness):
/// the policy passes the backend's readiness through, and each attempt is
/// one request the backend sees, in order, until one succeeds.
#[tokio::test(start_paused = true)]
async fn over_a_mock_readiness_passes_through_and_each_attempt_reaches_the_backend() {
    let policy = Policy::builder("mocked")
        .retry(|r| r.max_attempts(3).backoff(Backoff::none()))
        .build()
        .unwrap();
    let (mock, mut handle) = tower_test::mock::pair::<u32, u32>();
    let mut svc = policy.layer(mock);

    handle.allow(0);
    assert!(
        poll_ready_once(&mut svc).is_pending(),
        "not ready while the backend is not"
    );
    handle.allow(10);
    let call = tokio::spawn({
        let mut svc = svc;
        async move { svc.ready().await.unwrap().call(7).await }
    });
    for attempt in 0..2 {
        let (req, reply) = handle.next_request().await.unwrap();
        assert_eq!(req, 7, "attempt {attempt}");
        reply.send_error(refused());
    }
    let (req, reply) = handle.next_request().await.unwrap();
    assert_eq!(req, 7);
    reply.send_response(70);
    assert_eq!(call.await.unwrap().unwrap(), 70);
}

/// Polls `svc` for readiness once.
fn poll_ready_once<S: Service<u32>>(svc: &mut S) -> std::task::Poll<()> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    svc.poll_ready(&mut cx).map(|r| {
        assert!(r.is_ok());
    })
}

/// Load protection, each part chosen by type: a bulkhead refuses past its
/// slots (and the retries do not retry the refusal), registered as
/// `{name}/bulkhead`.
#[tokio::test(start_paused = true)]
async fn a_bulkhead_part_refuses_past_its_slots() {
    let registry = Registry::new();
    let policy = Policy::builder("pool")
        .bulkhead(|b| b.max_concurrent(1))
        .registry(&registry)
        .build()
        .unwrap();
    assert_eq!(policy.bulkhead().in_flight(), 0);
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let mut svc = policy.layer(service_fn(move |n: u32| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BoxError>(n)
        }
    }));
    let first = svc.ready().await.unwrap().call(1);
    let second = svc.ready().await.unwrap().call(2);
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap(), 1);
    let err = second.unwrap_err();
    assert!(err.is::<battlement::limit::BulkheadFull>(), "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the refusal is not retried"
    );
    assert!(registry.get("pool/bulkhead").is_some());
}

/// An adaptive limit sits between the retries and the breaker: a call
/// over the limit is refused at once and the breaker does not count it.
#[tokio::test(start_paused = true)]
async fn an_adaptive_limit_part_refuses_over_its_limit() {
    let registry = Registry::new();
    let policy = Policy::builder("api")
        .adaptive_limit(|l| l.initial_limit(1).min_limit(1).max_limit(1))
        .registry(&registry)
        .build()
        .unwrap();
    assert_eq!(policy.adaptive_limit().limit(), 1);
    let mut svc = policy.layer(service_fn(|n: u32| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, BoxError>(n)
    }));
    let first = svc.ready().await.unwrap().call(1);
    let second = svc.ready().await.unwrap().call(2);
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap(), 1);
    let err = second.unwrap_err();
    assert!(err.is::<battlement::limit::LimitExceeded>(), "{err}");
    let breaker = policy.breaker().unwrap().metrics();
    assert_eq!(breaker.calls, 1, "the breaker never saw the refused call");
    assert!(registry.get("api/limit").is_some());
}

/// A breaker per key: the failing key opens, the others stay closed; one
/// registry component for all of them.
#[tokio::test(start_paused = true)]
async fn a_breaker_per_key_opens_only_the_failing_key() {
    let registry = Registry::new();
    let policy = Policy::builder("hosts")
        .without_retry()
        .breaker_per_with(
            |n: &u32| if n.is_multiple_of(2) { "even" } else { "odd" },
            |k| k.breaker(|b| b.consecutive_failures(2).no_failure_rate()),
        )
        .registry(&registry)
        .build()
        .unwrap();
    assert!(
        policy.breaker().is_none(),
        "the keyed breaker takes its place"
    );
    let mut svc = policy.layer(service_fn(|n: u32| async move {
        if n % 2 == 1 {
            Err::<u32, BoxError>(refused())
        } else {
            Ok(n)
        }
    }));
    for n in [1, 3] {
        assert!(svc.ready().await.unwrap().call(n).await.is_err());
    }
    let err = svc.ready().await.unwrap().call(5).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(svc.ready().await.unwrap().call(4).await.unwrap(), 4);
    assert_eq!(policy.keyed_breaker().open_keys(), ["odd"]);
    assert!(registry.get("hosts/breaker").is_some());
}

/// A 429 with `Retry-After: 1` delays the retry by exactly 1 s (paused
/// time), and the retry is answered.
#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_delays_the_retry_by_its_wait() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let policy = Policy::http("rate-limited")
        .retry(|r| r.max_attempts(2))
        .without_breaker()
        .build()
        .unwrap();
    let mut svc = policy.layer(service_fn(move |_: http::Request<String>| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let res = if n == 0 {
                http::Response::builder()
                    .status(429)
                    .header("retry-after", "1")
                    .body(())
            } else {
                http::Response::builder().status(200).body(())
            };
            Ok::<_, BoxError>(res.unwrap())
        }
    }));
    let start = Instant::now();
    let req = http::Request::get("/quota").body(String::new()).unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A leaked policy works as the counted one does, and copies of its
/// services leave the shared state's reference count alone (the point of
/// leaking a server's policy: axum clones the route's service per request).
#[tokio::test(start_paused = true)]
async fn a_leaked_policy_counts_no_reference_per_copy_and_works_the_same() {
    macro_rules! built {
        ($name:literal, $registry:expr) => {
            Policy::builder($name)
                .retry(|r| r.max_attempts(5).backoff(Backoff::none()))
                .breaker(|b| b.consecutive_failures(3).no_failure_rate())
                .without_budget()
                .allow(Check::RetriesFitTotal)
                .registry($registry)
                .build()
                .unwrap()
        };
    }
    let registry = Registry::new();
    let calls = Arc::new(AtomicU32::new(0));
    let backend = || failing(&calls);

    // Counted: every copy of the service holds one more reference.
    let counted = built!("counted", &registry);
    let component = registry.component("counted/breaker").unwrap();
    let svc = counted.layer(backend());
    let before = Arc::strong_count(&component);
    let copies: Vec<_> = (0..10).map(|_| svc.clone()).collect();
    assert_eq!(Arc::strong_count(&component), before + 10);
    drop(copies);

    // Leaked: copies count nothing, and the breaker still trips.
    let leaked = built!("leaked", &registry).leak();
    let component = registry.component("leaked/breaker").unwrap();
    let mut svc = leaked.layer(backend());
    let before = Arc::strong_count(&component);
    let copies: Vec<_> = (0..10).map(|_| svc.clone()).collect();
    assert_eq!(Arc::strong_count(&component), before);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let report = registry.get("leaked/instrument").unwrap();
    assert_eq!(report.details["calls"], serde_json::json!(1), "{report:?}");

    // The state outlives the policy and its services: it is kept.
    drop((leaked, svc, copies, component));
    assert!(registry.get("leaked/breaker").is_some());
    assert!(registry.get("leaked/instrument").is_some());
}
