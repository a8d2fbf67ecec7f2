/* kv_resp.c - the RESP request parser (see kv_resp.h). */
#include "kv_resp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/num.h"

#define BULK_HEADER_MAX 32 /* "$" + up to 20 digits + CRLF, with room to spare */

void kv_parser_init(kv_parser *p, size_t max_request, size_t max_args)
{
    memset(p, 0, sizeof(*p));
    p->max_request = max_request;
    p->max_args = max_args;
}

void kv_parser_free(kv_parser *p)
{
    free(p->off);
    free(p->len);
    free(p->argv);
    kv_parser_init(p, p->max_request, p->max_args);
}

static void parser_reset(kv_parser *p)
{
    p->want = 0;
    p->have = 0;
    p->pos = 0;
}

static int reserve_args(kv_parser *p, size_t n)
{
    if (n <= p->cap)
        return 0;
    size_t cap = p->cap ? p->cap : 16;
    while (cap < n)
        cap *= 2;
    size_t *off = realloc(p->off, cap * sizeof(*off));
    if (!off)
        return -ENOMEM;
    p->off = off;
    size_t *len = realloc(p->len, cap * sizeof(*len));
    if (!len)
        return -ENOMEM;
    p->len = len;
    p->cap = cap;
    return 0;
}

static int reserve_argv(kv_parser *p, size_t n)
{
    if (n <= p->argv_cap)
        return 0;
    size_t cap = p->argv_cap ? p->argv_cap : 16;
    while (cap < n)
        cap *= 2;
    kv_arg *a = realloc(p->argv, cap * sizeof(*a));
    if (!a)
        return -ENOMEM;
    p->argv = a;
    p->argv_cap = cap;
    return 0;
}

static ssize_t parse_inline(kv_parser *p, const char *buf, size_t len, size_t *argc,
                            kv_arg **argv, const char **err)
{
    size_t scan = len < KV_INLINE_MAX ? len : KV_INLINE_MAX;
    const char *nl = memchr(buf, '\n', scan);
    size_t n = 0, end, i = 0;

    if (!nl) {
        if (len >= KV_INLINE_MAX) {
            *err = "Protocol error: too big inline request";
            return -EPROTO;
        }
        return 0;
    }
    end = (size_t)(nl - buf);
    if (end > 0 && buf[end - 1] == '\r')
        end--;
    while (i < end) {
        while (i < end && (buf[i] == ' ' || buf[i] == '\t'))
            i++;
        if (i == end)
            break;
        size_t start = i;
        while (i < end && buf[i] != ' ' && buf[i] != '\t')
            i++;
        if (reserve_argv(p, n + 1) < 0)
            return -ENOMEM;
        p->argv[n].p = buf + start;
        p->argv[n].n = i - start;
        n++;
    }
    *argc = n;
    *argv = p->argv;
    return (ssize_t)(nl - buf) + 1;
}

/* Finds "\r\n" in buf[from..len) within `limit` bytes of from: offset of '\r',
 * -1 if more data may complete it, -2 if it cannot be there. */
static ssize_t find_crlf(const char *buf, size_t len, size_t from, size_t limit)
{
    size_t end = len - from > limit ? from + limit : len;
    const char *cr = memchr(buf + from, '\r', end - from);

    if (!cr)
        return (len - from > limit) ? -2 : -1;
    size_t at = (size_t)(cr - buf);
    if (at + 1 >= len)
        return -1;
    return buf[at + 1] == '\n' ? (ssize_t)at : -2;
}

ssize_t kv_parse(kv_parser *p, const char *buf, size_t len, size_t *argc, kv_arg **argv,
                 const char **err)
{
    ssize_t at;
    int64_t v;

    if (len == 0)
        return 0;
    if (p->want == 0) {
        if (buf[0] != '*')
            return parse_inline(p, buf, len, argc, argv, err);
        at = find_crlf(buf, len, 1, BULK_HEADER_MAX);
        if (at == -1)
            return 0;
        if (at == -2 || dpr_parse_i64(buf + 1, (size_t)at - 1, &v) < 0 ||
            (v > 0 && (uint64_t)v > p->max_args)) {
            *err = "Protocol error: invalid multibulk length";
            goto fail;
        }
        if (v <= 0) { /* "*0" and "*-1": nothing to run, like Redis */
            *argc = 0;
            *argv = p->argv;
            return at + 2;
        }
        p->want = v;
        p->have = 0;
        p->pos = (size_t)at + 2;
    }
    while (p->have < (size_t)p->want) {
        size_t pos = p->pos;
        if (pos >= len)
            return 0;
        if (buf[pos] != '$') {
            *err = "Protocol error: expected '$' before a bulk string";
            goto fail;
        }
        at = find_crlf(buf, len, pos + 1, BULK_HEADER_MAX);
        if (at == -1)
            return 0;
        if (at == -2 || dpr_parse_i64(buf + pos + 1, (size_t)at - pos - 1, &v) < 0 || v < 0) {
            *err = "Protocol error: invalid bulk length";
            goto fail;
        }
        if ((uint64_t)v > p->max_request) {
            *err = "Protocol error: request larger than the maximum request size";
            goto fail;
        }
        size_t data = (size_t)at + 2, end = data + (size_t)v + 2;
        if (end > p->max_request) {
            *err = "Protocol error: request larger than the maximum request size";
            goto fail;
        }
        if (end > len)
            return 0;
        if (buf[end - 2] != '\r' || buf[end - 1] != '\n') {
            *err = "Protocol error: bulk string not followed by CRLF";
            goto fail;
        }
        if (reserve_args(p, p->have + 1) < 0)
            return -ENOMEM;
        p->off[p->have] = data;
        p->len[p->have] = (size_t)v;
        p->have++;
        p->pos = end;
    }
    if (reserve_argv(p, p->have) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < p->have; i++) {
        p->argv[i].p = buf + p->off[i];
        p->argv[i].n = p->len[i];
    }
    *argc = p->have;
    *argv = p->argv;
    size_t consumed = p->pos;
    parser_reset(p);
    return (ssize_t)consumed;
fail:
    parser_reset(p);
    return -EPROTO;
}

bool kv_arg_is(const kv_arg *a, const char *s)
{
    return a->n == strlen(s) && strncasecmp(a->p, s, a->n) == 0;
}
