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
//!   one attempt by `min(per_attempt, time left)`, or (with
//!   [`.fraction(f)`](AttemptTimeoutLayer::fraction)) by a fraction of
//!   the time left instead, and fails with
//!   [`AttemptTimedOut`](battlement_core::AttemptTimedOut), which is
//!   retryable.
//! - [`http`] (feature `http`, on by default) carries the budget across
//!   process boundaries in `grpc-timeout` and `x-request-timeout-ms`: a
//!   client layer writes the time left, a server layer reads it and holds
//!   the handler to it.
//!
//! # When to use it
//!
//! Put `DeadlineLayer` outside your retry layer and `AttemptTimeoutLayer`
//! inside it (the canonical order is `DeadlineLayer(total) → RetryLayer →
//! BreakerLayer → AttemptTimeoutLayer → service`). In a server, put
//! [`http::ServerDeadlineLayer`] outermost so a caller's budget bounds the
//! handler and everything it calls; in a client, put
//! [`http::PropagateDeadlineLayer`] inside `DeadlineLayer` so the next
//! service works to the same budget.
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
//!   extensions) and, as "carries nothing", for the standard types.
//! - **The deadline is in scope, whatever the request type.** While a
//!   `DeadlineLayer` calls its inner service and while it polls the inner
//!   future, its deadline is ambient
//!   ([`battlement_core::deadline::current`], a thread-local scope set and
//!   restored around each step, as gRPC and Go's `context` carry it), so
//!   retry, attempt timeout, fan-out, hedging and
//!   [`http::PropagateDeadlineLayer`] see the budget even for a `u32` or
//!   `String` request. They read
//!   [`effective`](battlement_core::deadline::effective): the request's
//!   own deadline when it carries one (that wins), otherwise the one in
//!   scope. An `AttemptTimeoutLayer` puts the attempt's end in scope for
//!   the layers inside it, as it tightens a carried deadline. A future
//!   polled outside the scope (a task the inner service spawns, a
//!   `tower::buffer` worker) does not see it: carry the deadline on the
//!   request for those.
//! - **Carried on the request too, by default.** Both layers also write
//!   the deadline into a request that carries none ([`Carry::Always`]),
//!   for what runs outside the scope and for a handler that reads it
//!   from the request (axum's `Extension<Deadline>`). For an
//!   `http::Request` that is an extension entry, which allocates (see
//!   [Performance](#performance)); [`Carry::IfCarried`] keeps the
//!   deadline in scope only, tightening in place a deadline the request
//!   already carries. That is the setting for a server's routes, whose
//!   handlers and the clients they call are polled inside the scope; the
//!   default stays `Always` because nothing tells a layer whether a
//!   `tower::buffer` or a spawned task sits inside it, and losing the
//!   budget there is silent.
//! - **A deadline already passed** when the call arrives fails at once
//!   with `DeadlineExceeded { budget: 0, .. }` and the inner service is
//!   not called (its readiness is left unused, as `tower::load_shed` does).
//! - **An attempt bounded by the deadline.** When the time left is shorter
//!   than the attempt's bound, the attempt runs to the request's deadline
//!   and fails with `DeadlineExceeded` (not retryable), so an outer retry
//!   stops rather than trying again with no time.
//! - **The total deadline owns its expiry.** In `DeadlineLayer(1 s) →
//!   RetryLayer → AttemptTimeoutLayer(300 ms)` the last attempt's slice is
//!   capped by what is left of the total, and both timers fire at the
//!   same instant; the inner one answers first only because it is polled
//!   first. So when a `DeadlineLayer`'s own deadline has passed and the
//!   inner service failed with a `DeadlineExceeded` (anywhere in the
//!   error's `source()` chain: an attempt bounded by it, a retry's
//!   `RetriesExhausted`, a fan-out), the caller gets the total's error
//!   (its `budget`, its `elapsed`), and the total layer counts it
//!   ([`DeadlineHandle::deadline_exceeded`]) and emits its event. The
//!   attempt layer then counts and reports nothing for that hit (it knows
//!   because the deadline it was cut by is the one in scope); without an
//!   enclosing `DeadlineLayer` (a deadline carried in from a server
//!   header) it reports the hit itself, as before. An attempt cut by its
//!   own bound is always an
//!   [`AttemptTimedOut`](battlement_core::AttemptTimedOut), a different
//!   type, so any caller tells the two apart by downcast.
//! - **Announcing the attempt bound.** `AttemptTimeoutLayer` with a fixed
//!   bound announces it while it is called
//!   ([`battlement_core::deadline::announce_attempt_bound`]), so a retry
//!   outside it defaults the time another attempt needs left to a tenth
//!   of that bound (see `battlement-retry`, "Deadlines").
//! - **The attempt's end is propagated.** `AttemptTimeoutLayer` tightens
//!   the request's deadline to the end of the attempt, so the next service
//!   (through [`http::PropagateDeadlineLayer`]) works to the attempt's
//!   bound, as Envoy's per-try timeout does.
//! - **Fraction without a deadline.** `fraction(f)` needs a deadline to
//!   take a fraction of; a request carrying none is bounded by
//!   `per_attempt` if set, otherwise not at all.
//! - **Cost.** The hot path is what `tower::timeout` does (one clock
//!   read, one `Sleep` built in place and never registered when the inner
//!   future is ready at once) plus: one add and one branch to set the
//!   deadline, one relaxed load to learn whether the layer is observed
//!   and, for an observed layer (named, given an event sink or asked for a
//!   [`DeadlineHandle`]), one reference-count increment and decrement. The
//!   response future is `tower::timeout`'s plus two words (the bound and
//!   flags packed in one, the optional counters in the other) plus, for
//!   some inner futures, the tag of `Option`. No allocation for a request
//!   type that carries the deadline in a field or carries nothing; for
//!   `http::Request` the deadline goes into its extensions, which
//!   allocates. See [Performance](#performance).
//! - **Events.** Each hit is an
//!   [`EventKind::DeadlineExceeded`](battlement_core::EventKind::DeadlineExceeded)
//!   (budget and elapsed) or
//!   [`EventKind::AttemptTimedOut`](battlement_core::EventKind::AttemptTimedOut)
//!   (the bound), emitted to the layer's sink and traced at `INFO`.
//! - **The server enforces the caller's budget.** An experienced user
//!   expects what Envoy and gRPC servers do with an incoming timeout:
//!   [`http::ServerDeadlineLayer`] not only hands the deadline to the
//!   handler but, when it passes first, drops the handler's future
//!   (cancelling it) and answers `504` with a JSON error (`grpc-status: 4`
//!   for a gRPC request), so a slow handler does not keep working for a
//!   caller who has given up. The bound covers the response head, not a
//!   streamed body. `enforce(false)` keeps the read-only behaviour for
//!   handlers that must decide themselves. Because the client's
//!   [`http::PropagateDeadlineLayer`] sends the time left minus a margin,
//!   the server's 504 usually reaches a client just before the client's
//!   own `DeadlineLayer` would fail with `DeadlineExceeded`: a client sees
//!   one or the other, both meaning "the budget passed".
//! - **Budgets saturate, never overflow.** A budget the clock cannot hold
//!   (`Duration::MAX`, in a layer, a server's `max` and `default_budget`,
//!   or a header) ends about thirty years out, which means "unbounded"
//!   ([`Deadline::after_from`](battlement_core::Deadline::after_from)).
//!   The header writers saturate at the largest value their parsers read
//!   (`u64::MAX` ms; `99999999H`), so any deadline one hop writes, the
//!   next hop reads.
//! - **Zero bounds are refused.** `DeadlineLayer::new(0)` and
//!   `AttemptTimeoutLayer::new(0)` panic (every call would fail before it
//!   started); their builders return an
//!   [`InvalidConfig`](battlement_core::InvalidConfig) naming the field.
//! - **HTTP propagation lives here** (module [`http`], feature `http`),
//!   not in `battlement-http`: the deadline and its wire format are one
//!   crate.

//!
//! # Performance
//!
//! The budget is "within 1.2× of `tower::timeout`'s overhead over a bare
//! `service_fn`", measured side by side in one criterion group
//! (`benches/benches/deadline.rs`: a `u64` request, a 30 s budget, calls
//! that complete at once, driven without an executor). Criterion on an
//! idle core (1 s warm-up, 3 s measurement), and instructions per call
//! counted by `valgrind --tool=callgrind` (`BATTLEMENT_IR=100000` runs the
//! bench's instruction loops):
//!
//! | per call | bare | `tower::timeout` | `DeadlineLayer` | named `DeadlineLayer` | carried in a field | `AttemptTimeoutLayer` |
//! |---|---|---|---|---|---|---|
//! | time over bare | 0.7 ns (bare itself) | 37.3 ns | 37.1 ns: **0.99×** | 38.2 ns: 1.02× | 37.9 ns: 1.02× | 43.0 ns: 1.15× |
//! | instructions | 5 | 95 | 107: 1.13× | 107 | — | 175 |
//! | allocations | 0 | 0 | 0 | 0 | 0 | 0 |
//!
//! (Ratios are of the overheads over the bare service.) Both layers'
//! time is the clock read and the two atomic operations on the runtime
//! handle inside `Sleep`.
//!
//! **The deadline in scope** costs a thread-local read and two writes
//! around the inner `call` and each inner poll (the cells are `const`
//! initialised: no lazy-init check, no allocation). Criterion, 1 s warm-up
//! and 2 s measurement, same machine under the other engineers' builds
//! (load 1-2), before and after the scope was added:
//!
//! | per call | `tower::timeout` | `DeadlineLayer` | named | carried in a field | `AttemptTimeoutLayer` |
//! |---|---|---|---|---|---|
//! | before | 36.7 ns | 46.7 ns (noisy run) | 33.1 ns | 37.5 ns | 40.1 ns |
//! | after, run 1 | 33.9 ns | 33.7 ns | 33.8 ns | 48.9 ns (noisy) | 42.1 ns |
//! | after, run 2 | 32.1 ns | 31.1 ns | 33.0 ns | 38.7 ns | 38.7 ns |
//!
//! That is within the run-to-run noise (a few ns at most), still at
//! `tower::timeout`'s cost, and allocates nothing. Two choices keep the rest as lean as
//! `tower::timeout`'s:
//!
//! - The response future carries no reference count: a named or watched
//!   layer's counters are found on a hit through a copyable ticket into a
//!   table of observed layers. An `Arc` in the future cost 27 of the 37
//!   extra instructions before this, mostly because its drop glue kept
//!   the future's drop out of line and its `Sleep` built in a temporary.
//! - [`DeadlineLayer::new`] refuses a zero budget (it panics; the builder
//!   returns an error), so a request without an earlier deadline of its
//!   own is always handed to the inner service and the compiler drops the
//!   "spent on arrival" path from such a call.
//!
//! **`http::Request` costs more.** The deadline travels in the request's
//! extensions, and `http` allocates an extension map and boxes each
//! value: 3 allocations per call for a request with no extension yet, 1
//! when it already has one. Measured the same way with `http::Request<()>`
//! (the request built in the loop): 22.7 ns bare, 70.5 ns with
//! `tower::timeout`, 153 ns with `DeadlineLayer`. That is the price of
//! the inner layers and the next hop seeing the budget, which
//! `tower::timeout` does not offer; a request type that carries the
//! deadline in a field pays nothing for it, and with
//! [`Carry::IfCarried`] an `http::Request` pays nothing either: through
//! `Policy::http` over an axum handler (benches, `http_stack`) that is 9
//! allocations a request against the bare handler's 6 by default, and 6
//! in scope only, 6,277 instructions a request against 5,144 (the bare
//! handler: 2,918).
//!
//! Header parsing ([`http::parse_grpc_timeout`]) takes about 10 ns
//! against a budget of 50 ns, with no allocation.

// The crate docs link into `http`, which is not built without its
// feature: those links are then plain text, not errors.
#![cfg_attr(not(feature = "http"), allow(rustdoc::broken_intra_doc_links))]

mod carry;
mod config;
pub mod future;
#[cfg(feature = "http")]
pub mod http;
mod layer;
mod service;
mod shared;

pub use carry::Carry;
pub use config::{AttemptTimeoutConfig, DeadlineConfig};
pub use layer::{AttemptTimeoutLayer, DeadlineLayer};
pub use service::{AttemptTimeout, DeadlineService};
pub use shared::DeadlineHandle;
