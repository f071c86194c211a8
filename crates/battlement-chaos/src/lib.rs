//! Fault injection for Tower, **a testing tool**: errors, latency and
//! whole HTTP responses injected into a service following a schedule of
//! phases, from a seed so that a run repeats exactly, with the current
//! phase and the counts in the registry and controls to turn it on and
//! off at run time.
//!
//! # The problem
//!
//! A resilience stack is only as good as its behaviour when things go
//! wrong, and things going wrong is hard to arrange on demand. A [`Chaos`]
//! is a [`Schedule`] of [`Phase`]s (healthy, latency spike, hard outage,
//! rate limited, recovery, ...); each phase says what share of the calls
//! to fail with an [`Injected`] error of a chosen
//! [`FailureKind`], what share to answer with a synthetic response
//! ([`HttpFault`]: 503, 429 with `Retry-After`, 500), and what share to
//! delay first ([`Latency`]: fixed, uniform, or a long tail). Put its
//! [`ChaosLayer`] under the layers you want to rehearse, register the
//! `Chaos` with the registry, and watch the breaker open, the retries
//! back off and the gate shed.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use battlement_chaos::{Chaos, FailureKind, HttpFault, Latency, Phase};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), battlement_core::BoxError> {
//! let (ms, secs) = (Duration::from_millis, Duration::from_secs);
//! let chaos = Chaos::builder("upstream")
//!     .seed(42)
//!     .phase(Phase::healthy(secs(5)))
//!     .phase(Phase::new("latency spike", secs(5)).latency(Latency::uniform(ms(100), ms(400))))
//!     .phase(Phase::new("outage", secs(10)).error_ratio(1.0, FailureKind::Unavailable))
//!     .phase(
//!         Phase::new("rate limited", secs(5))
//!             .respond(0.5, HttpFault::TooManyRequests { retry_after: secs(1) }),
//!     )
//!     .phase(Phase::healthy(secs(5)).named("recovery"))
//!     .build()?;
//!
//! // `chaos.http_layer()` for an `http::Request` / `http::Response` service.
//! let mut svc = chaos
//!     .layer()
//!     .layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
//! assert_eq!(svc.ready().await?.call(1).await?, 1); // healthy
//!
//! tokio::time::advance(secs(10)).await; // into the outage
//! assert!(svc.ready().await?.call(2).await.is_err());
//! assert_eq!(chaos.current().unwrap().phase.name().as_ref(), "outage");
//! assert_eq!(chaos.stats().errors, 1);
//!
//! // registry.register(&chaos)?: the registry shows the phase and the
//! // counts; `POST /health/upstream/disable` (and `enable`, `reset`)
//! // through `HealthService` drive it at run time.
//! # Ok(()) }
//! ```
//!
//! # Decisions
//!
//! - **Off unless configured.** A `Chaos` without phases
//!   ([`Chaos::off`]) or disabled ([`Chaos::disable`], the `disable`
//!   control, [`ChaosBuilder::enabled`]`(false)`) passes every call
//!   straight through: one relaxed atomic load, and the response future is
//!   the inner future in a variant of ours: no clock read, no counter, no
//!   allocation. The facade re-exports this crate only under its `chaos`
//!   feature, which is not a default one.
//! - **Clock.** The schedule starts when the `Chaos` is built, and again
//!   at [`Chaos::start`] or a [`Control::Reset`](battlement_core::Control::Reset).
//!   Time is `tokio::time::Instant`, so on paused time (tests) the phases
//!   change exactly when `tokio::time::advance` says. A phase covers
//!   `[start, end)`. [`Schedule::phase_at`] is pure. After the last phase
//!   the schedule is finished and every call passes through, unless it
//!   [repeats](ChaosBuilder::repeat). Disabling does not stop the clock.
//! - **Draws.** Every phase has its own sequence, seeded from the
//!   schedule's seed and the phase's index; the `n`-th call that draws in
//!   a phase (counted by one relaxed `fetch_add`, from the build or the
//!   last start, across repeat cycles) uses outputs `4n..4n+3` of
//!   splitmix64 from that seed: one for the fault, one for whether to
//!   delay, two for the delay. So a call's faults are a pure function of
//!   (seed, phase, call number), without a lock or a shared generator.
//!   **The guarantee:** for one seed, calls that reach each phase in the
//!   same order get the same faults and delays, whatever happened in the
//!   other phases; a sequential run on paused time repeats exactly. With
//!   concurrent callers, each phase hands out the same draws, but which
//!   caller gets which depends on who counts first; in real time, which
//!   calls fall on either side of a boundary depends on timing. The same
//!   holds for the same binary: long-tail delays use `ln`, `cos` and
//!   `exp`, whose last bits may differ between platforms. Calls in a
//!   phase that injects nothing draw nothing. Without a seed, one is drawn
//!   at build (below 2⁵³, to survive JSON readers) and shown by
//!   [`Chaos::seed`] and the registry, so a run can be replayed.
//! - **Shares.** One draw `u` in `[0, 1)` splits a phase's calls: `u <
//!   response_ratio` is answered, `u < response_ratio + error_ratio`
//!   fails, the rest are called; over `N` calls the counts are within the
//!   binomial spread of the ratio (10,000 calls at 0.3: 0.3 ± 0.02 by a
//!   wide margin). Latency draws independently, so a call can be delayed
//!   *and* fail (a slow failure).
//! - **Errors.** [`Injected`] (`chaos`, `phase`, `kind`) carries an
//!   `io::Error` of a matching kind as its `source()`, so
//!   `battlement_core::ErrorClassifier`, which walks the chain, reads the
//!   injected kind: exactly for `Network`, `Timeout`, `Transient`,
//!   `Unavailable`, `InvalidRequest`, `NotFound`, `Authorization`,
//!   `Configuration`; `RateLimited` reads as `Unavailable`,
//!   `Authentication` as `Authorization`, `Rejected` as `Unknown` (see the
//!   table on [`Injected`]). [`ChaosBuilder::error_fn`] makes your own
//!   error instead. An injected error costs one allocation (the box).
//! - **HTTP responses** (feature `http`, on by default, dependency `http`
//!   only). One layer type with a parameter: [`ChaosLayer`]`<R>`, where
//!   `R:` [`MakeResponse`]`<S::Response>` turns an [`HttpFault`] into the
//!   service's response. [`Chaos::layer`] gives [`AsErrors`], which fits
//!   any request and response type and turns a response fault into an
//!   [`Injected`] error of [`HttpFault::kind`] (503 → `Unavailable`, 429 →
//!   `RateLimited`, 500 → `Transient`), so one schedule serves both;
//!   [`Chaos::http_layer`] gives [`HttpResponses`], which answers with an
//!   `http::Response<B>` (status, `Retry-After` in whole seconds rounded
//!   up, an [`InjectedResponse`] extension, body `B::default()` or
//!   [`ChaosLayer::body_fn`]). The inner service is not called.
//! - **Latency.** A delayed call sleeps with `tokio::time::sleep`
//!   **before** calling the inner service: the future takes the ready
//!   inner service with it (clone-and-swap, so `S: Clone`) and calls it
//!   when the sleep is over; dropped before, it never calls it (and the
//!   timer entry goes with it). The `Sleep` is made only for a delayed
//!   call, boxed together with the inner service and the request: one
//!   allocation per delayed call (which waits milliseconds anyway), so
//!   that every other call's future stays the inner future plus a tag
//!   (with the 96-byte `Sleep` inline the future was 120 bytes; boxing it
//!   and moving the enabled path out of line took the off call from
//!   19 ns and 92 instructions to 2.4 ns and 36). No task is spawned. A
//!   long tail is log-normal with the given median and 99th percentile, clamped to `10 × p99` or [`Latency::max`];
//!   nothing configured may exceed 24 hours.
//! - **Counts.** Monotonic: `passed` (called unchanged while enabled),
//!   `delayed`, `responses`, `errors` (and by kind), counted when the call
//!   is made, so a delayed call dropped before its sleep ends still
//!   counts. [`Chaos::start`] and `reset` keep them.
//! - **Registry.** `Chaos` is a [`Component`](battlement_core::Component)
//!   of kind `chaos`: details `enabled`, `injecting`, `phase`,
//!   `phase_index`, `phase_remaining_ms`, `cycle`, `finished`, `phases`,
//!   `repeat`, `elapsed_ms`, `seed`, `injected` (`errors`, `latency`,
//!   `responses`, `errors_by_kind`) and `passed`; metrics
//!   `injected_total{fault}`, `passed_total`, `enabled`, `phase`. It is
//!   `Degraded` while it injects (an enabled phase with faults), so a
//!   rehearsal shows in the overall report, and `Healthy` otherwise.
//!   Controls: [`Control::Disable`](battlement_core::Control::Disable),
//!   [`Control::Enable`](battlement_core::Control::Enable) (refused
//!   without phases) and [`Control::Reset`](battlement_core::Control::Reset)
//!   (restart the schedule, not the counters): through `HealthService`,
//!   `POST /health/{name}/disable`, `/enable`, `/reset`, behind its
//!   authorizer. Phase changes are events (`Custom { name: "phase" }`),
//!   told when the first call or report sees the new phase.
//!
//! # Performance
//!
//! Measured with criterion (`benches/benches/chaos.rs`, quick mode:
//! `--warm-up-time 1 --measurement-time 2`) on a shared 2-core machine
//! (load average about 2), with instruction counts from callgrind
//! (`BATTLEMENT_IR=100000`):
//!
//! | call | criterion (ns/call) | instructions/call | allocations |
//! |---|---|---|---|
//! | bare `service_fn` | 0.5 | 5 | 0 |
//! | chaos off (no phases, or disabled) | 2.4 | 36 | 0 |
//! | chaos on, healthy phase | 37.5 | 233 | 0 |
//! | chaos on, injecting an error | 84.5 | 518 | 1 (the boxed [`Injected`]) |
//!
//! Off, a call costs one relaxed load and the inner call: about 2 ns.
//! On, each call reads tokio's clock (most of the healthy phase's cost on
//! this machine, whose clock is not a cheap vDSO read), finds the phase,
//! and counts itself with one relaxed add; a phase that injects adds one
//! `fetch_add` for the call's number and the splitmix64 draws.

mod chaos;
mod config;
mod error;
mod fault;
pub mod future;
mod latency;
mod layer;
mod rng;
mod schedule;
mod service;

pub use battlement_core::FailureKind;
pub use chaos::{Chaos, ChaosStats};
pub use config::ChaosBuilder;
pub use error::Injected;
pub use fault::{AsErrors, HttpFault, MakeResponse};
#[cfg(feature = "http")]
pub use fault::{DefaultBody, HttpResponses, InjectedResponse, MakeBody};
pub use latency::Latency;
pub use layer::ChaosLayer;
pub use schedule::{Phase, PhaseAt, Schedule};
pub use service::ChaosService;
