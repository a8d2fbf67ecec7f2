/*
 * clusterspec.h - the desired spec of a cluster of agents, in the Raft log
 * (cstate.h's spec record: the spec, its generation and each deployment's
 * node).
 *
 *  - `apply` and `delete` on any node are sent to the leader
 *    (DPR.CLUSTER.SPEC <node> <spec>, peerreq.h); the leader checks the
 *    spec, places each new deployment on the node that applied it (a
 *    deployment keeps its node for life; placement across nodes is its own
 *    issue) and appends the record with the next generation; its "+OK
 *    <generation>" leaves only once the record is committed (the finder
 *    server's group commit holds it).
 *  - Every agent adopts the record: its own deployments (placement == its
 *    node.name) become its local desired spec (agent.json, the plan, the
 *    units, as on a single node). The caller of `apply` is answered once
 *    its own agent adopted that generation, with its plan.
 *
 * On a single node (no raft group) none of this runs.
 */
#ifndef AGENT_CLUSTERSPEC_H
#define AGENT_CLUSTERSPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "control.h"
#include "proto.h"

typedef struct agent agent;

/* The leader's DPR.CLUSTER.SPEC: 1 answered (reply in out), 0 not this
 * command or not the leader, -ENOMEM. */
int agent_cluster_spec_command(agent *a, int argc, char *const *argv, const size_t *argvlen,
                               dpr_buf *out);
/* The replicated record changed: adopt this node's part; answer the
 * callers whose generation is now adopted. */
void agent_cluster_adopt(agent *a);
/* `apply` (spec given) or `delete` (name given) in a cluster: the reply,
 * or AGENT_REPLY_DEFERRED (answered once the leader took it and this node
 * adopted it). */
json_t *agent_cluster_change(agent *a, agent_client *c, const agent_request *req,
                             const json_t *spec, const char *delete_name);
/* `plan` (or apply --dry-run) in a cluster: what this node would do with
 * its part (the deployments the spec would place here), and the placement. */
json_t *agent_cluster_preview(agent *a, const agent_request *req);
/* {"generation": N, "placement": {...}, "adopted": N} of the record, or null. */
json_t *agent_cluster_spec_json(agent *a);
/* Publishes this node's instances (names, shards, worker ids, endpoints)
 * in the log unless the log holds them as they are: other nodes show them
 * in `status` and clients find them there. */
void agent_cluster_publish(agent *a);
/* The deployments other nodes run, as they published them (name NULL:
 * all): a JSON array of {"name", "shards", "node", "remote": true,
 * "domain", "instances": [{"name", "shard", "worker", "endpoint", "node"}]}. */
json_t *agent_cluster_remote(agent *a, const char *name);
/* Drops the callers still waiting (the agent stops). */
void agent_cluster_stop(agent *a);

#endif
