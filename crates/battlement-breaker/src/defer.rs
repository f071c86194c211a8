//! Recording a call when its response's body ends: [`Pending`] and
//! [`Defer`].

use std::fmt;

use battlement_core::{Outcome, SharedRef};

use crate::state::{Admit, Shared};

/// A call admitted by a breaker and not recorded yet: returns its probe
/// permit if dropped first. The response future's own guard.
pub(crate) struct Guard {
    pub(crate) shared: Option<SharedRef<Shared>>,
    pub(crate) admit: Admit,
    /// When the call was admitted, on the breaker's clock, if timed.
    pub(crate) start: Option<u64>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let (Some(shared), Admit::Probe(generation)) = (&self.shared, self.admit) {
            shared.release_probe(generation);
        }
    }
}

/// A call whose response arrived but whose outcome its body will tell (a
/// gRPC status in the trailers): the breaker records it once, when
/// [`complete`](Self::complete) is called with that outcome.
///
/// A [`Defer`] receives it from the breaker's response future and keeps
/// it in the response (its body, typically) until the outcome is known.
/// Dropped without `complete` (the caller dropped the body before its
/// end), it records nothing and, for a half-open probe, gives the probe's
/// admission back, as a response future dropped before its response
/// does: a caller going away says nothing of the backend.
///
/// The call's duration, for the slow-call rule, is the time to its
/// response, as for any other call (and as an instrument's latency); a
/// long stream is not a slow call.
pub struct Pending {
    guard: Guard,
    /// When the response came, on a timed breaker (a slow-call rule).
    responded: Option<u64>,
}

impl Pending {
    pub(crate) fn new(guard: Guard) -> Self {
        let responded = match (&guard.shared, guard.start) {
            (Some(shared), Some(_)) => Some(shared.now_ns()),
            _ => None,
        };
        Pending { guard, responded }
    }

    /// Records the call with `outcome` (what its body's end said), once.
    pub fn complete(mut self, outcome: Outcome) {
        if let Some(shared) = self.guard.shared.take() {
            shared.complete_at(self.guard.admit, outcome, self.guard.start, self.responded);
        }
    }

    /// The name of the breaker that will record it.
    pub fn breaker_name(&self) -> &str {
        self.guard.shared.as_ref().map_or("", |s| &s.name)
    }

    /// Whether the call is a half-open probe (its outcome decides whether
    /// the breaker closes).
    pub fn is_probe(&self) -> bool {
        matches!(self.guard.admit, Admit::Probe(_))
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("breaker", &self.breaker_name())
            .field("probe", &self.is_probe())
            .finish_non_exhaustive()
    }
}

/// Lets a breaker leave the recording of a call to its response: set with
/// [`BreakerLayer::defer_with`](crate::BreakerLayer::defer_with).
///
/// When the classifier calls a response a **success**, the breaker's
/// response future offers the call's [`Pending`] completion to
/// [`defer`](Self::defer): `Ok(())` means the response took it (and will
/// complete it, typically when its body ends); `Err(pending)` gives it
/// back and the breaker records the success at once. A failure or an
/// ignored outcome at the response is recorded at once, never offered.
///
/// The response type does not change: a deferral that needs a body
/// wrapper (to see the trailers) relies on a layer **below** the breaker
/// that wrapped the body already, and puts the `Pending` in it.
/// `battlement-http`'s `GrpcTrailersLayer` and `GrpcDefer` do so for gRPC.
///
/// ```
/// use battlement_breaker::{Breaker, BreakerLayer, Defer, Pending};
/// use battlement_core::{FailureKind, Outcome};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// /// A response that tells its outcome later.
/// struct Later(Option<Pending>);
///
/// #[derive(Clone)]
/// struct IntoLater;
/// impl Defer<Later> for IntoLater {
///     fn defer(&self, res: &mut Later, pending: Pending) -> Result<(), Pending> {
///         res.0 = Some(pending);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let breaker = Breaker::builder("stream").consecutive_failures(1).build().unwrap();
/// let svc = BreakerLayer::new(breaker.clone())
///     .defer_with(IntoLater)
///     .layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(Later(None)) }));
/// let res = svc.oneshot(()).await.unwrap();
/// assert_eq!(breaker.metrics().calls, 0, "not recorded yet");
/// res.0.unwrap().complete(Outcome::failure(FailureKind::Unavailable));
/// assert_eq!(breaker.metrics().failures, 1);
/// assert!(breaker.state().is_open(), "one failure trips it");
/// # }
/// ```
pub trait Defer<Res> {
    /// Whether this deferral can take a completion. `false` only for
    /// [`NoDefer`], so a breaker without deferral does not even build a
    /// [`Pending`] (its closed path is unchanged). Default: `true`.
    const ACTIVE: bool = true;

    /// Takes `pending` into `res` (and completes it later), or gives it
    /// back to be recorded now.
    ///
    /// # Errors
    ///
    /// `Err(pending)` when `res` cannot carry the completion (its outcome
    /// is already known): the breaker records the success at once.
    fn defer(&self, res: &mut Res, pending: Pending) -> Result<(), Pending>;
}

/// No deferral, the default of [`BreakerLayer`](crate::BreakerLayer):
/// every call is recorded when its response arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoDefer;

impl<Res> Defer<Res> for NoDefer {
    const ACTIVE: bool = false;

    #[inline(always)]
    fn defer(&self, _res: &mut Res, pending: Pending) -> Result<(), Pending> {
        Err(pending)
    }
}
