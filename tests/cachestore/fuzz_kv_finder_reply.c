/*
 * fuzz_kv_finder_reply.c - what dpr-kv makes of the finder's answers
 * (cachestore/src/kv_finder_reply.c).
 *
 * Byte 0 picks how the rest arrives and who is asking: its low 4 bits the
 * size of the pieces fed to the reader (1..15, 0: all at once), its high 4
 * bits this worker's id (0..15). The rest goes to a reader with the link's
 * limits (kv_finder_reader_new), as a socket would deliver it; every reply
 * it yields is given to each parser, as the link could receive any of them
 * for any request:
 *
 *   - kv_finder_add_parse, with and without a token: 0, -EACCES only for
 *     an error naming the owner, -EREMOTEIO only for other errors, -EPROTO;
 *     on success the world-line is 1..2^63-1 and the restore version at
 *     most 2^63-1; on failure the outputs are untouched and err carries the
 *     code and a message;
 *   - kv_finder_sync_parse, with one buffer for the whole input (as the
 *     link keeps one): 0, -EREMOTEIO only for an error reply, -EPROTO,
 *     -ENOMEM; on success every number is at most 2^63-1, the workers are
 *     strictly ascending, point into the buffer, and are exactly the ids the
 *     answer lists, and the cut is the last entry listed for this worker (0
 *     if none), all checked against the reply independently; on failure
 *     the output is untouched;
 *   - kv_finder_report_classify: acked exactly for a status reply, fenced
 *     exactly for a "FENCED " error, needs-auth exactly for the finder's
 *     refusal of a report without a DPR.AUTH grant, kept exactly for (the
 *     other) errors the finder sends for a worker (or a domain) it lost,
 *     and the error text is the reply's own for an error reply, NULL
 *     otherwise;
 *   - kv_finder_auth_classify: ok exactly for a status reply, fenced for a
 *     "FENCED " error (and for errors saying the token is not the
 *     worker's), lost only for a lost-worker error, the same error text.
 *
 * Leaks (LeakSanitizer) fail the run. Seeds (corpus/fuzz_kv_finder_reply/):
 * raw answers of each kind captured from a running dpr-finder (registration,
 * restart, token refusals, acked / stale / lost-worker reports, syncs, and
 * one whole session as a stream), plus a few built by hand for what a
 * finder does not send (an unsorted cut with duplicates, numbers at and
 * above 2^63 - 1, numbers as strings). Each gets past the reader into
 * complete replies.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "kv_finder_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

#define FINDER "127.0.0.1:7000"
#define NUM_MAX ((uint64_t)INT64_MAX)

/* The reply's number as the parsers accept it, or -1. (An independent
 * statement of the rule: digits only, no leading zero, at most 2^63-1.) */
static int number(const redisReply *r, uint64_t *out)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer < 0)
            return -1;
        *out = (uint64_t)r->integer;
        return 0;
    }
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)
        return -1;
    if (r->len == 0 || r->len > 19 || (r->str[0] == '0' && r->len > 1))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(r->str[i] - '0'); /* 19 digits fit in 64 bits */
    }
    if (v > NUM_MAX)
        return -1;
    *out = v;
    return 0;
}

static void check_err(const dpr_err *err, int r)
{
    REQUIRE(err->code == r);
    REQUIRE(memchr(err->msg, '\0', sizeof(err->msg)) != NULL);
    REQUIRE(err->msg[0] != '\0');
}

static void check_add(const redisReply *rep, bool has_token)
{
    uint64_t wl = 77, rv = 78;
    dpr_err err = DPR_ERR_INIT;
    int r = kv_finder_add_parse(rep, FINDER, 3, has_token, &wl, &rv, &err);

    if (r == 0) {
        uint64_t w2, r2;
        REQUIRE(rep->type == REDIS_REPLY_ARRAY && rep->elements == 2);
        REQUIRE(number(rep->element[0], &w2) == 0 && number(rep->element[1], &r2) == 0);
        REQUIRE(wl == w2 && rv == r2);
        REQUIRE(wl >= 1 && wl <= NUM_MAX && rv <= NUM_MAX);
        REQUIRE(err.code == 0);
        return;
    }
    REQUIRE(wl == 77 && rv == 78);
    check_err(&err, r);
    switch (r) {
    case -EACCES:
        REQUIRE(rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "registered by its owner"));
        break;
    case -EREMOTEIO:
        REQUIRE(rep->type == REDIS_REPLY_ERROR && !strstr(rep->str, "registered by its owner"));
        break;
    case -EPROTO: {
        uint64_t w2, r2;
        REQUIRE(rep->type != REDIS_REPLY_ERROR);
        REQUIRE(rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
                number(rep->element[0], &w2) < 0 || number(rep->element[1], &r2) < 0 || w2 == 0);
        break;
    }
    default:
        REQUIRE(!"kv_finder_add_parse: undocumented error");
    }
}

static bool listed(const uint64_t *v, size_t n, uint64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo] == x;
}

static void check_sync(const redisReply *rep, uint64_t worker, uint64_t **ids, size_t *cap)
{
    kv_sync s, before;
    dpr_err err = DPR_ERR_INIT;
    int r;

    memset(&s, 0xa5, sizeof(s));
    before = s;
    r = kv_finder_sync_parse(rep, FINDER, worker, ids, cap, &s, &err);
    if (r < 0) {
        REQUIRE(memcmp(&s, &before, sizeof(s)) == 0);
        check_err(&err, r);
        REQUIRE(r == -EREMOTEIO || r == -EPROTO || r == -ENOMEM);
        REQUIRE((r == -EREMOTEIO) == (rep->type == REDIS_REPLY_ERROR));
        if (r == -EPROTO && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
            rep->element[2]->type == REDIS_REPLY_ARRAY) {
            /* then some number is not one, or the list is odd */
            uint64_t x;
            const redisReply *c = rep->element[2];
            bool bad = number(rep->element[0], &x) < 0 || number(rep->element[1], &x) < 0 ||
                       c->elements % 2;
            for (size_t i = 0; i < c->elements && !bad; i++)
                bad = number(c->element[i], &x) < 0;
            REQUIRE(bad);
        }
        return;
    }
    REQUIRE(r == 0 && err.code == 0);
    REQUIRE(rep->type == REDIS_REPLY_ARRAY && rep->elements == 3);
    const redisReply *c = rep->element[2];
    uint64_t wl, maxv, cut = 0;
    REQUIRE(number(rep->element[0], &wl) == 0 && number(rep->element[1], &maxv) == 0);
    REQUIRE(s.world_line == wl && s.max_version == maxv);
    REQUIRE(s.world_line <= NUM_MAX && s.max_version <= NUM_MAX);
    REQUIRE(c->type == REDIS_REPLY_ARRAY && c->elements % 2 == 0);
    REQUIRE(s.nworkers <= c->elements / 2 && s.nworkers <= *cap);
    REQUIRE(s.nworkers == 0 || s.workers == *ids);
    for (size_t i = 0; i < s.nworkers; i++) {
        REQUIRE(s.workers[i] <= NUM_MAX);
        REQUIRE(i == 0 || s.workers[i - 1] < s.workers[i]);
    }
    /* exactly the listed ids; the cut is this worker's last entry */
    for (size_t i = 0; i < c->elements; i += 2) {
        uint64_t w, v;
        REQUIRE(number(c->element[i], &w) == 0 && number(c->element[i + 1], &v) == 0);
        REQUIRE(listed(s.workers, s.nworkers, w));
        if (w == worker)
            cut = v;
    }
    for (size_t k = 0; k < s.nworkers; k++) {
        bool found = false;
        for (size_t i = 0; i < c->elements && !found; i += 2) {
            uint64_t w;
            found = number(c->element[i], &w) == 0 && w == s.workers[k];
        }
        REQUIRE(found);
    }
    REQUIRE(s.cut == cut && s.cut <= NUM_MAX);
}

static void check_report(const redisReply *rep)
{
    const char *error = (const char *)1;
    kv_report_outcome o = kv_finder_report_classify(rep, &error);

    bool err = rep->type == REDIS_REPLY_ERROR;

    REQUIRE(o == KV_REPORT_ACKED || o == KV_REPORT_KEPT || o == KV_REPORT_DROPPED ||
            o == KV_REPORT_FENCED || o == KV_REPORT_NEEDS_AUTH);
    REQUIRE(error == (err ? rep->str : NULL));
    REQUIRE((o == KV_REPORT_ACKED) == (rep->type == REDIS_REPLY_STATUS));
    REQUIRE((o == KV_REPORT_FENCED) == (err && strncmp(rep->str, "FENCED ", 7) == 0));
    REQUIRE((o == KV_REPORT_NEEDS_AUTH) ==
            (err && o != KV_REPORT_FENCED && kv_finder_error_needs_auth(rep->str)));
    REQUIRE((o == KV_REPORT_KEPT) == (err && o != KV_REPORT_FENCED && o != KV_REPORT_NEEDS_AUTH &&
                                      kv_finder_error_lost_worker(rep->str)));
    if (o == KV_REPORT_KEPT)
        REQUIRE(strncmp(rep->str, "ERR unknown worker ", 19) == 0 ||
                strncmp(rep->str, "ERR world-line ", 15) == 0 ||
                strncmp(rep->str, "ERR unknown domain '", 20) == 0);
    /* an unknown domain is one way of not knowing the worker */
    REQUIRE(!(rep->type == REDIS_REPLY_ERROR && kv_finder_error_unknown_domain(rep->str)) ||
            o == KV_REPORT_KEPT);
}

static void check_auth(const redisReply *rep)
{
    const char *error = (const char *)1;
    kv_auth_outcome o = kv_finder_auth_classify(rep, &error);
    bool err = rep->type == REDIS_REPLY_ERROR;

    REQUIRE(o == KV_AUTH_OK || o == KV_AUTH_FENCED || o == KV_AUTH_LOST ||
            o == KV_AUTH_UNSUPPORTED || o == KV_AUTH_FAILED);
    REQUIRE(error == (err ? rep->str : NULL));
    REQUIRE((o == KV_AUTH_OK) == (rep->type == REDIS_REPLY_STATUS));
    if (err && strncmp(rep->str, "FENCED ", 7) == 0)
        REQUIRE(o == KV_AUTH_FENCED);
    if (o == KV_AUTH_LOST)
        REQUIRE(kv_finder_error_lost_worker(rep->str));
    if (o == KV_AUTH_UNSUPPORTED)
        REQUIRE(strncmp(rep->str, "ERR unknown command ", 20) == 0);
    if (!err && rep->type != REDIS_REPLY_STATUS)
        REQUIRE(o == KV_AUTH_FAILED);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    redisReader *rd;
    uint64_t *ids = NULL;
    size_t cap = 0;

    if (size < 1)
        return 0;
    size_t step = data[0] & 15 ? data[0] & 15 : size;
    uint64_t worker = data[0] >> 4;
    data++;
    size--;
    if (kv_finder_reader_new(&rd) < 0)
        return 0;
    for (size_t fed = 0; fed < size;) {
        size_t n = size - fed < step ? size - fed : step;
        if (redisReaderFeed(rd, (const char *)data + fed, n) != REDIS_OK)
            goto out;
        fed += n;
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(rd, &reply) != REDIS_OK)
                goto out; /* the link drops the connection */
            if (!reply)
                break;
            const redisReply *rep = reply;
            check_add(rep, false);
            check_add(rep, true);
            check_sync(rep, worker, &ids, &cap);
            check_report(rep);
            check_auth(rep);
            freeReplyObject(reply);
        }
    }
out:
    redisReaderFree(rd);
    free(ids);
    return 0;
}
