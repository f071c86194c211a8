//! Property test: random sequences of calls (started, finished with an
//! outcome after some time, or dropped) and clock advances, driven through
//! the breaker and through a small reference model; both must agree on
//! every state and every admission decision.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use battlement_breaker::{Breaker, CircuitState};
use battlement_core::{BoxError, CircuitOpen, FailureKind, Outcome};
use proptest::prelude::*;
use tokio::sync::oneshot;
use tower::{Layer, Service, service_fn};

/// The half-open settings a run uses: probes admitted per round, probes
/// in flight at once (over every round), successes that close.
#[derive(Debug, Clone, Copy)]
struct HalfOpen {
    permitted: u32,
    concurrent: u32,
    threshold: u32,
}

/// As resilience4j counts (N per round, all at once), one at a time with
/// three successes to close, and a cap between the two.
const HALF_OPEN: [HalfOpen; 3] = [
    HalfOpen {
        permitted: 2,
        concurrent: 2,
        threshold: 2,
    },
    HalfOpen {
        permitted: 3,
        concurrent: 1,
        threshold: 3,
    },
    HalfOpen {
        permitted: 3,
        concurrent: 2,
        threshold: 2,
    },
];
const WINDOW: usize = 5;
const MIN_CALLS: usize = 3;
const CONSECUTIVE: u32 = 3;
const SLOW_MS: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
struct Ticket {
    generation: u32,
    probe: bool,
    start: u64,
}

/// The reference model, written as plainly as possible.
#[derive(Debug)]
struct Model {
    state: St,
    generation: u32,
    window: VecDeque<(bool, bool)>,
    consecutive: u32,
    open_until: u64,
    reopens: u32,
    /// Probes in flight, of every round.
    in_flight: u32,
    /// Probes admitted in the current round (given back by a probe that
    /// ends without a result).
    admitted: u32,
    successes: u32,
    half: HalfOpen,
    /// Whether the slow-call rule is on (the breaker then reads the clock
    /// on every call; without it, a closed success takes the untimed path).
    slow_rule: bool,
}

impl Model {
    fn new(slow_rule: bool, half: HalfOpen) -> Self {
        Model {
            slow_rule,
            half,
            admitted: 0,
            state: St::Closed,
            generation: 0,
            window: VecDeque::new(),
            consecutive: 0,
            open_until: 0,
            reopens: 0,
            in_flight: 0,
            successes: 0,
        }
    }

    fn go(&mut self, to: St, now: u64) {
        match to {
            St::Open => {
                self.reopens = if self.state == St::HalfOpen {
                    self.reopens + 1
                } else {
                    0
                };
                let d = (1000u64 << self.reopens.min(10)).min(8000);
                self.open_until = now + d;
            }
            // A new round: no successes, but probes of earlier rounds still
            // in flight keep their permits (`in_flight` spans rounds).
            St::HalfOpen => {
                self.successes = 0;
                self.admitted = 0;
            }
            St::Closed => {
                self.reopens = 0;
                self.window.clear();
                self.consecutive = 0;
            }
        }
        self.state = to;
        self.generation += 1;
    }

    fn admit(&mut self, now: u64) -> Option<Ticket> {
        if self.state == St::Open {
            if now < self.open_until {
                return None;
            }
            self.go(St::HalfOpen, now);
        }
        match self.state {
            St::Closed => Some(Ticket {
                generation: self.generation,
                probe: false,
                start: now,
            }),
            St::HalfOpen
                if self.in_flight < self.half.concurrent && self.admitted < self.half.permitted =>
            {
                self.in_flight += 1;
                self.admitted += 1;
                Some(Ticket {
                    generation: self.generation,
                    probe: true,
                    start: now,
                })
            }
            _ => None,
        }
    }

    /// A call ends without a result (dropped, or ignored): a probe
    /// leaves the flight and gives its round's admission back.
    fn drop_ticket(&mut self, t: Ticket) {
        if t.probe {
            self.in_flight -= 1;
            if t.generation == self.generation {
                self.admitted -= 1;
            }
        }
    }

    fn finish(&mut self, t: Ticket, outcome: Outcome, now: u64) {
        let current = t.generation == self.generation;
        if outcome.is_ignored() {
            return self.drop_ticket(t);
        }
        // A probe leaves the flight whatever round admitted it.
        if t.probe {
            self.in_flight -= 1;
        }
        let slow = self.slow_rule && now - t.start > SLOW_MS;
        let failed = outcome.is_failure();
        if !current {
            return;
        }
        if t.probe {
            if failed || slow {
                self.go(St::Open, now);
            } else {
                self.successes += 1;
                if self.successes >= self.half.threshold {
                    self.go(St::Closed, now);
                }
            }
            return;
        }
        if self.window.len() == WINDOW {
            self.window.pop_front();
        }
        self.window.push_back((failed, slow));
        self.consecutive = if failed { self.consecutive + 1 } else { 0 };
        // The rates are checked on a failure or slow call, and on the call
        // that brings the window to the minimum, whatever its outcome.
        let reached = self.window.len() == MIN_CALLS;
        if !(failed || slow || reached) {
            return;
        }
        if self.consecutive >= CONSECUTIVE {
            return self.go(St::Open, now);
        }
        let calls = self.window.len();
        if calls < MIN_CALLS {
            return;
        }
        let fails = self.window.iter().filter(|w| w.0).count();
        let slows = self.window.iter().filter(|w| w.1).count();
        if fails as f64 / calls as f64 >= 0.5 || slows as f64 / calls as f64 >= 0.5 {
            self.go(St::Open, now);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Start,
    Finish(usize, u8),
    Drop(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Start),
        4 => (any::<usize>(), 0u8..3).prop_map(|(i, o)| Op::Finish(i, o)),
        1 => any::<usize>().prop_map(Op::Drop),
        3 => prop_oneof![0u64..150, 0u64..3000].prop_map(Op::Advance),
    ]
}

fn outcome(o: u8) -> Outcome {
    match o {
        0 => Outcome::Success,
        1 => Outcome::failure(FailureKind::Unavailable),
        _ => Outcome::Ignored,
    }
}

type Fut = Pin<Box<dyn Future<Output = Result<Outcome, BoxError>>>>;

fn poll_once(f: &mut Fut) -> Poll<Result<Outcome, BoxError>> {
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

fn run(ops: Vec<Op>, slow_rule: bool, half: HalfOpen) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut builder = Breaker::builder("model")
            .consecutive_failures(CONSECUTIVE)
            .failure_rate(0.5);
        if slow_rule {
            builder = builder.slow_calls(Duration::from_millis(SLOW_MS), 0.5);
        }
        let breaker = builder
            .count_window(WINDOW as u32)
            .minimum_calls(MIN_CALLS as u32)
            .exponential_open(Duration::from_secs(1), 2.0, Duration::from_secs(8))
            .permitted_probes(half.permitted)
            .max_concurrent_probes(half.concurrent)
            .success_threshold(half.threshold)
            .build()
            .unwrap();
        let layer = breaker
            .layer()
            .with_classifier(|r: &Result<Outcome, BoxError>| match r {
                Ok(o) => *o,
                Err(_) => Outcome::failure(FailureKind::Unknown),
            });
        let mut svc = layer.layer(service_fn(|rx: oneshot::Receiver<Outcome>| async move {
            Ok::<_, BoxError>(rx.await.unwrap_or(Outcome::Ignored))
        }));
        let mut model = Model::new(slow_rule, half);
        let mut now = 0u64;
        let mut pending: Vec<(Fut, oneshot::Sender<Outcome>, Ticket)> = vec![];
        for op in ops {
            match op {
                Op::Start => {
                    let (tx, rx) = oneshot::channel();
                    let mut fut: Fut = Box::pin(svc.call(rx));
                    let expected = model.admit(now);
                    match (poll_once(&mut fut), expected) {
                        (Poll::Pending, Some(t)) => pending.push((fut, tx, t)),
                        (Poll::Ready(Err(e)), None) => {
                            prop_assert!(e.is::<CircuitOpen>());
                        }
                        (got, want) => {
                            prop_assert!(false, "admission differs: {got:?} vs model {want:?}")
                        }
                    }
                }
                Op::Finish(i, o) if !pending.is_empty() => {
                    let (mut fut, tx, t) = pending.swap_remove(i % pending.len());
                    tx.send(outcome(o)).unwrap();
                    prop_assert!(poll_once(&mut fut).is_ready());
                    model.finish(t, outcome(o), now);
                }
                Op::Drop(i) if !pending.is_empty() => {
                    let (fut, _tx, t) = pending.swap_remove(i % pending.len());
                    drop(fut);
                    model.drop_ticket(t);
                }
                Op::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    now += ms;
                }
                _ => {}
            }
            // An open breaker whose open duration has passed reads
            // half-open before the next call makes the transition.
            let want = match model.state {
                St::Closed => CircuitState::Closed,
                St::Open if now >= model.open_until => CircuitState::HalfOpen,
                St::Open => CircuitState::Open,
                St::HalfOpen => CircuitState::HalfOpen,
            };
            prop_assert_eq!(breaker.state(), want, "model: {:?}", model);
            let m = breaker.metrics();
            let failures = model.window.iter().filter(|w| w.0).count() as u32;
            let slow = model.window.iter().filter(|w| w.1).count() as u32;
            prop_assert_eq!(
                (m.window_calls, m.window_failures, m.window_slow_calls),
                (model.window.len() as u32, failures, slow),
                "window, model: {:?}",
                model
            );
            prop_assert_eq!(m.consecutive_failures, model.consecutive);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn breaker_agrees_with_the_model(
        ops in proptest::collection::vec(op(), 1..120),
        half in 0..HALF_OPEN.len(),
    ) {
        run(ops, true, HALF_OPEN[half])?;
    }

    /// Without a slow-call rule (nor a time window) the breaker does not
    /// read the clock and a closed success takes the inlined fast path.
    #[test]
    fn untimed_breaker_agrees_with_the_model(
        ops in proptest::collection::vec(op(), 1..120),
        half in 0..HALF_OPEN.len(),
    ) {
        run(ops, false, HALF_OPEN[half])?;
    }
}
