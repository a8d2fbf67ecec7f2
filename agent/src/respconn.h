/*
 * respconn.h - the agent's RESP client connection on libuv: to a shard
 * (layout.h's INFO and DPR.LAYOUT) or to the finder port of the agents
 * (peerreq.h). It connects over TCP within a timeout, optionally with TLS
 * (the agent's connecting context, agenttls.h: the peer must show a node
 * certificate of the cluster before anything is sent), sends commands
 * (pipelined: each may be given before the last answered, even before the
 * connection is up) and reads the replies with hiredis' reader within a
 * bound (respread.h).
 *
 * Each command's callback is called once, in the order the commands were
 * given: with its reply, or with an error and no reply when the connection
 * fails (refused, timed out, TLS refused, broken, closed by the peer, a
 * reply that is not RESP or too big) or is closed (-ECANCELED). A failed
 * connection stays failed (agent_respconn_failed; the reason in
 * agent_respconn_errstr): close it and open another. Closing from inside a
 * callback is fine; the memory goes once libuv closed the handles. Loop
 * thread only.
 */
#ifndef AGENT_RESPCONN_H
#define AGENT_RESPCONN_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "common/tls.h"

#define AGENT_RESPCONN_CONNECT_MS 2000
#define AGENT_RESPCONN_MAX_REPLY (16u << 20)

typedef struct agent_respconn agent_respconn;

/* A command's end: status 0 and the reply (the connection's: valid during
 * the call only), or a negative errno and NULL. */
typedef void (*agent_respconn_reply_fn)(void *arg, int status, const redisReply *reply);

typedef struct agent_respconn_opts {
    const char *endpoint;        /* "HOST:PORT" (copied) */
    unsigned connect_ms;         /* 0: AGENT_RESPCONN_CONNECT_MS (the TLS handshake included) */
    size_t max_reply;            /* bytes of one reply; 0: AGENT_RESPCONN_MAX_REPLY */
    dpr_tls_ctx *tls;            /* the agent's connecting context (the connection takes a
                                  * reference), or NULL: plain TCP */
    const char *tls_what;        /* for a refusal: "only agents <what>"; NULL: "answer agents" */
} agent_respconn_opts;

/* Starts connecting: 0 and *out, or -ENOMEM / -EINVAL (a bad endpoint,
 * with the reason in err). Failing to connect is told through the
 * commands' callbacks (and agent_respconn_failed), never from here. */
int agent_respconn_open(uv_loop_t *loop, const agent_respconn_opts *o, agent_respconn **out,
                        dpr_err *err);
/* Sends argv (argc strings of argvlen bytes; argvlen NULL: strlen); cb is
 * called once, later (never from inside this call). 0, -ENOTCONN (the
 * connection failed or is closing: cb is not called) or -ENOMEM. */
int agent_respconn_command(agent_respconn *c, int argc, const char *const *argv,
                           const size_t *argvlen, agent_respconn_reply_fn cb, void *arg);
/* The callbacks still waiting get -ECANCELED now; c must not be used
 * after. NULL: no-op. */
void agent_respconn_close(agent_respconn *c);

bool agent_respconn_failed(const agent_respconn *c);
/* Commands sent and not answered yet. */
size_t agent_respconn_pending(const agent_respconn *c);
/* Why it failed ("" while it did not). */
const char *agent_respconn_errstr(const agent_respconn *c);

#endif
