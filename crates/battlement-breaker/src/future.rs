//! [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use battlement_core::{BoxError, Classify};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::state::{Admit, Shared};

pin_project! {
    /// The response future of [`BreakerService`](crate::BreakerService):
    /// a ready rejection, or the inner future whose result is recorded
    /// when it completes. Dropping a probe before it completes gives its
    /// permit back and records nothing.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Rejected { error: Option<BoxError> },
        Unrecorded { #[pin] future: F },
        Recorded { #[pin] future: F, guard: Guard, classify: C },
    }
}

/// A call in flight: records its outcome, or returns its probe permit if
/// dropped first.
struct Guard {
    shared: Option<Arc<Shared>>,
    admit: Admit,
    start: Option<Instant>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let (Some(shared), Admit::Probe(generation)) = (&self.shared, self.admit) {
            shared.release_probe(generation);
        }
    }
}

impl<F, C> ResponseFuture<F, C> {
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
        shared: Arc<Shared>,
        admit: Admit,
        start: Option<Instant>,
        classify: C,
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
            },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
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
            } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                // Classify before taking the state out of the guard: if the
                // classifier panics, the guard still returns a probe permit.
                let outcome = classify.classify(&result);
                if let Some(shared) = guard.shared.take() {
                    shared.complete(guard.admit, outcome, guard.start);
                }
                Poll::Ready(result)
            }
        }
    }
}

#[cold]
fn polled_after_completion() -> BoxError {
    "breaker response future polled after completion".into()
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
