"""Issue 9, second part: resizing a deployment keeps every key, on a real
systemd node (docs/operations.md, "Resizing a deployment").

Deployment `kv` with 3 shards and one Python session writing into it all
along (its dpr.Client made from the status before any resize, so it knows
3 shards only). Then:

  (a) 3 -> 5 shards: `dprctl plan` says which share of the keys moves;
      the agent starts kv-3 and kv-4 and drives the resize;
  (b) 5 -> 2 shards, with a kill -9 of kv-1 and a restart of dpr-agent
      in the middle: the resize still completes, and the removed shards
      retire only after it.

Checked: the status shows the layout (epoch, shard count) and the resize;
the session follows (MOVED, TRYAGAIN) without misrouting; at the end it
reads every key back: the operations a rollback (from the kill -9)
reported lost are absent, every other one is there; no rollback lost an
operation a commit point had covered; a fresh client made from the final
status finds every key, and every shard holds exactly the keys it owns.

Needs root (skipped otherwise), like every test here.
"""
import json

import pytest

import cluster as harness
from test_domains import Writers, status

WAIT = 180

SPEC = """\
name: demo
cachestores:
  - name: kv
    impl: %s
    version: "1"
    shards: %d
    checkpoint_interval_ms: 100
"""

# Inside the node: every key of the session, from a fresh client of the
# final layout, and each shard's key count (DBSIZE).
CHECK = r'''
import json, sys
import dpr, redis
from dpr.route import shard_of
with dpr.connect() as cluster:
    client = cluster.client("kv")
last = int(sys.argv[1])
keys = ["kv:%d" % i for i in range(1, last + 1)]
found = {}
with client.session() as s:
    for k in keys:
        v = s.get(k)
        if v is not None:
            found[k] = v.decode()
sizes, impls = [], []
for a in client.shards:
    host, port = a.rsplit(":", 1)
    sizes.append(redis.Redis(host=host, port=int(port)).dbsize())
    # (dpr-kv has no dpr_impl field)
    impls.append(redis.Redis(host=host, port=int(port)).info("dpr").get("dpr_impl", "dpr-kv"))
owners = [0] * len(client.shards)
for k in found:
    owners[shard_of(k, len(client.shards))] += 1
print(json.dumps({"found": found, "sizes": sizes, "owners": owners, "shards": client.shards,
                  "impls": impls}))
'''


def layout(st):
    (d,) = [d for d in st["deployments"] if d["name"] == "kv"]
    return d.get("layout") or {}


def resized_to(node, epoch, shards):
    def done():
        st = status(node)
        lay = layout(st)
        (d,) = [d for d in st["deployments"] if d["name"] == "kv"]
        ready = len(d["instances"]) == shards and all(i["ready"] for i in d["instances"])
        return st if (lay.get("epoch") == epoch and lay.get("shards") == shards
                      and lay.get("resize") is None and ready and not st["retiring"]) else None
    return harness.wait_for("kv at layout %d with %d shards" % (epoch, shards), done, WAIT,
                            interval=0.5)


def apply(node, impl, shards):
    with open(node.path("/root/cluster.yaml"), "w") as f:
        f.write(SPEC % (impl, shards))
    return node.run("cd /root && dprctl apply -f cluster.yaml").stdout


# dpr-redis: Redis behind the DPR proxy, with the same layout protocol
# (docs/dpr-redis.md), under the same instance unit
@pytest.mark.parametrize("impl", ["dpr-kv", "dpr-redis"])
def test_resize_keeps_every_key(cluster, impl):
    node = cluster[0]
    harness.wait_for("dpr-agent", lambda: node.is_active("dpr-agent") == "active", 60)
    apply(node, impl, 3)
    resized_to(node, 1, 3)  # a new deployment gets layout 1

    w = Writers(node, ["kv"])
    try:
        w.moves_on("warm-up", deps=("kv",), ops=200)

        # (a) grow: the plan says what moves
        with open(node.path("/root/cluster.yaml"), "w") as f:
            f.write(SPEC % (impl, 5))
        plan = node.run("cd /root && dprctl plan -f cluster.yaml").stdout
        assert "kv: 3 shards -> 5: about 40% of its keys move to the new shards" in plan, plan
        out = apply(node, impl, 5)
        assert "2 created" in out, out
        st = resized_to(node, 2, 5)
        ev = node.run(["journalctl", "-u", "dpr-agent", "-o", "cat", "--no-pager"]).stdout
        assert "deployment 'kv' resized from 3 to 5 shards (layout 2)" in ev, ev[-3000:]
        w.moves_on("after growing", deps=("kv",), ops=100)

        # (b) shrink, with a kill -9 of a shard and an agent restart meanwhile
        pid = [i for i in st["deployments"][0]["instances"] if i["name"] == "kv-1"][0]["main_pid"]
        out = apply(node, impl, 2)
        assert "3 deleted" in out, out
        node.run(["kill", "-9", str(pid)])
        node.systemctl("restart", "dpr-agent")
        st = resized_to(node, 3, 2)
        w.moves_on("after shrinking", deps=("kv",), ops=100)
    finally:
        results = w.finish()

    log = "\n".join(w.log[-40:])
    print("writer:", results)
    r = results.get("kv", "")
    assert r.startswith("ok "), log
    last = int(r.split("issued=")[1].split()[0])

    with open(node.path("/root/check.py"), "w") as f:
        f.write(CHECK)
    got = json.loads(node.run(["python3", "/root/check.py", str(last)]).stdout)
    assert len(got["shards"]) == 2 and got["impls"] == [impl, impl], got
    # every key the session kept is there (the writer checked each value),
    # each on its owner, and the shards hold nothing else
    kept = int(r.split("kept=")[1].split()[0])
    assert len(got["found"]) == kept, (len(got["found"]), kept)
    assert got["sizes"] == got["owners"], got
