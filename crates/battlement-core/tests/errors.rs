//! `Display` and `source()` of every error type of the workspace.

use std::error::Error;
use std::io;
use std::time::Duration;

use battlement_core::*;

fn source_string(e: &dyn Error) -> Option<String> {
    e.source().map(|s| s.to_string())
}

#[test]
fn display_and_source() {
    let open = CircuitOpen::new(
        "payments",
        CircuitState::Open,
        Some(Duration::from_millis(1500)),
    );
    assert_eq!(
        open.to_string(),
        "circuit `payments` is open; retry after 1.5s"
    );
    assert!(open.source().is_none());
    let half = CircuitOpen::new("payments", CircuitState::HalfOpen, None);
    assert_eq!(half.to_string(), "circuit `payments` is half_open");

    let shed = Shed {
        gate: "api".into(),
        level: Level::Severe,
        priority: Priority::Low,
        retry_after: Some(Duration::from_secs(2)),
    };
    assert_eq!(
        shed.to_string(),
        "gate `api` at level severe shed a low-priority request; retry after 2s"
    );

    let throttled = Throttled {
        name: "search".into(),
        probability: 0.25,
    };
    assert_eq!(
        throttled.to_string(),
        "throttle `search` refused the request locally (rejection probability 0.250)"
    );

    let full = BulkheadFull::new("pool", 8, Duration::ZERO, Some(Duration::from_secs(1)));
    assert_eq!(
        full.to_string(),
        "bulkhead `pool` is full (8 call(s) in flight); retry after 1s"
    );
    let waited = BulkheadFull::new("pool", 8, Duration::from_millis(50), None);
    assert_eq!(
        waited.to_string(),
        "bulkhead `pool` is full (8 call(s) in flight, waited 50ms)"
    );
    let over = LimitExceeded::new("api", 21, Duration::ZERO, None);
    assert_eq!(
        over.to_string(),
        "concurrency limit `api` exceeded (21 call(s) in flight)"
    );

    let dl = DeadlineExceeded {
        budget: Duration::from_secs(1),
        elapsed: Duration::from_millis(1001),
    };
    assert_eq!(
        dl.to_string(),
        "deadline exceeded: budget 1s, elapsed 1.001s"
    );

    let at = AttemptTimedOut {
        timeout: Duration::from_millis(400),
    };
    assert_eq!(at.to_string(), "attempt timed out after 400ms");

    let ex = RetriesExhausted {
        attempts: 3,
        reason: RetryStop::MaxAttempts,
        retry_after: None,
        last: Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)),
    };
    assert_eq!(ex.to_string(), "gave up after 3 attempt(s) (max_attempts)");
    assert_eq!(
        source_string(&ex).unwrap(),
        io::Error::from(io::ErrorKind::ConnectionRefused).to_string()
    );
    let ex2 = RetriesExhausted {
        attempts: 1,
        reason: RetryStop::BudgetExhausted,
        retry_after: Some(Duration::from_secs(4)),
        last: "503".into(),
    };
    assert_eq!(
        ex2.to_string(),
        "gave up after 1 attempt(s) (budget_exhausted); retry after 4s"
    );

    let all = AllFailed {
        errors: vec![("a".into(), "down".into()), ("b".into(), "slow".into())],
    };
    assert_eq!(all.to_string(), "all 2 backend(s) failed: a: down; b: slow");
    assert_eq!(source_string(&all).as_deref(), Some("down"));
    assert!(AllFailed { errors: vec![] }.source().is_none());

    let q = QuorumNotReached {
        succeeded: 1,
        needed: 3,
        total: 4,
        errors: vec![("c".into(), "boom".into())],
    };
    assert_eq!(
        q.to_string(),
        "quorum not reached: 1 of 3 needed succeeded out of 4 backend(s): c: boom"
    );
    assert_eq!(source_string(&q).as_deref(), Some("boom"));

    let ff = FallbackFailed {
        primary: "primary down".into(),
        fallbacks: vec![
            ("secondary".into(), "also down".into()),
            ("cache".into(), "empty".into()),
        ],
    };
    assert_eq!(
        ff.to_string(),
        "primary failed (primary down) and every fallback failed: secondary: also down; cache: empty"
    );
    assert_eq!(source_string(&ff).as_deref(), Some("primary down"));

    let cfg = InvalidConfig::new(
        "breaker",
        "failure_rate_threshold",
        1.5,
        "must be in (0, 1]",
    );
    assert_eq!(
        cfg.to_string(),
        "invalid breaker configuration: `failure_rate_threshold` = 1.5 must be in (0, 1]"
    );
}

#[test]
fn errors_travel_boxed_and_downcast() {
    let boxed: BoxError = Box::new(DeadlineExceeded {
        budget: Duration::from_secs(1),
        elapsed: Duration::from_secs(1),
    });
    assert!(boxed.is::<DeadlineExceeded>());
    assert!(!boxed.is::<CircuitOpen>());
    let e = boxed.downcast::<DeadlineExceeded>().unwrap();
    assert_eq!(e.budget, Duration::from_secs(1));
}
