#!/usr/bin/env bash
# battlement-gate without its `http` feature (priority from any request
# type, no `http` crate): the library, its unit tests and its docs build.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test -p battlement-gate --no-default-features
