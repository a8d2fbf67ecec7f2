/* buf.c - see common/buf.h. */
#include "common/buf.h"

#include <errno.h>
#include <stdlib.h>


void dpr_buf_init(dpr_buf *b)
{
    *b = (dpr_buf)DPR_BUF_INIT;
}

void dpr_buf_free(dpr_buf *b)
{
    free(b->data);
    dpr_buf_init(b);
}

void dpr_buf_reset(dpr_buf *b)
{
    b->len = 0;
    b->failed = false;
}

int dpr_buf_reserve(dpr_buf *b, size_t extra)
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
    b->failed = true;
    return -ENOMEM;
}

int dpr_buf_append_slow(dpr_buf *b, const void *p, size_t n)
{
    int r = dpr_buf_reserve(b, n);

    if (r < 0)
        return r;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int dpr_buf_append_str(dpr_buf *b, const char *s)
{
    return dpr_buf_append(b, s, strlen(s));
}

int dpr_buf_append_le64(dpr_buf *b, uint64_t v)
{
    unsigned char tmp[8];

    for (int i = 0; i < 8; i++)
        tmp[i] = (unsigned char)(v >> (8 * i));
    return dpr_buf_append(b, tmp, sizeof(tmp));
}

void dpr_buf_consume(dpr_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

char *dpr_buf_steal(dpr_buf *b, size_t *len)
{
    char *p = b->data;

    if (len)
        *len = b->len;
    dpr_buf_init(b);
    return p;
}
