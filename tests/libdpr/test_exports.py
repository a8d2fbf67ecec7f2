"""libdpr's public surface: what libdpr.so and libdpr-discover.so export and
what their headers need.

libdpr is compiled with -fvisibility=hidden, so only functions declared with
DPR_EXPORT in libdpr/include/dpr/*.h may leave libdpr.so (docs/style.md,
"Naming"); those of dpr/discover.h leave libdpr-discover.so instead (the
library that finds clusters by DNS-SD: avahi-client and libresolv, which
libdpr itself must not need). This checks that `nm -D --defined-only` of
each lists exactly its functions (a missing DPR_EXPORT, or a private or
base-layer function leaking out, fails with the difference), that libdpr.so
needs neither avahi nor libresolv (readelf's NEEDED entries), and that the
public headers, which are installed alone, include neither hiredis (users of
replies include it themselves) nor the base layer's common/ headers, and
compile on their own.

Skips when the libraries have not been built.
"""
import glob
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("DPR_BUILD", "build")
BUILD_DIR = BUILD if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD)
LIBDPR_SO = os.path.join(BUILD_DIR, "libdpr.so")
DISCOVER_SO = os.path.join(BUILD_DIR, "libdpr-discover.so")
INCLUDE = os.path.join(ROOT, "libdpr", "include")
HEADERS = sorted(glob.glob(os.path.join(INCLUDE, "dpr", "*.h")))
# the header whose functions libdpr-discover.so exports (libdpr/discover/)
DISCOVER_H = "libdpr/include/dpr/discover.h"
# library -> does a header's function belong to it
LIBRARIES = {LIBDPR_SO: lambda header: header != DISCOVER_H,
             DISCOVER_SO: lambda header: header == DISCOVER_H}

needs_so = pytest.mark.skipif(not os.path.exists(LIBDPR_SO) or not os.path.exists(DISCOVER_SO),
                              reason="needs %s and %s (make)" % (LIBDPR_SO, DISCOVER_SO))


def strip_comments(text: str) -> str:
    """C text without /* */ and // comments (string literals are not expected
    in these headers outside comments)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def declared_exports() -> dict:
    """name -> header for every function declared with DPR_EXPORT."""
    found = {}
    for path in HEADERS:
        with open(path, encoding="utf-8") as f:
            text = strip_comments(f.read())
        text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)  # the #define of DPR_EXPORT
        # a declaration runs from DPR_EXPORT to its ';' (or '{' for an inline body)
        for decl in re.findall(r"\bDPR_EXPORT\b([^;{]*)", text):
            m = re.search(r"(\w+)\s*\(", decl)
            assert m, "%s: cannot read the DPR_EXPORT declaration %r" % (path, decl.strip())
            found[m.group(1)] = os.path.relpath(path, ROOT)
    return found


def exported_symbols(lib: str) -> dict:
    """name -> nm type letter for every symbol lib defines dynamically."""
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True,
                         capture_output=True, text=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2].split("@")[0]] = parts[1]
    return syms


def test_headers_declare_exports():
    names = declared_exports()
    assert len(HEADERS) >= 6, HEADERS
    # a few that every user needs: the parser must have found them
    for name in ("dpr_client_new", "dpr_session_init", "dpr_wire_decode_request",
                 "dpr_depset_put_max", "dpr_worker_execute", "dpr_route_shard"):
        assert name in names, "%s not found among the DPR_EXPORT declarations" % name


@needs_so
@pytest.mark.parametrize("lib", [LIBDPR_SO, DISCOVER_SO], ids=os.path.basename)
def test_so_exports_exactly_the_declared_functions(lib):
    declared = {n: h for n, h in declared_exports().items() if LIBRARIES[lib](h)}
    exported = exported_symbols(lib)
    missing = sorted(set(declared) - set(exported))
    extra = sorted(set(exported) - set(declared))
    lines = []
    if missing:
        lines.append("declared DPR_EXPORT but not exported by %s:" % lib)
        lines += ["  - %s (%s)" % (n, declared[n]) for n in missing]
    if extra:
        lines.append("exported by %s but not declared DPR_EXPORT in its headers:" % lib)
        lines += ["  + %s (nm type %s)" % (n, exported[n]) for n in extra]
    assert not lines, "\n".join(lines)
    # functions only: no data leaves the library
    not_text = sorted(n for n, t in exported.items() if t not in ("T", "W", "i"))
    assert not not_text, "exported symbols that are not functions: %s" % not_text


def needed(lib: str) -> list:
    """The NEEDED entries of lib's dynamic section (readelf -d)."""
    out = subprocess.run(["readelf", "-d", lib], check=True, capture_output=True,
                         text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


@needs_so
def test_libdpr_needs_no_avahi_nor_libresolv():
    libdpr = needed(LIBDPR_SO)
    assert any(n.startswith("libhiredis") for n in libdpr), libdpr
    assert not [n for n in libdpr if "avahi" in n or "resolv" in n], libdpr
    discover = needed(DISCOVER_SO)
    for want in ("libdpr.so", "libavahi-client", "libresolv"):
        assert any(n.startswith(want) for n in discover), (want, discover)


def test_public_headers_include_no_hiredis_nor_common():
    bad = []
    for path in HEADERS:
        with open(path, encoding="utf-8") as f:
            text = strip_comments(f.read())
        for inc in re.findall(r"^\s*#\s*include\s*([<\"][^>\"]+[>\"])", text, flags=re.M):
            if "hiredis" in inc or "common/" in inc:
                bad.append("%s includes %s" % (os.path.relpath(path, ROOT), inc))
    assert not bad, "\n".join(bad)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")
@pytest.mark.parametrize("header", [os.path.basename(h) for h in HEADERS])
def test_public_header_compiles_alone(header, tmp_path):
    """Each header with only libdpr/include on the path: no hidden need for
    hiredis or common/, no missing #include."""
    src = tmp_path / "use.c"
    src.write_text('#include "dpr/%s"\n#include "dpr/%s"\n' % (header, header))
    r = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                        "-I" + INCLUDE, str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, "dpr/%s does not compile alone:\n%s" % (header, r.stderr)
