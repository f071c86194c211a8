//! [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use battlement_core::{BoxError, Classify, SharedRef};
use pin_project_lite::pin_project;

use crate::defer::{Defer, Guard, NoDefer, Pending};
use crate::state::{Admit, Shared};

pin_project! {
    /// The response future of [`BreakerService`](crate::BreakerService):
    /// a ready rejection, or the inner future whose result is recorded
    /// when it completes (or, with a [`Defer`], handed to the response to
    /// record when its body ends). Dropping a probe before it completes
    /// gives its permit back and records nothing.
    pub struct ResponseFuture<F, C, D = NoDefer> {
        #[pin]
        kind: Kind<F, C, D>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C, D> {
        Rejected { error: Option<BoxError> },
        Unrecorded { #[pin] future: F },
        Recorded { #[pin] future: F, guard: Guard, classify: C, defer: D },
    }
}

impl<F, C, D> ResponseFuture<F, C, D> {
    pub(crate) fn rejected(error: BoxError) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
        }
    }

    pub(crate) fn unrecorded(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Unrecorded { future },
        }
    }

    pub(crate) fn recorded(
        future: F,
        shared: SharedRef<Shared>,
        admit: Admit,
        start: Option<u64>,
        classify: C,
        defer: D,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Recorded {
                future,
                guard: Guard {
                    shared: Some(shared),
                    admit,
                    start,
                },
                classify,
                defer,
            },
        }
    }
}

impl<F, C, D, T, E> Future for ResponseFuture<F, C, D>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
    D: Defer<T>,
{
    type Output = Result<T, BoxError>;

    // Inlined into the caller's poll so the closed path's few fields stay
    // in registers; the rare paths are out of line in `Shared`.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { error } => Poll::Ready(Err(match error.take() {
                Some(e) => e,
                None => polled_after_completion(),
            })),
            KindProj::Unrecorded { future } => future.poll(cx).map_err(Into::into),
            KindProj::Recorded {
                future,
                guard,
                classify,
                defer,
            } => {
                let mut result = ready!(future.poll(cx)).map_err(Into::into);
                // Classify before taking the state out of the guard: if the
                // classifier panics, the guard still returns a probe permit.
                let outcome = classify.classify(&result);
                // Compiled out without a deferral (`NoDefer`).
                if D::ACTIVE
                    && outcome.is_success()
                    && let Ok(res) = &mut result
                {
                    offer(defer, res, guard, outcome);
                    return Poll::Ready(result);
                }
                if let Some(shared) = guard.shared.take() {
                    shared.complete(guard.admit, outcome, guard.start);
                }
                Poll::Ready(result)
            }
        }
    }
}

/// Offers the call's completion to the response; records it now if the
/// response gives it back.
#[inline(never)]
fn offer<T, D: Defer<T>>(
    defer: &D,
    res: &mut T,
    guard: &mut Guard,
    outcome: battlement_core::Outcome,
) {
    let taken = Guard {
        shared: guard.shared.take(),
        admit: guard.admit,
        start: guard.start,
    };
    if taken.shared.is_none() {
        return;
    }
    if let Err(pending) = defer.defer(res, Pending::new(taken)) {
        pending.complete(outcome);
    }
}

#[cold]
fn polled_after_completion() -> BoxError {
    "breaker response future polled after completion".into()
}

impl<F, C, D> fmt::Debug for ResponseFuture<F, C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
