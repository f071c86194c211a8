//! [`ResponseFuture`]: the primary's future, then the fallback chain.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use battlement_core::{
    BoxError, CircuitOpen, Classify, DeadlineExceeded, EventKind, Failure, FallbackFailed, Name,
    Outcome,
};
use pin_project_lite::pin_project;
use tower::ServiceExt;

use crate::cache::{Reading, Stored};
use crate::error::{CacheMiss, FailureResponse};
use crate::marker::{Fallback, Source};
use crate::shared::{Failed, Handle, Shared, SourceEntry, bump};

type BoxFuture<Res> = Pin<Box<dyn Future<Output = Result<Res, BoxError>> + Send>>;

pin_project! {
    /// The future of [`FallbackService`](crate::FallbackService): polls the
    /// primary, and on a triggering failure runs the fallback sources in
    /// order (boxed once, on the failure path only).
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<F, Req, Res, K, C>
    where
        Req: 'static,
        Res: 'static,
        K: 'static,
        C: 'static,
    {
        #[pin]
        state: State<F, Res>,
        shared: Handle<Shared<Req, Res, K, C>>,
        key: Option<K>,
        req: Option<Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, Res> {
        Primary { #[pin] fut: F },
        // A success being read before it is stored (the HTTP cache).
        Storing { fut: Reading<Res> },
        Fallback { fut: BoxFuture<Res> },
    }
}

impl<F, Req: 'static, Res: 'static, K: 'static, C: 'static> ResponseFuture<F, Req, Res, K, C> {
    #[inline(always)]
    pub(crate) fn new(
        fut: F,
        shared: Handle<Shared<Req, Res, K, C>>,
        key: Option<K>,
        req: Option<Req>,
    ) -> Self {
        ResponseFuture {
            state: State::Primary { fut },
            shared,
            key,
            req,
        }
    }
}

impl<F, Req: 'static, Res: 'static, K: 'static, C: 'static> fmt::Debug
    for ResponseFuture<F, Req, Res, K, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.state {
            State::Primary { .. } => "primary",
            State::Storing { .. } => "storing",
            State::Fallback { .. } => "fallback",
        };
        f.debug_struct("ResponseFuture")
            .field("name", &self.shared.name)
            .field("phase", &phase)
            .finish_non_exhaustive()
    }
}

impl<F, E, Req, Res, K, C> Future for ResponseFuture<F, Req, Res, K, C>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: Classify<Res, BoxError> + Send + Sync + 'static,
    Req: Send + 'static,
    Res: Send + 'static,
    K: Send + Sync + 'static,
{
    type Output = Result<Res, BoxError>;

    /// The success path is kept small and inline: poll the primary,
    /// classify, store in the cache if there is one, return. A failure goes
    /// out of line.
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.as_mut().project();
        let StateProj::Primary { fut } = this.state.project() else {
            return poll_fallback(self.project(), cx);
        };
        let result = ready!(fut.poll(cx)).map_err(Into::into);
        let shared = &**this.shared;
        match shared.classifier.classify(&result) {
            // Through a slot of this branch's own, not `store`'s return
            // value: LLVM merged a result returned in memory with the
            // plain success's in the same memory, and the caller's 16-byte
            // load of it then stalled on store forwarding (success/value
            // 14.4 ns against 5.0 this way, on the EPYC VM).
            Outcome::Success if shared.cache.is_some() => {
                let mut slot = Some(result);
                match store(self.project(), cx, &mut slot) {
                    Poll::Ready(()) => Poll::Ready(slot.expect("store puts the result back")),
                    Poll::Pending => Poll::Pending,
                }
            }
            Outcome::Success => Poll::Ready(result),
            Outcome::Ignored => Poll::Ready(result),
            Outcome::Failure(failure) => on_failure(self.project(), cx, failure, result),
        }
    }
}

/// Stores a successful response in the last-known-good cache (after
/// reading its body, for the HTTP cache). The result is taken from `slot`
/// and put back there once ready, not returned (see the caller).
#[inline(never)]
fn store<F, Req, Res, K, C>(
    mut this: ResponseFutureProj<'_, F, Req, Res, K, C>,
    cx: &mut Context<'_>,
    slot: &mut Option<Result<Res, BoxError>>,
) -> Poll<()>
where
    C: Classify<Res, BoxError> + Send + Sync + 'static,
    Req: Send + 'static,
    Res: Send + 'static,
    K: Send + Sync + 'static,
{
    let Some(cache) = &this.shared.cache else {
        return Poll::Ready(());
    };
    let result = slot.take().expect("the slot holds the primary's result");
    let polled = match (this.key.take(), result) {
        (Some(key), Ok(res)) => match cache.store(key, res) {
            Stored::Done(res) => Poll::Ready(Ok(res)),
            Stored::Reading(fut, key) => {
                *this.key = Some(key);
                this.state.set(State::Storing { fut });
                poll_fallback(this, cx)
            }
        },
        (_, result) => Poll::Ready(result),
    };
    polled.map(|result| *slot = Some(result))
}

/// The primary failed: passes the failure through, or starts the
/// fallback chain.
#[cold]
#[inline(never)]
fn on_failure<F, Req, Res, K, C>(
    this: ResponseFutureProj<'_, F, Req, Res, K, C>,
    cx: &mut Context<'_>,
    failure: Failure,
    result: Result<Res, BoxError>,
) -> Poll<Result<Res, BoxError>>
where
    C: Classify<Res, BoxError> + Send + Sync + 'static,
    Req: Send + 'static,
    Res: Send + 'static,
    K: Send + Sync + 'static,
{
    let mut this = this;
    if let Some(trigger) = &this.shared.trigger
        && !trigger(&failure)
    {
        bump(&this.shared.passed_through);
        return Poll::Ready(result);
    }
    let fut = start_fallback(
        this.shared.clone(),
        failure,
        result,
        this.key.take(),
        this.req.take(),
    );
    this.state.set(State::Fallback { fut });
    poll_fallback(this, cx)
}

/// Polls the boxed fallback chain, or the success being read before it is
/// stored: a body that fails while read is the primary's failure.
fn poll_fallback<F, Req, Res, K, C>(
    mut this: ResponseFutureProj<'_, F, Req, Res, K, C>,
    cx: &mut Context<'_>,
) -> Poll<Result<Res, BoxError>>
where
    C: Classify<Res, BoxError> + Send + Sync + 'static,
    Req: Send + 'static,
    Res: Send + 'static,
    K: Send + Sync + 'static,
{
    let result = match this.state.as_mut().project() {
        StateProj::Fallback { fut } => return fut.as_mut().poll(cx),
        StateProj::Storing { fut } => ready!(fut.as_mut().poll(cx)),
        StateProj::Primary { .. } => unreachable!("the primary is polled inline"),
    };
    match result {
        Ok(res) => Poll::Ready(Ok(res)),
        Err(err) => {
            let result = Err(err);
            match this.shared.classifier.classify(&result) {
                Outcome::Failure(failure) => on_failure(this, cx, failure, result),
                Outcome::Success | Outcome::Ignored => Poll::Ready(result),
            }
        }
    }
}

/// `true` when `err` is, or wraps, an open circuit.
fn is_open_circuit(err: &BoxError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&**err);
    while let Some(e) = current {
        if e.is::<CircuitOpen>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Boxes the fallback chain: out of line, so the success path stays small.
#[cold]
#[inline(never)]
fn start_fallback<Req, Res, K, C>(
    shared: Handle<Shared<Req, Res, K, C>>,
    failure: Failure,
    primary: Result<Res, BoxError>,
    key: Option<K>,
    req: Option<Req>,
) -> BoxFuture<Res>
where
    C: Classify<Res, BoxError> + Send + Sync + 'static,
    Req: Send + 'static,
    Res: Send + 'static,
    K: Send + Sync + 'static,
{
    Box::pin(run_fallback(shared, failure, primary, key, req))
}

/// Tries every source in order after the primary failed with `failure`.
async fn run_fallback<Req, Res, K, C>(
    shared: Handle<Shared<Req, Res, K, C>>,
    failure: Failure,
    primary: Result<Res, BoxError>,
    key: Option<K>,
    req: Option<Req>,
) -> Result<Res, BoxError>
where
    C: Classify<Res, BoxError> + Send + Sync + 'static,
    Req: Send + 'static,
    Res: Send + 'static,
    K: Send + Sync + 'static,
{
    bump(&shared.triggered);
    bump(&shared.by_reason[failure.kind.index()]);
    let mut errors: Vec<(Name, BoxError)> = Vec::new();
    for (index, entry) in shared.sources.iter().enumerate() {
        let stats = &shared.source_stats[index];
        let served = match entry {
            SourceEntry::Value(f) => {
                let failed = Failed {
                    failure,
                    error: primary.as_ref().err(),
                    key: key.as_ref(),
                };
                f(&failed).map(|res| (res, Source::Value))
            }
            SourceEntry::Service { name, svc } => {
                let Some(req) = req.as_ref().zip(shared.clone_req).map(|(r, c)| c(r)) else {
                    continue;
                };
                let call = svc.clone().oneshot(req);
                let result = match shared.source_timeout {
                    None => call.await,
                    Some(bound) => tokio::time::timeout(bound, call).await.unwrap_or_else(|_| {
                        Err(Box::new(DeadlineExceeded {
                            budget: bound,
                            elapsed: bound,
                        }) as BoxError)
                    }),
                };
                match shared.classifier.classify(&result) {
                    Outcome::Failure(f) => match result {
                        Ok(_) => Err(Box::new(FailureResponse { kind: f.kind }) as BoxError),
                        Err(e) => Err(e),
                    },
                    Outcome::Success | Outcome::Ignored => {
                        result.map(|res| (res, Source::Service(name.clone())))
                    }
                }
            }
            SourceEntry::Cache => {
                match shared
                    .cache
                    .as_ref()
                    .zip(key.as_ref())
                    .and_then(|(cache, key)| cache.lookup(key))
                {
                    Some(hit) if hit.stale => {
                        bump(&stats.served_stale);
                        Ok((hit.value, Source::StaleCache))
                    }
                    Some(hit) => Ok((hit.value, Source::Cache)),
                    None => Err(Box::new(CacheMiss) as BoxError),
                }
            }
        };
        match served {
            Ok((mut res, source)) => {
                bump(&stats.served);
                bump(&stats.served_by_reason[failure.kind.index()]);
                shared.events.emit(&shared.name, || EventKind::Fallback {
                    source: source.as_str().to_owned().into(),
                    kind: failure.kind,
                });
                if let Some(mark) = &shared.mark {
                    mark(
                        &mut res,
                        &Fallback {
                            source,
                            reason: failure.kind,
                        },
                    );
                }
                return Ok(res);
            }
            Err(err) => {
                let label = entry.label();
                if is_open_circuit(&err) {
                    bump(&stats.skipped);
                    shared.events.emit(&shared.name, || EventKind::Skipped {
                        backend: label.clone(),
                        reason: "circuit open".into(),
                    });
                } else {
                    bump(&stats.failed);
                }
                errors.push((label, err));
            }
        }
    }
    bump(&shared.all_failed);
    shared.events.emit(&shared.name, || EventKind::Custom {
        name: "fallback_failed".into(),
        detail: format!(
            "primary failed ({}) and {} source(s) failed",
            failure.kind,
            errors.len()
        ),
    });
    match primary {
        // The primary answered with a failure response: it is still the
        // best answer there is.
        Ok(res) => Ok(res),
        Err(primary) => Err(Box::new(FallbackFailed {
            primary,
            fallbacks: errors,
        })),
    }
}
