/* endpoints.c - see endpoints.h. */
#include "endpoints.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "common/addr.h"
#include "common/err.h"
#include "dpr/depset.h"

void dpr_endpoints_free(dpr_endpoints *e)
{
    for (size_t i = 0; e->shard && i < e->n; i++)
        free(e->shard[i].host);
    free(e->shard);
    memset(e, 0, sizeof(*e));
}

size_t dpr_endpoints_missing(const dpr_endpoints *e, size_t *missing, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < e->n; i++) {
        if (e->shard[i].host)
            continue;
        if (k < cap)
            missing[k] = i;
        k++;
    }
    return k;
}

/* n bytes of text for a message: itself if printable, else a placeholder */
static const char *printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return NULL;
    return s;
}

static bool starts_with(const char *s, size_t n, const char *prefix)
{
    size_t p = strlen(prefix);
    return n >= p && strncasecmp(s, prefix, p) == 0;
}

static int parse_error_reply(const redisReply *r, dpr_err *err)
{
    /* at most one line of it in the message */
    int n = (int)(r->len > 200 ? 200 : r->len);
    for (int i = 0; i < n; i++)
        if ((unsigned char)r->str[i] < 0x20) {
            n = i;
            break;
        }
    if (starts_with(r->str, r->len, "ERR no deployment"))
        return dpr_err_set(err, -ENOENT, "%.*s", n, r->str);
    if (starts_with(r->str, r->len, "NOTLEADER") || starts_with(r->str, r->len, "TRYAGAIN"))
        return dpr_err_set(err, -EAGAIN, "%.*s", n, r->str);
    return dpr_err_set(err, -EREMOTEIO, "%.*s", n, r->str);
}

static bool is_u64(const redisReply *r, uint64_t *out)
{
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
        return false;
    *out = (uint64_t)r->integer;
    return true;
}

int dpr_endpoints_parse(const redisReply *r, dpr_endpoints *out, dpr_err *err)
{
    const redisReply *eps, *wks;
    dpr_depset seen = DPR_DEPSET_INIT;
    uint64_t epoch;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (r->type == REDIS_REPLY_ERROR)
        return parse_error_reply(r, err);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return dpr_err_set(err, -EPROTO, "not an array of 3 (epoch, endpoints, workers)");
    eps = r->element[1];
    wks = r->element[2];
    if (!is_u64(r->element[0], &epoch))
        return dpr_err_set(err, -EPROTO, "the layout epoch is not an integer >= 0");
    if (eps->type != REDIS_REPLY_ARRAY || wks->type != REDIS_REPLY_ARRAY)
        return dpr_err_set(err, -EPROTO, "endpoints or workers not an array");
    if (eps->elements != wks->elements)
        return dpr_err_set(err, -EPROTO, "%zu endpoints for %zu workers", eps->elements,
                           wks->elements);
    if (eps->elements == 0 || eps->elements > DPR_ENDPOINTS_MAX_SHARDS)
        return dpr_err_set(err, -EPROTO, "%zu shards (expected 1 to %d)", eps->elements,
                           DPR_ENDPOINTS_MAX_SHARDS);
    out->shard = calloc(eps->elements, sizeof(*out->shard));
    if (!out->shard)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    out->n = eps->elements;
    out->epoch = epoch;
    for (size_t i = 0; i < out->n; i++) {
        const redisReply *e = eps->element[i];
        dpr_endpoints_shard *s = &out->shard[i];
        dpr_hostport hp;
        dpr_err why;

        if (!is_u64(wks->element[i], &s->worker)) {
            rc = dpr_err_set(err, -EPROTO, "shard %zu: the worker id is not an integer >= 0",
                             i);
            goto out;
        }
        /* versions are 1-based in a depset: store index + 1 */
        if (dpr_depset_get(&seen, s->worker)) {
            rc = dpr_err_set(err, -EPROTO, "shards %" PRIu64 " and %zu have the same worker "
                             "id %" PRIu64, dpr_depset_get(&seen, s->worker) - 1, i,
                             s->worker);
            goto out;
        }
        if (dpr_depset_set(&seen, s->worker, i + 1) < 0) {
            rc = dpr_err_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        if (e->type == REDIS_REPLY_NIL)
            continue;
        if (e->type != REDIS_REPLY_STRING) {
            rc = dpr_err_set(err, -EPROTO, "shard %zu: the endpoint is neither a string nor "
                             "nil", i);
            goto out;
        }
        if (!printable(e->str, e->len) ||
            dpr_hostport_parse_n(e->str, e->len, 0, &hp, &why) < 0 || !hp.host[0]) {
            size_t n = e->len > 80 ? 80 : e->len;
            rc = dpr_err_set(err, -EPROTO, "shard %zu: bad endpoint '%.*s'", i,
                             printable(e->str, n) ? (int)n : 17,
                             printable(e->str, n) ? e->str : "(not printable)");
            goto out;
        }
        s->port = hp.port;
        if (!(s->host = strdup(hp.host))) {
            rc = dpr_err_set(err, -ENOMEM, "out of memory");
            goto out;
        }
    }
out:
    dpr_depset_free(&seen);
    return rc;
}
