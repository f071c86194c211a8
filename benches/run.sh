#!/usr/bin/env bash
# The whole performance record in one command: every criterion bench, the
# paused-clock scenarios and the HTTP bench, then the README's tables and
# benches/overhead.png regenerated from their output.
#
#   benches/run.sh           full mode (about 30 minutes on 2 cores)
#   benches/run.sh --quick   quick mode (a few minutes, mostly the build):
#                            criterion's short warm-up and measurement,
#                            the scenarios' and HTTP bench's short versions
#
# Saves, under benches/results/: machine.txt (the CPU, cores, kernel,
# date), output.txt (the benches' `alloc`, `scenario`, `size` lines) and,
# through the report bin, times.txt (criterion's median per row). The
# whole log goes to target/bench-output.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

criterion_args=(--noplot)
if ((quick)); then
    criterion_args+=(--warm-up-time 0.2 --measurement-time 0.5 --sample-size 10)
    export BATTLEMENT_BENCH_QUICK=1
fi

# oha for the HTTP bench, installed from crates.io when missing.
bash benches/http.sh --install
export OHA="${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}"

results=benches/results
mkdir -p "$results" target
model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
mode=""
((quick)) && mode=", quick mode"
echo "$model, $(nproc) cores, $(uname -sr), $(rustc --version | cut -d' ' -f1-2), $(date -u +%Y-%m-%d)$mode" \
    > "$results/machine.txt"

log=target/bench-output.txt
cargo bench -p battlement-benches --benches -- "${criterion_args[@]}" 2>&1 | tee "$log"
grep -E "^(alloc|scenario|size|amplification) |^http: " "$log" > "$results/output.txt" || true

cargo run -q -p battlement-benches --bin report
