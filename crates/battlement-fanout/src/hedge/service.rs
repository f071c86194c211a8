//! [`HedgeLayer`] and its service [`Hedge`].

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{BoxError, DeadlineCarrier, EventSink, Name};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::{HedgeBuilder, HedgeHandle, HedgeState};

/// Sends a backup copy of a request that is not answered after a delay,
/// and returns the first success. See the [module docs](crate::hedge).
#[derive(Debug, Clone)]
pub struct HedgeLayer {
    pub(crate) state: Arc<HedgeState>,
}

impl HedgeLayer {
    /// Starts building a hedge layer named `name`.
    pub fn builder(name: impl Into<Name>) -> HedgeBuilder {
        HedgeBuilder {
            name: name.into(),
            delay: Duration::from_millis(100),
            percentile: None,
            min_samples: None,
            max_hedges: 1,
            budget: None,
            events: EventSink::none(),
        }
    }

    /// A handle on the layer's figures, for the registry.
    pub fn handle(&self) -> HedgeHandle {
        HedgeHandle {
            state: self.state.clone(),
        }
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = Hedge<S>;

    fn layer(&self, inner: S) -> Hedge<S> {
        Hedge {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service [`HedgeLayer`] makes.
#[derive(Debug, Clone)]
pub struct Hedge<S> {
    inner: S,
    state: Arc<HedgeState>,
}

impl<S> Hedge<S> {
    /// A handle on the figures, for the registry.
    pub fn handle(&self) -> HedgeHandle {
        HedgeHandle {
            state: self.state.clone(),
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

    /// The inner service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for Hedge<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone + DeadlineCarrier,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let start = Instant::now();
        // The request's deadline, or the one in scope.
        let deadline = battlement_core::deadline::effective(&req).map(|d| d.instant());
        // The backups go through a clone, driven to readiness in the
        // future; the instance polled ready takes the primary.
        let backup = self.inner.clone();
        if deadline.is_some_and(|d| d <= start) {
            // Nothing to send: the inner service's readiness is left
            // unused, as `tower::load_shed` does.
            return ResponseFuture::expired(backup, start, self.state.clone());
        }
        let delay = self.state.on_request();
        let primary = self.inner.call(req.clone());
        ResponseFuture::new(
            primary,
            backup,
            req,
            start,
            delay,
            deadline,
            self.state.clone(),
        )
    }
}
