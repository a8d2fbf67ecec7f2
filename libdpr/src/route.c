/* route.c - key -> shard (see route.h). */
#include "dpr/route.h"

#include <string.h>

/* The bytes that decide the shard: the hash tag if there is one. */
static void routing_bytes(const unsigned char *k, size_t len, const unsigned char **out,
                          size_t *outlen)
{
    const unsigned char *open = memchr(k, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - k) - 1;
        const unsigned char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) {
            *out = open + 1;
            *outlen = (size_t)(close - open - 1);
            return;
        }
    }
    *out = k;
    *outlen = len;
}

uint64_t dpr_route_hash(const void *key, size_t len)
{
    const unsigned char *p;
    size_t n;
    uint64_t h = 14695981039346656037ULL;
    routing_bytes(key, len, &p, &n);
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

uint32_t dpr_route_jump(uint64_t hash, uint32_t nshards)
{
    int64_t b = -1, j = 0;
    while (j < (int64_t)nshards) {
        b = j;
        hash = hash * 2862933555777941757ULL + 1;
        j = (int64_t)((double)(b + 1) *
                      ((double)(1LL << 31) / (double)((hash >> 33) + 1)));
    }
    return b < 0 ? 0 : (uint32_t)b;
}

uint32_t dpr_route_shard(const void *key, size_t len, uint32_t nshards)
{
    return dpr_route_jump(dpr_route_hash(key, len), nshards);
}
