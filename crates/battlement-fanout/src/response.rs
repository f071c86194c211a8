//! What a fan-out answers: [`Responses`], one [`BackendResult`] per
//! backend, each with its [`Reply`].

use std::time::Duration;

use battlement_core::{BoxError, Name, Outcome};

/// What became of one backend's call.
#[derive(Debug)]
pub enum Reply<Res> {
    /// The backend answered (its [`outcome`](BackendResult::outcome) says
    /// whether the classifier counts it a success).
    Response(Res),
    /// The backend failed, or its `poll_ready` failed and it was not called.
    Error(BoxError),
    /// The backend refused the call with
    /// [`CircuitOpen`](battlement_core::CircuitOpen) (its breaker is open):
    /// a skip, not a failure.
    Skipped(BoxError),
    /// The call was still running when the request's deadline or the
    /// best-effort window passed; it was dropped.
    TimedOut,
    /// The call was still running when the strategy was satisfied (first
    /// success, quorum reached or out of reach); it was dropped.
    Cancelled,
    /// The call was never started: the backend was waiting to be ready or
    /// for a concurrency slot when the fan-out ended, or the request's
    /// deadline had already passed when the fan-out was called.
    NotCalled,
}

impl<Res> Reply<Res> {
    /// The response, if the backend answered.
    pub fn response(&self) -> Option<&Res> {
        match self {
            Reply::Response(r) => Some(r),
            _ => None,
        }
    }

    /// The error, if the backend failed or was skipped.
    pub fn error(&self) -> Option<&BoxError> {
        match self {
            Reply::Error(e) | Reply::Skipped(e) => Some(e),
            _ => None,
        }
    }

    /// `true` for [`Reply::Skipped`].
    pub fn is_skipped(&self) -> bool {
        matches!(self, Reply::Skipped(_))
    }
}

/// One backend's part of a fan-out.
#[derive(Debug)]
pub struct BackendResult<Res> {
    /// The backend's name.
    pub name: Name,
    /// Its result, or why there is none.
    pub reply: Reply<Res>,
    /// Its outcome by the classifier: a skip is a `Rejected` failure, a
    /// timed-out call a `Timeout` failure, a cancelled or never-started
    /// call `Ignored`.
    pub outcome: Outcome,
    /// How long the call took, for calls that finished (skips included).
    pub latency: Option<Duration>,
}

impl<Res> BackendResult<Res> {
    /// `true` when the classifier counts the call a success.
    pub fn is_success(&self) -> bool {
        self.outcome.is_success()
    }
}

/// Every backend's result, in the order the backends were added.
#[derive(Debug)]
pub struct Responses<Res> {
    pub(crate) results: Vec<BackendResult<Res>>,
    pub(crate) elapsed: Duration,
}

impl<Res> Responses<Res> {
    /// Every backend's result, in the order the backends were added.
    pub fn results(&self) -> &[BackendResult<Res>] {
        &self.results
    }

    /// The result of the backend named `name`.
    pub fn get(&self, name: &str) -> Option<&BackendResult<Res>> {
        self.results.iter().find(|r| &*r.name == name)
    }

    /// The responses the classifier counts as successes, with their
    /// backends' names.
    pub fn successes(&self) -> impl Iterator<Item = (&Name, &Res)> {
        self.results.iter().filter_map(|r| match &r.reply {
            Reply::Response(res) if r.outcome.is_success() => Some((&r.name, res)),
            _ => None,
        })
    }

    /// How many backends succeeded.
    pub fn success_count(&self) -> usize {
        self.results.iter().filter(|r| r.is_success()).count()
    }

    /// How long the whole fan-out took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The results, by value.
    pub fn into_results(self) -> Vec<BackendResult<Res>> {
        self.results
    }

    /// The successful responses, by value, with their backends' names.
    pub fn into_successes(self) -> impl Iterator<Item = (Name, Res)> {
        self.results.into_iter().filter_map(|r| match r.reply {
            Reply::Response(res) if r.outcome.is_success() => Some((r.name, res)),
            _ => None,
        })
    }
}

impl<Res> IntoIterator for Responses<Res> {
    type Item = BackendResult<Res>;
    type IntoIter = std::vec::IntoIter<BackendResult<Res>>;

    fn into_iter(self) -> Self::IntoIter {
        self.results.into_iter()
    }
}
