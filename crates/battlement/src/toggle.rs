//! [`Toggle`]: a part of a [`Policy`](crate::Policy) that is on or off at
//! run time (so a config file can turn it off) without changing the type
//! of the stack.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use battlement_core::BoxError;
use pin_project_lite::pin_project;
use tower_service::Service;

/// Either the layer's service (`On`) or the service it would have wrapped
/// (`Off`). Both sides' errors become [`BoxError`], as every layer's do;
/// a boxed error passes through unchanged (no allocation).
#[derive(Clone)]
pub enum Toggle<On, Off> {
    /// The part is on: calls go through its service.
    On(On),
    /// The part is off: calls go straight to the inner service.
    Off(Off),
}

impl<On, Off> fmt::Debug for Toggle<On, Off>
where
    On: fmt::Debug,
    Off: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Toggle::On(s) => f.debug_tuple("On").field(s).finish(),
            Toggle::Off(s) => f.debug_tuple("Off").field(s).finish(),
        }
    }
}

impl<On, Off> Toggle<On, Off> {
    /// `Some(layer)` wraps `inner` in it, `None` leaves `inner` alone.
    pub(crate) fn wrap<L>(layer: Option<&L>, inner: Off) -> Self
    where
        L: tower_layer::Layer<Off, Service = On>,
    {
        match layer {
            Some(layer) => Toggle::On(layer.layer(inner)),
            None => Toggle::Off(inner),
        }
    }

    /// `true` when the part is on.
    pub fn is_on(&self) -> bool {
        matches!(self, Toggle::On(_))
    }
}

impl<On, Off, Req> Service<Req> for Toggle<On, Off>
where
    On: Service<Req>,
    On::Error: Into<BoxError>,
    Off: Service<Req, Response = On::Response>,
    Off::Error: Into<BoxError>,
{
    type Response = On::Response;
    type Error = BoxError;
    type Future = ToggleFuture<On::Future, Off::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Toggle::On(s) => s.poll_ready(cx).map_err(Into::into),
            Toggle::Off(s) => s.poll_ready(cx).map_err(Into::into),
        }
    }

    // Always inlined: out of line, the part's future is built in a
    // temporary and copied into the `ToggleFuture` (callgrind: a memcpy of
    // the whole inner future per part and call).
    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Toggle::On(s) => ToggleFuture {
                kind: Kind::On { inner: s.call(req) },
            },
            Toggle::Off(s) => ToggleFuture {
                kind: Kind::Off { inner: s.call(req) },
            },
        }
    }
}

pin_project! {
    /// The response future of a [`Toggle`].
    #[derive(Debug)]
    pub struct ToggleFuture<A, B> {
        #[pin]
        kind: Kind<A, B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<A, B> {
        On { #[pin] inner: A },
        Off { #[pin] inner: B },
    }
}

impl<A, B, T, EA, EB> Future for ToggleFuture<A, B>
where
    A: Future<Output = Result<T, EA>>,
    B: Future<Output = Result<T, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::On { inner } => inner.poll(cx).map_err(Into::into),
            KindProj::Off { inner } => inner.poll(cx).map_err(Into::into),
        }
    }
}
