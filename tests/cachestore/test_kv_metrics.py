"""dpr-kv's Prometheus endpoint (--metrics-address): scraped over HTTP,
parsed with python3-prometheus-client, and checked for values that follow
what the server does (commands, keys, batches, checkpoints, rollbacks);
the endpoint's answers to other paths, methods and garbage."""
import signal
import socket
import time

from dprtest import wait_for
from kvwire import Raw, batch
import promscrape

METRICS = ["--metrics-address", "127.0.0.1:0"]


def test_counters_follow_the_work(cluster):
    kv = cluster.start_kv(1, args=METRICS, interval_ms=50)
    addr = promscrape.address(kv)
    first = promscrape.scrape(addr)
    for fam, typ in (("dpr_kv_commands", "counter"), ("dpr_kv_keys", "gauge"),
                     ("dpr_kv_checkpoint_duration_seconds", "histogram"),
                     ("dpr_kv_batches_refused", "counter"), ("dpr_kv_info", "gauge")):
        assert first.families[fam].type == typ, fam
    assert first.value("dpr_kv_info", version=first.families["dpr_kv_info"].samples[0]
                       .labels["version"], worker="1", domain="default", instance="kv1") == 1
    assert first.value("dpr_kv_keys") == 0

    c = kv.client()
    for i in range(100):
        c.set("k%d" % i, "v" * 100)
    r = Raw(kv.port)
    hdr, _ = batch(r, 1, 1, [["SET", "b", "1"], ["GET", "b"]])
    assert hdr["status"] == 0
    wait_for(lambda: kv.info()["dpr_durable_version"] >= 2, what="a checkpoint of the writes")
    now = promscrape.scrape(addr)
    assert now.value("dpr_kv_keys") == 101
    assert now.value("dpr_kv_commands_total") >= first.value("dpr_kv_commands_total") + 102
    assert now.value("dpr_kv_writes_total") >= 101
    assert now.value("dpr_kv_batches_total") == 1
    assert now.value("dpr_kv_memory_used_bytes") > first.value("dpr_kv_memory_used_bytes")
    ckpts = now.value("dpr_kv_checkpoints_total")
    assert ckpts >= 1 and now.value("dpr_kv_checkpoint_written_bytes_total") > 100 * 100
    # every checkpoint is in the histogram once; its buckets are cumulative
    assert now.value("dpr_kv_checkpoint_duration_seconds_count") == ckpts
    buckets = [s for s in now.samples["dpr_kv_checkpoint_duration_seconds_bucket"]]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == ckpts
    assert all(a.value <= b.value for a, b in zip(buckets, buckets[1:]))
    assert now.value("dpr_kv_checkpoint_duration_seconds_sum") > 0
    assert now.value("dpr_kv_durable_version") >= 2
    assert now.value("dpr_kv_finder_connected") == 1
    # the same numbers as INFO (one count, two views)
    info = kv.info()
    assert now.value("dpr_kv_rollbacks_total") == info["dpr_rollbacks"] == 0
    assert now.value("dpr_kv_batches_refused_total", reason="worldline") == \
        info["dpr_batches_refused"] == 0
    c.close()
    r.close()


def test_rollback_and_refused_batches_are_counted(cluster):
    w1 = cluster.start_kv(1, interval_ms=50)
    w2 = cluster.start_kv(2, args=METRICS + ["--sync-interval-ms", "50"], interval_ms=50)
    addr = promscrape.address(w2)
    r = Raw(w2.port)
    assert batch(r, 1, 1, [["SET", "a", "1"]])[0]["status"] == 0
    w1.client().set("x", "1")
    wait_for(lambda: promscrape.scrape(addr).value("dpr_kv_cut_version") >= 1,
             what="worker 2 in the cut")
    before = promscrape.scrape(addr)
    assert before.value("dpr_kv_world_line") == 1 and before.value("dpr_kv_rollbacks_total") == 0
    w1.kill(signal.SIGKILL)
    w1.wait_exit()
    cluster.start_kv(1, interval_ms=50)
    wait_for(lambda: promscrape.scrape(addr).value("dpr_kv_rollbacks_total") == 1,
             what="worker 2's rollback in its metrics")
    after = promscrape.scrape(addr)
    assert after.value("dpr_kv_world_line") == 2
    # a batch of the old world-line is refused, and counted so
    hdr, _ = batch(r, 1, 2, [["GET", "a"]])
    assert hdr["status"] == 1
    assert promscrape.scrape(addr).value("dpr_kv_batches_refused_total", reason="worldline") == 1
    r.close()


def test_endpoint_answers_only_get_metrics(cluster):
    kv = cluster.start_kv(1, args=METRICS)
    addr = promscrape.address(kv)
    assert promscrape.get(addr, "/")[0] == 404
    assert promscrape.get(addr, "/metrics/x")[0] == 404
    status, headers, _ = promscrape.get(addr, "/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, headers, body = promscrape.get(addr, "/metrics", method="HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 1000
    assert promscrape.raw(addr, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").startswith(
        b"HTTP/1.1 400 ")
    assert promscrape.raw(addr, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000).startswith(
        b"HTTP/1.1 431 ")
    # a client that sends half a request and goes away changes nothing
    assert promscrape.raw(addr, b"GET /metr") == b""
    assert promscrape.get(addr, "/metrics?name[]=x")[0] == 200
    assert kv.alive() and promscrape.scrape(addr).value("dpr_kv_clients") == 0


def test_bad_metrics_address_is_a_usage_error(cluster):
    kv = cluster.start_kv(1, args=["--metrics-address", "nohost"], wait=False)
    assert kv.wait_exit() == 2
    assert "--metrics-address" in kv.output() and "nohost" in kv.output()
    port_taken = cluster.finder.address
    kv = cluster.start_kv(1, args=["--metrics-address", port_taken], wait=False)
    assert kv.wait_exit() != 0
    assert "cannot listen on %s for metrics" % port_taken in kv.output()


def test_metrics_off_by_default(cluster):
    kv = cluster.start_kv(1)
    assert "metrics on" not in kv.output()


def test_idle_and_surplus_connections_are_closed(cluster):
    """At most 64 connections at once (more are closed at accept); one
    that has not sent a whole request within 10 s is closed."""
    kv = cluster.start_kv(1, args=METRICS)
    addr = promscrape.address(kv)
    host, port = addr.rsplit(":", 1)
    idle = [socket.create_connection((host, int(port)), timeout=20) for _ in range(64)]
    idle[0].sendall(b"GET /metr")  # half a request counts as idle too
    surplus = socket.create_connection((host, int(port)), timeout=5)
    assert surplus.recv(100) == b""  # closed at once, nothing said
    surplus.close()
    t0 = time.monotonic()
    for s in idle:
        assert s.recv(100) == b""
        s.close()
    assert 9 <= time.monotonic() - t0 <= 15
    assert promscrape.scrape(addr).value("dpr_kv_keys") == 0
    assert kv.alive()
