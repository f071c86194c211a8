//! The event stream on paused time: ids, replay after `Last-Event-ID`,
//! keep-alive comments, slow clients lagged and counted.

use std::time::Duration;

use battlement_core::{EventKind, Name};
use battlement_http::{HealthBody, HealthService};
use battlement_registry::{REPLAY, Registry};
use http::Request;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::ServiceExt;

async fn open(svc: &HealthService, last_id: Option<&str>) -> HealthBody {
    let mut req = Request::get("/health/events");
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    let res = svc
        .clone()
        .oneshot(req.body(String::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.into_body()
}

async fn next(body: &mut HealthBody) -> String {
    let frame = body.frame().await.unwrap().unwrap();
    String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
}

fn emit(registry: &Registry, n: usize) {
    let sink = registry.event_sink();
    let name: Name = "gate".into();
    for _ in 0..n {
        sink.emit(&name, || EventKind::Reset);
    }
}

#[tokio::test(start_paused = true)]
async fn events_carry_ids_and_a_reconnect_replays_what_it_missed() {
    let registry = Registry::new();
    let svc = HealthService::new(registry.clone());
    let mut live = open(&svc, None).await;
    assert_eq!(next(&mut live).await, ": battlement events\n\n");
    emit(&registry, 3);
    for id in 1..=3 {
        let m = next(&mut live).await;
        assert!(
            m.starts_with(&format!("id: {id}\nevent: reset\ndata: ")),
            "{m}"
        );
    }

    // Back after event 1: events 2 and 3 again, then live ones.
    let mut back = open(&svc, Some("1")).await;
    assert_eq!(next(&mut back).await, ": battlement events\n\n");
    assert!(next(&mut back).await.starts_with("id: 2\n"));
    assert!(next(&mut back).await.starts_with("id: 3\n"));
    emit(&registry, 1);
    assert!(next(&mut back).await.starts_with("id: 4\n"));

    // Back after more than the replay buffer holds: told how many are lost.
    emit(&registry, REPLAY + 4);
    let mut late = open(&svc, Some("1")).await;
    next(&mut late).await;
    let oldest = 4 + REPLAY + 4 - REPLAY + 1;
    assert_eq!(
        next(&mut late).await,
        format!("event: lagged\ndata: {{\"missed\":{}}}\n\n", oldest - 2)
    );
    assert!(
        next(&mut late)
            .await
            .starts_with(&format!("id: {oldest}\n"))
    );
    // A garbled id is a new client: no replay.
    let mut fresh = open(&svc, Some("soon")).await;
    next(&mut fresh).await;
    emit(&registry, 1);
    let last = 4 + REPLAY + 4 + 1;
    assert!(next(&mut fresh).await.starts_with(&format!("id: {last}\n")));
}

#[tokio::test(start_paused = true)]
async fn a_quiet_stream_sends_keep_alive_comments_at_the_interval() {
    let registry = Registry::new();
    let svc = HealthService::new(registry.clone()).with_keep_alive(Duration::from_secs(5));
    let mut body = open(&svc, None).await;
    next(&mut body).await;
    let start = Instant::now();
    assert_eq!(next(&mut body).await, ": keep-alive\n\n");
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    // An event starts the interval again.
    tokio::time::advance(Duration::from_secs(3)).await;
    emit(&registry, 1);
    assert!(next(&mut body).await.starts_with("id: 1\n"));
    let after_event = Instant::now();
    assert_eq!(next(&mut body).await, ": keep-alive\n\n");
    assert_eq!(after_event.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_slow_client_is_lagged_and_counted_and_never_holds_the_emitters() {
    let registry = Registry::builder().event_capacity(4).build().unwrap();
    let svc = HealthService::new(registry.clone());
    let mut slow = open(&svc, None).await;
    next(&mut slow).await;
    // Emitting never waits for the client that reads nothing.
    emit(&registry, 10);
    assert_eq!(
        next(&mut slow).await,
        "event: lagged\ndata: {\"missed\":6}\n\n"
    );
    assert!(next(&mut slow).await.starts_with("id: 7\n"));
    assert_eq!(registry.events_lagged(), 6);
    assert!(
        registry
            .prometheus_text()
            .contains("battlement_events_lagged_total 6")
    );
}

#[test]
#[should_panic(expected = "keep-alive interval must be > 0")]
fn a_zero_keep_alive_is_refused() {
    let _ = HealthService::new(Registry::new()).with_keep_alive(Duration::ZERO);
}
