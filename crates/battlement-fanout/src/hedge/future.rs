//! The hedge's response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{BoxError, EventKind};
use futures_util::stream::{FuturesUnordered, StreamExt};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::HedgeState;
use crate::future::Call;

pin_project! {
    /// The [`Hedge`](super::Hedge)'s response future: the primary call and
    /// any backups run inside it; dropping it drops them all.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        primary: Option<S::Future>,
        backups: Option<FuturesUnordered<Call<S::Future>>>,
        #[pin]
        sleep: Sleep,
        service: S,
        req: Option<Req>,
        state: Arc<HedgeState>,
        start: Instant,
        delay: Duration,
        sent: u32,
        timer_fired: bool,
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
            .finish_non_exhaustive()
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
        delay: Duration,
        state: Arc<HedgeState>,
    ) -> Self {
        let start = Instant::now();
        ResponseFuture {
            primary: Some(primary),
            backups: None,
            sleep: tokio::time::sleep_until(instant_after(start, delay)),
            service,
            req: Some(req),
            state,
            start,
            delay,
            sent: 0,
            timer_fired: false,
            last_error: None,
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
            if this.req.is_none() {
                // No more backups for this request.
                return Poll::Pending;
            }
            if !*this.timer_fired {
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *this.timer_fired = true;
            }
            match this.service.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {
                    // The backup path is dead; keep waiting for what runs.
                    *this.req = None;
                    continue;
                }
                Poll::Ready(Ok(())) => {}
            }
            if !this.state.allow_hedge() {
                *this.req = None;
                continue;
            }
            *this.sent += 1;
            let hedge = *this.sent;
            let now = Instant::now();
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
            if this.req.is_some() {
                *this.timer_fired = false;
                this.sleep.as_mut().reset(instant_after(now, *this.delay));
            }
        }
    }
}
