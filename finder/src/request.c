/*
 * request.c - RESP request reader on top of hiredis (see request.h).
 *
 * hiredis calls our object functions as it parses; the root array and its
 * elements all map to the reader itself (one request is built at a time),
 * the strings are copied into one growing buffer. Returning NULL from an
 * object function makes hiredis stop with an "out of memory" error; we note
 * the real reason first. Between parses we peek at the unparsed tail (the
 * reader's buf/pos/len fields are public) to refuse a huge announced bulk
 * or array length before its bytes arrive.
 */
#include "request.h"

#include <errno.h>
#include <hiredis/hiredis.h> /* HIREDIS_MAJOR */
#include <hiredis/read.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/num.h"
#include "dpr/err.h"

/*
 * Tested with hiredis 0.14 (Debian 12). hiredis 1.x renamed the task stack
 * and widened the array count; these keep the file building there.
 */
#if HIREDIS_MAJOR >= 1
typedef size_t array_count;
#define TASK_TYPE(rd) ((rd)->task[(rd)->ridx]->type)
#else
typedef int array_count;
#define TASK_TYPE(rd) ((rd)->rstack[(rd)->ridx].type)
#endif

struct dpr_reqreader {
    redisReader *rd;
    size_t max_args;
    size_t max_bytes;
    int announced;     /* elements of the request being built */
    int argc;          /* elements received so far */
    size_t args_cap;
    size_t *off;       /* offset of each argument in data */
    size_t *argvlen;
    char **argv;       /* filled when a request completes */
    dpr_buf data;
    size_t req_bytes;  /* encoded size of the parts received so far */
    dpr_err err;       /* our own verdict (code 0 if none); the first one is kept */
};

static void set_error(dpr_reqreader *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(dpr_reqreader *r, int err, const char *fmt, ...)
{
    va_list ap;

    if (r->err.code)
        return; /* keep the first reason */
    r->err.code = err;
    va_start(ap, fmt);
    vsnprintf(r->err.msg, sizeof(r->err.msg), fmt, ap);
    va_end(ap);
}

/* Bytes of "<type><n>\r\n", the header of a bulk string or an array. */
static size_t header_size(uint64_t n)
{
    char digits[DPR_FMT_U64_MAX];

    return 1 + dpr_fmt_u64(digits, n) + 2;
}

/* Bytes of "$<len>\r\n<data>\r\n". */
static size_t bulk_size(size_t len)
{
    return header_size(len) + len + 2;
}

static void reset_request(dpr_reqreader *r)
{
    r->announced = 0;
    r->argc = 0;
    r->data.len = 0;
    r->req_bytes = 0;
}

static dpr_reqreader *owner(const redisReadTask *task)
{
    return task->privdata;
}

static void *create_array(const redisReadTask *task, array_count elements)
{
    dpr_reqreader *r = owner(task);

    if (task->parent) {
        set_error(r, -EPROTO, "Protocol error: nested arrays are not allowed in a request");
        return NULL;
    }
    if (elements < 0) {
        set_error(r, -EPROTO, "Protocol error: invalid multibulk length");
        return NULL;
    }
    if ((size_t)elements > r->max_args) {
        set_error(r, -E2BIG, "Protocol error: too many arguments (%zu, at most %zu)",
                  (size_t)elements, r->max_args);
        return NULL;
    }
    reset_request(r);
    r->announced = (int)elements;
    r->req_bytes = header_size((uint64_t)elements);
    return r;
}

static int grow_args(dpr_reqreader *r, size_t need)
{
    size_t cap = r->args_cap ? r->args_cap : 8;
    size_t *off, *lens;
    char **argv;

    while (cap < need)
        cap *= 2;
    off = realloc(r->off, cap * sizeof(*off));
    if (!off)
        return -ENOMEM;
    r->off = off;
    lens = realloc(r->argvlen, cap * sizeof(*lens));
    if (!lens)
        return -ENOMEM;
    r->argvlen = lens;
    argv = realloc(r->argv, cap * sizeof(*argv));
    if (!argv)
        return -ENOMEM;
    r->argv = argv;
    r->args_cap = cap;
    return 0;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    dpr_reqreader *r = owner(task);
    size_t idx;

    if (!task->parent) {
        set_error(r, -EPROTO, "Protocol error: expected an array of bulk strings");
        return NULL;
    }
    if (task->type != REDIS_REPLY_STRING) {
        set_error(r, -EPROTO, "Protocol error: request arguments must be bulk strings");
        return NULL;
    }
    /* hiredis has checked that the two bytes after the data are buffered
     * but not that they are CRLF: be strict about the framing */
    if (str[len] != '\r' || str[len + 1] != '\n') {
        set_error(r, -EPROTO, "Protocol error: bulk string not terminated by CRLF");
        return NULL;
    }
    idx = (size_t)task->idx;
    if (idx != (size_t)r->argc || r->argc >= r->announced) {
        set_error(r, -EPROTO, "Protocol error: unexpected argument");
        return NULL;
    }
    if (len > r->max_bytes || bulk_size(len) > r->max_bytes - r->req_bytes) {
        set_error(r, -E2BIG, "Protocol error: request larger than %zu bytes", r->max_bytes);
        return NULL;
    }
    if (idx >= r->args_cap && grow_args(r, idx + 1) < 0)
        goto oom;
    if (dpr_buf_reserve(&r->data, len + 1) < 0)
        goto oom;
    r->off[idx] = r->data.len;
    r->argvlen[idx] = len;
    dpr_buf_append(&r->data, str, len);
    dpr_buf_append(&r->data, "", 1);
    r->argc++;
    r->req_bytes += bulk_size(len);
    return r;
oom:
    set_error(r, -ENOMEM, "out of memory");
    return NULL;
}

static void *create_integer(const redisReadTask *task, long long value)
{
    (void)value;
    set_error(owner(task), -EPROTO, task->parent
              ? "Protocol error: request arguments must be bulk strings"
              : "Protocol error: expected an array of bulk strings");
    return NULL;
}

static void *create_nil(const redisReadTask *task)
{
    set_error(owner(task), -EPROTO, task->parent
              ? "Protocol error: null bulk strings are not allowed in a request"
              : "Protocol error: expected an array of bulk strings");
    return NULL;
}

static void free_object(void *obj)
{
    if (obj)
        reset_request(obj);
}

static redisReplyObjectFunctions request_functions = {
    .createString = create_string,
    .createArray = create_array,
    .createInteger = create_integer,
    .createNil = create_nil,
    .freeObject = free_object,
};

int dpr_reqreader_new(size_t max_args, size_t max_bytes, dpr_reqreader **out)
{
    dpr_reqreader *r = calloc(1, sizeof(*r));

    if (!r)
        return -ENOMEM;
    if (max_args > INT_MAX)
        max_args = INT_MAX;
    r->max_args = max_args;
    r->max_bytes = max_bytes;
    dpr_buf_init(&r->data);
    r->rd = redisReaderCreateWithFunctions(&request_functions);
    if (!r->rd) {
        free(r);
        return -ENOMEM;
    }
    r->rd->privdata = r;
    /* hiredis copies privdata into each task; keep its idle buffer small */
    r->rd->maxbuf = 16 * 1024;
    *out = r;
    return 0;
}

void dpr_reqreader_free(dpr_reqreader *r)
{
    if (!r)
        return;
    redisReaderFree(r->rd);
    dpr_buf_free(&r->data);
    free(r->off);
    free(r->argvlen);
    free(r->argv);
    free(r);
}

static int fail_from_reader(dpr_reqreader *r)
{
    if (!r->err.code) {
        if (r->rd->err == REDIS_ERR_OOM)
            set_error(r, -ENOMEM, "out of memory");
        else
            set_error(r, -EPROTO, "%s", r->rd->errstr);
    }
    return r->err.code;
}

int dpr_reqreader_feed(dpr_reqreader *r, const char *data, size_t len)
{
    if (r->err.code)
        return r->err.code;
    if (redisReaderFeed(r->rd, data, len) != REDIS_OK)
        return fail_from_reader(r);
    return 0;
}

/* Parses the decimal length line at p (digits, optional '-', "\r\n").
 * 1 with *v set, 0 if the line is not complete, -1 if malformed. */
static int peek_length(const char *p, size_t n, long long *v)
{
    size_t i = 0;
    int neg = 0;
    unsigned long long acc = 0;

    if (i < n && p[i] == '-') {
        neg = 1;
        i++;
    }
    for (; i < n && i < 24; i++) {
        if (p[i] == '\r') {
            if (i + 1 >= n)
                return 0;
            if (p[i + 1] != '\n' || i == (size_t)neg)
                return -1;
            *v = neg ? -(long long)acc : (long long)acc;
            return 1;
        }
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (acc > (unsigned long long)LLONG_MAX / 10)
            return -1;
        acc = acc * 10 + (unsigned long long)(p[i] - '0');
    }
    return i >= 24 ? -1 : 0;
}

/*
 * Refuses an announced length that can never fit, looking at the item
 * hiredis has not finished parsing. hiredis 0.14 consumes an item's type
 * byte first (recording it in the current task) and leaves pos there until
 * the whole item is buffered; or the tail starts with the type byte.
 */
static int check_announced(dpr_reqreader *r, size_t have)
{
    const redisReader *rd = r->rd;
    const char *p = rd->buf ? rd->buf + rd->pos : NULL;
    size_t n = rd->len - rd->pos;
    int type = -1;
    long long v = 0;
    int rc;

    if (n == 0)
        return 0;
    if (rd->ridx >= 0 && TASK_TYPE(rd) >= 0) {
        type = TASK_TYPE(rd);
    } else if (p[0] == '$' || p[0] == '*') {
        type = p[0] == '$' ? REDIS_REPLY_STRING : REDIS_REPLY_ARRAY;
        p++;
        n--;
    }
    if (type != REDIS_REPLY_STRING && type != REDIS_REPLY_ARRAY)
        return 0;
    rc = peek_length(p, n, &v);
    if (rc < 0) {
        set_error(r, -EPROTO, "Protocol error: invalid %s length",
                  type == REDIS_REPLY_STRING ? "bulk" : "multibulk");
        return r->err.code;
    }
    if (rc == 0)
        return 0;
    if (type == REDIS_REPLY_STRING && v > 0 &&
        ((unsigned long long)v > r->max_bytes ||
         bulk_size((size_t)v) > r->max_bytes - have)) {
        set_error(r, -E2BIG, "Protocol error: bulk string of %lld bytes exceeds the "
                  "request limit of %zu bytes", v, r->max_bytes);
        return r->err.code;
    }
    if (type == REDIS_REPLY_ARRAY && v > 0 && (unsigned long long)v > r->max_args) {
        set_error(r, -E2BIG, "Protocol error: too many arguments (%lld, at most %zu)", v,
                  r->max_args);
        return r->err.code;
    }
    return 0;
}

/* Bytes of the request in progress (parsed parts only). */
static size_t in_progress(const dpr_reqreader *r)
{
    return r->rd->ridx >= 0 ? r->req_bytes : 0;
}

/* hiredis wants more input: everything unparsed belongs to one request. */
static int check_pending(dpr_reqreader *r)
{
    size_t n = r->rd->len - r->rd->pos;
    size_t have = in_progress(r);

    if (n > r->max_bytes || have > r->max_bytes - n) {
        set_error(r, -E2BIG, "Protocol error: request larger than %zu bytes", r->max_bytes);
        return r->err.code;
    }
    return check_announced(r, have);
}

int dpr_reqreader_next(dpr_reqreader *r, dpr_request *req)
{
    void *obj = NULL;

    if (r->err.code)
        return r->err.code;
    for (;;) {
        /* Refuse an oversized count or length before hiredis parses it. */
        if (check_announced(r, in_progress(r)) < 0)
            return r->err.code;
        if (redisReaderGetReply(r->rd, &obj) != REDIS_OK)
            return fail_from_reader(r);
        if (!obj)
            return check_pending(r);
        if (r->argc != r->announced) {
            /* an element type we have no function for was skipped */
            set_error(r, -EPROTO, "Protocol error: request arguments must be bulk strings");
            return r->err.code;
        }
        if (r->argc == 0) {
            reset_request(r);
            continue; /* "*0\r\n": nothing to do, like Redis */
        }
        for (int i = 0; i < r->argc; i++)
            r->argv[i] = r->data.data + r->off[i];
        req->argc = r->argc;
        req->argv = r->argv;
        req->argvlen = r->argvlen;
        r->req_bytes = 0;
        return 1;
    }
}

const char *dpr_reqreader_error(const dpr_reqreader *r)
{
    return r->err.code ? r->err.msg : "no error";
}
