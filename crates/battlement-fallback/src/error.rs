//! The errors a fallback source may report inside
//! [`FallbackFailed`](battlement_core::FallbackFailed).

use battlement_core::FailureKind;

/// A fallback service answered `Ok`, but the classifier called the response
/// a failure (an HTTP 503 from the secondary, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("fallback service answered with a failure response ({kind})")]
pub struct FailureResponse {
    /// How the classifier judged the response.
    pub kind: FailureKind,
}

/// The last-known-good cache had no usable response for the request (no
/// key, never stored, evicted, or older than its maximum age).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, thiserror::Error)]
#[error("no usable cached response")]
pub struct CacheMiss;
