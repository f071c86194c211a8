//! The state a deadline layer shares with its services and futures: its
//! name, event sink and hit counters, seen by the registry as a
//! [`Component`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use battlement_core::{
    AsComponent, Component, ComponentHealth, ComponentKind, Control, ControlError, EventKind,
    EventSink, HealthStatus, MetricType, Name, SharedRef,
};

/// Which of the two layers a state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `DeadlineLayer`: the total budget.
    Total,
    /// `AttemptTimeoutLayer`: one attempt.
    Attempt,
    /// `ServerDeadlineLayer`: the caller's budget, read from the headers.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    Server,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Name,
    pub(crate) events: EventSink,
    role: Role,
    /// The layer's [`Observer`], set once it is named, given a sink or
    /// asked for a handle; until then (0) a hit is traced under the
    /// default name.
    observer: AtomicU64,
    deadline_exceeded: AtomicU64,
    attempts_timed_out: AtomicU64,
}

impl Shared {
    pub(crate) fn new(role: Role) -> Self {
        Shared {
            name: default_name(role).clone(),
            events: EventSink::none(),
            role,
            observer: AtomicU64::new(0),
            deadline_exceeded: AtomicU64::new(0),
            attempts_timed_out: AtomicU64::new(0),
        }
    }

    /// A builder's state: observed (named, or given a sink) only when
    /// the builder set either.
    pub(crate) fn configured(
        role: Role,
        name: Option<Name>,
        events: Option<EventSink>,
    ) -> Arc<Self> {
        let base = Shared::new(role);
        if name.is_some() || events.is_some() {
            base.with(name, events)
        } else {
            Arc::new(base)
        }
    }

    /// A copy with a new name or sink, observed.
    pub(crate) fn with(&self, name: Option<Name>, events: Option<EventSink>) -> Arc<Self> {
        let shared = Arc::new(Shared {
            name: name.unwrap_or_else(|| self.name.clone()),
            events: events.unwrap_or_else(|| self.events.clone()),
            role: self.role,
            observer: AtomicU64::new(0),
            deadline_exceeded: AtomicU64::new(0),
            attempts_timed_out: AtomicU64::new(0),
        });
        shared.mark_observed();
        shared
    }

    /// Makes the futures of this layer report their hits here (once).
    pub(crate) fn mark_observed(self: &Arc<Self>) {
        if self.observer.load(Ordering::Acquire) != 0 {
            return;
        }
        let mut table = OBSERVED.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked again under the lock: two handles taken at once
        // register once.
        if self.observer.load(Ordering::Acquire) == 0 {
            let ticket = table.register(Arc::downgrade(self));
            self.observer.store(ticket, Ordering::Release);
        }
    }

    /// What a future should carry: a copyable ticket, no reference count.
    #[inline(always)]
    pub(crate) fn for_future(&self) -> Observer {
        Observer(self.observer.load(Ordering::Relaxed))
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let ticket = *self.observer.get_mut();
        if ticket != 0 {
            OBSERVED
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .release(ticket);
        }
    }
}

/// Observed layers, for their futures to find on a hit.
///
/// A response future that carried an `Arc<Shared>` paid a reference
/// count per call and, worse, drop glue that kept its drop out of line:
/// 27 of the 37 instructions a `DeadlineLayer` spent over
/// `tower::timeout` (callgrind). So it carries an [`Observer`] instead, a
/// copyable ticket (slot and generation) into this table, read under its
/// lock only when a deadline is hit. A slot is reused once its layer is
/// dropped, with a new generation, so a late future of the old layer
/// counts nowhere rather than in the new one.
struct Observed {
    slots: Vec<(u32, Weak<Shared>)>,
    free: Vec<u32>,
}

static OBSERVED: Mutex<Observed> = Mutex::new(Observed {
    slots: Vec::new(),
    free: Vec::new(),
});

impl Observed {
    fn register(&mut self, shared: Weak<Shared>) -> u64 {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize].1 = shared;
                slot
            }
            None => {
                self.slots.push((0, shared));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 observed layers")
            }
        };
        ticket(slot, self.slots[slot as usize].0)
    }

    fn release(&mut self, ticket: u64) {
        let (slot, _) = untangle(ticket);
        let entry = &mut self.slots[slot as usize];
        entry.0 = entry.0.wrapping_add(1);
        entry.1 = Weak::new();
        self.free.push(slot);
    }

    fn find(&self, ticket: u64) -> Option<Arc<Shared>> {
        let (slot, generation) = untangle(ticket);
        let (current, shared) = self.slots.get(slot as usize)?;
        if *current == generation {
            shared.upgrade()
        } else {
            None
        }
    }
}

/// Slot + 1 in the high half (so no ticket is 0), generation in the low.
fn ticket(slot: u32, generation: u32) -> u64 {
    ((u64::from(slot) + 1) << 32) | u64::from(generation)
}

fn untangle(ticket: u64) -> (u32, u32) {
    (((ticket >> 32) - 1) as u32, ticket as u32)
}

/// What a response future carries of its layer's state: a ticket into
/// the table of observed layers, or nothing (0) when nobody is watching.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observer(u64);

impl Observer {
    /// The layer's state, if it is observed and still alive (cold: takes
    /// the table's lock).
    pub(crate) fn get(self) -> Option<Arc<Shared>> {
        if self.0 == 0 {
            return None;
        }
        OBSERVED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .find(self.0)
    }
}

pub(crate) fn default_name(role: Role) -> &'static Name {
    static TOTAL: std::sync::OnceLock<Name> = std::sync::OnceLock::new();
    static ATTEMPT: std::sync::OnceLock<Name> = std::sync::OnceLock::new();
    static SERVER: std::sync::OnceLock<Name> = std::sync::OnceLock::new();
    match role {
        Role::Total => TOTAL.get_or_init(|| Name::from("deadline")),
        Role::Attempt => ATTEMPT.get_or_init(|| Name::from("attempt_timeout")),
        Role::Server => SERVER.get_or_init(|| Name::from("server_deadline")),
    }
}

/// Records and tells a passed total deadline.
pub(crate) fn deadline_hit(
    shared: Option<&Shared>,
    role: Role,
    budget: Duration,
    elapsed: Duration,
) {
    match shared {
        Some(s) => {
            s.deadline_exceeded.fetch_add(1, Ordering::Relaxed);
            s.events
                .emit(&s.name, || EventKind::DeadlineExceeded { budget, elapsed });
        }
        None => EventSink::none().emit(default_name(role), || EventKind::DeadlineExceeded {
            budget,
            elapsed,
        }),
    }
}

/// Records and tells an attempt that timed out.
pub(crate) fn attempt_hit(shared: Option<&Shared>, role: Role, timeout: Duration) {
    match shared {
        Some(s) => {
            s.attempts_timed_out.fetch_add(1, Ordering::Relaxed);
            s.events
                .emit(&s.name, || EventKind::AttemptTimedOut { timeout });
        }
        None => EventSink::none().emit(default_name(role), || EventKind::AttemptTimedOut {
            timeout,
        }),
    }
}

impl Component for Shared {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Deadline
    }

    fn health(&self) -> ComponentHealth {
        let exceeded = self.deadline_exceeded.load(Ordering::Relaxed);
        let timed_out = self.attempts_timed_out.load(Ordering::Relaxed);
        ComponentHealth::new(HealthStatus::Healthy)
            .detail(
                "role",
                match self.role {
                    Role::Total => "total",
                    Role::Attempt => "attempt",
                    Role::Server => "server",
                },
            )
            .detail("deadline_exceeded", exceeded)
            .detail("attempts_timed_out", timed_out)
            .metric(
                "deadline_exceeded_total",
                "Requests whose total deadline passed.",
                MetricType::Counter,
                exceeded as f64,
            )
            .metric(
                "attempts_timed_out_total",
                "Attempts cut by their attempt timeout.",
                MetricType::Counter,
                timed_out as f64,
            )
    }

    /// `Reset` is accepted and changes nothing: a deadline layer holds no
    /// state but its counters, which never go down.
    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::Reset => Ok(()),
            other => Err(ControlError::unsupported(&self.name, other)),
        }
    }
}

/// A cheap cloneable handle on a deadline layer: its counters, and what
/// the registry registers (it implements [`AsComponent`]).
///
/// Taken with `DeadlineLayer::handle`, `AttemptTimeoutLayer::handle` or
/// (feature `http`) `ServerDeadlineLayer::handle`, whose hits count as
/// [`deadline_exceeded`](DeadlineHandle::deadline_exceeded).
/// Counters count hits only, never calls, so the happy path stays free of
/// shared writes. They are monotonic: [`Control::Reset`] is accepted and
/// changes nothing (the layer has no other state).
#[derive(Debug, Clone)]
pub struct DeadlineHandle {
    pub(crate) shared: Arc<Shared>,
}

impl DeadlineHandle {
    /// A handle on `shared`, which is marked observed (what each layer's
    /// `handle()` does).
    pub(crate) fn observing(shared: &SharedRef<Shared>) -> DeadlineHandle {
        let shared = shared.arc();
        shared.mark_observed();
        DeadlineHandle { shared }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Requests whose total deadline passed in this layer.
    pub fn deadline_exceeded(&self) -> u64 {
        self.shared.deadline_exceeded.load(Ordering::Relaxed)
    }

    /// Attempts this layer cut with [`AttemptTimedOut`](battlement_core::AttemptTimedOut).
    pub fn attempts_timed_out(&self) -> u64 {
        self.shared.attempts_timed_out.load(Ordering::Relaxed)
    }
}

impl AsComponent for DeadlineHandle {
    fn as_component(&self) -> Arc<dyn Component> {
        self.shared.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dropped layer's slot is reused with a new generation: a late
    /// future of the old layer finds nothing, the new layer's futures
    /// find theirs.
    #[test]
    fn observers_find_their_own_layer_only() {
        let old = Shared::new(Role::Total).with(Some(Name::from("old")), None);
        let old_ticket = old.for_future();
        assert_eq!(old_ticket.get().unwrap().name.as_ref(), "old");
        drop(old);
        assert!(old_ticket.get().is_none());
        let new = Shared::new(Role::Total).with(Some(Name::from("new")), None);
        assert!(old_ticket.get().is_none());
        assert_eq!(new.for_future().get().unwrap().name.as_ref(), "new");
        let unobserved = Arc::new(Shared::new(Role::Total));
        assert!(unobserved.for_future().get().is_none());
        unobserved.mark_observed();
        unobserved.mark_observed();
        assert!(Arc::ptr_eq(
            &unobserved.for_future().get().unwrap(),
            &unobserved
        ));
    }
}
