/*
 * fuzz_kv_ckpt.c - dpr-kv's checkpoint file reader (cachestore/src/kv_ckpt.c).
 *
 * The input becomes the content of a checkpoint file (an in-memory file,
 * read through /proc/self/fd). When the input's first byte is odd, the
 * trailing CRC is recomputed so the fuzzer gets past the checksum into the
 * record parsing. Checks: no crash, no out-of-bounds read, no leak; a load
 * either succeeds or fails with a message, a change log (format 3) is never
 * loaded as a full image, and kv_ckpt_verify (the same checks without
 * building a keyspace) gives the same answer as kv_ckpt_apply. Change logs
 * are fuzzed on their own by fuzz_kv_delta.c.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "kv_ckpt.h"
#include "kv_dict.h"
#include "kvtest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    dpr_err err = DPR_ERR_INIT;
    int fd = kvtest_fuzz_file(data, size, path, sizeof(path));
    if (fd < 0)
        return 0;

    kv_ckpt_meta meta;
    uint64_t worker = 0, version = 0;
    bool delta = false;
    if (kv_ckpt_read_meta(path, &meta, &err) == 0) {
        worker = meta.worker;
        version = meta.version;
        delta = meta.delta;
    } else if (!err.msg[0]) {
        abort(); /* failures carry a message */
    }
    static const uint8_t seed[16] = { 1 };
    kv_dict d;
    kv_dict_init(&d, seed);
    err.msg[0] = 0;
    int r = kv_ckpt_load(path, worker, version, &d, &meta, &err);
    if (r < 0 && (!err.msg[0] || err.code != r))
        abort();
    /* a change log is never taken for a full image */
    if (delta && r != -EBADMSG)
        abort();
    /* the check without loading (start-up) decides exactly as the load
     * (kv_ckpt_apply: either kind, into an empty keyspace) */
    kv_dict_free(&d);
    kv_dict_init(&d, seed);
    r = kv_ckpt_apply(path, worker, version, &d, &meta, &err);
    if (r < 0 && (!err.msg[0] || err.code != r))
        abort();
    if (kv_ckpt_verify(path, worker, version, &meta, &err) != r)
        abort();
    kv_dict_free(&d);
    close(fd);
    return 0;
}
