/*
 * placement.h - where the instances of a cluster's deployments run, and
 * their worker ids. Pure: no I/O; the leader's clusterspec.c calls it and
 * keeps the result in the Raft log (the spec record's "placement").
 *
 * The record, as JSON:
 *
 *   {"next_worker": 12,
 *    "deployments": {"kv": [{"node": "n1", "worker": 1},     <- shard 0
 *                           {"node": "n2", "worker": 2,
 *                            "replicas": ["n3"]},              <- optional
 *                           {"node": "n3", "worker": 3,
 *                            "moved_from": "n4",               <- optional
 *                            "token": "<32 hex digits>"}, ...]},
 *    "down": ["n4"]}                        <- optional: nodes marked down
 *
 * Worker ids are handed out by the cluster (never reused, whatever the
 * deployment): an instance keeps its id for life, wherever it runs. A
 * worker id is unique within its deployment (its DPR domain); ids of
 * instances a node ran before it joined may repeat across deployments.
 * Ports are each node's own business (plan.h).
 *
 * The rules (agent_place):
 *  - an instance already placed stays where it is, unless its node is
 *    down: then it moves to one of its replica nodes (they hold copies of
 *    its checkpoints) that is up, matches the node selector and has room,
 *    the one with the fewest instances (then by name); the slot records
 *    moved_from and an empty token, which the leader fills with a new one
 *    (the old incarnation is fenced in the finder by it). An instance
 *    without such a replica waits for its node (its deployment is
 *    degraded, it never starts elsewhere empty);
 *  - a deployment new to the placement that a node already runs (it ran
 *    it before it joined: `running`) keeps those instances there, with
 *    their worker ids;
 *  - a node the leader marked down (it missed heartbeats for
 *    raft.node_down_after_ms) takes no new instance; the down list is the
 *    leader's to change (agent_place keeps it);
 *  - a new instance goes to a node that is up, matches the deployment's
 *    node selector and has room (max_instances counts every instance of
 *    every deployment on the node): the one with the fewest instances of
 *    this deployment, then the fewest in all, then by name; so the shards
 *    of one deployment spread as long as there are nodes;
 *  - a deployment whose shard count changes keeps its old shards; new
 *    shards follow the rules above, except that a deployment living on one
 *    node grows on that node (its resize runs there, layout.h); the shard
 *    count of a deployment spread over nodes cannot change yet (refused);
 *  - deployments no longer in the spec are dropped;
 *  - replicas: each instance's checkpoints are copied to `replicas` other
 *    nodes (spec.h; AGENT_REPLICAS_AUTO: 1 when the deployment's
 *    node_selector matches two members or more, else 0). A replica node is
 *    a member that is up, not down, not the instance's node, matching the
 *    node_selector (the instance may move there): the one holding the
 *    fewest replicas, then by name. Replica nodes that are down or no
 *    members any more are replaced; while no node can take one, the
 *    instance has fewer (agent_placement_replicas_short says so). An
 *    explicit count that the members matching the selector can never give
 *    is refused ("cachestores[i].replicas"). Replicas do not count toward
 *    max_instances (they are only files).
 */
#ifndef AGENT_PLACEMENT_H
#define AGENT_PLACEMENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "problems.h"
#include "spec.h"
#include "state.h"

/* Where one shard runs, and the nodes its checkpoints are copied to. */
typedef struct agent_slot {
    char node[AGENT_LABEL_MAX + 1];
    uint64_t worker;
    uint8_t nreplicas;
    char replica[AGENT_REPLICAS_MAX][AGENT_LABEL_MAX + 1];
    /* an instance moved off a lost node: the node it left, and the finder
     * token of its new incarnation (the leader gives the worker's finder
     * record this token, which fences the old one; "" until the leader
     * made one: agent_placement_moved_untokened) */
    char moved_from[AGENT_LABEL_MAX + 1];
    char token[AGENT_TOKEN_LEN + 1];
} agent_slot;

typedef struct agent_placed_dep {
    char name[AGENT_DEPLOY_NAME_MAX + 1];
    uint32_t shards;
    agent_slot *slot; /* [shards], index = shard */
} agent_placed_dep;

/* The most nodes the down list holds. */
#define AGENT_PLACEMENT_DOWN_MAX 64

/* A node name. */
typedef char agent_node_name[AGENT_LABEL_MAX + 1];

typedef struct agent_placement {
    uint64_t next_worker; /* >= 1; above every worker id handed out */
    size_t n;
    agent_placed_dep *d;
    size_t ndown;
    agent_node_name *down; /* nodes marked down, sorted */
} agent_placement;

/* A node the leader may place on. */
typedef struct agent_place_node {
    const char *name;
    const char *const *labels;
    size_t nlabels;
    uint32_t max_instances; /* 0: no limit */
    bool up;                /* may take new instances */
} agent_place_node;

/* An empty placement (next worker 1). */
void agent_placement_init(agent_placement *p);
void agent_placement_free(agent_placement *p);
/*
 * The record from JSON: 0; -EINVAL when it is not one (every rule above:
 * worker ids >= 1, unique in their deployment and below next_worker, node
 * names valid, at most AGENT_SHARDS_MAX shards, down nodes valid and
 * listed once); -ENOMEM. *out untouched unless 0.
 */
int agent_placement_from_json(const json_t *j, agent_placement *out);
/* New reference, NULL on ENOMEM. */
json_t *agent_placement_to_json(const agent_placement *p);
/* The deployment's entry, or NULL. */
const agent_placed_dep *agent_placement_find(const agent_placement *p, const char *name);
/* How many instances of p run on node. */
uint32_t agent_placement_count(const agent_placement *p, const char *node);
/* The replicas deployment d (of spec) should have, and how many of p's
 * slots of it have fewer. */
size_t agent_placement_replicas_short(const agent_placement *p, const agent_deploy *d,
                                      const agent_place_node *nodes, size_t nnodes, int *want);
/* How many slots of p moved (moved_from set) without a token yet; the
 * leader gives each a new one before the placement is recorded. */
size_t agent_placement_moved_untokened(const agent_placement *p);
/* Is node marked down in p? */
bool agent_placement_is_down(const agent_placement *p, const char *node);
/* Replaces p's down list with names[0..n) (sorted, duplicates dropped): 0
 * or -ENOMEM (p unchanged). */
int agent_placement_set_down(agent_placement *p, const char *const *names, size_t n);

/*
 * Places spec's instances: *next from cur (which may be empty), the
 * instances nodes run that cur does not hold (running, may be NULL: slots
 * with worker 0 are shards nobody runs) and the nodes. 0; -EINVAL when
 * some instance has nowhere to go or a spread deployment's shard count
 * changes (each with a problem: where = "cachestores[i]" or
 * "cachestores[i].shards"; nothing in *next); -ENOMEM.
 */
int agent_place(const agent_spec *spec, const agent_placement *cur,
                const agent_placement *running, const agent_place_node *nodes, size_t nnodes,
                agent_placement *next, agent_problems *probs);

#endif
