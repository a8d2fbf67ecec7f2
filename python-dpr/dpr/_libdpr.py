"""ctypes binding to libdpr.so (the C library in libdpr/).

Only what the Python client needs is bound: dependency sets, the batch
header wire format, domain ids and the client session. The structures below
mirror libdpr/include/dpr/{depset,wire,session}.h field by field; every class names
its C type in ``_c_name_`` so tests/python-dpr/test_layout.py can compile a C
program and compare sizes and offsets with ``ctypes``.

The library is loaded on first use (``get_lib()``, or the module attributes
``lib`` and ``library_path``), so ``import dpr`` works without it. It is
found, in this order:
  1. ``$DPR_LIBDPR`` (a path to libdpr.so),
  2. the source tree: ``<repo>/build/libdpr.so`` next to ``python-dpr/``,
  3. where ``make install`` put it: ``LIBDPR`` in ``dpr/_install.py``, a
     file that ``make install`` writes (absent in the source tree; the
     installed ``libdpr.so.0``, which the Debian package libdpr0 holds),
  4. the system: ``ctypes.util.find_library("dpr")``, then
     ``/usr/local/lib/libdpr.so`` and ``/usr/lib/libdpr.so``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from ctypes import POINTER, c_bool, c_size_t, c_ssize_t, c_uint, c_uint8, c_uint32, c_uint64
from typing import Any

from .errors import DprError

__all__ = [
    "get_lib", "LibdprNotFound",
    "DepT", "DepSet", "SessionId", "RequestHdr", "ResponseHdr", "SessionOp",
    "SeqRange", "SessionBatch", "Session", "RollbackResult", "STRUCTS",
    "WIRE_EXECUTED", "WIRE_REFUSED", "SESSION_RELAXED", "WIRE_REQUEST_FIXED",
    "WIRE_DEP_SIZE", "WIRE_RESPONSE_FIXED", "WIRE_VERSION_SIZE", "WIRE_MAX_OPS",
    "WIRE_REQUEST_FORMAT", "WIRE_RESPONSE_FORMAT", "DOMAIN_MAX", "DOMAIN_DEFAULT",
    "errname", "depset_from_dict", "depset_to_dict", "encode_request",
    "decode_response", "domain_id", "free",
]

WIRE_EXECUTED = 0
WIRE_REFUSED = 1
SESSION_RELAXED = 0x1
WIRE_REQUEST_FORMAT = 0x02  # byte 0 of a request header (with the domain)
WIRE_RESPONSE_FORMAT = 0x01
WIRE_REQUEST_FIXED = 64
WIRE_DEP_SIZE = 16
WIRE_RESPONSE_FIXED = 32
WIRE_VERSION_SIZE = 8
WIRE_MAX_OPS = 1 << 24
DOMAIN_MAX = 63  # dpr/domain.h
DOMAIN_DEFAULT = "default"


class LibdprNotFound(DprError, ImportError):
    """libdpr.so could not be found or loaded."""


# --- structures (keep in the order and types of the C headers) ----------------

class DepT(ctypes.Structure):
    _c_name_ = "dpr_dep"
    _fields_ = [("worker", c_uint64), ("version", c_uint64)]


class DepSet(ctypes.Structure):
    _c_name_ = "dpr_depset"
    _fields_ = [("slots", POINTER(DepT)), ("cap", c_size_t), ("count", c_size_t)]


class SessionId(ctypes.Structure):
    _c_name_ = "dpr_session_id"
    _fields_ = [("hi", c_uint64), ("lo", c_uint64)]


class RequestHdr(ctypes.Structure):
    _c_name_ = "dpr_request_hdr"
    _fields_ = [
        ("session", SessionId),
        ("domain", c_uint64),
        ("world_line", c_uint64),
        ("version_lb", c_uint64),
        ("batch_id", c_uint64),
        ("op_count", c_uint32),
        ("dep_count", c_uint32),
        ("deps", POINTER(c_uint8)),
    ]


class ResponseHdr(ctypes.Structure):
    _c_name_ = "dpr_response_hdr"
    _fields_ = [
        ("status", ctypes.c_int),  # enum dpr_wire_status
        ("world_line", c_uint64),
        ("batch_id", c_uint64),
        ("op_count", c_uint32),
        ("version_count", c_uint32),
        ("versions", POINTER(c_uint8)),
        ("versions_in", POINTER(c_uint64)),
    ]


class SessionOp(ctypes.Structure):
    _c_name_ = "dpr_session_op"
    _fields_ = [
        ("seq", c_uint64),
        ("worker", c_uint64),
        ("batch_id", c_uint64),
        ("version", c_uint64),
        ("committed", c_bool),
        ("withdrawn", c_bool),
    ]


class SeqRange(ctypes.Structure):
    _c_name_ = "dpr_seq_range"
    _fields_ = [("from_", c_uint64), ("to", c_uint64)]
    _c_field_names_ = {"from_": "from"}


class SessionBatch(ctypes.Structure):
    _c_name_ = "dpr_session_batch"
    _fields_ = [
        ("batch_id", c_uint64),
        ("worker", c_uint64),
        ("first_seq", c_uint64),
        ("op_count", c_uint32),
    ]


class Session(ctypes.Structure):
    _c_name_ = "dpr_session"
    _fields_ = [
        ("id", SessionId),
        ("domain", c_uint64),
        ("flags", c_uint),
        ("world_line", c_uint64),
        ("next_seq", c_uint64),
        ("next_batch_id", c_uint64),
        ("commit_point", c_uint64),
        ("deps", DepSet),
        ("ops", POINTER(SessionOp)),
        ("ops_head", c_size_t),
        ("ops_len", c_size_t),
        ("ops_cap", c_size_t),
        ("batches", POINTER(SessionBatch)),
        ("nbatches", c_size_t),
        ("batches_cap", c_size_t),
        ("seen_world_line", c_uint64),
        ("in_doubt", c_bool),
        ("deps_max", c_uint64),
        ("lost", POINTER(SeqRange)),
        ("nlost", c_size_t),
        ("lost_cap", c_size_t),
        ("withdrawn", POINTER(SeqRange)),
        ("nwithdrawn", c_size_t),
        ("withdrawn_cap", c_size_t),
    ]


class RollbackResult(ctypes.Structure):
    _c_name_ = "dpr_rollback_result"
    _fields_ = [
        ("lost_from", c_uint64),
        ("lost_count", c_uint64),
        ("survived_above", POINTER(c_uint64)),
        ("nsurvived_above", c_size_t),
    ]


STRUCTS = (DepT, DepSet, SessionId, RequestHdr, ResponseHdr, SessionOp, SeqRange,
           SessionBatch, Session, RollbackResult)


# --- loading -------------------------------------------------------------------

def _candidates() -> list[str]:
    out = []
    env = os.environ.get("DPR_LIBDPR")
    if env:
        out.append(env)
    here = os.path.dirname(os.path.abspath(__file__))
    out.append(os.path.normpath(os.path.join(here, "..", "..", "build", "libdpr.so")))
    try:
        from ._install import LIBDPR  # type: ignore[import-not-found]
        out.append(LIBDPR)
    except ImportError:
        pass
    found = ctypes.util.find_library("dpr")
    if found:
        out.append(found)
    out += ["/usr/local/lib/libdpr.so", "/usr/lib/libdpr.so"]
    return out


def _load() -> tuple[ctypes.CDLL, str]:
    """Loads the first candidate that exists. One that exists but does not
    load is an error (never a silent fall-back to another, maybe older, copy)."""
    env = os.environ.get("DPR_LIBDPR")
    if env and not os.path.exists(env):
        raise LibdprNotFound("DPR_LIBDPR=%s does not exist" % env)
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            hint = ""
            if "undefined symbol" in str(e):
                hint = (" (this libdpr.so was linked without the libraries it uses: link it "
                        "with -lhiredis -luv ..., then check with `ldd %s`)" % path)
            raise LibdprNotFound("cannot load %s: %s%s" % (path, e, hint)) from e
    raise LibdprNotFound(
        "libdpr.so not found (tried %s). Build it with `make` in the source tree, "
        "install it with `make install`, or set DPR_LIBDPR to its path." % ", ".join(tried))


def _bind_all(cdll: ctypes.CDLL) -> None:
    def _bind(name: str, restype: Any, *argtypes: Any) -> None:
        f = getattr(cdll, name)
        f.restype = restype
        f.argtypes = list(argtypes)

    _bind("dpr_depset_init", None, POINTER(DepSet))
    _bind("dpr_depset_free", None, POINTER(DepSet))
    _bind("dpr_depset_clear", None, POINTER(DepSet))
    _bind("dpr_depset_count", c_size_t, POINTER(DepSet))
    _bind("dpr_depset_get", c_uint64, POINTER(DepSet), c_uint64)
    _bind("dpr_depset_set", ctypes.c_int, POINTER(DepSet), c_uint64, c_uint64)
    _bind("dpr_depset_next", c_bool, POINTER(DepSet), POINTER(c_size_t), POINTER(DepT))

    _bind("dpr_wire_request_size", c_size_t, c_size_t)
    _bind("dpr_wire_encode_request", c_ssize_t, POINTER(RequestHdr), POINTER(DepSet),
          ctypes.c_void_p, c_size_t)
    _bind("dpr_wire_decode_response", c_ssize_t, ctypes.c_void_p, c_size_t,
          POINTER(ResponseHdr), POINTER(c_size_t))
    _bind("dpr_wire_response_version", c_uint64, POINTER(ResponseHdr), c_uint32)

    _bind("dpr_domain_valid", c_bool, ctypes.c_char_p, c_size_t)
    _bind("dpr_domain_id", c_uint64, ctypes.c_char_p, c_size_t)

    _bind("dpr_session_init", ctypes.c_int, POINTER(Session), SessionId, c_uint64, c_uint64,
          c_uint)
    _bind("dpr_session_free", None, POINTER(Session))
    _bind("dpr_session_begin_batch", ctypes.c_int, POINTER(Session), c_uint64, c_uint32,
          POINTER(RequestHdr), POINTER(c_uint64))
    _bind("dpr_session_resolve", ctypes.c_int, POINTER(Session), POINTER(ResponseHdr))
    _bind("dpr_session_abandon_batch", ctypes.c_int, POINTER(Session), c_uint64)
    _bind("dpr_session_cancel_batch", ctypes.c_int, POINTER(Session), c_uint64)
    _bind("dpr_session_commit_point", c_uint64, POINTER(Session), POINTER(DepSet))
    _bind("dpr_session_is_committed", c_bool, POINTER(Session), c_uint64)
    _bind("dpr_session_rollback", ctypes.c_int, POINTER(Session), c_uint64, POINTER(DepSet),
          POINTER(RollbackResult))


_loaded: tuple[ctypes.CDLL, str] | None = None
# set by get_lib(); until then __getattr__ below loads them on first access
lib: ctypes.CDLL
library_path: str
_load_lock = threading.Lock()


def get_lib() -> ctypes.CDLL:
    """The loaded library (loaded on first use: importing dpr never needs
    it, so the management API and dprctl work without libdpr.so)."""
    global _loaded, lib, library_path
    if _loaded is None:
        with _load_lock:
            if _loaded is None:
                cdll, path = _load()
                _bind_all(cdll)
                _loaded = (cdll, path)
                lib, library_path = cdll, path
    return _loaded[0]


def __getattr__(name: str) -> Any:
    # `_libdpr.lib` and `_libdpr.library_path` load the library on first access
    if name in ("lib", "library_path"):
        get_lib()
        return globals()[name]
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


_libc = ctypes.CDLL(None)
_libc.free.restype = None
_libc.free.argtypes = [ctypes.c_void_p]


def free(ptr: Any) -> None:
    """free() memory that libdpr malloc'd for the caller."""
    _libc.free(ctypes.cast(ptr, ctypes.c_void_p))


# --- helpers -------------------------------------------------------------------

def errname(ret: int) -> str:
    """'ESTALE (Stale file handle)' for a negative errno return value."""
    code = -ret
    return "%s (%s)" % (errno.errorcode.get(code, str(code)), os.strerror(code))


def depset_from_dict(d: dict[int, int]) -> DepSet:
    """A new C depset holding d; free it with get_lib().dpr_depset_free."""
    s = DepSet()
    get_lib().dpr_depset_init(ctypes.byref(s))
    for worker, version in d.items():
        r = get_lib().dpr_depset_set(ctypes.byref(s), worker, version)
        if r < 0:
            get_lib().dpr_depset_free(ctypes.byref(s))
            raise MemoryError("dpr_depset_set: %s" % errname(r))
    return s


def depset_to_dict(s: DepSet) -> dict[int, int]:
    out = {}
    it = c_size_t(0)
    d = DepT()
    while get_lib().dpr_depset_next(ctypes.byref(s), ctypes.byref(it), ctypes.byref(d)):
        out[d.worker] = d.version
    return out


def domain_id(name: str | bytes) -> int:
    """The id batch headers carry for domain `name` (dpr_domain_id: FNV-1a
    64 of the name, never 0). Meaningful only for a valid name."""
    raw = name.encode() if isinstance(name, str) else bytes(name)
    return get_lib().dpr_domain_id(raw, len(raw))


def encode_request(hdr: RequestHdr, deps: DepSet | None) -> bytes:
    """The bytes of a request header (dpr_wire_encode_request)."""
    n = get_lib().dpr_depset_count(ctypes.byref(deps)) if deps is not None else hdr.dep_count
    cap = get_lib().dpr_wire_request_size(n)
    buf = ctypes.create_string_buffer(cap)
    r = get_lib().dpr_wire_encode_request(ctypes.byref(hdr),
                                    ctypes.byref(deps) if deps is not None else None,
                                    buf, cap)
    if r < 0:
        raise ValueError("dpr_wire_encode_request: %s" % errname(r))
    return buf.raw[:r]


def decode_response(data: bytes) -> tuple[ResponseHdr, ctypes.Array]:
    """Decodes a response header. Returns (header, buffer): the header's
    version list points into the buffer, so keep the buffer alive as long as
    the header is used. Raises ValueError for anything but a whole, valid
    header."""
    buf = ctypes.create_string_buffer(data, len(data))
    hdr = ResponseHdr()
    need = c_size_t(0)
    r = get_lib().dpr_wire_decode_response(buf, len(data), ctypes.byref(hdr), ctypes.byref(need))
    if r < 0:
        raise ValueError("malformed DPR response header (%s)" % errname(r))
    if r != len(data):
        raise ValueError("DPR response header has %d trailing bytes" % (len(data) - r))
    return hdr, buf
