/*
 * fuzz_finder_cmd.c - libFuzzer target for the finder's request parser and
 * command execution: bytes go through the RESP request reader, every parsed
 * request runs against a fresh in-memory set of domains (no store; each
 * change is published at once). Checks: no crash or leak, every reply is exactly one
 * well-formed RESP value, and a refused request leaves the state unchanged.
 * The requests share one connection state (DPR.AUTH grants). The owner's
 * C call that gives a worker a new token (dpr_finder_set_token: it moved)
 * has no RESP command; the target runs it for the pseudo-command
 * "FUZZ.SETTOKEN <domain> <worker> <token>", so that fenced reports are
 * reached too.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "dpr/domains.h"
#include "dpr/finder.h"
#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_one_reply(const char *p, size_t n)
{
    redisReader *r = redisReaderCreate();
    void *reply = NULL, *extra = NULL;

    if (!r)
        abort();
    if (redisReaderFeed(r, p, n) != REDIS_OK || redisReaderGetReply(r, &reply) != REDIS_OK ||
        !reply) {
        fprintf(stderr, "malformed reply: %.*s\n", (int)n, p);
        abort();
    }
    if (redisReaderGetReply(r, &extra) != REDIS_OK || extra) {
        fprintf(stderr, "more than one reply: %.*s\n", (int)n, p);
        abort();
    }
    freeReplyObject(reply);
    redisReaderFree(r);
}

/* A refusal of the request itself (as opposed to a core verdict). */
static int is_refusal(const char *p, size_t n)
{
    static const char *const prefixes[] = {
        "-ERR invalid ", "-ERR wrong number", "-ERR unknown command", "-ERR dependency",
        "-ERR unknown domain",
    };
    static const char owner[] = "is registered by its owner"; /* a wrong token */

    if (n >= 8 && memcmp(p, "-FENCED ", 8) == 0)
        return 1; /* a superseded owner */

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t k = strlen(prefixes[i]);
        if (n >= k && memcmp(p, prefixes[i], k) == 0)
            return 1;
    }
    return n > 0 && p[0] == '-' && memmem(p, n, owner, sizeof(owner) - 1) != NULL;
}

/* FUZZ.SETTOKEN <domain> <worker> <token>: 1 when req is one (run). */
static int fuzz_set_token(dpr_domains *ds, const dpr_request *req)
{
    char domain[DPR_DOMAIN_MAX + 1], num[24];
    dpr_finder *f;
    uint64_t worker;

    if (req->argc != 4 || req->argvlen[0] != 13 || memcmp(req->argv[0], "FUZZ.SETTOKEN", 13))
        return 0;
    if (req->argvlen[1] > DPR_DOMAIN_MAX || req->argvlen[2] >= sizeof(num))
        return 1;
    memcpy(domain, req->argv[1], req->argvlen[1]);
    domain[req->argvlen[1]] = '\0';
    memcpy(num, req->argv[2], req->argvlen[2]);
    num[req->argvlen[2]] = '\0';
    f = dpr_domains_find(ds, domain);
    if (!f)
        return 1;
    worker = strtoull(num, NULL, 10);
    int rc = dpr_finder_set_token(f, worker, req->argv[3], req->argvlen[3]);
    if (rc < 0 && rc != -ENOENT && rc != -EINVAL)
        abort();
    if (rc == 0 && dpr_finder_token_check(f, worker, req->argv[3], req->argvlen[3]) != 0)
        abort(); /* the record holds the new token */
    return 1;
}

static void publish(dpr_domains *ds)
{
    dpr_domains_state st;

    if (!dpr_domains_dirty(ds))
        return;
    if (dpr_domains_get_state(ds, &st) < 0)
        abort();
    if (dpr_domains_publish(ds, &st) < 0)
        abort();
    dpr_domains_state_free(&st);
    if (dpr_domains_dirty(ds))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dpr_reqreader *rr = NULL;
    dpr_cmd_conn *conn = NULL;
    dpr_domains *ds = NULL;
    dpr_buf out = DPR_BUF_INIT;
    dpr_request req;
    unsigned flags;
    int rc;

    if (dpr_reqreader_new(DPR_CMD_MAX_ARGS, 64 * 1024, &rr) < 0 || dpr_domains_new(&ds) < 0 ||
        dpr_cmd_conn_new(&conn) < 0)
        abort();
    /* feed in two pieces so that partial requests are exercised too */
    for (int part = 0; part < 2; part++) {
        size_t half = size / 2;
        const char *p = (const char *)data + (part ? half : 0);
        size_t n = part ? size - half : half;

        if (dpr_reqreader_feed(rr, p, n) < 0)
            break;
        while ((rc = dpr_reqreader_next(rr, &req)) == 1) {
            if (fuzz_set_token(ds, &req)) {
                publish(ds);
                continue;
            }
            out.len = 0;
            if (dpr_cmd_execute(ds, conn, req.argc, req.argv, req.argvlen, &out, &flags) < 0)
                abort(); /* only -ENOMEM, which the fuzzer does not cause */
            if (dpr_cmd_conn_grants(conn) > DPR_CMD_MAX_GRANTS)
                abort();
            check_one_reply(out.data, out.len);
            if (is_refusal(out.data, out.len) && dpr_domains_dirty(ds)) {
                fprintf(stderr, "refused request changed the state: %.*s\n", (int)out.len,
                        out.data);
                abort();
            }
            publish(ds);
        }
        if (rc < 0) {
            out.len = 0;
            if (dpr_cmd_error(&out, dpr_reqreader_error(rr)) < 0)
                abort();
            check_one_reply(out.data, out.len);
            break;
        }
    }
    dpr_buf_free(&out);
    dpr_cmd_conn_free(conn);
    dpr_domains_free(ds);
    dpr_reqreader_free(rr);
    return 0;
}
