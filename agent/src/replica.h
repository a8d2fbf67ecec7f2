/*
 * replica.h - checkpoint replication in a cluster of agents: a checkpoint
 * counts as durable only once it is on its own node and on the instance's
 * replica nodes (the placement's, placement.h).
 *
 *  - A cache-store reports a checkpoint to the finder only after asking
 *    its agent on the unix socket replication.socket (its instance file's
 *    DPR_KV_REPLICA_SOCKET): DPR.REPLICA.SHIP <instance> <token> <version>
 *    <path>. The agent checks the token, copies the file to each replica
 *    node (replclient.h) and answers +OK once every copy is durable there,
 *    at once when the instance has no replicas, or -ERR with what failed:
 *    the cache-store asks again and reports nothing newer meanwhile (its
 *    commits wait; nothing is lost).
 *  - Copies from other nodes arrive at replication.listen (replserver.h)
 *    and are kept under <state_directory>/replicas (replstore.h).
 *  - Every CLUSTER_TICK_MS: copies a restore can no longer need are pruned
 *    (below the newest one at or below the worker's cut entry, as the
 *    cache-store prunes its own), and the copies of workers this node is
 *    no replica of any more are removed.
 *
 * Status shows, per instance of this node, its replica nodes, the newest
 * version copied to all of them and the last failure.
 */
#ifndef AGENT_REPLICA_H
#define AGENT_REPLICA_H

#include <jansson.h>

#include "dpr/err.h"
#include "state.h"

/* The cache-store instances' group (units/dpr-cachestore@.service's
 * Group=, conf/sysusers.conf). When it exists, the replicas directory is
 * root:dpr-cachestore mode 0750 (files 0640: an instance moved here reads
 * its seed, DPR_KV_SEED_DIR) and replication.socket root:dpr-cachestore
 * 0660; without it both are root's alone. */
#define AGENT_CS_GROUP "dpr-cachestore"

typedef struct agent agent;
typedef struct agent_replica agent_replica;
struct agent_tls;

/* Starts the listeners (a cluster only). 0 or a negative errno, err set. */
int agent_replica_start(agent *a, dpr_err *err);
/* Stops: callers waiting are answered with an error; transfers cancelled. */
void agent_replica_stop(agent *a);
/* New copies to and from other nodes use tls's contexts (agent.conf's tls
 * section, reloaded; NULL: plain TCP); transfers under way keep theirs. */
void agent_replica_set_tls(agent *a, const struct agent_tls *tls);
/* "HOST:PORT" of this node's replication listener (NULL: none), for the
 * instance record other nodes send copies by. */
const char *agent_replica_address(agent *a);
/* Where this node keeps the copies (replstore.h), or NULL without
 * replication. */
const char *agent_replica_root(agent *a);
/* Pruning (see above). */
void agent_replica_tick(agent *a);
/* What status shows of a local instance: {"replicas": [nodes],
 * "replicated": version or null, "replica_error": text or null}. New
 * reference. */
json_t *agent_replica_instance_json(agent *a, const agent_instance *in);

#endif
