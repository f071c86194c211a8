//! A request's time budget: [`Deadline`] and [`DeadlineCarrier`].

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

    fn set_deadline(&mut self, deadline: Deadline) {
        self.extensions_mut().insert(deadline);
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
