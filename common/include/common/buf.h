/*
 * common/buf.h - the growable byte buffer (replies, requests, file images).
 *
 * Every append returns 0 or -ENOMEM and leaves the content unchanged when it
 * fails; a failure also sets the sticky `failed` flag, so a writer that
 * appends many small pieces (a RESP reply, say) may ignore the individual
 * results and check dpr_buf_failed() once at the end: the content is then
 * incomplete and must not be sent.
 *
 *     dpr_buf b = DPR_BUF_INIT;
 *     dpr_resp_bulk(&b, "v", 1);
 *     dpr_resp_int(&b, 42);
 *     if (dpr_buf_failed(&b)) ... close the connection ...
 *     dpr_buf_free(&b);
 *
 * The fast path of dpr_buf_append is inline: dpr-kv writes every reply
 * through it.
 */
#ifndef COMMON_BUF_H
#define COMMON_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct dpr_buf {
    char *data;
    size_t len, cap;
    bool failed; /* an append ran out of memory: the content is incomplete */
} dpr_buf;

#define DPR_BUF_INIT { NULL, 0, 0, false }

void dpr_buf_init(dpr_buf *b);
void dpr_buf_free(dpr_buf *b);
/* Empties the buffer and clears `failed`; keeps the memory. */
void dpr_buf_reset(dpr_buf *b);
/* Makes room for at least `extra` more bytes. */
int dpr_buf_reserve(dpr_buf *b, size_t extra);
int dpr_buf_append_slow(dpr_buf *b, const void *p, size_t n);
int dpr_buf_append_str(dpr_buf *b, const char *s);
/* v as 8 little-endian bytes. */
int dpr_buf_append_le64(dpr_buf *b, uint64_t v);
/* Drops the first n bytes (all of them when n >= len). */
void dpr_buf_consume(dpr_buf *b, size_t n);
/* Hands the memory to the caller (free() it) and empties the buffer. */
char *dpr_buf_steal(dpr_buf *b, size_t *len);

static inline bool dpr_buf_failed(const dpr_buf *b)
{
    return b->failed;
}

static inline int dpr_buf_append(dpr_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len >= n) {
        if (n)
            memcpy(b->data + b->len, p, n);
        b->len += n;
        return 0;
    }
    return dpr_buf_append_slow(b, p, n);
}

#endif
