//! [`KeyedBreaker`]: one circuit breaker per key, in a bounded map read
//! without a lock.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use battlement_breaker::Breaker;
use battlement_core::{
    AsComponent, CircuitState, Component, ComponentHealth, ComponentKind, Control, ControlError,
    HealthStatus, InvalidConfig, MetricType, Name,
};
use tokio::time::Instant;

use crate::config::{Configure, KeyedBreakerBuilder};
use crate::layer::KeyedBreakerLayer;
use crate::sync::{AtomicBool, AtomicU64, Mutex};

/// How many open keys a health report lists by name (the rest are
/// counted).
pub const LISTED_OPEN_KEYS: usize = 100;

/// One key's breaker and when it was last used.
struct Entry {
    breaker: Breaker,
    /// Set by every call that finds the key (written only when clear), and
    /// cleared by each sweep: a second-chance clock, so the hot path reads
    /// no clock.
    used: AtomicBool,
    /// The sweep (or insertion) time at which the key was last seen used,
    /// in nanoseconds since the keyed breaker was built.
    last_active_ns: AtomicU64,
}

type Map<K> = HashMap<K, Arc<Entry>>;

pub(crate) struct KeyedShared<K> {
    name: Name,
    configure: Configure,
    max_keys: usize,
    idle_ns: u64,
    base: Instant,
    /// The keys; replaced whole (copy on write) when a key comes or goes.
    map: ArcSwap<Map<K>>,
    /// Serialises the writers; holds the time of the last sweep.
    writer: Mutex<u64>,
    evictions: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<K> KeyedShared<K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    /// The breaker of `key`, made on its first call.
    #[inline]
    pub(crate) fn breaker_for(&self, key: K) -> Result<Breaker, InvalidConfig> {
        if let Some(entry) = self.map.load().get(&key) {
            if !entry.used.load(Relaxed) {
                entry.used.store(true, Relaxed);
            }
            return Ok(entry.breaker.clone());
        }
        self.insert(key)
    }

    fn now_ns(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.base))
    }

    /// A new key: copies the map with it in, sweeping idle keys first when
    /// a sweep is due or the map is full.
    #[cold]
    fn insert(&self, key: K) -> Result<Breaker, InvalidConfig> {
        let mut last_sweep = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.map.load_full();
        if let Some(entry) = current.get(&key) {
            entry.used.store(true, Relaxed);
            return Ok(entry.breaker.clone());
        }
        let breaker = (self.configure)(Breaker::builder(format!("{}/{key}", self.name))).build()?;
        let now = self.now_ns();
        let mut next: Map<K> = (*current).clone();
        if next.len() >= self.max_keys || now.saturating_sub(*last_sweep) >= self.idle_ns / 2 {
            self.sweep(&mut next, now);
            *last_sweep = now;
        }
        if next.len() >= self.max_keys {
            self.evict_one(&mut next);
        }
        next.insert(
            key,
            Arc::new(Entry {
                breaker: breaker.clone(),
                used: AtomicBool::new(false),
                last_active_ns: AtomicU64::new(now),
            }),
        );
        self.map.store(Arc::new(next));
        Ok(breaker)
    }

    /// Drops the keys unused for the idle timeout.
    fn sweep(&self, map: &mut Map<K>, now: u64) {
        let before = map.len();
        map.retain(|_, e| {
            if e.used.swap(false, Relaxed) {
                e.last_active_ns.store(now, Relaxed);
                true
            } else {
                now.saturating_sub(e.last_active_ns.load(Relaxed)) < self.idle_ns
            }
        });
        self.evictions
            .fetch_add((before - map.len()) as u64, Relaxed);
    }

    /// Makes room: the key longest unused, a closed breaker before one that
    /// is open (an open breaker's state is worth keeping).
    fn evict_one(&self, map: &mut Map<K>) {
        let victim = map
            .iter()
            .min_by_key(|(_, e)| {
                (
                    e.breaker.state() != CircuitState::Closed,
                    e.used.load(Relaxed),
                    e.last_active_ns.load(Relaxed),
                )
            })
            .map(|(k, _)| k.clone());
        if let Some(k) = victim {
            map.remove(&k);
            self.evictions.fetch_add(1, Relaxed);
        }
    }

    fn remove(&self, key: &K) -> bool {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.map.load_full();
        if !current.contains_key(key) {
            return false;
        }
        let mut next: Map<K> = (*current).clone();
        next.remove(key);
        self.map.store(Arc::new(next));
        true
    }

    fn for_each(&self, f: impl Fn(&Breaker)) {
        self.map.load().values().for_each(|e| f(&e.breaker));
    }
}

/// A circuit breaker per key: one breaker configuration, one
/// [`Breaker`] for each key a function of the request gives (host, tenant,
/// route), so a client that calls many hosts opens the circuit of the sick
/// one only. A cheap cloneable handle.
///
/// - **Bounded.** At most [`max_keys`](KeyedBreakerBuilder::max_keys) keys;
///   a key without a call for [`idle_timeout`](KeyedBreakerBuilder::idle_timeout)
///   is evicted at the next sweep, and a new key past the bound evicts the
///   idlest key (closed breakers first).
/// - **No lock for a known key.** The map is read through an
///   [`ArcSwap`](arc_swap::ArcSwap): a call for a known key takes no lock,
///   reads no clock and allocates nothing. A new key takes the writers'
///   lock, builds its breaker (named `{name}/{key}`) and copies the map,
///   O(keys): made for keys that come seldom (hosts, tenants, routes), not
///   one per request.
/// - **One component.** Registered once, its health lists the open keys
///   (up to [`LISTED_OPEN_KEYS`]) and counts the rest.
///
/// ```
/// use battlement_limit::KeyedBreaker;
/// use battlement_core::CircuitState;
///
/// let hosts = KeyedBreaker::<&'static str>::builder("hosts")
///     .breaker(|b| b.consecutive_failures(3))
///     .build()
///     .unwrap();
/// let a = hosts.breaker("a.example").unwrap();
/// a.force_open();
/// assert_eq!(hosts.get(&"a.example").unwrap().state(), CircuitState::ForcedOpen);
/// assert_eq!(hosts.breaker("b.example").unwrap().state(), CircuitState::Closed);
/// assert_eq!(hosts.open_keys(), vec!["a.example"]);
/// ```
pub struct KeyedBreaker<K> {
    pub(crate) shared: Arc<KeyedShared<K>>,
}

impl<K> Clone for KeyedBreaker<K> {
    fn clone(&self) -> Self {
        KeyedBreaker {
            shared: self.shared.clone(),
        }
    }
}

impl<K> KeyedBreaker<K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    /// Starts building a keyed breaker named `name`.
    pub fn builder(name: impl Into<Name>) -> KeyedBreakerBuilder<K> {
        KeyedBreakerBuilder::new(name)
    }

    pub(crate) fn from_parts(
        name: Name,
        configure: Configure,
        max_keys: usize,
        idle_timeout: Duration,
    ) -> Self {
        KeyedBreaker {
            shared: Arc::new(KeyedShared {
                name,
                configure,
                max_keys,
                idle_ns: nanos(idle_timeout).max(1),
                base: Instant::now(),
                map: ArcSwap::from_pointee(HashMap::new()),
                writer: Mutex::new(0),
                evictions: AtomicU64::new(0),
            }),
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The breaker of `key`, made if it has none yet (as a call would).
    ///
    /// # Errors
    ///
    /// The breaker configuration's [`InvalidConfig`] (only if the
    /// configuration closure builds differently than it did at build).
    pub fn breaker(&self, key: K) -> Result<Breaker, InvalidConfig> {
        self.shared.breaker_for(key)
    }

    /// The breaker of `key`, if it has one.
    pub fn get(&self, key: &K) -> Option<Breaker> {
        self.shared.map.load().get(key).map(|e| e.breaker.clone())
    }

    /// How many keys have a breaker.
    pub fn len(&self) -> usize {
        self.shared.map.load().len()
    }

    /// Whether no key has a breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys, in no order.
    pub fn keys(&self) -> Vec<K> {
        self.shared.map.load().keys().cloned().collect()
    }

    /// The keys whose breaker is open or forced open, in the order of their
    /// names.
    pub fn open_keys(&self) -> Vec<K> {
        let map = self.shared.map.load();
        let mut open: Vec<K> = map
            .iter()
            .filter(|(_, e)| e.breaker.state().is_open())
            .map(|(k, _)| k.clone())
            .collect();
        open.sort_by_cached_key(|k| k.to_string());
        open
    }

    /// Keys evicted so far (idle, or to make room).
    pub fn evictions(&self) -> u64 {
        self.shared.evictions.load(Relaxed)
    }

    /// Forgets `key`'s breaker; `true` if it had one. Calls in flight keep
    /// the breaker they started with.
    pub fn remove(&self, key: &K) -> bool {
        self.shared.remove(key)
    }

    /// Resets every key's breaker (closed, window cleared); the keys stay.
    pub fn reset(&self) {
        self.shared.for_each(Breaker::reset);
    }

    /// A layer that guards services with this keyed breaker, finding each
    /// request's key with `key`, judging results with
    /// [`ErrorClassifier`](battlement_core::ErrorClassifier).
    pub fn layer<F>(&self, key: F) -> KeyedBreakerLayer<K, F> {
        KeyedBreakerLayer::new(self.clone(), key)
    }
}

impl<K> fmt::Debug for KeyedBreaker<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreaker")
            .field("name", &self.shared.name)
            .field("keys", &self.shared.map.load().len())
            .field("max_keys", &self.shared.max_keys)
            .finish_non_exhaustive()
    }
}

impl<K> AsComponent for KeyedBreaker<K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    fn as_component(&self) -> Arc<dyn Component> {
        self.shared.clone()
    }
}

impl<K> Component for KeyedShared<K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Other("keyed_breaker".into())
    }

    /// `Degraded` while any key's breaker is open, forced open or
    /// half-open; details `keys`, `max_keys`, one count per state (`open`,
    /// `half_open`, `closed`, ...), `open_keys` (the open and forced-open
    /// keys by name, sorted, at most [`LISTED_OPEN_KEYS`]) and `evictions`.
    fn health(&self) -> ComponentHealth {
        let map = self.map.load();
        let mut counts = [0u64; CircuitState::ALL.len()];
        let mut open = Vec::new();
        for (key, e) in map.iter() {
            let state = e.breaker.state();
            if let Some(i) = CircuitState::ALL.iter().position(|s| *s == state) {
                counts[i] += 1;
            }
            if state.is_open() {
                open.push(key.to_string());
            }
        }
        open.sort_unstable();
        let open_total = open.len();
        open.truncate(LISTED_OPEN_KEYS);
        let degraded = CircuitState::ALL
            .iter()
            .zip(counts)
            .any(|(s, n)| n > 0 && (s.is_open() || *s == CircuitState::HalfOpen));
        let mut health = ComponentHealth::new(if degraded {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        })
        .detail("keys", map.len())
        .detail("max_keys", self.max_keys)
        .detail("idle_timeout_ms", self.idle_ns as f64 / 1e6)
        .detail("open_keys", open)
        .detail("open_keys_total", open_total)
        .detail("evictions", self.evictions.load(Relaxed))
        .metric(
            "keys",
            "Keys with a breaker.",
            MetricType::Gauge,
            map.len() as f64,
        )
        .metric(
            "open_keys",
            "Keys whose breaker is open or forced open.",
            MetricType::Gauge,
            open_total as f64,
        )
        .metric(
            "evictions_total",
            "Keys evicted (idle, or to make room).",
            MetricType::Counter,
            self.evictions.load(Relaxed) as f64,
        );
        for (state, n) in CircuitState::ALL.iter().zip(counts) {
            health = health.detail(state.as_str(), n);
        }
        health
    }

    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::Reset => self.for_each(Breaker::reset),
            Control::Close => self.for_each(Breaker::close),
            Control::ForceOpen => self.for_each(Breaker::force_open),
            Control::Disable => self.for_each(Breaker::disable),
            other => return Err(ControlError::unsupported(&self.name, other)),
        }
        Ok(())
    }
}
