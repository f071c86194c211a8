//! The slot pool a bulkhead and an adaptive limit share: calls in flight,
//! callers waiting, the limit, and the queue of waiters.
//!
//! One `AtomicU64` holds `waiting << 32 | in_flight`, so admitting, waiting
//! and releasing are each one compare-and-swap (or one `fetch_sub`) on one
//! word, and every change is seen in one order. The queue of waiters (their
//! wakers, first come first served) is behind a mutex that only callers who
//! wait and releases that find a waiter take: with nobody waiting, a call
//! costs one compare-and-swap to admit and one `fetch_sub` to release, no
//! lock, no allocation.
//!
//! A release that finds a waiter hands its slot to the first one (the slot
//! stays counted in flight; the waiter leaves the queue), so a new call
//! cannot overtake callers that wait: while anyone waits, the fast path
//! refuses and takes the slow path, which queues behind them. A waiter is
//! "granted" exactly when someone else took it out of the queue; one that
//! gives up (its wait ran out, or it was dropped) takes itself out, or, if it
//! was granted meanwhile, passes the slot on.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use battlement_core::{BoxError, ComponentHealth, HealthStatus, MetricType, Name};
use tokio::time::{Instant, Sleep};

use crate::sync::{AtomicU32, AtomicU64, Mutex, MutexGuard};

const IN_FLIGHT: u64 = 1;
const WAITING: u64 = 1 << 32;

#[inline]
const fn in_flight(state: u64) -> u32 {
    state as u32
}

#[inline]
const fn waiting(state: u64) -> u32 {
    (state >> 32) as u32
}

/// What a bulkhead or a limiter adds to the pool: its error, and (for the
/// adaptive limit) its sampling state.
pub(crate) trait Flavour: Send + Sync + Sized + 'static {
    /// The error a refused call fails with.
    fn refusal(slots: &Slots<Self>, waited: Duration) -> BoxError;
}

/// How long callers may wait for a slot, and how many at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wait {
    pub(crate) max_wait: Duration,
    pub(crate) max_waiting: u32,
}

impl Wait {
    pub(crate) const NONE: Wait = Wait {
        max_wait: Duration::ZERO,
        max_waiting: 0,
    };
}

#[derive(Debug, Default)]
struct Queue {
    next_id: u64,
    /// Waiters in arrival order; ids only grow, so it is sorted by id.
    waiters: VecDeque<(u64, Waker)>,
}

impl Queue {
    fn find(&self, id: u64) -> Result<usize, usize> {
        self.waiters.binary_search_by_key(&id, |(i, _)| *i)
    }
}

/// The pool of slots shared by every service (and the handle) of one
/// bulkhead or limiter.
pub(crate) struct Slots<X> {
    pub(crate) name: Name,
    /// `waiting << 32 | in_flight`.
    state: AtomicU64,
    /// The calls admitted since the pool was made (an adaptive limiter also
    /// reads it for its rejection rate).
    admitted: AtomicU64,
    limit: AtomicU32,
    pub(crate) wait: Wait,
    pub(crate) retry_after: Option<Duration>,
    rejected: AtomicU64,
    waited: AtomicU64,
    timed_out: AtomicU64,
    queue: Mutex<Queue>,
    pub(crate) flavour: X,
}

impl<X: Flavour> fmt::Debug for Slots<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slots")
            .field("name", &self.name)
            .field("in_flight", &self.in_flight())
            .field("waiting", &self.waiting())
            .field("limit", &self.limit())
            .finish_non_exhaustive()
    }
}

/// A snapshot of a [`Bulkhead`](crate::Bulkhead)'s or an
/// [`AdaptiveLimit`](crate::AdaptiveLimit)'s figures. The totals count
/// since the handle was built and never go down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadMetrics {
    /// Calls holding a slot now.
    pub in_flight: u32,
    /// Callers waiting for a slot now.
    pub waiting: u32,
    /// The bound on calls in flight now (fixed for a bulkhead).
    pub limit: u32,
    /// Calls admitted, at once or after a wait.
    pub admitted: u64,
    /// Calls refused, at once or after a wait.
    pub rejected: u64,
    /// Calls that had to wait for a slot (admitted or not).
    pub waited: u64,
    /// Waits that ran out (each is also a rejection).
    pub timed_out: u64,
}

impl LoadMetrics {
    /// `in_flight / limit` (can pass 1.0 right after a limit falls).
    pub fn utilisation(&self) -> f64 {
        f64::from(self.in_flight) / f64::from(self.limit.max(1))
    }
}

enum Enqueued {
    Admitted,
    Waiting(u64),
    Full,
}

impl<X: Flavour> Slots<X> {
    pub(crate) fn new(
        name: Name,
        limit: u32,
        wait: Wait,
        retry_after: Option<Duration>,
        flavour: X,
    ) -> Self {
        Slots {
            name,
            state: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            limit: AtomicU32::new(limit),
            wait,
            retry_after,
            rejected: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            queue: Mutex::new(Queue::default()),
            flavour,
        }
    }

    pub(crate) fn in_flight(&self) -> u32 {
        in_flight(self.state.load(Relaxed))
    }

    pub(crate) fn waiting(&self) -> u32 {
        waiting(self.state.load(Relaxed))
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Relaxed)
    }

    pub(crate) fn metrics(&self) -> LoadMetrics {
        let state = self.state.load(Relaxed);
        LoadMetrics {
            in_flight: in_flight(state),
            waiting: waiting(state),
            limit: self.limit(),
            admitted: self.admitted.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            waited: self.waited.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
        }
    }

    /// Sets the limit; a raise hands the new slots to waiters at once.
    pub(crate) fn set_limit(&self, limit: u32) {
        let old = self.limit.swap(limit, AcqRel);
        if limit > old && waiting(self.state.load(Acquire)) > 0 {
            self.pump(&mut self.lock());
        }
    }

    /// Takes a slot if one is free and nobody waits: the hot path.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let limit = self.limit.load(Relaxed);
        let mut state = self.state.load(Relaxed);
        loop {
            if waiting(state) != 0 || in_flight(state) >= limit {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(state, state + IN_FLIGHT, Acquire, Relaxed)
            {
                Ok(_) => {
                    self.admitted.fetch_add(1, Relaxed);
                    return true;
                }
                Err(now) => state = now,
            }
        }
    }

    /// Gives a slot back; hands it to the first waiter, if any.
    #[inline]
    pub(crate) fn release(&self) {
        let before = self.state.fetch_sub(IN_FLIGHT, AcqRel);
        if waiting(before) != 0 {
            self.release_to_waiters();
        }
    }

    #[cold]
    fn release_to_waiters(&self) {
        self.pump(&mut self.lock());
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands free slots to waiters, first come first served. Under the
    /// queue's lock: `waiting` changes only there, with the queue.
    fn pump(&self, queue: &mut Queue) {
        loop {
            let state = self.state.load(Acquire);
            if waiting(state) == 0 || in_flight(state) >= self.limit.load(Acquire) {
                return;
            }
            if self
                .state
                .compare_exchange(state, state + IN_FLIGHT - WAITING, AcqRel, Acquire)
                .is_ok()
            {
                self.admitted.fetch_add(1, Relaxed);
                if let Some((_, waker)) = queue.waiters.pop_front() {
                    waker.wake();
                }
            }
        }
    }

    /// The slow path: takes a free slot, or joins the queue if there is
    /// room, or says the pool is full.
    #[cold]
    fn enqueue(&self, waker: &Waker) -> Enqueued {
        let mut queue = self.lock();
        loop {
            let state = self.state.load(Acquire);
            let limit = self.limit.load(Acquire);
            if in_flight(state) < limit {
                if waiting(state) > 0 {
                    // Slots freed by a raise the waiters have not had yet.
                    self.pump(&mut queue);
                    continue;
                }
                if self
                    .state
                    .compare_exchange(state, state + IN_FLIGHT, AcqRel, Acquire)
                    .is_ok()
                {
                    self.admitted.fetch_add(1, Relaxed);
                    return Enqueued::Admitted;
                }
                continue;
            }
            if waiting(state) >= self.wait.max_waiting {
                return Enqueued::Full;
            }
            if self
                .state
                .compare_exchange(state, state + WAITING, AcqRel, Acquire)
                .is_ok()
            {
                let id = queue.next_id;
                queue.next_id += 1;
                queue.waiters.push_back((id, waker.clone()));
                self.waited.fetch_add(1, Relaxed);
                return Enqueued::Waiting(id);
            }
        }
    }

    /// `true` when waiter `id` was granted a slot; otherwise keeps its
    /// waker up to date.
    fn poll_granted(&self, id: u64, cx: &Context<'_>) -> bool {
        let mut queue = self.lock();
        match queue.find(id) {
            Ok(i) => {
                let slot = &mut queue.waiters[i].1;
                if !slot.will_wake(cx.waker()) {
                    slot.clone_from(cx.waker());
                }
                false
            }
            Err(_) => true,
        }
    }

    /// Takes waiter `id` out of the queue; `true` when it had been granted
    /// a slot meanwhile (the caller then holds it).
    fn cancel(&self, id: u64) -> bool {
        let mut queue = self.lock();
        match queue.find(id) {
            Ok(i) => {
                queue.waiters.remove(i);
                self.state.fetch_sub(WAITING, AcqRel);
                false
            }
            Err(_) => true,
        }
    }

    pub(crate) fn count_rejection(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }

    /// A closure that reads `in_flight / limit`, for a governor's signal.
    pub(crate) fn utilisation(self: Arc<Self>) -> impl FnMut(Instant) -> f64 + Send + 'static {
        move |_now| self.metrics().utilisation()
    }

    /// The share of calls refused since the previous call of the closure
    /// (`0.0` when there were none), for a governor's signal.
    pub(crate) fn rejection_rate(self: Arc<Self>) -> impl FnMut(Instant) -> f64 + Send + 'static {
        let mut last = (0, 0);
        move |_now| {
            let now = (self.admitted.load(Relaxed), self.rejected.load(Relaxed));
            let admitted = now.0.wrapping_sub(last.0);
            let rejected = now.1.wrapping_sub(last.1);
            last = now;
            match admitted.saturating_add(rejected) {
                0 => 0.0,
                calls => rejected as f64 / calls as f64,
            }
        }
    }

    /// The health details and figures every pool reports; `Degraded` while
    /// it is saturated or anyone waits.
    pub(crate) fn pool_health(&self) -> ComponentHealth {
        use MetricType::{Counter, Gauge};
        let m = self.metrics();
        let status = if m.waiting > 0 || m.in_flight >= m.limit {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        ComponentHealth::new(status)
            .detail("in_flight", m.in_flight)
            .detail("waiting", m.waiting)
            .detail("limit", m.limit)
            .detail("utilisation", m.utilisation())
            .detail("max_waiting", self.wait.max_waiting)
            .detail("max_wait_ms", self.wait.max_wait.as_secs_f64() * 1000.0)
            .detail("admitted", m.admitted)
            .detail("rejected", m.rejected)
            .detail("waited", m.waited)
            .detail("timed_out", m.timed_out)
            .metric(
                "in_flight",
                "Calls holding a slot.",
                Gauge,
                f64::from(m.in_flight),
            )
            .metric(
                "waiting",
                "Callers waiting for a slot.",
                Gauge,
                f64::from(m.waiting),
            )
            .metric(
                "limit",
                "The bound on calls in flight.",
                Gauge,
                f64::from(m.limit),
            )
            .metric(
                "admitted_total",
                "Calls admitted.",
                Counter,
                m.admitted as f64,
            )
            .metric(
                "rejected_total",
                "Calls refused.",
                Counter,
                m.rejected as f64,
            )
            .metric(
                "waited_total",
                "Calls that waited for a slot.",
                Counter,
                m.waited as f64,
            )
            .metric(
                "timed_out_total",
                "Waits that ran out.",
                Counter,
                m.timed_out as f64,
            )
    }
}

/// A slot held by a call: given back when dropped.
pub(crate) struct Permit<X: Flavour> {
    pub(crate) slots: Arc<Slots<X>>,
}

impl<X: Flavour> Drop for Permit<X> {
    #[inline]
    fn drop(&mut self) {
        self.slots.release();
    }
}

impl<X: Flavour> fmt::Debug for Permit<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("name", &self.slots.name)
            .finish()
    }
}

/// A place in the queue: leaves it when dropped, passing on a slot it was
/// granted meanwhile.
struct Ticket<X: Flavour> {
    slots: Option<Arc<Slots<X>>>,
    id: u64,
}

impl<X: Flavour> Ticket<X> {
    /// Leaves the queue: the permit if a slot was granted meanwhile.
    fn cancel(mut self) -> Option<Permit<X>> {
        let slots = self.slots.take()?;
        // Not `then_some`: a permit made and dropped would release a slot.
        if slots.cancel(self.id) {
            Some(Permit { slots })
        } else {
            None
        }
    }

    fn into_permit(mut self) -> Option<Permit<X>> {
        self.slots.take().map(|slots| Permit { slots })
    }
}

impl<X: Flavour> Drop for Ticket<X> {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take()
            && slots.cancel(self.id)
        {
            slots.release();
        }
    }
}

enum State<X: Flavour> {
    Idle,
    Waiting { ticket: Ticket<X>, since: Instant },
    Permitted(Permit<X>),
    Refused { waited: Duration },
}

/// One service's side of the pool: the slot it took in `poll_ready` for its
/// next `call`, or its place in the queue, or its refusal. Never copied by
/// a clone (see the services' `Clone`).
pub(crate) struct Admission<X: Flavour> {
    state: State<X>,
    /// The wait's timer, made at the first wait and reset after.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<X: Flavour> fmt::Debug for Admission<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Idle => "idle",
            State::Waiting { .. } => "waiting",
            State::Permitted(_) => "permitted",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("Admission").field("state", &state).finish()
    }
}

impl<X: Flavour> Admission<X> {
    pub(crate) const fn new() -> Self {
        Admission {
            state: State::Idle,
            sleep: None,
        }
    }

    /// Ready once the next call is decided: a slot taken, or a refusal to
    /// give in `call`. Pending only while waiting for a slot, at most
    /// `max_wait`.
    #[inline]
    pub(crate) fn poll_acquire(&mut self, slots: &Arc<Slots<X>>, cx: &mut Context<'_>) -> Poll<()> {
        if let State::Idle = self.state {
            if slots.try_acquire() {
                self.state = State::Permitted(Permit {
                    slots: slots.clone(),
                });
                return Poll::Ready(());
            }
            if slots.wait.max_waiting == 0 {
                self.state = State::Refused {
                    waited: Duration::ZERO,
                };
                return Poll::Ready(());
            }
        }
        self.poll_slow(slots, cx)
    }

    #[cold]
    fn poll_slow(&mut self, slots: &Arc<Slots<X>>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match std::mem::replace(&mut self.state, State::Idle) {
                State::Idle => {
                    self.state = match slots.enqueue(cx.waker()) {
                        Enqueued::Admitted => State::Permitted(Permit {
                            slots: slots.clone(),
                        }),
                        Enqueued::Full => State::Refused {
                            waited: Duration::ZERO,
                        },
                        Enqueued::Waiting(id) => {
                            let since = Instant::now();
                            let until = since + slots.wait.max_wait;
                            match &mut self.sleep {
                                Some(sleep) => sleep.as_mut().reset(until),
                                None => {
                                    self.sleep = Some(Box::pin(tokio::time::sleep_until(until)))
                                }
                            }
                            State::Waiting {
                                ticket: Ticket {
                                    slots: Some(slots.clone()),
                                    id,
                                },
                                since,
                            }
                        }
                    };
                }
                State::Waiting { ticket, since } => {
                    if slots.poll_granted(ticket.id, cx) {
                        if let Some(permit) = ticket.into_permit() {
                            self.state = State::Permitted(permit);
                        }
                        return Poll::Ready(());
                    }
                    let sleep = self.sleep.as_mut().expect("a waiter has a timer");
                    if sleep.as_mut().poll(cx).is_pending() {
                        self.state = State::Waiting { ticket, since };
                        return Poll::Pending;
                    }
                    self.state = match ticket.cancel() {
                        Some(permit) => State::Permitted(permit),
                        None => {
                            slots.timed_out.fetch_add(1, Relaxed);
                            State::Refused {
                                waited: since.elapsed(),
                            }
                        }
                    };
                    return Poll::Ready(());
                }
                done @ (State::Permitted(_) | State::Refused { .. }) => {
                    self.state = done;
                    return Poll::Ready(());
                }
            }
        }
    }

    /// Whether a slot is held for the next call.
    pub(crate) fn is_permitted(&self) -> bool {
        matches!(self.state, State::Permitted(_))
    }

    /// Gives the slot back (the inner service failed its readiness).
    pub(crate) fn release(&mut self) {
        self.state = State::Idle;
    }

    /// The decision for this call: the slot, or the refusal (counted).
    /// Called without `poll_ready`, it takes a free slot or refuses, never
    /// waits.
    #[inline]
    pub(crate) fn take(&mut self, slots: &Arc<Slots<X>>) -> Result<Permit<X>, BoxError> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Permitted(permit) => Ok(permit),
            other => self.take_slow(other, slots),
        }
    }

    #[cold]
    fn take_slow(&mut self, state: State<X>, slots: &Arc<Slots<X>>) -> Result<Permit<X>, BoxError> {
        let waited = match state {
            State::Permitted(permit) => return Ok(permit),
            State::Refused { waited } => waited,
            State::Waiting { ticket, since } => match ticket.cancel() {
                Some(permit) => return Ok(permit),
                None => since.elapsed(),
            },
            State::Idle if slots.try_acquire() => {
                return Ok(Permit {
                    slots: slots.clone(),
                });
            }
            State::Idle => Duration::ZERO,
        };
        slots.count_rejection();
        Err(X::refusal(slots, waited))
    }
}
