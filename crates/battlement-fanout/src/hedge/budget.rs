//! The hedge budget: backups as at most a fraction of requests, as a
//! token bucket in thousandths of a hedge, one atomic per operation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A thousandth of a hedge.
const HEDGE: u64 = 1000;
/// The most credit the bucket holds: ten hedges.
const CAP: u64 = 10 * HEDGE;

#[derive(Debug)]
pub(crate) struct HedgeBudget {
    per_request: u64,
    balance: AtomicU64,
}

impl HedgeBudget {
    /// `ratio` hedges per request (0.1: one hedge per ten requests).
    pub(crate) fn new(ratio: f64) -> Self {
        HedgeBudget {
            per_request: (ratio * HEDGE as f64).round() as u64,
            balance: AtomicU64::new(0),
        }
    }

    /// Credits one request.
    pub(crate) fn deposit(&self) {
        let _ = self.balance.fetch_update(Relaxed, Relaxed, |b| {
            (b < CAP).then(|| (b + self.per_request).min(CAP))
        });
    }

    /// Takes the credit for one hedge, if there is enough.
    pub(crate) fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Relaxed, Relaxed, |b| b.checked_sub(HEDGE))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn hedges_never_exceed_ratio_of_requests(ratio in 0.01f64..=1.0, ops in proptest::collection::vec(any::<bool>(), 1..500)) {
            let b = HedgeBudget::new(ratio);
            let (mut requests, mut hedges) = (0u64, 0u64);
            for deposit in ops {
                if deposit { b.deposit(); requests += 1; } else if b.withdraw() { hedges += 1; }
            }
            let per = (ratio * 1000.0).round() as u64;
            prop_assert!(hedges * 1000 <= requests * per);
        }
    }

    #[test]
    fn one_hedge_per_ten_requests() {
        let b = HedgeBudget::new(0.1);
        let mut sent = 0;
        for _ in 0..100 {
            b.deposit();
            if b.withdraw() {
                sent += 1;
            }
        }
        assert_eq!(sent, 10);
    }
}
