#!/usr/bin/python3
"""bench/resize.py - what a resize of a dpr-kv deployment costs (issue 9).

    make bench-resize            (= bench/resize.py build [KEYS])

Starts a dpr-finder and 3 dpr-kv shards (checkpoints every 100 ms) on
loopback, gives them layout 1, loads KEYS keys (default 1,000,000) of
64-byte values, starts a 4th shard and resizes 3 -> 4 with the steps the
agent drives (tests/lib/dprtest.py, resize_shards; docs/dpr-kv.md,
"Layouts and resizing"), while a DPR session (the Python client) keeps
writing one key at a time. It reports:

  - the resize's total time, PREPARE to the last COMMIT (the deployment
    is paused all that time: commands with keys get TRYAGAIN);
  - the longest gap between two answered operations of the session
    during the resize: the pause a client sees, including its retry
    back-off (10 to 200 ms, doubling);
  - the keys moved, and the migration children's time and rate.

Writes the "## Resize" section of docs/benchmarks.md (other sections are
kept). Not a test: no timed assertions.
"""
import os
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "python-dpr"))

import benchdoc  # noqa: E402
import dprtest  # noqa: E402
from dpr.route import shard_of  # noqa: E402

VALUE = b"v" * 64


def load(shards, keys):
    """Every key on its owner, MSET in pipelined chunks."""
    n = len(shards)
    clients = [s.client() for s in shards]
    pipes = [c.pipeline(transaction=False) for c in clients]
    pending = [[] for _ in shards]
    for i in range(keys):
        k = b"key:%012d" % i
        o = shard_of(k, n)
        pending[o] += [k, VALUE]
        if len(pending[o]) >= 2000:
            pipes[o].execute_command("MSET", *pending[o])
            pending[o] = []
            if len(pipes[o].command_stack) >= 16:
                pipes[o].execute()
    for o in range(n):
        if pending[o]:
            pipes[o].execute_command("MSET", *pending[o])
        pipes[o].execute()


class Prober(threading.Thread):
    """A DPR session setting probe keys one at a time; records when each
    operation was answered."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client = client
        self.stop = threading.Event()
        self.times = []
        self.error = None

    def run(self):
        try:
            with self.client.session() as s:
                while not self.stop.is_set():
                    s.set("probe:%d" % s.next_seq, "x")
                    self.times.append(time.monotonic())
        except Exception as e:  # noqa: BLE001 - reported
            self.error = e

    def longest_gap(self, t0, t1):
        ts = [t for t in self.times if t0 - 1 <= t <= t1 + 1]
        return max((b - a for a, b in zip(ts, ts[1:])), default=float("nan"))


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    keys = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    os.environ.setdefault("DPR_BUILD", os.path.abspath(build))
    base = tempfile.mkdtemp(prefix="bench-resize.", dir=os.path.join(ROOT, build))
    cluster = dprtest.Cluster(base)
    try:
        cluster.start_finder()
        shards = cluster.start_shards(3, interval_ms=100, first_worker=1)
        dprtest.set_layout(shards)
        t = time.monotonic()
        load(shards, keys)
        load_s = time.monotonic() - t
        print("loaded %d keys in %.1f s" % (keys, load_s), file=sys.stderr)
        dprtest.wait_for(lambda: all(s.info()["dpr_layout_committed"] == 1 for s in shards),
                         120, "the load committed")
        grown = shards + cluster.start_shards(1, interval_ms=100, first_worker=4)
        prober = Prober(cluster.client())
        prober.start()
        time.sleep(1)
        t0 = time.monotonic()
        total = dprtest.resize_shards(shards, grown, 2)
        t1 = time.monotonic()
        time.sleep(1)
        prober.stop.set()
        prober.join(60)
        if prober.error:
            raise prober.error
        infos = [s.info() for s in shards]
        moved = sum(i["dpr_migrate_keys"] for i in infos)
        mig_ms = max(i["dpr_migrate_ms"] for i in infos)
        mig_bytes = sum(i["dpr_migrate_bytes"] for i in infos)
        gap = prober.longest_gap(t0, t1)
        sizes = [s.client().dbsize() for s in grown]
        assert sum(sizes) == keys + len(prober.times), (sizes, keys, len(prober.times))
    finally:
        cluster.stop_all()
    write_doc(build, keys, load_s, total, gap, moved, mig_ms, mig_bytes, sizes)


def write_doc(build, keys, load_s, total, gap, moved, mig_ms, mig_bytes, sizes):
    load1 = open("/proc/loadavg").read().split()[:3]
    section = """## Resize

- Command: `make bench-resize` (runs `bench/resize.py %s %d`)
- Machine: %s
- Date: %s
- Load average (1, 5, 15 min) after the run: %s

3 dpr-kv shards (checkpoints every 100 ms) holding %s keys of 64-byte
values (loaded in %.1f s) grow to 4: the steps of docs/dpr-kv.md, "Layouts
and resizing", driven as the agent does, while a DPR session (the Python
client) sets one key at a time.

| what | value |
| --- | --- |
| keys moved (to the new shard) | %s (%.1f %%) |
| resize, PREPARE to the last COMMIT (the deployment's pause) | %.2f s |
| longest gap between two answers of the session during it | %.2f s |
| migration children (longest), and bytes sent | %.2f s, %.1f MB (%.0f MB/s) |
| keys per shard after it | %s |

The pause is two rounds of checkpoints (the paused state, then the
copies, must be in the cut; a dpr-kv checkpoint is a full snapshot of the
shard today, so they grow with the data: issue 13 makes them cost what was
written) plus the copy, plus the agent's polling (every 100 ms); the
session's gap adds its retry back-off (up to 200 ms). The copy sends one
`DPR.IMPORT` of up to 4096 keys (1 MiB) per command and target, 16 in
flight (512 keys and 8 in flight took 1.45 s here, 14 MB/s).
""" % (build, keys, benchdoc.machine(), benchdoc.now(), " ".join(load1),
       "{:,}".format(keys), load_s, "{:,}".format(moved), 100.0 * moved / max(keys, 1), total,
       gap, mig_ms / 1000.0, mig_bytes / 1e6, mig_bytes / 1e6 / max(mig_ms / 1000.0, 1e-9),
       ", ".join("{:,}".format(s) for s in sizes))
    benchdoc.write_section("Resize", section)


if __name__ == "__main__":
    main()
