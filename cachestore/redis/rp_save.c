/* rp_save.c - see rp_save.h. */
#include "rp_save.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/msgid.h"
#include "common/resp.h"
#include "dpr/worker.h"
#include "kv_finder.h"
#include "rp_proxy.h"
#include "rp_proxy_int.h"

int rp_save_add(rp_proxy *p, uint64_t v)
{
    if (p->nckpts == p->ckpts_cap) {
        size_t cap = p->ckpts_cap ? p->ckpts_cap * 2 : 16;
        uint64_t *n = realloc(p->ckpts, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        p->ckpts = n;
        p->ckpts_cap = cap;
    }
    p->ckpts[p->nckpts++] = v;
    return 0;
}

void rp_save_drop(rp_proxy *p, uint64_t lo_keep, uint64_t hi_keep)
{
    size_t k = 0;
    for (size_t i = 0; i < p->nckpts; i++) {
        uint64_t v = p->ckpts[i];
        if (v >= lo_keep && v <= hi_keep) {
            p->ckpts[k++] = v;
            continue;
        }
        char name[128];
        rp_ckpt_name(v, name, sizeof(name));
        if (name[0] && unlink(name) < 0)
            log_warning("cannot delete %s: %s", name, strerror(errno));
    }
    p->nckpts = k;
    (void)dpr_fsync_dir(".");
}

void rp_save_gc(rp_proxy *p, uint64_t cut)
{
    uint64_t keep = 0;
    for (size_t i = 0; i < p->nckpts; i++)
        if (p->ckpts[i] <= cut)
            keep = p->ckpts[i];
    if (keep)
        rp_save_drop(p, keep, UINT64_MAX);
}

/* The save of p->saving_version failed (BGSAVE refused or failed: a full
 * or unwritable disk, a failed fork). As dpr-kv's: the version is not
 * reported, the failure is logged (once while it lasts) and counted, and
 * the next interval tries again (save_blocked); writes are refused
 * meanwhile (-MISCONF, run_command), reads served. Redis' state has moved
 * past the sealed version, so no image of it can be made any more: it
 * joins the open version (dpr_worker_checkpoint_abort), which the retry
 * seals and which covers it. */
static void ckpt_failed(rp_proxy *p, const char *why)
{
    const char *fields[2] = {DPR_MSGID_FIELD(DPR_MSGID_CHECKPOINT_FAILING), NULL};
    int r = dpr_worker_checkpoint_abort(&p->w, p->saving_version);

    if (r < 0) {
        rp_fatal(p, "cannot take back the failed checkpoint: %s", strerror(-r));
        return;
    }
    unlink(p->saving_tmp); /* Redis removes its temporary file; in case */
    p->ckpt_failures++;
    snprintf(p->ckpt_error, sizeof(p->ckpt_error), "%s", why);
    if (!p->ckpt_failing) {
        p->ckpt_failing = true;
        p->ckpt_failing_version = p->saving_version;
        dpr_log_fields(DPR_LOG_ERR, fields,
                       "checkpoints failing: %s; retrying every %u ms, writes refused "
                       "(MISCONF) until a checkpoint is on disk, serving reads", why,
                       p->cfg->checkpoint_interval_ms);
        sd_notifyf(0, "STATUS=refusing writes: checkpoints failing: %s; serving reads on %s:",
                   why, p->ports.bound);
    }
    p->plain_dirty = true; /* the retry, at the next interval */
    p->ckpt_retry_ms = dpr_mono_ms() + p->cfg->checkpoint_interval_ms;
    p->saving = 0;
    rp_resume_parked(p);
    rp_stop_progress(p);
}

/* A save succeeded after failed ones. */
static void ckpt_recovered(rp_proxy *p)
{
    const char *fields[2] = {DPR_MSGID_FIELD(DPR_MSGID_CHECKPOINT_RECOVERED), NULL};

    p->ckpt_failing = false;
    dpr_log_fields(DPR_LOG_NOTICE, fields,
                   "checkpoints written again (checkpoint %" PRIu64 " done, it covers %" PRIu64
                   " whose save failed); accepting writes", p->saving_version,
                   p->ckpt_failing_version);
    sd_notifyf(0, "STATUS=serving on %s: worker %" PRIu64 ", world-line %" PRIu64, p->ports.bound,
               p->w.id, p->w.world_line);
}

bool rp_save_blocked(const rp_proxy *p)
{
    return p->saving || (p->ckpt_failing && dpr_mono_ms() < p->ckpt_retry_ms);
}

static void ckpt_done(rp_proxy *p)
{
    char name[128];
    dpr_worker_report rep;
    int r;

    snprintf(name, sizeof(name), RP_CKPT_FMT, (unsigned long long)p->saving_version,
             (unsigned long long)p->w.world_line);
    if (rename(p->saving_tmp, name) < 0) {
        rp_fatal(p, "cannot rename the checkpoint file: %s", strerror(errno));
        return;
    }
    r = dpr_fsync_dir(".");
    if (r < 0) {
        rp_fatal(p, "cannot fsync the state directory: %s", strerror(-r));
        return;
    }
    if (rp_save_add(p, p->saving_version) < 0) {
        rp_fatal(p, "%s", "out of memory");
        return;
    }
    r = dpr_worker_checkpoint_complete(&p->w, p->saving_version, &rep);
    if (r < 0) {
        rp_fatal(p, "checkpoint completion refused: %s", strerror(-r));
        return;
    }
    r = kv_finder_report(p->finder, &rep);
    if (r < 0) {
        rp_fatal(p, "cannot queue the report: %s", strerror(-r));
        return;
    }
    p->checkpoints++;
    p->last_ckpt = p->saving_version;
    p->last_ckpt_ms = dpr_mono_ms() - p->saving_ms;
    log_debug("checkpoint %" PRIu64 " on disk (%s)", p->saving_version, name);
    if (p->ckpt_failing)
        ckpt_recovered(p);
    p->saving = 0;
    rp_resume_parked(p);
    rp_stop_progress(p);
}

static bool reply_is(const char *reply, size_t n, const char *want)
{
    size_t w = strlen(want);
    return n >= w && memcmp(reply, want, w) == 0;
}

static void on_info(rp_proxy *p, const char *reply, size_t n)
{
    char *text;
    size_t len;
    const char *v;

    p->poll_out = false;
    if (p->saving != 2)
        return;
    text = strndup(reply, n);
    if (!text) {
        rp_fatal(p, "%s", "out of memory");
        return;
    }
    v = dpr_info_field(text, "rdb_bgsave_in_progress", &len);
    if (v && len == 1 && v[0] == '0') {
        v = dpr_info_field(text, "rdb_last_bgsave_status", &len);
        if (v && len == 2 && memcmp(v, "ok", 2) == 0) {
            free(text);
            ckpt_done(p);
            return;
        }
        free(text);
        ckpt_failed(p, "redis-server could not write the checkpoint (BGSAVE failed; its log "
                       "above says why)");
        return;
    }
    free(text);
}

static void on_bgsave(rp_proxy *p, const char *reply, size_t n)
{
    if (!reply_is(reply, n, "+Background saving started")) {
        char msg[200];
        snprintf(msg, sizeof(msg), "BGSAVE refused: %.*s", (int)(n > 150 ? 150 : n), reply);
        ckpt_failed(p, msg);
        return;
    }
    p->saving = 2;
}

static void on_config(rp_proxy *p, const char *reply, size_t n)
{
    if (!reply_is(reply, n, "+OK")) {
        char msg[200];
        snprintf(msg, sizeof(msg), "CONFIG SET dbfilename refused: %.*s",
                 (int)(n > 150 ? 150 : n), reply);
        rp_fatal(p, "%s", msg);
    }
}

void rp_save_on_poll_timer(uv_timer_t *t)
{
    rp_proxy *p = t->data;
    if (p->saving != 2 || p->poll_out)
        return;
    const char *argv[] = {"INFO", "persistence"};
    p->poll_out = true;
    rp_internal(p, on_info, 2, argv);
    rp_redis_flush(p);
}

void rp_save_begin(rp_proxy *p, uint64_t next)
{
    uint64_t v;
    int r;

    assert(!p->saving);
    r = dpr_worker_checkpoint_begin(&p->w, next, &v);
    if (r < 0) {
        rp_fatal(p, "cannot seal the open version: %s", strerror(-r));
        return;
    }
    p->plain_dirty = false;
    p->saving = 1;
    p->saving_version = v;
    p->saving_ms = dpr_mono_ms();
    snprintf(p->saving_tmp, sizeof(p->saving_tmp), "ckpt-%llu.%ld-%llu.tmp",
             (unsigned long long)v, (long)getpid(), (unsigned long long)++p->gen);
    const char *cfgset[] = {"CONFIG", "SET", "dbfilename", p->saving_tmp};
    const char *bgsave[] = {"BGSAVE"};
    rp_internal(p, on_config, 4, cfgset);
    rp_internal(p, on_bgsave, 1, bgsave);
}

void rp_save_on_ckpt_timer(uv_timer_t *t)
{
    rp_proxy *p = t->data;
    if (p->saving || p->stopping)
        return;
    if (p->w.open_batches == 0 && !p->plain_dirty)
        return;
    rp_save_begin(p, p->cluster_max + 1);
    rp_redis_flush(p);
}
