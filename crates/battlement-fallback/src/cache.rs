//! The last-known-good cache: [`CacheConfig`] and its store.
//!
//! Bounded by a [`quick_cache`] cache (entries and, with a weigher, bytes;
//! eviction is quick_cache's S3-FIFO policy, close to LRU for this use).
//! Freshness is kept on tokio's clock: each entry remembers the
//! `tokio::time::Instant` it was stored at, and age is checked here rather
//! than by the cache crate, so paused-time tests are exact.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use battlement_core::InvalidConfig;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use tokio::time::Instant;

/// A function giving the size of a response in bytes, for
/// [`CacheConfig::max_bytes`].
pub type Weigher<Res> = Arc<dyn Fn(&Res) -> u64 + Send + Sync>;

/// How the last-known-good cache is bounded and how long its entries may
/// be served.
///
/// ```
/// use std::time::Duration;
/// use battlement_fallback::CacheConfig;
///
/// let config = CacheConfig::<String>::new()
///     .ttl(Duration::from_secs(30))
///     .max_age(Duration::from_secs(600))
///     .max_entries(10_000)
///     .max_bytes(16 << 20, |body: &String| body.len() as u64);
/// # let _ = config;
/// ```
pub struct CacheConfig<Res> {
    pub(crate) ttl: Duration,
    pub(crate) max_age: Duration,
    pub(crate) max_entries: u64,
    pub(crate) max_bytes: Option<(u64, Weigher<Res>)>,
}

impl<Res> fmt::Debug for CacheConfig<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("ttl", &self.ttl)
            .field("max_age", &self.max_age)
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes.as_ref().map(|(b, _)| *b))
            .finish()
    }
}

impl<Res> Clone for CacheConfig<Res> {
    fn clone(&self) -> Self {
        CacheConfig {
            ttl: self.ttl,
            max_age: self.max_age,
            max_entries: self.max_entries,
            max_bytes: self.max_bytes.clone(),
        }
    }
}

impl<Res> Default for CacheConfig<Res> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Res> CacheConfig<Res> {
    /// The defaults: `ttl` 60 s, `max_age` 10 min, `max_entries` 1024, no
    /// byte bound.
    pub fn new() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(60),
            max_age: Duration::from_secs(600),
            max_entries: 1024,
            max_bytes: None,
        }
    }

    /// How long a stored response counts as fresh (served with the source
    /// `cache`). Default: 60 s. Must be more than zero.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The oldest a stored response may be and still be served on failure;
    /// between `ttl` and `max_age` it is served as stale (source
    /// `cache_stale`), after it it is dropped. Default: 10 min. Must be at
    /// least `ttl` (equal: never served stale).
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The most responses kept. Default: 1024. Must be at least 1.
    #[must_use]
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// Bounds the total size of the kept responses to `max_bytes`, as
    /// measured by `weigher`. Default: no byte bound. Must be at least 1,
    /// and `max_entries × max_bytes` must fit in a `u64`.
    #[must_use]
    pub fn max_bytes(
        mut self,
        max_bytes: u64,
        weigher: impl Fn(&Res) -> u64 + Send + Sync + 'static,
    ) -> Self {
        self.max_bytes = Some((max_bytes, Arc::new(weigher)));
        self
    }

    pub(crate) fn validate(&self) -> Result<(), InvalidConfig> {
        if self.ttl.is_zero() {
            return Err(InvalidConfig::new(
                "fallback",
                "cache.ttl",
                self.ttl,
                "must be more than zero",
            ));
        }
        if self.max_age < self.ttl {
            return Err(InvalidConfig::new(
                "fallback",
                "cache.max_age",
                self.max_age,
                format!("must be at least cache.ttl ({:?})", self.ttl),
            ));
        }
        if self.max_entries == 0 {
            return Err(InvalidConfig::new(
                "fallback",
                "cache.max_entries",
                self.max_entries,
                "must be at least 1",
            ));
        }
        if let Some((bytes, _)) = &self.max_bytes {
            if *bytes == 0 {
                return Err(InvalidConfig::new(
                    "fallback",
                    "cache.max_bytes",
                    bytes,
                    "must be at least 1",
                ));
            }
            if self.max_entries.checked_mul(*bytes).is_none() {
                return Err(InvalidConfig::new(
                    "fallback",
                    "cache.max_bytes",
                    bytes,
                    "times cache.max_entries must fit in a u64",
                ));
            }
        }
        Ok(())
    }
}

/// One stored response and when it was stored.
#[derive(Clone)]
pub(crate) struct Entry<Res> {
    value: Res,
    stored_at: Instant,
    bytes: u64,
}

/// Weighs entries so that one `u64` capacity bounds both the count and the
/// bytes: with `E` entries and `B` bytes allowed, an entry of `b` bytes
/// weighs `max(b·E, B)` out of `E·B`. The sum of weights within `E·B` then
/// implies at most `E` entries (each weighs at least `B`) and at most `B`
/// bytes (each weighs at least `b·E`).
#[derive(Clone)]
struct EntryWeighter {
    entries: u64,
    bytes: Option<u64>,
}

impl<K, Res> Weighter<K, Entry<Res>> for EntryWeighter {
    fn weight(&self, _key: &K, val: &Entry<Res>) -> u64 {
        match self.bytes {
            None => 1,
            Some(b) => val.bytes.saturating_mul(self.entries).max(b).max(1),
        }
    }
}

/// What a lookup found.
pub(crate) struct Hit<Res> {
    pub(crate) value: Res,
    pub(crate) stale: bool,
}

/// The cache, type-erased so the service needs no `Clone` bound on the
/// response when no cache is configured.
pub(crate) trait Store<K, Res>: Send + Sync {
    fn store(&self, key: K, value: &Res);
    fn lookup(&self, key: &K) -> Option<Hit<Res>>;
    fn len(&self) -> usize;
    fn hits(&self) -> u64;
    fn misses(&self) -> u64;
}

pub(crate) struct LastKnownGood<K, Res> {
    cache: Cache<K, Entry<Res>, EntryWeighter>,
    ttl: Duration,
    max_age: Duration,
    weigher: Option<Weigher<Res>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<K, Res> LastKnownGood<K, Res>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    Res: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(config: CacheConfig<Res>) -> Self {
        let weighter = EntryWeighter {
            entries: config.max_entries,
            bytes: config.max_bytes.as_ref().map(|(b, _)| *b),
        };
        let capacity = match weighter.bytes {
            None => config.max_entries,
            Some(b) => config.max_entries.saturating_mul(b),
        };
        let estimated = usize::try_from(config.max_entries).unwrap_or(usize::MAX);
        LastKnownGood {
            cache: Cache::with_weighter(estimated, capacity, weighter),
            ttl: config.ttl,
            max_age: config.max_age,
            weigher: config.max_bytes.map(|(_, w)| w),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }
}

impl<K, Res> Store<K, Res> for LastKnownGood<K, Res>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    Res: Clone + Send + Sync + 'static,
{
    fn store(&self, key: K, value: &Res) {
        let bytes = self.weigher.as_ref().map_or(0, |w| w(value));
        self.cache.insert(
            key,
            Entry {
                value: value.clone(),
                stored_at: Instant::now(),
                bytes,
            },
        );
    }

    fn lookup(&self, key: &K) -> Option<Hit<Res>> {
        let found = self.cache.get(key).and_then(|entry| {
            let age = Instant::now().saturating_duration_since(entry.stored_at);
            if age >= self.max_age {
                self.cache.remove(key);
                None
            } else {
                Some(Hit {
                    value: entry.value,
                    stale: age >= self.ttl,
                })
            }
        });
        match found {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    fn len(&self) -> usize {
        self.cache.len()
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes_held(lkg: &LastKnownGood<u16, String>) -> u64 {
        lkg.cache.iter().map(|(_, e)| e.bytes).sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever is inserted, the cache never holds more than
        /// `max_entries` responses nor more than `max_bytes` bytes.
        #[test]
        fn never_exceeds_entries_or_bytes(
            max_entries in 1u64..20,
            max_bytes in 1u64..400,
            inserts in proptest::collection::vec((0u16..64, 0usize..60), 1..200),
        ) {
            let lkg = LastKnownGood::<u16, String>::new(
                CacheConfig::new()
                    .max_entries(max_entries)
                    .max_bytes(max_bytes, |s: &String| s.len() as u64),
            );
            for (key, len) in inserts {
                lkg.store(key, &"x".repeat(len));
                prop_assert!(lkg.len() as u64 <= max_entries, "{} > {}", lkg.len(), max_entries);
                prop_assert!(bytes_held(&lkg) <= max_bytes, "{} > {}", bytes_held(&lkg), max_bytes);
            }
        }

        /// Without a byte bound, only the entry count bounds it.
        #[test]
        fn never_exceeds_entries(
            max_entries in 1u64..50,
            keys in proptest::collection::vec(0u16..500, 1..300),
        ) {
            let lkg = LastKnownGood::<u16, String>::new(CacheConfig::new().max_entries(max_entries));
            for key in keys {
                lkg.store(key, &String::new());
                prop_assert!(lkg.len() as u64 <= max_entries);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_then_stale_then_gone() {
        let lkg = LastKnownGood::<u16, String>::new(
            CacheConfig::new()
                .ttl(Duration::from_secs(1))
                .max_age(Duration::from_secs(2)),
        );
        lkg.store(1, &"a".to_owned());
        assert!(!lkg.lookup(&1).unwrap().stale);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(lkg.lookup(&1).unwrap().stale);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(lkg.lookup(&1).is_none());
        assert_eq!(lkg.len(), 0, "expired entries are dropped on lookup");
        assert_eq!((lkg.hits(), lkg.misses()), (2, 1));
    }
}
