//! The response futures: [`BulkheadFuture`], [`AdaptiveLimitFuture`] and
//! [`KeyedBreakerFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use battlement_breaker::future::ResponseFuture as BreakerFuture;
use battlement_core::{BoxError, Classify};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::adaptive::{Adaptive, record};
use crate::bulkhead::Fixed;
use crate::slots::Permit;

#[cold]
fn polled_after_completion() -> BoxError {
    "limit response future polled after completion".into()
}

/// The refusal, once.
fn refusal<T>(error: &mut Option<BoxError>) -> Poll<Result<T, BoxError>> {
    Poll::Ready(Err(error.take().unwrap_or_else(polled_after_completion)))
}

pin_project! {
    /// The response future of [`BulkheadService`](crate::BulkheadService):
    /// a ready refusal, or the inner future holding its slot, given back
    /// when it completes or is dropped.
    pub struct BulkheadFuture<F> {
        #[pin]
        kind: BulkheadKind<F>,
    }
}

pin_project! {
    #[project = BulkheadProj]
    enum BulkheadKind<F> {
        Admitted { #[pin] future: F, permit: Option<Permit<Fixed>> },
        Refused { error: Option<BoxError> },
    }
}

impl<F> BulkheadFuture<F> {
    pub(crate) fn admitted(future: F, permit: Permit<Fixed>) -> Self {
        BulkheadFuture {
            kind: BulkheadKind::Admitted {
                future,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn refused(error: BoxError) -> Self {
        BulkheadFuture {
            kind: BulkheadKind::Refused { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for BulkheadFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            BulkheadProj::Admitted { future, permit } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                // The slot is free as soon as the call is done, not when the
                // future is dropped.
                drop(permit.take());
                Poll::Ready(result)
            }
            BulkheadProj::Refused { error } => refusal(error),
        }
    }
}

impl<F> fmt::Debug for BulkheadFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadFuture").finish_non_exhaustive()
    }
}

/// An admitted call of an adaptive limit: its slot and what its sample
/// needs.
struct Sampled {
    permit: Permit<Adaptive>,
    start: Instant,
}

pin_project! {
    /// The response future of
    /// [`AdaptiveLimitService`](crate::AdaptiveLimitService): a ready
    /// refusal, or the inner future holding its slot. On completion its
    /// latency and outcome go into the limiter's window; dropped before,
    /// it gives its slot back and records nothing.
    pub struct AdaptiveLimitFuture<F, C> {
        #[pin]
        kind: AdaptiveKind<F, C>,
    }
}

pin_project! {
    #[project = AdaptiveProj]
    enum AdaptiveKind<F, C> {
        Admitted { #[pin] future: F, sampled: Option<Sampled>, classify: C },
        Refused { error: Option<BoxError> },
    }
}

impl<F, C> AdaptiveLimitFuture<F, C> {
    pub(crate) fn admitted(
        future: F,
        permit: Permit<Adaptive>,
        start: Instant,
        classify: C,
    ) -> Self {
        AdaptiveLimitFuture {
            kind: AdaptiveKind::Admitted {
                future,
                sampled: Some(Sampled { permit, start }),
                classify,
            },
        }
    }

    pub(crate) fn refused(error: BoxError) -> Self {
        AdaptiveLimitFuture {
            kind: AdaptiveKind::Refused { error: Some(error) },
        }
    }
}

impl<F, C, T, E> Future for AdaptiveLimitFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            AdaptiveProj::Admitted {
                future,
                sampled,
                classify,
            } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(s) = sampled.take() {
                    // If the classifier panics, the permit still goes back.
                    let outcome = classify.classify(&result);
                    record(&s.permit.slots, s.start, &outcome);
                }
                Poll::Ready(result)
            }
            AdaptiveProj::Refused { error } => refusal(error),
        }
    }
}

impl<F, C> fmt::Debug for AdaptiveLimitFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitFuture")
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The response future of
    /// [`KeyedBreakerService`](crate::KeyedBreakerService): the key's
    /// breaker's own response future.
    pub struct KeyedBreakerFuture<F, C> {
        #[pin]
        kind: KeyedKind<F, C>,
    }
}

pin_project! {
    #[project = KeyedProj]
    enum KeyedKind<F, C> {
        Guarded { #[pin] future: BreakerFuture<F, C> },
        Failed { error: Option<BoxError> },
    }
}

impl<F, C> KeyedBreakerFuture<F, C> {
    pub(crate) fn guarded(future: BreakerFuture<F, C>) -> Self {
        KeyedBreakerFuture {
            kind: KeyedKind::Guarded { future },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        KeyedBreakerFuture {
            kind: KeyedKind::Failed { error: Some(error) },
        }
    }
}

impl<F, C, T, E> Future for KeyedBreakerFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KeyedProj::Guarded { future } => future.poll(cx),
            KeyedProj::Failed { error } => refusal(error),
        }
    }
}

impl<F, C> fmt::Debug for KeyedBreakerFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerFuture").finish_non_exhaustive()
    }
}
