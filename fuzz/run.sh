#!/usr/bin/env bash
# Runs every fuzz target for the given number of seconds (default 30), after replaying the
# saved regression inputs. Exits non-zero on the first crash or failure.
# FUZZ_FLAGS="--dev" builds unoptimised (CI: half the build time, slower fuzzing).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"
export RUSTC_BOOTSTRAP=1
flags=(${FUZZ_FLAGS:-})
cargo fuzz build "${flags[@]}"
for t in $(cargo fuzz list); do
    mkdir -p "corpus/$t" "regressions/$t"
    if [ -n "$(ls -A "regressions/$t")" ]; then
        cargo fuzz run "${flags[@]}" "$t" "regressions/$t"/* -- -runs=0
    fi
    log="$(mktemp)"
    if ! cargo fuzz run "${flags[@]}" "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
        >"$log" 2>&1; then
        tail -40 "$log"
        echo "crash in $t: see fuzz/artifacts/$t"
        exit 1
    fi
    echo "== fuzz $t: $(grep -E '^#[0-9]+' "$log" | tail -1)"
    rm -f "$log"
done
echo "== fuzz: every target ran ${secs}s, no crash"
