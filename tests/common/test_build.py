"""The build's library flags (Makefile, "Libraries"): every library that
ships a .pc file is linked with what pkg-config says, and make stops with a
message naming the libraries pkg-config cannot find, before compiling
anything."""
import os
import re
import subprocess

from dprtest import ROOT

LIBRARIES = ["libuv", "libsystemd", "openssl", "zlib", "hiredis", "libconfig", "jansson", "raft",
             "liblz4", "avahi-client", "libnl-3.0", "libnl-route-3.0", "fuse3"]


def make(*args, env=None):
    return subprocess.run(["make", "--no-print-directory", "-C", ROOT] + list(args),
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})))


def pkg_config(*args):
    return subprocess.run(["pkg-config"] + list(args), capture_output=True, text=True,
                          check=True).stdout.split()


def test_make_names_the_libraries_pkg_config_lacks(tmp_path):
    # a pkg-config that sees .pc files of two of them only
    pcdir = tmp_path / "pc"
    pcdir.mkdir()
    for lib in ("libuv", "zlib"):
        path = pkg_config("--variable=pcfiledir", lib)[0]
        (pcdir / (lib + ".pc")).write_text(open(os.path.join(path, lib + ".pc")).read())
    r = make("-n", "BUILD=" + str(tmp_path / "build"), "all",
             env={"PKG_CONFIG_LIBDIR": str(pcdir), "PKG_CONFIG_PATH": ""})
    assert r.returncode == 2, r.stdout + r.stderr
    m = re.search(r"pkg-config \(pkg-config\) finds no (.*?): install the development "
                  r"packages", r.stderr)
    assert m, r.stderr
    assert m.group(1).split() == [p for p in LIBRARIES if p not in ("libuv", "zlib")]
    assert "sudo make deps" in r.stderr
    assert not (tmp_path / "build").exists()
    # goals that need no library still work (make deps installs them)
    r = make("-n", "clean", env={"PKG_CONFIG_LIBDIR": str(pcdir), "PKG_CONFIG_PATH": ""})
    assert r.returncode == 0, r.stderr


def test_programs_link_what_pkg_config_says(tmp_path):
    # the link commands make would run for the agent and dpr-kv, from scratch
    r = make("-n", "-B", "BUILD=" + str(tmp_path / "build"),
             str(tmp_path / "build" / "dpr-agent"), str(tmp_path / "build" / "dpr-kv"))
    assert r.returncode == 0, r.stderr
    links = {}
    for line in r.stdout.splitlines():
        words = line.split()
        if "-o" in words and not words[words.index("-o") + 1].endswith(".o"):
            links[os.path.basename(words[words.index("-o") + 1])] = words
    agent, kv = links["dpr-agent"], links["dpr-kv"]
    for lib in LIBRARIES[:-1]:
        if lib == "libnl-3.0":
            continue  # (libnl-route-3.0 requires it)
        for flag in pkg_config("--libs", lib):
            assert flag in agent, (lib, flag, agent)
    for lib in ("libuv", "libsystemd", "openssl", "zlib", "hiredis"):
        for flag in pkg_config("--libs", lib):
            assert flag in kv, (lib, flag, kv)
    assert "-lm" in kv
    # and the compile commands carry the libraries' cflags (hiredis' include directory)
    compiles = [line.split() for line in r.stdout.splitlines() if " -c " in line]
    assert compiles
    for flag in pkg_config("--cflags", "hiredis"):
        assert all(flag in c for c in compiles), flag
    agent_compiles = [c for c in compiles if "agent/src/main.c" in c]
    assert agent_compiles
    for flag in pkg_config("--cflags", "libnl-route-3.0", "avahi-client"):
        assert flag in agent_compiles[0], flag

