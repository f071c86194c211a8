//! Classification and deadlines: what every layer is built on.

use std::time::Duration;

use battlement::prelude::*;
use tower::{Service, ServiceExt, service_fn};

/// A flaky backend: fails with a connection reset on every third call, and
/// reports the time budget the request carried.
fn backend() -> impl Service<http::Request<u32>, Response = String, Error = BoxError> {
    service_fn(|req: http::Request<u32>| async move {
        let n = *req.body();
        if n.is_multiple_of(3) {
            return Err::<String, BoxError>(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            )));
        }
        let left = req.deadline().map(|d| d.remaining());
        Ok(format!("call {n} served with {left:?} left"))
    })
}

/// Calls the backend a few times with a deadline and prints how each call
/// was classified.
pub(crate) async fn run() {
    println!("== classify: outcomes and deadlines");
    let classifier = ErrorClassifier::new();
    let mut svc = backend();
    for n in 1..=4 {
        let mut req = http::Request::new(n);
        req.tighten_deadline(Deadline::after(Duration::from_millis(250)));
        let result = svc.ready().await.expect("ready").call(req).await;
        let outcome = classifier.classify(&result);
        match &result {
            Ok(body) => println!("  {body} -> {outcome:?}"),
            Err(err) => println!("  call {n} failed: {err} -> {outcome:?}"),
        }
    }
}
