/*
 * kv_recover.h - start-up: take the state directory, register with the
 * finder, restore the checkpoint it asks for.
 *
 *  1. Create and lock DIR (flock on DIR/dpr-kv.lock). A checkpoint process
 *     of a killed dpr-kv inherits the lock, so a restart waits (up to 10 s)
 *     until it is gone and can never see it finish a file later.
 *  2. Remove leftover ckpt-*.kv.tmp files; list the checkpoints.
 *  3. DPR.WORKER.ADD -> (world-line W, version R).
 *  4. R > 0: restore the newest checkpoint <= R (none: error, the data the
 *     cluster counts on is gone). R == 0 with checkpoints in DIR: if W is
 *     newer than the newest checkpoint's world-line, the finder has seen
 *     this worker and rolled it back to nothing (delete them); otherwise
 *     the finder does not know this data (a new or reset finder): refuse to
 *     start unless --reset, never wipe data silently.
 *  5. Delete checkpoints above R (lost versions), fsync DIR.
 * A damaged checkpoint is a clear error, never an empty store.
 */
#ifndef KV_RECOVER_H
#define KV_RECOVER_H

#include <stddef.h>
#include <stdint.h>

#include "kv_config.h"
#include "kv_dict.h"

typedef struct kv_recovery {
    int lock_fd;
    uint64_t world_line;
    uint64_t restored;      /* version the store now holds (R) */
    uint64_t *ckpts;        /* checkpoints left on disk, ascending */
    size_t nckpts;
    kv_dict dict;
} kv_recovery;

/* Logs what it does and why it fails; 0 or a negative errno. */
int kv_recover(const kv_config *cfg, kv_recovery *out);
void kv_recovery_free(kv_recovery *r);

#endif
