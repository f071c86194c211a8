//! The gated service's [`ResponseFuture`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};

use battlement_core::{BoxError, Classify, ErrorClassifier, Outcome, SharedRef};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::gate::Shared;

pin_project! {
    /// The response future of [`GateService`](crate::GateService): the inner
    /// future of an admitted call, or an immediately ready
    /// [`Shed`](battlement_core::Shed) error.
    pub struct ResponseFuture<F, C = ErrorClassifier> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        // Admitted: one variant, observed or not, so the inner future is
        // built in place whichever it is (two variants built on two
        // branches made the compiler copy it).
        Called { #[pin] fut: F, observe: Option<Observe<C>> },
        Shed { error: Option<BoxError> },
    }
}

impl<F, C> ResponseFuture<F, C> {
    /// An admitted call, recorded for the gate's signals when `observe` is
    /// set.
    #[inline(always)]
    pub(crate) fn called(fut: F, observe: Option<Observe<C>>) -> Self {
        ResponseFuture {
            kind: Kind::Called { fut, observe },
        }
    }

    /// A shed call: its error, boxed when shed (the future stays small).
    #[inline(always)]
    pub(crate) fn shed(error: BoxError) -> Self {
        ResponseFuture {
            kind: Kind::Shed { error: Some(error) },
        }
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
{
    type Output = Result<T, BoxError>;

    /// Inline, as the other layers' polls are: out of line, its result
    /// came back through memory and the caller's wide load of it stalled
    /// on store forwarding (perf put half of the admitted row's samples
    /// there). Recording an outcome stays out of line.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { fut, observe } => {
                let res = ready!(fut.poll(cx)).map_err(Into::into);
                if let Some(observe) = observe.take() {
                    observe.finish(&res);
                }
                Poll::Ready(res)
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
pub(crate) struct Observe<C> {
    shared: SharedRef<Shared>,
    start: Instant,
    classifier: C,
}

impl<C> Observe<C> {
    pub(crate) fn start(shared: SharedRef<Shared>, classifier: C) -> Self {
        shared.in_flight.fetch_add(1, Relaxed);
        Observe {
            shared,
            start: Instant::now(),
            classifier,
        }
    }

    /// A call is an error when the classifier calls it a failure; an
    /// `Ignored` outcome (a caller's mistake, a cancellation) is not.
    #[inline(never)]
    fn finish<T>(self, res: &Result<T, BoxError>)
    where
        C: Classify<T, BoxError>,
    {
        let failed = matches!(self.classifier.classify(res), Outcome::Failure(_));
        self.shared.record(!failed, self.start.elapsed());
    }
}

impl<C> Drop for Observe<C> {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Relaxed);
    }
}
