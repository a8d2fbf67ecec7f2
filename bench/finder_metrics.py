#!/usr/bin/python3
"""bench/finder_metrics.py - the cost of dpr-finder's metrics page (issue 16).

    make bench-finder-metrics    (= bench/finder_metrics.py build [WORKERS...])

For each worker count (default 2000 and 20000) starts a dpr-finder with
--metrics-address (state under BUILD, the repository's disk), registers
that many workers in one domain and has each report a checkpoint
(pipelined DPR.WORKER.ADD and DPR.REPORT on one connection: they share
group commits), then fetches /metrics 20 times and records the page's size
and how long a fetch takes. The finder writes its page on its event loop,
so a fetch is that long a pause for its clients. Then the same with
--metrics-no-workers (the per-worker series left out).

Writes the "## Finder metrics page" section of docs/benchmarks.md (other
sections kept). Not a test: no timed assertions.
"""
import os
import statistics
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import redis  # noqa: E402

import benchdoc  # noqa: E402
import dprtest  # noqa: E402
import promscrape  # noqa: E402

DOMAIN = "bench"
FETCHES = 20
BATCH = 1000


def fill(port: int, workers: int) -> None:
    """workers registered in DOMAIN, each with one report (version 1)."""
    c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=120)
    for first in range(1, workers + 1, BATCH):
        p = c.pipeline(transaction=False)
        ids = range(first, min(first + BATCH, workers + 1))
        for w in ids:
            p.execute_command("DPR.WORKER.ADD", DOMAIN, w)
        p.execute()
        p = c.pipeline(transaction=False)
        for w in ids:
            p.execute_command("DPR.REPORT", DOMAIN, 1, w, 1)
        p.execute()
    c.close()


def fetch(addr: str) -> tuple[list[float], int]:
    """FETCHES times GET /metrics: the seconds of each, the page's bytes."""
    times, size = [], 0
    for _ in range(FETCHES):
        t = time.monotonic()
        with urllib.request.urlopen("http://%s/metrics" % addr, timeout=60) as r:
            size = len(r.read())
        times.append(time.monotonic() - t)
    return times, size


def run(build: str, workers: int, per_worker: bool) -> tuple[int, list[float], int]:
    with tempfile.TemporaryDirectory(dir=build) as d:
        args = ["--metrics-address", "127.0.0.1:0"]
        if not per_worker:
            args.append("--metrics-no-workers")
        procs = dprtest.Procs()
        try:
            f = procs.add(dprtest.Finder(os.path.join(d, "state"), os.path.join(d, "log"),
                                         args=args))
            f.wait_ready()
            fill(f.port, workers)
            addr = promscrape.address(f)
            series = sum(1 for line in urllib.request.urlopen(
                "http://%s/metrics" % addr, timeout=60).read().decode().splitlines()
                if line and not line.startswith("#"))
            times, size = fetch(addr)
        finally:
            procs.stop_all()
    return series, times, size


def main() -> None:
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    counts = [int(a) for a in sys.argv[2:]] or [2000, 20000]
    os.environ["DPR_BUILD"] = build
    rows = []
    for n in counts:
        for per_worker in (True, False):
            series, times, size = run(build, n, per_worker)
            rows.append("| %d | %s | %d | %.1f KB | %.1f | %.1f | %.1f |" % (
                n, "yes" if per_worker else "no (`--metrics-no-workers`)", series,
                size / 1e3, 1000 * min(times), 1000 * statistics.median(times),
                1000 * max(times)))
            print(rows[-1], flush=True)
    cmd = "make bench-finder-metrics"
    if sys.argv[2:]:
        cmd = "/usr/bin/python3 bench/finder_metrics.py %s %s" % (
            os.path.relpath(build, ROOT), " ".join(sys.argv[2:]))
    section = "\n".join([
        "## Finder metrics page",
        "",
        "dpr-finder's `/metrics` with every worker of one domain registered and",
        "reported once: series on the page, its size, and the time of one `GET",
        "/metrics` over loopback (%d fetches; the finder writes the page on its" % FETCHES,
        "event loop, so this is also how long its clients wait meanwhile). Each",
        "domain's state is copied once per page (three times before: that made",
        "no difference to measure here, writing the text is the cost). On a",
        "machine shared with other jobs the times vary up to 2x between runs;",
        "size and series do not. Per worker the page has three",
        "series (durable version, cut version, cut lag); `--metrics-no-workers`",
        "(agent.conf `metrics.workers = false`) leaves them out and keeps the",
        "per-domain ones (`dpr_finder_max_cut_lag_versions` among them).",
        "",
        "| workers | per-worker series | series | page | min ms | median ms | max ms |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "Machine: %s. %s. Command: `%s`." % (benchdoc.machine(), benchdoc.now(), cmd),
        ""])
    benchdoc.write_section("Finder metrics page", section)


if __name__ == "__main__":
    main()
