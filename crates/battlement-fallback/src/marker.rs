//! How a response served by fallback is marked: [`Fallback`] and
//! [`Source`].

use std::fmt;

use battlement_core::{FailureKind, Name};

/// The name of the header [`FallbackBuilder::http_header`] adds to HTTP
/// responses served by fallback; its value is the source
/// (`value`, `cache`, `cache_stale` or a service's name).
///
/// [`FallbackBuilder::http_header`]: crate::FallbackBuilder::http_header
pub const HEADER: &str = "x-battlement-fallback";

/// Which source answered instead of the primary.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// A value or a closure (`.value(..)`, `.value_fn(..)`).
    Value,
    /// A fallback service, by the name it was given.
    Service(Name),
    /// The last-known-good cache, with a response younger than its TTL.
    Cache,
    /// The last-known-good cache, with a response older than its TTL but
    /// younger than its maximum age.
    StaleCache,
}

impl Source {
    /// The source's name: `value`, `cache`, `cache_stale`, or the service's
    /// name.
    pub fn as_str(&self) -> &str {
        match self {
            Source::Value => "value",
            Source::Service(name) => name,
            Source::Cache => "cache",
            Source::StaleCache => "cache_stale",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The marker of a response served by fallback: which source answered and
/// the kind of the primary's failure.
///
/// Inserted into the extensions of an `http::Response` when the layer was
/// built with [`http_marker`](crate::FallbackBuilder::http_marker) (or
/// [`http_header`](crate::FallbackBuilder::http_header)); for other response
/// types, hand it to your own hook with
/// [`on_fallback`](crate::FallbackBuilder::on_fallback).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fallback {
    /// The source that answered.
    pub source: Source,
    /// The kind of the primary's failure.
    pub reason: FailureKind,
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "served by {} ({})", self.source, self.reason)
    }
}

/// Inserts `marker` into the response's extensions.
#[cfg(feature = "http")]
pub(crate) fn mark_extension<B>(res: &mut http::Response<B>, marker: &Fallback) {
    res.extensions_mut().insert(marker.clone());
}

/// Inserts `marker` into the response's extensions and sets the
/// [`HEADER`] to its source.
#[cfg(feature = "http")]
pub(crate) fn mark_header<B>(res: &mut http::Response<B>, marker: &Fallback) {
    if let Ok(value) = http::HeaderValue::from_str(marker.source.as_str()) {
        res.headers_mut()
            .insert(http::HeaderName::from_static(HEADER), value);
    }
    res.extensions_mut().insert(marker.clone());
}
