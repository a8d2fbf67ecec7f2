/*
 * agenttls.h - the agent's TLS contexts (agent.conf's tls section,
 * docs/tls.md): one to accept and one to connect, both asking the peer
 * for a certificate of the cluster's CA that names this cluster
 * (dpr://CLUSTER/node/NAME). Loading checks that this node's own
 * certificate names this node and this cluster and has not expired.
 * A reload (SIGHUP) is loading again and handing the new contexts to the
 * links: connections that are open keep the ones they were made with.
 */
#ifndef AGENT_AGENTTLS_H
#define AGENT_AGENTTLS_H

#include "common/tls.h"
#include "config.h"

typedef struct agent_tls {
    dpr_tls_ctx *server; /* accepting side */
    dpr_tls_ctx *client; /* connecting side */
    char describe[320];  /* "CN=n1,O=prod serial 1A2B" */
} agent_tls;

/* Reads c's tls files. 0, or a negative errno with a message naming the
 * file and the reason (-EACCES: the certificate names another node or
 * cluster, or has expired). Free with agent_tls_free. */
int agent_tls_load(const agent_config *c, agent_tls **out, dpr_err *err);
void agent_tls_free(agent_tls *t);

/* Checks a PEM certificate file (the first certificate) against the
 * identity dpr://cluster/node/node and its validity period: 0, -EACCES
 * (with the reason) or -EIO (unreadable). */
int agent_tls_check_own(const char *cert_file, const char *cluster, const char *node,
                        dpr_err *err);

#endif
