/*
 * agenttls.h - the agent's TLS contexts (agent.conf's tls section,
 * docs/tls.md): one to accept and one to connect, both asking the peer
 * for a certificate of the cluster's CA that names this cluster
 * (dpr://CLUSTER/node/NAME). Loading checks that this node's own
 * certificate names this node and this cluster and has not expired.
 * A reload (SIGHUP) is loading again and handing the new contexts to the
 * links: connections that are open keep the ones they were made with.
 *
 * Then what every TLS link of the agent does with a connection's engine on
 * a libuv stream (Raft, checkpoint copies, peer requests): send the
 * engine's ciphertext, take bytes read and check, once the handshake is
 * done, that the peer is a node (only agents talk to agents), and log
 * refusals at most 20 a second.
 */
#ifndef AGENT_AGENTTLS_H
#define AGENT_AGENTTLS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/tls.h"
#include "common/uvutil.h"
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

/* Sends what t has for the peer (handshake, records, alerts) on s; done as
 * dpr_uv_write's (may be NULL). 0 or a negative errno. */
int agent_tls_flush(dpr_tls_conn *t, uv_stream_t *s, dpr_uv_written_cb done);
/* Plaintext to the peer: through t, then on s. 0 or a negative errno. */
int agent_tls_send(dpr_tls_conn *t, uv_stream_t *s, const void *data, size_t n,
                   dpr_uv_written_cb done);

/*
 * n bytes read from s: fed to t, the plaintext they complete appended to
 * *plain, t's answer (handshake, alert) sent on s. Once the handshake is
 * done (*verified false before), the peer must be a node of the cluster
 * (the contexts checked the CA and the cluster): *verified becomes true.
 * 0 (check dpr_tls_conn_established before using *plain), or a negative
 * errno with why set (-EPROTO: not TLS, a refused certificate; -EACCES:
 * another cluster's, or not a node's, "only agents <what>").
 */
int agent_tls_input(dpr_tls_conn *t, uv_stream_t *s, const void *data, size_t n,
                    bool *verified, dpr_buf *plain, const char *what, char *why, size_t cap);

/* At most 20 refusal lines a second per limiter. */
typedef struct agent_tls_limit {
    uint64_t second;
    unsigned count;
} agent_tls_limit;
/* Whether a line may be logged now (now_ms: uv_now). */
bool agent_tls_limit_ok(agent_tls_limit *l, uint64_t now_ms);

#endif
