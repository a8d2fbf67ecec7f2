/*
 * control.h - the control socket on libuv: a Unix stream socket, peer
 * credential check, newline-delimited JSON with a 1 MiB line limit,
 * requests answered in order, and event streams with a bounded backlog
 * (docs/control-api.md). What a request does is the handler's business.
 *
 * Optionally the same protocol over TCP too (docs/control-api.md, "Over
 * TCP"): its callers have no credentials (agent_peer.remote, named by their
 * address) and, unless remote_full, only read operations reach the handler
 * (status, nodes, events, plan, apply with dry_run: an allow-list, so an op
 * added later is refused over TCP until it is put on it); the others get a
 * permission_denied reply and the connection stays open.
 *
 * Abuse limits (docs/control-api.md, "Limits"): a caller that is neither
 * root nor in the control group gets one permission_denied line at accept,
 * written without reading its input, and is closed at once; it holds no
 * slot and no buffer. Served connections count toward a total limit (of
 * which some slots are kept for root) and, for non-root uids, a per-uid
 * limit. A connection that the agent waits on (no reply being written, not
 * an event stream) for idle_timeout_ms without completing a request line is
 * closed with an error line. Input is buffered as it arrives (never a whole
 * line up front), and the input buffered by all connections together is
 * bounded: past max_input_bytes the connection holding the most (non-root
 * first) is closed with an error line. TCP callers count toward the total
 * as non-root callers (never in root's slots), and the per-user limit holds
 * for all TCP connections from one IP address together.
 */
#ifndef AGENT_CONTROL_H
#define AGENT_CONTROL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "dpr/err.h"
#include "peercred.h"
#include "proto.h"

typedef struct agent_control agent_control;
typedef struct agent_client agent_client;

/* Answers one parsed request: returns the reply (a new reference; NULL for
 * an internal error reply), or AGENT_REPLY_DEFERRED after
 * agent_client_defer(c) (the reply comes later; the client's further
 * requests wait for it). May call agent_client_make_stream(c). */
typedef json_t *(*agent_control_handler)(void *arg, agent_client *c, const agent_request *req);

/* A request whose reply comes later. */
typedef struct agent_pending agent_pending;
extern const char agent_reply_deferred_marker;
#define AGENT_REPLY_DEFERRED ((json_t *)(void *)&agent_reply_deferred_marker)

/* Defaults of the limits (config control.*, conf/agent.conf). */
#define AGENT_CONTROL_MAX_CONNECTIONS 256
#define AGENT_CONTROL_MAX_PER_USER 32
#define AGENT_CONTROL_ROOT_RESERVED 16
#define AGENT_CONTROL_IDLE_TIMEOUT_MS 10000
#define AGENT_CONTROL_MAX_INPUT_BYTES (16u * 1024 * 1024)
/* The least max_input_bytes: room for a maximal request line (1 MiB and
 * its newline) besides others. */
#define AGENT_CONTROL_MIN_INPUT_BYTES (2u * 1024 * 1024)

typedef struct agent_control_config {
    const char *path;          /* socket path; its directory is created if missing */
    bool have_group;           /* false: only root is served */
    gid_t group;
    size_t max_clients;        /* served connections in all; 0: the default */
    size_t max_per_user;       /* served connections of one non-root uid; 0: the default */
    size_t root_reserved;      /* of max_clients, slots only root may take (< max_clients) */
    unsigned idle_timeout_ms;  /* 0: the default */
    size_t max_input_bytes;    /* input buffered by all connections; 0: the default */
    size_t max_event_backlog;  /* bytes queued to an event stream; 0: 1 MiB */
    /* the API over TCP too: "HOST:PORT" (common/addr.h; a wildcard host,
     * "*:PORT" or ":PORT", listens on every IPv6 and IPv4 address; port 0: one
     * the kernel chooses, see agent_control_tcp_address); NULL: off */
    const char *listen;
    bool remote_full;          /* TCP callers may change things (else read-only) */
} agent_control_config;

/*
 * Binds and listens (a stale socket file is replaced; the socket is mode
 * 0666: the credential check decides), and on TCP when cfg->listen is set.
 * 0 or a negative errno with a message (then nothing listens).
 */
int agent_control_open(uv_loop_t *loop, const agent_control_config *cfg,
                       agent_control_handler handler, void *arg, agent_control **out,
                       dpr_err *err);
/* The current request of c is answered later: a handle for
 * agent_pending_reply (NULL: out of memory, answer now). */
agent_pending *agent_client_defer(agent_client *c);
/* The handler answers now after all (it returns its reply): forgets p
 * (NULL: nothing). */
void agent_pending_cancel(agent_pending *p);
/* Sends the deferred reply (steals reply; NULL: an internal error) and
 * frees p; nothing is sent when the client went away meanwhile. */
void agent_pending_reply(agent_pending *p, json_t *reply);
/* After this request's reply, c only receives events. */
void agent_client_make_stream(agent_client *c);
const agent_peer *agent_client_peer(const agent_client *c);
/* Who c is, for logs: "pid 12 uid 0", or "10.0.0.5:41234" over TCP. */
const char *agent_client_name(const agent_client *c);
/* The TCP listener's bound address ("127.0.0.1:7500", "[::]:7500"; the
 * real port when 0 was asked for), or NULL when there is none. */
const char *agent_control_tcp_address(const agent_control *ctl);
/* Sends {"v":1,"event":event} to every event stream (event is borrowed).
 * A stream whose backlog would exceed the limit is disconnected. */
void agent_control_publish(agent_control *ctl, const json_t *event);
size_t agent_control_stream_count(const agent_control *ctl);
/* Closes the listener and every client, removes the socket file; the
 * memory goes once the loop has run the close callbacks. */
void agent_control_close(agent_control *ctl);

#endif
