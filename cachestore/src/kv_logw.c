/* kv_logw.c - see kv_logw.h. */
#include "kv_logw.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "kv_snap.h" /* KV_SNAP_RETRY_MAX_MS */

#define LOG_EVERY_MS 60000

int kv_logw_init(kv_logw *w, uv_loop_t *loop, const char *dir, unsigned retry_ms,
                 kv_logw_done_fn done, void *ud)
{
    int r;

    memset(w, 0, sizeof(*w));
    w->loop = loop;
    w->dir = dir;
    w->retry_ms = w->delay_ms = retry_ms ? retry_ms : 100;
    w->done = done;
    w->ud = ud;
    r = uv_timer_init(loop, &w->retry);
    if (r < 0)
        return r;
    w->retry.data = w;
    w->timer_open = true;
    return 0;
}

kv_logw_job *kv_logw_job_new(void)
{
    return calloc(1, sizeof(kv_logw_job));
}

void kv_logw_job_free(kv_logw_job *j)
{
    if (!j)
        return;
    kv_ckpt_log_free(&j->log);
    free(j);
}

static void next(kv_logw *w);

/* Thread pool: the blocking part. */
static void work(uv_work_t *req)
{
    kv_logw_job *j = req->data;
    char path[PATH_MAX];
    struct stat st;

    dpr_err_clear(&j->err);
    j->status = kv_ckpt_write_delta(j->w->dir, &j->meta, &j->log, &j->err);
    if (j->status == -ENOENT && stat(j->w->dir, &st) < 0)
        dpr_err_set(&j->err, j->status,
                    "the state directory %s is gone (deleted, or not mounted?)", j->w->dir);
    if (j->status == 0 && kv_ckpt_path(path, sizeof(path), j->w->dir, j->meta.version, 0) == 0 &&
        stat(path, &st) == 0)
        j->bytes = (uint64_t)st.st_size;
}

static void on_retry(uv_timer_t *t)
{
    next(t->data);
}

/* Loop thread: the job's attempt ended. */
static void after_work(uv_work_t *req, int status)
{
    kv_logw_job *j = req->data;
    kv_logw *w = j->w;
    char path[PATH_MAX];

    assert(w->inflight == j); /* one write at a time */
    w->inflight = NULL;
    j->writing = false;
    if (status == UV_ECANCELED && j->status == 0)
        j->status = -ECANCELED;
    if (j->stale) {
        /* a rollback dropped its version: its file must never be restored */
        if (j->status == 0 && kv_ckpt_path(path, sizeof(path), w->dir, j->meta.version, 0) == 0)
            (void)unlink(path);
        kv_logw_job_free(j);
        if (!w->closing)
            next(w);
        return;
    }
    if (j->status == 0) {
        j->done = true;
        j->end_ns = dpr_mono_ns();
        if (j->failures)
            log_info("change log %" PRIu64 " written after %" PRIu64 " failed attempt(s)",
                     j->meta.version, j->failures);
        w->delay_ms = w->retry_ms;
        w->done(w->ud);
        if (!w->closing)
            next(w);
        return;
    }
    j->failures++;
    w->failures++;
    uint64_t now = dpr_mono_ms();
    if (j->failures == 1 || now - w->last_log_ms >= LOG_EVERY_MS) {
        log_warning("change log %" PRIu64 " failed (%" PRIu64 " attempt(s)): %s; retrying",
                    j->meta.version, j->failures, dpr_err_str(&j->err, j->status));
        w->last_log_ms = now;
    }
    w->last_error = j->err;
    dpr_err_prefix(&w->last_error, "checkpoint %" PRIu64, j->meta.version);
    w->done(w->ud); /* (the failing state changed) */
    if (!w->closing && w->timer_open) {
        unsigned max = w->retry_ms > KV_SNAP_RETRY_MAX_MS ? w->retry_ms : KV_SNAP_RETRY_MAX_MS;
        uv_timer_start(&w->retry, on_retry, w->delay_ms, 0);
        w->delay_ms = w->delay_ms * 2 > max ? max : w->delay_ms * 2;
    }
}

/* Starts writing the oldest job not on disk yet, unless one is being written. */
static void next(kv_logw *w)
{
    kv_logw_job *j = w->head;

    if (w->inflight || w->closing || (w->timer_open && uv_is_active((uv_handle_t *)&w->retry)))
        return;
    while (j && j->done)
        j = j->next;
    if (!j)
        return;
    j->writing = true;
    j->req.data = j;
    w->inflight = j;
    if (uv_queue_work(w->loop, &j->req, work, after_work) < 0) {
        /* (only for bad arguments) */
        w->inflight = NULL;
        j->writing = false;
    }
}

void kv_logw_submit(kv_logw *w, kv_logw_job *j, const kv_ckpt_meta *m, kv_ckpt_log *log)
{
    /* versions are sealed in order, and only grow (a rollback drops all) */
    assert(!w->tail || w->tail->meta.version < m->version);
    j->w = w;
    j->meta = *m;
    j->meta.delta = true;
    j->log = *log;
    memset(log, 0, sizeof(*log));
    j->start_ns = dpr_mono_ns();
    j->next = NULL;
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    w->n++;
    next(w);
}

size_t kv_logw_memory(const kv_logw *w)
{
    size_t n = 0;

    /* (the writing thread only reads a job's buffer: its size is stable) */
    for (const kv_logw_job *j = w->head; j; j = j->next)
        n += j->log.buf.cap;
    if (w->inflight && w->inflight->stale) /* (dropped from the list, still written) */
        n += w->inflight->log.buf.cap;
    return n;
}

bool kv_logw_head(const kv_logw *w, uint64_t *version)
{
    if (!w->head)
        return false;
    *version = w->head->meta.version;
    return true;
}

kv_logw_job *kv_logw_pop(kv_logw *w)
{
    kv_logw_job *j = w->head;

    if (!j || !j->done)
        return NULL;
    w->head = j->next;
    if (!w->head)
        w->tail = NULL;
    w->n--;
    j->next = NULL;
    return j;
}

void kv_logw_drop_all(kv_logw *w)
{
    while (w->head) {
        kv_logw_job *j = w->head;
        w->head = j->next;
        if (j == w->inflight)
            j->stale = true; /* freed when its write ends */
        else
            kv_logw_job_free(j);
    }
    w->tail = NULL;
    w->n = 0;
    w->delay_ms = w->retry_ms;
    if (w->timer_open)
        uv_timer_stop(&w->retry);
}

bool kv_logw_failing(const kv_logw *w, uint64_t *version)
{
    for (const kv_logw_job *j = w->head; j; j = j->next)
        if (!j->done && j->failures > 0) {
            if (version)
                *version = j->meta.version;
            return true;
        }
    return false;
}

uint64_t kv_logw_failures(const kv_logw *w, dpr_err *last)
{
    *last = w->last_error;
    return w->failures;
}

void kv_logw_close(kv_logw *w)
{
    if (w->closing)
        return;
    kv_logw_drop_all(w);
    w->closing = true;
    if (w->timer_open && !uv_is_closing((uv_handle_t *)&w->retry))
        uv_close((uv_handle_t *)&w->retry, NULL);
    w->timer_open = false;
}
