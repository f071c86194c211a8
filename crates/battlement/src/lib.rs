#![doc = include_str!("docs/overview.md")]
// A policy's builder carries each part's type (so an absent part costs
// nothing); its signatures are long by design.
#![allow(clippy::type_complexity)]

mod builder;
#[cfg(feature = "policy")]
pub mod config;
#[cfg(feature = "policy")]
mod error;
#[cfg(feature = "policy")]
mod policy;
#[cfg(all(feature = "policy", feature = "http"))]
mod presets;
#[cfg(feature = "policy")]
mod protect;
#[cfg(feature = "policy")]
mod toggle;

pub use builder::ServiceBuilderExt;
#[cfg(feature = "policy")]
pub use config::{ConfigError, PolicyConfig};
#[cfg(feature = "policy")]
pub use error::{Check, Conflict, PolicyError};
#[cfg(feature = "policy")]
pub use policy::{
    AttemptPart, BreakerPart, BuildContext, BulkheadPart, DeadlinePart, FallbackClassifier,
    FallbackPart, GatePart, InstrumentPart, KeyedPart, LimitedPart, NoFallback, NoGate,
    NoInstrument, Policy, PolicyBuilder, RetryPart, WithFallback, WithGate, WithInstrument,
};
#[cfg(all(feature = "policy", feature = "http"))]
pub use presets::{AnyMethod, IDEMPOTENCY_KEY, Idempotent};
#[cfg(feature = "policy")]
pub use protect::{BulkheadSpec, KeyedSpec, LimitSpec, Protect, ProtectPart, ProtectSlot};
#[cfg(feature = "policy")]
pub use toggle::{Toggle, ToggleFuture};

#[doc(inline)]
pub use battlement_core::*;

/// The shared vocabulary itself, for paths like `battlement::core::Outcome`.
pub use battlement_core as core;

#[cfg(feature = "breaker")]
#[doc(inline)]
pub use battlement_breaker as breaker;

#[cfg(feature = "fallback")]
#[doc(inline)]
pub use battlement_fallback as fallback;

#[cfg(feature = "retry")]
#[doc(inline)]
pub use battlement_retry as retry;

#[cfg(feature = "deadline")]
#[doc(inline)]
pub use battlement_deadline as deadline;

#[cfg(feature = "fanout")]
#[doc(inline)]
pub use battlement_fanout as fanout;

#[cfg(feature = "gate")]
#[doc(inline)]
pub use battlement_gate as gate;

#[cfg(feature = "registry")]
#[doc(inline)]
pub use battlement_registry as registry;

#[cfg(feature = "limit")]
#[doc(inline)]
pub use battlement_limit as limit;

#[cfg(feature = "http")]
#[doc(inline)]
pub use battlement_http as http;

/// Fault injection (`battlement-chaos`), **a testing tool** to rehearse
/// failures: behind the `chaos` feature, which is not a default one, so a
/// production build does not carry it by accident.
#[cfg(feature = "chaos")]
#[doc(inline)]
pub use battlement_chaos as chaos;

/// The names most stacks need, in one import: `use battlement::prelude::*;`.
pub mod prelude {
    pub use crate::ServiceBuilderExt;
    #[cfg(all(feature = "policy", feature = "http"))]
    pub use crate::{AnyMethod, Idempotent};
    #[cfg(feature = "policy")]
    pub use crate::{Check, Policy, PolicyBuilder, PolicyConfig, PolicyError};
    #[cfg(feature = "breaker")]
    pub use battlement_breaker::{Breaker, BreakerLayer};
    pub use battlement_core::{
        BoxError, CircuitOpen, CircuitState, Classify, Component, ComponentHealth, Control,
        Deadline, DeadlineCarrier, DeadlineExceeded, ErrorClassifier, Event, EventKind, EventLog,
        EventSink, Failure, FailureKind, HealthStatus, Leak, Level, Outcome, Priority,
        RetriesExhausted, Shed,
    };
    #[cfg(all(feature = "deadline", feature = "http"))]
    pub use battlement_deadline::http::{PropagateDeadlineLayer, ServerDeadlineLayer};
    #[cfg(feature = "deadline")]
    pub use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
    #[cfg(feature = "fallback")]
    pub use battlement_fallback::{CacheConfig, FallbackLayer};
    #[cfg(feature = "fanout")]
    pub use battlement_fanout::{FanOut, HedgeLayer, Strategy};
    #[cfg(feature = "gate")]
    pub use battlement_gate::{AdaptiveThrottle, Gate, GateLayer, Governor, Rule, ThrottleLayer};
    #[cfg(feature = "http")]
    pub use battlement_http::{
        GrpcClassifier, HealthService, HttpClassifier, error_response, error_status,
    };
    #[cfg(feature = "limit")]
    pub use battlement_limit::{
        AdaptiveLimit, AdaptiveLimitLayer, Bulkhead, BulkheadFull, BulkheadLayer, KeyedBreaker,
        KeyedBreakerLayer, LimitExceeded,
    };
    #[cfg(feature = "registry")]
    pub use battlement_registry::{HealthReport, InstrumentLayer, Registry};
    #[cfg(feature = "retry")]
    pub use battlement_retry::{Backoff, Jitter, RetryBudget, RetryLayer, RetryPolicy};
}

/// The README's example, compiled and run as a doctest so it cannot rot.
#[cfg(all(
    doctest,
    feature = "breaker",
    feature = "retry",
    feature = "deadline",
    feature = "registry"
))]
#[doc = include_str!("../../../README.md")]
mod readme {}
