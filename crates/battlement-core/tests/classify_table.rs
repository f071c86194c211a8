//! Every row of `ErrorClassifier`'s documented table, flat and nested three
//! deep in `source()` chains, plus closures and `ResponseClassifier`.

use std::error::Error;
use std::fmt;
use std::io::{self, ErrorKind as K};
use std::time::Duration;

use battlement_core::*;

/// A foreign wrapper error, as client libraries have.
#[derive(Debug)]
struct Wrap(BoxError);

impl fmt::Display for Wrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wrapped")
    }
}

impl Error for Wrap {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

fn nest3(e: BoxError) -> BoxError {
    Box::new(Wrap(Box::new(Wrap(Box::new(Wrap(e))))))
}

type Row = (
    &'static str,
    fn() -> BoxError,
    FailureKind,
    bool,
    Option<Duration>,
);

fn io(kind: K) -> BoxError {
    Box::new(io::Error::from(kind))
}

fn rows() -> Vec<Row> {
    use FailureKind::*;
    let secs = |s| Some(Duration::from_secs(s));
    vec![
        (
            "circuit open",
            || {
                Box::new(CircuitOpen::new(
                    "b",
                    CircuitState::Open,
                    Some(Duration::from_secs(3)),
                ))
            },
            Rejected,
            false,
            secs(3),
        ),
        (
            "shed",
            || {
                Box::new(Shed {
                    gate: "g".into(),
                    level: Level::Severe,
                    priority: Priority::Low,
                    retry_after: Some(Duration::from_secs(7)),
                })
            },
            Rejected,
            false,
            secs(7),
        ),
        (
            "throttled",
            || {
                Box::new(Throttled {
                    name: "t".into(),
                    probability: 0.5,
                })
            },
            Rejected,
            false,
            None,
        ),
        (
            "bulkhead full",
            || {
                Box::new(BulkheadFull::new(
                    "pool",
                    8,
                    Duration::from_millis(5),
                    Some(Duration::from_secs(2)),
                ))
            },
            Rejected,
            false,
            secs(2),
        ),
        (
            "limit exceeded",
            || Box::new(LimitExceeded::new("api", 20, Duration::ZERO, None)),
            Rejected,
            false,
            None,
        ),
        (
            "deadline exceeded",
            || {
                Box::new(DeadlineExceeded {
                    budget: Duration::from_secs(1),
                    elapsed: Duration::from_secs(1),
                })
            },
            Timeout,
            false,
            None,
        ),
        (
            "attempt timed out",
            || {
                Box::new(AttemptTimedOut {
                    timeout: Duration::from_millis(100),
                })
            },
            Timeout,
            true,
            None,
        ),
        (
            "tower elapsed",
            || Box::new(tower::timeout::error::Elapsed::new()),
            Timeout,
            true,
            None,
        ),
        (
            "tower overloaded",
            || Box::new(tower::load_shed::error::Overloaded::new()),
            Unavailable,
            true,
            None,
        ),
        (
            "retries exhausted over network",
            || {
                Box::new(RetriesExhausted {
                    attempts: 3,
                    reason: RetryStop::MaxAttempts,
                    retry_after: None,
                    last: io(K::ConnectionRefused),
                })
            },
            Network,
            false,
            None,
        ),
        (
            "retries exhausted keeps retry-after",
            || {
                Box::new(RetriesExhausted {
                    attempts: 2,
                    reason: RetryStop::RetryAfterTooLong,
                    retry_after: Some(Duration::from_secs(9)),
                    last: "429".into(),
                })
            },
            Unknown,
            false,
            secs(9),
        ),
        (
            "fallback failed",
            || {
                Box::new(FallbackFailed {
                    primary: io(K::TimedOut),
                    fallbacks: vec![("cache".into(), "miss".into())],
                })
            },
            Timeout,
            false,
            None,
        ),
        (
            "all failed",
            || {
                Box::new(AllFailed {
                    errors: vec![("a".into(), "x".into())],
                })
            },
            Unavailable,
            false,
            None,
        ),
        (
            "quorum not reached",
            || {
                Box::new(QuorumNotReached {
                    succeeded: 1,
                    needed: 2,
                    total: 3,
                    errors: vec![],
                })
            },
            Unavailable,
            false,
            None,
        ),
        (
            "invalid config",
            || {
                Box::new(InvalidConfig::new(
                    "breaker",
                    "failure_rate",
                    1.5,
                    "must be in (0, 1]",
                ))
            },
            Configuration,
            false,
            None,
        ),
        (
            "io refused",
            || io(K::ConnectionRefused),
            Network,
            true,
            None,
        ),
        ("io reset", || io(K::ConnectionReset), Network, true, None),
        (
            "io aborted",
            || io(K::ConnectionAborted),
            Network,
            true,
            None,
        ),
        (
            "io not connected",
            || io(K::NotConnected),
            Network,
            true,
            None,
        ),
        ("io broken pipe", || io(K::BrokenPipe), Network, true, None),
        (
            "io addr not available",
            || io(K::AddrNotAvailable),
            Network,
            true,
            None,
        ),
        ("io addr in use", || io(K::AddrInUse), Network, true, None),
        (
            "io network unreachable",
            || io(K::NetworkUnreachable),
            Network,
            true,
            None,
        ),
        (
            "io host unreachable",
            || io(K::HostUnreachable),
            Network,
            true,
            None,
        ),
        (
            "io network down",
            || io(K::NetworkDown),
            Network,
            true,
            None,
        ),
        (
            "io unexpected eof",
            || io(K::UnexpectedEof),
            Network,
            true,
            None,
        ),
        ("io timed out", || io(K::TimedOut), Timeout, true, None),
        (
            "io would block",
            || io(K::WouldBlock),
            Transient,
            true,
            None,
        ),
        (
            "io interrupted",
            || io(K::Interrupted),
            Transient,
            true,
            None,
        ),
        (
            "io resource busy",
            || io(K::ResourceBusy),
            Unavailable,
            true,
            None,
        ),
        (
            "io invalid input",
            || io(K::InvalidInput),
            InvalidRequest,
            false,
            None,
        ),
        (
            "io invalid data",
            || io(K::InvalidData),
            InvalidRequest,
            false,
            None,
        ),
        ("io not found", || io(K::NotFound), NotFound, false, None),
        (
            "io permission denied",
            || io(K::PermissionDenied),
            Authorization,
            false,
            None,
        ),
        (
            "io unsupported",
            || io(K::Unsupported),
            Configuration,
            false,
            None,
        ),
        (
            "io other wrapping an open circuit",
            || {
                Box::new(io::Error::other(CircuitOpen::new(
                    "b",
                    CircuitState::ForcedOpen,
                    None,
                )))
            },
            Rejected,
            false,
            None,
        ),
        ("io other, bare", || io(K::Other), Unknown, true, None),
        ("anything else", || "opaque".into(), Unknown, true, None),
    ]
}

#[test]
fn every_row_flat_and_nested_three_deep() {
    let classifier = ErrorClassifier::new();
    for (name, make, kind, retryable, retry_after) in rows() {
        for (depth, err) in [(0, make()), (3, nest3(make()))] {
            let outcome = classifier.classify(&Err::<(), _>(err));
            let failure = outcome
                .as_failure()
                .unwrap_or_else(|| panic!("{name} at depth {depth}: not a failure"));
            assert_eq!(failure.kind, kind, "{name} at depth {depth}: kind");
            assert_eq!(
                failure.retryable, retryable,
                "{name} at depth {depth}: retryable"
            );
            assert_eq!(
                failure.retry_after, retry_after,
                "{name} at depth {depth}: retry-after"
            );
        }
    }
}

#[test]
fn ok_is_success_and_concrete_errors_classify() {
    let c = ErrorClassifier::new();
    assert_eq!(c.classify(&Ok::<u8, BoxError>(1)), Outcome::Success);
    let io_result: Result<(), io::Error> = Err(io::Error::from(K::TimedOut));
    assert_eq!(
        c.classify(&io_result),
        Outcome::failure(FailureKind::Timeout)
    );
    let open: Result<(), CircuitOpen> = Err(CircuitOpen::new("x", CircuitState::Open, None));
    assert_eq!(
        c.classify(&open).as_failure().unwrap().kind,
        FailureKind::Rejected
    );
}

#[test]
fn closures_are_classifiers() {
    fn judge<C: Classify<u16, BoxError>>(c: &C, r: Result<u16, BoxError>) -> Outcome {
        c.classify(&r)
    }
    let by_status = |r: &Result<u16, BoxError>| match r {
        Ok(s) if *s == 429 => Failure::new(FailureKind::RateLimited)
            .with_retry_after(Some(Duration::from_secs(1)))
            .into(),
        Ok(s) if *s >= 500 => Outcome::failure(FailureKind::Unavailable),
        Ok(s) if *s == 499 => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::failure(FailureKind::Network),
    };
    assert_eq!(judge(&by_status, Ok(200)), Outcome::Success);
    assert!(judge(&by_status, Ok(503)).is_retryable());
    assert!(judge(&by_status, Ok(499)).is_ignored());
    assert_eq!(
        judge(&by_status, Ok(429)).as_failure().unwrap().retry_after,
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        judge(&by_status, Err("x".into())),
        Outcome::failure(FailureKind::Network)
    );
}

#[test]
fn response_classifier_splits_ok_and_err() {
    let c = ResponseClassifier::new(|s: &u16| {
        if *s >= 500 {
            Outcome::failure(FailureKind::Unavailable)
        } else {
            Outcome::Success
        }
    });
    assert!(c.classify(&Ok::<_, BoxError>(500)).is_failure());
    assert!(c.classify(&Ok::<_, BoxError>(204)).is_success());
    let err: BoxError = Box::new(AttemptTimedOut {
        timeout: Duration::from_secs(1),
    });
    assert_eq!(
        c.classify(&Err::<u16, _>(err)),
        Outcome::failure(FailureKind::Timeout)
    );
}
