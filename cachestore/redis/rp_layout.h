/*
 * rp_layout.h - dpr-redis' layouts and resizing: the same commands, file
 * and replies as dpr-kv's (kv_resize.h, docs/dpr-kv.md "Layouts and
 * resizing"), so the agent's layout driver and the clients work unchanged.
 *
 *   DPR.LAYOUT [SET|PREPARE <epoch> <shard|-> <addr>... | PENDING |
 *               MIGRATE|ABORT <epoch> | COMMIT <epoch> [FORCE]]
 *   DPR.IMPORT <epoch> <key> <value> [...]
 *
 * The keys of a command come from Redis' own command table (rp_keys.h),
 * loaded once at start-up. A command with a key another shard owns gets
 * dpr-kv's `-MOVED <shard> <host:port> <epoch>` (its first such key), every
 * command with keys gets `-TRYAGAIN` while a resize is prepared, and a
 * batch is checked whole before any of it runs.
 *
 * A migration (DPR.LAYOUT MIGRATE) is a child process, as in dpr-kv: it
 * reads the keys that leave with SCAN, PTTL and DUMP over a connection of
 * its own to redis-server (the shard is paused: nothing but imports of
 * keys it keeps writes meanwhile) and pushes them with DPR.IMPORT to their
 * new owners. The value of a dpr-redis import is RP_IMPORT_MAGIC, 8 bytes
 * of the key's remaining time to live in milliseconds (big-endian; 0:
 * none), then Redis' DUMP payload, which the receiver RESTOREs (REPLACE):
 * any Redis type moves, with its TTL. A value without the magic is a plain
 * string (dpr-kv's values; SET), so dpr-kv shards can push keys to
 * dpr-redis ones; not the other way (dpr-kv would keep the encoded value
 * as a string).
 *
 * Keys the layout does not give this shard are dropped (UNLINK, an
 * untracked write of the open version, sent through the proxy's pipeline)
 * after COMMIT and ABORT, at start-up and after a live rollback.
 */
#ifndef RP_LAYOUT_H
#define RP_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "dpr/err.h"
#include "kv_layout.h"
#include "kv_resp.h"
#include "rp_keys.h"

#define RP_IMPORT_MAGIC "\0dpr-redis\1"
#define RP_IMPORT_MAGIC_LEN 11
#define RP_IMPORT_HDR (RP_IMPORT_MAGIC_LEN + 8)
#define RP_MIGRATE_BATCH_KEYS 1024
#define RP_MIGRATE_BATCH_BYTES (1u << 20)
#define RP_MIGRATE_TIMEOUT_MS 30000

enum rp_migrate_state { RP_MIGRATE_NONE, RP_MIGRATE_RUNNING, RP_MIGRATE_DONE, RP_MIGRATE_FAILED };

/* Written by the migration child, read after it exited. */
typedef struct rp_migrate_shared {
    uint64_t keys, bytes;
    dpr_err error;
} rp_migrate_shared;

typedef struct rp_layout {
    rp_keys keys;
    kv_layout_state st;
    bool await; /* --await-layout */
    uint64_t moved, tryagain, imported, purged;
    size_t imports_in_flight; /* RESTOREs of DPR.IMPORT sent, not answered */
    /* the migration */
    enum rp_migrate_state mstate;
    uint64_t mepoch, mworld_line, mkeys, mbytes, mstart_ms, mend_ms;
    pid_t mpid;
    dpr_err merror;
    rp_migrate_shared *shared;
} rp_layout;

typedef struct rp_proxy rp_proxy;
typedef struct rp_client rp_client;
typedef struct rp_slot rp_slot;

/* Before serving: loads Redis' command table (COMMAND, over a connection
 * of its own), reads the layout file and drops keys the layout does not
 * give this shard. -errno with a message. */
int rp_layout_start(rp_proxy *p, dpr_err *err);
void rp_layout_free(rp_layout *l);

/* Whether argv may run now; if not, the error reply is in out. */
bool rp_layout_allows(rp_proxy *p, size_t argc, const kv_arg *argv, dpr_buf *out);
/* The same for a whole batch (ops: u32 argc, then u32 length and bytes of
 * each argument, count times). */
bool rp_layout_allows_batch(rp_proxy *p, const char *ops, uint32_t count, dpr_buf *out);

void rp_layout_cmd(rp_client *c, size_t argc, const kv_arg *argv);
void rp_layout_cmd_import(rp_client *c, size_t argc, const kv_arg *argv);
/* Redis' answer to one RESTORE of a DPR.IMPORT. */
void rp_layout_import_reply(rp_slot *s, const char *reply, size_t n);

/* After a live rollback: a running migration is stopped, keys dropped. */
void rp_layout_rolled_back(rp_proxy *p);
/* From the SIGCHLD handler: reaps the migration child. */
void rp_layout_reap(rp_proxy *p);
/* The layout lines of INFO dpr. */
void rp_layout_info(rp_proxy *p, dpr_buf *b);

#endif
