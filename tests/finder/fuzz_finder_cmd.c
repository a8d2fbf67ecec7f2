/*
 * fuzz_finder_cmd.c - libFuzzer target for the finder's request parser and
 * command execution: bytes go through the RESP request reader, every parsed
 * request runs against a fresh in-memory set of domains (no store; each
 * change is published at once). Checks: no crash or leak, every reply is exactly one
 * well-formed RESP value, and a refused request leaves the state unchanged.
 */
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

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t k = strlen(prefixes[i]);
        if (n >= k && memcmp(p, prefixes[i], k) == 0)
            return 1;
    }
    return n > 0 && p[0] == '-' && memmem(p, n, owner, sizeof(owner) - 1) != NULL;
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
    dpr_domains *ds = NULL;
    dpr_buf out = DPR_BUF_INIT;
    dpr_request req;
    unsigned flags;
    int rc;

    if (dpr_reqreader_new(DPR_CMD_MAX_ARGS, 64 * 1024, &rr) < 0 || dpr_domains_new(&ds) < 0)
        abort();
    /* feed in two pieces so that partial requests are exercised too */
    for (int part = 0; part < 2; part++) {
        size_t half = size / 2;
        const char *p = (const char *)data + (part ? half : 0);
        size_t n = part ? size - half : half;

        if (dpr_reqreader_feed(rr, p, n) < 0)
            break;
        while ((rc = dpr_reqreader_next(rr, &req)) == 1) {
            out.len = 0;
            if (dpr_cmd_execute(ds, req.argc, req.argv, req.argvlen, &out, &flags) < 0)
                abort(); /* only -ENOMEM, which the fuzzer does not cause */
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
    dpr_domains_free(ds);
    dpr_reqreader_free(rr);
    return 0;
}
