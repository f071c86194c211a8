//! A backend mock for the fan-out and hedge tests: sleeps, then answers;
//! counts calls, in-flight calls (and their peak) and calls dropped before
//! they finished.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};
use std::time::Duration;

use battlement_core::{BoxError, CircuitOpen, CircuitState, Deadline, DeadlineCarrier};
use tower::Service;

/// A request that carries a deadline.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub deadline: Option<Deadline>,
}

impl DeadlineCarrier for Req {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Fail,
    Open,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub calls: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub peak: AtomicUsize,
    pub dropped: AtomicUsize,
    pub completed: AtomicUsize,
}

impl Counters {
    pub fn dropped(&self) -> usize {
        self.dropped.load(SeqCst)
    }
    pub fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }
    pub fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }
}

/// A backend answering `answer` after `delay` (the delay may be changed
/// between calls through `delay_ms`).
#[derive(Debug, Clone)]
pub struct Mock {
    pub name: &'static str,
    pub delay_ms: Arc<AtomicUsize>,
    pub answer: Answer,
    pub counters: Arc<Counters>,
    /// Per-call (delay ms, answer), taken in order before the defaults.
    pub script: Arc<std::sync::Mutex<std::collections::VecDeque<(u64, Answer)>>>,
}

impl Mock {
    pub fn new(
        name: &'static str,
        delay: Duration,
        answer: Answer,
        counters: &Arc<Counters>,
    ) -> Self {
        Mock {
            name,
            delay_ms: Arc::new(AtomicUsize::new(delay.as_millis() as usize)),
            answer,
            counters: counters.clone(),
            script: Arc::default(),
        }
    }

    pub fn script(self, calls: &[(u64, Answer)]) -> Self {
        self.script.lock().unwrap().extend(calls.iter().copied());
        self
    }
}

struct Guard {
    counters: Arc<Counters>,
    done: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, SeqCst);
        if self.done {
            self.counters.completed.fetch_add(1, SeqCst);
        } else {
            self.counters.dropped.fetch_add(1, SeqCst);
        }
    }
}

impl Service<Req> for Mock {
    type Response = &'static str;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<&'static str, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Req) -> Self::Future {
        let c = &self.counters;
        c.calls.fetch_add(1, SeqCst);
        let now = c.in_flight.fetch_add(1, SeqCst) + 1;
        c.peak.fetch_max(now, SeqCst);
        let guard = Guard {
            counters: c.clone(),
            done: false,
        };
        let (delay, answer) = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((self.delay_ms.load(SeqCst) as u64, self.answer));
        let delay = Duration::from_millis(delay);
        let name = self.name;
        Box::pin(async move {
            let mut guard = guard;
            if answer == Answer::Open {
                guard.done = true;
                return Err(CircuitOpen::new(name, CircuitState::Open, None).into());
            }
            tokio::time::sleep(delay).await;
            guard.done = true;
            match answer {
                Answer::Ok => Ok(name),
                _ => Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into()),
            }
        })
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A current-thread runtime on paused time, for a property test's case
/// (`proptest!` bodies are not async).
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}
