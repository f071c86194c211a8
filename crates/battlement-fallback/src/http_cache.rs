//! The last-known-good cache for `http::Response<B>` whose body is not
//! `Clone` (axum's `Response`): [`HttpCacheConfig`] and its store.
//!
//! A successful response whose body is known to hold at most
//! `max_body_bytes` (its `size_hint` has such an upper bound) is read to
//! its end, stored as its status, version, headers and body bytes, and
//! handed to the caller rebuilt from those bytes; a fallback hit rebuilds
//! a fresh response from them. Any other response passes untouched.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use battlement_core::{BoxError, InvalidConfig};
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::BodyExt;

use crate::cache::{CacheConfig, Hit, LastKnownGood, Store, Stored};

/// The default of [`HttpCacheConfig::max_body_bytes`]: 256 KiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 256 * 1024;

/// A stored response: what is needed to rebuild it.
#[derive(Clone)]
pub(crate) struct Snapshot {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Snapshot {
    /// Its size for [`HttpCacheConfig::max_bytes`]: the body, and each
    /// header's name and value.
    fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        (self.body.len() + headers) as u64
    }

    fn rebuild<B: From<Bytes>>(&self) -> Response<B> {
        let mut res = Response::new(B::from(self.body.clone()));
        *res.status_mut() = self.status;
        *res.version_mut() = self.version;
        *res.headers_mut() = self.headers.clone();
        res
    }
}

/// How the last-known-good cache for `http::Response<B>` is bounded, for
/// [`FallbackBuilder::http_cache`](crate::FallbackBuilder::http_cache):
/// the settings of [`CacheConfig`] (freshness, `stale_if_error`, entries,
/// bytes) and the largest body it reads, [`max_body_bytes`](Self::max_body_bytes).
///
/// ```
/// use std::time::Duration;
/// use battlement_fallback::HttpCacheConfig;
///
/// let config = HttpCacheConfig::new()
///     .fresh_for(Duration::from_secs(5))
///     .stale_if_error(Duration::from_secs(300))
///     .max_entries(1000)
///     .max_bytes(16 << 20)
///     .max_body_bytes(64 << 10);
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct HttpCacheConfig {
    cache: CacheConfig<Snapshot>,
    max_body_bytes: u64,
}

impl fmt::Debug for HttpCacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCacheConfig")
            .field("cache", &self.cache)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl Default for HttpCacheConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpCacheConfig {
    /// The defaults of [`CacheConfig::new`] (fresh for 60 s, served stale
    /// on error for 9 min more, 1024 entries, no byte bound) and bodies up
    /// to [`DEFAULT_MAX_BODY_BYTES`] (256 KiB).
    pub fn new() -> Self {
        HttpCacheConfig {
            cache: CacheConfig::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// See [`CacheConfig::fresh_for`].
    #[must_use]
    pub fn fresh_for(mut self, fresh_for: Duration) -> Self {
        self.cache = self.cache.fresh_for(fresh_for);
        self
    }

    /// See [`CacheConfig::stale_if_error`].
    #[must_use]
    pub fn stale_if_error(mut self, stale_for: Duration) -> Self {
        self.cache = self.cache.stale_if_error(stale_for);
        self
    }

    /// See [`CacheConfig::max_entries`].
    #[must_use]
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.cache = self.cache.max_entries(max_entries);
        self
    }

    /// Bounds the total size of the kept responses (each one's body bytes
    /// plus its headers' names and values) to `max_bytes`, never exceeded.
    /// Default: no byte bound. See [`CacheConfig::max_bytes`].
    #[must_use]
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.cache = self.cache.max_bytes(max_bytes, Snapshot::weight);
        self
    }

    /// The largest body read and stored. A successful response is stored
    /// only when its body's `size_hint` promises at most this many bytes
    /// (a body built from bytes, a string or JSON, whose size is known);
    /// one that may be larger, or whose size is unknown (a stream), is
    /// handed to the caller untouched and not stored. Default:
    /// [`DEFAULT_MAX_BODY_BYTES`].
    #[must_use]
    pub fn max_body_bytes(mut self, max_body_bytes: u64) -> Self {
        self.max_body_bytes = max_body_bytes;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), InvalidConfig> {
        self.cache.validate()
    }
}

/// The store of [`HttpCacheConfig`] for bodies `B`.
pub(crate) struct HttpStore<K, B> {
    lkg: Arc<LastKnownGood<K, Snapshot>>,
    max_body_bytes: u64,
    _body: PhantomData<fn() -> B>,
}

impl<K, B> HttpStore<K, B>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(config: HttpCacheConfig) -> Self {
        HttpStore {
            lkg: Arc::new(LastKnownGood::new(config.cache)),
            max_body_bytes: config.max_body_bytes,
            _body: PhantomData,
        }
    }
}

impl<K, B> Store<K, Response<B>> for HttpStore<K, B>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    B: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn store(&self, key: K, res: Response<B>) -> Stored<K, Response<B>> {
        let fits = res
            .body()
            .size_hint()
            .upper()
            .is_some_and(|n| n <= self.max_body_bytes);
        if !fits {
            return Stored::Done(res);
        }
        let lkg = self.lkg.clone();
        let max = self.max_body_bytes;
        let stored_key = key.clone();
        let read = async move {
            let (parts, body) = res.into_parts();
            let body = body.collect().await.map_err(Into::into)?.to_bytes();
            // A body that lied about its size is handed on, not kept.
            if body.len() as u64 <= max {
                lkg.insert(
                    stored_key,
                    Snapshot {
                        status: parts.status,
                        version: parts.version,
                        headers: parts.headers.clone(),
                        body: body.clone(),
                    },
                );
            }
            Ok(Response::from_parts(parts, B::from(body)))
        };
        Stored::Reading(Box::pin(read), key)
    }

    fn lookup(&self, key: &K) -> Option<Hit<Response<B>>> {
        self.lkg.get(key).map(|hit| Hit {
            value: hit.value.rebuild(),
            stale: hit.stale,
        })
    }

    fn len(&self) -> usize {
        self.lkg.len()
    }

    fn hits(&self) -> u64 {
        self.lkg.hits()
    }

    fn misses(&self) -> u64 {
        self.lkg.misses()
    }
}
