//! [`ResponseFuture`] of [`Instrument`](crate::Instrument).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::clock::Start;
use crate::instrument::Counters;
use battlement_core::Classify;
use pin_project_lite::pin_project;

/// One call in flight: on completion it records the outcome and latency;
/// when dropped unfinished it counts a cancellation. Either way it leaves
/// the in-flight count.
pub(crate) struct Guard<C> {
    /// Borrowed for good: no reference count per call (see `Counters`).
    pub(crate) counters: &'static Counters,
    /// The instrument's generation when the call started.
    pub(crate) generation: u64,
    /// When the call started, if its latency is sampled.
    pub(crate) start: Start,
    pub(crate) classifier: C,
    pub(crate) done: bool,
}

impl<C> Drop for Guard<C> {
    fn drop(&mut self) {
        if !self.done {
            self.counters.finish(self.generation, None);
        }
    }
}

pin_project! {
    /// The response future of [`Instrument`](crate::Instrument).
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        guard: Guard<C>,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) const fn new(inner: F, guard: Guard<C>) -> Self {
        ResponseFuture { inner, guard }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("done", &self.guard.done)
            .finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let guard = this.guard;
        if !guard.done {
            guard.done = true;
            let outcome = guard.classifier.classify(&result);
            let latency = guard.start.map(|s| s.elapsed_ns());
            guard
                .counters
                .finish(guard.generation, Some((outcome, latency)));
        }
        Poll::Ready(result)
    }
}
