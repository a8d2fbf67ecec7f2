/*
 * kv_resp.h - RESP2 on the server side: the request parser. (Replies are
 * written with common/resp.h.)
 *
 * Requests are multibulk arrays of bulk strings ("*2\r\n$3\r\nGET\r\n$1\r\na\r\n")
 * or, as in Redis, inline commands (a line of words, "PING\r\n"). The parser
 * does not copy: argument pointers point into the caller's buffer. It keeps
 * its progress inside an incomplete request, so a request that arrives in
 * many pieces is not parsed again from the start each time.
 *
 * Limits: a request (all its bytes on the wire) is at most max_request
 * bytes, and has at most max_args arguments; an inline request's line is at
 * most 64 KiB. Anything else malformed is an error too. After an error the
 * connection must be closed (the stream cannot be resynchronised).
 */
#ifndef KV_RESP_H
#define KV_RESP_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define KV_INLINE_MAX 65536

typedef struct kv_arg {
    const char *p;
    size_t n;
} kv_arg;

typedef struct kv_parser {
    size_t max_request;
    size_t max_args;
    /* progress inside an incomplete multibulk request (offsets from its start) */
    int64_t want;    /* arguments announced, 0: header not parsed yet */
    size_t have;     /* arguments complete */
    size_t pos;      /* offset where the next argument starts */
    size_t *off;     /* offsets of complete arguments' data */
    size_t *len;     /* and their lengths */
    size_t cap;
    kv_arg *argv;    /* filled when a request is complete */
    size_t argv_cap;
    void *alt;       /* state of the comparison parser in cachestore/bench/ */
} kv_parser;

/* Is argument a the word s, in any case (a command or keyword)? */
bool kv_arg_is(const kv_arg *a, const char *s);

void kv_parser_init(kv_parser *p, size_t max_request, size_t max_args);
void kv_parser_free(kv_parser *p);

/*
 * Parses one request from buf[0..len). Returns the bytes the request
 * occupies (> 0; the caller drops them) and sets *argc and *argv (pointers
 * into buf, valid until buf changes); 0 if more bytes are needed (buf must
 * then be passed again, same start, possibly longer); -EPROTO for malformed
 * input with *err set to Redis' error text ("Protocol error: ..."), or
 * -ENOMEM. An empty request ("*0\r\n", an empty line) returns its size with
 * *argc == 0.
 */
ssize_t kv_parse(kv_parser *p, const char *buf, size_t len, size_t *argc, kv_arg **argv,
                 const char **err);

#endif
