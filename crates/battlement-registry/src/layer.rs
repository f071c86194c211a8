//! [`InstrumentLayer`]: counts a service's calls, outcomes, in-flight and
//! latency into the registry.

use std::fmt;
use std::sync::Arc;

use battlement_core::{AsComponent, Component, ErrorClassifier, Leak, Outcome, SharedRef};
use tower_layer::Layer;

use battlement_core::clock::Clock;

use crate::clock::LatencyClock;
use crate::instrument::InstrumentState;
use crate::service::Instrument;

/// Instruments a service: counts calls, outcomes (judged by a
/// [`Classify`](battlement_core::Classify), [`ErrorClassifier`] by
/// default), calls in flight, and latency in a fixed-size histogram.
///
/// Made by [`Registry::layer`](crate::Registry::layer), which registers it
/// under its name. Every service the layer wraps shares the same figures;
/// they disappear from the registry's reports once the layer and all those
/// services are dropped.
///
/// ```
/// use battlement_registry::Registry;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let registry = Registry::new();
/// let svc = ServiceBuilder::new()
///     .layer(registry.layer("api").unwrap())
///     .service(service_fn(|x: u32| async move { Ok::<_, battlement_core::BoxError>(x) }));
/// svc.clone().oneshot(1).await.unwrap();
/// // Figures live as long as the layer or a service built from it.
/// assert_eq!(registry.get("api").unwrap().details["successes"], 1);
/// # }
/// ```
pub struct InstrumentLayer<C = ErrorClassifier> {
    pub(crate) state: SharedRef<InstrumentState>,
    pub(crate) classifier: C,
    pub(crate) sample_mask: u64,
    pub(crate) clock: Clock,
}

impl<C> InstrumentLayer<C> {
    /// Judges outcomes with `classifier` instead (for example a
    /// `ResponseClassifier` that counts HTTP 5xx as failures).
    pub fn classifier<C2>(self, classifier: C2) -> InstrumentLayer<C2> {
        InstrumentLayer {
            state: self.state,
            classifier,
            sample_mask: self.sample_mask,
            clock: self.clock,
        }
    }

    /// Times only one call in `every` (rounded up to a power of two, at
    /// most [`MAX_SAMPLE_EVERY`]: a larger `every` times one call in
    /// 2^20; `0` and `1` time every call, the default). Every call is
    /// still counted and classified; the latency percentiles then describe
    /// the sampled calls. Reading the clock twice is most of the
    /// instrument's cost (about 25 of its 36–42 ns with the default
    /// clock), so sampling is how to make it nearly free on a very hot
    /// path (11 ns at 1 in 16).
    #[must_use]
    pub fn sample_latency(mut self, every: u32) -> Self {
        self.sample_mask = sample_mask(every);
        self
    }

    /// Times calls with `clock` (default: [`LatencyClock::Auto`], tokio's
    /// clock on paused time, otherwise the fast clock; see
    /// [`LatencyClock`]). `Auto` is decided again, here and now.
    #[must_use]
    pub fn latency_clock(mut self, clock: LatencyClock) -> Self {
        self.clock = clock.resolve();
        self
    }

    /// The name it is registered under.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// A handle to correct the outcome of this instrument's calls after
    /// their response: for outcomes known only when a response's body
    /// ends, such as a gRPC status in the trailers (`battlement-http`'s
    /// `GrpcTrailersLayer` uses it).
    pub fn late_outcome(&self) -> LateOutcome {
        LateOutcome {
            state: self.state.arc(),
        }
    }
}

/// The sparsest latency sampling, one call in 2^20 (about a million):
/// [`InstrumentLayer::sample_latency`] saturates at it, so a huge `every`
/// still times some calls (and `u32::MAX` cannot overflow the rounding to
/// a power of two).
pub const MAX_SAMPLE_EVERY: u32 = 1 << 20;

/// The mask of a call's sequence number whose zero means "timed": one call
/// in `every`, rounded up to a power of two, in `1..=MAX_SAMPLE_EVERY`.
const fn sample_mask(every: u32) -> u64 {
    let every = if every > MAX_SAMPLE_EVERY {
        MAX_SAMPLE_EVERY
    } else if every == 0 {
        1
    } else {
        every
    };
    every.next_power_of_two() as u64 - 1
}

/// Corrects the outcome of an instrument's completed calls, for outcomes
/// known only after the response (a gRPC status in the trailers, an error
/// while streaming the body). Made by [`InstrumentLayer::late_outcome`].
///
/// The instrument counts a call when its response arrives; a call it
/// counted as a success can later be [`amend`](LateOutcome::amend)ed to a
/// failure or an ignored call. Its latency stays the time to the
/// response. Holding a `LateOutcome` keeps the instrument registered.
///
/// ```
/// use battlement_core::{BoxError, FailureKind, Outcome};
/// use battlement_registry::Registry;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let registry = Registry::new();
/// let layer = registry.layer("stream").unwrap();
/// let late = layer.late_outcome();
/// let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
/// svc.oneshot(1).await.unwrap(); // a success when the response came...
/// late.amend(&Outcome::failure(FailureKind::Unavailable)); // ...failed later
/// let d = registry.get("stream").unwrap().details;
/// assert_eq!((d["successes"].as_u64(), d["failures"].as_u64()), (Some(0), Some(1)));
/// # }
/// ```
#[derive(Clone)]
pub struct LateOutcome {
    state: Arc<InstrumentState>,
}

impl LateOutcome {
    /// One call this instrument counted as a success turned out to be
    /// `outcome` (a success changes nothing). Only amend calls counted as
    /// successes: successes are derived from the other counts, so amending
    /// any other call would count it twice.
    pub fn amend(&self, outcome: &Outcome) {
        self.state.counters.amend(self.state.generation, outcome);
    }

    /// The instrument's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }
}

impl fmt::Debug for LateOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LateOutcome")
            .field("name", &self.state.name)
            .finish_non_exhaustive()
    }
}

impl<C: Clone> Clone for InstrumentLayer<C> {
    fn clone(&self) -> Self {
        InstrumentLayer {
            state: self.state.clone(),
            classifier: self.classifier.clone(),
            sample_mask: self.sample_mask,
            clock: self.clock,
        }
    }
}

impl<C> fmt::Debug for InstrumentLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstrumentLayer")
            .field("name", &self.state.name)
            .finish_non_exhaustive()
    }
}

/// Its counters kept for the rest of the process: copies of its services
/// count no reference, and the instrument stays in its registry for good
/// (see [`Leak`]).
impl<C> Leak for InstrumentLayer<C> {
    fn leak(self) -> Self {
        InstrumentLayer {
            state: self.state.leak(),
            ..self
        }
    }
}

impl<C> AsComponent for InstrumentLayer<C> {
    fn as_component(&self) -> Arc<dyn Component> {
        self.state.arc()
    }
}

impl<S, C: Clone> Layer<S> for InstrumentLayer<C> {
    type Service = Instrument<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Instrument::new(
            inner,
            self.state.clone(),
            self.classifier.clone(),
            self.sample_mask,
            self.clock,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// D13: any `u32` gives a period that is a power of two, at least
        /// `every` up to the maximum, never above it (no overflow: the
        /// largest `u32`s used to panic, or time only the first call).
        #[test]
        fn sampling_saturates_for_every_u32(every in prop_oneof![
            any::<u32>(),
            MAX_SAMPLE_EVERY - 2..=MAX_SAMPLE_EVERY + 2,
            u32::MAX - 2..=u32::MAX,
            Just(2_147_483_649u32),
        ]) {
            let period = sample_mask(every) + 1;
            prop_assert!(period.is_power_of_two());
            prop_assert!(period <= u64::from(MAX_SAMPLE_EVERY));
            prop_assert!(period >= u64::from(every.clamp(1, MAX_SAMPLE_EVERY)));
            prop_assert!(period < 2 * u64::from(every.clamp(1, MAX_SAMPLE_EVERY)));
        }
    }
}
