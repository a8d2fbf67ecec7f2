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

#include "state.h"

typedef struct agent_names {
    size_t n, cap;
    char **v;
} agent_names;

typedef struct agent_plan {
    agent_names created, updated, deleted, unchanged; /* each sorted (strcmp) */
} agent_plan;

typedef struct agent_alloc {
    uint16_t port_min, port_max; /* ports for new instances, inclusive */
} agent_alloc;

/*
 * Computes the plan and the next state. Instances that stay keep their
 * worker id, port, finder token and committed mark; an instance is updated
 * when a field that reaches its process changes (impl, version, checkpoint
 * interval, max_clients, maxmemory); new ones get the next worker ids (never
 * reused), the lowest ports of the range that no instance, desired or
 * retiring, holds, and a new random finder token (agent_token_new). Deleted
 * instances join next->retiring (they keep their port until retired).
 * next->generation is cur->generation + 1 when something was created,
 * updated or deleted, else the same. next->spec is desired.
 * 0; -ENOSPC when the port range is exhausted; -ENOMEM; getrandom's error
 * when no token can be made. On error nothing is returned in next or plan.
 */
int agent_plan_make(const agent_state *cur, const agent_spec *desired, const agent_alloc *alloc,
                    agent_state *next, agent_plan *plan);

/* Something to do? */
bool agent_plan_changed(const agent_plan *p);
/* {"created": [...], "updated": [...], "deleted": [...], "unchanged": [...]} */
json_t *agent_plan_to_json(const agent_plan *p);
void agent_plan_free(agent_plan *p);

bool agent_names_has(const agent_names *l, const char *name);

/* Number of free ports the allocation could still hand out. */
size_t agent_plan_free_ports(const agent_state *st, const agent_alloc *alloc);

#endif
