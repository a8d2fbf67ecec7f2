#!/usr/bin/python3
"""bench/kv_report.py - the tables and goals of `make bench-kv` (bench/kv.sh).

Usage: kv_report.py RAW OUT SECONDS CKPT_MS BIG_SECONDS

RAW holds the lines bench/kv.sh and bench/kv_big.py wrote:
  LABEL <name> <label...>          a configuration, in table order
  MEM0|MEM1 <name> <used_memory> <dbsize>   before the prefill / after the runs
  RUN <name> <round> cpu_ticks=N disk=N RESULT ...   one dpr-bench run
  BIG <name> key=value ...         a 10,000,000-key row's extras (kv_big.py)
Writes to OUT the main table, the checkpoint-mode table (when BIG rows are
there) and the goals, in markdown.
"""
import sys

raw, out = sys.argv[1], sys.argv[2]
seconds, ckpt, big_seconds = float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
CLK = 100.0  # USER_HZ

labels, runs, mem0, mem1, big = {}, {}, {}, {}, {}
for line in open(raw):
    f = line.split()
    if not f:
        continue
    if f[0] == "LABEL":
        labels[f[1]] = " ".join(f[2:])
    elif f[0] == "RUN":
        kv = dict(x.split("=", 1) for x in f[3:] if "=" in x)
        runs.setdefault(f[1], []).append(kv)
    elif f[0] in ("MEM0", "MEM1"):
        (mem0 if f[0] == "MEM0" else mem1)[f[1]] = (int(f[2]), int(f[3]))
    elif f[0] == "BIG":
        big[f[1]] = dict(x.split("=", 1) for x in f[2:])

small = [n for n in labels if not n.startswith("dpr_big_")]
bigs = [n for n in ("dpr_big_full", "dpr_big_log") if n in runs]
for n in bigs:
    labels[n] += ", {:,} keys".format(mem1[n][1])
best = {}
for n in small + bigs:
    best[n] = max(runs[n], key=lambda r: float(r["ops_per_sec"]))
    best[n]["all"] = ", ".join("%.0fk" % (float(r["ops_per_sec"]) / 1e3) for r in runs[n])


def ops(n: str) -> float:
    return float(best[n]["ops_per_sec"])


def per_key(n: str) -> float:
    m0, m1 = mem0[n], mem1[n]
    return (m1[0] - m0[0]) / m1[1] if m1[1] else float("nan")


def disk_per_op(n: str, secs: float) -> float:
    """Bytes the server processes wrote (/proc/PID/io write_bytes, reaped
    children included) per operation issued in the run (warm-up included)."""
    r = best[n]
    return float(r.get("disk", "nan")) / (ops(n) * secs)


def num(x: str) -> str:
    return x if x not in ("-", "-1.00") else "–"


rows = ["| configuration | ops/s | p50 µs | p99 µs | p99.9 µs | commit p50 ms | commit p99 ms "
        "| × no persistence | × appendfsync always | bytes/key | disk bytes/op | server CPU "
        "| ops/s of the rounds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
for n in small:
    r = best[n]
    cpu_pct = float(r["cpu_ticks"]) / CLK / seconds * 100
    rows.append("| %s | %s | %s | %s | %s | %s | %s | %.2f× | %.1f× | %.0f | %.0f | %.0f%% | %s |" % (
        labels[n], "{:,.0f}".format(ops(n)), r["p50_us"], r["p99_us"], r["p999_us"],
        num(r["commit_p50_ms"]), num(r["commit_p99_ms"]), ops(n) / ops("redis_none"),
        ops(n) / ops("redis_always"), per_key(n), disk_per_op(n, seconds), cpu_pct, r["all"]))

def amortised(n: str) -> float:
    """Log mode: the change-log bytes per operation of the run, plus the
    full images the compactions write for them (one image per
    compact_limit bytes of logs), whether or not the run held one."""
    b, secs = big[n], big_seconds
    if b["log"] == "0":
        return disk_per_op(n, secs)
    logs = int(b["ckpt_bytes"]) - int(b["compactions"]) * int(b["image"])
    per_op = logs / (ops(n) * secs)
    return per_op * (1 + int(b["image"]) / int(b["compact_limit"]))


big_rows = []
if bigs:
    redis_big = per_key("redis_big")
    big_rows = ["| configuration | keys | ops/s | × its 100,000-key row | p50 µs | p99 µs "
                "| commit p50 ms | commit p99 ms | disk bytes/op | with compactions amortised "
                "| checkpoints (full / log) "
                "| compactions | bytes/key | × Redis | peak memory | restart (kill -9 to ready) |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in bigs:
        r, b = best[n], big[n]
        base = {"dpr_big_full": "dpr_one", "dpr_big_log": "dpr_one_log"}[n]
        big_rows.append(
            "| %s | %s | %s | %.2f× | %s | %s | %s | %s | %.0f | %.0f | %s / %s | %s | %.0f | %.2f× "
            "| %.2f GB | %.2f s |" % (
                labels[n], "{:,}".format(mem1[n][1]), "{:,.0f}".format(ops(n)),
                ops(n) / ops(base), r["p50_us"], r["p99_us"], num(r["commit_p50_ms"]),
                num(r["commit_p99_ms"]), disk_per_op(n, big_seconds), amortised(n),
                b["full"], b["log"],
                b["compactions"], per_key(n), per_key(n) / redis_big,
                int(b["peak_pss"]) / 1e9, float(b["recovery_s"])))
    big_rows.append("| redis-server, no persistence (memory only) | %s | | | | | | | | | | | %.0f "
                    "| 1.00× | | |" % ("{:,}".format(mem1["redis_big"][1]), redis_big))

# dpr-redis against redis-server alone (the proxy's cost) and against dpr-kv
rp_rows = [("rp_plain", "kv_plain"), ("rp_one", "dpr_one")]
rp_table = ["| dpr-redis | ops/s | × redis-server alone (no persistence) | against dpr-kv "
            "| × dpr-kv | p99 µs, dpr-redis / dpr-kv | server CPU, dpr-redis / dpr-kv |",
            "|---|---:|---:|---|---:|---:|---:|"]
for n, kv in [(n, kv) for n, kv in rp_rows if n in best]:
    rp_table.append("| %s | %s | %.2f× | %s | %.2f× | %s / %s | %.0f%% / %.0f%% |" % (
        labels[n], "{:,.0f}".format(ops(n)), ops(n) / ops("redis_none"), labels[kv],
        ops(n) / ops(kv), best[n]["p99_us"], best[kv]["p99_us"],
        float(best[n]["cpu_ticks"]) / CLK / seconds * 100,
        float(best[kv]["cpu_ticks"]) / CLK / seconds * 100))

goals = []


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


dpr_rows = [n for n in small if n.startswith("dpr_")]
for n in dpr_rows:
    x = ops(n) / ops("redis_none")
    goals.append("- %s: throughput ≥ 1.0× redis-server without persistence: %.2f× — %s"
                 % (labels[n], x, verdict(x >= 1.0)))
for n in dpr_rows:
    x = ops(n) / ops("redis_always")
    goals.append("- %s: throughput ≥ 10× redis-server appendfsync always: %.1f× — %s"
                 % (labels[n], x, verdict(x >= 10)))
bound = 2 * ckpt + 20
for n in dpr_rows + bigs:
    c = float(best[n]["commit_p99_ms"])
    unc = int(best[n]["uncommitted"])
    goals.append("- %s: commit latency p99 ≤ 2 × %d ms + 20 ms = %d ms: %.1f ms%s — %s"
                 % (labels[n], ckpt, bound, c,
                    " (%d operations not committed within the wait)" % unc if unc else "",
                    verdict(0 <= c <= bound and unc == 0)))
for n in bigs:
    base = {"dpr_big_full": "dpr_one", "dpr_big_log": "dpr_one_log"}[n]
    x = ops(n) / ops(base)
    goals.append("- %s: throughput ≥ 0.9× the 100,000-key row of the same mode (%s): %.2f× — %s"
                 % (labels[n], labels[base], x, verdict(x >= 0.9)))
for n in [n for n in small if n.startswith("kv_") or n.startswith("dpr_one")] + ["dpr_two"]:
    a, b = per_key(n), per_key("redis_none")
    goals.append("- %s: memory per key no worse than Redis': %.0f vs %.0f bytes — %s"
                 % (labels[n], a, b, verdict(a <= b)))
for n in bigs:
    a, b = per_key(n), per_key("redis_big")
    goals.append("- %s: memory per key no worse than Redis' at the same size: %.0f vs %.0f bytes "
                 "— %s" % (labels[n], a, b, verdict(a <= b)))

with open(out, "w") as f:
    f.write("\n".join(rows) + "\n")
    if len(rp_table) > 2:
        f.write("\n**dpr-redis** (the rows above, side by side): redis-server behind the "
                "DPR proxy against redis-server alone, the proxy's cost, and against dpr-kv "
                "under the same load (docs/dpr-redis.md):\n\n")
        f.write("\n".join(rp_table) + "\n")
    if big_rows:
        f.write("\n**{:,} keys, both checkpoint modes** (one run of {:.0f} s each, "
                "same load with `--keys {}`; see above):\n\n".format(
                    mem1[bigs[0]][1], big_seconds, mem1[bigs[0]][1]))
        f.write("\n".join(big_rows) + "\n")
    f.write("\nGoals (best rounds):\n\n" + "\n".join(goals) + "\n")
