"""dpr-finder's Prometheus endpoint (--metrics-address) and its INFO
command: scraped with python3-prometheus-client while real dpr-kv workers
report, and checked for values that follow the cluster (reports, saves,
workers, world-lines after a kill -9, per-worker cut lag)."""
import signal

import pytest

import dprtest
from dprtest import Cluster, wait_for
import promscrape


@pytest.fixture
def mcluster(tmp_path):
    dprtest.need(dprtest.FINDER, dprtest.KV)
    with Cluster(str(tmp_path)) as c:
        c.start_finder(args=["--metrics-address", "127.0.0.1:0"])
        yield c


def test_metrics_follow_reports_and_rollbacks(mcluster):
    addr = promscrape.address(mcluster.finder)
    empty = promscrape.scrape(addr)
    assert empty.value("dpr_finder_domains") == 0 and empty.value("dpr_finder_serving") == 1
    assert empty.families["dpr_finder_save_duration_seconds"].type == "histogram"
    assert empty.samples.get("dpr_finder_world_line") is None  # no domain yet

    w1, w2 = mcluster.start_shards(2, interval_ms=50)
    w1.client().set("a", "1")
    w2.client().set("b", "1")
    wait_for(lambda: all(promscrape.scrape(addr).value(
        "dpr_finder_worker_cut_version", domain="default", worker=str(w.worker)) >= 1
        for w in (w1, w2)), what="both workers in the cut")
    now = promscrape.scrape(addr)
    assert now.value("dpr_finder_workers", domain="default") == 2
    assert now.value("dpr_finder_world_line", domain="default") == 1
    assert now.value("dpr_finder_reports_total", result="ok") >= 2
    # (the two registrations may share a group commit, and so may reports)
    assert now.value("dpr_finder_saves_total") >= 2
    assert now.value("dpr_finder_save_duration_seconds_count") >= now.value(
        "dpr_finder_saves_total")
    assert now.value("dpr_finder_commit_duration_seconds_count") >= 1
    assert now.value("dpr_finder_requests_total") > now.value("dpr_finder_reports_total",
                                                              result="ok")
    assert now.value("dpr_finder_clients") >= 2
    for w in (w1, w2):
        durable = now.value("dpr_finder_worker_durable_version", domain="default",
                            worker=str(w.worker))
        cut = now.value("dpr_finder_worker_cut_version", domain="default", worker=str(w.worker))
        lag = now.value("dpr_finder_worker_cut_lag_versions", domain="default",
                        worker=str(w.worker))
        assert durable >= cut >= 1 and lag == durable - cut
    assert now.value("dpr_finder_max_cut_lag_versions", domain="default") == max(
        now.value("dpr_finder_worker_cut_lag_versions", domain="default", worker=str(w.worker))
        for w in (w1, w2))

    mcluster.kill9(0)
    mcluster.restart(0)
    wait_for(lambda: promscrape.scrape(addr).value("dpr_finder_world_line",
                                                   domain="default") == 2,
             what="the new world-line in the metrics")
    # the reports go on on the new world-line
    before = promscrape.scrape(addr).value("dpr_finder_reports_total", result="ok")
    mcluster.shards[0].client().set("c", "1")
    wait_for(lambda: promscrape.scrape(addr).value("dpr_finder_reports_total",
                                                   result="ok") > before,
             what="more reports")


def test_metrics_without_per_worker_series(tmp_path):
    """--metrics-no-workers: the per-domain families (the largest cut lag
    among them) without the three dpr_finder_worker_* ones."""
    dprtest.need(dprtest.FINDER, dprtest.KV)
    with Cluster(str(tmp_path)) as c:
        c.start_finder(args=["--metrics-address", "127.0.0.1:0", "--metrics-no-workers"])
        addr = promscrape.address(c.finder)
        ws = c.start_shards(2, interval_ms=50)
        for i, w in enumerate(ws):
            w.client().set("k%d" % i, "1")
        wait_for(lambda: promscrape.scrape(addr).value("dpr_finder_max_version",
                                                       domain="default") >= 1,
                 what="a report in the metrics")
        now = promscrape.scrape(addr)
        assert now.value("dpr_finder_workers", domain="default") == 2
        assert not {n for n in now.names() if n.startswith("dpr_finder_worker_")}
        assert now.value("dpr_finder_max_cut_lag_versions", domain="default") >= 0


def test_info_like_redis(mcluster):
    mcluster.start_shards(1, interval_ms=50)
    c = mcluster.finder.client()
    info = c.info()
    assert info["finder_mode"] == "standalone" and info["role"] == "serving"
    assert info["tcp_port"] == mcluster.finder.port
    assert info["domains"] == 1 and info["connected_clients"] >= 1
    assert info["domain_default"]["world_line"] == 1
    assert info["domain_default"]["workers"] == 1
    wait_for(lambda: c.info("finder")["worker_default_%d" % mcluster.workers[0]]["cut"] >= 0,
             what="the worker's line")
    assert set(c.info("stats")) == {"total_connections_received", "total_commands_processed",
                                    "reports", "reports_failed", "saves"}
    assert c.info("nosuchsection") == {}
    assert c.execute_command("INFO", "SERVER")  # case does not matter
    try:
        c.execute_command("INFO", "a", "b")
        raise AssertionError("INFO with two sections answered")
    except Exception as e:  # redis.ResponseError
        assert "wrong number of arguments" in str(e)
    c.close()


def test_finder_metrics_off_by_default_and_bad_address(tmp_path):
    with Cluster(str(tmp_path)) as c:
        f = c.start_finder()
        assert "metrics on" not in f.output()
        bad = c.add(dprtest.Finder(str(tmp_path / "f2"), str(tmp_path / "f2.log"),
                                   args=["--metrics-address", "1.2.3.4"]))
        assert bad.wait_exit() == 2 and "--metrics-address" in bad.output()
        f.kill(signal.SIGKILL)
