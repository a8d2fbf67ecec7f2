/* kv_buf.c - see kv_buf.h. */
#include "kv_buf.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

void kv_buf_init(kv_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

void kv_buf_free(kv_buf *b)
{
    free(b->data);
    kv_buf_init(b);
}

int kv_buf_reserve(kv_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (b->cap - b->len >= extra)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        goto fail;
    need = b->len + extra;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    p = realloc(b->data, cap);
    if (!p)
        goto fail;
    b->data = p;
    b->cap = cap;
    return 0;
fail:
    b->oom = true;
    return -ENOMEM;
}

void kv_buf_append_slow(kv_buf *b, const void *p, size_t n)
{
    if (kv_buf_reserve(b, n) < 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void kv_buf_consume(kv_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

size_t kv_fmt_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

size_t kv_fmt_i64(char *p, int64_t v)
{
    if (v < 0) {
        p[0] = '-';
        return 1 + kv_fmt_u64(p + 1, (uint64_t)0 - (uint64_t)v);
    }
    return kv_fmt_u64(p, (uint64_t)v);
}

/* Redis' string2ll rules: optional '-', no leading zeros, no '+', no spaces. */
int kv_parse_ll(const char *s, size_t n, long long *out)
{
    unsigned long long v = 0;
    size_t i = 0;
    int neg = 0;

    if (n == 0 || n > 20)
        return -1;
    if (s[0] == '-') {
        neg = 1;
        i = 1;
        if (n == 1)
            return -1;
    }
    if (s[i] == '0')
        return (n == 1) ? (*out = 0, 0) : -1;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return -1;
        *out = (long long)(0 - v);
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return -1;
        *out = (long long)v;
    }
    return 0;
}
