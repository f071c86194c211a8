//! The response future of [`DeadlineService`](crate::DeadlineService) and
//! [`AttemptTimeout`](crate::AttemptTimeout).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{AttemptTimedOut, BoxError, Deadline, DeadlineExceeded, deadline};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::shared::{Observer, Role, attempt_hit, deadline_hit};

/// What a timer that fires means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The request's total deadline passed: `DeadlineExceeded`, not
    /// retryable.
    Deadline,
    /// Only this attempt's bound passed: `AttemptTimedOut`, retryable.
    Attempt,
}

/// Bit 63 of `meta`: the timer means the total deadline.
const CUT_DEADLINE: u64 = 1 << 63;
/// Bit 62 of `meta`: the future belongs to an `AttemptTimeout`.
const ROLE_ATTEMPT: u64 = 1 << 62;
/// Bit 61 of `meta`: the future has answered with its error.
const DONE: u64 = 1 << 61;
/// Bit 60 of `meta`: the timer's instant is the deadline in scope while
/// the inner future is polled (see [`battlement_core::deadline`]).
pub(crate) const SCOPED: u64 = 1 << 60;
/// Bit 59 of `meta`: a hit of the request's deadline belongs to an
/// enclosing `DeadlineLayer`, which counts and reports it; this
/// (attempt) layer only fails the attempt.
pub(crate) const OWNED_OUTSIDE: u64 = 1 << 59;
/// The low 59 bits of `meta`: the bound in nanoseconds (18 years; a
/// longer bound is "unbounded" and reported as 18 years).
pub(crate) const NANOS: u64 = OWNED_OUTSIDE - 1;

/// Packs what a timeout needs to report into one word, which keeps the
/// future as small as `tower::timeout`'s plus two words.
#[inline]
pub(crate) fn pack(bound: Duration, cut: Cut, role: Role) -> u64 {
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(NANOS).min(NANOS);
    let cut = match cut {
        Cut::Deadline => CUT_DEADLINE,
        Cut::Attempt => 0,
    };
    let role = match role {
        Role::Total | Role::Server => 0,
        Role::Attempt => ROLE_ATTEMPT,
    };
    nanos | cut | role | SCOPED
}

pin_project! {
    /// The response future of the deadline layers: the inner call raced
    /// against one timer. When the timer wins, the inner future is dropped
    /// (the call is cancelled) and the future fails with
    /// [`DeadlineExceeded`] or [`AttemptTimedOut`].
    ///
    /// Laid out as `tower::timeout`'s (the inner future and a `Sleep`,
    /// built in place) plus one word of bound and flags and one copyable
    /// ticket to the layer's counters (no reference count).
    pub struct ResponseFuture<F> {
        // `None` when the deadline had passed before the call (the inner
        // service was not called) or once the timer has won.
        #[pin]
        inner: Option<F>,
        // Made at the first poll that finds the inner future pending: a
        // call that completes at once never touches the timer (making a
        // `Sleep` reads the runtime's thread-local handle and clones it).
        #[pin]
        sleep: Option<Sleep>,
        at: Instant,
        meta: u64,
        shared: Observer,
    }
}

impl<F> ResponseFuture<F> {
    /// Races `inner` against a timer ending at `at`; `meta` is
    /// [`pack`]ed from the bound, what a hit means and the role. With no
    /// `inner` (the deadline had passed before the call) the future fails
    /// at once.
    ///
    /// The timer is made only if the inner future is pending at its first
    /// poll.
    #[inline(always)]
    pub(crate) fn new(inner: Option<F>, at: Instant, meta: u64, shared: Observer) -> Self {
        ResponseFuture {
            inner,
            sleep: None,
            at,
            meta,
            shared,
        }
    }
}

/// The `meta` of a future whose deadline had passed before the call.
pub(crate) const fn expired_meta(role: Role) -> u64 {
    CUT_DEADLINE
        | match role {
            Role::Total | Role::Server => 0,
            Role::Attempt => ROLE_ATTEMPT,
        }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (&self.inner, self.meta & DONE != 0) {
            (Some(_), _) => "running",
            (None, false) => "expired",
            (None, true) => "done",
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
        let fired_at = match this.inner.as_mut().as_pin_mut() {
            Some(inner) => {
                let polled = if *this.meta & SCOPED != 0 {
                    let _scope = deadline::enter(Deadline::at(*this.at));
                    inner.poll(cx)
                } else {
                    inner.poll(cx)
                };
                if let Poll::Ready(out) = polled {
                    return match out {
                        Ok(response) => Poll::Ready(Ok(response)),
                        Err(e) => Poll::Ready(Err(inner_failed(
                            this.meta,
                            *this.shared,
                            *this.at,
                            e.into(),
                        ))),
                    };
                }
                if this.sleep.is_none() {
                    this.sleep.set(Some(tokio::time::sleep_until(*this.at)));
                }
                let Some(sleep) = this.sleep.as_mut().as_pin_mut() else {
                    unreachable!("the timer was just made");
                };
                match sleep.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => {
                        // The timer won: drop the inner future now, which
                        // cancels the call.
                        this.inner.set(None);
                        Some(*this.at)
                    }
                }
            }
            None => None,
        };
        Poll::Ready(Err(fire(this.meta, *this.shared, fired_at)))
    }
}

/// The inner service failed. When the layer's own deadline (the
/// request's) has passed and the failure is that deadline being hit
/// inside (an attempt timeout bounded by it, a retry giving up on it),
/// the hit is this layer's: both timers fired at the same instant, and
/// the inner one merely polled first. A `DeadlineLayer` then answers
/// with its own error (its budget, its elapsed) and counts and reports
/// it. Any other failure passes as it is.
#[cold]
#[inline(never)]
fn inner_failed(meta: &mut u64, observer: Observer, at: Instant, err: BoxError) -> BoxError {
    let total = *meta & (CUT_DEADLINE | ROLE_ATTEMPT) == CUT_DEADLINE;
    if total && Instant::now() >= at && hit_a_deadline(&*err) {
        return fire(meta, observer, Some(at));
    }
    err
}

/// Whether `err` or one of its sources is a [`DeadlineExceeded`].
fn hit_a_deadline(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<DeadlineExceeded>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Builds the error of a timer that fired, or of a deadline that had
/// passed before the call (cold path).
#[cold]
#[inline(never)]
fn fire(meta: &mut u64, observer: Observer, fired_at: Option<Instant>) -> BoxError {
    let shared = observer.get();
    let shared = shared.as_deref();
    assert!(*meta & DONE == 0, "ResponseFuture polled after completion");
    *meta |= DONE;
    let bound = Duration::from_nanos(*meta & NANOS);
    let role = if *meta & ROLE_ATTEMPT != 0 {
        Role::Attempt
    } else {
        Role::Total
    };
    if *meta & CUT_DEADLINE != 0 {
        // The timer ran for `bound` from the start and fires late, never
        // early: the elapsed time is the bound plus the lateness (zero for
        // a request that arrived expired).
        let elapsed = match fired_at {
            Some(at) => bound.saturating_add(Instant::now().saturating_duration_since(at)),
            None => Duration::ZERO,
        };
        if *meta & OWNED_OUTSIDE == 0 {
            deadline_hit(shared, role, bound, elapsed);
        }
        Box::new(DeadlineExceeded {
            budget: bound,
            elapsed,
        })
    } else {
        attempt_hit(shared, role, bound);
        Box::new(AttemptTimedOut { timeout: bound })
    }
}
