//! Tests that kill the mutants cargo-mutants left alive in `src/budget.rs`
//! (issue 19; see `docs/reliability/mutants.md` for each survivor, its
//! verdict and the test that kills it), and one that pins a `src/backoff.rs`
//! mutant only a proptest caught (`docs/reliability/mutants/retry.md`). Paused time throughout; the
//! budget's ring has ten slots of `ttl / 10`, rotated lazily by the next
//! call that touches the budget (`available` included).

use std::time::Duration;

use battlement_core::{BoxError, Deadline, DeadlineCarrier};
use battlement_retry::{Backoff, RetryBudget, RetryLayer, RetryPolicy};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

#[derive(Debug, Clone)]
struct Req;

impl DeadlineCarrier for Req {
    fn deadline(&self) -> Option<Deadline> {
        None
    }
    fn set_deadline(&mut self, _: Deadline) {}
}

fn poll_once<F: Future + Unpin>(f: &mut F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(f).poll(&mut cx)
}

/// A floor of 10 retries over a 10 s ttl (slots of 1 s), nothing from
/// deposits: `available` moves only with withdrawals, refunds and expiry.
fn floor_budget() -> RetryBudget {
    RetryBudget::builder()
        .ratio(0.0)
        .min_per_sec(1)
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A retry layer over a backend that always refuses, sleeping 5 s between
/// attempts: polled once, a request withdraws a token for its retry and
/// sleeps; dropped then, it refunds the token.
fn refusing(budget: &RetryBudget) -> impl Service<Req, Response = (), Error = BoxError> + use<> {
    let backend = service_fn(|_: Req| async {
        Err::<(), BoxError>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
    });
    RetryLayer::new(
        RetryPolicy::builder()
            .backoff(Backoff::constant(Duration::from_secs(5)))
            .budget(budget.clone())
            .build()
            .unwrap(),
    )
    .layer(backend)
}

/// Kills `replace - with + in RetryBudget::refund` (`current - token.slot
/// < SLOTS`): once the slot count is past ten, a token withdrawn a few
/// slots ago is still refunded.
#[tokio::test(start_paused = true)]
async fn a_refund_into_an_older_slot_counts_once_the_slot_number_passes_ten() {
    let budget = floor_budget();
    let mut svc = refusing(&budget);
    advance(Duration::from_millis(12_500)).await;
    assert_eq!(budget.available(), 10); // rotates: slot 11
    let mut fut = Box::pin(svc.ready().await.unwrap().call(Req));
    assert!(
        poll_once(&mut fut).is_pending(),
        "sleeping before its retry"
    );
    assert_eq!(budget.available(), 9);
    advance(Duration::from_secs(2)).await;
    assert_eq!(budget.available(), 9); // rotates: slot 13
    drop(fut); // refunded into slot 11, two slots back
    assert_eq!(budget.available(), 10);
    advance(Duration::from_secs(10)).await;
    assert_eq!(budget.available(), 10);
}

/// Kills `replace % with / in RetryBudget::refund`: a token refunded
/// after the ring moved on goes back into the slot it was withdrawn from
/// (index `slot % 10`), so it expires together with its withdrawal, not
/// with whatever slot `slot / 10` names.
#[tokio::test(start_paused = true)]
async fn a_refund_goes_back_into_the_slot_it_was_withdrawn_from() {
    let budget = floor_budget();
    let mut svc = refusing(&budget);
    advance(Duration::from_millis(3_500)).await;
    assert_eq!(budget.available(), 10); // rotates: slot 3
    let mut fut = Box::pin(svc.ready().await.unwrap().call(Req));
    assert!(poll_once(&mut fut).is_pending());
    assert_eq!(budget.available(), 9);
    advance(Duration::from_secs(2)).await;
    assert_eq!(budget.available(), 9); // rotates: slot 5
    drop(fut); // back into slot 3, where the withdrawal is
    assert_eq!(budget.available(), 10);
    // Slot 10 reuses index 0: with the refund wrongly in index 0 it would
    // expire there, three slots before its withdrawal in index 3.
    advance(Duration::from_secs(5)).await;
    assert_eq!(budget.available(), 10);
    advance(Duration::from_secs(3)).await;
    assert_eq!(budget.available(), 10);
}

/// Kills `replace < with == / <=` in `BudgetState::expire`, on both
/// checks of the slot's age (before and under the lock): the ring rotates
/// when a slot is exactly `ttl / 10` old, so a deposit made at that
/// instant lands in the new slot and counts for a whole ttl from then.
#[tokio::test(start_paused = true)]
async fn the_ring_rotates_when_a_slot_is_exactly_a_tenth_of_the_ttl_old() {
    let budget = RetryBudget::builder()
        .ratio(1.0)
        .min_per_sec(0)
        .ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    advance(Duration::from_millis(100)).await;
    budget.deposit(); // rotates first (slot 1, from 100 ms), then deposits
    assert_eq!(budget.available(), 1);
    // 1.05 s: less than a ttl after the deposit, but more than a ttl after
    // slot 0 began. Slot 1 is still in the window; slot 0 is not.
    advance(Duration::from_millis(950)).await;
    assert_eq!(budget.available(), 1);
    // That reading began a slot at 1.05 s; the next rotation, at 1.15 s,
    // comes round to slot 1's index and the deposit expires.
    advance(Duration::from_millis(99)).await;
    assert_eq!(budget.available(), 1);
    advance(Duration::from_millis(1)).await;
    assert_eq!(budget.available(), 0);
}

/// Kills `replace RetryBudget::reset with ()`: a reset empties the window
/// down to the floor (the older tests reset only through
/// `Control::Reset`, or where the refund made up for it).
#[tokio::test(start_paused = true)]
async fn reset_empties_the_window_down_to_the_floor() {
    let budget = RetryBudget::builder()
        .ratio(1.0)
        .min_per_sec(1)
        .ttl(Duration::from_secs(2))
        .build()
        .unwrap();
    for _ in 0..3 {
        budget.deposit();
    }
    assert!(budget.withdraw());
    assert_eq!(budget.available(), 2 + 2); // floor 2, deposits 3, withdrawn 1
    budget.reset();
    assert_eq!(budget.available(), 2);
    assert_eq!(budget.retries_allowed(), 1, "counters survive a reset");
    budget.deposit();
    assert_eq!(budget.available(), 3);
}

/// Kills `replace RetryBudget::name -> &Name with Box::leak(..)` and the
/// three mutants of `Debug for RetryBudget` (`Ok(Default::default())`,
/// `/ SCALE` replaced with `% SCALE` or `* SCALE`).
#[tokio::test(start_paused = true)]
async fn name_and_debug_show_the_budget() {
    let budget = RetryBudget::builder()
        .name("payments-budget")
        .ratio(1.0)
        .min_per_sec(0)
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(&**budget.name(), "payments-budget");
    assert_eq!(&**floor_budget().name(), "retry-budget");
    for _ in 0..3 {
        budget.deposit();
    }
    let debug = format!("{budget:?}");
    assert!(debug.starts_with("RetryBudget {"), "{debug}");
    assert!(debug.contains("payments-budget"), "{debug}");
    assert!(debug.contains("available: 3 "), "{debug}");
}

// ---- src/backoff.rs ----

/// A cap equal to the base is valid (`max` "must be at least `base`"),
/// for both shapes that have a cap, and a cap below it is refused naming
/// `backoff.max`. `replace < with <= in Backoff::check_max` was caught
/// only by the `policy_any_numbers` proptest of `tests/hostile.rs`
/// drawing such a backoff; this pins it deterministically.
#[test]
fn a_backoff_cap_equal_to_the_base_is_valid() {
    let base = Duration::from_millis(250);
    for backoff in [
        Backoff::exponential(base).max(base),
        Backoff::decorrelated(base).max(base),
        Backoff::exponential(Duration::from_secs(10)), // the default cap, 10 s
    ] {
        assert!(
            RetryPolicy::builder().backoff(backoff).build().is_ok(),
            "{backoff:?}"
        );
    }
    for backoff in [
        Backoff::exponential(base).max(base - Duration::from_nanos(1)),
        Backoff::decorrelated(base).max(base - Duration::from_nanos(1)),
    ] {
        let err = RetryPolicy::builder().backoff(backoff).build().unwrap_err();
        assert_eq!(err.field, "backoff.max", "{backoff:?}");
    }
}
