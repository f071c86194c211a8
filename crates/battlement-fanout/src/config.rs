//! The fan-out's configuration: [`Strategy`] and [`FanOutBuilder`].

use std::sync::Arc;
use std::time::Duration;

use battlement_core::{ErrorClassifier, EventSink, InvalidConfig, Name};

use crate::merge::NoMerge;
use crate::service::{Backend, FanOut, Shared};
use crate::stats::{BackendStats, FanOutStats};

/// When a fan-out is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// Wait for every backend (or the request's deadline). Fails with
    /// [`AllFailed`](battlement_core::AllFailed) only when none succeeded.
    All,
    /// Return on the first success and drop every other call at once.
    /// Fails with [`AllFailed`](battlement_core::AllFailed) when every
    /// backend failed.
    FirstSuccess,
    /// Return what finished within the window (or by the deadline, if
    /// earlier) and drop the rest. Fails with
    /// [`AllFailed`](battlement_core::AllFailed) when nothing succeeded in
    /// time.
    BestEffort(Duration),
    /// Return once `n` backends succeeded, dropping the rest; fail with
    /// [`QuorumNotReached`](battlement_core::QuorumNotReached) as soon as `n`
    /// can no longer be reached.
    Quorum(usize),
}

/// Builds a [`FanOut`]: `FanOut::builder(name)`, one `.backend(..)` per
/// service, then `.build()`.
///
/// | setting | default |
/// |---|---|
/// | [`strategy`](FanOutBuilder::strategy) | [`Strategy::All`] |
/// | [`max_concurrency`](FanOutBuilder::max_concurrency) | unbounded |
/// | [`classifier`](FanOutBuilder::classifier) | [`ErrorClassifier`] (every `Ok` is a success) |
/// | [`merge`](FanOutBuilder::merge) | none: the response is the [`Responses`](crate::Responses) |
/// | [`events`](FanOutBuilder::events) | [`EventSink::none()`] |
#[derive(Debug)]
pub struct FanOutBuilder<S, C = ErrorClassifier, M = NoMerge> {
    name: Name,
    backends: Vec<(Name, S)>,
    strategy: Strategy,
    max_concurrency: Option<usize>,
    classifier: C,
    merge: M,
    events: EventSink,
}

impl<S> FanOutBuilder<S> {
    pub(crate) fn new(name: impl Into<Name>) -> Self {
        FanOutBuilder {
            name: name.into(),
            backends: Vec::new(),
            strategy: Strategy::All,
            max_concurrency: None,
            classifier: ErrorClassifier::new(),
            merge: NoMerge,
            events: EventSink::none(),
        }
    }
}

impl<S, C, M> FanOutBuilder<S, C, M> {
    /// Adds a backend named `name`. Names must be unique; results come
    /// back in the order backends were added.
    #[must_use]
    pub fn backend(mut self, name: impl Into<Name>, service: S) -> Self {
        self.backends.push((name.into(), service));
        self
    }

    /// When the fan-out is done. Default: [`Strategy::All`].
    #[must_use]
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// At most `n` backend calls in flight at once; the others start, in
    /// the order they were added, as calls finish. Default: unbounded.
    /// Must be at least 1.
    #[must_use]
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = Some(n);
        self
    }

    /// Judges each backend's result. Default: [`ErrorClassifier`], for
    /// which every `Ok` is a success.
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> FanOutBuilder<S, C2, M> {
        FanOutBuilder {
            name: self.name,
            backends: self.backends,
            strategy: self.strategy,
            max_concurrency: self.max_concurrency,
            classifier,
            merge: self.merge,
            events: self.events,
        }
    }

    /// Reduces the per-backend [`Responses`](crate::Responses) to one
    /// response (any `Fn(Responses<Res>) -> Result<Out, BoxError>`).
    /// Default: none, the response is the `Responses` itself.
    #[must_use]
    pub fn merge<M2>(self, merge: M2) -> FanOutBuilder<S, C, M2> {
        FanOutBuilder {
            name: self.name,
            backends: self.backends,
            strategy: self.strategy,
            max_concurrency: self.max_concurrency,
            classifier: self.classifier,
            merge,
            events: self.events,
        }
    }

    /// Where [`Skipped`](battlement_core::EventKind::Skipped) events go.
    /// Default: [`EventSink::none()`] (they are only traced).
    #[must_use]
    pub fn events(mut self, events: EventSink) -> Self {
        self.events = events;
        self
    }

    /// Checks the configuration and builds the fan-out.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] when there is no backend, two backends share a
    /// name, `max_concurrency` is 0, a `Quorum(n)` has `n` outside
    /// `1..=backends`, or a `BestEffort` window is zero.
    pub fn build(self) -> Result<FanOut<S, C, M>, InvalidConfig> {
        let n = self.backends.len();
        if n == 0 {
            return Err(InvalidConfig::new(
                "fanout",
                "backends",
                0usize,
                "must hold at least one backend",
            ));
        }
        for (i, (name, _)) in self.backends.iter().enumerate() {
            if self.backends[..i].iter().any(|(other, _)| other == name) {
                return Err(InvalidConfig::new(
                    "fanout",
                    "backends",
                    name,
                    "must have unique names",
                ));
            }
        }
        if self.max_concurrency == Some(0) {
            return Err(InvalidConfig::new(
                "fanout",
                "max_concurrency",
                0usize,
                "must be at least 1",
            ));
        }
        match self.strategy {
            Strategy::Quorum(q) if q == 0 || q > n => {
                return Err(InvalidConfig::new(
                    "fanout",
                    "strategy",
                    self.strategy,
                    format!("quorum must be in 1..={n} (the number of backends)"),
                ));
            }
            Strategy::BestEffort(w) if w.is_zero() => {
                return Err(InvalidConfig::new(
                    "fanout",
                    "strategy",
                    self.strategy,
                    "best-effort window must be greater than zero",
                ));
            }
            _ => {}
        }
        let stats = Arc::new(FanOutStats {
            name: self.name.clone(),
            backends: self
                .backends
                .iter()
                .map(|(name, _)| BackendStats::new(name.clone()))
                .collect(),
        });
        let shared = Arc::new(Shared {
            name: self.name,
            stats,
            strategy: self.strategy,
            max_concurrency: self.max_concurrency.unwrap_or(usize::MAX),
            classifier: self.classifier,
            merge: self.merge,
            events: self.events,
        });
        Ok(FanOut {
            backends: self
                .backends
                .into_iter()
                .map(|(_, s)| Backend::new(s))
                .collect(),
            shared,
        })
    }
}
