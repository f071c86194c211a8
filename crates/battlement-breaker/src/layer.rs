//! [`BreakerLayer`].

use battlement_core::{ErrorClassifier, ResponseClassifier};
use tower_layer::Layer;

use crate::{Breaker, BreakerService};

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
pub struct BreakerLayer<C = ErrorClassifier> {
    breaker: Breaker,
    classify: C,
}

impl BreakerLayer<ErrorClassifier> {
    /// A layer for `breaker` judging results with [`ErrorClassifier`].
    pub const fn new(breaker: Breaker) -> Self {
        BreakerLayer {
            breaker,
            classify: ErrorClassifier::new(),
        }
    }

    /// Judges `Ok` responses with `f` and errors with [`ErrorClassifier`].
    pub fn classify_responses<F>(self, f: F) -> BreakerLayer<ResponseClassifier<F>> {
        BreakerLayer {
            breaker: self.breaker,
            classify: ErrorClassifier::new().with_responses(f),
        }
    }
}

impl<C> BreakerLayer<C> {
    /// Judges results with `classify` (any
    /// [`Classify<Res, BoxError>`](battlement_core::Classify), closures
    /// included) instead.
    pub fn with_classifier<C2>(self, classify: C2) -> BreakerLayer<C2> {
        BreakerLayer {
            breaker: self.breaker,
            classify,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for BreakerLayer<C> {
    type Service = BreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService::with_classifier(inner, self.breaker.clone(), self.classify.clone())
    }
}
