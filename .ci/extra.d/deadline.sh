#!/usr/bin/env bash
# battlement-deadline without its `http` feature (the layers for any
# request type, no `http` crate): the library, its tests and its docs
# build, with doc warnings denied as in the main run.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test -p battlement-deadline --no-default-features
RUSTDOCFLAGS="-D warnings" cargo doc -p battlement-deadline --no-deps --no-default-features
