#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each briefly from the committed
# seed corpus (fuzz/corpus/<target>), failing on any crash, leak, timeout
# or out-of-memory. New inputs go to a temporary copy of the corpus, never
# to the committed one; a crash's input is left in fuzz/artifacts/<target>.
#   fuzz/smoke.sh [seconds per target (default 15)] [target ...]
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain
# take them.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
secs="${1:-15}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then mapfile -t targets < <(cargo fuzz list); fi

cargo fuzz build
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "artifacts/$t"
    cp -r "corpus/$t/." "$work/$t/"
    echo "-- $t: ${secs}s"
    # -runs bounds a run on a fast machine; the time bound is what binds here.
    if ! cargo fuzz run "$t" "$work/$t" -- -max_total_time="$secs" -runs=20000000 \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$work/$t.log" 2>&1; then
        tail -n 40 "$work/$t.log"
        echo "FAILED: fuzz target $t (crash input in fuzz/artifacts/$t)"
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec)' "$work/$t.log" || true
done
echo "fuzz smoke: ${#targets[@]} targets, no crash"
