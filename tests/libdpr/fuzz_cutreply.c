/*
 * fuzz_cutreply.c - libFuzzer target for the cuts in the finder's answers
 * (libdpr/src/cutreply.h): DPR.PREFIX's answer and DPR.SYNC's third
 * element, as the client reads them.
 *
 * The input is RESP as a finder would send it; hiredis' reader with the
 * client's bound on array elements (replyreader.h) turns it into replies.
 * Each reply is read as a flat cut, and so is the third element of a reply
 * of three. Checks: only documented
 * return codes; a cut taken came from an array of an even number of
 * non-negative integers and holds, for each worker named, the highest
 * version named for it (0: absent), and no other worker.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdlib.h>

#include "cutreply.h"
#include "fuzz_check.h"
#include "replyreader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_flat(const redisReply *r)
{
    dpr_depset cut;
    size_t named = 0;
    int rc;

    dpr_depset_init(&cut);
    rc = dpr_cutreply_flat(r, &cut);
    REQUIRE(rc == 0 || rc == -EPROTO || rc == -ENOMEM);
    if (rc == 0) {
        REQUIRE(r->type == REDIS_REPLY_ARRAY && r->elements % 2 == 0);
        for (size_t i = 0; i < r->elements; i += 2) {
            const redisReply *w = r->element[i], *v = r->element[i + 1];
            uint64_t max = 0;
            bool first = true;
            REQUIRE(w->type == REDIS_REPLY_INTEGER && w->integer >= 0);
            REQUIRE(v->type == REDIS_REPLY_INTEGER && v->integer >= 0);
            for (size_t k = 0; k < r->elements; k += 2) {
                if (r->element[k]->integer != w->integer)
                    continue;
                first = first && k >= i;
                if ((uint64_t)r->element[k + 1]->integer > max)
                    max = (uint64_t)r->element[k + 1]->integer;
            }
            REQUIRE(dpr_depset_get(&cut, (uint64_t)w->integer) == max);
            if (first && max > 0)
                named++;
        }
        REQUIRE(dpr_depset_count(&cut) == named);
    }
    dpr_depset_free(&cut);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    redisReader *rd = dpr_replyreader_new(DPR_REPLYREADER_MAX_ELEMENTS); /* the client's */
    void *reply = NULL;

    if (!rd)
        return 0;
    if (redisReaderFeed(rd, (const char *)data, size) != REDIS_OK)
        goto out;
    while (redisReaderGetReply(rd, &reply) == REDIS_OK && reply) {
        const redisReply *r = reply;
        uint64_t n;
        check_flat(r);
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
            (void)dpr_cutreply_u64(r->element[0], &n);
            check_flat(r->element[2]);
        }
        freeReplyObject(reply);
        reply = NULL;
        dpr_replyreader_reply_done(rd);
    }
out:
    dpr_replyreader_free(rd);
    return 0;
}
