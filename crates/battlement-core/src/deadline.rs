//! A request's time budget: [`Deadline`], [`DeadlineCarrier`], and the
//! deadline *in scope* ([`current`], [`scope`], [`enter`]).
//!
//! # The deadline in scope
//!
//! A request type that carries no deadline (`u32`, `String`, most request
//! types of a hand-written service) cannot tell the layers inside a
//! `DeadlineLayer` what budget is left. So, as gRPC and Go's `context`
//! carry it, the deadline is also *ambient*: while `DeadlineLayer` calls
//! its inner service and while it polls the inner future, [`current`]
//! returns its deadline. Retry, attempt timeout, fan-out and header
//! propagation read [`effective`]: the request's own deadline when it
//! carries one ([`DeadlineCarrier`] wins), otherwise the one in scope.
//!
//! The scope is a thread-local cell set by a guard around each
//! synchronous step (a `call`, one `poll`) and restored when the guard
//! drops, so scopes nest (an inner `DeadlineLayer` scopes its own, earlier
//! deadline and the outer one is back once the step returns), a panic
//! restores it (the guard drops while unwinding), and nothing leaks to
//! another task polled later on the same thread. It costs a thread-local
//! read and two writes per step; no allocation. A future polled outside
//! the scope (a task spawned by the inner service, a `tower::buffer`
//! worker) does not see it: carry the deadline on the request for those.
//!
//! ```
//! use std::time::Duration;
//! use battlement_core::Deadline;
//! use battlement_core::deadline::{current, effective, scope};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let outer = Deadline::after(Duration::from_secs(2));
//! let inner = Deadline::after(Duration::from_secs(1));
//! assert_eq!(current(), None);
//! scope(outer, || {
//!     assert_eq!(current(), Some(outer));
//!     // A `u32` carries none: the one in scope is the request's.
//!     assert_eq!(effective(&7_u32), Some(outer));
//!     scope(inner, || assert_eq!(current(), Some(inner)));
//!     assert_eq!(current(), Some(outer));
//! });
//! assert_eq!(current(), None);
//! # }
//! ```

use std::cell::Cell;
use std::marker::PhantomData;
use std::time::Duration;

use tokio::time::Instant;

/// The instant by which a request must be done, on tokio's clock (so
/// paused-time tests are exact).
///
/// A deadline is absolute: every layer that sees the request sees the same
/// instant, however long the layers before it took. `DeadlineLayer` sets
/// it, retries and attempt timeouts read it, and the HTTP glue turns
/// [`remaining`](Deadline::remaining) into a header for the next service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline at `at`.
    pub const fn at(at: Instant) -> Self {
        Deadline { at }
    }

    /// A deadline `budget` from now. Saturates far in the future instead
    /// of overflowing: a budget the clock cannot hold (`Duration::MAX`)
    /// ends about thirty years from now, which means "no deadline".
    pub fn after(budget: Duration) -> Self {
        Deadline::after_from(Instant::now(), budget)
    }

    /// A deadline `budget` after `start`, saturating as
    /// [`after`](Deadline::after) does. For a layer that has read the
    /// clock already.
    #[inline]
    pub fn after_from(start: Instant, budget: Duration) -> Self {
        Deadline {
            at: start
                .checked_add(budget)
                .unwrap_or_else(|| far_future(start)),
        }
    }

    /// The instant itself.
    pub const fn instant(&self) -> Instant {
        self.at
    }

    /// The time left, zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The time left as seen from `now`, zero once passed.
    pub fn remaining_at(&self, now: Instant) -> Duration {
        self.at.saturating_duration_since(now)
    }

    /// `true` once the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The earlier of the two deadlines.
    #[must_use]
    pub fn min(self, other: Deadline) -> Deadline {
        if other.at < self.at { other } else { self }
    }
}

/// What a thread has in scope: the deadline, and while a `DeadlineLayer`
/// calls the layers inside it, the instant of that call.
#[derive(Debug, Clone, Copy)]
struct Scope {
    deadline: Option<Deadline>,
    called_at: Option<Instant>,
}

thread_local! {
    /// The deadline in scope on this thread, if any.
    static CURRENT: Cell<Scope> = const {
        Cell::new(Scope {
            deadline: None,
            called_at: None,
        })
    };
    /// What an enclosing retry learns of the attempt bound inside it:
    /// `None` when nobody listens, `Some(None)` while a retry listens and
    /// nothing was announced, `Some(Some(bound))` once an attempt timeout
    /// announced its bound.
    static ATTEMPT_BOUND: Cell<Option<Option<Duration>>> = const { Cell::new(None) };
}

/// The deadline in scope on this thread: the one the innermost enclosing
/// `DeadlineLayer` is enforcing while it calls or polls the layers inside,
/// or `None` outside any.
#[inline]
pub fn current() -> Option<Deadline> {
    CURRENT.with(Cell::get).deadline
}

/// "Now" for a layer being called: the instant an enclosing
/// `DeadlineLayer` read when it was called, while it calls the layers
/// inside it ([`enter_call`]); otherwise the stamp an enclosing
/// instrument took ([`clock::call_instant`](crate::clock::call_instant)),
/// or else a read of tokio's clock.
///
/// A call runs through the layers synchronously, in nanoseconds, so one
/// clock read serves the whole chain of `call`s (the deadline layer's and
/// the attempt timeout's, which would otherwise read it twice). While a
/// future is polled ([`enter`]), and for every later attempt of a retry,
/// the clock is read again.
#[inline]
pub fn call_time() -> Instant {
    CURRENT
        .with(Cell::get)
        .called_at
        .unwrap_or_else(crate::clock::call_instant)
}

/// The deadline a layer should work to for `req`: the one the request
/// carries, or else the one in scope ([`current`]). A deadline carried by
/// the request wins, as the request is the more specific of the two.
#[inline]
pub fn effective<R: DeadlineCarrier + ?Sized>(req: &R) -> Option<Deadline> {
    req.deadline().or_else(current)
}

/// Runs `f` with `deadline` in scope, restoring the previous one after
/// (also when `f` panics).
#[inline]
pub fn scope<R>(deadline: Deadline, f: impl FnOnce() -> R) -> R {
    let _guard = enter(deadline);
    f()
}

/// Puts `deadline` in scope until the returned guard drops, which
/// restores the one before. The guard is neither `Send` nor `Sync`: it
/// must drop on the thread that made it, so hold it across one
/// synchronous step (a `call`, a `poll`), never across an `.await`.
#[inline]
pub fn enter(deadline: Deadline) -> ScopeGuard {
    enter_scope(Scope {
        deadline: Some(deadline),
        called_at: None,
    })
}

/// [`enter`] for a `call`: `deadline` in scope, and `now`, the instant the
/// caller read, as the [`call_time`] of the layers it calls.
#[inline]
pub fn enter_call(deadline: Deadline, now: Instant) -> ScopeGuard {
    enter_scope(Scope {
        deadline: Some(deadline),
        called_at: Some(now),
    })
}

#[inline(always)]
fn enter_scope(scope: Scope) -> ScopeGuard {
    ScopeGuard {
        previous: CURRENT.with(|c| c.replace(scope)),
        _not_send: PhantomData,
    }
}

/// Restores the deadline in scope before [`enter`] when dropped.
#[derive(Debug)]
#[must_use = "the deadline is in scope only while the guard lives"]
pub struct ScopeGuard {
    previous: Scope,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ScopeGuard {
    #[inline]
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Announces the fixed bound per attempt of an attempt timeout being
/// called, to a retry that [`listens`](learn_attempt_bound) around its
/// inner `call`. A thread-local read when nobody listens.
#[inline]
pub fn announce_attempt_bound(bound: Duration) {
    ATTEMPT_BOUND.with(|c| {
        if let Some(None) = c.get() {
            c.set(Some(Some(bound)));
        }
    });
}

/// Runs `f` (a retry's inner `call`) and returns, with its result, the
/// bound per attempt an attempt timeout called synchronously inside it
/// announced ([`announce_attempt_bound`]); the first (outermost) one
/// wins. A retry uses it to default the time an attempt needs left.
pub fn learn_attempt_bound<R>(f: impl FnOnce() -> R) -> (R, Option<Duration>) {
    let listener = listen_attempt_bound();
    let out = f();
    (out, listener.finish())
}

/// [`learn_attempt_bound`] as a guard, for a `call` that builds its
/// future in place (a closure's result is a temporary, copied out): the
/// bound announced between this and [`AttemptBoundListener::finish`] is
/// learned.
#[inline]
pub fn listen_attempt_bound() -> AttemptBoundListener {
    AttemptBoundListener {
        previous: ATTEMPT_BOUND.with(|c| c.replace(Some(None))),
        _not_send: PhantomData,
    }
}

/// Listens for the bound an attempt timeout announces, from
/// [`listen_attempt_bound`] until [`finish`](Self::finish) (or a drop),
/// which restores what an enclosing listener had heard.
#[derive(Debug)]
#[must_use = "the bound is learned only until the listener finishes"]
pub struct AttemptBoundListener {
    previous: Option<Option<Duration>>,
    _not_send: PhantomData<*const ()>,
}

impl AttemptBoundListener {
    /// The bound announced since the listener started, if any.
    #[inline]
    pub fn finish(self) -> Option<Duration> {
        ATTEMPT_BOUND.with(Cell::get).flatten()
    }
}

impl Drop for AttemptBoundListener {
    #[inline]
    fn drop(&mut self) {
        ATTEMPT_BOUND.with(|c| c.set(self.previous));
    }
}

/// About thirty years from `now` (tokio's own "far future"): far enough
/// to mean "no deadline" without overflowing the platform's instant.
#[cold]
fn far_future(now: Instant) -> Instant {
    // Every platform's instant holds thirty years past any "now"; should
    // one not, `now` itself is the latest instant there is to offer.
    now.checked_add(Duration::from_secs(86_400 * 365 * 30))
        .unwrap_or(now)
}

/// A request type that can carry a [`Deadline`] to the layers inside.
///
/// Implemented for `http::Request<B>` (in its extensions, feature `http`,
/// on by default) and, as "carries nothing", for the standard types tests
/// and simple services use as requests (`String`, `&'static str`, numbers,
/// `()`, `Vec<T>`, tuples...). For a request type of your own, either store
/// the deadline:
///
/// ```
/// use battlement_core::{Deadline, DeadlineCarrier};
///
/// struct Query { sql: String, deadline: Option<Deadline> }
///
/// impl DeadlineCarrier for Query {
///     fn deadline(&self) -> Option<Deadline> { self.deadline }
///     fn set_deadline(&mut self, deadline: Deadline) { self.deadline = Some(deadline) }
/// }
/// ```
///
/// or declare that it carries none, and the deadline layers still time out
/// correctly but cannot tell the layers inside:
///
/// ```
/// # struct Ping;
/// impl battlement_core::DeadlineCarrier for Ping {}
/// ```
pub trait DeadlineCarrier {
    /// The deadline the request carries, if any.
    fn deadline(&self) -> Option<Deadline> {
        None
    }

    /// Stores `deadline` on the request, replacing any it carried. Layers
    /// use [`tighten_deadline`](DeadlineCarrier::tighten_deadline) instead,
    /// which never loosens.
    fn set_deadline(&mut self, deadline: Deadline) {
        let _ = deadline;
    }

    /// Sets the deadline to the earlier of `deadline` and the one already
    /// carried, and returns the deadline now in force. Never loosens.
    fn tighten_deadline(&mut self, deadline: Deadline) -> Deadline {
        let effective = match self.deadline() {
            Some(existing) => existing.min(deadline),
            None => deadline,
        };
        self.set_deadline(effective);
        effective
    }
}

#[cfg(feature = "http")]
impl<B> DeadlineCarrier for http::Request<B> {
    fn deadline(&self) -> Option<Deadline> {
        self.extensions().get::<Deadline>().copied()
    }

    /// Overwrites the deadline in place when the request carries one (a
    /// deadline layer's, tightened by an attempt timeout): no new box in
    /// the extensions, and no old one to free.
    fn set_deadline(&mut self, deadline: Deadline) {
        let extensions = self.extensions_mut();
        match extensions.get_mut::<Deadline>() {
            Some(carried) => *carried = deadline,
            None => {
                extensions.insert(deadline);
            }
        }
    }

    /// One lookup in the extensions, where the default method makes two.
    fn tighten_deadline(&mut self, deadline: Deadline) -> Deadline {
        let extensions = self.extensions_mut();
        match extensions.get_mut::<Deadline>() {
            Some(carried) => {
                *carried = Deadline::min(*carried, deadline);
                *carried
            }
            None => {
                extensions.insert(deadline);
                deadline
            }
        }
    }
}

macro_rules! carries_nothing {
    ($($ty:ty),* $(,)?) => {$(
        impl DeadlineCarrier for $ty {}
    )*};
}

carries_nothing!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str,
    std::borrow::Cow<'static, str>,
    std::sync::Arc<str>,
);

impl<T> DeadlineCarrier for Vec<T> {}
impl<T> DeadlineCarrier for Option<T> {}
impl<A, B> DeadlineCarrier for (A, B) {}
impl<A, B, C> DeadlineCarrier for (A, B, C) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remaining_counts_down_on_paused_time() {
        let d = Deadline::after(Duration::from_millis(500));
        assert_eq!(d.remaining(), Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(d.remaining(), Duration::from_millis(300));
        assert!(!d.is_expired());
        tokio::time::advance(Duration::from_millis(400)).await;
        assert_eq!(d.remaining(), Duration::ZERO);
        assert!(d.is_expired());
    }

    #[tokio::test(start_paused = true)]
    async fn after_saturates() {
        let d = Deadline::after(Duration::MAX);
        assert!(d.remaining() > Duration::from_secs(86_400 * 365));
        let now = Instant::now();
        for budget in [
            Duration::MAX,
            Duration::from_secs(u64::MAX),
            Duration::from_secs(i64::MAX as u64),
        ] {
            let d = Deadline::after_from(now, budget);
            assert!(
                d.remaining_at(now) >= Duration::from_secs(86_400 * 365 * 30),
                "{budget:?}"
            );
        }
        let d = Deadline::after_from(now, Duration::from_millis(5));
        assert_eq!(d.instant(), now + Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn http_request_carries_and_tightens() {
        let mut req = http::Request::new(());
        assert_eq!(req.deadline(), None);
        let late = Deadline::after(Duration::from_secs(5));
        let early = Deadline::after(Duration::from_secs(1));
        assert_eq!(req.tighten_deadline(late), late);
        assert_eq!(req.tighten_deadline(early), early);
        // never loosens
        assert_eq!(req.tighten_deadline(late), early);
        assert_eq!(req.deadline(), Some(early));
        // a plain set replaces
        req.set_deadline(late);
        assert_eq!(req.deadline(), Some(late));
    }

    #[tokio::test(start_paused = true)]
    async fn scopes_nest_and_restore_on_panic() {
        let outer = Deadline::after(Duration::from_secs(2));
        let inner = Deadline::after(Duration::from_secs(1));
        assert_eq!(current(), None);
        {
            let _g = enter(outer);
            assert_eq!(current(), Some(outer));
            let caught = std::panic::catch_unwind(|| {
                scope(inner, || {
                    assert_eq!(current(), Some(inner));
                    panic!("inside");
                })
            });
            assert!(caught.is_err());
            assert_eq!(current(), Some(outer), "a panic restores the outer scope");
            // The request's own deadline wins over the one in scope.
            let mut req = http::Request::new(());
            assert_eq!(effective(&req), Some(outer));
            req.set_deadline(inner);
            assert_eq!(effective(&req), Some(inner));
        }
        assert_eq!(current(), None);
    }

    #[test]
    fn attempt_bound_reaches_a_listener_only() {
        // Nobody listens: nothing is kept.
        announce_attempt_bound(Duration::from_secs(9));
        let ((), none) = learn_attempt_bound(|| ());
        assert_eq!(none, None);
        let ((), first) = learn_attempt_bound(|| {
            announce_attempt_bound(Duration::from_secs(1));
            announce_attempt_bound(Duration::from_secs(2));
            // A nested listener learns its own and leaves the outer's.
            let ((), nested) =
                learn_attempt_bound(|| announce_attempt_bound(Duration::from_secs(3)));
            assert_eq!(nested, Some(Duration::from_secs(3)));
        });
        assert_eq!(first, Some(Duration::from_secs(1)));
        ATTEMPT_BOUND.with(|c| assert_eq!(c.get(), None));
    }

    #[test]
    fn plain_types_carry_nothing() {
        let mut s = String::from("x");
        assert_eq!(s.deadline(), None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let d = rt.block_on(async { Deadline::after(Duration::from_secs(1)) });
        assert_eq!(s.tighten_deadline(d), d);
        assert_eq!(s.deadline(), None);
    }
}
