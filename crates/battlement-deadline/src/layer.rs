//! The layers: [`DeadlineLayer`] and [`AttemptTimeoutLayer`].

use std::sync::Arc;
use std::time::Duration;

use battlement_core::{EventSink, Leak, Name, SharedRef};
use tower_layer::Layer;

use crate::carry::Carry;
use crate::config::{AttemptTimeoutConfig, DeadlineConfig};
use crate::service::{
    AttemptTimeout, DeadlineService, assert_nonzero_per_attempt, assert_nonzero_total,
};
use crate::shared::{DeadlineHandle, Role, Shared};

/// Gives each request one total time budget, visible to every layer
/// inside and enforced: the call fails with
/// [`DeadlineExceeded`](battlement_core::DeadlineExceeded) when it passes.
///
/// Never loosens: a request that already carries an earlier
/// [`Deadline`](battlement_core::Deadline) keeps it.
///
/// ```
/// use std::time::Duration;
/// use battlement_core::{BoxError, DeadlineCarrier};
/// use battlement_deadline::DeadlineLayer;
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut svc = ServiceBuilder::new()
///     .layer(DeadlineLayer::new(Duration::from_secs(2)).name("checkout"))
///     .service(service_fn(|req: http::Request<()>| async move {
///         // Inner layers and the handler see the deadline.
///         Ok::<_, BoxError>(req.deadline().map(|d| d.remaining()))
///     }));
/// let left = svc.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
/// assert_eq!(left, Some(Duration::from_secs(2)));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    total: Duration,
    shared: SharedRef<Shared>,
    carry: Carry,
}

impl DeadlineLayer {
    /// A layer giving each request `total` from the moment it is called
    /// (or less, if it already carries an earlier deadline).
    ///
    /// # Panics
    ///
    /// If `total` is zero: a budget spent before the request arrives is a
    /// configuration mistake (and "0 means no timeout" in some tools).
    /// [`builder`](DeadlineLayer::builder) rejects it with an
    /// [`InvalidConfig`](battlement_core::InvalidConfig) naming `total`
    /// instead.
    #[track_caller]
    pub fn new(total: Duration) -> Self {
        assert_nonzero_total(total);
        DeadlineLayer {
            total,
            shared: SharedRef::new(Shared::new(Role::Total)),
            carry: Carry::Always,
        }
    }

    /// A validating builder.
    pub fn builder() -> DeadlineConfig {
        DeadlineConfig::default()
    }

    /// A layer from a validated `total` (never zero) and its state.
    pub(crate) fn from_parts(total: Duration, shared: Arc<Shared>, carry: Carry) -> Self {
        DeadlineLayer {
            total,
            shared: SharedRef::Counted(shared),
            carry,
        }
    }

    /// Names the layer in its events, traces and handle (default
    /// `"deadline"`). A named layer costs nothing more per call: its
    /// futures find its counters only when a deadline is hit.
    #[must_use]
    pub fn name(self, name: impl Into<Name>) -> Self {
        DeadlineLayer {
            shared: SharedRef::Counted(self.shared.with(Some(name.into()), None)),
            ..self
        }
    }

    /// Sends an [`EventKind::DeadlineExceeded`](battlement_core::EventKind::DeadlineExceeded)
    /// to `sink` for every deadline hit (default: traced only).
    #[must_use]
    pub fn events(self, sink: EventSink) -> Self {
        DeadlineLayer {
            shared: SharedRef::Counted(self.shared.with(None, Some(sink))),
            ..self
        }
    }

    /// A handle on the layer's counters, to register as a component.
    /// Take it after [`name`](DeadlineLayer::name) and
    /// [`events`](DeadlineLayer::events), which start a new state.
    pub fn handle(&self) -> DeadlineHandle {
        DeadlineHandle::observing(&self.shared)
    }

    /// The total budget given to each request.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// Whether a request that carries no deadline is given this one, or
    /// has it in scope only (default [`Carry::Always`]; see [`Carry`]).
    #[must_use]
    pub fn carry(self, carry: Carry) -> Self {
        DeadlineLayer { carry, ..self }
    }

    /// What [`carry`](DeadlineLayer::carry) set.
    pub fn carries(&self) -> Carry {
        self.carry
    }
}

/// Its counters kept for the rest of the process: copies of its services
/// count no reference (see [`Leak`]).
impl Leak for DeadlineLayer {
    fn leak(self) -> Self {
        DeadlineLayer {
            shared: self.shared.leak(),
            ..self
        }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService::from_parts(inner, self.total, self.shared.clone(), self.carry)
    }
}

/// Bounds each attempt by `min(per_attempt, time left)`, or by a fraction
/// of the time left, so a retry layer outside gets to try again before the
/// total budget is spent.
///
/// An attempt cut by its own bound fails with
/// [`AttemptTimedOut`](battlement_core::AttemptTimedOut), retryable; an
/// attempt cut because the request's deadline passed fails with
/// [`DeadlineExceeded`](battlement_core::DeadlineExceeded), not retryable.
///
/// ```
/// use std::time::Duration;
/// use battlement_core::{AttemptTimedOut, BoxError};
/// use battlement_deadline::AttemptTimeoutLayer;
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut svc = ServiceBuilder::new()
///     .layer(AttemptTimeoutLayer::new(Duration::from_millis(100)))
///     .service(service_fn(|_: &'static str| async {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///         Ok::<_, BoxError>("late")
///     }));
/// let err = svc.ready().await.unwrap().call("slow").await.unwrap_err();
/// assert!(err.is::<AttemptTimedOut>());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AttemptTimeoutLayer {
    per_attempt: Option<Duration>,
    fraction: Option<f64>,
    shared: SharedRef<Shared>,
    carry: Carry,
}

impl AttemptTimeoutLayer {
    /// A layer bounding each attempt by `min(per_attempt, time left)`.
    ///
    /// # Panics
    ///
    /// If `per_attempt` is zero: every attempt would fail before it
    /// started. [`builder`](AttemptTimeoutLayer::builder) rejects it with
    /// an [`InvalidConfig`](battlement_core::InvalidConfig) naming
    /// `per_attempt` instead.
    #[track_caller]
    pub fn new(per_attempt: Duration) -> Self {
        assert_nonzero_per_attempt(per_attempt);
        AttemptTimeoutLayer {
            per_attempt: Some(per_attempt),
            fraction: None,
            shared: SharedRef::new(Shared::new(Role::Attempt)),
            carry: Carry::Always,
        }
    }

    /// Bounds each attempt by `fraction` of the time left on the
    /// request's deadline when the attempt starts, instead of by a fixed
    /// bound: `AttemptTimeoutLayer::new(d).fraction(0.3)` gives a setup
    /// phase 30% of whatever budget is left. A request carrying no
    /// deadline then runs unbounded by this layer. To keep the fixed bound
    /// as a cap as well, use the [`builder`](AttemptTimeoutLayer::builder)
    /// with both.
    ///
    /// ```
    /// use std::time::Duration;
    /// use battlement_core::{AttemptTimedOut, BoxError};
    /// use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(DeadlineLayer::new(Duration::from_secs(1)))
    ///     .layer(AttemptTimeoutLayer::new(Duration::from_secs(10)).fraction(0.3))
    ///     .service(service_fn(|_: http::Request<()>| async {
    ///         tokio::time::sleep(Duration::from_secs(1)).await;
    ///         Ok::<_, BoxError>(())
    ///     }));
    /// let err = svc.ready().await.unwrap().call(http::Request::new(())).await.unwrap_err();
    /// let err = err.downcast::<AttemptTimedOut>().unwrap();
    /// assert_eq!(err.timeout, Duration::from_millis(300));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If `fraction` is not in `(0, 1]` (the builder returns an error
    /// instead).
    #[must_use]
    pub fn fraction(self, fraction: f64) -> Self {
        assert!(
            fraction > 0.0 && fraction <= 1.0,
            "attempt_timeout: fraction must be in (0, 1], got {fraction}"
        );
        AttemptTimeoutLayer {
            per_attempt: None,
            fraction: Some(fraction),
            ..self
        }
    }

    /// A validating builder; the way to bound attempts by both a fixed
    /// bound and a fraction of the time left.
    pub fn builder() -> AttemptTimeoutConfig {
        AttemptTimeoutConfig::default()
    }

    pub(crate) fn from_parts(
        per_attempt: Option<Duration>,
        fraction: Option<f64>,
        shared: Arc<Shared>,
        carry: Carry,
    ) -> Self {
        AttemptTimeoutLayer {
            per_attempt,
            fraction,
            shared: SharedRef::Counted(shared),
            carry,
        }
    }

    /// Whether a request that carries no deadline is given the attempt's
    /// end, or has it in scope only (default [`Carry::Always`]; see
    /// [`Carry`]). A deadline the request carries is tightened either way.
    #[must_use]
    pub fn carry(self, carry: Carry) -> Self {
        AttemptTimeoutLayer { carry, ..self }
    }

    /// What [`carry`](AttemptTimeoutLayer::carry) set.
    pub fn carries(&self) -> Carry {
        self.carry
    }

    /// Names the layer in its events, traces and handle (default
    /// `"attempt_timeout"`). A named layer costs nothing more per call:
    /// its futures find its counters only when an attempt is cut.
    #[must_use]
    pub fn name(self, name: impl Into<Name>) -> Self {
        AttemptTimeoutLayer {
            shared: SharedRef::Counted(self.shared.with(Some(name.into()), None)),
            ..self
        }
    }

    /// Sends an [`EventKind::AttemptTimedOut`](battlement_core::EventKind::AttemptTimedOut)
    /// (or `DeadlineExceeded`) to `sink` for every hit (default: traced
    /// only).
    #[must_use]
    pub fn events(self, sink: EventSink) -> Self {
        AttemptTimeoutLayer {
            shared: SharedRef::Counted(self.shared.with(None, Some(sink))),
            ..self
        }
    }

    /// A handle on the layer's counters, to register as a component.
    /// Take it after [`name`](AttemptTimeoutLayer::name) and
    /// [`events`](AttemptTimeoutLayer::events), which start a new state.
    pub fn handle(&self) -> DeadlineHandle {
        DeadlineHandle::observing(&self.shared)
    }
}

/// Its counters kept for the rest of the process: copies of its services
/// count no reference (see [`Leak`]).
impl Leak for AttemptTimeoutLayer {
    fn leak(self) -> Self {
        AttemptTimeoutLayer {
            shared: self.shared.leak(),
            ..self
        }
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptTimeout::from_parts(
            inner,
            self.per_attempt,
            self.fraction,
            self.shared.clone(),
            self.carry,
        )
    }
}
