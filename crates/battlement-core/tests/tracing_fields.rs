//! Every event is a `tracing` event with stable field names.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use battlement_core::{CircuitState, EventKind, EventSink, FailureKind, Name, RetryStop};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Fields = Vec<(String, String)>;

/// Records every event's fields, as text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(String, Fields)>>>);

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Vec::new();
        event.record(&mut Visitor(&mut fields));
        let target = event.metadata().target().to_owned();
        self.0.lock().unwrap().push((target, fields));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn get<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field `{name}` in {fields:?}"))
}

#[test]
fn retries_give_ups_and_transitions_trace_with_stable_fields() {
    let capture = Capture::default();
    let name: Name = "checkout/retry".into();
    tracing::subscriber::with_default(capture.clone(), || {
        let sink = EventSink::none();
        sink.emit(&name, || EventKind::Retry {
            attempt: 2,
            delay: Duration::from_millis(250),
            kind: FailureKind::Timeout,
        });
        sink.emit(&name, || EventKind::RetriesExhausted {
            attempts: 3,
            reason: RetryStop::BudgetExhausted,
            kind: FailureKind::Unavailable,
        });
        sink.emit(&"checkout/breaker".into(), || EventKind::StateChanged {
            from: CircuitState::Closed,
            to: CircuitState::Open,
            reason: "5 consecutive failures >= 5".into(),
        });
    });
    let events = capture.0.lock().unwrap().clone();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|(target, _)| target == "battlement"));
    let retry = &events[0].1;
    assert_eq!(get(retry, "component"), "checkout/retry");
    assert_eq!(get(retry, "event"), "retry");
    assert_eq!(get(retry, "attempt"), "2");
    assert_eq!(get(retry, "delay_ms"), "250.0");
    assert_eq!(get(retry, "kind"), "timeout");
    assert_eq!(
        get(retry, "message"),
        "retry: attempt 2 after 250ms (timeout)"
    );
    let gave_up = &events[1].1;
    assert_eq!(get(gave_up, "event"), "retries_exhausted");
    assert_eq!(get(gave_up, "attempts"), "3");
    assert_eq!(get(gave_up, "reason"), "budget_exhausted");
    assert_eq!(get(gave_up, "kind"), "unavailable");
    let opened = &events[2].1;
    assert_eq!(get(opened, "component"), "checkout/breaker");
    assert_eq!(get(opened, "event"), "state_changed");
    assert_eq!((get(opened, "from"), get(opened, "to")), ("closed", "open"));
    assert_eq!(get(opened, "reason"), "5 consecutive failures >= 5");
}

#[test]
fn every_kind_is_named_as_its_json_tag() {
    let kinds = [
        EventKind::Reset,
        EventKind::CallRejected {
            state: CircuitState::Open,
        },
        EventKind::AttemptTimedOut {
            timeout: Duration::from_secs(1),
        },
    ];
    for kind in kinds {
        let json = serde_json::to_value(&kind).unwrap();
        assert_eq!(json["event"], kind.name());
    }
}
