//! A leaked retry layer keeps its services' spares for the process, for
//! the first 64 services it makes, so their calls count no reference; the
//! services past those count one, as an unleaked layer's do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use battlement_core::{BoxError, Leak};
use battlement_retry::{Backoff, Retry, RetryLayer, RetryPolicy};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A backend that refuses its first call and answers every later one,
/// holding `marker` so the test can see when its copies are freed.
fn flaky(
    calls: &Arc<AtomicU32>,
    marker: &Arc<()>,
) -> impl Service<u32, Response = u32, Error = BoxError> + Clone + use<> {
    let calls = calls.clone();
    let marker = marker.clone();
    service_fn(move |n: u32| {
        let _held = &marker;
        let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                Err::<u32, BoxError>(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                )))
            } else {
                Ok(n)
            }
        }
    })
}

fn layer() -> RetryLayer {
    RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::none())
        .build()
        .unwrap()
        .layer()
}

/// Calls `svc` once; the first attempt fails, so the answer comes from a
/// retry sent through the spare.
async fn retried<S>(svc: S, calls: &AtomicU32) -> u32
where
    S: Service<u32, Response = u32, Error = BoxError>,
{
    let before = calls.load(Ordering::SeqCst);
    let answer = svc.oneshot(7).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst) - before, 2, "one retry");
    answer
}

#[tokio::test(start_paused = true)]
async fn an_unleaked_layer_keeps_nothing_and_frees_its_spare() {
    let calls = Arc::new(AtomicU32::new(0));
    let marker = Arc::new(());
    let svc = layer().layer(flaky(&calls, &marker));
    assert!(!svc.is_kept());
    // The service and its spare.
    assert_eq!(Arc::strong_count(&marker), 3);
    assert_eq!(retried(svc, &calls).await, 7);
    assert_eq!(
        Arc::strong_count(&marker),
        1,
        "spare freed with the service"
    );
}

#[tokio::test(start_paused = true)]
async fn a_leaked_layer_keeps_the_spares_of_its_first_64_services() {
    let leaked = layer().leak();
    let marker = Arc::new(());
    let mut kept: Vec<Retry<_>> = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..64 {
        let c = Arc::new(AtomicU32::new(0));
        kept.push(leaked.layer(flaky(&c, &marker)));
        calls.push(c);
    }
    assert!(kept.iter().all(Retry::is_kept));

    // The 65th and later count a reference to their spare, and free it.
    let c = Arc::new(AtomicU32::new(0));
    let counted = leaked.layer(flaky(&c, &marker));
    assert!(!counted.is_kept());
    let before = Arc::strong_count(&marker);
    assert_eq!(retried(counted, &c).await, 7);
    assert_eq!(Arc::strong_count(&marker), before - 2);

    // A kept service retries through its kept spare, its copies too, and
    // dropping them all leaves the spare in place.
    for (svc, c) in kept.into_iter().zip(&calls) {
        let copy = svc.clone();
        assert!(copy.is_kept());
        assert_eq!(retried(copy, c).await, 7);
        // Refuse the next first attempt again.
        c.store(0, Ordering::SeqCst);
        assert_eq!(retried(svc, c).await, 7);
    }
    assert_eq!(Arc::strong_count(&marker), 1 + 64, "each kept spare stays");
}

#[tokio::test(start_paused = true)]
async fn a_policy_kept_in_a_static_keeps_spares_too() {
    static POLICY: std::sync::OnceLock<RetryPolicy> = std::sync::OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        RetryPolicy::builder()
            .max_attempts(2)
            .backoff(Backoff::none())
            .build()
            .unwrap()
    });
    let calls = Arc::new(AtomicU32::new(0));
    let marker = Arc::new(());
    let svc = RetryLayer::new(RetryPolicy::from_static(policy)).layer(flaky(&calls, &marker));
    assert!(svc.is_kept());
    assert_eq!(retried(svc, &calls).await, 7);
    assert_eq!(Arc::strong_count(&marker), 2, "the kept spare stays");
}
