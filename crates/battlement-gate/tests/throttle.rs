//! The adaptive throttle as a layer (deterministic with an injected random
//! source), as a governor signal, and its configuration.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use battlement_core::{
    AsComponent, BoxError, ComponentKind, FailureKind, HealthStatus, Outcome, Throttled,
};
use battlement_gate::{AdaptiveThrottle, Gate, Level, Rule, Signal, ThrottleLayer};
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};

#[derive(Debug)]
struct Overloaded;

impl std::fmt::Display for Overloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("overloaded")
    }
}

impl std::error::Error for Overloaded {}

#[tokio::test(start_paused = true)]
async fn throttles_as_the_backend_rejects_and_recovers() {
    // The random source returns whatever the test put in `draw`.
    let draw = Arc::new(AtomicU64::new(0.5f64.to_bits()));
    let d = draw.clone();
    let throttle = AdaptiveThrottle::builder("backend")
        .k(2.0)
        .max_probability(0.8)
        .window(Duration::from_secs(10))
        .random(move || f64::from_bits(d.load(SeqCst)))
        .build()
        .unwrap();
    let reject = Arc::new(AtomicBool::new(false));
    let r = reject.clone();
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let classify = |res: &Result<u32, BoxError>| match res {
        Err(e) if e.is::<Overloaded>() => Outcome::failure(FailureKind::RateLimited),
        Err(_) => Outcome::failure(FailureKind::Unknown),
        Ok(_) => Outcome::Success,
    };
    let mut svc = ThrottleLayer::new(throttle.clone())
        .classifier(classify)
        .layer(service_fn(move |x: u32| {
            c.fetch_add(1, SeqCst);
            let rejected = r.load(SeqCst);
            async move {
                if rejected {
                    Err::<u32, BoxError>(Box::new(Overloaded))
                } else {
                    Ok(x)
                }
            }
        }));

    // A healthy backend: nothing is throttled.
    for i in 0..20 {
        assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
    }
    assert_eq!(throttle.probability(), 0.0);
    let c = throttle.as_component();
    assert_eq!(c.kind(), ComponentKind::Throttle);
    assert_eq!(c.health().status, HealthStatus::Healthy);

    // The backend rejects everything: requests grow, accepts stay at 20.
    reject.store(true, SeqCst);
    draw.store(0.999f64.to_bits(), SeqCst); // never below p: count only
    for i in 0..40 {
        let _ = svc.ready().await.unwrap().call(i).await;
    }
    // (60 − 2·20) / 61
    let p = throttle.probability();
    assert!((p - 20.0 / 61.0).abs() < 1e-9, "{p}");
    assert_eq!(throttle.totals(), (60, 20));
    assert_eq!(c.health().status, HealthStatus::Degraded);

    // A draw below p refuses locally, without calling the backend.
    draw.store(0.1f64.to_bits(), SeqCst);
    let before = calls.load(SeqCst);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    let t = err.downcast_ref::<Throttled>().expect("Throttled");
    assert_eq!(&*t.name, "backend");
    assert!((t.probability - p).abs() < 1e-9);
    assert_eq!(calls.load(SeqCst), before);
    assert_eq!(throttle.throttled(), 1);

    // Capped at max_probability however bad it gets.
    for i in 0..1000 {
        let _ = svc.ready().await.unwrap().call(i).await;
    }
    assert_eq!(throttle.probability(), 0.8);

    // The window slides: the backend's past rejections are forgotten.
    advance(Duration::from_secs(11)).await;
    assert_eq!(throttle.probability(), 0.0);
    reject.store(false, SeqCst);
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn other_failures_count_as_accepts() {
    let throttle = AdaptiveThrottle::builder("t")
        .random(|| 0.0)
        .build()
        .unwrap();
    let mut svc = throttle.layer().layer(service_fn(|_: ()| async {
        Err::<(), BoxError>("plain failure".into())
    }));
    for _ in 0..50 {
        let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
        assert!(!err.is::<Throttled>());
    }
    assert_eq!(throttle.totals(), (50, 50));
}

#[tokio::test(start_paused = true)]
async fn throttle_as_a_governor_signal() {
    let throttle = AdaptiveThrottle::builder("t")
        .random(|| 1.0)
        .build()
        .unwrap();
    for _ in 0..100 {
        throttle.try_acquire().unwrap();
    }
    let mut signal = throttle.signal();
    assert_eq!(signal.name(), "throttle_probability");
    assert!((signal.sample(Instant::now()) - 0.9).abs() < 1e-9);
    let gate = Gate::new("api");
    let mut governor = gate
        .governor()
        .rule(Rule::new(signal).step(Level::Minimal, 0.5, 0.1))
        .build()
        .unwrap();
    assert_eq!(governor.tick(), Some(Level::Minimal));
}

#[test]
fn invalid_throttle_config() {
    let cases = [
        (AdaptiveThrottle::builder("t").k(0.5), "k"),
        (AdaptiveThrottle::builder("t").k(f64::NAN), "k"),
        (
            AdaptiveThrottle::builder("t").max_probability(1.5),
            "max_probability",
        ),
        (AdaptiveThrottle::builder("t").buckets(0), "buckets"),
        (AdaptiveThrottle::builder("t").buckets(1001), "buckets"),
        (
            AdaptiveThrottle::builder("t").buckets(usize::MAX),
            "buckets",
        ),
        (
            AdaptiveThrottle::builder("t").window(Duration::ZERO),
            "window",
        ),
    ];
    for (b, field) in cases {
        let err = b.build().unwrap_err();
        assert_eq!(err.component, "throttle");
        assert_eq!(err.field, field);
    }
}

/// Issue 13, D2: callers that give up on a slow backend (a deadline, a
/// hedge, a first-success fan-out) must count neither as requests nor as
/// rejections, or a healthy backend is refused locally afterwards.
#[tokio::test(start_paused = true)]
async fn cancelled_calls_count_neither_way() {
    let throttle = AdaptiveThrottle::builder("backend")
        .random(|| 0.5)
        .build()
        .unwrap();
    let mut slow = throttle.layer().layer(service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, BoxError>(())
    }));
    for _ in 0..50 {
        let call = slow.ready().await.unwrap().call(());
        let gave_up = tokio::time::timeout(Duration::from_millis(100), call).await;
        assert!(gave_up.is_err(), "the caller gives up first");
    }
    assert_eq!(throttle.totals(), (0, 0));
    assert_eq!(throttle.probability(), 0.0);

    let mut healthy = throttle
        .layer()
        .layer(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
    for _ in 0..1000 {
        healthy.ready().await.unwrap().call(()).await.unwrap();
    }
    assert_eq!(throttle.throttled(), 0);
    assert_eq!(throttle.totals(), (1000, 1000));
}

mod cancellation_props {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use battlement_core::{BoxError, FailureKind, Outcome};
    use battlement_gate::{AdaptiveThrottle, ThrottleLayer};
    use proptest::prelude::*;
    use tokio::sync::oneshot;
    use tower::{Layer, Service, service_fn};

    #[derive(Debug, Clone)]
    enum Op {
        Start,
        Answer(usize, bool),
        Drop(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => Just(Op::Start),
            2 => (any::<usize>(), any::<bool>()).prop_map(|(i, a)| Op::Answer(i, a)),
            1 => any::<usize>().prop_map(Op::Drop),
        ]
    }

    type Fut = Pin<Box<dyn Future<Output = Result<bool, BoxError>>>>;

    fn poll_once(f: &mut Fut) -> Poll<Result<bool, BoxError>> {
        f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    proptest! {
        /// Whatever mix of calls answered and calls dropped before their
        /// answer: the window counts exactly the answered calls as
        /// requests, and the accepted ones as accepts.
        #[test]
        fn dropped_calls_are_not_counted(ops in proptest::collection::vec(op(), 1..80)) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async move {
                // A draw of 1.0 is never below the probability: nothing is
                // refused locally, every call reaches the backend.
                let throttle = AdaptiveThrottle::builder("t").random(|| 1.0).build().unwrap();
                let classify = |r: &Result<bool, BoxError>| match r {
                    Ok(true) => Outcome::Success,
                    _ => Outcome::failure(FailureKind::Unavailable),
                };
                let mut svc = ThrottleLayer::new(throttle.clone())
                    .classifier(classify)
                    .layer(service_fn(|rx: oneshot::Receiver<bool>| async move {
                        Ok::<_, BoxError>(rx.await.unwrap_or(false))
                    }));
                let mut pending: Vec<(Fut, oneshot::Sender<bool>)> = vec![];
                let (mut requests, mut accepts) = (0u64, 0u64);
                for op in ops {
                    match op {
                        Op::Start => {
                            let (tx, rx) = oneshot::channel();
                            let mut fut: Fut = Box::pin(svc.call(rx));
                            prop_assert!(poll_once(&mut fut).is_pending());
                            pending.push((fut, tx));
                        }
                        Op::Answer(i, accepted) if !pending.is_empty() => {
                            let (mut fut, tx) = pending.swap_remove(i % pending.len());
                            tx.send(accepted).unwrap();
                            prop_assert!(poll_once(&mut fut).is_ready());
                            requests += 1;
                            accepts += u64::from(accepted);
                        }
                        Op::Drop(i) if !pending.is_empty() => {
                            drop(pending.swap_remove(i % pending.len()));
                        }
                        _ => {}
                    }
                    let in_flight = pending.len() as u64;
                    prop_assert_eq!(throttle.totals(), (requests + in_flight, accepts));
                }
                Ok(())
            })?;
        }
    }
}
