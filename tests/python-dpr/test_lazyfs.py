"""lazyfs itself (tests/lib/lazyfs.c), the disk of the power-loss tests
(test_power_loss.py): a FUSE file system whose backing directory holds only
what was fsynced. Each test writes through the mount, cuts the power (the
`drop` control), mounts the backing directory again and checks exactly
what survived, rule by rule (the rules are at the top of lazyfs.c), then a
random sequence of operations is checked against a small model of the same
rules. Here (and not in tests/lib) so that tests/run.sh runs it with the
power-loss tests.

Needs root and /dev/fuse (skipped otherwise) and build/tests/lazyfs.
"""
from __future__ import annotations

import errno
import os
import random
import stat

import pytest

import dprtest


class Disk:
    """A backing directory and its mount point under base; mount() starts
    a lazyfs on them, cut() is a power cut followed by a new mount."""

    def __init__(self, base: str):
        self.base = str(base)
        self.backing = os.path.join(self.base, "backing")
        self.mnt = os.path.join(self.base, "mnt")
        self.runs: list[dprtest.LazyFs] = []
        self.fs: dprtest.LazyFs | None = None
        self.mount()

    def mount(self) -> dprtest.LazyFs:
        log = os.path.join(self.base, "lazyfs-%d.log" % len(self.runs))
        self.fs = dprtest.LazyFs(self.backing, self.mnt, log, verbose=True)
        self.runs.append(self.fs)
        self.fs.wait_ready()
        return self.fs

    def cut(self) -> dict:
        """Power cut and reboot: returns what the cut dropped."""
        st = self.fs.drop()
        assert self.fs.unmount() == 0, self.fs.describe()
        self.mount()
        return st

    def p(self, *parts: str) -> str:
        return os.path.join(self.mnt, *parts)

    def close(self) -> None:
        """Unmounts; fails on a sanitizer report in a log (ASan builds)."""
        for fs in self.runs:
            fs.stop()
        assert not dprtest.mounted(self.mnt)
        for fs in self.runs:
            found = dprtest.sanitizer_reports(fs.output())
            assert not found, "sanitizer report in %s: %s" % (fs.log_path, found)


@pytest.fixture
def disk(tmp_path):
    reason = dprtest.lazyfs_unusable()
    if reason:
        pytest.skip(reason)
    d = Disk(tmp_path)
    try:
        yield d
    finally:
        d.close()


def write(path: str, data: bytes, fsync: bool = False, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_unsynced_data_is_lost_but_read_back_before(disk):
    write(disk.p("a"), b"")
    fsync_path(disk.mnt)                       # the name is durable, the data never was
    write(disk.p("a"), b"not synced")
    write(disk.p("b"), b"synced", fsync=True)
    fsync_path(disk.mnt)
    with open(disk.p("b"), "ab") as f:         # appended after the fsync
        f.write(b" and more")
    assert read(disk.p("a")) == b"not synced"  # the page cache serves reads
    assert read(disk.p("b")) == b"synced and more"
    assert read(os.path.join(disk.backing, "b")) == b"synced"
    st = disk.cut()
    assert st["dropped_files"] == 2 and st["dropped_bytes"] == len(b"not synced") + 15, st
    assert read(disk.p("a")) == b""
    assert read(disk.p("b")) == b"synced"


def test_new_name_needs_a_directory_fsync(disk):
    write(disk.p("lost"), b"data", fsync=True)
    assert read(disk.p("lost")) == b"data"
    assert not os.path.exists(os.path.join(disk.backing, "lost"))
    disk.cut()
    assert not os.path.exists(disk.p("lost"))
    # the data fsynced before the name: both there once the directory is
    write(disk.p("kept"), b"data", fsync=True)
    fsync_path(disk.mnt)
    # and a name made durable first gets the data fsynced after it
    write(disk.p("later"), b"")
    fsync_path(disk.mnt)
    write(disk.p("later"), b"late data", fsync=True)
    disk.cut()
    assert read(disk.p("kept")) == b"data"
    assert read(disk.p("later")) == b"late data"


def test_replace_by_rename_is_durable_only_with_the_directory_fsync(disk):
    # dpr_replace_file's steps: write tmp, fsync it, rename over, fsync the dir
    write(disk.p("state"), b"v1", fsync=True)
    fsync_path(disk.mnt)
    write(disk.p("state.tmp"), b"v2", fsync=True)
    os.rename(disk.p("state.tmp"), disk.p("state"))
    assert read(disk.p("state")) == b"v2"
    disk.cut()
    assert read(disk.p("state")) == b"v1"       # the old name still holds the old file
    assert not os.path.exists(disk.p("state.tmp"))
    write(disk.p("state.tmp"), b"v2", fsync=True)
    os.rename(disk.p("state.tmp"), disk.p("state"))
    fsync_path(disk.mnt)
    disk.cut()
    assert read(disk.p("state")) == b"v2"
    assert sorted(os.listdir(disk.mnt)) == ["state"]
    # renamed without fsyncing the data first: the new name comes back empty
    write(disk.p("state.tmp"), b"v3")
    os.rename(disk.p("state.tmp"), disk.p("state"))
    fsync_path(disk.mnt)
    disk.cut()
    assert read(disk.p("state")) == b""


def test_unlink_is_durable_only_with_the_directory_fsync(disk):
    write(disk.p("x"), b"x", fsync=True)
    fsync_path(disk.mnt)
    os.unlink(disk.p("x"))
    assert not os.path.exists(disk.p("x"))
    disk.cut()
    assert read(disk.p("x")) == b"x"
    os.unlink(disk.p("x"))
    fsync_path(disk.mnt)
    disk.cut()
    assert not os.path.exists(disk.p("x"))


def test_new_directory_needs_its_parent_fsynced(disk):
    # what dpr_mkdir_p does for every directory it creates
    os.mkdir(disk.p("d"))
    write(disk.p("d", "f"), b"f", fsync=True)
    fsync_path(disk.p("d"))
    disk.cut()
    assert not os.path.exists(disk.p("d"))      # with everything in it
    os.makedirs(disk.p("a", "b", "c"))
    fsync_path(disk.mnt)
    fsync_path(disk.p("a"))                     # a and a/b are durable, a/b/c is not
    write(disk.p("a", "b", "f"), b"f", fsync=True)
    disk.cut()
    assert os.listdir(disk.p("a", "b")) == []
    os.mkdir(disk.p("a", "b", "c"))
    write(disk.p("a", "b", "f"), b"f", fsync=True)
    fsync_path(disk.p("a", "b"))
    disk.cut()
    assert sorted(os.listdir(disk.p("a", "b"))) == ["c", "f"]
    assert read(disk.p("a", "b", "f")) == b"f"
    # rmdir likewise
    os.unlink(disk.p("a", "b", "f"))
    os.rmdir(disk.p("a", "b", "c"))
    os.rmdir(disk.p("a", "b"))
    fsync_path(disk.p("a"))                     # b's removal durable; f's does not matter
    disk.cut()
    assert os.listdir(disk.p("a")) == []


def test_truncate_and_mode_are_file_metadata(disk):
    write(disk.p("m"), b"abcdef", fsync=True, mode=0o644)
    fsync_path(disk.mnt)
    os.truncate(disk.p("m"), 3)
    os.chmod(disk.p("m"), 0o600)
    assert read(disk.p("m")) == b"abc" and stat.S_IMODE(os.stat(disk.p("m")).st_mode) == 0o600
    disk.cut()
    assert read(disk.p("m")) == b"abcdef"
    assert stat.S_IMODE(os.stat(disk.p("m")).st_mode) == 0o644
    os.truncate(disk.p("m"), 3)
    os.chmod(disk.p("m"), 0o600)
    fsync_path(disk.p("m"))
    disk.cut()
    assert read(disk.p("m")) == b"abc"
    assert stat.S_IMODE(os.stat(disk.p("m")).st_mode) == 0o600


def test_o_sync_writes_are_durable(disk):
    write(disk.p("s"), b"")
    fsync_path(disk.mnt)
    fd = os.open(disk.p("s"), os.O_WRONLY | os.O_DSYNC)
    os.write(fd, b"dsync")
    os.close(fd)
    disk.cut()
    assert read(disk.p("s")) == b"dsync"


def test_rename_between_directories_is_two_changes(disk):
    os.mkdir(disk.p("d1"))
    os.mkdir(disk.p("d2"))
    fsync_path(disk.mnt)
    write(disk.p("d1", "f"), b"f", fsync=True)
    fsync_path(disk.p("d1"))
    os.rename(disk.p("d1", "f"), disk.p("d2", "f"))
    fsync_path(disk.p("d2"))                    # only the target side
    disk.cut()
    assert read(disk.p("d1", "f")) == b"f" and read(disk.p("d2", "f")) == b"f"
    os.unlink(disk.p("d2", "f"))
    fsync_path(disk.p("d2"))
    os.rename(disk.p("d1", "f"), disk.p("d2", "f"))
    fsync_path(disk.p("d1"))                    # only the source side
    disk.cut()
    assert os.listdir(disk.p("d1")) == [] and os.listdir(disk.p("d2")) == []
    # directories do not move between parents
    os.mkdir(disk.p("d1", "sub"))
    with pytest.raises(OSError) as e:
        os.rename(disk.p("d1", "sub"), disk.p("d2", "sub"))
    assert e.value.errno == errno.EXDEV


def test_file_data_semantics(disk):
    # sparse writes, overwrites, appends and truncation read back as on a real disk
    ref = os.path.join(disk.base, "ref")
    for path in (disk.p("data"), ref):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        r = random.Random(7)
        for _ in range(200):
            what = r.randrange(4)
            if what == 0:
                os.pwrite(fd, bytes([r.randrange(256)]) * r.randrange(1, 5000),
                          r.randrange(0, 300000))
            elif what == 1:
                os.ftruncate(fd, r.randrange(0, 200000))
            elif what == 2:
                os.lseek(fd, 0, os.SEEK_END)
                os.write(fd, bytes([r.randrange(256)]) * r.randrange(1, 300))
            else:
                n = r.randrange(0, 400000)
                assert len(os.pread(fd, 100, n)) <= 100
        os.close(fd)
    assert read(disk.p("data")) == read(ref)
    fd = os.open(disk.p("app"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, b"one ")
    os.pwrite(fd, b"two", 0)  # O_APPEND: at the end whatever the offset (Linux)
    os.close(fd)
    assert read(disk.p("app")) == b"one two"


def test_unlinked_open_file_and_reserved_name(disk):
    fd = os.open(disk.p("u"), os.O_RDWR | os.O_CREAT, 0o600)
    os.unlink(disk.p("u"))
    os.write(fd, b"still here")
    os.fsync(fd)
    assert os.pread(fd, 100, 0) == b"still here"
    os.close(fd)
    assert os.listdir(disk.mnt) == []          # the control file is not listed
    write(disk.p("r"), b"r")
    for bad, code in ((lambda: os.rename(disk.p("r"), disk.p(dprtest.LAZYFS_CTL)), errno.EPERM),
                      (lambda: os.mkdir(disk.p(dprtest.LAZYFS_CTL)), errno.EEXIST),
                      (lambda: os.symlink("r", disk.p("sym")), errno.EPERM),
                      (lambda: os.link(disk.p("r"), disk.p("l")), errno.EPERM),
                      (lambda: os.mkfifo(disk.p("fifo")), errno.EPERM)):
        with pytest.raises(OSError) as e:
            bad()
        assert e.value.errno == code
    assert os.listdir(disk.mnt) == ["r"]


def test_after_the_cut_the_machine_is_off(disk):
    write(disk.p("f"), b"f", fsync=True)
    fsync_path(disk.mnt)
    fd = os.open(disk.p("f"), os.O_RDWR)
    write(disk.p("g"), b"g")
    st = disk.fs.drop()
    assert st["state"] == "dropped" and st["dropped_files"] == 1 and st["dropped_dirs"] == 1
    for op in (lambda: os.write(fd, b"x"), lambda: os.fsync(fd), lambda: os.listdir(disk.mnt),
               lambda: os.stat(disk.p("f")), lambda: write(disk.p("h"), b"h")):
        with pytest.raises(OSError) as e:
            op()
        assert e.value.errno == errno.EIO
    os.close(fd)
    assert disk.fs.unmount() == 0
    assert not dprtest.mounted(disk.mnt)
    assert "power cut: dropped 1 unsynced files" in disk.fs.output()
    disk.mount()
    assert sorted(os.listdir(disk.mnt)) == ["f"]


# --- a random sequence against a model of the rules ------------------------------------

class Node:
    def __init__(self, is_dir: bool):
        self.is_dir = is_dir
        self.data = b""
        self.ddata = b""
        self.ents: dict[str, Node] = {}
        self.dents: dict[str, Node] = {}


def model_view(root: Node, durable: bool) -> dict[str, object]:
    out: dict[str, object] = {}

    def walk(d: Node, prefix: str) -> None:
        for name, n in (d.dents if durable else d.ents).items():
            p = prefix + name
            if n.is_dir:
                out[p + "/"] = None
                walk(n, p + "/")
            else:
                out[p] = n.ddata if durable else n.data
    walk(root, "")
    return out


def disk_view(top: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        prefix = "" if rel == "." else rel + "/"
        for d in dirnames:
            out[prefix + d + "/"] = None
        for f in filenames:
            out[prefix + f] = read(os.path.join(dirpath, f))
    return out


def paths(root: Node) -> list[tuple[str, Node, Node, str]]:
    """(path, node, parent, name) of everything currently reachable."""
    out = []

    def walk(d: Node, prefix: str) -> None:
        for name, n in d.ents.items():
            out.append((prefix + name, n, d, name))
            if n.is_dir:
                walk(n, prefix + name + "/")
    walk(root, "")
    return out


def random_ops(disk: Disk, root: Node, rng: random.Random, n: int) -> None:
    for _ in range(n):
        everything = paths(root)
        dirs = [("", root)] + [(p + "/", x) for p, x, _, _ in everything if x.is_dir]
        files = [(p, x, d, nm) for p, x, d, nm in everything if not x.is_dir]
        op = rng.choice(["create", "create", "write", "write", "fsync", "fsync", "dirsync",
                         "dirsync", "rename", "unlink", "mkdir", "rmdir", "truncate"])
        dpath, d = rng.choice(dirs)
        name = rng.choice("abcdefg")
        if op == "create" and name not in d.ents:
            write(disk.p(dpath + name), b"")
            d.ents[name] = Node(False)
        elif op == "mkdir" and name not in d.ents and dpath.count("/") < 3:
            os.mkdir(disk.p(dpath + name))
            d.ents[name] = Node(True)
        elif op in ("write", "fsync", "truncate", "unlink") and files:
            path, f, parent, fname = rng.choice(files)
            if op == "write":
                data = os.urandom(rng.randrange(1, 3000))
                off = rng.randrange(0, len(f.data) + 100)
                fd = os.open(disk.p(path), os.O_WRONLY)
                os.pwrite(fd, data, off)
                os.close(fd)
                cur = f.data + b"\0" * max(0, off - len(f.data))
                f.data = cur[:off] + data + cur[off + len(data):]
            elif op == "truncate":
                size = rng.randrange(0, len(f.data) + 50)
                os.truncate(disk.p(path), size)
                f.data = f.data[:size] + b"\0" * max(0, size - len(f.data))
            elif op == "fsync":
                fsync_path(disk.p(path))
                f.ddata = f.data
            else:
                os.unlink(disk.p(path))
                del parent.ents[fname]
        elif op == "dirsync":
            fsync_path(disk.p(dpath) if dpath else disk.mnt)
            d.dents = dict(d.ents)
        elif op == "rmdir":
            empty = [(p, x, par, nm) for p, x, par, nm in everything if x.is_dir and not x.ents]
            if empty:
                path, _, parent, dname = rng.choice(empty)
                os.rmdir(disk.p(path))
                del parent.ents[dname]
        elif op == "rename" and everything:
            path, x, parent, old = rng.choice(everything)
            target_dir = parent if x.is_dir else rng.choice(dirs)[1]
            tpath = [p for p, n in dirs if n is target_dir][0]
            new = rng.choice("abcdefg")
            if new in target_dir.ents:
                t = target_dir.ents[new]
                if t is x or t.is_dir != x.is_dir or (t.is_dir and t.ents):
                    continue
            os.rename(disk.p(path), disk.p(tpath + new))
            del parent.ents[old]
            target_dir.ents[new] = x


def reset_model(root: Node) -> None:
    """After a cut: the durable state is the current one, as reloaded (a
    file durably named twice comes back as two files)."""
    seen: set[int] = set()

    def walk(d: Node) -> None:
        for name, n in list(d.dents.items()):
            if id(n) in seen:  # files only: a directory has one durable parent
                copy = Node(False)
                copy.ddata = n.ddata
                n = d.dents[name] = copy
            seen.add(id(n))
            if n.is_dir:
                walk(n)
            n.data = n.ddata
        d.ents = dict(d.dents)
    walk(root)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_operations_match_the_model(disk, seed):
    rng = random.Random(seed)
    root = Node(True)
    lossy = 0
    for round_ in range(3):
        random_ops(disk, root, rng, 150)
        assert disk_view(disk.mnt) == model_view(root, durable=False), (seed, round_)
        lossy += model_view(root, durable=False) != model_view(root, durable=True)
        # the backing directory is the durable state at every moment
        assert disk_view(disk.backing) == model_view(root, durable=True), (seed, round_)
        disk.cut()
        assert disk_view(disk.mnt) == model_view(root, durable=True), (seed, round_)
        reset_model(root)
    assert lossy > 0, "no cut lost anything: the sequence tests nothing"
