//! Deadlines: one time budget per request, shared by its attempts and
//! handed on to the next service.

use std::time::Duration;

use battlement::deadline::http::PropagateDeadlineLayer;
use battlement::deadline::{AttemptTimeoutLayer, DeadlineLayer};
use battlement::prelude::*;
use battlement::{AttemptTimedOut, EventLog};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// A backend whose calls take `delay`, reporting the budget it was given
/// in the header a client would send.
fn backend(
    delay: Duration,
) -> impl Service<http::Request<()>, Response = String, Error = BoxError> + Clone {
    service_fn(move |req: http::Request<()>| async move {
        tokio::time::sleep(delay).await;
        let header = req
            .headers()
            .get("x-request-timeout-ms")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        Ok(format!("done; x-request-timeout-ms: {header}"))
    })
}

/// Runs a fast call, a call cut by its attempt bound and a call cut by the
/// total budget, and prints what each got and the events.
pub(crate) async fn run() {
    println!("== deadline: a total budget of 120 ms, 50 ms per attempt");
    let log = EventLog::new();
    let stack = |delay| {
        ServiceBuilder::new()
            .layer(
                DeadlineLayer::new(Duration::from_millis(120))
                    .name("quickstart")
                    .events(log.sink()),
            )
            .layer(PropagateDeadlineLayer::new())
            .service(backend(delay))
    };

    let mut fast = stack(Duration::from_millis(5));
    let res = fast.ready().await.map(|s| s.call(http::Request::new(())));
    match res {
        Ok(fut) => println!("fast call: {:?}", fut.await),
        Err(e) => println!("fast call: not ready: {e}"),
    }

    let mut slow = stack(Duration::from_millis(300));
    match slow.ready().await {
        Ok(svc) => match svc.call(http::Request::new(())).await {
            Ok(body) => println!("slow call: {body}"),
            Err(e) if e.is::<DeadlineExceeded>() => println!("slow call: {e}"),
            Err(e) => println!("slow call: other error: {e}"),
        },
        Err(e) => println!("slow call: not ready: {e}"),
    }

    let mut attempt = ServiceBuilder::new()
        .layer(
            AttemptTimeoutLayer::new(Duration::from_millis(50))
                .name("quickstart-attempt")
                .events(log.sink()),
        )
        .service(backend(Duration::from_millis(300)));
    match attempt.ready().await {
        Ok(svc) => {
            let res = svc.call(http::Request::new(())).await;
            let retryable = ErrorClassifier::new().classify(&res).is_retryable();
            match res {
                Ok(body) => println!("one attempt: {body}"),
                Err(e) => println!(
                    "one attempt: {e} (attempt timeout: {}, retryable: {retryable})",
                    e.is::<AttemptTimedOut>()
                ),
            }
        }
        Err(e) => println!("one attempt: not ready: {e}"),
    }

    for event in log.events() {
        println!("event: {event}");
    }
}
