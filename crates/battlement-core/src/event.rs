//! Everything worth telling: [`Event`], [`EventKind`], and where they go,
//! [`EventSink`].
//!
//! A layer is given an [`EventSink`] at build time (`.events(sink)`) and
//! calls [`EventSink::emit`] for each state change, retry, shed, fallback
//! or level change. Every event is also a `tracing` event (target
//! `battlement`), so with no sink at all an event costs its `tracing` call
//! and nothing else: no allocation, no clock read.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use tokio::time::Instant;

use crate::error::{Name, RetryStop};
use crate::{CircuitState, FailureKind, Level, Priority};

/// A free-text reason attached to a transition.
pub type Reason = Cow<'static, str>;

/// One thing that happened in a named component.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// The name of the component it happened in.
    pub component: Name,
    /// When it happened, on tokio's clock (exact on paused time).
    #[serde(skip)]
    pub at: Instant,
    /// When it happened, on the wall clock (serialised as `unix_ms`).
    #[serde(rename = "unix_ms", serialize_with = "ser_unix_ms")]
    pub time: SystemTime,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event of `kind` in `component`, stamped now.
    pub fn new(component: Name, kind: EventKind) -> Self {
        Event {
            component,
            at: Instant::now(),
            time: SystemTime::now(),
            kind,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.component, self.kind)
    }
}

/// What happened. Durations serialise as milliseconds (`*_ms`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A circuit breaker changed state.
    StateChanged {
        /// The state it left.
        from: CircuitState,
        /// The state it entered.
        to: CircuitState,
        /// Why (the trip rule, "probe succeeded", "reset by hand", ...).
        reason: Reason,
    },
    /// A breaker refused a call.
    CallRejected {
        /// The state that refused it.
        state: CircuitState,
    },
    /// A retry layer is about to make another attempt.
    Retry {
        /// The attempt about to be made (2 for the first retry).
        attempt: u32,
        /// How long it waits first.
        #[serde(rename = "delay_ms", serialize_with = "ser_ms")]
        delay: Duration,
        /// The kind of failure that caused it.
        kind: FailureKind,
    },
    /// A retry layer gave up.
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// Why it stopped.
        reason: RetryStop,
        /// The kind of the last failure.
        kind: FailureKind,
    },
    /// A request's total deadline passed.
    DeadlineExceeded {
        /// The budget it had.
        #[serde(rename = "budget_ms", serialize_with = "ser_ms")]
        budget: Duration,
        /// How long it ran.
        #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
        elapsed: Duration,
    },
    /// One attempt timed out.
    AttemptTimedOut {
        /// The bound it had.
        #[serde(rename = "timeout_ms", serialize_with = "ser_ms")]
        timeout: Duration,
    },
    /// A gate shed a request.
    Shed {
        /// The gate's level.
        level: Level,
        /// The request's priority.
        priority: Priority,
    },
    /// A gate's level changed.
    LevelChanged {
        /// The level it left.
        from: Level,
        /// The level it entered.
        to: Level,
        /// Why (the signal and its value, "set by hand", ...).
        reason: Reason,
    },
    /// A fallback answered instead of the primary.
    Fallback {
        /// The source that answered (`"value"`, `"cache"`, a service name).
        source: Reason,
        /// The kind of the primary's failure.
        kind: FailureKind,
    },
    /// A fan-out skipped a backend without calling it.
    Skipped {
        /// The backend.
        backend: Name,
        /// Why.
        reason: Reason,
    },
    /// A hedging layer sent a backup request.
    Hedged {
        /// The number of the backup (1 for the first).
        hedge: u32,
        /// How long after the first request it was sent.
        #[serde(rename = "after_ms", serialize_with = "ser_ms")]
        after: Duration,
    },
    /// A component was reset by hand.
    Reset,
    /// Anything else a component wants to tell.
    Custom {
        /// A short name for what happened.
        name: Reason,
        /// Details.
        detail: String,
    },
}

impl EventKind {
    /// The event's name in `snake_case`: its `event` in JSON and in
    /// `tracing`.
    pub const fn name(&self) -> &'static str {
        match self {
            EventKind::StateChanged { .. } => "state_changed",
            EventKind::CallRejected { .. } => "call_rejected",
            EventKind::Retry { .. } => "retry",
            EventKind::RetriesExhausted { .. } => "retries_exhausted",
            EventKind::DeadlineExceeded { .. } => "deadline_exceeded",
            EventKind::AttemptTimedOut { .. } => "attempt_timed_out",
            EventKind::Shed { .. } => "shed",
            EventKind::LevelChanged { .. } => "level_changed",
            EventKind::Fallback { .. } => "fallback",
            EventKind::Skipped { .. } => "skipped",
            EventKind::Hedged { .. } => "hedged",
            EventKind::Reset => "reset",
            EventKind::Custom { .. } => "custom",
        }
    }

    /// Traces the event with the stable fields listed on
    /// [`EventSink::emit`]: one callsite per kind, so each has its fields.
    fn trace(&self, component: &str) {
        let ev = self.name();
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        macro_rules! info {
            ($($field:tt)*) => {
                tracing::info!(target: "battlement", component, event = ev, $($field)* "{self}")
            };
        }
        match self {
            EventKind::StateChanged { from, to, reason } => {
                info!(from = from.as_str(), to = to.as_str(), reason = &**reason,)
            }
            EventKind::CallRejected { state } => info!(state = state.as_str(),),
            EventKind::Retry {
                attempt,
                delay,
                kind,
            } => info!(attempt, delay_ms = ms(delay), kind = kind.as_str(),),
            EventKind::RetriesExhausted {
                attempts,
                reason,
                kind,
            } => info!(attempts, reason = reason.as_str(), kind = kind.as_str(),),
            EventKind::DeadlineExceeded { budget, elapsed } => {
                info!(budget_ms = ms(budget), elapsed_ms = ms(elapsed),)
            }
            EventKind::AttemptTimedOut { timeout } => info!(timeout_ms = ms(timeout),),
            EventKind::Shed { level, priority } => {
                info!(level = level.as_str(), priority = priority.as_str(),)
            }
            EventKind::LevelChanged { from, to, reason } => {
                info!(from = from.as_str(), to = to.as_str(), reason = &**reason,)
            }
            EventKind::Fallback { source, kind } => {
                info!(source = &**source, kind = kind.as_str(),)
            }
            EventKind::Skipped { backend, reason } => {
                info!(backend = &**backend, reason = &**reason,)
            }
            EventKind::Hedged { hedge, after } => info!(hedge, after_ms = ms(after),),
            EventKind::Reset => info!(),
            EventKind::Custom { name, detail } => info!(name = &**name, detail = &**detail,),
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::StateChanged { from, to, reason } => {
                write!(f, "state {from} -> {to} ({reason})")
            }
            EventKind::CallRejected { state } => write!(f, "call rejected ({state})"),
            EventKind::Retry {
                attempt,
                delay,
                kind,
            } => write!(f, "retry: attempt {attempt} after {delay:?} ({kind})"),
            EventKind::RetriesExhausted {
                attempts,
                reason,
                kind,
            } => write!(f, "gave up after {attempts} attempt(s): {reason} ({kind})"),
            EventKind::DeadlineExceeded { budget, elapsed } => {
                write!(
                    f,
                    "deadline exceeded: budget {budget:?}, elapsed {elapsed:?}"
                )
            }
            EventKind::AttemptTimedOut { timeout } => {
                write!(f, "attempt timed out after {timeout:?}")
            }
            EventKind::Shed { level, priority } => {
                write!(f, "shed a {priority}-priority request at level {level}")
            }
            EventKind::LevelChanged { from, to, reason } => {
                write!(f, "level {from} -> {to} ({reason})")
            }
            EventKind::Fallback { source, kind } => {
                write!(f, "fallback served by {source} ({kind})")
            }
            EventKind::Skipped { backend, reason } => write!(f, "skipped {backend} ({reason})"),
            EventKind::Hedged { hedge, after } => write!(f, "hedge {hedge} sent after {after:?}"),
            EventKind::Reset => f.write_str("reset"),
            EventKind::Custom { name, detail } => write!(f, "{name}: {detail}"),
        }
    }
}

/// Receives events. Implemented for any `Fn(&Event) + Send + Sync`.
///
/// Called synchronously on the thread that emits the event, possibly on a
/// request's hot path: do little (push into a channel, bump a counter) and
/// never block.
pub trait EventListener: Send + Sync + 'static {
    /// One event happened.
    fn on_event(&self, event: &Event);
}

impl<F> EventListener for F
where
    F: Fn(&Event) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event) {
        self(event)
    }
}

/// Where a layer sends its events: a cheap cloneable handle around an
/// optional [`EventListener`].
///
/// ```
/// use battlement_core::{EventKind, EventLog, EventSink};
///
/// let log = EventLog::new();
/// let sink = log.sink();
/// sink.emit(&"payments".into(), || EventKind::Reset);
/// assert_eq!(log.events()[0].kind, EventKind::Reset);
///
/// // With no listener an event costs only its `tracing` call.
/// EventSink::none().emit(&"payments".into(), || EventKind::Reset);
/// ```
#[derive(Clone, Default)]
pub struct EventSink {
    listener: Option<Arc<dyn EventListener>>,
}

impl EventSink {
    /// A sink that only traces.
    pub const fn none() -> Self {
        EventSink { listener: None }
    }

    /// A sink that hands every event to `listener` (and traces it).
    pub fn new(listener: impl EventListener) -> Self {
        EventSink {
            listener: Some(Arc::new(listener)),
        }
    }

    /// A sink that sends every event to both `self` and `other`.
    #[must_use]
    pub fn and(self, other: EventSink) -> EventSink {
        match (self.listener, other.listener) {
            (None, l) | (l, None) => EventSink { listener: l },
            (Some(a), Some(b)) => EventSink::new(move |e: &Event| {
                a.on_event(e);
                b.on_event(e);
            }),
        }
    }

    /// `true` when events go somewhere besides `tracing`.
    pub fn is_listening(&self) -> bool {
        self.listener.is_some()
    }

    /// Emits the event `kind()` of `component`: traces it and, when a
    /// listener is set, stamps it and hands it over. `kind` is only called
    /// when the event is wanted.
    ///
    /// The trace is an `INFO` event of target `battlement` with stable
    /// fields: `component`, `event` (the [`EventKind::name`]), then the
    /// event's own fields under the names its JSON has (`attempt`,
    /// `attempts`, `kind` for the kind of failure, `delay_ms`, `reason`,
    /// `from`, `to`, `state`, `level`, `priority`, `source`, `backend`,
    /// `hedge`, `after_ms`, `budget_ms`, `elapsed_ms`, `timeout_ms`,
    /// `name`, `detail`); its message is the event's `Display`. Emitted
    /// inside the request's span, so `tracing-opentelemetry` users see
    /// each retry, give-up and breaker transition as a span event of the
    /// request's trace, with these fields as attributes.
    pub fn emit(&self, component: &Name, kind: impl FnOnce() -> EventKind) {
        let traced = tracing::enabled!(target: "battlement", tracing::Level::INFO);
        if !traced && self.listener.is_none() {
            return;
        }
        let kind = kind();
        if traced {
            kind.trace(component);
        }
        if let Some(listener) = &self.listener {
            listener.on_event(&Event::new(component.clone(), kind));
        }
    }
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSink")
            .field("listening", &self.is_listening())
            .finish()
    }
}

/// A bounded in-memory log of events: the simplest listener, for tests,
/// examples and small tools. Keeps the newest `capacity` events.
#[derive(Clone, Debug)]
pub struct EventLog {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Debug)]
struct LogInner {
    events: std::collections::VecDeque<Event>,
    capacity: usize,
    dropped: u64,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::new()
    }
}

impl EventLog {
    /// A log keeping the newest 1024 events.
    pub fn new() -> Self {
        EventLog::with_capacity(1024)
    }

    /// A log keeping the newest `capacity` events (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        EventLog {
            inner: Arc::new(Mutex::new(LogInner {
                events: std::collections::VecDeque::with_capacity(capacity.min(1024)),
                capacity,
                dropped: 0,
            })),
        }
    }

    /// A sink that appends to this log.
    pub fn sink(&self) -> EventSink {
        let log = self.clone();
        EventSink::new(move |e: &Event| log.push(e.clone()))
    }

    fn push(&self, event: Event) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.events.len() == inner.capacity {
            inner.events.pop_front();
            inner.dropped += 1;
        }
        inner.events.push_back(event);
    }

    /// A copy of the events kept, oldest first.
    pub fn events(&self) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.events.iter().cloned().collect()
    }

    /// Just the kinds of the events kept, oldest first.
    pub fn kinds(&self) -> Vec<EventKind> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.events.iter().map(|e| e.kind.clone()).collect()
    }

    /// How many events were dropped because the log was full.
    pub fn dropped(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dropped
    }

    /// Forgets every event kept.
    pub fn clear(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .clear();
    }
}

fn ser_unix_ms<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Serialises a duration as fractional milliseconds.
pub(crate) fn ser_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn log_keeps_newest_and_counts_dropped() {
        let log = EventLog::with_capacity(2);
        let sink = log.sink();
        let name: Name = "b".into();
        for attempt in 1..=3 {
            sink.emit(&name, || EventKind::Retry {
                attempt,
                delay: Duration::from_millis(10),
                kind: FailureKind::Network,
            });
        }
        let kinds = log.kinds();
        assert_eq!(kinds.len(), 2);
        assert!(matches!(kinds[0], EventKind::Retry { attempt: 2, .. }));
        assert_eq!(log.dropped(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn none_never_builds_the_event_without_tracing() {
        let called = std::sync::atomic::AtomicBool::new(false);
        EventSink::none().emit(&"x".into(), || {
            called.store(true, std::sync::atomic::Ordering::SeqCst);
            EventKind::Reset
        });
        // No subscriber is installed in this test, so tracing is off.
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn and_sends_to_both() {
        let (a, b) = (EventLog::new(), EventLog::new());
        let sink = a.sink().and(b.sink()).and(EventSink::none());
        sink.emit(&"x".into(), || EventKind::Reset);
        assert_eq!(a.events().len(), 1);
        assert_eq!(b.events().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn serialises_with_tag_and_millis() {
        let e = Event::new(
            "api".into(),
            EventKind::StateChanged {
                from: CircuitState::Closed,
                to: CircuitState::Open,
                reason: "failure rate 0.6 >= 0.5".into(),
            },
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["component"], "api");
        assert_eq!(v["event"], "state_changed");
        assert_eq!(v["from"], "closed");
        assert_eq!(v["to"], "open");
        assert!(v["unix_ms"].as_u64().unwrap() > 0);
        let r = serde_json::to_value(EventKind::Retry {
            attempt: 2,
            delay: Duration::from_millis(250),
            kind: FailureKind::Timeout,
        })
        .unwrap();
        assert_eq!(r["delay_ms"], 250.0);
        assert_eq!(r["kind"], "timeout");
        assert_eq!(
            e.to_string(),
            "[api] state closed -> open (failure rate 0.6 >= 0.5)"
        );
    }
}
