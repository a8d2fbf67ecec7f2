"""What the DNS-SD tests share (test_discover*.py): a real knotd serving
temporary zones on 127.0.0.1 and a free port (dynamic updates and transfers
allowed from 127.0.0.1 only), real nsupdate and dig against it, and a TCP
relay to a real dpr-agent's control socket (what an agent with
control.listen serves, until the agent's own listener lands).

Everything runs on loopback; every process is a dprtest.Proc, stopped by
PID (tests/conftest.py fails a test that leaves one running).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

import dprtest
from tapproxy import TapProxy

KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"
NSUPDATE = shutil.which("nsupdate") or "/usr/bin/nsupdate"
DIG = shutil.which("dig") or "/usr/bin/dig"

SOA = """$ORIGIN {zone}.
$TTL 60
@ SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60
@ NS ns.{zone}.
ns A 127.0.0.1
"""


def need_dns_tools() -> None:
    """Skips the test unless knotd, nsupdate and dig are installed."""
    gone = [p for p in (KNOTD, NSUPDATE, DIG) if not os.access(p, os.X_OK)]
    if gone:
        pytest.skip("%s not installed (Debian packages knot and bind9-dnsutils)"
                    % " and ".join(gone))


def free_udp_tcp_port() -> int:
    """A loopback port free for both TCP (dprtest's check) and UDP."""
    for _ in range(50):
        port = dprtest.free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no port free for both TCP and UDP")


class Knot:
    """knotd serving ``zones`` (name -> extra master-file text after the
    SOA and NS) from base, on 127.0.0.1:port."""

    def __init__(self, base: str, zones: dict[str, str]):
        self.base = str(base)
        self.port = free_udp_tcp_port()
        self.zones = dict(zones)
        for d in ("run", "db", "zones"):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        for name, extra in self.zones.items():
            with open(os.path.join(self.base, "zones", name + ".zone"), "w") as f:
                f.write(SOA.format(zone=name) + extra)
        self.conf = os.path.join(self.base, "knot.conf")
        zone_lines = "".join(
            '  - domain: %s\n    storage: "%s"\n    file: "%s.zone"\n    acl: local\n'
            '    zonefile-sync: -1\n    journal-content: changes\n'
            % (name, os.path.join(self.base, "zones"), name) for name in self.zones)
        with open(self.conf, "w") as f:
            f.write('server:\n    rundir: "%s"\n    listen: 127.0.0.1@%d\n'
                    '    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n'
                    'log:\n  - target: stderr\n    any: info\n'
                    'database:\n    storage: "%s"\n'
                    'control:\n    listen: "%s"\n'
                    'acl:\n  - id: local\n    address: 127.0.0.1\n    action: [update, transfer]\n'
                    'zone:\n%s'
                    % (os.path.join(self.base, "run"), self.port, os.path.join(self.base, "db"),
                       os.path.join(self.base, "run", "knot.sock"), zone_lines))
        self.procs = dprtest.Procs()
        self.proc: dprtest.Proc | None = None

    @property
    def server(self) -> str:
        """The nameserver= / --server argument: 127.0.0.1:PORT."""
        return "127.0.0.1:%d" % self.port

    def start(self) -> "Knot":
        log = os.path.join(self.base, "knotd.log")
        self.proc = self.procs.start([KNOTD, "-c", self.conf], log, cwd=self.base, name="knotd")
        want = len(self.zones)
        self.proc.wait_ready(port=self.port,
                             check=lambda: self.proc.output().count(" loaded, serial") >= want)
        return self

    def stop(self) -> None:
        self.procs.stop_all()

    def nsupdate(self, script: str) -> None:
        """Feeds script to the real nsupdate; fails with its output."""
        r = subprocess.run([NSUPDATE], input=script, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, "nsupdate failed (%d): %s%s\n--- script:\n%s" % (
            r.returncode, r.stdout, r.stderr, script)

    def dig(self, name: str, rtype: str) -> list[str]:
        """The answer's RDATA lines (dig +short), asking only this server."""
        r = subprocess.run([DIG, "@127.0.0.1", "-p", str(self.port), "+short", "+norecurse",
                            "+time=2", "+tries=1", name, rtype],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, "dig %s %s failed: %s%s" % (name, rtype, r.stdout, r.stderr)
        return [line for line in r.stdout.splitlines() if line.strip()]

    def axfr(self, zone: str) -> str:
        r = subprocess.run([DIG, "@127.0.0.1", "-p", str(self.port), "+onesoa", "+nocmd",
                            "+nostats", "-t", "AXFR", zone],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout


class Relay(TapProxy):
    """A TCP listener on 127.0.0.1 that forwards every connection, byte for
    byte both ways, to a Unix socket (a real agent's control socket). Close
    it to stop the listener and every forwarded connection."""

    def __init__(self, unix_path: str):
        self.unix_path = unix_path
        super().__init__(unix_path)


