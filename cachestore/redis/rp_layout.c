/* rp_layout.c - see rp_layout.h; DPR.LAYOUT's rules are kv_layout_cmd.c's,
 * shared with dpr-kv. */
#include "rp_layout.h"

#include <assert.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/num.h"
#include "common/resp.h"
#include "dpr/wire.h"
#include "kv_batchops.h"
#include "kv_layout_cmd.h"
#include "kv_peer.h"
#include "kv_rdb.h"
#include "kv_resize.h"
#include "rp_proxy_int.h"
#include "rp_redis.h"

#define LAYOUT_FILE "layout"
#define SCAN_COUNT "1000"

/* the elements of one reply of redis-server over a side connection (a
 * SCAN page of SCAN_COUNT keys; the command table's ~250 commands) */
#define SIDE_MAX_ELEMENTS ((size_t)1 << 20)

/* A blocking connection of its own to redis-server (a purge's SCAN, the
 * migration child, the command table), replies bounded (kv_redis.h). */
static redisContext *side_connect(dpr_err *err)
{
    return kv_redis_connect(RP_REDIS_SOCKET, RP_MIGRATE_TIMEOUT_MS, SIDE_MAX_ELEMENTS, err);
}

/* argv over the side connection: Redis' reply into *r (free it). 0, or a
 * negative errno with err set. */
static int side_call(redisContext *rc, int argc, const char **argv, const size_t *lens,
                     redisReply **r, dpr_err *err)
{
    *r = NULL;
    if (redisAppendCommandArgv(rc, argc, argv, lens) != REDIS_OK)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    return kv_redis_reply(rc, r, err);
}

/* The next SCAN page from cursor (moved on): *r (free it) and its keys,
 * every one a string (kv_rdb_scan_page). 0, or a negative errno with err
 * set. */
static int scan_page(redisContext *rc, char *cursor, size_t cap, redisReply **r,
                     const redisReply **keys, dpr_err *err)
{
    const char *argv[4] = {"SCAN", cursor, "COUNT", SCAN_COUNT};
    int ret = side_call(rc, 4, argv, NULL, r, err);

    if (ret < 0)
        return ret;
    if ((*r)->type == REDIS_REPLY_ERROR)
        return dpr_err_set(err, -EPROTO, "SCAN refused: %.*s", (int)(*r)->len, (*r)->str);
    return kv_rdb_scan_page(*r, cursor, cap, keys, err);
}

static bool kept(const kv_layout_state *st, const char *key, size_t n)
{
    return kv_layout_owns(&st->active, key, n) ||
           (st->pending.epoch && kv_layout_owns(&st->pending, key, n));
}

static bool active_owns(const kv_layout_state *st, const char *key, size_t n)
{
    return kv_layout_owns(&st->active, key, n);
}

static void on_unlink(rp_proxy *p, const char *reply, size_t n)
{
    (void)p;
    if (n && reply[0] == '-')
        log_warning("redis-server refused the UNLINK of a key that left: %.*s",
                    (int)(n > 200 ? 200 : n), reply);
}

/* Drops every key keep() says no to. direct: at start-up, UNLINKed over
 * the side connection before serving; else through the pipeline, in
 * order, as an untracked write of the open version. */
static int purge_where(rp_proxy *p, bool (*keep)(const kv_layout_state *, const char *, size_t),
                       bool direct, const char *why, size_t *dropped, dpr_err *err)
{
    redisContext *rc;
    redisReply *r = NULL;
    char cursor[32] = "0";
    size_t n = 0;
    int ret = 0;

    *dropped = 0;
    if (p->lay.st.active.epoch == 0)
        return 0; /* the active layout owns every key */
    if (!(rc = side_connect(err)))
        return -ECONNREFUSED;
    do {
        const redisReply *keys;
        if ((ret = scan_page(rc, cursor, sizeof(cursor), &r, &keys, err)) < 0)
            goto out;
        for (size_t i = 0; i < keys->elements; i++) {
            const redisReply *k = keys->element[i];
            if (keep(&p->lay.st, k->str, k->len))
                continue;
            const char *argv[2] = {"UNLINK", k->str};
            size_t lens[2] = {6, k->len};
            if (direct) {
                redisReply *u;
                if ((ret = side_call(rc, 2, argv, lens, &u, err)) < 0)
                    goto out;
                if (u->type == REDIS_REPLY_ERROR) {
                    ret = dpr_err_set(err, -EIO, "UNLINK failed: %.*s", (int)u->len, u->str);
                    freeReplyObject(u);
                    goto out;
                }
                freeReplyObject(u);
            } else {
                rp_slot *s = rp_slot_push(p, SLOT_INTERNAL, NULL);
                if (!s) {
                    ret = dpr_err_set(err, -ENOMEM, "out of memory");
                    goto out;
                }
                s->cb = on_unlink;
                rp_redis_command(p, 2, argv, lens);
            }
            n++;
        }
        freeReplyObject(r);
        r = NULL;
    } while (strcmp(cursor, "0") != 0);
out:
    freeReplyObject(r);
    kv_redis_close(rc);
    if (n) {
        uint64_t v;
        (void)dpr_worker_execute(&p->w, NULL, &v); /* in the open version */
        p->plain_dirty = true;
        p->lay.purged += n;
        log_info("dropped %zu keys this shard does not own under layout %" PRIu64 " (%s)", n,
                 p->lay.st.active.epoch, why);
        if (!direct)
            rp_redis_flush(p);
    }
    *dropped = n;
    return ret;
}

static void purge(rp_proxy *p, const char *why)
{
    dpr_err err = DPR_ERR_INIT;
    size_t n;

    if (purge_where(p, kept, false, why, &n, &err) < 0)
        log_error("cannot drop the keys this shard no longer owns (%s): %s", why, err.msg);
}

int rp_layout_start(rp_proxy *p, dpr_err *err)
{
    redisContext *rc;
    redisReply *r;
    size_t n;
    int ret;

    p->lay.await = p->cfg->await_layout;
    if (!(rc = side_connect(err)))
        return -ECONNREFUSED;
    const char *argv[1] = {"COMMAND"};
    ret = side_call(rc, 1, argv, NULL, &r, err);
    if (ret == 0)
        ret = rp_keys_load(&p->lay.keys, r, err);
    freeReplyObject(r);
    kv_redis_close(rc);
    if (ret < 0)
        return ret;
    log_debug("%zu commands in redis-server's command table", p->lay.keys.n);
    if ((ret = kv_resize_read(".", &p->lay.st, err)) < 0)
        return ret;
    /* a checkpoint from before a committed resize still holds the keys
     * that left */
    return purge_where(p, kept, true, "after the restore", &n, err);
}

void rp_layout_free(rp_layout *l)
{
    if (l->mpid > 0) {
        kill(l->mpid, SIGKILL);
        (void)waitpid(l->mpid, NULL, 0);
    }
    if (l->shared)
        munmap(l->shared, sizeof(*l->shared));
    rp_keys_free(&l->keys);
    kv_layout_state_free(&l->st);
    memset(l, 0, sizeof(*l));
}

/* ---- refusals ------------------------------------------------------------ */

static bool paused(const rp_proxy *p)
{
    return p->lay.st.pending.epoch || (p->lay.await && p->lay.st.active.epoch == 0);
}

static void tryagain(rp_proxy *p, dpr_buf *out)
{
    const kv_layout_state *st = &p->lay.st;

    p->lay.tryagain++;
    if (!st->pending.epoch)
        dpr_resp_error(out, "TRYAGAIN this shard has not been given its layout yet: retry "
                            "shortly");
    else
        dpr_resp_errorf(out,
                        "TRYAGAIN this deployment is being resized (layout %" PRIu64 " to %" PRIu64
                        "): retry shortly",
                        st->active.epoch, st->pending.epoch);
}

static void moved(rp_proxy *p, const kv_arg *key, dpr_buf *out)
{
    const kv_layout *l = &p->lay.st.active;
    uint32_t owner = kv_layout_owner(l, key->p, key->n);

    p->lay.moved++;
    dpr_resp_errorf(out, "MOVED %" PRIu32 " %s %" PRIu64, owner, l->addrs[owner], l->epoch);
}

static bool owned_cb(void *ud, const char *key, size_t n)
{
    return kv_layout_owns(ud, key, n);
}

/* 0: may run; -1: refused (reply in out). */
static int check(rp_proxy *p, size_t argc, const kv_arg *argv, bool in_batch, dpr_buf *out)
{
    const rp_cmdinfo *ci;
    ssize_t k;

    if (p->lay.st.active.epoch == 0 && (in_batch || !paused(p)))
        return 0; /* every key is owned: no lookup (a standalone shard) */
    if (!(ci = rp_keys_lookup(&p->lay.keys, argc, argv)))
        return 0; /* unknown to Redis: it answers the error */
    if (ci->nspecs == 0 && !ci->write)
        return 0; /* PING, ECHO, DBSIZE, INFO, ... */
    if (!in_batch && paused(p)) {
        tryagain(p, out);
        return -1;
    }
    if (ci->unknown && p->lay.st.active.epoch) {
        dpr_resp_errorf(out,
                        "ERR command '%s' can name keys dpr-redis cannot locate (SORT's "
                        "BY, GET and STORE): not allowed in a deployment with a layout",
                        ci->name);
        return -1;
    }
    if (p->lay.st.active.epoch == 0 ||
        (k = rp_keys_first_foreign(ci, argc, argv, owned_cb, &p->lay.st.active)) < 0)
        return 0;
    moved(p, &argv[k], out);
    return -1;
}

bool rp_layout_allows(rp_proxy *p, size_t argc, const kv_arg *argv, dpr_buf *out)
{
    return check(p, argc, argv, false, out) == 0;
}

bool rp_layout_allows_batch(rp_proxy *p, const char *ops, uint32_t count, dpr_buf *out)
{
    if (paused(p)) {
        tryagain(p, out);
        return false;
    }
    if (p->lay.st.active.epoch == 0)
        return true;
    for (uint32_t k = 0; k < count; k++) {
        uint32_t argc = kv_batchops_argc(ops);
        kv_arg av[argc ? argc : 1];
        ops = kv_batchops_args(ops, av);
        if (argc && check(p, argc, av, true, out) < 0)
            return false;
    }
    return true;
}

/* ---- commands ------------------------------------------------------------ */

/* The keys this shard holds that l does not give it (SCAN): >= 0, or -1
 * with err set when Redis cannot be asked (DPR.LAYOUT's host). */
static ssize_t host_count_foreign(void *ud, const kv_layout *l, dpr_err *err)
{
    redisContext *rc = side_connect(err);
    redisReply *r = NULL;
    char cursor[32] = "0";
    ssize_t n = 0;

    (void)ud;
    if (!rc)
        return -1;
    do {
        const redisReply *keys;
        freeReplyObject(r);
        if (scan_page(rc, cursor, sizeof(cursor), &r, &keys, err) < 0) {
            dpr_err_prefix(err, "cannot list the keys");
            n = -1;
            break;
        }
        for (size_t i = 0; i < keys->elements; i++)
            n += !kv_layout_owns(l, keys->element[i]->str, keys->element[i]->len);
    } while (strcmp(cursor, "0") != 0);
    freeReplyObject(r);
    kv_redis_close(rc);
    return n;
}

/* Everything that ran here is in the cut (dpr-kv's kv_dpr_all_committed). */
static bool all_committed(const rp_proxy *p)
{
    return !p->plain_dirty && p->w.open_batches == 0 && p->w.nsealed == 0 && !p->saving &&
           kv_finder_unacked(p->finder) == 0;
}

/* ---- the migration child ------------------------------------------------- */

typedef struct target {
    kv_peer peer;
    bool connected; /* peer was connected (close it) */
    const char **argv;
    size_t *lens;
    size_t argc, bytes;
    dpr_buf vals; /* each key, then its value (ttl + payload), back to back */
} target;

static int target_flush(target *t, rp_migrate_shared *sh)
{
    redisReply *r;
    size_t off = 0;

    if (t->argc <= 2)
        return 0;
    if (dpr_buf_failed(&t->vals))
        return dpr_err_set(&sh->error, -ENOMEM, "out of memory");
    /* keys and values live in t->vals: point at them now that it stops moving */
    for (size_t i = 2; i < t->argc; i++) {
        t->argv[i] = t->vals.data + off;
        off += t->lens[i];
    }
    if (kv_peer_send(&t->peer, (int)t->argc, t->argv, t->lens, &sh->error) < 0 ||
        kv_peer_reply(&t->peer, &r, &sh->error) < 0)
        return -EIO;
    if (r->type != REDIS_REPLY_INTEGER) {
        int e = dpr_err_set(&sh->error, -EREMOTEIO, "%s refused DPR.IMPORT: %.*s",
                            t->peer.addr, r->type == REDIS_REPLY_ERROR ? (int)r->len : 20,
                            r->type == REDIS_REPLY_ERROR ? r->str : "an answer of the wrong type");
        freeReplyObject(r);
        return e;
    }
    sh->keys += (uint64_t)r->integer;
    sh->bytes += t->bytes;
    freeReplyObject(r);
    t->argc = 2;
    t->bytes = 0;
    dpr_buf_reset(&t->vals);
    return 0;
}

static int migrate_key(redisContext *src, target *t, const redisReply *key, rp_migrate_shared *sh)
{
    redisReply *ttl = NULL, *dump = NULL;
    const char *argv[2] = {"PTTL", key->str};
    size_t lens[2] = {4, key->len};
    uint8_t ttl8[8];
    int rc = 0;

    if (redisAppendCommandArgv(src, 2, argv, lens) != REDIS_OK)
        return dpr_err_set(&sh->error, -ENOMEM, "out of memory");
    argv[0] = "DUMP";
    if (redisAppendCommandArgv(src, 2, argv, lens) != REDIS_OK) {
        rc = dpr_err_set(&sh->error, -ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = kv_redis_reply(src, &ttl, &sh->error)) < 0 ||
        (rc = kv_redis_reply(src, &dump, &sh->error)) < 0)
        goto out;
    if (!ttl || ttl->type != REDIS_REPLY_INTEGER || !dump)
        goto out; /* gone meanwhile (expired) */
    if (dump->type != REDIS_REPLY_STRING)
        goto out;
    dpr_put_u64(ttl8, ttl->integer > 0 ? (uint64_t)ttl->integer : 0);
    dpr_buf_append(&t->vals, key->str, key->len);
    dpr_buf_append(&t->vals, RP_IMPORT_MAGIC, RP_IMPORT_MAGIC_LEN);
    dpr_buf_append(&t->vals, ttl8, 8);
    dpr_buf_append(&t->vals, dump->str, dump->len);
    t->lens[t->argc++] = key->len;
    t->lens[t->argc++] = RP_IMPORT_HDR + dump->len;
    t->bytes += key->len + RP_IMPORT_HDR + dump->len;
    if ((t->argc - 2) / 2 >= RP_MIGRATE_BATCH_KEYS || t->bytes >= RP_MIGRATE_BATCH_BYTES)
        rc = target_flush(t, sh);
out:
    freeReplyObject(ttl);
    freeReplyObject(dump);
    return rc;
}

/* The child: every key the pending layout does not give this shard goes
 * to its owner. Returns the exit status. */
static int migrate_child(const kv_layout *to, dpr_tls_ctx *tls, rp_migrate_shared *sh)
{
    target *ts = calloc(to->nshards, sizeof(*ts));
    redisContext *src = side_connect(&sh->error);
    redisReply *r = NULL;
    char cursor[32] = "0", epoch[24];
    int rc = -ENOMEM;

    if (!ts || !src)
        goto out;
    snprintf(epoch, sizeof(epoch), "%" PRIu64, to->epoch);
    do {
        const redisReply *keys;
        if ((rc = scan_page(src, cursor, sizeof(cursor), &r, &keys, &sh->error)) < 0)
            goto out;
        for (size_t i = 0; i < keys->elements; i++) {
            const redisReply *k = keys->element[i];
            if (kv_layout_owns(to, k->str, k->len))
                continue;
            uint32_t o = kv_layout_owner(to, k->str, k->len);
            target *t = &ts[o];
            if (!t->connected) {
                t->connected = true;
                rc = kv_peer_connect(&t->peer, to->addrs[o], tls, RP_MIGRATE_TIMEOUT_MS,
                                     &sh->error);
                if (rc < 0)
                    goto out;
                t->argv = calloc(2 + 2 * RP_MIGRATE_BATCH_KEYS, sizeof(*t->argv));
                t->lens = calloc(2 + 2 * RP_MIGRATE_BATCH_KEYS, sizeof(*t->lens));
                if (!t->argv || !t->lens) {
                    rc = -ENOMEM;
                    goto out;
                }
                t->argv[0] = "DPR.IMPORT";
                t->lens[0] = strlen("DPR.IMPORT");
                t->argv[1] = epoch;
                t->lens[1] = strlen(epoch);
                t->argc = 2;
            }
            rc = migrate_key(src, t, k, sh);
            if (rc < 0)
                goto out;
        }
        freeReplyObject(r);
        r = NULL;
    } while (strcmp(cursor, "0") != 0);
    for (uint32_t i = 0; i < to->nshards; i++)
        if (ts[i].connected && (rc = target_flush(&ts[i], sh)) < 0)
            goto out;
    rc = 0;
out:
    if (rc == -ENOMEM && !sh->error.msg[0])
        dpr_err_set(&sh->error, -ENOMEM, "out of memory");
    freeReplyObject(r);
    kv_redis_close(src);
    return rc < 0 ? 1 : 0;
}

static int migrate_start(rp_proxy *p, dpr_err *err)
{
    rp_layout *l = &p->lay;
    pid_t pid;

    if (!l->shared) {
        l->shared = mmap(NULL, sizeof(*l->shared), PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (l->shared == MAP_FAILED) {
            l->shared = NULL;
            return dpr_err_set(err, -errno, "mmap: %s", strerror(errno));
        }
    }
    memset(l->shared, 0, sizeof(*l->shared));
    pid = fork();
    if (pid < 0)
        return dpr_err_set(err, -errno, "fork: %s", strerror(errno));
    if (pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* a shard that serves TLS only (--port 0) pushes to its peers, TLS
         * only too, over TLS with the finder link's context (--finder-tls:
         * its certificate, the CA), as dpr-kv */
        _exit(migrate_child(&l->st.pending, p->cfg->port == 0 ? p->finder_tls : NULL,
                            l->shared));
    }
    l->mpid = pid;
    l->mstate = RP_MIGRATE_RUNNING;
    l->mepoch = l->st.pending.epoch;
    l->mworld_line = p->w.world_line;
    l->mkeys = l->mbytes = 0;
    l->mstart_ms = dpr_mono_ms();
    l->mend_ms = 0;
    return 0;
}

static void migrate_kill(rp_layout *l)
{
    if (l->mstate != RP_MIGRATE_RUNNING)
        return;
    kill(l->mpid, SIGKILL);
    (void)waitpid(l->mpid, NULL, 0);
    l->mpid = 0;
    l->mstate = RP_MIGRATE_FAILED;
    l->mend_ms = dpr_mono_ms();
    dpr_err_set(&l->merror, -ECANCELED, "stopped: run it again");
}

void rp_layout_reap(rp_proxy *p)
{
    rp_layout *l = &p->lay;
    int status;

    if (l->mstate != RP_MIGRATE_RUNNING || waitpid(l->mpid, &status, WNOHANG) != l->mpid)
        return;
    l->mpid = 0;
    l->mend_ms = dpr_mono_ms();
    l->mkeys = l->shared->keys;
    l->mbytes = l->shared->bytes;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        l->mstate = RP_MIGRATE_DONE;
        log_info("migration to layout %" PRIu64 " done: %" PRIu64 " keys, %" PRIu64 " bytes "
                 "in %" PRIu64 " ms",
                 l->mepoch, l->mkeys, l->mbytes, l->mend_ms - l->mstart_ms);
    } else {
        l->mstate = RP_MIGRATE_FAILED;
        l->merror = l->shared->error;
        if (!l->merror.msg[0])
            dpr_err_set(&l->merror, -EIO, "the migration process ended with status 0x%x", status);
        log_error("migration to layout %" PRIu64 " failed after %" PRIu64 " keys: %s", l->mepoch,
                  l->mkeys, l->merror.msg);
    }
}

void rp_layout_rolled_back(rp_proxy *p)
{
    p->lay.imports_in_flight = 0; /* their slots are gone with Redis' replies */
    if (p->lay.mstate == RP_MIGRATE_RUNNING) {
        migrate_kill(&p->lay);
        dpr_err_set(&p->lay.merror, -ECANCELED, "stopped by a rollback: run it again");
        log_warning("migration to layout %" PRIu64 " stopped by a rollback", p->lay.mepoch);
    }
    purge(p, "after a rollback");
}

/* DPR.LAYOUT: kv_layout_cmd.c's rules on the keys in redis-server */

static kv_layout_migration host_migration(void *ud, uint64_t epoch)
{
    const rp_proxy *p = ud;
    const rp_layout *l = &p->lay;

    if (l->mstate == RP_MIGRATE_RUNNING)
        return KV_LAYOUT_MIGRATION_RUNNING;
    if (l->mstate == RP_MIGRATE_DONE && l->mepoch == epoch && l->mworld_line == p->w.world_line)
        return KV_LAYOUT_MIGRATION_DONE;
    return KV_LAYOUT_MIGRATION_NONE;
}

static bool host_all_committed(void *ud, uint64_t *version, uint64_t *cut)
{
    const rp_proxy *p = ud;

    *version = p->w.version;
    *cut = p->w.cut;
    return all_committed(p);
}

static int host_migrate_start(void *ud, dpr_err *err)
{
    rp_proxy *p = ud;
    int rc = migrate_start(p, err);

    if (rc == 0)
        log_info("migrating keys to layout %" PRIu64 " (process %d)", p->lay.mepoch,
                 (int)p->lay.mpid);
    return rc;
}

/* the purge's SCAN would not see the keys those RESTOREs create */
static bool host_may_abort(void *ud, dpr_buf *out)
{
    const rp_proxy *p = ud;

    if (!p->lay.imports_in_flight)
        return true;
    dpr_resp_errorf(out, "TRYAGAIN %zu imported keys are still being written: retry shortly",
                    p->lay.imports_in_flight);
    return false;
}

static void host_migrate_kill(void *ud)
{
    rp_proxy *p = ud;
    migrate_kill(&p->lay);
}

static ssize_t host_drop_foreign(void *ud, const char *why, dpr_err *err)
{
    size_t dropped;

    if (purge_where(ud, active_owns, false, why, &dropped, err) < 0)
        return -1;
    return (ssize_t)dropped;
}

void rp_layout_cmd(rp_client *c, size_t argc, const kv_arg *argv)
{
    rp_proxy *p = c->p;
    dpr_buf out = DPR_BUF_INIT;
    const kv_layout_host h = {
        .ud = p,
        .st = &p->lay.st,
        .file = LAYOUT_FILE,
        .count_foreign = host_count_foreign,
        .migration = host_migration,
        .all_committed = host_all_committed,
        .migrate_start = host_migrate_start,
        .may_abort = host_may_abort,
        .migrate_kill = host_migrate_kill,
        .drop_foreign = host_drop_foreign,
    };

    kv_layout_cmd(&h, argc, argv, &out);
    rp_local_reply(c, &out, false);
    dpr_buf_free(&out);
}

void rp_layout_cmd_import(rp_client *c, size_t argc, const kv_arg *argv)
{
    rp_proxy *p = c->p;
    const kv_layout *to = &p->lay.st.pending;
    dpr_buf out = DPR_BUF_INIT;
    uint64_t epoch, v;

    if (argc < 4 || argc % 2) {
        rp_local_error(c, "ERR wrong number of arguments for 'dpr.import'");
        return;
    }
    if (kv_layout_epoch_arg(&argv[1], &epoch, &out) < 0)
        goto reply;
    if (to->epoch != epoch) {
        dpr_resp_errorf(&out, "ERR no resize to layout %" PRIu64 " is prepared on this shard",
                        epoch);
        goto reply;
    }
    for (size_t i = 2; i < argc; i += 2) {
        if (!kv_layout_owns(to, argv[i].p, argv[i].n)) {
            dpr_resp_errorf(&out,
                            "ERR key %zu of DPR.IMPORT belongs to shard %" PRIu32
                            " under layout %" PRIu64 ", not to this one",
                            (i - 2) / 2, kv_layout_owner(to, argv[i].p, argv[i].n), epoch);
            goto reply;
        }
    }
    if (p->ckpt_failing) { /* as dpr-kv: an import is a write */
        p->writes_refused_misconf++;
        dpr_resp_error(&out, ERR_MISCONF);
        goto reply;
    }
    (void)dpr_worker_execute(&p->w, NULL, &v); /* untracked, in the open version */
    p->plain_dirty = true;
    free(c->import_err);
    c->import_err = NULL;
    for (size_t i = 2; i < argc; i += 2) {
        const kv_arg *val = &argv[i + 1];
        rp_slot *s = rp_slot_push(p, SLOT_IMPORT, c);
        if (!s) {
            c->out.failed = true; /* the replies cannot be told apart any more */
            return;
        }
        s->count = i + 2 == argc ? (argc - 2) / 2 : 0;
        p->lay.imports_in_flight++;
        if (val->n >= RP_IMPORT_HDR && memcmp(val->p, RP_IMPORT_MAGIC, RP_IMPORT_MAGIC_LEN) == 0) {
            char ttl[24];
            uint64_t ms = dpr_get_u64((const uint8_t *)val->p + RP_IMPORT_MAGIC_LEN);
            snprintf(ttl, sizeof(ttl), "%" PRIu64, ms > INT64_MAX ? (uint64_t)INT64_MAX : ms);
            const char *av[5] = {"RESTORE", argv[i].p, ttl, val->p + RP_IMPORT_HDR, "REPLACE"};
            size_t lens[5] = {7, argv[i].n, strlen(ttl), val->n - RP_IMPORT_HDR, 7};
            rp_redis_command(p, 5, av, lens);
        } else { /* a plain string (dpr-kv's values) */
            const char *av[3] = {"SET", argv[i].p, val->p};
            size_t lens[3] = {3, argv[i].n, val->n};
            rp_redis_command(p, 3, av, lens);
        }
    }
    p->lay.imported += (argc - 2) / 2;
    return;
reply:
    rp_local_reply(c, &out, false);
    dpr_buf_free(&out);
}

void rp_layout_import_reply(rp_slot *s, const char *reply, size_t n)
{
    rp_client *c = s->c;
    dpr_buf b = DPR_BUF_INIT;

    assert(c->p->lay.imports_in_flight > 0);
    c->p->lay.imports_in_flight--;
    if (n && reply[0] == '-' && c && !c->import_err) {
        c->import_err = strndup(reply + 1, n > 3 ? n - 3 : 0);
        if (!c->import_err)
            c->out.failed = true;
    }
    if (!s->count || !c || c->gone)
        return;
    if (c->import_err)
        dpr_resp_errorf(&b, "ERR DPR.IMPORT: redis-server refused a key: %s", c->import_err);
    else
        dpr_resp_uint(&b, s->count);
    free(c->import_err);
    c->import_err = NULL;
    dpr_buf_append(&c->out, b.data, b.len);
    dpr_buf_free(&b);
}

/* ---- INFO ---------------------------------------------------------------- */

void rp_layout_info(rp_proxy *p, dpr_buf *b)
{
    static const char *const states[] = {"none", "running", "done", "failed"};
    const rp_layout *l = &p->lay;
    uint64_t ms = l->mstart_ms ? (l->mend_ms ? l->mend_ms : dpr_mono_ms()) - l->mstart_ms : 0;

    dpr_resp_info_line(b, "dpr_layout_epoch:%" PRIu64, l->st.active.epoch);
    if (l->st.active.epoch && l->st.active.shard != KV_LAYOUT_NO_SHARD)
        dpr_resp_info_line(b, "dpr_layout_shard:%" PRIu32, l->st.active.shard);
    else
        dpr_resp_info_line(b, "dpr_layout_shard:-1");
    dpr_resp_info_line(b, "dpr_layout_shards:%" PRIu32, l->st.active.nshards);
    dpr_resp_info_line(b, "dpr_layout_pending_epoch:%" PRIu64, l->st.pending.epoch);
    dpr_resp_info_line(b, "dpr_layout_paused:%d", paused(p) ? 1 : 0);
    dpr_resp_info_line(b, "dpr_layout_committed:%d", all_committed(p) ? 1 : 0);
    dpr_resp_info_line(b, "dpr_layout_moved:%" PRIu64, l->moved);
    dpr_resp_info_line(b, "dpr_layout_tryagain:%" PRIu64, l->tryagain);
    dpr_resp_info_line(b, "dpr_imported_keys:%" PRIu64, l->imported);
    dpr_resp_info_line(b, "dpr_purged_keys:%" PRIu64, l->purged);
    dpr_resp_info_line(b, "dpr_migrate_state:%s", states[l->mstate]);
    dpr_resp_info_line(b, "dpr_migrate_epoch:%" PRIu64, l->mepoch);
    dpr_resp_info_line(b, "dpr_migrate_world_line:%" PRIu64, l->mworld_line);
    dpr_resp_info_line(b, "dpr_migrate_keys:%" PRIu64, l->mkeys);
    dpr_resp_info_line(b, "dpr_migrate_bytes:%" PRIu64, l->mbytes);
    dpr_resp_info_line(b, "dpr_migrate_ms:%" PRIu64, ms);
    dpr_resp_info_line(b, "dpr_migrate_error:%s",
                       l->mstate == RP_MIGRATE_FAILED ? l->merror.msg : "");
}
