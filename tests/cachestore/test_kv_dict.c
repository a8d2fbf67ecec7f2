/* test_kv_dict.c - dpr-kv's keyspace hash table and hash function.
 * Links dpr-kv's modules (libdprkv.a). */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_dict.h"
#include "kv_hash.h"

static const uint8_t seed[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

TEST(siphash24_reference_vectors)
{
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    /* from the SipHash paper's reference implementation (vectors.h) */
    CHECK_EQ_U64(kv_siphash24(msg, 0, key), 0x726fdb47dd0e0e31ULL);
    CHECK_EQ_U64(kv_siphash24(msg, 15, key), 0xa129ca6149be45e5ULL);
    /* the 1-3 variant differs and depends on the key */
    CHECK(kv_hash(msg, 15, key) != kv_siphash24(msg, 15, key));
    CHECK(kv_hash(msg, 15, key) != kv_hash(msg, 15, seed));
}

static int keyname(char *buf, int i)
{
    return sprintf(buf, "key:%d", i);
}

TEST(set_find_delete_many)
{
    kv_dict d;
    char k[32], v[32];
    enum { N = 20000 };
    kv_dict_init(&d, seed);
    for (int i = 0; i < N; i++) {
        int kl = keyname(k, i), vl = sprintf(v, "v%d", i * 7);
        bool created = false;
        CHECK_EQ_INT(kv_dict_set(&d, k, (size_t)kl, v, (size_t)vl, &created), 0);
        CHECK(created);
    }
    CHECK_EQ_U64(kv_dict_size(&d), N);
    for (int i = 0; i < N; i++) {
        int kl = keyname(k, i), vl = sprintf(v, "v%d", i * 7);
        kv_entry *e = kv_dict_find(&d, k, (size_t)kl);
        CHECK(e != NULL);
        if (e) {
            CHECK_EQ_U64(e->vlen, (uint64_t)vl);
            CHECK(memcmp(kv_entry_val(e), v, (size_t)vl) == 0);
        }
    }
    CHECK(kv_dict_find(&d, "nope", 4) == NULL);
    /* overwrite with longer and shorter values */
    CHECK_EQ_INT(kv_dict_set(&d, "key:1", 5, "a much longer value than before", 31, NULL), 0);
    CHECK_EQ_INT(kv_dict_set(&d, "key:2", 5, "", 0, NULL), 0);
    kv_entry *e = kv_dict_find(&d, "key:1", 5);
    CHECK(e && e->vlen == 31 && memcmp(kv_entry_val(e), "a much", 6) == 0);
    e = kv_dict_find(&d, "key:2", 5);
    CHECK(e && e->vlen == 0);
    for (int i = 0; i < N; i += 2) {
        int kl = keyname(k, i);
        CHECK_EQ_INT(kv_dict_delete(&d, k, (size_t)kl), 1);
        CHECK_EQ_INT(kv_dict_delete(&d, k, (size_t)kl), 0);
    }
    CHECK_EQ_U64(kv_dict_size(&d), N / 2);
    for (int i = 0; i < N; i++) {
        int kl = keyname(k, i);
        CHECK((kv_dict_find(&d, k, (size_t)kl) != NULL) == (i % 2 == 1));
    }
    kv_dict_free(&d);
    CHECK_EQ_U64(kv_dict_size(&d), 0);
}

/* Iteration sees every entry exactly once, also in the middle of a rehash. */
TEST(iterate_during_rehash)
{
    kv_dict d;
    char k[32];
    enum { N = 5000 };
    static unsigned char seen[N];
    kv_dict_init(&d, seed);
    for (int i = 0; i < N; i++) {
        int kl = keyname(k, i);
        CHECK_EQ_INT(kv_dict_set(&d, k, (size_t)kl, "x", 1, NULL), 0);
    }
    /* N = 5000 > 4096: the last growth to 8192 is still being rehashed */
    CHECK(d.rehash_idx >= 0);
    memset(seen, 0, sizeof(seen));
    size_t it[2] = {0, 0}, count = 0;
    kv_entry *e = NULL;
    while ((e = kv_dict_next(&d, it, e))) {
        int i = atoi(e->data + 4);
        CHECK(i >= 0 && i < N);
        if (i >= 0 && i < N) {
            CHECK(!seen[i]);
            seen[i] = 1;
        }
        count++;
    }
    CHECK_EQ_U64(count, N);
    kv_dict_cron(&d, 1000000);
    CHECK(d.rehash_idx == -1);
    CHECK_EQ_U64(d.t[0].size, 8192);
    kv_dict_free(&d);
}

TEST(no_resize_while_child_alive_then_shrink)
{
    kv_dict d;
    char k[32];
    kv_dict_init(&d, seed);
    kv_dict_set_resize(&d, false);
    for (int i = 0; i < 100; i++) {
        int kl = keyname(k, i);
        CHECK_EQ_INT(kv_dict_set(&d, k, (size_t)kl, "x", 1, NULL), 0);
    }
    /* 100 keys in 4 buckets would be > 5:1: forced growth happened */
    CHECK(d.t[0].size + d.t[1].size > 4);
    CHECK(kv_dict_size(&d) == 100);
    kv_dict_set_resize(&d, true);
    kv_dict_cron(&d, 1000000);
    for (int i = 0; i < 99; i++) {
        int kl = keyname(k, i);
        CHECK_EQ_INT(kv_dict_delete(&d, k, (size_t)kl), 1);
    }
    kv_dict_cron(&d, 1000000);
    kv_dict_cron(&d, 1000000);
    CHECK_EQ_U64(d.t[0].size, 4);
    CHECK(kv_dict_find(&d, "key:99", 6) != NULL);
    kv_dict_free(&d);
}

TEST(append_and_binary_keys)
{
    kv_dict d;
    size_t n = 0;
    kv_dict_init(&d, seed);
    CHECK_EQ_INT(kv_dict_append(&d, "a\0b", 3, "xy", 2, &n), 0);
    CHECK_EQ_U64(n, 2);
    CHECK_EQ_U64(kv_dict_size(&d), 1); /* APPEND to a missing key adds it */
    for (int i = 0; i < 1000; i++)
        CHECK_EQ_INT(kv_dict_append(&d, "a\0b", 3, "0123456789", 10, &n), 0);
    CHECK_EQ_U64(n, 10002);
    kv_entry *e = kv_dict_find(&d, "a\0b", 3);
    CHECK(e && e->vlen == 10002 && memcmp(kv_entry_val(e), "xy0123", 6) == 0);
    CHECK(kv_dict_find(&d, "a\0c", 3) == NULL);
    CHECK(kv_dict_find(&d, "a", 1) == NULL);
    bool created = false;
    CHECK_EQ_INT(kv_dict_set(&d, "", 0, "empty key", 9, &created), 0);
    CHECK(created);
    CHECK_EQ_INT(kv_dict_set(&d, "", 0, "empty key", 9, &created), 0);
    CHECK(!created);
    CHECK_EQ_U64(kv_dict_size(&d), 2);
    e = kv_dict_find(&d, "", 0);
    CHECK(e && e->vlen == 9);
    CHECK(kv_dict_memory(&d) > 10002);
    kv_dict_free(&d);
}

TEST(swap_moves_content)
{
    kv_dict a, b;
    kv_dict_init(&a, seed);
    kv_dict_init(&b, seed);
    CHECK_EQ_INT(kv_dict_set(&a, "old", 3, "1", 1, NULL), 0);
    CHECK_EQ_INT(kv_dict_set(&b, "new", 3, "2", 1, NULL), 0);
    kv_dict_swap(&a, &b);
    CHECK(kv_dict_find(&a, "new", 3) != NULL);
    CHECK(kv_dict_find(&a, "old", 3) == NULL);
    CHECK_EQ_U64(kv_dict_size(&b), 0);
    kv_dict_free(&a);
    kv_dict_free(&b);
}

int main(void)
{
    RUN(siphash24_reference_vectors);
    RUN(set_find_delete_many);
    RUN(iterate_during_rehash);
    RUN(no_resize_while_child_alive_then_shrink);
    RUN(append_and_binary_keys);
    RUN(swap_moves_content);
    return check_summary("test_kv_dict");
}
