//! [`GateLayer`]: applies a [`Gate`] to a service.

use tower_layer::Layer;

use crate::{FromExtensions, Gate, GateService};

/// Applies a [`Gate`] to a service: each request's priority is read with
/// the extractor `P` ([`FromExtensions`] by default) and requests the
/// gate's level does not admit fail at once with
/// [`Shed`](battlement_core::Shed).
///
/// ```
/// use battlement_gate::{Gate, GateLayer, Priority};
/// use tower::ServiceBuilder;
///
/// let gate = Gate::new("api");
/// let svc = ServiceBuilder::new()
///     .layer(GateLayer::new(gate.clone()).priority_fn(|req: &&str| {
///         req.starts_with("/health").then_some(Priority::Critical)
///     }))
///     .service(tower::service_fn(|req: &'static str| async move {
///         Ok::<_, std::convert::Infallible>(req.len())
///     }));
/// # let _ = svc;
/// ```
#[derive(Debug, Clone)]
pub struct GateLayer<P = FromExtensions> {
    gate: Gate,
    extract: P,
}

impl GateLayer {
    /// A layer for `gate`, reading priorities with [`FromExtensions`].
    pub const fn new(gate: Gate) -> Self {
        GateLayer {
            gate,
            extract: FromExtensions,
        }
    }
}

impl<P> GateLayer<P> {
    /// Reads priorities with `extract` instead (any
    /// [`ExtractPriority`](crate::ExtractPriority), such as
    /// [`HeaderPriority`](crate::HeaderPriority)).
    pub fn extractor<Q>(self, extract: Q) -> GateLayer<Q> {
        GateLayer {
            gate: self.gate,
            extract,
        }
    }

    /// Reads priorities with a function of the request; `None` means the
    /// gate's default priority.
    pub fn priority_fn<F, Req>(self, f: F) -> GateLayer<F>
    where
        F: Fn(&Req) -> Option<battlement_core::Priority>,
    {
        self.extractor(f)
    }

    /// The gate.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

impl<S, P: Clone> Layer<S> for GateLayer<P> {
    type Service = GateService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService::new(inner, self.gate.clone(), self.extract.clone())
    }
}
