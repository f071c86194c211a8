//! The fan-out service: [`FanOut`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use battlement_core::{BoxError, Classify, DeadlineCarrier, EventSink, Name};
use tower_service::Service;

use crate::config::{FanOutBuilder, Strategy};
use crate::future::ResponseFuture;
use crate::merge::{Merge, NoMerge};
use crate::stats::{FanOutHandle, FanOutStats};

/// Sends one request to several named backends concurrently and combines
/// their results by a [`Strategy`]. See the [crate docs](crate).
pub struct FanOut<S, C = battlement_core::ErrorClassifier, M = NoMerge> {
    pub(crate) backends: Vec<Backend<S>>,
    pub(crate) shared: Arc<Shared<C, M>>,
}

pub(crate) struct Backend<S> {
    pub(crate) service: S,
    pub(crate) ready: Readiness,
}

pub(crate) enum Readiness {
    NotReady,
    Ready,
    Failed(BoxError),
}

impl<S> Backend<S> {
    pub(crate) fn new(service: S) -> Self {
        Backend {
            service,
            ready: Readiness::NotReady,
        }
    }
}

pub(crate) struct Shared<C, M> {
    pub(crate) name: Name,
    pub(crate) stats: Arc<FanOutStats>,
    pub(crate) strategy: Strategy,
    pub(crate) max_concurrency: usize,
    pub(crate) classifier: C,
    pub(crate) merge: M,
    pub(crate) events: EventSink,
}

impl<S> FanOut<S> {
    /// Starts building a fan-out named `name`.
    pub fn builder(name: impl Into<Name>) -> FanOutBuilder<S> {
        FanOutBuilder::new(name)
    }
}

impl<S, C, M> FanOut<S, C, M> {
    /// The fan-out's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The strategy it runs.
    pub fn strategy(&self) -> Strategy {
        self.shared.strategy
    }

    /// A handle on its figures, for the registry.
    pub fn handle(&self) -> FanOutHandle {
        FanOutHandle {
            stats: self.shared.stats.clone(),
        }
    }

    /// The backends' names, in the order they were added.
    pub fn backend_names(&self) -> impl Iterator<Item = &Name> {
        self.shared.stats.backends.iter().map(|b| &b.name)
    }

    /// The backends' services, in the order they were added.
    pub fn get_ref(&self) -> impl Iterator<Item = &S> {
        self.backends.iter().map(|b| &b.service)
    }

    /// The backends' services, mutably. Changing one drops any readiness
    /// already observed for it.
    pub fn get_mut(&mut self) -> impl Iterator<Item = &mut S> {
        self.backends.iter_mut().map(|b| {
            b.ready = Readiness::NotReady;
            &mut b.service
        })
    }

    /// The backends' services, by value, in the order they were added.
    pub fn into_inner(self) -> Vec<S> {
        self.backends.into_iter().map(|b| b.service).collect()
    }
}

impl<S: Clone, C, M> Clone for FanOut<S, C, M> {
    /// Clones the services; readiness is not copied (each clone polls its
    /// own backends).
    fn clone(&self) -> Self {
        FanOut {
            backends: self
                .backends
                .iter()
                .map(|b| Backend::new(b.service.clone()))
                .collect(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, C, M> fmt::Debug for FanOut<S, C, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOut")
            .field("name", &self.shared.name)
            .field("strategy", &self.shared.strategy)
            .field("backends", &self.shared.stats.backends.len())
            .finish_non_exhaustive()
    }
}

impl<S, Req, C, M> Service<Req> for FanOut<S, C, M>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone + DeadlineCarrier,
    C: Classify<S::Response, BoxError>,
    M: Merge<S::Response>,
{
    type Response = M::Output;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, M>;

    /// Always ready: polls each backend not yet ready once, so that the
    /// ones ready now are called at once by the next `call`. A backend
    /// still not ready does not hold the fan-out (nor the other backends)
    /// back: the next call drives a clone of it to readiness inside the
    /// response future and calls it then (or reports it
    /// [`NotCalled`](crate::Reply::NotCalled) if the fan-out ends first).
    /// A backend whose `poll_ready` fails is reported with that error in
    /// the next response, without being called, and polled again after.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        for backend in &mut self.backends {
            if let Readiness::NotReady = backend.ready {
                match backend.service.poll_ready(cx) {
                    Poll::Ready(Ok(())) => backend.ready = Readiness::Ready,
                    Poll::Ready(Err(e)) => backend.ready = Readiness::Failed(e.into()),
                    Poll::Pending => {}
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::start(&mut self.backends, &self.shared, req)
    }
}
