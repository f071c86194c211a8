//! **battlement**: Tower middleware that makes any `tower::Service`
//! resilient.
//!
//! This is the facade: it re-exports the shared vocabulary of
//! [`battlement_core`] and, behind a feature named after each (all on by
//! default), every layer crate of the workspace. Use it when you want the
//! whole kit through one dependency; depend on a layer crate alone when you
//! want just that layer.
//!
//! ```
//! use battlement::prelude::*;
//!
//! let outcome = ErrorClassifier::new()
//!     .classify(&Err::<(), BoxError>("boom".into()));
//! assert_eq!(outcome, Outcome::failure(FailureKind::Unknown));
//! ```

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

#[cfg(feature = "http")]
#[doc(inline)]
pub use battlement_http as http;

/// The names most stacks need, in one import: `use battlement::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "breaker")]
    pub use battlement_breaker::{Breaker, BreakerLayer};
    pub use battlement_core::{
        BoxError, CircuitOpen, CircuitState, Classify, Component, ComponentHealth, Control,
        Deadline, DeadlineCarrier, DeadlineExceeded, ErrorClassifier, Event, EventKind, EventSink,
        Failure, FailureKind, HealthStatus, Level, Outcome, Priority, RetriesExhausted, Shed,
    };
    #[cfg(feature = "deadline")]
    pub use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
    #[cfg(feature = "fallback")]
    pub use battlement_fallback::{CacheConfig, FallbackLayer};
    #[cfg(feature = "fanout")]
    pub use battlement_fanout::{FanOut, HedgeLayer, Strategy};
    #[cfg(feature = "gate")]
    pub use battlement_gate::{AdaptiveThrottle, Gate, GateLayer, Governor, Rule, ThrottleLayer};
    #[cfg(feature = "http")]
    pub use battlement_http::HealthService;
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
