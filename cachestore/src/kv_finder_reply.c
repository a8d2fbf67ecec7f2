/* kv_finder_reply.c - see kv_finder_reply.h. */
#include "kv_finder_reply.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/num.h"

/* --- the reader ---------------------------------------------------------- */

#if HIREDIS_MAJOR >= 1
void kv_finder_reader_limit(redisReader *rd)
{
    rd->maxelements = KV_FINDER_MAX_ELEMENTS;
}
#else
/* hiredis 0.14 (Debian 12) has no element limit: wrap its array
 * constructor. A NULL from it fails the reader (as out of memory). */
static redisReplyObjectFunctions limited_fns;
static void *(*plain_create_array)(const redisReadTask *, int);

static void *create_array_limited(const redisReadTask *task, int elements)
{
    if (elements < 0 || (size_t)elements > KV_FINDER_MAX_ELEMENTS)
        return NULL;
    return plain_create_array(task, elements);
}

void kv_finder_reader_limit(redisReader *rd)
{
    if (rd->fn == &limited_fns)
        return;
    if (!plain_create_array) {
        limited_fns = *rd->fn;
        plain_create_array = limited_fns.createArray;
        limited_fns.createArray = create_array_limited;
    }
    /* every reader hiredis makes shares its default functions */
    assert(rd->fn->createArray == plain_create_array);
    rd->fn = &limited_fns;
}
#endif

int kv_finder_reader_new(redisReader **out)
{
    redisReader *rd = redisReaderCreate();

    if (!rd)
        return -ENOMEM;
    kv_finder_reader_limit(rd);
    *out = rd;
    return 0;
}

/* --- numbers ------------------------------------------------------------- */

/* An integer reply, or a bulk/status string holding a decimal number, in
 * 0..2^63-1. */
static int reply_u64(const redisReply *r, uint64_t *out)
{
    if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
        *out = (uint64_t)r->integer;
        return 0;
    }
    if ((r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
        dpr_parse_u64(r->str, r->len, 0, INT64_MAX, out) == 0)
        return 0;
    return -EPROTO;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* --- DPR.WORKER.ADD ------------------------------------------------------ */

int kv_finder_add_parse(const redisReply *rep, const char *finder, uint64_t worker, bool has_token,
                        uint64_t *world_line, uint64_t *restore, dpr_err *err)
{
    uint64_t wl, rv;

    /* the finder's errors never show the token, so neither does err */
    if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "registered by its owner"))
        return dpr_err_set(
            err, -EACCES, "finder %s refused DPR.WORKER.ADD %" PRIu64 " %s: %s", finder, worker,
            has_token ? "with the token given (not the owner's)" : "without a token", rep->str);
    if (rep->type == REDIS_REPLY_ERROR)
        return dpr_err_set(err, -EREMOTEIO, "finder %s refused DPR.WORKER.ADD %" PRIu64 ": %s",
                           finder, worker, rep->str);
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        reply_u64(rep->element[0], &wl) < 0 || reply_u64(rep->element[1], &rv) < 0 || wl == 0)
        return dpr_err_set(err, -EPROTO, "finder %s gave a malformed answer to DPR.WORKER.ADD",
                           finder);
    *world_line = wl;
    *restore = rv;
    return 0;
}

/* --- DPR.SYNC ------------------------------------------------------------ */

int kv_finder_sync_parse(const redisReply *rep, const char *finder, uint64_t worker, uint64_t **ids,
                         size_t *cap, kv_sync *out, dpr_err *err)
{
    kv_sync s = {.cut = 0};
    const redisReply *c;
    size_t n = 0;

    if (rep->type == REDIS_REPLY_ERROR)
        return dpr_err_set(err, -EREMOTEIO, "finder %s refused DPR.SYNC: %s", finder, rep->str);
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        reply_u64(rep->element[0], &s.world_line) < 0 ||
        reply_u64(rep->element[1], &s.max_version) < 0 ||
        rep->element[2]->type != REDIS_REPLY_ARRAY || rep->element[2]->elements % 2)
        goto malformed;
    c = rep->element[2];
    if (c->elements / 2 > *cap) {
        uint64_t *p = realloc(*ids, c->elements / 2 * sizeof(*p));
        if (!p)
            return dpr_err_set(err, -ENOMEM,
                               "finder %s: out of memory for the %zu workers of "
                               "its DPR.SYNC answer",
                               finder, c->elements / 2);
        *ids = p;
        *cap = c->elements / 2;
    }
    for (size_t i = 0; i < c->elements; i += 2) {
        uint64_t w, v;
        if (reply_u64(c->element[i], &w) < 0 || reply_u64(c->element[i + 1], &v) < 0)
            goto malformed;
        if (w == worker)
            s.cut = v;
        (*ids)[n++] = w;
    }
    /* the finder sends them sorted; make sure, and drop duplicates */
    bool sorted = true;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = (*ids)[i - 1] < (*ids)[i];
    if (!sorted) {
        qsort(*ids, n, sizeof(**ids), cmp_u64);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (k == 0 || (*ids)[k - 1] != (*ids)[i])
                (*ids)[k++] = (*ids)[i];
        n = k;
    }
    s.workers = *ids;
    s.nworkers = n;
    *out = s;
    return 0;
malformed:
    return dpr_err_set(err, -EPROTO, "finder %s gave a malformed answer to DPR.SYNC", finder);
}

/* --- DPR.REPORT ---------------------------------------------------------- */

bool kv_finder_error_unknown_domain(const char *error)
{
    /* finder/src/cmd.c: every command but DPR.WORKER.ADD (which creates
     * the domain) names a domain that must exist */
    return error && !strncmp(error, "ERR unknown domain '", 20);
}

bool kv_finder_error_lost_worker(const char *error)
{
    /* finder/src/cmd.c, DPR.REPORT: the worker is not registered, the
     * finder is on an older world-line than the report, or the domain is
     * gone altogether */
    return error && (!strncmp(error, "ERR unknown worker ", 19) ||
                     (!strncmp(error, "ERR world-line ", 15) &&
                      strstr(error, " is newer than the finder's")) ||
                     kv_finder_error_unknown_domain(error));
}

bool kv_finder_error_fenced(const char *error)
{
    /* finder/src/cmd.c: a RESP error code of its own, like NOTLEADER */
    return error && !strncmp(error, "FENCED ", 7);
}

bool kv_finder_error_needs_auth(const char *error)
{
    return error && !strncmp(error, "ERR worker ", 11) &&
           strstr(error, " is registered by its owner: DPR.REPORT needs DPR.AUTH");
}

kv_report_outcome kv_finder_report_classify(const redisReply *rep, const char **error)
{
    *error = rep->type == REDIS_REPLY_ERROR ? rep->str : NULL;
    if (rep->type == REDIS_REPLY_STATUS)
        return KV_REPORT_ACKED;
    if (kv_finder_error_fenced(*error))
        return KV_REPORT_FENCED;
    if (kv_finder_error_needs_auth(*error))
        return KV_REPORT_NEEDS_AUTH;
    if (kv_finder_error_lost_worker(*error))
        return KV_REPORT_KEPT;
    return KV_REPORT_DROPPED;
}

kv_auth_outcome kv_finder_auth_classify(const redisReply *rep, const char **error)
{
    *error = rep->type == REDIS_REPLY_ERROR ? rep->str : NULL;
    if (rep->type == REDIS_REPLY_STATUS)
        return KV_AUTH_OK;
    if (!*error)
        return KV_AUTH_FAILED;
    if (kv_finder_error_fenced(*error) || strstr(*error, "registered with another token") ||
        strstr(*error, "is registered by its owner"))
        return KV_AUTH_FENCED;
    if (kv_finder_error_lost_worker(*error))
        return KV_AUTH_LOST;
    if (!strncmp(*error, "ERR unknown command ", 20))
        return KV_AUTH_UNSUPPORTED;
    return KV_AUTH_FAILED;
}
