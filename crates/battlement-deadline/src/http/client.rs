//! The client side: [`PropagateDeadlineLayer`] writes the time left.

use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use http::header::{HeaderName, HeaderValue};
use tower_layer::Layer;
use tower_service::Service;

use super::parse::{format_grpc_timeout, format_millis};
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
/// It adds nothing to the response path: the inner future is returned as
/// it is.
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

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(deadline) = battlement_core::deadline::effective(&req) {
            let left = deadline.remaining().saturating_sub(self.config.margin);
            if let Some(name) = &self.config.millis_header {
                req.headers_mut()
                    .insert(name.clone(), header_value(format_millis(left)));
            }
            if self.config.grpc_timeout {
                req.headers_mut().insert(
                    HeaderName::from_static(GRPC_TIMEOUT),
                    header_value(format_grpc_timeout(left)),
                );
            }
        }
        self.inner.call(req)
    }
}
