#![doc = include_str!("docs/overview.md")]

mod adaptive;
mod algorithm;
mod bulkhead;
mod config;
pub mod error;
pub mod future;
mod keyed;
mod layer;
mod service;
mod slots;
mod sync;

pub use adaptive::AdaptiveLimit;
pub use algorithm::{Aimd, Algorithm, Sample, Vegas};
pub use battlement_core::{BulkheadFull, LimitExceeded};
pub use bulkhead::Bulkhead;
pub use config::{
    AdaptiveLimitBuilder, BulkheadBuilder, KeyedBreakerBuilder, MAX_SLOTS, MAX_WAITING,
};
pub use keyed::{KeyedBreaker, LISTED_OPEN_KEYS};
pub use layer::{AdaptiveLimitLayer, BulkheadLayer, KeyedBreakerLayer};
pub use service::{AdaptiveLimitService, BulkheadService, KeyedBreakerService};
pub use slots::LoadMetrics;
