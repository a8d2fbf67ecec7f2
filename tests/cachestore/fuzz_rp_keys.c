/*
 * fuzz_rp_keys.c - dpr-redis' reading of redis-server's COMMAND reply and
 * its key positions (cachestore/redis/rp_keys.c).
 *
 * The input is a RESP reply (the command table), read with hiredis as the
 * proxy does, then the rest of the input: one command, its arguments
 * separated by newlines. Checks: no crash, no read outside the buffers
 * (ASan); a key index found is an argument of the command.
 */
#include <assert.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rp_keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool owned_odd(void *ud, const char *key, size_t n)
{
    (void)ud;
    return n % 2 == 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    redisReader *r = redisReaderCreate();
    void *reply = NULL;
    rp_keys t;
    dpr_err err = DPR_ERR_INIT;
    size_t used;

    if (!r)
        return 0;
    if (redisReaderFeed(r, (const char *)data, size) != REDIS_OK ||
        redisReaderGetReply(r, &reply) != REDIS_OK || !reply) {
        redisReaderFree(r);
        return 0;
    }
    used = size - (r->len - r->pos); /* what the reply took */
    redisReaderFree(r);
    if (rp_keys_load(&t, reply, &err) == 0) {
        kv_arg av[64];
        size_t argc = 0, start = used;
        for (size_t i = used; i <= size && argc < 64; i++) {
            if (i == size || data[i] == '\n') {
                av[argc++] = (kv_arg){(const char *)data + start, i - start};
                start = i + 1;
            }
        }
        const rp_cmdinfo *ci = rp_keys_lookup(&t, argc, av);
        if (ci) {
            ssize_t k = rp_keys_first_foreign(ci, argc, av, owned_odd, NULL);
            assert(k == -1 || (k >= 1 && (size_t)k < argc));
        }
        rp_keys_free(&t);
    }
    freeReplyObject(reply);
    return 0;
}
