"""dpr-kv's checkpoint files (cachestore/src/kv_ckpt.h) read and written in
Python, for process tests that build state directories by hand: full images
(format 2) and change logs (format 3). Written independently of the C code,
so a test that has dpr-kv restore such files also checks the format."""
import struct
import zlib

MAGIC = b"DPRKVCKP"
END = b"DPRKVEND"
SET, DEL, APPEND = 1, 2, 3


def _finish(data: bytes) -> bytes:
    data += END
    return data + struct.pack("<I", zlib.crc32(data))


def read_header(path: str) -> dict:
    """The header fields of either kind: {"worker", "world_line", "version",
    "committed", "delta", "base"}."""
    with open(path, "rb") as f:
        head = f.read(72)
    assert head[:8] == MAGIC
    fmt, flags, worker, wl, ver, count, created, committed = struct.unpack(
        "<IIQQQQQQ", head[8:64])
    delta = fmt == 3 and bool(flags & 1)
    base = struct.unpack("<Q", head[64:72])[0] if fmt == 3 else 0
    return {"worker": worker, "world_line": wl, "version": ver, "committed": committed,
            "delta": delta, "base": base}


def full(worker: int, world_line: int, version: int, keys: dict, committed: int = 0) -> bytes:
    body = b"".join(struct.pack("<II", len(k), len(v)) + k + v for k, v in keys.items())
    head = MAGIC + struct.pack("<IIQQQQQQ", 2, 0, worker, world_line, version, len(keys),
                               0, committed)
    return _finish(head + body)


def delta(worker: int, world_line: int, version: int, base: int, ops: list,
          committed: int = 0) -> bytes:
    """ops: (SET, key, value), (DEL, key) or (APPEND, key, value)."""
    recs = []
    for op in ops:
        val = op[2] if len(op) > 2 else b""
        recs.append(struct.pack("<BII", op[0], len(op[1]), len(val)) + op[1] + val)
    head = MAGIC + struct.pack("<IIQQQQQQQ", 3, 1, worker, world_line, version, len(ops),
                               0, committed, base)
    return _finish(head + b"".join(recs))
