//! Retries for Tower services that help instead of amplifying an outage.
//!
//! A naive retry turns a struggling backend into a dead one: every failing
//! request becomes three, all at once, right when there is least capacity
//! for them. [`RetryLayer`] retries only what a classifier calls a
//! *retryable* failure, waits a jittered [`Backoff`] (or the backend's own
//! `Retry-After`), stops at the request's deadline, and can be held to a
//! shared [`RetryBudget`] so retries stay a small fraction of the traffic
//! however bad things get.
//!
//! Use it on the client side of a call that may fail transiently (a
//! connection reset, a 503, a timeout of one attempt), for requests that
//! are safe to send twice. Put it inside the total deadline and outside
//! the breaker and the per-attempt timeout:
//! `DeadlineLayer → RetryLayer → BreakerLayer → AttemptTimeoutLayer`.
//!
//! ```
//! use battlement_core::{BoxError, FailureKind};
//! use battlement_retry::{Backoff, Jitter, RetryBudget, RetryLayer, RetryPolicy};
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let budget = RetryBudget::builder().ratio(0.1).min_per_sec(10).build().unwrap();
//! let policy = RetryPolicy::builder()
//!     .max_attempts(3)
//!     .backoff(Backoff::exponential(Duration::from_millis(50)).jitter(Jitter::Full))
//!     .base_delay_for(FailureKind::RateLimited, Duration::from_secs(1))
//!     .never_retry(FailureKind::Authentication)
//!     .budget(budget.clone())
//!     .build()
//!     .unwrap();
//!
//! // A backend that refuses the connection once, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let seen = calls.clone();
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(policy))
//!     .service_fn(move |name: &'static str| {
//!         let n = seen.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             if n == 0 {
//!                 Err::<String, BoxError>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
//!             } else {
//!                 Ok(format!("hello {name}"))
//!             }
//!         }
//!     });
//!
//! assert_eq!(svc.oneshot("world").await.unwrap(), "hello world");
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! assert_eq!(budget.retries_allowed(), 1);
//! # }
//! ```
//!
//! # How a failure is handled
//!
//! After each attempt the policy's classifier (default
//! [`ErrorClassifier`](battlement_core::ErrorClassifier)) turns the result
//! into an [`Outcome`](battlement_core::Outcome). Both errors and `Ok`
//! responses are classified, so an HTTP 503 can be retried (use a closure
//! or [`ResponseClassifier`](battlement_core::ResponseClassifier)).
//!
//! - A success, an `Ignored` outcome, a failure that is **not** retryable,
//!   or one whose kind the policy never retries (`never_retry(kind)`, or a
//!   limit of one attempt) is returned at once, **unchanged** (the original
//!   error, not wrapped), with no event.
//! - A retryable failure is retried unless one of these stops it, checked
//!   in this order; the reason is recorded as a
//!   [`RetryStop`](battlement_core::RetryStop):
//!   1. `MaxAttempts`: the attempts for its kind (`max_attempts`, or
//!      `max_attempts_for(kind)`) are used up;
//!   2. `NotRepeatable`: the `retry_if` predicate refused the request;
//!   3. `RetryAfterTooLong`: it carries a retry-after longer than
//!      `max_retry_after` or than the time left before the deadline;
//!   4. `Deadline`: the delay plus `min_time_left` does not fit in the time
//!      left before the request's deadline;
//!   5. `BudgetExhausted`: the [`RetryBudget`] has no token.
//! - A retryable **error** that stops is returned as
//!   [`RetriesExhausted`](battlement_core::RetriesExhausted) with the
//!   attempts, the reason, the failure's retry-after and the last error as
//!   `source()`; a retryable **`Ok` response** that stops is returned as it
//!   is (a response cannot travel as an error), so the caller sees the
//!   last 503.
//!
//! Each retry emits [`EventKind::Retry`](battlement_core::EventKind::Retry)
//! (attempt, delay, kind) and each give-up
//! [`EventKind::RetriesExhausted`](battlement_core::EventKind::RetriesExhausted),
//! into the policy's [`EventSink`](battlement_core::EventSink) and `tracing`.
//!
//! # Delays
//!
//! A retryable failure with a retry-after (HTTP `Retry-After`, gRPC
//! pushback) waits exactly that long instead of the backoff.
//!
//! An **open circuit is not waited out.** The default classifier calls a
//! [`CircuitOpen`](battlement_core::CircuitOpen) (and a gate's `Shed`) a
//! `Rejected` failure that is *not* retryable, so the retry returns it at
//! once, unchanged: retrying into a breaker that is refusing calls only
//! spins, and its `retry_after` (the open circuit's remaining wait) is
//! usually longer than the request's budget. The caller still gets that
//! wait on the error, to schedule its own retry. To wait it out anyway,
//! give the policy a classifier that calls `CircuitOpen` retryable: its
//! `retry_after` is then honoured as any other, within `max_retry_after`
//! and the deadline.
//! Otherwise the [`Backoff`] gives the delay for retry *n*, with the
//! per-kind base delay if one is set. Randomness comes from a
//! [`RandomSource`] ([`FastRandom`] by default, [`SeededRandom`] for
//! repeatable tests).
//!
//! Every delay saturates instead of panicking (issue 13, D3): a backoff
//! that grows past `Duration::MAX` is capped at its `max`, a computed
//! delay that is not a number or negative is zero, and a delay longer
//! than about thirty years (a `Retry-After` of `u64::MAX` seconds under
//! `max_retry_after(Duration::MAX)`, `Backoff::constant(Duration::MAX)`)
//! sleeps about thirty years, as tokio's own `sleep` does, rather than
//! overflowing the clock. `build()` does not reject these: a wait that
//! long is legal, just useless, and a deadline stops it anyway.
//!
//! # Deadlines
//!
//! The request's [`Deadline`](battlement_core::Deadline) is read once, when
//! the request arrives: the one it carries through
//! [`DeadlineCarrier`](battlement_core::DeadlineCarrier) (for
//! `http::Request` from its extensions) or, for a request that carries
//! none (`u32`, `String`, ...), the one an enclosing `DeadlineLayer` has
//! in scope ([`battlement_core::deadline::effective`]). The layer never
//! sleeps past it and never starts an attempt with `min_time_left` or
//! less left. It does not enforce the deadline on an attempt in flight:
//! that is the deadline and attempt-timeout layers' job.
//!
//! **`min_time_left` defaults to a tenth of the attempt timeout.** An
//! attempt that starts with 1 ns left cannot finish; it only adds load
//! and turns a clear "retries stopped at the deadline" into a deadline
//! hit. So unless [`min_time_left`](RetryPolicyBuilder::min_time_left) is
//! set, another attempt needs a tenth of the bound per attempt of the
//! `AttemptTimeoutLayer` inside this retry: the attempt timeout announces
//! its fixed bound while it is called, and the retry learns it from the
//! request's first call (a thread-local read and two writes, only for a
//! request with a deadline). With no attempt timeout inside (or one
//! behind a `tower::buffer`, called on another task, or bounding by a
//! fraction only) there is nothing to learn and the default is zero.
//! A tenth, as the facade's `Policy` uses: with the defaults of 10 s per
//! attempt, a retry needs 1 s left. Set `min_time_left` to your service's
//! typical (p50) latency when you know it.
//!
//! # Costs
//!
//! - A request that may be retried is cloned **once before the first
//!   call** (it must be kept in case the call fails), then once per retry
//!   that may be followed by another; the last attempt takes the kept
//!   copy. Keep requests cheap to clone (`Bytes` bodies, `Arc`s); with a
//!   `Copy` request cloning is free. A request refused by `retry_if`, or
//!   any request when no kind may have more than one attempt, is never
//!   cloned.
//! - The response future keeps one handle, counted once (an `Arc`), on
//!   what the service shares with it: the policy and a spare clone of the
//!   inner service, made when the `Retry` is. A retry is sent through a
//!   clone of that spare, taken (under a lock held for the clone) when the
//!   retry is decided, so a request that succeeds first time clones no
//!   service. tower's retry clones the service for every request instead:
//!   one atomic count up and one down for each layer inside that shares
//!   state (a breaker, an attempt timeout), four in the canonical stack.
//!   The cost of this choice: a retry goes through a clone of the service
//!   as it was wrapped, not of what [`Retry::get_mut`] changed since.
//! - A policy that was leaked ([`Leak`](battlement_core::Leak)) or is
//!   kept in a `static` ([`RetryPolicy::from_static`]) keeps that handle
//!   for the process too, for the first 64 services made from it, so
//!   their copies and calls count nothing at all (two atomic
//!   read-modify-writes less a call, on a line every core serving the
//!   route writes: the only count a leaked server stack still made per
//!   call). Past 64 (a leaked layer applied per connection), services
//!   count their handle as an unleaked policy's do, so the memory kept
//!   (a spare copy of the inner service each) stays bounded. That is why
//!   [`Retry`] needs its inner service `'static`, as `tower::buffer` and
//!   axum do: a service built by a function that takes a reference (`fn
//!   backend(calls: &Arc<..>) -> impl Service`) must say it holds none
//!   (`+ use<>`). (A future that copied a static policy and the service
//!   when the service holds nothing to drop was tried: the extra variant
//!   made the compiler copy the futures of three layers around it in the
//!   canonical stack, 110 instructions a call, for 3 ns on a lone retry
//!   layer.)
//! - A request that succeeds first time allocates nothing, takes no lock
//!   and reads no clock. The success path is inlined into the caller's
//!   poll; the decision, events and backoff are out of line. With a
//!   budget it also costs the deposit: a check of the window's age
//!   against the enclosing instrument's stamp (a clock read without
//!   one) and one add to this thread's stripe of the request count, a
//!   plain load and store when the thread leases the stripe (the figures
//!   below predate both). Measured (`benches/benches/retry.rs`, a `Copy` `u64`
//!   request, `call_now` driving `poll_ready`, `call` and one poll):
//!
//!   | per call                             | instructions | time |
//!   |--------------------------------------|-----|----------|
//!   | bare `service_fn`                    | 5   | 1.0 ns   |
//!   | default policy (`Arc`)               | 57  | 7.4-8.6 ns |
//!   | policy from a `static`               | 51  | 7.9-8.4 ns |
//!   | `max_attempts(1)`                    | 57  | 7.1-10.7 ns |
//!   | with a budget (clock read, deposit)  | 170 | 42-47 ns |
//!   | `tower::retry`, never-retry policy   | 61  | 16 ns    |
//!   | `tower-resilience` retry             | -   | 90 ns, 2 allocations |
//!
//!   So the layer costs about 7 ns over the bare service (the issue's
//!   budget is 15 ns); before the success path was made inline it cost
//!   about 30 ns (163 instructions). On a quiet core the `Arc` count of a
//!   policy that is not `static` is within the noise; it shows under
//!   contention. Instructions are counted with
//!   `valgrind --tool=callgrind` on the bench's `BATTLEMENT_IR` mode
//!   (repeatable under load; divide each `ir_*` loop's inclusive count by
//!   the calls); times are criterion medians of two runs on a 2-core AMD
//!   EPYC VM with a load average of 1-2 (other builds running).
//! - The backoff's timer is created at the first wait and reset for the
//!   next ones.
//! - A retried request costs one allocation, at its first retry: what only
//!   retrying needs (the last result, the backoff's timer, the clone of
//!   the service retries go through, the budget token) is boxed then, not
//!   carried in every request's future. Over an axum handler that takes
//!   `Policy::http`'s response future from 1,336 to 984 bytes; a server's
//!   framework boxes the whole stack's future and moves it per request.
//!   A retry already clones the request and the service, so the box is
//!   small beside what it pays anyway.
//!
//! # Decisions
//!
//! - `max_attempts` counts every attempt, the first included; a per-kind
//!   limit compares against the same count (all attempts of the request).
//! - The budget is consulted last, so a retry refused for another reason
//!   never spends a token. A token is spent when its retry is sent: a
//!   request dropped (or stopped by its deadline or a failed `poll_ready`)
//!   between the withdrawal and the attempt gives it back at once, into
//!   the window slot it came from (issue 13, D10), so cancellations (a
//!   caller's timeout, a hedge) do not drain the budget for a `ttl`.
//! - A failure of `poll_ready` while waiting to retry is returned as it is:
//!   in Tower it means the service is gone.
//! - No budget by default: a budget is shared state whose scope (one
//!   backend, every route to it) only the user knows. Set one for any
//!   client that may see an outage.
//! - The deadline is checked when the retry is decided, before the
//!   backoff (so no sleep runs past it), and again once the service is
//!   ready for the next attempt, since waiting for readiness may have
//!   eaten the time: an attempt never starts with `min_time_left` or less
//!   left. To return the last outcome in that case, the last failed result
//!   (error or failure response) is kept while the retry waits.
//! - An `Ok` response that stops for the budget comes back as it is; the
//!   `RetriesExhausted` event (reason `budget_exhausted`) records it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod budget;
mod config;
pub mod future;
mod layer;
mod random;
mod service;
mod stats;
mod sync;

pub use backoff::{Backoff, Jitter};
pub use budget::{RetryBudget, RetryBudgetBuilder};
pub use config::{Always, Never, RetryIf, RetryPolicy, RetryPolicyBuilder};
pub use layer::RetryLayer;
pub use random::{FastRandom, RandomSource, SeededRandom};
pub use service::Retry;
