/*
 * replserver.h - receives copies of checkpoints from other agents
 * (checkpoint replication, replica.h) and keeps them in replstore.h's
 * layout.
 *
 * A TCP listener (agent.conf replication.listen) speaking RESP, every
 * command naming this node's cluster first (another cluster's agent is
 * refused):
 *
 *   DPR.REPL.HAVE <cluster> <deployment> <worker> <version>
 *       :N   bytes received of that copy so far (0: nothing), :-1 finished
 *   DPR.REPL.PUT <cluster> <deployment> <worker> <version> <offset> <bytes>
 *       +OK  appended (offset must be what HAVE said; 0 starts afresh);
 *            at most AGENT_REPL_CHUNK_MAX bytes
 *   DPR.REPL.DONE <cluster> <deployment> <worker> <version> <size> <crc32>
 *       +OK  the copy is whole (size and CRC-32 match), fsync'd, renamed and
 *            its directory fsync'd; -ERR mismatch: send it again
 *
 * With TLS (agent_replserver_set_tls, agent.conf's tls section) the
 * listener speaks only TLS, and only to a node of this cluster (its
 * certificate dpr://CLUSTER/node/NAME, of the cluster's CA): an
 * application's certificate, plain text, another CA's or cluster's
 * certificate are refused at the handshake with one warning (at most 20 a
 * second), before any command runs; so is a connection that has not
 * finished its handshake within 10 s.
 *
 * Errors are "-ERR <what>" (a full disk: "-ERR ... No space left on
 * device"). A transfer that breaks resumes where HAVE says. The file work
 * runs on libuv's thread pool, one command at a time per connection (a
 * connection is not read while its command runs: bounded memory).
 *
 * A second, local listener (a unix socket, agent_replserver_listen_local)
 * takes the cache-stores' one command, answered when the caller's hook
 * says (the copies are made):
 *
 *   DPR.REPLICA.SHIP <instance> <token> <version> <path>
 *       +OK  every replica node holds the checkpoint file; -ERR why not
 */
#ifndef AGENT_REPLSERVER_H
#define AGENT_REPLSERVER_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "common/tls.h"
#include "dpr/err.h"
#include "replproto.h"


typedef struct agent_replserver agent_replserver;

/* Listens on listen ("HOST:PORT"; port 0: any) for cluster's agents, keeping
 * copies under root. 0, or a negative errno with err set. */
int agent_replserver_start(uv_loop_t *loop, const char *listen, const char *cluster,
                           const char *root, agent_replserver **out, dpr_err *err);
/* The address it listens on ("HOST:PORT"). */
const char *agent_replserver_address(const agent_replserver *s);
/* New connections of the TCP listener are TLS with tls (the agent's server
 * context, not owned: kept alive until replaced; NULL: plain TCP); open
 * ones keep theirs. */
void agent_replserver_set_tls(agent_replserver *s, dpr_tls_ctx *tls);
/* A DPR.REPLICA.SHIP waiting for its answer. */
typedef struct agent_replserver_call agent_replserver_call;
typedef void (*agent_replserver_ship_fn)(void *arg, agent_replserver_call *call,
                                         const char *instance, const char *token,
                                         uint64_t version, const char *path, uid_t peer_uid);
/* Listens on the unix socket path (replaced if it exists; mode 0600, the
 * caller opens it to the cache-stores' group) for DPR.REPLICA.SHIP:
 * ship(arg, call, ..., peer_uid) runs for each (peer_uid: the caller's uid
 * from SO_PEERCRED, whose files alone it may name), and the caller
 * answers it with agent_replserver_answer (once; the connection takes no
 * other command until then). 0 or a negative errno with err set. */
int agent_replserver_listen_local(agent_replserver *s, const char *path,
                                  agent_replserver_ship_fn ship, void *arg, dpr_err *err);
/* Answers call: status 0 "+OK", else "-ERR <error>". */
void agent_replserver_answer(agent_replserver_call *call, int status, const char *error);

/* Closes the listener and the connections; the memory goes once libuv
 * closed every handle and the thread pool finished its work. NULL: no-op. */
void agent_replserver_stop(agent_replserver *s);

#endif
