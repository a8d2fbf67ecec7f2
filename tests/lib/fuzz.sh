#!/usr/bin/env bash
# tests/lib/fuzz.sh SECONDS TARGET... - bounded libFuzzer runs.
#
# Each target starts from its seed corpus tests/<component>/corpus/<target>/
# (copied to a temporary directory so the tree stays clean) and runs for
# SECONDS.
# A crash, leak or sanitizer report fails the target; its reproducer is kept
# in build/fuzz/artifacts/. Ends with "fuzz: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
secs=$1
shift
pass=0
fail=0
mkdir -p build/fuzz/artifacts build/fuzz/logs
for bin in "$@"; do
    name=$(basename "$bin")
    corpus=$(mktemp -d)
    for seeds in tests/*/corpus/"$name"; do
        [[ -d $seeds ]] && cp -r "$seeds/." "$corpus/"
    done
    log=build/fuzz/logs/$name.log
    if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix=build/fuzz/artifacts/"$name"- "$corpus" >"$log" 2>&1; then
        echo "ok   $name: $(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1)"
        pass=$((pass + 1))
    else
        echo "FAIL $name (see $log):"
        tail -n 40 "$log"
        fail=$((fail + 1))
    fi
    rm -rf "$corpus"
done
echo "fuzz: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
