/*
 * fuzz_kv_rdb.c - what dpr-kv makes of its private redis-server's replies
 * while it reads a dpr-redis checkpoint (cachestore/src/kv_rdb.c).
 *
 * Byte 0: the size of the pieces fed to the reader (low 4 bits, 1..15, 0:
 * all at once). The rest goes to libdpr's bounded reader (the one
 * kv_redis_connect installs, here with a bound of 64 elements), as a
 * socket would deliver it. The first reply is taken as a SCAN page
 * (kv_rdb_scan_page: 0 or -EPROTO; on 0 the cursor is decimal digits and
 * every key a string); the following replies, four at a time, as a key
 * and its TYPE, PTTL and GET replies (kv_rdb_take): 0 only for a string
 * without expiry, which is then in the keyspace with GET's value; 1
 * (skipped) only for a key gone; -ENOTSUP only for another type or a TTL;
 * else -EPROTO, -ENOMEM or -E2BIG; err says something on failure. Leaks
 * fail the run. Seeds: corpus/fuzz_kv_rdb/ (replies of a real
 * redis-server 7 to the commands kv_rdb sends).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "common/err.h"
#include "kv_dict.h"
#include "kv_rdb.h"
#include "replyreader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

#define MAX_REPLIES 64

static void scan_page(const redisReply *r)
{
    dpr_err err = DPR_ERR_INIT;
    const redisReply *keys = NULL;
    char cursor[32];
    int ret = kv_rdb_scan_page(r, cursor, sizeof(cursor), &keys, &err);

    REQUIRE(ret == 0 || ret == -EPROTO);
    if (ret < 0) {
        REQUIRE(dpr_err_str(&err, ret)[0] != 0);
        return;
    }
    REQUIRE(cursor[0] && strspn(cursor, "0123456789") == strlen(cursor));
    REQUIRE(keys && keys->type == REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < keys->elements; i++)
        REQUIRE(keys->element[i]->type == REDIS_REPLY_STRING);
}

static void take(kv_dict *d, redisReply *const *q)
{
    dpr_err err = DPR_ERR_INIT;
    int ret = kv_rdb_take(d, "ckpt-1.w1.rdb", q[0], q[1], q[2], q[3], &err);

    REQUIRE(ret == 0 || ret == 1 || ret == -ENOTSUP || ret == -EPROTO || ret == -ENOMEM ||
            ret == -E2BIG);
    if (ret < 0)
        REQUIRE(dpr_err_str(&err, ret)[0] != 0);
    if (ret == 0) {
        REQUIRE(q[0]->type == REDIS_REPLY_STRING && q[1]->type == REDIS_REPLY_STATUS &&
                strcmp(q[1]->str, "string") == 0 && q[2]->type == REDIS_REPLY_INTEGER &&
                q[2]->integer == -1 && q[3]->type == REDIS_REPLY_STRING);
        kv_entry *e = kv_dict_find(d, q[0]->str, (size_t)q[0]->len);
        REQUIRE(e && e->vlen == (size_t)q[3]->len &&
                memcmp(kv_entry_val(e), q[3]->str, e->vlen) == 0);
    }
    if (ret == -ENOTSUP)
        REQUIRE(q[1]->type == REDIS_REPLY_STATUS && q[2]->type == REDIS_REPLY_INTEGER &&
                (strcmp(q[1]->str, "string") != 0 || q[2]->integer != -1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t seed[16] = {4, 2};
    redisReply *rep[MAX_REPLIES];
    redisReader *rd;
    size_t piece, pos = 1;
    int n = 0;
    kv_dict d;

    if (size < 1)
        return 0;
    piece = data[0] & 15;
    rd = dpr_replyreader_new(64);
    REQUIRE(rd != NULL);
    while (pos < size && n < MAX_REPLIES) {
        size_t k = piece ? piece : size - pos;
        if (k > size - pos)
            k = size - pos;
        if (redisReaderFeed(rd, (const char *)data + pos, k) != REDIS_OK)
            break;
        pos += k;
        void *r;
        int st;
        while (n < MAX_REPLIES && (st = redisReaderGetReply(rd, &r)) == REDIS_OK && r) {
            rep[n++] = r;
            dpr_replyreader_reply_done(rd);
        }
        if (st != REDIS_OK)
            break;
    }
    dpr_replyreader_free(rd);
    kv_dict_init(&d, seed);
    if (n > 0)
        scan_page(rep[0]);
    for (int i = 1; i + 4 <= n; i += 4)
        take(&d, &rep[i]);
    kv_dict_free(&d);
    for (int i = 0; i < n; i++)
        freeReplyObject(rep[i]);
    return 0;
}
