//! Behaviour of the retry layer on paused tokio time.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use battlement_core::{
    BoxError, Classify, Deadline, DeadlineCarrier, ErrorClassifier, EventKind, EventLog, Failure,
    FailureKind, Outcome, RetriesExhausted, RetryStop,
};
use battlement_retry::{Backoff, Jitter, RetryBudget, RetryLayer, RetryPolicy, SeededRandom};
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt};

/// A response with a status and an optional retry-after, as HTTP has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resp {
    status: u16,
    retry_after: Option<Duration>,
}

const fn status(status: u16) -> Resp {
    Resp {
        status,
        retry_after: None,
    }
}

/// What a scripted backend does on one call.
#[derive(Debug, Clone, Copy)]
enum Step {
    Answer(Resp),
    Refused,
    NotFound,
}

fn classify(res: &Result<Resp, BoxError>) -> Outcome {
    match res {
        Ok(r) => match r.status {
            200..=299 => Outcome::Success,
            429 => Failure::new(FailureKind::RateLimited)
                .with_retry_after(r.retry_after)
                .into(),
            // a classifier that (wrongly) calls 401 retryable: the policy's
            // per-kind override must still refuse it
            401 => Failure::new(FailureKind::Authentication)
                .retryable(true)
                .into(),
            499 => Outcome::Ignored,
            400 => Outcome::failure(FailureKind::InvalidRequest),
            _ => Outcome::failure(FailureKind::Unavailable),
        },
        Err(_) => ErrorClassifier::new().classify(res),
    }
}

type Classifier = fn(&Result<Resp, BoxError>) -> Outcome;

/// A request that counts its clones and may carry a deadline.
#[derive(Debug)]
struct Req {
    clones: Arc<AtomicU32>,
    deadline: Option<Deadline>,
    idempotent: bool,
}

impl Clone for Req {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Req {
            clones: self.clones.clone(),
            deadline: self.deadline,
            idempotent: self.idempotent,
        }
    }
}

impl DeadlineCarrier for Req {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }
}

fn req() -> Req {
    Req {
        clones: Arc::new(AtomicU32::new(0)),
        deadline: None,
        idempotent: true,
    }
}

/// A backend answering from a script (the last step repeats), taking
/// `latency` per call, and recording when each call started.
#[derive(Clone)]
struct Backend {
    script: Arc<Mutex<VecDeque<Step>>>,
    starts: Arc<Mutex<Vec<Instant>>>,
    latency: Duration,
}

impl Backend {
    fn new(steps: &[Step]) -> Self {
        Backend {
            script: Arc::new(Mutex::new(steps.iter().copied().collect())),
            starts: Arc::default(),
            latency: Duration::ZERO,
        }
    }

    fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    fn calls(&self) -> usize {
        self.starts.lock().unwrap().len()
    }

    /// The gaps between the starts of consecutive calls.
    fn gaps(&self) -> Vec<Duration> {
        let s = self.starts.lock().unwrap();
        s.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn offsets(&self, from: Instant) -> Vec<Duration> {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .map(|t| *t - from)
            .collect()
    }
}

impl Service<Req> for Backend {
    type Response = Resp;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Resp, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Req) -> Self::Future {
        self.starts.lock().unwrap().push(Instant::now());
        let step = {
            let mut s = self.script.lock().unwrap();
            if s.len() > 1 {
                s.pop_front().unwrap()
            } else {
                *s.front().expect("a script")
            }
        };
        let latency = self.latency;
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            match step {
                Step::Answer(r) => Ok(r),
                Step::Refused => Err(io::Error::from(io::ErrorKind::ConnectionRefused).into()),
                Step::NotFound => Err(io::Error::from(io::ErrorKind::NotFound).into()),
            }
        })
    }
}

fn policy() -> battlement_retry::RetryPolicyBuilder<Classifier> {
    RetryPolicy::builder()
        .classifier(classify as Classifier)
        .backoff(Backoff::constant(Duration::from_millis(10)))
}

fn exhausted(err: &BoxError) -> &RetriesExhausted {
    err.downcast_ref::<RetriesExhausted>()
        .unwrap_or_else(|| panic!("expected RetriesExhausted, got {err}"))
}

#[tokio::test(start_paused = true)]
async fn success_first_time_calls_once() {
    let backend = Backend::new(&[Step::Answer(status(200))]);
    let svc = RetryLayer::new(policy().build().unwrap()).layer(backend.clone());
    let r = req();
    let clones = r.clones.clone();
    assert_eq!(svc.oneshot(r).await.unwrap(), status(200));
    assert_eq!(backend.calls(), 1);
    // kept once in case it failed
    assert_eq!(clones.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn retryable_error_is_retried_until_success() {
    let backend = Backend::new(&[Step::Refused, Step::Refused, Step::Answer(status(200))]);
    let log = EventLog::new();
    let svc = RetryLayer::new(policy().events(log.sink()).name("api").build().unwrap())
        .layer(backend.clone());
    let r = req();
    let clones = r.clones.clone();
    assert_eq!(svc.oneshot(r).await.unwrap(), status(200));
    assert_eq!(backend.calls(), 3);
    // kept once, cloned for the second attempt, the third took the kept one
    assert_eq!(clones.load(Ordering::SeqCst), 2);
    let kinds = log.kinds();
    assert_eq!(
        kinds,
        vec![
            EventKind::Retry {
                attempt: 2,
                delay: Duration::from_millis(10),
                kind: FailureKind::Network
            },
            EventKind::Retry {
                attempt: 3,
                delay: Duration::from_millis(10),
                kind: FailureKind::Network
            },
        ]
    );
    assert_eq!(&*log.events()[0].component, "api");
}

/// A policy kept in a `static` behaves as an owned one: retries, delays,
/// the give-up error, and the policy seen through the layer.
#[tokio::test(start_paused = true)]
async fn static_policy_behaves_like_an_owned_one() {
    static POLICY: std::sync::LazyLock<RetryPolicy<Classifier>> =
        std::sync::LazyLock::new(|| policy().max_attempts(3).name("static").build().unwrap());
    let layer = RetryLayer::new(RetryPolicy::from_static(&POLICY));
    assert_eq!(&**layer.policy().name(), "static");

    let backend = Backend::new(&[Step::Refused, Step::Answer(status(200))]);
    let svc = layer.layer(backend.clone());
    assert_eq!(svc.oneshot(req()).await.unwrap(), status(200));
    assert_eq!(backend.gaps(), [Duration::from_millis(10)]);

    let down = Backend::new(&[Step::Refused]);
    let err = layer.layer(down.clone()).oneshot(req()).await.unwrap_err();
    assert_eq!(exhausted(&err).attempts, 3);
    assert_eq!(exhausted(&err).reason, RetryStop::MaxAttempts);
    assert_eq!(down.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn gives_up_with_retries_exhausted() {
    let backend = Backend::new(&[Step::Refused]);
    let log = EventLog::new();
    let svc = RetryLayer::new(policy().max_attempts(4).events(log.sink()).build().unwrap())
        .layer(backend.clone());
    let err = svc.oneshot(req()).await.unwrap_err();
    let ex = exhausted(&err);
    assert_eq!(ex.attempts, 4);
    assert_eq!(ex.reason, RetryStop::MaxAttempts);
    let last = std::error::Error::source(ex).unwrap();
    assert_eq!(
        last.downcast_ref::<io::Error>().unwrap().kind(),
        io::ErrorKind::ConnectionRefused
    );
    assert_eq!(backend.calls(), 4);
    assert_eq!(
        log.kinds().last(),
        Some(&EventKind::RetriesExhausted {
            attempts: 4,
            reason: RetryStop::MaxAttempts,
            kind: FailureKind::Network
        })
    );
    // An outer retry layer does not multiply the attempts.
    assert!(
        !ErrorClassifier::new()
            .classify(&Err::<(), _>(err))
            .is_retryable()
    );
}

#[tokio::test(start_paused = true)]
async fn non_retryable_error_is_returned_unchanged() {
    let backend = Backend::new(&[Step::NotFound]);
    let log = EventLog::new();
    let svc = RetryLayer::new(policy().events(log.sink()).build().unwrap()).layer(backend.clone());
    let err = svc.oneshot(req()).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<io::Error>().unwrap().kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(backend.calls(), 1);
    assert!(log.kinds().is_empty());
}

#[tokio::test(start_paused = true)]
async fn ignored_and_non_retryable_responses_are_not_retried() {
    for code in [499, 400] {
        let backend = Backend::new(&[Step::Answer(status(code)), Step::Answer(status(200))]);
        let svc = RetryLayer::new(policy().build().unwrap()).layer(backend.clone());
        assert_eq!(svc.oneshot(req()).await.unwrap(), status(code));
        assert_eq!(backend.calls(), 1, "status {code}");
    }
}

#[tokio::test(start_paused = true)]
async fn ok_responses_classified_retryable_are_retried() {
    let backend = Backend::new(&[Step::Answer(status(503)), Step::Answer(status(200))]);
    let svc = RetryLayer::new(policy().build().unwrap()).layer(backend.clone());
    assert_eq!(svc.oneshot(req()).await.unwrap(), status(200));
    assert_eq!(backend.calls(), 2);

    // When the attempts run out, the last response comes back as it is.
    let backend = Backend::new(&[Step::Answer(status(503))]);
    let log = EventLog::new();
    let svc = RetryLayer::new(policy().max_attempts(2).events(log.sink()).build().unwrap())
        .layer(backend.clone());
    assert_eq!(svc.oneshot(req()).await.unwrap(), status(503));
    assert_eq!(backend.calls(), 2);
    assert!(matches!(
        log.kinds().last(),
        Some(EventKind::RetriesExhausted {
            reason: RetryStop::MaxAttempts,
            kind: FailureKind::Unavailable,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn exponential_delays_are_exact() {
    let backend = Backend::new(&[Step::Refused]);
    let p = policy()
        .max_attempts(5)
        .backoff(Backoff::exponential(Duration::from_millis(100)).max(Duration::from_millis(300)))
        .build()
        .unwrap();
    let svc = RetryLayer::new(p).layer(backend.clone());
    svc.oneshot(req()).await.unwrap_err();
    let ms = Duration::from_millis;
    assert_eq!(backend.gaps(), [ms(100), ms(200), ms(300), ms(300)]);
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_gives_the_same_sequence_twice() {
    async fn run(seed: u64, jitter: Jitter) -> Vec<Duration> {
        let backend = Backend::new(&[Step::Refused]);
        let p = policy()
            .max_attempts(6)
            .backoff(Backoff::exponential(Duration::from_millis(100)).jitter(jitter))
            .random(SeededRandom::new(seed))
            .build()
            .unwrap();
        RetryLayer::new(p)
            .layer(backend.clone())
            .oneshot(req())
            .await
            .unwrap_err();
        backend.gaps()
    }
    for jitter in [Jitter::Full, Jitter::Equal] {
        let a = run(5, jitter).await;
        assert_eq!(a, run(5, jitter).await);
        assert_ne!(a, run(6, jitter).await);
        // the sequence is the backoff's own, draw by draw
        let b = Backoff::exponential(Duration::from_millis(100)).jitter(jitter);
        let src = SeededRandom::new(5);
        let mut prev = Duration::ZERO;
        let expected: Vec<Duration> = (1..=5)
            .map(|n| {
                // the layer works in nanoseconds on tokio's clock
                prev = b.delay(n, None, prev, &src);
                prev
            })
            .collect();
        for (got, want) in a.iter().zip(&expected) {
            let diff = got.abs_diff(*want);
            assert!(diff <= Duration::from_millis(1), "{got:?} vs {want:?}");
        }
    }
    // decorrelated
    let a = run(11, Jitter::None).await;
    assert_eq!(a.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn per_kind_overrides() {
    // RateLimited: longer base and more attempts; Authentication: never.
    let p = || {
        policy()
            .max_attempts(2)
            .max_attempts_for(FailureKind::RateLimited, 4)
            .base_delay_for(FailureKind::RateLimited, Duration::from_secs(1))
            .never_retry(FailureKind::Authentication)
            .build()
            .unwrap()
    };
    let backend = Backend::new(&[Step::Answer(status(429))]);
    let res = RetryLayer::new(p())
        .layer(backend.clone())
        .oneshot(req())
        .await
        .unwrap();
    assert_eq!(res.status, 429);
    assert_eq!(backend.calls(), 4);
    assert_eq!(backend.gaps(), [Duration::from_secs(1); 3]);

    let backend = Backend::new(&[Step::Answer(status(401))]);
    RetryLayer::new(p())
        .layer(backend.clone())
        .oneshot(req())
        .await
        .unwrap();
    assert_eq!(backend.calls(), 1);

    let backend = Backend::new(&[Step::Refused]);
    let err = RetryLayer::new(p())
        .layer(backend.clone())
        .oneshot(req())
        .await
        .unwrap_err();
    assert_eq!(exhausted(&err).attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_capped() {
    let after = |d| {
        Step::Answer(Resp {
            status: 429,
            retry_after: Some(d),
        })
    };
    let backend = Backend::new(&[after(Duration::from_secs(3)), Step::Answer(status(200))]);
    let svc = RetryLayer::new(policy().build().unwrap()).layer(backend.clone());
    assert_eq!(svc.oneshot(req()).await.unwrap(), status(200));
    assert_eq!(backend.gaps(), [Duration::from_secs(3)]);

    // Longer than max_retry_after: stop at once, keep the retry-after.
    let log = EventLog::new();
    let backend = Backend::new(&[after(Duration::from_secs(60))]);
    let svc = RetryLayer::new(
        policy()
            .max_retry_after(Duration::from_secs(10))
            .events(log.sink())
            .build()
            .unwrap(),
    )
    .layer(backend.clone());
    let res = svc.oneshot(req()).await.unwrap();
    assert_eq!(res.retry_after, Some(Duration::from_secs(60)));
    assert_eq!(backend.calls(), 1);
    assert!(matches!(
        log.kinds()[..],
        [EventKind::RetriesExhausted {
            reason: RetryStop::RetryAfterTooLong,
            ..
        }]
    ));

    // An error carrying a retry-after longer than the time left.
    let classify_err = |res: &Result<Resp, BoxError>| match res {
        Ok(_) => Outcome::Success,
        Err(_) => Failure::new(FailureKind::Unavailable)
            .with_retry_after(Some(Duration::from_secs(2)))
            .into(),
    };
    let backend = Backend::new(&[Step::Refused]);
    let svc = RetryLayer::new(
        RetryPolicy::builder()
            .classifier(classify_err)
            .build()
            .unwrap(),
    )
    .layer(backend.clone());
    let mut r = req();
    r.deadline = Some(Deadline::after(Duration::from_secs(1)));
    let err = svc.oneshot(r).await.unwrap_err();
    let ex = exhausted(&err);
    assert_eq!(ex.reason, RetryStop::RetryAfterTooLong);
    assert_eq!(ex.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn deadline_stops_the_third_attempt() {
    // 1 s deadline, attempts of 400 ms, 100 ms backoff: attempt 1 runs
    // 0-400, attempt 2 runs 500-900; 100 ms left is not enough for the
    // backoff, so the third never starts and the caller hears at 900 ms.
    let backend = Backend::new(&[Step::Refused]).latency(Duration::from_millis(400));
    let svc = RetryLayer::new(
        policy()
            .max_attempts(10)
            .backoff(Backoff::constant(Duration::from_millis(100)))
            .build()
            .unwrap(),
    )
    .layer(backend.clone());
    let start = Instant::now();
    let mut r = req();
    r.deadline = Some(Deadline::after(Duration::from_secs(1)));
    let err = svc.oneshot(r).await.unwrap_err();
    let ex = exhausted(&err);
    assert_eq!(ex.reason, RetryStop::Deadline);
    assert_eq!(ex.attempts, 2);
    assert_eq!(backend.calls(), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(900));

    // With no backoff, min_time_left keeps the third from starting with
    // 200 ms left.
    let backend = Backend::new(&[Step::Refused]).latency(Duration::from_millis(400));
    let svc = RetryLayer::new(
        policy()
            .max_attempts(10)
            .backoff(Backoff::none())
            .min_time_left(Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .layer(backend.clone());
    let start = Instant::now();
    let mut r = req();
    r.deadline = Some(Deadline::after(Duration::from_secs(1)));
    let err = svc.oneshot(r).await.unwrap_err();
    assert_eq!(exhausted(&err).reason, RetryStop::Deadline);
    assert_eq!(
        backend.offsets(start),
        [Duration::ZERO, Duration::from_millis(400)]
    );
}

#[tokio::test(start_paused = true)]
async fn backoff_never_sleeps_past_the_deadline() {
    // Exponential backoff that would reach 800 ms: with a 1 s deadline and
    // instant failures, it stops before a sleep that ends past it.
    let backend = Backend::new(&[Step::Refused]);
    let svc = RetryLayer::new(
        policy()
            .max_attempts(10)
            .backoff(Backoff::exponential(Duration::from_millis(100)))
            .build()
            .unwrap(),
    )
    .layer(backend.clone());
    let start = Instant::now();
    let deadline = Deadline::after(Duration::from_secs(1));
    let mut r = req();
    r.deadline = Some(deadline);
    let err = svc.oneshot(r).await.unwrap_err();
    assert_eq!(exhausted(&err).reason, RetryStop::Deadline);
    // 0, 100, 300, 700: next would wait 800 ms to 1500 ms
    let ms = Duration::from_millis;
    assert_eq!(backend.offsets(start), [ms(0), ms(100), ms(300), ms(700)]);
    assert!(Instant::now() <= deadline.instant());
}

#[tokio::test(start_paused = true)]
async fn budget_bounds_retries_under_total_outage() {
    let budget = RetryBudget::builder()
        .ratio(0.1)
        .min_per_sec(1)
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap();
    let log = EventLog::with_capacity(10_000);
    let backend = Backend::new(&[Step::Refused]);
    let mut svc = RetryLayer::new(
        policy()
            .max_attempts(3)
            .backoff(Backoff::none())
            .budget(budget.clone())
            .events(log.sink())
            .build()
            .unwrap(),
    )
    .layer(backend.clone());
    let requests = 1000u32;
    let mut budget_stops = 0;
    for _ in 0..requests {
        let err = svc.ready().await.unwrap().call(req()).await.unwrap_err();
        if exhausted(&err).reason == RetryStop::BudgetExhausted {
            budget_stops += 1;
        }
        // 1000 requests over 5 s
        advance(Duration::from_millis(5)).await;
    }
    let retries = backend.calls() as u32 - requests;
    // 0.1 x requests + the floor (1/s over the 10 s ttl)
    assert!(retries <= requests / 10 + 10, "retries {retries}");
    assert!(retries >= requests / 10, "retries {retries}");
    assert!(budget_stops > 900, "budget stops {budget_stops}");
    assert_eq!(budget.retries_allowed(), u64::from(retries));
    let exhausted_events = log
        .kinds()
        .iter()
        .filter(|k| {
            matches!(
                k,
                EventKind::RetriesExhausted {
                    reason: RetryStop::BudgetExhausted,
                    ..
                }
            )
        })
        .count();
    assert_eq!(exhausted_events, budget_stops);

    // Traffic that succeeds refills it.
    advance(Duration::from_secs(11)).await;
    let ok = Backend::new(&[Step::Answer(status(200))]);
    let mut ok_svc = RetryLayer::new(policy().budget(budget.clone()).build().unwrap()).layer(ok);
    for _ in 0..200 {
        ok_svc.ready().await.unwrap().call(req()).await.unwrap();
    }
    assert_eq!(budget.available(), 20 + 10);
}

#[tokio::test(start_paused = true)]
async fn dropping_mid_backoff_cancels() {
    let backend = Backend::new(&[Step::Refused]);
    let mut svc = RetryLayer::new(
        policy()
            .backoff(Backoff::constant(Duration::from_secs(1)))
            .build()
            .unwrap(),
    )
    .layer(backend.clone());
    let fut = svc.ready().await.unwrap().call(req());
    let mut fut = Box::pin(fut);
    // First poll: the attempt fails at once and the backoff starts.
    assert!(futures_poll(&mut fut).is_pending());
    assert_eq!(backend.calls(), 1);
    drop(fut);
    advance(Duration::from_secs(5)).await;
    assert_eq!(backend.calls(), 1);
}

fn futures_poll<F: Future + Unpin>(f: &mut F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(f).poll(&mut cx)
}

#[tokio::test(start_paused = true)]
async fn retry_if_refuses_unsafe_requests_without_cloning() {
    let backend = Backend::new(&[Step::Refused]);
    let p = policy().retry_if(|r: &Req| r.idempotent).build().unwrap();
    let svc = RetryLayer::new(p).layer(backend.clone());
    let mut r = req();
    r.idempotent = false;
    let clones = r.clones.clone();
    let err = svc.oneshot(r).await.unwrap_err();
    assert_eq!(exhausted(&err).reason, RetryStop::NotRepeatable);
    assert_eq!(exhausted(&err).attempts, 1);
    assert_eq!(clones.load(Ordering::SeqCst), 0);
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn max_attempts_one_never_clones() {
    let backend = Backend::new(&[Step::Refused]);
    let svc = RetryLayer::new(policy().max_attempts(1).build().unwrap()).layer(backend.clone());
    let r = req();
    let clones = r.clones.clone();
    let err = svc.oneshot(r).await.unwrap_err();
    // never retried by policy: the error comes back unchanged
    assert!(err.is::<io::Error>(), "{err}");
    assert_eq!(clones.load(Ordering::SeqCst), 0);
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn waits_for_readiness_before_retrying() {
    let p = RetryPolicy::builder()
        .backoff(Backoff::none())
        .build()
        .unwrap();
    let (mock, mut handle) = tower_test::mock::pair::<&'static str, &'static str>();
    let mut svc = RetryLayer::new(p).layer(mock);
    handle.allow(1);
    let fut = svc.ready().await.unwrap().call("hello");
    let mut fut = Box::pin(fut);
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, "hello");
    send.send_error(io::Error::from(io::ErrorKind::ConnectionReset));
    // the retry waits: the mock has no readiness left
    assert!(futures_poll(&mut fut).is_pending());
    handle.allow(1);
    let (req, send) = tokio::select! {
        r = handle.next_request() => r.unwrap(),
        _ = &mut fut => panic!("finished early"),
    };
    assert_eq!(req, "hello");
    send.send_response("world");
    assert_eq!(fut.await.unwrap(), "world");
}

/// The deadline is checked again once the service is ready: a retry
/// decided with time to spare does not start when waiting for readiness
/// ate that time. The caller gets the last error, marked `Deadline`.
#[tokio::test(start_paused = true)]
async fn no_attempt_starts_when_readiness_waited_past_the_minimum() {
    let log = EventLog::new();
    let p = RetryPolicy::builder()
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .min_time_left(Duration::from_millis(50))
        .events(log.sink())
        .build()
        .unwrap();
    let (mock, mut handle) = tower_test::mock::pair::<Req, &'static str>();
    let mut svc = RetryLayer::new(p).layer(mock);
    handle.allow(1);
    let mut r = req();
    r.deadline = Some(Deadline::after(Duration::from_secs(1)));
    let mut fut = Box::pin(svc.ready().await.unwrap().call(r));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(io::Error::from(io::ErrorKind::ConnectionRefused));
    // 900 ms left after the backoff: the retry is decided.
    assert!(futures_poll(&mut fut).is_pending());
    advance(Duration::from_millis(100)).await;
    // The mock is not ready: the future waits while the time runs out.
    assert!(futures_poll(&mut fut).is_pending());
    advance(Duration::from_millis(860)).await;
    handle.allow(1);
    let err = match futures_poll(&mut fut) {
        std::task::Poll::Ready(out) => out.unwrap_err(),
        std::task::Poll::Pending => panic!("a retry with 40 ms left must not start"),
    };
    let ex = exhausted(&err);
    assert_eq!(ex.reason, RetryStop::Deadline);
    assert_eq!(ex.attempts, 1);
    assert!(ex.last.is::<io::Error>(), "{}", ex.last);
    assert!(matches!(
        log.kinds().last(),
        Some(EventKind::RetriesExhausted {
            reason: RetryStop::Deadline,
            attempts: 1,
            ..
        })
    ));
    drop((fut, svc));
    assert!(handle.next_request().await.is_none(), "no second attempt");
}

/// An `Ok` response classified retryable is kept while the retry waits,
/// and handed back as it is when the deadline stops the retry late.
#[tokio::test(start_paused = true)]
async fn late_deadline_stop_returns_the_last_failure_response() {
    let p = RetryPolicy::builder()
        .classifier(|res: &Result<u16, BoxError>| match res {
            Ok(503) => Outcome::failure(FailureKind::Unavailable),
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::failure(FailureKind::Unknown),
        })
        .backoff(Backoff::none())
        .build()
        .unwrap();
    let (mock, mut handle) = tower_test::mock::pair::<Req, u16>();
    let mut svc = RetryLayer::new(p).layer(mock);
    handle.allow(1);
    let mut r = req();
    r.deadline = Some(Deadline::after(Duration::from_secs(1)));
    let mut fut = Box::pin(svc.ready().await.unwrap().call(r));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(503);
    assert!(futures_poll(&mut fut).is_pending());
    advance(Duration::from_secs(2)).await;
    handle.allow(1);
    assert_eq!(fut.await.unwrap(), 503);
}

/// Issue 13, D3: configurations `build()` accepts whose delays pass the
/// clock's range saturate (a sleep far in the future) instead of panicking
/// with "overflow when adding duration to instant".
#[tokio::test(start_paused = true)]
async fn absurd_delays_saturate_instead_of_panicking() {
    let huge = Duration::from_secs(u64::MAX);
    // (backoff, calls after a few days, done by then)
    let cases = [
        (Backoff::constant(Duration::MAX), 1, false),
        // 1 s, then 1e300 s.
        (
            Backoff::exponential(Duration::from_secs(1))
                .max(Duration::MAX)
                .multiplier(1e300),
            2,
            false,
        ),
        // Its cap used to be converted with `Duration::from_secs_f64`.
        (
            Backoff::decorrelated(Duration::from_secs(1)).max(Duration::MAX),
            3,
            true,
        ),
        // Zero grown by an infinite factor is not a number: zero, not the cap.
        (
            Backoff::exponential(Duration::ZERO)
                .max(Duration::MAX)
                .multiplier(1e300)
                .jitter(Jitter::Equal),
            3,
            true,
        ),
    ];
    for (backoff, calls, done) in cases {
        let backend = Backend::new(&[Step::Refused]);
        let svc =
            RetryLayer::new(policy().backoff(backoff).build().unwrap()).layer(backend.clone());
        let mut fut = Box::pin(svc.oneshot(req()));
        let mut ready = futures_poll(&mut fut).is_ready();
        for _ in 0..3 {
            if ready {
                break;
            }
            advance(Duration::from_secs(86_400)).await;
            ready = futures_poll(&mut fut).is_ready();
        }
        assert_eq!((backend.calls(), ready), (calls, done), "{backoff:?}");
    }
    // A server's `Retry-After: 18446744073709551615`, honoured whatever
    // its length.
    let backend = Backend::new(&[Step::Answer(Resp {
        status: 429,
        retry_after: Some(huge),
    })]);
    let svc = RetryLayer::new(policy().max_retry_after(Duration::MAX).build().unwrap())
        .layer(backend.clone());
    let mut fut = Box::pin(svc.oneshot(req()));
    assert!(futures_poll(&mut fut).is_pending());
    advance(Duration::from_secs(86_400)).await;
    assert!(futures_poll(&mut fut).is_pending());
    assert_eq!(backend.calls(), 1);
}

mod backoff_props {
    use super::*;
    use proptest::prelude::*;

    /// Durations from zero to `Duration::MAX`, weighted towards both ends
    /// and the ordinary middle.
    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::MAX),
            (0u64..100_000).prop_map(Duration::from_millis),
            (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        ]
    }

    fn multiplier() -> impl Strategy<Value = f64> {
        prop_oneof![
            1.0f64..10.0,
            1.0f64..1e300,
            Just(f64::MAX),
            Just(f64::INFINITY),
            Just(f64::NAN),
            -10.0f64..1.0,
        ]
    }

    fn draw() -> impl Strategy<Value = f64> {
        prop_oneof![
            0.0f64..1.0,
            Just(1.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-1.0)
        ]
    }

    fn backoff() -> impl Strategy<Value = Backoff> {
        (0u8..3, duration(), duration(), multiplier(), 0u8..3).prop_map(
            |(shape, base, max, mult, jitter)| {
                match shape {
                    0 => Backoff::constant(base),
                    1 => Backoff::exponential(base).multiplier(mult).max(max),
                    _ => Backoff::decorrelated(base).max(max),
                }
                .jitter(match jitter {
                    0 => Jitter::None,
                    1 => Jitter::Full,
                    _ => Jitter::Equal,
                })
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any backoff, any retry number, any previous delay, any draw,
        /// any per-kind base: `delay` never panics and never exceeds the
        /// cap (lifted by a per-kind base above it).
        #[test]
        fn delay_never_panics_and_respects_the_cap(
            b in backoff(),
            retry in any::<u32>(),
            per_kind in proptest::option::of(duration()),
            prev in duration(),
            r in draw(),
        ) {
            let src = move || r;
            let d = b.delay(retry, per_kind, prev, &src);
            let cap = b.max_delay().max(per_kind.unwrap_or(b.base()));
            prop_assert!(d <= cap, "{d:?} > {cap:?}");
        }

        /// Any backoff `build()` accepts, and any retry-after, drives a
        /// retrying future without a panic.
        #[test]
        fn retry_future_never_panics(
            b in backoff(),
            retry_after in proptest::option::of(duration()),
            max_retry_after in duration(),
            seed in any::<u64>(),
        ) {
            let Ok(p) = policy()
                .backoff(b)
                .max_attempts(4)
                .max_retry_after(max_retry_after)
                .random(SeededRandom::new(seed))
                .build()
            else {
                return Ok(());
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async move {
                let backend = Backend::new(&[Step::Answer(Resp { status: 429, retry_after })]);
                let svc = RetryLayer::new(p).layer(backend.clone());
                let mut fut = Box::pin(svc.oneshot(req()));
                for _ in 0..4 {
                    if futures_poll(&mut fut).is_ready() {
                        break;
                    }
                    advance(Duration::from_secs(3600)).await;
                }
            });
        }
    }
}

/// Issue 13, D10: a request dropped while it sleeps in backoff gives back
/// the budget token it withdrew for the retry it will never make, at once
/// and into the slot it came from (so it is not counted twice once that
/// slot expires).
#[tokio::test(start_paused = true)]
async fn dropping_mid_backoff_returns_the_budget_token() {
    // A floor of 10 tokens over 10 s, nothing from deposits.
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_sec(1)
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap();
    let backend = Backend::new(&[Step::Refused]);
    let mut svc = RetryLayer::new(
        policy()
            .backoff(Backoff::constant(Duration::from_secs(5)))
            .budget(budget.clone())
            .build()
            .unwrap(),
    )
    .layer(backend.clone());
    assert_eq!(budget.available(), 10);

    // Dropped in the slot it withdrew in.
    let mut fut = Box::pin(svc.ready().await.unwrap().call(req()));
    assert!(futures_poll(&mut fut).is_pending());
    assert_eq!(budget.available(), 9);
    drop(fut);
    assert_eq!(budget.available(), 10);

    // Dropped 2.5 s (two slots) later: back into its own slot, so when the
    // ttl has passed the budget is at the floor, not one above it.
    let mut fut = Box::pin(svc.ready().await.unwrap().call(req()));
    assert!(futures_poll(&mut fut).is_pending());
    assert_eq!(budget.available(), 9);
    advance(Duration::from_millis(2_500)).await;
    drop(fut);
    assert_eq!(budget.available(), 10);
    advance(Duration::from_secs(8)).await;
    assert_eq!(budget.available(), 10);
    assert_eq!(backend.calls(), 2);

    // A retry that is sent keeps its token.
    let mut fut = Box::pin(svc.ready().await.unwrap().call(req()));
    assert!(futures_poll(&mut fut).is_pending());
    advance(Duration::from_secs(5)).await;
    assert!(futures_poll(&mut fut).is_pending());
    assert_eq!(backend.calls(), 4);
    // ... and the next one, withdrawn and dropped, is given back.
    assert_eq!(budget.available(), 8);
    drop(fut);
    assert_eq!(budget.available(), 9);
}

/// A request that is not `Clone` but knows how to copy itself, as an
/// `http::Request` with a replayable body does.
#[derive(Debug)]
struct Upload {
    bytes: Vec<u8>,
}

impl DeadlineCarrier for Upload {
    fn deadline(&self) -> Option<Deadline> {
        None
    }

    fn set_deadline(&mut self, _deadline: Deadline) {}
}

/// Copies an `Upload` while it is small; a large one is sent once.
#[derive(Debug, Clone, Copy)]
struct SmallUploads;

impl battlement_retry::RetryIf<Upload> for SmallUploads {
    fn may_retry(&self, _req: &Upload) -> bool {
        true
    }

    fn clone_request(&self, req: &Upload) -> Option<Upload> {
        (req.bytes.len() <= 4).then(|| Upload {
            bytes: req.bytes.clone(),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_that_is_not_clone_is_retried_through_its_retry_if() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::none())
        .retry_if(SmallUploads)
        .build()
        .unwrap();
    let mut svc = RetryLayer::new(policy).layer(tower::service_fn(move |req: Upload| {
        log.lock().unwrap().push(req.bytes.clone());
        async { Err::<(), BoxError>(io::Error::from(io::ErrorKind::ConnectionRefused).into()) }
    }));

    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Upload { bytes: vec![1, 2] })
        .await
        .unwrap_err();
    assert_eq!(err.downcast_ref::<RetriesExhausted>().unwrap().attempts, 3);
    assert_eq!(seen.lock().unwrap().len(), 3, "the same bytes, three times");
    assert!(seen.lock().unwrap().iter().all(|b| b == &[1, 2]));

    seen.lock().unwrap().clear();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Upload { bytes: vec![0; 64] })
        .await
        .unwrap_err();
    let exhausted = err.downcast_ref::<RetriesExhausted>().unwrap();
    assert_eq!(exhausted.reason, RetryStop::NotRepeatable);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a request that cannot be copied is sent once"
    );
}

#[tokio::test(start_paused = true)]
async fn never_repeats_any_request_type() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .retry_if(battlement_retry::Never::default())
        .build()
        .unwrap();
    let mut svc = RetryLayer::new(policy).layer(tower::service_fn(move |_req: Upload| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), BoxError>(io::Error::from(io::ErrorKind::ConnectionRefused).into()) }
    }));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Upload { bytes: vec![1] })
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<RetriesExhausted>().unwrap().reason,
        RetryStop::NotRepeatable
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// The policy is a component: it counts requests, attempts and retries,
/// the requests whose retries ran out by reason (the budget's denials
/// among them) and the retries that waited a `Retry-After`, and a reset
/// keeps every counter.
#[tokio::test(start_paused = true)]
async fn the_policy_is_a_component_counting_attempts_and_why_retries_end() {
    use battlement_core::{AsComponent, ComponentKind, Control};
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_sec(1)
        .ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    let policy = policy()
        .name("orders/retry")
        .max_attempts(3)
        .budget(budget)
        .build()
        .unwrap();
    let component = policy.as_component();
    assert_eq!(component.name(), "orders/retry");
    assert_eq!(component.kind(), ComponentKind::Retry);
    let layer = RetryLayer::new(policy);

    // A success first time is not counted (it costs the hot path nothing).
    let backend = Backend::new(&[Step::Answer(status(200))]);
    layer.layer(backend).oneshot(req()).await.unwrap();
    assert_eq!(component.health().details["attempts"], 0);

    // A 429 asking for 2 s, then a success: one retry, one Retry-After wait.
    let rate_limited = Step::Answer(Resp {
        status: 429,
        retry_after: Some(Duration::from_secs(2)),
    });
    let backend = Backend::new(&[rate_limited, Step::Answer(status(200))]);
    assert_eq!(
        layer.layer(backend).oneshot(req()).await.unwrap(),
        status(200)
    );
    // Always 503: one retry on the budget's floor (the window has moved on
    // since the 429's), the next one denied.
    let backend = Backend::new(&[Step::Answer(status(503))]);
    layer.layer(backend).oneshot(req()).await.unwrap();
    // A request that may not be repeated.
    let backend = Backend::new(&[Step::Answer(status(503))]);
    let svc = RetryLayer::new(
        RetryPolicy::builder()
            .classifier(classify as Classifier)
            .retry_if(|_: &Req| false)
            .build()
            .unwrap(),
    );
    let lone = svc.policy().clone();
    svc.layer(backend).oneshot(req()).await.unwrap();
    let h = lone.as_component().health();
    assert_eq!(h.details["exhausted_by_reason"]["not_repeatable"], 1);

    let h = component.health();
    let d = &h.details;
    assert_eq!(d["requests_retryable"], 2);
    assert_eq!(d["retries"], 2);
    assert_eq!(d["attempts"], 4);
    assert_eq!(d["retry_after_waits"], 1);
    assert_eq!(d["budget_denied"], 1);
    assert_eq!(d["exhausted"], 1);
    assert_eq!(d["exhausted_by_reason"]["budget_exhausted"], 1);
    assert_eq!(d["exhausted_by_reason"]["max_attempts"], 0);
    let exhausted: Vec<_> = h
        .metrics
        .iter()
        .filter(|m| m.name == "exhausted_total")
        .map(|m| (m.labels[0].1.to_string(), m.value))
        .collect();
    assert!(
        exhausted.contains(&("budget_exhausted".into(), 1.0)),
        "{exhausted:?}"
    );

    component.control(&Control::Reset).unwrap();
    assert_eq!(component.health().details["attempts"], 4, "monotonic");
    assert!(component.control(&Control::ForceOpen).is_err());
}

/// A backend that counts its clones (and otherwise is `backend`).
struct Counted {
    backend: Backend,
    clones: Arc<AtomicU32>,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Counted {
            backend: self.backend.clone(),
            clones: self.clones.clone(),
        }
    }
}

impl Service<Req> for Counted {
    type Response = Resp;
    type Error = BoxError;
    type Future = <Backend as Service<Req>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.backend.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.backend.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn the_service_is_cloned_only_for_a_retry() {
    let backend = Backend::new(&[
        Step::Answer(status(200)),
        Step::Answer(status(503)),
        Step::Answer(status(503)),
        Step::Answer(status(200)),
    ]);
    let clones = Arc::new(AtomicU32::new(0));
    let counted = Counted {
        backend: backend.clone(),
        clones: clones.clone(),
    };
    let mut svc = RetryLayer::new(policy().max_attempts(3).build().unwrap()).layer(counted);
    // One clone when the layer wraps the service: the spare.
    assert_eq!(clones.load(Ordering::SeqCst), 1);
    let first = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(first, status(200));
    assert_eq!(clones.load(Ordering::SeqCst), 1, "a success clones nothing");
    // Two retries of one request: one clone, reused for both.
    let second = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(second, status(200));
    assert_eq!(backend.calls(), 4);
    assert_eq!(clones.load(Ordering::SeqCst), 2);
}

/// A static policy over a service with nothing to drop (a `service_fn`
/// without captures): retries go through a copy of the service.
#[tokio::test(start_paused = true)]
async fn a_static_policy_over_a_plain_service_retries_through_its_copy() {
    static POLICY: std::sync::LazyLock<RetryPolicy<Classifier>> =
        std::sync::LazyLock::new(|| policy().max_attempts(3).build().unwrap());
    static CALLS: AtomicU32 = AtomicU32::new(0);
    fn answer(_: Req) -> std::future::Ready<Result<Resp, BoxError>> {
        // Refused twice, then served.
        let n = CALLS.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if n < 2 {
            Err(io::Error::from(io::ErrorKind::ConnectionRefused).into())
        } else {
            Ok(status(200))
        })
    }
    let plain = tower::service_fn(answer);
    assert!(!std::mem::needs_drop::<
        tower::util::ServiceFn<fn(Req) -> std::future::Ready<Result<Resp, BoxError>>>,
    >());
    let svc = RetryLayer::new(RetryPolicy::from_static(&POLICY)).layer(plain);
    assert_eq!(svc.oneshot(req()).await.unwrap(), status(200));
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
}
