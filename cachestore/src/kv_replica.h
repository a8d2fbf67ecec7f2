/*
 * kv_replica.h - in a cluster of agents, dpr-kv's checkpoints are copied to
 * other nodes before they count as durable (the agent's replica.h).
 *
 * With --replica-socket, every completed checkpoint version goes through
 * kv_replica_ship: the version is asked for, in order, on the agent's unix
 * socket (DPR.REPLICA.SHIP <instance> <token> <version> <path>), and its
 * report to the finder (held by kv_finder_hold) is released once the agent
 * answers +OK: every replica node has the file. An error answer (a full
 * disk on a replica node, a node that cannot be reached) is logged once,
 * shown in INFO (dpr_replication_status, dpr_replication_last_error) and
 * asked again after a second: nothing newer is reported meanwhile, so
 * commits wait, and nothing is lost. A lost connection to the agent is
 * made again (every 500 ms) and the version asked again.
 *
 * A second kv_replica (config again) sends compacted images again: a
 * compaction turns a version's change log, copied already, into a full
 * image (docs/dpr-kv.md), and the replica nodes can prune a worker's copies
 * only back to a full image. It has its own connection, so that commits
 * never wait for a full image's copy; it asks for a version only once the
 * first lane copied it (kv_replica_follow), so the two never send the same
 * version at once. It calls no hook, and forgets a version whose file is
 * gone (pruned meanwhile).
 */
#ifndef KV_REPLICA_H
#define KV_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct kv_replica kv_replica;

/* A version is on every replica node (its report may go). */
typedef void (*kv_replica_copied_fn)(void *ud, uint64_t version);

typedef struct kv_replica_config {
    const char *socket;    /* the agent's socket */
    const char *instance;  /* the agent's name of this instance */
    const char *token;     /* its finder token (the agent checks it) */
    const char *dir;       /* the state directory: ckpt-<v>.kv files */
    bool again;            /* sends compacted images again (see above) */
} kv_replica_config;

/* 0 or -ENOMEM. The strings are copied. copied may be NULL. */
int kv_replica_new(uv_loop_t *loop, const kv_replica_config *cfg, kv_replica_copied_fn copied,
                   void *ud, kv_replica **out);
/* Asks for version's copies (after every one asked before). 0 or
 * -ENOMEM. */
int kv_replica_ship(kv_replica *r, uint64_t version);
/* again waits for main: a version is asked for only once main copied it.
 * Until either is closed. */
void kv_replica_follow(kv_replica *main, kv_replica *again);
/* Forgets versions above version (a rollback dropped them). */
void kv_replica_drop_above(kv_replica *r, uint64_t version);
/* Versions waiting for their copies; the newest one copied (0: none). */
size_t kv_replica_pending(const kv_replica *r);
uint64_t kv_replica_copied(const kv_replica *r);
/* The last error the agent answered ("" after a success). */
const char *kv_replica_error(const kv_replica *r);
/* Closes its handles; the memory goes with them. NULL: no-op. */
void kv_replica_close(kv_replica *r);

#endif
