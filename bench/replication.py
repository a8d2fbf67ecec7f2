#!/usr/bin/python3
"""bench/replication.py - what copying checkpoints to another node costs
dpr-kv's commits (issue 11).

    make bench-replication        (= bench/replication.py build [ROUNDS])

Two dpr-agents on this machine (127.0.0.1 and .2) in one Raft cluster
(state under BUILD, the repository's disk). Two deployments of one shard,
both on n1: `local` with `replicas: 0`, `copied` with `replicas: 1` (its
checkpoints are copied to n2 before they are reported). Each shard is a
dpr-kv run from its instance file (as its unit would run it; checkpoint
interval 100 ms), prefilled; then dpr-bench drives DPR sessions against
each, ROUNDS times round-robin (default 3; the row shown is each one's
median round by commit p99). Both shards ask their agent before each
report (the `local` one is answered at once), so the difference is the
copy itself: the file streamed to n2's agent, fsync'd and renamed there.

Writes the "## Checkpoint replication" section of docs/benchmarks.md
(other sections kept). Not a test: no timed assertions.
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import benchdoc  # noqa: E402
import dprtest  # noqa: E402

LOAD = ["--connections", "16", "--pipeline", "16", "--threads", "1", "--read-ratio", "0.5",
        "--keys", "100000", "--value-size", "64", "--dist", "uniform"]
SECONDS = 5


def start_kv(agent, base, name):
    env = {k: v for k, v in agent.env(name).items() if k.startswith("DPR_")}
    env.pop("DPR_KV_AWAIT_LAYOUT", None)  # (no layout needed: one shard)
    env.pop("DPR_KV_LISTEN", None)
    d = os.path.join(base, "kv", name)
    os.makedirs(os.path.dirname(d), exist_ok=True)
    kv = dprtest.Kv(env["DPR_KV_FINDER"], int(env["DPR_KV_WORKER"]), d, d + ".log",
                    interval_ms=100, env=env, domain=env["DPR_KV_DOMAIN"])
    agent.procs.add(kv)
    return kv.wait_ready()


def bench(build, finder, kv, domain, extra):
    r = subprocess.run([os.path.join(build, "dpr-bench"), "--mode", "dpr", "--finder", finder,
                        "--shard", "127.0.0.1:%d" % kv.port, "--domain", domain,
                        "--duration", str(SECONDS), "--quiet"] + LOAD + extra,
                       capture_output=True, text=True, timeout=120)
    if "--prefill-only" in extra and r.returncode == 0:
        return {}
    m = dict(re.findall(r"(\w+)=(\S+)", r.stdout.strip().splitlines()[-1])) \
        if r.returncode == 0 and r.stdout.strip() else {}
    if not m:
        raise RuntimeError("dpr-bench failed: %s%s" % (r.stdout[-500:], r.stderr[-500:]))
    return m


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    base = tempfile.mkdtemp(prefix="dpr-bench-repl.", dir=os.path.abspath(build))
    agents = dprtest.RaftAgents(base, 2)
    results = {"local": [], "copied": []}
    try:
        agents.start()
        leader = agents.placeable()
        n1 = agents[0]
        spec = {"name": "demo", "cachestores": [
            {"name": "copied", "version": "1", "shards": 1, "replicas": 1,
             "checkpoint_interval_ms": 100, "node_selector": {"nodes": ["n1", "n2"]}},
            {"name": "local", "version": "1", "shards": 1, "replicas": 0,
             "checkpoint_interval_ms": 100, "node_selector": {"nodes": ["n1"]}}]}
        r = n1.call("apply", {"spec": spec})
        assert r["placement"] == {"copied": ["n1"], "local": ["n1"]}, r
        dprtest.wait_for(lambda: all(n in n1.call("status")["deployments"][0]["instances"][0]
                                     for n in ("main_pid",)), 10, "the instances recorded")
        finder = "%s:%d" % (leader.host, agents.finder_port)
        kvs = {d: start_kv(n1, base, d + "-0") for d in ("local", "copied")}
        for d, kv in kvs.items():
            bench(build, finder, kv, d, ["--prefill-only"])
        for _ in range(rounds):
            for d, kv in kvs.items():
                results[d].append(bench(build, finder, kv, d, []))
        copied = [n for n in os.listdir(os.path.join(agents[1].base, "state", "replicas",
                                                     "copied"))]
        assert copied, "no copies on n2"
        size = max(os.path.getsize(os.path.join(kvs["copied"].state_dir, f))
                   for f in os.listdir(kvs["copied"].state_dir) if f.endswith(".kv"))
    finally:
        agents.close()
        subprocess.run(["rm", "-rf", base], check=False)
    write_doc(build, rounds, results, size)


def median_by(rows, key):
    rows = sorted(rows, key=lambda m: float(m[key]))
    return rows[len(rows) // 2]


def write_doc(build, rounds, results, size):
    lines, p99 = [], {}
    for d in ("local", "copied"):
        m = median_by(results[d], "commit_p99_ms")
        p99[d] = float(m["commit_p99_ms"])
        lines.append("| %s | %s | %.0f | %.2f | %.2f | %s | %s |" % (
            d, "0" if d == "local" else "1 (n2)", float(m["ops_per_sec"]),
            float(m["p50_us"]) / 1000, float(m["p99_us"]) / 1000, m["commit_p50_ms"],
            m["commit_p99_ms"]))
        print(lines[-1])
    ratio = p99["copied"] / p99["local"] if p99["local"] else float("nan")
    section = """## Checkpoint replication

- Command: `make bench-replication` (runs `bench/replication.py %s %d`)
- Machine: %s
- Date: %s

Two dpr-agents on this machine in one Raft cluster; two one-shard
deployments on n1, `local` (`replicas: 0`) and `copied` (`replicas: 1`:
each checkpoint streamed to n2's agent, fsync'd there, before it is
reported); dpr-kv run from the instance files, checkpoint interval 100 ms,
100,000 keys of 64 bytes prefilled; dpr-bench `--mode dpr %s`, %d s per
round, %d rounds round-robin, the median round by commit p99 shown.
Latencies in ms.

| deployment | replicas | ops/s | p50 | p99 | commit p50 | commit p99 |
|---|---|---:|---:|---:|---:|---:|
%s

Commit p99 with one replica / without: **%.2f×** (goal ≤ 1.3×: %s). Each
checkpoint is the whole data set (%.1f MB here, ten a second) and is sent
whole, so the copy also takes CPU time from the shard on this two-core
machine (ops/s above); the incremental checkpoint format (issue 13) will
send only what changed.
""" % (build, rounds, benchdoc.machine(), benchdoc.now(), " ".join(LOAD), SECONDS, rounds,
       "\n".join(lines), ratio, "**met**" if ratio <= 1.3 else "**not met**", size / 1e6)
    benchdoc.write_section("Checkpoint replication", section)
    print("commit p99 ratio copied/local: %.2f" % ratio)


if __name__ == "__main__":
    main()
