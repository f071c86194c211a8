//! The shared gate: [`Gate`], its level and its counters.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use battlement_core::{
    AsComponent, Component, ComponentHealth, ComponentKind, Control, ControlError, EventKind,
    EventSink, HealthStatus, Leak, Level, Metric, MetricType, Name, Priority, Reason, SharedRef,
    Striped,
};
use tokio::time::Instant;

use crate::sync::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Mutex, MutexGuard};
use crate::{AdmissionTable, GateBuilder, GateLayer, governor::GovernorBuilder};
use battlement_core::histogram::AtomicHistogram;

/// A degradation gate: the shared service [`Level`] and the
/// [`AdmissionTable`] that says which [`Priority`]s it admits.
///
/// A cheap cloneable handle; every [`GateLayer`] built from it, the
/// [`Governor`](crate::Governor) and the registry share the same state.
/// Reading the level on a call is one atomic load.
///
/// ```
/// use battlement_gate::{Gate, Level, Priority};
///
/// let gate = Gate::new("api");
/// assert!(gate.admits(Priority::Sheddable));
/// gate.set_level(Level::Severe); // by hand: holds until `release()`
/// assert!(gate.admits(Priority::High));
/// assert!(!gate.admits(Priority::Normal));
/// gate.release();
/// ```
#[derive(Clone)]
pub struct Gate {
    pub(crate) shared: SharedRef<Shared>,
}

pub(crate) struct Shared {
    pub(crate) name: Name,
    pub(crate) level: AtomicU8,
    manual: AtomicBool,
    pub(crate) table: AdmissionTable,
    pub(crate) default_priority: Priority,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) events: EventSink,
    /// Admitted calls by priority, striped: every admitted call writes
    /// it, and on a line shared by the cores serving the gate that is the
    /// admitted path's one costly step (see `battlement_core::Striped`;
    /// a thread that leases its stripe adds without a `lock`ed
    /// instruction).
    pub(crate) admitted: Striped<[AtomicU64; 5]>,
    pub(crate) shed: [AtomicU64; 5],
    /// Whether calls record their outcome and latency (set once a signal
    /// that needs them is made).
    pub(crate) observe: AtomicBool,
    pub(crate) in_flight: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) latency_nanos: AtomicU64,
    /// Latencies by bucket, made with the first percentile latency signal.
    pub(crate) histogram: OnceLock<AtomicHistogram>,
    /// Governors alive for this gate: with none, `release` returns the
    /// gate to `Normal`.
    governors: AtomicUsize,
    /// When the next `Shed` event may be emitted, in nanoseconds since
    /// `created` (0: at the next shed). Reset on each level change.
    next_shed_event: AtomicU64,
    shed_event_interval: Duration,
    created: Instant,
    change: Mutex<Change>,
}

struct Change {
    at: Instant,
    time: SystemTime,
    reason: Reason,
    changes: u64,
}

impl Shared {
    /// Requests of `priority` admitted so far: the stripes' sum.
    pub(crate) fn admitted(&self, priority: Priority) -> u64 {
        self.admitted.sum(|a| a[priority.index()].load(Relaxed))
    }

    #[inline]
    pub(crate) fn record(&self, ok: bool, elapsed: Duration) {
        self.completed.fetch_add(1, Relaxed);
        if !ok {
            self.failed.fetch_add(1, Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency_nanos.fetch_add(nanos, Relaxed);
        if let Some(histogram) = self.histogram.get() {
            histogram.record(nanos);
        }
    }
}

impl Gate {
    /// A gate named `name` with the default configuration.
    pub fn new(name: impl Into<Name>) -> Gate {
        GateBuilder::new(name)
            .build()
            .expect("the default gate configuration is valid")
    }

    /// A builder for a gate named `name`.
    pub fn builder(name: impl Into<Name>) -> GateBuilder {
        GateBuilder::new(name)
    }

    pub(crate) fn from_builder(b: GateBuilder) -> Gate {
        Gate {
            shared: SharedRef::new(Shared {
                name: b.name,
                level: AtomicU8::new(b.initial_level as u8),
                manual: AtomicBool::new(false),
                table: b.table,
                default_priority: b.default_priority,
                retry_after: b.retry_after,
                events: b.events,
                admitted: Default::default(),
                shed: Default::default(),
                observe: AtomicBool::new(false),
                in_flight: AtomicU64::new(0),
                completed: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                latency_nanos: AtomicU64::new(0),
                histogram: OnceLock::new(),
                governors: AtomicUsize::new(0),
                next_shed_event: AtomicU64::new(0),
                shed_event_interval: b.shed_event_interval,
                created: Instant::now(),
                change: Mutex::new(Change {
                    at: Instant::now(),
                    time: SystemTime::now(),
                    reason: Cow::Borrowed("initial level"),
                    changes: 0,
                }),
            }),
        }
    }

    /// A layer that gates a service with this gate, reading each request's
    /// priority with [`FromExtensions`](crate::FromExtensions).
    pub fn layer(&self) -> GateLayer {
        GateLayer::new(self.clone())
    }

    /// A builder for a [`Governor`](crate::Governor) that sets this gate's
    /// level from signals.
    pub fn governor(&self) -> GovernorBuilder {
        GovernorBuilder::new(self.clone())
    }

    /// The gate's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// The current level.
    #[inline]
    pub fn level(&self) -> Level {
        level_from(self.shared.level.load(Relaxed))
    }

    /// `true` when the current level admits `priority`.
    #[inline]
    pub fn admits(&self, priority: Priority) -> bool {
        self.shared
            .table
            .admits_index(self.shared.level.load(Relaxed) as usize, priority)
    }

    /// The admission table.
    pub fn table(&self) -> &AdmissionTable {
        &self.shared.table
    }

    /// Sets the level by hand. It holds, whatever the governor sees, until
    /// [`release`](Self::release) or a reset.
    pub fn set_level(&self, level: Level) {
        self.shared.set_level(level);
    }

    /// Hands the level back to the governor, which takes it from the
    /// current level (lowering it only after its dwell time). With no
    /// [`Governor`](crate::Governor) alive for this gate there is nobody
    /// to hand it to, so the gate returns to `Normal` (reason
    /// `"released, no governor"`) rather than keep shedding at the last
    /// level set by hand.
    pub fn release(&self) {
        self.shared.release();
    }

    /// `true` while a level set by hand holds.
    pub fn is_manual(&self) -> bool {
        self.shared.manual.load(Relaxed)
    }

    /// Back to `Normal`, under the governor again. The admitted and shed
    /// totals are kept (they are monotonic counters).
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// When the gate entered its current level.
    pub fn since(&self) -> Instant {
        self.lock().at
    }

    /// Why the gate is at its current level.
    pub fn reason(&self) -> Reason {
        self.lock().reason.clone()
    }

    /// How many times the level has changed.
    pub fn changes(&self) -> u64 {
        self.lock().changes
    }

    /// Requests of `priority` admitted so far.
    pub fn admitted(&self, priority: Priority) -> u64 {
        self.shared.admitted(priority)
    }

    /// Requests of `priority` shed so far.
    pub fn shed(&self, priority: Priority) -> u64 {
        self.shared.shed[priority.index()].load(Relaxed)
    }

    /// Admitted calls not finished yet (counted only once a gate signal
    /// such as [`in_flight`](Self::in_flight_signal) was made).
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Relaxed)
    }

    /// Applies a change made by the governor, unless the level was set by
    /// hand or moved since the governor read it.
    pub(crate) fn govern(&self, from: Level, to: Level, reason: Reason) -> bool {
        let mut change = self.shared.lock();
        if self.is_manual() || self.level() != from {
            return false;
        }
        self.shared.change_locked(&mut change, to, reason);
        true
    }

    fn lock(&self) -> MutexGuard<'_, Change> {
        self.shared.lock()
    }
}

impl Shared {
    fn set_level(&self, level: Level) {
        let mut change = self.lock();
        self.manual.store(true, Relaxed);
        self.change_locked(&mut change, level, Cow::Borrowed("set by hand"));
    }

    fn release(&self) {
        let mut change = self.lock();
        self.manual.store(false, Relaxed);
        if self.governors.load(Relaxed) == 0 {
            self.change_locked(
                &mut change,
                Level::Normal,
                Cow::Borrowed("released, no governor"),
            );
        }
    }

    /// Counts a governor made (`+1`) or dropped (`-1`).
    pub(crate) fn governed(&self, delta: isize) {
        if delta > 0 {
            self.governors.fetch_add(1, Relaxed);
        } else {
            self.governors.fetch_sub(1, Relaxed);
        }
    }

    /// Whether this shed is the one to tell: the first since the level
    /// changed, then at most one per `shed_event_interval`. The others
    /// are only counted (`shed_total`), so a flood of sheds is a count
    /// and a few events, not an event each.
    pub(crate) fn shed_event_due(&self) -> bool {
        if self.shed_event_interval.is_zero() {
            return true;
        }
        let now = u64::try_from(
            Instant::now()
                .saturating_duration_since(self.created)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX);
        let due = self.next_shed_event.load(Relaxed);
        if now < due {
            return false;
        }
        let next = now
            .saturating_add(u64::try_from(self.shed_event_interval.as_nanos()).unwrap_or(u64::MAX))
            .max(1);
        // One of the sheds racing for the slot tells it.
        self.next_shed_event
            .compare_exchange(due, next, Relaxed, Relaxed)
            .is_ok()
    }

    fn reset(&self) {
        let mut change = self.lock();
        self.manual.store(false, Relaxed);
        self.change_locked(&mut change, Level::Normal, Cow::Borrowed("reset"));
        self.events.emit(&self.name, || EventKind::Reset);
    }

    fn change_locked(&self, change: &mut Change, to: Level, reason: Reason) {
        let from = level_from(self.level.swap(to as u8, Relaxed));
        if from == to {
            return;
        }
        // The first shed at the new level is told.
        self.next_shed_event.store(0, Relaxed);
        change.at = Instant::now();
        change.time = SystemTime::now();
        change.reason = reason.clone();
        change.changes += 1;
        self.events
            .emit(&self.name, || EventKind::LevelChanged { from, to, reason });
    }

    fn lock(&self) -> MutexGuard<'_, Change> {
        self.change.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) fn level_from(raw: u8) -> Level {
    Level::from_index(raw as usize).unwrap_or(Level::Critical)
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("name", &self.shared.name)
            .field("level", &self.level())
            .field("manual", &self.is_manual())
            .field("table", &self.shared.table)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("level", &level_from(self.level.load(Relaxed)))
            .finish_non_exhaustive()
    }
}

impl Component for Shared {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Gate
    }

    fn health(&self) -> ComponentHealth {
        let level = level_from(self.level.load(Relaxed));
        let (since_ms, since_unix_ms, reason, changes) = {
            let c = self.change.lock().unwrap_or_else(PoisonError::into_inner);
            let ms = c.at.elapsed().as_millis() as u64;
            let unix = c
                .time
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            (ms, unix, c.reason.clone(), c.changes)
        };
        let status = match level {
            Level::Normal => HealthStatus::Healthy,
            Level::Minimal | Level::Moderate => HealthStatus::Degraded,
            Level::Severe | Level::Critical => HealthStatus::Unhealthy,
        };
        let mut admitted = serde_json::Map::new();
        let mut shed = serde_json::Map::new();
        let mut health = ComponentHealth::new(status);
        for p in Priority::ALL {
            let a = self.admitted(p);
            let s = self.shed[p.index()].load(Relaxed);
            admitted.insert(p.as_str().into(), a.into());
            shed.insert(p.as_str().into(), s.into());
            health = health
                .labelled_metric(Metric {
                    name: "admitted_total",
                    help: "Requests admitted by the gate, by priority.",
                    kind: MetricType::Counter,
                    labels: vec![("priority", Cow::Borrowed(p.as_str()))],
                    value: a as f64,
                })
                .labelled_metric(Metric {
                    name: "shed_total",
                    help: "Requests shed by the gate, by priority.",
                    kind: MetricType::Counter,
                    labels: vec![("priority", Cow::Borrowed(p.as_str()))],
                    value: s as f64,
                });
        }
        let in_flight = self.in_flight.load(Relaxed);
        health
            .detail("level", level.as_str())
            .detail("manual", self.manual.load(Relaxed))
            .detail("reason", reason.as_ref())
            .detail("since_ms", since_ms)
            .detail("since_unix_ms", since_unix_ms)
            .detail("level_changes", changes)
            .detail("admitted", admitted)
            .detail("shed", shed)
            .detail("in_flight", in_flight)
            .metric(
                "level",
                "The gate's level (0 normal .. 4 critical).",
                MetricType::Gauge,
                level.index() as f64,
            )
            .metric(
                "level_changes_total",
                "Level changes.",
                MetricType::Counter,
                changes as f64,
            )
            .metric(
                "in_flight",
                "Admitted calls not finished yet.",
                MetricType::Gauge,
                in_flight as f64,
            )
    }

    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::SetLevel(level) => self.set_level(*level),
            Control::ReleaseLevel => self.release(),
            Control::Reset => self.reset(),
            other => return Err(ControlError::unsupported(&self.name, other)),
        }
        Ok(())
    }
}

/// The gate's state is kept for the rest of the process: copies of the
/// handle, of its services and of their response futures count no
/// reference (see [`Leak`]).
///
/// ```
/// use battlement_core::{Leak, Level};
/// use battlement_gate::Gate;
///
/// let gate = Gate::new("checkout").leak();
/// gate.clone().set_level(Level::Critical);
/// assert_eq!(gate.level(), Level::Critical);
/// ```
impl Leak for Gate {
    fn leak(self) -> Self {
        Gate {
            shared: self.shared.leak(),
        }
    }
}

impl AsComponent for Gate {
    fn as_component(&self) -> Arc<dyn Component> {
        self.shared.arc()
    }
}

impl Component for Gate {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Gate
    }

    fn health(&self) -> ComponentHealth {
        self.shared.health()
    }

    fn control(&self, control: &Control) -> Result<(), ControlError> {
        self.shared.control(control)
    }
}
