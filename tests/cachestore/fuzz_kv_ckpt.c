/*
 * fuzz_kv_ckpt.c - dpr-kv's checkpoint file reader (cachestore/src/kv_ckpt.c).
 *
 * The input becomes the content of a checkpoint file (an in-memory file,
 * read through /proc/self/fd). When the input's first byte is odd, the
 * trailing CRC is recomputed so the fuzzer gets past the checksum into the
 * record parsing. Checks: no crash, no out-of-bounds read, no leak; a load
 * either succeeds or fails with a message, and kv_ckpt_verify (the same
 * checks without building a keyspace) gives the same answer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "kv_ckpt.h"
#include "kv_dict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int fix_crc = data[0] & 1;
    data++;
    size--;
    uint8_t *content = malloc(size ? size : 1);
    if (!content)
        return 0;
    memcpy(content, data, size);
    if (fix_crc && size >= 4) {
        uint32_t c = (uint32_t)crc32(0L, content, (uInt)(size - 4));
        for (int i = 0; i < 4; i++)
            content[size - 4 + i] = (uint8_t)(c >> (8 * i));
    }
    int fd = memfd_create("ckpt", 0);
    if (fd < 0 || (size && write(fd, content, size) != (ssize_t)size)) {
        if (fd >= 0)
            close(fd);
        free(content);
        return 0;
    }
    char path[64];
    dpr_err err = DPR_ERR_INIT;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

    kv_ckpt_meta meta;
    uint64_t worker = 0, version = 0;
    if (kv_ckpt_read_meta(path, &meta, &err) == 0) {
        worker = meta.worker;
        version = meta.version;
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
    /* the check without loading (start-up) decides exactly as the load */
    if (kv_ckpt_verify(path, worker, version, &meta, &err) != r)
        abort();
    kv_dict_free(&d);
    close(fd);
    free(content);
    return 0;
}
