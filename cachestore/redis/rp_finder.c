/* rp_finder.c - see rp_finder.h. */
#include "rp_finder.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "common/clock.h"
#include "common/log.h"
#include "dpr/worker.h"
#include "kv_config.h"
#include "kv_finder.h"
#include "rp_proxy_int.h"
#include "rp_save.h"

#define LEAVE_RETRY_MS 50

static void on_sync(void *ud, const kv_sync *sync)
{
    rp_proxy *p = ud;
    uint64_t *w = NULL;

    if (sync->nworkers) {
        w = malloc(sync->nworkers * sizeof(*w));
        if (w) {
            memcpy(w, sync->workers, sync->nworkers * sizeof(*w));
            free(p->workers);
            p->workers = w;
            p->nworkers = sync->nworkers;
        }
    } else {
        p->nworkers = 0;
    }
    p->synced_ms = sync->at_ms;
    p->syncs++;
    p->finder_world_line = sync->world_line;
    if (sync->max_version > p->cluster_max)
        p->cluster_max = sync->max_version;
    if (sync->world_line > p->w.world_line) {
        if (!p->planned)
            rp_rollback(p, sync->world_line, sync->cut);
    } else if (sync->world_line == p->w.world_line && sync->cut > p->w.cut) {
        dpr_worker_observe_cut(&p->w, sync->cut);
        rp_save_gc(p, sync->cut);
    }
    if (!p->stopping)
        rp_resume_parked(p);
}

static void on_report_done(void *ud, uint64_t version, bool acked, const char *error)
{
    rp_proxy *p = ud;
    if (!acked)
        log_warning("the finder refused the report of checkpoint %" PRIu64 ": %s", version,
                    error ? error : "?");
    rp_stop_progress(p);
}

static void on_sync_refused(void *ud, const char *error)
{
    (void)ud;
    log_warning("the finder refused DPR.SYNC: %s", error);
}

static void on_connection(void *ud, bool up)
{
    rp_proxy *p = ud;
    log_debug("finder link %s", up ? "up" : "down");
    if (up)
        kv_finder_sync(p->finder);
}

static void on_fenced(void *ud, const char *why)
{
    rp_proxy *p = ud;
    log_error("fenced: the finder answered \"%s\"; stopping, not to be restarted", why);
    sd_notifyf(0, "STATUS=failed: fenced: worker %" PRIu64 " was moved to another node",
               p->w.id);
    p->stopping = true;
    p->exit_code = KV_EXIT_NO_RESTART;
    uv_stop(p->loop);
}

/* The answer to DPR.WORKER.LEAVE: refused while the last checkpoint is
 * not in the cut yet (asked again), or for another reason (stop without:
 * the next start is a crash restart), as dpr-kv. */
static void on_leave(void *ud, bool ok, const char *error)
{
    rp_proxy *p = ud;

    if (ok) {
        p->left = true;
        log_info("left the finder on purpose: worker %" PRIu64 " of domain %s, last checkpoint "
                 "%" PRIu64 " committed; the next start resumes world-line %" PRIu64
                 " without a rollback",
                 p->w.id, p->cfg->domain, p->w.durable, p->w.world_line);
    } else if (error && strstr(error, "not in the cut yet")) {
        p->leave_next_ms = dpr_mono_ms() + LEAVE_RETRY_MS;
        kv_finder_sync(p->finder);
        return;
    } else {
        p->leave_failed = true;
        log_warning("the finder refused DPR.WORKER.LEAVE (%s): stopping without it; the next "
                    "start is a crash restart (a rollback of the domain)",
                    error ? error : "unexpected reply");
    }
    rp_stop_progress(p);
}

void rp_stop_progress(rp_proxy *p)
{
    uint64_t now = dpr_mono_ms();

    if (!p->planned || p->stopping)
        return;
    bool dirty = p->w.open_batches > 0 || p->plain_dirty;
    if (dirty && !rp_save_blocked(p)) {
        rp_save_begin(p, 0);
        rp_redis_flush(p);
        return;
    }
    if (!p->saving && !dirty && kv_finder_unacked(p->finder) == 0) {
        if (p->left || p->leave_failed) {
            log_info("stopped: last checkpoint %" PRIu64 " is durable and reported%s (%" PRIu64
                     " requests answered TRYAGAIN meanwhile)",
                     p->w.durable, p->left ? ", and the finder knows this worker left on "
                                             "purpose" : "",
                     p->batches_refused_stopping);
            p->stopping = true;
            p->exit_code = 0;
            uv_stop(p->loop);
            return;
        }
        /* every reply of what ran is out first */
        if (now >= p->leave_next_ms && !p->head) {
            p->leave_next_ms = now + KV_FINDER_TIMEOUT_MS;
            kv_finder_leave(p->finder);
        }
    }
    if (now > p->stop_deadline_ms) {
        bool clean = !p->saving && !dirty && kv_finder_unacked(p->finder) == 0;
        if (clean)
            log_warning("shutdown timed out before the finder took DPR.WORKER.LEAVE: the next "
                        "start is a crash restart (a rollback of the domain, nothing committed "
                        "lost)");
        else
            log_error("shutdown timed out: a checkpoint in progress or %zu reports not "
                      "acknowledged by the finder", kv_finder_unacked(p->finder));
        p->stopping = true;
        p->exit_code = clean ? 0 : 1;
        uv_stop(p->loop);
    }
}

void rp_finder_on_stop_timer(uv_timer_t *t)
{
    rp_stop_progress(t->data);
}

void rp_finder_on_sync_timer(uv_timer_t *t)
{
    rp_proxy *p = t->data;
    kv_finder_sync(p->finder);
}

kv_finder_cb rp_finder_callbacks(void)
{
    kv_finder_cb cb = {on_sync, on_report_done, on_sync_refused, on_connection, on_fenced,
                       on_leave};
    return cb;
}
