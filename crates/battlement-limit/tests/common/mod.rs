//! Helpers shared by the test files.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use battlement_core::BoxError;
use futures_util::FutureExt;
use tokio::time::sleep;
use tower::{Service, service_fn};

/// Polls `f` once with the test task's waker.
pub async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(f.poll_unpin(cx))).await
}

/// A call that takes `ms` and fails (as unavailable, a drop) when `fail`.
pub type Req = (u64, bool);

/// The backend of the adaptive-limit tests: sleeps `ms`, then answers or
/// fails with `ResourceBusy`.
pub fn backend() -> impl Service<Req, Response = (), Error = BoxError, Future: Send> + Clone + Send
{
    service_fn(|(ms, fail): Req| async move {
        sleep(Duration::from_millis(ms)).await;
        if fail {
            Err::<(), BoxError>(Box::new(std::io::Error::from(
                std::io::ErrorKind::ResourceBusy,
            )))
        } else {
            Ok(())
        }
    })
}
