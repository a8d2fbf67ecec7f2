/* placement.c - see placement.h. */
#include "placement.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void agent_placement_init(agent_placement *p)
{
    memset(p, 0, sizeof(*p));
    p->next_worker = 1;
}

void agent_placement_free(agent_placement *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->d[i].slot);
    free(p->d);
    free(p->down);
    agent_placement_init(p);
}

size_t agent_placement_moved_untokened(const agent_placement *p)
{
    size_t n = 0;

    for (size_t i = 0; i < p->n; i++)
        for (uint32_t s = 0; s < p->d[i].shards; s++)
            n += p->d[i].slot[s].moved_from[0] && !p->d[i].slot[s].token[0];
    return n;
}

bool agent_placement_is_down(const agent_placement *p, const char *node)
{
    for (size_t i = 0; i < p->ndown; i++)
        if (strcmp(p->down[i], node) == 0)
            return true;
    return false;
}

static int cmp_name(const void *x, const void *y)
{
    return strcmp(*(const agent_node_name *)x, *(const agent_node_name *)y);
}

int agent_placement_set_down(agent_placement *p, const char *const *names, size_t n)
{
    agent_node_name *v = n ? calloc(n, sizeof(*v)) : NULL;
    size_t k = 0;

    if (n && !v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        snprintf(v[i], sizeof(v[i]), "%s", names[i]);
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_name);
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(v[k - 1], v[i]) != 0)
            memmove(v[k++], v[i], sizeof(*v));
    free(p->down);
    p->down = v;
    p->ndown = k;
    return 0;
}

const agent_placed_dep *agent_placement_find(const agent_placement *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->d[i].name, name) == 0)
            return &p->d[i];
    return NULL;
}

uint32_t agent_placement_count(const agent_placement *p, const char *node)
{
    uint32_t n = 0;

    for (size_t i = 0; i < p->n; i++)
        for (uint32_t s = 0; s < p->d[i].shards; s++)
            n += strcmp(p->d[i].slot[s].node, node) == 0;
    return n;
}

static bool slot_has_replica(const agent_slot *sl, const char *node)
{
    for (unsigned r = 0; r < sl->nreplicas; r++)
        if (strcmp(sl->replica[r], node) == 0)
            return true;
    return false;
}

/* One deployment's slots from JSON into d (d->name set). */
static int slots_from_json(const json_t *list, agent_placed_dep *d, uint64_t next_worker)
{
    json_t *e;
    size_t i;

    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > AGENT_SHARDS_MAX)
        return -EINVAL;
    d->shards = (uint32_t)json_array_size(list);
    d->slot = calloc(d->shards, sizeof(*d->slot));
    if (!d->slot)
        return -ENOMEM;
    json_array_foreach(list, i, e) {
        json_t *node = json_object_get(e, "node"), *w = json_object_get(e, "worker");
        json_t *reps = json_object_get(e, "replicas"), *r;
        json_t *from = json_object_get(e, "moved_from"), *tok = json_object_get(e, "token");
        agent_slot *sl = &d->slot[i];
        size_t k;
        if (!json_is_object(e) ||
            json_object_size(e) != 2u + (reps != NULL) + (from != NULL) + (tok != NULL) ||
            !json_is_string(node) || !agent_node_name_valid(json_string_value(node)) ||
            !json_is_integer(w) || json_integer_value(w) < 1 ||
            (uint64_t)json_integer_value(w) >= next_worker ||
            (reps && (!json_is_array(reps) || json_array_size(reps) > AGENT_REPLICAS_MAX)) ||
            (from && (!json_is_string(from) ||
                      !agent_node_name_valid(json_string_value(from)))) ||
            (tok && (!from || !json_is_string(tok) ||
                     !agent_token_valid(json_string_value(tok)))))
            return -EINVAL;
        snprintf(sl->node, sizeof(sl->node), "%s", json_string_value(node));
        sl->worker = (uint64_t)json_integer_value(w);
        if (from)
            snprintf(sl->moved_from, sizeof(sl->moved_from), "%s", json_string_value(from));
        if (tok)
            snprintf(sl->token, sizeof(sl->token), "%s", json_string_value(tok));
        json_array_foreach(reps, k, r) {
            const char *v = json_string_value(r);
            if (!v || !agent_node_name_valid(v) || strcmp(v, sl->node) == 0 ||
                slot_has_replica(sl, v))
                return -EINVAL;
            snprintf(sl->replica[sl->nreplicas++], sizeof(sl->replica[0]), "%s", v);
        }
    }
    return 0;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

    return a < b ? -1 : a > b;
}

/* No worker id twice in one deployment of p (its domain). */
static int workers_unique(const agent_placement *p)
{
    uint64_t v[AGENT_SHARDS_MAX];
    int rc = 0;

    for (size_t i = 0; i < p->n && rc == 0; i++) {
        uint32_t n = p->d[i].shards;
        for (uint32_t s = 0; s < n; s++)
            v[s] = p->d[i].slot[s].worker;
        qsort(v, n, sizeof(*v), cmp_u64);
        for (uint32_t s = 1; s < n && rc == 0; s++)
            if (v[s] == v[s - 1])
                rc = -EINVAL;
    }
    return rc;
}

int agent_placement_from_json(const json_t *j, agent_placement *out)
{
    json_t *nw = json_object_get(j, "next_worker"), *deps = json_object_get(j, "deployments");
    json_t *down = json_object_get(j, "down"), *e;
    const char *names[AGENT_PLACEMENT_DOWN_MAX];
    agent_placement p;
    const char *name;
    json_t *list;
    size_t i;
    int rc = 0;

    agent_placement_init(&p);
    if (!json_is_object(j) || json_object_size(j) != 2u + (down != NULL) ||
        !json_is_integer(nw) || json_integer_value(nw) < 1 || !json_is_object(deps) ||
        (down && (!json_is_array(down) || json_array_size(down) > AGENT_PLACEMENT_DOWN_MAX)))
        return -EINVAL;
    json_array_foreach(down, i, e) {
        if (!json_is_string(e) || !agent_node_name_valid(json_string_value(e)))
            return -EINVAL;
        names[i] = json_string_value(e);
        for (size_t k = 0; k < i; k++)
            if (strcmp(names[k], names[i]) == 0)
                return -EINVAL;
    }
    p.next_worker = (uint64_t)json_integer_value(nw);
    if (json_object_size(deps)) {
        p.d = calloc(json_object_size(deps), sizeof(*p.d));
        if (!p.d)
            return -ENOMEM;
    }
    json_object_foreach(deps, name, list) {
        agent_placed_dep *d = &p.d[p.n];
        if (!agent_name_valid(name, AGENT_DEPLOY_NAME_MAX)) {
            rc = -EINVAL;
            break;
        }
        snprintf(d->name, sizeof(d->name), "%s", name);
        p.n++;
        rc = slots_from_json(list, d, p.next_worker);
        if (rc < 0)
            break;
    }
    if (rc == 0)
        rc = workers_unique(&p);
    if (rc == 0 && down)
        rc = agent_placement_set_down(&p, names, json_array_size(down));
    if (rc < 0) {
        agent_placement_free(&p);
        return rc;
    }
    *out = p;
    return 0;
}

json_t *agent_placement_to_json(const agent_placement *p)
{
    json_t *deps = json_object(), *out = NULL;

    for (size_t i = 0; deps && i < p->n; i++) {
        json_t *list = json_array();
        for (uint32_t s = 0; list && s < p->d[i].shards; s++) {
            const agent_slot *sl = &p->d[i].slot[s];
            json_t *e = json_pack("{s:s, s:I}", "node", sl->node, "worker",
                                  (json_int_t)sl->worker), *reps = NULL;
            if (e && sl->moved_from[0] &&
                json_object_set_new(e, "moved_from", json_string(sl->moved_from)) < 0) {
                json_decref(e);
                e = NULL;
            }
            if (e && sl->token[0] &&
                json_object_set_new(e, "token", json_string(sl->token)) < 0) {
                json_decref(e);
                e = NULL;
            }
            if (e && sl->nreplicas) {
                reps = json_array();
                for (unsigned r = 0; reps && r < sl->nreplicas; r++)
                    json_array_append_new(reps, json_string(sl->replica[r]));
                if (!reps || json_array_size(reps) != sl->nreplicas ||
                    json_object_set_new(e, "replicas", reps) < 0) {
                    json_decref(e);
                    e = NULL;
                }
            }
            if (json_array_append_new(list, e) < 0) {
                json_decref(list);
                list = NULL;
            }
        }
        if (!list || json_object_set_new(deps, p->d[i].name, list) < 0) {
            json_decref(deps);
            deps = NULL;
        }
    }
    if (deps)
        out = json_pack("{s:I, s:o}", "next_worker", (json_int_t)p->next_worker, "deployments",
                        deps);
    if (out && p->ndown) {
        json_t *down = json_array();
        bool ok = down != NULL;
        for (size_t i = 0; ok && i < p->ndown; i++)
            ok = json_array_append_new(down, json_string(p->down[i])) == 0;
        if (ok)
            ok = json_object_set(out, "down", down) == 0;
        json_decref(down);
        if (!ok) {
            json_decref(out);
            out = NULL;
        }
    }
    return out;
}

/* ---- placing ------------------------------------------------------------------------ */

/* How many of dep's slots (the first n) run on node. */
static uint32_t count_in(const agent_placed_dep *dep, uint32_t n, const char *node)
{
    uint32_t c = 0;

    for (uint32_t s = 0; s < n; s++)
        c += strcmp(dep->slot[s].node, node) == 0;
    return c;
}

/* Are the first n slots all on one node? */
static bool one_node(const agent_placed_dep *dep, uint32_t n)
{
    for (uint32_t s = 1; s < n; s++)
        if (strcmp(dep->slot[s].node, dep->slot[0].node) != 0)
            return false;
    return true;
}

/* Why no node takes an instance of d: for the problem's message. */
static void why_none(const agent_deploy *d, const agent_placement *down,
                     const agent_place_node *nodes, size_t nnodes, char *out, size_t cap)
{
    size_t up = 0, match = 0;

    for (size_t i = 0; i < nnodes; i++) {
        if (!nodes[i].up || agent_placement_is_down(down, nodes[i].name))
            continue;
        up++;
        match += agent_selector_match(&d->selector, nodes[i].name, nodes[i].labels,
                                      nodes[i].nlabels);
    }
    if (up == 0)
        snprintf(out, cap, "no node is up and known to the cluster yet");
    else if (match == 0)
        snprintf(out, cap, "no node that is up matches its node_selector (%zu node%s up)", up,
                 up == 1 ? "" : "s");
    else
        snprintf(out, cap, "the %zu node%s matching it %s full (node.max_instances in "
                 "agent.conf)", match, match == 1 ? "" : "s", match == 1 ? "is" : "are");
}

/* The node for a new instance of dep (the slots placed so far have a
 * node; nodes down in `down` take none): index into nodes, or -1. */
static int pick(const agent_deploy *d, const agent_placed_dep *dep, const agent_placement *down,
                const agent_place_node *nodes, size_t nnodes, const uint32_t *used)
{
    int best = -1;
    uint32_t best_here = 0;

    for (size_t i = 0; i < nnodes; i++) {
        uint32_t here;
        if (!nodes[i].up || agent_placement_is_down(down, nodes[i].name) ||
            !agent_selector_match(&d->selector, nodes[i].name, nodes[i].labels,
                                  nodes[i].nlabels) ||
            (nodes[i].max_instances && used[i] >= nodes[i].max_instances))
            continue;
        here = count_in(dep, dep->shards, nodes[i].name);
        if (best < 0 || here < best_here ||
            (here == best_here && (used[i] < used[best] ||
                                   (used[i] == used[best] &&
                                    strcmp(nodes[i].name, nodes[best].name) < 0)))) {
            best = (int)i;
            best_here = here;
        }
    }
    return best;
}

static int node_index(const agent_place_node *nodes, size_t nnodes, const char *name)
{
    for (size_t i = 0; i < nnodes; i++)
        if (strcmp(nodes[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Moves slot sl (kept, on a node that is down) to one of its replicas that
 * may run it (up, not down, matching d's selector, with room): the one
 * with the fewest instances, then by name. used[] follows. */
static void move_off_down(const agent_deploy *d, agent_slot *sl, const agent_placement *p,
                          const agent_place_node *nodes, size_t nnodes, uint32_t *used)
{
    int best = -1, from = node_index(nodes, nnodes, sl->node);
    unsigned best_r = 0;

    for (unsigned r = 0; r < sl->nreplicas; r++) {
        int k = node_index(nodes, nnodes, sl->replica[r]);
        if (k < 0 || !nodes[k].up || agent_placement_is_down(p, nodes[k].name) ||
            !agent_selector_match(&d->selector, nodes[k].name, nodes[k].labels,
                                  nodes[k].nlabels) ||
            (nodes[k].max_instances && used[k] >= nodes[k].max_instances))
            continue;
        if (best < 0 || used[k] < used[best] ||
            (used[k] == used[best] && strcmp(nodes[k].name, nodes[best].name) < 0)) {
            best = k;
            best_r = r;
        }
    }
    if (best < 0)
        return; /* it waits for its node (degraded) */
    if (from >= 0 && used[from] > 0)
        used[from]--;
    used[best]++;
    snprintf(sl->moved_from, sizeof(sl->moved_from), "%s", sl->node);
    snprintf(sl->node, sizeof(sl->node), "%s", nodes[best].name);
    sl->token[0] = '\0'; /* a new incarnation: the leader gives it its token */
    memmove(sl->replica[best_r], sl->replica[best_r + 1],
            (size_t)(sl->nreplicas - best_r - 1) * sizeof(sl->replica[0]));
    sl->nreplicas--;
}

/* ---- replicas ------------------------------------------------------------------- */

/* May node i hold copies of d's instances (it could run them)? */
static bool replica_ok(const agent_deploy *d, const agent_placement *p,
                       const agent_place_node *n)
{
    return n->up && !agent_placement_is_down(p, n->name) &&
           agent_selector_match(&d->selector, n->name, n->labels, n->nlabels);
}

/* The members matching d's selector (whether up or not). */
static size_t matching(const agent_deploy *d, const agent_place_node *nodes, size_t nnodes)
{
    size_t n = 0;

    for (size_t i = 0; i < nnodes; i++)
        n += agent_selector_match(&d->selector, nodes[i].name, nodes[i].labels,
                                  nodes[i].nlabels);
    return n;
}

static int want_replicas(const agent_deploy *d, const agent_place_node *nodes, size_t nnodes)
{
    if (d->replicas != AGENT_REPLICAS_AUTO)
        return d->replicas;
    return matching(d, nodes, nnodes) >= 2 ? 1 : 0;
}

/* How many slots of p name node as a replica. */
static uint32_t replica_load(const agent_placement *p, const char *node)
{
    uint32_t n = 0;

    for (size_t i = 0; i < p->n; i++)
        for (uint32_t s = 0; s < p->d[i].shards; s++)
            n += slot_has_replica(&p->d[i].slot[s], node);
    return n;
}

/* Gives every slot of p its replicas (see placement.h). */
static void place_replicas(const agent_spec *spec, agent_placement *p,
                           const agent_place_node *nodes, size_t nnodes, agent_problems *probs)
{
    char path[64];

    for (size_t i = 0; i < spec->n; i++) {
        const agent_deploy *d = &spec->d[i];
        agent_placed_dep *pd = (agent_placed_dep *)agent_placement_find(p, d->name);
        int want = want_replicas(d, nodes, nnodes);
        if (d->replicas != AGENT_REPLICAS_AUTO &&
            matching(d, nodes, nnodes) < (size_t)d->replicas + 1) {
            snprintf(path, sizeof(path), "cachestores[%zu].replicas", i);
            agent_problems_add(probs, path, "%d replica%s of each instance need%s %d nodes "
                               "matching the node_selector; the cluster has %zu", d->replicas,
                               d->replicas == 1 ? "" : "s", d->replicas == 1 ? "s" : "",
                               d->replicas + 1, matching(d, nodes, nnodes));
            continue;
        }
        for (uint32_t s = 0; pd && s < pd->shards; s++) {
            agent_slot *sl = &pd->slot[s];
            unsigned keep = 0;
            /* replicas on nodes that are down, gone or now its own node go */
            for (unsigned r = 0; r < sl->nreplicas; r++) {
                int k = -1;
                for (size_t n = 0; n < nnodes && k < 0; n++)
                    if (strcmp(nodes[n].name, sl->replica[r]) == 0)
                        k = (int)n;
                if (k >= 0 && (int)keep < want && strcmp(sl->replica[r], sl->node) != 0 &&
                    !agent_placement_is_down(p, sl->replica[r]))
                    memmove(sl->replica[keep++], sl->replica[r], sizeof(sl->replica[0]));
            }
            sl->nreplicas = (uint8_t)keep;
            while ((int)sl->nreplicas < want) {
                int best = -1;
                uint32_t best_load = 0;
                for (size_t n = 0; n < nnodes; n++) {
                    uint32_t load;
                    if (!replica_ok(d, p, &nodes[n]) || strcmp(nodes[n].name, sl->node) == 0 ||
                        slot_has_replica(sl, nodes[n].name))
                        continue;
                    load = replica_load(p, nodes[n].name);
                    if (best < 0 || load < best_load ||
                        (load == best_load && strcmp(nodes[n].name, nodes[best].name) < 0)) {
                        best = (int)n;
                        best_load = load;
                    }
                }
                if (best < 0)
                    break; /* fewer for now: agent_placement_replicas_short */
                snprintf(sl->replica[sl->nreplicas++], sizeof(sl->replica[0]), "%s",
                         nodes[best].name);
            }
        }
    }
}

size_t agent_placement_replicas_short(const agent_placement *p, const agent_deploy *d,
                                      const agent_place_node *nodes, size_t nnodes, int *want)
{
    const agent_placed_dep *pd = agent_placement_find(p, d->name);
    size_t n = 0;

    *want = want_replicas(d, nodes, nnodes);
    for (uint32_t s = 0; pd && s < pd->shards; s++)
        n += pd->slot[s].nreplicas < *want;
    return n;
}

int agent_place(const agent_spec *spec, const agent_placement *cur,
                const agent_placement *running, const agent_place_node *nodes, size_t nnodes,
                agent_placement *next, agent_problems *probs)
{
    agent_placement p;
    uint32_t *used = calloc(nnodes ? nnodes : 1, sizeof(*used));
    size_t before = probs->n;
    char path[64], why[200];
    int rc = 0;

    agent_placement_init(&p);
    p.next_worker = cur->next_worker ? cur->next_worker : 1;
    if (!used || (spec->n && !(p.d = calloc(spec->n, sizeof(*p.d))))) {
        rc = -ENOMEM;
        goto out;
    }
    if (cur->ndown) {
        const char *names[AGENT_PLACEMENT_DOWN_MAX];
        for (size_t i = 0; i < cur->ndown && i < AGENT_PLACEMENT_DOWN_MAX; i++)
            names[i] = cur->down[i];
        rc = agent_placement_set_down(&p, names, cur->ndown < AGENT_PLACEMENT_DOWN_MAX
                                                     ? cur->ndown : AGENT_PLACEMENT_DOWN_MAX);
        if (rc < 0)
            goto out;
    }
    /* first every instance that stays, so that capacity counts them */
    for (size_t i = 0; i < spec->n; i++) {
        const agent_deploy *d = &spec->d[i];
        const agent_placed_dep *old = agent_placement_find(cur, d->name);
        agent_placed_dep *nd = &p.d[p.n++];
        uint32_t keep = old ? (old->shards < d->shards ? old->shards : d->shards) : 0;
        snprintf(nd->name, sizeof(nd->name), "%s", d->name);
        nd->shards = d->shards;
        nd->slot = calloc(d->shards, sizeof(*nd->slot));
        if (!nd->slot) {
            rc = -ENOMEM;
            goto out;
        }
        if (old && old->shards != d->shards && !one_node(old, old->shards)) {
            snprintf(path, sizeof(path), "cachestores[%zu].shards", i);
            agent_problems_add(probs, path, "deployment '%s' runs on several nodes: its shard "
                               "count cannot change yet (from %u to %u); only a deployment "
                               "on one node (node_selector) can be resized", d->name,
                               old->shards, d->shards);
            continue;
        }
        for (uint32_t s = 0; s < keep; s++) {
            int k = node_index(nodes, nnodes, old->slot[s].node);
            nd->slot[s] = old->slot[s];
            if (k >= 0)
                used[k]++;
        }
        /* new here, but a node runs (some of) it already: it stays there */
        const agent_placed_dep *run = !old && running ? agent_placement_find(running, d->name)
                                                      : NULL;
        for (uint32_t s = 0; run && s < run->shards && s < d->shards; s++) {
            int k = node_index(nodes, nnodes, run->slot[s].node);
            if (!run->slot[s].worker)
                continue;
            nd->slot[s] = run->slot[s];
            if (k >= 0)
                used[k]++;
            if (run->slot[s].worker >= p.next_worker)
                p.next_worker = run->slot[s].worker + 1;
        }
    }
    if (probs->n > before)
        goto out;
    /* instances on nodes that are down move to a replica of theirs */
    for (size_t i = 0; p.ndown && i < spec->n; i++) {
        const agent_placed_dep *old = agent_placement_find(cur, spec->d[i].name);
        uint32_t keep = old ? (old->shards < p.d[i].shards ? old->shards : p.d[i].shards) : 0;
        for (uint32_t s = 0; s < keep; s++)
            if (agent_placement_is_down(&p, p.d[i].slot[s].node))
                move_off_down(&spec->d[i], &p.d[i].slot[s], &p, nodes, nnodes, used);
    }
    /* then the new ones, in spec order */
    for (size_t i = 0; i < spec->n; i++) {
        const agent_deploy *d = &spec->d[i];
        const agent_placed_dep *old = agent_placement_find(cur, d->name);
        agent_placed_dep *nd = &p.d[i];
        uint32_t s = old ? (old->shards < d->shards ? old->shards : d->shards) : 0;
        int home = old && old->shards ? node_index(nodes, nnodes, old->slot[0].node) : -1;
        for (; s < d->shards; s++) {
            /* a deployment on one node grows there (its resize runs there) */
            int k;
            if (nd->slot[s].worker)
                continue; /* (taken from what a node runs) */
            k = old ? home : pick(d, nd, &p, nodes, nnodes, used);
            if (k < 0 || (nodes[k].max_instances && used[k] >= nodes[k].max_instances)) {
                snprintf(path, sizeof(path), "cachestores[%zu]", i);
                if (old && k < 0)
                    snprintf(why, sizeof(why), "its node %s is not a member of the cluster",
                             old->slot[0].node);
                else if (old)
                    snprintf(why, sizeof(why), "its node %s is full (node.max_instances in "
                             "agent.conf)", nodes[k].name);
                else
                    why_none(d, &p, nodes, nnodes, why, sizeof(why));
                agent_problems_add(probs, path, "no node can take shard %u of '%s': %s", s,
                                   d->name, why);
                break;
            }
            used[k]++;
            snprintf(nd->slot[s].node, sizeof(nd->slot[s].node), "%s", nodes[k].name);
            nd->slot[s].worker = p.next_worker++;
        }
    }
    if (probs->n == before)
        place_replicas(spec, &p, nodes, nnodes, probs);
out:
    free(used);
    if (rc == 0 && probs->n > before)
        rc = -EINVAL;
    if (rc == 0 && probs->oom)
        rc = -ENOMEM;
    if (rc < 0) {
        agent_placement_free(&p);
        return rc;
    }
    *next = p;
    return 0;
}
