"""The Debian packages (`make deb`, docs/packaging.md) and `make install` /
`make uninstall`: lintian, the file lists, and the package installed into a
real systemd node (dpkg -i; systemctl enable --now dpr-agent; an upgrade
keeps the cache-stores running; remove keeps /var/lib/dpr, purge deletes it).

Builds the packages once (`make deb BUILD=<tmp>`, about a minute), or uses
those in $DPR_DEB_DIR. Needs root for the node (the harness skips otherwise).
"""
import os
import re
import shutil
import subprocess

import pytest

from cluster import wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGES = ("dpr-cluster", "libdpr0", "libdpr-discover0", "libdpr-dev")
MULTIARCH = "x86_64-linux-gnu"
# What install.mk's variables are in debian/rules; a build directory of its own
# (dpr-agent's default dpr-kv path follows BINDIR: build/ stays /usr/local's).
DEB_VARS = ["BUILD=build/deb", "PREFIX=/usr", "LIBDIR=/usr/lib/" + MULTIARCH, "UNITDIR=/lib/systemd/system",
            "SYSUSERSDIR=/usr/lib/sysusers.d", "PYTHON_SITE=/usr/lib/python3/dist-packages"]
SPEC = """name: pkg
cachestores:
  - name: kv
    impl: dpr-kv
    version: "1"
    shards: 1
"""


def version():
    with open(os.path.join(ROOT, "debian", "changelog"), encoding="utf-8") as f:
        return re.match(r"dpr-cluster \(([^)]+)\)", f.readline()).group(1)


def make(*args, check=True):
    r = subprocess.run(["make", "-C", ROOT, "--no-print-directory"] + list(args),
                       capture_output=True, text=True, timeout=900)
    if check and r.returncode != 0:
        pytest.fail("make %s failed:\n%s%s" % (" ".join(args), r.stdout[-3000:], r.stderr[-3000:]))
    return r


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """{package: path of its .deb} (and "changes": the .changes file)."""
    d = os.environ.get("DPR_DEB_DIR")
    if not d:
        d = str(tmp_path_factory.mktemp("deb"))
        make("deb", "BUILD=" + d)
    v = version()
    out = {p: os.path.join(d, "%s_%s_amd64.deb" % (p, v)) for p in PACKAGES}
    out["changes"] = os.path.join(d, "dpr-cluster_%s_amd64.changes" % v)
    for p, path in out.items():
        assert os.path.exists(path), "make deb made no %s" % path
    return out


def contents(deb):
    """The files and symlinks of a .deb (no directories), as absolute paths."""
    out = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], check=True, capture_output=True).stdout
    names = subprocess.run(["tar", "-t", "-v", "-f", "-"], input=out, check=True,
                           capture_output=True).stdout.decode().splitlines()
    return {line.split(None, 5)[5].split(" -> ")[0].lstrip(".") for line in names
            if not line.startswith("d")}


def tree(root):
    """The files and symlinks under root, as absolute paths inside it."""
    out = set()
    for d, dirs, files in os.walk(root):
        for name in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            out.add("/" + os.path.relpath(os.path.join(d, name), root))
    return out


def test_lintian_reports_no_error_nor_warning(debs):
    r = subprocess.run(["lintian", "--pedantic", "--display-info", "--fail-on", "none",
                        debs["changes"]],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    tags = [line for line in r.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert not tags, "\n".join(tags)
    # the remaining info and pedantic tags are the ones docs/packaging.md explains
    with open(os.path.join(ROOT, "docs", "packaging.md"), encoding="utf-8") as f:
        doc = f.read()
    for line in r.stdout.splitlines():
        m = re.match(r"^[IPX]: \S+: (\S+)", line)
        if m:
            assert m.group(1) in doc, "lintian tag %s is not explained in docs/packaging.md" % line


def test_packages_hold_what_make_install_installs(debs, tmp_path):
    """The four packages together hold exactly `make install` with Debian's
    directories (plus Debian's own changelog, copyright and lintian override files), man pages
    compressed; the library files sit where their package names say."""
    stage = str(tmp_path / "stage")
    make("install", "DESTDIR=" + stage, *DEB_VARS)
    installed = {p + ".gz" if p.startswith("/usr/share/man/") else p for p in tree(stage)}
    lists = {p: contents(debs[p]) for p in PACKAGES}
    packaged = set().union(*lists.values())
    debian_own = {p for p in packaged if re.match(r"^/usr/share/doc/[^/]+/(changelog\.gz|copyright)$", p)
                  or p.startswith("/usr/share/lintian/overrides/")}
    assert debian_own == {"/usr/share/doc/%s/%s" % (p, f) for p in PACKAGES
                          for f in ("changelog.gz", "copyright")} | \
        {"/usr/share/lintian/overrides/dpr-cluster"}
    assert packaged - debian_own == installed
    lib = "/usr/lib/" + MULTIARCH
    assert lists["libdpr0"] - debian_own == {lib + "/libdpr.so.0"}
    assert lists["libdpr-discover0"] - debian_own == {lib + "/libdpr-discover.so.0"}
    assert {lib + "/libdpr.so", lib + "/pkgconfig/dpr.pc", "/usr/include/dpr/client.h"} <= lists["libdpr-dev"]
    want = {"/usr/bin/dpr-agent", "/usr/bin/dpr-kv", "/usr/bin/dpr-finder", "/usr/bin/dprctl",
            "/lib/systemd/system/dpr-agent.service", "/lib/systemd/system/dpr-cachestore@.service",
            "/etc/dpr/agent.conf", "/usr/lib/sysusers.d/dpr-cluster.conf",
            "/usr/lib/python3/dist-packages/dpr/cli.py", "/usr/lib/python3/dist-packages/dpr/_install.py",
            "/usr/share/bash-completion/completions/dprctl",
            "/usr/share/man/man1/dprctl.1.gz", "/usr/share/man/man5/agent.conf.5.gz",
            "/usr/share/man/man8/dpr-agent.8.gz", "/usr/share/man/man8/dpr-kv.8.gz",
            "/usr/share/man/man8/dpr-finder.8.gz",
            "/usr/share/doc/dpr-cluster/examples/cluster.yaml",
            "/usr/share/doc/dpr-cluster/operations.md",
            "/usr/lib/python3/dist-packages/dpr/py.typed",
            "/usr/lib/systemd/catalog/dpr-cluster.catalog",
            "/usr/lib/python3/dist-packages/dpr_cluster-%s.dist-info/METADATA" % version()}
    assert want <= lists["dpr-cluster"], want - lists["dpr-cluster"]
    # the SONAMEs, the conffile and the paths substituted for /usr/local
    for so in ("libdpr.so.0", "libdpr-discover.so.0"):
        dyn = subprocess.run(["readelf", "-d", stage + lib + "/" + so], check=True,
                             capture_output=True, text=True).stdout
        assert "Library soname: [%s]" % so in dyn
    ctl = tmp_path / "ctl"
    subprocess.run(["dpkg-deb", "-e", debs["dpr-cluster"], str(ctl)], check=True)
    assert (ctl / "conffiles").read_text().split() == ["/etc/dpr/agent.conf"]
    for f in ("/lib/systemd/system/dpr-agent.service", "/etc/dpr/agent.conf"):
        text = open(stage + f, encoding="utf-8").read()
        assert "/usr/local" not in text and "/usr/bin/dpr-" in text, f
    assert open(stage + "/usr/lib/python3/dist-packages/dpr/_install.py").read() == \
        'LIBDPR = "%s/libdpr.so.0"\nVERSION = "%s"\n' % (lib, version())
    # dpr-agent's default cache-store program (no cachestores.impls) is the package's
    with open(stage + "/usr/bin/dpr-agent", "rb") as f:
        agent = f.read()
    assert b"/usr/bin/dpr-kv\0" in agent and b"/usr/local/bin" not in agent


def test_make_install_then_uninstall_leaves_nothing(tmp_path):
    stage = str(tmp_path / "stage")
    make("install", "DESTDIR=" + stage)
    files = tree(stage)
    lib = "/usr/local/lib/"
    assert os.readlink(stage + lib + "libdpr.so") == "libdpr.so.0"
    assert os.readlink(stage + lib + "libdpr-discover.so") == "libdpr-discover.so.0"
    assert {"/usr/local/bin/dpr-agent", "/usr/local/bin/dprctl", lib + "pkgconfig/dpr.pc",
            "/usr/local/share/man/man5/agent.conf.5", "/usr/local/lib/sysusers.d/dpr-cluster.conf",
            "/usr/local/share/bash-completion/completions/dprctl", "/etc/dpr/agent.conf",
            "/usr/local/lib/systemd/system/dpr-agent.service"} <= files
    # pkg-config finds the staged library
    env = dict(os.environ, PKG_CONFIG_PATH=stage + lib + "pkgconfig", PKG_CONFIG_SYSROOT_DIR=stage)
    r = subprocess.run(["pkg-config", "--cflags", "--libs", "dpr"], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "-ldpr" in r.stdout and stage + "/usr/local/include" in r.stdout, r
    # a program calling libdpr builds against the staged header and library
    src = tmp_path / "t.c"
    src.write_text('#include <dpr/domain.h>\n'
                   'int main(void) { return dpr_domain_valid("default", 7) ? 0 : 1; }\n')
    subprocess.run(["cc", "-o", str(tmp_path / "t"), str(src)] + r.stdout.split(), check=True)
    # uninstall removes every file (a second install keeps the conf as it is)
    make("install", "DESTDIR=" + stage)
    assert tree(stage) == files
    make("uninstall", "DESTDIR=" + stage)
    assert tree(stage) == set()
    # a changed agent.conf stays, as a conffile would
    make("install", "DESTDIR=" + stage)
    with open(stage + "/etc/dpr/agent.conf", "a") as f:
        f.write("# changed\n")
    r = make("uninstall", "DESTDIR=" + stage)
    assert tree(stage) == {"/etc/dpr/agent.conf"} and "keeping the changed" in r.stdout


def instance_pid(node):
    return node.systemctl("show", "-p", "MainPID", "--value", "dpr-cachestore@kv-0.service")


def test_package_on_a_systemd_node(make_cluster, debs):
    """dpkg -i, enable --now, an upgrade (reinstall: the agent restarts, the
    cache-store keeps running), remove (state kept), purge (state gone)."""
    c = make_cluster(1, stage=None)
    node = c[0]
    assert node.run("test -e /usr/bin/dpr-agent", check=False).returncode != 0
    # the node stands for a real host: a container host's policy-rc.d (Docker's
    # exits 101: maintainer scripts start and restart no service) goes, in the
    # node's overlay only
    node.run("rm -f /usr/sbin/policy-rc.d")
    share = node.path("/root/debs")
    os.makedirs(share)
    for p in ("dpr-cluster", "libdpr0"):
        shutil.copy(debs[p], share)
    node.run("dpkg -i /root/debs/libdpr0_*.deb /root/debs/dpr-cluster_*.deb", timeout=180)
    # the dpr group and the dpr-cachestore system user from sysusers.d (the
    # postinst); the agent is installed but not enabled
    assert node.run("getent group dpr", check=False).returncode == 0
    pw = node.run("getent passwd dpr-cachestore").stdout.split(":")
    assert 0 < int(pw[2]) < 1000 and pw[6].strip().endswith("nologin"), pw
    assert node.systemctl("is-enabled", "dpr-agent", check=False) == "disabled"
    assert node.is_active("dpr-agent") == "inactive"

    node.run("sed -i 's/^cluster = \"demo\";/cluster = \"pkg\";/' /etc/dpr/agent.conf")
    node.run("systemctl enable --now dpr-agent", timeout=90)
    assert node.is_active("dpr-agent") == "active"
    node.run("cat > /root/spec.yaml", input=SPEC)
    node.run("dprctl apply -f /root/spec.yaml --wait --timeout 60", timeout=90)
    for prog in ("dpr-agent", "dpr-kv", "dpr-finder", "dprctl"):
        assert node.run([prog, "--version"]).stdout == "%s %s\n" % (prog, version())
    status = node.run("dprctl status").stdout
    assert "pkg" in status and "kv" in status, status
    assert node.run("python3 -c 'import dpr._libdpr as L; L.get_lib(); print(L.library_path)'"
                    ).stdout.strip() == "/usr/lib/%s/libdpr.so.0" % MULTIARCH
    # state directories are not world-readable: the agent's 0711, an instance's 0700
    assert node.run("stat -c %a /var/lib/dpr /var/lib/dpr/kv-0").stdout.split() == ["711", "700"]
    # the instance runs as dpr-cachestore, which owns its state directory
    assert node.run("stat -c %U /var/lib/dpr/kv-0").stdout.strip() == "dpr-cachestore"
    assert node.run("ps -o user= -p %s" % instance_pid(node)).stdout.strip() == "dpr-cachestore"
    # the journal's catalog (systemd's trigger compiled it) explains the agent's MESSAGE_IDs
    assert "Subject: DPR domain @DPR_DOMAIN@ rolled back" in node.run(
        "journalctl --no-pager --dump-catalog 892d967b7a6c449397bf100928d6aff0").stdout
    # the Python distribution (python-dpr/pyproject.toml), as importlib.metadata sees it
    assert node.run("python3 -c 'import importlib.metadata as m; d = m.distribution(\"dpr-cluster\"); "
                    "print(d.version, [e.value for e in d.entry_points])'").stdout == \
        "%s ['dpr.cli:main']\n" % version()
    exec_start = node.systemctl("show", "-p", "ExecStart", "--value", "dpr-cachestore@kv-0")
    assert "/usr/bin/env" in exec_start
    env = node.run("cat /run/dpr/instances/kv-0.env").stdout
    assert "DPR_CS_EXEC=/usr/bin/dpr-kv" in env, env

    # upgrade (the same version again): dpr-agent restarts, the instance does not
    agent_pid = node.systemctl("show", "-p", "MainPID", "--value", "dpr-agent")
    kv_pid = instance_pid(node)
    node.run("dpkg -i /root/debs/dpr-cluster_*.deb", timeout=180)
    wait_for("dpr-agent restarted", lambda: node.is_active("dpr-agent") == "active" and
             node.systemctl("show", "-p", "MainPID", "--value", "dpr-agent") not in ("0", agent_pid))
    assert instance_pid(node) == kv_pid
    assert node.systemctl("is-enabled", "dpr-agent") == "enabled"
    node.run("dprctl wait --timeout 60", timeout=90)

    # remove: the agent and its instances stop; the state and the conffile stay
    node.run("dpkg -r dpr-cluster", timeout=120)
    assert node.is_active("dpr-agent") != "active"
    assert node.is_active("dpr-cachestore@kv-0") != "active"
    assert node.run("test -e /usr/bin/dpr-agent", check=False).returncode != 0
    assert node.run("test -f /var/lib/dpr/agent.json").returncode == 0
    assert node.run("ls /var/lib/dpr/kv-0").stdout.strip()
    assert node.run("test -f /etc/dpr/agent.conf").returncode == 0
    # purge: the state, the configuration and the enablement go
    node.run("dpkg -P dpr-cluster", timeout=120)
    for p in ("/var/lib/dpr", "/etc/dpr", "/etc/systemd/system/multi-user.target.wants/dpr-agent.service"):
        assert node.run("test -e %s" % p, check=False).returncode != 0, p
