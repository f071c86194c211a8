//! What a layer's handle offers the registry: [`Component`], its
//! [`ComponentHealth`], and the [`Control`]s it accepts.
//!
//! A layer needs only `battlement-core` to be seen and controlled: it
//! implements [`Component`] on the shared state behind its handle, and the
//! registry holds that state weakly through [`AsComponent`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Level;

/// A named, observable, controllable part of a resilience stack: a breaker,
/// a gate, a retry budget, a fan-out, an instrumented service.
pub trait Component: Send + Sync + 'static {
    /// The component's unique name.
    fn name(&self) -> &str;

    /// What sort of component it is.
    fn kind(&self) -> ComponentKind;

    /// Its health now: a status and the figures behind it.
    fn health(&self) -> ComponentHealth;

    /// Applies a control by hand. The default supports none.
    fn control(&self, control: &Control) -> Result<(), ControlError> {
        Err(ControlError::unsupported(self.name(), control))
    }
}

/// Something that can hand the registry its shared [`Component`] state:
/// the handles of the layers (`Breaker`, `Gate`, ...) and any
/// `Arc<impl Component>`.
pub trait AsComponent {
    /// The shared state to register (the registry keeps it weakly).
    fn as_component(&self) -> Arc<dyn Component>;
}

impl<C: Component> AsComponent for Arc<C> {
    fn as_component(&self) -> Arc<dyn Component> {
        self.clone()
    }
}

impl AsComponent for Arc<dyn Component> {
    fn as_component(&self) -> Arc<dyn Component> {
        self.clone()
    }
}

/// What sort of component it is; serialised in `snake_case`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ComponentKind {
    /// A circuit breaker.
    Breaker,
    /// A retry layer or its budget.
    Retry,
    /// A deadline or attempt-timeout layer.
    Deadline,
    /// A fallback layer.
    Fallback,
    /// A degradation gate.
    Gate,
    /// A client-side adaptive throttle.
    Throttle,
    /// A fan-out.
    FanOut,
    /// A hedging layer.
    Hedge,
    /// An instrumented service (the registry's `InstrumentLayer`).
    Instrument,
    /// A fault injector (`battlement-chaos`), a testing tool.
    Chaos,
    /// Anything else, by name.
    Other(Cow<'static, str>),
}

impl ComponentKind {
    /// The kind's name in `snake_case`.
    pub fn as_str(&self) -> &str {
        match self {
            ComponentKind::Breaker => "breaker",
            ComponentKind::Retry => "retry",
            ComponentKind::Deadline => "deadline",
            ComponentKind::Fallback => "fallback",
            ComponentKind::Gate => "gate",
            ComponentKind::Throttle => "throttle",
            ComponentKind::FanOut => "fan_out",
            ComponentKind::Hedge => "hedge",
            ComponentKind::Instrument => "instrument",
            ComponentKind::Chaos => "chaos",
            ComponentKind::Other(name) => name,
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A component's (or the whole system's) health.
///
/// Ordered from best to worst, so the worst of several is their `max()`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Working as it should.
    #[default]
    Healthy,
    /// Working, but protecting itself or its callers (an open breaker, a
    /// raised level): look at it.
    Degraded,
    /// Not doing its job.
    Unhealthy,
}

impl HealthStatus {
    /// The status's name in `snake_case`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A component's details: the JSON object of its report, kept in key
/// order (as `serde_json::Map` keeps it), serialised as a JSON object.
///
/// A small map on one vector with `Cow<'static, str>` keys rather than a
/// `serde_json::Map<String, Value>`: the fixed keys of a layer's report
/// (`"state"`, `"calls"`, ...) cost no allocation and the whole map costs
/// one, where a registry report of a thousand components used to build tens
/// of thousands of keys and tree nodes. Reports hold tens of keys, so a
/// binary search and a shift beat a tree.
///
/// ```
/// use battlement_core::Details;
///
/// let mut d = Details::new();
/// d.insert("state", "open");
/// d.insert("calls", 12);
/// assert_eq!(d["state"], "open");
/// assert_eq!(d.get("calls").and_then(|v| v.as_u64()), Some(12));
/// assert_eq!(d.keys().collect::<Vec<_>>(), ["calls", "state"]);
/// assert_eq!(serde_json::to_string(&d).unwrap(), r#"{"calls":12,"state":"open"}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Details {
    entries: Vec<(Cow<'static, str>, Value)>,
}

impl Details {
    /// An empty map.
    pub const fn new() -> Self {
        Details {
            entries: Vec::new(),
        }
    }

    /// An empty map with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        Details {
            entries: Vec::with_capacity(n),
        }
    }

    /// Makes room for `n` more entries.
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_ref().cmp(key))
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(
        &mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<Value>,
    ) -> Option<Value> {
        let key = key.into();
        let value = value.into();
        // Reports mostly insert in key order: check the end first.
        let at = match self.entries.last() {
            Some((last, _)) if last.as_ref() < key.as_ref() => Err(self.entries.len()),
            _ => self.find(&key),
        };
        match at {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value under `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The keys in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_ref())
    }

    /// The details as a `serde_json` object (allocates every key).
    pub fn to_json(&self) -> serde_json::Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect()
    }
}

/// Panics when `key` is absent, as `serde_json::Map` and `BTreeMap` do.
impl std::ops::Index<&str> for Details {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        self.get(key)
            .unwrap_or_else(|| panic!("no detail named {key:?}"))
    }
}

impl<K: Into<Cow<'static, str>>, V: Into<Value>> FromIterator<(K, V)> for Details {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut d = Details::new();
        d.extend(iter);
        d
    }
}

impl<K: Into<Cow<'static, str>>, V: Into<Value>> Extend<(K, V)> for Details {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl From<Details> for Value {
    fn from(d: Details) -> Value {
        Value::Object(
            d.entries
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v))
                .collect(),
        )
    }
}

impl Serialize for Details {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k.as_ref(), v)?;
        }
        map.end()
    }
}

/// A component's health: its status, a serde-ready map of details for the
/// JSON report, and its numeric figures for metrics exposition.
///
/// ```
/// use battlement_core::{ComponentHealth, HealthStatus, MetricType};
///
/// let health = ComponentHealth::new(HealthStatus::Degraded)
///     .detail("state", "open")
///     .detail("failure_rate", 0.62)
///     .metric("calls_total", "Calls admitted.", MetricType::Counter, 1200.0);
/// assert_eq!(health.details["state"], "open");
/// assert_eq!(health.metrics[0].name, "calls_total");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ComponentHealth {
    /// The status.
    pub status: HealthStatus,
    /// Details for people and dashboards (state, rates, counts, since when).
    pub details: Details,
    /// Numeric figures for metrics exposition; not part of the JSON report.
    #[serde(skip)]
    pub metrics: Vec<Metric>,
}

impl ComponentHealth {
    /// A health of `status` with no details.
    pub fn new(status: HealthStatus) -> Self {
        ComponentHealth {
            status,
            details: Details::new(),
            metrics: Vec::new(),
        }
    }

    /// Adds a detail.
    #[must_use]
    pub fn detail(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        self.details.insert(key, value);
        self
    }

    /// Adds a numeric figure without labels.
    #[must_use]
    pub fn metric(
        mut self,
        name: &'static str,
        help: &'static str,
        kind: MetricType,
        value: f64,
    ) -> Self {
        self.metrics.push(Metric {
            name,
            help,
            kind,
            labels: Vec::new(),
            value,
        });
        self
    }

    /// Adds a numeric figure with labels (besides the component's name,
    /// which the exposition adds itself).
    #[must_use]
    pub fn labelled_metric(mut self, metric: Metric) -> Self {
        self.metrics.push(metric);
        self
    }
}

/// One numeric figure of a component, for metrics exposition. The registry
/// prefixes `name` with `battlement_<kind>_` and adds the component's name
/// as the `component` label.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The figure's name in `snake_case`; counters end in `_total`.
    pub name: &'static str,
    /// One line of help text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricType,
    /// Extra labels, such as `("priority", "low")`.
    pub labels: Vec<(&'static str, Cow<'static, str>)>,
    /// The value.
    pub value: f64,
}

/// The type of a [`Metric`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// Only ever goes up (resets with the process, never with a
    /// [`Control::Reset`]).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// An operator's command to a component, sent through the registry or the
/// health endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "control", content = "level", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Control {
    /// Back to the initial state: resets *state*, never a counter.
    ///
    /// Every `_total` figure (and every histogram) is monotonic for the
    /// life of the component, as Prometheus expects: a counter that went
    /// down would read as a process restart and turn `rate()` into
    /// garbage. What each component resets:
    ///
    /// | component | `reset` resets | keeps |
    /// |---|---|---|
    /// | breaker | `Closed`, its sliding window, streaks, re-opens and open duration | every `_total` |
    /// | keyed breaker | every key's breaker, as above | every `_total` |
    /// | gate | level `Normal`, handed back to the governor | every `_total` |
    /// | retry budget | its window, back to the floor | every `_total` |
    /// | retry policy | nothing: no state besides its counters | every `_total` |
    /// | adaptive limit | the limit to its initial value, the current window | every `_total`, calls in flight |
    /// | bulkhead | nothing: calls in flight belong to their calls | every `_total` |
    /// | deadline | nothing: no state besides its counters | every `_total` |
    /// | instrument | `consecutive_failures` | every `_total`, the latency histogram, calls in flight |
    /// | chaos | its schedule, back to the first phase | every `_total` |
    ///
    /// Components not listed (fallback, fan-out, hedge, throttle) refuse it
    /// as [`ControlError::Unsupported`].
    Reset,
    /// Reject every call until released (a breaker's `ForcedOpen`).
    ForceOpen,
    /// Close: admit calls again (a breaker leaves `ForcedOpen`, `Open` or
    /// `Disabled` for `Closed`).
    Close,
    /// Admit every call and record nothing (a breaker's `Disabled`); stop
    /// injecting faults (a chaos layer passes every call through).
    Disable,
    /// Undo [`Control::Disable`] where that is not [`Control::Close`]: a
    /// chaos layer injects faults again.
    Enable,
    /// Set the level by hand; it holds until [`Control::ReleaseLevel`].
    SetLevel(Level),
    /// Hand the level back to the automatic governor.
    ReleaseLevel,
    /// Record and report, never trip (a breaker's `MetricsOnly`: every
    /// call is admitted, its outcome counted; until [`Control::Reset`] or
    /// [`Control::Close`]).
    MetricsOnly,
}

impl Control {
    /// The control's name in `snake_case`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Control::Reset => "reset",
            Control::ForceOpen => "force_open",
            Control::Close => "close",
            Control::Disable => "disable",
            Control::Enable => "enable",
            Control::SetLevel(_) => "set_level",
            Control::ReleaseLevel => "release_level",
            Control::MetricsOnly => "metrics_only",
        }
    }
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Control::SetLevel(level) => write!(f, "set_level({level})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Why a control could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No component of that name is registered.
    #[error("no component named `{name}`")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// The component does not support that control.
    #[error("component `{component}` does not support `{control}`")]
    Unsupported {
        /// The component's name.
        component: String,
        /// The control's name.
        control: String,
    },
    /// The control is supported but cannot be applied now.
    #[error("component `{component}` refused `{control}`: {reason}")]
    Refused {
        /// The component's name.
        component: String,
        /// The control's name.
        control: String,
        /// Why.
        reason: String,
    },
}

impl ControlError {
    /// `component` does not support `control`.
    pub fn unsupported(component: &str, control: &Control) -> Self {
        ControlError::Unsupported {
            component: component.to_owned(),
            control: control.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_keep_key_order_whatever_the_insertion_order() {
        let mut d = Details::new();
        for (i, k) in ["m", "c", "x", "a", "q", "c2"].into_iter().enumerate() {
            assert_eq!(d.insert(k, i), None);
        }
        assert_eq!(
            d.keys().collect::<Vec<_>>(),
            ["a", "c", "c2", "m", "q", "x"]
        );
        assert_eq!(d.insert("c", "again"), Some(Value::from(1)));
        assert_eq!(d.len(), 6);
        assert_eq!(d["c"], "again");
        assert_eq!(d.remove("m"), Some(Value::from(0)));
        assert!(!d.contains_key("m") && d.get("m").is_none());
        *d.get_mut("a").unwrap() = Value::Bool(true);
        let owned = String::from("z");
        d.insert(owned, 9);
        let json: Value = d.clone().into();
        assert_eq!(
            json,
            serde_json::json!({"a": true, "c": "again", "c2": 5, "q": 4, "x": 2, "z": 9})
        );
        assert_eq!(serde_json::to_value(&d).unwrap(), json);
        assert_eq!(Value::Object(d.to_json()), json);
        let collected: Details = [("b", 1), ("a", 2)].into_iter().collect();
        assert_eq!(
            collected.iter().collect::<Vec<_>>(),
            [("a", &Value::from(2)), ("b", &Value::from(1))]
        );
    }

    #[test]
    #[should_panic(expected = "no detail named \"missing\"")]
    fn indexing_a_missing_detail_panics_with_its_name() {
        let _ = &Details::new()["missing"];
    }

    struct Plain;
    impl Component for Plain {
        fn name(&self) -> &str {
            "plain"
        }
        fn kind(&self) -> ComponentKind {
            ComponentKind::Other("custom".into())
        }
        fn health(&self) -> ComponentHealth {
            ComponentHealth::new(HealthStatus::Healthy)
        }
    }

    #[test]
    fn default_control_is_unsupported() {
        let c: Arc<dyn Component> = Arc::new(Plain).as_component();
        let err = c.control(&Control::SetLevel(Level::Severe)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "component `plain` does not support `set_level(severe)`"
        );
        assert_eq!(c.kind().as_str(), "custom");
    }

    #[test]
    fn status_orders_worst_last() {
        let worst = [
            HealthStatus::Degraded,
            HealthStatus::Unhealthy,
            HealthStatus::Healthy,
        ]
        .into_iter()
        .max();
        assert_eq!(worst, Some(HealthStatus::Unhealthy));
    }

    #[test]
    fn control_serde() {
        let c: Control =
            serde_json::from_str(r#"{"control":"set_level","level":"severe"}"#).unwrap();
        assert_eq!(c, Control::SetLevel(Level::Severe));
        let r: Control = serde_json::from_str(r#"{"control":"reset"}"#).unwrap();
        assert_eq!(r, Control::Reset);
        let e: Control = serde_json::from_str(r#"{"control":"enable"}"#).unwrap();
        assert_eq!((e, e.as_str()), (Control::Enable, "enable"));
        assert_eq!(ComponentKind::Chaos.as_str(), "chaos");
        assert_eq!(
            serde_json::to_value(ComponentKind::Chaos).unwrap(),
            serde_json::json!("chaos")
        );
    }
}
