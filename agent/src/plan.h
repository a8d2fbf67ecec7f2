/*
 * plan.h - from the recorded state and a desired spec to the next state:
 * which instances are created, updated, deleted or unchanged, with stable
 * worker ids and ports allocated for new instances. Pure: no I/O.
 */
#ifndef AGENT_PLAN_H
#define AGENT_PLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "placement.h"
#include "problems.h"
#include "state.h"

typedef struct agent_names {
    size_t n, cap;
    char **v;
} agent_names;

/* A deployment whose shard count changes: its keys move (layout.c). */
typedef struct agent_resize_plan {
    char deployment[AGENT_DEPLOY_NAME_MAX + 1];
    uint32_t from, to; /* shard counts */
    uint64_t epoch;    /* the layout it moves to */
} agent_resize_plan;

typedef struct agent_plan {
    agent_names created, updated, deleted, unchanged; /* each sorted (strcmp) */
    agent_resize_plan *resizes;                       /* in spec order */
    size_t nresizes;
    /* deployments whose halted roll-out a new rollout.resumed lifts: their
     * updated instances are tried again (not in agent_plan_to_json) */
    agent_names resumed;
} agent_plan;

typedef struct agent_alloc {
    uint16_t port_min, port_max; /* ports for new instances, inclusive */
    /* ports for the instances' metrics endpoints, inclusive; 0..0: none */
    uint16_t metrics_port_min, metrics_port_max;
    /* In a cluster of agents: where the cluster placed each instance and
     * its worker id (placement.h), and this node's name. NULL: one node,
     * every instance of the spec runs here with ids from next_worker. */
    const agent_placement *placement;
    const char *node;
} agent_alloc;

/*
 * Computes the plan and the next state. With alloc->placement, the desired
 * instances are those placed on alloc->node, with the placement's worker
 * ids: an instance whose id differs from the recorded one is another
 * instance (the old one retires, the new one is created), and the shard
 * count a resize starts from is the recorded spec's (not how many run
 * here). Otherwise: instances that stay keep their
 * worker id, port, finder token and committed mark; an instance is updated
 * when a field that reaches its process changes (impl, version, checkpoint
 * interval, max_clients, maxmemory); new ones get the next worker ids (never
 * reused), the lowest ports of the range that no instance, desired or
 * retiring, holds, and a new random finder token (agent_token_new). Metrics
 * ports (alloc->metrics_port_min..max, when set): an instance keeps its own
 * while the range holds it, and one without gets the lowest free port of
 * that range (an instance port is never a metrics port, nor the other way
 * round, should the ranges overlap); no range: none has one. Deleted
 * instances join next->retiring (they keep their port until retired).
 * next->generation is cur->generation + 1 when something was created,
 * updated or deleted, else the same. next->spec is desired.
 * Layouts: every desired deployment has a layout record in next (its
 * current one, or epoch 0 for a new one). A deployment with instances whose
 * shard count changes is resized: its record gets the target (epoch + 1,
 * the new count), the plan lists it in resizes, and its deleted instances
 * retire `held` (they give their keys away first). A deployment already
 * being resized must keep its target count (agent_plan_check).
 * 0; -ENOSPC when the port range is exhausted; -EBUSY when the shard count
 * of a deployment being resized changes (agent_plan_check); -ENOMEM;
 * getrandom's error when no token can be made. On error nothing is
 * returned in next or plan.
 */
int agent_plan_make(const agent_state *cur, const agent_spec *desired, const agent_alloc *alloc,
                    agent_state *next, agent_plan *plan);

/*
 * What the spec may not do now: change the shard count of a deployment that
 * is being resized. Adds one problem per such deployment (path
 * "cachestores[i].shards"); returns how many.
 */
size_t agent_plan_check(const agent_state *cur, const agent_spec *desired, agent_problems *p);

/* The share of the keys a resize from `from` to `to` shards moves, with jump
 * consistent hash: growing, (to - from) / to (all onto the new shards);
 * shrinking, (from - to) / from (all from the removed shards). */
double agent_resize_fraction(uint32_t from, uint32_t to);

/* Something to do? */
bool agent_plan_changed(const agent_plan *p);
/* {"created": [...], "updated": [...], "deleted": [...], "unchanged": [...],
 *  "resizes": [{"deployment", "from", "to", "epoch", "moves"}]} */
json_t *agent_plan_to_json(const agent_plan *p);
void agent_plan_free(agent_plan *p);

bool agent_names_has(const agent_names *l, const char *name);

/*
 * The metrics ports of st's instances as agent_plan_make leaves them
 * (kept while alloc's metrics range holds them, the lowest free ones for
 * the others; none without a range): for a state loaded under another
 * agent.conf. 1 when some changed, 0 when none, -ENOSPC when the range is
 * too small or -ENOMEM (then none changed).
 */
int agent_plan_metrics_ports(const agent_alloc *alloc, agent_state *st);

/* Number of free ports the allocation could still hand out. */
size_t agent_plan_free_ports(const agent_state *st, const agent_alloc *alloc);

#endif
