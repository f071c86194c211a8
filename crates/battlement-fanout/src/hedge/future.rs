//! The hedge's response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{BoxError, DeadlineExceeded, EventKind};
use futures_util::stream::{FuturesUnordered, StreamExt};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::HedgeState;
use crate::future::Call;

/// Where the hedge is in sending backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The timer is set to when the next backup is due.
    Waiting,
    /// A backup is due; the backup service is being driven to readiness.
    /// The timer is set to the deadline, if any.
    Due,
    /// No more backups for this request. The timer is set to the
    /// deadline, if any.
    Done,
}

pin_project! {
    /// The [`Hedge`](super::Hedge)'s response future: the primary call and
    /// any backups run inside it; dropping it drops them all. With a
    /// deadline on the request, it ends with
    /// [`DeadlineExceeded`](battlement_core::DeadlineExceeded) when the
    /// deadline passes.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        primary: Option<S::Future>,
        backups: Option<FuturesUnordered<Call<S::Future>>>,
        // One timer: the next backup while `Waiting`, the deadline after.
        #[pin]
        sleep: Sleep,
        service: S,
        req: Option<Req>,
        state: Arc<HedgeState>,
        start: Instant,
        delay: Duration,
        deadline: Option<Instant>,
        sent: u32,
        phase: Phase,
        last_error: Option<BoxError>,
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("hedge", &self.state.name)
            .field("primary_running", &self.primary.is_some())
            .field("backups_sent", &self.sent)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// `true` when a backup sent at `at` could still be useful: the deadline
/// has not passed and at least `delay` is left before it.
fn worth_sending(at: Instant, delay: Duration, deadline: Option<Instant>) -> bool {
    match deadline {
        None => true,
        Some(d) => {
            let left = d.saturating_duration_since(at);
            !left.is_zero() && left >= delay
        }
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        primary: S::Future,
        service: S,
        req: Req,
        start: Instant,
        delay: Duration,
        deadline: Option<Instant>,
        state: Arc<HedgeState>,
    ) -> Self {
        let first = instant_after(start, delay);
        let (phase, wake, req) = if worth_sending(first, delay, deadline) {
            (Phase::Waiting, first, Some(req))
        } else {
            state.deadline_skipped.fetch_add(1, Relaxed);
            // `deadline` is `Some`: without one every backup is worth it.
            (Phase::Done, deadline.unwrap_or(first), None)
        };
        ResponseFuture {
            primary: Some(primary),
            backups: None,
            sleep: tokio::time::sleep_until(wake),
            service,
            req,
            state,
            start,
            delay,
            deadline,
            sent: 0,
            phase,
            last_error: None,
        }
    }

    /// A future for a request whose deadline had passed before it was
    /// sent: it fails at once and the inner service is not called.
    pub(crate) fn expired(service: S, start: Instant, state: Arc<HedgeState>) -> Self {
        state.requests.fetch_add(1, Relaxed);
        state.deadline_exceeded.fetch_add(1, Relaxed);
        ResponseFuture {
            primary: None,
            backups: None,
            sleep: tokio::time::sleep_until(start),
            service,
            req: None,
            state,
            start,
            delay: Duration::ZERO,
            deadline: Some(start),
            sent: 0,
            phase: Phase::Done,
            last_error: Some(Box::new(DeadlineExceeded {
                budget: Duration::ZERO,
                elapsed: Duration::ZERO,
            })),
        }
    }
}

/// `at + delay`, or about thirty years on if that overflows.
fn instant_after(at: Instant, delay: Duration) -> Instant {
    at.checked_add(delay)
        .unwrap_or_else(|| at + Duration::from_secs(86_400 * 365 * 30))
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Req: Clone,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(primary) = this.primary.as_mut().as_pin_mut()
                && let Poll::Ready(result) = primary.poll(cx)
            {
                this.primary.set(None);
                match result {
                    Ok(res) => {
                        this.state.record_latency(this.start.elapsed());
                        return Poll::Ready(Ok(res));
                    }
                    Err(err) => *this.last_error = Some(err.into()),
                }
            }
            if let Some(backups) = this.backups.as_mut() {
                while let Poll::Ready(Some((_, result, started))) = backups.poll_next_unpin(cx) {
                    match result {
                        Ok(res) => {
                            this.state.record_latency(started.elapsed());
                            this.state.hedges_won.fetch_add(1, Relaxed);
                            return Poll::Ready(Ok(res));
                        }
                        Err(err) => *this.last_error = Some(err),
                    }
                }
            }
            let in_flight =
                usize::from(this.primary.is_some()) + this.backups.as_ref().map_or(0, |b| b.len());
            if in_flight == 0 {
                let err = this
                    .last_error
                    .take()
                    .expect("every attempt failed, so there is an error");
                return Poll::Ready(Err(err));
            }
            if *this.phase == Phase::Waiting {
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *this.phase = Phase::Due;
                if let Some(deadline) = *this.deadline {
                    // While the backup service gets ready, the timer
                    // watches the deadline.
                    this.sleep.as_mut().reset(deadline);
                }
            }
            if *this.phase == Phase::Due {
                let now = Instant::now();
                if !worth_sending(now, *this.delay, *this.deadline) {
                    this.state.deadline_skipped.fetch_add(1, Relaxed);
                    *this.phase = Phase::Done;
                    *this.req = None;
                    continue;
                }
                match this.service.poll_ready(cx) {
                    Poll::Pending => {}
                    Poll::Ready(Err(_)) => {
                        // The backup path is dead; keep waiting for what runs.
                        *this.phase = Phase::Done;
                        *this.req = None;
                        continue;
                    }
                    Poll::Ready(Ok(())) if !this.state.allow_hedge() => {
                        *this.phase = Phase::Done;
                        *this.req = None;
                        continue;
                    }
                    Poll::Ready(Ok(())) => {
                        *this.sent += 1;
                        let hedge = *this.sent;
                        let after = now.saturating_duration_since(*this.start);
                        this.state.hedges_sent.fetch_add(1, Relaxed);
                        this.state
                            .events
                            .emit(&this.state.name, || EventKind::Hedged { hedge, after });
                        let req = if hedge >= this.state.max_hedges {
                            this.req.take()
                        } else {
                            this.req.clone()
                        };
                        let fut = this
                            .service
                            .call(req.expect("a request is kept while backups may be sent"));
                        this.backups
                            .get_or_insert_with(FuturesUnordered::new)
                            .push(Call {
                                fut,
                                idx: hedge as usize,
                                start: now,
                            });
                        let next = instant_after(now, *this.delay);
                        if this.req.is_none() {
                            *this.phase = Phase::Done;
                        } else if worth_sending(next, *this.delay, *this.deadline) {
                            *this.phase = Phase::Waiting;
                            this.sleep.as_mut().reset(next);
                        } else {
                            this.state.deadline_skipped.fetch_add(1, Relaxed);
                            *this.phase = Phase::Done;
                            *this.req = None;
                        }
                        continue;
                    }
                }
            }
            // `Due` waiting for the backup service, or `Done`: only the
            // deadline (if any) can end the request now.
            let Some(deadline) = *this.deadline else {
                return Poll::Pending;
            };
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.state.deadline_exceeded.fetch_add(1, Relaxed);
            let now = Instant::now();
            return Poll::Ready(Err(Box::new(DeadlineExceeded {
                budget: deadline.saturating_duration_since(*this.start),
                elapsed: now.saturating_duration_since(*this.start),
            })));
        }
    }
}
