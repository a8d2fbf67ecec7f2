/* kv_resize.c - see kv_resize.h and docs/dpr-kv.md, "Layouts and resizing". */
#include "kv_resize.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/num.h"
#include "common/resp.h"
#include "kv_layout.h"
#include "kv_migrate.h"
#include "kv_server.h"

#define LAYOUT_FILE "layout"

int kv_resize_read(const char *dir, kv_layout_state *out, dpr_err *err)
{
    char path[PATH_MAX];
    char *data = NULL;
    size_t len = 0;
    int fd, rc;

    memset(out, 0, sizeof(*out));
    if ((rc = dpr_path_join(path, sizeof(path), dir, LAYOUT_FILE)) < 0)
        return dpr_err_set(err, rc, "%s: path too long", dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0; /* never given a layout: owns every key */
        return dpr_err_set(err, -errno, "%s: %s", path, strerror(errno));
    }
    rc = dpr_read_fd(fd, KV_LAYOUT_FILE_MAX, &data, &len);
    close(fd);
    if (rc < 0) {
        rc = dpr_err_set(err, rc, "%s: cannot read: %s", path, strerror(-rc));
        goto out;
    }
    rc = kv_layout_decode(data, len, out, err);
    if (rc < 0) {
        dpr_err_prefix(err, "%s: damaged layout file", path);
        kv_layout_state_free(out);
        goto out;
    }
    if (out->active.epoch || out->pending.epoch)
        log_info("layout %" PRIu64 " (%" PRIu32 " shards)%s", out->active.epoch,
                 out->active.nshards,
                 out->pending.epoch ? "; a resize is prepared: paused" : "");
out:
    free(data);
    return rc;
}

void kv_resize_init(kv_server *s, kv_layout_state *loaded)
{
    kv_migrate_init(&s->migrate);
    s->layout = *loaded;
    memset(loaded, 0, sizeof(*loaded));
}

/* Writes st as the layout file (durably) before it is adopted. */
static int save(kv_server *s, const kv_layout_state *st, dpr_err *err)
{
    char path[PATH_MAX];
    dpr_buf b = DPR_BUF_INIT;
    int rc;

    if ((rc = dpr_path_join(path, sizeof(path), s->cfg->dir, LAYOUT_FILE)) < 0)
        return dpr_err_set(err, rc, "%s: path too long", s->cfg->dir);
    rc = kv_layout_encode(st, &b);
    if (rc < 0)
        dpr_err_set(err, rc, "out of memory");
    else
        rc = dpr_replace_file(path, b.data, b.len, 0600, true, err);
    dpr_buf_free(&b);
    return rc;
}

static bool kept(const kv_server *s, const char *key, size_t n)
{
    const kv_layout_state *st = &s->layout;
    return kv_layout_owns(&st->active, key, n) ||
           (st->pending.epoch && kv_layout_owns(&st->pending, key, n));
}

/* Deletes the keys `keep` says no to; an untracked write like a plain DEL. */
static size_t purge_where(kv_server *s, bool (*keep)(const kv_server *, const char *, size_t),
                          const char *why)
{
    dpr_buf doomed = DPR_BUF_INIT; /* (u32 length, bytes)... */
    size_t it[2] = {0, 0}, n = 0, pos = 0;
    kv_entry *e = NULL;

    if (s->layout.active.epoch == 0)
        return 0; /* the active layout owns every key: both rules keep them all */
    while ((e = kv_dict_next(&s->dict, it, e))) {
        if (keep(s, e->data, e->klen))
            continue;
        uint32_t kl = e->klen;
        dpr_buf_append(&doomed, &kl, sizeof(kl));
        dpr_buf_append(&doomed, e->data, kl);
        n++;
    }
    if (dpr_buf_failed(&doomed)) {
        /* cannot even list them: they stay unreachable (-MOVED) until the
         * next purge */
        log_error("cannot drop the keys this shard no longer owns (%s): out of memory", why);
        dpr_buf_free(&doomed);
        return 0;
    }
    if (n) {
        uint64_t v;
        (void)dpr_worker_execute(&s->worker, NULL, &v); /* in the open version */
        while (pos < doomed.len) {
            uint32_t kl;
            memcpy(&kl, doomed.data + pos, sizeof(kl));
            (void)kv_dict_delete(&s->dict, doomed.data + pos + sizeof(kl), kl);
            pos += sizeof(kl) + kl;
        }
        s->writes += n;
        s->purged_keys += n;
        log_info("dropped %zu keys this shard does not own under layout %" PRIu64 " (%s)", n,
                 s->layout.active.epoch, why);
    }
    dpr_buf_free(&doomed);
    return n;
}

size_t kv_resize_purge(kv_server *s, const char *why)
{
    return purge_where(s, kept, why);
}

void kv_resize_rolled_back(kv_server *s)
{
    if (s->migrate.state == KV_MIGRATE_RUNNING) {
        kv_migrate_kill(&s->migrate);
        dpr_err_set(&s->migrate.error, -ECANCELED, "stopped by a rollback: run it again");
        log_warning("migration to layout %" PRIu64 " stopped by a rollback", s->migrate.epoch);
    }
    kv_resize_purge(s, "after a rollback");
}

/* ---- refusals ------------------------------------------------------------ */

/* Paused (a resize), or waiting for a first layout (--await-layout)? */
static bool paused(const kv_server *s)
{
    return s->layout.pending.epoch ||
           (s->cfg->await_layout && s->layout.active.epoch == 0);
}

static void tryagain(kv_server *s, dpr_buf *out)
{
    s->layout_tryagain++;
    if (!s->layout.pending.epoch)
        dpr_resp_error(out, "TRYAGAIN this shard has not been given its layout yet: retry "
                            "shortly");
    else
        dpr_resp_errorf(out, "TRYAGAIN this deployment is being resized (layout %" PRIu64
                        " to %" PRIu64 "): retry shortly", s->layout.active.epoch,
                        s->layout.pending.epoch);
}

static void moved(kv_server *s, const char *key, size_t n, dpr_buf *out)
{
    const kv_layout *l = &s->layout.active;
    uint32_t owner = kv_layout_owner(l, key, n);

    s->layout_moved++;
    dpr_resp_errorf(out, "MOVED %" PRIu32 " %s %" PRIu64, owner, l->addrs[owner], l->epoch);
}

/* The first key of argv (of cmd) this shard does not own, or -1. */
static ssize_t foreign_key(const kv_server *s, const kv_command *cmd, size_t argc,
                           const kv_arg *argv)
{
    size_t last;

    if (cmd->firstkey == 0)
        return -1;
    last = cmd->lastkey < 0 ? argc - 1 : (size_t)cmd->lastkey;
    for (size_t i = (size_t)cmd->firstkey; i <= last && i < argc; i += (size_t)cmd->keystep)
        if (!kv_layout_owns(&s->layout.active, argv[i].p, argv[i].n))
            return (ssize_t)i;
    return -1;
}

bool kv_resize_allows(kv_server *s, const kv_command *cmd, size_t argc, const kv_arg *argv,
                      dpr_buf *out)
{
    ssize_t k;

    if (cmd->firstkey == 0 && !(cmd->flags & KV_CMD_WRITE))
        return true; /* PING, ECHO, DBSIZE, INFO, ... */
    if (paused(s)) {
        tryagain(s, out);
        return false;
    }
    if (s->layout.active.epoch == 0 || (k = foreign_key(s, cmd, argc, argv)) < 0)
        return true;
    moved(s, argv[k].p, argv[k].n, out);
    return false;
}

bool kv_resize_allows_batch(kv_server *s, const char *ops, size_t len, uint32_t count,
                            dpr_buf *out)
{
    const char *p = ops, *end = ops + len;

    if (paused(s)) {
        tryagain(s, out);
        return false;
    }
    if (s->layout.active.epoch == 0)
        return true;
    for (uint32_t k = 0; k < count && end - p >= 4; k++) {
        size_t argc;
        const kv_command *cmd;
        ssize_t i;
        if (!(p = kv_server_batch_op(s, p, &argc))) {
            dpr_resp_error(out, "ERR DPR.BATCH not executed: out of memory");
            return false;
        }
        cmd = argc ? kv_command_lookup(s->scratch[0].p, s->scratch[0].n) : NULL;
        /* unknown or malformed: answered with an error in its slot, no key */
        if (!cmd || !kv_command_arity_ok(cmd, argc))
            continue;
        if ((i = foreign_key(s, cmd, argc, s->scratch)) >= 0) {
            moved(s, s->scratch[i].p, s->scratch[i].n, out);
            return false;
        }
    }
    return true;
}

/* ---- commands ------------------------------------------------------------ */

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

/* Adopts next as the state: saved first, then swapped in (next is emptied). */
static int adopt(kv_client *c, kv_layout_state *next)
{
    kv_server *s = c->srv;
    dpr_err err;
    int rc = save(s, next, &err);

    if (rc < 0) {
        log_error("cannot save the layout: %s", err.msg);
        dpr_resp_errorf(&c->out, "ERR cannot save the layout: %s", err.msg);
        return rc;
    }
    kv_layout_state_free(&s->layout);
    s->layout = *next;
    memset(next, 0, sizeof(*next));
    return 0;
}

static bool owned_by_active(const kv_server *s, const char *key, size_t n)
{
    return kv_layout_owns(&s->layout.active, key, n);
}

static size_t count_foreign(const kv_server *s, const kv_layout *l)
{
    size_t it[2] = {0, 0}, n = 0;
    kv_entry *e = NULL;
    while ((e = kv_dict_next(&s->dict, it, e)))
        n += !kv_layout_owns(l, e->data, e->klen);
    return n;
}

static void layout_set(kv_client *c, size_t argc, const kv_arg *argv)
{
    kv_server *s = c->srv;
    kv_layout_state next = {{0, 0, 0, NULL}, {0, 0, 0, NULL}};
    dpr_err err;
    size_t foreign;

    if (kv_layout_parse(argc, argv, &next.active, &err) < 0) {
        dpr_resp_errorf(&c->out, "ERR %s", err.msg);
        goto out;
    }
    if (kv_layout_equal(&next.active, &s->layout.active)) {
        dpr_resp_status(&c->out, "OK"); /* said again */
        goto out;
    }
    if (s->layout.pending.epoch) {
        dpr_resp_errorf(&c->out, "ERR a resize to layout %" PRIu64 " is prepared: COMMIT or "
                        "ABORT it first", s->layout.pending.epoch);
        goto out;
    }
    if (next.active.epoch <= s->layout.active.epoch) {
        dpr_resp_errorf(&c->out, "ERR layout %" PRIu64 " is not newer than this shard's (%"
                        PRIu64 ")", next.active.epoch, s->layout.active.epoch);
        goto out;
    }
    foreign = count_foreign(s, &next.active);
    if (foreign) {
        dpr_resp_errorf(&c->out, "ERR layout %" PRIu64 " would strand %zu keys this shard "
                        "holds and would not own: move them with PREPARE, MIGRATE and COMMIT",
                        next.active.epoch, foreign);
        goto out;
    }
    if (adopt(c, &next) == 0) {
        log_info("layout %" PRIu64 " set: shard %" PRIu32 " of %" PRIu32,
                 s->layout.active.epoch, s->layout.active.shard, s->layout.active.nshards);
        dpr_resp_status(&c->out, "OK");
    }
out:
    kv_layout_state_free(&next);
}

static void layout_prepare(kv_client *c, size_t argc, const kv_arg *argv)
{
    kv_server *s = c->srv;
    kv_layout_state next = {{0, 0, 0, NULL}, {0, 0, 0, NULL}};
    dpr_err err;

    if (kv_layout_parse(argc, argv, &next.pending, &err) < 0) {
        dpr_resp_errorf(&c->out, "ERR %s", err.msg);
        goto out;
    }
    if (s->layout.pending.epoch) {
        if (kv_layout_equal(&next.pending, &s->layout.pending))
            dpr_resp_status(&c->out, "OK"); /* said again (a driver that restarted) */
        else
            dpr_resp_errorf(&c->out, "ERR a resize to layout %" PRIu64 " is prepared: COMMIT "
                            "or ABORT it first", s->layout.pending.epoch);
        goto out;
    }
    if (next.pending.epoch <= s->layout.active.epoch) {
        dpr_resp_errorf(&c->out, "ERR layout %" PRIu64 " is not newer than this shard's (%"
                        PRIu64 ")", next.pending.epoch, s->layout.active.epoch);
        goto out;
    }
    if (kv_layout_copy(&next.active, &s->layout.active) < 0) {
        dpr_resp_error(&c->out, "ERR out of memory");
        goto out;
    }
    if (adopt(c, &next) == 0) {
        log_notice("resize to layout %" PRIu64 " (shard %s%" PRIu32 " of %" PRIu32 ") prepared: "
                   "paused", s->layout.pending.epoch,
                   s->layout.pending.shard == KV_LAYOUT_NO_SHARD ? "none, leaving; " : "",
                   s->layout.pending.shard == KV_LAYOUT_NO_SHARD ? 0 : s->layout.pending.shard,
                   s->layout.pending.nshards);
        dpr_resp_status(&c->out, "OK");
    }
out:
    kv_layout_state_free(&next);
}

static void layout_migrate(kv_client *c, uint64_t epoch)
{
    kv_server *s = c->srv;
    dpr_err err;

    if (s->layout.pending.epoch != epoch) {
        dpr_resp_errorf(&c->out, "ERR no resize to layout %" PRIu64 " is prepared", epoch);
        return;
    }
    if (s->migrate.state == KV_MIGRATE_RUNNING) {
        dpr_resp_status(&c->out, "OK"); /* already moving */
        return;
    }
    if (!kv_dpr_all_committed(s)) {
        /* the keys that move must be in the cut first: a rollback after
         * the copy must not bring back on this shard what is already
         * elsewhere, nor lose what was copied */
        dpr_resp_errorf(&c->out, "TRYAGAIN the state before the pause is not committed yet "
                        "(version %" PRIu64 ", cut %" PRIu64 "): wait for INFO "
                        "dpr_layout_committed:1", s->worker.version, s->worker.cut);
        return;
    }
    /* a shard that serves TLS only (--port 0) pushes to its peers, TLS only
     * too, over TLS with the finder link's client context (--finder-tls:
     * its certificate, the CA); otherwise in plain text */
    if (kv_migrate_start(&s->migrate, &s->dict, &s->layout.pending,
                         s->cfg->port == 0 ? s->finder_tls : NULL, &err) < 0) {
        dpr_resp_errorf(&c->out, "ERR cannot start the migration: %s", err.msg);
        return;
    }
    s->migrate_world_line = s->worker.world_line;
    log_info("migrating keys to layout %" PRIu64 " (process %d)", epoch, (int)s->migrate.pid);
    dpr_resp_status(&c->out, "OK");
}

/* Ends a resize on layout l (the pending one: COMMIT; the active one:
 * ABORT): saved as the only layout, then the keys it does not give this
 * shard are dropped (*dropped). 0, or -1 with the error reply written. */
static int settle(kv_client *c, const kv_layout *l, const char *why, size_t *dropped)
{
    kv_layout_state next = {{0, 0, 0, NULL}, {0, 0, 0, NULL}};

    if (kv_layout_copy(&next.active, l) < 0) {
        dpr_resp_error(&c->out, "ERR out of memory");
        return -1;
    }
    if (adopt(c, &next) < 0) {
        kv_layout_state_free(&next);
        return -1;
    }
    *dropped = purge_where(c->srv, owned_by_active, why);
    return 0;
}

static void layout_commit(kv_client *c, uint64_t epoch, bool force)
{
    kv_server *s = c->srv;
    size_t dropped, leaving;
    bool migrated;

    if (s->layout.active.epoch == epoch && !s->layout.pending.epoch) {
        dpr_resp_int(&c->out, 0); /* said again */
        return;
    }
    if (s->layout.pending.epoch != epoch) {
        dpr_resp_errorf(&c->out, "ERR no resize to layout %" PRIu64 " is prepared", epoch);
        return;
    }
    if (s->migrate.state == KV_MIGRATE_RUNNING) {
        dpr_resp_error(&c->out, "ERR the migration is still running");
        return;
    }
    /* the keys that leave must have reached their owners, with no rollback
     * since (a rollback anywhere in the domain moves this world-line too) */
    migrated = s->migrate.state == KV_MIGRATE_DONE && s->migrate.epoch == epoch &&
               s->migrate_world_line == s->worker.world_line;
    if (!force && !migrated && (leaving = count_foreign(s, &s->layout.pending)) > 0) {
        dpr_resp_errorf(&c->out, "ERR COMMIT would drop %zu keys that were not migrated on "
                        "this world-line: run DPR.LAYOUT MIGRATE %" PRIu64 " first", leaving,
                        epoch);
        return;
    }
    if (settle(c, &s->layout.pending, "the resize committed", &dropped) < 0)
        return;
    log_notice("layout %" PRIu64 " committed (%" PRIu32 " shards): %zu keys that left "
               "dropped; serving", epoch, s->layout.active.nshards, dropped);
    dpr_resp_uint(&c->out, dropped);
}

static void layout_abort(kv_client *c, uint64_t epoch)
{
    kv_server *s = c->srv;
    size_t dropped;

    if (s->layout.pending.epoch != epoch) {
        dpr_resp_int(&c->out, 0); /* nothing (or something else) prepared: nothing to undo */
        return;
    }
    kv_migrate_kill(&s->migrate);
    if (settle(c, &s->layout.active, "the resize was aborted", &dropped) < 0)
        return;
    log_notice("resize to layout %" PRIu64 " aborted: %zu imported keys dropped; serving",
               epoch, dropped);
    dpr_resp_uint(&c->out, dropped);
}

void kv_resize_cmd_layout(kv_client *c, size_t argc, const kv_arg *argv)
{
    kv_server *s = c->srv;
    uint64_t epoch;

    if (argc == 1) {
        reply_layout(&c->out, &s->layout.active);
        return;
    }
    if (kv_arg_is(&argv[1], "set") && argc >= 5) {
        layout_set(c, argc - 2, argv + 2);
    } else if (kv_arg_is(&argv[1], "prepare") && argc >= 5) {
        layout_prepare(c, argc - 2, argv + 2);
    } else if (kv_arg_is(&argv[1], "pending") && argc == 2) {
        reply_layout(&c->out, &s->layout.pending);
    } else if (kv_arg_is(&argv[1], "commit") && (argc == 3 || (argc == 4 &&
                                                             kv_arg_is(&argv[3], "force")))) {
        if (kv_layout_epoch_arg(&argv[2], &epoch, &c->out) == 0)
            layout_commit(c, epoch, argc == 4);
    } else if ((kv_arg_is(&argv[1], "migrate") || kv_arg_is(&argv[1], "abort")) && argc == 3) {
        if (kv_layout_epoch_arg(&argv[2], &epoch, &c->out) < 0)
            return;
        if (kv_arg_is(&argv[1], "migrate"))
            layout_migrate(c, epoch);
        else
            layout_abort(c, epoch);
    } else {
        dpr_resp_errorf(&c->out, "ERR unknown subcommand or wrong number of arguments for "
                        "'DPR.LAYOUT %.*s': try SET|PREPARE <epoch> <shard|-> <addr>..., "
                        "PENDING, MIGRATE|COMMIT|ABORT <epoch>, COMMIT <epoch> FORCE",
                        (int)(argv[1].n > 32 ? 32 : argv[1].n), argv[1].p);
    }
}

void kv_resize_cmd_import(kv_client *c, size_t argc, const kv_arg *argv)
{
    kv_server *s = c->srv;
    const kv_layout *to = &s->layout.pending;
    const char *refused;
    uint64_t epoch, v;
    size_t n = (argc - 2) / 2;

    if (argc < 4 || argc % 2) {
        dpr_resp_error(&c->out, "ERR wrong number of arguments for 'dpr.import'");
        return;
    }
    if (kv_layout_epoch_arg(&argv[1], &epoch, &c->out) < 0)
        return;
    if (to->epoch != epoch) {
        dpr_resp_errorf(&c->out, "ERR no resize to layout %" PRIu64 " is prepared on this "
                        "shard", epoch);
        return;
    }
    for (size_t i = 2; i < argc; i += 2) {
        if (!kv_layout_owns(to, argv[i].p, argv[i].n)) {
            dpr_resp_errorf(&c->out, "ERR key %zu of DPR.IMPORT belongs to shard %" PRIu32
                            " under layout %" PRIu64 ", not to this one", (i - 2) / 2,
                            kv_layout_owner(to, argv[i].p, argv[i].n), epoch);
            return;
        }
        if (argv[i + 1].n > KV_MAX_VALUE) {
            dpr_resp_error(&c->out, "ERR string exceeds maximum allowed size");
            return;
        }
    }
    refused = kv_server_write_refused(s, kv_command_lookup("mset", 4));
    if (refused) {
        dpr_resp_error(&c->out, refused);
        return;
    }
    (void)dpr_worker_execute(&s->worker, NULL, &v); /* untracked, in the open version */
    for (size_t i = 2; i < argc; i += 2) {
        if (kv_dict_set(&s->dict, argv[i].p, argv[i].n, argv[i + 1].p, argv[i + 1].n,
                        NULL) < 0) {
            dpr_resp_error(&c->out, "ERR out of memory");
            return;
        }
    }
    s->writes += n;
    s->imported_keys += n;
    dpr_resp_uint(&c->out, n);
}

/* ---- reaping, INFO ----------------------------------------------------------- */

void kv_resize_reap(kv_server *s)
{
    kv_migrate *m = &s->migrate;

    if (!kv_migrate_reap(m))
        return;
    if (m->state == KV_MIGRATE_DONE)
        log_info("migration to layout %" PRIu64 " done: %" PRIu64 " keys, %" PRIu64 " bytes "
                 "in %" PRIu64 " ms", m->epoch, m->keys, m->bytes, m->end_ms - m->start_ms);
    else
        log_error("migration to layout %" PRIu64 " failed after %" PRIu64 " keys: %s",
                  m->epoch, m->keys, m->error.msg);
}

void kv_resize_info(kv_server *s, dpr_buf *b)
{
    static const char *const states[] = {"none", "running", "done", "failed"};
    const kv_layout_state *st = &s->layout;
    const kv_migrate *m = &s->migrate;

    dpr_resp_info_line(b, "dpr_layout_epoch:%" PRIu64, st->active.epoch);
    if (st->active.epoch && st->active.shard != KV_LAYOUT_NO_SHARD)
        dpr_resp_info_line(b, "dpr_layout_shard:%" PRIu32, st->active.shard);
    else
        dpr_resp_info_line(b, "dpr_layout_shard:-1");
    dpr_resp_info_line(b, "dpr_layout_shards:%" PRIu32, st->active.nshards);
    dpr_resp_info_line(b, "dpr_layout_pending_epoch:%" PRIu64, st->pending.epoch);
    dpr_resp_info_line(b, "dpr_layout_paused:%d", paused(s) ? 1 : 0);
    dpr_resp_info_line(b, "dpr_layout_committed:%d", kv_dpr_all_committed(s) ? 1 : 0);
    dpr_resp_info_line(b, "dpr_layout_moved:%" PRIu64, s->layout_moved);
    dpr_resp_info_line(b, "dpr_layout_tryagain:%" PRIu64, s->layout_tryagain);
    dpr_resp_info_line(b, "dpr_imported_keys:%" PRIu64, s->imported_keys);
    dpr_resp_info_line(b, "dpr_purged_keys:%" PRIu64, s->purged_keys);
    dpr_resp_info_line(b, "dpr_migrate_state:%s", states[m->state]);
    dpr_resp_info_line(b, "dpr_migrate_epoch:%" PRIu64, m->epoch);
    dpr_resp_info_line(b, "dpr_migrate_world_line:%" PRIu64, s->migrate_world_line);
    dpr_resp_info_line(b, "dpr_migrate_keys:%" PRIu64, m->keys);
    dpr_resp_info_line(b, "dpr_migrate_bytes:%" PRIu64, m->bytes);
    dpr_resp_info_line(b, "dpr_migrate_ms:%" PRIu64,
                       m->start_ms ? (m->end_ms ? m->end_ms : dpr_mono_ms()) - m->start_ms : 0);
    dpr_resp_info_line(b, "dpr_migrate_error:%s",
                       m->state == KV_MIGRATE_FAILED ? m->error.msg : "");
}
