"""vagrant/Vagrantfile is valid for Vagrant and its libvirt and VirtualBox
providers (`vagrant validate`: unknown or wrong provider settings fail),
with the default three VMs and with another count. Fast; skipped without
vagrant (make vm-deps)."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed (make vm-deps)")
@pytest.mark.parametrize("vms", ["3", "5"])
def test_vagrantfile_validates(tmp_path, vms):
    d = tmp_path / "vagrant"
    shutil.copytree(os.path.join(ROOT, "vagrant"), d, ignore=shutil.ignore_patterns(".vagrant"))
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "home"), DPR_VMS=vms,
               DPR_DEB_DIR=str(tmp_path), VAGRANT_CHECKPOINT_DISABLE="1")
    r = subprocess.run(["vagrant", "validate"], cwd=d, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "validated successfully" in r.stdout, r.stdout + r.stderr
    # a wrong provider setting is an error: the libvirt provider's settings are checked
    vf = d / "Vagrantfile"
    vf.write_text(vf.read_text().replace("lv.cpus = 1", "lv.cpus = 1\n    lv.no_such_setting = 1"))
    r = subprocess.run(["vagrant", "validate"], cwd=d, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "no_such_setting" in r.stdout + r.stderr
