//! The client side: [`PropagateDeadlineLayer`] writes the time left.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::BoxError;
use http::Request;
use http::header::{HeaderName, HeaderValue};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::parse::{format_grpc_timeout, format_millis, parse_grpc_timeout, parse_millis};
use super::{GRPC_TIMEOUT, X_REQUEST_TIMEOUT_MS};

/// Writes the time left on an outgoing request's [`Deadline`](battlement_core::Deadline),
/// minus a margin, into its headers, so the next service works to the same
/// budget.
///
/// - The margin (default 5 ms) stands for the time the request spends on
///   the wire, so the server gives up a little before the client does.
/// - The millisecond header (default `x-request-timeout-ms`) is written by
///   default; `grpc-timeout` when [`grpc_timeout`](PropagateDeadlineLayer::grpc_timeout)
///   is set (do so for gRPC clients). Both round down.
/// - The deadline is the request's own or, when it carries none, the one
///   in scope ([`battlement_core::deadline::current`]: an enclosing
///   `DeadlineLayer`'s, even over another request type mapped to this
///   one). A request with neither is sent unchanged. One whose time
///   left is within the margin is sent with a zero budget, which a
///   [`ServerDeadlineLayer`](super::ServerDeadlineLayer) answers with 504
///   at once; put this layer inside a `DeadlineLayer` so the client stops
///   waiting at the same time.
///
/// - It never loosens a deadline the caller already wrote: when the
///   request already carries the header (a tonic client's
///   `set_timeout(200ms)`, an upstream's budget passed on), the header
///   written is the smaller of that value and the time left. A header
///   that does not parse is replaced.
///
/// Its errors are the inner service's, boxed into `BoxError` as every
/// battlement layer's are, so layers stack below it; a boxed error passes
/// through unchanged.
///
/// ```
/// use std::time::Duration;
/// use battlement_deadline::DeadlineLayer;
/// use battlement_deadline::http::PropagateDeadlineLayer;
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut client = ServiceBuilder::new()
///     .layer(DeadlineLayer::new(Duration::from_millis(500)))
///     .layer(PropagateDeadlineLayer::new().grpc_timeout(true))
///     .service(service_fn(|req: http::Request<()>| async move {
///         let ms = req.headers()["x-request-timeout-ms"].to_str().unwrap().to_owned();
///         let grpc = req.headers()["grpc-timeout"].to_str().unwrap().to_owned();
///         Ok::<_, std::convert::Infallible>((ms, grpc))
///     }));
/// let sent = client.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
/// assert_eq!(sent, ("495".to_owned(), "495000u".to_owned()));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PropagateDeadlineLayer {
    margin: Duration,
    millis_header: Option<HeaderName>,
    grpc_timeout: bool,
}

impl PropagateDeadlineLayer {
    /// Writes `x-request-timeout-ms` with a 5 ms margin.
    pub fn new() -> Self {
        PropagateDeadlineLayer {
            margin: Duration::from_millis(5),
            millis_header: Some(HeaderName::from_static(X_REQUEST_TIMEOUT_MS)),
            grpc_timeout: false,
        }
    }

    /// The time taken off the budget before it is written. Default 5 ms.
    #[must_use]
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The millisecond header to write, or `None` for none. Default
    /// `x-request-timeout-ms`.
    #[must_use]
    pub fn millis_header(mut self, name: Option<HeaderName>) -> Self {
        self.millis_header = name;
        self
    }

    /// Whether to write `grpc-timeout`. Default `false`.
    #[must_use]
    pub fn grpc_timeout(mut self, write: bool) -> Self {
        self.grpc_timeout = write;
        self
    }
}

impl Default for PropagateDeadlineLayer {
    fn default() -> Self {
        PropagateDeadlineLayer::new()
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline {
            inner,
            config: self.clone(),
        }
    }
}

/// The service of [`PropagateDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
    config: PropagateDeadlineLayer,
}

impl<S> PropagateDeadline<S> {
    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("digits and a unit are a valid header value")
}

/// The smaller of `left` and what the header `name` of `req` already
/// says, read with `parse`.
fn tighter<B>(
    req: &Request<B>,
    name: &HeaderName,
    left: Duration,
    parse: fn(&[u8]) -> Result<Duration, super::HeaderError>,
) -> Duration {
    match req.headers().get(name).map(|v| parse(v.as_bytes())) {
        Some(Ok(set)) => set.min(left),
        _ => left,
    }
}

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = PropagateFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(deadline) = battlement_core::deadline::effective(&req) {
            let left = deadline.remaining().saturating_sub(self.config.margin);
            if let Some(name) = &self.config.millis_header {
                let budget = tighter(&req, name, left, parse_millis);
                req.headers_mut()
                    .insert(name.clone(), header_value(format_millis(budget)));
            }
            if self.config.grpc_timeout {
                let name = HeaderName::from_static(GRPC_TIMEOUT);
                let budget = tighter(&req, &name, left, parse_grpc_timeout);
                req.headers_mut()
                    .insert(name, header_value(format_grpc_timeout(budget)));
            }
        }
        PropagateFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response future of [`PropagateDeadline`]: the inner future,
    /// its error boxed.
    #[derive(Debug)]
    pub struct PropagateFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T, E> Future for PropagateFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}
