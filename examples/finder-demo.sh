#!/usr/bin/env bash
# examples/finder-demo.sh [BUILD] - a local DPR finder, driven like a cluster.
#
# Starts dpr-finder on a free loopback port with a temporary state directory,
# registers three workers (A=1, B=2, C=3) and plays libDPR's sequential
# dependency scenario with redis-cli, printing the cut after every report.
# Then it kills the finder with SIGKILL, restarts it on the same state and
# shows that the world-line and the cut survived, re-registers a worker as a
# crashed one would (new world-line, roll back to the cut) and tears down.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
FINDER=$BUILD/dpr-finder
state=$(mktemp -d)
log=$state/finder.log
pid=

cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$state"
}
trap cleanup EXIT

start() {
    : >"$log"
    "$FINDER" --listen 127.0.0.1:0 --state "$state/finder" 2>"$log" &
    pid=$!
    for _ in $(seq 100); do
        port=$(sed -nE 's/.*listening on 127\.0\.0\.1:([0-9]+).*/\1/p' "$log")
        [[ -n $port ]] && return 0
        sleep 0.05
    done
    echo "dpr-finder did not start:"; cat "$log"; exit 1
}

cli() { redis-cli -p "$port" "$@"; }
# DPR.SYNC -> world-line, max-version, then worker/version pairs of the cut
show() {
    cli DPR.SYNC | awk 'BEGIN { name[1] = "A"; name[2] = "B"; name[3] = "C" }
        NR == 1 { wl = $1 } NR == 2 { mv = $1 }
        NR > 2 && NR % 2 == 1 { w = $1 } NR > 2 && NR % 2 == 0 { cut[w] = $1 }
        END { printf "   world-line %s, max version %s, cut: A=%d B=%d C=%d\n", wl, mv, cut[1], cut[2], cut[3] }'
}
step() { echo; echo "## $*"; }

start
step "dpr-finder on 127.0.0.1:$port, state in $state/finder"
for w in 1 2 3; do echo "   DPR.WORKER.ADD $w -> $(cli DPR.WORKER.ADD $w | tr '\n' ' ')"; done
wl=$(cli DPR.SYNC | head -n 1)
step "A1"; cli DPR.REPORT "$wl" 1 1 >/dev/null; show
step "B1 <- A1"; cli DPR.REPORT "$wl" 2 1 1 1 >/dev/null; show
step "A2 <- {A1, B2}  (B2 not durable yet: the cut stays)"; cli DPR.REPORT "$wl" 1 2 1 1 2 2 >/dev/null; show
step "B2 <- {B1, C2}  (C2 not durable yet: the cut stays)"; cli DPR.REPORT "$wl" 2 2 2 1 3 2 >/dev/null; show
step "C2 <- A2  (closes the cycle: everything commits)"; cli DPR.REPORT "$wl" 3 2 1 2 >/dev/null; show

step "kill -9 the finder and restart it on the same state"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=
start; show

step "worker B crashed and registers again: new world-line, restore its cut version"
echo "   DPR.WORKER.ADD 2 -> $(cli DPR.WORKER.ADD 2 | tr '\n' ' ')  (world-line, version to restore)"
show
step "a report from the old world-line above the cut is refused"
echo "   $(cli DPR.REPORT "$wl" 1 3 || true)"
echo
echo "demo finished: the finder kept its world-line and cut across kill -9"
