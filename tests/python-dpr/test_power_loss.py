"""Power loss for real: the finder, the shards and the agent keep their
state on lazyfs (tests/lib/lazyfs.c), a FUSE file system that holds every
unsynced write, create, rename and unlink in memory until it is fsynced (a
file's data by fsync of the file, names by fsync of their directory). A
power cut drops all of that at one instant and SIGKILLs every process; the
machine then boots from what the backing directory holds, as a real disk
would after losing power, page cache and all. (tests/cluster's power cut
keeps the host's page cache, so it cannot show that the fsync order is
right; this can.)

test_power_cuts_keep_every_committed_operation: sessions (dpr.Client, as in
test_crash.py) write under load to 3 shards; at random moments (seeded; the
seed is printed and DPR_POWER_SEED replays it) the power goes, everything
restarts on a fresh mount of the same backing directory, and the sessions
go on through the rollback. At the end every key is read back and checked:
every operation a session was told is committed is there with its value,
the survivors are exactly those no RollbackError reported lost, and each
rollback lost a suffix (the prefix guarantee). The state directories
(node/finder, node/kv<w>) are created by the programs themselves at the
first boot, and the first cut comes after operations committed: were a new
directory's entry not fsynced in its parent (dpr_mkdir_p), it would vanish.

test_power_cuts_keep_the_agent_state: dpr-agent (no systemd, as in
tests/agent/test_agent_host.py) keeps agent.json and its hosted finder's
state on the mount; applies run back to back and the power goes at a
random moment: after the reboot the state is that of the last apply that
was answered (or of the one in flight), never half-written, with the same
worker ids and ports, and worker ids are never handed out twice.

Needs root and /dev/fuse (skipped otherwise), build/tests/lazyfs.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import defaultdict

import pytest

import dpr
import dprtest
from dprtest import wait_for

NSHARDS = 3
NSESSIONS = 6
ROUNDS = 3
WORKERS = [11, 12, 13]


@pytest.fixture
def rng():
    seed = int(os.environ.get("DPR_POWER_SEED") or random.randrange(1 << 32))
    print("power-loss seed %d (DPR_POWER_SEED=%d replays it)" % (seed, seed))
    return random.Random(seed)


@pytest.fixture
def base(tmp_path):
    reason = dprtest.lazyfs_unusable()
    if reason:
        pytest.skip(reason)
    os.makedirs(os.path.join(str(tmp_path), "logs"))
    return str(tmp_path)


class Machine:
    """A machine whose disk is a lazyfs mount (base/mnt, backed by
    base/disk). Logs stay on the host (base/logs). boot() mounts the disk and
    starts the programs; cut() is the power cut; close() stops everything
    and unmounts, and fails on sanitizer reports in the logs."""

    def __init__(self, base: str):
        self.base = base
        self.backing = os.path.join(base, "disk")
        self.mnt = os.path.join(base, "mnt")
        self.procs = dprtest.Procs()
        self.fs: dprtest.LazyFs | None = None
        self.running: list[dprtest.Proc] = []
        self.boots = 0
        self.cuts: list[dict] = []

    def log(self, name: str) -> str:
        return os.path.join(self.base, "logs", name)

    def mount(self) -> None:
        self.boots += 1
        self.fs = dprtest.LazyFs(self.backing, self.mnt, self.log("lazyfs-%d.log" % self.boots))
        self.procs.add(self.fs)
        self.fs.wait_ready()

    def start(self, proc: dprtest.Proc) -> dprtest.Proc:
        self.procs.add(proc)
        self.running.append(proc)
        return proc

    def cut(self) -> dict:
        st = dprtest.power_cut(self.fs, self.running)
        self.running = []
        self.cuts.append(st)
        return st

    def close(self) -> None:
        self.procs.stop_all()
        assert not dprtest.mounted(self.mnt), "%s is still mounted" % self.mnt


class KvMachine(Machine):
    """The finder and NSHARDS shards, state under mnt/node/."""

    def __init__(self, base: str):
        super().__init__(base)
        self.finder_port = dprtest.free_port()
        self.ports = [dprtest.free_port() for _ in WORKERS]
        self.finder: dprtest.Finder | None = None
        self.shards: list[dprtest.Kv] = []

    @property
    def finder_address(self) -> str:
        return "127.0.0.1:%d" % self.finder_port

    @property
    def addresses(self) -> list[str]:
        return ["127.0.0.1:%d" % p for p in self.ports]

    def boot(self, interval_ms: int, premade: bool = False, wait: bool = True) -> None:
        self.mount()
        state = os.path.join(self.mnt, "node")
        if premade:  # as systemd's StateDirectory= does: mkdir, no fsync
            for name in ["finder"] + ["kv%d" % w for w in WORKERS]:
                os.makedirs(os.path.join(state, name), mode=0o700)
        self.finder = self.start(dprtest.Finder(os.path.join(state, "finder"),
                                                self.log("finder.log"), port=self.finder_port))
        self.finder.wait_ready()
        self.shards = [self.start(dprtest.Kv(self.finder_address, w,
                                             os.path.join(state, "kv%d" % w),
                                             self.log("kv%d.log" % w), port=port,
                                             interval_ms=interval_ms))
                       for w, port in zip(WORKERS, self.ports)]
        for kv in self.shards if wait else ():
            kv.wait_ready()


# --- sessions (the workload of test_crash.py, threads only) ---------------------------

class Record:
    """What one session was told."""

    def __init__(self, i: int):
        self.i = i
        self.last_seq = 0
        self.world_line = 0
        self.ops_on_world_line: dict[int, int] = defaultdict(int)
        self.commit_points: list[tuple[int, int]] = []  # (commit point, rollbacks before)
        self.rollbacks: list[dpr.RollbackError] = []
        self.refused: set[int] = set()  # MISCONF: the shard could not write checkpoints
        self.error: str | None = None

    def key(self, seq: int) -> str:
        return "s%d:%d" % (self.i, seq)

    def lost(self, seq: int) -> bool:
        return any(e.lost_from <= seq <= e.last_seq_before for e in self.rollbacks)

    def committed(self) -> int:
        return self.commit_points[-1][0] if self.commit_points else 0


def session_worker(client: dpr.Client, rec: Record, stop: threading.Event) -> None:
    try:
        with client.session() as s:
            n = 0
            while not stop.is_set():
                seq = s.next_seq
                try:
                    s.set(rec.key(seq), seq)
                    rec.ops_on_world_line[s.world_line] += 1
                    n += 1
                except dpr.RollbackError as e:
                    rec.rollbacks.append(e)
                except dpr.ResponseError as e:
                    # between the cut and the kill the disk fails (EIO): dpr-kv refuses
                    # writes; the operation ran as an error and wrote nothing
                    if not str(e).startswith("MISCONF"):
                        raise
                    rec.refused.add(seq)
                    n += 1
                except dpr.SessionInDoubtError:
                    raise
                except dpr.ConnectionError:
                    # the shard was not reached (the machine is down): nothing was sent
                    assert s.next_seq == seq, "a ConnectionError consumed a sequence number"
                    time.sleep(0.02)
                if n % 8 == 0:
                    try:
                        rec.commit_points.append((s.commit_point(), len(rec.rollbacks)))
                    except dpr.RollbackError as e:
                        rec.rollbacks.append(e)
                    except dpr.SessionInDoubtError:
                        raise
                    except dpr.ConnectionError:
                        time.sleep(0.02)  # the finder is down
                rec.last_seq = s.last_seq
                rec.world_line = s.world_line
            while True:  # settle: everything issued on the last world-line commits
                try:
                    cp = s.wait_committed(timeout=30)
                    break
                except dpr.RollbackError as e:
                    rec.rollbacks.append(e)
            rec.commit_points.append((cp, len(rec.rollbacks)))
            rec.last_seq = s.last_seq
            rec.world_line = s.world_line
    except BaseException as e:  # noqa: BLE001 - reported by the test
        rec.error = "%s: %s" % (type(e).__name__, e)


class Sessions:
    def __init__(self, client: dpr.Client):
        self.stop = threading.Event()
        self.recs = [Record(i) for i in range(NSESSIONS)]
        self.threads = [threading.Thread(target=session_worker, args=(client, r, self.stop),
                                         daemon=True) for r in self.recs]
        for t in self.threads:
            t.start()

    def failed(self) -> str | None:
        return next((r.error for r in self.recs if r.error), None)

    def progressed(self, wl: int, ops: int, committed: list[int]) -> bool:
        """Every session did ops operations on world-line wl and was told a
        commit point above the one in committed (or one failed)."""
        return bool(self.failed()) or all(
            r.world_line == wl and r.ops_on_world_line[wl] >= ops and r.committed() > c
            for r, c in zip(self.recs, committed))

    def finish(self) -> list[Record]:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=90)
        assert not any(t.is_alive() for t in self.threads), "a session did not stop"
        return self.recs


def cut_moment(m: KvMachine, rng: random.Random) -> str:
    """Waits for a random moment to cut the power; says which."""
    moment = rng.choice(["arbitrary", "during_checkpoint", "after_report"])
    r = rng.choice(m.shards).client()
    deadline = time.monotonic() + 5
    try:
        if moment == "during_checkpoint":
            while time.monotonic() < deadline:
                if int(r.info("dpr")["dpr_checkpoints_pending"]) > 0:
                    return moment
        elif moment == "after_report":
            start = int(r.info("dpr")["dpr_last_checkpoint_version"])
            while time.monotonic() < deadline:
                info = r.info("dpr")
                if (int(info["dpr_last_checkpoint_version"]) > start
                        and int(info["dpr_reports_unacked"]) == 0):
                    return moment
        else:
            time.sleep(rng.uniform(0.0, 0.3))
            return moment
    finally:
        r.connection_pool.disconnect()
    return moment + " (not observed)"


def read_back(m: KvMachine, client: dpr.Client, recs: list[Record]) -> dict:
    by_shard: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for rec in recs:
        for seq in range(1, rec.last_seq + 1):
            by_shard[client.shard_of(rec.key(seq))].append((rec.i, seq))
    out = {}
    for shard, ids in by_shard.items():
        c = m.shards[shard].client()
        try:
            pipe = c.pipeline(transaction=False)
            for i, seq in ids:
                pipe.get("s%d:%d" % (i, seq))
            out.update(zip(ids, pipe.execute()))
        finally:
            c.connection_pool.disconnect()
    return out


def check(m: KvMachine, client: dpr.Client, recs: list[Record]) -> dict[str, int]:
    for rec in recs:
        assert rec.error is None, "session %d failed: %s" % (rec.i, rec.error)
    final_wl, _, _ = m.finder.sync()
    values = read_back(m, client, recs)
    stats: dict[str, int] = defaultdict(int)
    for rec in recs:
        assert rec.world_line == final_wl, (rec.i, rec.world_line, final_wl)
        present = {seq for seq in range(1, rec.last_seq + 1)
                   if values[(rec.i, seq)] is not None}
        for seq in present:
            assert values[(rec.i, seq)] == str(seq).encode(), (rec.i, seq, values[(rec.i, seq)])
        assert not present & rec.refused, "refused writes %s are there" % (present & rec.refused)
        # exactly the operations no rollback reported lost survived (refused ones wrote
        # nothing: a refused operation counts as present when it survived)
        present |= {seq for seq in rec.refused if not rec.lost(seq)}
        lost = {seq for seq in range(1, rec.last_seq + 1) if rec.lost(seq)}
        missing = set(range(1, rec.last_seq + 1)) - present
        assert missing == lost, (
            "session %d: missing %s but reported lost %s (rollbacks %r)"
            % (rec.i, sorted(missing)[:20], sorted(lost)[:20], rec.rollbacks))
        # each rollback lost a suffix of what was issued before it: a prefix survived
        start = 1
        for e in rec.rollbacks:
            assert e.lost_count == e.last_seq_before - e.lost_from + 1, e
            assert start <= e.lost_from <= e.last_seq_before, e
            assert all(seq in present for seq in range(start, e.lost_from)), e
            assert all(seq not in present for seq in range(e.lost_from, e.last_seq_before + 1))
            start = e.last_seq_before + 1
            stats["lost"] += e.lost_count
        # a commit point is never taken back
        for cp, nrb in rec.commit_points:
            for e in rec.rollbacks[nrb:]:
                assert e.lost_from > cp, (
                    "session %d was told commit point %d, then lost operations from %d"
                    % (rec.i, cp, e.lost_from))
            earlier = rec.rollbacks[:nrb]
            bad = [seq for seq in range(1, cp + 1) if seq not in present
                   and not any(e.lost_from <= seq <= e.last_seq_before for e in earlier)]
            assert not bad, "session %d: committed operations %s are missing" % (rec.i, bad[:20])
        assert rec.commit_points[-1][0] == rec.last_seq
        stats["ops"] += rec.last_seq
        stats["refused"] += len(rec.refused)
        stats["rollback_errors"] += len(rec.rollbacks)
    return dict(stats)


@pytest.mark.parametrize("dirs", ["made_by_the_programs", "made_by_systemd"])
def test_power_cuts_keep_every_committed_operation(base, rng, dirs):
    """dirs: who creates the state directories (node/finder, node/kv<w>):
    the programs (dpr_mkdir_p), or, before they start, someone who does not
    fsync them (systemd's StateDirectory=)."""
    dprtest.need(dprtest.FINDER, dprtest.KV)
    m = KvMachine(base)
    sessions = None
    try:
        m.boot(interval_ms=rng.choice([20, 50, 100]), premade=dirs == "made_by_systemd")
        client = dpr.Client(shards=m.addresses, finder=m.finder_address, workers=WORKERS,
                            reconnect_timeout=40, rollback_timeout=60)
        sessions = Sessions(client)
        what = []
        for n in range(ROUNDS):
            wl, _, _ = m.finder.sync()
            committed = [r.committed() for r in sessions.recs]
            # operations committed on this world-line (so on the new directories, the
            # first time), then a random moment
            wait_for(lambda: sessions.progressed(wl, 20, committed), timeout=60,
                     what="every session committing on world-line %d" % wl)
            if sessions.failed():
                break
            moment = cut_moment(m, rng)
            told = sum(r.committed() for r in sessions.recs)
            st = m.cut()
            what.append("%s: %d committed, %d unsynced files and %d directories dropped"
                        % (moment, told, st["dropped_files"], st["dropped_dirs"]))
            time.sleep(rng.uniform(0.0, 0.3))  # sessions run into the dead machine
            if rng.random() < 0.4:
                # and again while the shards recover (register, restore, delete the
                # checkpoints of lost versions)
                m.boot(interval_ms=rng.choice([20, 50, 100]), wait=False)
                time.sleep(rng.uniform(0.0, 0.1))
                st = m.cut()
                what.append("during recovery: %d unsynced files and %d directories dropped"
                            % (st["dropped_files"], st["dropped_dirs"]))
            m.boot(interval_ms=rng.choice([20, 50, 100]))
            now_wl = m.finder.sync()[0]
            assert now_wl > wl, ("the finder came back on world-line %d, not above %d: its "
                                 "state is not what it was" % (now_wl, wl))
        wl, _, _ = m.finder.sync()
        committed = [r.committed() for r in sessions.recs]
        wait_for(lambda: sessions.progressed(wl, 20, committed), timeout=60,
                 what="every session committing on world-line %d" % wl)
        recs = sessions.finish()
        sessions = None
        stats = check(m, client, recs)
        print("cuts: %s; %s" % (what, stats))
        assert stats["rollback_errors"] >= 1  # the cuts lost uncommitted operations
    finally:
        if sessions is not None:
            sessions.stop.set()
        m.close()


# --- the agent ------------------------------------------------------------------------

AGENT_CONF = """\
cluster = "demo";
node = {{ name = "node1"; address = "127.0.0.1"; }};
state_directory = "{state}";
control = {{ socket = "{sock}"; }};
finder = {{ listen = "127.0.0.1:{finder_port}"; }};
cachestores = {{
  instance_directory = "{instances}";
  port_min = {port_min};
  port_max = {port_max};
  impls = {{ dpr-kv = "{kv}"; }};
}};
"""


class AgentMachine(Machine):
    """dpr-agent with its state directory (agent.json, its finder's state)
    on the mount, at mnt/var/lib/dpr; socket, instance files and logs on
    the host."""

    def __init__(self, base: str):
        super().__init__(base)
        self.sock = os.path.join(base, "agent.sock")
        self.state = os.path.join(self.mnt, "var", "lib", "dpr")
        self.port_min, self.port_max = dprtest.free_port_range(50)
        self.conf = os.path.join(base, "agent.conf")
        with open(self.conf, "w") as f:
            f.write(AGENT_CONF.format(state=self.state, sock=self.sock,
                                      finder_port=dprtest.free_port(),
                                      instances=os.path.join(base, "instances"),
                                      port_min=self.port_min, port_max=self.port_max,
                                      kv=dprtest.KV))
        self.agent: dprtest.AgentProc | None = None

    def boot(self) -> None:
        self.mount()
        self.agent = self.start(dprtest.AgentProc(self.conf, self.log("agent-%d.log" % self.boots),
                                                  self.sock, self.base, cwd=self.base))
        self.agent.wait_ready()

    def control(self):
        from dpr.control import ControlConnection
        return ControlConnection(self.sock, timeout=10)


def allocations(status: dict) -> dict[str, tuple[int, str]]:
    return {i["name"]: (i["worker"], i["endpoint"])
            for d in status["deployments"] for i in d["instances"]}


def next_spec(rng: random.Random, k: int, grow: int) -> dict:
    """The k-th spec of a round: every one changes the settings of "kv"
    (updates keep ids and ports); a deployment "grow-N" of one shard is
    added now and then (new ids and ports: a new deployment, not more
    shards, which would be a resize that cannot finish without running
    instances). Nothing is deleted: without systemd, deleted instances stay
    retiring and keep their ports."""
    return {"name": "demo", "cachestores": [
        {"name": "kv", "impl": "dpr-kv", "version": "1", "shards": 2,
         "checkpoint_interval_ms": 10 + k, "max_clients": rng.randint(1, 100000)}] + [
        {"name": "grow-%d" % i, "impl": "dpr-kv", "version": "1", "shards": 1}
        for i in range(grow)]}


def apply_loop(m: AgentMachine, rng: random.Random, out: dict, stop: threading.Event) -> None:
    """Applies specs (next_spec) back to back until the agent is gone;
    records in out: "sent" [spec], "answered" {generation: (spec,
    allocations from the status right after, or None)}, "ended" (why it
    stopped)."""
    from dpr.mgmt_errors import AgentError
    conn = m.control()
    try:
        while not stop.is_set():
            if rng.random() < 0.2 and out["grow"] < 12:
                out["grow"] += 1
            spec = next_spec(rng, out["k"], out["grow"])
            out["k"] += 1
            out["sent"].append(spec)
            res = conn.request("apply", {"spec": spec})
            gen = res["generation"]
            out["answered"][gen] = (spec, None)
            status = conn.request("status")
            if status["generation"] == gen:
                out["answered"][gen] = (spec, allocations(status))
    except AgentError as e:  # AgentUnavailable: the power went
        out["ended"] = "%s: %s" % (type(e).__name__, e)
    except OSError as e:
        out["ended"] = "%s: %s" % (type(e).__name__, e)
    finally:
        conn.close()


def same_spec(status: dict, spec: dict) -> bool:
    """The deployments of status are those of spec (names, shards, and the
    settings spec gives)."""
    have = {d["name"]: d for d in status["deployments"]}
    return (set(have) == {d["name"] for d in spec["cachestores"]}
            and all(have[d["name"]][k] == v for d in spec["cachestores"]
                    for k, v in d.items() if k not in ("name", "impl")))


def test_power_cuts_keep_the_agent_state(base, rng):
    dprtest.need(dprtest.AGENT, dprtest.KV)
    m = AgentMachine(base)
    try:
        m.boot()
        max_worker = 0
        k, grow = 0, 1
        for n in range(ROUNDS):
            out = {"sent": [], "answered": {}, "ended": None, "k": k, "grow": grow}
            stop = threading.Event()
            t = threading.Thread(target=apply_loop, args=(m, rng, out, stop), daemon=True)
            t.start()
            wait_for(lambda: len(out["answered"]) >= 1 or not t.is_alive(), timeout=30,
                     what="a first apply answered")
            time.sleep(rng.uniform(0.0, 0.4))
            st = m.cut()
            stop.set()
            t.join(timeout=30)
            assert not t.is_alive(), "the apply loop did not end"
            k = out["k"]
            assert out["ended"], "the apply loop ended without the agent going away: %r" % out
            answered = out["answered"]
            assert answered, "no apply was answered before the cut: %r" % out
            # what the disk holds: whole JSON, and at least the last answered generation
            path = os.path.join(m.backing, "var", "lib", "dpr", "agent.json")
            assert os.path.exists(path), "agent.json is gone after the cut (answered: %s)" % (
                sorted(answered))
            with open(path) as f:
                text = f.read()
            try:
                on_disk = json.loads(text)
            except ValueError as e:
                raise AssertionError("agent.json after the cut is not JSON (%s): %r"
                                     % (e, text[:200])) from None
            m.boot()
            with m.control() as c:
                status = c.request("status")
            gen, last = status["generation"], max(answered)
            assert on_disk["generation"] == gen
            # an answered apply was recorded; at most the one in flight is newer
            assert last <= gen <= last + 1, (gen, sorted(answered))
            alloc = allocations(status)
            if gen in answered:
                spec, recorded = answered[gen]
                assert same_spec(status, spec), (status["deployments"], spec)
                if recorded is not None:
                    assert alloc == recorded
            else:
                assert same_spec(status, out["sent"][-1])
                # instances kept from the last answered generation keep ids and ports
                prev = answered[last][1] or {}
                for name, a in alloc.items():
                    if name in prev:
                        assert a == prev[name], (name, a, prev[name])
            # worker ids are never handed out twice: the next one is above all ever seen
            seen = [w for _, rec in answered.values() if rec for w, _ in rec.values()]
            max_worker = max([max_worker] + seen + [w for w, _ in alloc.values()])
            grow = sum(1 for d in status["deployments"] if d["name"].startswith("grow-"))
            with m.control() as c:
                c.request("apply", {"spec": next_spec(rng, k, grow + 1)})
                new = allocations(c.request("status"))["grow-%d-0" % grow]
            assert new[0] > max_worker, (new, max_worker)
            k, grow, max_worker = k + 1, grow + 1, new[0]
            print("agent round %d: generation %d after the cut (last answered %d); dropped %s"
                  % (n, gen, last, {key: v for key, v in st.items() if key.startswith("dropped")}))
    finally:
        m.close()
