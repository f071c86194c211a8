//! The process-wide pool of instruments' counters (issue 13, D6): their
//! number follows the instruments alive at once, not how many were made.
//! Alone in its binary, as it counts the process's slots.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use battlement_core::BoxError;
use battlement_registry::Registry;
use tower::{Layer, Service, service_fn};

/// One call through `svc`, which completes at once.
fn call_once<S: Service<u32>>(svc: &mut S) {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = pin!(svc.call(1));
    assert!(fut.poll(&mut cx).is_ready(), "service_fn completes at once");
}

fn slots(registry: &Registry) -> usize {
    registry.footprint().instrument_slots
}

#[test]
fn slots_follow_live_instruments_not_how_many_were_made() {
    let registry = Registry::new();
    let start = slots(&registry);
    let _dup = registry.layer("dup").unwrap();

    // 100,000 instruments made, used once and dropped, ten alive at a
    // time; every other one also has a call dropped unfinished.
    let mut live = VecDeque::new();
    for i in 0..100_000u32 {
        let layer = registry.layer(&format!("svc{i}")).unwrap();
        let mut svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
        call_once(&mut svc);
        if i % 2 == 0 {
            drop(svc.call(2));
        }
        live.push_back((layer, svc));
        if live.len() > 10 {
            live.pop_front();
        }
        let made = slots(&registry) - start;
        assert!(made <= 1 + 10 + 1, "{made} slots for 11 live instruments");
    }
    drop(live);
    let after_made = slots(&registry);
    assert!(registry.footprint().pooled_instruments >= 10);

    // 100,000 refused `layer("dup")` calls take no slot.
    for _ in 0..100_000 {
        assert!(registry.layer("dup").is_err());
    }
    assert_eq!(slots(&registry), after_made);

    // A call still running holds its slot back only until it ends.
    let busy = registry.layer("busy").unwrap();
    let mut svc = busy.layer(service_fn(|_: u32| {
        std::future::pending::<Result<u32, BoxError>>()
    }));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut running = Box::pin(svc.call(1));
    assert!(running.as_mut().poll(&mut cx).is_pending());
    drop((busy, svc));
    let before = slots(&registry);
    // Every pooled slot but the busy one is reused first.
    let kept: Vec<_> = (0..64)
        .map(|i| registry.layer(&format!("again{i}")).unwrap())
        .collect();
    let grown = slots(&registry) - before;
    assert!(grown > 0, "the busy slot is not reused while its call runs");
    drop(running);
    let last = registry.layer("last").unwrap();
    assert_eq!(
        slots(&registry) - before,
        grown,
        "the ended call's slot is reused"
    );
    drop((kept, last));
    assert!(
        slots(&registry) - start <= 64 + 2 + 1,
        "{} slots, at most 67 instruments were alive at once",
        slots(&registry) - start
    );
}
