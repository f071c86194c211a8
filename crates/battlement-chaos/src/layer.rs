//! [`ChaosLayer`]: applies a [`Chaos`] to a service.

use tower_layer::Layer;

use crate::{AsErrors, Chaos, ChaosService};

/// Injects a [`Chaos`]'s faults into a service. Every service made by the
/// layer (and every clone of the layer) shares the chaos's schedule,
/// draws and counters.
///
/// `R` says what a response fault ([`Phase::respond`](crate::Phase::respond))
/// becomes: with [`AsErrors`] (the default, for any request and response
/// type) an [`Injected`](crate::Injected) error of the fault's kind; with
/// [`HttpResponses`](crate::HttpResponses) ([`http`](Self::http), feature
/// `http`) a synthetic `http::Response`.
///
/// ```
/// use std::time::Duration;
/// use battlement_chaos::{Chaos, FailureKind, Injected, Phase};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let chaos = Chaos::builder("db")
///     .seed(1)
///     .phase(Phase::new("outage", Duration::from_secs(10)).error_ratio(1.0, FailureKind::Network))
///     .build()
///     .unwrap();
/// let mut svc = chaos
///     .layer()
///     .layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
/// assert_eq!(err.downcast_ref::<Injected>().unwrap().kind, FailureKind::Network);
///
/// chaos.disable();
/// assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ChaosLayer<R = AsErrors> {
    chaos: Chaos,
    respond: R,
}

impl ChaosLayer {
    /// A layer for `chaos`; response faults become errors.
    pub const fn new(chaos: Chaos) -> Self {
        ChaosLayer {
            chaos,
            respond: AsErrors,
        }
    }
}

impl<R> ChaosLayer<R> {
    /// Answers response faults with `respond` (any
    /// [`MakeResponse`](crate::MakeResponse) for the service's response
    /// type).
    pub fn respond_with<R2>(self, respond: R2) -> ChaosLayer<R2> {
        ChaosLayer {
            chaos: self.chaos,
            respond,
        }
    }

    /// Answers response faults with synthetic `http::Response<B>`s
    /// (status, `Retry-After`, an
    /// [`InjectedResponse`](crate::InjectedResponse) extension) whose body
    /// is `B::default()`.
    #[cfg(feature = "http")]
    pub fn http(self) -> ChaosLayer<crate::HttpResponses> {
        self.respond_with(crate::HttpResponses::new())
    }

    /// The chaos.
    pub fn chaos(&self) -> &Chaos {
        &self.chaos
    }
}

#[cfg(feature = "http")]
impl<F> ChaosLayer<crate::HttpResponses<F>> {
    /// Makes the bodies of synthetic responses with `body` instead.
    ///
    /// ```
    /// use battlement_chaos::{Chaos, HttpFault};
    ///
    /// let layer = Chaos::off("api")
    ///     .http_layer()
    ///     .body_fn(|fault: &HttpFault| format!("injected {}", fault.status()));
    /// # let _ = layer;
    /// ```
    pub fn body_fn<G>(self, body: G) -> ChaosLayer<crate::HttpResponses<G>> {
        ChaosLayer {
            chaos: self.chaos,
            respond: self.respond.with_body(body),
        }
    }
}

impl<S, R: Clone> Layer<S> for ChaosLayer<R> {
    type Service = ChaosService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ChaosService::new(inner, self.chaos.clone(), self.respond.clone())
    }
}
