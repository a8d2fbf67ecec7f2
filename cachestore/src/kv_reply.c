/* kv_reply.c - RESP reply writers (see kv_resp.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kv_resp.h"

void kv_reply_raw(kv_buf *b, const char *s)
{
    kv_buf_append_str(b, s);
}

void kv_reply_status(kv_buf *b, const char *s)
{
    kv_buf_append(b, "+", 1);
    kv_buf_append_str(b, s);
    kv_buf_append(b, "\r\n", 2);
}

void kv_reply_error(kv_buf *b, const char *msg)
{
    size_t n = strlen(msg);
    if (kv_buf_reserve(b, n + 3) < 0)
        return;
    char *o = b->data + b->len;
    *o++ = '-';
    for (size_t i = 0; i < n; i++)
        *o++ = (msg[i] == '\r' || msg[i] == '\n') ? ' ' : msg[i];
    *o++ = '\r';
    *o++ = '\n';
    b->len += n + 3;
}

void kv_reply_errorf(kv_buf *b, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kv_reply_error(b, msg);
}

static void reply_prefixed_int(kv_buf *b, char prefix, int64_t v)
{
    if (kv_buf_reserve(b, 24) < 0)
        return;
    char *o = b->data + b->len;
    o[0] = prefix;
    size_t n = 1 + kv_fmt_i64(o + 1, v);
    o[n++] = '\r';
    o[n++] = '\n';
    b->len += n;
}

void kv_reply_int(kv_buf *b, int64_t v)
{
    reply_prefixed_int(b, ':', v);
}

void kv_reply_bulk(kv_buf *b, const char *p, size_t n)
{
    if (kv_buf_reserve(b, n + 26) < 0)
        return;
    reply_prefixed_int(b, '$', (int64_t)n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len++] = '\r';
    b->data[b->len++] = '\n';
}

void kv_reply_nil(kv_buf *b)
{
    kv_buf_append(b, "$-1\r\n", 5);
}

void kv_reply_array(kv_buf *b, size_t n)
{
    reply_prefixed_int(b, '*', (int64_t)n);
}
