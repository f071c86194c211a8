//! Half-open under concurrency: exactly `permitted_probes` calls reach the
//! inner service, and dropped probes give their permits back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Waker};
use std::time::Duration;

use battlement_breaker::{Breaker, BreakerService, CircuitState};
use battlement_core::{BoxError, CircuitOpen};
use tokio::time::{advance, sleep};
use tower::{Service, ServiceExt, service_fn};

fn tripped(probes: u32) -> Breaker {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .permitted_probes(probes)
        .success_threshold(probes)
        .build()
        .unwrap();
    b.force_open();
    b
}

#[tokio::test(start_paused = true)]
async fn sixty_four_tasks_in_half_open_admit_exactly_the_permitted_probes() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .permitted_probes(3)
        .success_threshold(3)
        .build()
        .unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let r = reached.clone();
    let svc = BreakerService::new(
        service_fn(move |fail: bool| {
            r.fetch_add(1, SeqCst);
            async move {
                sleep(Duration::from_secs(10)).await;
                if fail {
                    Err::<(), BoxError>("boom".into())
                } else {
                    Ok(())
                }
            }
        }),
        b.clone(),
    );
    // Trip it with one failure.
    let trip = tokio::spawn(svc.clone().oneshot(true));
    advance(Duration::from_secs(10)).await;
    trip.await.unwrap().unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
    reached.store(0, SeqCst);
    advance(Duration::from_secs(1)).await;

    let tasks: Vec<_> = (0..64)
        .map(|_| tokio::spawn(svc.clone().oneshot(false)))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(reached.load(SeqCst), 3);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    advance(Duration::from_secs(10)).await;
    let mut ok = 0;
    let mut rejected = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) if e.is::<CircuitOpen>() => rejected += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, rejected), (3, 61));
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn aborted_probe_tasks_give_their_permits_back() {
    let b = Breaker::builder("b")
        .no_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .permitted_probes(2)
        .build()
        .unwrap();
    let svc = BreakerService::new(
        service_fn(|()| async {
            sleep(Duration::from_secs(3600)).await;
            Ok::<(), BoxError>(())
        }),
        b.clone(),
    );
    b.force_open();
    b.reset();
    // Trip by a failure through a second service sharing the breaker.
    let mut failing = BreakerService::new(
        service_fn(|()| async { Err::<(), BoxError>("boom".into()) }),
        b.clone(),
    );
    failing.ready().await.unwrap().call(()).await.unwrap_err();
    advance(Duration::from_secs(1)).await;
    let probes: Vec<_> = (0..2)
        .map(|_| tokio::spawn(svc.clone().oneshot(())))
        .collect();
    tokio::task::yield_now().await;
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    for p in probes {
        p.abort();
        assert!(p.await.unwrap_err().is_cancelled());
    }
    // Both permits are back: a failing probe is admitted and re-opens.
    failing.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
}

/// Real threads racing for probe permits: never more than permitted.
#[test]
fn threads_racing_in_half_open_never_exceed_the_permits() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    // The breaker reads tokio's (paused) clock: build it in the runtime.
    let _context = rt.enter();
    for round in 0..50 {
        let b = tripped(4);
        b.reset();
        let reached = Arc::new(AtomicUsize::new(0));
        let r = reached.clone();
        let svc = BreakerService::new(
            service_fn(move |fail: bool| {
                r.fetch_add(1, SeqCst);
                async move {
                    if fail {
                        Err::<(), BoxError>("boom".into())
                    } else {
                        std::future::pending().await
                    }
                }
            }),
            b.clone(),
        );
        // Trip, then let the open duration pass on paused time and take
        // one probe in the runtime: the breaker is now half-open.
        rt.block_on(async {
            svc.clone().oneshot(true).await.unwrap_err();
            advance(Duration::from_secs(1)).await;
        });
        // The runtime is entered, so the call reads the paused clock.
        let first = svc.clone().call(false);
        assert_eq!(b.state(), CircuitState::HalfOpen, "round {round}");
        reached.store(0, SeqCst);
        let held: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let mut svc = svc.clone();
                    s.spawn(move || {
                        let mut kept = vec![];
                        let mut cx = Context::from_waker(Waker::noop());
                        for _ in 0..8 {
                            let mut f = Box::pin(svc.call(false));
                            if f.as_mut().poll(&mut cx).is_pending() {
                                kept.push(f);
                            }
                        }
                        kept
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(reached.load(SeqCst), 3, "round {round}");
        assert_eq!(held.len(), 3, "round {round}");
        drop(held);
        drop(first);
        // All four permits are free again.
        let again: Vec<_> = (0..5).map(|_| Box::pin(svc.clone().call(false))).collect();
        let mut cx = Context::from_waker(Waker::noop());
        let admitted: Vec<_> = again
            .into_iter()
            .filter_map(|mut f| f.as_mut().poll(&mut cx).is_pending().then_some(f))
            .collect();
        assert_eq!(admitted.len(), 4, "round {round}");
    }
}
