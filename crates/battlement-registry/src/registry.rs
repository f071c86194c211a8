//! [`Registry`]: the shared, cheaply cloneable handle every layer reports
//! into.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use battlement_core::{
    AsComponent, Component, Control, ControlError, ErrorClassifier, Event, EventKind, EventSink,
    HealthStatus, Name,
};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::clock::LatencyClock;
use crate::config::{RegistryBuilder, StatusRules};
use crate::error::DuplicateName;
use crate::instrument::InstrumentState;
use crate::layer::InstrumentLayer;
use crate::report::{ComponentReport, HealthReport, StatusCounts};
use crate::sync::{
    AtomicU8, AtomicU64, AtomicUsize, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

/// The map's size below which dropped components are not swept.
const MIN_SWEEP: usize = 16;

/// One registered component, held weakly.
pub(crate) struct Entry {
    pub(crate) component: Weak<dyn Component>,
    /// Set for the registry's own instruments, whose latency histogram the
    /// Prometheus exposition reads.
    pub(crate) instrument: Option<Weak<InstrumentState>>,
    /// When the component last changed.
    pub(crate) change: Arc<LastChange>,
}

/// When a component last changed: its registration, a change of its
/// counted status (seen when a report is made), or an event that is a
/// change (a state or level change, a reset) sent to the registry's
/// [`event_sink`](Registry::event_sink), whichever is latest.
#[derive(Debug)]
pub(crate) struct LastChange {
    /// The counted status last reported; `UNSEEN` before the first report.
    status: AtomicU8,
    unix_ms: AtomicU64,
}

const UNSEEN: u8 = u8::MAX;

impl LastChange {
    fn new() -> Arc<Self> {
        Arc::new(LastChange {
            status: AtomicU8::new(UNSEEN),
            unix_ms: AtomicU64::new(unix_ms(SystemTime::now())),
        })
    }

    /// The last change, given the counted status of a report made now.
    fn seen(&self, status: HealthStatus) -> u64 {
        let code = status as u8;
        let before = self.status.swap(code, Ordering::AcqRel);
        if before != UNSEEN && before != code {
            self.unix_ms
                .fetch_max(unix_ms(SystemTime::now()), Ordering::AcqRel);
        }
        self.unix_ms.load(Ordering::Acquire)
    }

    fn changed_at(&self, time: SystemTime) {
        self.unix_ms.fetch_max(unix_ms(time), Ordering::AcqRel);
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When the process's first registry was made: the origin of
/// [`HealthReport::uptime_seconds`].
static STARTED: OnceLock<Instant> = OnceLock::new();

/// The process's uptime: the time since its first [`Registry`] was made.
pub(crate) fn uptime() -> Duration {
    let started = *STARTED.get_or_init(Instant::now);
    Instant::now().saturating_duration_since(started)
}

impl Inner {
    fn lock_replay(&self) -> MutexGuard<'_, Replay> {
        self.replay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers `e`, keeps it for resuming streams and sends it to them.
    /// The lock is held for a push and a send that never waits.
    fn number(&self, e: &Event) {
        let mut replay = self.lock_replay();
        replay.last += 1;
        let n = replay.last;
        if replay.events.len() == REPLAY {
            replay.events.pop_front();
        }
        replay.events.push_back((n, e.clone()));
        let _ = self.numbered.send((n, e.clone()));
    }
}

pub(crate) struct Inner {
    /// Sorted by name, so reports come out sorted.
    pub(crate) components: RwLock<BTreeMap<Name, Entry>>,
    /// The map's size at which the next registration forgets the dropped
    /// components (changed only under the map's write lock).
    sweep_at: AtomicUsize,
    events: broadcast::Sender<Event>,
    /// The same events numbered, for streams that resume (`Last-Event-ID`).
    numbered: broadcast::Sender<Numbered>,
    /// The last [`REPLAY`] numbered events and the last number given.
    replay: Mutex<Replay>,
    /// Events missed by subscribers that fell behind, as they reported.
    lagged: AtomicU64,
    rules: StatusRules,
}

/// An event with its number in the registry's stream (from 1, one more
/// for each event): the `id` of a Server-Sent Events message.
pub type Numbered = (u64, Event);

/// How many of the latest events a registry keeps for streams that
/// resume.
pub const REPLAY: usize = 128;

#[derive(Default)]
struct Replay {
    last: u64,
    events: VecDeque<Numbered>,
}

/// What [`Registry::subscribe_after`] hands back: the events kept since
/// the one asked for, how many were missed because they are no longer
/// kept, and a receiver of every later event.
#[derive(Debug)]
pub struct Resume {
    /// The kept events after the one asked for, oldest first.
    pub replay: Vec<Numbered>,
    /// Events after the one asked for that are no longer kept.
    pub missed: u64,
    /// Every numbered event from now on, none of `replay` again.
    pub receiver: broadcast::Receiver<Numbered>,
}

/// The shared registry: every component by unique name, held weakly; the
/// system's health by configurable rules; controls by name; a broadcast
/// stream of events.
///
/// A cheap cloneable handle: clones share everything.
///
/// ```
/// use std::sync::Arc;
/// use battlement_core::{Component, ComponentHealth, ComponentKind, HealthStatus};
/// use battlement_registry::Registry;
///
/// struct Disk;
/// impl Component for Disk {
///     fn name(&self) -> &str { "disk" }
///     fn kind(&self) -> ComponentKind { ComponentKind::Other("disk".into()) }
///     fn health(&self) -> ComponentHealth {
///         ComponentHealth::new(HealthStatus::Degraded).detail("free_percent", 7)
///     }
/// }
///
/// let registry = Registry::new();
/// let disk = Arc::new(Disk);
/// registry.register(&disk).unwrap();
/// assert!(registry.register(&disk).is_err()); // names are unique
///
/// let report = registry.health();
/// assert_eq!(report.status, HealthStatus::Degraded);
/// assert_eq!(report.summary.degraded, 1);
///
/// drop(disk); // held weakly: a dropped component disappears
/// assert_eq!(registry.health().summary.total, 0);
/// ```
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("components", &self.len())
            .field("rules", &self.inner.rules)
            .finish()
    }
}

impl Registry {
    /// A registry with the default rules (overall = worst component
    /// status) and 1024 buffered events per subscriber.
    pub fn new() -> Self {
        Registry::from_parts(StatusRules::default(), 1024)
    }

    /// A builder to set the status rules and the event capacity.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::new()
    }

    pub(crate) fn from_parts(rules: StatusRules, event_capacity: usize) -> Self {
        let (events, _) = broadcast::channel(event_capacity);
        let (numbered, _) = broadcast::channel(event_capacity);
        STARTED.get_or_init(Instant::now);
        Registry {
            inner: Arc::new(Inner {
                components: RwLock::new(BTreeMap::new()),
                sweep_at: AtomicUsize::new(MIN_SWEEP),
                events,
                numbered,
                replay: Mutex::new(Replay::default()),
                lagged: AtomicU64::new(0),
                rules,
            }),
        }
    }

    /// Registers `component` under its own [`name`](Component::name), held
    /// weakly. A name already taken by a live component is an error (never
    /// a silent replace); the name of a dropped one is free again.
    pub fn register<C: AsComponent + ?Sized>(&self, component: &C) -> Result<(), DuplicateName> {
        let component = component.as_component();
        self.insert(Name::copied(component.name()), || Entry {
            component: Arc::downgrade(&component),
            instrument: None,
            change: LastChange::new(),
        })
    }

    /// Registers the entry `make` makes under `name`, if the name is free:
    /// `make` runs only then, under the map's lock (so a failed
    /// [`layer`](Self::layer) takes no instrument slot).
    fn insert(&self, name: Name, make: impl FnOnce() -> Entry) -> Result<(), DuplicateName> {
        let mut map = self.write();
        // Forget the dropped once the map has doubled since it last did:
        // the map never holds more than twice the live components (or
        // `MIN_SWEEP`), and a registration costs O(log n) amortised, not a
        // walk over every entry.
        if map.len() >= self.inner.sweep_at.load(Ordering::Relaxed) {
            map.retain(|_, e| e.component.strong_count() > 0);
            self.inner
                .sweep_at
                .store((map.len() * 2).max(MIN_SWEEP), Ordering::Relaxed);
        }
        if let Some(holder) = map.get(&name).and_then(|e| e.component.upgrade()) {
            return Err(DuplicateName {
                name: name.to_string(),
                held_by: holder.kind().as_str().to_string(),
            });
        }
        // Replaces a dropped component's entry of the same name.
        map.insert(name, make());
        Ok(())
    }

    /// Removes the component called `name`; `true` if one was registered.
    pub fn unregister(&self, name: &str) -> bool {
        self.write()
            .remove(name)
            .is_some_and(|e| e.component.strong_count() > 0)
    }

    /// An [`InstrumentLayer`] registered as `name`: counts the calls,
    /// outcomes ([`ErrorClassifier`] unless changed with
    /// [`InstrumentLayer::classifier`]), calls in flight and latency of the
    /// services it wraps. Errors if the name is taken, before taking any
    /// memory for the instrument's figures.
    pub fn layer(&self, name: &str) -> Result<InstrumentLayer<ErrorClassifier>, DuplicateName> {
        let name = Name::copied(name);
        let mut made = None;
        self.insert(name.clone(), || {
            let state = Arc::new(InstrumentState::new(name));
            let component: Arc<dyn Component> = state.clone();
            let entry = Entry {
                component: Arc::downgrade(&component),
                instrument: Some(Arc::downgrade(&state)),
                change: LastChange::new(),
            };
            made = Some(state);
            entry
        })?;
        let state = made.expect("registered, so made");
        Ok(InstrumentLayer {
            state: battlement_core::SharedRef::Counted(state),
            classifier: ErrorClassifier::new(),
            sample_mask: 0,
            clock: LatencyClock::Auto.resolve(),
        })
    }

    /// An [`EventSink`] to build layers with: every event it gets goes to
    /// every [`subscribe`](Self::subscribe)r. Sending never blocks and
    /// never waits for a subscriber; with none, the event is dropped.
    ///
    /// An event that is a change (a state or level change, a reset) also
    /// marks its component's `last_change_unix_ms`.
    pub fn event_sink(&self) -> EventSink {
        let inner = Arc::downgrade(&self.inner);
        let events = self.inner.events.clone();
        EventSink::new(move |e: &Event| {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if matches!(
                e.kind,
                EventKind::StateChanged { .. } | EventKind::LevelChanged { .. } | EventKind::Reset
            ) {
                let map = inner
                    .components
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(entry) = map.get(&*e.component) {
                    entry.change.changed_at(e.time);
                }
            }
            // An error only means there is no subscriber right now.
            let _ = events.send(e.clone());
            inner.number(e);
        })
    }

    /// A stream of numbered events that resumes after event `after` (the
    /// `Last-Event-ID` of a reconnecting client; `None` for a new one):
    /// the kept events since, then every later one, none missed in
    /// between and none twice. The registry keeps the last [`REPLAY`]
    /// events; older ones are counted in [`Resume::missed`].
    pub fn subscribe_after(&self, after: Option<u64>) -> Resume {
        let replay = self.inner.lock_replay();
        // Subscribed under the lock numbering and sending take: nothing
        // falls between the copy and the receiver.
        let receiver = self.inner.numbered.subscribe();
        let Some(after) = after else {
            return Resume {
                replay: Vec::new(),
                missed: 0,
                receiver,
            };
        };
        let oldest = replay.events.front().map_or(replay.last + 1, |(n, _)| *n);
        // An id from the future (another process, a restarted one): start
        // afresh rather than wait for it.
        let after = after.min(replay.last);
        Resume {
            replay: replay
                .events
                .iter()
                .filter(|(n, _)| *n > after)
                .cloned()
                .collect(),
            missed: oldest.saturating_sub(after + 1),
            receiver,
        }
    }

    /// Counts `n` events missed by a subscriber that fell behind (an event
    /// stream's slow client). Read with [`events_lagged`](Self::events_lagged).
    pub fn count_lagged(&self, n: u64) {
        self.inner.lagged.fetch_add(n, Ordering::Relaxed);
    }

    /// Events missed by subscribers that fell behind, as counted with
    /// [`count_lagged`](Self::count_lagged), since the registry was made.
    pub fn events_lagged(&self) -> u64 {
        self.inner.lagged.load(Ordering::Relaxed)
    }

    /// A receiver of every event sent to [`event_sink`](Self::event_sink)s
    /// from now on. A subscriber that falls more than the event capacity
    /// behind loses the oldest events and is told how many by
    /// [`RecvError::Lagged`](broadcast::error::RecvError::Lagged).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The live component called `name`.
    pub fn component(&self, name: &str) -> Option<Arc<dyn Component>> {
        self.read().get(name).and_then(|e| e.component.upgrade())
    }

    /// The names of the live components, sorted.
    pub fn names(&self) -> Vec<String> {
        // In name order: the map is sorted.
        self.read()
            .iter()
            .filter(|(_, e)| e.component.strong_count() > 0)
            .map(|(n, _)| n.to_string())
            .collect()
    }

    /// How many live components are registered.
    pub fn len(&self) -> usize {
        self.read()
            .values()
            .filter(|e| e.component.strong_count() > 0)
            .count()
    }

    /// `true` when no live component is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The report of the component called `name`, with its counted status.
    pub fn get(&self, name: &str) -> Option<ComponentReport> {
        let (component, change) = {
            let map = self.read();
            let entry = map.get(name)?;
            (entry.component.upgrade()?, entry.change.clone())
        };
        Some(self.report_of(&Name::copied(name), &*component, &change))
    }

    fn report_of(
        &self,
        name: &Name,
        component: &dyn Component,
        change: &LastChange,
    ) -> ComponentReport {
        let kind = component.kind();
        let health = component.health();
        let status = self.inner.rules.counted(&kind, health.status);
        ComponentReport {
            name: name.clone(),
            status,
            last_change_unix_ms: change.seen(status),
            reported_status: health.status,
            kind,
            details: health.details,
            metrics: health.metrics,
        }
    }

    /// Applies `control` to the component called `name`.
    pub fn control(&self, name: &str, control: &Control) -> Result<(), ControlError> {
        match self.component(name) {
            Some(c) => c.control(control),
            None => Err(ControlError::NotFound {
                name: name.to_owned(),
            }),
        }
    }

    /// The health of every live component and of the whole system.
    ///
    /// Locks the map only to copy out the live components (no component is
    /// asked for its health under the lock).
    pub fn health(&self) -> HealthReport {
        // In name order: the map is sorted.
        let live = self.live();
        let components: Vec<ComponentReport> = live
            .iter()
            .map(|(name, c, change)| self.report_of(name, &**c, change))
            .collect();
        let mut summary = StatusCounts::default();
        let mut by_kind: BTreeMap<String, StatusCounts> = BTreeMap::new();
        for c in &components {
            summary.add(c.status);
            match by_kind.get_mut(c.kind.as_str()) {
                Some(counts) => counts.add(c.status),
                None => {
                    let mut counts = StatusCounts::default();
                    counts.add(c.status);
                    by_kind.insert(c.kind.as_str().to_owned(), counts);
                }
            }
        }
        HealthReport {
            status: self.inner.rules.overall(&components),
            timestamp_unix_ms: unix_ms(SystemTime::now()),
            uptime_seconds: uptime().as_secs_f64(),
            summary,
            by_kind,
            components,
        }
    }

    /// The live components, upgraded, copied out of the lock.
    fn live(&self) -> Vec<(Name, Arc<dyn Component>, Arc<LastChange>)> {
        self.read()
            .iter()
            .filter_map(|(n, e)| {
                e.component
                    .upgrade()
                    .map(|c| (n.clone(), c, e.change.clone()))
            })
            .collect()
    }

    /// The live instruments, for the latency histograms.
    #[cfg(feature = "prometheus")]
    pub(crate) fn instruments(&self) -> Vec<Arc<InstrumentState>> {
        // In name order: the map is sorted.
        self.read()
            .values()
            .filter_map(|e| e.instrument.as_ref().and_then(Weak::upgrade))
            .collect()
    }

    /// The memory the registry's own structures take: the map's capacity
    /// and the fixed size of every live instrument's figures, and the
    /// process-wide pool of dropped instruments' figures kept for reuse.
    /// None of them grows with the number of calls.
    pub fn footprint(&self) -> Footprint {
        let map = self.read();
        let instruments = map
            .values()
            .filter(|e| e.instrument.as_ref().is_some_and(|w| w.strong_count() > 0))
            .count();
        Footprint {
            entries: map.len(),
            // A B-tree holds the nodes its entries need, no more.
            map_capacity: map.len(),
            instruments,
            instrument_bytes: std::mem::size_of::<InstrumentState>()
                + std::mem::size_of::<crate::instrument::Counters>(),
            histogram_bytes: crate::histogram::Histogram::size_bytes(),
            pooled_instruments: crate::instrument::pooled(),
            instrument_slots: crate::instrument::slots(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<Name, Entry>> {
        self.inner
            .components
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<Name, Entry>> {
        self.inner
            .components
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What [`Registry::footprint`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Footprint {
    /// Entries in the name map: the live components, plus dropped ones not
    /// yet forgotten (at most as many as live ones, or 16).
    pub entries: usize,
    /// The name map's capacity (a B-tree's: what its entries need).
    pub map_capacity: usize,
    /// Live instruments.
    pub instruments: usize,
    /// The bytes of one instrument's figures (fixed).
    pub instrument_bytes: usize,
    /// The bytes of one latency histogram (fixed).
    pub histogram_bytes: usize,
    /// Dropped instruments' figures kept for reuse, process-wide (an
    /// instrument's counters are never freed, so that calls need no
    /// reference count). A later instrument reuses them as soon as every
    /// call of the dropped one has ended, or at the latest a second after
    /// the drop.
    pub pooled_instruments: usize,
    /// Instruments' figures ever allocated, process-wide: the live
    /// instruments' and the pooled ones. It follows the largest number of
    /// instruments alive at once (plus those dropped with calls still
    /// running), not how many were ever made.
    pub instrument_slots: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last change moves on a change of counted status (not on the
    /// first report, nor on the same status again) and on a change event,
    /// never back.
    #[test]
    fn last_change_follows_status_changes_and_change_events() {
        let change = LastChange::new();
        let registered = change.unix_ms.load(Ordering::Relaxed);
        assert_eq!(change.seen(HealthStatus::Healthy), registered);
        assert_eq!(change.seen(HealthStatus::Healthy), registered);
        let later = SystemTime::now() + Duration::from_secs(3600);
        change.changed_at(later);
        assert_eq!(change.seen(HealthStatus::Healthy), unix_ms(later));
        // An older event does not move it back.
        change.changed_at(UNIX_EPOCH);
        assert_eq!(change.seen(HealthStatus::Healthy), unix_ms(later));
        // A status change now is older than `later`: kept at `later`.
        assert_eq!(change.seen(HealthStatus::Degraded), unix_ms(later));
        let fresh = LastChange::new();
        fresh.seen(HealthStatus::Healthy);
        fresh.unix_ms.store(0, Ordering::Relaxed);
        assert!(fresh.seen(HealthStatus::Degraded) >= registered);
    }
}
