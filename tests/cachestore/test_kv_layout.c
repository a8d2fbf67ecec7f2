/* test_kv_layout.c - dpr-kv's layouts (kv_layout.c): the fields, key
 * ownership against libdpr's routing, and the layout file (round trip; any
 * damage detected). */
#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpr/route.h"
#include "kv_layout.h"

static size_t args(kv_arg *argv, const char *const *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        argv[n] = (kv_arg){s[n], strlen(s[n])};
    return n;
}

static int parse(const char *const *s, kv_layout *l, dpr_err *err)
{
    kv_arg argv[16];
    return kv_layout_parse(args(argv, s), argv, l, err);
}

TEST(parse_fields)
{
    kv_layout l;
    dpr_err err;
    const char *ok[] = {"3", "1", "127.0.0.1:7001", "127.0.0.1:7002", "[::1]:7003", NULL};
    CHECK_EQ_INT(parse(ok, &l, &err), 0);
    CHECK_EQ_U64(l.epoch, 3);
    CHECK_EQ_U64(l.shard, 1);
    CHECK_EQ_U64(l.nshards, 3);
    CHECK(strcmp(l.addrs[2], "[::1]:7003") == 0);
    kv_layout_free(&l);
    const char *leaving[] = {"4", "-", "h:1", NULL};
    CHECK_EQ_INT(parse(leaving, &l, &err), 0);
    CHECK_EQ_U64(l.shard, KV_LAYOUT_NO_SHARD);
    kv_layout_free(&l);

    static const char *const bad[][6] = {
        {"1", "0", NULL},                       /* no address */
        {"0", "0", "h:1", NULL},                /* epoch 0 is "no layout" */
        {"x", "0", "h:1", NULL},
        {"9223372036854775808", "0", "h:1", NULL},
        {"1", "1", "h:1", NULL},                /* index beyond the shards */
        {"1", "-1", "h:1", NULL},
        {"1", "0", "h", NULL},                  /* no port */
        {"1", "0", "h:0", NULL},
        {"1", "0", "fe80::1:7000", NULL},       /* IPv6 needs brackets */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(parse(bad[i], &l, &err), -EINVAL);
        CHECK(err.msg[0] != '\0');
        CHECK(l.addrs == NULL);
    }
}

TEST(ownership_follows_route)
{
    kv_layout l[3], none = {0, 0, 0, NULL};
    dpr_err err;
    const char *f[3][6] = {{"1", "0", "a:1", "b:1", "c:1", NULL},
                           {"1", "1", "a:1", "b:1", "c:1", NULL},
                           {"1", "2", "a:1", "b:1", "c:1", NULL}};
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(parse(f[i], &l[i], &err), 0);
    for (int k = 0; k < 1000; k++) {
        char key[32];
        size_t n = (size_t)snprintf(key, sizeof(key), "key:%d", k);
        int owners = 0;
        for (int i = 0; i < 3; i++) {
            bool o = kv_layout_owns(&l[i], key, n);
            owners += o;
            if (o)
                CHECK_EQ_U64(dpr_route_shard(key, n, 3), (uint64_t)i);
        }
        CHECK_EQ_INT(owners, 1); /* exactly one shard owns each key */
        CHECK(kv_layout_owns(&none, key, n));
    }
    /* hash tags: keys sharing {tag} share a shard */
    CHECK_EQ_U64(kv_layout_owner(&l[0], "a{user1}", 8), kv_layout_owner(&l[0], "b{user1}", 8));
    for (int i = 0; i < 3; i++)
        kv_layout_free(&l[i]);
}

static void sample_state(kv_layout_state *st)
{
    dpr_err err;
    const char *a[] = {"2", "1", "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003", NULL};
    const char *p[] = {"3", "1", "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003",
                       "127.0.0.1:7004", NULL};
    memset(st, 0, sizeof(*st));
    (void)parse(a, &st->active, &err);
    (void)parse(p, &st->pending, &err);
}

TEST(file_round_trip)
{
    kv_layout_state st, back, empty = {{0, 0, 0, NULL}, {0, 0, 0, NULL}};
    dpr_buf b = DPR_BUF_INIT;
    dpr_err err;

    sample_state(&st);
    CHECK_EQ_INT(kv_layout_encode(&st, &b), 0);
    CHECK_EQ_INT(kv_layout_decode(b.data, b.len, &back, &err), 0);
    CHECK(kv_layout_equal(&st.active, &back.active));
    CHECK(kv_layout_equal(&st.pending, &back.pending));
    kv_layout_state_free(&back);
    /* no layout at all */
    b.len = 0;
    CHECK_EQ_INT(kv_layout_encode(&empty, &b), 0);
    CHECK_EQ_INT(kv_layout_decode(b.data, b.len, &back, &err), 0);
    CHECK_EQ_U64(back.active.epoch, 0);
    CHECK_EQ_U64(back.pending.epoch, 0);
    kv_layout_state_free(&back);
    kv_layout_state_free(&st);
    dpr_buf_free(&b);
}

TEST(file_damage_detected)
{
    kv_layout_state st, back;
    dpr_buf b = DPR_BUF_INIT;
    dpr_err err;
    size_t refused = 0, tries = 0;

    sample_state(&st);
    CHECK_EQ_INT(kv_layout_encode(&st, &b), 0);
    /* every truncation */
    for (size_t n = 0; n < b.len; n++) {
        CHECK_EQ_INT(kv_layout_decode(b.data, n, &back, &err), -EBADMSG);
        kv_layout_state_free(&back);
    }
    /* every byte changed (three patterns) */
    for (size_t i = 0; i < b.len; i++) {
        for (int x = 0; x < 3; x++) {
            static const unsigned char flip[3] = {0x01, 0x80, 0xff};
            b.data[i] ^= (char)flip[x];
            tries++;
            if (kv_layout_decode(b.data, b.len, &back, &err) == -EBADMSG)
                refused++;
            kv_layout_state_free(&back);
            b.data[i] ^= (char)flip[x];
        }
    }
    CHECK_EQ_U64(refused, tries);
    /* trailing bytes, and a pending layout that is not newer */
    CHECK_EQ_INT(dpr_buf_append(&b, "*0\r\n", 4), 0);
    CHECK_EQ_INT(kv_layout_decode(b.data, b.len, &back, &err), -EBADMSG);
    CHECK(strstr(err.msg, "after the checksum") != NULL);
    kv_layout_state_free(&back);
    st.pending.epoch = st.active.epoch;
    b.len = 0;
    CHECK_EQ_INT(kv_layout_encode(&st, &b), 0);
    CHECK_EQ_INT(kv_layout_decode(b.data, b.len, &back, &err), -EBADMSG);
    CHECK(strstr(err.msg, "not newer") != NULL);
    kv_layout_state_free(&back);
    kv_layout_state_free(&st);
    dpr_buf_free(&b);
}

int main(void)
{
    RUN(parse_fields);
    RUN(ownership_follows_route);
    RUN(file_round_trip);
    RUN(file_damage_detected);
    return check_summary("test_kv_layout");
}
