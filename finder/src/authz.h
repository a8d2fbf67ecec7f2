/*
 * authz.h - who may run which finder command on a TLS connection (issue 14,
 * docs/protocol.md "Authorization"), without any I/O.
 *
 * On the finder's TLS port the peer's verified certificate decides:
 *  - role "node" (dpr://CLUSTER/node/NAME: agents, cache-stores) may run
 *    every command (register, report, leave, remove, authenticate, ...);
 *  - anyone else (role "client", a certificate without a dpr:// URI, or no
 *    certificate where --tls-auth-clients allows none) may only read:
 *    DPR.SYNC, DPR.PREFIX, DPR.DOMAINS, PING, COMMAND, QUIT.
 * The plain port does not authorize (turn it off with --port 0).
 */
#ifndef DPR_FINDER_AUTHZ_H
#define DPR_FINDER_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>

#include "common/tls.h"

/* May a peer (NULL: no certificate) run the command named cmd (n bytes,
 * case-insensitive)? */
bool dpr_authz_allowed(const dpr_tls_peer *peer, const char *cmd, size_t n);

/* The peer for a log line or an error: "dpr://c1/client/app",
 * "certificate CN=x (no dpr:// name)" or "no certificate". */
void dpr_authz_describe(const dpr_tls_peer *peer, char *out, size_t cap);

/* Appends the refusal "-ERR permission denied: <peer> may not run <CMD>
 * (...)\r\n" to out: 0 or -ENOMEM. */
int dpr_authz_refuse(const dpr_tls_peer *peer, const char *cmd, size_t n, dpr_buf *out);

#endif
