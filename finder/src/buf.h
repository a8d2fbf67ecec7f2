/*
 * buf.h - a growable byte buffer (reply and file assembly).
 *
 * Appends return 0 or -ENOMEM and leave the buffer unchanged on failure.
 */
#ifndef DPR_FINDER_BUF_H
#define DPR_FINDER_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct dpr_buf {
    char *data;
    size_t len;
    size_t cap;
} dpr_buf;

#define DPR_BUF_INIT { NULL, 0, 0 }

void dpr_buf_init(dpr_buf *b);
void dpr_buf_free(dpr_buf *b);
/* Makes room for at least extra more bytes. */
int dpr_buf_reserve(dpr_buf *b, size_t extra);
int dpr_buf_append(dpr_buf *b, const void *data, size_t len);
int dpr_buf_append_str(dpr_buf *b, const char *s);
/* Appends the decimal text of v. */
int dpr_buf_append_u64(dpr_buf *b, uint64_t v);
/* Appends v as 8 little-endian bytes. */
int dpr_buf_append_le64(dpr_buf *b, uint64_t v);

#endif
