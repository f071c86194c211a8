//! The deadline layers composed with retry, fan-out and header
//! propagation, on paused time (issue 16).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use battlement_core::{
    AttemptTimedOut, BoxError, Deadline, DeadlineCarrier, DeadlineExceeded, EventKind, EventLog,
    RetriesExhausted, RetryStop,
};
use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
use battlement_fanout::{FanOut, Reply, Strategy};
use battlement_retry::{Backoff, RetryLayer, RetryPolicy};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A cloneable request that carries its deadline in a field.
#[derive(Debug, Clone, Default)]
struct Carrying(Option<Deadline>);

impl DeadlineCarrier for Carrying {
    fn deadline(&self) -> Option<Deadline> {
        self.0
    }
    fn set_deadline(&mut self, deadline: Deadline) {
        self.0 = Some(deadline);
    }
}

fn retry(attempts: u32, backoff: Duration) -> RetryLayer {
    RetryLayer::new(
        RetryPolicy::builder()
            .max_attempts(attempts)
            .backoff(Backoff::constant(backoff))
            .build()
            .unwrap(),
    )
}

/// A backend that counts its calls, waits `delay` and then fails with a
/// refused connection (retryable), or hangs for `None`.
fn backend<Req>(
    calls: &Arc<AtomicU32>,
    delay: Option<Duration>,
) -> impl Service<Req, Response = (), Error = BoxError, Future: Send> + Clone + use<Req> {
    // `use<Req>`: it holds its own `Arc`, not the borrow (a retry keeps a
    // spare copy of what it wraps, so needs it `'static`).
    let calls = calls.clone();
    service_fn(move |_: Req| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            match delay {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
            Err::<(), BoxError>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
        }
    })
}

/// Calls `svc` with `req` and returns the error it fails with.
async fn fails<Req, S: Service<Req, Error = BoxError>>(svc: &mut S, req: Req) -> BoxError
where
    S::Response: std::fmt::Debug,
{
    svc.ready().await.unwrap().call(req).await.unwrap_err()
}

/// `total → Retry(5 attempts, no backoff) → attempt` over a backend that
/// hangs.
fn total_retry_attempt<Req>(
    total: DeadlineLayer,
    attempt: AttemptTimeoutLayer,
    calls: &Arc<AtomicU32>,
) -> impl Service<Req, Response = (), Error = BoxError> + use<Req>
where
    Req: DeadlineCarrier + Clone + Send + 'static,
{
    ServiceBuilder::new()
        .layer(total)
        .layer(retry(5, Duration::ZERO))
        .layer(attempt)
        .service(backend::<Req>(calls, None))
}

/// `Deadline(1 s) → Retry → AttemptTimeout(300 ms)`: three attempts are
/// cut by their own bound; the fourth's slice is capped by the total and
/// both timers fire at 1 s. The caller gets the total's error (its budget,
/// its elapsed), counted and reported by the total layer, once.
#[tokio::test(start_paused = true)]
async fn the_total_deadline_owns_its_expiry() {
    let log = EventLog::new();
    let total = DeadlineLayer::new(Duration::from_secs(1))
        .name("total")
        .events(log.sink());
    let attempt = AttemptTimeoutLayer::new(ms(300))
        .name("attempt")
        .events(log.sink());
    let (total_handle, attempt_handle) = (total.handle(), attempt.handle());
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = total_retry_attempt::<Carrying>(total, attempt, &calls);
    let start = Instant::now();
    let err = fails(&mut svc, Carrying::default()).await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let err = err.downcast::<DeadlineExceeded>().unwrap();
    assert_eq!(
        *err,
        DeadlineExceeded {
            budget: Duration::from_secs(1),
            elapsed: Duration::from_secs(1)
        }
    );
    assert_eq!(total_handle.deadline_exceeded(), 1);
    assert_eq!(attempt_handle.deadline_exceeded(), 0);
    assert_eq!(attempt_handle.attempts_timed_out(), 3);
    let hits: Vec<_> = log
        .events()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::DeadlineExceeded { .. }))
        .map(|e| e.component.to_string())
        .collect();
    assert_eq!(hits, ["total"]);

    // An attempt cut by its own bound stays an attempt timeout, for any
    // caller: the total has not passed.
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .layer(AttemptTimeoutLayer::new(ms(300)))
        .service(backend::<Carrying>(&calls, None));
    let err = fails(&mut svc, Carrying::default()).await;
    assert_eq!(
        *err.downcast::<AttemptTimedOut>().unwrap(),
        AttemptTimedOut { timeout: ms(300) }
    );
}

/// The same for a request type that carries no deadline: the attempt
/// layer sees the deadline in scope, caps the last slice by it, and the
/// total owns the hit.
#[tokio::test(start_paused = true)]
async fn a_request_without_a_carrier_gets_the_same_semantics() {
    let total = DeadlineLayer::new(Duration::from_secs(1)).name("total");
    let attempt = AttemptTimeoutLayer::new(ms(300)).name("attempt");
    let (total_handle, attempt_handle) = (total.handle(), attempt.handle());
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = total_retry_attempt::<u32>(total, attempt, &calls);
    let err = fails(&mut svc, 7).await;
    let err = err.downcast::<DeadlineExceeded>().unwrap();
    assert_eq!(
        (err.budget, err.elapsed),
        (Duration::from_secs(1), Duration::from_secs(1))
    );
    assert_eq!(total_handle.deadline_exceeded(), 1);
    assert_eq!(attempt_handle.deadline_exceeded(), 0);
    assert_eq!(attempt_handle.attempts_timed_out(), 3);
}

/// With a `u32` request the retry knows the budget: at 950 ms, with 50 ms
/// left, a 150 ms backoff cannot fit, so it gives up at once rather than
/// sleeping until the total cuts it.
#[tokio::test(start_paused = true)]
async fn retries_see_the_deadline_of_a_request_that_carries_none() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicU32::new(0));
    let inner = backend::<u32>(&calls, None);
    let record = seen.clone();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .layer(retry(5, ms(150)))
        .layer(AttemptTimeoutLayer::new(ms(400)))
        .service(service_fn(move |n: u32| {
            record
                .lock()
                .unwrap()
                .push(battlement_core::deadline::current().map(|d| d.remaining()));
            inner.clone().oneshot(n)
        }));
    let start = Instant::now();
    let err = fails(&mut svc, 7).await;
    assert_eq!(start.elapsed(), ms(950));
    let err = err.downcast::<RetriesExhausted>().unwrap();
    assert_eq!((err.attempts, err.reason), (2, RetryStop::Deadline));
    assert!(err.last.is::<AttemptTimedOut>());
    // Each attempt saw its own end as the deadline in scope.
    assert_eq!(*seen.lock().unwrap(), [Some(ms(400)), Some(ms(400))]);
}

/// No attempt starts that cannot finish: by default a retry needs a tenth
/// of the attempt timeout (here 40 ms) left. Attempts fail after 330 ms;
/// at 990 ms only 10 ms are left, so no fourth attempt starts. An
/// explicit `min_time_left(0)` restores "any time left".
#[tokio::test(start_paused = true)]
async fn a_retry_needs_a_tenth_of_the_attempt_timeout_left() {
    for (min_time_left, attempts, elapsed) in
        [(None, 3, ms(990)), (Some(Duration::ZERO), 4, ms(1000))]
    {
        let calls = Arc::new(AtomicU32::new(0));
        let mut policy = RetryPolicy::builder()
            .max_attempts(5)
            .backoff(Backoff::constant(Duration::ZERO));
        if let Some(min) = min_time_left {
            policy = policy.min_time_left(min);
        }
        let mut svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(Duration::from_secs(1)))
            .layer(RetryLayer::new(policy.build().unwrap()))
            .layer(AttemptTimeoutLayer::new(ms(400)))
            .service(backend::<u32>(&calls, Some(ms(330))));
        let start = Instant::now();
        let err = fails(&mut svc, 7).await;
        assert_eq!(start.elapsed(), elapsed, "{min_time_left:?}");
        assert_eq!(calls.load(Ordering::SeqCst), attempts, "{min_time_left:?}");
        match min_time_left {
            None => {
                let err = err.downcast::<RetriesExhausted>().unwrap();
                assert_eq!(err.reason, RetryStop::Deadline);
            }
            Some(_) => assert!(err.is::<DeadlineExceeded>(), "{err}"),
        }
    }
}

/// Header propagation sees the deadline in scope when the request
/// carries none (here a `u32` mapped to an `http::Request` inside the
/// deadline layer).
#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn propagation_writes_the_deadline_in_scope() {
    use battlement_deadline::http::PropagateDeadlineLayer;

    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(500)))
        .map_request(|n: u32| {
            let mut req = http::Request::new(n);
            // A fresh request carries no deadline of its own.
            assert!(req.deadline().is_none());
            req.headers_mut().insert("x-n", n.into());
            req
        })
        .layer(PropagateDeadlineLayer::new())
        .service(service_fn(|req: http::Request<u32>| async move {
            Ok::<_, BoxError>(
                req.headers()
                    .get("x-request-timeout-ms")
                    .map(|v| v.to_str().unwrap().to_owned()),
            )
        }));
    let sent = svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(sent.as_deref(), Some("495"));
}

/// A fan-out over a request type without a carrier is bounded by the
/// deadline in scope: under `All` it ends at the deadline with what it
/// has, the slow backend reported timed out.
#[tokio::test(start_paused = true)]
async fn fan_out_sees_the_deadline_in_scope() {
    let fast = service_fn(|_: u32| async {
        tokio::time::sleep(ms(100)).await;
        Ok::<_, BoxError>("fast")
    });
    let slow = service_fn(|_: u32| async {
        tokio::time::sleep(ms(5000)).await;
        Ok::<_, BoxError>("slow")
    });
    let fan = FanOut::builder("fan")
        .strategy(Strategy::All)
        .backend("fast", fast.boxed_clone())
        .backend("slow", slow.boxed_clone())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(500)))
        .service(fan);
    let start = Instant::now();
    let res = svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(start.elapsed(), ms(500));
    assert_eq!(res.success_count(), 1);
    assert!(matches!(res.get("slow").unwrap().reply, Reply::TimedOut));
}
