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


def read_full(path: str) -> dict:
    """A full image's header fields and its keys: {"worker", "world_line",
    "version", "committed", "keys": {key: value}}."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == MAGIC and data[-12:-4] == END
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
    fmt, flags, worker, wl, ver, count, created, committed = struct.unpack(
        "<IIQQQQQQ", data[8:64])
    assert fmt == 2 and flags == 0
    keys, pos = {}, 64
    for _ in range(count):
        kl, vl = struct.unpack("<II", data[pos:pos + 8])
        pos += 8
        keys[data[pos:pos + kl]] = data[pos + kl:pos + kl + vl]
        pos += kl + vl
    assert pos == len(data) - 12
    return {"worker": worker, "world_line": wl, "version": ver, "committed": committed,
            "keys": keys}


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
