/*
 * kv_resp_hiredis.c - the request parser built on hiredis' reader with our
 * own reply-object functions: the first implementation, kept to repeat the
 * measurement in docs/dpr-kv.md ("Request parser"). It replaces
 * src/kv_resp.c in a comparison build:
 *
 *   cachestore/bench/build-hiredis-variant.sh   -> build/dpr-kv-hiredis
 *
 * Differences: no inline commands (hiredis sees "PING\r\n" as a protocol
 * error), every argument is copied into its own allocation, and the reader
 * copies all input into its own buffer.
 */
#include <errno.h>
#include <hiredis/read.h>
#include <stdlib.h>
#include <string.h>

#include "../src/kv_resp.h"

typedef struct req {
    size_t argc;
    int bad; /* not an array of bulk strings */
    kv_arg argv[];
} req;

typedef struct alt {
    redisReader *r;
    size_t fed;      /* bytes of the caller's buffer already fed */
    size_t unparsed; /* bytes fed but not yet returned as requests */
    req *cur;
    size_t max_args;
} alt;

static char bad_marker;

static void *create_array(const redisReadTask *t, int elements)
{
    alt *a = t->privdata;
    if (t->parent || elements < 0 || (size_t)elements > a->max_args)
        return &bad_marker;
    req *q = calloc(1, sizeof(*q) + (size_t)elements * sizeof(kv_arg));
    if (q)
        q->argc = (size_t)elements;
    return q;
}

static void *create_string(const redisReadTask *t, char *s, size_t len)
{
    if (!t->parent)
        return &bad_marker;
    req *q = t->parent->obj;
    if ((void *)q == &bad_marker)
        return &bad_marker;
    if (t->type != REDIS_REPLY_STRING) {
        q->bad = 1;
        return q;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, len);
    q->argv[t->idx].p = copy;
    q->argv[t->idx].n = len;
    return q;
}

static void *create_other(const redisReadTask *t)
{
    if (!t->parent)
        return &bad_marker;
    req *q = t->parent->obj;
    if ((void *)q != &bad_marker)
        q->bad = 1;
    return q;
}

static void *create_integer(const redisReadTask *t, long long v)
{
    (void)v;
    return create_other(t);
}

static void free_req(void *o)
{
    req *q = o;
    if (!q || o == (void *)&bad_marker)
        return;
    for (size_t i = 0; i < q->argc; i++)
        free((void *)q->argv[i].p);
    free(q);
}

static redisReplyObjectFunctions fns = {create_string, create_array, create_integer,
                                        create_other, free_req};

void kv_parser_init(kv_parser *p, size_t max_request, size_t max_args)
{
    memset(p, 0, sizeof(*p));
    p->max_request = max_request;
    p->max_args = max_args;
}

void kv_parser_free(kv_parser *p)
{
    alt *a = p->alt;
    if (a) {
        free_req(a->cur);
        if (a->r)
            redisReaderFree(a->r);
        free(a);
    }
    free(p->argv);
    p->alt = NULL;
    p->argv = NULL;
}

ssize_t kv_parse(kv_parser *p, const char *buf, size_t len, size_t *argc, kv_arg **argv,
                 const char **err)
{
    alt *a = p->alt;
    void *obj = NULL;

    if (!a) {
        a = p->alt = calloc(1, sizeof(*a));
        if (!a)
            return -ENOMEM;
        a->r = redisReaderCreateWithFunctions(&fns);
        if (!a->r)
            return -ENOMEM;
        a->r->privdata = a;
        a->max_args = p->max_args;
    }
    free_req(a->cur);
    a->cur = NULL;
    if (len > a->fed) {
        if (redisReaderFeed(a->r, buf + a->fed, len - a->fed) != REDIS_OK)
            return -ENOMEM;
        a->unparsed += len - a->fed;
        a->fed = len;
    }
    if (redisReaderGetReply(a->r, &obj) != REDIS_OK) {
        *err = "Protocol error";
        return -EPROTO;
    }
    size_t left = a->r->len - a->r->pos; /* bytes the reader has not parsed */
    if (!obj) {
        if (left > p->max_request) {
            *err = "Protocol error: request larger than the maximum request size";
            return -EPROTO;
        }
        return 0;
    }
    size_t used = a->unparsed - left;
    a->unparsed = left;
    a->fed -= used;
    if (obj == (void *)&bad_marker || ((req *)obj)->bad) {
        free_req(obj);
        *err = "Protocol error: expected an array of bulk strings";
        return -EPROTO;
    }
    a->cur = obj;
    *argc = a->cur->argc;
    *argv = a->cur->argv;
    return (ssize_t)used;
}
