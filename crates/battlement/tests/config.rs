//! `PolicyConfig`: the same policies from TOML, JSON and YAML, errors
//! that name the field's path, and no panic on any document.

use std::time::Duration;

use battlement::PolicyConfig;
use proptest::prelude::*;

const TOML: &str = r#"
[defaults]
total = "10s"
attempt_timeout = "2s"

[defaults.retry]
max_attempts = 2
backoff = { kind = "exponential", base = "50ms", max = "1s", jitter = "equal" }

[defaults.breaker]
failure_rate = 0.25
window = "20s"
window_buckets = 4

[policies.checkout]
total = "3s"
attempt_timeout = "1s"

[policies.checkout.retry]
max_attempts = 3

[policies.search.breaker]
enabled = false
"#;

const JSON: &str = r#"{
  "defaults": {
    "total": "10s",
    "attempt_timeout": "2s",
    "retry": {"max_attempts": 2, "backoff": {"kind": "exponential", "base": "50ms", "max": "1s", "jitter": "equal"}},
    "breaker": {"failure_rate": 0.25, "window": "20s", "window_buckets": 4}
  },
  "policies": {
    "checkout": {"total": "3s", "attempt_timeout": "1s", "retry": {"max_attempts": 3}},
    "search": {"breaker": {"enabled": false}}
  }
}"#;

const YAML: &str = r#"
defaults:
  total: 10s
  attempt_timeout: 2s
  retry:
    max_attempts: 2
    backoff: { kind: exponential, base: 50ms, max: 1s, jitter: equal }
  breaker:
    failure_rate: 0.25
    window: 20s
    window_buckets: 4
policies:
  checkout:
    total: 3s
    attempt_timeout: 1s
    retry:
      max_attempts: 3
  search:
    breaker:
      enabled: false
"#;

#[test]
fn toml_json_and_yaml_give_the_same_policies() {
    let from_toml =
        PolicyConfig::from_deserializer(toml::Deserializer::parse(TOML).unwrap()).unwrap();
    let from_json =
        PolicyConfig::from_deserializer(&mut serde_json::Deserializer::from_str(JSON)).unwrap();
    let from_yaml =
        PolicyConfig::from_deserializer(serde_yaml_ng::Deserializer::from_str(YAML)).unwrap();
    assert_eq!(from_toml, from_json);
    assert_eq!(from_toml, from_yaml);

    let config = from_toml;
    let checkout = config.policy("checkout").unwrap().build().unwrap();
    assert_eq!(checkout.total(), Some(Duration::from_secs(3)));
    // The override of one retry field keeps the default's others.
    let retry = checkout.retry().unwrap();
    assert_eq!(retry.max_attempts(), 3);
    assert_eq!(retry.backoff().base(), Duration::from_millis(50));
    assert_eq!(retry.min_time_left(), Duration::from_millis(100));
    let breaker = checkout.breaker().unwrap();
    assert_eq!(
        breaker.window(),
        battlement::breaker::WindowConfig::Time {
            duration: Duration::from_secs(20),
            buckets: 4
        }
    );

    let search = config.policy("search").unwrap().build().unwrap();
    assert!(search.breaker().is_none());
    assert_eq!(search.total(), Some(Duration::from_secs(10)));

    // A name the file does not list gets the defaults.
    let other = config.policy("other").unwrap().build().unwrap();
    assert_eq!(other.retry().unwrap().max_attempts(), 2);

    // Code still adjusts what the file gave.
    let adjusted = config
        .policy("checkout")
        .unwrap()
        .without_breaker()
        .build()
        .unwrap();
    assert!(adjusted.breaker().is_none());

    // A round trip through the serde types keeps everything.
    let text = toml::to_string(&config).unwrap();
    let again: PolicyConfig = toml::from_str(&text).unwrap();
    assert_eq!(again, config);
}

#[test]
fn a_preset_takes_its_settings_from_the_file() {
    let config: PolicyConfig = toml::from_str(TOML).unwrap();
    let policy = config
        .apply_to(battlement::Policy::http("checkout"))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(policy.total(), Some(Duration::from_secs(3)));
}

#[test]
fn the_deadline_carriage_is_a_setting() {
    use battlement::deadline::Carry;

    let config: PolicyConfig = toml::from_str(
        "[defaults]\ncarry_deadline = \"if_carried\"\n[policies.client]\ncarry_deadline = \"always\"\n",
    )
    .unwrap();
    let route = config.policy("route").unwrap().build().unwrap();
    assert_eq!(route.carry_deadline(), Carry::IfCarried);
    let client = config.policy("client").unwrap().build().unwrap();
    assert_eq!(client.carry_deadline(), Carry::Always);
    // Unset, the builder's default.
    let plain = PolicyConfig::default()
        .policy("x")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(plain.carry_deadline(), Carry::Always);
    let e = error_of("[defaults]\ncarry_deadline = \"sometimes\"\n");
    assert!(e.starts_with("defaults.carry_deadline"), "{e}");
    assert!(e.contains("if_carried"), "{e}");
}

fn error_of(toml_text: &str) -> String {
    match PolicyConfig::from_deserializer(toml::Deserializer::parse(toml_text).unwrap()) {
        Ok(_) => panic!("accepted: {toml_text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_the_path_of_the_field() {
    let e = error_of("[policies.checkout.breaker]\nfailure_rate = 1.5\n");
    assert_eq!(
        e,
        "policies.checkout.breaker.failure_rate: 1.5 must be in (0, 1]"
    );

    let e = error_of("[policies.checkout.breaker]\nfailure_rat = 0.5\n");
    assert!(e.starts_with("policies.checkout.breaker"), "{e}");
    assert!(e.contains("unknown field `failure_rat`"), "{e}");

    let e = error_of("[defaults]\ntotal = \"soon\"\n");
    assert!(e.starts_with("defaults.total"), "{e}");

    let e = error_of("[policies.a.retry]\nmax_attempts = 0\n");
    assert_eq!(e, "policies.a.retry.max_attempts: 0 must be in 1..=100");

    let e = error_of("[policies.a]\ntotal = \"1s\"\nattempt_timeout = \"2s\"\n");
    assert!(
        e.starts_with("policies.a: `attempt_timeout` (2s) must be at most `total` (1s)"),
        "{e}"
    );

    let e = error_of("[policies.a.retry.backoff]\nbase = \"1s\"\nmax = \"10ms\"\n");
    assert!(e.starts_with("policies.a.retry.backoff.max"), "{e}");

    let e = error_of("[policies.a]\nallow = [\"everything\"]\n");
    assert!(e.starts_with("policies.a.allow[0]"), "{e}");

    let e = error_of("[policies.a.breaker]\nwindow_calls = 10\nwindow = \"10s\"\n");
    assert!(e.starts_with("policies.a.breaker.window_calls"), "{e}");

    // A part's own bound, found by building: the breaker's.
    let e = error_of("[policies.a.breaker]\nwindow_calls = 10\nminimum_calls = 20\n");
    assert!(e.starts_with("policies.a.breaker.minimum_calls"), "{e}");
}

/// A JSON value of a shape a config might have, with keys from the real
/// names and a few wrong ones, and values of every type.
fn document() -> impl Strategy<Value = serde_json::Value> {
    let key = prop::sample::select(vec![
        "defaults",
        "policies",
        "checkout",
        "total",
        "attempt_timeout",
        "carry_deadline",
        "retry",
        "breaker",
        "budget",
        "enabled",
        "max_attempts",
        "backoff",
        "kind",
        "base",
        "max",
        "multiplier",
        "jitter",
        "failure_rate",
        "window",
        "window_buckets",
        "window_calls",
        "minimum_calls",
        "open",
        "open_max",
        "open_multiplier",
        "permitted_probes",
        "success_threshold",
        "ratio",
        "min_per_sec",
        "ttl",
        "allow",
        "instrument",
        "slow_call_rate",
        "slow_call_threshold",
        "min_time_left",
        "max_retry_after",
        "bogus",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        prop::sample::select(vec![
            "0s",
            "1ms",
            "10s",
            "18446744073709551615s",
            "1y",
            "-1s",
            "exponential",
            "constant",
            "decorrelated",
            "none",
            "full",
            "equal",
            "",
            "retries_fit_total",
            "always",
            "if_carried",
        ])
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| {
            serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_document_panics_the_loader(doc in document()) {
        let text = doc.to_string();
        let mut de = serde_json::Deserializer::from_str(&text);
        if let Ok(config) = PolicyConfig::from_deserializer(&mut de) {
            // What loads and validates also builds.
            for name in config.names().map(str::to_string).collect::<Vec<_>>() {
                let built = config.policy(&name).and_then(|b| {
                    b.build().map_err(|e| panic!("validated but refused: {e}"))
                });
                prop_assert!(built.is_ok());
            }
        }
    }
}
