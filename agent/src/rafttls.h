/*
 * rafttls.h - c-raft's transport (struct raft_uv_transport) over mutual
 * TLS: it listens and connects on TCP itself, runs the TLS engine
 * (common/tls.h) on each connection, and hands c-raft, once the peer is
 * verified (a certificate of the cluster's CA naming this cluster, role
 * node), one end of a socket pair that carries the plaintext; it moves the
 * bytes between the pair and the TLS connection. c-raft's own handshake
 * (protocol 1, the member's ID and address, as its TCP transport sends it)
 * goes inside TLS. A peer that fails the TLS handshake is refused with one
 * warning naming it and the reason (at most 20 a second), and nothing it
 * sent reaches c-raft.
 */
#ifndef AGENT_RAFTTLS_H
#define AGENT_RAFTTLS_H

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "agenttls.h"

/* t becomes a TLS transport using tls's contexts (not owned: the caller
 * keeps tls alive until it sets another or the transport is freed).
 * 0 or RAFT_NOMEM. */
int agent_rafttls_init(struct raft_uv_transport *t, uv_loop_t *loop, const agent_tls *tls);
/* New connections use tls from now on; open ones keep theirs. */
void agent_rafttls_set(struct raft_uv_transport *t, const agent_tls *tls);
/* After c-raft closed it, or if it was never used. */
void agent_rafttls_free(struct raft_uv_transport *t);

#endif
