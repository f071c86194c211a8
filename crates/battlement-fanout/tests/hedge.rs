//! Hedging behaviour on paused time.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use battlement_core::{AsComponent, BoxError, Deadline, DeadlineExceeded, EventKind, EventLog};
use battlement_fanout::{Hedge, HedgeLayer};
use common::{Answer, Counters, Mock, Req, ms};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

type Fut = Pin<Box<dyn Future<Output = Result<&'static str, BoxError>> + Send>>;

/// Polls `fut` once (to let it start or send what is due).
async fn poll_once(fut: &mut Fut) -> Option<Result<&'static str, BoxError>> {
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(Some(r)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

fn hedged(layer: &HedgeLayer, mock: Mock) -> Hedge<Mock> {
    layer.layer(mock)
}

#[tokio::test(start_paused = true)]
async fn backup_fires_exactly_at_the_delay_and_the_winner_takes_it() {
    let c = Arc::new(Counters::default());
    let log = EventLog::new();
    let layer = HedgeLayer::builder("h")
        .delay(ms(100))
        .events(log.sink())
        .build()
        .unwrap();
    let mock =
        Mock::new("m", ms(0), Answer::Ok, &c).script(&[(1000, Answer::Ok), (50, Answer::Ok)]);
    let mut svc = hedged(&layer, mock);
    svc.ready().await.unwrap();
    let start = Instant::now();
    let mut fut: Fut = Box::pin(svc.call(Req::default()));
    assert!(poll_once(&mut fut).await.is_none());
    tokio::time::advance(ms(99)).await;
    assert!(poll_once(&mut fut).await.is_none());
    assert_eq!(c.calls(), 1, "no backup before the delay");
    tokio::time::advance(ms(1)).await;
    assert!(poll_once(&mut fut).await.is_none());
    assert_eq!(c.calls(), 2, "backup at exactly the delay");
    let res = fut.await.unwrap();
    assert_eq!(res, "m");
    assert_eq!(start.elapsed(), ms(150), "the backup won");
    assert_eq!(c.dropped(), 1, "the slow primary was dropped");
    let h = layer.handle();
    assert_eq!((h.hedges_sent(), h.hedges_won()), (1, 1));
    assert_eq!(
        log.kinds(),
        [EventKind::Hedged {
            hedge: 1,
            after: ms(100)
        }]
    );
    let health = h.as_component().health();
    assert_eq!(health.details["hedges_won"], 1.0);
}

#[tokio::test(start_paused = true)]
async fn a_fast_primary_sends_no_backup() {
    let c = Arc::new(Counters::default());
    let layer = HedgeLayer::builder("h").delay(ms(100)).build().unwrap();
    let mut svc = hedged(&layer, Mock::new("m", ms(40), Answer::Ok, &c));
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(Req::default())
        .await
        .unwrap();
    assert_eq!(res, "m");
    assert_eq!(c.calls(), 1);
    assert_eq!(layer.handle().hedges_sent(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_primary_waits_for_the_backup_to_succeed() {
    let c = Arc::new(Counters::default());
    let layer = HedgeLayer::builder("h").delay(ms(100)).build().unwrap();
    let mock =
        Mock::new("m", ms(0), Answer::Ok, &c).script(&[(150, Answer::Fail), (200, Answer::Ok)]);
    let mut svc = hedged(&layer, mock);
    let start = Instant::now();
    let res = svc.ready().await.unwrap().call(Req::default()).await;
    assert_eq!(res.unwrap(), "m");
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!(layer.handle().hedges_won(), 1);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_failing_returns_the_last_error_at_once() {
    let c = Arc::new(Counters::default());
    let layer = HedgeLayer::builder("h")
        .delay(ms(100))
        .max_hedges(3)
        .build()
        .unwrap();
    let mock = Mock::new("m", ms(0), Answer::Ok, &c).script(&[(30, Answer::Fail)]);
    let mut svc = hedged(&layer, mock);
    let start = Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Req::default())
        .await
        .unwrap_err();
    assert!(err.is::<std::io::Error>());
    assert_eq!(
        start.elapsed(),
        ms(30),
        "no waiting for a backup after a failure"
    );
    assert_eq!(c.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn up_to_max_hedges_backups_each_a_delay_apart() {
    let c = Arc::new(Counters::default());
    let log = EventLog::new();
    let layer = HedgeLayer::builder("h")
        .delay(ms(100))
        .max_hedges(2)
        .events(log.sink())
        .build()
        .unwrap();
    let mut svc = hedged(&layer, Mock::new("m", ms(1000), Answer::Ok, &c));
    let start = Instant::now();
    svc.ready()
        .await
        .unwrap()
        .call(Req::default())
        .await
        .unwrap();
    assert_eq!(start.elapsed(), ms(1000), "the primary won");
    assert_eq!(c.calls(), 3);
    assert_eq!(c.dropped(), 2, "both backups dropped");
    let afters: Vec<_> = log
        .kinds()
        .into_iter()
        .map(|k| match k {
            EventKind::Hedged { after, .. } => after,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(afters, [ms(100), ms(200)]);
    assert_eq!(layer.handle().hedges_won(), 0);
}

#[tokio::test(start_paused = true)]
async fn percentile_delay_follows_a_changed_latency_distribution() {
    let c = Arc::new(Counters::default());
    let layer = HedgeLayer::builder("h")
        .delay(ms(1000))
        .percentile(50.0, 20)
        .min_samples(5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mock = Mock::new("m", ms(10), Answer::Ok, &c);
    let delay_ms = mock.delay_ms.clone();
    let mut svc = hedged(&layer, mock);
    assert_eq!(
        handle.current_delay(),
        ms(1000),
        "fixed until enough samples"
    );
    for _ in 0..20 {
        svc.ready()
            .await
            .unwrap()
            .call(Req::default())
            .await
            .unwrap();
    }
    // Read from a bucketed histogram: at most 12.5% above the exact value.
    let near = |d: std::time::Duration, exact: std::time::Duration| {
        d >= exact && d.as_secs_f64() <= exact.as_secs_f64() * 1.125
    };
    assert!(
        near(handle.current_delay(), ms(10)),
        "{:?}",
        handle.current_delay()
    );
    assert_eq!(handle.hedges_sent(), 0);
    delay_ms.store(200, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..20 {
        svc.ready()
            .await
            .unwrap()
            .call(Req::default())
            .await
            .unwrap();
    }
    assert!(
        near(handle.current_delay(), ms(200)),
        "the window moved to the new latency: {:?}",
        handle.current_delay()
    );
    assert!(
        handle.hedges_sent() > 0,
        "slow requests were hedged meanwhile"
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_backups_as_a_fraction_of_requests() {
    let c = Arc::new(Counters::default());
    let layer = HedgeLayer::builder("h")
        .delay(ms(10))
        .budget(0.1)
        .build()
        .unwrap();
    let mut svc = hedged(&layer, Mock::new("m", ms(100), Answer::Ok, &c));
    for _ in 0..100 {
        svc.ready()
            .await
            .unwrap()
            .call(Req::default())
            .await
            .unwrap();
    }
    let h = layer.handle();
    assert_eq!(h.requests(), 100);
    assert_eq!(h.hedges_sent(), 10);
    assert_eq!(h.budget_denied(), 90);
}

fn with_deadline(after: std::time::Duration) -> Req {
    Req {
        deadline: Some(Deadline::after(after)),
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_the_hedged_call_and_stops_backups_that_cannot_help() {
    let c = Arc::new(Counters::default());
    let log = EventLog::new();
    let layer = HedgeLayer::builder("h")
        .delay(ms(100))
        .max_hedges(3)
        .events(log.sink())
        .build()
        .unwrap();
    let mut svc = hedged(&layer, Mock::new("m", ms(1000), Answer::Ok, &c));
    let start = Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(with_deadline(ms(250)))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), ms(250), "ends at the deadline");
    let exceeded = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!((exceeded.budget, exceeded.elapsed), (ms(250), ms(250)));
    // Backup 1 at 100 ms had 150 ms left (>= the 100 ms delay): sent.
    // Backup 2 would have been due at 200 ms with 50 ms left: not sent.
    assert_eq!(c.calls(), 2);
    assert_eq!(c.dropped(), 2, "every attempt dropped at the deadline");
    let h = layer.handle();
    assert_eq!(
        (h.hedges_sent(), h.deadline_skipped(), h.deadline_exceeded()),
        (1, 1, 1)
    );
    assert_eq!(
        log.kinds(),
        [EventKind::Hedged {
            hedge: 1,
            after: ms(100)
        }]
    );
    assert_eq!(h.as_component().health().details["deadline_exceeded"], 1.0);
}

#[tokio::test(start_paused = true)]
async fn no_backup_when_less_than_the_delay_is_left_and_the_budget_is_untouched() {
    let c = Arc::new(Counters::default());
    let layer = HedgeLayer::builder("h")
        .delay(ms(100))
        .budget(1.0)
        .build()
        .unwrap();
    let mut svc = hedged(&layer, Mock::new("m", ms(1000), Answer::Ok, &c));
    let start = Instant::now();
    let mut fut: Fut = Box::pin(svc.ready().await.unwrap().call(with_deadline(ms(150))));
    assert!(poll_once(&mut fut).await.is_none());
    tokio::time::advance(ms(100)).await;
    assert!(poll_once(&mut fut).await.is_none());
    assert_eq!(c.calls(), 1, "a backup at 100 ms would have 50 ms left");
    let err = fut.await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>());
    assert_eq!(start.elapsed(), ms(150));
    let h = layer.handle();
    assert_eq!((h.hedges_sent(), h.budget_denied()), (0, 0));
    assert_eq!(h.deadline_skipped(), 1);
    assert_eq!(c.dropped(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_backup_is_sent_when_exactly_the_delay_is_left_and_can_win() {
    let c = Arc::new(Counters::default());
    let layer = HedgeLayer::builder("h").delay(ms(100)).build().unwrap();
    let mock =
        Mock::new("m", ms(0), Answer::Ok, &c).script(&[(1000, Answer::Ok), (80, Answer::Ok)]);
    let mut svc = hedged(&layer, mock);
    let start = Instant::now();
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(with_deadline(ms(200)))
        .await
        .unwrap();
    assert_eq!(res, "m");
    assert_eq!(
        start.elapsed(),
        ms(180),
        "the backup answered before the deadline"
    );
    let h = layer.handle();
    assert_eq!((h.hedges_sent(), h.hedges_won()), (1, 1));
    assert_eq!((h.deadline_skipped(), h.deadline_exceeded()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_expired_deadline_fails_at_once_without_calling() {
    let c = Arc::new(Counters::default());
    let layer = HedgeLayer::builder("h").delay(ms(100)).build().unwrap();
    let mut svc = hedged(&layer, Mock::new("m", ms(10), Answer::Ok, &c));
    let req = with_deadline(ms(50));
    tokio::time::advance(ms(50)).await;
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    assert_eq!(start.elapsed(), ms(0));
    let exceeded = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!(exceeded.budget, ms(0));
    assert_eq!(c.calls(), 0, "the inner service was not called");
    assert_eq!(layer.handle().deadline_exceeded(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_still_ends_the_call_while_the_backup_service_is_not_ready() {
    let layer = HedgeLayer::builder("h").delay(ms(100)).build().unwrap();
    let (mock, mut handle) = tower_test::mock::pair::<Req, &'static str>();
    let mut svc = layer.layer(mock);
    handle.allow(1);
    let start = Instant::now();
    let mut fut = Box::pin(svc.ready().await.unwrap().call(with_deadline(ms(300))));
    let (_req, _primary) = handle.next_request().await.unwrap();
    tokio::time::advance(ms(100)).await;
    // The backup is due, but its service has no capacity.
    assert!(std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())).await);
    let err = fut.await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>());
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!(layer.handle().hedges_sent(), 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_nothing_changes() {
    let c = Arc::new(Counters::default());
    let layer = HedgeLayer::builder("h").delay(ms(100)).build().unwrap();
    let mut svc = hedged(&layer, Mock::new("m", ms(5000), Answer::Ok, &c));
    let start = Instant::now();
    let res = svc.ready().await.unwrap().call(Req::default()).await;
    assert_eq!(res.unwrap(), "m");
    assert_eq!(start.elapsed(), ms(5000), "no deadline, no timeout");
    assert_eq!(layer.handle().deadline_exceeded(), 0);
}

#[test]
fn invalid_configs_are_rejected() {
    let field = |b: battlement_fanout::HedgeBuilder| b.build().unwrap_err().field;
    let b = || HedgeLayer::builder("h");
    assert_eq!(field(b().percentile(0.0, 10)), "percentile");
    assert_eq!(field(b().percentile(101.0, 10)), "percentile");
    assert_eq!(field(b().percentile(90.0, 0)), "window");
    assert_eq!(
        field(b().percentile(90.0, 10).min_samples(11)),
        "min_samples"
    );
    assert_eq!(field(b().max_hedges(0)), "max_hedges");
    assert_eq!(field(b().budget(0.0)), "budget");
    assert_eq!(field(b().budget(f64::NAN)), "budget");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Sweep: a hedge delay of any length, up to `Duration::MAX`, with or
    /// without a deadline, never overflows the clock: a primary that
    /// answers in 10 ms wins, with a backup only if the delay was shorter.
    #[test]
    fn hedge_delays_of_any_length_do_not_overflow(
        delay_ns in proptest::prop_oneof![
            1u64..50_000_000,
            proptest::prelude::any::<u64>(),
        ],
        huge in proptest::prelude::any::<bool>(),
        deadline_s in proptest::option::of(proptest::prelude::any::<u64>()),
    ) {
        let delay = if huge {
            std::time::Duration::MAX
        } else {
            std::time::Duration::from_nanos(delay_ns)
        };
        let (res, sent) = common::paused_runtime().block_on(async {
            let c = Arc::new(Counters::default());
            let layer = HedgeLayer::builder("h").delay(delay).build().unwrap();
            let mut svc = hedged(&layer, Mock::new("m", ms(10), Answer::Ok, &c));
            let req = Req {
                deadline: deadline_s.map(|s| Deadline::after(std::time::Duration::from_secs(s.max(1)))),
            };
            let res = svc.ready().await.unwrap().call(req).await;
            (res.is_ok(), layer.handle().hedges_sent())
        });
        proptest::prop_assert!(res);
        proptest::prop_assert!(sent <= u64::from(delay < ms(10)));
    }
}

proptest::proptest! {
    /// D5: the percentile window is bounded: any size outside 1..=65536 is
    /// refused at build, naming the field and the bound; inside, the
    /// window's memory is fixed whatever its size.
    #[test]
    fn the_percentile_window_is_bounded(window in proptest::prop_oneof![
        proptest::prelude::any::<usize>(),
        0usize..=2,
        65_535usize..=65_537,
    ]) {
        match HedgeLayer::builder("h").percentile(90.0, window).min_samples(1).build() {
            Ok(_) => proptest::prop_assert!((1..=65_536).contains(&window)),
            Err(err) => {
                proptest::prop_assert!(!(1..=65_536).contains(&window));
                proptest::prop_assert_eq!(err.field, "window");
                proptest::prop_assert!(err.bound.contains("1..=65536"));
            }
        }
    }
}
