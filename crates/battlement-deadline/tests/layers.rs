//! The layers on paused time.

use std::time::Duration;

use battlement_core::{
    AttemptTimedOut, BoxError, Classify, Control, Deadline, DeadlineCarrier, DeadlineExceeded,
    ErrorClassifier, EventKind, EventLog, FailureKind, InvalidConfig,
};
use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_test::mock;

type Req = http::Request<()>;

/// A service that sleeps `delay` and reports the deadline it saw.
fn sleeper(
    delay: Duration,
) -> impl Service<Req, Response = Option<Deadline>, Error = BoxError, Future: Send> + Clone {
    service_fn(move |req: Req| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, BoxError>(req.deadline())
    })
}

#[tokio::test(start_paused = true)]
async fn total_budget_cuts_a_slow_call_and_reports() {
    let log = EventLog::new();
    let layer = DeadlineLayer::new(Duration::from_millis(300))
        .name("orders")
        .events(log.sink());
    let handle = layer.handle();
    let mut svc = layer.layer(sleeper(Duration::from_secs(1)));
    let start = Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Req::new(()))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    let e = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!(e.budget, Duration::from_millis(300));
    assert_eq!(e.elapsed, Duration::from_millis(300));
    let outcome = ErrorClassifier::new().classify(&Err::<(), _>(err));
    assert!(!outcome.is_retryable());
    assert_eq!(
        log.kinds(),
        vec![EventKind::DeadlineExceeded {
            budget: Duration::from_millis(300),
            elapsed: Duration::from_millis(300),
        }]
    );
    assert_eq!(log.events()[0].component.as_ref(), "orders");
    assert_eq!(handle.deadline_exceeded(), 1);
    assert_eq!(handle.name(), "orders");
    let health = handle.shared_health();
    assert_eq!(health.details["deadline_exceeded"], 1);
}

/// Reads health through the `AsComponent` impl, as the registry does.
trait HealthExt {
    fn shared_health(&self) -> battlement_core::ComponentHealth;
}

impl HealthExt for battlement_deadline::DeadlineHandle {
    fn shared_health(&self) -> battlement_core::ComponentHealth {
        use battlement_core::AsComponent;
        self.as_component().health()
    }
}

#[tokio::test(start_paused = true)]
async fn fast_call_passes_and_sees_the_deadline() {
    let mut svc =
        DeadlineLayer::new(Duration::from_secs(2)).layer(sleeper(Duration::from_millis(10)));
    let start = Instant::now();
    let seen = svc.ready().await.unwrap().call(Req::new(())).await.unwrap();
    assert_eq!(seen, Some(Deadline::at(start + Duration::from_secs(2))));
}

#[tokio::test(start_paused = true)]
async fn nested_deadlines_keep_the_earlier() {
    // Outer 1 s, inner 5 s: the inner keeps the outer's deadline.
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .layer(DeadlineLayer::new(Duration::from_secs(5)))
        .service(sleeper(Duration::ZERO));
    let start = Instant::now();
    let seen = svc.ready().await.unwrap().call(Req::new(())).await.unwrap();
    assert_eq!(seen.unwrap().instant(), start + Duration::from_secs(1));

    // Outer 5 s, inner 1 s: the inner tightens it.
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(5)))
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .service(sleeper(Duration::ZERO));
    let seen = svc.ready().await.unwrap().call(Req::new(())).await.unwrap();
    assert_eq!(seen.unwrap().instant(), start + Duration::from_secs(1));

    // A deadline the request already carries is never loosened either,
    // and the error reports the budget that applied.
    let mut svc = DeadlineLayer::new(Duration::from_secs(5)).layer(sleeper(Duration::from_secs(3)));
    let mut req = Req::new(());
    req.set_deadline(Deadline::after(Duration::from_millis(700)));
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    let e = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!(e.budget, Duration::from_millis(700));
    assert_eq!(e.elapsed, Duration::from_millis(700));
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_fails_at_once_without_calling() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<Req, (), _>(DeadlineLayer::new(Duration::from_secs(1)));
    handle.allow(1);
    let mut req = Req::new(());
    req.set_deadline(Deadline::after(Duration::from_millis(10)));
    tokio::time::advance(Duration::from_millis(20)).await;
    assert!(svc.poll_ready().is_ready());
    let err = svc.call(req).await.unwrap_err();
    let e = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!(e.budget, Duration::ZERO);
    // The mock was never called.
    assert!(handle.poll_request().is_pending());
}

#[tokio::test(start_paused = true)]
async fn readiness_passes_through() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<Req, &'static str, _>(DeadlineLayer::new(Duration::from_secs(1)));
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(Req::new(()));
    let (req, send) = handle.next_request().await.unwrap();
    assert!(req.deadline().is_some());
    send.send_response("ok");
    assert_eq!(fut.await.unwrap(), "ok");
}

#[tokio::test(start_paused = true)]
async fn the_inner_future_is_dropped_when_cut() {
    struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = dropped.clone();
    let mut svc =
        DeadlineLayer::new(Duration::from_millis(100)).layer(service_fn(move |_: Req| {
            let flag = Flag(d.clone());
            async move {
                let _flag = flag;
                std::future::pending::<()>().await;
                Ok::<(), BoxError>(())
            }
        }));
    let fut = svc.ready().await.unwrap().call(Req::new(()));
    tokio::pin!(fut);
    let err = (&mut fut).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>());
    // Cancelled as soon as the deadline fired, not when the future is dropped.
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn request_types_without_a_carrier_still_time_out() {
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_millis(250)))
        .service(service_fn(|_: String| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BoxError>(())
        }));
    let start = Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call("x".to_owned())
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>());
    assert_eq!(start.elapsed(), Duration::from_millis(250));

    // A type of the user's own with an empty impl.
    struct Ping;
    impl DeadlineCarrier for Ping {}
    let mut svc =
        AttemptTimeoutLayer::new(Duration::from_millis(50)).layer(service_fn(|_: Ping| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BoxError>(())
        }));
    let err = svc.ready().await.unwrap().call(Ping).await.unwrap_err();
    assert_eq!(
        *err.downcast_ref::<AttemptTimedOut>().unwrap(),
        AttemptTimedOut {
            timeout: Duration::from_millis(50)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_is_retryable_and_bounded_by_time_left() {
    let log = EventLog::new();
    let attempt = AttemptTimeoutLayer::new(Duration::from_millis(400)).events(log.sink());
    let handle = attempt.handle();
    let mut svc = attempt.layer(sleeper(Duration::from_secs(1)));

    // No deadline: the attempt's own bound.
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Req::new(()))
        .await
        .unwrap_err();
    assert!(err.is::<AttemptTimedOut>());
    let outcome = ErrorClassifier::new().classify(&Err::<(), _>(err));
    assert!(outcome.is_retryable());
    assert_eq!(outcome.as_failure().unwrap().kind, FailureKind::Timeout);

    // 250 ms left: the deadline bounds it, and it is not retryable.
    let mut req = Req::new(());
    req.set_deadline(Deadline::after(Duration::from_millis(250)));
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert!(err.is::<DeadlineExceeded>());
    assert!(
        !ErrorClassifier::new()
            .classify(&Err::<(), _>(err))
            .is_retryable()
    );
    assert_eq!(
        log.kinds(),
        vec![
            EventKind::AttemptTimedOut {
                timeout: Duration::from_millis(400)
            },
            EventKind::DeadlineExceeded {
                budget: Duration::from_millis(250),
                elapsed: Duration::from_millis(250)
            },
        ]
    );
    assert_eq!(handle.attempts_timed_out(), 1);
    assert_eq!(handle.deadline_exceeded(), 1);
    assert_eq!(handle.shared_health().details["role"], "attempt");
    use battlement_core::AsComponent;
    // Counters are monotonic: a reset keeps them.
    handle.as_component().control(&Control::Reset).unwrap();
    assert_eq!(handle.attempts_timed_out(), 1);
    assert_eq!(handle.deadline_exceeded(), 1);
    assert!(handle.as_component().control(&Control::ForceOpen).is_err());
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_tightens_the_deadline_it_passes_on() {
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .layer(AttemptTimeoutLayer::new(Duration::from_millis(300)))
        .service(sleeper(Duration::ZERO));
    let start = Instant::now();
    let seen = svc.ready().await.unwrap().call(Req::new(())).await.unwrap();
    assert_eq!(seen.unwrap().instant(), start + Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn fraction_splits_a_budget_between_setup_and_execution() {
    // One 1 s budget: setup may take 30% of it, execution the rest.
    let setup_layer = AttemptTimeoutLayer::builder()
        .fraction(0.3)
        .build()
        .unwrap();
    let exec_layer = AttemptTimeoutLayer::builder()
        .fraction(1.0)
        .build()
        .unwrap();

    let mut req = Req::new(());
    let start = Instant::now();
    req.set_deadline(Deadline::after(Duration::from_secs(1)));

    // A setup that would take 500 ms is cut at 300 ms, retryably.
    let mut setup = setup_layer.layer(sleeper(Duration::from_millis(500)));
    let err = setup
        .ready()
        .await
        .unwrap()
        .call(req.clone_head())
        .await
        .unwrap_err();
    assert_eq!(
        *err.downcast_ref::<AttemptTimedOut>().unwrap(),
        AttemptTimedOut {
            timeout: Duration::from_millis(300)
        }
    );
    assert_eq!(start.elapsed(), Duration::from_millis(300));

    // A quick setup leaves the rest for execution, which sees it all.
    let mut setup = setup_layer.layer(sleeper(Duration::from_millis(100)));
    let seen = setup
        .ready()
        .await
        .unwrap()
        .call(req.clone_head())
        .await
        .unwrap();
    // 30% of the 700 ms left at the setup's start.
    assert_eq!(
        seen.unwrap().instant(),
        start + Duration::from_millis(300 + 210)
    );
    assert_eq!(start.elapsed(), Duration::from_millis(400));
    let mut exec = exec_layer.layer(sleeper(Duration::from_secs(5)));
    let err = exec
        .ready()
        .await
        .unwrap()
        .call(req.clone_head())
        .await
        .unwrap_err();
    // Execution runs to the request's deadline: 600 ms, not retryable.
    let e = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!(e.budget, Duration::from_millis(600));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn the_layers_fraction_replaces_the_fixed_bound() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100)).fraction(0.5);
    let mut svc = layer.layer(sleeper(Duration::from_secs(5)));
    let mut req = Req::new(());
    req.set_deadline(Deadline::after(Duration::from_secs(1)));
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    // Half of the 1 s left, not the 100 ms it was built with.
    assert_eq!(
        *err.downcast_ref::<AttemptTimedOut>().unwrap(),
        AttemptTimedOut {
            timeout: Duration::from_millis(500)
        }
    );
    assert_eq!(start.elapsed(), Duration::from_millis(500));

    // No deadline to take a fraction of: unbounded by this layer.
    let mut quick = layer.layer(sleeper(Duration::from_secs(3)));
    let start = Instant::now();
    assert!(
        quick
            .ready()
            .await
            .unwrap()
            .call(Req::new(()))
            .await
            .is_ok()
    );
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[test]
#[should_panic(expected = "fraction must be in (0, 1]")]
fn the_layers_fraction_rejects_a_bad_value() {
    let _ = AttemptTimeoutLayer::new(Duration::from_secs(1)).fraction(0.0);
}

trait CloneHead {
    fn clone_head(&self) -> Req;
}

impl CloneHead for Req {
    fn clone_head(&self) -> Req {
        let mut r = Req::new(());
        if let Some(d) = self.deadline() {
            r.set_deadline(d);
        }
        r
    }
}

#[tokio::test(start_paused = true)]
async fn fraction_with_a_fixed_bound_takes_the_smaller() {
    let layer = AttemptTimeoutLayer::builder()
        .per_attempt(Duration::from_millis(100))
        .fraction(0.5)
        .build()
        .unwrap();
    let mut svc = layer.layer(sleeper(Duration::from_secs(5)));
    // 1 s left: half is 500 ms, the fixed bound 100 ms wins.
    let mut req = Req::new(());
    req.set_deadline(Deadline::after(Duration::from_secs(1)));
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<AttemptTimedOut>().unwrap().timeout,
        Duration::from_millis(100)
    );
    // No deadline: the fixed bound alone.
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Req::new(()))
        .await
        .unwrap_err();
    assert!(err.is::<AttemptTimedOut>());

    // Fraction only, no deadline: unbounded.
    let mut svc = AttemptTimeoutLayer::builder()
        .fraction(0.5)
        .build()
        .unwrap()
        .layer(sleeper(Duration::from_secs(5)));
    let start = Instant::now();
    assert!(svc.ready().await.unwrap().call(Req::new(())).await.is_ok());
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

/// A hand-written retry loop: three 400 ms attempts under a 1 s budget.
/// The first two are cut by their attempt bound (retryable); the third
/// starts with 200 ms left and is cut by the total deadline (not
/// retryable), at exactly 1 s.
#[tokio::test(start_paused = true)]
async fn total_budget_cuts_the_third_of_three_attempts() {
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = attempts.clone();
    let backend = service_fn(move |_: Req| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, BoxError>(())
        }
    });
    let attempt = AttemptTimeoutLayer::new(Duration::from_millis(400)).layer(backend);
    let total = DeadlineLayer::new(Duration::from_secs(1));
    let classifier = ErrorClassifier::new();
    let mut retrying = total.layer(service_fn(move |req: Req| {
        let mut attempt = attempt.clone();
        async move {
            let mut last = None;
            for _ in 0..3 {
                let mut r = Req::new(());
                if let Some(d) = req.deadline() {
                    r.set_deadline(d);
                }
                let res = attempt.ready().await?.call(r).await;
                let retryable = classifier.classify(&res).is_retryable();
                match res {
                    Ok(()) => return Ok(()),
                    Err(e) if !retryable => return Err(e),
                    Err(e) => last = Some(e),
                }
            }
            Err::<(), BoxError>(last.unwrap())
        }
    }));
    let start = Instant::now();
    let err = retrying
        .ready()
        .await
        .unwrap()
        .call(Req::new(()))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(err.is::<DeadlineExceeded>(), "{err}");
}

#[test]
fn invalid_config_names_the_field() {
    let e: InvalidConfig = DeadlineLayer::builder().build().unwrap_err();
    assert_eq!(e.field, "total");
    let e = DeadlineLayer::builder()
        .total(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!((e.field, e.bound.as_ref()), ("total", "must be > 0"));
    for f in [0.0, -0.1, 1.01, f64::NAN] {
        let e = AttemptTimeoutLayer::builder()
            .fraction(f)
            .build()
            .unwrap_err();
        assert_eq!(e.field, "fraction");
    }
    let e = AttemptTimeoutLayer::builder()
        .per_attempt(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "per_attempt");
    assert!(AttemptTimeoutLayer::builder().build().is_err());
    let layer = DeadlineLayer::builder()
        .total(Duration::from_secs(1))
        .name("x")
        .build()
        .unwrap();
    assert_eq!(layer.handle().name(), "x");
}

#[tokio::test(start_paused = true)]
async fn an_unbounded_attempt_sets_no_deadline() {
    let mut svc = AttemptTimeoutLayer::builder()
        .fraction(0.5)
        .build()
        .unwrap()
        .layer(sleeper(Duration::from_millis(10)));
    let seen = svc.ready().await.unwrap().call(Req::new(())).await.unwrap();
    assert_eq!(seen, None);
}

#[test]
fn the_response_future_is_tower_timeouts_plus_four_words() {
    type Inner = std::future::Ready<Result<u64, std::convert::Infallible>>;
    type Ours = battlement_deadline::future::ResponseFuture<Inner>;
    type Towers = tower::timeout::future::ResponseFuture<Inner>;
    let word = std::mem::size_of::<usize>();
    // The bound and flags in one word, the layer's counters in another,
    // and the deadline's instant (two words), kept beside the timer since
    // the timer is made only when the inner future is pending; `Option<Inner>`
    // fits in `Inner`'s niche here, `Option<Sleep>` in `Sleep`'s.
    assert!(
        std::mem::size_of::<Ours>() <= std::mem::size_of::<Towers>() + 4 * word,
        "ours {} bytes, tower's {}",
        std::mem::size_of::<Ours>(),
        std::mem::size_of::<Towers>(),
    );
}

/// `new` refuses a zero bound with a panic pointing to the builder, for
/// both layers and both services, as the builders refuse it with an error.
#[test]
fn a_zero_bound_is_refused_when_the_layer_or_service_is_made() {
    fn zero<T: 'static>(make: fn(Duration) -> T) -> Box<dyn Fn()> {
        Box::new(move || drop(make(Duration::ZERO)))
    }
    fn unit() -> impl Service<(), Response = (), Error = std::convert::Infallible> {
        tower::service_fn(|()| async { Ok(()) })
    }
    let cases = [
        ("total must be > 0", zero(DeadlineLayer::new)),
        (
            "total must be > 0",
            zero(|d| battlement_deadline::DeadlineService::new(unit(), d)),
        ),
        ("per_attempt must be > 0", zero(AttemptTimeoutLayer::new)),
        (
            "per_attempt must be > 0",
            zero(|d| battlement_deadline::AttemptTimeout::new(unit(), d)),
        ),
    ];
    for (i, (want, make)) in cases.iter().enumerate() {
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(make)).unwrap_err();
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(message.contains(want), "case {i}: {message}");
        assert!(message.contains("builder()"), "case {i}: {message}");
    }
}

/// The longest budgets saturate about thirty years out instead of
/// overflowing the instant, for every layer and every way in.
#[tokio::test(start_paused = true)]
async fn the_longest_budgets_saturate() {
    let far = Duration::from_secs(86_400 * 365 * 29);
    for seen in [
        DeadlineLayer::new(Duration::MAX)
            .layer(sleeper(Duration::ZERO))
            .oneshot(Req::new(()))
            .await,
        AttemptTimeoutLayer::new(Duration::MAX)
            .layer(sleeper(Duration::ZERO))
            .oneshot(Req::new(()))
            .await,
    ] {
        assert!(seen.unwrap().unwrap().remaining() > far);
    }

    // A fraction of a far-future deadline the request carries.
    let mut split = AttemptTimeoutLayer::builder()
        .per_attempt(Duration::MAX)
        .fraction(1.0)
        .build()
        .unwrap()
        .layer(sleeper(Duration::ZERO));
    let mut req = Req::new(());
    req.set_deadline(Deadline::after(Duration::MAX));
    let seen = split.ready().await.unwrap().call(req).await.unwrap();
    assert!(seen.unwrap().remaining() > far);
}

/// A call that completes at its first poll never makes a timer: the
/// stack runs even outside a runtime (making a `Sleep` there panics), and
/// pays nothing for the timer it did not need.
#[test]
fn a_call_ready_at_once_makes_no_timer() {
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .layer(AttemptTimeoutLayer::new(Duration::from_millis(100)))
        .service(service_fn(|req: Req| async move {
            Ok::<_, BoxError>(req.deadline().map(|d| d.remaining()))
        }));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = std::pin::pin!(svc.call(Req::new(())));
    let std::task::Poll::Ready(out) = fut.poll(&mut cx) else {
        panic!("a ready service's call is ready at once");
    };
    // The attempt's bound, tightened on the request and seen inside.
    let left = out.unwrap().expect("a deadline on the request");
    assert!(left <= Duration::from_millis(100), "{left:?}");
    assert!(left > Duration::from_millis(50), "{left:?}");
}
