#!/usr/bin/env bash
# Model-check battlement-breaker's lock-free state machine with loom
# (crates/battlement-breaker/tests/loom.rs, and the time window's own
# model in src/window.rs). Its own cfg and target dir, so the main build is
# not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUSTFLAGS="--cfg battlement_loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p battlement-breaker --test loom --release
RUSTFLAGS="--cfg battlement_loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p battlement-breaker --lib --release window::loom
