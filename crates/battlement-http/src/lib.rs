//! **battlement-http**: the HTTP glue of battlement.
//!
//! # The problem
//!
//! During an incident an operator needs to see every breaker, gate and
//! instrumented service of a process, follow what changes, and act (reset a
//! breaker, raise a level) without a redeploy; and a client of a protected
//! service needs an honest status code when a layer refused its call. This
//! crate serves a [`Registry`](battlement_registry::Registry) over HTTP
//! ([`HealthService`]) and maps the workspace's errors to responses
//! ([`error_status`], [`error_response`]), and judges HTTP and gRPC
//! responses for every layer ([`HttpClassifier`], [`GrpcClassifier`]).
//!
//! # When to use it
//!
//! Mount [`HealthService`] on an operations port or under a path of your
//! axum router (`Router::new().nest_service("/ops", svc)`), or serve it
//! with hyper directly. Turn controls on only with an authorizer.
//!
//! ```
//! use battlement_http::HealthService;
//! use battlement_registry::Registry;
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let registry = Registry::new();
//! let _instrument = registry.layer("api").unwrap();
//! let health = HealthService::new(registry).with_bearer_token("s3cret");
//!
//! let res = health
//!     .clone()
//!     .oneshot(http::Request::get("/health/api").body(String::new()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), 200);
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(json["kind"], "instrument");
//!
//! // Controls need the token.
//! let res = health
//!     .oneshot(http::Request::post("/health/api/reset").body(String::new()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), 401);
//! # }
//! ```
//!
//! # Decisions
//!
//! - Routes, statuses and error bodies are listed on [`HealthService`].
//!   `GET /health` answers `200` for `degraded` (the process still serves;
//!   a load balancer should keep it) and `503` only for `unhealthy`.
//! - Controls are off unless enabled; a missing or wrong bearer token is
//!   `401` with a bare `WWW-Authenticate: Bearer` (no RFC 6750 `error`
//!   parameter: a missing and a wrong token answer alike) and the JSON
//!   error `unauthenticated`; controls while disabled are `403`. A control
//!   that succeeds answers `{"component", "control", "applied": true,
//!   "health"}`, `health` being the component's report after it.
//!   A blank token (`with_bearer_token("")`, an unset variable read with
//!   `unwrap_or_default`) leaves them off rather than letting `Bearer `
//!   in; the scheme is matched in any case, two `Authorization` headers
//!   are refused, and the token is compared in constant time.
//! - The event stream sends a comment first (so clients see the stream
//!   open), then one SSE message per event with its `id`; it resumes
//!   after a reconnecting client's `Last-Event-ID` from a small bounded
//!   replay buffer, sends a keep-alive comment after each quiet interval
//!   (15 s by default, `HealthService::with_keep_alive`), and a slow
//!   client is lagged (told `event: lagged` and counted), never a cause
//!   of unbounded memory or of a waiting emitter.
//! - Bodies of controls are read up to 16 KiB (anything bigger is `413`,
//!   at once when `content-length` announces it)
//!   and within 10 s by default (`408` past it, so a client sending a byte
//!   at a time cannot hold a control open).
//! - Paths are percent-decoded strictly, before routing: a bad escape is
//!   `400`, and an encoded spelling of a route is that route.
//! - Values from the network never panic: a `Retry-After` or pushback too
//!   large to hold saturates, garbage is ignored (or, for gRPC, read as
//!   gRPC clients read it).
//! - [`HttpClassifier`] counts 4xx other than 408 and 429 as `Ignored` (a
//!   caller's mistake is neither a success nor a failure of the service);
//!   [`GrpcClassifier`] reads `grpc-status` from the response's headers
//!   (a trailers-only response: how gRPC servers, tonic included, answer a
//!   call that fails before its first message); [`GrpcTrailersLayer`]
//!   corrects an instrument's count from the trailers when the body ends,
//!   judging them with the classifier it is given. A breaker sees them
//!   too when it defers with [`GrpcTrailersDefer`] over that layer: it
//!   records such a call once, when the body ends, with the trailers'
//!   outcome (not a success at the headers then a failure); a body
//!   dropped before its end is not recorded (as a dropped call). Retries
//!   still act at the headers: a retry cannot wait for the end of a body
//!   it has already handed to its caller (see [`GrpcClassifier`]).
//! - Header propagation of deadlines lives in `battlement-deadline`.
//! - Request bodies are made replayable by [`ReplayBodyLayer`], above the
//!   retry: each body is kept as it is sent (not read up front), up to a
//!   bound (64 KiB by default), and replayed by the retry's copy; a larger
//!   body is sent once and its [`ReplayState`] in the request's extensions
//!   says it can no longer be repeated, which the facade's `Idempotent`
//!   and `AnyMethod` ask before each retry.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
pub mod axum;
mod body;
mod classify;
mod dashboard;
mod health;
mod replay;
#[cfg(feature = "reqwest")]
mod reqwest;
mod respond;
mod response;
#[cfg(feature = "tonic")]
pub mod tonic;
mod trailers;

pub use body::HealthBody;
pub use classify::{GrpcClassifier, GrpcCode, HttpClassifier};
pub use health::{Authorization, HealthFuture, HealthService};
pub use replay::{
    DEFAULT_MAX_BYTES, NotReplayable, ReplayBody, ReplayBodyLayer, ReplayBodyService, ReplayState,
};
pub use respond::{ErrorResponse, ErrorResponseFuture, ErrorResponseLayer, ResponseBody};
pub use response::{error_response, error_status};
pub use trailers::{
    GrpcTrailers, GrpcTrailersDefer, GrpcTrailersLayer, TrailersBody, TrailersFuture,
};
