//! The strategies against a model: for random backends (delay, success or
//! failure), strategies, deadlines and concurrency limits, the fan-out ends exactly when the
//! model says, succeeds exactly when it says, and drops every call it did
//! not wait for.

mod common;

use std::sync::Arc;
use std::time::Duration;

use battlement_core::Deadline;
use battlement_fanout::{FanOut, Strategy as Strat};
use common::{Answer, Counters, Mock, Req, ms};
use proptest::prelude::*;
use tower::{Service, ServiceExt};

const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

#[derive(Debug, Clone)]
struct Case {
    backends: Vec<(u64, bool)>,
    strategy: Strat,
    deadline: Option<u64>,
    max_concurrency: Option<usize>,
}

fn case() -> impl proptest::strategy::Strategy<Value = Case> {
    proptest::collection::vec((1u64..8, any::<bool>()), 1..=6).prop_flat_map(|backends| {
        let n = backends.len();
        let strategy = prop_oneof![
            Just(Strat::All),
            Just(Strat::FirstSuccess),
            (1..=n).prop_map(Strat::Quorum),
            (1u64..9).prop_map(|w| Strat::BestEffort(ms(w * 100 + 50))),
        ];
        (
            Just(backends),
            strategy,
            proptest::option::of(1u64..9),
            proptest::option::of(1..=n),
        )
            .prop_map(|(backends, strategy, deadline, max_concurrency)| Case {
                backends: backends.into_iter().map(|(d, ok)| (d * 100, ok)).collect(),
                strategy,
                deadline: deadline.map(|d| d * 100 + 25),
                max_concurrency,
            })
    })
}

/// When the fan-out ends and whether it succeeds.
fn model(c: &Case) -> (u64, bool) {
    let n = c.backends.len();
    let mut limit = c.deadline.unwrap_or(u64::MAX);
    if let Strat::BestEffort(w) = c.strategy {
        limit = limit.min(w.as_millis() as u64);
    }
    let needed = match c.strategy {
        Strat::Quorum(k) => k,
        _ => 1,
    };
    // Calls start in order as slots free: (finish time, index).
    let slots = c.max_concurrency.unwrap_or(n);
    let mut running: Vec<(u64, usize)> = (0..slots.min(n)).map(|i| (c.backends[i].0, i)).collect();
    let mut next = running.len();
    let (mut succeeded, mut settled) = (0, 0);
    while let Some(pos) = (0..running.len()).min_by_key(|&p| running[p]) {
        let (at, idx) = running.swap_remove(pos);
        if at > limit {
            break;
        }
        settled += 1;
        succeeded += usize::from(c.backends[idx].1);
        let decided = settled == n
            || match c.strategy {
                Strat::FirstSuccess => succeeded >= 1,
                Strat::Quorum(k) => succeeded >= k || succeeded + (n - settled) < k,
                _ => false,
            };
        if decided {
            return (at, succeeded >= needed);
        }
        if next < n {
            running.push((at + c.backends[next].0, next));
            next += 1;
        }
    }
    (limit, succeeded >= needed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn strategies_match_the_model(c in case()) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (end, ok) = model(&c);
        let (elapsed, result, counters) = rt.block_on(async {
            let counters = Arc::new(Counters::default());
            let mut b = FanOut::builder("model").strategy(c.strategy);
            if let Some(m) = c.max_concurrency {
                b = b.max_concurrency(m);
            }
            for (i, &(delay, ok)) in c.backends.iter().enumerate() {
                let answer = if ok { Answer::Ok } else { Answer::Fail };
                b = b.backend(NAMES[i], Mock::new(NAMES[i], ms(delay), answer, &counters));
            }
            let mut svc = b.build().unwrap();
            let req = Req { deadline: c.deadline.map(|d| Deadline::after(ms(d))) };
            let start = tokio::time::Instant::now();
            let result = svc.ready().await.unwrap().call(req).await;
            (start.elapsed(), result, counters)
        });
        prop_assert_eq!(elapsed, Duration::from_millis(end));
        prop_assert_eq!(result.is_ok(), ok, "{:?}", result.err());
        prop_assert!(counters.peak() <= c.max_concurrency.unwrap_or(6));
        if c.max_concurrency.is_none() {
            // Calls still running at the end are dropped; one due at the
            // very instant the fan-out decided may be dropped too.
            let unfinished = c.backends.iter().filter(|&&(d, _)| d > end).count();
            let due_or_later = c.backends.iter().filter(|&&(d, _)| d >= end).count();
            prop_assert!((unfinished..=due_or_later).contains(&counters.dropped()));
        }
        prop_assert_eq!(counters.in_flight.load(std::sync::atomic::Ordering::SeqCst), 0);
        if let Ok(res) = result {
            let needed = match c.strategy { Strat::Quorum(k) => k, _ => 1 };
            prop_assert!(res.success_count() >= needed);
        }
    }
}
