/*
 * fuzz_agent_respread.c - RESP replies as a peer sends them to the agent
 * (respread.h): any bytes, fed in two pieces, give whole replies, 0 (more
 * needed), or -EPROTO / -EMSGSIZE with a reason, never a crash; after an
 * error nothing more; the bound (1 KiB here) holds for every reply.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_check.h"
#include "respread.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bytes a reply takes in RESP at least (its elements' lines). */
static size_t min_size(const redisReply *r)
{
    size_t n = 3;

    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++)
            n += min_size(r->element[i]);
    else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
             r->type == REDIS_REPLY_ERROR)
        n += r->len;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    agent_respread rd;
    redisReply *rep;
    dpr_err err = DPR_ERR_INIT;
    size_t half = size / 2;
    int rc = 0;

    if (agent_respread_init(&rd, 1024) < 0)
        return 0;
    for (int part = 0; part < 2 && rc >= 0; part++) {
        rc = agent_respread_feed(&rd, data + (part ? half : 0), part ? size - half : half);
        if (rc < 0)
            break;
        while ((rc = agent_respread_next(&rd, &rep, &err)) == 1) {
            REQUIRE(rep && min_size(rep) <= 1024 + 3);
            freeReplyObject(rep);
        }
        if (rc < 0) {
            REQUIRE((rc == -EPROTO || rc == -EMSGSIZE || rc == -ENOMEM) && err.msg[0]);
            REQUIRE(agent_respread_next(&rd, &rep, NULL) < 0 && !rep);
        }
    }
    agent_respread_free(&rd);
    return 0;
}
