/*
 * kv_migrate.h - pushing the keys a shard gives up to their new owners.
 *
 * kv_migrate_start() forks, like a checkpoint (kv_snap.h): the child sees
 * the keyspace frozen at the fork and sends every key that this shard does
 * not own under the pending layout to the shard that does, as
 *
 *     DPR.IMPORT <epoch> <key> <value> [<key> <value>]...
 *
 * (at most KV_MIGRATE_BATCH_KEYS pairs or about KV_MIGRATE_BATCH_BYTES per
 * command, at most KV_MIGRATE_PIPELINE commands unanswered per target, so
 * memory stays bounded), over a blocking hiredis connection per target:
 * plain, or with a TLS client context (kv_migrate_start's tls: a shard that
 * serves TLS only, its peers too) common/tls.h's engine between the socket
 * and hiredis' reader, the shard's certificate shown to the target. It exits 0 when every target answered every command with an
 * integer; otherwise it stops at the first error. Counters and the error
 * text come back through a shared mapping. The parent reaps the child from
 * its SIGCHLD handler (kv_migrate_reap). Children die with the parent.
 *
 * The keys stay on this shard: they are dropped only when the new layout
 * is committed (kv_resize.c), after the targets' copies are committed.
 */
#ifndef KV_MIGRATE_H
#define KV_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/tls.h"
#include "dpr/err.h"
#include "kv_dict.h"
#include "kv_layout.h"

#define KV_MIGRATE_BATCH_KEYS 4096
#define KV_MIGRATE_BATCH_BYTES (1u << 20)
#define KV_MIGRATE_PIPELINE 16
#define KV_MIGRATE_TIMEOUT_MS 30000

enum kv_migrate_state { KV_MIGRATE_NONE, KV_MIGRATE_RUNNING, KV_MIGRATE_DONE, KV_MIGRATE_FAILED };

/* Written by the child, read by the parent after it exited. */
typedef struct kv_migrate_shared {
    uint64_t keys, bytes; /* sent and acknowledged */
    dpr_err error;
} kv_migrate_shared;

typedef struct kv_migrate {
    enum kv_migrate_state state;
    uint64_t epoch;    /* of the pending layout it moves keys to */
    pid_t pid;
    uint64_t keys, bytes;
    dpr_err error;     /* state FAILED */
    uint64_t start_ms, end_ms; /* monotonic */
    kv_migrate_shared *shared;
} kv_migrate;

void kv_migrate_init(kv_migrate *m);
/* Kills a running child and unmaps. */
void kv_migrate_free(kv_migrate *m);
/* Starts the child for `pending` (this shard's index in it, or none: every
 * key leaves). -EBUSY while one runs; fork/mmap errors as -errno. */
int kv_migrate_start(kv_migrate *m, const kv_dict *d, const kv_layout *pending,
                     dpr_tls_ctx *tls, dpr_err *err);
/* Reaps the child if it exited: true when it finished just now. */
bool kv_migrate_reap(kv_migrate *m);
/* Kills a running child (the resize was aborted or the layout changed). */
void kv_migrate_kill(kv_migrate *m);

#endif
