#!/usr/bin/env bash
# Smoke-run every bench of battlement-benches once (criterion's test mode:
# each row runs once; the scenarios run their short version; the HTTP
# bench serves one request per route, without oha). The test profile
# `cargo test --workspace` has already built, and `--workspace` keeps its
# features, so only the bench binaries are compiled here: a release build
# of the package would add about 4 minutes cold on CI's 2 cores. The
# measured record is `benches/run.sh`; see benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --workspace --bench '*'
