/*
 * kvtest.h - helpers shared by dpr-kv's unit suites and fuzz targets
 * (tests/cachestore): comparing and copying keyspaces, and a checkpoint
 * file made of fuzz input. Header-only (static functions).
 */
#ifndef KVTEST_H
#define KVTEST_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "kv_dict.h"

/* Do a and b hold the same keys with the same values? */
static inline int kvtest_same(kv_dict *a, kv_dict *b)
{
    size_t it[2] = {0, 0};
    kv_entry *e = NULL;
    if (kv_dict_size(a) != kv_dict_size(b))
        return 0;
    while ((e = kv_dict_next(a, it, e))) {
        kv_entry *f = kv_dict_find(b, e->data, e->klen);
        if (!f || f->vlen != e->vlen || memcmp(kv_entry_val(f), kv_entry_val(e), e->vlen))
            return 0;
    }
    return 1;
}

/* Sets every key of src in dst: 0 or the first error. */
static inline int kvtest_copy(kv_dict *dst, kv_dict *src)
{
    size_t it[2] = {0, 0};
    kv_entry *e = NULL;
    int r = 0;
    while (r == 0 && (e = kv_dict_next(src, it, e)))
        r = kv_dict_set(dst, e->data, e->klen, kv_entry_val(e), e->vlen, NULL);
    return r;
}

/*
 * Fuzz input as a file: data[0]'s lowest bit says whether the trailing
 * CRC-32 is recomputed (to get past the checksum), the rest is the
 * content, written to an in-memory file whose /proc/self/fd path goes to
 * path. Returns the descriptor (close it), or -1.
 */
static inline int kvtest_fuzz_file(const uint8_t *data, size_t size, char *path, size_t cap)
{
    uint8_t *content;
    int fd;

    if (size < 1)
        return -1;
    int fix_crc = data[0] & 1;
    data++;
    size--;
    content = malloc(size ? size : 1);
    if (!content)
        return -1;
    memcpy(content, data, size);
    if (fix_crc && size >= 4) {
        uint32_t c = (uint32_t)crc32(0L, content, (uInt)(size - 4));
        for (int i = 0; i < 4; i++)
            content[size - 4 + i] = (uint8_t)(c >> (8 * i));
    }
    fd = memfd_create("ckpt", 0);
    if (fd >= 0 && size && write(fd, content, size) != (ssize_t)size) {
        close(fd);
        fd = -1;
    }
    free(content);
    if (fd >= 0)
        snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

#endif
