#!/usr/bin/env bash
# tests/run.sh - run every test suite and print one total line at the end.
#
# tests/ has a folder per component (common, libdpr, finder, cachestore,
# agent, python-dpr, cluster) holding its unit suites (test_*.c, one binary
# each), its process tests (test_*.py, pytest) and its fuzz targets
# (fuzz_*.c, seeds in corpus/<target>/); tests/lib/ has what they share.
# Order: every unit binary (normal build, then ASan/UBSan), each component's
# pytest suite, the servers' suites again against the ASan/UBSan build, a
# short bounded run of every fuzz target. Every suite prints
# "NAME: N passed, N failed"; the last line is the total. Exit status is
# non-zero if any suite failed or did not report.
#
# Environment: BUILD (default build), PYTHON (default /usr/bin/python3),
# FUZZ_SECONDS (default 30; 0 skips the fuzz suite).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
total_pass=0
total_fail=0
summaries=()

# record SUITE PASSED FAILED
record() {
    summaries+=("$1: $2 passed, $3 failed")
    total_pass=$((total_pass + $2))
    total_fail=$((total_fail + $3))
}

run_unit() { # run_unit LABEL BINARY
    local label=$1 bin=$2 out rc line
    out=$(mktemp)
    "$bin" >"$out" 2>&1
    rc=$?
    cat "$out"
    line=$(grep -E '^[A-Za-z0-9_-]+: [0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
    rm -f "$out"
    if [[ -z $line ]]; then
        echo "$label: exited $rc without a summary line"
        record "$label" 0 1
        return
    fi
    local p f
    p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/.*, ([0-9]+) failed$/\1/' <<<"$line")
    if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi # crashed after its summary
    record "$label" "$p" "$f"
}

COMPONENTS=(common libdpr finder cachestore agent python-dpr cluster)

run_units() { # run_units LABEL BUILDDIR
    local comp bin
    for comp in "${COMPONENTS[@]}"; do
        for bin in "$2/tests/$comp"/test_*; do
            [[ -x $bin ]] || continue
            run_unit "$1/$comp/$(basename "$bin")" "$bin"
        done
    done
}

echo "== unit tests"
run_units unit "$BUILD"

echo "== unit tests under ASan/UBSan"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_units asan build/asan
unset ASAN_OPTIONS UBSAN_OPTIONS

run_pytest() { # run_pytest LABEL DIR|FILE [BUILD]
    local label=$1 dir=$2 build=${3:-$BUILD} out rc last p f
    [[ -f $dir ]] || compgen -G "$dir/test_*.py" >/dev/null || return 0
    echo "== $label (pytest $dir)"
    out=$(mktemp)
    DPR_BUILD=$build PYTHONPATH=python-dpr "$PYTHON" -m pytest -q -p no:cacheprovider "$dir" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    last=$(grep -E '[0-9]+ (passed|failed|error)' "$out" | tail -n 1)
    p=$(grep -oE "[0-9]+ passed" <<<"$last" | awk '{s += $1} END {print s + 0}')
    f=$(grep -oE '[0-9]+ (failed|errors?)' <<<"$last" | awk '{s += $1} END {print s + 0}')
    if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi
    rm -f "$out"
    record "pytest/$label" "$p" "$f"
}

# tests/cluster boots real systemd nodes in namespaces (needs root; skips
# itself otherwise)
for comp in "${COMPONENTS[@]}"; do
    run_pytest "$comp" "tests/$comp"
done
# the same servers built with ASan/UBSan (the tests fail on sanitizer reports)
if [[ -x build/asan/dpr-finder && -x build/asan/dpr-kv ]]; then
    run_pytest finder-asan tests/finder build/asan
    run_pytest cachestore-asan tests/cachestore build/asan
fi
[[ -x build/asan/tests/client-driver ]] && run_pytest libdpr-asan tests/libdpr build/asan
[[ -x build/asan/dpr-agent ]] && run_pytest agent-asan tests/agent build/asan
# the client, crash and hostile-input suites again against the second
# implementation, redis-server behind the DPR proxy (docs/dpr-redis.md)
if [[ -x $BUILD/dpr-redis ]]; then
    for t in tests/python-dpr/test_session.py tests/python-dpr/test_crash.py \
             tests/cachestore/test_hostile.py tests/cachestore/test_kv_tls.py \
             tests/python-dpr/test_tls_session.py tests/finder/test_finder_tls.py \
             tests/agent/test_agent_insttls.py; do
        DPR_TEST_IMPL=dpr-redis run_pytest "dpr-redis/$(basename "$t" .py)" "$t"
    done
fi

fuzz_bins=()
for bin in build/fuzz/fuzz_*; do
    [[ -f $bin && -x $bin ]] && fuzz_bins+=("$bin")
done
if [[ $FUZZ_SECONDS != 0 && ${#fuzz_bins[@]} -gt 0 ]]; then
    echo "== fuzz targets, ${FUZZ_SECONDS}s each"
    out=$(mktemp)
    tests/lib/fuzz.sh "$FUZZ_SECONDS" "${fuzz_bins[@]}" 2>&1 | tee "$out"
    line=$(grep -E '^fuzz: [0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
    rm -f "$out"
    if [[ -z $line ]]; then
        record fuzz 0 1
    else
        record fuzz "$(sed -E 's/fuzz: ([0-9]+) passed.*/\1/' <<<"$line")" \
            "$(sed -E 's/.*, ([0-9]+) failed$/\1/' <<<"$line")"
    fi
fi

echo "== summary"
for s in "${summaries[@]}"; do echo "$s"; done
if [[ ${#summaries[@]} -eq 0 ]]; then
    echo "no test suite ran"
    total_fail=1
fi
echo "${total_pass} passed, ${total_fail} failed"
[[ $total_fail -eq 0 ]]
