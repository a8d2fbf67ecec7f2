/*
 * kv_finder.h - dpr-kv's link to the finder (RESP over TCP).
 *
 * Every command names the shard's DPR domain as its first argument
 * (DPR.WORKER.ADD <domain> <worker> [<token>], DPR.REPORT <domain> ...,
 * DPR.SYNC <domain>): the finder keeps one core (world-lines, cut) per
 * domain.
 *
 * Start-up registration is synchronous (kv_finder_register: nothing to
 * serve before the finder has answered). Afterwards a libuv client sends
 * DPR.REPORT, DPR.SYNC and (at a planned stop) DPR.WORKER.LEAVE without
 * ever blocking the loop:
 *
 *  - a shard with a token sends DPR.AUTH <domain> <worker> <token> first on
 *    every connection (the finder accepts reports of a worker registered
 *    with a token only on a connection holding its grant); the rest is
 *    pipelined behind it. Its answer: +OK, go on; "-FENCED ..." (or an
 *    error saying the token is not the worker's): another incarnation of
 *    this worker holds it (the cluster moved it to another node), so the
 *    link stops for good and on_fenced says why; the finder does not know
 *    the worker: as for a report refused so (below); a finder from before
 *    DPR.AUTH ("unknown command"): go on without; another error: drop the
 *    connection (try again later). A report answered "-FENCED ..." stops
 *    the link the same way; one refused for want of a grant (the finder
 *    learnt of the worker's token after this connection's DPR.AUTH) stays
 *    queued and the connection is dropped, so that the next one
 *    authenticates (without a token: fenced, another owner registered it).
 *  - reports are queued in version order and pipelined; a report leaves the
 *    queue only when the finder has answered it. After a reconnect every
 *    unanswered report is sent again, in order (the finder treats a resend
 *    as known). A report refused because the finder does not know this
 *    worker (kv_finder_error_lost_worker: its state was lost?) stays queued
 *    and goes out again on the next connection: a finder whose state is
 *    restored needs every report, since each carries dependencies no later
 *    one repeats. A report refused for another reason (stale world-line,
 *    ...) is logged and dropped: sending it again would get the same
 *    answer.
 *  - at most one DPR.SYNC is in flight; its answer goes to on_sync, an error
 *    answer to on_sync_refused (the finder's text: "ERR unknown domain
 *    '<name>'" means it lost the domain, kv_finder_error_lost_worker).
 *    Numbers above 2^63 - 1 (more than the finder ever sends) make an
 *    answer malformed: the connection is dropped and nothing is learned
 *    from it.
 *  - the connection is re-established with a backoff (100 ms doubling to
 *    2 s); a request unanswered for KV_FINDER_TIMEOUT_MS drops the
 *    connection (a hung finder), and so does an answer the reader refuses
 *    (a protocol error, an array over KV_FINDER_MAX_ELEMENTS).
 *
 * TLS (--finder-tls, docs/tls.md): the same over common/tls.h's engine, the
 * finder's certificate checked against the CA and the finder's host, this
 * node's certificate shown (the finder lets node certificates register and
 * report). The blocking calls take the files (a context per call), the
 * link a context.
 *
 * What the answers mean (and which are malformed) is decided by the pure
 * functions of kv_finder_reply.h, which both the blocking calls and the
 * libuv client use; this module does the I/O.
 */
#ifndef KV_FINDER_H
#define KV_FINDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/tls.h"

#include "dpr/err.h"
#include "dpr/worker.h"
#include "kv_finder_reply.h" /* kv_sync, kv_finder_error_lost_worker */

#define KV_FINDER_TIMEOUT_MS 5000

typedef struct kv_finder_cb {
    void (*on_sync)(void *ud, const kv_sync *sync);
    /* a report was answered (acked: +OK; else refused and dropped, error:
     * the finder's error text, NULL for a reply that was not an error) */
    void (*on_report_done)(void *ud, uint64_t version, bool acked, const char *error);
    /* DPR.SYNC got an error reply (the finder's text); nothing learned */
    void (*on_sync_refused)(void *ud, const char *error);
    void (*on_connection)(void *ud, bool up);
    /* the finder fenced this incarnation (why: its answer, which never
     * shows a token): the worker belongs to another one now. The link is
     * down for good; the owner stops (dpr-kv exits, KV_EXIT_NO_RESTART).
     * May close the link (kv_finder_close) from inside. */
    void (*on_fenced)(void *ud, const char *why);
    /* DPR.WORKER.LEAVE was answered: ok (+OK), else error is the finder's
     * text (NULL for a reply that was not an error). May close the link. */
    void (*on_leave)(void *ud, bool ok, const char *error);
} kv_finder_cb;

typedef struct kv_finder kv_finder;

/*
 * Synchronous DPR.WORKER.ADD <domain> <worker> [<token>] at start-up (token
 * NULL or "": none; the finder creates the domain if it has none of that
 * name). Connects to hostport, retrying every 200 ms until `timeout_ms`
 * passes (0: forever, logging every few seconds); an answer, even an error,
 * is final (no retry). The answer is read by kv_finder_add_parse: -EACCES
 * (the worker is registered with another token: refused), -EREMOTEIO (the
 * finder answered another error), -EPROTO (a malformed answer); or
 * -ETIMEDOUT, -EINVAL (bad address). err says which and never shows the
 * token.
 */
int kv_finder_register(const char *hostport, const dpr_tls_config *tls, const char *domain,
                       uint64_t worker, const char *token, unsigned timeout_ms,
                       uint64_t *world_line, uint64_t *restore, dpr_err *err);

/*
 * Synchronous DPR.SYNC <domain> before registering: the finder's world-line
 * and its cut for `worker` (0 when it lists none). Asks without
 * registering, so it changes nothing at the finder (start-up checks the
 * answer against what the checkpoints on disk record, kv_recover.c). A
 * finder that does not know the domain ("ERR unknown domain") knows
 * nothing of this worker: world-line 0 and cut 0 (logged), 0 returned.
 * Retries like kv_finder_register; the answer is read by
 * kv_finder_sync_parse (-EREMOTEIO, -EPROTO, -ENOMEM); or -ETIMEDOUT,
 * -EINVAL.
 */
int kv_finder_query_cut(const char *hostport, const dpr_tls_config *tls, const char *domain,
                        uint64_t worker, unsigned timeout_ms, uint64_t *world_line,
                        uint64_t *cut, dpr_err *err);

/* Starts the link of `worker` of `domain` (hostport: HOST:PORT, -EINVAL if
 * malformed; -ENOMEM), presenting token (NULL or "": none) in DPR.AUTH on
 * every connection; over TLS with tls (a client context, kept by the
 * caller until kv_finder_close; NULL: plain). */
int kv_finder_new(uv_loop_t *loop, const char *hostport, dpr_tls_ctx *tls, const char *domain,
                  uint64_t worker, const char *token, const kv_finder_cb *cb, void *ud,
                  kv_finder **out);
/* Closes the connection and frees everything (after the loop closed handles:
 * call before uv_run's last turn). */
void kv_finder_close(kv_finder *f);
/* The context for the next connections (a reload, SIGHUP; the open one
 * goes on with its own). Kept by the caller as kv_finder_new's. */
void kv_finder_set_tls(kv_finder *f, dpr_tls_ctx *tls);

/* Queues the report of a completed checkpoint (and sends it when connected
 * and, with kv_finder_hold, released). */
int kv_finder_report(kv_finder *f, const dpr_worker_report *r);
/* From now on reports wait until kv_finder_release says their version may
 * go (checkpoint replication, kv_replica.h: a version is reported only once
 * it is on the replica nodes too). */
void kv_finder_hold(kv_finder *f);
/* Reports of versions <= version may go (in order). */
void kv_finder_release(kv_finder *f, uint64_t version);

/* Sends DPR.SYNC unless one is in flight or the link is down. */
void kv_finder_sync(kv_finder *f);
/* A planned stop: sends DPR.WORKER.LEAVE <domain> <worker> (on this
 * connection, whose DPR.AUTH grant stands for the token) unless one is in
 * flight or the link is down; the answer goes to on_leave. A connection
 * lost meanwhile loses the request: ask again. */
void kv_finder_leave(kv_finder *f);
/* Forgets queued reports of world-lines older than world_line (a rollback). */
void kv_finder_drop_old(kv_finder *f, uint64_t world_line);

/* Reports not acknowledged (kept ones included). */
size_t kv_finder_unacked(const kv_finder *f);
bool kv_finder_connected(const kv_finder *f);
/* The finder fenced this incarnation (on_fenced was called). */
bool kv_finder_fenced(const kv_finder *f);

#endif
