//! [`HealthBody`]: the response body of the health endpoint, a whole JSON
//! or text document or a Server-Sent Events stream.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use battlement_core::Event;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::broadcast::{self, error::RecvError};

type Recv =
    Pin<Box<dyn Future<Output = (Result<Event, RecvError>, broadcast::Receiver<Event>)> + Send>>;

/// The body of a [`HealthService`](crate::HealthService) response.
pub struct HealthBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Events {
        first: Option<Bytes>,
        rx: Option<broadcast::Receiver<Event>>,
        recv: Option<Recv>,
    },
}

impl fmt::Debug for HealthBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(b) => f
                .debug_tuple("HealthBody::Full")
                .field(&b.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Events { .. } => f.write_str("HealthBody::Events"),
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

    /// A Server-Sent Events stream of the events `rx` receives.
    pub(crate) fn events(rx: broadcast::Receiver<Event>) -> Self {
        HealthBody {
            kind: Kind::Events {
                first: Some(Bytes::from_static(b": battlement events\n\n")),
                rx: Some(rx),
                recv: None,
            },
        }
    }

    /// Collects a whole body into bytes (an events stream yields only what
    /// is ready now). For tests and tools.
    pub fn into_bytes_now(self) -> Bytes {
        match self.kind {
            Kind::Full(b) => b.unwrap_or_default(),
            Kind::Events { first, .. } => first.unwrap_or_default(),
        }
    }
}

/// One event as an SSE message: `event: <kind>` and `data: <json>`.
pub(crate) fn sse_message(event: &Event) -> Bytes {
    let json = serde_json::to_value(event).unwrap_or_default();
    let name = json
        .get("event")
        .and_then(|v| v.as_str())
        .unwrap_or("event")
        .to_owned();
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
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
            Kind::Events { first, rx, recv } => {
                if let Some(b) = first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                let fut = match recv {
                    Some(fut) => fut,
                    None => {
                        let Some(mut r) = rx.take() else {
                            return Poll::Ready(None);
                        };
                        recv.insert(Box::pin(async move {
                            let res = r.recv().await;
                            (res, r)
                        }))
                    }
                };
                let (res, r) = match fut.as_mut().poll(cx) {
                    Poll::Ready(x) => x,
                    Poll::Pending => return Poll::Pending,
                };
                *recv = None;
                match res {
                    Ok(event) => {
                        *rx = Some(r);
                        Poll::Ready(Some(Ok(Frame::data(sse_message(&event)))))
                    }
                    Err(RecvError::Lagged(n)) => {
                        *rx = Some(r);
                        let msg = format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n");
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(msg)))))
                    }
                    // The registry is gone: end the stream.
                    Err(RecvError::Closed) => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Events { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Events { .. } => SizeHint::default(),
        }
    }
}
