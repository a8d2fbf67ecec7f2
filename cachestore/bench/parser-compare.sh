#!/usr/bin/env bash
# parser-compare.sh - redis-benchmark against redis-server (no persistence),
# dpr-kv, and dpr-kv built with the hiredis-reader parser; server pinned to
# CPU 1, benchmark to CPU 0. Prints the median of ROUNDS runs per case.
# Usage: cachestore/bench/parser-compare.sh [ROUNDS]   (from the repo root,
# after make ... build/dpr-kv build/dpr-finder and build-hiredis-variant.sh)
set -eu
ROUNDS=${1:-3}
BUILD=${BUILD:-build}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

"$BUILD/dpr-finder" --listen 127.0.0.1:0 --state "$tmp/finder" 2>"$tmp/finder.log" &
pids+=($!)
for _ in $(seq 50); do grep -qs 'listening on' "$tmp/finder.log" && break; sleep 0.1; done
fport=$(grep -so 'listening on .*' "$tmp/finder.log" | sed 's/.*://')

taskset -c 1 redis-server --port 7301 --save '' --appendonly no >"$tmp/redis.log" 2>&1 &
pids+=($!)
taskset -c 1 "$BUILD/dpr-kv" --listen 127.0.0.1:7302 --finder "127.0.0.1:$fport" --worker 1 --checkpoint-interval-ms "${INTERVAL:-100}" \
    --dir "$tmp/kv1" 2>"$tmp/kv1.log" &
pids+=($!)
taskset -c 1 "$BUILD/dpr-kv-hiredis" --listen 127.0.0.1:7303 --finder "127.0.0.1:$fport" \
    --worker 2 --checkpoint-interval-ms "${INTERVAL:-100}" --dir "$tmp/kv2" 2>"$tmp/kv2.log" &
pids+=($!)
sleep 1

run() { # run PORT ARGS... -> requests per second (median of ROUNDS)
    local port=$1; shift
    for _ in $(seq "$ROUNDS"); do
        taskset -c 0 redis-benchmark -p "$port" "$@" -q 2>/dev/null | tr '\r' '\n' |
            grep 'requests per second' | tail -1 | awk '{print $2}'
    done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

printf "%-28s %14s %14s %16s\n" "test" "redis-server" "dpr-kv" "dpr-kv(hiredis)"
for t in set get; do
    for P in 1 16; do
        args=(-t "$t" -n 400000 -r 100000 -c 50 -P "$P")
        printf "%-28s %14s %14s %16s\n" "$t -c 50 -P $P" "$(run 7301 "${args[@]}")" \
            "$(run 7302 "${args[@]}")" "$(run 7303 "${args[@]}")"
    done
done
args=(-t set -n 200000 -r 100000 -c 50 -P 16 -d 1024)
printf "%-28s %14s %14s %16s\n" "set 1KiB -c 50 -P 16" "$(run 7301 "${args[@]}")" \
    "$(run 7302 "${args[@]}")" "$(run 7303 "${args[@]}")"
