//! The `tonic_grpc` example: a tonic server on `127.0.0.1:0` and a
//! tonic client whose channel is wrapped in `Policy::grpc`.
//!
//! The server's `Reserve` answers by the SKU's prefix: `flaky-` is
//! `UNAVAILABLE` twice, then reserves; `bad-` is `INVALID_ARGUMENT`;
//! `down-` is always `UNAVAILABLE`. The client's stack, outermost first:
//!
//! - `GrpcErrorLayer`: the workspace's refusals become a `tonic::Status`
//!   (an open circuit is `UNAVAILABLE` with `grpc-retry-pushback-ms`, not
//!   tonic's `UNKNOWN`);
//! - `ReplayBodyLayer`: the request's body (a stream, for tonic) is kept
//!   as it is sent so a retry can send it again;
//! - `Policy::grpc`: judged by `grpc-status`, `UNAVAILABLE` retried, the
//!   caller's mistakes (`INVALID_ARGUMENT`, ...) neither retried nor
//!   counted by the breaker;
//! - `PropagateDeadlineLayer` writes each attempt's time left as
//!   `grpc-timeout`, never above a timeout the caller set
//!   (`Request::set_timeout`);
//! - the body is turned back into tonic's own for the `Channel`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use battlement::deadline::http::{PropagateDeadline, PropagateDeadlineLayer, parse_grpc_timeout};
use battlement::http::ReplayBodyLayer;
use battlement::http::tonic::GrpcErrorLayer;
use battlement::prelude::*;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};
use tower::ServiceBuilder;

/// The code generated from `tonic_grpc/stock.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("stock");
}

use pb::stock_client::StockClient;
use pb::stock_server::{Stock, StockServer};
use pb::{ReserveReply, ReserveRequest};

/// What the server saw: calls per SKU, and the `grpc-timeout` of each
/// call.
#[derive(Debug, Default)]
pub struct Seen {
    calls: Mutex<HashMap<String, u32>>,
    timeouts: Mutex<Vec<Option<Duration>>>,
}

impl Seen {
    /// The `grpc-timeout` of every call, in order (`None` when absent).
    pub fn timeouts(&self) -> Vec<Option<Duration>> {
        self.timeouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The calls the server answered for `sku`.
    pub fn calls(&self, sku: &str) -> u32 {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.get(sku).copied().unwrap_or(0)
    }

    fn count(&self, sku: &str) -> u32 {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let n = calls.entry(sku.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

#[derive(Debug)]
struct StockService {
    seen: Arc<Seen>,
}

#[tonic::async_trait]
impl Stock for StockService {
    async fn reserve(
        &self,
        req: Request<ReserveRequest>,
    ) -> Result<Response<ReserveReply>, Status> {
        let timeout = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| parse_grpc_timeout(v.as_bytes()).ok());
        self.seen
            .timeouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(timeout);
        let ReserveRequest { sku, quantity } = req.into_inner();
        let n = self.seen.count(&sku);
        if sku.starts_with("bad-") {
            return Err(Status::invalid_argument("no such SKU format"));
        }
        if sku.starts_with("down-") || (sku.starts_with("flaky-") && n <= 2) {
            return Err(Status::unavailable("warehouse offline"));
        }
        Ok(Response::new(ReserveReply {
            sku,
            reserved: quantity,
        }))
    }
}

/// Serves the stock service on `127.0.0.1` at a port the system picks,
/// in a background task, and returns its address and what it sees.
///
/// # Errors
///
/// When no port can be bound.
pub async fn serve() -> std::io::Result<(SocketAddr, Arc<Seen>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Seen::default());
    let service = StockServer::new(StockService { seen: seen.clone() });
    tokio::spawn(async move {
        // The server ends with the process (or the test's runtime).
        let _ = Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await;
    });
    Ok((addr, seen))
}

/// The client's policy: `Policy::grpc` with a registry (so an instrument).
pub type StockPolicy = Policy<
    GrpcClassifier,
    battlement::AnyMethod,
    tower::layer::util::Identity,
    tower::layer::util::Identity,
    battlement::registry::InstrumentLayer<GrpcClassifier>,
>;

/// The client's stack over a `Channel`: see the module docs.
pub type Client = StockClient<
    battlement::http::tonic::GrpcError<
        battlement::http::ReplayBodyService<
            <StockPolicy as tower::Layer<
                PropagateDeadline<tower::util::MapRequest<Channel, ToTonicBody>>,
            >>::Service,
        >,
    >,
>;

/// Turns the replay body back into tonic's own, for the `Channel`.
pub type ToTonicBody = fn(
    http::Request<battlement::http::ReplayBody<tonic::body::Body>>,
) -> http::Request<tonic::body::Body>;

/// A client of the server at `addr`: `Policy::grpc` ("stock") with three
/// attempts, a breaker that opens after three failures in a row, and
/// its parts registered in `registry`. Returns the policy too, to look at
/// its breaker.
///
/// # Errors
///
/// When the address is not a valid URI or the policy is refused.
pub fn client(addr: SocketAddr, registry: &Registry) -> Result<(Client, StockPolicy), BoxError> {
    let policy = Policy::grpc("stock")
        .total(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(500))
        .retry(|r| {
            r.max_attempts(3)
                .backoff(Backoff::exponential(Duration::from_millis(10)))
        })
        .breaker(|b| {
            b.consecutive_failures(3)
                .no_failure_rate()
                .open_duration(Duration::from_secs(30))
        })
        .allow(Check::RetriesFitTotal)
        .registry(registry)
        .build()?;
    let channel = Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy();
    let to_tonic: ToTonicBody = |req| req.map(tonic::body::Body::new);
    let svc = ServiceBuilder::new()
        .layer(GrpcErrorLayer::new())
        .layer(ReplayBodyLayer::new())
        .layer(policy.clone())
        .layer(
            PropagateDeadlineLayer::new()
                .grpc_timeout(true)
                .millis_header(None),
        )
        .map_request(to_tonic)
        .service(channel);
    Ok((StockClient::new(svc), policy))
}

/// Reserves `quantity` of `sku` through `client`.
///
/// # Errors
///
/// The call's `Status`.
pub async fn reserve(client: &mut Client, sku: &str, quantity: u32) -> Result<u32, Status> {
    reserve_within(client, sku, quantity, None).await
}

/// [`reserve`], with the caller's own timeout set on the request
/// (`Request::set_timeout`) when `timeout` is given.
///
/// # Errors
///
/// The call's `Status`.
pub async fn reserve_within(
    client: &mut Client,
    sku: &str,
    quantity: u32,
    timeout: Option<Duration>,
) -> Result<u32, Status> {
    let mut req = Request::new(ReserveRequest {
        sku: sku.to_string(),
        quantity,
    });
    if let Some(timeout) = timeout {
        req.set_timeout(timeout);
    }
    let reply = client.reserve(req).await?;
    Ok(reply.into_inner().reserved)
}
