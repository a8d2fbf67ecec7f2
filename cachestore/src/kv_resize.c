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
#include "kv_layout_cmd.h"
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

/* DPR.LAYOUT: kv_layout_cmd.c's rules on dpr-kv's dictionary */

static ssize_t host_count_foreign(void *ud, const kv_layout *l, dpr_err *err)
{
    const kv_server *s = ud;
    size_t it[2] = {0, 0};
    ssize_t n = 0;
    kv_entry *e = NULL;

    (void)err; /* the dictionary is always there to walk */
    while ((e = kv_dict_next(&s->dict, it, e)))
        n += !kv_layout_owns(l, e->data, e->klen);
    return n;
}

static kv_layout_migration host_migration(void *ud, uint64_t epoch)
{
    const kv_server *s = ud;

    if (s->migrate.state == KV_MIGRATE_RUNNING)
        return KV_LAYOUT_MIGRATION_RUNNING;
    if (s->migrate.state == KV_MIGRATE_DONE && s->migrate.epoch == epoch &&
        s->migrate_world_line == s->worker.world_line)
        return KV_LAYOUT_MIGRATION_DONE;
    return KV_LAYOUT_MIGRATION_NONE;
}

static bool host_all_committed(void *ud, uint64_t *version, uint64_t *cut)
{
    const kv_server *s = ud;

    *version = s->worker.version;
    *cut = s->worker.cut;
    return kv_dpr_all_committed(s);
}

static int host_migrate_start(void *ud, dpr_err *err)
{
    kv_server *s = ud;
    /* a shard that serves TLS only (--port 0) pushes to its peers, TLS only
     * too, over TLS with the finder link's client context (--finder-tls:
     * its certificate, the CA); otherwise in plain text */
    int rc = kv_migrate_start(&s->migrate, &s->dict, &s->layout.pending,
                              s->cfg->port == 0 ? s->finder_tls : NULL, err);

    if (rc < 0)
        return rc;
    s->migrate_world_line = s->worker.world_line;
    log_info("migrating keys to layout %" PRIu64 " (process %d)", s->layout.pending.epoch,
             (int)s->migrate.pid);
    return 0;
}

static void host_migrate_kill(void *ud)
{
    kv_server *s = ud;
    kv_migrate_kill(&s->migrate);
}

static bool owned_by_active(const kv_server *s, const char *key, size_t n)
{
    return kv_layout_owns(&s->layout.active, key, n);
}

static ssize_t host_drop_foreign(void *ud, const char *why, dpr_err *err)
{
    (void)err; /* purge_where logs what it cannot do */
    return (ssize_t)purge_where(ud, owned_by_active, why);
}

void kv_resize_cmd_layout(kv_client *c, size_t argc, const kv_arg *argv)
{
    kv_server *s = c->srv;
    char path[PATH_MAX];
    kv_layout_host h = {
        .ud = s,
        .st = &s->layout,
        .file = path,
        .count_foreign = host_count_foreign,
        .migration = host_migration,
        .all_committed = host_all_committed,
        .migrate_start = host_migrate_start,
        .may_abort = NULL,
        .migrate_kill = host_migrate_kill,
        .drop_foreign = host_drop_foreign,
    };

    if (dpr_path_join(path, sizeof(path), s->cfg->dir, LAYOUT_FILE) < 0) {
        dpr_resp_errorf(&c->out, "ERR cannot save the layout: %s: path too long", s->cfg->dir);
        return;
    }
    kv_layout_cmd(&h, argc, argv, &c->out);
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
