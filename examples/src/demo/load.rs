//! The load generator: open loop, a fixed rate per side, the same
//! request sent to both fronts at each tick, each answer sorted into
//! exactly one [`Class`].
//!
//! Open loop means a tick does not wait for earlier answers: each request
//! is spawned (this is a load generator, not middleware), so a slow side
//! piles up requests in flight as real clients would. Every request has a
//! client-side timeout ([`LOAD_TIMEOUT`]) and the run waits for all of
//! them, so each one sent is recorded once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use battlement::chaos::Chaos;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::{Instant, MissedTickBehavior};

use super::front::{FALLBACK_HEADER, FROM_HEADER};
use super::live::Live;
use super::upstream::Side;
use super::{Config, Output};
use crate::client::{HttpClient, http_client};

/// How long the load generator waits for one answer.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(8);

/// Share of requests, in percent, that go to `/api/orders` (the rest to
/// `/api/recommendations`, low priority).
pub const ORDERS_PERCENT: u64 = 70;

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A `2xx` from the upstream, fresh.
    Success,
    /// A `2xx` the fallback served (`x-battlement-fallback`).
    Fallback,
    /// A `503` from the front's own layers (gate or breaker): no
    /// `x-demo-from` header.
    Shed,
    /// Anything else: an upstream error passed on, a deadline, a timeout,
    /// a broken connection.
    Failed,
}

impl Class {
    /// Every class, in the summary's order.
    pub const ALL: [Class; 4] = [Class::Success, Class::Fallback, Class::Shed, Class::Failed];

    /// Sorts an answer.
    pub fn of(status: StatusCode, from_upstream: bool, fallback: bool) -> Class {
        if status.is_success() {
            if fallback {
                Class::Fallback
            } else {
                Class::Success
            }
        } else if status == StatusCode::SERVICE_UNAVAILABLE && !from_upstream {
            Class::Shed
        } else {
            Class::Failed
        }
    }
}

/// Which route a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `/api/orders/{id}`, high priority.
    Orders,
    /// `/api/recommendations`, low priority.
    Recommendations,
}

/// One request and its answer.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// The side it went to.
    pub side: Side,
    /// The route.
    pub route: Route,
    /// When it was sent, since the fault schedule's start.
    pub sent: Duration,
    /// When its answer was complete, since the schedule's start.
    pub done: Duration,
    /// What became of it.
    pub class: Class,
    /// The phase of the schedule it was sent in (`None` after the end).
    pub phase: Option<usize>,
}

impl Sample {
    /// How long the answer took, in milliseconds.
    pub fn latency_ms(&self) -> f64 {
        self.done.saturating_sub(self.sent).as_secs_f64() * 1000.0
    }
}

/// Where the fronts listen.
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    /// The protected front.
    pub protected: SocketAddr,
    /// The unprotected front.
    pub unprotected: SocketAddr,
}

impl Targets {
    fn of(&self, side: Side) -> SocketAddr {
        match side {
            Side::Protected => self.protected,
            Side::Unprotected => self.unprotected,
        }
    }
}

/// The answers so far, in the order they completed.
#[derive(Debug, Default)]
pub struct Recorder {
    samples: Mutex<Vec<Sample>>,
    sent: [AtomicU64; 2],
}

impl Recorder {
    fn push(&self, sample: Sample) {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sample);
    }

    /// Requests sent to `side` so far.
    pub fn sent(&self, side: Side) -> u64 {
        self.sent[side.index()].load(Ordering::Relaxed)
    }

    /// Runs `f` over the samples recorded so far (in completion order).
    pub fn with_samples<R>(&self, f: impl FnOnce(&[Sample]) -> R) -> R {
        f(&self.samples.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Everything the load generator saw.
#[derive(Debug)]
pub struct Recorded {
    /// Every answer, in completion order.
    pub samples: Vec<Sample>,
    /// Requests sent, by side ([`Side::index`]).
    pub sent: [u64; 2],
    /// From the schedule's start to the last answer.
    pub elapsed: Duration,
}

/// A step of splitmix64: the request mix is a pure function of the seed
/// and the request's number.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The route and path of request number `n` for `seed`.
pub fn request_for(seed: u64, n: u64) -> (Route, String) {
    let u = splitmix64(seed ^ splitmix64(n));
    if u % 100 < ORDERS_PERCENT {
        (Route::Orders, format!("/api/orders/{}", (u >> 8) % 20 + 1))
    } else {
        (
            Route::Recommendations,
            format!("/api/recommendations?user={}", (u >> 16) % 10 + 1),
        )
    }
}

async fn one(client: &HttpClient, url: &str) -> Class {
    let Ok(req) = Request::get(url).body(Full::<Bytes>::default()) else {
        return Class::Failed;
    };
    let answer = async {
        let res = client.request(req).await.ok()?;
        let status = res.status();
        let from = res.headers().contains_key(FROM_HEADER);
        let fallback = res.headers().contains_key(FALLBACK_HEADER);
        res.into_body().collect().await.ok()?;
        Some(Class::of(status, from, fallback))
    };
    match tokio::time::timeout(LOAD_TIMEOUT, answer).await {
        Ok(Some(class)) => class,
        _ => Class::Failed,
    }
}

/// Drives both fronts at `config.rps` each for `config.duration`, from
/// now (call [`Chaos::start`] just before), then waits for every answer.
pub async fn drive(targets: Targets, config: &Config, chaos: &Chaos, live: &Live<'_>) -> Recorded {
    let recorder = Arc::new(Recorder::default());
    let clients = [http_client(), http_client()];
    let total = (f64::from(config.rps) * config.duration.as_secs_f64()).round() as u64;
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / config.rps);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let refresh = match config.output {
        Output::Terminal => Duration::from_millis(200),
        Output::Plain | Output::Quiet => Duration::from_secs(1),
    };
    let start = Instant::now() - chaos.elapsed();
    let mut next_refresh = Instant::now() + refresh;
    let mut tasks = tokio::task::JoinSet::new();

    for n in 0..total {
        ticks.tick().await;
        let (route, path) = request_for(config.seed, n);
        for side in Side::BOTH {
            let client = clients[side.index()].clone();
            let url = format!("http://{}{path}", targets.of(side));
            let recorder = recorder.clone();
            let sent = chaos.elapsed();
            let phase = chaos.schedule().phase_at(sent).map(|at| at.index);
            recorder.sent[side.index()].fetch_add(1, Ordering::Relaxed);
            tasks.spawn(async move {
                let class = one(&client, &url).await;
                recorder.push(Sample {
                    side,
                    route,
                    sent,
                    done: start.elapsed(),
                    class,
                    phase,
                });
            });
        }
        // Reap finished tasks as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
        if Instant::now() >= next_refresh {
            next_refresh += refresh;
            live.update(chaos, &recorder);
        }
    }
    live.draining();
    loop {
        match tokio::time::timeout_at(next_refresh, tasks.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                next_refresh += refresh;
                live.update(chaos, &recorder);
            }
        }
    }
    live.update(chaos, &recorder);
    let samples = recorder.with_samples(<[Sample]>::to_vec);
    Recorded {
        samples,
        sent: [
            recorder.sent(Side::Protected),
            recorder.sent(Side::Unprotected),
        ],
        elapsed: start.elapsed(),
    }
}
