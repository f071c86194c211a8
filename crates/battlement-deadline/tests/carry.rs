//! `Carry`: whether the deadline layers write their deadline into an
//! `http::Request`, on paused time. With `Carry::IfCarried` a request that
//! carries none gets no extension entry (no extension map at all for a
//! request that had none), the layers inside still see the deadline in
//! scope and enforce it, and a deadline the request carries is tightened
//! in place.
#![cfg(feature = "http")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use battlement_core::{AttemptTimedOut, BoxError, Deadline, DeadlineCarrier, DeadlineExceeded};
use battlement_deadline::{AttemptTimeoutLayer, Carry, DeadlineLayer};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What the handler saw: the request's own deadline, whether its
/// extension map was empty, and the deadline in scope (time left).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    on_request: Option<Duration>,
    extensions_empty: bool,
    in_scope: Option<Duration>,
}

/// A handler that records what it saw at its call and again when it is
/// polled after `delay`, then answers.
fn handler(
    seen: &Arc<Mutex<Vec<Seen>>>,
    delay: Duration,
) -> impl Service<http::Request<()>, Response = (), Error = BoxError> + Clone {
    let seen = seen.clone();
    service_fn(move |req: http::Request<()>| {
        let look = |req: &http::Request<()>| Seen {
            on_request: req.deadline().map(|d| d.remaining()),
            extensions_empty: req.extensions().is_empty(),
            in_scope: battlement_core::deadline::current().map(|d| d.remaining()),
        };
        seen.lock().unwrap().push(look(&req));
        let seen = seen.clone();
        async move {
            tokio::time::sleep(delay).await;
            seen.lock().unwrap().push(look(&req));
            Ok::<_, BoxError>(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn if_carried_adds_no_extension_and_keeps_the_scope() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(500)).carry(Carry::IfCarried))
        .layer(AttemptTimeoutLayer::new(ms(300)).carry(Carry::IfCarried))
        .service(handler(&seen, ms(100)));
    svc.ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    // At the call and 100 ms later, while polled: nothing on the request,
    // not even an extension map, and the attempt's end in scope.
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Seen {
                on_request: None,
                extensions_empty: true,
                in_scope: Some(ms(300)),
            },
            Seen {
                on_request: None,
                extensions_empty: true,
                in_scope: Some(ms(200)),
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn always_is_the_default_and_writes_the_request() {
    let total = DeadlineLayer::new(ms(500));
    let attempt = AttemptTimeoutLayer::new(ms(300));
    assert_eq!(
        (total.carries(), attempt.carries()),
        (Carry::Always, Carry::Always)
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut svc = ServiceBuilder::new()
        .layer(total)
        .layer(attempt)
        .service(handler(&seen, ms(100)));
    svc.ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap()[0],
        Seen {
            on_request: Some(ms(300)),
            extensions_empty: false,
            in_scope: Some(ms(300)),
        }
    );
}

#[tokio::test(start_paused = true)]
async fn if_carried_still_enforces_both_bounds() {
    // The attempt's bound cuts first; then the total's.
    for (attempt, hang_for, expect_attempt) in
        [(ms(300), ms(400), true), (ms(900), ms(1000), false)]
    {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(ms(500)).carry(Carry::IfCarried))
            .layer(AttemptTimeoutLayer::new(attempt).carry(Carry::IfCarried))
            .service(handler(&seen, hang_for));
        let start = Instant::now();
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap_err();
        if expect_attempt {
            assert!(err.is::<AttemptTimedOut>(), "{err}");
            assert_eq!(start.elapsed(), ms(300));
        } else {
            assert!(err.is::<DeadlineExceeded>(), "{err}");
            assert_eq!(start.elapsed(), ms(500));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn if_carried_tightens_a_carried_deadline_in_place() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(500)).carry(Carry::IfCarried))
        .layer(AttemptTimeoutLayer::new(ms(300)).carry(Carry::IfCarried))
        .service(handler(&seen, Duration::ZERO));
    // A request arriving with a later deadline of its own (a server's
    // incoming budget): both layers tighten it, so the handler and the
    // next hop see the attempt's end on the request too.
    let mut req = http::Request::new(());
    req.set_deadline(Deadline::after(Duration::from_secs(5)));
    svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(
        seen.lock().unwrap()[0],
        Seen {
            on_request: Some(ms(300)),
            extensions_empty: false,
            in_scope: Some(ms(300)),
        }
    );

    // An earlier carried deadline is kept as it is.
    seen.lock().unwrap().clear();
    let mut req = http::Request::new(());
    req.set_deadline(Deadline::after(ms(200)));
    svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(seen.lock().unwrap()[0].on_request, Some(ms(200)));
}

#[tokio::test(start_paused = true)]
async fn the_builders_take_the_setting() {
    let total = DeadlineLayer::builder()
        .total(ms(500))
        .carry(Carry::IfCarried)
        .build()
        .unwrap();
    let attempt = AttemptTimeoutLayer::builder()
        .per_attempt(ms(300))
        .carry(Carry::IfCarried)
        .build()
        .unwrap();
    assert_eq!(
        (total.carries(), attempt.carries()),
        (Carry::IfCarried, Carry::IfCarried)
    );
    use tower::Layer;
    let seen = Arc::default();
    let svc = total.layer(attempt.layer(handler(&seen, Duration::ZERO)));
    assert_eq!(svc.carry(), Carry::IfCarried);
    assert_eq!(svc.get_ref().carry(), Carry::IfCarried);
}
