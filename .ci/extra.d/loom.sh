#!/usr/bin/env bash
# Model-check the lock-free state of the limit, retry, gate and registry
# crates with loom (each crate's tests/loom.rs; docs/reliability/loom.md
# says what each model checks). As breaker.sh: its own cfg, and the same
# target dir, so the main build is not rebuilt and the loom build is
# shared with breaker.sh. The models are small enough to be explored
# exhaustively (no preemption bound); set LOOM_MAX_PREEMPTIONS to bound
# them.
set -euo pipefail
cd "$(dirname "$0")/../.."
crates=(battlement-limit battlement-retry battlement-gate battlement-registry)
args=()
for c in "${crates[@]}"; do
    args+=(-p "$c")
done
RUSTFLAGS="--cfg battlement_loom" CARGO_TARGET_DIR=target/loom \
    cargo test "${args[@]}" --test loom --release
