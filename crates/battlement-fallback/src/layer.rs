//! [`FallbackLayer`]: the layer and the handle on its shared state.

use std::fmt;
use std::sync::Arc;

use battlement_core::{AsComponent, Component, ComponentHealth, Leak, Name};
use tower_layer::Layer;

use crate::config::FallbackBuilder;
use crate::service::FallbackService;
use crate::shared::{Handle, Shared};

/// Wraps a service so that a classified failure is answered by fallback
/// sources: values, other services, a last-known-good cache.
///
/// Built with [`FallbackLayer::builder`]. Cheap to clone: every clone and
/// every service it wraps share the sources, the cache and the counters,
/// and it is a [`Component`] for the registry ([`AsComponent`]).
pub struct FallbackLayer<Req, Res, K = crate::NoKey, C = battlement_core::ErrorClassifier>
where
    Req: 'static,
    Res: 'static,
    K: 'static,
    C: 'static,
{
    shared: Handle<Shared<Req, Res, K, C>>,
}

impl<Req: 'static, Res: 'static, K: 'static, C: 'static> Clone for FallbackLayer<Req, Res, K, C> {
    fn clone(&self) -> Self {
        FallbackLayer {
            shared: self.shared.clone(),
        }
    }
}

/// Its sources, cache and counters kept for the rest of the process:
/// copies of its services and their response futures count no reference,
/// as [`from_static`](FallbackLayer::from_static) does for a layer in a
/// `static` (see [`Leak`]).
impl<Req: 'static, Res: 'static, K: 'static, C: 'static> Leak for FallbackLayer<Req, Res, K, C> {
    fn leak(self) -> Self {
        FallbackLayer {
            shared: self.shared.leak(),
        }
    }
}

impl<Req: 'static, Res: 'static, K: 'static, C: 'static> fmt::Debug
    for FallbackLayer<Req, Res, K, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("name", &self.shared.name)
            .field(
                "sources",
                &self
                    .shared
                    .sources
                    .iter()
                    .map(|s| s.label())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<Req: 'static, Res: 'static> FallbackLayer<Req, Res> {
    /// Starts building a fallback layer named `name` (the name its events,
    /// errors and health report carry).
    pub fn builder(name: impl Into<Name>) -> FallbackBuilder<Req, Res> {
        FallbackBuilder::new(name)
    }
}

impl<Req: 'static, Res: 'static, K: 'static, C: 'static> FallbackLayer<Req, Res, K, C> {
    pub(crate) fn from_shared(shared: Arc<Shared<Req, Res, K, C>>) -> Self {
        FallbackLayer {
            shared: Handle::Counted(shared),
        }
    }

    /// A handle on a layer that lives as long as the program (kept in a
    /// `static`): the services it wraps and their response futures reach
    /// the shared state through a plain reference instead of counting an
    /// `Arc`, which takes an atomic increment and decrement off every
    /// call. Everything else is the same: the sources, the cache, the
    /// counters and the [`Component`] are the static layer's.
    ///
    /// ```
    /// use battlement_core::BoxError;
    /// use battlement_fallback::FallbackLayer;
    /// use std::sync::LazyLock;
    /// use tower::{Layer, service_fn};
    ///
    /// static FALLBACK: LazyLock<FallbackLayer<u32, String>> = LazyLock::new(|| {
    ///     FallbackLayer::builder("users").value("anonymous".to_owned()).build().unwrap()
    /// });
    ///
    /// let svc = FallbackLayer::from_static(&FALLBACK)
    ///     .layer(service_fn(|id: u32| async move { Ok::<_, BoxError>(format!("user {id}")) }));
    /// # let _ = svc;
    /// ```
    pub fn from_static(layer: &'static FallbackLayer<Req, Res, K, C>) -> Self {
        FallbackLayer {
            shared: layer.shared.to_static(),
        }
    }

    /// The bound on each fallback service's call, if one was set.
    pub fn source_timeout(&self) -> Option<std::time::Duration> {
        self.shared.source_timeout
    }

    /// `true` when one of its sources is a service (which takes time to
    /// answer, unlike a value or the cache).
    pub fn has_service_source(&self) -> bool {
        self.shared
            .sources
            .iter()
            .any(|s| matches!(s, crate::shared::SourceEntry::Service { .. }))
    }

    /// The layer's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// Responses served by fallback so far, all sources together.
    pub fn activations(&self) -> u64 {
        self.shared.served()
    }

    /// Responses in the last-known-good cache (0 without a cache).
    pub fn cache_len(&self) -> usize {
        self.shared.cache.as_ref().map_or(0, |c| c.len())
    }

    /// The figures the registry reports: activations by source and reason,
    /// cache entries, hits and hit rate.
    pub fn health(&self) -> ComponentHealth {
        self.shared.health()
    }
}

impl<Req, Res, K, C> AsComponent for FallbackLayer<Req, Res, K, C>
where
    Req: 'static,
    Res: 'static,
    K: 'static,
    C: Send + Sync + 'static,
{
    fn as_component(&self) -> Arc<dyn Component> {
        self.shared.arc()
    }
}

impl<S, Req: 'static, Res: 'static, K: 'static, C: 'static> Layer<S>
    for FallbackLayer<Req, Res, K, C>
{
    type Service = FallbackService<S, Req, Res, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackService::new(inner, self.shared.clone())
    }
}
