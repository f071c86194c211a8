//! The last-known-good cache: [`CacheConfig`] and its store.
//!
//! Bounded by a [`quick_cache`] cache (entries and, with a weigher, bytes;
//! eviction is quick_cache's S3-FIFO policy, close to LRU for this use).
//! Freshness is kept on tokio's clock: each entry remembers the
//! `tokio::time::Instant` it was stored at, and age is checked here rather
//! than by the cache crate, so paused-time tests are exact.
//!
//! # Shards and bounds
//!
//! quick_cache splits its capacity into equal shards (each behind its own
//! lock) and bounds each shard on its own, by weight. So that the bounds
//! are never exceeded, whatever the hashes:
//!
//! - the shard count is chosen here, not by quick_cache: the largest power
//!   of two up to four per CPU (at most 256) that leaves each shard at least
//!   32 entries, and **one shard when there is a byte bound**, so that a
//!   response of up to about 97% of `max_bytes` can be kept (quick_cache
//!   refuses an entry heavier than its hot section, 97% of a shard; with
//!   `n` shards a shard's share of the bytes would be `max_bytes / n`);
//! - each shard gets `max_entries / n` entries and `max_bytes / n` bytes,
//!   rounded down, so the cache never holds more than `max_entries`
//!   responses nor more than `max_bytes` bytes (it may evict before it is
//!   full: one shard can be full while another is not);
//! - an entry's weight is the larger of its share of a shard's entries
//!   and its share of a shard's bytes, on a scale of 2^55 per shard,
//!   rounded up: a shard whose weights fit its capacity is within both of
//!   its bounds.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use battlement_core::InvalidConfig;
use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, Weighter};
use tokio::time::Instant;

/// The most responses a last-known-good cache may keep
/// ([`CacheConfig::max_entries`]): 2^24 (16,777,216). A larger bound is
/// rejected at build: memory grows with the entries up to the bound, and
/// the weights' scale (see the module's docs) is sized for it.
pub const MAX_CACHE_ENTRIES: u64 = 1 << 24;

/// A function giving the size of a response in bytes, for
/// [`CacheConfig::max_bytes`].
pub type Weigher<Res> = Arc<dyn Fn(&Res) -> u64 + Send + Sync>;

/// How the last-known-good cache is bounded and how long its entries may
/// be served, named as HTTP caching names it: a stored response is
/// **fresh** for [`fresh_for`](Self::fresh_for) (served with the source
/// `cache`), then may still be served **stale on error** for
/// [`stale_if_error`](Self::stale_if_error) more (source `cache_stale`;
/// `Cache-Control: stale-if-error` is the model), then is dropped.
///
/// ```
/// use std::time::Duration;
/// use battlement_fallback::CacheConfig;
///
/// let config = CacheConfig::<String>::new()
///     .fresh_for(Duration::from_secs(30))
///     .stale_if_error(Duration::from_secs(570)) // served up to 10 min old
///     .max_entries(10_000)
///     .max_bytes(16 << 20, |body: &String| body.len() as u64);
/// # let _ = config;
/// ```
pub struct CacheConfig<Res> {
    pub(crate) fresh_for: Duration,
    stale: Stale,
    pub(crate) max_entries: u64,
    pub(crate) max_bytes: Option<(u64, Weigher<Res>)>,
}

/// How long past its freshness a response may be served on error.
#[derive(Debug, Clone, Copy)]
enum Stale {
    /// For this long after it stops being fresh (`stale_if_error`).
    For(Duration),
    /// Until it is this old (the deprecated `max_age`).
    UntilAge(Duration),
}

impl<Res> fmt::Debug for CacheConfig<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("fresh_for", &self.fresh_for)
            .field("stale", &self.stale)
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes.as_ref().map(|(b, _)| *b))
            .finish()
    }
}

impl<Res> Clone for CacheConfig<Res> {
    fn clone(&self) -> Self {
        CacheConfig {
            fresh_for: self.fresh_for,
            stale: self.stale,
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
    /// The defaults: fresh for 60 s, served stale on error for 9 min more
    /// (10 min old at most), `max_entries` 1024, no byte bound.
    pub fn new() -> Self {
        CacheConfig {
            fresh_for: Duration::from_secs(60),
            stale: Stale::For(Duration::from_secs(540)),
            max_entries: 1024,
            max_bytes: None,
        }
    }

    /// How long a stored response counts as fresh (served with the source
    /// `cache`), HTTP's `max-age`. Default: 60 s. Must be more than zero.
    #[must_use]
    pub fn fresh_for(mut self, fresh_for: Duration) -> Self {
        self.fresh_for = fresh_for;
        self
    }

    /// How long after it stops being fresh a stored response may still be
    /// served on failure (source `cache_stale`), HTTP's `stale-if-error`;
    /// after that it is dropped. Default: 9 min. Zero: never served stale.
    #[must_use]
    pub fn stale_if_error(mut self, stale_for: Duration) -> Self {
        self.stale = Stale::For(stale_for);
        self
    }

    /// The old name of [`fresh_for`](Self::fresh_for).
    #[deprecated(since = "0.1.0", note = "use `fresh_for`")]
    #[must_use]
    pub fn ttl(self, ttl: Duration) -> Self {
        self.fresh_for(ttl)
    }

    /// The oldest a stored response may be and still be served on
    /// failure, counted from when it was stored (at least `fresh_for`):
    /// `fresh_for + stale_if_error`.
    #[deprecated(
        since = "0.1.0",
        note = "use `stale_if_error`, the time past freshness a response may be served on error"
    )]
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.stale = Stale::UntilAge(max_age);
        self
    }

    /// The oldest a stored response may be and still be served.
    pub(crate) fn max_age_total(&self) -> Duration {
        match self.stale {
            Stale::For(d) => self.fresh_for.saturating_add(d),
            Stale::UntilAge(d) => d,
        }
    }

    /// The most responses kept, never exceeded. Default: 1024. Must be in
    /// `1..=`[`MAX_CACHE_ENTRIES`].
    #[must_use]
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// Bounds the total size of the kept responses to `max_bytes`, as
    /// measured by `weigher`, never exceeded. Default: no byte bound. Must
    /// be at least 1. A response larger than about 97% of `max_bytes` is
    /// not kept (see the module's docs on shards).
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
        if self.fresh_for.is_zero() {
            return Err(InvalidConfig::new(
                "fallback",
                "cache.fresh_for",
                self.fresh_for,
                "must be more than zero",
            ));
        }
        if let Stale::UntilAge(max_age) = self.stale
            && max_age < self.fresh_for
        {
            return Err(InvalidConfig::new(
                "fallback",
                "cache.max_age",
                max_age,
                format!("must be at least cache.fresh_for ({:?})", self.fresh_for),
            ));
        }
        if !(1..=MAX_CACHE_ENTRIES).contains(&self.max_entries) {
            return Err(InvalidConfig::new(
                "fallback",
                "cache.max_entries",
                self.max_entries,
                format!("must be in 1..={MAX_CACHE_ENTRIES}"),
            ));
        }
        if let Some((0, _)) = &self.max_bytes {
            return Err(InvalidConfig::new(
                "fallback",
                "cache.max_bytes",
                0,
                "must be at least 1",
            ));
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

/// One shard's weight capacity: any shard count up to [`MAX_SHARDS`]
/// times it fits in a `u64`, and it is large against the shard's entry
/// count (up to 2^24) so the rounding below costs nothing visible.
const SHARD_WEIGHT: u64 = 1 << 55;
/// The most shards a cache is split into.
const MAX_SHARDS: u64 = 256;
/// The fewest entries a shard may hold when there are several (also
/// quick_cache's own floor, under which it would merge shards itself).
const MIN_SHARD_ENTRIES: u64 = 32;

/// Weighs entries so that one shard's capacity of [`SHARD_WEIGHT`] bounds
/// both its count and its bytes. A shard may hold `entries` entries and
/// `bytes` bytes: an entry weighs at least `SHARD_WEIGHT / (entries + 1) + 1`
/// (so `entries + 1` of them exceed the capacity) and at least its bytes'
/// share of the capacity, `b × SHARD_WEIGHT / bytes` rounded up (so
/// weights within the capacity are bytes within the bound).
#[derive(Clone)]
struct EntryWeighter {
    per_entry: u64,
    bytes: Option<u64>,
}

impl EntryWeighter {
    fn new(entries: u64, bytes: Option<u64>) -> Self {
        EntryWeighter {
            per_entry: SHARD_WEIGHT / (entries + 1) + 1,
            bytes,
        }
    }
}

impl<K, Res> Weighter<K, Entry<Res>> for EntryWeighter {
    fn weight(&self, _key: &K, val: &Entry<Res>) -> u64 {
        let share = self.bytes.map_or(0, |bytes| {
            let w = (u128::from(val.bytes) * u128::from(SHARD_WEIGHT)).div_ceil(u128::from(bytes));
            u64::try_from(w).unwrap_or(u64::MAX)
        });
        self.per_entry.max(share)
    }
}

/// The shard count for these bounds: one with a byte bound (so a shard
/// can hold a response of nearly `max_bytes`), otherwise the largest
/// power of two up to four per CPU (quick_cache's default) and
/// [`MAX_SHARDS`] that leaves each shard [`MIN_SHARD_ENTRIES`].
fn shard_count(max_entries: u64, byte_bound: bool) -> u64 {
    if byte_bound {
        return 1;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mut shards = (cpus * 4).next_power_of_two().min(MAX_SHARDS);
    while shards > 1 && max_entries / shards < MIN_SHARD_ENTRIES {
        shards /= 2;
    }
    shards
}

/// What a lookup found.
pub(crate) struct Hit<Res> {
    pub(crate) value: Res,
    pub(crate) stale: bool,
}

/// A response being read before it is stored (the HTTP cache reads its
/// body): resolves to the response rebuilt for the caller, or the body's
/// error.
pub(crate) type Reading<Res> =
    std::pin::Pin<Box<dyn Future<Output = Result<Res, battlement_core::BoxError>> + Send>>;

/// What storing a successful response gave back.
pub(crate) enum Stored<K, Res> {
    /// The response, stored (or not to be stored), for the caller.
    Done(Res),
    /// The response is being read first; the key comes back for the
    /// fallback's lookup, should reading fail.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    Reading(Reading<Res>, K),
}

/// The cache, type-erased so the service needs no `Clone` bound on the
/// response when no cache is configured.
pub(crate) trait Store<K, Res>: Send + Sync {
    fn store(&self, key: K, value: Res) -> Stored<K, Res>;
    fn lookup(&self, key: &K) -> Option<Hit<Res>>;
    fn len(&self) -> usize;
    fn hits(&self) -> u64;
    fn misses(&self) -> u64;
}

/// The bounded store of values `V` (responses, or what an HTTP response is
/// rebuilt from) under keys `K`.
pub(crate) struct LastKnownGood<K, V> {
    cache: Cache<K, Entry<V>, EntryWeighter>,
    fresh_for: Duration,
    /// `fresh_for` plus the `stale_if_error` window.
    max_age: Duration,
    weigher: Option<Weigher<V>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<K, V> LastKnownGood<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache for a validated `config` (`max_entries` in
    /// `1..=MAX_CACHE_ENTRIES`, `max_bytes` at least 1).
    pub(crate) fn new(config: CacheConfig<V>) -> Self {
        let max_bytes = config.max_bytes.as_ref().map(|(b, _)| *b);
        let shards = shard_count(config.max_entries, max_bytes.is_some());
        // Rounded down: the shards together stay within the bounds.
        let weighter = EntryWeighter::new(
            config.max_entries / shards,
            max_bytes.map(|b| (b / shards).max(1)),
        );
        // At least `MIN_SHARD_ENTRIES` per shard, or quick_cache would
        // merge shards (and so double a shard's capacity).
        let estimated = config.max_entries.max(MIN_SHARD_ENTRIES * shards);
        let options = OptionsBuilder::new()
            .shards(shards as usize)
            .estimated_items_capacity(estimated as usize)
            .weight_capacity(SHARD_WEIGHT * shards)
            .build()
            .expect("every option is set");
        let cache = Cache::with_options(options, weighter, Default::default(), Default::default());
        debug_assert_eq!(cache.num_shards() as u64, shards);
        debug_assert_eq!(cache.shard_capacity(), SHARD_WEIGHT);
        LastKnownGood {
            cache,
            fresh_for: config.fresh_for,
            max_age: config.max_age_total(),
            weigher: config.max_bytes.map(|(_, w)| w),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Keeps `value` under `key`, stored now.
    pub(crate) fn insert(&self, key: K, value: V) {
        let bytes = self.weigher.as_ref().map_or(0, |w| w(&value));
        self.cache.insert(
            key,
            Entry {
                value,
                stored_at: Instant::now(),
                bytes,
            },
        );
    }

    /// The value under `key` if it is still young enough to serve
    /// (dropping it if not), counted as a hit or a miss.
    pub(crate) fn get(&self, key: &K) -> Option<Hit<V>> {
        let found = self.cache.get(key).and_then(|entry| {
            let age = Instant::now().saturating_duration_since(entry.stored_at);
            if age >= self.max_age {
                self.cache.remove(key);
                None
            } else {
                Some(Hit {
                    value: entry.value,
                    stale: age >= self.fresh_for,
                })
            }
        });
        match found {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

/// The cache of [`CacheConfig`]: keeps a clone of each response.
impl<K, Res> Store<K, Res> for LastKnownGood<K, Res>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    Res: Clone + Send + Sync + 'static,
{
    fn store(&self, key: K, value: Res) -> Stored<K, Res> {
        self.insert(key, value.clone());
        Stored::Done(value)
    }

    fn lookup(&self, key: &K) -> Option<Hit<Res>> {
        self.get(key)
    }

    fn len(&self) -> usize {
        LastKnownGood::len(self)
    }

    fn hits(&self) -> u64 {
        LastKnownGood::hits(self)
    }

    fn misses(&self) -> u64 {
        LastKnownGood::misses(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes_held<K, Res>(lkg: &LastKnownGood<K, Res>) -> u64
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        Res: Clone + Send + Sync + 'static,
    {
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
                lkg.insert(key, "x".repeat(len));
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
                lkg.insert(key, String::new());
                prop_assert!(lkg.len() as u64 <= max_entries);
            }
        }

        /// D7: however many shards the entries are spread over, the cache
        /// never holds more than `max_entries`, and the response just
        /// stored is kept.
        #[test]
        fn len_never_exceeds_max_entries(
            max_entries in 1u64..3_000,
            extra in 0u32..3_000,
            seed in any::<u32>(),
        ) {
            let lkg = LastKnownGood::<u32, u8>::new(CacheConfig::new().max_entries(max_entries));
            for i in 0..max_entries as u32 + extra {
                let key = i.wrapping_mul(2_654_435_761) ^ seed;
                lkg.insert(key, 0);
                prop_assert!(lkg.len() as u64 <= max_entries, "{} > {}", lkg.len(), max_entries);
                prop_assert!(lkg.cache.get(&key).is_some(), "the entry just stored is kept");
            }
        }

        /// D8: with a byte bound, any response up to 96% of `max_bytes`
        /// is kept when stored, and neither bound is ever exceeded.
        #[test]
        fn a_response_within_the_byte_bound_is_kept(
            max_entries in 1u64..200,
            max_bytes in 1u64..100_000,
            sizes in proptest::collection::vec(0.0f64..=0.96, 1..100),
        ) {
            let lkg = byte_bounded(max_entries, max_bytes);
            for (key, fraction) in (0u32..).zip(sizes) {
                let len = (max_bytes as f64 * fraction) as usize;
                lkg.insert(key, vec![0; len]);
                prop_assert!(lkg.cache.get(&key).is_some(), "{len} of {max_bytes} bytes refused");
                prop_assert!(lkg.len() as u64 <= max_entries);
                prop_assert!(bytes_held(&lkg) <= max_bytes);
            }
        }
    }

    fn byte_bounded(max_entries: u64, max_bytes: u64) -> LastKnownGood<u32, Vec<u8>> {
        LastKnownGood::new(
            CacheConfig::new()
                .max_entries(max_entries)
                .max_bytes(max_bytes, |b: &Vec<u8>| b.len() as u64),
        )
    }

    /// D7, the issue's figures: 777, 500 and 100,001 entries are exact
    /// bounds, not rounded up to a multiple of the shard count.
    #[test]
    fn max_entries_is_not_rounded_up_to_the_shards() {
        for max_entries in [777u64, 500, 100_001] {
            let lkg = LastKnownGood::<u32, u8>::new(CacheConfig::new().max_entries(max_entries));
            for key in 0..(max_entries as u32) * 2 {
                lkg.insert(key, 0);
            }
            assert!(
                lkg.len() as u64 <= max_entries,
                "{} > {max_entries}",
                lkg.len()
            );
            assert!(
                lkg.len() as u64 >= max_entries * 9 / 10,
                "{} kept",
                lkg.len()
            );
        }
    }

    /// D8, the issue's case: 2000 bytes allow two 1000-byte responses.
    #[test]
    fn a_byte_bound_of_two_responses_keeps_two() {
        let lkg = byte_bounded(100, 2000);
        for key in 0..10_000 {
            lkg.insert(key, vec![0; 1000]);
            assert!(bytes_held(&lkg) <= 2000);
        }
        assert_eq!(lkg.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_then_stale_then_gone() {
        let lkg = LastKnownGood::<u16, String>::new(
            CacheConfig::new()
                .fresh_for(Duration::from_secs(1))
                .stale_if_error(Duration::from_secs(1)),
        );
        lkg.insert(1, "a".to_owned());
        assert!(!lkg.get(&1).unwrap().stale);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(lkg.get(&1).unwrap().stale);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(lkg.get(&1).is_none());
        assert_eq!(lkg.len(), 0, "expired entries are dropped on lookup");
        assert_eq!((lkg.hits(), lkg.misses()), (2, 1));
    }
}
