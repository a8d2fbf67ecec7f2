/*
 * request.h - incremental reader of RESP requests (arrays of bulk strings),
 * built on hiredis' reader with our own object functions so that we control
 * allocation and limits.
 *
 * Limits: an array with more than max_args elements, a request whose RESP
 * encoding exceeds max_bytes (counted while it arrives, so a huge bulk
 * length is refused before its bytes are buffered), nested arrays, and
 * anything but bulk strings inside the array are protocol errors. After a
 * protocol error the reader is dead: reply with the error and close.
 */
#ifndef DPR_FINDER_REQUEST_H
#define DPR_FINDER_REQUEST_H

#include <stddef.h>

typedef struct dpr_reqreader dpr_reqreader;

/* One parsed request; valid until the next call on its reader. Every
 * argv[i] is NUL-terminated (and may contain NUL bytes: use argvlen). */
typedef struct dpr_request {
    int argc;
    char **argv;
    size_t *argvlen;
} dpr_request;

int dpr_reqreader_new(size_t max_args, size_t max_bytes, dpr_reqreader **out);
void dpr_reqreader_free(dpr_reqreader *r);

/* Buffers more input. 0, -ENOMEM, or -EPROTO when the reader is dead. */
int dpr_reqreader_feed(dpr_reqreader *r, const char *data, size_t len);

/*
 * 1: *req holds the next request; 0: more input needed; negative: the
 * stream is broken (-EPROTO malformed, -E2BIG over a limit, -ENOMEM), see
 * dpr_reqreader_error() for a one-line message fit for a RESP error.
 * Empty arrays ("*0") are skipped.
 */
int dpr_reqreader_next(dpr_reqreader *r, dpr_request *req);
const char *dpr_reqreader_error(const dpr_reqreader *r);

#endif
