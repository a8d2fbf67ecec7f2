/*
 * kv_resize.h - the shard's layout at run time (docs/dpr-kv.md, "Layouts
 * and resizing"): which keys it serves, the pause of a resize, the layout
 * commands, the migration of keys to their new owners and the purge of
 * keys it gave up.
 *
 *   DPR.LAYOUT                                  the active layout
 *   DPR.LAYOUT SET <epoch> <shard|-> <addr>...  adopt a first layout (no key moves)
 *   DPR.LAYOUT PREPARE <epoch> <shard|-> <addr>...   pause for a resize to it
 *   DPR.LAYOUT MIGRATE <epoch>                  push the keys that move (a child)
 *   DPR.LAYOUT COMMIT <epoch> [FORCE]           adopt it: drop the keys that left, resume
 *   DPR.LAYOUT ABORT <epoch>                    give it up: drop imports, resume
 *   DPR.IMPORT <epoch> <key> <value> [...]      keys pushed by another shard
 *
 * The layout state is kept in `<dir>/layout` (kv_layout.h), written
 * (fsync, rename, fsync of the directory) before a command that changes it
 * is answered, so a restarted shard comes back paused if it was paused.
 * Everything runs on the loop thread.
 */
#ifndef KV_RESIZE_H
#define KV_RESIZE_H

#include <stdbool.h>
#include <stddef.h>

#include "dpr/err.h"
#include "kv_cmd.h"
#include "kv_layout.h"
#include "kv_resp.h"

typedef struct kv_server kv_server;
typedef struct kv_client kv_client;

/* Reads `<dir>/layout` into *out (absent: no layout, epoch 0). -EBADMSG
 * for a damaged file, other errors as -errno; *err says which file and
 * why. Before registering with the finder: a shard that cannot know its
 * layout must not disturb its domain. */
int kv_resize_read(const char *dir, kv_layout_state *out, dpr_err *err);
/* Takes the state read (*loaded is emptied), before the server serves. */
void kv_resize_init(kv_server *s, kv_layout_state *loaded);

/* Drops every key that neither the active nor the pending layout gives
 * this shard (after a restore and after a live rollback: a checkpoint from
 * before a committed resize still holds the keys that left). Returns the
 * number dropped. */
size_t kv_resize_purge(kv_server *s, const char *why);

/* A rollback happened: a running migration is stopped (what it sent may
 * have been rolled back at its targets). */
void kv_resize_rolled_back(kv_server *s);

/*
 * Whether cmd (argv) may run here now; if not, writes the error reply to
 * out and returns false: -TRYAGAIN while a resize is prepared (every
 * command with keys), -MOVED <shard> <host:port> <epoch> for a key another
 * shard owns under the active layout (Redis Cluster's form, plus the
 * epoch).
 */
bool kv_resize_allows(kv_server *s, const kv_command *cmd, size_t argc, const kv_arg *argv,
                      dpr_buf *out);
/* The same for a whole DPR batch, before any of it runs: ops in the
 * batch's stored form (kv_server.c's batch_ops). */
bool kv_resize_allows_batch(kv_server *s, const char *ops, size_t len, uint32_t count,
                            dpr_buf *out);

void kv_resize_cmd_layout(kv_client *c, size_t argc, const kv_arg *argv);
void kv_resize_cmd_import(kv_client *c, size_t argc, const kv_arg *argv);

/* From the SIGCHLD handler and the cron. */
void kv_resize_reap(kv_server *s);
/* The layout and migration lines of INFO's DPR section. */
void kv_resize_info(kv_server *s, dpr_buf *b);

#endif
