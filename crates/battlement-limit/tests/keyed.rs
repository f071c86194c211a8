//! The keyed breaker: one breaker per key, a bound on keys with idle keys
//! evicted, one component.

use std::time::Duration;

use battlement_core::{BoxError, CircuitOpen, CircuitState, Control, HealthStatus};
use battlement_limit::KeyedBreaker;
use tokio::time::advance;
use tower::{Service, ServiceExt, service_fn};

type Req = (u32, bool);

fn hosts(max_keys: usize) -> KeyedBreaker<u32> {
    KeyedBreaker::builder("hosts")
        .breaker(|b| {
            b.consecutive_failures(2)
                .open_duration(Duration::from_secs(30))
        })
        .max_keys(max_keys)
        .idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn client(
    keyed: &KeyedBreaker<u32>,
) -> impl Service<Req, Response = &'static str, Error = BoxError> + use<> {
    tower::Layer::layer(
        &keyed.layer(|req: &Req| req.0),
        service_fn(|(_host, fail): Req| async move {
            if fail {
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            } else {
                Ok("ok")
            }
        }),
    )
}

async fn call<S: Service<Req, Error = BoxError>>(
    svc: &mut S,
    req: Req,
) -> Result<S::Response, BoxError> {
    svc.ready().await?.call(req).await
}

#[tokio::test(start_paused = true)]
async fn one_key_opening_leaves_the_others_closed() {
    let keyed = hosts(16);
    let mut svc = client(&keyed);
    for _ in 0..2 {
        assert!(call(&mut svc, (1, true)).await.is_err());
    }
    let err = call(&mut svc, (1, false)).await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().unwrap();
    assert_eq!(&*open.name, "hosts/1");
    assert_eq!(open.state, CircuitState::Open);
    assert_eq!(call(&mut svc, (2, false)).await.unwrap(), "ok");
    assert_eq!(
        call(&mut svc, (3, true)).await.unwrap_err().to_string(),
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused).to_string()
    );
    assert_eq!(keyed.open_keys(), vec![1]);
    assert_eq!(keyed.len(), 3);
    assert_eq!(keyed.get(&2).unwrap().state(), CircuitState::Closed);
    assert_eq!(keyed.get(&1).unwrap().metrics().rejections, 1);
    // The same breaker serves every call of a key.
    assert_eq!(keyed.get(&3).unwrap().metrics().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn keys_past_the_bound_evict_the_idlest_closed_key_first() {
    let keyed = hosts(3);
    let mut svc = client(&keyed);
    // Key 1 open, keys 2 and 3 closed.
    for _ in 0..2 {
        let _ = call(&mut svc, (1, true)).await;
    }
    call(&mut svc, (2, false)).await.unwrap();
    advance(Duration::from_secs(1)).await;
    call(&mut svc, (3, false)).await.unwrap();
    advance(Duration::from_secs(1)).await;
    call(&mut svc, (4, false)).await.unwrap();
    assert_eq!(keyed.len(), 3);
    assert!(keyed.get(&1).is_some(), "the open key is kept");
    assert!(keyed.get(&2).is_none(), "the idlest closed key went");
    assert_eq!(keyed.evictions(), 1);
    for key in 5..50 {
        call(&mut svc, (key, false)).await.unwrap();
        assert!(keyed.len() <= 3);
    }
    assert!(keyed.get(&1).is_some());
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted_at_the_next_sweep_and_used_ones_kept() {
    let keyed = hosts(100);
    let mut svc = client(&keyed);
    call(&mut svc, (1, false)).await.unwrap();
    call(&mut svc, (2, false)).await.unwrap();
    for i in 0..4 {
        advance(Duration::from_secs(31)).await;
        call(&mut svc, (2, false)).await.unwrap();
        // A new key runs the sweep (due every idle_timeout / 2).
        call(&mut svc, (100 + i, false)).await.unwrap();
    }
    // At 124 s: key 1 (last call at 0 s) went at the 62 s sweep, key 100
    // (31 s) at 93 s, key 101 (62 s) at 124 s; key 2 is called every 31 s.
    assert!(keyed.get(&1).is_none(), "idle for two minutes");
    assert!(keyed.get(&2).is_some(), "called every 31 s");
    assert!(keyed.get(&100).is_none() && keyed.get(&101).is_none());
    assert!(keyed.get(&102).is_some() && keyed.get(&103).is_some());
    assert_eq!(keyed.evictions(), 3);
    assert!(keyed.remove(&2));
    assert!(!keyed.remove(&2));
}

#[tokio::test(start_paused = true)]
async fn one_component_lists_the_open_keys_and_counts_the_rest() {
    let registry = battlement_registry::Registry::new();
    let keyed = hosts(16);
    registry.register(&keyed).unwrap();
    let mut svc = client(&keyed);
    for key in [7, 3] {
        for _ in 0..2 {
            let _ = call(&mut svc, (key, true)).await;
        }
    }
    for key in 10..15 {
        call(&mut svc, (key, false)).await.unwrap();
    }
    keyed.breaker(20).unwrap().force_open();

    let report = registry.get("hosts").unwrap();
    assert_eq!(report.kind.as_str(), "keyed_breaker");
    assert_eq!(report.reported_status, HealthStatus::Degraded);
    let d = &report.details;
    assert_eq!(d["keys"], 8);
    assert_eq!(d["open_keys"], serde_json::json!(["20", "3", "7"]));
    assert_eq!(d["open_keys_total"], 3);
    assert_eq!(d["open"], 2);
    assert_eq!(d["forced_open"], 1);
    assert_eq!(d["closed"], 5);

    registry.control("hosts", &Control::Reset).unwrap();
    let report = registry.get("hosts").unwrap();
    assert_eq!(report.reported_status, HealthStatus::Healthy);
    assert_eq!(report.details["closed"], 8);
    assert!(keyed.open_keys().is_empty());
    assert!(
        registry
            .control("hosts", &Control::SetLevel(battlement_core::Level::Severe))
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn many_tasks_on_one_new_key_share_one_breaker() {
    let keyed = hosts(16);
    let calls = (0..8).map(|_| {
        let mut svc = client(&keyed);
        async move { call(&mut svc, (9, true)).await.is_err() }
    });
    assert!(
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .all(|failed| failed)
    );
    assert_eq!(keyed.len(), 1);
    let m = keyed.get(&9).unwrap().metrics();
    assert_eq!(m.failures + m.rejections, 8);
    assert_eq!(keyed.get(&9).unwrap().state(), CircuitState::Open);
}

#[test]
fn build_names_the_field() {
    let err = KeyedBreaker::<u32>::builder("k")
        .max_keys(0)
        .build()
        .unwrap_err();
    assert_eq!((err.component, err.field), ("keyed_breaker", "max_keys"));
    let err = KeyedBreaker::<u32>::builder("k")
        .max_keys(65_537)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "max_keys");
    let err = KeyedBreaker::<u32>::builder("k")
        .idle_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "idle_timeout");
    let err = KeyedBreaker::<u32>::builder("k")
        .breaker(|b| b.failure_rate(2.0))
        .build()
        .unwrap_err();
    assert_eq!((err.component, err.field), ("breaker", "failure_rate"));
}
