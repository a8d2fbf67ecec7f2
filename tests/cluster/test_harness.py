"""The node harness itself: real systemd nodes boot, talk, lose power and
leave nothing behind (docs/testing-clusters.md)."""
import json
import os
import signal
import subprocess
import sys

import pytest

import cluster as harness
from cluster import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
# Services a node may run: what dpr-node.target pulls in, nothing of the host.
# The minimal target: these and nothing else (dpr-agent once `make install`
# ships it; the host's own services such as redis or postgresql stay off).
NODE_SERVICES = {"dbus.service", "avahi-daemon.service", "dpr-test-echo.service",
                 "systemd-journald.service", "systemd-logind.service",
                 "dpr-agent.service"}


def echo(node, host, text="ping", port=7777):
    """Send a line to dpr-test-echo at host:port from inside node."""
    code = ("import socket,sys; s=socket.create_connection((sys.argv[1], %d), timeout=5); "
            "s.sendall(sys.argv[2].encode() + b'\\n'); print(s.makefile().readline().strip())" % port)
    r = node.run(["python3", "-c", code, host, text], check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def test_boots_minimal_target_with_systemd_as_pid1(cluster):
    node = cluster[0]
    state = node.run("systemctl is-system-running", check=False).stdout.strip()
    failed = node.run("systemctl --failed --no-legend --plain", check=False).stdout
    assert state == "running", "state %s; failed units:\n%s\n%s" % (state, failed, node.journal())
    assert node.run("readlink /proc/1/exe").stdout.strip() == "/usr/lib/systemd/systemd"
    assert node.run("cat /proc/1/comm").stdout.strip() == "systemd"
    assert node.run("systemd-detect-virt --container", check=False).stdout.strip() == "container-other"
    assert node.systemctl("show", "-p", "ActiveState", "--value", "dpr-node.target") == "active"
    # its own identity
    assert node.run("hostname").stdout.strip() == node.hostname
    assert node.run("cat /etc/machine-id").stdout.strip() == node.machine_id
    assert node.run("cat /proc/sys/kernel/random/boot_id").stdout.strip() != \
        open("/proc/sys/kernel/random/boot_id").read().strip()
    # its own writable cgroup2 hierarchy
    assert node.run("stat -f -c %T /sys/fs/cgroup").stdout.strip() == "cgroup2fs"
    assert "0::/init.scope" in node.run("cat /proc/1/cgroup").stdout.split()
    # private /run and /tmp
    for d, fs in (("/run", "tmpfs"), ("/tmp", "tmpfs"), ("/", "overlayfs")):
        assert node.run(["stat", "-f", "-c", "%T", d]).stdout.strip() == fs, d
    # minimal: only our services run, none of the host's (postgresql, redis, ...)
    units = node.run("systemctl list-units --type=service --state=running --no-legend --plain")
    running = {line.split()[0] for line in units.stdout.splitlines() if line.strip()}
    assert running - NODE_SERVICES == set(), running
    assert {"dbus.service", "avahi-daemon.service", "dpr-test-echo.service"} <= running
    assert node.boot_seconds < 15, node.boot_seconds


def test_dbus_system_bus(cluster):
    node = cluster[0]
    names = node.run("busctl list --no-legend --no-pager").stdout
    assert "org.freedesktop.systemd1" in names
    assert "org.freedesktop.Avahi" in names
    r = node.run("busctl call org.freedesktop.Avahi / org.freedesktop.Avahi.Server GetHostName")
    assert r.stdout.strip() == 's "%s"' % node.hostname
    # systemd answers over D-Bus (what the agent's sd-bus calls will use)
    r = node.run("busctl get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 "
                 "org.freedesktop.systemd1.Manager SystemState")
    assert r.stdout.strip() == 's "running"'


def test_unit_of_ours_starts_stops_and_restarts(cluster):
    node = cluster[0]
    unit = "dpr-test-echo.service"
    assert node.is_active(unit) == "active"
    assert echo(node, "::1", "hello") == "hello"
    node.systemctl("stop", unit)
    assert node.is_active(unit) == "inactive"
    assert echo(node, "::1") is None
    node.systemctl("start", unit)
    assert node.is_active(unit) == "active"
    assert wait_for("echo back", lambda: echo(node, "127.0.0.1", "again")) == "again"
    # kill -9 of the main PID: systemd restarts it (Restart=on-failure)
    pid = node.systemctl("show", "-p", "MainPID", "--value", unit)
    node.run(["kill", "-9", pid])
    wait_for("restart", lambda: node.systemctl("show", "-p", "NRestarts", "--value", unit) == "1"
             and node.is_active(unit) == "active")
    assert node.systemctl("show", "-p", "MainPID", "--value", unit) != pid


@pytest.mark.nodes(2)
def test_build_is_installed(cluster, dpr_stage):
    if dpr_stage is None:
        pytest.skip("DPRT_NO_BUILD=1")
    node, other = cluster
    r = node.run("dpr-finder --help")
    assert "Usage: dpr-finder" in r.stdout
    node.run("test -f /usr/local/lib/libdpr.so && test -f /usr/local/lib/libdpr.a")
    headers = sorted(os.listdir(os.path.join(dpr_stage, "usr/local/include/dpr")))
    assert headers and node.run("ls /usr/local/include/dpr").stdout.split() == headers
    # the build runs in the node as a unit and serves across the bridge
    node.run("systemd-run --unit=dprt-finder --property=StateDirectory=dprt-finder "
             "dpr-finder --listen %s:7000 --state /var/lib/dprt-finder" % node.ip4)
    ping = ["python3", "-c", "import socket, sys; s = socket.create_connection((sys.argv[1], 7000), 5); "
            "s.sendall(b'*1\\r\\n$4\\r\\nPING\\r\\n'); print(s.recv(64))", node.ip4]
    assert wait_for("PONG from the finder", lambda: "PONG" in other.run(ping, check=False).stdout)


@pytest.mark.nodes(2)
def test_nodes_reach_each_other_and_nothing_else(cluster):
    a, b = cluster
    for src, dst in ((a, b), (b, a)):
        src.run(["ping", "-c", "1", "-W", "2", dst.ip4])
        src.run(["ping", "-c", "1", "-W", "2", dst.ip6])
        assert echo(src, dst.ip4, "x") == "x"
    # no route out of the cluster: the kernel refuses before sending anything
    for node in cluster:
        assert node.run("ip route show default; ip -6 route show default").stdout.strip() == ""
        r = node.run("ip route get 192.0.2.1", check=False)
        assert r.returncode != 0 and "unreachable" in r.stderr
    # the bridge lives in the cluster's namespace, not in the host's
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert harness.PREFIX + "-" not in host_links
    r = subprocess.run(["ip", "-n", cluster.netns, "-o", "link", "show", "master", harness.BRIDGE],
                       capture_output=True, text=True, check=True)
    assert r.stdout.count("\n") == 2


@pytest.mark.nodes(2)
def test_partition_and_heal(cluster):
    a, b = cluster
    b.partition()
    assert a.run(["ping", "-c", "1", "-W", "1", b.ip4], check=False).returncode != 0
    b.heal()
    wait_for("ping after heal",
             lambda: a.run(["ping", "-c", "1", "-W", "1", b.ip4], check=False).returncode == 0)


def _browse(node, service_type):
    """avahi-browse -rpt inside node: [(hostname, address, port, txt)]."""
    r = node.run(["avahi-browse", "-rpt", service_type], check=False, timeout=30)
    out = []
    for line in r.stdout.splitlines():
        f = line.split(";")
        if f[0] == "=" and len(f) >= 10:
            out.append((f[6], f[7], int(f[8]), f[9]))
    return out


ZEROCONF_BROWSE = r"""
import json, sys, time, zeroconf
kind = sys.argv[1]
zc = zeroconf.Zeroconf(interfaces=zeroconf.InterfaceChoice.All)
found = {}
class Listener:
    def add_service(self, zc, t, name): found[name] = None
    def update_service(self, zc, t, name): pass
    def remove_service(self, zc, t, name): pass
zeroconf.ServiceBrowser(zc, kind, Listener())
deadline = time.monotonic() + float(sys.argv[2])
result = []
while time.monotonic() < deadline and not result:
    time.sleep(0.3)
    for name in list(found):
        info = zc.get_service_info(kind, name, timeout=1000)
        if info and info.server.startswith(sys.argv[3]):
            result.append({"name": name, "server": info.server, "port": info.port,
                           "addresses": info.parsed_addresses(),
                           "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()}})
zc.close()
print(json.dumps(result))
"""


@pytest.mark.nodes(2)
def test_mdns_discovery_across_nodes(cluster):
    a, b = cluster
    # avahi on node1 sees the service node2's avahi publishes (static file)
    want = (b.hostname + ".local", b.ip4, 7777, '"cluster=%s"' % cluster.id)
    found = wait_for("node2's _dpr-test-echo via avahi-browse on node1",
                     lambda: [s for s in _browse(a, "_dpr-test-echo._tcp") if s[0] == want[0]
                              and s[1] == b.ip4])
    assert found[0] == want, found
    # the discovered address works
    assert echo(a, found[0][1], "found") == "found"
    # a service published at run time through avahi's D-Bus API (as dpr-agent will)
    b.run("systemd-run --unit=dprt-publish --collect avahi-publish -s dyn-%s _dpr-test-dyn._tcp 4242 "
          "cluster=%s" % (b.hostname, cluster.id))
    dyn = wait_for("the dynamic record", lambda: [s for s in _browse(a, "_dpr-test-dyn._tcp")
                                                  if s[0] == want[0] and s[1] == b.ip4])
    assert dyn[0][2] == 4242
    # python3-zeroconf inside node1 (a plain mDNS client, no avahi) sees it too
    r = a.run(["python3", "-c", ZEROCONF_BROWSE, "_dpr-test-echo._tcp.local.", "10", b.hostname],
              timeout=30)
    seen = json.loads(r.stdout)
    assert seen and b.ip4 in seen[0]["addresses"] and seen[0]["port"] == 7777
    assert seen[0]["txt"]["cluster"] == cluster.id
    # and node2 stops publishing when its avahi-daemon stops
    b.systemctl("stop", "avahi-daemon.service", "avahi-daemon.socket")
    wait_for("the record to go", lambda: not [s for s in _browse(a, "_dpr-test-echo._tcp")
                                              if s[0] == want[0]])


def test_power_cut_and_reboot_keep_upper_layer(cluster):
    node = cluster[0]
    boot1 = node.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()
    node.run("mkdir -p /var/lib/dpr && echo kept > /var/lib/dpr/marker && echo gone > /run/marker")
    node.run("echo unsynced > /var/lib/dpr/unsynced")   # no fsync: see docs on page cache
    pid1 = node.pid1
    node.power_cut()
    assert not node.running
    assert not harness._pid_alive(pid1)
    assert harness._cgroup_pids(node.cgroup) == []
    assert os.path.exists(os.path.join(node.upper, "var/lib/dpr/marker"))
    assert node.boot() == "running"
    assert node.pid1 != pid1
    assert node.run("cat /var/lib/dpr/marker").stdout.strip() == "kept"
    assert node.run("test -e /run/marker", check=False).returncode == 1
    assert node.run("cat /proc/sys/kernel/random/boot_id").stdout.strip() != boot1
    assert node.is_active("dpr-test-echo.service") == "active"
    assert wait_for("echo", lambda: echo(node, "::1", "back")) == "back"
    # a clean reboot through systemd (reboot(2) ends the PID namespace)
    assert node.reboot(clean=True) == "running"
    assert node.run("cat /var/lib/dpr/marker").stdout.strip() == "kept"
    boots = node.run("journalctl --list-boots --no-pager -q").stdout.strip().splitlines()
    assert len(boots) == 3, boots


def test_tmpfs_upper(make_cluster):
    c = make_cluster(1, upper="tmpfs")
    node = c[0]
    assert node.run("systemctl is-system-running").stdout.strip() == "running"
    mounts = [m for m in harness._mounts() if m[1] == c.id]
    assert mounts and mounts[0][2] == "tmpfs"
    c.teardown()
    assert not [m for m in harness._mounts() if m[1] == c.id]


def _assert_gone(cid, pids):
    assert harness.leftovers(cid) == {}
    for pid in pids:
        assert not harness._pid_alive(pid), pid
    assert not [m for m in open("/proc/self/mountinfo") if cid in m]
    assert not os.path.exists("/run/netns/" + cid)


def test_teardown_leaves_nothing(make_cluster):
    c = make_cluster(2)
    pids = harness._cgroup_pids(c.cgroup)    # every process of both nodes
    pids += [n.launcher.pid for n in c]
    assert len(pids) > 10, pids
    left = harness.leftovers(c.id)
    assert {"netns", "cgroups", "processes", "state_dirs"} <= set(left), left
    c.teardown()
    _assert_gone(c.id, pids)
    c.teardown()  # twice is fine


BOOT_AND_WAIT = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import cluster
c = cluster.Cluster(2)
print(c.id, " ".join(str(n.pid1) for n in c), flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_interrupted_harness_is_cleaned_up(harness_ready, sig):
    """SIGTERM: the harness tears down itself. SIGKILL: the nodes die with it
    (PR_SET_PDEATHSIG) and cleanup-stale removes the rest."""
    p = subprocess.Popen([sys.executable, "-c", BOOT_AND_WAIT, HERE], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        assert line, p.stderr.read()
        cid, pids = line[0], [int(x) for x in line[1:]]
        assert harness.leftovers(cid)
        p.send_signal(sig)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    wait_for("node processes to die", lambda: not any(harness._pid_alive(x) for x in pids), 10)
    if sig == signal.SIGKILL:
        left = harness.leftovers(cid)
        assert set(left) <= {"netns", "mounts", "cgroups", "state_dirs"}, left  # no processes
        r = subprocess.run([sys.executable, os.path.join(HERE, "cluster.py"), "cleanup-stale"],
                           capture_output=True, text=True)
        assert r.returncode == 0 and ("removing " + cid) in r.stdout, r.stdout + r.stderr
    _assert_gone(cid, pids)
