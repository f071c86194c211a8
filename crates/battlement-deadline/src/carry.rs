//! [`Carry`]: whether a deadline layer writes its deadline into the
//! request, beside putting it in scope.

/// Whether a [`DeadlineLayer`](crate::DeadlineLayer) or an
/// [`AttemptTimeoutLayer`](crate::AttemptTimeoutLayer) writes its deadline
/// into a request that carries none yet.
///
/// Either way the deadline is in scope
/// ([`battlement_core::deadline::current`]) while the layer calls its
/// inner service and while it polls the inner future, and a deadline the
/// request already carries is tightened in place: the layers inside (a
/// retry, an attempt timeout, a fan-out,
/// [`PropagateDeadlineLayer`](crate::http::PropagateDeadlineLayer)) see the
/// same instant either way. What differs is only what runs outside the
/// scope.
///
/// ```
/// use std::time::Duration;
/// use battlement_core::{BoxError, DeadlineCarrier, deadline};
/// use battlement_deadline::{Carry, DeadlineLayer};
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // A route's layer: the handler runs inside the scope, so the
/// // deadline is not added to the request's extensions.
/// let mut route = ServiceBuilder::new()
///     .layer(DeadlineLayer::new(Duration::from_secs(2)).carry(Carry::IfCarried))
///     .service(service_fn(|req: http::Request<()>| async move {
///         assert_eq!(req.deadline(), None);
///         Ok::<_, BoxError>(deadline::current().map(|d| d.remaining()))
///     }));
/// let left = route.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
/// assert_eq!(left, Some(Duration::from_secs(2)));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Carry {
    /// The default: the request always carries the deadline, so code that
    /// runs outside the scope still has it: a `tower::buffer` worker or a
    /// task the inner service spawns, whose header propagation would
    /// otherwise send no budget, and a handler that reads the request's
    /// extensions (axum's `Extension<Deadline>`). For an `http::Request`
    /// that carries no deadline yet this adds an extension entry: one
    /// boxed value, and the extension map (an allocation) or a larger
    /// table (a rehash) when it has none or is full. About a third of what
    /// `Policy::http` costs a request in process (benches, `http_stack`).
    #[default]
    Always,
    /// Tighten a deadline the request already carries (in place: no
    /// allocation), and add none: the deadline is otherwise in scope only.
    /// For a server's route, whose handler and the clients it calls are
    /// polled inside the scope (and read the deadline with
    /// [`battlement_core::deadline::effective`] or `current`), and for a
    /// client whose request type carries nothing anyway. Not for a stack
    /// with a `tower::buffer` (or anything that spawns) between this layer
    /// and the layers that read the deadline.
    IfCarried,
}

impl Carry {
    /// Whether a deadline is written into a request that carries none.
    #[inline(always)]
    pub(crate) fn adds(self) -> bool {
        matches!(self, Carry::Always)
    }
}
