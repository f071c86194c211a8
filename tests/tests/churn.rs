//! Memory under churn: what battlement keeps follows what is alive and
//! the bounds it was configured with, never the number of things that
//! came and went.
//!
//! - components (breakers, retry budgets, gates, bulkheads, adaptive
//!   limits), instruments and whole `Policy` stacks are made, registered,
//!   called once and dropped by the hundred thousand: the registry forgets
//!   them and the bytes held come back to where they were;
//! - a `KeyedBreaker` and a fallback's last-known-good cache see hundreds
//!   of thousands (a million in the full mode) of distinct keys: they hold
//!   at most their `max_keys` / `max_entries`, and the bytes held after
//!   the last key are those held after the first `max_keys`;
//! - a whole stack runs over simulated days (paused time) with every
//!   window in it turning over (time-based breaker window, retry budget,
//!   adaptive-limit windows, instrument histogram, hedge percentile
//!   window): the bytes held at the end of each day are those of the first.
//!
//! Memory is measured with `allocation-counter` (the benches' counting
//! allocator): the net bytes allocated on the test's thread, on which the
//! tests' current-thread runtimes run. Each figure is printed
//! (`--nocapture`).
//!
//! Counts: `BATTLEMENT_CHURN_COMPONENTS` (default 100 000),
//! `BATTLEMENT_CHURN_KEYS` (default 100 000), `BATTLEMENT_CHURN_DAYS`
//! (default 3). The full mode:
//! `BATTLEMENT_CHURN_KEYS=1000000 BATTLEMENT_CHURN_DAYS=30 cargo test --release -p battlement-tests --test churn -- --nocapture`.

use std::time::Duration;

use battlement::prelude::{Backoff, BoxError, Policy, Priority};
use battlement_breaker::Breaker;
use battlement_fallback::{CacheConfig, FallbackLayer};
use battlement_fanout::HedgeLayer;
use battlement_gate::Gate;
use battlement_limit::{AdaptiveLimit, Bulkhead, KeyedBreaker};
use battlement_registry::Registry;
use battlement_retry::RetryBudget;
mod support;

use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

fn kib(bytes: i64) -> f64 {
    bytes as f64 / 1024.0
}

/// Net bytes held since the meter was made, summed over the phases run
/// through it, and the most held at any point of a phase.
#[derive(Debug, Default)]
struct Meter {
    live: i64,
    peak: i64,
}

impl Meter {
    /// Runs `f`, counting what it allocates and frees on this thread.
    fn run<R>(&mut self, f: impl FnOnce() -> R) -> (R, allocation_counter::AllocationInfo) {
        let mut out = None;
        let info = allocation_counter::measure(|| out = Some(f()));
        self.peak = self.peak.max(self.live + info.bytes_max as i64);
        self.live += info.bytes_current;
        (out.expect("ran"), info)
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// A backend that answers its request at once, allocating nothing.
fn echo() -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(|n: u32| std::future::ready(Ok::<u32, BoxError>(n)))
}

/// One of each component, registered.
struct Set {
    breaker: Breaker,
    budget: RetryBudget,
    gate: Gate,
    bulkhead: Bulkhead,
    limit: AdaptiveLimit,
}

fn make_set(registry: &Registry, tag: &str, i: u64) -> Set {
    let set = Set {
        breaker: Breaker::builder(format!("{tag}/breaker/{i}"))
            .build()
            .unwrap(),
        budget: RetryBudget::builder()
            .name(format!("{tag}/budget/{i}"))
            .build()
            .unwrap(),
        gate: Gate::new(format!("{tag}/gate/{i}")),
        bulkhead: Bulkhead::builder(format!("{tag}/bulkhead/{i}"))
            .max_concurrent(4)
            .build()
            .unwrap(),
        limit: AdaptiveLimit::builder(format!("{tag}/limit/{i}"))
            .build()
            .unwrap(),
    };
    registry.register(&set.breaker).unwrap();
    registry.register(&set.budget).unwrap();
    registry.register(&set.gate).unwrap();
    registry.register(&set.bulkhead).unwrap();
    registry.register(&set.limit).unwrap();
    set
}

/// One call through every component of `set`.
async fn call_through(set: &Set, n: u32) {
    let mut svc = ServiceBuilder::new()
        .layer(set.gate.layer().priority_fn(|_: &u32| None))
        .layer(set.bulkhead.layer())
        .layer(set.limit.layer())
        .layer(set.breaker.layer())
        .service(echo());
    assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
    set.budget.deposit();
}

#[test]
fn components_made_and_dropped_by_the_hundred_thousand() {
    let n = support::env_count("BATTLEMENT_CHURN_COMPONENTS", 100_000);
    const ALIVE: u64 = 1_000;
    let rt = paused_runtime();
    let registry = Registry::new();
    // Warm-up: the allocator's and runtime's first allocations, the
    // registry's map at its working size.
    for i in 0..ALIVE {
        let set = make_set(&registry, "warm", i);
        rt.block_on(call_through(&set, i as u32));
    }
    assert_eq!(registry.len(), 0);

    let mut meter = Meter::default();
    // A thousand sets alive: what a set costs.
    let (held, _) = meter.run(|| {
        (0..ALIVE)
            .map(|i| make_set(&registry, "alive", i))
            .collect::<Vec<_>>()
    });
    assert_eq!(registry.len(), 5 * ALIVE as usize);
    let per_set = meter.live / ALIVE as i64;
    assert!(per_set > 0);
    let alive = meter.live;
    meter.run(|| drop(held));
    assert_eq!(registry.len(), 0);

    // `n` sets made, registered, called and dropped one after the other.
    let (_, churn) = meter.run(|| {
        rt.block_on(async {
            for i in 0..n {
                let set = make_set(&registry, "churn", i);
                call_through(&set, i as u32).await;
            }
        })
    });
    assert_eq!(registry.len(), 0);
    println!(
        "churn: components: a set of five costs {per_set} B ({:.1} KiB for {ALIVE} alive); \
         {n} sets made and dropped: {:.1} MiB allocated in all, {:.1} KiB held at the end \
         (peak {:.1} KiB over the baseline)",
        kib(alive),
        churn.bytes_total as f64 / (1024.0 * 1024.0),
        kib(meter.live),
        kib(meter.peak),
    );
    // They were really made...
    assert!(churn.bytes_total >= n * per_set as u64 / 2);
    // ...and nothing of them is left but the registry's entries for the
    // dropped not swept yet (it forgets them when its map doubles).
    assert!(
        meter.live <= 64 * 1024,
        "{:.1} KiB held after the churn",
        kib(meter.live)
    );
    // Never more held than the thousand alive and a little.
    assert!(
        meter.peak <= alive * 3 + 256 * 1024,
        "peak {}",
        kib(meter.peak)
    );
}

#[test]
fn instruments_and_policies_made_and_dropped_by_the_hundred_thousand() {
    let n = support::env_count("BATTLEMENT_CHURN_COMPONENTS", 100_000);
    let policies = (n / 10).max(1);
    let rt = paused_runtime();
    let registry = Registry::new();
    let warm = registry.layer("warm").unwrap().layer(echo());
    rt.block_on(warm.oneshot(1)).unwrap();
    for i in 0..100 {
        let policy = Policy::builder(format!("warm/{i}"))
            .registry(&registry)
            .build()
            .unwrap();
        rt.block_on(policy.layer(echo()).oneshot(1)).unwrap();
    }
    assert_eq!(registry.len(), 0);

    let mut meter = Meter::default();
    // A thousand instruments alive, each called once: what one costs.
    const ALIVE: usize = 1_000;
    let (held, _) = meter.run(|| {
        rt.block_on(async {
            let mut held = Vec::with_capacity(ALIVE);
            for i in 0..ALIVE {
                let svc = registry.layer(&format!("alive/{i}")).unwrap().layer(echo());
                svc.clone().oneshot(1).await.unwrap();
                held.push(svc);
            }
            held
        })
    });
    assert_eq!(registry.len(), ALIVE);
    let per_instrument = meter.live / ALIVE as i64;
    meter.run(|| drop(held));
    assert_eq!(registry.len(), 0);
    // An instrument's counters live in a slot that is never freed (a
    // call's future may outlive its instrument) and goes back to a
    // process-wide pool for the next instrument: what stays is the pool,
    // the most instruments alive at once (battlement-registry
    // `instrument.rs`, "Never freed, reused").
    let pooled = meter.live;

    let (_, instruments) = meter.run(|| {
        rt.block_on(async {
            for i in 0..n {
                let svc = registry
                    .layer(&format!("churn/instrument/{i}"))
                    .unwrap()
                    .layer(echo());
                assert_eq!(svc.oneshot(i as u32).await.unwrap(), i as u32);
            }
        })
    });
    let after_instruments = meter.live;
    let (_, stacks) = meter.run(|| {
        rt.block_on(async {
            for i in 0..policies {
                let policy = Policy::builder(format!("churn/policy/{i}"))
                    .registry(&registry)
                    .build()
                    .unwrap();
                let svc = policy.layer(echo());
                assert_eq!(svc.oneshot(i as u32).await.unwrap(), i as u32);
            }
        })
    });
    assert_eq!(registry.len(), 0);
    println!(
        "churn: instruments: one costs {per_instrument} B alive, {:.1} KiB pooled after the \
         {ALIVE} are dropped; {n} made, called and dropped: {:.1} MiB allocated, {:.1} KiB held \
         after; {policies} whole Policy stacks: {:.1} MiB allocated, {:.1} KiB held after \
         (peak {:.1} KiB)",
        kib(pooled),
        instruments.bytes_total as f64 / (1024.0 * 1024.0),
        kib(after_instruments),
        stacks.bytes_total as f64 / (1024.0 * 1024.0),
        kib(meter.live),
        kib(meter.peak),
    );
    assert!(per_instrument > 0);
    // At most what the thousand held (less if other tests' threads had
    // released slots to the pool first).
    assert!(
        (0..=per_instrument * ALIVE as i64).contains(&pooled),
        "{pooled}"
    );
    // They were really made (a name each at least)...
    assert!(instruments.count_total >= n);
    assert!(stacks.count_total >= policies * 9);
    // ...and reused the pooled slots: nothing grows with their number.
    assert!(
        after_instruments - pooled <= 64 * 1024,
        "{:.1} KiB over the pool",
        kib(after_instruments - pooled)
    );
    assert!(
        meter.live - pooled <= 64 * 1024,
        "{:.1} KiB over the pool",
        kib(meter.live - pooled)
    );
    assert!(
        meter.peak <= per_instrument * ALIVE as i64 + 1024 * 1024,
        "peak {}",
        kib(meter.peak)
    );
}

#[test]
fn a_keyed_breaker_under_distinct_keys_holds_its_max_keys() {
    let keys = support::env_count("BATTLEMENT_CHURN_KEYS", 100_000);
    const MAX_KEYS: usize = 256;
    let rt = paused_runtime();
    let registry = Registry::new();
    let keyed = KeyedBreaker::<u32>::builder("hosts")
        .breaker(|b| b.consecutive_failures(5))
        .max_keys(MAX_KEYS)
        .build()
        .unwrap();
    registry.register(&keyed).unwrap();
    let mut svc = keyed.layer(|n: &u32| *n).layer(echo());
    rt.block_on(async { svc.ready().await.unwrap().call(u32::MAX).await.unwrap() });

    let mut meter = Meter::default();
    let mut call = |range: std::ops::Range<u64>| {
        rt.block_on(async {
            for k in range {
                let k = k as u32;
                assert_eq!(svc.ready().await.unwrap().call(k).await.unwrap(), k);
            }
        })
    };
    meter.run(|| call(0..MAX_KEYS as u64));
    let full = meter.live;
    assert_eq!(keyed.len(), MAX_KEYS);
    let (_, rest) = meter.run(|| call(MAX_KEYS as u64..keys));
    let evicted = keyed.evictions();
    println!(
        "churn: keyed breaker: {MAX_KEYS} keys hold {:.1} KiB; after {keys} distinct keys \
         ({evicted} evicted, {:.1} MiB allocated in all) {:.1} KiB (peak {:.1} KiB)",
        kib(full),
        rest.bytes_total as f64 / (1024.0 * 1024.0),
        kib(meter.live),
        kib(meter.peak),
    );
    assert_eq!(keyed.len(), MAX_KEYS);
    // Every key past the bound evicted one (the first call's key too).
    assert_eq!(evicted, keys + 1 - MAX_KEYS as u64);
    assert!(full > 0);
    assert!(
        (meter.live - full).abs() <= full / 8 + 8 * 1024,
        "{:.1} KiB after {keys} keys, {:.1} KiB at {MAX_KEYS}",
        kib(meter.live),
        kib(full)
    );
    // A new key copies the map: at most two maps at once, and a little.
    assert!(
        meter.peak <= 3 * full + 64 * 1024,
        "peak {}",
        kib(meter.peak)
    );

    // Idle keys go at the next sweep: after the idle timeout, one new key
    // leaves one key.
    rt.block_on(tokio::time::advance(Duration::from_secs(600)));
    meter.run(|| call(keys..keys + 1));
    assert_eq!(keyed.len(), 1);
    println!(
        "churn: keyed breaker: idle for 10 min, one new key: {} key, {:.1} KiB",
        keyed.len(),
        kib(meter.live)
    );
    assert!(meter.live <= full / 4, "{:.1} KiB", kib(meter.live));
}

#[test]
fn a_fallback_cache_under_distinct_keys_holds_its_max_entries() {
    let keys = support::env_count("BATTLEMENT_CHURN_KEYS", 100_000);
    const MAX: u64 = 1024;
    let rt = paused_runtime();
    let mut meter = Meter::default();
    let (layer, built) = meter.run(|| {
        FallbackLayer::<u32, u32>::builder("lkg")
            .cache(
                CacheConfig::new()
                    .fresh_for(Duration::from_secs(3600))
                    .max_entries(MAX),
            )
            .key(|n: &u32| Some(*n))
            .build()
            .unwrap()
    });
    // Fails the requests it is told to, succeeds with the request's
    // number otherwise.
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let backend = {
        let down = down.clone();
        service_fn(move |n: u32| {
            std::future::ready(if down.load(std::sync::atomic::Ordering::Relaxed) {
                Err::<u32, BoxError>(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                )))
            } else {
                Ok(n)
            })
        })
    };
    let mut svc = layer.layer(backend);
    let mut call = |range: std::ops::Range<u64>| {
        rt.block_on(async {
            for k in range {
                let k = k as u32;
                assert_eq!(svc.ready().await.unwrap().call(k).await.unwrap(), k);
            }
        })
    };
    meter.run(|| call(0..MAX));
    let full = meter.live;
    // Half the keys, then the other half: the second half adds nothing.
    meter.run(|| call(MAX..keys / 2));
    let half = meter.live;
    let (_, rest) = meter.run(|| call(keys / 2..keys));
    println!(
        "churn: fallback cache: built {:.1} KiB, {MAX} entries {:.1} KiB; after {} keys {:.1} KiB; \
         after {keys} distinct keys ({:.1} MiB allocated in all) {:.1} KiB, {} entries (peak {:.1} KiB)",
        kib(built.bytes_current),
        kib(full),
        keys / 2,
        kib(half),
        rest.bytes_total as f64 / (1024.0 * 1024.0),
        kib(meter.live),
        layer.cache_len(),
        kib(meter.peak),
    );
    assert!(layer.cache_len() as u64 <= MAX, "{}", layer.cache_len());
    assert!(layer.cache_len() > 0);
    // The cache keeps a ghost list of recently evicted keys (bounded by
    // its capacity) besides its entries: what it holds grows to a ceiling
    // within the first keys past the bound, then stays there.
    assert!(
        (meter.live - half).abs() <= 8 * 1024,
        "{:.1} KiB after {keys} keys, {:.1} KiB after half",
        kib(meter.live),
        kib(half)
    );
    assert!(
        meter.live <= 2 * full + 64 * 1024,
        "{:.1} KiB after {keys} keys, {:.1} KiB at {MAX}",
        kib(meter.live),
        kib(full)
    );
    assert!(
        meter.peak <= 2 * full + 64 * 1024,
        "peak {}",
        kib(meter.peak)
    );
    // The cache still works: the last key is served from it when the
    // backend is down.
    down.store(true, std::sync::atomic::Ordering::Relaxed);
    call(keys - 1..keys);
    assert_eq!(layer.activations(), 1);
}

/// A cheap, well-spread hash.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn windows_over_simulated_days_hold_the_same_memory_each_day() {
    let days = support::env_count("BATTLEMENT_CHURN_DAYS", 3);
    const STEP: Duration = Duration::from_secs(37);
    const CALLS_PER_STEP: u64 = 4;
    let steps_per_day = 86_400 / STEP.as_secs();
    let rt = paused_runtime();
    // The layers choose their clock where they are made: made in the
    // paused runtime's context, they read its (virtual) time.
    let _in_runtime = rt.enter();
    let registry = Registry::new();
    let policy = Policy::builder("days")
        .registry(&registry)
        .total(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(1))
        .retry(|r| {
            r.max_attempts(2)
                .backoff(Backoff::constant(Duration::from_millis(10)))
        })
        .budget(|b| b.ratio(0.2).min_per_sec(1).ttl(Duration::from_secs(10)))
        .breaker(|b| {
            b.failure_rate(0.5)
                .time_window(Duration::from_secs(60), 12)
                .minimum_calls(4)
                .open_duration(Duration::from_secs(30))
        })
        .adaptive_limit(|l| l.window(Duration::from_secs(1), 1))
        .gate(|g| g)
        .priority(|_: &u32| Some(Priority::Normal))
        .build()
        .unwrap();
    let hedge = HedgeLayer::builder("days/hedge")
        .delay(Duration::from_millis(50))
        .percentile(95.0, 1000)
        .build()
        .unwrap();
    registry.register(&hedge.handle()).unwrap();
    // Fails one call in ten, and every call for five minutes each hour
    // (so the breaker opens and closes again every simulated hour).
    let start = rt.block_on(async { tokio::time::Instant::now() });
    let backend = service_fn(move |n: u32| {
        let minute = start.elapsed().as_secs() / 60 % 60;
        std::future::ready(if minute < 5 || mix(u64::from(n)).is_multiple_of(10) {
            Err::<u32, BoxError>(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            )))
        } else {
            Ok(n)
        })
    });
    let mut svc = policy.layer(hedge.layer(backend));
    let mut n = 0u64;
    let mut ok = 0u64;
    let mut day = |steps: u64, n: &mut u64, ok: &mut u64| {
        rt.block_on(async {
            for _ in 0..steps {
                for _ in 0..CALLS_PER_STEP {
                    *n += 1;
                    if svc.ready().await.unwrap().call(*n as u32).await.is_ok() {
                        *ok += 1;
                    }
                }
                tokio::time::advance(STEP).await;
            }
        })
    };
    // Warm-up: the first simulated hour.
    day(3600 / STEP.as_secs(), &mut n, &mut ok);

    let mut meter = Meter::default();
    let mut ends = Vec::new();
    for _ in 0..days {
        meter.run(|| day(steps_per_day, &mut n, &mut ok));
        ends.push(meter.live);
    }
    let breaker = policy.breaker().unwrap().metrics();
    println!(
        "churn: {days} simulated days, {n} calls ({ok} ok), breaker trips {}; bytes held at the \
         end of each day over the first hour: {:?} (peak {:.1} KiB)",
        breaker.trips,
        ends,
        kib(meter.peak),
    );
    assert!(n > days * steps_per_day * CALLS_PER_STEP);
    assert!(ok > 0 && ok < n, "{ok} of {n}");
    let first = ends[0];
    for (d, end) in ends.iter().enumerate() {
        assert!(
            (end - first).abs() <= 4 * 1024,
            "day {d}: {end} B held, day 0 {first} B"
        );
    }
    assert!(first.abs() <= 64 * 1024, "{first} B held after a day");
    assert!(meter.peak <= 256 * 1024, "peak {}", kib(meter.peak));
}
