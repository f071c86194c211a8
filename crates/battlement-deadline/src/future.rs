//! The response future of [`DeadlineService`](crate::DeadlineService) and
//! [`AttemptTimeout`](crate::AttemptTimeout).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use battlement_core::{AttemptTimedOut, BoxError, DeadlineExceeded};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::shared::{Role, Shared, attempt_hit, deadline_hit};

/// What a timer that fires means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The request's total deadline passed: `DeadlineExceeded`, not
    /// retryable.
    Deadline,
    /// Only this attempt's bound passed: `AttemptTimedOut`, retryable.
    Attempt,
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // The inner call, raced against the timer.
        Running { #[pin] inner: F, #[pin] sleep: Sleep, cut: Cut },
        // No bound applies: the inner call alone.
        Unbounded { #[pin] inner: F },
        // The deadline had passed before the call: fail at once, the inner
        // service was not called.
        Expired,
        // Finished; the inner future has been dropped.
        Done,
    }
}

pin_project! {
    /// The response future of the deadline layers: the inner call raced
    /// against one timer. When the timer wins, the inner future is dropped
    /// (the call is cancelled) and the future fails with
    /// [`DeadlineExceeded`] or [`AttemptTimedOut`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        start: Instant,
        role: Role,
        shared: Option<Arc<Shared>>,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn running(
        inner: F,
        sleep: Sleep,
        cut: Cut,
        start: Instant,
        role: Role,
        shared: Option<Arc<Shared>>,
    ) -> Self {
        ResponseFuture {
            state: State::Running { inner, sleep, cut },
            start,
            role,
            shared,
        }
    }

    pub(crate) fn unbounded(inner: F, start: Instant, role: Role) -> Self {
        ResponseFuture {
            state: State::Unbounded { inner },
            start,
            role,
            shared: None,
        }
    }

    pub(crate) fn expired(start: Instant, role: Role, shared: Option<Arc<Shared>>) -> Self {
        ResponseFuture {
            state: State::Expired,
            start,
            role,
            shared,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Running { cut, .. } => match cut {
                Cut::Deadline => "running (deadline)",
                Cut::Attempt => "running (attempt)",
            },
            State::Unbounded { .. } => "unbounded",
            State::Expired => "expired",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("start", &self.start)
            .finish()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let (at, cut) = match this.state.as_mut().project() {
            StateProj::Running {
                inner,
                mut sleep,
                cut,
            } => {
                if let Poll::Ready(out) = inner.poll(cx) {
                    return Poll::Ready(out.map_err(Into::into));
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => (sleep.deadline(), *cut),
                }
            }
            StateProj::Unbounded { inner } => {
                return inner.poll(cx).map_err(Into::into);
            }
            StateProj::Expired => (*this.start, Cut::Deadline),
            StateProj::Done => panic!("ResponseFuture polled after completion"),
        };
        // The timer won: drop the inner future now, which cancels the call.
        this.state.set(State::Done);
        let now = Instant::now();
        let bound = at.saturating_duration_since(*this.start);
        let shared = this.shared.as_deref();
        let err: BoxError = match cut {
            Cut::Deadline => {
                let elapsed = now.saturating_duration_since(*this.start);
                deadline_hit(shared, *this.role, bound, elapsed);
                Box::new(DeadlineExceeded {
                    budget: bound,
                    elapsed,
                })
            }
            Cut::Attempt => {
                attempt_hit(shared, *this.role, bound);
                Box::new(AttemptTimedOut { timeout: bound })
            }
        };
        Poll::Ready(Err(err))
    }
}
