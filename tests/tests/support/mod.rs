//! Helpers shared by the reliability tests (`soak`, `stress`, `churn`),
//! kept beside them (`mod support;`): their counts from the environment,
//! and the check that a multi-thread runtime has no task left.

#![allow(dead_code)]

/// The count in the environment variable `name` (digits, `_` allowed as
/// a separator: `10_000_000`), or `default`.
pub(crate) fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Asserts that no task is alive on `handle`'s runtime. Every task was
/// joined, but a worker releases a task just after waking its joiner: a
/// bounded number of yields lets it, not a wall-clock wait.
pub(crate) fn assert_no_task_alive(handle: &tokio::runtime::Handle) {
    let metrics = handle.metrics();
    let mut spins = 0u32;
    while metrics.num_alive_tasks() != 0 && spins < 1_000_000 {
        // Give the workers the CPU to finish releasing.
        std::thread::yield_now();
        spins += 1;
    }
    assert_eq!(
        metrics.num_alive_tasks(),
        0,
        "tasks left alive ({spins} yields)"
    );
}
