//! Where a request's [`Priority`] comes from: [`ExtractPriority`].

use battlement_core::Priority;

/// Reads a request's [`Priority`]. `None` means "not said": the gate then
/// uses its default priority ([`GateBuilder::default_priority`](crate::GateBuilder::default_priority)).
///
/// Implemented for closures `Fn(&Req) -> Option<Priority>`, for
/// [`FromExtensions`] (the default) and, with the `http` feature, for
/// [`HeaderPriority`].
pub trait ExtractPriority<Req> {
    /// The request's priority, if it carries one.
    fn priority(&self, req: &Req) -> Option<Priority>;
}

impl<F, Req> ExtractPriority<Req> for F
where
    F: Fn(&Req) -> Option<Priority>,
{
    #[inline]
    fn priority(&self, req: &Req) -> Option<Priority> {
        self(req)
    }
}

/// A request type that can carry a [`Priority`] with it, the way
/// `http::Request` carries one in its extensions.
///
/// Implemented for `http::Request<B>` with the `http` feature; implement it
/// for your own request types to use the default extractor
/// [`FromExtensions`].
pub trait PriorityCarrier {
    /// The priority the request carries, if any.
    fn priority(&self) -> Option<Priority>;
}

#[cfg(feature = "http")]
impl<B> PriorityCarrier for http::Request<B> {
    #[inline]
    fn priority(&self) -> Option<Priority> {
        self.extensions().get::<Priority>().copied()
    }
}

/// The default extractor: the [`Priority`] the request carries
/// ([`PriorityCarrier`]; for `http::Request`, a `Priority` in its
/// extensions).
///
/// ```
/// # #[cfg(feature = "http")] {
/// use battlement_gate::{ExtractPriority, FromExtensions, Priority};
///
/// let mut req = http::Request::new(());
/// assert_eq!(FromExtensions.priority(&req), None);
/// req.extensions_mut().insert(Priority::Low);
/// assert_eq!(FromExtensions.priority(&req), Some(Priority::Low));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FromExtensions;

impl<Req: PriorityCarrier> ExtractPriority<Req> for FromExtensions {
    #[inline]
    fn priority(&self, req: &Req) -> Option<Priority> {
        req.priority()
    }
}

/// Reads the priority from a request header (`x-priority: low` by default;
/// names as [`Priority`]'s `FromStr`, any case), and otherwise from the
/// request's extensions. An unparsable header counts as absent.
///
/// Trust: a client can claim any priority in a header. Use this on
/// internal hops, or strip the header at the edge.
///
/// ```
/// use battlement_gate::{ExtractPriority, HeaderPriority, Priority};
///
/// let req = http::Request::builder().header("x-priority", "sheddable").body(()).unwrap();
/// assert_eq!(HeaderPriority::new().priority(&req), Some(Priority::Sheddable));
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub struct HeaderPriority {
    header: http::HeaderName,
}

#[cfg(feature = "http")]
impl Default for HeaderPriority {
    fn default() -> Self {
        HeaderPriority::new()
    }
}

#[cfg(feature = "http")]
impl HeaderPriority {
    /// Reads the `x-priority` header.
    pub fn new() -> Self {
        HeaderPriority {
            header: http::HeaderName::from_static("x-priority"),
        }
    }

    /// Reads the header `name` instead.
    pub fn header(name: http::HeaderName) -> Self {
        HeaderPriority { header: name }
    }
}

#[cfg(feature = "http")]
impl<B> ExtractPriority<http::Request<B>> for HeaderPriority {
    fn priority(&self, req: &http::Request<B>) -> Option<Priority> {
        req.headers()
            .get(&self.header)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok())
            .or_else(|| req.priority())
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::*;

    #[test]
    fn header_then_extension() {
        let x = HeaderPriority::new();
        let mut req = http::Request::builder()
            .header("x-priority", "HIGH")
            .body(())
            .unwrap();
        req.extensions_mut().insert(Priority::Low);
        assert_eq!(x.priority(&req), Some(Priority::High));
        req.headers_mut()
            .insert("x-priority", http::HeaderValue::from_static("loud"));
        assert_eq!(x.priority(&req), Some(Priority::Low));
        let plain = http::Request::new(());
        assert_eq!(x.priority(&plain), None);
        let custom = HeaderPriority::header(http::HeaderName::from_static("x-prio"));
        let req = http::Request::builder()
            .header("x-prio", "critical")
            .body(())
            .unwrap();
        assert_eq!(custom.priority(&req), Some(Priority::Critical));
    }
}
