//! [`GateService`]: the gated service.

use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use battlement_core::{BoxError, Classify, ErrorClassifier, EventKind, Priority, Shed};
use tower_service::Service;

use crate::future::{Observe, ResponseFuture};
use crate::gate::{Shared, level_from};
use crate::{ExtractPriority, Gate};

/// A service behind a [`Gate`]: made by [`GateLayer`](crate::GateLayer).
///
/// Readiness is the inner service's. A shed request never reaches the
/// inner service, so the readiness it was given stays for the next request.
#[derive(Debug, Clone)]
pub struct GateService<S, P, C = ErrorClassifier> {
    inner: S,
    gate: Gate,
    extract: P,
    classifier: C,
}

impl<S, P> GateService<S, P> {
    /// Gates `inner` with `gate`, reading priorities with `extract` and
    /// judging outcomes with [`ErrorClassifier`].
    pub const fn new(inner: S, gate: Gate, extract: P) -> Self {
        GateService {
            inner,
            gate,
            extract,
            classifier: ErrorClassifier::new(),
        }
    }
}

impl<S, P, C> GateService<S, P, C> {
    /// Judges outcomes for the error-rate signal with `classifier`, as
    /// [`GateLayer::classifier`](crate::GateLayer::classifier).
    pub fn with_classifier<D>(self, classifier: D) -> GateService<S, P, D> {
        GateService {
            inner: self.inner,
            gate: self.gate,
            extract: self.extract,
            classifier,
        }
    }

    /// The gate.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the gate service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, P, C, Req> Service<Req> for GateService<S, P, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    P: ExtractPriority<Req>,
    C: Classify<S::Response, BoxError> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.gate.shared;
        let priority = self
            .extract
            .priority(&req)
            .unwrap_or(shared.default_priority);
        let raw = shared.level.load(Relaxed);
        if shared.table.admits_index(raw as usize, priority) {
            // This thread's own stripe, written without a `lock`ed
            // instruction when the thread leases it; loom's threads share
            // one OS thread, so under loom every add is a `fetch_add`.
            #[cfg(not(battlement_loom))]
            shared.admitted.add_at(priority.index(), 1);
            #[cfg(battlement_loom)]
            shared.admitted.local()[priority.index()].fetch_add(1, Relaxed);
            let observe = shared
                .observe
                .load(Relaxed)
                .then(|| Observe::start(shared.clone(), self.classifier.clone()));
            ResponseFuture::called(self.inner.call(req), observe)
        } else {
            ResponseFuture::shed(shed(shared, raw, priority))
        }
    }
}

/// The shed path, kept out of line so the admitted path stays small: it
/// returns the boxed error, not the future, which is built in place.
#[cold]
#[inline(never)]
fn shed(shared: &Shared, raw: u8, priority: Priority) -> BoxError {
    shared.shed[priority.index()].fetch_add(1, Relaxed);
    let level = level_from(raw);
    if shared.shed_event_due() {
        shared
            .events
            .emit(&shared.name, || EventKind::Shed { level, priority });
    }
    Box::new(Shed {
        gate: shared.name.clone(),
        level,
        priority,
        retry_after: shared.retry_after,
    })
}
