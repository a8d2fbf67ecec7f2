"""vagrant/Vagrantfile is valid for Vagrant and its libvirt and VirtualBox
providers (`vagrant validate`: unknown or wrong provider settings fail),
with the default three VMs and with another count; and Vagrant takes the
box of vagrant/build-box.sh as a libvirt box (`vagrant box add`). Fast;
skipped without vagrant (make vm-deps) or without the box."""
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


BOX = os.environ.get("DPR_VM_BOX_FILE", os.path.join(ROOT, "build", "vagrant", "dpr-bookworm.box"))


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed (make vm-deps)")
@pytest.mark.skipif(not os.path.exists(BOX), reason="no box (make vm-box)")
def test_vagrant_adds_the_box_for_libvirt(tmp_path):
    """vagrant/build-box.sh's .box is a box Vagrant takes, for the libvirt provider."""
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "home"), VAGRANT_CHECKPOINT_DISABLE="1")
    r = subprocess.run(["vagrant", "box", "add", "--name", "dpr-bookworm", BOX], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["vagrant", "box", "list"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert "dpr-bookworm (libvirt, 0)" in r.stdout, r.stdout
    d = tmp_path / "home" / "boxes" / "dpr-bookworm" / "0" / "libvirt"
    assert sorted(os.listdir(d)) == ["Vagrantfile", "box.img", "metadata.json"]
