"""tests/vm/vmlab.py leaves nothing behind: a lab interrupted with Ctrl-C
(SIGINT) or SIGTERM tears itself down; one killed with SIGKILL loses its
qemu and dnsmasq at once (PR_SET_PDEATHSIG) and `vmlab.py cleanup-stale`
removes its namespace and directory. Root; needs the box (make vm-box);
about 30 s (the VMs need not finish booting)."""
import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import vmlab  # noqa: E402

BOX = os.environ.get("DPR_VM_BOX", os.path.join(HERE, "..", "..", "build", "vagrant", "box.img"))
LAB = """
import signal, sys, time
sys.path.insert(0, %r)
import vmlab
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    with vmlab.Lab(%r, ["node1", "node2"]) as lab:
        print(lab.id, lab.dir, flush=True)
        time.sleep(600)
except KeyboardInterrupt:
    pass
""" % (HERE, BOX)


def ours(lab_id, lab_dir):
    """What of this lab exists: processes naming its directory, its netns, its directory."""
    procs = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    if (lab_dir + "/").encode() in f.read():
                        procs.append(int(p))
            except OSError:
                pass
    nss = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    return procs, lab_id in nss, os.path.exists(lab_dir)


pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not os.path.exists(BOX), reason="no box (make vm-box)")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_lab_leaves_nothing(sig):
    p = subprocess.Popen([sys.executable, "-c", LAB], stdout=subprocess.PIPE, text=True)
    lab_id, lab_dir = p.stdout.readline().split()
    procs, ns, d = ours(lab_id, lab_dir)
    assert len(procs) == 3 and ns and d        # two qemu, one dnsmasq
    time.sleep(3)
    p.send_signal(sig)
    p.wait(timeout=60)
    vmlab.wait_for("the lab's processes gone", lambda: not ours(lab_id, lab_dir)[0], 20)
    if sig == signal.SIGKILL:
        assert ours(lab_id, lab_dir)[1:] == (True, True)
        assert lab_id in vmlab.leftovers()[0]
        vmlab.cleanup_stale()
    assert ours(lab_id, lab_dir) == ([], False, False)
