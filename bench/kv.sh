#!/usr/bin/env bash
# bench/kv.sh [BUILD] - `make bench-kv`: the same load against Redis and dpr-kv.
#
# Starts, on loopback ports chosen free and with state under a temporary
# directory in $BUILD (the repository's disk, not a tmpfs /tmp):
#   redis-server without persistence (--save "" --appendonly no),
#   redis-server --appendonly yes --appendfsync always,
#   redis-server --appendonly yes --appendfsync everysec,
#   dpr-kv driven with plain RESP commands (its own dpr-finder),
#   dpr-kv with DPR sessions, 1 shard (its own dpr-finder), once with full
#   images as checkpoints (--checkpoint-mode full) and once with change logs
#   (--checkpoint-mode log),
#   dpr-kv with DPR sessions, 2 shards (one dpr-finder), strict and relaxed
#   sessions,
#   dpr-redis (redis-server behind the DPR proxy, docs/dpr-redis.md) driven
#   with plain RESP commands and with DPR sessions, 1 shard (each its own
#   dpr-finder): against redis-server alone, the proxy's cost; against
#   dpr-kv, the other implementation under the same load.
# The dpr-kv rows other than "full images" run in log mode.
# Each server is prefilled with every key once, then $BUILD/dpr-bench runs
# the same load against each configuration, ROUNDS times round-robin (the
# machine is shared and noisy: the row shown is each configuration's best
# round by ops/s, the one least disturbed by other jobs). Then bench/kv_big.py
# runs the 10,000,000-key rows (both checkpoint modes, one large server at a
# time; disk bytes, peak memory, restart time). bench/kv_report.py makes the
# tables and checks the goals; this script writes the "## dpr-kv" section of
# docs/benchmarks.md (other sections are kept).
# Everything started is killed at the end (trap), by PID.
#
# Environment: KV_BENCH_SECONDS (5, of which 1 s warm-up), KV_BENCH_ROUNDS (4),
# KV_BENCH_CKPT_MS (dpr-kv --checkpoint-interval-ms, 100), KV_BENCH_LOAD
# (dpr-bench load flags, default below), KV_BENCH_NO_DOC=1 (do not touch
# docs/benchmarks.md), KV_BENCH_BIG=0 (skip the 10 M-key rows, for quick
# runs), KV_BENCH_BIG_KEYS (10000000), KV_BENCH_BIG_SECONDS (90: in log mode
# a compaction of 10 M keys starts after about 690 MB of change logs, 70 s
# of this load at 200 k ops/s; a run without one shows it in the table).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DOC=docs/benchmarks.md
PY=/usr/bin/python3
SECONDS_PER_RUN=${KV_BENCH_SECONDS:-5}
ROUNDS=${KV_BENCH_ROUNDS:-4}
CKPT_MS=${KV_BENCH_CKPT_MS:-100}
BIG=${KV_BENCH_BIG:-1}
BIG_KEYS=${KV_BENCH_BIG_KEYS:-10000000}
BIG_SECONDS=${KV_BENCH_BIG_SECONDS:-90}
LOAD=${KV_BENCH_LOAD:---connections 16 --pipeline 16 --threads 1 --read-ratio 0.5 --keys 100000 --value-size 64 --dist uniform}
BENCH=$BUILD/dpr-bench
KV=$BUILD/dpr-kv
RP=$BUILD/dpr-redis
FINDER=$BUILD/dpr-finder

for bin in "$BENCH" "$KV" "$RP" "$FINDER"; do
    [[ -x $bin ]] || { echo "bench/kv.sh: $bin is missing (make all, make $bin)" >&2; exit 1; }
done
for bin in redis-server redis-cli; do
    command -v "$bin" >/dev/null || { echo "bench/kv.sh: $bin is missing (make deps)" >&2; exit 1; }
done

mkdir -p "$BUILD"
TMP=$(mktemp -d "$BUILD/bench-kv.XXXXXX")
TMP=$(cd "$TMP" && pwd)
PIDS=()
source bench/lib.sh  # free_port, bench_cleanup
trap bench_cleanup EXIT
trap 'exit 130' INT TERM


# wait_log FILE: prints the port of the first "listening on ADDR:PORT" line
wait_log() {
    local f=$1 i line
    for ((i = 0; i < 300; i++)); do
        line=$(grep -o 'listening on [^ ]*' "$f" 2>/dev/null | head -n 1 || true)
        if [[ -n $line ]]; then
            echo "${line##*:}"
            return 0
        fi
        sleep 0.05
    done
    echo "bench/kv.sh: no 'listening on' in $f:" >&2
    cat "$f" >&2
    return 1
}

declare -A SPORT SPID # server name -> port, pid

start_redis() { # start_redis NAME EXTRA-ARGS...
    local name=$1
    shift
    local port
    port=$(free_port)
    mkdir -p "$TMP/$name"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$TMP/$name" --daemonize no \
        --logfile "$TMP/$name/redis.log" --save "" "$@" &
    PIDS+=($!)
    SPID[$name]=$!
    for ((i = 0; i < 200; i++)); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.05
    done
    redis-cli -p "$port" ping >/dev/null || { echo "redis $name did not start" >&2; exit 1; }
    SPORT[$name]=$port
}

start_finder() { # start_finder NAME
    local name=$1
    "$FINDER" --listen 127.0.0.1:0 --state "$TMP/$name" 2>"$TMP/$name.log" &
    PIDS+=($!)
    local port
    port=$(wait_log "$TMP/$name.log") || exit 1
    SPORT[$name]=$port
}

start_kv() { # start_kv NAME FINDER-PORT WORKER MODE (full or log) [PROGRAM]
    local name=$1 fport=$2 worker=$3 mode=$4 prog=${5:-$KV}
    "$prog" --listen 127.0.0.1:0 --finder "127.0.0.1:$fport" --worker "$worker" \
        --dir "$TMP/$name" --checkpoint-interval-ms "$CKPT_MS" --checkpoint-mode "$mode" \
        2>"$TMP/$name.log" &
    PIDS+=($!)
    SPID[$name]=$!
    local port
    port=$(wait_log "$TMP/$name.log") || exit 1
    SPORT[$name]=$port
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "starting servers under $TMP" >&2
start_redis redis_none --appendonly no
start_redis redis_always --appendonly yes --appendfsync always
start_redis redis_everysec --appendonly yes --appendfsync everysec
start_finder finder_plain
start_kv kv_plain "${SPORT[finder_plain]}" 1 log
start_finder finder_one
start_kv kv_one "${SPORT[finder_one]}" 1 full
start_finder finder_one_log
start_kv kv_one_log "${SPORT[finder_one_log]}" 1 log
start_finder finder_two
start_kv kv_two_a "${SPORT[finder_two]}" 1 log
start_kv kv_two_b "${SPORT[finder_two]}" 2 log
# dpr-redis: its checkpoints are full RDB images (BGSAVE); its pids are the
# proxy's and its redis-server child's (which reaps its own BGSAVE children)
start_finder finder_rp_plain
start_kv rp_plain "${SPORT[finder_rp_plain]}" 1 full "$RP"
start_finder finder_rp_one
start_kv rp_one "${SPORT[finder_rp_one]}" 1 full "$RP"
rp_child() { redis-cli -p "${SPORT[$1]}" info dpr | tr -d '\r' | sed -n 's/^dpr_redis_pid://p'; }
RP_PLAIN_PIDS="${SPID[rp_plain]} $(rp_child rp_plain)"
RP_ONE_PIDS="${SPID[rp_one]} $(rp_child rp_one)"

# name | label | dpr-bench target flags | server pids | ports (memory)
CONFIGS=(
    "redis_none|redis-server, no persistence|--mode plain --server 127.0.0.1:${SPORT[redis_none]}|${SPID[redis_none]}|${SPORT[redis_none]}"
    "redis_always|redis-server, appendfsync always|--mode plain --server 127.0.0.1:${SPORT[redis_always]}|${SPID[redis_always]}|${SPORT[redis_always]}"
    "redis_everysec|redis-server, appendfsync everysec|--mode plain --server 127.0.0.1:${SPORT[redis_everysec]}|${SPID[redis_everysec]}|${SPORT[redis_everysec]}"
    "kv_plain|dpr-kv, plain RESP (no sessions)|--mode plain --server 127.0.0.1:${SPORT[kv_plain]}|${SPID[kv_plain]}|${SPORT[kv_plain]}"
    "dpr_one|dpr-kv, DPR sessions, 1 shard, full images|--mode dpr --finder 127.0.0.1:${SPORT[finder_one]} --shard 127.0.0.1:${SPORT[kv_one]}|${SPID[kv_one]}|${SPORT[kv_one]}"
    "dpr_one_log|dpr-kv, DPR sessions, 1 shard, change logs|--mode dpr --finder 127.0.0.1:${SPORT[finder_one_log]} --shard 127.0.0.1:${SPORT[kv_one_log]}|${SPID[kv_one_log]}|${SPORT[kv_one_log]}"
    "dpr_two|dpr-kv, DPR sessions, 2 shards|--mode dpr --finder 127.0.0.1:${SPORT[finder_two]} --shard 127.0.0.1:${SPORT[kv_two_a]} --shard 127.0.0.1:${SPORT[kv_two_b]}|${SPID[kv_two_a]} ${SPID[kv_two_b]}|${SPORT[kv_two_a]} ${SPORT[kv_two_b]}"
    "dpr_two_relaxed|dpr-kv, DPR sessions, 2 shards, relaxed|--mode dpr --relaxed --finder 127.0.0.1:${SPORT[finder_two]} --shard 127.0.0.1:${SPORT[kv_two_a]} --shard 127.0.0.1:${SPORT[kv_two_b]}|${SPID[kv_two_a]} ${SPID[kv_two_b]}|${SPORT[kv_two_a]} ${SPORT[kv_two_b]}"
    "rp_plain|dpr-redis, plain RESP (no sessions)|--mode plain --server 127.0.0.1:${SPORT[rp_plain]}|$RP_PLAIN_PIDS|${SPORT[rp_plain]}"
    "rp_one|dpr-redis, DPR sessions, 1 shard|--mode dpr --finder 127.0.0.1:${SPORT[finder_rp_one]} --shard 127.0.0.1:${SPORT[rp_one]}|$RP_ONE_PIDS|${SPORT[rp_one]}"
)

RAW=$TMP/results.txt
: >"$RAW"
for cfg in "${CONFIGS[@]}"; do
    IFS='|' read -r name label _ <<<"$cfg"
    echo "LABEL $name $label" >>"$RAW"
done
[[ $BIG == 1 ]] && printf 'LABEL dpr_big_full dpr-kv, DPR sessions, 1 shard, full images\nLABEL dpr_big_log dpr-kv, DPR sessions, 1 shard, change logs\n' >>"$RAW"

used_memory() { # used_memory PORTS...: sum of INFO used_memory and of DBSIZE
    local mem=0 keys=0 p m k
    for p in "$@"; do
        m=$(redis-cli -p "$p" info memory | tr -d '\r' | sed -n 's/^used_memory://p')
        k=$(redis-cli -p "$p" dbsize | tr -d '\r')
        mem=$((mem + m))
        keys=$((keys + k))
    done
    echo "$mem $keys"
}

cpu_ticks() { # utime+stime+cutime+cstime of PIDS (cutime: waited-for checkpoint children)
    local sum=0 pid t
    for pid in "$@"; do
        t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat")
        sum=$((sum + t))
    done
    echo "$sum"
}

disk_bytes() { # write_bytes of PIDS (/proc/PID/io: reaped children included)
    local sum=0 pid t
    for pid in "$@"; do
        t=$(sed -n 's/^write_bytes: //p' "/proc/$pid/io")
        sum=$((sum + t))
    done
    echo "$sum"
}

# memory when empty, then prefill each store once (2-shard stores once for both rows)
declare -A MEM0
for cfg in "${CONFIGS[@]}"; do
    IFS='|' read -r name _ target _ ports <<<"$cfg"
    if [[ -z ${MEM0[$ports]:-} ]]; then
        # shellcheck disable=SC2086
        MEM0[$ports]=$(used_memory $ports)
        # shellcheck disable=SC2086
        "$BENCH" $target $LOAD --prefill-only --quiet
    fi
    echo "MEM0 $name ${MEM0[$ports]}" >>"$RAW"
done

echo "running $ROUNDS round(s) of ${SECONDS_PER_RUN}s per configuration" >&2
for ((round = 1; round <= ROUNDS; round++)); do
    for cfg in "${CONFIGS[@]}"; do
        IFS="|" read -r name _ target pids _ <<<"$cfg"
        # shellcheck disable=SC2086
        c0=$(cpu_ticks $pids)
        # shellcheck disable=SC2086
        d0=$(disk_bytes $pids)
        # shellcheck disable=SC2086
        line=$("$BENCH" $target $LOAD --duration "$SECONDS_PER_RUN" --warmup 1 --quiet | grep '^RESULT')
        # shellcheck disable=SC2086
        c1=$(cpu_ticks $pids)
        # shellcheck disable=SC2086
        d1=$(disk_bytes $pids)
        echo "RUN $name $round cpu_ticks=$((c1 - c0)) disk=$((d1 - d0)) $line" >>"$RAW"
        echo "  round $round $name: $(sed -E 's/.*ops_per_sec=([0-9]+).*/\1/' <<<"$line") ops/s" >&2
    done
done
for cfg in "${CONFIGS[@]}"; do
    IFS='|' read -r name _ _ _ ports <<<"$cfg"
    # shellcheck disable=SC2086
    echo "MEM1 $name $(used_memory $ports)" >>"$RAW"
done

if [[ $BIG == 1 ]]; then
    echo "the ${BIG_KEYS}-key rows: one server at a time, ${BIG_SECONDS}s each" >&2
    "$PY" bench/kv_big.py "$BUILD" "$TMP" "$RAW" "$BIG_KEYS" "$BIG_SECONDS" "$CKPT_MS" "$LOAD"
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
# fsync cost on this disk (what appendfsync always pays per write group)
fsync_line=$(dd if=/dev/zero of="$TMP/fsync.test" bs=4096 count=200 oflag=dsync 2>&1 | tail -n 1 || true)
fsync_s=$(sed -nE 's/.* copied, ([0-9.]+) s.*/\1/p' <<<"$fsync_line")
if [[ -n $fsync_s ]]; then
    fsync_line=$(awk -v s="$fsync_s" 'BEGIN { printf "200 in %.3f s, %.2f ms each", s, s * 1000 / 200 }')
fi

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
# shellcheck disable=SC1091
os=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}")
cmd="make bench-kv"
for v in KV_BENCH_SECONDS KV_BENCH_ROUNDS KV_BENCH_CKPT_MS KV_BENCH_LOAD KV_BENCH_BIG \
    KV_BENCH_BIG_KEYS KV_BENCH_BIG_SECONDS; do
    [[ -n ${!v:-} ]] && cmd="$v=\"${!v}\" $cmd"
done
section=$TMP/section.md
"$PY" bench/kv_report.py "$RAW" "$section" "$SECONDS_PER_RUN" "$CKPT_MS" "$BIG_SECONDS"

{
    echo "## dpr-kv"
    echo
    echo "- Command: \`$cmd\` (runs \`bench/kv.sh $BUILD\`; the load generator is \`bench/dpr_bench.c\`, \`$BUILD/dpr-bench --help\` lists its flags)"
    echo "- Machine: $(nproc) CPUs (nproc), ${cpu:-unknown CPU}; ${os:-unknown OS}, Linux $(uname -r); $(redis-server --version | sed -E 's/.*v=([^ ]+).*/redis-server \1/')"
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- Load average (1, 5, 15 min) before the run: $load_before; after: $load_after"
    echo "- Disk: state under \`$BUILD/\`; 4 KiB synchronous writes (\`dd oflag=dsync\`): ${fsync_line:-unknown}"
    echo
    cat <<EOF
**Load.** \`dpr-bench $LOAD\`: every connection keeps a window of
\`--pipeline\` operations in flight (issues them, waits for all the replies,
like \`redis-benchmark -P\`); the default load is 16 connections with windows
of 16, one client thread, 50 % GET / 50 % SET of 64-byte values on 100,000
keys \`key:NNNNNNNNNNNN\` drawn uniformly. Every store is prefilled with
every key first. Each run lasts ${SECONDS_PER_RUN} s, the first
second is not measured; the configurations run round-robin, $ROUNDS rounds, and
the table shows each one's **best round** by ops/s, the one least disturbed by
other jobs (all rounds are in the last column: the 2-CPU machine is shared, so
rounds differ by tens of percent; the load average is noted above).
dpr-kv checkpoints every ${CKPT_MS} ms, as full images (\`--checkpoint-mode
full\`: a forked child writes the whole shard) in the rows that say so and in
the dpr-redis rows (Redis' \`BGSAVE\`, its only mode), else as change logs
(\`--checkpoint-mode log\`: the writes since the previous checkpoint, a full image in the background when the logs reach half the
data; docs/dpr-kv.md, "Checkpoints"). *DPR sessions*: each connection is a
strict DPR session of the C client (\`dpr/client.h\`); a window is one
\`DPR.BATCH\` per shard, and with 2 shards the second batch of a window is sent
only after the first one's answer (strict mode); *relaxed* sessions send both
at once. With 1 shard the whole window is one batch.

**How to read this.** *p50/p99/p99.9* are per operation, from the start of
its window to its reply. *commit* is the time from an operation's reply until
the session's commit point covers it (the client asks the finder for the cut,
\`DPR.SYNC\`, every millisecond); Redis has no such notion (with
\`appendfsync always\` a reply means the write is on disk). *× no
persistence* and *× appendfsync always* divide by those rows' ops/s.
*bytes/key* is the growth of \`INFO used_memory\` from the empty server to the
end, divided by \`DBSIZE\` (sum over shards; Redis counts jemalloc's
allocations, dpr-kv glibc's \`mallinfo2\`). *server CPU* is the user + system
time of the server processes during the run, including dpr-kv's checkpoint
children, per second of run (100 % = one core). *disk bytes/op* is what the
server processes wrote (\`/proc/PID/io\` \`write_bytes\`, which includes
reaped children) during the run, divided by the operations issued in it
(ops/s × the run's length). The client and the servers share the same 2
CPUs, so the client's own cost caps every row.

**10,000,000 keys** (\`bench/kv_big.py\`; \`KV_BENCH_BIG=0\` skips it): the
1-shard DPR load with \`--keys $BIG_KEYS\`, one server at a time, each with
its own finder: prefilled (pipelined SETs), left to settle (no checkpoint
pending; in log mode the idle compaction done, so the run starts from one
full image), then one run of ${BIG_SECONDS} s (long enough for a compaction
of the whole data set in log mode). *× its 100,000-key row* divides by the
1-shard row of the same mode above. *checkpoints* and *compactions* are
those completed during the run. A run may hold a compaction or not (one
starts when the change logs reach half of \`used_memory\`), so *with
compactions amortised* adds to the run's change-log bytes per operation
the full image that every such amount of logs costs (log bytes × (1 +
image size / that amount)); in full mode it is the measured value. *bytes/key* as above, *× Redis* against a
redis-server without persistence prefilled with the same keys. *peak
memory* is the highest sum of the proportional set sizes (\`Pss\`,
\`/proc/PID/smaps_rollup\`, every 0.25 s) of the server and its checkpoint
or compaction children: the pages a child's copy-on-write duplicated count,
pages shared count once. *restart*: the server is killed with SIGKILL after
the run and started again on the same directory; the time from its start
to its "ready: ... N keys" log line (recovery done, N checked).

EOF
    cat "$section"
    cat <<'EOF'

**Notes.** Redis with `appendfsync always` writes and fsyncs the append-only
file once per event-loop turn, for all the writes of that turn (group
commit); with 256 operations in flight and a disk that completes a
synchronous 4 KiB write in a fraction of a millisecond (the Disk line above),
that costs it only a small factor, so ≥ 10× that row is out of reach for this
load on this disk: the gap grows with the fsync time and shrinks with the
number of writes per turn. The 2-shard rows run two dpr-kv processes, their
checkpoint children, the finder and the client on the same 2 CPUs, and every
window of 16 becomes two batches of about 8, so each operation pays twice
the per-message costs (system calls, wake-ups, batch headers): they measure
contention on this machine, not how DPR scales over machines. A full-image
checkpoint writes the whole shard every interval, so its cost grows with
the data (back to back at 10 M keys, seconds each, and commits wait for
them); a change log costs what was written since the previous one, plus a
full image in the background every half a data set of logs.
EOF
} >"$TMP/full.md"
cat "$TMP/full.md"

if [[ ${KV_BENCH_NO_DOC:-0} != 1 ]]; then
    if [[ -f $DOC ]]; then
        awk -v secfile="$TMP/full.md" '
            function emit(   line) { while ((getline line < secfile) > 0) print line; close(secfile); done = 1 }
            /^## / { if (skip) { skip = 0; print "" } }
            /^## dpr-kv[[:space:]]*$/ { emit(); skip = 1; next }
            !skip { print }
            END { if (!done) { print ""; emit() } }
        ' "$DOC" >"$DOC.tmp"
        mv "$DOC.tmp" "$DOC"
    else
        { echo "# Benchmarks"; echo; cat "$TMP/full.md"; } >"$DOC"
    fi
    echo "wrote the dpr-kv section of $DOC" >&2
fi
