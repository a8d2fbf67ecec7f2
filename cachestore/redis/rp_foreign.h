/*
 * rp_foreign.h - dpr-redis recovers from dpr-kv's checkpoints: the switch
 * of a deployment's impl from dpr-kv to dpr-redis (docs/operations.md,
 * "Switching the implementation").
 *
 * dpr-kv's checkpoints (ckpt-<v>.kv, full images and change logs,
 * kv_ckpt.h, kv_chain.h) in the state directory, the current directory,
 * are read with dpr-kv's own loader. Before registering with the finder,
 * rp_foreign_scan lists them, checks their headers and chains, and builds
 * the newest one's keyspace when it is newer than every dpr-redis
 * checkpoint (the version the finder asks for in the common case), so a
 * damaged file fails the start before the domain is disturbed. When the
 * version to restore is a dpr-kv one, rp_foreign_restore writes its keys
 * into the running redis-server (SET: dpr-kv's keys are strings without
 * expiry) and saves that as dpr-redis' own checkpoint of the same version
 * and world-line (SAVE, rename to ckpt-<v>.w<w>.rdb, fsync): from then on
 * it is dpr-redis' (a restart, a rollback to it). rp_foreign_remove deletes
 * dpr-kv's files once recovery succeeded (older ones are covered, newer
 * ones were lost). Functions return 0 or a negative errno with err.
 */
#ifndef RP_FOREIGN_H
#define RP_FOREIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpr/err.h"
#include "kv_chain.h"
#include "kv_dict.h"

typedef struct rp_foreign {
    uint64_t *v;           /* dpr-kv's checkpoint versions, ascending */
    kv_chain_file *files;  /* their headers */
    size_t n;
    kv_dict dict;          /* the newest one's keyspace, when built */
    bool built;
} rp_foreign;

/* Lists, checks, and builds the newest when it is above own_newest (the
 * newest dpr-redis checkpoint, 0: none). -EBADMSG: a damaged file. */
int rp_foreign_scan(rp_foreign *f, uint64_t worker, uint64_t own_newest, dpr_err *err);

/* Index of the newest dpr-kv checkpoint at or below version r; -1: none. */
ssize_t rp_foreign_at_or_below(const rp_foreign *f, uint64_t r);

/* dpr-kv's checkpoint idx into the running redis-server (empty), saved as
 * dpr-redis' checkpoint of its version; *version, *world_line get them. */
int rp_foreign_restore(rp_foreign *f, uint64_t worker, size_t idx, uint64_t *version,
                       uint64_t *world_line, dpr_err *err);

/* Deletes every dpr-kv checkpoint of the directory and fsyncs it. */
int rp_foreign_remove(rp_foreign *f, dpr_err *err);

void rp_foreign_free(rp_foreign *f);

#endif
