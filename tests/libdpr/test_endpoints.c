/*
 * test_endpoints.c - the parser of DPR.CLUSTER.ENDPOINTS answers
 * (libdpr/src/endpoints.h): replies as an agent sends them (RESP text read
 * by hiredis' reader, as the client reads them), good and bad.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "check.h"
#include "endpoints.h"
#include "replyreader.h"

/* The reply of RESP text (one complete reply), or NULL. */
static redisReply *reply_of(const char *resp)
{
    redisReader *rd = redisReaderCreate();
    void *r = NULL;
    redisReaderFeed(rd, resp, strlen(resp));
    if (redisReaderGetReply(rd, &r) != REDIS_OK)
        r = NULL;
    redisReaderFree(rd);
    return r;
}

/* dpr_endpoints_parse of RESP text; err gets the message. */
static int parse(const char *resp, dpr_endpoints *e, dpr_err *err)
{
    redisReply *r = reply_of(resp);
    int rc;
    if (!r) {
        memset(e, 0, sizeof(*e));
        return -999;
    }
    rc = dpr_endpoints_parse(r, e, err);
    freeReplyObject(r);
    return rc;
}

TEST(three_shards)
{
    dpr_endpoints e;
    dpr_err err = DPR_ERR_INIT;
    CHECK_EQ_INT(parse("*3\r\n:2\r\n*3\r\n$14\r\n127.0.0.1:7100\r\n$14\r\n127.0.0.2:7100\r\n"
                       "$10\r\n[::1]:7102\r\n*3\r\n:4\r\n:5\r\n:6\r\n", &e, &err), 0);
    CHECK_EQ_U64(e.epoch, 2);
    CHECK_EQ_U64(e.n, 3);
    CHECK(e.shard && !strcmp(e.shard[0].host, "127.0.0.1") && e.shard[0].port == 7100);
    CHECK(e.shard && !strcmp(e.shard[1].host, "127.0.0.2") && e.shard[1].port == 7100);
    CHECK(e.shard && !strcmp(e.shard[2].host, "::1") && e.shard[2].port == 7102);
    CHECK(e.shard && e.shard[0].worker == 4 && e.shard[2].worker == 6);
    CHECK_EQ_U64(dpr_endpoints_missing(&e, NULL, 0), 0);
    dpr_endpoints_free(&e);
    CHECK(e.shard == NULL && e.n == 0);
}

TEST(nil_endpoints_are_missing)
{
    dpr_endpoints e;
    size_t miss[4];
    CHECK_EQ_INT(parse("*3\r\n:0\r\n*3\r\n$-1\r\n$14\r\n127.0.0.2:7100\r\n$-1\r\n"
                       "*3\r\n:1\r\n:2\r\n:3\r\n", &e, NULL), 0);
    CHECK_EQ_U64(e.epoch, 0);
    if (!e.shard)
        return;
    CHECK(e.shard[0].host == NULL && e.shard[0].port == 0 && e.shard[0].worker == 1);
    CHECK(e.shard[2].host == NULL);
    CHECK_EQ_U64(dpr_endpoints_missing(&e, miss, 4), 2);
    CHECK_EQ_U64(miss[0], 0);
    CHECK_EQ_U64(miss[1], 2);
    CHECK_EQ_U64(dpr_endpoints_missing(&e, miss, 1), 2); /* counted beyond cap */
    dpr_endpoints_free(&e);
    /* a nil array element too */
    CHECK_EQ_INT(parse("*3\r\n:1\r\n*1\r\n*-1\r\n*1\r\n:9\r\n", &e, NULL), 0);
    CHECK_EQ_U64(dpr_endpoints_missing(&e, NULL, 0), 1);
    dpr_endpoints_free(&e);
}

TEST(error_replies)
{
    dpr_endpoints e;
    dpr_err err = DPR_ERR_INIT;
    CHECK_EQ_INT(parse("-ERR no deployment 'nope' in the cluster's spec\r\n", &e, &err), -ENOENT);
    CHECK(!strcmp(err.msg, "ERR no deployment 'nope' in the cluster's spec"));
    CHECK(e.shard == NULL);
    CHECK_EQ_INT(parse("-NOTLEADER 127.0.0.1:7000\r\n", &e, &err), -EAGAIN);
    CHECK_EQ_INT(parse("-TRYAGAIN no leader yet\r\n", &e, &err), -EAGAIN);
    CHECK_EQ_INT(parse("-ERR wrong number of arguments\r\n", &e, &err), -EREMOTEIO);
    CHECK(strstr(err.msg, "wrong number") != NULL);
}

TEST(bad_shapes)
{
    static const char *bad[] = {
        "+OK\r\n",
        ":3\r\n",
        "*2\r\n:1\r\n*0\r\n",
        "*3\r\n:-1\r\n*1\r\n$-1\r\n*1\r\n:1\r\n",                 /* negative epoch */
        "*3\r\n$1\r\n1\r\n*1\r\n$-1\r\n*1\r\n:1\r\n",             /* epoch as string */
        "*3\r\n:1\r\n*0\r\n*0\r\n",                               /* no shard */
        "*3\r\n:1\r\n*2\r\n$-1\r\n$-1\r\n*1\r\n:1\r\n",           /* 2 endpoints, 1 worker */
        "*3\r\n:1\r\n$1\r\nx\r\n*1\r\n:1\r\n",                    /* endpoints not an array */
        "*3\r\n:1\r\n*1\r\n:5\r\n*1\r\n:1\r\n",                   /* endpoint an integer */
        "*3\r\n:1\r\n*1\r\n$9\r\n127.0.0.1\r\n*1\r\n:1\r\n",      /* no port */
        "*3\r\n:1\r\n*1\r\n$11\r\n127.0.0.1:0\r\n*1\r\n:1\r\n",   /* port 0 */
        "*3\r\n:1\r\n*1\r\n$5\r\n:7000\r\n*1\r\n:1\r\n",          /* no host */
        "*3\r\n:1\r\n*1\r\n$7\r\n::1:700\r\n*1\r\n:1\r\n",        /* IPv6 without brackets */
        "*3\r\n:1\r\n*1\r\n$6\r\na\x01:700\r\n*1\r\n:1\r\n",      /* control character */
        "*3\r\n:1\r\n*1\r\n$-1\r\n*1\r\n:-4\r\n",                 /* negative worker */
        "*3\r\n:1\r\n*1\r\n$-1\r\n*1\r\n$1\r\n4\r\n",             /* worker as string */
        "*3\r\n:1\r\n*2\r\n$-1\r\n$-1\r\n*2\r\n:4\r\n:4\r\n",     /* one worker id twice */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dpr_endpoints e;
        dpr_err err = DPR_ERR_INIT;
        int rc = parse(bad[i], &e, &err);
        if (rc != -EPROTO)
            fprintf(stderr, "  case %zu: %d (%s)\n", i, rc, err.msg);
        CHECK_EQ_INT(rc, -EPROTO);
        CHECK(err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL);
        dpr_endpoints_free(&e);
    }
    dpr_err err = DPR_ERR_INIT;
    dpr_endpoints e;
    CHECK_EQ_INT(parse("*3\r\n:1\r\n*2\r\n$-1\r\n$-1\r\n*2\r\n:4\r\n:4\r\n", &e, &err), -EPROTO);
    CHECK(!strcmp(err.msg, "shards 0 and 1 have the same worker id 4"));
    dpr_endpoints_free(&e);
    CHECK_EQ_INT(parse("*3\r\n:1\r\n*1\r\n$6\r\na\x01:700\r\n*1\r\n:1\r\n", &e, &err), -EPROTO);
    CHECK(!strcmp(err.msg, "shard 0: bad endpoint '(not printable)'"));
    dpr_endpoints_free(&e);
}

/* The client's reader (replyreader.h) refuses an array header above its
 * bound before allocating for it, counts every array of one reply against
 * it, and gives the next reply the whole bound again. */
TEST(reader_bounds_array_elements)
{
    static const char five[] = "*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n";
    static const char huge[] = "*2000000000\r\n";
    static const char nested[] = "*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*3\r\n";
    redisReader *rd = dpr_replyreader_new(5);
    void *r = NULL;

    CHECK(rd != NULL);
    redisReaderFeed(rd, five, strlen(five));
    CHECK(redisReaderGetReply(rd, &r) == REDIS_OK && r);
    CHECK_EQ_INT((int)((redisReply *)r)->elements, 5);
    freeReplyObject(r);
    dpr_replyreader_reply_done(rd);
    /* 2 + 3 of 5, then 3 more: refused */
    redisReaderFeed(rd, nested, strlen(nested));
    CHECK(redisReaderGetReply(rd, &r) == REDIS_ERR);
    dpr_replyreader_free(rd);

    rd = dpr_replyreader_new(DPR_REPLYREADER_MAX_ELEMENTS);
    CHECK(rd != NULL);
    redisReaderFeed(rd, huge, strlen(huge));
    CHECK(redisReaderGetReply(rd, &r) == REDIS_ERR);
    dpr_replyreader_free(rd);
}

int main(void)
{
    RUN(three_shards);
    RUN(nil_endpoints_are_missing);
    RUN(error_replies);
    RUN(bad_shapes);
    RUN(reader_bounds_array_elements);
    return check_summary("endpoints");
}
