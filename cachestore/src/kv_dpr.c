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
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>

#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/msgid.h"
#include "kv_chain.h"
#include "kv_ckpt.h"
#include "kv_resize.h"
#include "kv_tls.h"

static bool dirty(const kv_server *s)
{
    return s->worker.open_batches > 0 || s->writes != s->writes_at_seal;
}

bool kv_dpr_all_committed(const kv_server *s)
{
    return !dirty(s) && s->worker.nsealed == 0 && kv_dpr_pending(s) == 0;
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

/* Keeps what a restore of any version >= cut needs: the chain of the newest
 * checkpoint <= cut and everything above (kv_chain_prunable); deletes the
 * rest. */
static void gc(kv_server *s, uint64_t cut)
{
    kv_chain_file *f = NULL;
    dpr_err err = DPR_ERR_INIT;
    size_t n = 0;
    int r;

    if (newest_at_or_below(s, cut) <= 0)
        return; /* nothing below the newest file <= cut */
    r = kv_chain_scan(s->cfg->dir, s->cfg->worker, s->ckpts, s->nckpts, &f, &err);
    if (r < 0) {
        log_warning("cannot collect old checkpoints: %s", dpr_err_str(&err, r));
        return;
    }
    n = kv_chain_prunable(f, s->nckpts, cut);
    free(f);
    for (size_t i = 0; i < n; i++) {
        r = kv_ckpt_remove(s->cfg->dir, s->ckpts[i]);
        if (r < 0)
            log_warning("cannot remove checkpoint %" PRIu64 ": %s", s->ckpts[i], strerror(-r));
    }
    if (n) {
        memmove(s->ckpts, s->ckpts + n, (s->nckpts - n) * sizeof(*s->ckpts));
        s->nckpts -= n;
    }
}

/* --- checkpoints -------------------------------------------------------- */

/* --checkpoint-log: must this seal write a full image instead of a change
 * log? Only when the log has a hole (it ran out of memory). */
static bool need_full(const kv_server *s)
{
    return !s->cfg->checkpoint_log || dpr_buf_failed(&s->log.buf);
}

/* Is a compaction due: do the change logs since the newest full image (or
 * the newest compaction started) add up to half the data? Then a restore
 * would read more change log than full image. */
static bool compaction_due(const kv_server *s)
{
    uint64_t limit = kv_dict_memory(&s->dict) / 2;

    if (s->compact_pid || s->compact_ready)
        return false; /* one at a time */
    if (limit < s->cfg->compact_bytes)
        limit = s->cfg->compact_bytes;
    return s->log_bytes_since_full >= limit;
}

static uint64_t file_size(const kv_server *s, uint64_t version)
{
    char path[PATH_MAX];
    struct stat st;

    if (kv_ckpt_path(path, sizeof(path), s->cfg->dir, version, 0) < 0 || stat(path, &st) < 0)
        return 0;
    return (uint64_t)st.st_size;
}

/* Forgets the compaction (killed, failed, or no longer wanted) and its file. */
static void compaction_drop(kv_server *s)
{
    if (s->compact_pid) {
        kill(s->compact_pid, SIGKILL);
        while (waitpid(s->compact_pid, NULL, 0) < 0 && errno == EINTR)
            ;
        s->compact_pid = 0;
    }
    if (s->compact_version)
        (void)kv_ckpt_remove_compaction(s->cfg->dir, s->compact_version);
    s->compact_ready = false;
    s->compact_version = 0;
}

/* A compaction child ended, or its version's change log is on disk: once
 * both, the full image replaces the change log (same version, same
 * keyspace), and garbage collection can drop the chain before it once the
 * cut passes it. A failure is not fatal: the chain is whole without it. */
static void compaction_progress(kv_server *s)
{
    dpr_err err = DPR_ERR_INIT;
    int status = 0, r;
    bool present = false;

    if (s->compact_pid) {
        pid_t p = waitpid(s->compact_pid, &status, WNOHANG);
        if (p == 0 || (p < 0 && errno == EINTR))
            return;
        s->compact_pid = 0;
        if (p < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            s->compactions_failed++;
            log_warning("compaction of version %" PRIu64 " failed; the change logs stay (it "
                        "is tried again later)", s->compact_version);
            compaction_drop(s);
            return;
        }
        s->compact_ready = true;
    }
    if (!s->compact_ready || s->worker.durable < s->compact_version)
        return;
    for (size_t i = 0; i < s->nckpts; i++)
        present |= s->ckpts[i] == s->compact_version;
    if (!present) { /* (collected meanwhile: never bring a file back) */
        compaction_drop(s);
        return;
    }
    r = kv_ckpt_install_compaction(s->cfg->dir, s->compact_version, &err);
    if (r < 0) {
        s->compactions_failed++;
        log_warning("cannot install the compaction of version %" PRIu64 ": %s",
                    s->compact_version, dpr_err_str(&err, r));
        compaction_drop(s);
        return;
    }
    s->compactions++;
    s->ckpt_bytes_written += file_size(s, s->compact_version);
    log_info("compacted: checkpoint %" PRIu64 " is a full image now", s->compact_version);
    /* the replica nodes hold its change log: a full image lets them prune */
    if (s->recopy && kv_replica_ship(s->recopy, s->compact_version) < 0)
        log_warning("cannot ask for the copies of compacted checkpoint %" PRIu64 ": out of "
                    "memory (the replica nodes keep its change log)", s->compact_version);
    s->compact_ready = false;
    s->compact_version = 0;
    /* (the cut may not move again soon, e.g. an idle worker's: the chain
     * before the image goes now) */
    gc(s, s->worker.cut);
}

/* Forks a child writing a full image of the keyspace, which must be
 * exactly version `version` (it replaces that version's change log). A
 * failure to fork is not fatal: the chain is whole without it. */
static void compaction_start(kv_server *s, uint64_t version)
{
    int r = kv_snap_compact(&s->snap, &s->dict, version, s->worker.world_line, s->worker.cut,
                            &s->compact_pid);

    if (r < 0) {
        log_warning("cannot start the compaction of version %" PRIu64 ": fork: %s", version,
                    strerror(-r));
        return;
    }
    s->compact_version = version;
    s->log_bytes_since_full = 0;
    kv_dict_set_resize(&s->dict, false);
}

/* Seals the open version as a change log: the log's buffer moves to the
 * writer (kv_logw.c); the loop does nothing proportional to the data. */
static int checkpoint_log(kv_server *s, uint64_t next_version, kv_logw_job *j)
{
    uint64_t version = s->worker.version, sealed = 0;
    kv_ckpt_meta m = {s->worker.id, s->worker.world_line, version, 0, dpr_wall_ms(),
                      s->worker.cut, true, s->last_file};
    int r = dpr_worker_checkpoint_begin(&s->worker, next_version, &sealed);

    if (r < 0) {
        kv_logw_job_free(j);
        log_error("cannot seal version %" PRIu64 ": %s; retrying", version, strerror(-r));
        return r;
    }
    /* the log holds exactly the writes since the previous file, whose
     * version is below this one */
    assert(sealed == version && m.base < version);
    s->log_bytes_since_full += s->log.buf.len;
    kv_logw_submit(&s->logw, j, &m, &s->log);
    s->last_file = version;
    s->last_log_seal_ms = dpr_mono_ms();
    /* the keyspace is exactly version `version` now: a compaction child's
     * image of it will replace the change log, the commit does not wait */
    if (compaction_due(s))
        compaction_start(s, version);
    return 0;
}

/* An idle worker's chain: the change logs since its newest full image
 * would stay until writes bring the next compaction. Once no change log
 * was sealed for IDLE_COMPACT_MS (at least 50 intervals) and nothing
 * changed since the newest file, that file's version (exactly the
 * keyspace now) is compacted: once the cut passes it, the worker keeps one
 * full image. */
#define IDLE_COMPACT_MS 5000

static void compact_idle(kv_server *s)
{
    uint64_t idle_ms = 50 * (uint64_t)s->cfg->checkpoint_interval_ms;

    if (idle_ms < IDLE_COMPACT_MS)
        idle_ms = IDLE_COMPACT_MS;
    if (!s->cfg->checkpoint_log || s->log_bytes_since_full == 0 || s->log.buf.len > 0 ||
        dirty(s) || s->compact_pid || s->compact_ready || s->last_file == 0 ||
        dpr_mono_ms() - s->last_log_seal_ms < idle_ms)
        return;
    log_info("idle: compacting checkpoint %" PRIu64 " (%" PRIu64 " change-log bytes since the "
             "last full image)", s->last_file, s->log_bytes_since_full);
    compaction_start(s, s->last_file);
}

int kv_dpr_checkpoint(kv_server *s, uint64_t next_version)
{
    uint64_t version = s->worker.version, sealed = 0;
    kv_logw_job *j = NULL;
    int r;

    /* while a checkpoint fails, no other is started: it could not complete
     * before the failing one, and would compete for the same disk */
    if (kv_dpr_pending(s) >= KV_SNAP_MAX_JOBS || kv_snap_failing(&s->snap, NULL) ||
        kv_logw_failing(&s->logw, NULL))
        return -EBUSY;
    if (!need_full(s) && (j = kv_logw_job_new())) {
        r = checkpoint_log(s, next_version, j);
        goto sealed;
    }
    /* the child's image is the keyspace at this instant: the version boundary */
    r = kv_snap_start(&s->snap, &s->dict, version, s->worker.world_line, s->worker.cut);
    if (r < 0) {
        s->ckpts_forks_failed++;
        if (!s->fork_failing)
            log_error("cannot start checkpoint %" PRIu64 ": fork: %s; retrying", version,
                      strerror(-r));
        s->fork_failing = true;
        dpr_err_set(&s->fork_error, r, "cannot start checkpoint %" PRIu64 ": fork: %s", version,
                    strerror(-r));
        kv_dpr_check_failing(s);
        return r;
    }
    s->fork_failing = false;
    r = dpr_worker_checkpoint_begin(&s->worker, next_version, &sealed);
    if (r < 0) {
        kv_snap_abort_newest(&s->snap);
        log_error("cannot seal version %" PRIu64 ": %s; retrying", version, strerror(-r));
        return r;
    }
    /* the child's file is labelled `version`: it must be the one sealed */
    assert(sealed == version);
    /* a full image holds every change so far: the next change log starts on it */
    s->last_file = version;
    s->log_bytes_since_full = 0;
    kv_ckpt_log_reset(&s->log);
    kv_dict_set_resize(&s->dict, false);
sealed:
    if (r < 0)
        return r;
    s->writes_at_seal = s->writes;
    if (s->worker.cut > s->committed_sealed)
        s->committed_sealed = s->worker.cut;
    log_debug("checkpoint %" PRIu64 " started (%s); version %" PRIu64 " open", version,
              j ? "change log" : "full image", s->worker.version);
    return 0;
}

static void on_ckpt_timer(uv_timer_t *t)
{
    kv_server *s = t->data;
    /* A checkpoint records the cut known when it was sealed (kv_ckpt.h,
     * `committed`): start-up compares it with the finder's, to tell a finder
     * that lost its state. Once this worker has something committed, some
     * file on disk must say so: an idle worker whose only checkpoint was
     * sealed before its first commit takes one more, once. */
    bool record = s->worker.cut > 0 && s->committed_sealed == 0;

    if (s->stopping || kv_dpr_pending(s) > 0)
        return; /* one periodic checkpoint at a time */
    if (!(dirty(s) || record)) {
        compact_idle(s); /* nothing new */
        return;
    }
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

/* Checkpoint `version` is on disk (file renamed, directory fsynced): count
 * it, report it (in a cluster: once copied). */
static void completed(kv_server *s, uint64_t version, uint64_t start_ms, uint64_t start_ns,
                      uint64_t end_ns, uint64_t fork_usec, uint64_t bytes, bool full)
{
    dpr_worker_report rep;
    int r;

    s->ckpts_total++;
    if (full)
        s->ckpts_full++;
    else
        s->ckpts_log++;
    s->ckpt_bytes_written += bytes;
    s->last_ckpt_version = version;
    s->last_ckpt_unix_ms = start_ms;
    s->last_ckpt_ms = (end_ns - start_ns) / 1000000u;
    dpr_histogram_observe(&s->ckpt_seconds, (double)(end_ns - start_ns) / 1e9);
    s->last_fork_usec = fork_usec;
    if (kv_ckpts_add(s, version) < 0)
        log_warning("out of memory tracking checkpoint %" PRIu64, version);
    r = dpr_worker_checkpoint_complete(&s->worker, version, &rep);
    if (r < 0) {
        log_warning("checkpoint %" PRIu64 " finished but is not expected (%s)", version,
                    strerror(-r));
        return;
    }
    log_debug("checkpoint %" PRIu64 " durable in %" PRIu64 " ms", version, s->last_ckpt_ms);
    r = kv_finder_report(s->finder, &rep);
    if (r < 0) /* a later report covers it (durable = newest reported) */
        log_error("cannot queue the report of checkpoint %" PRIu64 ": %s", version,
                  strerror(-r));
    /* in a cluster the report waits for the copies on other nodes */
    if (r == 0 && s->replica && kv_replica_ship(s->replica, version) < 0)
        log_error("cannot ask for the copies of checkpoint %" PRIu64 ": out of memory",
                  version);
}


/* Completes finished checkpoints in seal (= version) order, whichever kind
 * they are: full images from snapshot children, change logs from the
 * writer. */
void kv_dpr_reap(kv_server *s)
{
    kv_snap_reap(&s->snap);
    compaction_progress(s);
    for (;;) {
        uint64_t lv = 0;
        bool has_log = kv_logw_head(&s->logw, &lv), has_snap = kv_snap_jobs(&s->snap) > 0;
        if (!has_log && !has_snap)
            break;
        if (has_snap && (!has_log || s->snap.jobs[0].version < lv)) {
            kv_snap_job j;
            if (!kv_snap_pop(&s->snap, &j))
                break;
            if (j.state == KV_SNAP_FAILED) {
                char why[64];
                describe_status(j.status, why, sizeof(why));
                fatal(s,
                      "the process writing checkpoint %" PRIu64 " died (%s): that version can "
                      "never become durable",
                      j.version, why);
            }
            completed(s, j.version, j.start_ms, j.start_ns, j.end_ns, j.fork_usec,
                      file_size(s, j.version), true);
        } else {
            kv_logw_job *j = kv_logw_pop(&s->logw);
            if (!j)
                break;
            completed(s, j->meta.version, j->meta.created_ms, j->start_ns, j->end_ns, 0,
                      j->bytes, false);
            kv_logw_job_free(j);
        }
    }
    compaction_progress(s);
    if (kv_snap_jobs(&s->snap) == 0 && !s->compact_pid)
        kv_dict_set_resize(&s->dict, true);
    kv_dpr_check_failing(s);
    if (s->stopping)
        kv_dpr_shutdown_progress(s);
}

static void on_logw_done(void *ud)
{
    kv_dpr_reap(ud);
}

int kv_dpr_logw_init(kv_server *s)
{
    return kv_logw_init(&s->logw, s->loop, s->cfg->dir, s->cfg->checkpoint_interval_ms,
                        on_logw_done, s);
}

/* --- checkpoints failing: writes refused (like Redis'
 * stop-writes-on-bgsave-error) ------------------------------------------ */

void kv_dpr_failing_reason(const kv_server *s, dpr_err *why)
{
    if (kv_logw_failing(&s->logw, NULL))
        (void)kv_logw_failures(&s->logw, why);
    else if (kv_snap_failing(&s->snap, NULL) || !s->fork_failing)
        (void)kv_snap_failures(&s->snap, why);
    else
        *why = s->fork_error;
    if (!why->msg[0])
        dpr_err_set(why, -EIO, "unknown error");
}

void kv_dpr_check_failing(kv_server *s)
{
    uint64_t v = s->worker.version;
    bool failing = kv_snap_failing(&s->snap, &v) || kv_logw_failing(&s->logw, &v) ||
                   s->fork_failing;
    dpr_err last;
    const char *fields[2] = {NULL, NULL};

    if (failing == s->ckpt_failing)
        return;
    s->ckpt_failing = failing;
    kv_dpr_failing_reason(s, &last);
    if (failing) {
        s->ckpt_failing_version = v;
        fields[0] = DPR_MSGID_FIELD(DPR_MSGID_CHECKPOINT_FAILING);
        dpr_log_fields(DPR_LOG_ERR, fields,
                       "checkpoints failing: %s; refusing writes (MISCONF) until checkpoint "
                       "%" PRIu64 " is on disk, serving reads",
                       last.msg, v);
    } else {
        fields[0] = DPR_MSGID_FIELD(DPR_MSGID_CHECKPOINT_RECOVERED);
        dpr_log_fields(DPR_LOG_NOTICE, fields,
                       "checkpoints written again (checkpoint %" PRIu64 " done); accepting writes",
                       s->ckpt_failing_version);
    }
    kv_dpr_status(s, true);
}

/* --- the finder does not know this worker --------------------------------- */

void kv_dpr_finder_knows(kv_server *s, const char *why_not)
{
    const char *fields[2] = {DPR_MSGID_FIELD(DPR_MSGID_FINDER_LOST_WORKER), NULL};

    if (why_not && !s->finder_lost) {
        s->finder_lost = true;
        dpr_err_set(&s->finder_lost_why, -ENOENT, "%s", why_not);
        dpr_log_fields(DPR_LOG_ERR, fields,
                       "commits stopped: finder %s does not know worker %" PRIu64
                       " of domain %s (its state was lost?): %s. Serving reads and writes, but "
                       "nothing commits; see docs/operations.md, \"The finder's state was lost\"",
                       s->cfg->finder, s->worker.id, s->cfg->domain, why_not);
        kv_dpr_status(s, true);
    } else if (why_not) {
        dpr_err_set(&s->finder_lost_why, -ENOENT, "%s", why_not);
    } else if (s->finder_lost) {
        s->finder_lost = false;
        log_notice("finder %s knows worker %" PRIu64 " again: commits resume", s->cfg->finder,
                   s->worker.id);
        kv_dpr_status(s, true);
    }
}

/* What a DPR.SYNC answer shows about the finder's knowledge of this worker:
 * a finder behind our world-line, or with a cut for us below one it
 * announced before (a cut never goes back), has lost or replaced its state. */
static void sync_evidence(kv_server *s, uint64_t world_line, uint64_t cut)
{
    char why[160];

    if (world_line < s->worker.world_line) {
        snprintf(why, sizeof(why), "it is on world-line %" PRIu64 ", behind this worker's %" PRIu64,
                 world_line, s->worker.world_line);
    } else if (cut < s->worker.cut) {
        snprintf(why, sizeof(why),
                 "its cut for this worker is %" PRIu64 ", below version %" PRIu64
                 " it committed before",
                 cut, s->worker.cut);
    } else {
        s->finder_lost_sync = false;
        if (!s->finder_lost_report)
            kv_dpr_finder_knows(s, NULL);
        return;
    }
    s->finder_lost_sync = true;
    kv_dpr_finder_knows(s, why);
}

/* --- the finder's answers ----------------------------------------------- */

static void rollback(kv_server *s, uint64_t world_line, uint64_t cut)
{
    dpr_err err = DPR_ERR_INIT;
    kv_dict fresh;
    kv_ckpt_meta meta;
    ssize_t idx;
    int r;

    if (cut < s->worker.cut) {
        /* a cut never goes back: this finder lost (or replaced) the state
         * that committed our versions. Rolling back would destroy committed
         * data on its word: keep serving, loudly, and never commit. */
        char why[200];
        snprintf(why, sizeof(why),
                 "it moved to world-line %" PRIu64 " with cut %" PRIu64
                 " for this worker, below version %" PRIu64 " it committed before; not rolling "
                 "back",
                 world_line, cut, s->worker.cut);
        s->finder_lost_sync = true;
        kv_dpr_finder_knows(s, why);
        return;
    }
    log_warning("world-line %" PRIu64 " -> %" PRIu64 ": rolling back to version %" PRIu64
                " (open version was %" PRIu64 ")",
                s->worker.world_line, world_line, cut, s->worker.version);
    /* checkpoints being written hold versions above the cut: lost, and so
     * are the open version's changes */
    kv_snap_kill_all(&s->snap);
    kv_logw_drop_all(&s->logw);
    kv_ckpt_log_reset(&s->log);
    compaction_drop(s);
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
    memset(&meta, 0, sizeof(meta));
    idx = newest_at_or_below(s, cut);
    if (cut > 0 && idx < 0)
        fatal(s, "cannot roll back to version %" PRIu64 ": no checkpoint at or below it in %s",
              cut, s->cfg->dir);
    if (idx >= 0) {
        /* the newest checkpoint <= cut, built from its full image and the
         * change logs after it (kv_chain.h) */
        kv_chain_file *f = NULL;
        r = kv_chain_scan(s->cfg->dir, s->cfg->worker, s->ckpts, (size_t)idx + 1, &f, &err);
        if (r == 0)
            r = kv_chain_check(f, (size_t)idx + 1, s->cfg->dir, &err);
        if (r == 0)
            r = kv_chain_restore(s->cfg->dir, s->cfg->worker, f, (size_t)idx + 1, (size_t)idx,
                                 &fresh, &meta, &err);
        free(f);
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
    /* the next change log applies to the newest file left */
    s->last_file = s->nckpts ? s->ckpts[s->nckpts - 1] : 0;
    s->log_bytes_since_full = 0;
    r = dpr_worker_rollback(&s->worker, world_line, cut);
    if (r < 0)
        fatal(s, "rollback to version %" PRIu64 " refused: %s", cut, strerror(-r));
    kv_dict_swap(&s->dict, &fresh);
    kv_dict_free(&fresh);
    kv_dict_set_resize(&s->dict, true);
    s->writes_at_seal = s->writes;
    s->committed_sealed = meta.committed; /* of the checkpoint now newest on disk */
    kv_finder_drop_old(s->finder, world_line);
    if (s->replica) /* (their files are gone: no copies of them) */
        kv_replica_drop_above(s->replica, cut);
    if (s->recopy)
        kv_replica_drop_above(s->recopy, cut);
    kv_resize_rolled_back(s); /* the checkpoint may predate a committed resize */
    s->rollbacks++;
    log_info("rolled back: world-line %" PRIu64 ", %zu keys, version %" PRIu64 " open", world_line,
             kv_dict_size(&s->dict), s->worker.version);
    kv_dpr_status(s, true);
}

static void on_sync(void *ud, const kv_sync *sync)
{
    kv_server *s = ud;
    uint64_t world_line = sync->world_line, max_version = sync->max_version, cut = sync->cut;

    /* the domain's workers, for checking batches (kv_server.c, batch_check) */
    if (kv_server_set_workers(s, sync->workers, sync->nworkers, sync->at_ms) < 0)
        log_warning("out of memory keeping the finder's %zu workers; keeping the old list",
                    sync->nworkers);
    s->syncs++;
    s->finder_world_line = world_line;
    if (world_line <= s->worker.world_line)
        sync_evidence(s, world_line, world_line == s->worker.world_line ? cut : 0);
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

/* DPR.SYNC got an error: "ERR unknown domain" means the finder lost this
 * worker's domain (its state was lost or replaced), which stops commits as
 * an unknown worker does; a DPR.SYNC answer without such evidence ends it
 * (sync_evidence). Other errors teach nothing (kv_finder.c logs them). */
static void on_sync_refused(void *ud, const char *error)
{
    kv_server *s = ud;
    char why[300];

    if (!kv_finder_error_lost_worker(error))
        return;
    snprintf(why, sizeof(why), "it refused DPR.SYNC: %s", error);
    s->finder_lost_sync = true;
    kv_dpr_finder_knows(s, why);
}

static void on_report_done(void *ud, uint64_t version, bool acked, const char *error)
{
    kv_server *s = ud;

    if (acked) {
        s->finder_lost_report = false;
        if (!s->finder_lost_sync)
            kv_dpr_finder_knows(s, NULL);
    } else {
        s->reports_refused++;
        if (kv_finder_error_lost_worker(error)) {
            char why[300];
            snprintf(why, sizeof(why), "it refused the report of checkpoint %" PRIu64 ": %s",
                     version, error);
            s->finder_lost_report = true;
            kv_dpr_finder_knows(s, why);
        }
    }
    if (s->stopping)
        kv_dpr_shutdown_progress(s);
}

static void finish(kv_server *s, int code);

/* The finder fenced this incarnation: the cluster moved this worker to
 * another node and gave its record a new token, so another incarnation
 * serves it now. Whatever this one still holds is no longer the worker's:
 * stop serving at once (no last checkpoint: nobody may count on it) and
 * exit so that systemd does not restart it (the unit's
 * RestartPreventExitStatus=). */
static void on_fenced(void *ud, const char *why)
{
    kv_server *s = ud;
    const char *fields[] = {DPR_MSGID_FIELD(DPR_MSGID_FENCED), NULL};

    dpr_log_fields(DPR_LOG_ERR, fields,
                   "fenced: worker %" PRIu64 " of domain %s belongs to another incarnation "
                   "now (it was moved to another node): the finder answered \"%s\"; "
                   "stopping, not to be restarted",
                   s->worker.id, s->cfg->domain, why);
    sd_notifyf(0, "STATUS=failed: fenced: worker %" PRIu64 " was moved to another node (the "
               "finder refuses this incarnation)\nERRNO=%d", s->worker.id, EACCES);
    if (!s->stopping) {
        s->stopping = true;
        sd_notify(0, "STOPPING=1");
    }
    finish(s, KV_EXIT_NO_RESTART);
}

/* After "not in the cut yet": the next DPR.WORKER.LEAVE (the cut moves with
 * the other workers' checkpoints). */
#define LEAVE_RETRY_MS 50

/* The answer to DPR.WORKER.LEAVE (a planned stop). Refused because the
 * last checkpoint is not in the cut yet: asked again LEAVE_RETRY_MS later
 * (from the cron). Refused for another reason (a finder from before the command, a
 * worker it does not know): no planned stop, the next start rolls back. */
static void on_leave(void *ud, bool ok, const char *error)
{
    kv_server *s = ud;

    if (ok) {
        s->left = true;
        log_info("left the finder on purpose: worker %" PRIu64 " of domain %s, last checkpoint "
                 "%" PRIu64 " committed; the next start resumes world-line %" PRIu64
                 " without a rollback",
                 s->worker.id, s->cfg->domain, s->worker.durable, s->worker.world_line);
    } else if (error && strstr(error, "not in the cut yet")) {
        log_debug("finder: DPR.WORKER.LEAVE: %s; asking again", error);
        s->leave_next_ms = dpr_mono_ms() + LEAVE_RETRY_MS;
        kv_finder_sync(s->finder); /* learn the cut meanwhile */
        return;
    } else {
        s->leave_failed = true;
        log_warning("the finder refused DPR.WORKER.LEAVE (%s): stopping without it; the next "
                    "start is a crash restart (a rollback of the domain)",
                    error ? error : "unexpected reply");
    }
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
    if (s->finder) /* (none once a planned stop is over) */
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
    char state[600], *p = state;
    size_t room = sizeof(state);
    dpr_err last;
    int n;

    if (!force && now - s->status_ms < 1000)
        return;
    s->status_ms = now;
    /* the first words say the state (docs/dpr-kv.md, "systemd"): the agent
     * shows them */
    if (s->stopping) {
        n = snprintf(p, room, "stopping on %s:", s->ports.bound);
    } else if (s->ckpt_failing) {
        kv_dpr_failing_reason(s, &last);
        n = snprintf(p, room,
                     "refusing writes: checkpoints failing: %s; serving reads on %s:", last.msg,
                     s->ports.bound);
    } else if (s->finder_lost) {
        n = snprintf(p, room,
                     "commits stopped: the finder does not know this worker (its state was "
                     "lost?): %s; serving on %s:",
                     s->finder_lost_why.msg, s->ports.bound);
    } else {
        n = snprintf(p, room, "serving on %s:", s->ports.bound);
    }
    if (n < 0 || (size_t)n >= room)
        n = (int)room - 1;
    p += n;
    room -= (size_t)n;
    snprintf(p, room,
             " domain %s, world-line %" PRIu64 ", version %" PRIu64 ", cut %" PRIu64 ", %zu keys, "
             "%zu clients%s%s",
             s->cfg->domain, s->worker.world_line, s->worker.version, s->worker.cut,
             kv_dict_size(&s->dict),
             s->nclients,
             s->finder && kv_finder_connected(s->finder) ? "" : ", finder unreachable",
             s->cfg->maxmemory && kv_server_memory_estimate(s) > s->cfg->maxmemory
                 ? ", used memory above maxmemory: writes refused (OOM)"
                 : "");
    sd_notifyf(0, "STATUS=%s", state);
}

static void on_copied(void *ud, uint64_t version)
{
    kv_server *s = ud;

    kv_finder_release(s->finder, version);
}

int kv_dpr_start(kv_server *s)
{
    kv_finder_cb cb = {on_sync, on_report_done, on_sync_refused, on_connection, on_fenced,
                       on_leave};
    dpr_tls_config tc;
    const dpr_tls_config *tls = kv_tls_finder(s->cfg, &tc);
    dpr_err err = DPR_ERR_INIT;
    int r;

    if (tls) {
        r = dpr_tls_ctx_new(tls, false, &s->finder_tls, &err);
        if (r < 0) {
            log_error("--finder-tls: %s", dpr_err_str(&err, r));
            return r;
        }
    }
    r = kv_finder_new(s->loop, s->cfg->finder, s->finder_tls, s->cfg->domain, s->cfg->worker,
                      s->cfg->finder_token, &cb, s, &s->finder);
    if (r < 0)
        return r;
    if (s->cfg->replica_socket[0]) {
        kv_replica_config rc = { s->cfg->replica_socket, s->cfg->instance,
                                 s->cfg->finder_token, s->cfg->dir, false };
        r = kv_replica_new(s->loop, &rc, on_copied, s, &s->replica);
        if (r < 0)
            return r;
        if (s->cfg->checkpoint_log) {
            rc.again = true;
            r = kv_replica_new(s->loop, &rc, NULL, NULL, &s->recopy);
            if (r < 0)
                return r;
            kv_replica_follow(s->replica, s->recopy);
        }
        kv_finder_hold(s->finder);
        log_info("checkpoints are reported once the agent copied them to the replica nodes "
                 "(%s)", s->cfg->replica_socket);
    }
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
    log_info("ready: worker %" PRIu64 " of domain %s, world-line %" PRIu64 ", restored version "
             "%" PRIu64 ", %zu keys",
             s->worker.id, s->cfg->domain, s->worker.world_line, s->restored_version,
             kv_dict_size(&s->dict));
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

/* The finder link and the checkpoint copies to a replica node. */
static void close_links(kv_server *s)
{
    kv_finder_close(s->finder);
    s->finder = NULL;
    dpr_tls_ctx_free(s->finder_tls); /* (its connection holds its own reference) */
    s->finder_tls = NULL;
    kv_replica_close(s->replica);
    s->replica = NULL;
    kv_replica_close(s->recopy);
    s->recopy = NULL;
}

static void finish(kv_server *s, int code)
{
    s->exit_code = code;
    kv_snap_kill_all(&s->snap);
    kv_logw_close(&s->logw);
    close_links(s);
    kv_server_close_clients(s);
    kv_metrics_stop(s);
    uv_walk(s->loop, close_rest, NULL);
}

/* The end of a planned stop: the last replies go out before the exit
 * (kv_server_drain_clients), for at most DRAIN_MS. */
#define DRAIN_MS 1000

static void finish_planned(kv_server *s)
{
    s->exit_code = 0;
    uv_timer_stop(&s->sync_timer); /* no finder from here on */
    uv_timer_stop(&s->ckpt_timer);
    close_links(s);
    s->draining = true;
    s->drain_deadline_ms = dpr_mono_ms() + DRAIN_MS;
    kv_dpr_shutdown_progress(s);
}

void kv_dpr_shutdown_progress(kv_server *s)
{
    if (s->draining) {
        kv_server_drain_clients(s, dpr_mono_ms() > s->drain_deadline_ms - DRAIN_MS / 2);
        if (s->nclients == 0 || dpr_mono_ms() > s->drain_deadline_ms) {
            kv_server_close_clients(s);
            kv_metrics_stop(s);
            uv_walk(s->loop, close_rest, NULL);
        }
        return;
    }
    if (!s->stopping || !s->finder)
        return;
    if (dirty(s) && kv_dpr_pending(s) < KV_SNAP_MAX_JOBS)
        (void)kv_dpr_checkpoint(s, 0);
    if (!dirty(s) && kv_dpr_pending(s) == 0 && kv_finder_unacked(s->finder) == 0) {
        if (s->left || s->leave_failed) {
            log_info("stopped: last checkpoint %" PRIu64 " is durable and reported%s (%" PRIu64
                     " batches answered TRYAGAIN meanwhile)",
                     s->worker.durable, s->left ? ", and the finder knows this worker left on "
                                                  "purpose" : "",
                     s->batches_refused_stopping);
            finish_planned(s);
            return;
        }
        /* the finder refuses it until that checkpoint is in the cut; and
         * not before every batch that ran has its reply written
         * (kv_server_replies_written) */
        if (dpr_mono_ms() >= s->leave_next_ms && kv_server_replies_written(s))
            kv_finder_leave(s->finder);
    }
    if (dpr_mono_ms() > s->stop_deadline_ms) {
        if (kv_dpr_pending(s) == 0 && kv_finder_unacked(s->finder) == 0 && !dirty(s)) {
            log_warning("shutdown timed out before the finder took DPR.WORKER.LEAVE (the last "
                        "checkpoint %" PRIu64 " is durable and reported, but not in the cut "
                        "yet): the next start is a crash restart (a rollback of the domain, "
                        "nothing committed lost)", s->worker.durable);
            finish_planned(s);
            return;
        }
        log_error("shutdown timed out: %zu checkpoints in progress, %zu reports not "
                  "acknowledged by the finder",
                  kv_dpr_pending(s), kv_finder_unacked(s->finder));
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
    /* the clients stay: their batches are answered TRYAGAIN (kv_server.c)
     * until the end, when they get every reply and the end of the stream */
    kv_dpr_status(s, true);
    kv_dpr_shutdown_progress(s);
}
