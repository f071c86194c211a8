#![doc = include_str!("docs/overview.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod circuit;
mod classify;
pub mod clock;
mod component;
pub mod deadline;
mod error;
mod event;
pub mod histogram;
mod level;
mod name;
mod outcome;
#[cfg(feature = "reqwest")]
mod reqwest;
mod shared_ref;
mod striped;

pub use circuit::CircuitState;
pub use classify::{AsDynError, Classify, ErrorClassifier, ResponseClassifier};
pub use component::{
    AsComponent, Component, ComponentHealth, ComponentKind, Control, ControlError, Details,
    HealthStatus, Metric, MetricType,
};
pub use deadline::{Deadline, DeadlineCarrier};
pub use error::{
    AllFailed, AttemptTimedOut, BoxError, BulkheadFull, CircuitOpen, DeadlineExceeded,
    FallbackFailed, InvalidConfig, LimitExceeded, Name, QuorumNotReached, RetriesExhausted,
    RetryStop, Shed, Throttled,
};
pub use event::{Event, EventKind, EventListener, EventLog, EventSink, Reason};
pub use level::{Level, ParseNameError, Priority};
pub use outcome::{Failure, FailureKind, Outcome};
pub use shared_ref::{Leak, SharedRef};
pub use striped::{Line, STRIPES, Striped};
