/*
 * kv_recover.h - start-up: take the state directory, check every checkpoint,
 * register with the finder, restore the checkpoint it asks for.
 *
 *  1. Create and lock DIR (flock on DIR/dpr-kv.lock). A checkpoint process
 *     of a killed dpr-kv inherits the lock, so a restart waits (up to 10 s)
 *     until it is gone and can never see it finish a file later.
 *  2. Remove leftover ckpt-*.kv.tmp files; list the checkpoints. None, and
 *     --seed-dir given (the worker moved here from another node): copy
 *     every checkpoint of the seed directory into DIR (kv_ckpt_seed:
 *     temporary file, fsync, rename, fsync DIR) and list again; a seed
 *     directory that does not exist or holds none: start as without it.
 *  3. Check every checkpoint (size, header, CRC, every record's bounds; that
 *     every change log follows the file before it, kv_chain.h; the newest
 *     version is built into the keyspace on the way, from its full image and
 *     change logs, the files before that chain are only read): any of them
 *     may be the one the finder asks for, and a shard
 *     that cannot recover must fail *before* it registers, since every
 *     DPR.WORKER.ADD of a known worker starts a new world-line and rolls
 *     every other shard back.
 *  4. If a checkpoint records that this worker had versions committed
 *     (kv_ckpt_meta.committed), ask the finder's DPR.SYNC (without
 *     registering): a finder whose cut for this worker is lower has lost or
 *     replaced its state. Refuse, without registering (unless --reset).
 *  5. DPR.WORKER.ADD -> (world-line W, version R).
 *  6. R > 0: restore the newest checkpoint <= R, through its chain (none: error, the data the
 *     cluster counts on is gone). R == 0 with checkpoints in DIR: if W is
 *     newer than the newest checkpoint's world-line (and none records a
 *     commit), the finder has seen this worker and rolled it back to
 *     nothing (delete them); otherwise the finder does not know this data (a
 *     new or reset finder): refuse to start unless --reset, never wipe data
 *     silently.
 *  7. Delete checkpoints above R (lost versions), fsync DIR.
 *
 * dpr-redis' checkpoints (ckpt-<v>.w<w>.rdb, kv_rdb.h) in DIR are the
 * other implementation's: a deployment switched from dpr-redis to dpr-kv
 * (docs/operations.md, "Switching the implementation"). DIR/dpr-redis.lock
 * is taken too (no dpr-redis on the same directory). They count as
 * checkpoints of their versions: the newest of both kinds is checked in
 * step 3 (an RDB newer than every dpr-kv file is read into the keyspace
 * there, so a key dpr-kv cannot hold is refused before registering:
 * -ENOTSUP, exit 78); when the version to restore is an RDB, it is written
 * as a full image ckpt-<v>.kv (fsynced) and is dpr-kv's from then on. Every
 * RDB file is deleted once recovery succeeded: older ones are covered by
 * the restored version, newer ones are lost versions.
 * A damaged checkpoint is a clear error, never an empty store.
 */
#ifndef KV_RECOVER_H
#define KV_RECOVER_H

#include <stddef.h>
#include <stdint.h>

#include "dpr/err.h"
#include "kv_chain.h"
#include "kv_config.h"
#include "kv_dict.h"

typedef struct kv_recovery {
    int lock_fd;
    uint64_t world_line;
    uint64_t restored;      /* version the store now holds (R) */
    uint64_t *ckpts;        /* checkpoints left on disk, ascending */
    uint64_t *committed;    /* what each of them records (kv_ckpt_meta.committed) */
    kv_chain_file *files;   /* their headers (kind, base), same order */
    size_t nckpts;
    struct kv_rdb_file *rdb; /* dpr-redis' checkpoints (kv_rdb.h), ascending */
    size_t nrdb;
    bool dict_rdb;          /* dict holds the newest RDB (step 3), not a dpr-kv file */
    int redis_lock_fd;      /* DIR/dpr-redis.lock */
    uint64_t converted;     /* the version written from an RDB as a full image (0: none) */
    uint64_t committed_max; /* the highest of those */
    bool registered;        /* the finder was asked DPR.WORKER.ADD */
    kv_dict dict;
} kv_recovery;

/* 0, or a negative errno with err saying why (one line, for the log and
 * systemd's STATUS=); logs progress and warnings itself. */
int kv_recover(const kv_config *cfg, kv_recovery *out, dpr_err *err);
void kv_recovery_free(kv_recovery *r);

#endif
