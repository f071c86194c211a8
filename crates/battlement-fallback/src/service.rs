//! [`FallbackService`]: the service a [`FallbackLayer`](crate::FallbackLayer)
//! wraps around another.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use battlement_core::{AsComponent, BoxError, Classify, Component};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::shared::{Handle, Shared};

/// Calls the inner (primary) service and, when its result is a failure
/// that triggers the fallback, answers from the fallback sources.
pub struct FallbackService<S, Req, Res, K = crate::NoKey, C = battlement_core::ErrorClassifier>
where
    Req: 'static,
    Res: 'static,
    K: 'static,
    C: 'static,
{
    inner: S,
    shared: Handle<Shared<Req, Res, K, C>>,
}

impl<S, Req: 'static, Res: 'static, K: 'static, C: 'static> FallbackService<S, Req, Res, K, C> {
    pub(crate) fn new(inner: S, shared: Handle<Shared<Req, Res, K, C>>) -> Self {
        FallbackService { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, Req: 'static, Res: 'static, K: 'static, C: 'static> Clone
    for FallbackService<S, Req, Res, K, C>
{
    fn clone(&self) -> Self {
        FallbackService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, Req: 'static, Res: 'static, K: 'static, C: 'static> fmt::Debug
    for FallbackService<S, Req, Res, K, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackService")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, Req, Res, K, C> AsComponent for FallbackService<S, Req, Res, K, C>
where
    Req: 'static,
    Res: 'static,
    K: 'static,
    C: Send + Sync + 'static,
{
    fn as_component(&self) -> Arc<dyn Component> {
        self.shared.arc()
    }
}

impl<S, Req, Res, K, C> Service<Req> for FallbackService<S, Req, Res, K, C>
where
    S: Service<Req, Response = Res>,
    S::Error: Into<BoxError>,
    C: Classify<Res, BoxError> + Send + Sync + 'static,
    Req: Send + 'static,
    Res: Send + 'static,
    K: Send + Sync + 'static,
{
    type Response = Res;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, Req, Res, K, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        let key = match &self.shared.key {
            Some(f) => f(&req),
            None => None,
        };
        let copy = self.shared.clone_req.map(|clone| clone(&req));
        // Everything else first: the inner future is then built in place.
        let shared = self.shared.clone();
        ResponseFuture::new(self.inner.call(req), shared, key, copy)
    }
}
