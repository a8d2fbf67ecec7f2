/*
 * kv_layout_cmd.h - DPR.LAYOUT, the command that gives a shard its layout
 * and drives a resize (docs/dpr-kv.md, "Layouts and resizing"): its
 * subcommands, their rules and their replies, shared by dpr-kv
 * (kv_resize.c) and dpr-redis (rp_layout.c).
 *
 * The rules are the same in both: a layout is adopted only when it is
 * newer, a SET that would strand keys is refused, PREPARE pauses, MIGRATE
 * waits for the state before the pause to be committed, COMMIT refuses to
 * drop keys that were not migrated on this world-line (unless FORCE), and
 * every subcommand said again answers as the first time (a driver that
 * restarted). What differs is where the keys are (dpr-kv's dictionary, or
 * redis-server behind the proxy) and how they move: the host says that
 * through kv_layout_host's functions. The layout file is written here
 * (kv_layout_encode, durably) before a new state is adopted.
 *
 *     DPR.LAYOUT                                   the active layout
 *     DPR.LAYOUT SET|PREPARE <epoch> <shard|-> <addr>...
 *     DPR.LAYOUT PENDING                           the prepared layout
 *     DPR.LAYOUT MIGRATE|COMMIT|ABORT <epoch>
 *     DPR.LAYOUT COMMIT <epoch> FORCE
 */
#ifndef KV_LAYOUT_CMD_H
#define KV_LAYOUT_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "dpr/err.h"
#include "kv_layout.h"
#include "kv_resp.h"

typedef enum kv_layout_migration {
    KV_LAYOUT_MIGRATION_NONE,    /* none, failed, or for another epoch/world-line */
    KV_LAYOUT_MIGRATION_RUNNING, /* keys are being copied */
    KV_LAYOUT_MIGRATION_DONE,    /* every leaving key reached its owner on this world-line */
} kv_layout_migration;

typedef struct kv_layout_host {
    void *ud;
    kv_layout_state *st; /* the shard's state: replaced when a new one is adopted */
    const char *file;    /* the layout file's path */
    /* How many keys the shard holds that l does not give it: >= 0, or -1
     * with err set (the keys cannot be listed). */
    ssize_t (*count_foreign)(void *ud, const kv_layout *l, dpr_err *err);
    /* The migration to the pending layout of epoch. */
    kv_layout_migration (*migration)(void *ud, uint64_t epoch);
    /* Is everything that ran before the pause in the cut? When not, the
     * worker's version and cut go into the TRYAGAIN reply. */
    bool (*all_committed)(void *ud, uint64_t *version, uint64_t *cut);
    /* Starts copying the keys that leave under st->pending: 0, or a
     * negative errno with err set. */
    int (*migrate_start)(void *ud, dpr_err *err);
    /* ABORT: a reason not to now (a TRYAGAIN reply appended to out,
     * returns false), or true. NULL: always. */
    bool (*may_abort)(void *ud, dpr_buf *out);
    /* Stops a running migration (ABORT). */
    void (*migrate_kill)(void *ud);
    /* Drops the keys st->active does not give the shard (COMMIT and ABORT,
     * after the state is adopted): how many, or -1 with err set. */
    ssize_t (*drop_foreign)(void *ud, const char *why, dpr_err *err);
} kv_layout_host;

/* Runs DPR.LAYOUT argv[0..argc) (argv[0] is the command's name) and
 * appends its reply to out. */
void kv_layout_cmd(const kv_layout_host *h, size_t argc, const kv_arg *argv, dpr_buf *out);

/* Writes st as the layout file at path, durably (0600). 0 or a negative
 * errno with err set. */
int kv_layout_save(const char *path, const kv_layout_state *st, dpr_err *err);

#endif
