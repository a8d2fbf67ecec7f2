/*
 * route.h - which shard a key lives on. The same function exists in Python
 * (python-dpr/dpr/route.py); tests/lib/vectors/route.txt holds shared vectors.
 *
 *   1. Hash tag: if the key contains '{' followed later by '}' with at least
 *      one byte between them, only the bytes between the first '{' and the
 *      first '}' after it are hashed (as in Redis Cluster), so keys such as
 *      "user:{42}:name" and "user:{42}:mail" land on the same shard.
 *   2. h = FNV-1a 64 over those bytes (offset 14695981039346656037,
 *      prime 1099511628211).
 *   3. shard = jump consistent hash of h over nshards (Lamping & Veach,
 *      2014): growing from n to n+1 shards moves only ~1/(n+1) of the keys.
 */
#ifndef DPR_ROUTE_H
#define DPR_ROUTE_H

#include "dpr/export.h"

#include <stddef.h>
#include <stdint.h>

/* FNV-1a 64 of the key's routing bytes (after hash-tag extraction). */
DPR_EXPORT uint64_t dpr_route_hash(const void *key, size_t len);
/* Shard index in [0, nshards) for a hash; nshards must be >= 1 (0 -> 0). */
DPR_EXPORT uint32_t dpr_route_jump(uint64_t hash, uint32_t nshards);
/* dpr_route_jump(dpr_route_hash(key, len), nshards). */
DPR_EXPORT uint32_t dpr_route_shard(const void *key, size_t len, uint32_t nshards);

#endif
