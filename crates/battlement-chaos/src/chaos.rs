//! The shared fault injector: [`Chaos`], its schedule clock, its draws and
//! its counters, and the [`Component`] the registry sees.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use battlement_core::{
    AsComponent, BoxError, Component, ComponentHealth, ComponentKind, Control, ControlError,
    Details, EventKind, EventSink, FailureKind, HealthStatus, Metric, MetricType, Name,
};
use tokio::time::Instant;

use crate::rng::{Draws, Slot, phase_seed};
use crate::{ChaosBuilder, ChaosLayer, HttpFault, Injected, Phase, PhaseAt, Schedule};

/// Makes the error of an injected failure instead of [`Injected`].
pub(crate) type ErrorFn = Arc<dyn Fn(FailureKind) -> BoxError + Send + Sync>;

/// A fault injector: a [`Schedule`] of [`Phase`]s, a seed, on/off, and
/// counts of what it injected. **A testing tool**: put it in a stack to
/// rehearse failures, never by accident in production (the facade's
/// `chaos` feature is off by default).
///
/// A cheap cloneable handle; every [`ChaosLayer`] made from it, and the
/// registry, share the same schedule clock, draws and counters.
///
/// ```
/// use std::time::Duration;
/// use battlement_chaos::{Chaos, FailureKind, Phase};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let chaos = Chaos::builder("db")
///     .seed(7)
///     .phase(Phase::new("flaky", Duration::from_secs(60)).error_ratio(0.1, FailureKind::Network))
///     .build()
///     .unwrap();
/// assert!(chaos.is_enabled());
/// assert_eq!(chaos.current().unwrap().phase.name().as_ref(), "flaky");
/// chaos.disable(); // every call passes through until `enable()`
/// assert_eq!(chaos.stats().errors, 0);
/// # }
/// ```
#[derive(Clone)]
pub struct Chaos {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) name: Name,
    schedule: Schedule,
    seed: u64,
    enabled: AtomicBool,
    /// When the `Chaos` was built; `start` counts from it.
    origin: Instant,
    /// The schedule's start, in nanoseconds after `origin`.
    start: AtomicU64,
    phases: Box<[PhaseState]>,
    /// The last phase a call or a report saw (see [`Shared::epoch`]).
    seen: AtomicU64,
    passed: AtomicU64,
    delayed: AtomicU64,
    responses: AtomicU64,
    errors: [AtomicU64; FailureKind::ALL.len()],
    error_fn: Option<ErrorFn>,
    events: EventSink,
}

/// One phase's own draws.
struct PhaseState {
    seed: u64,
    /// Calls that drew in this phase since the start: the next call's
    /// number.
    calls: AtomicU64,
    healthy: bool,
}

/// What one call gets.
#[derive(Debug)]
pub(crate) enum Decision<'a> {
    /// Nothing: call the inner service.
    Pass,
    /// A delay first, a fault instead of the call, or both.
    Inject {
        phase: &'a Phase,
        delay: Option<Duration>,
        fault: Option<Fault>,
    },
}

/// A fault instead of the call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    Error(FailureKind),
    Respond(HttpFault),
}

/// `seen` before any call, and once the schedule is finished.
const NONE_SEEN: u64 = 0;
const FINISHED: u64 = u64::MAX;

impl Chaos {
    /// A builder for a fault injector named `name`.
    pub fn builder(name: impl Into<Name>) -> ChaosBuilder {
        ChaosBuilder::new(name)
    }

    /// A fault injector named `name` that never injects anything (no
    /// phases): its layer passes every call straight through.
    pub fn off(name: impl Into<Name>) -> Chaos {
        ChaosBuilder::new(name)
            .build()
            .expect("a schedule without phases is valid")
    }

    pub(crate) fn from_builder(b: ChaosBuilder, schedule: Schedule) -> Chaos {
        let phases = schedule
            .phases()
            .iter()
            .enumerate()
            .map(|(i, p)| PhaseState {
                seed: phase_seed(b.seed, i),
                calls: AtomicU64::new(0),
                healthy: p.is_healthy(),
            })
            .collect();
        let enabled = b.enabled && !schedule.phases().is_empty();
        Chaos {
            shared: Arc::new(Shared {
                name: b.name,
                schedule,
                seed: b.seed,
                enabled: AtomicBool::new(enabled),
                origin: Instant::now(),
                start: AtomicU64::new(0),
                phases,
                seen: AtomicU64::new(NONE_SEEN),
                passed: AtomicU64::new(0),
                delayed: AtomicU64::new(0),
                responses: AtomicU64::new(0),
                errors: Default::default(),
                error_fn: b.error_fn,
                events: b.events,
            }),
        }
    }

    /// A layer that injects this schedule's faults into a service of any
    /// request and response type; response faults become errors. See
    /// [`http_layer`](Self::http_layer) for HTTP services.
    pub fn layer(&self) -> ChaosLayer {
        ChaosLayer::new(self.clone())
    }

    /// A layer for `http::Request` / `http::Response<B>` services that
    /// answers response faults with synthetic responses
    /// (`ChaosLayer::new(chaos).http()`).
    #[cfg(feature = "http")]
    pub fn http_layer(&self) -> ChaosLayer<crate::HttpResponses> {
        self.layer().http()
    }

    /// The name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.shared.schedule
    }

    /// The seed of the draws (given, or drawn at build and shown here and
    /// in the registry so the run can be repeated).
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// `true` while it injects (enabled, with at least one phase).
    pub fn is_enabled(&self) -> bool {
        self.shared.enabled.load(Relaxed)
    }

    /// Injects again, from wherever the schedule's clock is (use
    /// [`start`](Self::start) to begin from the first phase). Returns
    /// `false`, and stays off, when the schedule has no phases.
    pub fn enable(&self) -> bool {
        self.shared.set_enabled(true)
    }

    /// Stops injecting: every call passes straight through, uncounted.
    /// The schedule's clock keeps running.
    pub fn disable(&self) {
        self.shared.set_enabled(false);
    }

    /// Starts the schedule again from its first phase, now, and every
    /// phase's draws from their first call, so the run repeats; the
    /// counters are kept (they are monotonic). The schedule also starts
    /// when the `Chaos` is built. [`Control::Reset`] does the same.
    pub fn start(&self) {
        self.shared.restart();
    }

    /// The time since the schedule's start.
    pub fn elapsed(&self) -> Duration {
        self.shared.elapsed()
    }

    /// The phase in force `elapsed` after the start: see
    /// [`Schedule::phase_at`].
    pub fn phase_at(&self, elapsed: Duration) -> Option<PhaseAt<'_>> {
        self.shared.schedule.phase_at(elapsed)
    }

    /// The phase in force now; `None` when there is none (finished, or no
    /// phases).
    pub fn current(&self) -> Option<PhaseAt<'_>> {
        self.phase_at(self.elapsed())
    }

    /// What it has injected so far.
    pub fn stats(&self) -> ChaosStats {
        self.shared.stats()
    }
}

/// What a [`Chaos`] has injected: monotonic counters, never reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChaosStats {
    /// Calls that went to the inner service unchanged while the chaos was
    /// enabled (calls while disabled are not counted).
    pub passed: u64,
    /// Calls delayed before being called or answered.
    pub delayed: u64,
    /// Calls answered with a synthetic response.
    pub responses: u64,
    /// Calls failed with an injected error.
    pub errors: u64,
    /// The injected errors by kind, indexed by [`FailureKind::index`].
    pub errors_by_kind: [u64; FailureKind::ALL.len()],
}

impl ChaosStats {
    /// Injected errors of `kind`.
    pub fn errors_of(&self, kind: FailureKind) -> u64 {
        self.errors_by_kind[kind.index()]
    }
}

impl Shared {
    #[inline]
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    fn elapsed(&self) -> Duration {
        let start = Duration::from_nanos(self.start.load(Relaxed));
        Instant::now()
            .saturating_duration_since(self.origin)
            .saturating_sub(start)
    }

    /// What the next call gets. Counts passes and delays; the caller
    /// counts the fault it delivers ([`count_error`](Self::count_error),
    /// [`count_response`](Self::count_response)).
    #[inline]
    pub(crate) fn decide(&self) -> Decision<'_> {
        let Some((index, cycle, _)) = self.schedule.locate(self.elapsed()) else {
            self.saw(FINISHED);
            return self.pass();
        };
        self.saw(self.epoch(index, cycle));
        let state = &self.phases[index];
        if state.healthy {
            return self.pass();
        }
        let phase = &self.schedule.phases()[index];
        let draws = Draws::new(state.seed, state.calls.fetch_add(1, Relaxed));
        let delay = match phase.latency {
            Some((ratio, latency)) if draws.unit(Slot::Latency) < ratio => {
                Some(latency.sample(draws))
            }
            _ => None,
        };
        // One draw splits the calls: [0, response) answered,
        // [response, response + error) failed, the rest called.
        let u = draws.unit(Slot::Fault);
        let response = phase.response.map_or(0.0, |r| r.0);
        let fault = match (phase.response, phase.error) {
            (Some((r, fault)), _) if u < r => Some(Fault::Respond(fault)),
            (_, Some((e, kind))) if u < response + e => Some(Fault::Error(kind)),
            _ => None,
        };
        if delay.is_none() && fault.is_none() {
            return self.pass();
        }
        if delay.is_some() {
            self.delayed.fetch_add(1, Relaxed);
        }
        Decision::Inject {
            phase,
            delay,
            fault,
        }
    }

    #[inline]
    fn pass(&self) -> Decision<'_> {
        self.passed.fetch_add(1, Relaxed);
        Decision::Pass
    }

    /// The error of an injected failure of `kind` in `phase`, counted.
    pub(crate) fn error(&self, kind: FailureKind, phase: &Phase) -> BoxError {
        self.errors[kind.index()].fetch_add(1, Relaxed);
        match &self.error_fn {
            Some(f) => f(kind),
            None => Box::new(Injected::new(self.name.clone(), phase.name.clone(), kind)),
        }
    }

    /// Counts a synthetic response.
    pub(crate) fn count_response(&self) {
        self.responses.fetch_add(1, Relaxed);
    }

    /// A number for each (cycle, phase) pass, above [`NONE_SEEN`] and
    /// below [`FINISHED`].
    fn epoch(&self, index: usize, cycle: u64) -> u64 {
        let n = self.phases.len() as u64;
        cycle
            .saturating_mul(n)
            .saturating_add(index as u64 + 1)
            .min(FINISHED - 1)
    }

    /// Tells the event sink when the phase in force changed since the
    /// last call or report saw it.
    #[inline]
    fn saw(&self, epoch: u64) {
        if self.seen.load(Relaxed) != epoch && self.seen.swap(epoch, Relaxed) != epoch {
            self.announce(epoch);
        }
    }

    #[cold]
    fn announce(&self, epoch: u64) {
        let detail = || match self.schedule.phase_at(self.elapsed()) {
            Some(at) if epoch != FINISHED => format!(
                "phase {} `{}` for {:?} (cycle {})",
                at.index,
                at.phase.name(),
                at.remaining,
                at.cycle
            ),
            _ => "schedule finished: every call passes through".to_owned(),
        };
        self.events.emit(&self.name, || EventKind::Custom {
            name: Cow::Borrowed("phase"),
            detail: detail(),
        });
    }

    fn set_enabled(&self, on: bool) -> bool {
        let on = on && !self.phases.is_empty();
        if self.enabled.swap(on, Relaxed) != on {
            let name = if on { "enabled" } else { "disabled" };
            self.events.emit(&self.name, || EventKind::Custom {
                name: Cow::Borrowed(name),
                detail: format!("fault injection {name} by hand"),
            });
        }
        on
    }

    fn restart(&self) {
        let now = Instant::now().saturating_duration_since(self.origin);
        self.start
            .store(u64::try_from(now.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        for phase in &self.phases {
            phase.calls.store(0, Relaxed);
        }
        self.seen.store(NONE_SEEN, Relaxed);
        self.events.emit(&self.name, || EventKind::Reset);
    }

    fn stats(&self) -> ChaosStats {
        let errors_by_kind = std::array::from_fn(|i| self.errors[i].load(Relaxed));
        ChaosStats {
            passed: self.passed.load(Relaxed),
            delayed: self.delayed.load(Relaxed),
            responses: self.responses.load(Relaxed),
            errors: errors_by_kind.iter().sum(),
            errors_by_kind,
        }
    }
}

impl fmt::Debug for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.shared, f)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("name", &self.name)
            .field("enabled", &self.is_enabled())
            .field("seed", &self.seed)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

impl Component for Shared {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Chaos
    }

    /// `Degraded` while an enabled chaos is in a phase that injects
    /// something (the rehearsal is on), `Healthy` otherwise.
    fn health(&self) -> ComponentHealth {
        let enabled = self.is_enabled();
        let elapsed = self.elapsed();
        let at = self.schedule.phase_at(elapsed);
        let injecting = enabled && at.is_some_and(|at| !at.phase.is_healthy());
        let stats = self.stats();
        let mut by_kind = Details::new();
        for kind in FailureKind::ALL {
            let n = stats.errors_of(kind);
            if n > 0 {
                by_kind.insert(kind.as_str(), n);
            }
        }
        let injected: Details = [
            ("errors", stats.errors),
            ("latency", stats.delayed),
            ("responses", stats.responses),
        ]
        .into_iter()
        .collect();
        let mut injected = injected;
        injected.insert("errors_by_kind", by_kind);
        let status = if injecting {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut health = ComponentHealth::new(status)
            .detail("enabled", enabled)
            .detail("injecting", injecting)
            .detail("phase", at.map(|at| at.phase.name().as_ref()))
            .detail("phase_index", at.map(|at| at.index))
            .detail("phase_remaining_ms", at.map(|at| ms(at.remaining)))
            .detail("cycle", at.map(|at| at.cycle))
            .detail("finished", at.is_none() && !self.phases.is_empty())
            .detail("phases", self.phases.len())
            .detail("repeat", self.schedule.repeats())
            .detail("elapsed_ms", ms(elapsed))
            .detail("seed", self.seed)
            .detail("injected", injected)
            .detail("passed", stats.passed);
        for (fault, value) in [
            ("error", stats.errors),
            ("latency", stats.delayed),
            ("response", stats.responses),
        ] {
            health = health.labelled_metric(Metric {
                name: "injected_total",
                help: "Faults injected, by fault.",
                kind: MetricType::Counter,
                labels: vec![("fault", Cow::Borrowed(fault))],
                value: value as f64,
            });
        }
        health
            .metric(
                "passed_total",
                "Calls passed through unchanged while enabled.",
                MetricType::Counter,
                stats.passed as f64,
            )
            .metric(
                "enabled",
                "1 while fault injection is on.",
                MetricType::Gauge,
                if enabled { 1.0 } else { 0.0 },
            )
            .metric(
                "phase",
                "The index of the phase in force (-1 for none).",
                MetricType::Gauge,
                at.map_or(-1.0, |at| at.index as f64),
            )
    }

    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::Reset => self.restart(),
            Control::Disable => {
                self.set_enabled(false);
            }
            Control::Enable => {
                if !self.set_enabled(true) {
                    return Err(ControlError::Refused {
                        component: self.name.to_string(),
                        control: control.to_string(),
                        reason: "the schedule has no phases".to_owned(),
                    });
                }
            }
            other => return Err(ControlError::unsupported(&self.name, other)),
        }
        Ok(())
    }
}

impl AsComponent for Chaos {
    fn as_component(&self) -> Arc<dyn Component> {
        self.shared.clone()
    }
}

impl Component for Chaos {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Chaos
    }

    fn health(&self) -> ComponentHealth {
        self.shared.health()
    }

    fn control(&self, control: &Control) -> Result<(), ControlError> {
        self.shared.control(control)
    }
}
