"""dpr.resp.Connection: pipelining, error replies, timeouts, clear errors."""
import socket
import time

import hiredis
import pytest

import dpr
from dpr.resp import Connection, encode_command, parse_address


def test_encode_command():
    assert encode_command(["SET", b"k", 12, "é"]) == \
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$2\r\n\xc3\xa9\r\n"
    with pytest.raises(TypeError):
        encode_command(["SET", "k", None])
    with pytest.raises(TypeError):
        encode_command(["SET", "k", True])


def test_parse_address():
    assert parse_address("127.0.0.1:7001") == ("127.0.0.1", 7001)
    assert parse_address("[::1]:7001") == ("::1", 7001)
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:x", ":7001", "h:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(bad)


def test_pipeline_and_errors(cluster):
    kv = cluster.start_shards(1)[0]
    with Connection(kv.address, timeout=5) as c:
        replies = c.pipeline([("SET", "a", "1"), ("INCR", "a"), ("SET", "s", "x"),
                              ("INCR", "s"), ("GET", "a"), ("GET", "nope")])
        assert replies[:3] == [b"OK", 2, b"OK"]
        assert isinstance(replies[3], hiredis.ReplyError)
        assert replies[4:] == [b"2", None]
        assert c.call("PING") == b"PONG"
        with pytest.raises(dpr.ResponseError, match="not an integer"):
            c.call("INCR", "s")
        assert c.check_alive()
        big = b"x" * 300000  # a reply over several reads
        assert c.call("SET", "big", big) == b"OK"
        assert c.call("GET", "big") == big
        assert c.call("QUIT") == b"OK"
        with pytest.raises(dpr.ConnectionError, match=kv.address):  # EOF or reset
            c.call("PING")
        assert not c.connected
        assert c.call("PING") == b"PONG"  # reconnects on use


def test_connection_refused_names_the_address():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    c = Connection("127.0.0.1:%d" % port, timeout=1)
    with pytest.raises(dpr.ConnectionError, match="cannot connect to 127.0.0.1:%d" % port):
        c.call("PING")


def test_reply_timeout_closes_the_connection():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)  # accepts (in the kernel) but never answers
    try:
        c = Connection("127.0.0.1:%d" % srv.getsockname()[1], timeout=0.2)
        with pytest.raises(dpr.TimeoutError, match="timed out after 0.2s"):
            c.call("PING")
        assert not c.connected
    finally:
        srv.close()


def test_garbage_reply_is_a_protocol_error():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        c = Connection("127.0.0.1:%d" % srv.getsockname()[1], timeout=2)
        c.connect()
        peer, _ = srv.accept()
        peer.sendall(b"?what\r\n")
        with pytest.raises(dpr.ProtocolError, match="bad reply"):
            c.read()
        assert not c.connected
        peer.close()
    finally:
        srv.close()


def test_idle_connection_closed_by_peer_is_detected():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        c = Connection("127.0.0.1:%d" % srv.getsockname()[1], timeout=2)
        c.connect()
        peer, _ = srv.accept()
        assert c.check_alive()
        peer.close()
        time.sleep(0.05)
        assert not c.check_alive() and not c.connected
    finally:
        srv.close()
