//! [`BulkheadService`], [`AdaptiveLimitService`] and
//! [`KeyedBreakerService`].

use std::fmt;
use std::hash::Hash;
use std::task::{Context, Poll, ready};

use battlement_breaker::BreakerService;
use battlement_core::{BoxError, Classify, ErrorClassifier};
use tokio::time::Instant;
use tower_service::Service;

use crate::adaptive::Adaptive;
use crate::bulkhead::Fixed;
use crate::future::{AdaptiveLimitFuture, BulkheadFuture, KeyedBreakerFuture};
use crate::slots::{Admission, Flavour, Slots};
use crate::{AdaptiveLimit, Bulkhead, KeyedBreaker};

/// `poll_ready` of a pool: a slot (or the refusal) first, then the inner
/// service's readiness, only when a slot was taken.
#[inline]
fn poll_ready_with<X: Flavour, S: Service<Req>, Req>(
    admission: &mut Admission<X>,
    slots: &std::sync::Arc<Slots<X>>,
    inner: &mut S,
    cx: &mut Context<'_>,
) -> Poll<Result<(), BoxError>>
where
    S::Error: Into<BoxError>,
{
    ready!(admission.poll_acquire(slots, cx));
    if !admission.is_permitted() {
        // Refused: `call` fails at once without the inner service.
        return Poll::Ready(Ok(()));
    }
    match inner.poll_ready(cx) {
        Poll::Ready(Err(e)) => {
            admission.release();
            Poll::Ready(Err(e.into()))
        }
        other => other.map_err(Into::into),
    }
}

/// A service behind a [`Bulkhead`]: made by
/// [`BulkheadLayer`](crate::BulkheadLayer).
///
/// `poll_ready` takes a slot (waiting for one at most `max_wait`, if the
/// bulkhead allows waiting), then forwards the inner service's readiness;
/// the slot goes with the next `call` into its response future and back to
/// the bulkhead when that future completes or is dropped. When no slot can
/// be had, `poll_ready` is ready and `call` fails at once with
/// [`BulkheadFull`](battlement_core::BulkheadFull): `poll_ready` never
/// fails for a full bulkhead, and never waits longer than `max_wait`.
///
/// A clone shares the bulkhead but not the slot its original holds.
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
    admission: Admission<Fixed>,
}

impl<S> BulkheadService<S> {
    /// Wraps `inner` in `bulkhead`.
    pub const fn new(inner: S, bulkhead: Bulkhead) -> Self {
        BulkheadService {
            inner,
            bulkhead,
            admission: Admission::new(),
        }
    }

    /// The bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped (a slot held for the next call is
    /// given back).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for BulkheadService<S> {
    /// Shares the bulkhead; the slot (or the place in the queue) taken by
    /// `poll_ready` stays with the original.
    fn clone(&self) -> Self {
        BulkheadService::new(self.inner.clone(), self.bulkhead.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for BulkheadService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadService")
            .field("inner", &self.inner)
            .field("bulkhead", &self.bulkhead)
            .field("admission", &self.admission)
            .finish()
    }
}

impl<S, Req> Service<Req> for BulkheadService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BulkheadFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        poll_ready_with(
            &mut self.admission,
            &self.bulkhead.slots,
            &mut self.inner,
            cx,
        )
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self.admission.take(&self.bulkhead.slots) {
            Ok(permit) => BulkheadFuture::admitted(self.inner.call(req), permit),
            Err(error) => BulkheadFuture::refused(error),
        }
    }
}

/// A service behind an [`AdaptiveLimit`]: made by
/// [`AdaptiveLimitLayer`](crate::AdaptiveLimitLayer).
///
/// Readiness as [`BulkheadService`]'s, with the limiter's current limit as
/// the number of slots; a refusal is
/// [`LimitExceeded`](battlement_core::LimitExceeded). Each admitted call's
/// latency and outcome (judged by the classifier) feed the limiter's
/// window.
pub struct AdaptiveLimitService<S, C = ErrorClassifier> {
    inner: S,
    limiter: AdaptiveLimit,
    classify: C,
    admission: Admission<Adaptive>,
}

impl<S> AdaptiveLimitService<S, ErrorClassifier> {
    /// Wraps `inner` in `limiter`, judging results with [`ErrorClassifier`].
    pub const fn new(inner: S, limiter: AdaptiveLimit) -> Self {
        AdaptiveLimitService::with_classifier(inner, limiter, ErrorClassifier::new())
    }
}

impl<S, C> AdaptiveLimitService<S, C> {
    /// Wraps `inner` in `limiter`, judging results with `classify`.
    pub const fn with_classifier(inner: S, limiter: AdaptiveLimit, classify: C) -> Self {
        AdaptiveLimitService {
            inner,
            limiter,
            classify,
            admission: Admission::new(),
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &AdaptiveLimit {
        &self.limiter
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

impl<S: Clone, C: Clone> Clone for AdaptiveLimitService<S, C> {
    /// Shares the limiter; the slot taken by `poll_ready` stays with the
    /// original.
    fn clone(&self) -> Self {
        AdaptiveLimitService::with_classifier(
            self.inner.clone(),
            self.limiter.clone(),
            self.classify.clone(),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for AdaptiveLimitService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("admission", &self.admission)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for AdaptiveLimitService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AdaptiveLimitFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        poll_ready_with(
            &mut self.admission,
            &self.limiter.slots,
            &mut self.inner,
            cx,
        )
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self.admission.take(&self.limiter.slots) {
            Ok(permit) => {
                let start = Instant::now();
                AdaptiveLimitFuture::admitted(
                    self.inner.call(req),
                    permit,
                    start,
                    self.classify.clone(),
                )
            }
            Err(error) => AdaptiveLimitFuture::refused(error),
        }
    }
}

/// A service guarded by a [`KeyedBreaker`]: made by
/// [`KeyedBreakerLayer`](crate::KeyedBreakerLayer).
///
/// `poll_ready` forwards the inner service's readiness; `call` finds the
/// request's key, then behaves as a
/// [`BreakerService`](battlement_breaker::BreakerService) of that key's
/// breaker: an open circuit refuses with a ready
/// [`CircuitOpen`](battlement_core::CircuitOpen).
pub struct KeyedBreakerService<S, K, F, C = ErrorClassifier> {
    inner: S,
    keyed: KeyedBreaker<K>,
    key: F,
    classify: C,
}

impl<S, K, F, C> KeyedBreakerService<S, K, F, C> {
    /// Wraps `inner` in `keyed`, keying requests with `key` and judging
    /// results with `classify`.
    pub const fn new(inner: S, keyed: KeyedBreaker<K>, key: F, classify: C) -> Self {
        KeyedBreakerService {
            inner,
            keyed,
            key,
            classify,
        }
    }

    /// The keyed breaker.
    pub fn keyed(&self) -> &KeyedBreaker<K> {
        &self.keyed
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

impl<S: Clone, K, F: Clone, C: Clone> Clone for KeyedBreakerService<S, K, F, C> {
    fn clone(&self) -> Self {
        KeyedBreakerService::new(
            self.inner.clone(),
            self.keyed.clone(),
            self.key.clone(),
            self.classify.clone(),
        )
    }
}

impl<S: fmt::Debug, K, F, C> fmt::Debug for KeyedBreakerService<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerService")
            .field("inner", &self.inner)
            .field("keyed", &self.keyed)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, C, Req> Service<Req> for KeyedBreakerService<S, K, F, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    F: Fn(&Req) -> K,
    C: Classify<S::Response, BoxError> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = KeyedBreakerFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key)(&req);
        match self.keyed.shared.breaker_for(key) {
            Ok(breaker) => KeyedBreakerFuture::guarded(
                BreakerService::with_classifier(&mut self.inner, breaker, self.classify.clone())
                    .call(req),
            ),
            Err(error) => KeyedBreakerFuture::failed(Box::new(error)),
        }
    }
}
