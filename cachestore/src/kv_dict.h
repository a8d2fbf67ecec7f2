/*
 * kv_dict.h - the keyspace: a chained hash table of binary-safe string keys
 * and values, with incremental rehashing (like Redis' dict).
 *
 * Each key/value pair is ONE allocation: a 16-byte header (chain link and
 * the two lengths) followed by the key bytes and the value bytes. The table
 * doubles when it is full (load factor 1) and halves (in kv_dict_cron) when
 * it is under 1/8 full; the move to the new table happens a few buckets at
 * a time on every operation and in kv_dict_cron, so no single call pauses
 * the server for long. While a copy-on-write snapshot child is alive,
 * resizing is put off (kv_dict_set_resize) unless the table is overloaded
 * 5:1, so pages are not copied just for rehashing.
 *
 * Keys and values are at most KV_DICT_MAX_LEN bytes. Functions return 0 or
 * a negative errno unless said otherwise; on -ENOMEM nothing changed.
 */
#ifndef KV_DICT_H
#define KV_DICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KV_DICT_MAX_LEN 0xffffffffu

typedef struct kv_entry {
    struct kv_entry *next;
    uint32_t klen;
    uint32_t vlen;
    char data[]; /* klen key bytes, then vlen value bytes */
} kv_entry;

static inline char *kv_entry_val(kv_entry *e) { return e->data + e->klen; }

typedef struct kv_table {
    kv_entry **slots;
    size_t size; /* 0 or a power of two */
    size_t used;
} kv_table;

typedef struct kv_dict {
    kv_table t[2];      /* t[1] is in use only while rehashing */
    ssize_t rehash_idx; /* next bucket of t[0] to move; -1 when not rehashing */
    bool resize_ok;     /* false while a snapshot child shares our pages */
    uint8_t seed[16];
    size_t entry_bytes; /* malloc'd bytes of all entries (approximate) */
    struct kv_ckpt_log *log; /* every change is recorded here (kv_ckpt.h), or NULL */
} kv_dict;

/* seed: 16 random bytes (the hash key). No change log. */
void kv_dict_init(kv_dict *d, const uint8_t seed[16]);
/* Records every later change (set, append, delete, add) in log, as change
 * log records (SET, APPEND, DEL) after it succeeded; NULL: none. The
 * server's keyspace records into the open version's log (incremental
 * checkpoints); a log that runs out of memory says so itself
 * (buf.failed). */
static inline void kv_dict_set_log(kv_dict *d, struct kv_ckpt_log *log) { d->log = log; }
void kv_dict_free(kv_dict *d);
/* Moves everything from src into dst (dst's old content is freed; dst keeps
 * its change log, the moved content is not recorded in it). */
void kv_dict_swap(kv_dict *dst, kv_dict *src);

size_t kv_dict_size(const kv_dict *d);
/* Sizes an empty dict's table for n keys (saves rehashing on a bulk load). */
int kv_dict_reserve(kv_dict *d, size_t n);
kv_entry *kv_dict_find(kv_dict *d, const char *key, size_t klen);
/* Sets key to value (replacing any old value). *created (may be NULL) tells
 * whether the key is new. -E2BIG for a key or value above the maximum. */
int kv_dict_set(kv_dict *d, const char *key, size_t klen, const char *val, size_t vlen,
                bool *created);
/* Adds a key known to be absent (restore from a checkpoint): no lookup. */
int kv_dict_add_new(kv_dict *d, const char *key, size_t klen, const char *val, size_t vlen);
/* Appends to key's value (creating it); *newlen gets the new length. */
int kv_dict_append(kv_dict *d, const char *key, size_t klen, const char *val, size_t vlen,
                   size_t *newlen);
/* Removes key: returns 1 if it was there, 0 if not. */
int kv_dict_delete(kv_dict *d, const char *key, size_t klen);

/* Resizing allowed (no snapshot child alive)? */
void kv_dict_set_resize(kv_dict *d, bool ok);
/* Housekeeping from a timer: shrink if sparse, rehash for up to `usec`. */
void kv_dict_cron(kv_dict *d, uint64_t usec);
/* Bytes used by the table arrays and the entries. */
size_t kv_dict_memory(const kv_dict *d);

/* Iteration without modification: size_t it[2] = {0, 0}; kv_entry *e = NULL;
 * while ((e = kv_dict_next(d, it, e))) ... */
kv_entry *kv_dict_next(const kv_dict *d, size_t it[2], kv_entry *prev);

#endif
