//! [`BreakerLayer`].

use battlement_core::{ErrorClassifier, Leak, ResponseClassifier};
use tower_layer::Layer;

use crate::{Breaker, BreakerService, NoDefer};

/// Wraps services in a [`Breaker`]; every service it makes shares that
/// breaker's state.
///
/// ```
/// use battlement_breaker::{Breaker, BreakerLayer};
/// use battlement_core::{FailureKind, Outcome};
/// use tower::ServiceBuilder;
///
/// let breaker = Breaker::builder("api").build().unwrap();
/// let svc = ServiceBuilder::new()
///     .layer(BreakerLayer::new(breaker.clone()).classify_responses(|status: &u16| {
///         if *status >= 500 { Outcome::failure(FailureKind::Unavailable) } else { Outcome::Success }
///     }))
///     .service_fn(|_req: ()| async { Ok::<u16, std::io::Error>(200) });
/// # drop(svc);
/// ```
#[derive(Debug, Clone)]
pub struct BreakerLayer<C = ErrorClassifier, D = NoDefer> {
    breaker: Breaker,
    classify: C,
    defer: D,
}

/// Its breaker's state kept for the rest of the process (see [`Leak`]).
impl<C, D> Leak for BreakerLayer<C, D> {
    fn leak(self) -> Self {
        BreakerLayer {
            breaker: self.breaker.leak(),
            ..self
        }
    }
}

impl BreakerLayer<ErrorClassifier> {
    /// A layer for `breaker` judging results with [`ErrorClassifier`].
    pub const fn new(breaker: Breaker) -> Self {
        BreakerLayer {
            breaker,
            classify: ErrorClassifier::new(),
            defer: NoDefer,
        }
    }

    /// Judges `Ok` responses with `f` and errors with [`ErrorClassifier`].
    pub fn classify_responses<F>(self, f: F) -> BreakerLayer<ResponseClassifier<F>> {
        BreakerLayer {
            breaker: self.breaker,
            classify: ErrorClassifier::new().with_responses(f),
            defer: NoDefer,
        }
    }
}

impl<C, D> BreakerLayer<C, D> {
    /// Judges results with `classify` (any
    /// [`Classify<Res, BoxError>`](battlement_core::Classify), closures
    /// included) instead.
    pub fn with_classifier<C2>(self, classify: C2) -> BreakerLayer<C2, D> {
        BreakerLayer {
            breaker: self.breaker,
            classify,
            defer: self.defer,
        }
    }

    /// Leaves the recording of a call its classifier calls a success to
    /// the response, through `defer` (a [`Defer`](crate::Defer)): the
    /// call is recorded once, with the outcome the response tells later
    /// (for gRPC, the status in its trailers: `battlement-http`'s
    /// `GrpcDefer`, with its `GrpcTrailersLayer` below the breaker).
    /// Default: [`NoDefer`], every call recorded when its response arrives.
    pub fn defer_with<D2>(self, defer: D2) -> BreakerLayer<C, D2> {
        BreakerLayer {
            breaker: self.breaker,
            classify: self.classify,
            defer,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C: Clone, D: Clone> Layer<S> for BreakerLayer<C, D> {
    type Service = BreakerService<S, C, D>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService::with_classifier(inner, self.breaker.clone(), self.classify.clone())
            .defer_with(self.defer.clone())
    }
}
