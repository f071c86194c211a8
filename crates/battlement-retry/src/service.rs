//! [`Retry`]: the service that re-sends failed requests.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{BoxError, Classify, DeadlineCarrier, ErrorClassifier, SharedRef, deadline};
use tower_service::Service;

use crate::config::{Always, RetryIf, RetryPolicy};
use crate::future::ResponseFuture;

/// Unless `min_time_left` is set, another attempt needs this share
/// (1/10) of the attempt timeout's bound left.
pub(crate) const MIN_TIME_LEFT_DIVISOR: u32 = 10;

/// Re-sends a request while its failures are retryable and the
/// [`RetryPolicy`] allows; built by [`RetryLayer`](crate::RetryLayer).
///
/// Needs `Req: DeadlineCarrier`, a [`RetryIf`] that can copy the request
/// (every `Clone` request can be; see [`RetryIf::clone_request`]) and
/// `S: Clone`: a retry is sent through a clone of the service as it was
/// when this `Retry` was made, taken when the retry is decided (a request
/// that succeeds first time clones no service). Each attempt's result is
/// judged as
/// `Result<S::Response, BoxError>`, the shape every battlement layer's
/// classifier has, so one classifier value fits them all.
///
/// Made by a leaked layer ([`Leak`](battlement_core::Leak)), the first 64
/// services keep their spare for the process, so that neither their
/// clones nor their calls count a reference; later ones (a leaked layer
/// applied per connection) count one, as an unleaked layer's do, so the
/// memory kept stays bounded.
pub struct Retry<S, C = ErrorClassifier, P = Always>
where
    S: 'static,
    C: 'static,
    P: 'static,
{
    inner: S,
    core: SharedRef<Core<S, C, P>>,
}

/// What a [`Retry`] and its response futures share: the policy, and the
/// spare service retries are cloned from. One reference for both, so a
/// call counts one (a clone of the inner service per call would count one
/// for every layer inside that holds shared state), or none once kept.
pub(crate) struct Core<S: 'static, C: 'static, P: 'static> {
    pub(crate) policy: RetryPolicy<C, P>,
    spare: Mutex<S>,
}

impl<S: Clone + 'static, C: 'static, P: 'static> Core<S, C, P> {
    /// A service to send a retry with: a clone of the spare, under a lock
    /// held only for the clone (on the retry path, never the first call).
    pub(crate) fn service(&self) -> S {
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<S: Clone + 'static, C: 'static, P: 'static> Retry<S, C, P> {
    /// Wraps `inner` with `policy`, keeping a clone of `inner` to send
    /// retries through. A policy that was leaked keeps that clone for the
    /// process too, for the first 64 services made from it (see
    /// [`Retry`]).
    pub fn new(inner: S, policy: RetryPolicy<C, P>) -> Self {
        let keep = policy.shared.is_static() && policy.shared.keep_spare();
        let spare = Mutex::new(inner.clone());
        let core = SharedRef::new(Core { policy, spare });
        Retry {
            inner,
            core: if keep { core.leak() } else { core },
        }
    }

    /// Whether this service's calls count no reference: its spare is kept
    /// for the process.
    pub fn is_kept(&self) -> bool {
        self.core.is_static()
    }
}

impl<S: 'static, C: 'static, P: 'static> Retry<S, C, P> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably. Retries go through a clone of the
    /// service as it was wrapped, not of what this changes.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The policy applied.
    pub fn policy(&self) -> &RetryPolicy<C, P> {
        &self.core.policy
    }
}

impl<S: Clone + 'static, C: 'static, P: 'static> Clone for Retry<S, C, P> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            core: self.core.clone(),
        }
    }
}

impl<S: fmt::Debug + 'static, C: 'static, P: 'static> fmt::Debug for Retry<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.core.policy)
            .finish()
    }
}

impl<S, C: 'static, P: 'static, Req> Service<Req> for Retry<S, C, P>
where
    S: Service<Req> + Clone + 'static,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError>,
    P: RetryIf<Req>,
    Req: DeadlineCarrier,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.core.policy.shared;
        if let Some(budget) = &shared.budget {
            budget.deposit();
        }
        // The request's deadline, or the one a `DeadlineLayer` outside
        // has in scope.
        let deadline = deadline::effective(&req);
        // Keep a copy only when a retry may happen at all.
        let retained = if shared.max_any_attempts > 1 && shared.retry_if.may_retry(&req) {
            shared.retry_if.clone_request(&req)
        } else {
            None
        };
        // The default rule, which only a deadline makes matter: learn the
        // bound of the attempt timeout inside as it is called. The future
        // is built in place, inside the listener's life (through a closure
        // it would be a temporary, copied into this one).
        let listener = match (deadline, shared.min_time_left) {
            (Some(_), None) => Some(deadline::listen_attempt_bound()),
            _ => None,
        };
        let core = self.core.clone();
        let set = shared.min_time_left;
        ResponseFuture::new(
            self.inner.call(req),
            retained,
            core,
            deadline,
            // After the call: what the listener heard during it.
            move || match listener {
                Some(listener) => listener
                    .finish()
                    .map_or(Duration::ZERO, |b| b / MIN_TIME_LEFT_DIVISOR),
                None => set.unwrap_or(Duration::ZERO),
            },
        )
    }
}
