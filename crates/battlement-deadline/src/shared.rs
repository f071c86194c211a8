//! The state a deadline layer shares with its services and futures: its
//! name, event sink and hit counters, seen by the registry as a
//! [`Component`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use battlement_core::{
    AsComponent, Component, ComponentHealth, ComponentKind, Control, ControlError, EventKind,
    EventSink, HealthStatus, MetricType, Name,
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
    /// Set once the layer is named, given a sink or asked for a handle:
    /// only then do futures carry this state (one reference count per
    /// call); otherwise a hit is traced under the default name.
    observed: AtomicBool,
    deadline_exceeded: AtomicU64,
    attempts_timed_out: AtomicU64,
}

impl Shared {
    pub(crate) fn new(role: Role) -> Self {
        Shared {
            name: default_name(role).clone(),
            events: EventSink::none(),
            role,
            observed: AtomicBool::new(false),
            deadline_exceeded: AtomicU64::new(0),
            attempts_timed_out: AtomicU64::new(0),
        }
    }

    /// A copy with a new name or sink, marked observed.
    pub(crate) fn with(&self, name: Option<Name>, events: Option<EventSink>) -> Self {
        Shared {
            name: name.unwrap_or_else(|| self.name.clone()),
            events: events.unwrap_or_else(|| self.events.clone()),
            role: self.role,
            observed: AtomicBool::new(true),
            deadline_exceeded: AtomicU64::new(0),
            attempts_timed_out: AtomicU64::new(0),
        }
    }

    pub(crate) fn mark_observed(&self) {
        self.observed.store(true, Ordering::Relaxed);
    }

    /// The state a future should carry: nothing when nobody is watching.
    #[inline]
    pub(crate) fn for_future(self: &Arc<Self>) -> Observer {
        if self.observed.load(Ordering::Relaxed) {
            Observer(Some(self.clone()))
        } else {
            Observer(None)
        }
    }
}

/// What a response future carries of its layer's state: nothing, unless
/// the layer is observed (named, given a sink or a handle).
#[derive(Debug)]
pub(crate) struct Observer(Option<Arc<Shared>>);

impl Observer {
    #[inline]
    pub(crate) fn get(&self) -> Option<&Shared> {
        self.0.as_deref()
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

    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::Reset => {
                self.deadline_exceeded.store(0, Ordering::Relaxed);
                self.attempts_timed_out.store(0, Ordering::Relaxed);
                Ok(())
            }
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
/// shared writes. [`Control::Reset`] zeroes them.
#[derive(Debug, Clone)]
pub struct DeadlineHandle {
    pub(crate) shared: Arc<Shared>,
}

impl DeadlineHandle {
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
