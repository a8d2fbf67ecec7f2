/*
 * kv_buf.h - a growable byte buffer with a sticky out-of-memory flag.
 *
 * Reply writers append many small pieces; instead of checking each append
 * the caller checks kv_buf_failed() once after a command (and closes the
 * connection: the reply stream is broken). Every other function returns 0 or
 * a negative errno.
 */
#ifndef KV_BUF_H
#define KV_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct kv_buf {
    char *data;
    size_t len, cap;
    bool oom; /* an append failed: content is incomplete */
} kv_buf;

void kv_buf_init(kv_buf *b);
void kv_buf_free(kv_buf *b);
/* Makes room for `extra` more bytes (0 or -ENOMEM; sets oom on failure). */
int kv_buf_reserve(kv_buf *b, size_t extra);
void kv_buf_append_slow(kv_buf *b, const void *p, size_t n);
/* Drops the first n bytes. */
void kv_buf_consume(kv_buf *b, size_t n);
static inline bool kv_buf_failed(const kv_buf *b) { return b->oom; }

static inline void kv_buf_append(kv_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len >= n) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
    } else {
        kv_buf_append_slow(b, p, n);
    }
}

static inline void kv_buf_append_str(kv_buf *b, const char *s)
{
    kv_buf_append(b, s, strlen(s));
}

/* Writes v in decimal at p (room for 20 digits + sign); returns the length. */
size_t kv_fmt_i64(char *p, int64_t v);
size_t kv_fmt_u64(char *p, uint64_t v);

/* Parses a decimal integer by Redis' string2ll rules: optional '-', no
 * leading zeros, no '+', no spaces, within long long. 0 or -1. */
int kv_parse_ll(const char *s, size_t n, long long *out);

#endif
