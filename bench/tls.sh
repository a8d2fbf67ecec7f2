#!/usr/bin/env bash
# bench/tls.sh [BUILD] - `make bench-tls`: dpr-kv's plain port against its TLS
# port (docs/tls.md), the same server in the same run, with Debian's
# redis-benchmark (--tls, client certificates required as by default).
#
# Starts a dpr-finder and one dpr-kv with --port and --tls-port on free
# loopback ports (state in a temporary directory in $BUILD), certificates
# from `dprctl pki`. Runs `redis-benchmark -t set,get` against the plain
# and the TLS port alternately, ROUNDS times (the machine is shared: each
# port's best round counts), and prints requests/s and TLS/plain per test,
# and dpr-kv's own CPU time per request (user + system, /proc/PID/stat; the
# least of the rounds): on a small machine redis-benchmark's TLS shares the
# cores with the server, so the throughput ratio also prices the client's
# encryption, the CPU time only the server's.
# The goal (issue 14): TLS >= 0.7x plain. Everything started is killed at
# the end (trap), by PID.
#
# Environment: TLS_BENCH_REQUESTS (200000), TLS_BENCH_ROUNDS (3),
# TLS_BENCH_CLIENTS (16), TLS_BENCH_PIPELINE (16), TLS_BENCH_SIZE (64).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
PY=/usr/bin/python3
N=${TLS_BENCH_REQUESTS:-200000}
ROUNDS=${TLS_BENCH_ROUNDS:-3}
CLIENTS=${TLS_BENCH_CLIENTS:-16}
PIPE=${TLS_BENCH_PIPELINE:-16}
SIZE=${TLS_BENCH_SIZE:-64}
KV=$BUILD/dpr-kv
FINDER=$BUILD/dpr-finder

for bin in "$KV" "$FINDER"; do
    [[ -x $bin ]] || { echo "bench/tls.sh: $bin is missing (make all)" >&2; exit 1; }
done
command -v redis-benchmark >/dev/null || { echo "bench/tls.sh: redis-benchmark is missing (make deps)" >&2; exit 1; }

mkdir -p "$BUILD"
TMP=$(mktemp -d "$BUILD/bench-tls.XXXXXX")
TMP=$(cd "$TMP" && pwd)
PIDS=()
source bench/lib.sh  # free_port, bench_cleanup
trap bench_cleanup EXIT
trap 'exit 130' INT TERM


# wait_for FILE TEXT
wait_for() {
    local i
    for ((i = 0; i < 300; i++)); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench/tls.sh: no '$2' in $1:" >&2
    cat "$1" >&2
    exit 1
}

PKI=$TMP/tls
PYTHONPATH=python-dpr "$PY" python-dpr/bin/dprctl pki init --dir "$PKI" --cluster bench >/dev/null
PYTHONPATH=python-dpr "$PY" python-dpr/bin/dprctl pki issue node --node kv --ip 127.0.0.1 \
    --dir "$PKI" >/dev/null
PYTHONPATH=python-dpr "$PY" python-dpr/bin/dprctl pki issue client --name bench \
    --dir "$PKI" >/dev/null

FPORT=$(free_port)
"$FINDER" --listen "127.0.0.1:$FPORT" --state "$TMP/finder" >"$TMP/finder.log" 2>&1 &
PIDS+=($!)
wait_for "$TMP/finder.log" "listening on"
PORT=$(free_port)
TPORT=$(free_port)
"$KV" --listen "127.0.0.1:$PORT" --tls-port "$TPORT" --finder "127.0.0.1:$FPORT" --worker 1 \
    --dir "$TMP/kv" --tls-cert-file "$PKI/kv.crt" --tls-key-file "$PKI/kv.key" \
    --tls-ca-cert-file "$PKI/ca.crt" --tls-crl-file "$PKI/ca.crl" >"$TMP/kv.log" 2>&1 &
PIDS+=($!)
wait_for "$TMP/kv.log" "(TLS, client certificates"

KVPID=${PIDS[1]}
# cpu_ticks: dpr-kv's user + system CPU time so far, in clock ticks
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$KVPID/stat"
}

# run PORT [TLS flags...]: prints "TEST rps server-CPU-us-per-request" for
# SET and GET (one redis-benchmark run per test, so that dpr-kv's CPU time
# is the test's own)
run() {
    local port=$1 test t0 t1 rps
    shift
    for test in set get; do
        t0=$(cpu_ticks)
        rps=$(redis-benchmark -h 127.0.0.1 -p "$port" "$@" -t "$test" -n "$N" -c "$CLIENTS" \
            -P "$PIPE" -d "$SIZE" -r 100000 --csv | "$PY" -c '
import csv, sys
for row in csv.reader(sys.stdin):
    if row and row[0] in ("SET", "GET"):
        print(row[1])')
        t1=$(cpu_ticks)
        echo "${test^^} $rps $("$PY" -c "import os; print((($t1) - ($t0)) * 1e6 / os.sysconf('SC_CLK_TCK') / $N)")"
    done
}

TLSFLAGS=(--tls --cacert "$PKI/ca.crt" --cert "$PKI/bench.crt" --key "$PKI/bench.key")
: >"$TMP/results"
for ((r = 1; r <= ROUNDS; r++)); do
    run "$PORT" | sed 's/^/plain /' >>"$TMP/results"
    run "$TPORT" "${TLSFLAGS[@]}" | sed 's/^/tls /' >>"$TMP/results"
done
grep -q "TLS refused" "$TMP/kv.log" && { echo "bench/tls.sh: a TLS client was refused:" >&2; grep "TLS refused" "$TMP/kv.log" >&2; exit 1; }

echo "dpr-kv plain vs TLS: redis-benchmark -t set,get -n $N -c $CLIENTS -P $PIPE -d $SIZE -r 100000, best of $ROUNDS rounds"
"$PY" - "$TMP/results" <<'EOF'
import sys
best, cpu = {}, {}
for line in open(sys.argv[1]):
    port, test, rps, us = line.split()
    key = (port, test)
    best[key] = max(best.get(key, 0.0), float(rps))
    cpu[key] = min(cpu.get(key, float("inf")), float(us))
print("| test | plain req/s | TLS req/s | TLS / plain | dpr-kv CPU us/request plain | TLS |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
ok = True
for test in ("SET", "GET"):
    p, t = best[("plain", test)], best[("tls", test)]
    ok = ok and t >= 0.7 * p
    print("| %s | %.0f | %.0f | %.2f | %.2f | %.2f |"
          % (test, p, t, t / p, cpu[("plain", test)], cpu[("tls", test)]))
print("goal TLS >= 0.7x plain: %s" % ("met" if ok else "NOT met"))
EOF
