#!/usr/bin/python3
"""bench/kv_big.py - the 10,000,000-key rows of `make bench-kv` (bench/kv.sh).

One large server at a time (a 10 M-key dpr-kv holds about 1.3 GB), each with
its own dpr-finder, state under TMP (the repository's disk):

  - redis-server without persistence: prefilled, for its memory per key only;
  - dpr-kv --checkpoint-mode full, then --checkpoint-mode log, each:
    prefilled (pipelined SETs), left to settle (no checkpoint pending, in log
    mode the idle compaction done: the run starts from one full image), then
    one DPR run of dpr-bench (1 shard); meanwhile the peak memory of the
    server and its checkpoint or compaction children (the sum of their Pss,
    so pages shared after a fork count once) is sampled; then kill -9 and a
    restart timed from exec to the "ready: ... N keys" log line (the keys
    checked), then SIGTERM.

Appends lines to RAW in bench/kv.sh's format (RUN, MEM0, MEM1) plus
`BIG <name> key=value ...`: disk bytes (the server's /proc/PID/io write_bytes,
which includes reaped children, and INFO dpr_checkpoint_bytes_written),
peak Pss, checkpoints and compactions in the run, recovery seconds, the
size of the full image the run started from and the change-log bytes that
start a compaction (dpr-kv's rule: half the data, at least 8 MiB; here half
of INFO used_memory).

Usage: kv_big.py BUILD TMP RAW KEYS SECONDS CKPT_MS LOAD
(LOAD: dpr-bench's load flags; its --keys is replaced by KEYS).
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

BUILD, TMP, RAW = sys.argv[1], sys.argv[2], sys.argv[3]
KEYS, SECONDS, CKPT_MS = int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
LOAD = re.sub(r"--keys\s+\d+", "", sys.argv[7]).split() + ["--keys", str(KEYS)]
BENCH, KV, FINDER = (os.path.join(BUILD, b) for b in ("dpr-bench", "dpr-kv", "dpr-finder"))
COMMIT_WAIT = 300  # full images of 10 M keys take seconds each: wait for them
PROCS = []


def log(msg: str) -> None:
    print("  [10M] " + msg, file=sys.stderr, flush=True)


def out(line: str) -> None:
    with open(RAW, "a") as f:
        f.write(line + "\n")


def spawn(argv: list, logname: str) -> subprocess.Popen:
    f = open(os.path.join(TMP, logname), "ab")
    p = subprocess.Popen(argv, stdout=f, stderr=f)
    f.close()
    PROCS.append(p)
    return p


def wait_line(logname: str, pattern: str, proc: subprocess.Popen, timeout: float,
              offset: int = 0) -> re.Match:
    """The first match of pattern in the log from byte offset on."""
    path = os.path.join(TMP, logname)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, "rb") as f:
            f.seek(offset)
            m = re.search(pattern, f.read().decode(errors="replace"))
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    with open(path, errors="replace") as f:
        sys.stderr.write(f.read())
    raise SystemExit("bench/kv_big.py: no '%s' in %s" % (pattern, path))


def stop(p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 120) -> None:
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in PROCS:
        PROCS.remove(p)


def info(port: int) -> dict:
    text = subprocess.run(["redis-cli", "-p", str(port), "info"], capture_output=True,
                          text=True, check=True).stdout
    d = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.strip().split(":", 1)
            d[k] = v
    return d


def dbsize(port: int) -> int:
    return int(subprocess.run(["redis-cli", "-p", str(port), "dbsize"], capture_output=True,
                              text=True, check=True).stdout)


def mem(port: int) -> str:
    return "%s %d" % (info(port)["used_memory"], dbsize(port))


def write_bytes(pid: int) -> int:
    with open("/proc/%d/io" % pid) as f:
        return int(re.search(r"^write_bytes: (\d+)", f.read(), re.M).group(1))


def cpu_ticks(pid: int) -> int:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15])  # utime stime cutime cstime


def family(pid: int) -> list:
    """pid and its children (checkpoint or compaction children)."""
    pids = [pid]
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return pids


def pss(pid: int) -> int:
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            return int(re.search(r"^Pss:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024
    except (OSError, AttributeError):
        return 0


class PeakMemory(threading.Thread):
    """Samples the summed Pss of a server and its children every 0.25 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            self.peak = max(self.peak, sum(pss(p) for p in family(self.pid)))


def settle(port: int, mode: str) -> None:
    """Waits until no checkpoint is pending and, in log mode, the idle
    compaction made the newest version a full image (at most 10 min)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        i = info(port)
        if (i["dpr_checkpoints_pending"] == "0" and i["dpr_compaction_running"] == "0"
                and (mode == "full" or i["dpr_checkpoint_log_bytes"] == "0")):
            return
        time.sleep(0.5)
    raise SystemExit("bench/kv_big.py: the %s-mode server did not settle in 10 min" % mode)


def newest_image(d: str) -> int:
    """The size of the largest checkpoint file in d: after settle(), the full
    image (change logs are a few MB)."""
    sizes = [0]
    for f in os.listdir(d):
        if f.startswith("ckpt-") and f.endswith(".kv"):
            try:
                sizes.append(os.path.getsize(os.path.join(d, f)))
            except FileNotFoundError:
                pass  # garbage-collected meanwhile
    return max(sizes)


def redis_memory() -> None:
    port = free_port()
    os.makedirs(os.path.join(TMP, "redis_big"), exist_ok=True)
    p = spawn(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
               "--appendonly", "no", "--dir", os.path.join(TMP, "redis_big")], "redis_big.log")
    wait_line("redis_big.log", r"Ready to accept connections", p, 30)
    out("MEM0 redis_big " + mem(port))
    t0 = time.monotonic()
    subprocess.run([BENCH, "--mode", "plain", "--server", "127.0.0.1:%d" % port] + LOAD
                   + ["--prefill-only", "--quiet"], check=True)
    log("redis-server prefilled %d keys in %.1f s" % (KEYS, time.monotonic() - t0))
    out("MEM1 redis_big " + mem(port))
    stop(p)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dpr_kv(mode: str) -> None:
    name = "dpr_big_" + mode
    fdir = os.path.join(TMP, name + "_finder")
    finder = spawn([FINDER, "--listen", "127.0.0.1:0", "--state", fdir], name + "_finder.log")
    fport = int(wait_line(name + "_finder.log", r"listening on [^ ]*:(\d+)", finder, 30).group(1))
    port = free_port()
    argv = [KV, "--listen", "127.0.0.1:%d" % port, "--finder", "127.0.0.1:%d" % fport,
            "--worker", "1", "--dir", os.path.join(TMP, name), "--checkpoint-mode", mode,
            "--checkpoint-interval-ms", str(CKPT_MS), "--shutdown-timeout-ms", "120000"]
    kv = spawn(argv, name + ".log")
    wait_line(name + ".log", r"ready: ", kv, 30)
    out("MEM0 %s %s" % (name, mem(port)))
    t0 = time.monotonic()
    subprocess.run([BENCH, "--mode", "plain", "--server", "127.0.0.1:%d" % port] + LOAD
                   + ["--prefill-only", "--quiet"], check=True)
    log("%s: prefilled in %.1f s" % (name, time.monotonic() - t0))
    settle(port, mode)
    log("%s: settled after %.1f s" % (name, time.monotonic() - t0))
    # the full image the run starts from (log mode: the idle compaction's)
    image = newest_image(os.path.join(TMP, name))

    i0, w0, c0 = info(port), write_bytes(kv.pid), cpu_ticks(kv.pid)
    sampler = PeakMemory(kv.pid)
    sampler.start()
    res = subprocess.run([BENCH, "--mode", "dpr", "--finder", "127.0.0.1:%d" % fport,
                          "--shard", "127.0.0.1:%d" % port] + LOAD
                         + ["--duration", str(SECONDS), "--warmup", "1",
                            "--commit-wait", str(COMMIT_WAIT), "--quiet"],
                         capture_output=True, text=True, check=True).stdout
    line = [x for x in res.splitlines() if x.startswith("RESULT")][0]
    i1, w1, c1 = info(port), write_bytes(kv.pid), cpu_ticks(kv.pid)
    sampler.done.set()
    sampler.join()
    out("RUN %s 1 cpu_ticks=%d disk=%d %s" % (name, c1 - c0, w1 - w0, line))
    out("MEM1 %s %s" % (name, mem(port)))
    log("%s: %s" % (name, line))

    def delta(k: str) -> int:
        return int(i1[k]) - int(i0[k])

    kv.send_signal(signal.SIGKILL)
    kv.wait()
    PROCS.remove(kv)
    offset = os.path.getsize(os.path.join(TMP, name + ".log"))
    t0 = time.monotonic()
    kv = spawn(argv, name + ".log")
    m = wait_line(name + ".log", r"ready: [^\n]*?restored version \d+, (\d+) keys", kv, 600,
                  offset)
    recovery = time.monotonic() - t0
    keys = int(m.group(1))
    if keys != KEYS:
        raise SystemExit("bench/kv_big.py: %s restarted with %d keys, not %d" % (name, keys, KEYS))
    log("%s: restarted with %d keys in %.2f s" % (name, keys, recovery))
    out("BIG %s write_bytes=%d ckpt_bytes=%d checkpoints=%d full=%d log=%d compactions=%d "
        "peak_pss=%d recovery_s=%.3f image=%d compact_limit=%d" % (
            name, w1 - w0, delta("dpr_checkpoint_bytes_written"),
            delta("dpr_checkpoints_total"), delta("dpr_checkpoints_full"),
            delta("dpr_checkpoints_log"), delta("dpr_compactions"), sampler.peak, recovery, image,
            max(8 << 20, int(i1["used_memory"]) // 2)))
    stop(kv)
    stop(finder)
    subprocess.run(["rm", "-rf", os.path.join(TMP, name)], check=True)


def main() -> None:
    try:
        redis_memory()
        for mode in ("full", "log"):
            dpr_kv(mode)
    finally:
        for p in list(PROCS):
            stop(p, signal.SIGKILL, 10)


if __name__ == "__main__":
    main()
