//! [`Bulkhead`]: a fixed number of slots, with an optional bounded wait.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use battlement_core::{
    AsComponent, BoxError, BulkheadFull, Component, ComponentHealth, ComponentKind, Control,
    ControlError, Name,
};
use tokio::time::Instant;

use crate::config::BulkheadBuilder;
use crate::layer::BulkheadLayer;
use crate::slots::{Flavour, LoadMetrics, Slots, Wait};

/// A bulkhead's slot pool: nothing but the slots.
#[derive(Debug)]
pub(crate) struct Fixed;

impl Flavour for Fixed {
    fn refusal(slots: &Slots<Self>, waited: Duration) -> BoxError {
        Box::new(BulkheadFull::new(
            slots.name.clone(),
            slots.limit(),
            waited,
            slots.retry_after,
        ))
    }
}

/// A bulkhead: at most `max_concurrent` calls in flight through every
/// [`BulkheadLayer`] built from it, so one slow dependency cannot take every
/// task, connection and buffer of the process. A cheap cloneable handle.
///
/// A call finding every slot taken waits (if the bulkhead was built with
/// [`wait`](BulkheadBuilder::wait), at most `max_wait`, with at most
/// `max_waiting` callers waiting) or is refused at once with
/// [`BulkheadFull`].
///
/// ```
/// use battlement_limit::Bulkhead;
/// use std::time::Duration;
///
/// let bulkhead = Bulkhead::builder("payments")
///     .max_concurrent(16)
///     .wait(Duration::from_millis(50), 32)
///     .build()
///     .unwrap();
/// assert_eq!(bulkhead.max_concurrent(), 16);
/// assert_eq!(bulkhead.in_flight(), 0);
/// ```
#[derive(Clone)]
pub struct Bulkhead {
    pub(crate) slots: Arc<Slots<Fixed>>,
}

impl Bulkhead {
    /// Starts building a bulkhead named `name`.
    pub fn builder(name: impl Into<Name>) -> BulkheadBuilder {
        BulkheadBuilder::new(name)
    }

    pub(crate) fn from_parts(
        name: Name,
        max_concurrent: u32,
        wait: Wait,
        retry_after: Option<Duration>,
    ) -> Self {
        Bulkhead {
            slots: Arc::new(Slots::new(name, max_concurrent, wait, retry_after, Fixed)),
        }
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.slots.name
    }

    /// The bound on calls in flight.
    pub fn max_concurrent(&self) -> u32 {
        self.slots.limit()
    }

    /// Calls holding a slot now.
    pub fn in_flight(&self) -> u32 {
        self.slots.in_flight()
    }

    /// Callers waiting for a slot now.
    pub fn waiting(&self) -> u32 {
        self.slots.waiting()
    }

    /// A snapshot of the figures.
    pub fn metrics(&self) -> LoadMetrics {
        self.slots.metrics()
    }

    /// `in_flight / max_concurrent` now.
    pub fn utilisation(&self) -> f64 {
        self.slots.metrics().utilisation()
    }

    /// A closure of the tick's time that reads
    /// [`utilisation`](Self::utilisation), in the shape
    /// `battlement_gate::signal_fn` takes.
    pub fn utilisation_signal(&self) -> impl FnMut(Instant) -> f64 + Send + 'static {
        self.slots.clone().utilisation()
    }

    /// A closure of the tick's time that reads the share of calls refused
    /// since its previous call (`0.0` with no calls), for
    /// `battlement_gate::signal_fn`.
    pub fn rejection_rate_signal(&self) -> impl FnMut(Instant) -> f64 + Send + 'static {
        self.slots.clone().rejection_rate()
    }

    /// A layer that wraps services in this bulkhead.
    pub fn layer(&self) -> BulkheadLayer {
        BulkheadLayer::new(self.clone())
    }
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.slots.name)
            .field("max_concurrent", &self.max_concurrent())
            .field("in_flight", &self.in_flight())
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl AsComponent for Bulkhead {
    fn as_component(&self) -> Arc<dyn Component> {
        self.slots.clone()
    }
}

impl Component for Slots<Fixed> {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Other("bulkhead".into())
    }

    fn health(&self) -> ComponentHealth {
        self.pool_health()
    }

    /// `Reset` is accepted and changes nothing: a bulkhead's only state is
    /// its calls in flight and waiting, which belong to those calls, and its
    /// totals, which never go down.
    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::Reset => Ok(()),
            other => Err(ControlError::unsupported(&self.name, other)),
        }
    }
}
