#!/usr/bin/env bash
# Mutation testing of the layers' state logic with cargo-mutants (issue 19).
#
# Slow (minutes per file on two cores) and not part of CI. Each crate is
# mutated in a copy of the tree that cargo-mutants makes (never
# --in-place: others may be editing this checkout); results land in
# target/mutants/<crate>/mutants.out (caught.txt, missed.txt,
# timeout.txt, unviable.txt, outcomes.json).
#
# usage: scripts/mutants.sh [crate[:file,file...]]...
#   scripts/mutants.sh                         # every crate below, its state files
#   scripts/mutants.sh breaker                 # the breaker's state files
#   scripts/mutants.sh retry:src/budget.rs     # one file
# env:
#   MUTANTS_JOBS      parallel mutants (default 1; each builds in its own copy)
#   MUTANTS_TIMEOUT   per-mutant test timeout in seconds (default 120)
#   MUTANTS_BUILD_TIMEOUT  per-mutant build timeout in seconds (default 600)
#   MUTANTS_ARGS      more cargo-mutants arguments (e.g. "--shard 1/4", "--iterate")
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-mutants >/dev/null 2>&1; then
    cargo install cargo-mutants --locked
fi

# The state logic of each crate: where a wrong comparison or a dropped
# update changes behaviour rather than formatting.
declare -A FILES=(
    [breaker]="src/state.rs,src/window.rs"
    [retry]="src/budget.rs,src/backoff.rs"
    [gate]="src/gate.rs,src/governor.rs,src/throttle.rs"
    [deadline]="src/future.rs,src/service.rs,src/http/parse.rs"
    [limit]="src/algorithm.rs,src/slots.rs,src/keyed.rs"
)

if [ $# -eq 0 ]; then
    set -- breaker retry gate deadline limit
fi

jobs=${MUTANTS_JOBS:-1}
timeout=${MUTANTS_TIMEOUT:-120}
build_timeout=${MUTANTS_BUILD_TIMEOUT:-600}
status=0
for spec in "$@"; do
    crate=${spec%%:*}
    files=${FILES[$crate]:-}
    if [ "$spec" != "$crate" ]; then
        files=${spec#*:}
    fi
    if [ -z "$files" ]; then
        echo "unknown crate \`$crate\` (one of: ${!FILES[*]})" >&2
        exit 2
    fi
    args=()
    IFS=, read -r -a list <<<"$files"
    for f in "${list[@]}"; do
        args+=(--file "crates/battlement-$crate/$f")
    done
    out="target/mutants/$crate"
    if [ "$spec" != "$crate" ]; then
        out="target/mutants/$crate-$(echo "$files" | sed 's/src\///g; s/[\/,.]/_/g')"
    fi
    mkdir -p "$out"
    echo "== battlement-$crate: $files -> $out/mutants.out"
    # --lib --tests: unit and integration tests, no doctests (they
    # rebuild per mutant and test examples, not state logic).
    # shellcheck disable=SC2086
    cargo mutants \
        --package "battlement-$crate" "${args[@]}" \
        --jobs "$jobs" \
        --timeout "$timeout" \
        --build-timeout "$build_timeout" \
        --output "$out" \
        --cargo-test-arg=--lib --cargo-test-arg=--tests \
        ${MUTANTS_ARGS:-} || status=$?
    # cargo-mutants exits 2 when mutants were missed, 3 on timeouts:
    # report and go on with the next crate.
done
exit "$status"
