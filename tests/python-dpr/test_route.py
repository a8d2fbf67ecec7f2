"""dpr.route against the vectors the C implementation generated
(tests/lib/vectors/route.txt, also read by tests/libdpr/test_route.c)."""
import os

import pytest

from dpr import route

VECTORS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "lib", "vectors", "route.txt")


def load():
    out = []
    with open(VECTORS) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, n, h, shard = line.split()
            out.append((b"" if key == "-" else bytes.fromhex(key), int(n), int(h, 16),
                        int(shard)))
    return out


def test_vectors():
    vectors = load()
    assert len(vectors) >= 50
    for key, n, h, shard in vectors:
        assert route.key_hash(key) == h, key
        assert route.jump(h, n) == shard, (key, n)
        assert route.shard_of(key, n) == shard, (key, n)


def test_published_fnv1a_values():
    # FNV-1a 64 test values from the reference (isthe.com/chongo/tech/comp/fnv)
    assert route.key_hash(b"") == 0xcbf29ce484222325
    assert route.key_hash(b"a") == 0xaf63dc4c8601ec8c
    assert route.key_hash(b"foobar") == 0x85944171f73967e8


def test_hash_tags():
    assert route.routing_bytes(b"user:{42}:name") == b"42"
    assert route.key_hash("user:{42}:name") == route.key_hash("user:{42}:mail")
    assert route.routing_bytes(b"a{}b") == b"a{}b"          # empty tag: whole key
    assert route.routing_bytes(b"a{b") == b"a{b"            # no closing brace
    assert route.routing_bytes(b"a}b{c}") == b"c"
    assert route.routing_bytes(b"{a}{b}") == b"a"           # the first tag
    assert route.routing_bytes(b"x{{y}z") == b"{y"


def test_str_and_int_keys_route_as_their_bytes():
    assert route.shard_of("é", 7) == route.shard_of("é".encode(), 7)
    assert route.shard_of(123, 5) == route.shard_of(b"123", 5)
    with pytest.raises(TypeError):
        route.shard_of(1.5, 3)


def test_jump_edge_cases():
    assert route.jump(12345, 0) == 0
    assert route.jump(12345, 1) == 0
    assert route.jump((1 << 64) - 1, 1 << 20) < 1 << 20
    with pytest.raises(ValueError):
        route.jump(1 << 64, 3)


def test_growing_moves_keys_only_to_the_new_shard():
    keys = [b"k%d" % i for i in range(3000)]
    for n in (1, 2, 5, 9):
        moved = 0
        for k in keys:
            a, b = route.shard_of(k, n), route.shard_of(k, n + 1)
            if a != b:
                assert b == n
                moved += 1
        assert moved < len(keys) * 2.0 / (n + 1)
