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
use serde_json::{Map, Value};

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
    pub details: Map<String, Value>,
    /// Numeric figures for metrics exposition; not part of the JSON report.
    #[serde(skip)]
    pub metrics: Vec<Metric>,
}

impl ComponentHealth {
    /// A health of `status` with no details.
    pub fn new(status: HealthStatus) -> Self {
        ComponentHealth {
            status,
            details: Map::new(),
            metrics: Vec::new(),
        }
    }

    /// Adds a detail.
    #[must_use]
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
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
    /// Only ever goes up (resets with the process).
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
    /// Back to the initial state, counters of the current window cleared
    /// (a breaker closes, a gate returns to `Normal` under its governor).
    Reset,
    /// Reject every call until released (a breaker's `ForcedOpen`).
    ForceOpen,
    /// Close: admit calls again (a breaker leaves `ForcedOpen`, `Open` or
    /// `Disabled` for `Closed`).
    Close,
    /// Admit every call and record nothing (a breaker's `Disabled`).
    Disable,
    /// Set the level by hand; it holds until [`Control::ReleaseLevel`].
    SetLevel(Level),
    /// Hand the level back to the automatic governor.
    ReleaseLevel,
}

impl Control {
    /// The control's name in `snake_case`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Control::Reset => "reset",
            Control::ForceOpen => "force_open",
            Control::Close => "close",
            Control::Disable => "disable",
            Control::SetLevel(_) => "set_level",
            Control::ReleaseLevel => "release_level",
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
    }
}
