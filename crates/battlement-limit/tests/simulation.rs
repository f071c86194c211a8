//! The adaptive limit against a simulated backend on paused time: latency
//! flat up to a knee in concurrency, then rising with it (a queue). The
//! numbers asserted here are the ones the crate docs quote.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use battlement_core::LimitExceeded;
use battlement_limit::{AdaptiveLimit, Vegas};
use tokio::time::{Instant, sleep};
use tower::{Layer, ServiceExt, service_fn};

/// The backend: `base` latency up to `knee` calls in flight, then
/// `base × concurrency / knee` (a server of `knee` workers with a queue).
#[derive(Clone)]
struct Backend {
    in_flight: Arc<AtomicU32>,
    /// `(base in ms, knee)`, changed mid-run to slow the backend down.
    shape: Arc<std::sync::Mutex<(u64, u32)>>,
}

impl Backend {
    fn latency(&self, concurrency: u32) -> Duration {
        let (base, knee) = *self.shape.lock().unwrap();
        let factor = f64::from(concurrency.max(knee)) / f64::from(knee);
        Duration::from_secs_f64(base as f64 / 1000.0 * factor)
    }
}

/// One phase's figures.
#[derive(Debug)]
struct Phase {
    /// The limit at the end of each window of the phase.
    limits: Vec<u32>,
    /// Latencies of the calls admitted in the phase, sorted.
    latencies: Vec<Duration>,
    refused: u64,
}

impl Phase {
    fn p99(&self) -> Duration {
        let i = (self.latencies.len() * 99).div_ceil(100).saturating_sub(1);
        self.latencies[i]
    }
}

const WINDOW: Duration = Duration::from_millis(100);
const CLIENTS: usize = 150;

/// Runs `CLIENTS` callers in a closed loop for `windows` windows; a refused
/// caller backs off 5 ms.
async fn run(limiter: &AdaptiveLimit, backend: &Backend, windows: usize) -> Phase {
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicU32::new(0));
    let end = Instant::now() + WINDOW * windows as u32;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let b = backend.clone();
        let svc = limiter.layer().layer(service_fn(move |()| {
            let b = b.clone();
            async move {
                let now = b.in_flight.fetch_add(1, Relaxed) + 1;
                sleep(b.latency(now)).await;
                b.in_flight.fetch_sub(1, Relaxed);
                Ok::<_, std::io::Error>(())
            }
        }));
        let (latencies, refused) = (latencies.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let start = Instant::now();
                match svc.clone().oneshot(()).await {
                    Ok(()) => latencies.lock().unwrap().push(start.elapsed()),
                    Err(e) => {
                        assert!(e.is::<LimitExceeded>());
                        refused.fetch_add(1, Relaxed);
                        sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }));
    }
    let mut limits = Vec::new();
    for _ in 0..windows {
        sleep(WINDOW).await;
        limits.push(limiter.limit());
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort();
    Phase {
        limits,
        latencies,
        refused: u64::from(refused.load(Relaxed)),
    }
}

/// Vegas, from 20, against a backend of 10 ms up to a knee of 40 calls:
/// the limit reaches the knee within 5 windows and holds within
/// [40, 48] (the knee plus Vegas' queue allowance of 3 to 6 calls) with a
/// p99 of at most 12 ms. When the backend slows to 20 ms with a knee of
/// 20, the limit falls below 24 within 25 windows, and the p99 of the
/// admitted calls stays under 50 ms throughout (at most 2.5 × the new base
/// while the limit comes down) and under 30 ms once it has; Vegas' probe
/// then finds the new knee (20 to 28) within 400 windows.
#[tokio::test(start_paused = true)]
async fn vegas_converges_near_the_knee_and_falls_when_the_backend_slows() {
    let limiter = AdaptiveLimit::builder("sim")
        .algorithm(Vegas::new())
        .initial_limit(20)
        .window(WINDOW, 10)
        .build()
        .unwrap();
    let backend = Backend {
        in_flight: Arc::new(AtomicU32::new(0)),
        shape: Arc::new(std::sync::Mutex::new((10, 40))),
    };

    let warm = run(&limiter, &backend, 40).await;
    eprintln!("warm-up limits: {:?}", warm.limits);
    eprintln!("warm-up p99 {:?}, refused {}", warm.p99(), warm.refused);
    let reached = warm.limits.iter().position(|l| *l >= 40).unwrap();
    assert!(reached < 5, "reached the knee at window {reached}");
    let held = &warm.limits[10..];
    assert!(held.iter().all(|l| (40..=48).contains(l)), "held {held:?}");
    let steady = run(&limiter, &backend, 20).await;
    eprintln!("steady p99 {:?}", steady.p99());
    assert!(
        steady.p99() <= Duration::from_millis(12),
        "{:?}",
        steady.p99()
    );

    // The backend slows down: twice the latency, half the capacity.
    *backend.shape.lock().unwrap() = (20, 20);
    let slow = run(&limiter, &backend, 40).await;
    eprintln!("slowed limits: {:?}", slow.limits);
    eprintln!("slowed p99 {:?}", slow.p99());
    let fell = slow.limits.iter().position(|l| *l < 24).unwrap();
    assert!(fell < 25, "fell below 24 at window {fell}");
    assert!(slow.p99() < Duration::from_millis(50), "{:?}", slow.p99());
    let after = run(&limiter, &backend, 20).await;
    eprintln!("after p99 {:?}, limits {:?}", after.p99(), after.limits);
    assert!(after.p99() < Duration::from_millis(30), "{:?}", after.p99());
    assert!(after.limits.iter().all(|l| *l < 24));

    // Vegas still measures the queue against the 10 ms it saw first, so it
    // holds below the new knee until its probe forgets that: after
    // 30 × limit windows (360 here) it measures 20 ms afresh and climbs
    // back to the new knee.
    let probe = run(&limiter, &backend, 400).await;
    let last = &probe.limits[probe.limits.len() - 20..];
    eprintln!("after the probe: {last:?}, p99 {:?}", probe.p99());
    assert!(last.iter().all(|l| (20..=28).contains(l)), "{last:?}");
    assert!(probe.p99() < Duration::from_millis(30), "{:?}", probe.p99());
}
