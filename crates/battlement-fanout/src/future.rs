//! The fan-out's response future: every backend call runs inside it.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use battlement_core::{
    AllFailed, BoxError, CircuitOpen, Classify, DeadlineCarrier, DeadlineExceeded, EventKind,
    FailureKind, Name, Outcome, QuorumNotReached,
};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::config::Strategy;
use crate::error::{Abandoned, ClassifiedFailure};
use crate::merge::Merge;
use crate::response::{BackendResult, Reply, Responses};
use crate::service::{Backend, Readiness, Shared};

pin_project! {
    /// The [`FanOut`](crate::FanOut)'s response future. Every backend call
    /// runs inside it (no task is spawned); dropping it drops them all.
    pub struct ResponseFuture<S, Req, C, M>
    where
        S: Service<Req>,
    {
        #[pin]
        timer: Option<Sleep>,
        state: Option<Running<S, Req, C, M>>,
    }
}

impl<S, Req, C, M> fmt::Debug for ResponseFuture<S, Req, C, M>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ResponseFuture");
        if let Some(state) = &self.state {
            d.field("fan_out", &state.shared.name)
                .field("in_flight", &state.running)
                .field("settled", &state.settled)
                .field("succeeded", &state.succeeded);
        }
        d.finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
enum TimerCause {
    Deadline { budget: Duration },
    Window,
}

#[derive(Debug, Clone, Copy)]
enum End {
    Decided,
    Timer,
}

enum Slot<S, F, Res> {
    /// Waiting for a concurrency slot (`ready`: the instance was polled
    /// ready) or for the backend to be ready (driven here, on a clone).
    Queued {
        service: S,
        ready: bool,
    },
    /// Each running call pinned in its own box: a no-spawn join of a
    /// number of futures unknown at compile time needs one allocation per
    /// future without `unsafe` (`FuturesUnordered` makes one too, plus
    /// its queue). The running calls are polled in order on each wake,
    /// as `join_all` does for small sets.
    Running(Pin<Box<Call<F>>>),
    /// Not called: the request's deadline had passed when the fan-out
    /// started.
    Expired,
    /// A placeholder while a slot changes state (replaced at once: by
    /// the running call, or by the result of a failed `poll_ready`).
    Empty,
    Done(Reply<Res>, Outcome, Option<Duration>),
}

pub(crate) struct Running<S, Req, C, M>
where
    S: Service<Req>,
{
    shared: Arc<Shared<C, M>>,
    running: usize,
    slots: Vec<Slot<S, S::Future, S::Response>>,
    req: Option<Req>,
    queued: usize,
    started: Instant,
    timer_cause: Option<TimerCause>,
    /// The deadline had passed before any backend was called.
    expired: bool,
    succeeded: usize,
    settled: usize,
}

pin_project! {
    /// One backend call with its index and start, yielding its result and
    /// latency.
    pub(crate) struct Call<F> {
        #[pin]
        pub(crate) fut: F,
        pub(crate) idx: usize,
        pub(crate) start: Instant,
    }
}

impl<F, T, E> Future for Call<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    /// The index, the result and when the call started.
    type Output = (usize, Result<T, BoxError>, Instant);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.fut.poll(cx));
        Poll::Ready((*this.idx, out.map_err(Into::into), *this.start))
    }
}

/// `true` when `err` or anything in its `source()` chain is a
/// [`CircuitOpen`].
fn is_circuit_open(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<CircuitOpen>() {
            return true;
        }
        current = e.source();
    }
    false
}

impl<S, Req, C, M> ResponseFuture<S, Req, C, M>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone + DeadlineCarrier,
    C: Classify<S::Response, BoxError>,
    M: Merge<S::Response>,
{
    pub(crate) fn start(backends: &mut [Backend<S>], shared: &Arc<Shared<C, M>>, req: Req) -> Self {
        let n = backends.len();
        let now = Instant::now();
        // The request's deadline, or the one a `DeadlineLayer` outside
        // has in scope.
        let deadline = battlement_core::deadline::effective(&req);
        let (timer_at, timer_cause) = match (shared.strategy, deadline) {
            (Strategy::BestEffort(window), deadline) => match (now.checked_add(window), deadline) {
                (Some(end), Some(d)) if d.instant() > end => (Some(end), Some(TimerCause::Window)),
                (Some(end), None) => (Some(end), Some(TimerCause::Window)),
                (_, Some(d)) => (
                    Some(d.instant()),
                    Some(TimerCause::Deadline {
                        budget: d.remaining_at(now),
                    }),
                ),
                (None, None) => (None, None),
            },
            (_, Some(d)) => (
                Some(d.instant()),
                Some(TimerCause::Deadline {
                    budget: d.remaining_at(now),
                }),
            ),
            (_, None) => (None, None),
        };
        let expired = deadline.is_some_and(|d| d.instant() <= now);
        let mut state = Running {
            shared: shared.clone(),
            running: 0,
            slots: Vec::with_capacity(n),
            req: None,
            queued: 0,
            started: now,
            timer_cause,
            expired,
            succeeded: 0,
            settled: 0,
        };
        let limit = shared.max_concurrency;
        for (idx, backend) in backends.iter_mut().enumerate() {
            if expired && !matches!(backend.ready, Readiness::Failed(_)) {
                // Nothing is called; the backend's readiness is kept for
                // the next request, as `tower::load_shed` does.
                state.slots.push(Slot::Expired);
                continue;
            }
            match mem::replace(&mut backend.ready, Readiness::NotReady) {
                Readiness::Ready if state.running < limit => {
                    let fut = backend.service.call(req.clone());
                    state.slots.push(Slot::Running(Box::pin(Call {
                        fut,
                        idx,
                        start: now,
                    })));
                    state.running += 1;
                }
                Readiness::Ready => {
                    // Clone-and-swap: the instance that was polled ready
                    // goes into the future, to be called when a slot frees.
                    let clone = backend.service.clone();
                    state.slots.push(Slot::Queued {
                        service: mem::replace(&mut backend.service, clone),
                        ready: true,
                    });
                    state.queued += 1;
                }
                Readiness::Failed(err) => {
                    state.slots.push(Slot::Empty);
                    state.record(idx, Err(err), None);
                }
                Readiness::NotReady => {
                    // Not ready yet: a clone is driven to readiness in the
                    // future, so this backend does not hold the others
                    // back. The original keeps its own readiness.
                    state.slots.push(Slot::Queued {
                        service: backend.service.clone(),
                        ready: false,
                    });
                    state.queued += 1;
                }
            }
        }
        if state.queued > 0 {
            state.req = Some(req);
        }
        ResponseFuture {
            timer: timer_at.filter(|_| !expired).map(tokio::time::sleep_until),
            state: Some(state),
        }
    }
}

impl<S, Req, C, M> Running<S, Req, C, M>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Req: Clone,
    C: Classify<S::Response, BoxError>,
    M: Merge<S::Response>,
{
    fn record(
        &mut self,
        idx: usize,
        result: Result<S::Response, BoxError>,
        latency: Option<Duration>,
    ) {
        let outcome = self.shared.classifier.classify(&result);
        let backend = &self.shared.stats.backends[idx];
        let reply = match result {
            Ok(res) => Reply::Response(res),
            Err(err) if is_circuit_open(&*err) => {
                self.shared
                    .events
                    .emit(&self.shared.name, || EventKind::Skipped {
                        backend: backend.name.clone(),
                        reason: err.to_string().into(),
                    });
                Reply::Skipped(err)
            }
            Err(err) => Reply::Error(err),
        };
        backend.record(outcome, reply.is_skipped(), latency);
        if outcome.is_success() {
            self.succeeded += 1;
        }
        self.settled += 1;
        self.slots[idx] = Slot::Done(reply, outcome, latency);
    }

    fn needed(&self) -> usize {
        match self.shared.strategy {
            Strategy::Quorum(n) => n,
            _ => 1,
        }
    }

    fn decided(&self) -> bool {
        let total = self.slots.len();
        if self.settled == total {
            return true;
        }
        match self.shared.strategy {
            Strategy::FirstSuccess => self.succeeded >= 1,
            Strategy::Quorum(n) => {
                self.succeeded >= n || self.succeeded + (total - self.settled) < n
            }
            _ => false,
        }
    }

    /// Starts queued calls, in the order the backends were added, while
    /// concurrency slots are free; a backend not ready yet is polled for
    /// readiness (its waker is this future's) and skipped until it is.
    fn start_queued(&mut self, cx: &mut Context<'_>) {
        if self.queued == 0 {
            return;
        }
        for idx in 0..self.slots.len() {
            if self.queued == 0 || self.running >= self.shared.max_concurrency {
                break;
            }
            let Slot::Queued { service, ready } = &mut self.slots[idx] else {
                continue;
            };
            if !*ready {
                match service.poll_ready(cx) {
                    Poll::Pending => continue,
                    Poll::Ready(Err(err)) => {
                        self.queued -= 1;
                        self.record(idx, Err(err.into()), None);
                        continue;
                    }
                    Poll::Ready(Ok(())) => {}
                }
            }
            let Slot::Queued { mut service, .. } = mem::replace(&mut self.slots[idx], Slot::Empty)
            else {
                continue;
            };
            self.queued -= 1;
            let req = if self.queued == 0 {
                self.req.take()
            } else {
                self.req.clone()
            };
            let req = req.expect("the request is kept while calls are queued");
            let fut = service.call(req);
            self.slots[idx] = Slot::Running(Box::pin(Call {
                fut,
                idx,
                start: Instant::now(),
            }));
            self.running += 1;
        }
    }

    fn finish(self, end: End) -> Result<M::Output, BoxError> {
        // Every call still running is dropped below, as its slot is read.
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.started);
        let needed = self.needed();
        let total = self.slots.len();
        let shared = self.shared;
        let by_timer = matches!(end, End::Timer);
        let results = self.slots.into_iter().enumerate().map(|(idx, slot)| {
            let stats = &shared.stats.backends[idx];
            let (reply, outcome, latency) = match slot {
                Slot::Done(reply, outcome, latency) => (reply, outcome, latency),
                Slot::Running(_) if by_timer => {
                    let outcome = Outcome::failure(FailureKind::Timeout);
                    stats.record(outcome, false, None);
                    (Reply::TimedOut, outcome, None)
                }
                Slot::Running(_) | Slot::Empty => {
                    stats.record_abandoned();
                    (Reply::Cancelled, Outcome::Ignored, None)
                }
                Slot::Queued { .. } | Slot::Expired => {
                    stats.record_abandoned();
                    (Reply::NotCalled, Outcome::Ignored, None)
                }
            };
            BackendResult {
                name: stats.name.clone(),
                reply,
                outcome,
                latency,
            }
        });
        if self.succeeded >= needed {
            return shared.merge.merge(Responses {
                results: results.collect(),
                elapsed,
            });
        }
        // Calls cut, or never made, because of the request's deadline.
        let deadline_error = match self.timer_cause {
            Some(TimerCause::Deadline { budget }) if by_timer || self.expired => {
                Some(DeadlineExceeded { budget, elapsed })
            }
            _ => None,
        };
        let errors: Vec<(Name, BoxError)> = results
            .filter(|r| !r.outcome.is_success())
            .map(|r| {
                let err: BoxError = match r.reply {
                    Reply::Error(e) | Reply::Skipped(e) => e,
                    Reply::Response(_) => match r.outcome {
                        Outcome::Failure(failure) => Box::new(ClassifiedFailure { failure }),
                        _ => Box::new(Abandoned {
                            reason: "ignored by the classifier",
                        }),
                    },
                    Reply::TimedOut => match deadline_error {
                        Some(e) => Box::new(e),
                        None => Box::new(Abandoned {
                            reason: "window closed",
                        }),
                    },
                    Reply::Cancelled => Box::new(Abandoned {
                        reason: "cancelled",
                    }),
                    Reply::NotCalled => match deadline_error {
                        Some(e) => Box::new(e),
                        None => Box::new(Abandoned {
                            reason: "not called",
                        }),
                    },
                };
                (r.name, err)
            })
            .collect();
        match shared.strategy {
            Strategy::Quorum(_) => Err(Box::new(QuorumNotReached {
                succeeded: self.succeeded,
                needed,
                total,
                errors,
            })),
            _ => Err(Box::new(AllFailed { errors })),
        }
    }
}

impl<S, Req, C, M> Future for ResponseFuture<S, Req, C, M>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Req: Clone,
    C: Classify<S::Response, BoxError>,
    M: Merge<S::Response>,
{
    type Output = Result<M::Output, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let state = this
            .state
            .as_mut()
            .expect("fan-out future polled after completion");
        // One clock read per poll: the calls that finished in this poll
        // finished "now".
        let mut now = None;
        let end = 'outer: loop {
            if state.decided() {
                break Some(End::Decided);
            }
            state.start_queued(cx);
            if state.decided() {
                // A backend's readiness failed and settled it.
                break Some(End::Decided);
            }
            let mut freed = false;
            for idx in 0..state.slots.len() {
                let Slot::Running(call) = &mut state.slots[idx] else {
                    continue;
                };
                if let Poll::Ready((_, result, started)) = call.as_mut().poll(cx) {
                    let now = *now.get_or_insert_with(Instant::now);
                    state.running -= 1;
                    // Replaces the slot, dropping the finished call.
                    state.record(idx, result, Some(now.saturating_duration_since(started)));
                    if state.decided() {
                        break 'outer Some(End::Decided);
                    }
                    freed = true;
                }
            }
            if state.running == 0 && state.queued == 0 {
                break Some(End::Decided);
            }
            // Go round again only to start (and poll) calls waiting for
            // a slot that just freed.
            if !(freed && state.queued > 0) {
                break None;
            }
        };
        let end = match end {
            Some(end) => end,
            None => match this.timer.as_pin_mut().map(|t| t.poll(cx)) {
                Some(Poll::Ready(())) => End::Timer,
                _ => return Poll::Pending,
            },
        };
        let state = this.state.take().expect("state present until completion");
        Poll::Ready(state.finish(end))
    }
}
