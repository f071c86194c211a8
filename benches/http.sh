#!/usr/bin/env bash
# The HTTP bench: an axum route with and without the full `Policy` on
# 127.0.0.1, loaded by `oha` (installed from crates.io when missing) for a
# bounded time. Prints each route's requests/s and p99 and what the policy
# costs in throughput (the target: <= 3 %).
#
#   benches/http.sh            3 alternating rounds of 10 s per route
#   benches/http.sh --quick    1 round of 2 s per route
#   benches/http.sh --install  only install oha when missing
#
# OHA=/path/to/oha picks the binary; BATTLEMENT_HTTP_CONNECTIONS the
# connections (default 50). See benches/benches/http.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${OHA:-}" ]] && ! command -v oha > /dev/null; then
    echo "http.sh: installing oha (cargo install oha --locked)" >&2
    cargo install oha --locked
fi
export OHA="${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}"

case "${1:-}" in
    --install) exit 0 ;;
    --quick) export BATTLEMENT_BENCH_QUICK=1 ;;
esac

cargo bench -p battlement-benches --bench http
