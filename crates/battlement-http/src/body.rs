//! [`HealthBody`]: the response body of the health endpoint, a whole JSON
//! or text document or a Server-Sent Events stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::Event;
use battlement_registry::{Numbered, Registry, Resume};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, Sleep};

type Recv = Pin<
    Box<dyn Future<Output = (Result<Numbered, RecvError>, broadcast::Receiver<Numbered>)> + Send>,
>;

/// The body of a [`HealthService`](crate::HealthService) response.
pub struct HealthBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Events(Box<Events>),
}

/// An event stream: what is left to send first (the opening comment, a
/// `lagged` message for events no longer kept, the replayed events), then
/// the receiver, with a keep-alive comment after each quiet interval.
struct Events {
    first: VecDeque<Bytes>,
    rx: Option<broadcast::Receiver<Numbered>>,
    recv: Option<Recv>,
    keep_alive: Duration,
    sleep: Pin<Box<Sleep>>,
    registry: Registry,
}

impl fmt::Debug for HealthBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(b) => f
                .debug_tuple("HealthBody::Full")
                .field(&b.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Events(_) => f.write_str("HealthBody::Events"),
        }
    }
}

impl HealthBody {
    /// A body of `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        HealthBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        HealthBody {
            kind: Kind::Full(None),
        }
    }

    /// A Server-Sent Events stream of `resume`: a `lagged` message when
    /// events were missed, the replayed events, then every later one; a
    /// keep-alive comment after each `keep_alive` without a message.
    pub(crate) fn events(registry: Registry, resume: Resume, keep_alive: Duration) -> Self {
        let mut first = VecDeque::with_capacity(resume.replay.len() + 2);
        first.push_back(Bytes::from_static(b": battlement events\n\n"));
        if resume.missed > 0 {
            first.push_back(lagged_message(resume.missed));
        }
        first.extend(resume.replay.iter().map(|(n, e)| sse_message(*n, e)));
        HealthBody {
            kind: Kind::Events(Box::new(Events {
                first,
                rx: Some(resume.receiver),
                recv: None,
                keep_alive,
                sleep: Box::pin(tokio::time::sleep(keep_alive)),
                registry,
            })),
        }
    }

    /// Collects a whole body into bytes (an events stream yields only what
    /// is ready now). For tests and tools.
    pub fn into_bytes_now(self) -> Bytes {
        match self.kind {
            Kind::Full(b) => b.unwrap_or_default(),
            Kind::Events(events) => events
                .first
                .into_iter()
                .flatten()
                .collect::<Vec<u8>>()
                .into(),
        }
    }
}

/// One event as an SSE message: `id: <n>`, `event: <kind>` and
/// `data: <json>`.
pub(crate) fn sse_message(n: u64, event: &Event) -> Bytes {
    let json = serde_json::to_value(event).unwrap_or_default();
    let name = json
        .get("event")
        .and_then(|v| v.as_str())
        .unwrap_or("event")
        .to_owned();
    Bytes::from(format!("id: {n}\nevent: {name}\ndata: {json}\n\n"))
}

/// The message telling a client it missed `n` events.
fn lagged_message(n: u64) -> Bytes {
    Bytes::from(format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n"))
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

impl Events {
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(b) = self.first.pop_front() {
            return Poll::Ready(Some(b));
        }
        let fut = match &mut self.recv {
            Some(fut) => fut,
            None => {
                let Some(mut r) = self.rx.take() else {
                    return Poll::Ready(None);
                };
                self.recv.insert(Box::pin(async move {
                    let res = r.recv().await;
                    (res, r)
                }))
            }
        };
        let (res, r) = match fut.as_mut().poll(cx) {
            Poll::Ready(x) => x,
            Poll::Pending => {
                // Quiet: a comment when the interval is over, so proxies
                // and clients keep the connection.
                if self.sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Bytes::from_static(KEEP_ALIVE)));
                }
                return Poll::Pending;
            }
        };
        self.recv = None;
        match res {
            Ok((n, event)) => {
                self.rx = Some(r);
                Poll::Ready(Some(sse_message(n, &event)))
            }
            Err(RecvError::Lagged(n)) => {
                // A slow client: the channel dropped the oldest events it
                // had not read (memory stays bounded, senders never wait);
                // told to the client and counted.
                self.rx = Some(r);
                self.registry.count_lagged(n);
                Poll::Ready(Some(lagged_message(n)))
            }
            // The registry is gone: end the stream.
            Err(RecvError::Closed) => Poll::Ready(None),
        }
    }
}

impl Body for HealthBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Events(events) => {
                let message = std::task::ready!(events.poll_message(cx));
                // Every message (a keep-alive included) starts the quiet
                // interval again.
                let at = Instant::now() + events.keep_alive;
                events.sleep.as_mut().reset(at);
                Poll::Ready(message.map(|b| Ok(Frame::data(b))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Events(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Events(_) => SizeHint::default(),
        }
    }
}
