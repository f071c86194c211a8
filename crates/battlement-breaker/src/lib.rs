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
//!   gaps are forgotten). O(1) per call, memory fixed at build and
//!   bounded: at most [`BreakerBuilder::MAX_COUNT_WINDOW`] (100 000) calls
//!   or [`BreakerBuilder::MAX_TIME_BUCKETS`] (1000) buckets, rejected at
//!   `build()` above that (issue 13, D5).
//! - **Open duration**: fixed, or exponential (`base × multiplier^n`, capped)
//!   where `n` counts re-opens from half-open since the last close.
//! - **Half-open**, as resilience4j's `permittedNumberOfCallsInHalfOpenState`
//!   and gobreaker's `MaxRequests` count it: `permitted_probes` calls are
//!   admitted **per half-open period** and the breaker decides on their
//!   results: `success_threshold` successes close, any failure re-opens
//!   with the next, longer open duration; once the period's probes are
//!   all admitted, calls are refused until then (a probe that is dropped,
//!   or whose outcome is `Ignored`, gives its admission back).
//!   `max_concurrent_probes` (default `permitted_probes`) caps the probes
//!   **in flight**, so `permitted_probes(3).max_concurrent_probes(1)
//!   .success_threshold(3)` probes one call at a time and closes after
//!   three successes. The cap is on probes in flight **in total**: a
//!   probe of an earlier half-open round that is still running (a hung
//!   call that outlived a re-open, a reset or a forced open) keeps its
//!   place until it finishes or is dropped, so repeated rounds cannot
//!   pile probes onto a sick backend (issue 13, D11). Only the current
//!   round's probes count towards closing or re-open it; an earlier
//!   round's result only frees its place. With every place held by hung
//!   probes, calls are refused until they end; set `max_half_open_wait`
//!   to re-open meanwhile. Half-open admission takes two compare-and-swaps
//!   (the cap, then the period's count; the first is undone if the second
//!   fails); the closed hot path is unchanged. Measured with
//!   `benches/benches/breaker.rs` (criterion, 1 s warm-up, 2 s, a shared
//!   2-core machine): a closed call 22.2 ns before and 22.4 ns after, two
//!   threads on one breaker 29-34 ns before and 34-39 ns after. Giving a
//!   probe's place back is out of line (`#[cold]`): inlined into the
//!   response future's drop it made the two-thread closed call 120 ns.
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
//!   slow call is recorded, and when the window reaches `minimum_calls`,
//!   whatever that call's outcome (as resilience4j does): with
//!   `minimum_calls = 10` and a 50 % threshold, five failures then five
//!   successes open at the 10th call. Past that, a fast success cannot make
//!   the rates worse and is not checked, so the closed hot path stays one
//!   predictable branch: a count window says when its fill reaches the
//!   minimum (once per close); a time window, which keeps no total, checks
//!   on each success while it held a failure or slow call but fewer than
//!   `minimum_calls` at the last check. (A time window whose old
//!   successes age out is checked at the next failure.)
//! - **Default rule.** With no trip rule named, a breaker trips on a 50 %
//!   failure rate ([`BreakerBuilder::DEFAULT_FAILURE_RATE`]) over a count
//!   window of 100 calls once it holds 20. Naming any rule
//!   (`consecutive_failures`, `failure_rate`, `slow_calls`, or
//!   `no_failure_rate`) replaces that default: `consecutive_failures(5)`
//!   alone trips only on five failures in a row.
//! - **Half-open and slow calls.** A probe that is slow counts as a failed
//!   probe. An `Ignored` probe gives its permit back without deciding.
//! - **Lazy timers.** No task is spawned: the transition from `Open` to
//!   `HalfOpen` (and its event) happens when the first call after the open
//!   duration arrives, but [`Breaker::state`] (and the metrics and health)
//!   read `HalfOpen` as soon as the duration has passed, and
//!   [`Breaker::open_remaining`] gives the time left open.
//!   `max_half_open_wait` is checked when a call is refused in half-open.
//! - **Setting the same state by hand** (`reset()` or `close()` of a closed
//!   breaker) clears the window and the open duration but is no
//!   transition: no `closed → closed` event, and the time of the last
//!   transition stays.
//! - **Rejections** are counted (`rejections` in the metrics) but emit no
//!   event: an event per rejected call would flood a sink exactly when the
//!   system is under stress. The count is striped (a copy per thread,
//!   `battlement_core::Striped`), since an open breaker refuses on every
//!   worker at once: one shared count would move its cache line between
//!   the cores on every refusal. Two threads refusing through one open
//!   breaker (`breaker/battlement_open_rejection_two_threads`): 113–139
//!   ns a call before, 67–91 ns after, three runs each on the 2-core VM.
//!   The stripes (2 KB) are allocated at the first refusal, so a breaker
//!   that never refuses (most keys of a breaker per key) does not pay
//!   for them. Transitions emit
//!   [`EventKind::StateChanged`](battlement_core::EventKind::StateChanged)
//!   with the reason, and trace it.
//! - **`calls`** in the metrics counts completed calls (successes +
//!   failures + ignored); rejected calls are counted apart.
//! - A rejection costs one allocation: the [`CircuitOpen`] boxed as a
//!   `BoxError` (it carries the name and the time to the next probe), as
//!   every error of the workspace travels. The closed path allocates
//!   nothing.
//! - **A tripped `Open` breaker reads the clock on every rejection.** It is
//!   the only way to know the open duration has passed without a timer
//!   task, and the lazy timer keeps the breaker exact on paused tokio time
//!   and independent of any runtime. `CircuitOpen` keeps its plain
//!   `retry_after: Option<Duration>`: carrying the instant instead (and
//!   computing the wait when asked) would not save that read, since the
//!   admission decision needs it anyway, nor the arithmetic around it: an
//!   `Instant` cannot live in an atomic, so the breaker keeps the end of
//!   the open duration as nanoseconds since its own base, and rebuilding
//!   the instant costs the same as the subtraction it would replace.
//!   `ForcedOpen` and a full `HalfOpen` reject without reading the clock.
//! - `Breaker::close` and `Breaker::reset` both clear the window and reset
//!   the open duration.
//! - **Outcomes told by the body** ([`Defer`], [`Pending`]). A call whose
//!   outcome comes after its response (a gRPC status in the trailers) is
//!   recorded **once**, with that outcome: with
//!   [`BreakerLayer::defer_with`], a response its classifier calls a
//!   success is offered the call's [`Pending`] completion, which it keeps
//!   (in its body) and completes when it knows. Recording a success at the
//!   headers and a failure later would count two calls, reset the
//!   failure streak a failure in the trailers should extend, and halve
//!   the failure rate. Failures and ignored outcomes at the response are
//!   recorded at once. A `Pending` dropped without completing (the
//!   caller dropped the body) records nothing and gives a probe's
//!   admission back, as a dropped response future does. The duration a
//!   slow-call rule judges is the time to the response, not to the
//!   body's end. The breaker does not know HTTP: `battlement-http`'s
//!   `GrpcTrailersDefer` (with its `GrpcTrailersLayer` below the breaker,
//!   which wraps the body) is the gRPC deferral. Without deferral
//!   ([`NoDefer`], the default) the offer is compiled out: a closed call
//!   measured 22.5 / 24.8 / 24.7 ns before and 22.6 / 23.6 / 22.8 ns after
//!   (criterion means, before and after binaries run in turns, 1 s
//!   warm-up, 2 s, the shared 2-core VM at load 2 to 3).
//! - **No `Breaker::subscribe()`**: transitions go to the
//!   [`EventSink`](battlement_core::EventSink) given with
//!   [`BreakerBuilder::events`]; for a stream, give it the registry's sink
//!   and use the registry's `subscribe()`.
//! - **Health**: [`Component::health`](battlement_core::Component::health)
//!   is `Degraded` in `Open`, `HalfOpen` and `ForcedOpen`, `Healthy`
//!   otherwise, with the detail `state` (the `snake_case` state) and the
//!   figures of [`BreakerMetrics`] as details and metrics: `trips` (every
//!   transition to `Open`, re-opens included), `rejections`,
//!   `failures_by_kind` and `timeouts` (failures of kind `Timeout`), and
//!   the state as a stateset: a gauge `state{state="..."}` per state, 1
//!   for the one the breaker is in (`battlement_breaker_state` in
//!   Prometheus), so a dashboard shows the state without decoding a
//!   number. Every `_total` is monotonic: a reset closes the breaker and
//!   clears its window, streaks and re-opens, never a counter. Controls:
//!   `Reset`, `Close`, `ForceOpen`, `Disable`, `MetricsOnly`.
//!
//! # Hot path
//!
//! A closed call is one atomic load to admit; at completion, one
//! read-modify-write on the success count (the success streak is that
//! count minus a mark set by the last failure, so it costs nothing more,
//! and the count window's next slot is that count plus the window's count
//! of failures, so neither does the ring), a load of the slot (written
//! only when its outcome changes), and the `Arc` count the response
//! future holds. No lock, no allocation; the clock is read only
//! when a rule needs it: twice per call for a slow-call rule (admission
//! and completion), once (at completion, to find the bucket) for a time
//! window. The response future's `poll` is inlined into its caller with
//! the closed path only; failures, probes, timed calls and rejections are
//! out of line. What every closed call writes sits on a cache line of its
//! own, apart from the state word and the config every call reads.
//! Transitions take a mutex.
//!
//! # Performance
//!
//! `cargo bench -p battlement-benches --bench breaker` (criterion, with
//! allocations counted per thread by the benches' counting allocator).
//! `BATTLEMENT_MIN_OF_BATCHES=1` makes the same binary also print each row
//! as the **minimum over 300 batches of 20,000 calls**. Load from other
//! processes only ever makes a batch slower, so on a shared machine the
//! minimum is the figure that survives it. The table is that minimum, on
//! a shared 2-core Intel Xeon VM (clock source `tsc`) at a load average
//! of 2 to 7. Per call, with a bare `service_fn` at 0.3 ns:
//!
//! | per call | battlement | tower-resilience 0.13 (`standard()`) | failsafe 1.3 |
//! |---|---|---|---|
//! | closed | 22–30 ns, 0 allocations | 228–233 ns, 3 allocations | 91–92 ns, 0 allocations |
//! | open, rejected (tripped: one clock read) | **29.8–30.5 ns**, 1 allocation | 155–157 ns (forced open), 2 allocations | 39–43 ns, 0 allocations |
//! | closed, time window (30 s in 10 buckets: one clock read) | 42 ns, 0 allocations | — | — |
//! | forced open, rejected | 21–22 ns, 1 allocation | — | — |
//! | floor: one read of tokio's clock | 19 ns | | |
//! | floor: `Box::new(CircuitOpen)` + drop | 14 ns | | |
//!
//! On this machine one uncontended atomic read-modify-write costs about
//! 7 ns, an `rdtsc` about 8 ns, and `std::time::Instant::now` about 19 ns.
//! The closed path is three read-modify-writes: the `Arc` its response
//! future holds (up and down) and the success count. (The table's figures
//! were taken when the count window's head was a fourth, a
//! compare-and-swap.) The open rejection's cost is:
//! - one TSC read through the core's fast clock (8 ns);
//! - the rejection count (7 ns);
//! - the boxed `CircuitOpen` and its free (14 ns).
//!
//! A breaker named in the program (`&'static str`) copies its name into
//! the error as a pointer. A name made at run time costs one more `Arc`
//! count up and down, about 14 ns.
//!
//! That meets the aim of an open rejection at 30 ns or less, below
//! failsafe's (which returns its own unboxed error without a name) and
//! tower-resilience's. Before the fast clock and the `Name` change, the
//! same measure gave 39 ns (and 59 ns on the older AMD VM, with tokio's
//! clock).

mod config;
mod defer;
pub mod future;
mod handle;
mod layer;
mod service;
mod state;
mod sync;
mod window;

pub use battlement_core::{CircuitOpen, CircuitState};
pub use config::{BreakerBuilder, OpenDuration, WindowConfig};
pub use defer::{Defer, NoDefer, Pending};
pub use handle::Breaker;
pub use layer::BreakerLayer;
pub use service::BreakerService;
pub use state::BreakerMetrics;
