/*
 * fuzz_endpoints.c - libFuzzer target for the parser of DPR.CLUSTER.ENDPOINTS
 * answers (libdpr/src/endpoints.h).
 *
 * The input is RESP as an agent would send it; hiredis' reader (the one the
 * client uses) turns it into replies, each parsed. Checks: only documented
 * return codes, a one-line message on failure; on success at least one
 * shard, every known endpoint a non-empty host with a port, distinct worker
 * ids, and dpr_endpoints_missing agreeing with the nil endpoints.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "endpoints.h"
#include "fuzz_check.h"
#include "replyreader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_one(const redisReply *r)
{
    dpr_endpoints e;
    dpr_err err = DPR_ERR_INIT;
    int rc = dpr_endpoints_parse(r, &e, &err);

    if (rc < 0) {
        REQUIRE(rc == -ENOENT || rc == -EAGAIN || rc == -EREMOTEIO || rc == -EPROTO ||
                rc == -ENOMEM);
        REQUIRE(strchr(err.msg, '\n') == NULL);
        REQUIRE(err.code == rc);
    } else {
        size_t nil = 0;
        REQUIRE(rc == 0 && e.n >= 1 && e.n <= DPR_ENDPOINTS_MAX_SHARDS && e.shard);
        for (size_t i = 0; i < e.n; i++) {
            if (!e.shard[i].host) {
                nil++;
                REQUIRE(e.shard[i].port == 0);
            } else {
                REQUIRE(e.shard[i].host[0] != '\0' && e.shard[i].port != 0);
            }
            for (size_t k = 0; k < i && e.n <= 64; k++)
                REQUIRE(e.shard[k].worker != e.shard[i].worker);
        }
        REQUIRE(dpr_endpoints_missing(&e, NULL, 0) == nil);
    }
    dpr_endpoints_free(&e);
    REQUIRE(e.shard == NULL && e.n == 0);
}

/* hiredis 0.14 allocates an array of any announced size at once: inputs
 * announcing more than 2^20 elements (or bytes) are left out, a limit of
 * the harness, not of the parser. */
static bool sizes_bounded(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '*' && data[i] != '$' && data[i] != '%' && data[i] != '~' &&
            data[i] != '>')
            continue;
        size_t digits = 0;
        while (i + 1 < size && data[i + 1] >= '0' && data[i + 1] <= '9') {
            i++;
            if (++digits > 6)
                return false;
        }
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!sizes_bounded(data, size))
        return 0;
    redisReader *rd = dpr_replyreader_new(DPR_REPLYREADER_MAX_ELEMENTS); /* the client's */
    REQUIRE(rd != NULL);
    redisReaderFeed(rd, (const char *)data, size);
    for (int i = 0; i < 16; i++) {
        void *reply = NULL;
        if (redisReaderGetReply(rd, &reply) != REDIS_OK || !reply)
            break;
        check_one(reply);
        freeReplyObject(reply);
        dpr_replyreader_reply_done(rd);
    }
    dpr_replyreader_free(rd);
    return 0;
}
