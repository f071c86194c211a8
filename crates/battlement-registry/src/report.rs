//! [`HealthReport`]: what [`Registry::health`](crate::Registry::health)
//! returns, ready for serde.

use std::collections::BTreeMap;

use battlement_core::{ComponentKind, Details, HealthStatus, Metric, Name};
use serde::Serialize;

/// The health of the whole system and of each registered component.
///
/// Serialised (for example by the HTTP health endpoint) as:
///
/// ```json
/// {
///   "status": "degraded",
///   "timestamp_unix_ms": 1767225600000,
///   "uptime_seconds": 3600.5,
///   "summary": { "total": 2, "healthy": 1, "degraded": 1, "unhealthy": 0 },
///   "by_kind": { "breaker": { "total": 1, "healthy": 0, "degraded": 1, "unhealthy": 0 }, ... },
///   "components": [ { "name": "payments", "kind": "breaker", "status": "degraded",
///                     "reported_status": "degraded", "last_change_unix_ms": 1767225000000,
///                     "details": { "state": "open", ... } }, ... ]
/// }
/// ```
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// The overall status, by the registry's [`StatusRules`](crate::StatusRules).
    pub status: HealthStatus,
    /// When the report was made, in milliseconds since the Unix epoch.
    pub timestamp_unix_ms: u64,
    /// The process's uptime when the report was made, in seconds: the
    /// time since its first `Registry` was made (on tokio's clock, so
    /// exact on paused time).
    pub uptime_seconds: f64,
    /// How many components count as each status.
    pub summary: StatusCounts,
    /// The same counts per kind of component (keyed by the kind's name).
    pub by_kind: BTreeMap<String, StatusCounts>,
    /// Every live component, sorted by name.
    pub components: Vec<ComponentReport>,
}

impl HealthReport {
    /// The component called `name`, if it is in the report.
    pub fn component(&self, name: &str) -> Option<&ComponentReport> {
        self.components
            .binary_search_by(|c| (*c.name).cmp(name))
            .ok()
            .map(|i| &self.components[i])
    }
}

/// How many components count as each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    /// All of them.
    pub total: usize,
    /// Counted `Healthy`.
    pub healthy: usize,
    /// Counted `Degraded`.
    pub degraded: usize,
    /// Counted `Unhealthy` (the "failed" of other health APIs).
    pub unhealthy: usize,
}

impl StatusCounts {
    pub(crate) fn add(&mut self, status: HealthStatus) {
        self.total += 1;
        match status {
            HealthStatus::Healthy => self.healthy += 1,
            HealthStatus::Degraded => self.degraded += 1,
            HealthStatus::Unhealthy => self.unhealthy += 1,
        }
    }
}

/// One component's health as the registry sees it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ComponentReport {
    /// Its unique name (shared with the registry: a report copies no name).
    pub name: Name,
    /// Its kind.
    pub kind: ComponentKind,
    /// The status it counts as, after the registry's mappings.
    pub status: HealthStatus,
    /// The status it reported itself.
    pub reported_status: HealthStatus,
    /// When it last changed, in milliseconds since the Unix epoch: its
    /// registration, a change of its counted status (seen when a report
    /// is made), or an event that is a change (a state or level change, a
    /// reset) sent to the registry's `event_sink`, whichever is latest.
    pub last_change_unix_ms: u64,
    /// Its details (state, calls, rates, latency, ...).
    pub details: Details,
    /// Its numeric figures, for metrics exposition (not serialised).
    #[serde(skip)]
    pub metrics: Vec<Metric>,
}
