//! [`GateLayer`]: applies a [`Gate`] to a service.

use battlement_core::{ErrorClassifier, Leak};
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
pub struct GateLayer<P = FromExtensions, C = ErrorClassifier> {
    gate: Gate,
    extract: P,
    classifier: C,
}

/// Its gate's state kept for the rest of the process (see [`Leak`]).
impl<P, C> Leak for GateLayer<P, C> {
    fn leak(self) -> Self {
        GateLayer {
            gate: self.gate.leak(),
            ..self
        }
    }
}

impl GateLayer {
    /// A layer for `gate`, reading priorities with [`FromExtensions`] and
    /// judging outcomes with [`ErrorClassifier`].
    pub const fn new(gate: Gate) -> Self {
        GateLayer {
            gate,
            extract: FromExtensions,
            classifier: ErrorClassifier::new(),
        }
    }
}

impl<P, C> GateLayer<P, C> {
    /// Reads priorities with `extract` instead (any
    /// [`ExtractPriority`](crate::ExtractPriority), such as
    /// [`HeaderPriority`](crate::HeaderPriority)).
    pub fn extractor<Q>(self, extract: Q) -> GateLayer<Q, C> {
        GateLayer {
            gate: self.gate,
            extract,
            classifier: self.classifier,
        }
    }

    /// Reads priorities with a function of the request; `None` means the
    /// gate's default priority.
    pub fn priority_fn<F, Req>(self, f: F) -> GateLayer<F, C>
    where
        F: Fn(&Req) -> Option<battlement_core::Priority>,
    {
        self.extractor(f)
    }

    /// Judges each admitted call's result with `classifier` (any
    /// [`Classify<Res, BoxError>`](battlement_core::Classify), the shape
    /// every battlement layer takes, closures included) for the gate's
    /// error-rate signal: a call counts as an error when it is classified
    /// a `Failure`. Default [`ErrorClassifier`]: every `Err` is an error,
    /// every `Ok` a success, so behind axum, where a 5xx is an `Ok`, give
    /// it an HTTP classifier. Only consulted once outcome recording is on
    /// (a gate signal was made).
    ///
    /// ```
    /// use battlement_core::{BoxError, Failure, FailureKind, Outcome};
    /// use battlement_gate::{Gate, GateLayer};
    ///
    /// let gate = Gate::new("api");
    /// let layer = GateLayer::new(gate).classifier(|res: &Result<u16, BoxError>| match res {
    ///     Ok(status) if *status >= 500 => Outcome::Failure(Failure::new(FailureKind::Unavailable)),
    ///     Ok(_) => Outcome::Success,
    ///     Err(_) => Outcome::Failure(Failure::new(FailureKind::Unknown)),
    /// });
    /// # let _ = layer;
    /// ```
    pub fn classifier<D>(self, classifier: D) -> GateLayer<P, D> {
        GateLayer {
            gate: self.gate,
            extract: self.extract,
            classifier,
        }
    }

    /// The gate.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

impl<S, P: Clone, C: Clone> Layer<S> for GateLayer<P, C> {
    type Service = GateService<S, P, C>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService::new(inner, self.gate.clone(), self.extract.clone())
            .with_classifier(self.classifier.clone())
    }
}
