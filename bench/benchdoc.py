"""bench/benchdoc.py - what the Python benchmarks (bench/resize.py,
bench/raft.py) share: the machine's description and writing one section of
docs/benchmarks.md (the others are kept)."""
import os
import re
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "benchmarks.md")


def machine() -> str:
    """'N CPUs (nproc), MODEL; Linux RELEASE'"""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
        cpu = m.group(1) if m else cpu
    return "%d CPUs (nproc), %s; Linux %s" % (os.cpu_count() or 0, cpu, os.uname().release)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def write_section(title: str, section: str) -> None:
    """Replaces the section "## title" of docs/benchmarks.md (up to the next
    "## " heading) with section, or appends it; prints it."""
    text = open(DOC).read() if os.path.exists(DOC) else "# Benchmarks\n"
    m = re.search(r"^## %s\n.*?(?=^## |\Z)" % re.escape(title), text, re.S | re.M)
    text = text[:m.start()] + section + "\n" + text[m.end():] if m else \
        text.rstrip("\n") + "\n\n" + section
    with open(DOC, "w") as f:
        f.write(text.rstrip("\n") + "\n")
    print(section)


def pct(values, p: float) -> float:
    """The p-th percentile of values (nearest rank, at least the smallest)."""
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100 * len(v)))]
