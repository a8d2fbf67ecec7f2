/* buf.c - growable byte buffer (see buf.h). */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void dpr_buf_init(dpr_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void dpr_buf_free(dpr_buf *b)
{
    free(b->data);
    dpr_buf_init(b);
}

int dpr_buf_reserve(dpr_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > SIZE_MAX - b->len)
        return -ENOMEM;
    need = b->len + extra;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int dpr_buf_append(dpr_buf *b, const void *data, size_t len)
{
    int rc;

    if (len == 0)
        return 0;
    rc = dpr_buf_reserve(b, len);
    if (rc < 0)
        return rc;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

int dpr_buf_append_str(dpr_buf *b, const char *s)
{
    return dpr_buf_append(b, s, strlen(s));
}

int dpr_buf_append_u64(dpr_buf *b, uint64_t v)
{
    char tmp[20];
    size_t n = sizeof(tmp);

    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return dpr_buf_append(b, tmp + n, sizeof(tmp) - n);
}

int dpr_buf_append_le64(dpr_buf *b, uint64_t v)
{
    unsigned char tmp[8];

    for (int i = 0; i < 8; i++)
        tmp[i] = (unsigned char)(v >> (8 * i));
    return dpr_buf_append(b, tmp, sizeof(tmp));
}
