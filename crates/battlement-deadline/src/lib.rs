//! A timeout budget for Tower services: **one deadline per request**,
//! shared by retries, split among attempts, visible to every layer inside,
//! and handed on to the next service.
//!
//! # The problem
//!
//! A plain per-call timeout (`tower::timeout`) bounds one call. Stack it
//! under a retry layer and three attempts of 10 s each can keep a caller
//! waiting 30 s; stack it above and a retry cannot tell how much time is
//! left. What a caller has is one budget for the whole request. This crate
//! makes that budget a value, a [`Deadline`](battlement_core::Deadline)
//! (an absolute instant on tokio's clock) carried by the request through
//! [`DeadlineCarrier`](battlement_core::DeadlineCarrier), and enforces it:
//!
//! - [`DeadlineLayer::new(total)`](DeadlineLayer) sets the request's
//!   deadline to now + `total` (or keeps an earlier one it already
//!   carries: never loosens) and fails with
//!   [`DeadlineExceeded`](battlement_core::DeadlineExceeded) when it
//!   passes, cancelling the inner future. Not retryable.
//! - [`AttemptTimeoutLayer::new(per_attempt)`](AttemptTimeoutLayer) bounds
//!   one attempt by `min(per_attempt, time left)`, or (through
//!   [`builder().fraction(f)`](AttemptTimeoutConfig::fraction)) by a
//!   fraction of the time left, and fails with
//!   [`AttemptTimedOut`](battlement_core::AttemptTimedOut), which is
//!   retryable.
//! - [`http`] (feature `http`, on by default) carries the budget across
//!   process boundaries in `grpc-timeout` and `x-request-timeout-ms`.
//!
//! # When to use it
//!
//! Put `DeadlineLayer` outside your retry layer and `AttemptTimeoutLayer`
//! inside it (the canonical order is `DeadlineLayer(total) → RetryLayer →
//! BreakerLayer → AttemptTimeoutLayer → service`). Use the HTTP layers when
//! your service calls others and the caller's budget should bound them too.
//!
//! ```
//! use std::time::Duration;
//! use battlement_core::{AttemptTimedOut, BoxError, DeadlineExceeded};
//! use battlement_deadline::{AttemptTimeoutLayer, DeadlineLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let slow = service_fn(|_: &'static str| async {
//!     tokio::time::sleep(Duration::from_secs(5)).await;
//!     Ok::<_, BoxError>("done")
//! });
//! let mut svc = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_millis(500)))
//!     .layer(AttemptTimeoutLayer::new(Duration::from_millis(200)))
//!     .service(slow);
//!
//! // The attempt's own bound passes first: a retry layer may try again.
//! let err = svc.ready().await.unwrap().call("get").await.unwrap_err();
//! assert!(err.is::<AttemptTimedOut>());
//!
//! // With the attempt bound larger than the budget, the budget wins.
//! let mut svc = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_millis(500)))
//!     .layer(AttemptTimeoutLayer::new(Duration::from_secs(2)))
//!     .service(slow);
//! let err = svc.ready().await.unwrap().call("get").await.unwrap_err();
//! let err = err.downcast::<DeadlineExceeded>().unwrap();
//! assert_eq!(err.elapsed, Duration::from_millis(500));
//! # }
//! ```
//!
//! # Decisions
//!
//! - **Request types.** The layers work on any `Req: DeadlineCarrier`.
//!   `battlement-core` implements it for `http::Request<B>` (in its
//!   extensions) and, as "carries nothing", for the standard types. For a
//!   type that carries nothing the layers still time out on the deadline
//!   they computed themselves; the layers inside just cannot see it.
//! - **A deadline already passed** when the call arrives fails at once
//!   with `DeadlineExceeded { budget: 0, .. }` and the inner service is
//!   not called (its readiness is left unused, as `tower::load_shed` does).
//! - **An attempt bounded by the deadline.** When the time left is shorter
//!   than the attempt's bound, the attempt runs to the request's deadline
//!   and fails with `DeadlineExceeded` (not retryable), so an outer retry
//!   stops rather than trying again with no time.
//! - **The attempt's end is propagated.** `AttemptTimeoutLayer` tightens
//!   the request's deadline to the end of the attempt, so the next service
//!   (through [`http::PropagateDeadlineLayer`]) works to the attempt's
//!   bound, as Envoy's per-try timeout does.
//! - **Fraction without a deadline.** `fraction(f)` needs a deadline to
//!   take a fraction of; a request carrying none is bounded by
//!   `per_attempt` if set, otherwise not at all.
//! - **Cost.** The hot path is one clock read, one `Sleep` and the inner
//!   future, as in `tower::timeout`. A layer that was named, given an
//!   event sink or asked for a [`DeadlineHandle`] adds one reference-count
//!   increment per call; an unobserved one traces hits under the default
//!   name (`"deadline"`, `"attempt_timeout"`). The response future packs
//!   its bound, kind and role into one word so it stays two words larger
//!   than `tower::timeout`'s. Measured (`benches/benches/deadline.rs`, a
//!   busy 2-core machine): about 63 ns per call against 44 ns for
//!   `tower::timeout` over a bare `service_fn`, no allocation; most of
//!   either is the clock read and the `Sleep`.
//! - **Events.** Each hit is an
//!   [`EventKind::DeadlineExceeded`](battlement_core::EventKind::DeadlineExceeded)
//!   (budget and elapsed) or
//!   [`EventKind::AttemptTimedOut`](battlement_core::EventKind::AttemptTimedOut)
//!   (the bound), emitted to the layer's sink and traced at `INFO`.
//! - **HTTP propagation lives here** (module [`http`], feature `http`),
//!   not in `battlement-http`: the deadline and its wire format are one
//!   crate.

mod config;
pub mod future;
#[cfg(feature = "http")]
pub mod http;
mod layer;
mod service;
mod shared;

pub use config::{AttemptTimeoutConfig, DeadlineConfig};
pub use layer::{AttemptTimeoutLayer, DeadlineLayer};
pub use service::{AttemptTimeout, DeadlineService};
pub use shared::DeadlineHandle;
