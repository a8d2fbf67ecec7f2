/*
 * client.h - the DPR client: sessions over a set of RESP cache-store shards
 * (dpr-kv) and a finder, with pipelined batches, key -> shard routing,
 * commit points, rollback reporting and reconnects.
 *
 * A dpr_client holds the shard endpoints (each with its worker id, given or
 * learned from the shard's `INFO dpr`, field dpr_worker_id) and one
 * connection to the finder (DPR.SYNC, DPR.PREFIX). A client, and every
 * session it opens, belongs to one DPR domain (domain.h; in a cluster: the
 * deployment, named after it): its finder commands name the domain and its
 * batch headers carry the domain's id, so shards of another domain refuse
 * them. A session never spans two domains. A dpr_client_session is
 * a dpr_session (session.h) with its own connection to every shard; it
 * sends batches of ordinary commands framed as
 *
 *     DPR.BATCH <request header>  cmd_1 ... cmd_n
 *
 * and receives one reply per batch, [response header, [reply_1 .. reply_n]]
 * (docs/protocol.md, dpr-kv batches).
 *
 * Replies are hiredis' redisReply objects. This header only declares
 * `struct redisReply`; a program that looks inside replies (or frees them
 * with freeReplyObject) includes <hiredis/hiredis.h> itself.
 *
 * Typical use (error checks left out):
 *
 *     #include <hiredis/hiredis.h>
 *     #include <dpr/client.h>
 *
 *     dpr_endpoint shards[2] = {{"127.0.0.1", 7001}, {"127.0.0.1", 7002}};
 *     dpr_client_config cfg = {.shards = shards, .nshards = 2,
 *                              .finder = {"127.0.0.1", 7000},
 *                              .domain = "default"};  // NULL: "default" too
 *     dpr_client *c;  dpr_client_session *s;  dpr_err err;
 *     if (dpr_client_new(&cfg, &c, &err) < 0)
 *         fprintf(stderr, "%s\n", err.msg);
 *     dpr_client_session_open(c, 0, &s);
 *     const char *argv[] = {"SET", "k", "v"};
 *     dpr_op op = {3, argv, NULL};
 *     uint64_t seq;  redisReply *reply;
 *     dpr_client_session_exec(s, &op, &reply, &seq);      // one op, blocking
 *     freeReplyObject(reply);
 *     dpr_client_session_wait_committed(s, seq, 1000);   // durable now
 *
 * Pipelining: dpr_client_session_send() queues a batch to one shard and
 * writes what the socket takes without blocking; dpr_client_session_recv()
 * returns answered batches (per shard in send order). At most
 * `pipeline_depth` batches per shard are in flight (-EAGAIN beyond). In
 * strict mode (the default; see session.h) a batch may go to a shard only
 * when no batch to another shard is in flight (-EBUSY: receive first); then
 * the operations that survive any failure are a prefix of the session's.
 *
 * Failures: a refused batch (the session's world-line ended) and a batch
 * abandoned because its connection failed both make the session need a
 * rollback (dpr_client_session_needs_rollback). Receive every batch still
 * in flight (until recv returns -ENOENT), then call
 * dpr_client_session_rollback(): it waits until the finder's world-line has
 * moved on (a restarted shard registers with the finder, which bumps it),
 * fetches the cut at which the session's world-line ended (DPR.PREFIX),
 * tells which operations were lost (lost_from: every operation before it
 * survived) and reconnects. If the world-line never moves (the connection
 * broke but no shard crashed) it times out: strict sessions then cannot go
 * on (their abandoned operations stay in doubt); open a new session.
 *
 * Planned restarts (a shard stopped with SIGTERM: docs/dpr-kv.md,
 * "SIGTERM") roll nothing back. The stopping shard answers batches
 * TRYAGAIN (-EINPROGRESS: withdrawn, send them again) and comes back on the
 * same world-line. A session connecting to a shard asks it INFO dpr and
 * keeps what it tells of its process (dpr_run_id) and world-line. When the
 * shard ends a connection (end of stream or reset: not a timeout, not a
 * malformed answer) with batches in flight, recv reconnects (every 50 ms,
 * up to reconnect_timeout_ms): a shard that answers as another process on
 * the session's world-line stopped on purpose, and a planned stop answers
 * every batch it ran before its end of stream, so those batches never ran:
 * they are withdrawn and returned with -ERESTART (send them again; exec
 * does). The same process, another world-line, a finder whose world-line
 * moved on (a crash), a shard that does not tell its process, or no shard
 * within reconnect_timeout_ms: abandoned (-ECONNRESET), as above. (A write
 * that fails does not end the connection at once: the answers the shard
 * wrote before its end are read first.)
 *
 * Clients of a cluster: a program that knows only the cluster's agents
 * (any of them; their finder ports) sets dpr_client_config.agents and
 * .deployment instead of .shards:
 *
 *     dpr_endpoint agents[3] = {{"10.0.0.1", 7000}, {"10.0.0.2", 7000},
 *                               {"10.0.0.3", 7000}};
 *     dpr_client_config cfg = {.agents = agents, .nagents = 3,
 *                              .deployment = "kv"};
 *     dpr_client_new(&cfg, &c, &err);
 *
 * dpr_client_new asks the agents, in turn, DPR.CLUSTER.ENDPOINTS <deployment>
 * (docs/protocol.md): the deployment's layout epoch, every shard's endpoint
 * and worker id. The agents are also the client's finders (unless .finder or
 * .finders are given), and its domain is the deployment's name (unless
 * .domain is given). A session whose shard cannot be reached asks for a
 * newer layout after about a second, and every second after that, until
 * reconnect_timeout_ms: the shards (DPR.LAYOUT) and the agents; a layout
 * with a higher epoch is followed. So a shard that moved to another node
 * (its node was lost: docs/operations.md) is found at its new address even
 * when no other shard can tell. dpr/discover.h (libdpr-discover) finds the
 * agents by DNS-SD.
 *
 * Threads: a dpr_client may be shared by threads (the finder connection is
 * locked); a session belongs to one thread at a time.
 *
 * Return values: 0 (or what is said) or a negative errno (dpr/err.h). The
 * last error's text is in dpr_client_errstr() / dpr_client_session_errstr()
 * (the client and each session keep a dpr_err of their own).
 */
#ifndef DPR_CLIENT_H
#define DPR_CLIENT_H

#include "dpr/export.h"

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpr/depset.h"
#include "dpr/domain.h"
#include "dpr/err.h"
#include "dpr/session.h"

/* hiredis' reply (<hiredis/hiredis.h>) */
struct redisReply;

/* A server address; `worker` is the shard's worker id when has_worker is
 * set (otherwise dpr_client_new asks the shard: INFO dpr). */
typedef struct dpr_endpoint {
    const char *host; /* IPv4/IPv6 literal or host name */
    uint16_t port;
    bool has_worker;
    uint64_t worker;
} dpr_endpoint;

/* Parses "HOST:PORT", "[IPv6]:PORT" or either with "@WORKER" (worker id
 * given) into *ep; the host text is copied into hostbuf (ep->host points to
 * it). -EINVAL for anything else (port 1..65535, a host of at most 255
 * bytes, numbers without leading zeros), -ENAMETOOLONG if the host does not
 * fit in hostcap bytes. */
DPR_EXPORT int dpr_endpoint_parse(const char *text, dpr_endpoint *ep, char *hostbuf,
                                  size_t hostcap);

/* The most finder addresses a client takes (dpr_client_config.finders). */
#define DPR_CLIENT_MAX_FINDERS 16

typedef struct dpr_client_config {
    const dpr_endpoint *shards; /* shard i serves the keys dpr_route_shard(key,
                                 * nshards) == i: the order matters */
    size_t nshards;             /* 1 .. 65536 (0 with agents) */
    dpr_endpoint finder;        /* has_worker/worker ignored */
    int connect_timeout_ms;     /* 0: 2000 */
    int io_timeout_ms;          /* blocking calls (finder, INFO, exec); 0: 5000 */
    unsigned pipeline_depth;    /* batches in flight per shard and session; 0: 64 */
    const char *domain;         /* the DPR domain (domain.h) of the shards: in a
                                 * cluster, the deployment's name; NULL:
                                 * DPR_DOMAIN_DEFAULT ("default") */
    int resize_timeout_ms;      /* how long exec retries while the deployment
                                 * is resized (-TRYAGAIN); 0: 120000 */
    const dpr_endpoint *finders; /* a cluster: any agents' finders (at most
                                  * DPR_CLIENT_MAX_FINDERS), instead of `finder` when
                                  * nfinders > 0; a follower's NOTLEADER
                                  * answer is followed, TRYAGAIN asked again
                                  * until io_timeout_ms, an unreachable one
                                  * skipped */
    size_t nfinders;
    /* A client that knows only a cluster's agents (their finder ports, what
     * the agents publish as finder=: docs/discovery.md): give `agents` and
     * `deployment` instead of `shards`. See "Clients of a cluster" above. */
    const dpr_endpoint *agents; /* at most DPR_CLIENT_MAX_FINDERS; has_worker
                                 * ignored */
    size_t nagents;
    const char *deployment;     /* the deployment's name (required with agents) */
    int reconnect_timeout_ms;   /* how long exec keeps trying to reach a shard
                                 * that cannot be reached (it restarts, or it
                                 * moved), asking for a newer layout every
                                 * second, before it fails; 0: 15000 */
    /* TLS (docs/tls.md): with tls_ca_file, every connection (shards,
     * finders, agents) is TLS, the server's certificate checked against
     * that CA and the host connected to; tls_cert_file and tls_key_file
     * (PEM; NULL: none) are the application's certificate, for servers that
     * require one (`dprctl pki issue client`). NULL: plain TCP. */
    const char *tls_ca_file;
    const char *tls_cert_file;
    const char *tls_key_file;
} dpr_client_config;

typedef struct dpr_client dpr_client;
typedef struct dpr_client_session dpr_client_session;

/* A cut as DPR.SYNC tells it. */
typedef struct dpr_cut {
    uint64_t world_line;
    uint64_t max_version;
    dpr_depset versions; /* worker -> cut version */
} dpr_cut;

DPR_EXPORT void dpr_cut_init(dpr_cut *c);
DPR_EXPORT void dpr_cut_free(dpr_cut *c);
/* dst = src (deep copy; dst initialised). -ENOMEM leaves dst as it was. */
DPR_EXPORT int dpr_cut_copy(dpr_cut *dst, const dpr_cut *src);

/* ---- the client ---------------------------------------------------------- */

/*
 * Copies the configuration, learns missing worker ids from the shards
 * (INFO dpr) and connects to the finder (DPR.SYNC <domain> answers). On
 * failure *out is NULL and err (if not NULL) holds the code and a message.
 * -EINVAL for a bad configuration (among others an invalid domain name:
 * dpr_domain_valid) or two shards with one worker id, -EPROTO for a shard
 * whose INFO has no dpr_worker_id, -EXDEV for a shard whose INFO names
 * another domain (field dpr_domain; shards that do not tell are taken at
 * their word), -EREMOTEIO when the finder refuses (e.g. "unknown domain":
 * no worker of the domain has registered yet), connection errors as -errno.
 * With agents also (the message names the agents and the deployment):
 *   -ENOENT     an agent answered that the cluster has no such deployment
 *               (or it runs alone: a single node's agent does not answer
 *               for its shards; give them, or use dpr_client_discover)
 *   -EHOSTDOWN  a shard has no endpoint known yet (its node is down, or it
 *               has not started); the message names the shards
 *   -EPROTO     an agent's answer of the wrong shape
 *   -EREMOTEIO  another error answer
 *   a connection error (-ECONNREFUSED, -ETIMEDOUT, ...) when no agent
 *   answered; -EAGAIN when those that answered had no leader yet
 */
DPR_EXPORT int dpr_client_new(const dpr_client_config *cfg, dpr_client **out, dpr_err *err);
/* Sessions must be closed first. NULL is fine. */
DPR_EXPORT void dpr_client_free(dpr_client *c);

DPR_EXPORT size_t dpr_client_nshards(const dpr_client *c);
/* The client's domain name (the configured one, the deployment's with
 * agents, or "default"). */
DPR_EXPORT const char *dpr_client_domain(const dpr_client *c);
/* The layout epoch of the client's shard list: the one the agents told
 * (client from agents), 0 for a list given by hand. */
DPR_EXPORT uint64_t dpr_client_layout_epoch(const dpr_client *c);
/* Host and port of shard i (i < nshards) as the client has it; "" and 0
 * beyond. */
DPR_EXPORT const char *dpr_client_shard_host(const dpr_client *c, size_t shard);
DPR_EXPORT uint16_t dpr_client_shard_port(const dpr_client *c, size_t shard);
/* Worker id of shard i (i < nshards). */
DPR_EXPORT uint64_t dpr_client_worker(const dpr_client *c, size_t shard);
/* Shard of a key: dpr_route_shard(key, len, nshards) (route.h). */
DPR_EXPORT uint32_t dpr_client_route(const dpr_client *c, const void *key, size_t len);

/* DPR.SYNC <domain>: the domain's world-line, highest durable version and cut.
 * Reconnects to the finder once if the connection failed. -EPROTO for an
 * answer of the wrong shape, -EREMOTEIO for an error answer. */
DPR_EXPORT int dpr_client_sync(dpr_client *c, dpr_cut *out);
/* DPR.PREFIX <domain> world_line: the cut at which the domain's world_line
 * ended. -EREMOTEIO when the finder refuses (the world-line has not ended,
 * or is forgotten). */
DPR_EXPORT int dpr_client_prefix(dpr_client *c, uint64_t world_line, dpr_depset *cut);
/* Message of the last failed dpr_client_* call (not synchronised between
 * threads: for diagnostics). */
DPR_EXPORT const char *dpr_client_errstr(const dpr_client *c);

/* ---- sessions ------------------------------------------------------------ */

/* One command: argv[0] is the name; argvlen NULL means strlen of each. */
typedef struct dpr_op {
    int argc;
    const char *const *argv;
    const size_t *argvlen;
} dpr_op;

/* Shard an operation goes to: that of its key (argv[1]); shard 0 for a
 * command without arguments. Multi-key commands must keep their keys on one
 * shard (hash tags: route.h). */
DPR_EXPORT uint32_t dpr_client_route_op(const dpr_client *c, const dpr_op *op);

/* What became of one batch. */
typedef struct dpr_batch_result {
    uint64_t batch_id;
    uint64_t first_seq; /* its operations are first_seq .. first_seq + op_count - 1 */
    uint32_t op_count;
    uint32_t shard;
    /*  0            executed: replies[i] is operation i's reply (an error reply
     *               is still an executed operation)
     *  -ESTALE      refused: the session's world-line has ended; the
     *               operations did not run and are lost; roll back
     *  -ECONNRESET  abandoned: the connection failed before the answer; the
     *               operations are in doubt and count as lost at the next
     *               rollback
     *  -ERESTART    withdrawn: the shard ended the connection before the
     *               answer and came back as another process on the session's
     *               world-line (a planned restart: "Planned restarts" above);
     *               nothing of it ran: send it again (at once: the session is
     *               connected to the new process). A connection's batches are
     *               withdrawn newest first, so those that were the session's
     *               newest have their sequence numbers issued again; others
     *               are void (dpr_session_is_withdrawn)
     *  -EREMCHG     withdrawn: the shard does not own a key of it under the
     *               deployment's layout (-MOVED); nothing of it ran. Call
     *               dpr_client_session_refresh_layout and send the
     *               operations again, routed by dpr_client_session_route_op
     *  -EINPROGRESS withdrawn: the deployment is being resized (-TRYAGAIN);
     *               nothing of it ran: send it again a little later
     *               (withdrawn batches: if it was the newest batch its
     *               sequence numbers are issued again, else they are void:
     *               dpr_session_is_withdrawn, session.h)
     *  -EREMOTEIO   abandoned: the shard answered an error instead of running
     *               the batch (text in dpr_client_session_errstr)
     *  -EPROTO      abandoned: malformed answer; the connection was closed */
    int status;
    uint64_t world_line;         /* executed: the batch's; refused: the newer one */
    uint64_t version;            /* executed: version of the last operation */
    struct redisReply **replies; /* executed: op_count replies, else NULL */
    struct redisReply *owner_;   /* private: owns the replies */
} dpr_batch_result;

/* Frees the replies (dpr_batch_result_free on a zeroed result is fine). */
DPR_EXPORT void dpr_batch_result_free(dpr_batch_result *r);

/*
 * Opens a session (flags: 0 = strict, or DPR_SESSION_RELAXED) on the
 * finder's current world-line (DPR.SYNC) with a random 128-bit id. Its
 * connection to a shard is opened by the first batch sent there. -errno on
 * failure (text in dpr_client_errstr).
 */
DPR_EXPORT int dpr_client_session_open(dpr_client *c, unsigned flags, dpr_client_session **out);
/* Closes the connections; batches in flight are dropped. NULL is fine. */
DPR_EXPORT void dpr_client_session_close(dpr_client_session *s);

/* The session's state (world_line, next_seq, commit_point, ...): read only. */
DPR_EXPORT const dpr_session *dpr_client_session_state(const dpr_client_session *s);
DPR_EXPORT const char *dpr_client_session_errstr(const dpr_client_session *s);

/*
 * Sends nops operations (all for `shard`) as one batch; they get the
 * sequence numbers *first_seq ... Never blocks on the network except to
 * (re)connect a shard whose connection was lost. Every successful send
 * yields exactly one dpr_batch_result from dpr_client_session_recv.
 *  -EINVAL   shard out of range, nops 0 or above 2^24, an op with argc < 1
 *  -EAGAIN   pipeline_depth batches to that shard in flight: receive first
 *  -EBUSY    strict mode: a batch to another shard is in flight: receive first
 *  -ESTALE   the session must roll back first (a refusal, or in strict mode
 *            an abandoned batch)
 *  -ENOMEM, or a connect error (nothing was sent; try again later)
 */
DPR_EXPORT int dpr_client_session_send(dpr_client_session *s, uint32_t shard, const dpr_op *ops,
                                       uint32_t nops, uint64_t *first_seq);

/*
 * Returns the next answered (or abandoned) batch; the caller frees it with
 * dpr_batch_result_free. Waits up to timeout_ms (-1: no limit, 0: only
 * what has arrived). 0 with *res filled; -ENOENT when no batch is in
 * flight; -EAGAIN (timeout 0) or -ETIMEDOUT when none answered in time (the
 * batches stay in flight). The session is updated before this returns
 * (versions, dependencies, refusal, abandonment, withdrawal). The batches
 * of a connection the shard ended stay in flight until the shard is back
 * (or reconnect_timeout_ms passed: "Planned restarts" above): meanwhile
 * recv tries to reconnect every 50 ms, blocking up to connect_timeout_ms +
 * io_timeout_ms per try (at once on a refused port).
 */
DPR_EXPORT int dpr_client_session_recv(dpr_client_session *s, int timeout_ms,
                                       dpr_batch_result *res);

/* Batches sent and not yet returned by recv (one shard, or all with
 * shard == UINT32_MAX). */
DPR_EXPORT size_t dpr_client_session_inflight(const dpr_client_session *s, uint32_t shard);

/*
 * For an outside event loop: fills up to cap pollfds (fd and events) for
 * the connections that have batches in flight or unwritten output, and
 * returns how many (at most nshards). When one is ready, call
 * dpr_client_session_recv(s, 0, ...) until -EAGAIN or -ENOENT. A shard
 * that ended a connection with batches in flight has no fd while recv
 * reconnects it: with batches in flight and fewer fds than that, call recv
 * at least every 50 ms.
 */
DPR_EXPORT size_t dpr_client_session_pollfds(dpr_client_session *s, struct pollfd *fds, size_t cap);

/*
 * One operation, blocking: sends it to its shard (dpr_client_session_route_op),
 * waits up to io_timeout_ms for the answer and hands over the reply (free
 * it with freeReplyObject). *seq (if not NULL) gets its sequence number.
 * It follows the deployment's layout: on -EREMCHG it refreshes the
 * session's layout and sends the operation again to its owner; on
 * -EINPROGRESS it waits (10 to 200 ms, doubling) and sends it again, for up
 * to resize_timeout_ms (then -ETIMEDOUT); on -ERESTART (a planned restart
 * cut it off) it sends it again at once. The withdrawn batch was the
 * newest, so the operation keeps its sequence number. A shard that cannot
 * be reached (nothing was sent) is tried again every 50 ms; the session
 * asks the other shards for a newer layout at once, and after every second
 * without the shard the shards and the agents (a client from agents:
 * dpr_client_session_refresh_layout); a newer layout re-routes the
 * operation. After reconnect_timeout_ms without the shard, the connect
 * error is returned (the message says for how long).
 * -EBUSY when other batches are in flight; a batch's failure status
 * (-ESTALE, -ECONNRESET, ...) otherwise, or a send error. -ETIMEDOUT when
 * no answer came within io_timeout_ms (a shard whose node was lost leaves
 * its connection silent, not closed): the connection is given up and the
 * operation abandoned (in doubt, the session needs a rollback, as for
 * -ECONNRESET); the next send connects again, or finds where the shard
 * moved.
 */
DPR_EXPORT int dpr_client_session_exec(dpr_client_session *s, const dpr_op *op,
                                       struct redisReply **reply, uint64_t *seq);

/*
 * Layouts (docs/dpr-kv.md, "Layouts and resizing"): a resize changes the
 * deployment's shards, and a shard that moves to another node (its node
 * was lost) changes its address. A session routes by its own shard list:
 * the client's until dpr_client_session_refresh_layout finds a newer layout
 * and adopts it: DPR.LAYOUT on the session's shards and, for a client from
 * agents, DPR.CLUSTER.ENDPOINTS on the agents (the one that answered last
 * first; used when it names every shard's endpoint); the highest epoch
 * wins, and must be above the session's. (The agents' answer at the
 * session's own epoch, with the same worker ids and a shard at another
 * address, is taken too: when the only shard, or every one, moved, no
 * shard kept the epoch and the layout is given anew from its first epoch.)
 * New shards' worker ids are learned (INFO, or the agents' answer), every
 * shard connection is reopened. Returns 1 if the layout changed, 0 if not,
 * -EBUSY while batches are in flight, other errors as -errno.
 * dpr_client_session_exec does this
 * by itself on -EREMCHG and when a shard cannot be reached (see there),
 * and waits and retries on -EINPROGRESS for up to resize_timeout_ms.
 * A session opened later starts from the client's list again.
 */
DPR_EXPORT int dpr_client_session_refresh_layout(dpr_client_session *s);
/* The shard of op under the session's layout (dpr_client_route_op for its
 * shard list), its shard count, its layout epoch (at first the client's:
 * dpr_client_layout_epoch), and "HOST:PORT" parts of its shard i. */
DPR_EXPORT uint32_t dpr_client_session_route_op(const dpr_client_session *s, const dpr_op *op);
DPR_EXPORT size_t dpr_client_session_nshards(const dpr_client_session *s);
DPR_EXPORT uint64_t dpr_client_session_layout_epoch(const dpr_client_session *s);
DPR_EXPORT const char *dpr_client_session_shard_host(const dpr_client_session *s, size_t shard);
DPR_EXPORT uint16_t dpr_client_session_shard_port(const dpr_client_session *s, size_t shard);

/*
 * Advances the commit point with a cut (from dpr_client_sync; one sync may
 * serve many sessions). *commit_point (if not NULL) gets it. A cut of an
 * older world-line is ignored; one of a newer world-line returns -ESTALE
 * (roll back) and changes nothing.
 */
DPR_EXPORT int dpr_client_session_apply_cut(dpr_client_session *s, const dpr_cut *cut,
                                            uint64_t *commit_point);
/* dpr_client_sync + dpr_client_session_apply_cut. */
DPR_EXPORT int dpr_client_session_commit_point(dpr_client_session *s, uint64_t *commit_point);
/* Is operation seq committed (see dpr_session_is_committed)? No I/O. */
DPR_EXPORT bool dpr_client_session_is_committed(const dpr_client_session *s, uint64_t seq);
/*
 * Polls the finder until operation seq is committed: 0; -ETIMEDOUT after
 * timeout_ms (-1: no limit); -ECANCELED if a rollback reported it lost;
 * -ESTALE when the session must roll back first; -EINVAL for a sequence
 * number not issued yet.
 */
DPR_EXPORT int dpr_client_session_wait_committed(dpr_client_session *s, uint64_t seq,
                                                 int timeout_ms);

/* Must the session roll back before it goes on (a refusal, an abandoned
 * batch, or a newer world-line seen in a cut)? */
DPR_EXPORT bool dpr_client_session_needs_rollback(const dpr_client_session *s);

/*
 * Rolls the session over to the finder's current world-line: waits up to
 * timeout_ms (-1: no limit) for the finder's world-line to pass the
 * session's, asks DPR.PREFIX for the cut at which the session's world-line
 * ended, applies it (dpr_session_rollback: *res tells lost_from, lost_count
 * and, in relaxed mode, survivors above lost_from; free res->survived_above)
 * and reconnects lost shard connections, for up to io_timeout_ms (a shard
 * still unreachable after about a second makes it look for a newer layout,
 * as exec does; one still unreachable after that is retried by the next
 * send). -EBUSY while batches are in flight or results
 * are waiting in recv; -ETIMEDOUT if the world-line did not move (nothing
 * changed); -EREMOTEIO if the finder no longer knows the prefix.
 */
DPR_EXPORT int dpr_client_session_rollback(dpr_client_session *s, int timeout_ms,
                                           dpr_rollback_result *res);

#endif
