# bench/lib.sh - shell helpers of the bench/*.sh scripts (sourced; needs $PY).

# free_port: a TCP port of 127.0.0.1 free right now
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_cleanup: the EXIT trap of the bench/*.sh scripts: every pid in PIDS
# gets SIGTERM, a moment to exit, then SIGKILL; $TMP is removed.
bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
