//! Helpers shared by the test files.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::task::Poll;

use futures_util::FutureExt;

/// Polls `f` once with the test task's waker.
pub async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(f.poll_unpin(cx))).await
}
