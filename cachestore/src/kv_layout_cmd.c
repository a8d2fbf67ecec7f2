/* kv_layout_cmd.c - see kv_layout_cmd.h and docs/dpr-kv.md, "Layouts and
 * resizing". */
#include "kv_layout_cmd.h"

#include <inttypes.h>
#include <string.h>

#include "common/fs.h"
#include "common/log.h"
#include "common/resp.h"

#define STATE_INIT {{0, 0, 0, NULL}, {0, 0, 0, NULL}}

int kv_layout_save(const char *path, const kv_layout_state *st, dpr_err *err)
{
    dpr_buf b = DPR_BUF_INIT;
    int rc = kv_layout_encode(st, &b);

    if (rc < 0)
        dpr_err_set(err, rc, "out of memory");
    else
        rc = dpr_replace_file(path, b.data, b.len, 0600, true, err);
    dpr_buf_free(&b);
    return rc;
}

static void reply_layout(dpr_buf *out, const kv_layout *l)
{
    dpr_resp_array(out, 3);
    dpr_resp_uint(out, l->epoch);
    if (l->epoch && l->shard != KV_LAYOUT_NO_SHARD)
        dpr_resp_uint(out, l->shard);
    else
        dpr_resp_int(out, -1);
    dpr_resp_array(out, l->nshards);
    for (uint32_t i = 0; i < l->nshards; i++)
        dpr_resp_bulk_str(out, l->addrs[i]);
}

/* Saves next as the layout file, then swaps it in (next is emptied). 0, or
 * a negative errno with the error reply written. */
static int adopt(const kv_layout_host *h, kv_layout_state *next, dpr_buf *out)
{
    dpr_err err = DPR_ERR_INIT;
    int rc = kv_layout_save(h->file, next, &err);

    if (rc < 0) {
        log_error("cannot save the layout: %s", err.msg);
        dpr_resp_errorf(out, "ERR cannot save the layout: %s", err.msg);
        return rc;
    }
    kv_layout_state_free(h->st);
    *h->st = *next;
    memset(next, 0, sizeof(*next));
    return 0;
}

static void not_newer(dpr_buf *out, uint64_t epoch, uint64_t current)
{
    dpr_resp_errorf(out, "ERR layout %" PRIu64 " is not newer than this shard's (%" PRIu64 ")",
                    epoch, current);
}

static void prepared_already(dpr_buf *out, uint64_t epoch)
{
    dpr_resp_errorf(out, "ERR a resize to layout %" PRIu64 " is prepared: COMMIT or ABORT it first",
                    epoch);
}

static void layout_set(const kv_layout_host *h, size_t argc, const kv_arg *argv, dpr_buf *out)
{
    kv_layout_state next = STATE_INIT;
    const kv_layout_state *st = h->st;
    dpr_err err = DPR_ERR_INIT;
    ssize_t foreign;

    if (kv_layout_parse(argc, argv, &next.active, &err) < 0) {
        dpr_resp_errorf(out, "ERR %s", err.msg);
    } else if (kv_layout_equal(&next.active, &st->active)) {
        dpr_resp_status(out, "OK"); /* said again */
    } else if (st->pending.epoch) {
        prepared_already(out, st->pending.epoch);
    } else if (next.active.epoch <= st->active.epoch) {
        not_newer(out, next.active.epoch, st->active.epoch);
    } else if ((foreign = h->count_foreign(h->ud, &next.active, &err)) < 0) {
        dpr_resp_errorf(out, "ERR %s", err.msg);
    } else if (foreign) {
        dpr_resp_errorf(out,
                        "ERR layout %" PRIu64 " would strand %zd keys this shard "
                        "holds and would not own: move them with PREPARE, MIGRATE and COMMIT",
                        next.active.epoch, foreign);
    } else if (adopt(h, &next, out) == 0) {
        log_info("layout %" PRIu64 " set: shard %" PRIu32 " of %" PRIu32, h->st->active.epoch,
                 h->st->active.shard, h->st->active.nshards);
        dpr_resp_status(out, "OK");
    }
    kv_layout_state_free(&next);
}

static void layout_prepare(const kv_layout_host *h, size_t argc, const kv_arg *argv,
                           dpr_buf *out)
{
    kv_layout_state next = STATE_INIT;
    const kv_layout_state *st = h->st;
    dpr_err err = DPR_ERR_INIT;

    if (kv_layout_parse(argc, argv, &next.pending, &err) < 0) {
        dpr_resp_errorf(out, "ERR %s", err.msg);
    } else if (st->pending.epoch) {
        if (kv_layout_equal(&next.pending, &st->pending))
            dpr_resp_status(out, "OK"); /* said again (a driver that restarted) */
        else
            prepared_already(out, st->pending.epoch);
    } else if (next.pending.epoch <= st->active.epoch) {
        not_newer(out, next.pending.epoch, st->active.epoch);
    } else if (kv_layout_copy(&next.active, &st->active) < 0) {
        dpr_resp_error(out, "ERR out of memory");
    } else if (adopt(h, &next, out) == 0) {
        const kv_layout *p = &h->st->pending;
        bool leaving = p->shard == KV_LAYOUT_NO_SHARD;
        log_notice("resize to layout %" PRIu64 " (shard %s%" PRIu32 " of %" PRIu32 ") prepared: "
                   "paused",
                   p->epoch, leaving ? "none, leaving; " : "", leaving ? 0 : p->shard,
                   p->nshards);
        dpr_resp_status(out, "OK");
    }
    kv_layout_state_free(&next);
}

static void layout_migrate(const kv_layout_host *h, uint64_t epoch, dpr_buf *out)
{
    dpr_err err = DPR_ERR_INIT;
    uint64_t version = 0, cut = 0;

    if (h->st->pending.epoch != epoch) {
        dpr_resp_errorf(out, "ERR no resize to layout %" PRIu64 " is prepared", epoch);
    } else if (h->migration(h->ud, epoch) == KV_LAYOUT_MIGRATION_RUNNING) {
        dpr_resp_status(out, "OK"); /* already moving */
    } else if (!h->all_committed(h->ud, &version, &cut)) {
        /* the keys that move must be in the cut first: a rollback after
         * the copy must not bring back on this shard what is already
         * elsewhere, nor lose what was copied */
        dpr_resp_errorf(out,
                        "TRYAGAIN the state before the pause is not committed yet "
                        "(version %" PRIu64 ", cut %" PRIu64 "): wait for INFO "
                        "dpr_layout_committed:1",
                        version, cut);
    } else if (h->migrate_start(h->ud, &err) < 0) {
        dpr_resp_errorf(out, "ERR cannot start the migration: %s", err.msg);
    } else {
        dpr_resp_status(out, "OK");
    }
}

/* Ends a resize on layout l (the pending one: COMMIT; the active one:
 * ABORT): saved as the only layout, then the keys it does not give this
 * shard are dropped (*dropped). 0, or -1 with the error reply written. */
static int settle(const kv_layout_host *h, const kv_layout *l, const char *why, size_t *dropped,
                  dpr_buf *out)
{
    kv_layout_state next = STATE_INIT;
    dpr_err err = DPR_ERR_INIT;
    ssize_t n;

    if (kv_layout_copy(&next.active, l) < 0) {
        dpr_resp_error(out, "ERR out of memory");
        return -1;
    }
    if (adopt(h, &next, out) < 0) {
        kv_layout_state_free(&next);
        return -1;
    }
    if ((n = h->drop_foreign(h->ud, why, &err)) < 0) {
        log_error("cannot drop the keys that left (%s): %s", why, err.msg);
        dpr_resp_errorf(out, "ERR layout adopted, but the keys that left were not dropped: %s",
                        err.msg);
        return -1;
    }
    *dropped = (size_t)n;
    return 0;
}

static void layout_commit(const kv_layout_host *h, uint64_t epoch, bool force, dpr_buf *out)
{
    const kv_layout_state *st = h->st;
    dpr_err err = DPR_ERR_INIT;
    kv_layout_migration m;
    size_t dropped;
    ssize_t leaving;

    if (st->active.epoch == epoch && !st->pending.epoch) {
        dpr_resp_int(out, 0); /* said again */
        return;
    }
    if (st->pending.epoch != epoch) {
        dpr_resp_errorf(out, "ERR no resize to layout %" PRIu64 " is prepared", epoch);
        return;
    }
    m = h->migration(h->ud, epoch);
    if (m == KV_LAYOUT_MIGRATION_RUNNING) {
        dpr_resp_error(out, "ERR the migration is still running");
        return;
    }
    /* the keys that leave must have reached their owners, with no rollback
     * since (a rollback anywhere in the domain moves this world-line too) */
    if (!force && m != KV_LAYOUT_MIGRATION_DONE) {
        if ((leaving = h->count_foreign(h->ud, &st->pending, &err)) < 0) {
            dpr_resp_errorf(out, "ERR %s", err.msg);
            return;
        }
        if (leaving > 0) {
            dpr_resp_errorf(out,
                            "ERR COMMIT would drop %zd keys that were not migrated on "
                            "this world-line: run DPR.LAYOUT MIGRATE %" PRIu64 " first",
                            leaving, epoch);
            return;
        }
    }
    if (settle(h, &st->pending, "the resize committed", &dropped, out) < 0)
        return;
    log_notice("layout %" PRIu64 " committed (%" PRIu32 " shards): %zu keys that left "
               "dropped; serving",
               epoch, h->st->active.nshards, dropped);
    dpr_resp_uint(out, dropped);
}

static void layout_abort(const kv_layout_host *h, uint64_t epoch, dpr_buf *out)
{
    size_t dropped;

    if (h->st->pending.epoch != epoch) {
        dpr_resp_int(out, 0); /* nothing (or something else) prepared: nothing to undo */
        return;
    }
    if (h->may_abort && !h->may_abort(h->ud, out))
        return;
    h->migrate_kill(h->ud);
    if (settle(h, &h->st->active, "the resize was aborted", &dropped, out) < 0)
        return;
    log_notice("resize to layout %" PRIu64 " aborted: %zu imported keys dropped; serving", epoch,
               dropped);
    dpr_resp_uint(out, dropped);
}

void kv_layout_cmd(const kv_layout_host *h, size_t argc, const kv_arg *argv, dpr_buf *out)
{
    uint64_t epoch;

    if (argc <= 1) {
        reply_layout(out, &h->st->active);
    } else if (kv_arg_is(&argv[1], "set") && argc >= 5) {
        layout_set(h, argc - 2, argv + 2, out);
    } else if (kv_arg_is(&argv[1], "prepare") && argc >= 5) {
        layout_prepare(h, argc - 2, argv + 2, out);
    } else if (kv_arg_is(&argv[1], "pending") && argc == 2) {
        reply_layout(out, &h->st->pending);
    } else if (kv_arg_is(&argv[1], "commit") &&
               (argc == 3 || (argc == 4 && kv_arg_is(&argv[3], "force")))) {
        if (kv_layout_epoch_arg(&argv[2], &epoch, out) == 0)
            layout_commit(h, epoch, argc == 4, out);
    } else if (kv_arg_is(&argv[1], "migrate") && argc == 3) {
        if (kv_layout_epoch_arg(&argv[2], &epoch, out) == 0)
            layout_migrate(h, epoch, out);
    } else if (kv_arg_is(&argv[1], "abort") && argc == 3) {
        if (kv_layout_epoch_arg(&argv[2], &epoch, out) == 0)
            layout_abort(h, epoch, out);
    } else {
        dpr_resp_errorf(out,
                        "ERR unknown subcommand or wrong number of arguments for "
                        "'DPR.LAYOUT %.*s': try SET|PREPARE <epoch> <shard|-> <addr>..., "
                        "PENDING, MIGRATE|COMMIT|ABORT <epoch>, COMMIT <epoch> FORCE",
                        (int)(argv[1].n > 32 ? 32 : argv[1].n), argv[1].p);
    }
}
