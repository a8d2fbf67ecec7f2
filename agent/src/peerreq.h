/*
 * peerreq.h - one request from this agent to the cluster's leader agent:
 * a RESP command sent to the finder port of the agents (common/finders.h's
 * list), following NOTLEADER, trying the next address after TRYAGAIN or a
 * connection that fails, each attempt bounded by a timeout. Used for the
 * membership commands (DPR.CLUSTER.*, membership.h). Loop thread only.
 */
#ifndef AGENT_PEERREQ_H
#define AGENT_PEERREQ_H

#include <stddef.h>
#include <uv.h>

#include "common/finders.h"

#define AGENT_PEERREQ_ATTEMPT_MS 2000

typedef struct agent_peerreq agent_peerreq;

/* The end of a request: status 0 and the leader's answer (a status or
 * error text without its "+"/"-"; error 1 when it was an error reply), or
 * status -EHOSTUNREACH (no leader answered within the timeout) / -ENOMEM,
 * text NULL. */
typedef void (*agent_peerreq_done_fn)(void *arg, int status, int error, const char *text);

struct agent_tls;

/*
 * Sends argv (argc strings, copied) to targets' leader, trying for
 * timeout_ms (an unreachable address: the next one after 50 ms). done is called once,
 * on a later loop turn (never from inside this call), unless the request
 * is cancelled first. 0 (and *out, for
 * cancelling) or -ENOMEM.
 *
 * tls (NULL, or *tls NULL: plain TCP): where the agent keeps its TLS
 * contexts (agenttls.h; read at each attempt, so a reload's new one is
 * used from the next): every attempt is a TLS connection with the
 * connecting context, and targets are the finders' TLS ports
 * (agent_finder_tls_address). A NOTLEADER answer names the leader's plain
 * port: the TLS port of targets' first address is asked there instead
 * (every node's TLS port is the same, finder.tls_listen's).
 */
int agent_peerreq_send(uv_loop_t *loop, const dpr_finders *targets,
                       struct agent_tls *const *tls, unsigned timeout_ms, int argc,
                       const char **argv, agent_peerreq_done_fn done, void *arg,
                       agent_peerreq **out);
/* done is never called; the memory goes once the handles closed. */
void agent_peerreq_cancel(agent_peerreq *q);

#endif
