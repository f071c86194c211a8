//! Load protection: a bulkhead that refuses past its slots, a breaker per
//! host, and an adaptive limit that reports into the registry, all three
//! as parts of a `Policy`.

use std::time::Duration;

use battlement::http::error_status;
use battlement::prelude::*;
use tower::{Layer, Service, ServiceExt, service_fn};

/// A request to a host.
#[derive(Debug, Clone)]
struct Call {
    host: &'static str,
}

impl DeadlineCarrier for Call {}

pub(crate) async fn run() {
    println!("== load protection: bulkhead, breaker per host, adaptive limit");
    let registry = Registry::new();

    // A bulkhead of 2: the third call at once is refused, fast.
    let pool = Policy::builder("pool")
        .bulkhead(|b| b.max_concurrent(2))
        .registry(&registry)
        .build()
        .expect("valid policy");
    let mut svc = pool.layer(service_fn(|n: u32| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, BoxError>(n)
    }));
    let calls = [
        svc.ready().await.expect("ready").call(1),
        svc.ready().await.expect("ready").call(2),
        svc.ready().await.expect("ready").call(3),
    ];
    let [a, b, c] = calls;
    let (a, b, c) = tokio::join!(a, b, c);
    println!("  bulkhead of 2: {:?} {:?}", a.ok(), b.ok());
    if let Err(e) = c {
        let (status, retry_after) = error_status(&*e);
        println!("  third call: {e} -> HTTP {status}, Retry-After {retry_after:?}");
    }

    // A breaker per host: the failing host opens, the other is untouched.
    let hosts = Policy::builder("hosts")
        .without_retry()
        .breaker_per_with(
            |call: &Call| call.host,
            |k| k.breaker(|b| b.consecutive_failures(2).no_failure_rate()),
        )
        .registry(&registry)
        .build()
        .expect("valid policy");
    let mut svc = hosts.layer(service_fn(|call: Call| async move {
        if call.host == "b.internal" {
            Err::<&str, BoxError>("connection refused".into())
        } else {
            Ok("ok")
        }
    }));
    for host in [
        "a.internal",
        "b.internal",
        "b.internal",
        "b.internal",
        "a.internal",
    ] {
        let res = svc.ready().await.expect("ready").call(Call { host }).await;
        match res {
            Ok(r) => println!("  {host}: {r}"),
            Err(e) => println!("  {host}: {e}"),
        }
    }
    println!("  open hosts: {:?}", hosts.keyed_breaker().open_keys());

    // An adaptive limit: its limit, in-flight and refusals are in the
    // registry, for an operator and for a gate's governor.
    let api = Policy::builder("api")
        .adaptive_limit(|l| l.initial_limit(4))
        .registry(&registry)
        .build()
        .expect("valid policy");
    let mut svc = api.layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    for n in 0..20 {
        svc.ready()
            .await
            .expect("ready")
            .call(n)
            .await
            .expect("served");
    }
    if let Some(report) = registry.get("api/limit") {
        let d = &report.details;
        println!(
            "  api/limit: limit {}, in flight {}, admitted {}, rejected {}",
            d["limit"], d["in_flight"], d["admitted"], d["rejected"]
        );
    }
    println!();
}
