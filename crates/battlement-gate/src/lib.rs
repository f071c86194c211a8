//! A degradation gate for Tower: under stress, shed low-priority work first
//! so the important work still gets through, and recover by itself.
//!
//! # The problem
//!
//! When a service is overloaded or its dependencies fail, serving every
//! request badly is worse than serving the important ones well. A
//! [`Gate`] holds the service's current [`Level`] (`Normal < Minimal <
//! Moderate < Severe < Critical`); every request gets a [`Priority`]
//! (`Critical, High, Normal, Low, Sheddable`) from a function of the
//! request, and the gate's [`AdmissionTable`] says which priorities each
//! level admits. A refused request fails at once, before any work, with
//! [`Shed`](battlement_core::Shed) (which carries a retry-after), and is
//! counted.
//!
//! The level is set by hand ([`Gate::set_level`], or
//! [`Control::SetLevel`](battlement_core::Control::SetLevel) through the
//! registry) or by a [`Governor`] that samples [`Signal`]s (the gate's own
//! error rate, latency percentile (p99) and in-flight count, open
//! breakers, any closure)
//! and moves the level one step at a time with hysteresis and a minimum
//! dwell, so it neither flaps nor stays degraded once things improve.
//!
//! The crate also has the client-side **adaptive throttle** of the SRE
//! book ([`ThrottleLayer`], [`AdaptiveThrottle`]): a client that sees its
//! backend reject much of its traffic rejects some locally, with
//! probability `max(0, (requests − K·accepts) / (requests + 1))`.
//!
//! # When to use it
//!
//! Put a [`GateLayer`] at the edge of a server (after instrumentation and
//! fallback, before deadlines and retries: see the canonical stacking order
//! in the workspace design) when some of the traffic matters more than the
//! rest: health checks and payments over recommendations and analytics.
//! Use the throttle on the client side of a call to a backend that may
//! be overloaded.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use battlement_core::Shed;
//! use battlement_gate::{Gate, Level, Priority, Rule};
//! use tower::{Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let gate = Gate::new("api");
//! let mut svc = gate
//!     .layer()
//!     .priority_fn(|req: &&str| match *req {
//!         "/health" => Some(Priority::Critical),
//!         "/analytics" => Some(Priority::Sheddable),
//!         _ => None, // the gate's default priority, `Normal`
//!     })
//!     .layer(service_fn(|req: &'static str| async move { Ok::<_, std::io::Error>(req.len()) }));
//! # use tower::Layer as _;
//!
//! assert!(svc.ready().await.unwrap().call("/analytics").await.is_ok());
//!
//! gate.set_level(Level::Minimal); // or let a governor do it
//! let err = svc.ready().await.unwrap().call("/analytics").await.unwrap_err();
//! assert!(err.is::<Shed>());
//! assert!(svc.ready().await.unwrap().call("/health").await.is_ok());
//!
//! // Automatic control: raise on the gate's own error rate or its p99
//! // latency, recover after 30 s below the recovery thresholds.
//! gate.release();
//! let governor = gate
//!     .governor()
//!     .interval(Duration::from_secs(1))
//!     .min_dwell(Duration::from_secs(30))
//!     .rule(
//!         Rule::new(gate.error_rate_signal())
//!             .step(Level::Minimal, 0.05, 0.02)
//!             .step(Level::Moderate, 0.20, 0.10),
//!     )
//!     .rule(
//!         Rule::new(gate.latency_percentile_signal(99.0).window(10))
//!             .step(Level::Minimal, 500.0, 200.0), // milliseconds
//!     )
//!     .build()
//!     .unwrap();
//! let task = tokio::spawn(governor.run());
//! # task.abort();
//! # }
//! ```
//!
//! # Decisions
//!
//! - **Priorities.** The default extractor, [`FromExtensions`], reads a
//!   `Priority` from the request ([`PriorityCarrier`]; for
//!   `http::Request`, its extensions); with the `http` feature,
//!   [`HeaderPriority`] reads `x-priority: low`. A request that says
//!   nothing gets the gate's default priority (`Normal`).
//! - **Readiness.** The gate is as ready as its inner service; a shed
//!   request never reaches the inner service (readiness is kept for the
//!   next request). It never fails `poll_ready`.
//! - **Hot path.** An admitted call is one atomic load of the level, one
//!   table lookup and one relaxed counter increment: no lock, no
//!   allocation. Outcome recording (in-flight, errors, latency) is off
//!   until a gate signal ([`Gate::error_rate_signal`], ...) is made, and
//!   then costs two clock reads and a few atomic adds per call. A call
//!   counts as an error when the layer's classifier
//!   ([`GateLayer::classifier`], any `Classify<Res, BoxError>`, the one
//!   shape every battlement layer takes; default
//!   [`ErrorClassifier`](battlement_core::ErrorClassifier): every `Err`)
//!   calls it a `Failure`, so behind axum, where a 5xx is an `Ok`, an
//!   HTTP classifier makes the error rate see it; an `Ignored` outcome
//!   and a cancelled call count as no error.
//! - **One shed is not one event.** Every shed is counted (`shed_total`,
//!   [`Gate::shed`]), but a [`Shed`](battlement_core::EventKind::Shed)
//!   event (and its trace) is emitted only for the first shed after each
//!   level change and then at most once per
//!   [`shed_event_interval`](GateBuilder::shed_event_interval) (1 s), as
//!   the breaker refuses an event per rejection: a flood of sheds is a
//!   count and a few events. The shed path reads the clock for it (it is
//!   cold: the admitted path is unchanged).
//! - **Latency signal.** [`Gate::latency_percentile_signal`] reads a
//!   percentile (p99, as Envoy and resilience4j users expect) of the
//!   gate's latency over a window of governor ticks, from a fixed
//!   histogram of atomics (249 log-linear buckets, made with the first
//!   such signal): one more relaxed increment per call, no lock, no
//!   allocation; the reading is the upper bound of the percentile's bucket,
//!   at most 12.5% above the exact value. [`Gate::latency_signal`] keeps
//!   the mean, which a slow tail barely moves.
//! - **Governor.** It moves up at once (one level per tick) and down only
//!   after every signal has been below the current level's recovery
//!   threshold for the dwell (the dwell restarts after each step). A
//!   level set by hand holds until [`Gate::release`]; the governor then
//!   takes it from there. With no governor alive for the gate,
//!   `release` (and [`Control::ReleaseLevel`](battlement_core::Control::ReleaseLevel))
//!   returns the gate to `Normal`, since nobody else would lower it.
//! - **The governor does not cycle.** A signal that depends on the level
//!   is the normal case (the shed work was the failing work, so raising
//!   the level removes the errors the governor reads). A raise within one
//!   dwell of a step down is a relapse and doubles the next dwell, up to
//!   [`max_dwell`](GovernorBuilder::max_dwell) (default 16 × `min_dwell`);
//!   a raise after a longer calm starts again from `min_dwell`, as a
//!   breaker's open duration grows with each re-open and resets on close.
//!   With a backend that fails past half its load, a 10 s dwell that
//!   cycled Normal → Minimal → Normal every 11 s settles at Minimal with
//!   one probe every ~160 s. Every reason names the step actually taken
//!   (`normal -> minimal`), the signal, its threshold, and the dwell or
//!   relapse. [`Control::Reset`](battlement_core::Control::Reset)
//!   returns the gate to `Normal` under the governor and keeps the
//!   admitted/shed totals (they are monotonic counters).
//! - **Health.** `Normal` is healthy, `Minimal` and `Moderate` degraded,
//!   `Severe` and `Critical` unhealthy.
//! - **Bounded memory.** Every size that allocates has a maximum checked
//!   at build (issue 13, D5): a latency-percentile window of at most
//!   [`LatencyPercentile::MAX_WINDOW`] (1000) ticks, a throttle window of
//!   at most [`ThrottleBuilder::MAX_BUCKETS`] (1000) buckets. The
//!   histogram is a fixed 249 buckets.
//! - **Table.** A custom [`AdmissionTable`] must be monotone (what a level
//!   admits, each lower level admits).
//! - **Throttle accounting.** A call counts as rejected by the backend
//!   when the throttle's classifier says `RateLimited`, `Unavailable` or
//!   `Rejected`; everything else (other failures included) is an accept,
//!   as in the SRE book, where only explicit overload refusals count. A
//!   call dropped before the backend answered (deadline, hedge, fan-out
//!   cancelling the losers) counts as neither a request nor an accept:
//!   the drop un-counts its request (issue 13, D2).
//!
//! # Performance
//!
//! Measured with criterion (`benches/benches/gate.rs`) on a shared 2-core
//! machine under load (other builds running; load average 6–13), with
//! instruction counts from callgrind, which load does not change:
//!
//! | call | criterion (ns/call) | instructions/call | allocations |
//! |---|---|---|---|
//! | bare `service_fn` | 1.0–2.0 | 5 | 0 |
//! | admitted | 7.5–9.7 | 23 | 0 |
//! | admitted, outcome recording on | 160–210 | | 0 |
//! | shed | 55–90 | | 1 (the boxed [`Shed`](battlement_core::Shed)) |
//! | adaptive throttle, let through | 145–235 | | 0 |
//!
//! So the gate's own work on an admitted call (one atomic load of the
//! level, the priority extractor, one table lookup, one relaxed counter
//! increment) is 5.5–8 ns over the bare service by criterion (one noisy
//! run read 11 ns), 2.7–3.3 ns in a plain timed loop in one process:
//! inside the 10 ns budget.
//! On the 2-core AMD EPYC VM of 7 December 2026 the admitted row read
//! 12.9 ns (0.55 bare) until the response future's `poll` was made
//! inline: out of line, its result came back through memory and the
//! caller's 16-byte load of it stalled on store forwarding (perf put half
//! the row's samples on that load). Inline, it reads 2.0 ns; recording an
//! outcome stays out of line.
//! The benches' `call_now` pins the response future where it is made: handing
//! a 32-byte future by value to another function doubled the instructions
//! (47 against 23) even with both inlined. The not-recorded call has its own
//! future variant, so polling it checks no recording state. With outcome
//! recording on (a gate signal was made), a call adds two clock reads
//! (about 60–85 ns each on this machine, whose clock is not a cheap vDSO
//! read; a vDSO read is typically 15–25 ns), an in-flight increment and
//! decrement, and the outcome, latency and histogram increments. The
//! throttle's cost is likewise mostly its clock read plus a sum over the
//! window's buckets.

mod config;
pub mod future;
mod gate;
mod governor;
mod layer;
mod priority;
mod service;
mod sync;
mod table;
mod throttle;

pub use battlement_core::{Level, Priority};
pub use config::GateBuilder;
pub use gate::Gate;
pub use governor::{
    ErrorRate, FnSignal, Governor, GovernorBuilder, InFlight, Latency, LatencyPercentile,
    OpenBreakers, Rule, Signal, is_open_breaker, signal_fn,
};
pub use layer::GateLayer;
#[cfg(feature = "http")]
pub use priority::HeaderPriority;
pub use priority::{ExtractPriority, FromExtensions, PriorityCarrier};
pub use service::GateService;
pub use table::AdmissionTable;
pub use throttle::{
    AdaptiveThrottle, ThrottleBuilder, ThrottleFuture, ThrottleLayer, ThrottleService,
    ThrottleSignal,
};
