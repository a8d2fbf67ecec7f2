/*
 * bytes.h - reading little-endian numbers out of a byte image, and the
 * CRC-32 (zlib's) that checks one; header-only (users link -lz). Writing
 * is dpr_buf's (common/buf.h).
 */
#ifndef COMMON_BYTES_H
#define COMMON_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

static inline uint64_t dpr_get_le64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint32_t dpr_get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* The CRC-32 crc of earlier bytes, continued over p[0..len), any length
 * (zlib takes uInt chunks). */
static inline uint32_t dpr_crc32_update(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    uLong c = crc;

    while (len > 0) {
        uInt chunk = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return (uint32_t)c;
}

/* CRC-32 of p[0..len) (of nothing: 0). */
static inline uint32_t dpr_crc32(const void *data, size_t len)
{
    return dpr_crc32_update((uint32_t)crc32(0L, Z_NULL, 0), data, len);
}

#endif
