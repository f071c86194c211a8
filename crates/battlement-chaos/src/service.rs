//! [`ChaosService`]: a service with faults injected.

use std::task::{Context, Poll};

use battlement_core::BoxError;
use tower_service::Service;

use crate::chaos::{Decision, Fault};
use crate::future::ResponseFuture;
use crate::{AsErrors, Chaos, MakeResponse};

/// A service with a [`Chaos`]'s faults injected: made by
/// [`ChaosLayer`](crate::ChaosLayer).
///
/// Readiness is the inner service's. A call answered by a fault never
/// reaches the inner service, so the readiness it was given stays for the
/// next call. A delayed call takes the ready inner service with it
/// (clone-and-swap, hence `S: Clone`) and calls it once its sleep is over;
/// dropped before, it never calls it.
#[derive(Debug, Clone)]
pub struct ChaosService<S, R = AsErrors> {
    inner: S,
    chaos: Chaos,
    respond: R,
}

impl<S, R> ChaosService<S, R> {
    /// Injects `chaos`'s faults into `inner`; response faults are made by
    /// `respond`.
    pub const fn new(inner: S, chaos: Chaos, respond: R) -> Self {
        ChaosService {
            inner,
            chaos,
            respond,
        }
    }

    /// The chaos.
    pub fn chaos(&self) -> &Chaos {
        &self.chaos
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the chaos service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R, Req> Service<Req> for ChaosService<S, R>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    R: MakeResponse<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if !self.chaos.shared.is_enabled() {
            return ResponseFuture::called(self.inner.call(req));
        }
        self.call_enabled(req)
    }
}

impl<S, R> ChaosService<S, R> {
    /// A call while the chaos is enabled: out of line, so the off path is
    /// one load and the inner call.
    #[inline(never)]
    fn call_enabled<Req>(&mut self, req: Req) -> ResponseFuture<S, Req>
    where
        S: Service<Req> + Clone,
        S::Error: Into<BoxError>,
        R: MakeResponse<S::Response>,
    {
        let shared = &self.chaos.shared;
        let Decision::Inject {
            phase,
            delay,
            fault,
        } = shared.decide()
        else {
            return ResponseFuture::called(self.inner.call(req));
        };
        let answer = fault.map(|fault| match fault {
            Fault::Error(kind) => Err(shared.error(kind, phase)),
            Fault::Respond(fault) => {
                match self
                    .respond
                    .make_response(&fault, &shared.name, &phase.name)
                {
                    Some(res) => {
                        shared.count_response();
                        Ok(res)
                    }
                    None => Err(shared.error(fault.kind(), phase)),
                }
            }
        });
        match (delay, answer) {
            (None, Some(answer)) => ResponseFuture::answered(answer),
            (Some(delay), Some(answer)) => ResponseFuture::delayed_answer(delay, answer),
            (Some(delay), None) => {
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::delayed_call(delay, inner, req)
            }
            // `decide` passes a call with neither.
            (None, None) => ResponseFuture::called(self.inner.call(req)),
        }
    }
}
