"""The ctypes structures in dpr._libdpr must match the C headers exactly:
compile a C program that prints sizeof/offsetof of every mirrored struct and
field, and compare with ctypes."""
import ctypes
import os
import shutil
import struct
import subprocess

import pytest

from dpr import _libdpr as L

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def c_program():
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "dpr/depset.h"',
             '#include "dpr/wire.h"', '#include "dpr/session.h"', 'int main(void) {']
    for s in L.STRUCTS:
        cname = s._c_name_
        lines.append('printf("%s sizeof %%zu\\n", sizeof(%s));' % (cname, cname))
        lines.append('printf("%s alignof %%zu\\n", _Alignof(%s));' % (cname, cname))
        names = getattr(s, "_c_field_names_", {})
        for f, _t in s._fields_:
            cf = names.get(f, f)
            lines.append('printf("%s.%s offsetof %%zu\\n", offsetof(%s, %s));'
                         % (cname, cf, cname, cf))
            lines.append('printf("%s.%s sizeof %%zu\\n", sizeof(((%s *)0)->%s));'
                         % (cname, cf, cname, cf))
    lines += ["return 0;", "}"]
    return "\n".join(lines) + "\n"


def python_values():
    out = {}
    for s in L.STRUCTS:
        cname = s._c_name_
        out["%s sizeof" % cname] = ctypes.sizeof(s)
        out["%s alignof" % cname] = ctypes.alignment(s)
        names = getattr(s, "_c_field_names_", {})
        for f, t in s._fields_:
            cf = names.get(f, f)
            out["%s.%s offsetof" % (cname, cf)] = getattr(s, f).offset
            out["%s.%s sizeof" % (cname, cf)] = ctypes.sizeof(t)
    return out


def test_struct_layout_matches_c(tmp_path):
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler (cc) to check the layout with")
    src = tmp_path / "layout.c"
    exe = tmp_path / "layout"
    src.write_text(c_program())
    subprocess.run([cc, "-std=c11", "-I", os.path.join(ROOT, "libdpr", "include"),
                    "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    c_values = {}
    for line in out.splitlines():
        k, _, v = line.rpartition(" ")
        c_values[k] = int(v)
    py = python_values()
    assert set(c_values) == set(py)
    diffs = {k: (c_values[k], py[k]) for k in py if c_values[k] != py[k]}
    assert not diffs, "C vs ctypes (C, python): %r" % diffs


def test_wire_roundtrip_matches_documented_example():
    # docs/protocol.md: session 0102030405060708:1112131415161718 of domain kv,
    # world-line 3, version_lb 42, batch 9, 5 operations, one dependency
    # (worker 7, version 4)
    assert L.domain_id("kv") == 0x08be5007b5629334
    assert L.domain_id("default") == 0xebada5168620c5fe
    hdr = L.RequestHdr(L.SessionId(0x0102030405060708, 0x1112131415161718),
                       L.domain_id("kv"), 3, 42, 9, 5)
    deps = L.depset_from_dict({7: 4})
    try:
        data = L.encode_request(hdr, deps)
    finally:
        L.lib.dpr_depset_free(ctypes.byref(deps))
    assert data.hex() == (
        "0251000005000000" "0807060504030201" "1817161514131211" "0300000000000000"
        "2a00000000000000" "0900000000000000" "0100000000000000" "349362b50750be08"
        "0700000000000000" "0400000000000000")
    resp = bytes.fromhex("0152000003000000" "0300000000000000" "0900000000000000"
                         "0300000000000000" "0500000000000000" "0500000000000000"
                         "0600000000000000")
    rh, _buf = L.decode_response(resp)
    assert (rh.status, rh.world_line, rh.batch_id, rh.op_count, rh.version_count) == \
        (L.WIRE_EXECUTED, 3, 9, 3, 3)
    assert [L.lib.dpr_wire_response_version(ctypes.byref(rh), i) for i in range(3)] == [5, 5, 6]
    with pytest.raises(ValueError):
        L.decode_response(resp[:-1])
    with pytest.raises(ValueError):
        L.decode_response(b"\x02" + resp[1:])


def test_session_through_ctypes_without_io():
    """The C session's rules, driven from Python: commit point and rollback."""
    s = L.Session()
    assert L.lib.dpr_session_init(ctypes.byref(s), L.SessionId(1, 2), 1, 1, 0) == 0
    try:
        versions = []
        for worker, version in ((1, 3), (2, 5), (1, 4)):
            hdr, first = L.RequestHdr(), ctypes.c_uint64()
            assert L.lib.dpr_session_begin_batch(ctypes.byref(s), worker, 1, ctypes.byref(hdr),
                                                 ctypes.byref(first)) == 0
            assert hdr.world_line == 1 and first.value == hdr.batch_id
            resp = struct.pack("<BBBBIQQII", 1, 0x52, 0, 0, 1, 1, hdr.batch_id, 1, 0) + \
                struct.pack("<Q", version)
            rh, _buf = L.decode_response(resp)
            assert L.lib.dpr_session_resolve(ctypes.byref(s), ctypes.byref(rh)) == 0
            versions.append(version)
        assert L.depset_to_dict(s.deps) == {1: 4, 2: 5}
        cut = L.depset_from_dict({1: 3, 2: 4})
        assert L.lib.dpr_session_commit_point(ctypes.byref(s), ctypes.byref(cut)) == 1
        L.lib.dpr_depset_free(ctypes.byref(cut))
        cut = L.depset_from_dict({1: 3, 2: 5})
        res = L.RollbackResult()
        assert L.lib.dpr_session_rollback(ctypes.byref(s), 2, ctypes.byref(cut),
                                          ctypes.byref(res)) == 0
        L.lib.dpr_depset_free(ctypes.byref(cut))
        assert (res.lost_from, res.lost_count, res.nsurvived_above) == (3, 1, 0)
        assert s.world_line == 2 and s.commit_point == 3 and s.next_seq == 4
        assert not L.lib.dpr_session_is_committed(ctypes.byref(s), 3)
        assert L.lib.dpr_session_is_committed(ctypes.byref(s), 2)
    finally:
        L.lib.dpr_session_free(ctypes.byref(s))


def test_library_override(tmp_path):
    env = dict(os.environ, DPR_LIBDPR=str(tmp_path / "nope.so"),
               PYTHONPATH=os.path.join(ROOT, "python-dpr"))
    code = ("import dpr\n"  # importing works without the library
            "try:\n"
            "    dpr.Client(shards=['127.0.0.1:1'], finder='127.0.0.1:1').session()\n"
            "except dpr.LibdprNotFound as e:\n"
            "    assert isinstance(e, dpr.DprError) and isinstance(e, ImportError)\n"
            "    print(e)\n")
    p = subprocess.run(["/usr/bin/python3", "-c", code], env=env, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    assert "DPR_LIBDPR=" in p.stdout and "does not exist" in p.stdout


def test_installed_copy_finds_the_library_from_install_file(tmp_path):
    """What `make install` does: the package copied into a site directory
    plus dpr/_install.py naming the installed libdpr.so."""
    site = tmp_path / "site"
    shutil.copytree(os.path.join(ROOT, "python-dpr", "dpr"), site / "dpr",
                    ignore=shutil.ignore_patterns("__pycache__", "_install.py"))
    (site / "dpr" / "_install.py").write_text("LIBDPR = %r\n" % L.library_path)
    env = {k: v for k, v in os.environ.items() if k not in ("DPR_LIBDPR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    p = subprocess.run(["/usr/bin/python3", "-c",
                        "import dpr, dpr._libdpr as L; print(dpr.__file__); "
                        "print(L.library_path)"],
                       env=env, capture_output=True, text=True, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    file_, lib = p.stdout.split()
    assert file_.startswith(str(site)) and lib == L.library_path
