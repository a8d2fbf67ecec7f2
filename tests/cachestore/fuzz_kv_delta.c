/*
 * fuzz_kv_delta.c - dpr-kv's change log reader (kv_ckpt.c: kv_ckpt_apply on
 * a format-3 file) and the chain checks of kv_chain.c.
 *
 * The input becomes the content of a checkpoint file (an in-memory file,
 * read through /proc/self/fd). When the input's first byte is odd, the
 * trailing CRC is recomputed so the fuzzer gets past the checksum into the
 * records. The file is applied to a keyspace holding a few keys (the base).
 * Checks: no crash, no out-of-bounds read, no leak; a failure carries a
 * message, and a damaged change log (-EBADMSG) leaves the base untouched
 * (its records are all checked before the first is applied); kv_ckpt_verify decides as the
 * apply does; kv_chain_check accepts the file alone exactly when it starts
 * a chain.
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

#include "kv_chain.h"
#include "kv_ckpt.h"
#include "kv_dict.h"
#include "kvtest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void base_keys(kv_dict *d)
{
    static const char *keys[] = {"a", "b", "key1", ""};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (kv_dict_set(d, keys[i], strlen(keys[i]), "base", 4, NULL) < 0)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t seed[16] = {2};
    char path[64];
    dpr_err err = DPR_ERR_INIT;
    kv_ckpt_meta meta;
    uint64_t worker = 0, version = 0;
    kv_dict d;
    int fd, r;

    fd = kvtest_fuzz_file(data, size, path, sizeof(path));
    if (fd < 0)
        return 0;
    memset(&meta, 0, sizeof(meta));
    if (kv_ckpt_read_meta(path, &meta, &err) == 0) {
        worker = meta.worker;
        version = meta.version;
        /* the header alone as a directory of one file */
        kv_chain_file f = {meta.version, meta.base, meta.delta, meta.committed,
                           meta.world_line};
        if ((kv_chain_check(&f, 1, "fuzz", &err) == 0) != kv_chain_starts(&f))
            abort();
        if (kv_chain_prunable(&f, 1, meta.version) != 0)
            abort();
    } else if (!err.msg[0]) {
        abort(); /* failures carry a message */
    }
    kv_dict_init(&d, seed);
    if (meta.delta)
        base_keys(&d);
    size_t before = kv_dict_size(&d);
    bool delta = meta.delta;
    err.msg[0] = 0;
    r = kv_ckpt_apply(path, worker, version, &d, &meta, &err);
    if (r < 0 && (!err.msg[0] || err.code != r))
        abort();
    if (r == -EBADMSG && delta && kv_dict_size(&d) != before)
        abort(); /* a damaged change log changes nothing (a full image loads as it reads) */
    if (kv_ckpt_verify(path, worker, version, &meta, &err) != (r == -ENOMEM ? 0 : r))
        abort();
    kv_dict_free(&d);
    close(fd);
    return 0;
}
