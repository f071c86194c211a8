//! The gated service's [`ResponseFuture`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};

use battlement_core::{BoxError, Shed};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::gate::Shared;

pin_project! {
    /// The response future of [`GateService`](crate::GateService): the inner
    /// future of an admitted call, or an immediately ready
    /// [`Shed`] error.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] fut: F },
        Observed { #[pin] fut: F, observe: Option<Observe> },
        Shed { error: Option<BoxError> },
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn called(fut: F) -> Self {
        ResponseFuture {
            kind: Kind::Called { fut },
        }
    }

    pub(crate) fn observed(fut: F, observe: Observe) -> Self {
        ResponseFuture {
            kind: Kind::Observed {
                fut,
                observe: Some(observe),
            },
        }
    }

    pub(crate) fn shed(error: Shed) -> Self {
        // Boxed here rather than when polled: the future stays small.
        ResponseFuture {
            kind: Kind::Shed {
                error: Some(Box::new(error)),
            },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { fut } => fut.poll(cx).map_err(Into::into),
            KindProj::Observed { fut, observe } => {
                let res = ready!(fut.poll(cx));
                if let Some(observe) = observe.take() {
                    observe.finish(res.is_ok());
                }
                Poll::Ready(res.map_err(Into::into))
            }
            KindProj::Shed { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

/// Records an admitted call's in-flight count, outcome and latency for the
/// gate's own signals. Dropped unfinished (a cancelled call), it only
/// leaves the in-flight count.
pub(crate) struct Observe {
    shared: Arc<Shared>,
    start: Instant,
}

impl Observe {
    pub(crate) fn start(shared: Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Relaxed);
        Observe {
            shared,
            start: Instant::now(),
        }
    }

    fn finish(self, ok: bool) {
        self.shared.record(ok, self.start.elapsed());
    }
}

impl Drop for Observe {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Relaxed);
    }
}
