/*
 * kv_rdb.h - dpr-kv reads dpr-redis' checkpoints: the switch of a
 * deployment's impl from dpr-redis to dpr-kv (docs/operations.md,
 * "Switching the implementation").
 *
 * dpr-redis' checkpoint of version v, sealed in world-line w, is Redis'
 * RDB file `ckpt-<v>.w<w>.rdb` in the state directory (docs/dpr-redis.md).
 * RDB is Redis' own format, so dpr-kv does not parse it: kv_rdb_load starts
 * a private redis-server on it (kv_redis.h: no TCP port, its socket in a
 * private temporary directory of mode 0700 under $TMPDIR or /tmp, the RDB
 * reached through a symbolic link there, so redis-server can never write
 * the checkpoint), reads every key with SCAN, TYPE, PTTL and GET over one
 * connection whose replies are bounded (kv_redis_connect), and stops and
 * reaps it and removes the directory on every path.
 *
 * dpr-kv holds strings without expiry, so a key of another type (list,
 * hash, set, zset, stream ...) or with a time to live is refused: -ENOTSUP,
 * err naming the key, its type or TTL and the file; nothing is guessed.
 * Functions return 0 or a negative errno with err (may be NULL) saying why.
 */
#ifndef KV_RDB_H
#define KV_RDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "dpr/err.h"
#include "kv_dict.h"

#define KV_RDB_FMT "ckpt-%llu.w%llu.rdb"
/* the elements of one reply from the private redis-server (a SCAN page) */
#define KV_RDB_MAX_ELEMENTS ((size_t)1 << 20)

typedef struct kv_rdb_file {
    uint64_t version;
    uint64_t world_line;
} kv_rdb_file;

/* Is name a dpr-redis checkpoint ("ckpt-<v>.w<w>.rdb")? Its numbers. */
bool kv_rdb_parse_name(const char *name, uint64_t *version, uint64_t *world_line);

/* The dpr-redis checkpoints of dir, ascending by version (*out malloc'd,
 * free it; NULL when *n == 0). */
int kv_rdb_list(const char *dir, kv_rdb_file **out, size_t *n);

/* "<dir>/ckpt-<v>.w<w>.rdb"; -ENAMETOOLONG when it does not fit. */
int kv_rdb_path(char *buf, size_t cap, const char *dir, const kv_rdb_file *f);

/* Loads every key of the RDB file at path into d (empty). On failure d may
 * hold part of the data (free it). */
int kv_rdb_load(const char *path, kv_dict *d, dpr_err *err);

/*
 * The pure parts (kv_rdb_load's reading; tests/cachestore/fuzz_kv_rdb.c):
 *
 * kv_rdb_scan_page: a SCAN reply, [cursor, [key ...]]: the next cursor
 * (decimal, into cursor[cap]) and the keys array (every element a bulk
 * string); -EPROTO otherwise.
 *
 * kv_rdb_take: one key's replies to TYPE, PTTL and GET: a string without
 * expiry goes into d (0); a key gone meanwhile (TYPE none, PTTL -2, GET
 * nil) is skipped (1); another type or a TTL is -ENOTSUP; a reply of
 * another shape -EPROTO; -ENOMEM, -E2BIG from the dict. `file` names the
 * checkpoint in messages.
 */
int kv_rdb_scan_page(const redisReply *r, char *cursor, size_t cap, const redisReply **keys,
                     dpr_err *err);
int kv_rdb_take(kv_dict *d, const char *file, const redisReply *key, const redisReply *type,
                const redisReply *pttl, const redisReply *get, dpr_err *err);

#endif
