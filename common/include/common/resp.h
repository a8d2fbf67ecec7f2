/*
 * common/resp.h - writing RESP2 (the Redis protocol) into a dpr_buf.
 *
 * Replies for servers (dpr-kv, the finder) and commands for clients (an
 * array of bulk strings). Writers return nothing: a failed allocation sets
 * the buffer's sticky flag, checked once with dpr_buf_failed() (buf.h).
 * Reading RESP is hiredis' job (its reader), or dpr-kv's own parser where it
 * was measured to matter (docs/dpr-kv.md).
 */
#ifndef COMMON_RESP_H
#define COMMON_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* +text\r\n (text must not hold CR or LF) */
void dpr_resp_status(dpr_buf *b, const char *text);
/* -msg\r\n; CR and LF in msg become spaces */
void dpr_resp_error(dpr_buf *b, const char *msg);
void dpr_resp_errorf(dpr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* :v\r\n */
void dpr_resp_int(dpr_buf *b, int64_t v);
/* :v\r\n for an unsigned value (versions and ids go up to 2^64-1) */
void dpr_resp_uint(dpr_buf *b, uint64_t v);
/* $n\r\n<bytes>\r\n */
void dpr_resp_bulk(dpr_buf *b, const void *p, size_t n);
void dpr_resp_bulk_str(dpr_buf *b, const char *s);
/* $n\r\n<decimal v>\r\n */
void dpr_resp_bulk_u64(dpr_buf *b, uint64_t v);
/* $-1\r\n */
void dpr_resp_nil(dpr_buf *b);
/* *n\r\n (then n elements) */
void dpr_resp_array(dpr_buf *b, size_t n);

/* One line of an INFO text (Redis' "key:value" lines, sent as a bulk
 * string): the formatted text, cut at 511 bytes, then \r\n. */
void dpr_resp_info_line(dpr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Bytes of a command in RESP (an array of argc bulk strings). */
size_t dpr_resp_command_size(int argc, const size_t *argvlen);
/* Appends a command; argvlen NULL means strlen of each argument. With
 * dpr_resp_command_size() bytes of room reserved (dpr_buf_reserve) it does
 * not reallocate, so it cannot fail. */
void dpr_resp_command(dpr_buf *b, int argc, const char *const *argv, const size_t *argvlen);

/* The value of `field` in INFO text ("field:value" lines, CRLF or LF):
 * a pointer to it and its length in *len, or NULL when absent. */
const char *dpr_info_field(const char *text, const char *field, size_t *len);

#endif
