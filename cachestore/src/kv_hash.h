/*
 * kv_hash.h - SipHash-1-3 (as Redis uses for its keyspace): a keyed hash,
 * so clients cannot choose keys that collide (the key is random per process).
 */
#ifndef KV_HASH_H
#define KV_HASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-1-3: the keyspace hash. */
uint64_t kv_hash(const void *in, size_t len, const uint8_t key[16]);
/* SipHash-2-4, the reference variant (for checking against published vectors). */
uint64_t kv_siphash24(const void *in, size_t len, const uint8_t key[16]);

#endif
