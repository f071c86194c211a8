//! **battlement-registry**: see and control every resilience layer in one
//! place.
//!
//! # The problem
//!
//! A service that stacks breakers, gates, retry budgets and fan-outs has
//! its protection spread over many objects. During an incident an operator
//! needs one answer to "what is open, what is shed, how slow is it?", one
//! way to reset or force a component by name, and one stream of what just
//! changed. This crate is that place.
//!
//! # When to use it
//!
//! Create one [`Registry`] per process, register each layer's handle (every
//! handle implements [`AsComponent`](battlement_core::AsComponent)), build
//! the layers with [`Registry::event_sink`], and wrap the services you want
//! measured in [`Registry::layer`]. Serve it with `battlement-http`'s
//! `HealthService`, or read it yourself.
//!
//! ```
//! use battlement_core::{BoxError, Control, HealthStatus};
//! use battlement_registry::Registry;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let registry = Registry::new();
//! let mut events = registry.subscribe();
//!
//! // Instrument a service: calls, outcomes, in-flight, latency.
//! let svc = ServiceBuilder::new()
//!     .layer(registry.layer("users").unwrap())
//!     .service(service_fn(|id: u32| async move {
//!         if id == 0 { Err::<u32, BoxError>("no such user".into()) } else { Ok(id) }
//!     }));
//! svc.clone().oneshot(7).await.unwrap();
//! svc.clone().oneshot(0).await.unwrap_err();
//!
//! let report = registry.health();
//! assert_eq!(report.status, HealthStatus::Healthy);
//! let users = report.component("users").unwrap();
//! assert_eq!(users.details["calls"], 2);
//! assert_eq!(users.details["success_rate"], 0.5);
//!
//! // Controls by name; events from every layer built with the sink.
//! registry.control("users", &Control::Reset).unwrap();
//! registry.event_sink().emit(&"users".into(), || battlement_core::EventKind::Reset);
//! assert_eq!(events.recv().await.unwrap().component.as_ref(), "users");
//! # }
//! ```
//!
//! # Decisions
//!
//! - **Names are unique** among live components: registering a taken name
//!   is a [`DuplicateName`] error, never a silent replace; a dropped
//!   component's name is free at once. Components are held weakly: a
//!   dropped layer disappears from reports, and registrations forget
//!   dropped entries once the name map has doubled, so the map never holds
//!   more than twice the live components (or 16). So an instrument's
//!   figures live as long as its layer or any service built from it: keep
//!   your service.
//! - **Overall status** is the worst status the components count as, after
//!   configurable mappings, thresholds and custom rules: see
//!   [`StatusRules`]. Each component judges itself: a breaker is
//!   `Degraded` while open, a gate `Degraded` when raised and `Unhealthy`
//!   at `Severe` or above; an instrument is always `Healthy` (use a
//!   [custom rule](RegistryBuilder::rule) to judge it by its figures).
//! - **Events** go through a bounded `tokio::sync::broadcast` channel
//!   (1024 per subscriber by default). Sending never waits: a subscriber
//!   that falls behind loses the oldest events and is told how many by
//!   `RecvError::Lagged(n)`.
//! - **The instrument** counts with relaxed atomics and records latency
//!   in a fixed 496-bucket log-linear histogram (under 12.5% relative
//!   error; why hand-written: see the `histogram` module's source).
//!   Percentiles are reported as the upper bound of the bucket that holds
//!   them. A call whose future is dropped before completing counts as
//!   `cancelled` and leaves the in-flight count. `calls` = successes +
//!   failures + ignored + cancelled + in-flight.
//! - **Which clock.** Two reads of tokio's clock were most of the
//!   instrument's cost, over its budget on their own. By default
//!   ([`LatencyClock::Auto`]) an instrument times calls with the CPU's
//!   time-stamp counter (the `quanta` crate), unless tokio's clock is
//!   paused where the layer is made: tests on paused time keep exact,
//!   deterministic latencies. A layer made outside the paused runtime and
//!   used inside it needs [`LatencyClock::Tokio`]; see [`LatencyClock`].
//! - **No reference count per call.** A call's future reaches its
//!   instrument's counters through a `&'static` borrow, not an `Arc`
//!   clone: counters are never freed but reused by a later instrument, and
//!   a call of a dropped instrument counts nowhere (a generation check).
//!   Counters are reused as soon as every call of their dropped instrument
//!   has ended (each call's last write says so; a call still running when
//!   its instrument is dropped holds its counters back until it ends, or a
//!   second at most), so their number follows the most instruments alive
//!   at once, not how many were made: making and dropping 100,000
//!   instruments one after another takes one set of counters (about 8 KB),
//!   not 100,000. A [`Registry::layer`] refused for a taken name takes
//!   none. See [`Footprint::instrument_slots`].
//! - **Latency sampling** is bounded: [`InstrumentLayer::sample_latency`]
//!   saturates at one call in [`MAX_SAMPLE_EVERY`] (2^20), so any `u32`
//!   is accepted and some calls are always timed.
//! - **Cost of the instrument.** Per timed call: three relaxed atomic
//!   additions (calls started, a histogram bucket, the latency sum), a few
//!   plain loads and two reads of the time-stamp counter; no allocation.
//!   Calls started and the latency sum are counted on one copy per thread
//!   (striped, summed by a report), so the cores serving one instrument
//!   do not pass those counters' cache lines between them on every call.
//!   See [Performance](#performance). On a very hot path,
//!   [`InstrumentLayer::sample_latency`] times one call in N and keeps
//!   counting every call.
//! - **Prometheus** (feature `prometheus`, on by default):
//!   [`Registry::prometheus_text`] and [`RegistryCollector`]; the names are
//!   described in the `prometheus` module.
//!
//! # Performance
//!
//! Measured with criterion (`benches/benches/registry.rs`) on the
//! development machine, a 2-core AMD EPYC virtual machine (`tsc` clock
//! source) shared with other builds, so figures are from the least loaded
//! of several runs and carry maybe ±20%; the instrument was also measured
//! in thread CPU time (best of 15 rounds of a million calls), which load
//! does not inflate as much, and in instructions with callgrind.
//!
//! | what | figure | budget |
//! |---|---|---|
//! | bare `service_fn` call | 0.8 ns | |
//! | one read of tokio's clock | 29–35 ns | |
//! | instrument, default clock (time-stamp counter) | 34–35 ns quiet machine, 42 ns under load (86 instructions) | ≤ 40 ns |
//! | instrument, [`LatencyClock::Tokio`] | 122 ns (76 ns CPU) | |
//! | instrument, [`sample_latency(16)`](InstrumentLayer::sample_latency) | 11 ns | |
//! | instrument, a call not timed | 6 ns CPU | |
//! | allocations per instrumented call | 0 | 0 |
//! | `health()`, 1,000 breaker-like components | 0.23 ms (quiet machine) | ≤ 1 ms |
//! | `health()`, 1,000 instruments | 0.63 ms (quiet machine; 2 allocations each) | ≤ 1 ms |
//!
//! Before this work the instrument cost 80–114 ns in runs like these (two
//! reads of tokio's clock, an `Arc` clone per call; 163 instructions) and
//! `health()` of 1,000 instruments 2.4 ms (20 allocations and about 6,300
//! instructions per instrument). The instrument is at its budget: two
//! `rdtsc` reads are about 25 ns of it on this machine, three atomic
//! additions most of the rest (leaving out the exact latency sum saved
//! nothing measurable, so it stays). A report of instruments was mostly
//! allocation: core's [`Details`](battlement_core::Details) keys are
//! `Cow<'static, str>` (no allocation per key), the latency figures are
//! flat `latency_*` keys rather than a nested `serde_json` object (seven
//! allocations), a report shares the registry's name, and every block
//! stays under about 1 KB so glibc's per-thread caches keep it: a 1.2 KB
//! block per instrument was trimmed and faulted back in on every report,
//! which tripled its time (1.9 ms) without showing in instruction counts.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod config;
mod error;
mod future;
mod histogram;
mod instrument;
mod layer;
#[cfg(feature = "prometheus")]
mod prometheus;
mod registry;
mod report;
mod service;
mod sync;

pub use clock::LatencyClock;
pub use config::{RegistryBuilder, StatusRules};
pub use error::DuplicateName;
pub use future::ResponseFuture;
pub use layer::{InstrumentLayer, LateOutcome, MAX_SAMPLE_EVERY};
#[cfg(feature = "prometheus")]
pub use prometheus::{LATENCY_BOUNDS_SECONDS, RegistryCollector};
pub use registry::{Footprint, Numbered, REPLAY, Registry, Resume};
pub use report::{ComponentReport, HealthReport, StatusCounts};
pub use service::Instrument;

/// The broadcast channel's receiver and errors, re-exported from tokio.
pub use tokio::sync::broadcast;
