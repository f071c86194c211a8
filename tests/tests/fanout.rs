//! Fan-out over backends wrapped in real breakers, reporting into the
//! registry.

use std::time::Duration;

use battlement_breaker::Breaker;
use battlement_core::{BoxError, ComponentKind, EventKind, EventLog, HealthStatus};
use battlement_fanout::{FanOut, HedgeLayer, Reply, Strategy};
use battlement_registry::Registry;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt, service_fn};

type Backend = BoxCloneSyncService<u32, String, BoxError>;

fn backend(name: &'static str, breaker: &Breaker) -> Backend {
    BoxCloneSyncService::new(breaker.layer().layer(service_fn(move |q: u32| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, BoxError>(format!("{name}:{q}"))
    })))
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_skipped_and_everything_shows_in_the_registry() {
    let registry = Registry::new();
    let log = EventLog::new();
    let (a, b, c) = (
        Breaker::builder("a").build().unwrap(),
        Breaker::builder("b").build().unwrap(),
        Breaker::builder("c").build().unwrap(),
    );
    let mut fan = FanOut::builder("search")
        .backend("a", backend("a", &a))
        .backend("b", backend("b", &b))
        .backend("c", backend("c", &c))
        .strategy(Strategy::Quorum(2))
        .events(log.sink())
        .build()
        .unwrap();
    registry.register(&fan.handle()).unwrap();

    b.force_open();
    let res = fan.ready().await.unwrap().call(7).await.unwrap();
    assert_eq!(res.success_count(), 2);
    assert!(matches!(res.get("b").unwrap().reply, Reply::Skipped(_)));
    assert!(
        log.kinds()
            .iter()
            .any(|k| matches!(k, EventKind::Skipped { backend, .. } if &**backend == "b"))
    );

    // With two breakers open the quorum of 2 is out of reach at once,
    // without waiting for the third backend.
    c.force_open();
    let start = tokio::time::Instant::now();
    let err = fan.ready().await.unwrap().call(8).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    let q = err
        .downcast_ref::<battlement_core::QuorumNotReached>()
        .unwrap();
    assert_eq!((q.succeeded, q.needed), (0, 2));

    let report = registry.health();
    let search = report.component("search").expect("registered");
    assert_eq!(search.kind, ComponentKind::FanOut);
    assert_eq!(search.reported_status, HealthStatus::Degraded);
    assert_eq!(search.details["backends"]["b"]["skips"], 2);
    assert_eq!(search.details["backends"]["a"]["successes"], 1);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_registers_and_counts() {
    let registry = Registry::new();
    let hedge = HedgeLayer::builder("lookup")
        .delay(Duration::from_millis(5))
        .build()
        .unwrap();
    registry.register(&hedge.handle()).unwrap();
    let mut svc = hedge.layer(service_fn(|q: u32| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, BoxError>(q)
    }));
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);
    let report = registry.health();
    let h = report.component("lookup").unwrap();
    assert_eq!(h.kind, ComponentKind::Hedge);
    assert_eq!(h.details["hedges_sent"], 1.0);
    assert_eq!(h.details["hedges_won"], 0.0);
}

/// A cloneable request that carries its deadline.
#[derive(Clone, Debug, Default)]
struct Job {
    deadline: Option<battlement_core::Deadline>,
}

impl battlement_core::DeadlineCarrier for Job {
    fn deadline(&self) -> Option<battlement_core::Deadline> {
        self.deadline
    }
    fn set_deadline(&mut self, deadline: battlement_core::Deadline) {
        self.deadline = Some(deadline);
    }
}

#[tokio::test(start_paused = true)]
async fn a_hedge_under_a_deadline_layer_sends_only_backups_that_can_help() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    let hedge = HedgeLayer::builder("lookup")
        .delay(Duration::from_millis(100))
        .max_hedges(3)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let mut svc = tower::ServiceBuilder::new()
        .layer(battlement::deadline::DeadlineLayer::new(
            Duration::from_millis(250),
        ))
        .layer(hedge.clone())
        .service(service_fn(move |job: Job| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(job.deadline.is_some(), "every copy carries the deadline");
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, BoxError>(())
            }
        }));
    let start = tokio::time::Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Job::default())
        .await
        .unwrap_err();
    assert!(err.is::<battlement_core::DeadlineExceeded>());
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    // Backup at 100 ms (150 ms left) sent; at 200 ms (50 ms left) not.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(hedge.handle().hedges_sent(), 1);
    assert_eq!(hedge.handle().deadline_skipped(), 1);
}
