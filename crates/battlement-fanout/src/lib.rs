//! Fan-out for Tower: send one request to several backends at once and
//! combine what comes back.
//!
//! # The problem
//!
//! A query that several backends can answer (search shards, replicas,
//! price providers, adapters to different data sources) should not take as
//! long as the sum of the backends, nor wait for the slowest or a broken
//! one. [`FanOut`] calls every backend concurrently, inside the one
//! response future (no task is spawned), and ends by a [`Strategy`]:
//!
//! - [`Strategy::All`]: wait for every backend, or the request's deadline;
//! - [`Strategy::FirstSuccess`]: return on the first success, drop the rest;
//! - [`Strategy::BestEffort`]: return what finished within a window;
//! - [`Strategy::Quorum`]: return once `n` succeeded, fail as soon as `n`
//!   is out of reach.
//!
//! The response, [`Responses`], holds one [`BackendResult`] per backend:
//! its name, its [`Reply`] (the response or error, or why there is none),
//! its [`Outcome`](battlement_core::Outcome) by the classifier and its
//! latency. A [`merge`](FanOutBuilder::merge) function can reduce them to
//! one response.
//!
//! Use it when several services can each answer (part of) a request; use
//! [`HedgeLayer`] (module [`hedge`]) when one service is usually fast and
//! a second copy of a slow request should race the first.
//!
//! ```
//! use battlement_fanout::{FanOut, Strategy};
//! use tower::{service_fn, BoxError, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let shard = |n: u32| service_fn(move |q: String| async move {
//!     Ok::<_, BoxError>(format!("shard {n}: {q}"))
//! });
//! let mut search = FanOut::builder("search")
//!     .backend("eu", shard(1))
//!     .backend("us", shard(2))
//!     .strategy(Strategy::All)
//!     .max_concurrency(8)
//!     .build()?;
//!
//! let answers = search.ready().await?.call("rust".to_string()).await?;
//! assert_eq!(answers.success_count(), 2);
//! assert_eq!(answers.get("us").unwrap().reply.response().unwrap(), "shard 2: rust");
//! # Ok(()) }
//! ```
//!
//! # Decisions
//!
//! - **Readiness.** A slow or stuck backend must not hold the others
//!   back, so `FanOut` is always ready: its `poll_ready` polls each
//!   backend not yet ready once and remembers which are; `call` consumes
//!   that readiness and calls those at once. A backend not ready then is
//!   not waited for outside: a clone of it is driven to readiness inside
//!   the response future (its wakeups wake the fan-out) and called when
//!   it is ready and a concurrency slot is free; if the fan-out ends
//!   first (strategy satisfied, window or deadline passed) it is reported
//!   [`Reply::NotCalled`]. The price: `FanOut` passes no backpressure
//!   upstream (bound the work with `max_concurrency` and a deadline, or
//!   put a concurrency limit in front). A backend whose `poll_ready`
//!   fails does not fail the fan-out: it is reported with that error
//!   (`Reply::Error`), without being called. Backends beyond
//!   `max_concurrency` are moved into the response future by
//!   clone-and-swap (the instance polled ready goes in, a clone stays),
//!   and called there as slots free; so backends must be `Clone` (use
//!   `tower::util::BoxCloneSyncService` to mix service types).
//! - **Success** is the classifier's [`Outcome::Success`](battlement_core::Outcome::Success)
//!   (default [`ErrorClassifier`](battlement_core::ErrorClassifier): every `Ok`).
//!   `All` and `BestEffort` succeed when at least one backend succeeded
//!   (the failures are in the `Responses`), and otherwise fail with
//!   [`AllFailed`](battlement_core::AllFailed) holding every backend's
//!   error in configured order. `Quorum(n)` fails with
//!   [`QuorumNotReached`](battlement_core::QuorumNotReached).
//! - **Open circuits.** A backend that answers
//!   [`CircuitOpen`](battlement_core::CircuitOpen) (anywhere in its error's
//!   `source()` chain) was refused by its breaker without being called: it
//!   is reported as [`Reply::Skipped`], counted as a skip (not a failure)
//!   and an [`EventKind::Skipped`](battlement_core::EventKind::Skipped) is
//!   emitted. It still counts as "not a success" for the strategy.
//! - **Deadline.** The request's [`Deadline`](battlement_core::Deadline)
//!   (through [`DeadlineCarrier`](battlement_core::DeadlineCarrier), or,
//!   for a request that carries none, the one an enclosing
//!   `DeadlineLayer` has in scope: [`battlement_core::deadline::effective`])
//!   bounds the whole fan-out: when it passes, the calls still running are
//!   dropped and reported [`Reply::TimedOut`], and the fan-out ends with
//!   what it has (under `All`, the others' results). Each backend receives
//!   a clone of the request, deadline included. A request whose
//!   deadline has already passed calls no backend (their readiness is
//!   kept for the next request): each is reported [`Reply::NotCalled`]
//!   and the fan-out fails with a
//!   [`DeadlineExceeded`](battlement_core::DeadlineExceeded) for each
//!   (as for calls cut, or left waiting for a slot, by the deadline). [`HedgeLayer`] honours
//!   the deadline too: it ends the hedged call with
//!   [`DeadlineExceeded`](battlement_core::DeadlineExceeded) when it
//!   passes and sends no backup that could not answer in time (see
//!   [`hedge`]).
//! - **Sizes and durations.** No setting sizes an allocation: a
//!   fan-out allocates per call for the backends it was built with, and
//!   [`max_concurrency`](FanOutBuilder::max_concurrency) only counts (any
//!   `usize` from 1). The hedge's percentile window is two fixed
//!   histograms whatever its size, which is bounded to `1..=65536`, and
//!   `max_hedges` to `1..=16`; both are refused at build outside their
//!   bounds. Durations never overflow the clock: a `BestEffort` window, a
//!   hedge delay or a deadline of up to `Duration::MAX` is checked-added
//!   to the clock and, past its end, means "never" (about thirty years),
//!   and the percentile delay is at most its histogram's last bucket
//!   (about 37 minutes).
//! - **Dropped calls** are dropped at once when the fan-out ends (first
//!   success, quorum decided, window or deadline passed) and reported as
//!   [`Reply::Cancelled`], [`Reply::TimedOut`] or [`Reply::NotCalled`].
//! - **Latency** of a call runs from when it was started to the poll of
//!   the fan-out's future that saw it finish (one clock read per poll,
//!   shared by the calls that finished in it).
//! - **Cost.** Per call: one boxed, pinned future per backend call (as
//!   any no-spawn join of a number of futures unknown at compile time
//!   needs without `unsafe`), the per-backend slot vector and the results
//!   vector: 12 allocations for ten backends. One request clone per
//!   backend. No lock, no spawn. The running calls are polled in order on
//!   each wake of the fan-out, as `join_all` does for small sets: cheaper
//!   than a `FuturesUnordered` (its task per future, ready queue and
//!   waker atomics) for the handful to few dozen backends a fan-out has,
//!   and O(backends) per wake. Ten immediately ready backends, `All`:
//!   about 6,000 instructions per call by callgrind, malloc included
//!   (7,950 and 16 allocations with the former `FuturesUnordered`); in one
//!   process under a load average of 6–9, 1.15–1.33 µs per call against
//!   1.75–1.78 µs for the former version. The criterion bench `fanout`
//!   (through the benches' `call_now`, which moves the response future)
//!   read 1.3 µs on a quiet machine before the change and swings between
//!   2.0 and 2.3 µs under that load, as does its `FuturesUnordered`
//!   comparison (1.5–1.9 µs); `join_all`, which allocates 2 times, reads
//!   0.25–0.3 µs.
//! - **Figures.** [`FanOut::handle`] gives a [`FanOutHandle`] for the
//!   registry: per backend successes, failures, skips, abandoned calls and
//!   latency. Health goes by each backend's last settled call: `Healthy`
//!   when none failed or was skipped, `Unhealthy` when all did, `Degraded`
//!   in between.

mod config;
mod error;
mod future;
pub mod hedge;
mod merge;
mod response;
mod service;
mod stats;

pub use config::{FanOutBuilder, Strategy};
pub use error::{Abandoned, ClassifiedFailure};
pub use future::ResponseFuture;
pub use hedge::{Hedge, HedgeBuilder, HedgeHandle, HedgeLayer};
pub use merge::{Merge, NoMerge};
pub use response::{BackendResult, Reply, Responses};
pub use service::FanOut;
pub use stats::{BackendSnapshot, FanOutHandle};
