//! The upstream both fronts call: two small JSON routes behind
//! `Chaos::http_layer()`, and in front of the chaos a counter of the
//! calls each side made in each phase (so it counts what reached the
//! upstream's door, refused or not).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::routing::get;
use battlement::chaos::Chaos;
use battlement::http::{ErrorResponseLayer, ResponseBody};
use serde::Deserialize;
use tower::ServiceBuilder;

/// The header a front names itself with on every upstream call.
pub const SIDE_HEADER: &str = "x-demo-side";

/// The two fronts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Through `Policy::http`.
    Protected,
    /// Through a plain client.
    Unprotected,
}

impl Side {
    /// Both, protected first.
    pub const BOTH: [Side; 2] = [Side::Protected, Side::Unprotected];

    /// `protected` or `unprotected`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Protected => "protected",
            Side::Unprotected => "unprotected",
        }
    }

    /// 0 for protected, 1 for unprotected.
    pub const fn index(self) -> usize {
        self as usize
    }

    fn from_header(value: &str) -> Option<Side> {
        match value {
            "protected" => Some(Side::Protected),
            "unprotected" => Some(Side::Unprotected),
            _ => None,
        }
    }
}

/// Calls the upstream received, by side and by phase (one more slot for
/// calls after the schedule ended).
#[derive(Debug)]
pub struct Calls {
    by_side: [Vec<AtomicU64>; 2],
    other: AtomicU64,
}

impl Calls {
    fn new(phases: usize) -> Self {
        let slots = || (0..=phases).map(|_| AtomicU64::new(0)).collect();
        Calls {
            by_side: [slots(), slots()],
            other: AtomicU64::new(0),
        }
    }

    fn record(&self, side: Option<Side>, phase: Option<usize>) {
        let Some(side) = side else {
            self.other.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let slots = &self.by_side[side.index()];
        let slot = phase.unwrap_or(slots.len() - 1).min(slots.len() - 1);
        slots[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls from `side` during phase `index` of the schedule.
    pub fn in_phase(&self, side: Side, index: usize) -> u64 {
        self.by_side[side.index()]
            .get(index)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Every call from `side`.
    pub fn total(&self, side: Side) -> u64 {
        self.by_side[side.index()]
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }

    /// Calls that named no side.
    pub fn unnamed(&self) -> u64 {
        self.other.load(Ordering::Relaxed)
    }
}

/// The running upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it received.
    pub calls: Arc<Calls>,
    /// Its fault injector.
    pub chaos: Chaos,
}

#[derive(Debug, Deserialize)]
struct User {
    user: Option<u32>,
}

async fn order(Path(id): Path<u32>) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "application/json")],
        format!(
            r#"{{"order":{id},"status":"shipped","items":{}}}"#,
            id % 5 + 1
        ),
    )
}

async fn recommendations(Query(q): Query<User>) -> ([(&'static str, &'static str); 1], String) {
    let user = q.user.unwrap_or(0);
    let picks: Vec<String> = (1..=3)
        .map(|i| (user * 7 + i) % 100)
        .map(|p| p.to_string())
        .collect();
    (
        [("content-type", "application/json")],
        format!(r#"{{"user":{user},"picks":[{}]}}"#, picks.join(",")),
    )
}

/// The upstream's router: the counter, then the chaos (its error type
/// made `Infallible` for axum by `ErrorResponseLayer`; the HTTP layer
/// only answers responses), then the routes.
pub fn router(chaos: &Chaos, calls: Arc<Calls>) -> Router {
    let counted = chaos.clone();
    Router::new()
        .route("/orders/{id}", get(order))
        .route("/recommendations", get(recommendations))
        .layer(
            ServiceBuilder::new()
                .map_request(move |req: http::Request<Body>| {
                    let side = req
                        .headers()
                        .get(SIDE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(Side::from_header);
                    calls.record(side, counted.current().map(|at| at.index));
                    req
                })
                .map_response(|res: http::Response<ResponseBody<Body>>| res.map(Body::new))
                .layer(ErrorResponseLayer::new())
                .layer(chaos.http_layer()),
        )
}

/// Serves the upstream on 127.0.0.1 at a port the system picks.
///
/// # Errors
///
/// When no port can be bound.
pub async fn start(chaos: Chaos) -> std::io::Result<Upstream> {
    let calls = Arc::new(Calls::new(chaos.schedule().phases().len()));
    let addr = crate::client::serve(router(&chaos, calls.clone())).await?;
    Ok(Upstream { addr, calls, chaos })
}
