//! [`Instrument`]: the service [`InstrumentLayer`](crate::InstrumentLayer)
//! makes.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use battlement_core::{AsComponent, Classify, Component, SharedRef};
use tower_service::Service;

use crate::future::{Guard, ResponseFuture};
use crate::instrument::InstrumentState;
use battlement_core::clock::Clock;

/// A service whose calls are counted into the registry. Made by
/// [`InstrumentLayer`](crate::InstrumentLayer).
///
/// Readiness passes straight through; per call it costs three relaxed
/// atomic additions, a few plain loads and, for a call whose latency is
/// sampled, two clock reads (see [`LatencyClock`](crate::LatencyClock));
/// no reference count, no allocation.
pub struct Instrument<S, C> {
    inner: S,
    state: SharedRef<InstrumentState>,
    classifier: C,
    sample_mask: u64,
    clock: Clock,
}

impl<S, C> Instrument<S, C> {
    pub(crate) const fn new(
        inner: S,
        state: SharedRef<InstrumentState>,
        classifier: C,
        sample_mask: u64,
        clock: Clock,
    ) -> Self {
        Instrument {
            inner,
            state,
            classifier,
            sample_mask,
            clock,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C: Clone> Clone for Instrument<S, C> {
    fn clone(&self) -> Self {
        Instrument {
            inner: self.inner.clone(),
            state: self.state.clone(),
            classifier: self.classifier.clone(),
            sample_mask: self.sample_mask,
            clock: self.clock,
        }
    }
}

impl<S, C> fmt::Debug for Instrument<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instrument")
            .field("name", &self.state.name)
            .finish_non_exhaustive()
    }
}

impl<S, C> AsComponent for Instrument<S, C> {
    fn as_component(&self) -> Arc<dyn Component> {
        self.state.arc()
    }
}

impl<S, C, Req> Service<Req> for Instrument<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        let counters = self.state.counters;
        let seq = counters.start();
        let start = if seq & self.sample_mask == 0 {
            Some(self.clock.stamp())
        } else {
            None
        };
        let guard = Guard {
            counters,
            generation: self.state.generation,
            start,
            classifier: self.classifier.clone(),
            done: false,
        };
        // The layers inside read "now" from this stamp rather than the
        // clock (a retry budget's slot, a deadline's start): one clock
        // read per call chain.
        let _call = start.map(battlement_core::clock::enter_call);
        ResponseFuture::new(self.inner.call(req), guard)
    }
}
