//! Fan-out and hedging: one query to three backends, and a backup copy of
//! a slow request.

use std::time::Duration;

use battlement::fanout::{FanOut, HedgeLayer, Reply, Strategy};
use battlement::prelude::*;
use tower::{Layer, Service, ServiceExt, service_fn};

/// A backend that answers after `ms` milliseconds, or fails when `ms` is 0.
fn backend(
    name: &'static str,
    ms: u64,
) -> tower::util::BoxCloneSyncService<String, String, BoxError> {
    tower::util::BoxCloneSyncService::new(service_fn(move |q: String| async move {
        if ms == 0 {
            return Err::<String, BoxError>(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )));
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(format!("{name} found `{q}` in {ms} ms"))
    }))
}

/// Runs a `FirstSuccess` and an `All` fan-out, then a hedged call.
pub(crate) async fn run() {
    println!("== fanout: one query, three backends");
    for strategy in [Strategy::All, Strategy::FirstSuccess, Strategy::Quorum(2)] {
        let mut fan = FanOut::builder("search")
            .backend("fast", backend("fast", 20))
            .backend("slow", backend("slow", 80))
            .backend("broken", backend("broken", 0))
            .strategy(strategy)
            .build()
            .expect("valid fan-out");
        let answers = fan
            .ready()
            .await
            .expect("ready")
            .call("battlement".to_string())
            .await
            .expect("at least one backend answers");
        println!("  {strategy:?} after {:?}:", answers.elapsed());
        for r in answers.results() {
            let what = match &r.reply {
                Reply::Response(s) => s.clone(),
                Reply::Error(e) => format!("error: {e}"),
                other => format!("{other:?}"),
            };
            println!("    {:<6} {:<8} {what}", r.name, outcome_name(&r.outcome));
        }
    }

    println!("== fanout: hedging a slow request");
    let hedge = HedgeLayer::builder("lookup")
        .delay(Duration::from_millis(30))
        .build()
        .expect("valid hedge");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = calls.clone();
    let mut svc = hedge.layer(service_fn(move |id: u32| {
        // The first copy is slow, the backup fast.
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let ms = if n == 0 { 500 } else { 10 };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(format!("record {id} (copy {} answered)", n + 1))
        }
    }));
    let start = tokio::time::Instant::now();
    let answer = svc
        .ready()
        .await
        .expect("ready")
        .call(7)
        .await
        .expect("answer");
    let handle = hedge.handle();
    println!(
        "  {answer} after {:?}; hedges sent {}, won {}",
        start.elapsed(),
        handle.hedges_sent(),
        handle.hedges_won()
    );
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure(_) => "failure",
        Outcome::Ignored => "ignored",
    }
}
