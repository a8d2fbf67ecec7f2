/*
 * fuzz_rp_reply.c - dpr-redis' scan of redis-server's replies
 * (cachestore/redis/rp_reply.c).
 *
 * The input is scanned as a stream of replies, as the proxy reads its Redis
 * connection: each complete reply is dropped and the scan goes on after it.
 * Checks: no crash, no read outside the buffer (ASan), a reply's size
 * never exceeds what was given, and a prefix of a complete reply is
 * "incomplete" (0) or malformed, never a complete reply of another size.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    size_t pos = 0;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    while (pos < size) {
        ssize_t n = rp_reply_len(buf + pos, size - pos);
        if (n <= 0)
            break;
        if ((size_t)n > size - pos)
            abort();
        /* every shorter prefix is incomplete or malformed */
        for (size_t cut = (size_t)n - 1; cut > 0 && cut + 8 >= (size_t)n; cut--) {
            ssize_t m = rp_reply_len(buf + pos, cut);
            if (m > 0)
                abort();
        }
        pos += (size_t)n;
    }
    free(buf);
    return 0;
}
