/* kv_dpr.c - checkpoints, reports, the cut, rollback and shutdown (see kv_server.h). */
#include "kv_server.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>

#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "kv_ckpt.h"

static bool dirty(const kv_server *s)
{
    return s->worker.open_batches > 0 || s->writes != s->writes_at_seal;
}

/* Unrecoverable: a sealed version can never become durable, or the state
 * directory cannot be trusted. Exiting lets the cluster recover through a
 * world-line change (systemd restarts us: Restart=on-failure). */
static void fatal(kv_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void fatal(kv_server *s, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_error("fatal: %s", msg);
    sd_notifyf(0, "STATUS=failed: %s\nERRNO=%d", msg, EIO);
    kv_snap_kill_all(&s->snap);
    exit(1);
}

/* --- the list of checkpoint files -------------------------------------- */

int kv_ckpts_add(kv_server *s, uint64_t v)
{
    size_t i = s->nckpts;
    while (i > 0 && s->ckpts[i - 1] >= v) {
        if (s->ckpts[i - 1] == v)
            return 0;
        i--;
    }
    if (s->nckpts == s->ckpts_cap) {
        size_t cap = s->ckpts_cap ? s->ckpts_cap * 2 : 16;
        uint64_t *p = realloc(s->ckpts, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        s->ckpts = p;
        s->ckpts_cap = cap;
    }
    memmove(s->ckpts + i + 1, s->ckpts + i, (s->nckpts - i) * sizeof(*s->ckpts));
    s->ckpts[i] = v;
    s->nckpts++;
    /* the list stays ascending, without duplicates */
    assert(i == 0 || s->ckpts[i - 1] < v);
    assert(i + 1 == s->nckpts || s->ckpts[i + 1] > v);
    return 0;
}

/* Index of the newest checkpoint <= v, or -1. */
static ssize_t newest_at_or_below(const kv_server *s, uint64_t v)
{
    ssize_t i = (ssize_t)s->nckpts - 1;
    while (i >= 0 && s->ckpts[i] > v)
        i--;
    return i;
}

/* Keeps the newest checkpoint <= cut and everything above; deletes the rest. */
static void gc(kv_server *s, uint64_t cut)
{
    ssize_t keep = newest_at_or_below(s, cut);
    size_t n = keep > 0 ? (size_t)keep : 0;

    for (size_t i = 0; i < n; i++) {
        int r = kv_ckpt_remove(s->cfg->dir, s->ckpts[i]);
        if (r < 0)
            log_warning("cannot remove checkpoint %" PRIu64 ": %s", s->ckpts[i], strerror(-r));
    }
    if (n) {
        memmove(s->ckpts, s->ckpts + n, (s->nckpts - n) * sizeof(*s->ckpts));
        s->nckpts -= n;
    }
}

/* --- checkpoints -------------------------------------------------------- */

int kv_dpr_checkpoint(kv_server *s, uint64_t next_version)
{
    uint64_t version = s->worker.version, sealed = 0;
    int r;

    if (kv_snap_jobs(&s->snap) >= KV_SNAP_MAX_JOBS)
        return -EBUSY;
    /* the child's image is the keyspace at this instant: the version boundary */
    r = kv_snap_start(&s->snap, &s->dict, version, s->worker.world_line);
    if (r < 0) {
        s->ckpts_forks_failed++;
        log_error("cannot start checkpoint %" PRIu64 ": fork: %s; retrying", version, strerror(-r));
        return r;
    }
    r = dpr_worker_checkpoint_begin(&s->worker, next_version, &sealed);
    if (r < 0) {
        kv_snap_abort_newest(&s->snap);
        log_error("cannot seal version %" PRIu64 ": %s; retrying", version, strerror(-r));
        return r;
    }
    /* the child's file is labelled `version`: it must be the one sealed */
    assert(sealed == version);
    s->writes_at_seal = s->writes;
    kv_dict_set_resize(&s->dict, false);
    log_debug("checkpoint %" PRIu64 " started; version %" PRIu64 " open", sealed,
              s->worker.version);
    return 0;
}

static void on_ckpt_timer(uv_timer_t *t)
{
    kv_server *s = t->data;
    if (s->stopping || kv_snap_jobs(&s->snap) > 0 || !dirty(s))
        return; /* one periodic checkpoint at a time; nothing new: nothing to do */
    /* open the next version at the cluster's newest one, so batches that
     * depend on other shards rarely force an early seal */
    (void)kv_dpr_checkpoint(s, s->cluster_max + 1);
}

static void describe_status(int status, char *buf, size_t cap)
{
    if (status == -1)
        snprintf(buf, cap, "lost");
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, cap, "exit status %d", WEXITSTATUS(status));
}

void kv_dpr_reap(kv_server *s)
{
    kv_snap_job j;

    kv_snap_reap(&s->snap);
    while (kv_snap_pop(&s->snap, &j)) {
        dpr_worker_report rep;
        int r;
        if (j.state == KV_SNAP_FAILED) {
            char why[64];
            describe_status(j.status, why, sizeof(why));
            fatal(s,
                  "the process writing checkpoint %" PRIu64 " died (%s): that version can "
                  "never become durable",
                  j.version, why);
        }
        s->ckpts_total++;
        s->last_ckpt_version = j.version;
        s->last_ckpt_unix_ms = j.start_ms;
        s->last_ckpt_ms = (j.end_ns - j.start_ns) / 1000000u;
        s->last_fork_usec = j.fork_usec;
        if (kv_ckpts_add(s, j.version) < 0)
            log_warning("out of memory tracking checkpoint %" PRIu64, j.version);
        r = dpr_worker_checkpoint_complete(&s->worker, j.version, &rep);
        if (r < 0) {
            log_warning("checkpoint %" PRIu64 " finished but is not expected (%s)", j.version,
                        strerror(-r));
            continue;
        }
        log_debug("checkpoint %" PRIu64 " durable in %" PRIu64 " ms", j.version, s->last_ckpt_ms);
        r = kv_finder_report(s->finder, &rep);
        if (r < 0) /* a later report covers it (durable = newest reported) */
            log_error("cannot queue the report of checkpoint %" PRIu64 ": %s", j.version,
                      strerror(-r));
    }
    if (kv_snap_jobs(&s->snap) == 0)
        kv_dict_set_resize(&s->dict, true);
    if (s->stopping)
        kv_dpr_shutdown_progress(s);
}

/* --- the finder's answers ----------------------------------------------- */

static void rollback(kv_server *s, uint64_t world_line, uint64_t cut)
{
    char path[PATH_MAX];
    dpr_err err = DPR_ERR_INIT;
    kv_dict fresh;
    kv_ckpt_meta meta;
    ssize_t idx;
    int r;

    log_warning("world-line %" PRIu64 " -> %" PRIu64 ": rolling back to version %" PRIu64
                " (open version was %" PRIu64 ")",
                s->worker.world_line, world_line, cut, s->worker.version);
    if (cut < s->worker.cut)
        fatal(s, "the finder's cut for this worker went back from %" PRIu64 " to %" PRIu64,
              s->worker.cut, cut);
    /* checkpoints being written hold versions above the cut: lost */
    kv_snap_kill_all(&s->snap);
    /* a child may have finished a file that was not collected yet: take the
     * list from the directory, so every file above the cut goes */
    {
        uint64_t *v = NULL;
        size_t n = 0;
        r = kv_ckpt_list(s->cfg->dir, &v, &n);
        if (r < 0)
            fatal(s, "cannot list %s: %s", s->cfg->dir, strerror(-r));
        free(s->ckpts);
        s->ckpts = v;
        s->nckpts = s->ckpts_cap = n;
    }
    kv_dict_init(&fresh, s->dict.seed);
    idx = newest_at_or_below(s, cut);
    if (cut > 0 && idx < 0)
        fatal(s, "cannot roll back to version %" PRIu64 ": no checkpoint at or below it in %s",
              cut, s->cfg->dir);
    if (idx >= 0) {
        uint64_t v = s->ckpts[idx];
        r = kv_ckpt_path(path, sizeof(path), s->cfg->dir, v, 0);
        if (r == 0)
            r = kv_ckpt_load(path, s->cfg->worker, v, &fresh, &meta, &err);
        if (r < 0)
            fatal(s, "cannot roll back to version %" PRIu64 ": %s", cut, dpr_err_str(&err, r));
    }
    /* versions above the cut are lost: their files must never be restored */
    while (s->nckpts > 0 && s->ckpts[s->nckpts - 1] > cut) {
        r = kv_ckpt_remove(s->cfg->dir, s->ckpts[s->nckpts - 1]);
        if (r < 0)
            fatal(s, "cannot remove lost checkpoint %" PRIu64 ": %s", s->ckpts[s->nckpts - 1],
                  strerror(-r));
        s->nckpts--;
    }
    r = dpr_fsync_dir(s->cfg->dir);
    if (r < 0)
        fatal(s, "cannot fsync %s: %s", s->cfg->dir, strerror(-r));
    r = dpr_worker_rollback(&s->worker, world_line, cut);
    if (r < 0)
        fatal(s, "rollback to version %" PRIu64 " refused: %s", cut, strerror(-r));
    kv_dict_swap(&s->dict, &fresh);
    kv_dict_free(&fresh);
    kv_dict_set_resize(&s->dict, true);
    s->writes_at_seal = s->writes;
    kv_finder_drop_old(s->finder, world_line);
    s->rollbacks++;
    log_info("rolled back: world-line %" PRIu64 ", %zu keys, version %" PRIu64 " open", world_line,
             kv_dict_size(&s->dict), s->worker.version);
    kv_dpr_status(s, true);
}

static void on_sync(void *ud, uint64_t world_line, uint64_t max_version, uint64_t cut)
{
    kv_server *s = ud;

    s->syncs++;
    s->finder_world_line = world_line;
    if (max_version > s->cluster_max)
        s->cluster_max = max_version;
    if (world_line > s->worker.world_line) {
        if (!s->stopping)
            rollback(s, world_line, cut);
    } else if (world_line == s->worker.world_line) {
        if (cut > s->worker.cut) {
            dpr_worker_observe_cut(&s->worker, cut);
            gc(s, cut);
        }
    } else {
        log_warning("the finder is on world-line %" PRIu64 ", behind ours (%" PRIu64 ")",
                    world_line, s->worker.world_line);
    }
}

static void on_report_done(void *ud, uint64_t version, bool acked)
{
    kv_server *s = ud;
    if (s->stopping)
        kv_dpr_shutdown_progress(s);
}

static void on_connection(void *ud, bool up)
{
    kv_server *s = ud;
    if (up)
        kv_finder_sync(s->finder);
    kv_dpr_status(s, true);
}

static void on_sync_timer(uv_timer_t *t)
{
    kv_server *s = t->data;
    kv_finder_sync(s->finder);
}

void kv_dpr_sync_now(kv_server *s)
{
    kv_finder_sync(s->finder);
}

/* --- systemd ------------------------------------------------------------ */

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    sd_notify(0, "WATCHDOG=1");
}

void kv_dpr_status(kv_server *s, bool force)
{
    uint64_t now = dpr_mono_ms();
    if (!force && now - s->status_ms < 1000)
        return;
    s->status_ms = now;
    sd_notifyf(0,
               "STATUS=%s on %s: world-line %" PRIu64 ", version %" PRIu64 ", cut %" PRIu64
               ", %zu keys, %zu clients%s",
               s->stopping ? "stopping" : "serving", s->bound, s->worker.world_line,
               s->worker.version, s->worker.cut, kv_dict_size(&s->dict), s->nclients,
               kv_finder_connected(s->finder) ? "" : ", finder unreachable");
}

int kv_dpr_start(kv_server *s)
{
    kv_finder_cb cb = {on_sync, on_report_done, on_connection};
    int r;

    r = kv_finder_new(s->loop, s->cfg->finder, s->cfg->worker, &cb, s, &s->finder);
    if (r < 0)
        return r;
    s->ckpt_timer.data = s;
    s->sync_timer.data = s;
    r = uv_timer_init(s->loop, &s->ckpt_timer);
    if (r == 0)
        r = uv_timer_start(&s->ckpt_timer, on_ckpt_timer, s->cfg->checkpoint_interval_ms,
                           s->cfg->checkpoint_interval_ms);
    if (r == 0)
        r = uv_timer_init(s->loop, &s->sync_timer);
    if (r == 0)
        r = uv_timer_start(&s->sync_timer, on_sync_timer, s->cfg->sync_interval_ms,
                           s->cfg->sync_interval_ms);
    if (r < 0)
        return r;
    if (sd_watchdog_enabled(0, &s->watchdog_usec) > 0 && s->watchdog_usec >= 2000) {
        uint64_t ms = s->watchdog_usec / 2000;
        s->watchdog.data = s;
        r = uv_timer_init(s->loop, &s->watchdog);
        if (r == 0)
            r = uv_timer_start(&s->watchdog, on_watchdog, ms, ms);
        if (r < 0)
            return r;
        log_info("systemd watchdog: pinging every %" PRIu64 " ms", ms);
    }
    log_info("ready: worker %" PRIu64 ", world-line %" PRIu64 ", restored version %" PRIu64
             ", %zu keys",
             s->worker.id, s->worker.world_line, s->restored_version, kv_dict_size(&s->dict));
    sd_notify(0, "READY=1");
    kv_dpr_status(s, true);
    return 0;
}

/* --- shutdown ------------------------------------------------------------ */

static void close_rest(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void finish(kv_server *s, int code)
{
    s->exit_code = code;
    kv_snap_kill_all(&s->snap);
    kv_finder_close(s->finder);
    s->finder = NULL;
    kv_server_close_clients(s);
    uv_walk(s->loop, close_rest, NULL);
}

void kv_dpr_shutdown_progress(kv_server *s)
{
    if (!s->stopping || !s->finder)
        return;
    if (dirty(s) && kv_snap_jobs(&s->snap) < KV_SNAP_MAX_JOBS)
        (void)kv_dpr_checkpoint(s, 0);
    if (!dirty(s) && kv_snap_jobs(&s->snap) == 0 && kv_finder_unacked(s->finder) == 0) {
        log_info("stopped: last checkpoint %" PRIu64 " is durable and reported", s->worker.durable);
        finish(s, 0);
        return;
    }
    if (dpr_mono_ms() > s->stop_deadline_ms) {
        log_error("shutdown timed out: %zu checkpoints in progress, %zu reports not "
                  "acknowledged by the finder",
                  kv_snap_jobs(&s->snap), kv_finder_unacked(s->finder));
        finish(s, 1);
    }
}

void kv_dpr_begin_shutdown(kv_server *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    s->stop_deadline_ms = dpr_mono_ms() + s->cfg->shutdown_timeout_ms;
    sd_notify(0, "STOPPING=1");
    kv_server_stop_listening(s);
    kv_server_close_clients(s);
    kv_dpr_status(s, true);
    kv_dpr_shutdown_progress(s);
}
