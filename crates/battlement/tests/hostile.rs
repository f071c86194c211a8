//! `PolicyConfig` from hostile text: arbitrary strings and mangled
//! documents in TOML and JSON never panic the loader, and a document
//! whose only fault is one field (NaN, infinities, negatives, huge
//! numbers, wrong types, garbage durations) is refused with an error
//! whose path or message names that field. What loads, builds.
//!
//! (`tests/config.rs` already feeds 2000 structured JSON documents; this
//! adds raw text, TOML's `nan`/`inf`, and the field-naming check.)
//!
//! Cases per property: 256 (`PROPTEST_CASES` overrides).

use battlement::{ConfigError, PolicyConfig};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig::with_cases(cases)
}

const VALID_TOML: &str = r#"
[defaults]
total = "10s"
attempt_timeout = "2s"

[defaults.retry]
max_attempts = 2
backoff = { kind = "exponential", base = "50ms", max = "1s", jitter = "equal" }

[defaults.budget]
ratio = 0.2
min_per_sec = 10
ttl = "10s"

[defaults.breaker]
failure_rate = 0.25
window = "20s"
window_buckets = 4

[policies.checkout]
total = "3s"
attempt_timeout = "1s"

[policies.checkout.breaker]
open = "5s"
open_max = "60s"
open_multiplier = 2.0
"#;

fn from_toml(text: &str) -> Result<PolicyConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError {
        path: String::new(),
        message: e.to_string(),
    })?;
    PolicyConfig::from_deserializer(de)
}

fn from_json(text: &str) -> Result<PolicyConfig, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    PolicyConfig::from_deserializer(&mut de)
}

/// What loads must build every policy it names.
fn builds(config: &PolicyConfig) -> Result<(), TestCaseError> {
    let names: Vec<String> = config.names().map(str::to_string).collect();
    for name in names.iter().map(String::as_str).chain(["unnamed"]) {
        let built = config.policy(name).map(|b| b.build());
        prop_assert!(
            matches!(built, Ok(Ok(_))),
            "validated but refused {}: {:?}",
            name,
            built.err()
        );
    }
    Ok(())
}

/// Every scalar field, where it lives, and a value that is valid there.
const FIELDS: &[(&str, &str, &str)] = &[
    ("", "total", "\"60s\""),
    ("", "attempt_timeout", "\"1s\""),
    ("", "total_enabled", "true"),
    ("", "attempt_timeout_enabled", "true"),
    ("retry", "enabled", "true"),
    ("retry", "max_attempts", "3"),
    ("retry", "min_time_left", "\"10ms\""),
    ("retry", "max_retry_after", "\"30s\""),
    ("retry.backoff", "kind", "\"exponential\""),
    ("retry.backoff", "base", "\"50ms\""),
    ("retry.backoff", "max", "\"2s\""),
    ("retry.backoff", "multiplier", "2.0"),
    ("retry.backoff", "jitter", "\"full\""),
    ("budget", "enabled", "true"),
    ("budget", "ratio", "0.5"),
    ("budget", "min_per_sec", "5"),
    ("budget", "ttl", "\"10s\""),
    ("breaker", "enabled", "true"),
    ("breaker", "failure_rate", "0.5"),
    ("breaker", "consecutive_failures", "5"),
    (
        "breaker",
        "slow_call_threshold",
        "\"2s\"\nslow_call_rate = 0.8",
    ),
    (
        "breaker",
        "slow_call_rate",
        "0.8\nslow_call_threshold = \"2s\"",
    ),
    ("breaker", "window", "\"30s\""),
    ("breaker", "window_buckets", "10"),
    ("breaker", "minimum_calls", "10"),
    ("breaker", "open", "\"5s\""),
    ("breaker", "open_max", "\"60s\""),
    ("breaker", "open_multiplier", "2.0"),
    ("breaker", "permitted_probes", "3"),
    ("breaker", "max_concurrent_probes", "2"),
    ("breaker", "success_threshold", "1"),
];

/// Values no field of this config takes in every case: TOML's `nan` and
/// infinities, negatives, numbers past `u32`/`u64`, wrong types and
/// garbage durations.
const HOSTILE: &[&str] = &[
    "nan",
    "+nan",
    "-nan",
    "inf",
    "-inf",
    "-1",
    "-0.5",
    "0",
    "0.0",
    "1.5",
    "1e308",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "\"\"",
    "\"garbage\"",
    "\"-1s\"",
    "\"1.5.5s\"",
    "\"18446744073709551616s\"",
    "\"99999999999999999999y\"",
    "\"0s\"",
    "true",
    "[]",
    "[1, 2]",
    "{}",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
];

fn doc(section: &str, field: &str, value: &str) -> String {
    let table = if section.is_empty() {
        "policies.p".to_string()
    } else {
        format!("policies.p.{section}")
    };
    format!("[{table}]\n{field} = {value}\n")
}

/// The sanity of the table above: each field with its valid value loads.
#[test]
fn every_field_loads_with_a_valid_value() {
    for (section, field, value) in FIELDS {
        let text = doc(section, field, value);
        let config = from_toml(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        builds(&config).unwrap();
    }
}

proptest! {
    #![proptest_config(config())]

    /// One field with a hostile value: loaded (it was valid there, and
    /// then it builds) or refused naming that field, in TOML and in JSON
    /// (where the value has a JSON spelling).
    #[test]
    fn a_hostile_field_is_named(
        field in proptest::sample::select(FIELDS),
        value in proptest::sample::select(HOSTILE),
    ) {
        let (section, name, _) = field;
        let text = doc(section, name, value);
        match from_toml(&text) {
            Ok(config) => builds(&config)?,
            Err(e) => {
                let said = e.to_string();
                prop_assert!(!e.message.is_empty(), "{}", said);
                // The field, or for a check across fields (`total` too
                // short for the retries' backoff) the part it belongs to.
                let part = section.rsplit('.').next().filter(|p| !p.is_empty()).unwrap_or(name);
                prop_assert!(
                    e.path.contains(name) || e.message.contains(name)
                        || (e.message.contains(" [") && e.message.contains(part)),
                    "the error for {}.{} = {} does not name it: {}", section, name, value, said
                );
                if !e.path.is_empty() {
                    prop_assert!(e.path.starts_with("policies.p"), "{}", said);
                }
            }
        }
        // The same in JSON, for the values JSON can spell.
        let json_value: Option<serde_json::Value> = match value {
            "nan" | "+nan" | "-nan" | "inf" | "-inf" | "1979-05-27T07:32:00Z" | "{ a = 1 }" => None,
            v => serde_json::from_str(v).ok(),
        };
        if let Some(v) = json_value {
            let mut leaf = serde_json::Map::new();
            leaf.insert(name.to_string(), v);
            let mut node = serde_json::Value::Object(leaf);
            for part in section.split('.').filter(|s| !s.is_empty()).rev() {
                node = serde_json::json!({ part: node });
            }
            let text = serde_json::json!({ "policies": { "p": node } }).to_string();
            match from_json(&text) {
                Ok(config) => builds(&config)?,
                Err(e) => {
                    let part = section.rsplit('.').next().filter(|p| !p.is_empty()).unwrap_or(name);
                    prop_assert!(
                        e.path.contains(name) || e.message.contains(name)
                            || (e.message.contains(" [") && e.message.contains(part)),
                        "JSON {}: {}", text, e
                    );
                }
            }
        }
    }

    /// Arbitrary text, as TOML and as JSON: an answer, never a panic; an
    /// error always says something.
    #[test]
    fn any_text_is_answered(text in "\\PC{0,200}") {
        for result in [from_toml(&text), from_json(&text)] {
            match result {
                Ok(config) => builds(&config)?,
                Err(e) => prop_assert!(!e.message.is_empty()),
            }
        }
    }

    /// A valid document cut short, or with one byte replaced: never a
    /// panic, and what still loads builds.
    #[test]
    fn mangled_documents_are_answered(
        cut in 0usize..VALID_TOML.len(),
        at in 0usize..VALID_TOML.len(),
        byte in prop_oneof![Just(b'"'), Just(b'='), Just(b'['), Just(b'\n'), Just(b'-'), Just(b'9'), 0x20u8..0x7f],
    ) {
        let cut_text = &VALID_TOML[..cut];
        let mut bytes = VALID_TOML.as_bytes().to_vec();
        bytes[at] = byte;
        let changed = String::from_utf8(bytes).unwrap();
        for text in [cut_text, changed.as_str()] {
            match from_toml(text) {
                Ok(config) => builds(&config)?,
                Err(e) => prop_assert!(!e.message.is_empty()),
            }
        }
    }
}

/// Found by `a_hostile_field_is_named`: an error the breaker's (or the
/// budget's) builder raised was reported under the builder's name for
/// the field (`open_duration_max`, `window_size`) or without its section
/// (`policies.p.ratio`), which the file does not have. Now the path is
/// the file's.
#[test]
fn build_errors_use_the_files_names() {
    for (text, path) in [
        (
            "[policies.p.breaker]\nopen_max = \"0s\"\n",
            "policies.p.breaker.open_max",
        ),
        (
            "[policies.p.breaker]\nopen = \"0s\"\n",
            "policies.p.breaker.open",
        ),
        (
            "[policies.p.breaker]\nopen_multiplier = 0.5\n",
            "policies.p.breaker.open_multiplier",
        ),
        (
            "[policies.p.breaker]\nwindow_calls = 0\n",
            "policies.p.breaker.window_calls",
        ),
        (
            "[policies.p.breaker]\nslow_call_threshold = \"0s\"\nslow_call_rate = 0.5\n",
            "policies.p.breaker.slow_call_threshold",
        ),
        (
            "[policies.p.budget]\nratio = nan\n",
            "policies.p.budget.ratio",
        ),
        (
            "[policies.p.budget]\nttl = \"0s\"\n",
            "policies.p.budget.ttl",
        ),
    ] {
        let e = from_toml(text).expect_err(text);
        assert_eq!(e.path, path, "{text}: {e}");
    }
}
