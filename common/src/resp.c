/* resp.c - see common/resp.h. */
#include "common/resp.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/num.h"

/* "<type><v>\r\n" with v signed */
static void put_header(dpr_buf *b, char type, int64_t v)
{
    char *o;
    size_t n;

    if (dpr_buf_reserve(b, 1 + DPR_FMT_I64_MAX + 2) < 0)
        return;
    o = b->data + b->len;
    o[0] = type;
    n = 1 + dpr_fmt_i64(o + 1, v);
    o[n++] = '\r';
    o[n++] = '\n';
    b->len += n;
}

void dpr_resp_status(dpr_buf *b, const char *text)
{
    size_t n = strlen(text);

    if (dpr_buf_reserve(b, n + 3) < 0)
        return;
    dpr_buf_append(b, "+", 1);
    dpr_buf_append(b, text, n);
    dpr_buf_append(b, "\r\n", 2);
}

void dpr_resp_error(dpr_buf *b, const char *msg)
{
    size_t n = strlen(msg);
    char *o;

    if (dpr_buf_reserve(b, n + 3) < 0)
        return;
    o = b->data + b->len;
    *o++ = '-';
    for (size_t i = 0; i < n; i++)
        *o++ = (msg[i] == '\r' || msg[i] == '\n') ? ' ' : msg[i];
    *o++ = '\r';
    *o++ = '\n';
    b->len += n + 3;
}

void dpr_resp_errorf(dpr_buf *b, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    dpr_resp_error(b, msg);
}

void dpr_resp_int(dpr_buf *b, int64_t v)
{
    put_header(b, ':', v);
}

void dpr_resp_uint(dpr_buf *b, uint64_t v)
{
    char *o;
    size_t n;

    if (dpr_buf_reserve(b, 1 + DPR_FMT_U64_MAX + 2) < 0)
        return;
    o = b->data + b->len;
    o[0] = ':';
    n = 1 + dpr_fmt_u64(o + 1, v);
    o[n++] = '\r';
    o[n++] = '\n';
    b->len += n;
}

void dpr_resp_bulk(dpr_buf *b, const void *p, size_t n)
{
    if (n > INT64_MAX || dpr_buf_reserve(b, n + 1 + DPR_FMT_I64_MAX + 4) < 0) {
        b->failed = true;
        return;
    }
    put_header(b, '$', (int64_t)n);
    dpr_buf_append(b, p, n);
    dpr_buf_append(b, "\r\n", 2);
}

void dpr_resp_bulk_str(dpr_buf *b, const char *s)
{
    dpr_resp_bulk(b, s, strlen(s));
}

void dpr_resp_bulk_u64(dpr_buf *b, uint64_t v)
{
    char tmp[DPR_FMT_U64_MAX];

    dpr_resp_bulk(b, tmp, dpr_fmt_u64(tmp, v));
}

void dpr_resp_nil(dpr_buf *b)
{
    dpr_buf_append(b, "$-1\r\n", 5);
}

void dpr_resp_array(dpr_buf *b, size_t n)
{
    put_header(b, '*', (int64_t)n);
}

static size_t digits(size_t v)
{
    size_t n = 1;

    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

size_t dpr_resp_command_size(int argc, const size_t *argvlen)
{
    size_t n = 1 + digits((size_t)argc) + 2;

    for (int i = 0; i < argc; i++)
        n += 1 + digits(argvlen[i]) + 2 + argvlen[i] + 2;
    return n;
}

/* Makes room for exactly n more bytes (no reallocation when they are there). */
static inline int room(dpr_buf *b, size_t n)
{
    return b->cap - b->len >= n ? 0 : dpr_buf_reserve(b, n);
}

/* "<type><v>\r\n" (v has nd digits) into room already there. Clients write
 * one per argument: inline, in place, filled from the right. */
static inline void put_len_header(dpr_buf *b, char type, size_t v, size_t nd)
{
    char *o = b->data + b->len;
    char *p = o + 1 + nd;

    o[0] = type;
    p[0] = '\r';
    p[1] = '\n';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    b->len += 1 + nd + 2;
}

void dpr_resp_command(dpr_buf *b, int argc, const char *const *argv, const size_t *argvlen)
{
    size_t nd;

    assert(argc >= 0);
    /* every piece asks for exactly the room dpr_resp_command_size counts */
    nd = digits((size_t)argc);
    if (room(b, 1 + nd + 2) < 0)
        return;
    put_len_header(b, '*', (size_t)argc, nd);
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        char *o;

        if (n > INT64_MAX) {
            b->failed = true;
            return;
        }
        nd = digits(n);
        if (room(b, 1 + nd + 2 + n + 2) < 0)
            return;
        put_len_header(b, '$', n, nd);
        o = b->data + b->len;
        if (n)
            memcpy(o, argv[i], n);
        o[n] = '\r';
        o[n + 1] = '\n';
        b->len += n + 2;
    }
}

const char *dpr_info_field(const char *text, const char *field, size_t *len)
{
    size_t flen = strlen(field);

    for (const char *p = text; p && *p; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (strncmp(p, field, flen) == 0 && p[flen] == ':') {
            *len = strcspn(p + flen + 1, "\r\n");
            return p + flen + 1;
        }
    }
    return NULL;
}

void dpr_resp_info_line(dpr_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    dpr_buf_append(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
    dpr_buf_append(b, "\r\n", 2);
}
