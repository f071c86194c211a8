//! The retry budget: [`RetryBudget`], a shared token bucket over a sliding
//! window that bounds retries to a ratio of requests.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use battlement_core::clock::Clock;
use battlement_core::{
    AsComponent, Component, ComponentHealth, ComponentKind, Control, ControlError, HealthStatus,
    InvalidConfig, MetricType, Name, Striped,
};

use crate::sync::{AtomicI64, AtomicU64, Mutex};

/// Token units per retry: a deposit is worth `ratio × SCALE`, a withdrawal
/// costs `SCALE`, so ratios like 0.3 are exact to a thousandth.
const SCALE: i64 = 1000;
/// The sliding window is kept as this many slots.
const SLOTS: usize = 10;

/// A shared retry budget: every request deposits, every retry withdraws,
/// so that over any sliding `ttl` retries are at most `ratio × requests`
/// plus a floor of `min_per_sec × ttl` retries that is always allowed
/// (Finagle's `RetryBudget`, gRPC's retry throttling, Envoy's budgets).
///
/// When the budget is empty, a retry layer returns the failure at once as
/// [`RetriesExhausted`](battlement_core::RetriesExhausted) with
/// [`RetryStop::BudgetExhausted`](battlement_core::RetryStop::BudgetExhausted)
/// instead of piling more load on a struggling service.
///
/// The handle is cheap to clone; clones share the same bucket, so one
/// budget can cover every route to the same backend. It implements
/// [`Component`] (kind `retry`) through [`AsComponent`]: its health
/// reports the tokens left and the retries allowed and denied, and
/// [`Control::Reset`] empties the window back to the floor.
///
/// The window is a ring of ten atomic slots (as in tower's `TpsBudget`):
/// deposits and withdrawals are one atomic add each plus a clock read (the
/// enclosing instrument's, when there is one); a
/// lock is taken only to rotate to the next slot, at most once per
/// `ttl / 10`. Two withdrawals racing for the last token may both win: the
/// bound holds to within the number of concurrent retries.
///
/// A retry layer whose request is dropped after it withdrew a token but
/// before the retry was sent (while it sleeps in backoff or waits for the
/// service to be ready) gives the token back at once, into the slot it was
/// withdrawn from, so it neither stays spent until the `ttl` passes nor
/// counts twice once that slot expires. A withdrawal racing a rotation may
/// land in the next slot; its refund then expires one slot apart from it.
///
/// ```
/// use battlement_retry::RetryBudget;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let budget = RetryBudget::builder()
///     .name("payments-budget")
///     .ratio(0.1)
///     .min_per_sec(0)
///     .ttl(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// for _ in 0..20 {
///     budget.deposit();
/// }
/// assert!(budget.withdraw());
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw()); // 10% of 20 requests: two retries
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<BudgetState>,
}

/// Builds a [`RetryBudget`]; see [`RetryBudget::builder`].
#[derive(Debug, Clone)]
pub struct RetryBudgetBuilder {
    name: Name,
    ratio: f64,
    min_per_sec: u32,
    ttl: Duration,
}

impl Default for RetryBudgetBuilder {
    fn default() -> Self {
        RetryBudgetBuilder {
            name: "retry-budget".into(),
            ratio: 0.2,
            min_per_sec: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

impl RetryBudgetBuilder {
    /// The budget's name, as the registry shows it (default
    /// `"retry-budget"`).
    #[must_use]
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// Retries allowed per request deposited (default 0.2; must be in
    /// `[0, 1000]`). 0.1 means one retry per ten requests.
    #[must_use]
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Retries per second always allowed on top of the ratio, so that a
    /// client with little traffic can still retry (default 10; at most
    /// `i32::MAX`). Over a `ttl` this is a floor of `min_per_sec × ttl`
    /// retries.
    #[must_use]
    pub fn min_per_sec(mut self, min_per_sec: u32) -> Self {
        self.min_per_sec = min_per_sec;
        self
    }

    /// How long a deposit counts (default 10 s; must be in `[1 s, 60 s]`).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Builds the budget, or names the field that is out of bounds.
    pub fn build(self) -> Result<RetryBudget, InvalidConfig> {
        if !(self.ratio.is_finite() && (0.0..=1000.0).contains(&self.ratio)) {
            return Err(InvalidConfig::new(
                "retry budget",
                "ratio",
                self.ratio,
                "must be in [0, 1000]",
            ));
        }
        if self.min_per_sec > i32::MAX as u32 {
            return Err(InvalidConfig::new(
                "retry budget",
                "min_per_sec",
                self.min_per_sec,
                "must be <= i32::MAX",
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.ttl) {
            return Err(InvalidConfig::new(
                "retry budget",
                "ttl",
                self.ttl,
                "must be in [1s, 60s]",
            ));
        }
        let deposit = (self.ratio * SCALE as f64).round() as i64;
        let reserve = i64::from(self.min_per_sec)
            .saturating_mul(self.ttl.as_secs() as i64)
            .saturating_mul(SCALE);
        let window = self.ttl / SLOTS as u32;
        Ok(RetryBudget {
            inner: Arc::new(BudgetState {
                name: self.name,
                ratio: self.ratio,
                min_per_sec: self.min_per_sec,
                ttl: self.ttl,
                deposit,
                reserve,
                window_nanos: window.as_nanos() as u64,
                clock: Clock::new(),
                slot_started: AtomicU64::new(0),
                rotate: Mutex::new(0),
                slot: AtomicU64::new(0),
                slots: Default::default(),
                requests: Striped::new(|| AtomicU64::new(0)),
                requests_taken: AtomicU64::new(0),
                spent: AtomicI64::new(0),
                committed_requests: AtomicU64::new(0),
                allowed: AtomicU64::new(0),
                denied: AtomicU64::new(0),
            }),
        })
    }
}

impl RetryBudget {
    /// A builder with the defaults: ratio 0.2, 10 retries per second
    /// floor, ttl 10 s, name `"retry-budget"`.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder::default()
    }

    /// A budget of `ratio` retries per request over `ttl`, plus
    /// `min_per_sec` retries per second, named `"retry-budget"`.
    pub fn new(ttl: Duration, min_per_sec: u32, ratio: f64) -> Result<Self, InvalidConfig> {
        RetryBudget::builder()
            .ttl(ttl)
            .min_per_sec(min_per_sec)
            .ratio(ratio)
            .build()
    }

    /// Records one request. A retry layer calls it once per request (not
    /// per attempt).
    pub fn deposit(&self) {
        let s = &*self.inner;
        s.expire();
        // One add: the count is both the slot's deposit (times `deposit`)
        // and the lifetime total of requests (once committed). To this
        // thread's stripe, with a plain load and store when the thread
        // leases it; loom's threads share one OS thread, so under loom it
        // is always a `fetch_add`.
        #[cfg(not(battlement_loom))]
        s.requests.add(1);
        #[cfg(battlement_loom)]
        s.requests.local().fetch_add(1, Ordering::AcqRel);
    }

    /// Takes the token for one retry; `false` when the budget is empty.
    pub fn withdraw(&self) -> bool {
        self.withdraw_token().is_some()
    }

    /// As [`withdraw`](Self::withdraw), returning the token (the slot it
    /// was taken from) so that a retry that is never sent can
    /// [`refund`](Self::refund) it.
    pub(crate) fn withdraw_token(&self) -> Option<Token> {
        let s = &*self.inner;
        s.expire();
        if s.balance() >= SCALE {
            let slot = s.slot.load(Ordering::Acquire);
            s.spent.fetch_add(SCALE, Ordering::AcqRel);
            s.allowed.fetch_add(1, Ordering::Relaxed);
            Some(Token { slot })
        } else {
            s.denied.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Gives back a token whose retry was never sent, into the slot it
    /// was withdrawn from; nothing when that slot has left the window (the
    /// withdrawal has expired already) or the budget was reset since.
    /// Takes the rotation lock: refunds are rare (a cancelled retry) and
    /// must not race a rotation.
    pub(crate) fn refund(&self, token: Token) {
        let s = &*self.inner;
        let _index = s.rotate.lock().unwrap_or_else(PoisonError::into_inner);
        let current = s.slot.load(Ordering::Acquire);
        if token.slot == current {
            s.spent.fetch_sub(SCALE, Ordering::AcqRel);
        } else if current - token.slot < SLOTS as u64 {
            s.slots[(token.slot % SLOTS as u64) as usize].fetch_add(SCALE, Ordering::AcqRel);
        }
    }

    /// How many retries the budget would allow now.
    pub fn available(&self) -> u64 {
        self.inner.expire();
        (self.inner.balance().max(0) / SCALE) as u64
    }

    /// Retries allowed so far (a counter; [`Control::Reset`] keeps it).
    pub fn retries_allowed(&self) -> u64 {
        self.inner.allowed.load(Ordering::Relaxed)
    }

    /// Retries denied so far because the budget was empty.
    pub fn retries_denied(&self) -> u64 {
        self.inner.denied.load(Ordering::Relaxed)
    }

    /// The budget's name.
    pub fn name(&self) -> &Name {
        &self.inner.name
    }

    /// Empties the window: only the `min_per_sec` floor is left.
    pub fn reset(&self) {
        self.inner.reset();
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("name", &self.inner.name)
            .field("ratio", &self.inner.ratio)
            .field("min_per_sec", &self.inner.min_per_sec)
            .field("ttl", &self.inner.ttl)
            .field("available", &(self.inner.balance().max(0) / SCALE))
            .finish()
    }
}

impl AsComponent for RetryBudget {
    fn as_component(&self) -> Arc<dyn Component> {
        self.inner.clone()
    }
}

/// A token [`RetryBudget::withdraw_token`] took: the number of the slot
/// it was taken in, for [`RetryBudget::refund`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    slot: u64,
}

/// The state behind a [`RetryBudget`] handle.
struct BudgetState {
    name: Name,
    ratio: f64,
    min_per_sec: u32,
    ttl: Duration,
    /// Token units one request deposits.
    deposit: i64,
    /// The floor, in token units.
    reserve: i64,
    window_nanos: u64,
    /// The clock of every reading here: core's fast clock, or tokio's on
    /// paused time, decided when the budget is built.
    clock: Clock,
    /// When the current slot began, on `clock`.
    slot_started: AtomicU64,
    /// The current slot's index; the lock is taken only to rotate (and to
    /// refund).
    rotate: Mutex<usize>,
    /// The current slot's number, counting every slot since the start
    /// (its index is this modulo `SLOTS`); changed under `rotate`. A reset
    /// moves it a whole window on, so no earlier token is refunded.
    slot: AtomicU64,
    /// Committed slots (older windows), token units.
    slots: [AtomicI64; SLOTS],
    /// Requests deposited, striped (one copy per thread: every call
    /// through the retry layer deposits, and one counter would be a line
    /// the cores pass between them on each call). Those of the current
    /// slot, not yet committed, are the stripes' total less
    /// `requests_taken`: its deposit is that times `deposit`.
    requests: Striped<AtomicU64>,
    /// The stripes' total at the last commit; changed under `rotate`. A
    /// commit cannot zero a stripe: its thread adds with a load and a
    /// store that would write over the zero.
    requests_taken: AtomicU64,
    /// Token units withdrawn from the current slot (minus those refunded
    /// into it), not yet committed.
    spent: AtomicI64,
    /// Requests of the slots committed so far (the lifetime total is this
    /// plus `requests`); changed under `rotate`.
    committed_requests: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
}

impl BudgetState {
    #[inline(always)]
    fn now_nanos(&self) -> u64 {
        // The stamp of an enclosing instrument when there is one: a
        // deposit is made in the retry's `call`.
        self.clock.call_now_ns()
    }

    /// Rotates the ring when the current slot's time is up.
    fn expire(&self) {
        let now = self.now_nanos();
        if now.saturating_sub(self.slot_started.load(Ordering::Acquire)) < self.window_nanos {
            return;
        }
        let mut index = self.rotate.lock().unwrap_or_else(PoisonError::into_inner);
        let started = self.slot_started.load(Ordering::Acquire);
        let mut elapsed = now.saturating_sub(started);
        if elapsed < self.window_nanos {
            return; // someone else rotated
        }
        let committed = self.commit();
        self.slots[*index].store(committed, Ordering::Release);
        let mut next = (*index + 1) % SLOTS;
        let mut cleared = 0;
        while elapsed >= 2 * self.window_nanos && cleared < SLOTS {
            self.slots[next].store(0, Ordering::Release);
            elapsed -= self.window_nanos;
            next = (next + 1) % SLOTS;
            cleared += 1;
        }
        // The slot we move into held the oldest window: it expires now.
        self.slots[next].store(0, Ordering::Release);
        *index = next;
        self.slot.fetch_add(1 + cleared as u64, Ordering::AcqRel);
        self.slot_started.store(now, Ordering::Release);
    }

    /// Moves the current slot's requests and withdrawals out (the
    /// withdrawals to zero, the requests past `requests_taken`),
    /// counts its requests in the lifetime total, and returns its balance
    /// in token units. Called under `rotate`.
    fn commit(&self) -> i64 {
        let total = self.requests_sum();
        let requests = total.wrapping_sub(self.requests_taken.load(Ordering::Relaxed));
        self.requests_taken.store(total, Ordering::Release);
        let spent = self.spent.swap(0, Ordering::AcqRel);
        self.committed_requests
            .fetch_add(requests, Ordering::Relaxed);
        self.deposited(requests).saturating_sub(spent)
    }

    /// Token units `requests` deposit.
    fn deposited(&self, requests: u64) -> i64 {
        i64::try_from(requests)
            .unwrap_or(i64::MAX)
            .saturating_mul(self.deposit)
    }

    fn balance(&self) -> i64 {
        let windowed = self
            .slots
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .fold(0i64, i64::saturating_add);
        self.deposited(self.pending_requests())
            .saturating_sub(self.spent.load(Ordering::Acquire))
            .saturating_add(windowed)
            .saturating_add(self.reserve)
    }

    /// Requests deposited so far: read under `rotate`, so never half-way
    /// through a commit.
    fn requests_total(&self) -> u64 {
        let _index = self.rotate.lock().unwrap_or_else(PoisonError::into_inner);
        self.committed_requests.load(Ordering::Relaxed) + self.pending_requests()
    }

    /// Requests deposited since the last commit. `requests_taken` is read
    /// first: the stripes only grow, so their total is never below it,
    /// and a balance that sees a commit's slot (read before this) sees
    /// its `requests_taken` too, so no deposit counts twice.
    fn pending_requests(&self) -> u64 {
        let taken = self.requests_taken.load(Ordering::Acquire);
        self.requests_sum().wrapping_sub(taken)
    }

    /// Every stripe of `requests` added up, wrapping as each does.
    fn requests_sum(&self) -> u64 {
        self.requests.wrapping_sum(|r| r.load(Ordering::Acquire))
    }

    fn reset(&self) {
        let index = self.rotate.lock().unwrap_or_else(PoisonError::into_inner);
        // A whole window on, keeping `slot % SLOTS == index`: every token
        // taken before the reset is too old to refund.
        self.slot.fetch_add(SLOTS as u64, Ordering::AcqRel);
        debug_assert_eq!(
            (self.slot.load(Ordering::Acquire) % SLOTS as u64) as usize,
            *index
        );
        for slot in &self.slots {
            slot.store(0, Ordering::Release);
        }
        // The requests stay counted in the lifetime total.
        let _ = self.commit();
        self.slot_started.store(self.now_nanos(), Ordering::Release);
    }
}

impl Component for BudgetState {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ComponentKind {
        ComponentKind::Retry
    }

    fn health(&self) -> ComponentHealth {
        self.expire();
        let available = (self.balance().max(0) / SCALE) as u64;
        let allowed = self.allowed.load(Ordering::Relaxed);
        let denied = self.denied.load(Ordering::Relaxed);
        let deposits = self.requests_total();
        let status = if available == 0 {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        ComponentHealth::new(status)
            .detail("tokens", available)
            .detail("ratio", self.ratio)
            .detail("min_per_sec", self.min_per_sec)
            .detail("ttl_ms", self.ttl.as_millis() as u64)
            .detail("requests", deposits)
            .detail("retries_allowed", allowed)
            .detail("retries_denied", denied)
            .metric(
                "tokens",
                "Retries the budget would allow now.",
                MetricType::Gauge,
                available as f64,
            )
            .metric(
                "requests_total",
                "Requests deposited into the budget.",
                MetricType::Counter,
                deposits as f64,
            )
            .metric(
                "retries_allowed_total",
                "Retries the budget allowed.",
                MetricType::Counter,
                allowed as f64,
            )
            .metric(
                "retries_denied_total",
                "Retries refused because the budget was empty.",
                MetricType::Counter,
                denied as f64,
            )
    }

    fn control(&self, control: &Control) -> Result<(), ControlError> {
        match control {
            Control::Reset => {
                self.reset();
                Ok(())
            }
            other => Err(ControlError::unsupported(&self.name, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn budget(ttl_s: u64, min: u32, ratio: f64) -> RetryBudget {
        RetryBudget::new(Duration::from_secs(ttl_s), min, ratio).unwrap()
    }

    /// Deposits from threads at once, each on its own stripe or sharing
    /// stripe 0, all count: in the total and, with no rotation between,
    /// in the tokens they allow.
    #[test]
    fn deposits_from_many_threads_all_count() {
        let b = budget(60, 0, 0.5);
        let threads = 24;
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        b.deposit();
                    }
                });
            }
        });
        let h = b.as_component().health();
        assert_eq!(h.details["requests"], threads * 1_000);
        assert_eq!(b.available(), threads * 1_000 / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn empty_without_deposits_or_floor() {
        let b = budget(1, 0, 1.0);
        assert!(!b.withdraw());
        assert_eq!(b.retries_denied(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire_after_ttl() {
        let b = budget(1, 0, 1.0);
        b.deposit();
        advance(Duration::from_secs(3)).await;
        assert!(!b.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn sliding_slots() {
        let b = budget(1, 0, 0.5);
        b.deposit();
        b.deposit();
        advance(Duration::from_millis(850)).await;
        assert!(b.withdraw(), "still inside the ttl");
        advance(Duration::from_millis(2001)).await;
        b.deposit();
        advance(Duration::from_millis(301)).await;
        b.deposit();
        advance(Duration::from_millis(801)).await;
        b.deposit();
        // the first of these three has expired; the other two make one retry
        assert!(b.withdraw());
        assert!(!b.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn floor_is_min_per_sec_times_ttl_and_refills() {
        let b = budget(2, 3, 0.0);
        for _ in 0..6 {
            assert!(b.withdraw());
        }
        assert!(!b.withdraw());
        advance(Duration::from_secs(3)).await;
        assert_eq!(b.available(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn refunds_go_back_only_while_the_withdrawal_counts() {
        let b = budget(1, 3, 0.0);
        // Refunded in the same slot, and into an older one.
        let t = b.withdraw_token().unwrap();
        b.refund(t);
        assert_eq!(b.available(), 3);
        let t = b.withdraw_token().unwrap();
        advance(Duration::from_millis(350)).await;
        assert_eq!(b.available(), 2);
        b.refund(t);
        assert_eq!(b.available(), 3);
        // The withdrawal has expired: nothing to give back.
        let t = b.withdraw_token().unwrap();
        advance(Duration::from_millis(1_500)).await;
        b.refund(t);
        assert_eq!(b.available(), 3);
        // A reset put everything back already.
        let t = b.withdraw_token().unwrap();
        b.reset();
        b.refund(t);
        assert_eq!(b.available(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_ratio_is_exact() {
        let b = budget(10, 0, 0.3);
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(b.available(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn component_health_and_reset() {
        let b = RetryBudget::builder()
            .name("b1")
            .ratio(1.0)
            .min_per_sec(0)
            .build()
            .unwrap();
        b.deposit();
        b.deposit();
        assert!(b.withdraw());
        assert!(
            !RetryBudget::new(Duration::from_secs(1), 0, 0.0)
                .unwrap()
                .withdraw()
        );
        let c = b.as_component();
        assert_eq!(c.name(), "b1");
        assert_eq!(c.kind(), ComponentKind::Retry);
        let h = c.health();
        assert_eq!(h.status, HealthStatus::Healthy);
        assert_eq!(h.details["tokens"], 1);
        assert_eq!(h.details["retries_allowed"], 1);
        assert_eq!(h.details["requests"], 2);
        c.control(&Control::Reset).unwrap();
        assert_eq!(b.available(), 0);
        assert_eq!(c.health().status, HealthStatus::Degraded);
        assert!(c.control(&Control::ForceOpen).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_total_counts_every_deposit_through_rotations_and_resets() {
        let b = budget(1, 0, 0.5);
        let requests = |b: &RetryBudget| b.as_component().health().details["requests"].clone();
        for _ in 0..3 {
            b.deposit();
        }
        assert_eq!(requests(&b), 3);
        // Into the next slot (the first three are committed), then out of
        // the window altogether: the total keeps them all.
        advance(Duration::from_millis(150)).await;
        b.deposit();
        assert_eq!(requests(&b), 4);
        assert_eq!(b.available(), 2, "4 requests × 0.5");
        advance(Duration::from_secs(5)).await;
        assert_eq!(b.available(), 0);
        b.deposit();
        assert_eq!(requests(&b), 5);
        b.reset();
        assert_eq!(requests(&b), 5, "a reset keeps the total");
        assert_eq!(b.available(), 0);
        b.deposit();
        b.deposit();
        assert_eq!(requests(&b), 7);
        assert_eq!(b.available(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Within one ttl, retries allowed never exceed the floor plus
        /// ratio x requests, whatever the interleaving.
        #[test]
        fn allowed_within_ttl_is_bounded(
            ops in proptest::collection::vec((0u8..3, 0u64..200), 1..300),
            ratio_pct in 0u32..200,
            min in 0u32..5,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async {
                let ratio = f64::from(ratio_pct) / 100.0;
                let b = budget(10, min, ratio);
                let (mut deposits, mut allowed, mut elapsed) = (0u64, 0u64, 0u64);
                for (op, ms) in ops {
                    match op {
                        0 => { b.deposit(); deposits += 1; }
                        1 => { if b.withdraw() { allowed += 1; } }
                        _ => {
                            // stay inside one ttl so nothing expires
                            if elapsed + ms < 9_000 {
                                advance(Duration::from_millis(ms)).await;
                                elapsed += ms;
                            }
                        }
                    }
                }
                let bound = u64::from(min) * 10 + (ratio * deposits as f64).floor() as u64;
                assert!(allowed <= bound, "allowed {allowed} > bound {bound}");
                assert_eq!(b.retries_allowed(), allowed);
            });
        }
    }

    #[test]
    fn build_rejects_bad_fields() {
        let e = RetryBudget::builder().ratio(-1.0).build().unwrap_err();
        assert_eq!(e.field, "ratio");
        let e = RetryBudget::builder()
            .ttl(Duration::from_millis(10))
            .build()
            .unwrap_err();
        assert_eq!(e.field, "ttl");
        let e = RetryBudget::builder()
            .min_per_sec(u32::MAX)
            .build()
            .unwrap_err();
        assert_eq!(e.field, "min_per_sec");
    }
}
