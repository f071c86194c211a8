//! A circuit breaker for Tower services.
//!
//! # The problem
//!
//! When a backend is down or drowning, every call to it waits for a
//! timeout, holds a connection and a task, and adds load to the thing that
//! is already failing. A circuit breaker watches the outcomes of calls and,
//! once they are bad enough, *opens*: it refuses calls at once with
//! [`CircuitOpen`] for a while, then lets a few probes through
//! (*half-open*) and closes again when they succeed.
//!
//! # When to use it
//!
//! Around any client call to a dependency that can fail as a whole (an
//! HTTP or gRPC backend, a database, a queue), inside a retry layer so
//! retries stop when the circuit opens (the canonical order is
//! `Retry → Breaker → AttemptTimeout → service`). Share one [`Breaker`]
//! between every service that talks to the same backend.
//!
//! # Example
//!
//! ```
//! use battlement_breaker::{Breaker, CircuitState};
//! use battlement_core::{BoxError, CircuitOpen};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = Breaker::builder("backend")
//!     .consecutive_failures(2)
//!     .open_duration(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(breaker.layer())
//!     .service_fn(|fail: bool| async move {
//!         if fail { Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)) } else { Ok("ok") }
//!     });
//!
//! for _ in 0..2 {
//!     let _ = svc.ready().await.unwrap().call(true).await;
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//! let err: BoxError = svc.ready().await.unwrap().call(false).await.unwrap_err();
//! let open = err.downcast_ref::<CircuitOpen>().unwrap();
//! assert_eq!(&*open.name, "backend");
//! assert!(open.retry_after.unwrap() <= Duration::from_secs(5));
//! # }
//! ```
//!
//! # Behaviour
//!
//! - **States**: `Closed`, `Open`, `HalfOpen`, and by hand `ForcedOpen`,
//!   `Disabled` (admits all, records nothing) and `MetricsOnly` (records,
//!   never trips). [`CircuitState`] is re-exported from `battlement-core`.
//! - **Trip rules** (any combination): `consecutive_failures(n)`;
//!   `failure_rate(t)` over the window; `slow_calls(d, t)`, a call being
//!   slow when it takes longer than `d` (success or failure). Rates count
//!   only once the window holds `minimum_calls`.
//! - **Windows**: count-based (last N calls, a ring of one-byte slots) or
//!   time-based (last D in B buckets, each tagged with its epoch so idle
//!   gaps are forgotten). O(1) per call, memory fixed at build.
//! - **Open duration**: fixed, or exponential (`base × multiplier^n`, capped)
//!   where `n` counts re-opens from half-open since the last close.
//! - **Half-open**: at most `permitted_probes` in flight;
//!   `success_threshold` successes close; any failure re-opens with the
//!   next, longer open duration.
//! - **Outcomes** come from a [`Classify`](battlement_core::Classify)
//!   (default [`ErrorClassifier`](battlement_core::ErrorClassifier));
//!   `Ignored` counts neither way.
//!
//! # Decisions where the design is silent
//!
//! - **Generations.** Every transition bumps a generation. A call admitted
//!   in one generation that completes in another (a slow call admitted
//!   while closed that finishes during half-open) is counted in the
//!   lifetime totals but not in the window, the streak or as a probe.
//! - **When rules are checked.** The rates are checked when a failure or a
//!   slow call is recorded: a fast success cannot make them worse. So with
//!   `minimum_calls = 10`, nine failures followed by one success do not
//!   trip until the next failure.
//! - **Half-open and slow calls.** A probe that is slow counts as a failed
//!   probe. An `Ignored` probe gives its permit back without deciding.
//! - **Lazy timers.** No task is spawned: `Open` becomes `HalfOpen` when the
//!   first call after the open duration arrives (so [`Breaker::state`] may
//!   read `Open` a while after it elapsed), and `max_half_open_wait` is
//!   checked when a call finds every probe permit taken.
//! - **Rejections** are counted (`rejections` in the metrics) but emit no
//!   event: an event per rejected call would flood a sink exactly when the
//!   system is under stress. Transitions emit
//!   [`EventKind::StateChanged`](battlement_core::EventKind::StateChanged)
//!   with the reason, and trace it.
//! - **`calls`** in the metrics counts completed calls (successes +
//!   failures + ignored); rejected calls are counted apart.
//! - A rejection costs one allocation: the [`CircuitOpen`] boxed as a
//!   `BoxError` (it carries the name and the time to the next probe). The
//!   closed path allocates nothing.
//! - `Breaker::close` and `Breaker::reset` both clear the window and reset
//!   the open duration.
//! - **No `Breaker::subscribe()`**: transitions go to the
//!   [`EventSink`](battlement_core::EventSink) given with
//!   [`BreakerBuilder::events`]; for a stream, give it the registry's sink
//!   and use the registry's `subscribe()`.
//! - **Health**: [`Component::health`](battlement_core::Component::health)
//!   is `Degraded` in `Open`, `HalfOpen` and `ForcedOpen`, `Healthy`
//!   otherwise, with the detail `state` (the `snake_case` state) and the
//!   figures of [`BreakerMetrics`] as details and metrics. Controls:
//!   `Reset`, `Close`, `ForceOpen`, `Disable`.
//!
//! # Hot path
//!
//! A closed call is one atomic load to admit and, at completion, a few
//! uncontended atomic updates (the ring slot, its head, the streak, the
//! lifetime counter); no lock, no allocation. The clock is read only when a
//! slow-call rule or a time window needs it. Transitions take a mutex.
//!
//! # Performance
//!
//! `cargo bench -p battlement-benches --no-default-features --features
//! breaker --bench breaker`, time per call including a bare `service_fn`
//! (itself ~1 ns), on a shared 2-core VM with a load average of 2.5 to 3.5
//! from other builds, so the figures are noisy (closed measured at 25 ns
//! in a quieter moment, 34 ns in the run below):
//!
//! | per call | battlement | tower-resilience 0.13 (`standard()`) | failsafe 1.3 |
//! |---|---|---|---|
//! | closed | **34 ns**, 0 allocations | 283 ns, 3 allocations | 115 ns, 0 allocations |
//! | open, rejected | 111 ns, 1 allocation | 197 ns | 35 ns |
//! | forced open, rejected | 62 ns, 1 allocation | — | — |
//! | closed, two threads sharing one breaker | **79 ns** (≈ 12.6 M calls/s) | ≈ 1.5 µs (≈ 0.7 M calls/s)¹ | 116 ns (≈ 8.6 M calls/s) |
//!
//! ¹ tower-resilience's future is not always ready on its first poll under
//! contention, so that row is driven with `block_on` and includes it.
//!
//! Against the aims (closed ≤ 25 ns, open ≤ 15 ns): the closed path is one
//! atomic load to admit and a handful of uncontended atomic updates (the
//! window's head, the streak, the lifetime counter, the `Arc` count the
//! response future holds; the window slot only when its outcome changes),
//! and meets the aim only on a quiet machine. The open rejection misses
//! it: a tripped breaker reads tokio's clock (34 ns on this VM, `clock_read`
//! in the bench) to know whether the open duration has passed and to tell
//! the caller when to come back, and boxes the [`CircuitOpen`] it returns
//! (the name and that time travel in it), which is the one allocation.
//! `ForcedOpen` skips the clock read.

mod config;
pub mod future;
mod handle;
mod layer;
mod service;
mod state;
mod sync;
mod window;

pub use battlement_core::{CircuitOpen, CircuitState};
pub use config::{BreakerBuilder, OpenDuration, WindowConfig};
pub use handle::Breaker;
pub use layer::BreakerLayer;
pub use service::BreakerService;
pub use state::BreakerMetrics;
