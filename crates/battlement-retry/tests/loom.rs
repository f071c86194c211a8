//! Model checks of the retry budget with `loom`: every interleaving of the
//! threads below, up to loom's bounds, of the deposits' and withdrawals'
//! atomic adds, the balance read over the ring, and the rotation to the
//! next slot under its lock.
//!
//! Run with `.ci/extra.d/loom.sh`, or
//! `RUSTFLAGS="--cfg battlement_loom" CARGO_TARGET_DIR=target/loom cargo test -p battlement-retry --test loom --release`.
//!
//! Time is kept out of the models: each budget is built inside a
//! current-thread tokio runtime on paused time (so its clock is tokio's),
//! and time moves only where a model advances it by hand, before its
//! threads start; while they run, "now" is fixed. (loom runs its threads
//! as coroutines on the test's own thread, so the runtime's context,
//! entered once around `loom::model`, is the context of every modelled
//! thread.)
#![cfg(battlement_loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use battlement_retry::RetryBudget;
use loom::thread;
use tokio::runtime::Runtime;

/// Runs `f` under `loom::model` inside a paused tokio runtime, which `f`
/// may use to advance time.
fn model(f: impl Fn(&Runtime) + Sync + Send + 'static) {
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap(),
    );
    let _entered = rt.enter();
    let inner = rt.clone();
    loom::model(move || f(&inner));
}

/// A budget of one retry per request, no floor, over `ttl` (ten slots of
/// `ttl / 10`).
fn budget(ttl: Duration, min_per_sec: u32, ratio: f64) -> RetryBudget {
    RetryBudget::builder()
        .ttl(ttl)
        .min_per_sec(min_per_sec)
        .ratio(ratio)
        .build()
        .unwrap()
}

/// Moves time on by one slot of a one-second budget: the next deposit or
/// withdrawal rotates the ring.
fn next_slot(rt: &Runtime) {
    rt.block_on(tokio::time::advance(Duration::from_millis(100)));
}

/// A deposit racing a withdrawal with one token in the budget: the
/// withdrawal always wins (the deposit only adds), and neither is lost.
#[test]
fn deposit_races_withdrawal() {
    model(|_| {
        let b = budget(Duration::from_secs(10), 0, 1.0);
        b.deposit();
        let b1 = b.clone();
        let depositor = thread::spawn(move || b1.deposit());
        let b2 = b.clone();
        let withdrawer = thread::spawn(move || b2.withdraw());
        depositor.join().unwrap();
        assert!(
            withdrawer.join().unwrap(),
            "a token in the budget was refused"
        );
        assert_eq!(b.available(), 1);
        assert_eq!((b.retries_allowed(), b.retries_denied()), (1, 0));
    });
}

/// Two withdrawals race for the last token. The documented bound: both
/// may win (the check and the subtraction are two steps), so retries
/// overdraw by at most the concurrent withdrawals less one; at least one
/// wins; and the overdraft is paid back by the next deposits (no token
/// is made or lost).
#[test]
fn two_withdrawals_race_for_the_last_token() {
    model(|_| {
        let b = budget(Duration::from_secs(10), 0, 1.0);
        b.deposit();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || b.withdraw())
            })
            .collect();
        let allowed = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&w| w)
            .count() as u64;
        assert!((1..=2).contains(&allowed));
        if allowed == 2 {
            BOTH_WON.store(true, Ordering::Relaxed);
        }
        assert_eq!(b.retries_allowed() + b.retries_denied(), 2);
        assert_eq!(b.available(), 0);
        // The balance is 1 - allowed tokens: one more deposit shows it.
        b.deposit();
        assert_eq!(b.available(), 2 - allowed);
    });
    assert!(
        BOTH_WON.load(Ordering::Relaxed),
        "loom never found the double win"
    );
}

/// Set when a model run of [`two_withdrawals_race_for_the_last_token`]
/// saw both withdrawals win (not a loom object: it outlives the runs).
static BOTH_WON: AtomicBool = AtomicBool::new(false);

/// A rotation (the first operation after a slot's time is up) racing a
/// withdrawal and a deposit: the tokens committed by the rotation are
/// neither lost nor counted twice, whichever thread rotates.
#[test]
fn rotation_keeps_every_token() {
    model(|rt| {
        let b = budget(Duration::from_secs(1), 0, 1.0);
        b.deposit();
        b.deposit();
        next_slot(rt);
        let b1 = b.clone();
        let depositor = thread::spawn(move || b1.deposit());
        let b2 = b.clone();
        let withdrawer = thread::spawn(move || b2.withdraw());
        depositor.join().unwrap();
        let allowed = u64::from(withdrawer.join().unwrap());
        assert_eq!(b.retries_allowed(), allowed);
        assert_eq!(b.available(), 3 - allowed, "a token lost or made");
        // The two first deposits were committed to the slot that expires
        // nine slots later; the racing deposit and withdrawal to the next.
        rt.block_on(tokio::time::advance(Duration::from_millis(900)));
        assert_eq!(b.available(), 1 - allowed, "committed to the wrong slot");
    });
}

/// A withdrawal racing a rotation, with two tokens in the budget, is
/// always allowed; and an empty budget (its last token taken from the
/// floor, so the slot being committed is negative) always refuses one.
/// The balance is never read half-way through a rotation: the rotation
/// moves the slot's total out of the writer (`swap(0)`) and then into the
/// ring (`store`), but a reader that still sees the old slot's start time
/// waits on the rotation's lock, and one that sees the new start time
/// (stored last, `Release`) sees the whole rotation.
#[test]
fn rotation_never_hides_tokens() {
    model(|rt| {
        let b = budget(Duration::from_secs(1), 0, 1.0);
        b.deposit();
        b.deposit();
        next_slot(rt);
        let b1 = b.clone();
        let depositor = thread::spawn(move || b1.deposit());
        let b2 = b.clone();
        let withdrawer = thread::spawn(move || b2.withdraw());
        depositor.join().unwrap();
        assert!(withdrawer.join().unwrap(), "two tokens, a retry refused");
    });
}

/// See [`rotation_never_hides_tokens`].
#[test]
fn rotation_never_overdraws() {
    model(|rt| {
        let b = budget(Duration::from_secs(1), 1, 0.0);
        assert!(b.withdraw(), "the floor's one token");
        assert_eq!(b.available(), 0);
        next_slot(rt);
        let b1 = b.clone();
        let depositor = thread::spawn(move || b1.deposit());
        let b2 = b.clone();
        let withdrawer = thread::spawn(move || b2.withdraw());
        depositor.join().unwrap();
        assert!(
            !withdrawer.join().unwrap(),
            "an empty budget allowed a retry"
        );
        assert_eq!(b.available(), 0);
    });
}

/// The same empty budget after the rotation: two withdrawals racing each
/// other are both refused.
#[test]
fn empty_budget_refuses_after_rotation() {
    model(|rt| {
        let b = budget(Duration::from_secs(1), 1, 0.0);
        assert!(b.withdraw(), "the floor's one token");
        next_slot(rt);
        b.deposit(); // rotates, alone
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || b.withdraw())
            })
            .collect();
        for h in handles {
            assert!(!h.join().unwrap());
        }
        assert_eq!(b.available(), 0);
    });
}
