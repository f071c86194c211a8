//! The [`ResponseFuture`] of a [`Retry`](crate::Retry) service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use battlement_core::{
    BoxError, Classify, Deadline, EventKind, Failure, Outcome, RetriesExhausted, RetryStop,
    SharedRef,
};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::budget::Token;
use crate::config::{RetryIf, Shared};
use crate::service::Core;

pin_project! {
    /// The future of one request through [`Retry`](crate::Retry): calls,
    /// waits out the backoff, waits for the service to be ready, calls
    /// again. What only a retry needs (the last result, the backoff's
    /// `Sleep`, the service retries go through, the budget token) is boxed
    /// at the first retry, one allocation per retried request, so the
    /// future a request that succeeds first time carries, moves and drops
    /// is that much smaller (by 300 bytes and more over an HTTP service; a
    /// server's framework boxes and moves the whole stack's future). The
    /// `Sleep` is created at the first wait and `reset()` after; a request
    /// that succeeds first time never touches the timer. Dropping it
    /// cancels: no attempt starts after a drop, and a budget token
    /// withdrawn for a retry not yet sent is given back.
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<S, Req, C, P>
    where
        S: Service<Req>,
        S: 'static,
        C: 'static,
        P: 'static,
    {
        #[pin]
        state: State<S::Future>,
        request: Option<Req>,
        core: SharedRef<Core<S, C, P>>,
        deadline: Option<Deadline>,
        // The least time left to start another attempt, for this request.
        min_time_left: Duration,
        attempts: u32,
        // What retrying needs, from the first retry on.
        retried: Option<Pin<Box<Retried<S, S::Response>>>>,
    }

    impl<S, Req, C, P> PinnedDrop for ResponseFuture<S, Req, C, P>
    where
        S: Service<Req>,
        S: 'static,
        C: 'static,
        P: 'static,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(retried) = this.retried.as_mut()
                && let Some(token) = retried.as_mut().project().token.take()
            {
                refund(&this.core.policy.shared, token);
            }
        }
    }
}

pin_project! {
    /// What a request being retried keeps: boxed at its first retry.
    struct Retried<S, Res> {
        // The service retries are sent through, cloned from the core's
        // spare.
        service: S,
        // The last failed result while a retry waits, in case no further
        // attempt can start.
        last: Option<(Result<Res, BoxError>, Failure)>,
        #[pin]
        sleep: Option<Sleep>,
        prev_delay: Duration,
        // The budget token withdrawn for the retry being waited for, until
        // that retry is sent; refunded if it never is.
        token: Option<Token>,
    }
}

/// Gives a budget token back: its retry was never sent.
#[cold]
#[inline(never)]
fn refund<C, P>(shared: &Shared<C, P>, token: Token) {
    if let Some(budget) = &shared.budget {
        budget.refund(token);
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Called { #[pin] future: F },
        // Waiting out the backoff on `sleep`.
        Waiting,
        // Waiting for the service to be ready for the next attempt.
        Retrying,
        // The output was returned.
        Done,
    }
}

impl<S, Req, C: 'static, P: 'static> ResponseFuture<S, Req, C, P>
where
    S: Service<Req> + 'static,
{
    #[inline(always)]
    pub(crate) fn new(
        future: S::Future,
        request: Option<Req>,
        core: SharedRef<Core<S, C, P>>,
        deadline: Option<Deadline>,
        min_time_left: impl FnOnce() -> Duration,
    ) -> Self {
        ResponseFuture {
            state: State::Called { future },
            request,
            core,
            deadline,
            min_time_left: min_time_left(),
            attempts: 1,
            retried: None,
        }
    }
}

impl<S, Req, C: 'static, P: 'static> fmt::Debug for ResponseFuture<S, Req, C, P>
where
    S: Service<Req> + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "called",
            State::Waiting => "waiting",
            State::Retrying => "retrying",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.attempts)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// What to do after an attempt.
enum Decision {
    /// Return the result as it is.
    Return,
    /// Give up for this reason.
    Stop(RetryStop, Failure),
    /// Retry after this delay, with the budget token withdrawn for it.
    Retry(Duration, Failure, Option<Token>),
}

/// Decides on the retryable failure of attempt number `attempts`.
fn decide<C, P>(
    shared: &Shared<C, P>,
    failure: Failure,
    attempts: u32,
    repeatable: bool,
    deadline: Option<Deadline>,
    min_time_left: Duration,
    prev_delay: Duration,
) -> Decision {
    let max = shared.max_attempts_for(failure.kind);
    if max <= 1 {
        // Never retried by policy (`never_retry`, `max_attempts(1)`): the
        // same as a failure that is not retryable.
        return Decision::Return;
    }
    if attempts >= max {
        return Decision::Stop(RetryStop::MaxAttempts, failure);
    }
    if !repeatable {
        return Decision::Stop(RetryStop::NotRepeatable, failure);
    }
    let delay = match failure.retry_after {
        Some(after) if after > shared.max_retry_after => {
            return Decision::Stop(RetryStop::RetryAfterTooLong, failure);
        }
        Some(after) => after,
        None => shared.backoff.delay(
            attempts,
            shared.base_delay_for(failure.kind),
            prev_delay,
            &*shared.random,
        ),
    };
    if let Some(deadline) = deadline {
        let left = deadline.remaining_at(Instant::now());
        if failure.retry_after.is_some_and(|after| after >= left) {
            return Decision::Stop(RetryStop::RetryAfterTooLong, failure);
        }
        if delay.saturating_add(min_time_left) >= left {
            return Decision::Stop(RetryStop::Deadline, failure);
        }
    }
    let token = match &shared.budget {
        Some(budget) => match budget.withdraw_token() {
            Some(token) => Some(token),
            None => return Decision::Stop(RetryStop::BudgetExhausted, failure),
        },
        None => None,
    };
    Decision::Retry(delay, failure, token)
}

impl<S, Req, C: 'static, P: 'static> Future for ResponseFuture<S, Req, C, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError>,
    P: RetryIf<Req>,
{
    type Output = Result<S::Response, BoxError>;

    /// The first attempt's path is kept small and inline: poll the inner
    /// future, classify, and return unless the outcome is a retryable
    /// failure. Everything else (the decision, events, the backoff, the
    /// next attempts) is out of line.
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.as_mut().project();
        let StateProj::Called { future } = this.state.project() else {
            return poll_retry(&mut self.project(), cx);
        };
        let result = ready!(future.poll(cx)).map_err(Into::into);
        match this.core.policy.shared.classifier.classify(&result) {
            Outcome::Failure(failure) if failure.retryable => {
                let mut this = self.project();
                match after_failure(&mut this, result, failure) {
                    Some(output) => Poll::Ready(output),
                    None => poll_retry(&mut this, cx),
                }
            }
            // The state stays `Called` (its future is spent): moving to
            // `Done` would drop the spent future in place, which costs more
            // than it guards against.
            _ => Poll::Ready(result),
        }
    }
}

/// Decides what follows a retryable failure: `Some(output)` to return it,
/// `None` when a retry was scheduled (the state is then `Waiting` or
/// `Retrying`).
#[cold]
#[inline(never)]
fn after_failure<S, Req, C: 'static, P>(
    this: &mut ResponseFutureProj<'_, S, Req, C, P>,
    result: Result<S::Response, BoxError>,
    failure: Failure,
) -> Option<Result<S::Response, BoxError>>
where
    S: Service<Req> + Clone,
    P: RetryIf<Req> + 'static,
{
    let shared = &*this.core.policy.shared;
    let attempts = *this.attempts;
    if attempts == 1 {
        shared.stats.entered();
    }
    // Asked again of the copy kept at the call: sending the request may
    // have made it unrepeatable (a body too large to replay).
    let repeatable = this
        .request
        .as_ref()
        .is_some_and(|req| shared.retry_if.may_retry(req));
    match decide(
        shared,
        failure,
        attempts,
        repeatable,
        *this.deadline,
        *this.min_time_left,
        this.retried
            .as_ref()
            .map_or(Duration::ZERO, |r| r.prev_delay),
    ) {
        Decision::Return => {
            this.state.set(State::Done);
            Some(result)
        }
        Decision::Stop(reason, failure) => {
            this.state.set(State::Done);
            Some(give_up(shared, attempts, reason, failure, result))
        }
        Decision::Retry(delay, failure, token) => {
            let retried = this.retried.get_or_insert_with(|| {
                Box::pin(Retried {
                    service: this.core.service(),
                    last: None,
                    sleep: None,
                    prev_delay: Duration::ZERO,
                    token: None,
                })
            });
            let mut retried = retried.as_mut().project();
            *retried.token = token;
            if failure.retry_after.is_some() {
                shared.stats.retry_after_wait();
            }
            shared.events.emit(&shared.name, || EventKind::Retry {
                attempt: attempts + 1,
                delay,
                kind: failure.kind,
            });
            *retried.prev_delay = delay;
            *retried.last = Some((result, failure));
            if delay.is_zero() {
                this.state.set(State::Retrying);
            } else {
                let at = sleep_deadline(Instant::now(), delay);
                match retried.sleep.as_mut().as_pin_mut() {
                    Some(sleep) => sleep.reset(at),
                    None => retried.sleep.set(Some(tokio::time::sleep_until(at))),
                }
                this.state.set(State::Waiting);
            }
            None
        }
    }
}

/// The longest sleep a retry takes: about thirty years, as tokio's own
/// `sleep` caps it. A longer delay (a `Retry-After` of `u64::MAX`
/// seconds, a `Duration::MAX` backoff) would overflow the instant.
const LONGEST_SLEEP: Duration = Duration::from_secs(86_400 * 365 * 30);

/// When a backoff of `delay` from `now` ends, saturating at
/// [`LONGEST_SLEEP`] instead of panicking past the clock's range.
fn sleep_deadline(now: Instant, delay: Duration) -> Instant {
    now + delay.min(LONGEST_SLEEP)
}

/// Ends the retries for `reason`: emits the event and returns the last
/// result, an error wrapped in [`RetriesExhausted`].
fn give_up<C, P, Res>(
    shared: &Shared<C, P>,
    attempts: u32,
    reason: RetryStop,
    failure: Failure,
    last: Result<Res, BoxError>,
) -> Result<Res, BoxError> {
    shared.stats.exhausted(reason);
    shared
        .events
        .emit(&shared.name, || EventKind::RetriesExhausted {
            attempts,
            reason,
            kind: failure.kind,
        });
    match last {
        // A response classified as a failure is handed back as it is: it
        // cannot be boxed.
        Ok(response) => Ok(response),
        Err(last) => Err(Box::new(RetriesExhausted {
            attempts,
            reason,
            retry_after: failure.retry_after,
            last,
        })),
    }
}

/// Drives the future after the first attempt: the backoff, readiness, the
/// next attempts and their outcomes.
#[cold]
#[inline(never)]
fn poll_retry<S, Req, C, P>(
    this: &mut ResponseFutureProj<'_, S, Req, C, P>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, BoxError>>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError> + 'static,
    P: RetryIf<Req> + 'static,
{
    loop {
        match this.state.as_mut().project() {
            StateProj::Called { future } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                match this.core.policy.shared.classifier.classify(&result) {
                    Outcome::Failure(failure) if failure.retryable => {
                        if let Some(output) = after_failure(this, result, failure) {
                            return Poll::Ready(output);
                        }
                    }
                    _ => {
                        this.state.set(State::Done);
                        return Poll::Ready(result);
                    }
                }
            }
            StateProj::Waiting => {
                let Some(retried) = this.retried.as_mut() else {
                    unreachable!("a retry is only decided with its state boxed");
                };
                if let Some(sleep) = retried.as_mut().project().sleep.as_pin_mut() {
                    ready!(sleep.poll(cx));
                }
                this.state.set(State::Retrying);
            }
            StateProj::Retrying => {
                let Some(retried) = this.retried.as_mut() else {
                    unreachable!("a retry is only decided with its state boxed");
                };
                let retried = retried.as_mut().project();
                let service = retried.service;
                if let Err(e) = ready!(service.poll_ready(cx)) {
                    this.state.set(State::Done);
                    if let Some(token) = retried.token.take() {
                        refund(&this.core.policy.shared, token);
                    }
                    return Poll::Ready(Err(e.into()));
                }
                let shared = &*this.core.policy.shared;
                // Waiting for readiness may have eaten the time the
                // decision counted on: check again before starting.
                if let Some(deadline) = *this.deadline
                    && deadline.remaining_at(Instant::now()) <= *this.min_time_left
                {
                    this.state.set(State::Done);
                    if let Some(token) = retried.token.take() {
                        refund(shared, token);
                    }
                    let Some((last, failure)) = retried.last.take() else {
                        unreachable!("a retry keeps the last failed result");
                    };
                    return Poll::Ready(give_up(
                        shared,
                        *this.attempts,
                        RetryStop::Deadline,
                        failure,
                        last,
                    ));
                }
                *this.attempts += 1;
                shared.stats.retry();
                // Copy again only when yet another attempt may follow (and
                // the request can be copied again).
                let req = if *this.attempts < shared.max_any_attempts {
                    match this
                        .request
                        .as_ref()
                        .and_then(|r| shared.retry_if.clone_request(r))
                    {
                        Some(copy) => Some(copy),
                        None => this.request.take(),
                    }
                } else {
                    this.request.take()
                };
                let Some(req) = req else {
                    unreachable!("a retry is only decided with a request to send");
                };
                *retried.last = None;
                // The retry is sent: its token is spent.
                *retried.token = None;
                this.state.set(State::Called {
                    future: service.call(req),
                });
            }
            StateProj::Done => panic!("ResponseFuture polled after completion"),
        }
    }
}
