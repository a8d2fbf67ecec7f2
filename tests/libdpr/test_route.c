/* test_route.c - key -> shard routing: reference values, properties, vectors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dpr/route.h"

/* Published FNV-1a 64 test values. */
TEST(fnv1a_reference)
{
    CHECK_EQ_U64(dpr_route_hash("", 0), 0xcbf29ce484222325ULL);
    CHECK_EQ_U64(dpr_route_hash("a", 1), 0xaf63dc4c8601ec8cULL);
    CHECK_EQ_U64(dpr_route_hash("foobar", 6), 0x85944171f73967e8ULL);
}

/* Plain FNV-1a 64 over every byte, written independently of route.c. */
static uint64_t ref_fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    return h;
}

TEST(hash_tags)
{
    CHECK_EQ_U64(dpr_route_hash("user:{42}:name", 14), dpr_route_hash("42", 2));
    CHECK_EQ_U64(dpr_route_hash("{42}", 4), dpr_route_hash("42", 2));
    /* first '{', then the first '}' after it */
    CHECK_EQ_U64(dpr_route_hash("a{b}c{d}", 8), dpr_route_hash("b", 1));
    CHECK_EQ_U64(dpr_route_hash("a{b{c}d}", 8), dpr_route_hash("b{c", 3));
    CHECK_EQ_U64(dpr_route_hash("user:{42}:name", 14), ref_fnv1a("42", 2));
    /* empty or unterminated tags, no tag at all: the whole key */
    CHECK_EQ_U64(dpr_route_hash("a{}b", 4), ref_fnv1a("a{}b", 4));
    CHECK_EQ_U64(dpr_route_hash("a{b", 3), ref_fnv1a("a{b", 3));
    CHECK_EQ_U64(dpr_route_hash("}a{", 3), ref_fnv1a("}a{", 3));
    CHECK_EQ_U64(dpr_route_hash("plain", 5), ref_fnv1a("plain", 5));
    /* binary keys: every byte counts, NUL included */
    CHECK_EQ_U64(dpr_route_hash("a\0b", 3), ref_fnv1a("a\0b", 3));
    CHECK(dpr_route_hash("a\0b", 3) != dpr_route_hash("a", 1));
}

TEST(jump_in_range_and_balanced)
{
    const uint32_t n = 10;
    unsigned count[10] = { 0 };
    char key[32];
    CHECK_EQ_U64(dpr_route_jump(12345, 0), 0);
    CHECK_EQ_U64(dpr_route_jump(12345, 1), 0);
    for (int i = 0; i < 100000; i++) {
        int len = snprintf(key, sizeof(key), "key:%d", i);
        uint32_t s = dpr_route_shard(key, (size_t)len, n);
        CHECK(s < n);
        if (s < n)
            count[s]++;
    }
    for (uint32_t s = 0; s < n; s++)
        CHECK(count[s] > 9000 && count[s] < 11000); /* 10,000 expected */
}

/* Growing from n to n+1 shards moves keys only onto the new shard. */
TEST(jump_minimal_movement)
{
    char key[32];
    for (uint32_t n = 1; n < 40; n++) {
        unsigned moved = 0;
        for (int i = 0; i < 5000; i++) {
            int len = snprintf(key, sizeof(key), "k%d", i);
            uint64_t h = dpr_route_hash(key, (size_t)len);
            uint32_t a = dpr_route_jump(h, n), b = dpr_route_jump(h, n + 1);
            if (a != b) {
                CHECK_EQ_U64(b, n);
                moved++;
            }
        }
        /* about 5000 / (n + 1) keys move */
        CHECK(moved < 2 * 5000 / (n + 1) + 50);
    }
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* tests/lib/vectors/route.txt: "<key hex or -> <nshards> <hash hex> <shard>" */
TEST(shared_vectors)
{
    FILE *f = fopen("tests/lib/vectors/route.txt", "r");
    char line[512], hex[256], hashhex[32];
    unsigned char key[128];
    unsigned long nshards, shard;
    int lines = 0;
    CHECK(f != NULL);
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%255s %lu %31s %lu", hex, &nshards, hashhex, &shard) != 4) {
            CHECK(!"malformed vector line");
            continue;
        }
        size_t len = 0;
        if (strcmp(hex, "-") != 0) {
            for (size_t i = 0; hex[i] && hex[i + 1] && len < sizeof(key); i += 2)
                key[len++] = (unsigned char)(hexval(hex[i]) * 16 + hexval(hex[i + 1]));
        }
        uint64_t h = dpr_route_hash(key, len);
        CHECK_EQ_U64(h, strtoull(hashhex, NULL, 16));
        CHECK_EQ_U64(dpr_route_shard(key, len, (uint32_t)nshards), shard);
        lines++;
    }
    fclose(f);
    CHECK(lines >= 50);
}

int main(void)
{
    RUN(fnv1a_reference);
    RUN(hash_tags);
    RUN(jump_in_range_and_balanced);
    RUN(jump_minimal_movement);
    RUN(shared_vectors);
    return check_summary("route");
}
