//! The response future of [`DeadlineService`](crate::DeadlineService) and
//! [`AttemptTimeout`](crate::AttemptTimeout).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use battlement_core::{AttemptTimedOut, BoxError, DeadlineExceeded};
use pin_project_lite::pin_project;
use std::time::Duration;

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
        // The inner call, raced against the timer (a far-future one when
        // no bound applies).
        Running { #[pin] inner: F, #[pin] sleep: Sleep },
        // The deadline had passed before the call: fail at once, the inner
        // service was not called.
        Expired,
        // Finished; the inner future has been dropped.
        Done,
    }
}

/// Bit 63 of `meta`: the timer means the total deadline.
const CUT_DEADLINE: u64 = 1 << 63;
/// Bit 62 of `meta`: the future belongs to an `AttemptTimeout`.
const ROLE_ATTEMPT: u64 = 1 << 62;
/// The low 62 bits of `meta`: the bound in nanoseconds (146 years).
const NANOS: u64 = ROLE_ATTEMPT - 1;

/// Packs what a timeout needs to report into one word, which keeps the
/// future as small as `tower::timeout`'s plus two words.
#[inline]
fn pack(bound: Duration, cut: Cut, role: Role) -> u64 {
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(NANOS).min(NANOS);
    let cut = match cut {
        Cut::Deadline => CUT_DEADLINE,
        Cut::Attempt => 0,
    };
    let role = match role {
        Role::Total => 0,
        Role::Attempt => ROLE_ATTEMPT,
    };
    nanos | cut | role
}

pin_project! {
    /// The response future of the deadline layers: the inner call raced
    /// against one timer. When the timer wins, the inner future is dropped
    /// (the call is cancelled) and the future fails with
    /// [`DeadlineExceeded`] or [`AttemptTimedOut`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        meta: u64,
        shared: Option<Arc<Shared>>,
    }
}

impl<F> ResponseFuture<F> {
    /// Races `inner` against a timer ending at `at`, `bound` after the
    /// layer took the call.
    #[inline]
    pub(crate) fn running(
        inner: F,
        bound: Duration,
        at: Instant,
        cut: Cut,
        role: Role,
        shared: Option<Arc<Shared>>,
    ) -> Self {
        ResponseFuture {
            state: State::Running {
                inner,
                sleep: tokio::time::sleep_until(at),
            },
            meta: pack(bound, cut, role),
            shared,
        }
    }

    pub(crate) fn expired(role: Role, shared: Option<Arc<Shared>>) -> Self {
        ResponseFuture {
            state: State::Expired,
            meta: pack(Duration::ZERO, Cut::Deadline, role),
            shared,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Running { .. } => "running",
            State::Expired => "expired",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("bound", &Duration::from_nanos(self.meta & NANOS))
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
        let fired_at = match this.state.as_mut().project() {
            StateProj::Running { inner, mut sleep } => {
                if let Poll::Ready(out) = inner.poll(cx) {
                    return Poll::Ready(out.map_err(Into::into));
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => Some(sleep.deadline()),
                }
            }
            StateProj::Expired => None,
            StateProj::Done => panic!("ResponseFuture polled after completion"),
        };
        Poll::Ready(Err(fire(
            *this.meta,
            this.shared.as_deref(),
            fired_at,
            || {
                // The timer won: drop the inner future now, which cancels the call.
                this.state.set(State::Done);
            },
        )))
    }
}

/// Builds the error of a timer that fired (cold path).
#[cold]
#[inline(never)]
fn fire(
    meta: u64,
    shared: Option<&Shared>,
    fired_at: Option<Instant>,
    cancel: impl FnOnce(),
) -> BoxError {
    cancel();
    let bound = Duration::from_nanos(meta & NANOS);
    let role = if meta & ROLE_ATTEMPT != 0 {
        Role::Attempt
    } else {
        Role::Total
    };
    if meta & CUT_DEADLINE != 0 {
        // The timer ran for `bound` from the start and fires late, never
        // early: the elapsed time is the bound plus the lateness (zero for
        // a request that arrived expired).
        let elapsed = match fired_at {
            Some(at) => bound + Instant::now().saturating_duration_since(at),
            None => Duration::ZERO,
        };
        deadline_hit(shared, role, bound, elapsed);
        Box::new(DeadlineExceeded {
            budget: bound,
            elapsed,
        })
    } else {
        attempt_hit(shared, role, bound);
        Box::new(AttemptTimedOut { timeout: bound })
    }
}
