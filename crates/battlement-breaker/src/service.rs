//! [`BreakerService`].

use std::task::{Context, Poll};

use battlement_core::{BoxError, Classify, ErrorClassifier};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::{Breaker, Defer, NoDefer};

/// A service guarded by a [`Breaker`]: made by [`BreakerLayer`](crate::BreakerLayer).
///
/// `poll_ready` forwards the inner service's readiness and nothing else;
/// an open breaker refuses in `call` with a ready
/// [`CircuitOpen`](battlement_core::CircuitOpen) error.
#[derive(Debug, Clone)]
pub struct BreakerService<S, C = ErrorClassifier, D = NoDefer> {
    inner: S,
    breaker: Breaker,
    classify: C,
    defer: D,
}

impl<S> BreakerService<S, ErrorClassifier> {
    /// Wraps `inner` in `breaker`, judging results with [`ErrorClassifier`].
    pub const fn new(inner: S, breaker: Breaker) -> Self {
        BreakerService {
            inner,
            breaker,
            classify: ErrorClassifier::new(),
            defer: NoDefer,
        }
    }
}

impl<S, C> BreakerService<S, C> {
    /// Wraps `inner` in `breaker`, judging results with `classify`.
    pub const fn with_classifier(inner: S, breaker: Breaker, classify: C) -> Self {
        BreakerService {
            inner,
            breaker,
            classify,
            defer: NoDefer,
        }
    }
}

impl<S, C, D> BreakerService<S, C, D> {
    /// Leaves the recording of successful responses to `defer` (see
    /// [`Defer`]).
    pub fn defer_with<D2>(self, defer: D2) -> BreakerService<S, C, D2> {
        BreakerService {
            inner: self.inner,
            breaker: self.breaker,
            classify: self.classify,
            defer,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, D, Req> Service<Req> for BreakerService<S, C, D>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError> + Clone,
    D: Defer<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, D>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.breaker.shared;
        match shared.try_acquire() {
            Ok(None) => ResponseFuture::unrecorded(self.inner.call(req)),
            Ok(Some(admit)) => {
                let start = shared.timed.then(|| shared.now_ns());
                ResponseFuture::recorded(
                    self.inner.call(req),
                    shared.clone(),
                    admit,
                    start,
                    self.classify.clone(),
                    self.defer.clone(),
                )
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
