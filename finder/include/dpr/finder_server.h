/*
 * finder_server.h - dpr-finder's RESP server on libuv (one thread), also
 * hosted on the agent's loop (the second half of this header).
 *
 * The server serves every domain of a dpr_domains (dpr/domains.h); each
 * command names its domain.
 *
 * Group commit: every request read in one loop iteration is executed
 * against the domains' working state; its reply is held. Before the loop
 * waits again (a uv_check handle), a changed working state (of any domain)
 * is saved to the store, all domains at once, and then published, and only
 * then are the held replies written, in
 * request order per connection. So no client ever hears of a cut or a
 * world-line that is not durable. A failed save ends the server with an
 * error (the held replies are never sent).
 *
 * With an asynchronous store (dpr_store_is_async: the agents' Raft log) the
 * same happens over several loop turns: the held replies wait for the save
 * (or, when the turn changed nothing, for the store's confirmation that
 * its state is still current: a quorum round), and no further request runs
 * until then (they stay buffered, and their connections stop reading);
 * then they run as the next group. A save that ends in -ENOTCONN (this node
 * lost its leadership) ends the server like a failed save: nothing held is
 * answered.
 */
#ifndef DPR_FINDER_SERVER_H
#define DPR_FINDER_SERVER_H

#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#include "common/buf.h"
#include "common/tls.h"
#include "dpr/domains.h"
#include "dpr/store.h"

#define DPR_SERVER_DEFAULT_MAX_CLIENTS 1024
/* Fits a report with a dependency on each of 65,536 workers (~3.4 MB). */
#define DPR_SERVER_DEFAULT_MAX_REQUEST_BYTES (4u * 1024 * 1024)
#define DPR_SERVER_MIN_REQUEST_BYTES 64

typedef struct dpr_server_config {
    /* "HOST:PORT" as common/addr.h reads it ("[IPv6]:PORT", "*:PORT" or
     * ":PORT" for every address); port 0 = any */
    const char *listen;
    size_t max_clients;       /* connections beyond it get an error and are closed */
    size_t max_request_bytes; /* larger requests: error, connection closed */
    /* TLS (docs/tls.md): a second listener on tls_listen ("HOST:PORT", NULL:
     * none) with the certificates of tls; there commands are authorized by
     * the peer's certificate (node: all; others: reads, finder/src/authz.h).
     * plain_off: no plain listener (TLS only). */
    const char *tls_listen;
    dpr_tls_config tls;
    bool plain_off;
    /* "HOST:PORT" of the Prometheus endpoint (common/http.h), NULL: none */
    const char *metrics_listen;
    /* leave the per-worker families out of its page (--metrics-no-workers;
     * dpr/finder_stats.h, per_worker) */
    bool metrics_no_workers;
} dpr_server_config;

/*
 * Listens and serves until SIGTERM or SIGINT (SIGHUP reloads the TLS files
 * for new connections, dpr_server_reload_tls) (then stops accepting, sends
 * the replies of requests already read, closes and returns 0). Logs
 * "dpr-finder listening on ADDR:PORT" (the actual port) when ready; the
 * server logs through common/log.h (the program calls dpr_log_open).
 * Returns a negative errno on failure (bind, save), after logging the
 * reason.
 */
int dpr_server_run(dpr_domains *ds, dpr_store *store, const dpr_server_config *cfg);

/* ---- hosting the server on an existing loop (dpr-agent) ------------------ */

typedef struct dpr_server dpr_server;

typedef struct dpr_server_hooks {
    /* A changed working state was saved and published (loop thread). */
    void (*committed)(void *arg);
    /* Saving failed: the server closed every connection and its listener
     * without answering; the finder must not be served any more. */
    void (*failed)(void *arg, int err);
    /* A server started without a finder state (ds NULL, a follower node):
     * the error every request but PING and QUIT gets, without its "-" and
     * line end, e.g. "NOTLEADER 10.0.0.2:7000" (NULL or no hook: "TRYAGAIN
     * the finder is not served here"). tls: asked on the TLS port (a
     * NOTLEADER then names the leader's TLS port, so a client stays on TLS). */
    const char *(*not_serving)(void *arg, bool tls);
    /* Optional: the host's own commands (the agent's DPR.CLUSTER.*), tried
     * before the finder's in both modes: 1 when the host answered (its
     * reply appended to out; it is held and released like the finder's),
     * 0 when the command is not the host's, or -ENOMEM. */
    int (*command)(void *arg, int argc, char *const *argv, const size_t *argvlen,
                   dpr_buf *out);
    void *arg;
} dpr_server_hooks;

/*
 * Listens on cfg->listen and serves on loop, with the same group commit,
 * but installs no signal handlers and logs nothing when ready. ds, store
 * and cfg must outlive the server (an asynchronous store's callbacks
 * included: close it before dpr_server_free). ds and store NULL: every
 * request is answered with hooks->not_serving's error. *out is set even on failure (a negative
 * errno, -EINVAL for a bad listen address; the reason is logged): its
 * handles are closing on loop, so call dpr_server_free(*out) only after the
 * loop ran their close callbacks.
 */
int dpr_server_start(uv_loop_t *loop, dpr_domains *ds, dpr_store *store,
                     const dpr_server_config *cfg, const dpr_server_hooks *hooks,
                     dpr_server **out);
/* The address the listener is bound to (the real port when cfg asked for 0;
 * the TLS listener's with plain_off). */
const struct sockaddr_storage *dpr_server_bound(const dpr_server *srv);
/* Reads cfg->tls's files again into a new context for new connections
 * (open ones keep theirs); a failure keeps the old one. Both are logged.
 * 0 (also without TLS: nothing to do) or the failure's code. */
int dpr_server_reload_tls(dpr_server *srv);
/* The caller changed the working state outside a request (e.g. removed a
 * worker, split a domain): make sure it is saved and published on this loop
 * iteration's commit even if no request arrives. */
void dpr_server_commit_soon(dpr_server *srv);
/* Graceful stop, as SIGTERM for dpr_server_run: stop accepting, send the
 * replies of requests already read, close every connection (cut off after
 * 2 s). The handles close on the loop; then dpr_server_free. */
void dpr_server_stop(dpr_server *srv);
/* Stops at once: every connection closes without its held replies (this
 * node lost the right to answer), the listener too. Then dpr_server_free
 * once the loop ran the close callbacks. */
void dpr_server_abort(dpr_server *srv);
void dpr_server_free(dpr_server *srv);
/* The finder's dpr_finder_* metrics (dpr/finder_stats.h) into out, for a
 * host that serves them on its own endpoint; per_worker: with the
 * dpr_finder_worker_* families. 0 or -ENOMEM. */
int dpr_server_metrics(dpr_server *srv, bool per_worker, dpr_buf *out);

#endif
