/*
 * kv_finder.h - dpr-kv's link to the finder (RESP over TCP).
 *
 * Start-up registration is synchronous (kv_finder_register: nothing to
 * serve before the finder has answered). Afterwards a libuv client sends
 * DPR.REPORT and DPR.SYNC without ever blocking the loop:
 *
 *  - reports are queued in version order and pipelined; a report leaves the
 *    queue only when the finder has answered it. After a reconnect every
 *    unanswered report is sent again, in order (the finder treats a resend
 *    as known). A report the finder refuses with an error (stale world-line,
 *    unknown worker, ...) is logged and dropped: sending it again would get
 *    the same answer.
 *  - at most one DPR.SYNC is in flight; its answer goes to on_sync.
 *  - the connection is re-established with a backoff (100 ms doubling to
 *    2 s); a request unanswered for KV_FINDER_TIMEOUT_MS drops the
 *    connection (a hung finder).
 */
#ifndef KV_FINDER_H
#define KV_FINDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dpr/err.h"
#include "dpr/worker.h"

#define KV_FINDER_TIMEOUT_MS 5000

typedef struct kv_finder_cb {
    /* DPR.SYNC answered: world-line, max version, this worker's cut entry */
    void (*on_sync)(void *ud, uint64_t world_line, uint64_t max_version, uint64_t cut);
    /* a report was answered (acked: +OK; else refused and dropped) */
    void (*on_report_done)(void *ud, uint64_t version, bool acked);
    void (*on_connection)(void *ud, bool up);
} kv_finder_cb;

typedef struct kv_finder kv_finder;

/*
 * Synchronous DPR.WORKER.ADD <worker> at start-up. Connects to hostport,
 * retrying every 200 ms until `timeout_ms` passes (0: forever, logging
 * every few seconds). -ETIMEDOUT, -EPROTO (the finder answered an error
 * or nonsense), -EINVAL (bad address); err says which.
 */
int kv_finder_register(const char *hostport, uint64_t worker, unsigned timeout_ms,
                       uint64_t *world_line, uint64_t *restore, dpr_err *err);

/* Starts the link (hostport: HOST:PORT, -EINVAL if malformed). */
int kv_finder_new(uv_loop_t *loop, const char *hostport, uint64_t worker,
                  const kv_finder_cb *cb, void *ud, kv_finder **out);
/* Closes the connection and frees everything (after the loop closed handles:
 * call before uv_run's last turn). */
void kv_finder_close(kv_finder *f);

/* Queues the report of a completed checkpoint (and sends it when connected). */
int kv_finder_report(kv_finder *f, const dpr_worker_report *r);
/* Sends DPR.SYNC unless one is in flight or the link is down. */
void kv_finder_sync(kv_finder *f);
/* Forgets queued reports of world-lines older than world_line (a rollback). */
void kv_finder_drop_old(kv_finder *f, uint64_t world_line);

size_t kv_finder_unacked(const kv_finder *f);
bool kv_finder_connected(const kv_finder *f);

#endif
