//! [`Registry`]: the shared, cheaply cloneable handle every layer reports
//! into.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};

use battlement_core::{
    AsComponent, Component, Control, ControlError, ErrorClassifier, Event, EventSink, Name,
};
use tokio::sync::broadcast;

use crate::clock::LatencyClock;
use crate::config::{RegistryBuilder, StatusRules};
use crate::error::DuplicateName;
use crate::instrument::InstrumentState;
use crate::layer::InstrumentLayer;
use crate::report::{ComponentReport, HealthReport, StatusCounts};

/// The map's size below which dropped components are not swept.
const MIN_SWEEP: usize = 16;

/// One registered component, held weakly.
pub(crate) struct Entry {
    pub(crate) component: Weak<dyn Component>,
    /// Set for the registry's own instruments, whose latency histogram the
    /// Prometheus exposition reads.
    pub(crate) instrument: Option<Weak<InstrumentState>>,
}

pub(crate) struct Inner {
    /// Sorted by name, so reports come out sorted.
    pub(crate) components: RwLock<BTreeMap<Name, Entry>>,
    /// The map's size at which the next registration forgets the dropped
    /// components (changed only under the map's write lock).
    sweep_at: AtomicUsize,
    events: broadcast::Sender<Event>,
    rules: StatusRules,
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
        Registry {
            inner: Arc::new(Inner {
                components: RwLock::new(BTreeMap::new()),
                sweep_at: AtomicUsize::new(MIN_SWEEP),
                events,
                rules,
            }),
        }
    }

    /// Registers `component` under its own [`name`](Component::name), held
    /// weakly. A name already taken by a live component is an error (never
    /// a silent replace); the name of a dropped one is free again.
    pub fn register<C: AsComponent + ?Sized>(&self, component: &C) -> Result<(), DuplicateName> {
        let component = component.as_component();
        self.insert(component.name().into(), || Entry {
            component: Arc::downgrade(&component),
            instrument: None,
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
        let name = Name::from(name);
        let mut made = None;
        self.insert(name.clone(), || {
            let state = Arc::new(InstrumentState::new(name));
            let component: Arc<dyn Component> = state.clone();
            let entry = Entry {
                component: Arc::downgrade(&component),
                instrument: Some(Arc::downgrade(&state)),
            };
            made = Some(state);
            entry
        })?;
        let state = made.expect("registered, so made");
        Ok(InstrumentLayer {
            state,
            classifier: ErrorClassifier::new(),
            sample_mask: 0,
            clock: LatencyClock::Auto.resolve(),
        })
    }

    /// An [`EventSink`] to build layers with: every event it gets goes to
    /// every [`subscribe`](Self::subscribe)r. Sending never blocks and
    /// never waits for a subscriber; with none, the event is dropped.
    pub fn event_sink(&self) -> EventSink {
        let events = self.inner.events.clone();
        EventSink::new(move |e: &Event| {
            // An error only means there is no subscriber right now.
            let _ = events.send(e.clone());
        })
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
        let component = self.component(name)?;
        Some(self.report_of(&Name::from(name), &*component))
    }

    fn report_of(&self, name: &Name, component: &dyn Component) -> ComponentReport {
        let kind = component.kind();
        let health = component.health();
        ComponentReport {
            name: name.clone(),
            status: self.inner.rules.counted(&kind, health.status),
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
            .map(|(name, c)| self.report_of(name, &**c))
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
            summary,
            by_kind,
            components,
        }
    }

    /// The live components, upgraded, copied out of the lock.
    fn live(&self) -> Vec<(Name, Arc<dyn Component>)> {
        self.read()
            .iter()
            .filter_map(|(n, e)| e.component.upgrade().map(|c| (n.clone(), c)))
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Name, Entry>> {
        self.inner
            .components
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Name, Entry>> {
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
