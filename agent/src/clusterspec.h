/*
 * clusterspec.h - the desired spec of a cluster of agents, in the Raft log
 * (cstate.h's spec record: the spec, its generation and where each
 * instance runs, placement.h).
 *
 *  - `apply` and `delete` on any node are sent to the leader
 *    (DPR.CLUSTER.SPEC <node> <spec>, peerreq.h); the leader checks the
 *    spec, places its instances on the nodes (placement.h: spread, within
 *    each node's max_instances, as node selectors allow; an instance stays
 *    where it is) and appends the record with the next generation; its
 *    "+OK <generation>" leaves only once the record is committed (the
 *    finder server's group commit holds it).
 *  - Every agent adopts the record: the deployments with instances placed
 *    on it become its local desired spec, and the placement says which of
 *    their instances run here with which worker ids (agent.json, the plan,
 *    the units, as on a single node). The caller of `apply` is answered
 *    once its own agent adopted that generation, with its plan.
 *  - Every agent publishes its instance record (DPR.CLUSTER.INSTANCES):
 *    its labels and max_instances (what the leader places by), and its
 *    instances with their endpoints and states, so that status on any node
 *    and clients see the whole cluster. The node running a deployment's
 *    shard 0 drives its layout (layout.h) and publishes it.
 *
 * On a single node (no raft group) none of this runs.
 */
#ifndef AGENT_CLUSTERSPEC_H
#define AGENT_CLUSTERSPEC_H

#include <jansson.h>
#include <stdbool.h>

#include "rollout.h"
#include <stddef.h>

#include "common/buf.h"
#include "control.h"
#include "placement.h"
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
/* Publishes this node's instance record in the log unless the log holds
 * it as it is. changed: this node's instances, layouts or the generation it
 * took may have changed (else the record is only built again when the log
 * does not hold what was sent: after an applied entry, a lost proposal). */
void agent_cluster_publish(agent *a, bool changed);
/* The record's spec and placement: 0; -ENOENT (no record, or a single
 * node); -EINVAL (unreadable); -ENOMEM. */
int agent_cluster_record(agent *a, agent_spec *spec, agent_placement *pl);
/* What `nodes` shows of node: {"labels", "max_instances", "replica_address"}
 * as it published them (absent until it did), "instances" placed on it,
 * "down". New reference. */
json_t *agent_cluster_node_info(agent *a, const char *node);
/* A deployment's roll-out in status (ro: this node's, agent_rollout_json)
 * with what the other nodes published (one that has not taken the spec
 * this node took counts as progressing): the furthest phase of any node
 * (done < paused < progressing < halted), a halt's reason ("on node2:
 * ..."), and "nodes": {node: phase}. */
void agent_cluster_rollout_merge(agent *a, const char *deployment, json_t *ro);
/* dep's instances that the other nodes published (at most max, into
 * out): shard, outdated, available as ready, remote; a node that has not
 * taken the spec this node took: outdated and not ready. How many. */
size_t agent_cluster_remote_instances(agent *a, const agent_deploy *dep, agent_ro_inst *out,
                                      size_t max);
/* Does the cluster's spec hold a deployment of that name? */
bool agent_cluster_holds(agent *a, const char *name);
/* The instance of a slot as its node published it: {"name", "shard",
 * "worker", "endpoint", "ready", "active_state", "sub_state", "health",
 * "last_error", "node"}; only name, shard, worker, node and ready (false)
 * while it did not publish it. New reference, NULL on ENOMEM. */
json_t *agent_cluster_published(agent *a, const char *deployment, uint32_t shard,
                                const agent_slot *slot);
/* The layout deployment's driving node published ({"epoch", "shards",
 * "resize"}), or NULL. New reference. */
json_t *agent_cluster_layout(agent *a, const char *deployment, const agent_placement *pl);
/* The highest layout epoch any node's instance record publishes for
 * deployment (0: none, or no cluster). A shard that moved to another node
 * starts without a layout, and its new driving node goes above this, so
 * clients see a newer layout with the new address. */
uint64_t agent_cluster_layout_epoch(agent *a, const char *deployment);
/* Does this node drive deployment's layout (it runs shard 0; always on a
 * single node)? */
bool agent_cluster_drives(agent *a, const char *deployment);
/* How often agent_cluster_tick runs. */
#define CLUSTER_TICK_MS 250
/* Every CLUSTER_TICK_MS: on the leader, marks members down that it has
 * not heard from for raft.node_down_after_ms (and up again once they are
 * back): a new spec record with the placement's down list, where the
 * instances of nodes down move to one of their replicas (placement.h);
 * and gives every moved worker's finder record its new token. */
void agent_cluster_tick(agent *a);
/* May instance in (placed here) start? Not while the finder (this node's
 * view of it) holds another token for its worker: an instance moved here
 * waits until the leader handed the worker over to it, and an old
 * incarnation (a node that comes back) never starts; its registration
 * would be refused anyway. */
bool agent_cluster_may_start(agent *a, const agent_instance *in);
/* Drops the callers still waiting (the agent stops). */
void agent_cluster_stop(agent *a);

#endif
