/* kv_hash.c - SipHash (Aumasson, Bernstein), c and d rounds as parameters. */
#include "kv_hash.h"

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
           (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
           (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

#define SIPROUND                                                                         \
    do {                                                                                 \
        v0 += v1;                                                                        \
        v1 = rotl(v1, 13);                                                               \
        v1 ^= v0;                                                                        \
        v0 = rotl(v0, 32);                                                               \
        v2 += v3;                                                                        \
        v3 = rotl(v3, 16);                                                               \
        v3 ^= v2;                                                                        \
        v0 += v3;                                                                        \
        v3 = rotl(v3, 21);                                                               \
        v3 ^= v0;                                                                        \
        v2 += v1;                                                                        \
        v1 = rotl(v1, 17);                                                               \
        v1 ^= v2;                                                                        \
        v2 = rotl(v2, 32);                                                               \
    } while (0)

static inline uint64_t siphash(const void *in, size_t len, const uint8_t key[16],
                               int crounds, int drounds)
{
    const uint8_t *p = in, *end = p + (len & ~(size_t)7);
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56, m;

    for (; p != end; p += 8) {
        m = le64(p);
        v3 ^= m;
        for (int i = 0; i < crounds; i++)
            SIPROUND;
        v0 ^= m;
    }
    switch (len & 7) {
    case 7: b |= (uint64_t)p[6] << 48; /* fall through */
    case 6: b |= (uint64_t)p[5] << 40; /* fall through */
    case 5: b |= (uint64_t)p[4] << 32; /* fall through */
    case 4: b |= (uint64_t)p[3] << 24; /* fall through */
    case 3: b |= (uint64_t)p[2] << 16; /* fall through */
    case 2: b |= (uint64_t)p[1] << 8;  /* fall through */
    case 1: b |= (uint64_t)p[0]; break;
    case 0: break;
    }
    v3 ^= b;
    for (int i = 0; i < crounds; i++)
        SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < drounds; i++)
        SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t kv_hash(const void *in, size_t len, const uint8_t key[16])
{
    return siphash(in, len, key, 1, 3);
}

uint64_t kv_siphash24(const void *in, size_t len, const uint8_t key[16])
{
    return siphash(in, len, key, 2, 4);
}
