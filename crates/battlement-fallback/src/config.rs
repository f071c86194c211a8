//! Building a [`FallbackLayer`]: [`FallbackBuilder`].

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use battlement_core::{
    BoxError, ErrorClassifier, EventSink, Failure, FailureKind, InvalidConfig, Name,
};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use crate::cache::{CacheConfig, LastKnownGood, Store};
use crate::layer::FallbackLayer;
use crate::marker::Fallback;
use crate::shared::{Failed, KeyFn, MarkFn, Shared, SourceEntry, SourceStats, TriggerFn, ValueFn};

type MakeStore<K, Res> = fn(CacheSpec<Res>) -> Box<dyn Store<K, Res>>;
/// The cache's config and, once the key type is known, how to make its
/// store.
type PendingCache<K, Res> = (CacheSpec<Res>, Option<MakeStore<K, Res>>);

/// The config of a cache of either kind.
pub(crate) enum CacheSpec<Res> {
    /// [`FallbackBuilder::cache`]: clones of the responses.
    Plain(CacheConfig<Res>),
    /// [`FallbackBuilder::http_cache`]: HTTP responses' bytes.
    #[cfg(feature = "http")]
    Http(crate::http_cache::HttpCacheConfig),
}

impl<Res> CacheSpec<Res> {
    fn validate(&self) -> Result<(), InvalidConfig> {
        match self {
            CacheSpec::Plain(config) => config.validate(),
            #[cfg(feature = "http")]
            CacheSpec::Http(config) => config.validate(),
        }
    }
}

impl<Res> fmt::Debug for CacheSpec<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheSpec::Plain(config) => config.fmt(f),
            #[cfg(feature = "http")]
            CacheSpec::Http(config) => config.fmt(f),
        }
    }
}

/// Builds a [`FallbackLayer`]; start with [`FallbackLayer::builder`].
///
/// Sources are tried in the order they are added. Every setting has a
/// default:
///
/// | setting        | default |
/// |----------------|---------|
/// | `classifier`   | [`ErrorClassifier`]: every `Ok` is a success |
/// | `trigger_on`   | every failure triggers (`Ignored` and successes never do) |
/// | `key`          | none (the cache needs one) |
/// | sources        | none (at least one is required) |
/// | `events`       | [`EventSink::none`]: events are only traced |
/// | marking        | none; `http_marker` / `http_header` for `http::Response`, `on_fallback` for any type |
pub struct FallbackBuilder<Req, Res, K = NoKey, C = ErrorClassifier> {
    name: Name,
    source_timeout: Option<Duration>,
    classifier: C,
    trigger: Option<TriggerFn>,
    key: Option<KeyFn<Req, K>>,
    clone_req: Option<fn(&Req) -> Req>,
    sources: Vec<SourceEntry<Req, Res, K>>,
    cache: Option<PendingCache<K, Res>>,
    cache_error: Option<InvalidConfig>,
    mark: Option<MarkFn<Res>>,
    events: EventSink,
    _types: PhantomData<fn(Req) -> Res>,
}

impl<Req, Res, K, C: fmt::Debug> fmt::Debug for FallbackBuilder<Req, Res, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBuilder")
            .field("name", &self.name)
            .field("classifier", &self.classifier)
            .field(
                "sources",
                &self
                    .sources
                    .iter()
                    .map(SourceEntry::label)
                    .collect::<Vec<_>>(),
            )
            .field("cache", &self.cache.as_ref().map(|(c, _)| c))
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl<Req, Res> FallbackBuilder<Req, Res> {
    pub(crate) fn new(name: impl Into<Name>) -> Self {
        FallbackBuilder {
            name: name.into(),
            classifier: ErrorClassifier::new(),
            trigger: None,
            key: None,
            clone_req: None,
            sources: Vec::new(),
            cache: None,
            cache_error: None,
            mark: None,
            events: EventSink::none(),
            source_timeout: None,
            _types: PhantomData,
        }
    }
}

/// The key type of a [`FallbackBuilder`] with no
/// [`key`](FallbackBuilder::key) yet (and of a layer built without one).
/// It is no key: not `Hash`, so a cache added in this state waits for the
/// key ([`CacheAwaitingKey`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoKey;

/// The key type of a [`FallbackBuilder`] given a
/// [`cache`](FallbackBuilder::cache) before its
/// [`key`](FallbackBuilder::key): the next `key` call makes the cache's
/// store for its key type. Building in this state fails (the cache needs
/// a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheAwaitingKey;

/// A key-less state's stand-in for the key that value closures added in
/// it see once a key is set.
trait Placeholder: Sized + 'static {
    const VALUE: &'static Self;
}
impl Placeholder for NoKey {
    const VALUE: &'static Self = &NoKey;
}
impl Placeholder for CacheAwaitingKey {
    const VALUE: &'static Self = &CacheAwaitingKey;
}

impl<Req, Res, C> FallbackBuilder<Req, Res, NoKey, C> {
    /// Saves a key computed from each request before the primary is called:
    /// the cache stores and looks responses up under it, and value closures
    /// see it in [`Failed::key`]. A request whose key is `None` is neither
    /// stored nor looked up. The builder's calls may come in any order: a
    /// [`cache`](Self::cache) added before the key waits for it.
    pub fn key<K2, F>(self, key: F) -> FallbackBuilder<Req, Res, K2, C>
    where
        F: Fn(&Req) -> Option<K2> + Send + Sync + 'static,
        K2: 'static,
        Res: 'static,
        Req: 'static,
    {
        self.rekey(Arc::new(key), |_| None)
    }

    /// Adds the last-known-good cache before the key: it is made for the
    /// key type when [`key`](FallbackBuilder::key) is called, in its place
    /// among the sources.
    #[must_use]
    pub fn cache(
        mut self,
        config: CacheConfig<Res>,
    ) -> FallbackBuilder<Req, Res, CacheAwaitingKey, C>
    where
        Res: Clone + Send + Sync + 'static,
    {
        self.cache = Some((CacheSpec::Plain(config), None));
        self.sources.push(SourceEntry::Cache);
        self.rekey_marker()
    }
}

impl<Req, Res, C> FallbackBuilder<Req, Res, CacheAwaitingKey, C> {
    /// Saves a key computed from each request (see
    /// [`FallbackBuilder::key`]) and makes the cache added before it for
    /// this key type.
    pub fn key<K2, F>(self, key: F) -> FallbackBuilder<Req, Res, K2, C>
    where
        F: Fn(&Req) -> Option<K2> + Send + Sync + 'static,
        K2: Hash + Eq + Clone + Send + Sync + 'static,
        Res: Clone + Send + Sync + 'static,
        Req: 'static,
    {
        self.rekey(Arc::new(key), |_| Some(make_store::<K2, Res>))
    }
}

/// Makes the cache's store for key type `K`.
fn make_store<K, Res>(spec: CacheSpec<Res>) -> Box<dyn Store<K, Res>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    Res: Clone + Send + Sync + 'static,
{
    match spec {
        CacheSpec::Plain(config) => Box::new(LastKnownGood::<K, Res>::new(config)),
        #[cfg(feature = "http")]
        CacheSpec::Http(_) => unreachable!("an HTTP cache is made by `make_http_store`"),
    }
}

/// Makes the HTTP cache's store for key type `K` and bodies `B`.
#[cfg(feature = "http")]
fn make_http_store<K, B>(spec: CacheSpec<http::Response<B>>) -> Box<dyn Store<K, http::Response<B>>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    B: http_body::Body<Data = bytes::Bytes> + From<bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match spec {
        CacheSpec::Http(config) => Box::new(crate::http_cache::HttpStore::<K, B>::new(config)),
        CacheSpec::Plain(_) => unreachable!("a plain cache is made by `make_store`"),
    }
}

// Private helpers of the key-less states only.
#[allow(private_bounds)]
impl<Req, Res, K: Placeholder, C> FallbackBuilder<Req, Res, K, C> {
    /// The same builder with key type `K2` and key `key` (or none), its
    /// value closures adapted and its cache, if any, made by `make`.
    fn rekey_with<K2: 'static>(
        self,
        key: Option<KeyFn<Req, K2>>,
        make: impl FnOnce(()) -> Option<MakeStore<K2, Res>>,
    ) -> FallbackBuilder<Req, Res, K2, C>
    where
        Res: 'static,
    {
        let sources = self
            .sources
            .into_iter()
            .map(|s| match s {
                SourceEntry::Value(f) => {
                    let g: ValueFn<Res, K2> = Arc::new(move |failed: &Failed<'_, K2>| {
                        f(&Failed {
                            failure: failed.failure,
                            error: failed.error,
                            key: failed.key.map(|_| K::VALUE),
                        })
                    });
                    SourceEntry::Value(g)
                }
                SourceEntry::Service { name, svc } => SourceEntry::Service { name, svc },
                SourceEntry::Cache => SourceEntry::Cache,
            })
            .collect();
        let cache = self.cache.map(|(config, _)| (config, make(())));
        FallbackBuilder {
            name: self.name,
            classifier: self.classifier,
            trigger: self.trigger,
            key,
            clone_req: self.clone_req,
            sources,
            cache,
            cache_error: self.cache_error,
            mark: self.mark,
            events: self.events,
            source_timeout: self.source_timeout,
            _types: PhantomData,
        }
    }

    fn rekey<K2: 'static>(
        self,
        key: KeyFn<Req, K2>,
        make: impl FnOnce(()) -> Option<MakeStore<K2, Res>>,
    ) -> FallbackBuilder<Req, Res, K2, C>
    where
        Res: 'static,
    {
        self.rekey_with(Some(key), make)
    }

    /// The same builder in the other key-less state.
    fn rekey_marker<K2: Placeholder>(self) -> FallbackBuilder<Req, Res, K2, C>
    where
        Res: 'static,
    {
        self.rekey_with(None, |_| None)
    }
}

impl<Req, Res, K, C> FallbackBuilder<Req, Res, K, C> {
    /// Judges the primary's results. Default: [`ErrorClassifier`], which
    /// calls every `Ok` a success; use
    /// [`ErrorClassifier::with_responses`] to make an HTTP 503 trigger the
    /// fallback. Also judges the `Ok` answers of fallback services.
    pub fn classifier<C2>(self, classifier: C2) -> FallbackBuilder<Req, Res, K, C2> {
        FallbackBuilder {
            name: self.name,
            classifier,
            trigger: self.trigger,
            key: self.key,
            clone_req: self.clone_req,
            sources: self.sources,
            cache: self.cache,
            cache_error: self.cache_error,
            mark: self.mark,
            events: self.events,
            source_timeout: self.source_timeout,
            _types: PhantomData,
        }
    }

    /// Which failures trigger the fallback. Default: every failure.
    /// Successes and `Ignored` outcomes never trigger it.
    #[must_use]
    pub fn trigger_on(mut self, f: impl Fn(&Failure) -> bool + Send + Sync + 'static) -> Self {
        self.trigger = Some(Arc::new(f));
        self
    }

    /// Triggers only on failures of these kinds. Default: every failure.
    #[must_use]
    pub fn trigger_on_kinds(self, kinds: impl IntoIterator<Item = FailureKind>) -> Self {
        let mut mask = 0u32;
        for kind in kinds {
            mask |= 1 << kind.index();
        }
        self.trigger_on(move |f: &Failure| mask & (1 << f.kind.index()) != 0)
    }

    /// Where activations are reported. Default: [`EventSink::none`]
    /// (every activation is still a `tracing` event).
    #[must_use]
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = sink;
        self
    }

    /// Adds a source that answers with a clone of `value`.
    #[must_use]
    pub fn value(self, value: Res) -> Self
    where
        Res: Clone + Send + Sync + 'static,
    {
        self.value_fn(move |_: &Failed<'_, K>| Ok(value.clone()))
    }

    /// Adds a source that answers with `f` of the failure and the saved
    /// key; an `Err` moves on to the next source. Needs no `Clone` on the
    /// request or the response.
    #[must_use]
    pub fn value_fn<F>(mut self, f: F) -> Self
    where
        F: for<'a> Fn(&Failed<'a, K>) -> Result<Res, BoxError> + Send + Sync + 'static,
    {
        self.sources.push(SourceEntry::Value(Arc::new(f)));
        self
    }

    /// Bounds each call of a fallback [`service`](Self::service) by
    /// `bound` (more than zero): past it the source counts as failed with
    /// [`DeadlineExceeded`](battlement_core::DeadlineExceeded) and the
    /// next source is tried. Default: unbounded. A fallback answers after
    /// the primary failed, often after its whole budget: bound it, so the
    /// rescue is not slower than what it rescues. Values and the cache
    /// answer at once and are not bounded.
    #[must_use]
    pub fn source_timeout(mut self, bound: Duration) -> Self {
        self.source_timeout = Some(bound);
        self
    }

    /// Adds a fallback service named `name` (secondary, emergency, ...).
    /// The request is cloned before the primary is called as soon as one
    /// service source exists. An `Ok` it answers is judged by the
    /// classifier too; an error that is (or wraps) an open circuit
    /// (`CircuitOpen`, e.g. from a `BreakerLayer` around it) counts as
    /// skipped, not failed.
    #[must_use]
    pub fn service<S>(mut self, name: impl Into<Name>, svc: S) -> Self
    where
        Req: Clone + Send + 'static,
        Res: Send + 'static,
        S: Service<Req, Response = Res> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
    {
        self.clone_req = Some(<Req as Clone>::clone);
        self.sources.push(SourceEntry::Service {
            name: name.into(),
            svc: BoxCloneSyncService::new(svc.map_err(Into::into)),
        });
        self
    }

    /// Calls `f` on every response served by fallback, with the marker
    /// naming the source and the reason; runs after the HTTP marking, if
    /// any. Default: none.
    #[must_use]
    pub fn on_fallback(mut self, f: impl Fn(&mut Res, &Fallback) + Send + Sync + 'static) -> Self
    where
        Res: 'static,
    {
        let f: MarkFn<Res> = match self.mark.take() {
            Some(first) => Arc::new(move |res: &mut Res, m: &Fallback| {
                first(res, m);
                f(res, m);
            }),
            None => Arc::new(f),
        };
        self.mark = Some(f);
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] when there is no source, when the cache has no key
    /// or comes before it, was added twice, or its bounds are wrong.
    pub fn build(self) -> Result<FallbackLayer<Req, Res, K, C>, InvalidConfig> {
        if let Some(err) = self.cache_error {
            return Err(err);
        }
        if self.sources.is_empty() {
            return Err(InvalidConfig::new(
                "fallback",
                "sources",
                0,
                "must hold at least one of value, value_fn, service or cache",
            ));
        }
        let cache = match self.cache {
            None => None,
            Some((config, make)) => {
                config.validate()?;
                let (Some(make), true) = (make, self.key.is_some()) else {
                    return Err(InvalidConfig::new(
                        "fallback",
                        "key",
                        "none",
                        "is required by the cache",
                    ));
                };
                Some(make(config))
            }
        };
        if self.source_timeout == Some(Duration::ZERO) {
            return Err(InvalidConfig::new(
                "fallback",
                "source_timeout",
                Duration::ZERO,
                "must be more than zero",
            ));
        }
        let source_stats = self
            .sources
            .iter()
            .map(|_| SourceStats::default())
            .collect();
        Ok(FallbackLayer::from_shared(Arc::new(Shared {
            name: self.name,
            classifier: self.classifier,
            trigger: self.trigger,
            key: self.key,
            clone_req: self.clone_req,
            sources: self.sources,
            cache,
            mark: self.mark,
            events: self.events,
            source_timeout: self.source_timeout,
            source_stats,
            by_reason: std::array::from_fn(|_| AtomicU64::new(0)),
            triggered: AtomicU64::new(0),
            passed_through: AtomicU64::new(0),
            all_failed: AtomicU64::new(0),
        })))
    }
}

impl<Req, Res, K, C> FallbackBuilder<Req, Res, K, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    Res: Clone + Send + Sync + 'static,
{
    /// Adds the last-known-good cache: every successful response of the
    /// primary is stored under the request's key, and on failure a stored
    /// response is served while fresh, then stale within the config's
    /// `stale_if_error` window. Needs a [`key`](FallbackBuilder::key),
    /// before or after. At most one cache.
    #[must_use]
    pub fn cache(self, config: CacheConfig<Res>) -> Self {
        self.add_cache(CacheSpec::Plain(config), make_store::<K, Res>)
    }
}

impl<Req, Res, K, C> FallbackBuilder<Req, Res, K, C> {
    /// Adds a cache with its store's maker, at most once.
    fn add_cache(mut self, spec: CacheSpec<Res>, make: MakeStore<K, Res>) -> Self {
        if self.cache.is_some() {
            self.cache_error = Some(InvalidConfig::new(
                "fallback",
                "cache",
                "added twice",
                "at most one cache",
            ));
            return self;
        }
        self.cache = Some((spec, Some(make)));
        self.sources.push(SourceEntry::Cache);
        self
    }
}

#[cfg(feature = "http")]
impl<Req, B, K, C> FallbackBuilder<Req, http::Response<B>, K, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    B: http_body::Body<Data = bytes::Bytes> + From<bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Adds the last-known-good cache for HTTP responses whose body is not
    /// `Clone` (axum's `Response`, any `http::Response<B>` with `B:
    /// From<Bytes>`): a successful response whose body promises at most
    /// [`max_body_bytes`](crate::HttpCacheConfig::max_body_bytes) is read
    /// to its end, stored as its status, version, headers and body bytes,
    /// and handed to the caller rebuilt from the same bytes; on failure a
    /// stored one is rebuilt and served as [`cache`](Self::cache) serves
    /// (fresh, then stale within `stale_if_error`), marked like any
    /// fallback. Any other response passes untouched and is not stored.
    /// Needs a [`key`](FallbackBuilder::key), called before it. At most
    /// one cache.
    ///
    /// Extensions and trailers are not stored (a rebuilt response has
    /// none); a body that fails while it is read is the primary's failure
    /// (the fallback, the cache included, answers for it).
    ///
    /// ```
    /// use battlement_fallback::{FallbackLayer, HttpCacheConfig};
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    ///
    /// let layer = FallbackLayer::<http::Request<()>, http::Response<Full<Bytes>>>::builder("orders")
    ///     .key(|req: &http::Request<()>| Some(req.uri().path().to_owned()))
    ///     .http_cache(HttpCacheConfig::new())
    ///     .http_header()
    ///     .build()
    ///     .unwrap();
    /// # drop(layer);
    /// ```
    #[must_use]
    pub fn http_cache(self, config: crate::http_cache::HttpCacheConfig) -> Self {
        self.add_cache(CacheSpec::Http(config), make_http_store::<K, B>)
    }
}

#[cfg(feature = "http")]
impl<Req, B, K, C> FallbackBuilder<Req, http::Response<B>, K, C>
where
    B: 'static,
{
    /// Inserts the [`Fallback`] marker into the extensions of every
    /// response served by fallback. Default: off.
    #[must_use]
    pub fn http_marker(self) -> Self {
        self.on_fallback(crate::marker::mark_extension::<B>)
    }

    /// Inserts the [`Fallback`] marker into the extensions and sets the
    /// [`HEADER`](crate::HEADER) (`x-battlement-fallback: <source>`) on
    /// every response served by fallback. Default: off.
    #[must_use]
    pub fn http_header(self) -> Self {
        self.on_fallback(crate::marker::mark_header::<B>)
    }
}
