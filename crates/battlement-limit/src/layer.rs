//! [`BulkheadLayer`], [`AdaptiveLimitLayer`] and [`KeyedBreakerLayer`].

use std::fmt;

use battlement_core::{ErrorClassifier, ResponseClassifier};
use tower_layer::Layer;

use crate::{
    AdaptiveLimit, AdaptiveLimitService, Bulkhead, BulkheadService, KeyedBreaker,
    KeyedBreakerService,
};

/// Wraps services in a [`Bulkhead`]; every service it makes shares the
/// bulkhead's slots.
///
/// ```
/// use battlement_core::{BoxError, BulkheadFull};
/// use battlement_limit::Bulkhead;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bulkhead = Bulkhead::builder("db").max_concurrent(1).build().unwrap();
/// let mut svc = ServiceBuilder::new()
///     .layer(bulkhead.layer())
///     .service_fn(|_req: ()| async { Ok::<_, std::io::Error>("row") });
///
/// // One call holds the only slot: the next is refused at once.
/// let first = svc.ready().await.unwrap().call(());
/// let err: BoxError = svc.ready().await.unwrap().call(()).await.unwrap_err();
/// assert!(err.is::<BulkheadFull>());
/// assert_eq!(first.await.unwrap(), "row");
/// assert_eq!(bulkhead.in_flight(), 0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
}

impl BulkheadLayer {
    /// A layer for `bulkhead`.
    pub const fn new(bulkhead: Bulkhead) -> Self {
        BulkheadLayer { bulkhead }
    }

    /// The bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService::new(inner, self.bulkhead.clone())
    }
}

/// Wraps services in an [`AdaptiveLimit`]; every service it makes shares
/// the limiter. Outcomes (what counts as a drop) are judged by a
/// classifier, [`ErrorClassifier`] by default.
///
/// ```
/// use battlement_core::{FailureKind, LimitExceeded, Outcome};
/// use battlement_limit::AdaptiveLimit;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let limiter = AdaptiveLimit::builder("api").initial_limit(1).build().unwrap();
/// let mut svc = ServiceBuilder::new()
///     .layer(limiter.layer().classify_responses(|status: &u16| match status {
///         503 => Outcome::failure(FailureKind::Unavailable), // a drop
///         _ => Outcome::Success,
///     }))
///     .service_fn(|_req: ()| async { Ok::<u16, std::io::Error>(200) });
///
/// let first = svc.ready().await.unwrap().call(());
/// let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
/// assert!(err.is::<LimitExceeded>());
/// assert_eq!(first.await.unwrap(), 200);
/// # }
/// ```
#[derive(Clone)]
pub struct AdaptiveLimitLayer<C = ErrorClassifier> {
    limiter: AdaptiveLimit,
    classify: C,
}

impl<C> fmt::Debug for AdaptiveLimitLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl AdaptiveLimitLayer<ErrorClassifier> {
    /// A layer for `limiter`, judging results with [`ErrorClassifier`].
    pub const fn new(limiter: AdaptiveLimit) -> Self {
        AdaptiveLimitLayer {
            limiter,
            classify: ErrorClassifier::new(),
        }
    }

    /// Judges `Ok` responses with `f` and errors with [`ErrorClassifier`].
    pub fn classify_responses<F>(self, f: F) -> AdaptiveLimitLayer<ResponseClassifier<F>> {
        self.with_classifier(ErrorClassifier::new().with_responses(f))
    }
}

impl<C> AdaptiveLimitLayer<C> {
    /// Judges results with `classify` (any
    /// [`Classify<Res, BoxError>`](battlement_core::Classify), closures
    /// included) instead.
    pub fn with_classifier<C2>(self, classify: C2) -> AdaptiveLimitLayer<C2> {
        AdaptiveLimitLayer {
            limiter: self.limiter,
            classify,
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &AdaptiveLimit {
        &self.limiter
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveLimitLayer<C> {
    type Service = AdaptiveLimitService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveLimitService::with_classifier(inner, self.limiter.clone(), self.classify.clone())
    }
}

/// Guards services with a [`KeyedBreaker`]: each request's key comes from
/// `key`, a function of the request, and its outcome is recorded by that
/// key's breaker only.
///
/// ```
/// use battlement_core::{BoxError, CircuitOpen};
/// use battlement_limit::KeyedBreaker;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let hosts = KeyedBreaker::<&'static str>::builder("hosts")
///     .breaker(|b| b.consecutive_failures(1))
///     .build()
///     .unwrap();
/// let mut client = ServiceBuilder::new()
///     .layer(hosts.layer(|req: &(&'static str, bool)| req.0))
///     .service_fn(|(_host, fail): (&'static str, bool)| async move {
///         if fail { Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)) } else { Ok("ok") }
///     });
///
/// let _ = client.ready().await.unwrap().call(("sick.example", true)).await;
/// let err: BoxError = client.ready().await.unwrap().call(("sick.example", false)).await.unwrap_err();
/// assert!(err.is::<CircuitOpen>());
/// // Another host's circuit is closed.
/// assert_eq!(client.ready().await.unwrap().call(("well.example", false)).await.unwrap(), "ok");
/// assert_eq!(hosts.open_keys(), vec!["sick.example"]);
/// # }
/// ```
pub struct KeyedBreakerLayer<K, F, C = ErrorClassifier> {
    keyed: KeyedBreaker<K>,
    key: F,
    classify: C,
}

impl<K, F: Clone, C: Clone> Clone for KeyedBreakerLayer<K, F, C> {
    fn clone(&self) -> Self {
        KeyedBreakerLayer {
            keyed: self.keyed.clone(),
            key: self.key.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<K, F, C> fmt::Debug for KeyedBreakerLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerLayer")
            .field("keyed", &self.keyed)
            .finish_non_exhaustive()
    }
}

impl<K, F> KeyedBreakerLayer<K, F, ErrorClassifier> {
    /// A layer for `keyed` with the key function `key`, judging results
    /// with [`ErrorClassifier`].
    pub const fn new(keyed: KeyedBreaker<K>, key: F) -> Self {
        KeyedBreakerLayer {
            keyed,
            key,
            classify: ErrorClassifier::new(),
        }
    }

    /// Judges `Ok` responses with `f` and errors with [`ErrorClassifier`].
    pub fn classify_responses<R>(self, f: R) -> KeyedBreakerLayer<K, F, ResponseClassifier<R>> {
        self.with_classifier(ErrorClassifier::new().with_responses(f))
    }
}

impl<K, F, C> KeyedBreakerLayer<K, F, C> {
    /// Judges results with `classify` instead.
    pub fn with_classifier<C2>(self, classify: C2) -> KeyedBreakerLayer<K, F, C2> {
        KeyedBreakerLayer {
            keyed: self.keyed,
            key: self.key,
            classify,
        }
    }

    /// The keyed breaker.
    pub fn keyed(&self) -> &KeyedBreaker<K> {
        &self.keyed
    }
}

impl<S, K, F: Clone, C: Clone> Layer<S> for KeyedBreakerLayer<K, F, C> {
    type Service = KeyedBreakerService<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBreakerService::new(
            inner,
            self.keyed.clone(),
            self.key.clone(),
            self.classify.clone(),
        )
    }
}
