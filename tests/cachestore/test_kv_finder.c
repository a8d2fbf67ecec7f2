/* test_kv_finder.c - what dpr-kv makes of the finder's answers
 * (cachestore/src/kv_finder_reply.c): DPR.WORKER.ADD, DPR.SYNC and
 * DPR.REPORT replies, read from bytes with the link's reader. Links
 * dpr-kv's modules (libdprkv.a). */
#include "check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "kv_finder_reply.h"

#define FINDER "127.0.0.1:7000"
#define MAXN "9223372036854775807" /* 2^63 - 1 */
#define OVER "9223372036854775808" /* 2^63 */

/* The one reply in `bytes` (NULL if the reader refuses them or they are
 * not exactly one complete reply). */
static redisReply *reply_of(const char *bytes)
{
    redisReader *rd;
    void *rep = NULL, *extra = NULL;

    if (kv_finder_reader_new(&rd) < 0)
        return NULL;
    if (redisReaderFeed(rd, bytes, strlen(bytes)) != REDIS_OK ||
        redisReaderGetReply(rd, &rep) != REDIS_OK || !rep ||
        redisReaderGetReply(rd, &extra) != REDIS_OK || extra) {
        if (rep)
            freeReplyObject(rep);
        if (extra)
            freeReplyObject(extra);
        rep = NULL;
    }
    redisReaderFree(rd);
    return rep;
}

/* kv_finder_add_parse on bytes; *wl and *rv start at 77 (untouched on
 * failure). */
static int add(const char *bytes, bool has_token, uint64_t *wl, uint64_t *rv, dpr_err *err)
{
    redisReply *rep = reply_of(bytes);
    int r;

    *wl = *rv = 77;
    dpr_err_clear(err);
    if (!rep)
        return -999;
    r = kv_finder_add_parse(rep, FINDER, 1, has_token, wl, rv, err);
    freeReplyObject(rep);
    return r;
}

static int sync_parse(const char *bytes, uint64_t worker, uint64_t **ids, size_t *cap, kv_sync *s,
                      dpr_err *err)
{
    redisReply *rep = reply_of(bytes);
    int r;

    memset(s, 0x5a, sizeof(*s)); /* untouched on failure */
    dpr_err_clear(err);
    if (!rep)
        return -999;
    r = kv_finder_sync_parse(rep, FINDER, worker, ids, cap, s, err);
    freeReplyObject(rep);
    return r;
}

static bool untouched(const kv_sync *s)
{
    kv_sync t;
    memset(&t, 0x5a, sizeof(t));
    return memcmp(s, &t, sizeof(t)) == 0;
}

static kv_report_outcome classify(const char *bytes, char *error, size_t n)
{
    redisReply *rep = reply_of(bytes);
    const char *e = NULL;
    kv_report_outcome o;

    if (!rep)
        return (kv_report_outcome)-1;
    o = kv_finder_report_classify(rep, &e);
    CHECK(e == (rep->type == REDIS_REPLY_ERROR ? rep->str : NULL));
    snprintf(error, n, "%s", e ? e : "(null)");
    freeReplyObject(rep);
    return o;
}

TEST(add_answers)
{
    uint64_t wl, rv;
    dpr_err err;

    /* a new worker, and one that restarted (what the finder sends) */
    CHECK_EQ_INT(add("*2\r\n:1\r\n:0\r\n", false, &wl, &rv, &err), 0);
    CHECK_EQ_U64(wl, 1);
    CHECK_EQ_U64(rv, 0);
    CHECK_EQ_INT(add("*2\r\n:4\r\n:17\r\n", true, &wl, &rv, &err), 0);
    CHECK_EQ_U64(wl, 4);
    CHECK_EQ_U64(rv, 17);
    /* numbers as bulk or status strings, and the largest ones */
    CHECK_EQ_INT(add("*2\r\n$1\r\n3\r\n+12\r\n", false, &wl, &rv, &err), 0);
    CHECK_EQ_U64(wl, 3);
    CHECK_EQ_U64(rv, 12);
    CHECK_EQ_INT(add("*2\r\n:" MAXN "\r\n$19\r\n" MAXN "\r\n", false, &wl, &rv, &err), 0);
    CHECK_EQ_U64(wl, INT64_MAX);
    CHECK_EQ_U64(rv, INT64_MAX);
}

TEST(add_token_refusal)
{
    static const char refusal[] =
        "-ERR worker 1 is registered by its owner: DPR.WORKER.ADD needs its token\r\n";
    uint64_t wl, rv;
    dpr_err err;

    CHECK_EQ_INT(add(refusal, true, &wl, &rv, &err), -EACCES);
    CHECK_EQ_INT(err.code, -EACCES);
    CHECK(strcmp(err.msg, "finder " FINDER " refused DPR.WORKER.ADD 1 with the token given (not "
                          "the owner's): ERR worker 1 is registered by its owner: DPR.WORKER.ADD "
                          "needs its token") == 0);
    CHECK(wl == 77 && rv == 77);
    CHECK_EQ_INT(add(refusal, false, &wl, &rv, &err), -EACCES);
    CHECK(strcmp(err.msg, "finder " FINDER " refused DPR.WORKER.ADD 1 without a token: ERR worker "
                          "1 is registered by its owner: DPR.WORKER.ADD needs its token") == 0);
    CHECK(wl == 77 && rv == 77);
    /* a NULL err is fine */
    redisReply *rep = reply_of(refusal);
    CHECK(rep != NULL);
    if (rep) {
        CHECK_EQ_INT(kv_finder_add_parse(rep, FINDER, 1, true, &wl, &rv, NULL), -EACCES);
        freeReplyObject(rep);
    }
}

TEST(add_other_errors)
{
    uint64_t wl, rv;
    dpr_err err;

    CHECK_EQ_INT(add("-ERR out of memory\r\n", false, &wl, &rv, &err), -EREMOTEIO);
    CHECK_EQ_INT(err.code, -EREMOTEIO);
    CHECK(strcmp(err.msg, "finder " FINDER " refused DPR.WORKER.ADD 1: ERR out of memory") == 0);
    /* a refused token format is not the owner's refusal */
    CHECK_EQ_INT(add("-ERR invalid token: expected 1 to 128 visible ASCII characters (no spaces or "
                     "control characters)\r\n",
                     true, &wl, &rv, &err),
                 -EREMOTEIO);
    CHECK_EQ_INT(add("-WRONGTYPE x\r\n", false, &wl, &rv, &err), -EREMOTEIO);
    CHECK(wl == 77 && rv == 77);
    /* a domain name the finder refuses (dpr-kv checks it first) */
    CHECK_EQ_INT(add("-ERR invalid domain name\r\n", false, &wl, &rv, &err), -EREMOTEIO);
    CHECK(strcmp(err.msg, "finder " FINDER " refused DPR.WORKER.ADD 1: ERR invalid domain name") ==
          0);
    CHECK(wl == 77 && rv == 77);
}

TEST(add_malformed)
{
    static const char *const bad[] = {
        "*2\r\n:0\r\n:0\r\n",  /* world-lines start at 1 */
        "*2\r\n:-1\r\n:0\r\n", /* negative */
        "*2\r\n:1\r\n:-5\r\n",
        "*2\r\n$19\r\n" OVER "\r\n:0\r\n", /* above 2^63 - 1 */
        "*2\r\n:1\r\n$20\r\n18446744073709551615\r\n",
        "*2\r\n:1\r\n+" OVER "\r\n",
        "*2\r\n$2\r\n-1\r\n:0\r\n", /* not plain digits */
        "*2\r\n$2\r\n+1\r\n:0\r\n",
        "*2\r\n$2\r\n1 \r\n:0\r\n",
        "*2\r\n$0\r\n\r\n:0\r\n",
        "*2\r\n$3\r\n007\r\n:0\r\n", /* leading zeros (common/num.h) */
        "*2\r\n$-1\r\n:0\r\n",       /* nil */
        "*2\r\n*1\r\n:1\r\n:0\r\n",  /* nested */
        "*1\r\n:1\r\n",              /* wrong length */
        "*3\r\n:1\r\n:0\r\n:0\r\n",
        "*0\r\n",
        "*-1\r\n",
        "+OK\r\n",
        ":1\r\n",
        "$1\r\n1\r\n",
        "$-1\r\n",
    };
    uint64_t wl, rv;
    dpr_err err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = add(bad[i], false, &wl, &rv, &err);
        if (r != -EPROTO)
            fprintf(stderr, "  answer %zu: %d\n", i, r);
        CHECK_EQ_INT(r, -EPROTO);
        CHECK_EQ_INT(err.code, -EPROTO);
        CHECK(strcmp(err.msg, "finder " FINDER " gave a malformed answer to DPR.WORKER.ADD") == 0);
        CHECK(wl == 77 && rv == 77);
    }
}

TEST(sync_answers)
{
    uint64_t *ids = NULL;
    size_t cap = 0;
    kv_sync s;
    dpr_err err;

    /* what the finder sends: world-line, max version, sorted cut */
    CHECK_EQ_INT(sync_parse("*3\r\n:2\r\n:9\r\n*6\r\n:1\r\n:4\r\n:2\r\n:0\r\n:7\r\n:9\r\n", 2, &ids,
                            &cap, &s, &err),
                 0);
    CHECK_EQ_U64(s.world_line, 2);
    CHECK_EQ_U64(s.max_version, 9);
    CHECK_EQ_U64(s.cut, 0); /* listed with nothing committed */
    CHECK_EQ_U64(s.nworkers, 3);
    CHECK(s.workers == ids);
    CHECK(s.nworkers == 3 && ids[0] == 1 && ids[1] == 2 && ids[2] == 7);
    CHECK_EQ_U64(cap, 3);
    CHECK_EQ_INT(sync_parse("*3\r\n:2\r\n:9\r\n*6\r\n:1\r\n:4\r\n:2\r\n:0\r\n:7\r\n:9\r\n", 7, &ids,
                            &cap, &s, &err),
                 0);
    CHECK_EQ_U64(s.cut, 9);
    /* not listed: 0 */
    CHECK_EQ_INT(sync_parse("*3\r\n:2\r\n:9\r\n*2\r\n:1\r\n:4\r\n", 5, &ids, &cap, &s, &err), 0);
    CHECK_EQ_U64(s.cut, 0);
    CHECK_EQ_U64(s.nworkers, 1);
    /* no worker at all (a fresh finder) */
    CHECK_EQ_INT(sync_parse("*3\r\n:1\r\n:0\r\n*0\r\n", 5, &ids, &cap, &s, &err), 0);
    CHECK_EQ_U64(s.world_line, 1);
    CHECK_EQ_U64(s.nworkers, 0);
    CHECK_EQ_U64(cap, 3); /* kept */
    /* numbers as strings; the largest ones */
    CHECK_EQ_INT(sync_parse("*3\r\n$19\r\n" MAXN "\r\n+" MAXN "\r\n*2\r\n$19\r\n" MAXN "\r\n:" MAXN
                            "\r\n",
                            INT64_MAX, &ids, &cap, &s, &err),
                 0);
    CHECK_EQ_U64(s.world_line, INT64_MAX);
    CHECK_EQ_U64(s.max_version, INT64_MAX);
    CHECK_EQ_U64(s.cut, INT64_MAX);
    CHECK(s.nworkers == 1 && s.workers[0] == INT64_MAX);
    free(ids);
}

TEST(sync_unsorted_and_duplicates)
{
    uint64_t *ids = NULL;
    size_t cap = 0;
    kv_sync s;
    dpr_err err;

    /* 5, 2, 5, 2, 9: sorted and de-duplicated; the last entry of this
     * worker is its cut */
    const char *ans = "*3\r\n:3\r\n:8\r\n*10\r\n:5\r\n:1\r\n:2\r\n:6\r\n:5\r\n:3\r\n:2\r\n:4\r\n"
                      ":9\r\n:0\r\n";
    CHECK_EQ_INT(sync_parse(ans, 5, &ids, &cap, &s, &err), 0);
    CHECK_EQ_U64(s.cut, 3);
    CHECK(s.nworkers == 3 && s.workers[0] == 2 && s.workers[1] == 5 && s.workers[2] == 9);
    CHECK_EQ_INT(sync_parse(ans, 2, &ids, &cap, &s, &err), 0);
    CHECK_EQ_U64(s.cut, 4);
    /* sorted but one repeated next to itself */
    CHECK_EQ_INT(sync_parse("*3\r\n:3\r\n:8\r\n*6\r\n:1\r\n:1\r\n:1\r\n:2\r\n:3\r\n:0\r\n", 1, &ids,
                            &cap, &s, &err),
                 0);
    CHECK(s.nworkers == 2 && s.workers[0] == 1 && s.workers[1] == 3);
    CHECK_EQ_U64(s.cut, 2);
    /* descending */
    CHECK_EQ_INT(sync_parse("*3\r\n:3\r\n:8\r\n*6\r\n:" MAXN "\r\n:1\r\n:4\r\n:2\r\n:0\r\n:0\r\n",
                            0, &ids, &cap, &s, &err),
                 0);
    CHECK(s.nworkers == 3 && s.workers[0] == 0 && s.workers[1] == 4 && s.workers[2] == INT64_MAX);
    /* all the same */
    CHECK_EQ_INT(sync_parse("*3\r\n:3\r\n:8\r\n*6\r\n:6\r\n:1\r\n:6\r\n:2\r\n:6\r\n:1\r\n", 6, &ids,
                            &cap, &s, &err),
                 0);
    CHECK(s.nworkers == 1 && s.workers[0] == 6);
    CHECK_EQ_U64(s.cut, 1);
    free(ids);
}

/* The buffer grows for a long list and is reused for shorter ones. */
TEST(sync_buffer_reuse)
{
    uint64_t *ids = NULL;
    size_t cap = 0, n = 3000;
    kv_sync s;
    dpr_err err;
    char *ans = malloc(64 + n * 32), *p = ans;

    CHECK(ans != NULL);
    if (!ans)
        return;
    p += sprintf(p, "*3\r\n:1\r\n:5\r\n*%zu\r\n", 2 * n);
    for (size_t i = 0; i < n; i++) /* descending, so the parser sorts */
        p += sprintf(p, ":%zu\r\n:%zu\r\n", n - i, i % 5);
    CHECK_EQ_INT(sync_parse(ans, 1, &ids, &cap, &s, &err), 0);
    CHECK_EQ_U64(s.nworkers, n);
    CHECK_EQ_U64(cap, n);
    bool ascending = true;
    for (size_t i = 0; i < s.nworkers; i++)
        ascending = ascending && s.workers[i] == i + 1;
    CHECK(ascending);
    CHECK_EQ_U64(s.cut, (n - 1) % 5);
    uint64_t *before = ids;
    CHECK_EQ_INT(sync_parse("*3\r\n:1\r\n:5\r\n*2\r\n:8\r\n:2\r\n", 8, &ids, &cap, &s, &err), 0);
    CHECK(ids == before && cap == n && s.nworkers == 1 && s.workers[0] == 8 && s.cut == 2);
    free(ans);
    free(ids);
}

TEST(sync_errors_and_malformed)
{
    static const char *const bad[] = {
        "*3\r\n:1\r\n:0\r\n*1\r\n:1\r\n", /* odd cut */
        "*3\r\n:1\r\n:0\r\n*3\r\n:1\r\n:1\r\n:2\r\n",
        "*3\r\n:1\r\n:0\r\n:0\r\n", /* cut not an array */
        "*3\r\n:1\r\n:0\r\n$-1\r\n",
        "*3\r\n:1\r\n:0\r\n*-1\r\n",
        "*2\r\n:1\r\n:0\r\n", /* wrong length */
        "*4\r\n:1\r\n:0\r\n*0\r\n*0\r\n",
        "*0\r\n",
        "*3\r\n:-1\r\n:0\r\n*0\r\n", /* negative */
        "*3\r\n:1\r\n:-1\r\n*0\r\n",
        "*3\r\n:1\r\n:0\r\n*2\r\n:-3\r\n:1\r\n",
        "*3\r\n:1\r\n:0\r\n*2\r\n:3\r\n:-1\r\n",
        "*3\r\n$19\r\n" OVER "\r\n:0\r\n*0\r\n", /* above 2^63 - 1 */
        "*3\r\n:1\r\n+" OVER "\r\n*0\r\n",
        "*3\r\n:1\r\n:0\r\n*2\r\n$19\r\n" OVER "\r\n:1\r\n",
        "*3\r\n:1\r\n:0\r\n*2\r\n:1\r\n$20\r\n18446744073709551615\r\n",
        "*3\r\n:1\r\n:0\r\n*2\r\n:1\r\n$1\r\nx\r\n", /* not a number */
        "*3\r\n:1\r\n:0\r\n*2\r\n:1\r\n*0\r\n",
        "*3\r\n:1\r\n:0\r\n*2\r\n$-1\r\n:1\r\n",
        "*3\r\n*0\r\n:0\r\n*0\r\n",
        "+OK\r\n",
        ":3\r\n",
        "$-1\r\n",
    };
    uint64_t *ids = NULL;
    size_t cap = 0;
    kv_sync s;
    dpr_err err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = sync_parse(bad[i], 1, &ids, &cap, &s, &err);
        if (r != -EPROTO)
            fprintf(stderr, "  answer %zu: %d\n", i, r);
        CHECK_EQ_INT(r, -EPROTO);
        CHECK_EQ_INT(err.code, -EPROTO);
        CHECK(strcmp(err.msg, "finder " FINDER " gave a malformed answer to DPR.SYNC") == 0);
        CHECK(untouched(&s));
    }
    CHECK_EQ_INT(sync_parse("-ERR out of memory\r\n", 1, &ids, &cap, &s, &err), -EREMOTEIO);
    CHECK_EQ_INT(err.code, -EREMOTEIO);
    CHECK(strcmp(err.msg, "finder " FINDER " refused DPR.SYNC: ERR out of memory") == 0);
    CHECK(untouched(&s));
    /* a domain the finder does not know: an error like any other here (the
     * link and start-up read it with kv_finder_error_unknown_domain) */
    CHECK_EQ_INT(sync_parse("-ERR unknown domain 'shop'\r\n", 1, &ids, &cap, &s, &err),
                 -EREMOTEIO);
    CHECK(strcmp(err.msg, "finder " FINDER " refused DPR.SYNC: ERR unknown domain 'shop'") == 0);
    CHECK(untouched(&s));
    free(ids);
}

TEST(report_answers)
{
    char e[200];

    CHECK_EQ_INT(classify("+OK\r\n", e, sizeof(e)), KV_REPORT_ACKED);
    CHECK(strcmp(e, "(null)") == 0);
    CHECK_EQ_INT(classify("+QUEUED\r\n", e, sizeof(e)), KV_REPORT_ACKED); /* any status */
    /* the finder does not know this worker: kept */
    CHECK_EQ_INT(
        classify("-ERR unknown worker 3: register it with DPR.WORKER.ADD\r\n", e, sizeof(e)),
        KV_REPORT_KEPT);
    CHECK(strcmp(e, "ERR unknown worker 3: register it with DPR.WORKER.ADD") == 0);
    CHECK_EQ_INT(classify("-ERR world-line 5 is newer than the finder's (4)\r\n", e, sizeof(e)),
                 KV_REPORT_KEPT);
    /* ... nor its domain (its state was lost): kept too */
    CHECK_EQ_INT(classify("-ERR unknown domain 'shop'\r\n", e, sizeof(e)), KV_REPORT_KEPT);
    CHECK(strcmp(e, "ERR unknown domain 'shop'") == 0);
    CHECK_EQ_INT(classify("-ERR invalid domain name\r\n", e, sizeof(e)), KV_REPORT_DROPPED);
    /* refused for another reason: dropped */
    CHECK_EQ_INT(classify("-STALE world-line 3 is current: report of version 9 from world-line 2 "
                          "dropped\r\n",
                          e, sizeof(e)),
                 KV_REPORT_DROPPED);
    CHECK(strncmp(e, "STALE world-line 3", 18) == 0);
    CHECK_EQ_INT(classify("-ERR dependency (2, 9) is newer than version 4: x\r\n", e, sizeof(e)),
                 KV_REPORT_DROPPED);
    CHECK_EQ_INT(classify("-ERR world-line 5 is current\r\n", e, sizeof(e)), KV_REPORT_DROPPED);
    CHECK_EQ_INT(classify("-ERR unknown worker\r\n", e, sizeof(e)), KV_REPORT_DROPPED);
    CHECK_EQ_INT(classify("-ERR out of memory\r\n", e, sizeof(e)), KV_REPORT_DROPPED);
    /* not a status nor an error */
    CHECK_EQ_INT(classify(":1\r\n", e, sizeof(e)), KV_REPORT_DROPPED);
    CHECK(strcmp(e, "(null)") == 0);
    CHECK_EQ_INT(classify("$2\r\nOK\r\n", e, sizeof(e)), KV_REPORT_DROPPED);
    CHECK_EQ_INT(classify("$-1\r\n", e, sizeof(e)), KV_REPORT_DROPPED);
    CHECK_EQ_INT(classify("*1\r\n+OK\r\n", e, sizeof(e)), KV_REPORT_DROPPED);
}

TEST(lost_worker_texts)
{
    CHECK(!kv_finder_error_lost_worker(NULL));
    CHECK(!kv_finder_error_lost_worker(""));
    CHECK(kv_finder_error_lost_worker("ERR unknown worker 7: register it with DPR.WORKER.ADD"));
    CHECK(kv_finder_error_lost_worker("ERR world-line 9 is newer than the finder's (3)"));
    CHECK(!kv_finder_error_lost_worker("ERR unknown command 'DPR.REPORT'"));
    CHECK(!kv_finder_error_lost_worker("ERR world-line 9 is current"));
    CHECK(!kv_finder_error_lost_worker("STALE world-line 9 is newer than the finder's (3)"));
    CHECK(!kv_finder_error_lost_worker("err unknown worker 7"));
    /* the finder lost the domain */
    CHECK(kv_finder_error_lost_worker("ERR unknown domain 'default'"));
    CHECK(kv_finder_error_lost_worker("ERR unknown domain 'shop-eu.1'"));
    CHECK(!kv_finder_error_lost_worker("ERR invalid domain name"));
    CHECK(!kv_finder_error_lost_worker("ERR unknown domain"));
    CHECK(kv_finder_error_unknown_domain("ERR unknown domain 'x'"));
    CHECK(!kv_finder_error_unknown_domain("ERR unknown domain"));
    CHECK(!kv_finder_error_unknown_domain("ERR unknown worker 7: register it"));
    CHECK(!kv_finder_error_unknown_domain("STALE unknown domain 'x'"));
    CHECK(!kv_finder_error_unknown_domain(NULL));
    CHECK(!kv_finder_error_unknown_domain(""));
}

static kv_auth_outcome auth(const char *bytes)
{
    redisReply *rep = reply_of(bytes);
    const char *e = NULL;
    kv_auth_outcome o;

    if (!rep)
        return (kv_auth_outcome)-1;
    o = kv_finder_auth_classify(rep, &e);
    CHECK(e == (rep->type == REDIS_REPLY_ERROR ? rep->str : NULL));
    freeReplyObject(rep);
    return o;
}

/* Fencing: the finder's answers to DPR.AUTH and to the reports of a shard
 * whose worker was moved to another node (finder/src/cmd.c). */
TEST(fencing_answers)
{
    char e[200];

    /* reports */
    CHECK_EQ_INT(classify("-FENCED worker 3 now belongs to another owner (it moved): this "
                          "incarnation's reports are refused\r\n",
                          e, sizeof(e)),
                 KV_REPORT_FENCED);
    CHECK(strncmp(e, "FENCED worker 3 now belongs", 27) == 0);
    CHECK_EQ_INT(classify("-ERR worker 3 is registered by its owner: DPR.REPORT needs DPR.AUTH "
                          "with its token on this connection\r\n",
                          e, sizeof(e)),
                 KV_REPORT_NEEDS_AUTH);
    CHECK_EQ_INT(classify("-FENCEDX\r\n", e, sizeof(e)), KV_REPORT_DROPPED);
    CHECK_EQ_INT(classify("-ERR FENCED worker 3\r\n", e, sizeof(e)), KV_REPORT_DROPPED);
    CHECK(kv_finder_error_fenced("FENCED worker 1 is registered with another token: x"));
    CHECK(!kv_finder_error_fenced("FENCED"));
    CHECK(!kv_finder_error_fenced("fenced worker 1"));
    CHECK(!kv_finder_error_fenced(NULL));
    CHECK(!kv_finder_error_needs_auth("ERR worker 1 is registered by its owner: DPR.WORKER.ADD "
                                      "needs its token"));
    CHECK(!kv_finder_error_needs_auth(NULL));

    /* DPR.AUTH */
    CHECK_EQ_INT(auth("+OK\r\n"), KV_AUTH_OK);
    CHECK_EQ_INT(auth("-FENCED worker 3 is registered with another token: this connection may "
                      "not act for it (its owner moved it, or another incarnation registered "
                      "it)\r\n"),
                 KV_AUTH_FENCED);
    CHECK_EQ_INT(auth("-FENCED worker 3 is registered without a token: x\r\n"), KV_AUTH_FENCED);
    /* an error saying the token is not the worker's, whatever its code */
    CHECK_EQ_INT(auth("-ERR worker 3 is registered with another token\r\n"), KV_AUTH_FENCED);
    CHECK_EQ_INT(auth("-ERR worker 3 is registered by its owner: DPR.AUTH needs its token\r\n"),
                 KV_AUTH_FENCED);
    /* the finder does not know the worker (its state was lost?) */
    CHECK_EQ_INT(auth("-ERR unknown worker 3\r\n"), KV_AUTH_LOST);
    CHECK_EQ_INT(auth("-ERR unknown domain 'kv'\r\n"), KV_AUTH_LOST);
    /* a finder from before DPR.AUTH */
    CHECK_EQ_INT(auth("-ERR unknown command 'DPR.AUTH'\r\n"), KV_AUTH_UNSUPPORTED);
    CHECK_EQ_INT(auth("-ERR too many DPR.AUTH grants on this connection (at most 64)\r\n"),
                 KV_AUTH_FAILED);
    CHECK_EQ_INT(auth("-ERR out of memory\r\n"), KV_AUTH_FAILED);
    CHECK_EQ_INT(auth(":1\r\n"), KV_AUTH_FAILED);
    CHECK_EQ_INT(auth("$2\r\nOK\r\n"), KV_AUTH_FAILED);
    CHECK_EQ_INT(auth("*1\r\n+OK\r\n"), KV_AUTH_FAILED);
}

/* Arrays longer than KV_FINDER_MAX_ELEMENTS fail the reader at once. */
TEST(reader_limits)
{
    char hdr[64];
    redisReader *rd;
    void *rep = NULL;

    CHECK_EQ_INT(kv_finder_reader_new(&rd), 0);
    snprintf(hdr, sizeof(hdr), "*%zu\r\n", KV_FINDER_MAX_ELEMENTS + 1);
    CHECK_EQ_INT(redisReaderFeed(rd, hdr, strlen(hdr)), REDIS_OK);
    CHECK_EQ_INT(redisReaderGetReply(rd, &rep), REDIS_ERR);
    CHECK(rep == NULL);
    redisReaderFree(rd);
    /* nested too */
    CHECK_EQ_INT(kv_finder_reader_new(&rd), 0);
    snprintf(hdr, sizeof(hdr), "*3\r\n:1\r\n:1\r\n*%zu\r\n", KV_FINDER_MAX_ELEMENTS + 2);
    CHECK_EQ_INT(redisReaderFeed(rd, hdr, strlen(hdr)), REDIS_OK);
    CHECK_EQ_INT(redisReaderGetReply(rd, &rep), REDIS_ERR);
    redisReaderFree(rd);
    /* at the limit: waits for the elements */
    CHECK_EQ_INT(kv_finder_reader_new(&rd), 0);
    kv_finder_reader_limit(rd); /* twice is fine */
    snprintf(hdr, sizeof(hdr), "*%zu\r\n:1\r\n", KV_FINDER_MAX_ELEMENTS);
    CHECK_EQ_INT(redisReaderFeed(rd, hdr, strlen(hdr)), REDIS_OK);
    CHECK_EQ_INT(redisReaderGetReply(rd, &rep), REDIS_OK);
    CHECK(rep == NULL);
    redisReaderFree(rd);
    /* a plain reader, limited afterwards (as the blocking calls do) */
    rd = redisReaderCreate();
    CHECK(rd != NULL);
    if (rd) {
        kv_finder_reader_limit(rd);
        snprintf(hdr, sizeof(hdr), "*%zu\r\n", KV_FINDER_MAX_ELEMENTS + 1);
        CHECK_EQ_INT(redisReaderFeed(rd, hdr, strlen(hdr)), REDIS_OK);
        CHECK_EQ_INT(redisReaderGetReply(rd, &rep), REDIS_ERR);
        redisReaderFree(rd);
    }
    /* ordinary answers still read */
    redisReply *r = reply_of("*3\r\n:1\r\n:2\r\n*2\r\n:1\r\n:2\r\n");
    CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    if (r)
        freeReplyObject(r);
}

int main(void)
{
    RUN(add_answers);
    RUN(add_token_refusal);
    RUN(add_other_errors);
    RUN(add_malformed);
    RUN(sync_answers);
    RUN(sync_unsorted_and_duplicates);
    RUN(sync_buffer_reuse);
    RUN(sync_errors_and_malformed);
    RUN(report_answers);
    RUN(lost_worker_texts);
    RUN(fencing_answers);
    RUN(reader_limits);
    return check_summary("test_kv_finder");
}
