"""Scraping the daemons' Prometheus endpoints in tests: the address from a
process's log ("metrics on http://ADDR/metrics"), the page over HTTP with
urllib, parsed by Debian's python3-prometheus-client (a real parser of the
text format, not ours)."""
import re
import socket
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from dprtest import wait_for

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def address(proc: Any, timeout: float = 15.0) -> str:
    """HOST:PORT of the metrics endpoint proc logged (it may have chosen port 0)."""
    found: list[str] = []

    def logged() -> bool:
        m = re.search(r"metrics on http://(\S+)/metrics", proc.output())
        if m:
            found.append(m.group(1))
        return bool(m)
    wait_for(logged, timeout=timeout, what="%s logs its metrics address" % proc.name)
    return found[0]


def get(addr: str, path: str = "/metrics", method: str = "GET") -> tuple[int, dict, str]:
    """(status, headers, body) of one request."""
    req = urllib.request.Request("http://%s%s" % (addr, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def raw(addr: str, data: bytes) -> bytes:
    """Sends data as is, then the end of input, and returns everything the
    server answers before it closes the connection."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


class Scrape:
    """One parsed page: families by name, and sample values by name and labels."""

    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[str, list] = {}
        for f in self.families.values():
            for s in f.samples:
                self.samples.setdefault(s.name, []).append(s)

    def value(self, name: str, **labels: str) -> float:
        """The value of sample `name` with exactly these labels (le aside)."""
        hits = [s.value for s in self.samples.get(name, []) if s.labels == labels]
        assert len(hits) == 1, "%s%r: %d samples in %s" % (name, labels, len(hits),
                                                            sorted(self.samples))
        return hits[0]

    def names(self) -> set[str]:
        """Every series name the page declares or has samples of (counters
        with _total; histograms' _bucket, _sum, _count), also of families
        without samples right now (per-instance ones with no instance)."""
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        declared = {f.name + sfx for f in self.families.values()
                    for sfx in suffixes.get(f.type, ("",))}
        return declared | set(self.samples)


def scrape(addr: str) -> Scrape:
    status, headers, body = get(addr)
    assert status == 200, (status, body)
    assert headers.get("Content-Type") == CONTENT_TYPE, headers
    return Scrape(body)
