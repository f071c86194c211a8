//! The services: [`DeadlineService`] (total budget) and [`AttemptTimeout`]
//! (one attempt).

use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{BoxError, Deadline, DeadlineCarrier, SharedRef, deadline};
use tokio::time::Instant;
use tower_service::Service;

use crate::carry::Carry;
use crate::future::{Cut, OWNED_OUTSIDE, ResponseFuture, SCOPED, expired_meta, pack};
use crate::shared::{Role, Shared};

/// `now + d`, or about thirty years from `now` ("no deadline") when that
/// would overflow.
#[inline]
fn add_saturating(now: Instant, d: Duration) -> Instant {
    Deadline::after_from(now, d).instant()
}

/// Refuses a zero total budget: `DeadlineLayer::new` and
/// `DeadlineService::new` cannot return an error, and a zero budget is a
/// configuration mistake. Ruling it out here keeps the happy path free of
/// a "spent on arrival" branch: every request without an earlier deadline
/// of its own is handed to the inner service.
#[track_caller]
pub(crate) fn assert_nonzero_total(total: Duration) {
    assert!(
        !total.is_zero(),
        "DeadlineLayer: total must be > 0 (use DeadlineLayer::builder() to get an error instead)"
    );
}

/// Refuses a zero bound per attempt, as
/// [`AttemptTimeoutConfig::per_attempt`](crate::AttemptTimeoutConfig::per_attempt)
/// does: every attempt would fail before it started.
#[track_caller]
pub(crate) fn assert_nonzero_per_attempt(per_attempt: Duration) {
    assert!(
        !per_attempt.is_zero(),
        "AttemptTimeoutLayer: per_attempt must be > 0 (use AttemptTimeoutLayer::builder() to get an error instead)"
    );
}

/// Enforces a request's total time budget; built by
/// [`DeadlineLayer`](crate::DeadlineLayer).
///
/// On each call it sets the request's [`Deadline`] to now + `total`, or
/// keeps the earlier one the request already carries, so the layers inside
/// (retries, attempt timeouts, header propagation) see the same instant;
/// with [`Carry::IfCarried`] a request that carries none is left as it
/// is and the deadline is in scope only.
/// When the deadline passes the inner future is dropped and the call fails
/// with [`DeadlineExceeded`](battlement_core::DeadlineExceeded). A request
/// whose deadline has already passed fails at once without calling the
/// inner service.
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
    total: Duration,
    /// `total`, what a hit means and the role, packed once for the
    /// future (the common case: the deadline is the layer's own).
    meta: u64,
    shared: SharedRef<Shared>,
    carry: Carry,
}

impl<S> DeadlineService<S> {
    /// Wraps `inner` with a total budget of `total` per request.
    ///
    /// # Panics
    ///
    /// If `total` is zero, as [`DeadlineLayer::new`](crate::DeadlineLayer::new).
    #[track_caller]
    pub fn new(inner: S, total: Duration) -> Self {
        assert_nonzero_total(total);
        DeadlineService::from_parts(
            inner,
            total,
            SharedRef::new(Shared::new(Role::Total)),
            Carry::Always,
        )
    }

    pub(crate) fn from_parts(
        inner: S,
        total: Duration,
        shared: SharedRef<Shared>,
        carry: Carry,
    ) -> Self {
        DeadlineService {
            inner,
            total,
            meta: pack(total, Cut::Deadline, Role::Total),
            shared,
            carry,
        }
    }

    /// The total budget given to each request.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// Whether a request that carries no deadline is given this one
    /// (see [`Carry`]).
    pub fn carry(&self) -> Carry {
        self.carry
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for DeadlineService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Req: DeadlineCarrier,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, mut req: Req) -> Self::Future {
        // One clock read, as `tower::timeout`'s `sleep(d)` makes (none
        // when an enclosing deadline layer's call read it), and the same
        // "now" for the layers this one calls.
        let now = deadline::call_time();
        let own = add_saturating(now, self.total);
        // The request's deadline, or the one an enclosing deadline layer
        // has in scope: never loosened either way.
        let (at, meta) = match deadline::effective(&req) {
            None => {
                // The common case: the deadline is the layer's own (never
                // zero, see `new`), and its bound is `total`, packed when
                // the service was built. Carried on the request too unless
                // the scope is to be enough (`Carry::IfCarried`).
                if self.carry.adds() {
                    req.set_deadline(Deadline::at(own));
                }
                (own, self.meta)
            }
            Some(carried) => {
                let at = carried.instant().min(own);
                if at <= now {
                    return ResponseFuture::new(
                        None,
                        now,
                        expired_meta(Role::Total),
                        self.shared.for_future(),
                    );
                }
                if at == own {
                    req.set_deadline(Deadline::at(own));
                    (own, self.meta)
                } else {
                    let bound = at.saturating_duration_since(now);
                    (at, pack(bound, Cut::Deadline, Role::Total))
                }
            }
        };
        // The inner service's `call` sees the deadline in scope too. Its
        // future is built in place, inside the guard's life: through a
        // closure it would be a temporary, copied into this one.
        let _scope = deadline::enter_call(Deadline::at(at), now);
        ResponseFuture::new(
            Some(self.inner.call(req)),
            at,
            meta,
            self.shared.for_future(),
        )
    }
}

/// Bounds one attempt; built by
/// [`AttemptTimeoutLayer`](crate::AttemptTimeoutLayer).
///
/// The bound is `min(per_attempt, fraction × time left)` where each part
/// applies when configured and the request carries a deadline. The
/// request's deadline is tightened to the end of the attempt, so the
/// layers inside (and the next service, through header propagation) see
/// the attempt's end. When the bound passes the call fails with
/// [`AttemptTimedOut`](battlement_core::AttemptTimedOut) (retryable); when
/// it is the request's own deadline that passes, it fails with
/// [`DeadlineExceeded`](battlement_core::DeadlineExceeded) (not retryable).
#[derive(Debug, Clone)]
pub struct AttemptTimeout<S> {
    inner: S,
    per_attempt: Option<Duration>,
    fraction: Option<f64>,
    shared: SharedRef<Shared>,
    carry: Carry,
}

impl<S> AttemptTimeout<S> {
    /// Wraps `inner`, bounding each attempt by `min(per_attempt, time left)`.
    ///
    /// # Panics
    ///
    /// If `per_attempt` is zero, as
    /// [`AttemptTimeoutLayer::new`](crate::AttemptTimeoutLayer::new).
    #[track_caller]
    pub fn new(inner: S, per_attempt: Duration) -> Self {
        assert_nonzero_per_attempt(per_attempt);
        AttemptTimeout {
            inner,
            per_attempt: Some(per_attempt),
            fraction: None,
            shared: SharedRef::new(Shared::new(Role::Attempt)),
            carry: Carry::Always,
        }
    }

    pub(crate) fn from_parts(
        inner: S,
        per_attempt: Option<Duration>,
        fraction: Option<f64>,
        shared: SharedRef<Shared>,
        carry: Carry,
    ) -> Self {
        AttemptTimeout {
            inner,
            per_attempt,
            fraction,
            shared,
            carry,
        }
    }

    /// The fixed bound per attempt, if any.
    pub fn per_attempt(&self) -> Option<Duration> {
        self.per_attempt
    }

    /// The fraction of the time left given to each attempt, if any.
    pub fn fraction(&self) -> Option<f64> {
        self.fraction
    }

    /// Whether a request that carries no deadline is given the attempt's
    /// end (see [`Carry`]).
    pub fn carry(&self) -> Carry {
        self.carry
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for AttemptTimeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Req: DeadlineCarrier,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, mut req: Req) -> Self::Future {
        // One clock read per attempt, or none for the first attempt of a
        // call an enclosing deadline layer is making (its "now").
        let now = deadline::call_time();
        if let Some(bound) = self.per_attempt {
            deadline::announce_attempt_bound(bound);
        }
        let in_scope = deadline::current();
        let on_request = req.deadline();
        let carried = on_request.or(in_scope).map(|d| d.instant());
        // A hit of a deadline an enclosing `DeadlineLayer` enforces is
        // that layer's to count and report.
        let owned_outside = match (carried, in_scope) {
            (Some(c), Some(s)) if c == s.instant() => OWNED_OUTSIDE,
            _ => 0,
        };
        // The attempt's own end, from the fixed bound and the fraction,
        // with the bound it came from.
        let mut own = self.per_attempt.map(|d| (add_saturating(now, d), d));
        if let (Some(f), Some(at)) = (self.fraction, carried) {
            // `f` is in (0, 1]: the share never exceeds what is left (and
            // falls back to it rather than panic on a rounding overflow).
            let left = at.saturating_duration_since(now);
            let share = Duration::try_from_secs_f64(left.as_secs_f64() * f).unwrap_or(left);
            let by_fraction = (add_saturating(now, share), share);
            // The earlier end, the fixed bound's on a tie.
            own = Some(own.map_or(by_fraction, |o| {
                std::cmp::min_by_key(o, by_fraction, |(end, _)| *end)
            }));
        }
        let (at, cut, bound) = match (own, carried) {
            // No bound applies: a timer that never fires in practice.
            (None, None) => (add_saturating(now, Duration::MAX), Cut::Attempt, None),
            (Some((o, d)), Some(c)) if o < c => (o, Cut::Attempt, Some(d)),
            (Some((o, d)), None) => (o, Cut::Attempt, Some(d)),
            (_, Some(c)) => (c, Cut::Deadline, None),
        };
        if carried.is_some_and(|c| c <= now) {
            return ResponseFuture::new(
                None,
                now,
                expired_meta(Role::Attempt) | owned_outside,
                self.shared.for_future(),
            );
        }
        // The attempt's own bound is known; only a cut by the deadline
        // needs the time left (callgrind: a subtraction of instants is 37
        // instructions, about a thirtieth of the canonical stack's call).
        let bound = bound.unwrap_or_else(|| at.saturating_duration_since(now));
        let meta = pack(bound, cut, Role::Attempt);
        // Unbounded: no deadline to tell the layers inside. Otherwise the
        // attempt's end is the deadline inside it, in scope as on the
        // request.
        let (meta, _scope) = if own.is_none() && carried.is_none() {
            (meta & !SCOPED, None)
        } else {
            let meta = match cut {
                Cut::Attempt => {
                    // Carried on the request too, unless the scope is to
                    // be enough for a request that carries none.
                    if self.carry.adds() || on_request.is_some() {
                        req.tighten_deadline(Deadline::at(at));
                    }
                    meta
                }
                Cut::Deadline => meta | owned_outside,
            };
            (meta, Some(deadline::enter(Deadline::at(at))))
        };
        // Built in place, inside the scope's life (see `DeadlineService`).
        ResponseFuture::new(
            Some(self.inner.call(req)),
            at,
            meta,
            self.shared.for_future(),
        )
    }
}
