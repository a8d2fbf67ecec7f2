/*
 * kv_logw.h - the change-log writer: writes sealed versions' change logs
 * (kv_ckpt_write_delta) one at a time, in seal order, on libuv's thread
 * pool, so that a checkpoint costs the loop nothing but moving a buffer.
 *
 *   kv_logw_job_new    allocate a job before sealing (so that nothing can
 *                      fail once the version is sealed)
 *   kv_logw_submit     hand it the sealed version's log (moved out of the
 *                      caller's, which is left empty)
 *   kv_logw_pop        the oldest job, once its file is on disk (renamed,
 *                      directory fsynced): the version may be reported
 *   kv_logw_drop_all   a rollback: every pending version is lost; the job
 *                      being written is forgotten when it ends, and its
 *                      file removed
 *
 * A failed write (disk full, I/O error, the directory gone) is counted,
 * logged (the first time, then once a minute) and retried after a delay
 * that doubles from retry_ms up to KV_SNAP_RETRY_MAX_MS; kv_logw_failing
 * says so meanwhile (the server refuses writes, as for failing snapshot
 * children). `done` is called on the loop thread whenever a job ended.
 */
#ifndef KV_LOGW_H
#define KV_LOGW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dpr/err.h"
#include "kv_ckpt.h"

typedef struct kv_logw kv_logw;

typedef struct kv_logw_job {
    struct kv_logw_job *next;
    kv_logw *w;
    uv_work_t req;
    kv_ckpt_meta meta;    /* version, base, world-line, committed, ... */
    kv_ckpt_log log;
    int status;           /* of the last attempt */
    dpr_err err;
    bool done, writing, stale;
    uint64_t failures;
    uint64_t start_ns, end_ns; /* monotonic: submitted, on disk */
    uint64_t bytes;       /* the file's size */
} kv_logw_job;

typedef void (*kv_logw_done_fn)(void *ud);

struct kv_logw {
    uv_loop_t *loop;
    const char *dir;
    unsigned retry_ms, delay_ms;
    kv_logw_job *head, *tail; /* pending, in seal order */
    size_t n;
    kv_logw_job *inflight;    /* being written (maybe stale) */
    uv_timer_t retry;
    bool timer_open, closing;
    uint64_t failures, last_log_ms;
    dpr_err last_error;
    kv_logw_done_fn done;
    void *ud;
};

int kv_logw_init(kv_logw *w, uv_loop_t *loop, const char *dir, unsigned retry_ms,
                 kv_logw_done_fn done, void *ud);
/* The bytes the change logs waiting for (or in) their writes hold. */
size_t kv_logw_memory(const kv_logw *w);
/* NULL when out of memory. */
kv_logw_job *kv_logw_job_new(void);
/* Queues the job for m->version (m->base: the file before it) with the
 * content of *log, which is left empty. Cannot fail. */
void kv_logw_submit(kv_logw *w, kv_logw_job *j, const kv_ckpt_meta *m, kv_ckpt_log *log);
static inline size_t kv_logw_jobs(const kv_logw *w) { return w->n; }
/* The oldest pending job's version (false: none). */
bool kv_logw_head(const kv_logw *w, uint64_t *version);
/* Takes the oldest job off if its file is on disk: the caller frees it
 * with kv_logw_job_free. NULL otherwise. */
kv_logw_job *kv_logw_pop(kv_logw *w);
void kv_logw_job_free(kv_logw_job *j);
/* Forgets every pending job (rollback). */
void kv_logw_drop_all(kv_logw *w);
/* True while the oldest job has failed at least once (*version gets it). */
bool kv_logw_failing(const kv_logw *w, uint64_t *version);
/* Failed attempts so far; *last their last error (code 0: none). */
uint64_t kv_logw_failures(const kv_logw *w, dpr_err *last);
/* Stops: pending jobs are forgotten, the timer closed. A job being written
 * ends by itself (the loop runs until it has). */
void kv_logw_close(kv_logw *w);

#endif
