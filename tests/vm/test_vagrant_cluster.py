"""`make vm-test` (issue 15): three VMs of the Vagrant box
(vagrant/build-box.sh) provisioned as the Vagrantfile provisions them
(vagrant/provision.sh installs the .deb built from this tree and writes
agent.conf with the cluster's peers), checked from outside, over the VMs'
network (tests/vm/vmlab.py: a bridge in a network namespace of the test):

  - the three agents form one Raft cluster (each agent's control API over
    TCP names the same leader and three members);
  - `dprctl apply` in node1 places the instances of two deployments: `spread`
    over the nodes, `kv` on node1 (its node_selector);
  - a session (python-dpr on the host) writes into `kv` while the VM of the
    Raft leader (not node1) is powered off (qemu quits): another agent leads
    and serves the finder, the session goes on, and at the end every
    committed operation reads back.

Slow (TCG VMs: minutes), root only; not part of `make test`.
Environment: DPR_VM_BOX (default build/vagrant/box.img), DPR_DEB_DIR
(default build/: `make deb`), VM_ACCEL (tcg, or kvm where KVM works).
"""
import concurrent.futures
import glob
import json
import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
sys.path.insert(0, os.path.join(ROOT, "python-dpr"))
import vmlab  # noqa: E402
from writers import Writers  # noqa: E402

BOX = os.environ.get("DPR_VM_BOX", os.path.join(ROOT, "build", "vagrant", "box.img"))
DEB_DIR = os.environ.get("DPR_DEB_DIR", os.path.join(ROOT, "build"))
LIBDPR = os.path.join(os.environ.get("DPR_BUILD", os.path.join(ROOT, "build")), "libdpr.so.0")
NAMES = ["node1", "node2", "node3"]
CONTROL_PORT = 7002
WAIT = 300

SPEC = """\
name: vagrant
cachestores:
  - name: kv
    version: "1"
    shards: 2
    checkpoint_interval_ms: 100
    node_selector:
      nodes: [node1]
  - name: spread
    version: "1"
    shards: 3
"""


def log(*a):
    print("[%s]" % time.strftime("%H:%M:%S"), *a, flush=True)


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespace, tap devices)")
    debs = [sorted(glob.glob(os.path.join(DEB_DIR, p + "_*_amd64.deb")))
            for p in ("libdpr0", "dpr-cluster")]
    assert all(debs), "no libdpr0 and dpr-cluster .deb in %s (make deb)" % DEB_DIR
    debs = [d[-1] for d in debs]
    assert os.path.exists(LIBDPR), "%s is missing (make)" % LIBDPR
    t0 = time.monotonic()
    with vmlab.Lab(BOX, NAMES) as lab:
        log("lab %s: booting %s from %s" % (lab.id, ", ".join(NAMES), BOX))
        for vm in lab:
            log("%s (%s): ssh answers %.0f s after qemu started" % (vm.name, vm.ip, vm.wait_ssh()))
        peers = [vm.ip for vm in lab]

        def provision(vm):
            t = time.monotonic()
            vm.copy(debs + [os.path.join(ROOT, "vagrant", "provision.sh")], "/tmp/")
            out = vm.ssh("sh /tmp/provision.sh /tmp %s %s %s" % (vm.name, vm.ip, " ".join(peers)),
                         timeout=900).stdout
            log("%s: provisioned in %.0f s: %s" % (vm.name, time.monotonic() - t,
                                                   out.strip().splitlines()[-1]))
        # the three at once, as `vagrant up --parallel` would (libvirt's default)
        with concurrent.futures.ThreadPoolExecutor(len(NAMES)) as pool:
            for f in [pool.submit(provision, vm) for vm in lab]:
                f.result()
        log("three VMs up and provisioned in %.0f s" % (time.monotonic() - t0))
        yield lab


def status(vm):
    """vm's agent's status over its control API (TCP), the raw JSON, or None."""
    import dpr
    try:
        with dpr.connect(address="%s:%d" % (vm.ip, CONTROL_PORT), timeout=10,
                         connect_timeout=3) as c:
            return c.status().raw
    except (dpr.DprError, OSError):
        return None


def nodes(vm):
    import dpr
    with dpr.connect(address="%s:%d" % (vm.ip, CONTROL_PORT), timeout=10) as c:
        return c.nodes()


def leader(lab):
    """The VM whose agent serves the finder, when all running VMs agree."""
    up = [vm for vm in lab if vm.running]
    views = [status(vm) for vm in up]
    if any(v is None for v in views):
        return None
    serving = [vm for vm, st in zip(up, views) if (st.get("finder") or {}).get("served_here")]
    if len(serving) != 1:
        return None
    want = "%s:7400" % serving[0].ip
    if all((st.get("raft") or {}).get("leader") == want for st in views):
        return serving[0]
    return None


class Host:
    """What Writers needs of a node, on the host (in the lab's namespace)."""

    def __init__(self, d):
        self.d = d

    def path(self, p):
        return p

    def run(self, cmd):
        subprocess.run(cmd, shell=True, check=True)

    def spawn(self, cmd, env=None, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("text", True)
        e = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python-dpr"), DPR_LIBDPR=LIBDPR,
                 **(env or {}))
        return subprocess.Popen(["/usr/bin/python3"] + cmd[1:], env=e, **kw)


def test_agents_form_one_raft_cluster(lab):
    lead = vmlab.wait_for("one raft leader", lambda: leader(lab), WAIT, interval=2)
    log("raft leader: %s" % lead.name)
    # a member is named by its Raft address until the leader has heard its name
    def agreed():
        views = [nodes(vm) for vm in lab]
        return all(sorted(n.name for n in v) == NAMES and
                   [n.name for n in v if n.leader] == [lead.name] for v in views) and views
    views = vmlab.wait_for("every agent naming the three members and the leader", agreed, 120)
    log("members seen from node1: %s" % ", ".join("%s %s %s" % (n.name, n.state, n.role)
                                                  for n in views[0]))


def test_apply_places_instances_and_leader_loss_keeps_every_operation(lab, tmp_path):
    n1 = lab["node1"]
    n1.ssh("cat > /root/spec.yaml", input=SPEC)
    t = time.monotonic()
    n1.ssh("dprctl apply -f /root/spec.yaml --wait --timeout 600", timeout=700)
    log("dprctl apply --wait in node1: %.0f s" % (time.monotonic() - t))
    st = status(n1)
    where = {}
    for dep in st["deployments"]:
        for inst in dep["instances"]:
            where.setdefault(dep["name"], []).append(inst.get("node"))
    log("placement: %s" % json.dumps(where, sort_keys=True))
    assert where["kv"] == ["node1", "node1"], where
    assert len(where["spread"]) == 3 and len(set(where["spread"])) >= 2, where
    log(n1.ssh("dprctl status").stdout)

    # the leader must be another VM than node1 (which runs kv): kill -9 of
    # node1's agent while it leads moves the leadership (systemd restarts it)
    lead = vmlab.wait_for("a leader", lambda: leader(lab), WAIT, interval=2)
    for _ in range(5):
        if lead is not n1:
            break
        n1.ssh("kill -9 $(systemctl show -P MainPID dpr-agent)")
        lead = vmlab.wait_for("another leader", lambda: leader(lab) not in (None, n1) and leader(lab),
                              WAIT, interval=2)
    assert lead is not n1, "node1 keeps winning the elections"

    w = Writers(Host(str(tmp_path)), ["kv"], address="%s:%d" % (n1.ip, CONTROL_PORT),
                script=str(tmp_path / "writers.py"), stop=str(tmp_path / "stop-writing"))
    try:
        w.moves_on("before the power-off", deps=("kv",), ops=50, timeout=WAIT)
        log("session writing: %d operations, commit point %d" % (w.last_seq("kv"),
                                                                w.commit_point("kv")))
        t = time.monotonic()
        log("powering off %s (the raft leader)" % lead.name)
        lead.power_off()
        new = vmlab.wait_for("a new leader", lambda: leader(lab), WAIT, interval=1)
        assert new is not lead
        log("new leader %s after %.1f s" % (new.name, time.monotonic() - t))
        w.moves_on("after the failover", deps=("kv",), ops=50, timeout=WAIT)
        log("session writing on: %d operations, commit point %d" % (w.last_seq("kv"),
                                                                   w.commit_point("kv")))
    finally:
        results = w.finish()
    log("session: %s" % results.get("kv"))
    assert results.get("kv", "").startswith("ok "), "\n".join(w.log[-30:])
