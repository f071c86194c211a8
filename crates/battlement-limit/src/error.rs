//! The errors of the three, defined in `battlement-core` so every layer's
//! [`ErrorClassifier`](battlement_core::ErrorClassifier) (retry, fallback,
//! breaker) and `battlement-http`'s response mapping already know them:
//! [`BulkheadFull`] and [`LimitExceeded`] are
//! [`FailureKind::Rejected`](battlement_core::FailureKind::Rejected), not
//! retryable, with their `retry_after`, and answer HTTP 503 with
//! `Retry-After`. A [`KeyedBreaker`](crate::KeyedBreaker) refuses with the
//! breaker's [`CircuitOpen`].

pub use battlement_core::{BulkheadFull, CircuitOpen, LimitExceeded};
