/*
 * rafttransport.h - the Raft member's transport: c-raft's own TCP transport
 * (raft_uv_tcp_init) behind a wrapper that is the seam for what the agents
 * add to every link between them. Today it turns Nagle's algorithm off on
 * each connection, made or accepted: c-raft does not, and its small
 * AppendEntries results then waited for delayed ACKs (40 ms tails in
 * bench-raft, docs/benchmarks.md). With TLS (agent.conf's tls section) the
 * inner transport is rafttls.h's instead of c-raft's TCP one.
 */
#ifndef AGENT_RAFTTRANSPORT_H
#define AGENT_RAFTTRANSPORT_H

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "agenttls.h"

typedef struct agent_raft_transport {
    struct raft_uv_transport outer;  /* what raft_uv_init takes */
    struct raft_uv_transport inner;  /* c-raft's TCP transport, or rafttls.h's */
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb close_cb;
    int inner_open;
    int tls;
} agent_raft_transport;

/* 0 or a c-raft error code (RAFT_NOMEM). tls: NULL plain TCP, else mutual
 * TLS with its contexts (kept alive by the caller, agent_raft_transport_tls
 * replaces them). */
int agent_raft_transport_init(agent_raft_transport *t, uv_loop_t *loop, const agent_tls *tls);
/* New connections use tls (a transport made with TLS only). */
void agent_raft_transport_tls(agent_raft_transport *t, const agent_tls *tls);
/* After c-raft closed it (its close callback ran), or if it was never used. */
void agent_raft_transport_free(agent_raft_transport *t);

#endif
