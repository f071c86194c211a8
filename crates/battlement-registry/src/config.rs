//! [`RegistryBuilder`] and the [`StatusRules`] that turn components'
//! statuses into the overall one.

use std::fmt;
use std::sync::Arc;

use battlement_core::{ComponentKind, HealthStatus, InvalidConfig};

use crate::Registry;
use crate::report::ComponentReport;

/// A custom rule: looks at every component's report and may name an
/// overall status (the worst of all rules wins).
type CustomRule = Arc<dyn Fn(&[ComponentReport]) -> Option<HealthStatus> + Send + Sync>;

/// How the registry judges the whole system from its components.
///
/// # The rules, in order
///
/// 1. Each component reports its own status (a breaker `Degraded` while
///    open, a gate `Degraded` when raised and `Unhealthy` at `Severe` or
///    above, an instrument always `Healthy`).
/// 2. **Mappings** ([`RegistryBuilder::map_status`]) may change how a
///    component's status counts, by kind: e.g. "an open breaker of this
///    system counts as `Unhealthy`". The report shows both the reported and
///    the counted status. The first mapping that matches applies.
/// 3. The overall status is the **worst counted status** of all components
///    (`Healthy` with none).
/// 4. **Thresholds** ([`RegistryBuilder::escalate_when`]) may raise it: "3
///    or more degraded breakers make the system unhealthy".
/// 5. **Custom rules** ([`RegistryBuilder::rule`]) may raise it further.
///
/// Rules only ever make the overall status worse than step 3, never better.
#[derive(Clone, Default)]
pub struct StatusRules {
    pub(crate) mappings: Vec<(Option<ComponentKind>, HealthStatus, HealthStatus)>,
    pub(crate) thresholds: Vec<Threshold>,
    pub(crate) custom: Vec<CustomRule>,
}

#[derive(Clone, Debug)]
pub(crate) struct Threshold {
    pub(crate) kind: Option<ComponentKind>,
    pub(crate) at_least: HealthStatus,
    pub(crate) count: usize,
    pub(crate) then: HealthStatus,
}

impl fmt::Debug for StatusRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusRules")
            .field("mappings", &self.mappings)
            .field("thresholds", &self.thresholds)
            .field("custom", &self.custom.len())
            .finish()
    }
}

impl StatusRules {
    /// How a component of `kind` reporting `status` counts.
    pub(crate) fn counted(&self, kind: &ComponentKind, status: HealthStatus) -> HealthStatus {
        self.mappings
            .iter()
            .find(|(k, from, _)| *from == status && k.as_ref().is_none_or(|k| k == kind))
            .map_or(status, |(_, _, to)| *to)
    }

    /// The overall status of `components` (already carrying their counted
    /// status).
    pub(crate) fn overall(&self, components: &[ComponentReport]) -> HealthStatus {
        let mut overall = components
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(HealthStatus::Healthy);
        for t in &self.thresholds {
            let n = components
                .iter()
                .filter(|c| c.status >= t.at_least && t.kind.as_ref().is_none_or(|k| *k == c.kind))
                .count();
            if n >= t.count {
                overall = overall.max(t.then);
            }
        }
        for rule in &self.custom {
            if let Some(s) = rule(components) {
                overall = overall.max(s);
            }
        }
        overall
    }
}

/// Builds a [`Registry`] with its [`StatusRules`] and event capacity.
///
/// ```
/// use battlement_core::{ComponentKind, HealthStatus};
/// use battlement_registry::Registry;
///
/// let registry = Registry::builder()
///     // Any open breaker takes the system down, not just degrades it.
///     .map_status(Some(ComponentKind::Breaker), HealthStatus::Degraded, HealthStatus::Unhealthy)
///     // Two degraded components of any kind make it unhealthy.
///     .escalate_when(None, HealthStatus::Degraded, 2, HealthStatus::Unhealthy)
///     .event_capacity(256)
///     .build()
///     .unwrap();
/// assert_eq!(registry.health().status, HealthStatus::Healthy);
/// ```
#[derive(Debug, Clone)]
pub struct RegistryBuilder {
    rules: StatusRules,
    event_capacity: usize,
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        RegistryBuilder {
            rules: StatusRules::default(),
            event_capacity: 1024,
        }
    }
}

impl RegistryBuilder {
    /// A builder with the defaults: no mappings, no thresholds, no custom
    /// rules (overall = worst component status), 1024 buffered events.
    pub fn new() -> Self {
        RegistryBuilder::default()
    }

    /// A component of `kind` (any kind with `None`) that reports `from`
    /// counts as `to`. Default: none, a status counts as reported.
    #[must_use]
    pub fn map_status(
        mut self,
        kind: Option<ComponentKind>,
        from: HealthStatus,
        to: HealthStatus,
    ) -> Self {
        self.rules.mappings.push((kind, from, to));
        self
    }

    /// When `count` or more components of `kind` (any kind with `None`)
    /// count as `at_least` or worse, the overall status is at least `then`.
    /// Default: none. `count` must be at least 1.
    #[must_use]
    pub fn escalate_when(
        mut self,
        kind: Option<ComponentKind>,
        at_least: HealthStatus,
        count: usize,
        then: HealthStatus,
    ) -> Self {
        self.rules.thresholds.push(Threshold {
            kind,
            at_least,
            count,
            then,
        });
        self
    }

    /// A custom rule over every component's report; it may name an overall
    /// status (it can only make it worse). Default: none.
    #[must_use]
    pub fn rule(
        mut self,
        rule: impl Fn(&[ComponentReport]) -> Option<HealthStatus> + Send + Sync + 'static,
    ) -> Self {
        self.rules.custom.push(Arc::new(rule));
        self
    }

    /// How many events the broadcast channel buffers for each subscriber
    /// before the slowest loses the oldest. Default: 1024; must be in
    /// `1..=1_048_576`.
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// The registry, or the setting that is out of bounds.
    pub fn build(self) -> Result<Registry, InvalidConfig> {
        if !(1..=1 << 20).contains(&self.event_capacity) {
            return Err(InvalidConfig::new(
                "registry",
                "event_capacity",
                self.event_capacity,
                "must be in 1..=1048576",
            ));
        }
        if let Some(t) = self.rules.thresholds.iter().find(|t| t.count == 0) {
            return Err(InvalidConfig::new(
                "registry",
                "escalate_when.count",
                t.count,
                "must be at least 1",
            ));
        }
        Ok(Registry::from_parts(self.rules, self.event_capacity))
    }
}
