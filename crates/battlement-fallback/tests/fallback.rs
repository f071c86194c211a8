//! Behaviour of the fallback layer on paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use battlement_core::{
    BoxError, CircuitOpen, CircuitState, Component, ComponentKind, ErrorClassifier, EventKind,
    EventLog, FailureKind, FallbackFailed, Outcome,
};
use battlement_fallback::{
    CacheConfig, CacheMiss, FailureResponse, Fallback, FallbackLayer, MAX_CACHE_ENTRIES, Source,
};
use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt, service_fn};

fn refused() -> BoxError {
    Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
}

/// A primary that fails when the request is odd and echoes it otherwise.
fn primary() -> impl Service<u32, Response = String, Error = BoxError, Future: Send> + Clone {
    service_fn(|n: u32| async move {
        if n % 2 == 1 {
            Err(refused())
        } else {
            Ok(format!("primary {n}"))
        }
    })
}

fn failing(
    msg: &'static str,
) -> impl Service<u32, Response = String, Error = BoxError, Future: Send> + Clone + Send + Sync {
    service_fn(move |_: u32| async move { Err::<String, BoxError>(msg.into()) })
}

async fn call<S: Service<u32>>(svc: &mut S, n: u32) -> Result<S::Response, S::Error> {
    svc.ready().await?.call(n).await
}

#[tokio::test(start_paused = true)]
async fn value_source_alone_and_no_fallback_on_success() {
    let log = EventLog::new();
    let layer = FallbackLayer::builder("users")
        .value("default".to_owned())
        .events(log.sink())
        .build()
        .unwrap();
    let mut svc = layer.layer(primary());
    assert_eq!(call(&mut svc, 2).await.unwrap(), "primary 2");
    assert_eq!(layer.activations(), 0);
    assert!(log.events().is_empty());
    assert_eq!(call(&mut svc, 1).await.unwrap(), "default");
    assert_eq!(layer.activations(), 1);
    assert_eq!(
        log.kinds(),
        vec![EventKind::Fallback {
            source: "value".into(),
            kind: FailureKind::Network
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn value_fn_sees_error_and_key_without_clone() {
    // A request type that is not Clone.
    struct Req(u32);
    let layer = FallbackLayer::builder("nc")
        .key(|r: &Req| Some(r.0 * 10))
        .value_fn(|f| {
            Ok(format!(
                "{} {} {}",
                f.failure.kind,
                f.error.map(|e| e.to_string()).unwrap_or_default(),
                f.key.copied().unwrap_or(0)
            ))
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|_: Req| async {
        Err::<String, BoxError>("boom".into())
    }));
    let res = svc.ready().await.unwrap().call(Req(4)).await.unwrap();
    assert_eq!(res, "unknown boom 40");
}

#[tokio::test(start_paused = true)]
async fn service_chain_in_order_and_skip_open_circuit() {
    let log = EventLog::new();
    let open = service_fn(|_: u32| async {
        Err::<String, BoxError>(Box::new(CircuitOpen::new(
            "secondary",
            CircuitState::Open,
            None,
        )))
    });
    let emergency_calls = Arc::new(AtomicU32::new(0));
    let calls = emergency_calls.clone();
    let emergency = service_fn(move |n: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(format!("emergency {n}")) }
    });
    let layer = FallbackLayer::builder("chain")
        .service("secondary", open)
        .service("broken", failing("broken"))
        .service("emergency", emergency)
        .events(log.sink())
        .build()
        .unwrap();
    let mut svc = layer.layer(primary());
    assert_eq!(call(&mut svc, 3).await.unwrap(), "emergency 3");
    assert_eq!(emergency_calls.load(Ordering::SeqCst), 1);
    let kinds = log.kinds();
    assert!(kinds.contains(&EventKind::Skipped {
        backend: "secondary".into(),
        reason: "circuit open".into()
    }));
    assert!(kinds.contains(&EventKind::Fallback {
        source: "emergency".into(),
        kind: FailureKind::Network
    }));
    let health = layer.health();
    assert_eq!(health.details["sources"]["secondary"]["skipped"], 1);
    assert_eq!(health.details["sources"]["secondary"]["failed"], 0);
    assert_eq!(health.details["sources"]["broken"]["failed"], 1);
    assert_eq!(health.details["sources"]["emergency"]["served"], 1);
    assert_eq!(health.details["reasons"]["network"], 1);
    assert_eq!(
        health.details["sources"]["emergency"]["served_by_reason"]["network"],
        1
    );
    // Success: nothing is called but the primary.
    assert_eq!(call(&mut svc, 4).await.unwrap(), "primary 4");
    assert_eq!(emergency_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn all_failed_names_primary_and_every_source() {
    let layer = FallbackLayer::builder("all")
        .key(|n: &u32| Some(*n))
        .service("secondary", failing("secondary down"))
        .value_fn(|_| Err("no default".into()))
        .cache(CacheConfig::new())
        .build()
        .unwrap();
    let mut svc = layer.layer(primary());
    let err = call(&mut svc, 1).await.unwrap_err();
    let ff = err
        .downcast_ref::<FallbackFailed>()
        .expect("FallbackFailed");
    let src = std::error::Error::source(ff).unwrap();
    assert!(src.downcast_ref::<std::io::Error>().is_some());
    let names: Vec<&str> = ff.fallbacks.iter().map(|(n, _)| &**n).collect();
    assert_eq!(names, ["secondary", "value", "cache"]);
    assert_eq!(ff.fallbacks[0].1.to_string(), "secondary down");
    assert!(ff.fallbacks[2].1.is::<CacheMiss>());
    // Classified by the primary's kind.
    let outcome =
        battlement_core::Classify::<(), BoxError>::classify(&ErrorClassifier::new(), &Err(err));
    assert_eq!(outcome.as_failure().unwrap().kind, FailureKind::Network);
    assert_eq!(layer.health().details["all_failed"], 1);
}

fn status_classifier()
-> battlement_core::ResponseClassifier<impl Fn(&(u16, &'static str)) -> Outcome + Clone> {
    ErrorClassifier::new().with_responses(|(status, _): &(u16, &'static str)| {
        if *status >= 500 {
            Outcome::failure(FailureKind::Unavailable)
        } else {
            Outcome::Success
        }
    })
}

#[tokio::test(start_paused = true)]
async fn ok_failure_response_triggers_and_is_kept_when_all_fail() {
    let primary = service_fn(|n: u32| async move {
        Ok::<_, BoxError>(if n == 0 { (503, "down") } else { (200, "up") })
    });
    let secondary = service_fn(|_: u32| async { Ok::<_, BoxError>((502, "also down")) });
    let layer = FallbackLayer::builder("status")
        .classifier(status_classifier())
        .service("secondary", secondary)
        .build()
        .unwrap();
    let mut svc = layer.layer(primary);
    // All fail: the primary's own failure response comes back.
    assert_eq!(call(&mut svc, 0).await.unwrap(), (503, "down"));
    let layer2 = FallbackLayer::builder("status2")
        .classifier(status_classifier())
        .value((200, "cached default"))
        .build()
        .unwrap();
    let mut svc2 = layer2.layer(service_fn(|_: u32| async {
        Ok::<_, BoxError>((503, "down"))
    }));
    assert_eq!(call(&mut svc2, 0).await.unwrap(), (200, "cached default"));
    assert_eq!(layer2.health().details["reasons"]["unavailable"], 1);
}

#[tokio::test(start_paused = true)]
async fn failure_response_of_a_fallback_service_is_reported() {
    let layer = FallbackLayer::builder("status")
        .classifier(status_classifier())
        .service(
            "secondary",
            service_fn(|_: u32| async { Ok::<_, BoxError>((502, "x")) }),
        )
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|_: u32| async {
        Err::<(u16, &'static str), BoxError>(refused())
    }));
    let err = call(&mut svc, 0).await.unwrap_err();
    let ff = err.downcast_ref::<FallbackFailed>().unwrap();
    assert_eq!(
        ff.fallbacks[0].1.downcast_ref::<FailureResponse>(),
        Some(&FailureResponse {
            kind: FailureKind::Unavailable
        })
    );
}

#[tokio::test(start_paused = true)]
async fn trigger_predicate_and_ignored_pass_through() {
    let layer = FallbackLayer::builder("narrow")
        .trigger_on_kinds([FailureKind::Timeout])
        .value("default".to_owned())
        .build()
        .unwrap();
    let mut svc = layer.layer(primary());
    assert!(call(&mut svc, 1).await.is_err(), "network is not a trigger");
    assert_eq!(layer.health().details["passed_through"], 1);

    let ignoring = |r: &Result<String, BoxError>| match r {
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Ignored,
    };
    let layer = FallbackLayer::builder("ign")
        .classifier(ignoring)
        .value("default".to_owned())
        .build()
        .unwrap();
    let mut svc = layer.layer(primary());
    assert!(call(&mut svc, 1).await.is_err(), "ignored never triggers");
    assert_eq!(layer.activations(), 0);
}

fn cached_layer(config: CacheConfig<String>) -> FallbackLayer<u32, String, u32> {
    FallbackLayer::builder("lkg")
        .key(|n: &u32| Some(*n / 2))
        .cache(config)
        .build()
        .unwrap()
}

/// Key `k` succeeds with request `2k` and fails with `2k + 1`.
#[tokio::test(start_paused = true)]
async fn cache_fresh_period_and_stale_if_error_window_on_paused_time() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let layer = FallbackLayer::builder("lkg")
        .key(|n: &u32| Some(*n / 2))
        .cache(
            CacheConfig::new()
                .fresh_for(Duration::from_secs(10))
                .stale_if_error(Duration::from_secs(20)),
        )
        .on_fallback(move |_res: &mut String, m: &Fallback| s.lock().unwrap().push(m.clone()))
        .build()
        .unwrap();
    let mut svc = layer.layer(primary());
    // Miss: nothing stored yet.
    assert!(call(&mut svc, 1).await.is_err());
    assert_eq!(call(&mut svc, 0).await.unwrap(), "primary 0");
    assert_eq!(layer.cache_len(), 1);
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert_eq!(call(&mut svc, 1).await.unwrap(), "primary 0");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(call(&mut svc, 1).await.unwrap(), "primary 0");
    tokio::time::advance(Duration::from_millis(19_999)).await;
    assert_eq!(call(&mut svc, 1).await.unwrap(), "primary 0");
    tokio::time::advance(Duration::from_millis(1)).await;
    let err = call(&mut svc, 1).await.unwrap_err();
    assert!(
        err.downcast_ref::<FallbackFailed>().unwrap().fallbacks[0]
            .1
            .is::<CacheMiss>()
    );
    let sources: Vec<Source> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.source.clone())
        .collect();
    assert_eq!(
        sources,
        [Source::Cache, Source::StaleCache, Source::StaleCache]
    );
    let h = layer.health();
    assert_eq!(h.details["cache_hits"], 3);
    assert_eq!(h.details["cache_misses"], 2);
    assert_eq!(h.details["sources"]["cache"]["served_stale"], 2);
    assert_eq!(h.details["cache_hit_rate"], 0.6);
}

#[tokio::test(start_paused = true)]
async fn success_refreshes_the_cache() {
    let layer = cached_layer(
        CacheConfig::new()
            .fresh_for(Duration::from_secs(10))
            .stale_if_error(Duration::ZERO),
    );
    let mut svc = layer.layer(primary());
    call(&mut svc, 0).await.unwrap();
    tokio::time::advance(Duration::from_secs(8)).await;
    call(&mut svc, 0).await.unwrap();
    tokio::time::advance(Duration::from_secs(8)).await;
    assert_eq!(call(&mut svc, 1).await.unwrap(), "primary 0");
}

#[tokio::test(start_paused = true)]
async fn cache_bounded_by_entries() {
    let layer = cached_layer(CacheConfig::new().max_entries(8));
    let mut svc = layer.layer(primary());
    for k in 0..100 {
        call(&mut svc, 2 * k).await.unwrap();
        assert!(layer.cache_len() <= 8, "{} entries", layer.cache_len());
    }
    assert!(layer.cache_len() >= 1);
    // The newest is served.
    assert_eq!(call(&mut svc, 2 * 99 + 1).await.unwrap(), "primary 198");
}

#[tokio::test(start_paused = true)]
async fn cache_bounded_by_bytes() {
    // "primary NN" is 10 bytes: 35 bytes hold at most 3 of them.
    let layer = cached_layer(
        CacheConfig::new()
            .max_entries(100)
            .max_bytes(35, |s: &String| s.len() as u64),
    );
    let mut svc = layer.layer(primary());
    for k in 5..45 {
        call(&mut svc, 2 * k).await.unwrap();
        assert!(layer.cache_len() <= 3, "{} entries", layer.cache_len());
    }
    assert!(layer.cache_len() >= 1);
}

#[tokio::test(start_paused = true)]
async fn invalid_config_is_rejected() {
    let err = FallbackLayer::<u32, String>::builder("x")
        .build()
        .unwrap_err();
    assert_eq!(err.field, "sources");
    let err = FallbackLayer::<u32, String>::builder("x")
        .key(|n: &u32| Some(*n))
        .cache(CacheConfig::new().max_entries(0))
        .build()
        .unwrap_err();
    assert_eq!(err.field, "cache.max_entries");
    let err = FallbackLayer::<u32, String>::builder("x")
        .key(|n: &u32| Some(*n))
        .cache(CacheConfig::new().max_bytes(0, |s: &String| s.len() as u64))
        .build()
        .unwrap_err();
    assert_eq!(err.field, "cache.max_bytes");
    let err = FallbackLayer::<u32, String>::builder("x")
        .key(|n: &u32| Some(*n))
        .cache(CacheConfig::new().fresh_for(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(err.field, "cache.fresh_for");
    let err = FallbackLayer::<u32, String>::builder("x")
        .cache(CacheConfig::new())
        .build()
        .unwrap_err();
    assert_eq!(err.field, "key");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// D5: `max_entries` is bounded by `MAX_CACHE_ENTRIES`, and a bound
    /// outside `1..=MAX_CACHE_ENTRIES` is refused at build, naming the
    /// field and the bound, before anything is allocated.
    #[test]
    fn max_entries_is_bounded_at_build(
        max_entries in prop_oneof![
            0u64..=4,
            MAX_CACHE_ENTRIES - 2..=MAX_CACHE_ENTRIES + 2,
            any::<u64>(),
        ],
        max_bytes in prop::option::of(any::<u64>()),
    ) {
        let mut config = CacheConfig::new().max_entries(max_entries);
        if let Some(b) = max_bytes {
            config = config.max_bytes(b, |s: &String| s.len() as u64);
        }
        let built = FallbackLayer::<u32, String>::builder("x")
            .key(|n: &u32| Some(*n))
            .cache(config)
            .build();
        let entries_ok = (1..=MAX_CACHE_ENTRIES).contains(&max_entries);
        match built {
            Ok(_) => prop_assert!(entries_ok && max_bytes != Some(0)),
            Err(err) if !entries_ok => {
                prop_assert_eq!(err.field, "cache.max_entries");
                prop_assert!(err.bound.contains("16777216"), "{}", err.bound);
            }
            Err(err) => prop_assert_eq!(err.field, "cache.max_bytes"),
        }
    }
}

/// Sweep: a fresh period and a stale window of `Duration::MAX` keep a
/// response forever (ages are `saturating_duration_since`, never
/// `Instant + fresh_for`, and their sum saturates).
#[tokio::test(start_paused = true)]
async fn a_fresh_period_of_duration_max_never_expires() {
    let layer = cached_layer(
        CacheConfig::new()
            .fresh_for(Duration::MAX)
            .stale_if_error(Duration::MAX)
            .max_entries(MAX_CACHE_ENTRIES)
            .max_bytes(u64::MAX, |s: &String| s.len() as u64),
    );
    let mut svc = layer.layer(primary());
    assert_eq!(call(&mut svc, 0).await.unwrap(), "primary 0");
    tokio::time::advance(Duration::from_secs(100 * 365 * 86_400)).await;
    assert_eq!(call(&mut svc, 1).await.unwrap(), "primary 0");
}

#[tokio::test(start_paused = true)]
async fn component_reports_kind_and_metrics() {
    let layer = cached_layer(CacheConfig::new());
    let c: Arc<dyn Component> = battlement_core::AsComponent::as_component(&layer);
    assert_eq!(c.kind(), ComponentKind::Fallback);
    assert_eq!(c.name(), "lkg");
    let mut svc = layer.layer(primary());
    call(&mut svc, 0).await.unwrap();
    call(&mut svc, 1).await.unwrap();
    let h = c.health();
    assert_eq!(h.details["cache_entries"], 1);
    assert!(h.metrics.iter().any(|m| m.name == "activations_total"
        && m.labels == [("source", "cache".into()), ("reason", "network".into())]
        && m.value == 1.0));
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn http_marker_and_header() {
    let layer = FallbackLayer::builder("web")
        .value_fn(|_| Ok(http::Response::new("default")))
        .http_header()
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|_: http::Request<()>| async {
        Err::<http::Response<&'static str>, BoxError>(refused())
    }));
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(res.headers()[battlement_fallback::HEADER], "value");
    assert_eq!(
        res.extensions().get::<Fallback>(),
        Some(&Fallback {
            source: Source::Value,
            reason: FailureKind::Network
        })
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_is_the_primary_s() {
    let layer = FallbackLayer::builder("mock")
        .value("default".to_owned())
        .build()
        .unwrap();
    let (mut svc, mut handle) = tower_test::mock::spawn_layer::<u32, String, _>(layer);
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(1);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(refused());
    assert_eq!(fut.await.unwrap(), "default");
}

#[tokio::test(start_paused = true)]
async fn builder_order_rules() {
    // A value closure added before `key` keeps working (it sees no key type).
    let layer = FallbackLayer::builder("order")
        .value_fn(|f| Ok(format!("saw key: {}", f.key.is_some())))
        .key(|n: &u32| Some(*n))
        .build()
        .unwrap();
    let mut svc = layer.layer(primary());
    assert_eq!(call(&mut svc, 1).await.unwrap(), "saw key: true");

    let err = FallbackLayer::<u32, String>::builder("x")
        .key(|n: &u32| Some(*n))
        .cache(CacheConfig::new())
        .cache(CacheConfig::new())
        .build()
        .unwrap_err();
    assert_eq!(err.field, "cache");
}

/// The builder takes `cache` and `key` in either order: a cache added
/// first waits for the key and keeps its place among the sources.
#[tokio::test(start_paused = true)]
async fn cache_before_key_is_the_same_cache() {
    let layer = FallbackLayer::<u32, String>::builder("x")
        .cache(CacheConfig::new().fresh_for(Duration::from_secs(5)))
        .key(|n: &u32| Some(*n / 2))
        .value("v".to_owned())
        .build()
        .unwrap();
    let mut svc = layer.layer(primary());
    assert_eq!(call(&mut svc, 1).await.unwrap(), "v", "nothing cached yet");
    assert_eq!(call(&mut svc, 0).await.unwrap(), "primary 0");
    assert_eq!(
        call(&mut svc, 1).await.unwrap(),
        "primary 0",
        "the cache comes first"
    );
    assert_eq!(layer.cache_len(), 1);
    let err = FallbackLayer::<u32, String>::builder("x")
        .cache(CacheConfig::new())
        .key(|n: &u32| Some(*n))
        .cache(CacheConfig::new())
        .build()
        .unwrap_err();
    assert_eq!(err.field, "cache");
}

/// The old names still work, deprecated: `ttl` is `fresh_for`, `max_age`
/// the total age (`fresh_for + stale_if_error`), checked as before.
#[allow(deprecated)]
#[tokio::test(start_paused = true)]
async fn the_old_cache_names_are_deprecated_aliases() {
    let layer = cached_layer(
        CacheConfig::new()
            .max_age(Duration::from_secs(30))
            .ttl(Duration::from_secs(10)),
    );
    let mut svc = layer.layer(primary());
    call(&mut svc, 0).await.unwrap();
    tokio::time::advance(Duration::from_millis(29_999)).await;
    assert_eq!(call(&mut svc, 1).await.unwrap(), "primary 0");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(call(&mut svc, 1).await.is_err());
    let err = FallbackLayer::<u32, String>::builder("x")
        .key(|n: &u32| Some(*n))
        .cache(
            CacheConfig::new()
                .ttl(Duration::from_secs(5))
                .max_age(Duration::from_secs(1)),
        )
        .build()
        .unwrap_err();
    assert_eq!(err.field, "cache.max_age");
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_key_are_not_cached() {
    let layer = FallbackLayer::builder("nokey")
        .key(|n: &u32| (*n < 100).then_some(*n / 2))
        .cache(CacheConfig::new())
        .build()
        .unwrap();
    let mut svc = layer.layer(primary());
    call(&mut svc, 200).await.unwrap();
    assert_eq!(layer.cache_len(), 0);
    call(&mut svc, 2).await.unwrap();
    assert_eq!(layer.cache_len(), 1);
}

/// A layer kept in a `static` and used through `from_static` behaves as
/// the owned one: the same cache, counters and component.
#[tokio::test(start_paused = true)]
async fn static_layer_shares_the_state_of_the_static_one() {
    static LAYER: std::sync::LazyLock<FallbackLayer<u32, String, u32>> =
        std::sync::LazyLock::new(|| {
            FallbackLayer::builder("static")
                .key(|n: &u32| Some(*n / 2))
                .cache(CacheConfig::new())
                .value("default".to_owned())
                .build()
                .unwrap()
        });
    let handle = FallbackLayer::from_static(&LAYER);
    let mut svc = handle.layer(primary());
    assert_eq!(call(&mut svc, 0).await.unwrap(), "primary 0");
    // Served from the cache the success filled, then from the value.
    assert_eq!(call(&mut svc, 1).await.unwrap(), "primary 0");
    assert_eq!(call(&mut svc, 3).await.unwrap(), "default");
    assert_eq!(LAYER.activations(), 2);
    assert_eq!(handle.activations(), 2);
    assert_eq!(LAYER.cache_len(), 1);
    let c: Arc<dyn Component> = battlement_core::AsComponent::as_component(&svc);
    assert_eq!(c.name(), "static");
    assert_eq!(c.health().details["served"], 2);
}

/// A fallback service slower than its bound counts as failed at the
/// bound, and the next source answers: the rescue is never slower than
/// `source_timeout`.
#[tokio::test(start_paused = true)]
async fn a_slow_fallback_service_is_cut_at_its_bound() {
    let hung = service_fn(|_: u32| std::future::pending::<Result<String, BoxError>>());
    let layer = FallbackLayer::builder("bounded")
        .service("hung", hung)
        .value("last resort".to_string())
        .source_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert_eq!(layer.source_timeout(), Some(Duration::from_millis(200)));
    assert!(layer.has_service_source());
    let mut svc = layer.layer(primary());
    let start = tokio::time::Instant::now();
    assert_eq!(call(&mut svc, 1).await.unwrap(), "last resort");
    assert_eq!(start.elapsed(), Duration::from_millis(200));

    // Alone, the cut source's error says it was the bound.
    let mut alone = FallbackLayer::builder("alone")
        .service(
            "hung",
            service_fn(|_: u32| std::future::pending::<Result<String, BoxError>>()),
        )
        .source_timeout(Duration::from_millis(50))
        .build()
        .unwrap()
        .layer(primary());
    let err = call(&mut alone, 1).await.unwrap_err();
    let failed = err.downcast_ref::<FallbackFailed>().unwrap();
    assert!(
        failed
            .fallbacks
            .iter()
            .any(|(_, e)| e.is::<battlement_core::DeadlineExceeded>()),
        "{err}"
    );

    let zero = FallbackLayer::<u32, String>::builder("zero")
        .value(String::new())
        .source_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(zero.field, "source_timeout");
}
