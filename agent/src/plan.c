/* plan.c - see plan.h. */
#include "plan.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int names_add(agent_names *l, const char *name)
{
    char **v;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n] = strdup(name);
    if (!l->v[l->n])
        return -ENOMEM;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_sort(agent_names *l)
{
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), cmp_str);
}

bool agent_names_has(const agent_names *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], name) == 0)
            return true;
    return false;
}

static void names_free(agent_names *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

void agent_plan_free(agent_plan *p)
{
    names_free(&p->created);
    names_free(&p->updated);
    names_free(&p->deleted);
    names_free(&p->unchanged);
    names_free(&p->resumed);
    free(p->resizes);
    p->resizes = NULL;
    p->nresizes = 0;
}

bool agent_plan_changed(const agent_plan *p)
{
    return p->created.n || p->updated.n || p->deleted.n;
}

static json_t *names_json(const agent_names *l)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < l->n; i++) {
        if (json_array_append_new(a, json_string(l->v[i])) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

double agent_resize_fraction(uint32_t from, uint32_t to)
{
    if (from == to || from == 0 || to == 0)
        return 0;
    return to > from ? (double)(to - from) / to : (double)(from - to) / from;
}

static json_t *resizes_json(const agent_plan *p)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < p->nresizes; i++) {
        const agent_resize_plan *r = &p->resizes[i];
        if (json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:I, s:f}", "deployment",
                                               r->deployment, "from", (json_int_t)r->from,
                                               "to", (json_int_t)r->to, "epoch",
                                               (json_int_t)r->epoch, "moves",
                                               agent_resize_fraction(r->from, r->to))) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

json_t *agent_plan_to_json(const agent_plan *p)
{
    return json_pack("{s:o*, s:o*, s:o*, s:o*, s:o*}", "created", names_json(&p->created),
                     "updated", names_json(&p->updated), "deleted", names_json(&p->deleted),
                     "unchanged", names_json(&p->unchanged), "resizes", resizes_json(p));
}

static uint32_t instances_of(const agent_state *st, const char *deployment)
{
    uint32_t n = 0;

    for (size_t i = 0; i < st->ninst; i++)
        n += strcmp(st->inst[i].deployment, deployment) == 0;
    return n;
}

size_t agent_plan_check(const agent_state *cur, const agent_spec *desired, agent_problems *p)
{
    size_t n = 0;
    char path[64];

    for (size_t d = 0; d < desired->n; d++) {
        const agent_layout *l = agent_state_layout(cur, desired->d[d].name);
        if (!l || !l->target_epoch || desired->d[d].shards == l->target_shards)
            continue;
        snprintf(path, sizeof(path), "cachestores[%zu].shards", d);
        agent_problems_add(p, path, "deployment '%s' is being resized from %u to %u shards: "
                           "change its shard count again once that has finished (dprctl "
                           "status)", desired->d[d].name, l->shards, l->target_shards);
        n++;
    }
    return n;
}

/* next's layout records and the plan's resizes (see agent_plan_make). */
static int plan_layouts(const agent_state *cur, const agent_spec *desired,
                        const agent_alloc *al, agent_state *ns, agent_plan *pl)
{
    if (desired->n == 0)
        return 0;
    ns->layouts = calloc(desired->n, sizeof(*ns->layouts));
    pl->resizes = calloc(desired->n, sizeof(*pl->resizes));
    if (!ns->layouts || !pl->resizes)
        return -ENOMEM;
    for (size_t d = 0; d < desired->n; d++) {
        const agent_deploy *dep = &desired->d[d];
        const agent_layout *old = agent_state_layout(cur, dep->name);
        agent_layout *l = &ns->layouts[ns->nlayouts++];
        int was = cur->spec.name ? agent_spec_find(&cur->spec, dep->name) : -1;
        /* the count it had (in a cluster some of its shards run elsewhere) */
        uint32_t n = !al->placement ? instances_of(cur, dep->name)
                                    : was >= 0 ? cur->spec.d[was].shards : 0;

        if (old && old->target_epoch && old->target_shards != dep->shards)
            return -EBUSY; /* agent_plan_check says so first */
        if (old)
            *l = *old;
        else
            snprintf(l->deployment, sizeof(l->deployment), "%s", dep->name);
        if (l->target_epoch || n == 0 || n == dep->shards)
            continue; /* resizing already (same target), new, or the same count */
        if (l->epoch == 0)
            l->shards = n; /* its shards route by their count without a layout */
        l->target_epoch = l->epoch + 1;
        l->target_shards = dep->shards;
        agent_resize_plan *r = &pl->resizes[pl->nresizes++];
        memcpy(r->deployment, dep->name, sizeof(r->deployment));
        r->from = l->shards;
        r->to = dep->shards;
        r->epoch = l->target_epoch;
    }
    return 0;
}

/* Ports held: a bitmap over the allocation range. */
typedef struct portmap {
    uint16_t min, max;
    unsigned char *used;
} portmap;

static void port_mark(portmap *m, uint16_t port)
{
    if (port >= m->min && port <= m->max)
        m->used[port - m->min] = 1;
}

static int port_take(portmap *m, uint16_t *out)
{
    for (uint32_t p = m->min; p <= m->max; p++) {
        if (!m->used[p - m->min]) {
            m->used[p - m->min] = 1;
            *out = (uint16_t)p;
            return 0;
        }
    }
    return -ENOSPC;
}

/* The range min..max (empty when max < min) without the ports st's
 * instances and retiring ones hold, as instance or metrics ports. */
static int portmap_init(portmap *m, uint16_t min, uint16_t max, const agent_state *st)
{
    m->min = min;
    m->max = max < min ? min : max;
    m->used = calloc((size_t)(m->max - m->min) + 1, 1);
    if (!m->used)
        return -ENOMEM;
    if (max < min)
        m->used[0] = 1; /* an empty range */
    for (size_t i = 0; i < st->ninst; i++) {
        port_mark(m, st->inst[i].port);
        port_mark(m, st->inst[i].metrics_port);
    }
    for (size_t i = 0; i < st->nretiring; i++) {
        port_mark(m, st->retiring[i].port);
        port_mark(m, st->retiring[i].metrics_port);
    }
    return 0;
}

static bool metrics_ports_on(const agent_alloc *a)
{
    return a->metrics_port_min && a->metrics_port_max >= a->metrics_port_min;
}

int agent_plan_metrics_ports(const agent_alloc *a, agent_state *ns)
{
    portmap m;
    int rc = 0, changed = 0;
    uint16_t *before = ns->ninst ? malloc(ns->ninst * sizeof(*before)) : NULL;

    if (ns->ninst && !before)
        return -ENOMEM;
    for (size_t k = 0; k < ns->ninst; k++)
        before[k] = ns->inst[k].metrics_port;

    for (size_t k = 0; k < ns->ninst; k++) {
        uint16_t p = ns->inst[k].metrics_port;
        if (!metrics_ports_on(a) || p < a->metrics_port_min || p > a->metrics_port_max)
            ns->inst[k].metrics_port = 0;
    }
    if (metrics_ports_on(a)) {
        rc = portmap_init(&m, a->metrics_port_min, a->metrics_port_max, ns);
        for (size_t k = 0; k < ns->ninst && rc == 0; k++)
            if (!ns->inst[k].metrics_port)
                rc = port_take(&m, &ns->inst[k].metrics_port);
        free(m.used); /* (NULL when portmap_init failed) */
    }
    for (size_t k = 0; k < ns->ninst && rc == 0; k++)
        changed |= before[k] != ns->inst[k].metrics_port;
    if (rc < 0) /* nothing changes */
        for (size_t k = 0; k < ns->ninst; k++)
            ns->inst[k].metrics_port = before[k];
    free(before);
    return rc < 0 ? rc : changed;
}

size_t agent_plan_free_ports(const agent_state *st, const agent_alloc *alloc)
{
    portmap m;
    size_t n = 0;

    if (portmap_init(&m, alloc->port_min, alloc->port_max, st) < 0)
        return 0;
    for (uint32_t p = m.min; p <= m.max; p++)
        n += !m.used[p - m.min];
    free(m.used);
    return n;
}

static bool same_process_config(const agent_instance *a, const agent_instance *b)
{
    return strcmp(a->impl, b->impl) == 0 && strcmp(a->version, b->version) == 0 &&
           a->checkpoint_interval_ms == b->checkpoint_interval_ms &&
           a->max_clients == b->max_clients && a->maxmemory == b->maxmemory &&
           strcmp(a->checkpoint_mode, b->checkpoint_mode) == 0 &&
           strcmp(a->tls_clients, b->tls_clients) == 0;
}

/* The placement's slot of shard s of dep when it runs on this node, else
 * NULL (one node: every shard runs here, no slot). */
static const agent_slot *slot_here(const agent_alloc *al, const char *dep, uint32_t s,
                                   bool *here)
{
    const agent_placed_dep *p;

    *here = al->placement == NULL;
    if (!al->placement)
        return NULL;
    p = agent_placement_find(al->placement, dep);
    *here = p && s < p->shards && strcmp(p->slot[s].node, al->node) == 0;
    return *here ? &p->slot[s] : NULL;
}

static size_t desired_count(const agent_spec *s, const agent_alloc *al)
{
    size_t n = 0;
    bool here;

    for (size_t i = 0; i < s->n; i++)
        for (uint32_t k = 0; k < s->d[i].shards; k++) {
            slot_here(al, s->d[i].name, k, &here);
            n += here;
        }
    return n;
}

/* The recorded instance in stays as: its index in cur, or -1 (new, or in a
 * cluster another worker of the same name). */
/* Is cur's instance c the incarnation in the placement wants (same worker,
 * and the token of a moved instance: one that moved away and came back is
 * a new incarnation, the old one is fenced)? */
static bool same_incarnation(const agent_instance *c, const agent_instance *in,
                             const agent_alloc *al)
{
    return !al->placement ||
           (c->worker == in->worker && (!in->token[0] || strcmp(c->token, in->token) == 0));
}

static int kept_index(const agent_state *cur, const agent_instance *in, const agent_alloc *al)
{
    int i = agent_state_find(cur, in->name);

    if (i >= 0 && !same_incarnation(&cur->inst[i], in, al))
        return -1;
    return i;
}

/* The roll-out records of the deployments that stay; a deployment whose
 * settings change starts a new roll-out: not halted, undo goes back to the
 * settings it had; a new rollout.resumed (`rollout resume`) lifts a halt. */
static int plan_rollouts(const agent_state *cur, const agent_spec *desired, agent_state *ns,
                         agent_plan *pl)
{
    agent_rollout_rec *r;
    int rc;

    for (size_t d = 0; d < desired->n; d++) {
        const agent_deploy *dep = &desired->d[d];
        const agent_rollout_rec *old = agent_state_rollout(cur, dep->name);
        int c = cur->spec.name ? agent_spec_find(&cur->spec, dep->name) : -1;
        bool changed = c >= 0 && agent_deploy_process_differs(&cur->spec.d[c], dep);
        if (!old && !changed && !dep->rollout.resumed)
            continue;
        rc = agent_state_rollout_add(ns, dep->name, &r);
        if (rc < 0)
            return rc;
        if (old)
            *r = *old;
        if (r->resumed != dep->rollout.resumed) {
            if (r->halted[0] && (rc = names_add(&pl->resumed, dep->name)) < 0)
                return rc;
            r->halted[0] = '\0';
            r->resumed = dep->rollout.resumed;
        }
        if (changed) {
            r->halted[0] = '\0';
            r->has_previous = true;
            r->previous = cur->spec.d[c];
        }
    }
    return 0;
}

int agent_plan_make(const agent_state *cur, const agent_spec *desired, const agent_alloc *alloc,
                    agent_state *next, agent_plan *plan)
{
    agent_state ns;
    agent_plan pl;
    portmap ports = { 0, 0, NULL };
    size_t k = 0;
    int rc;

    agent_state_init(&ns);
    memset(&pl, 0, sizeof(pl));
    ns.generation = cur->generation;
    ns.placed = alloc->placement != NULL;
    ns.next_worker = cur->next_worker ? cur->next_worker : 1;
    rc = agent_spec_copy(desired, &ns.spec);
    if (rc < 0)
        goto fail;
    agent_spec_keep_resumed(&ns.spec, &cur->spec);
    ns.ninst = desired_count(desired, alloc);
    if (ns.ninst) {
        ns.inst = calloc(ns.ninst, sizeof(*ns.inst));
        if (!ns.inst) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    /* the instances the spec implies, with what reaches their process */
    for (size_t d = 0; d < desired->n; d++) {
        const agent_deploy *dep = &desired->d[d];
        for (uint32_t s = 0; s < dep->shards; s++) {
            bool here;
            const agent_slot *slot = slot_here(alloc, dep->name, s, &here);
            agent_instance *in = &ns.inst[k];
            if (!here)
                continue;
            k++;
            in->worker = slot ? slot->worker : 0; /* 0: handed out below */
            if (slot && slot->token[0]) /* a moved instance: the leader's token */
                memcpy(in->token, slot->token, sizeof(in->token));
            snprintf(in->name, sizeof(in->name), "%s-%u", dep->name, s);
            memcpy(in->deployment, dep->name, sizeof(in->deployment));
            in->shard = s;
            memcpy(in->impl, dep->impl, sizeof(in->impl));
            memcpy(in->version, dep->version, sizeof(in->version));
            in->checkpoint_interval_ms = dep->checkpoint_interval_ms;
            in->max_clients = dep->max_clients;
            in->maxmemory = dep->maxmemory;
            memcpy(in->checkpoint_mode, dep->checkpoint_mode, sizeof(in->checkpoint_mode));
            memcpy(in->tls_clients, dep->tls_clients, sizeof(in->tls_clients));
        }
    }
    assert(k == ns.ninst);
    /* kept instances keep their allocations */
    for (k = 0; k < ns.ninst; k++) {
        agent_instance *in = &ns.inst[k];
        int i = kept_index(cur, in, alloc);
        if (i < 0)
            continue;
        in->worker = cur->inst[i].worker;
        in->port = cur->inst[i].port;
        in->metrics_port = cur->inst[i].metrics_port;
        memcpy(in->token, cur->inst[i].token, sizeof(in->token));
        in->committed = cur->inst[i].committed;
        in->run = cur->inst[i].run;
        in->rolled_at_ms = cur->inst[i].rolled_at_ms;
        in->generation = cur->inst[i].generation;
        assert(alloc->placement || in->worker < ns.next_worker); /* ids below it are taken */
        rc = names_add(same_process_config(in, &cur->inst[i]) ? &pl.unchanged : &pl.updated,
                       in->name);
        if (rc < 0)
            goto fail;
    }
    rc = plan_layouts(cur, desired, alloc, &ns, &pl);
    if (rc < 0)
        goto fail;
    /* deleted instances retire; earlier retiring ones stay retiring */
    ns.nretiring = cur->nretiring;
    ns.retiring = malloc((cur->nretiring + cur->ninst + 1) * sizeof(*ns.retiring));
    if (!ns.retiring) {
        rc = -ENOMEM;
        goto fail;
    }
    if (cur->nretiring)
        memcpy(ns.retiring, cur->retiring, cur->nretiring * sizeof(*ns.retiring));
    for (size_t i = 0; i < cur->ninst; i++) {
        bool kept = false;
        for (k = 0; k < ns.ninst && !kept; k++)
            kept = strcmp(ns.inst[k].name, cur->inst[i].name) == 0 &&
                   ns.inst[k].worker == cur->inst[i].worker &&
                   strcmp(ns.inst[k].token, cur->inst[i].token) == 0;
        if (kept)
            continue;
        rc = names_add(&pl.deleted, cur->inst[i].name);
        if (rc < 0)
            goto fail;
        assert(ns.nretiring < cur->nretiring + cur->ninst + 1); /* the room allocated */
        ns.retiring[ns.nretiring] = cur->inst[i];
        ns.retiring[ns.nretiring].unit_retired = false;
        /* a shard a resize removes gives its keys away before it stops */
        const agent_layout *l = agent_state_layout(&ns, cur->inst[i].deployment);
        ns.retiring[ns.nretiring++].held = l && l->target_epoch != 0;
    }
    /* new instances: next worker ids, lowest free ports (in spec order) */
    rc = portmap_init(&ports, alloc->port_min, alloc->port_max, &ns);
    if (rc < 0)
        goto fail;
    for (k = 0; k < ns.ninst; k++) {
        agent_instance *in = &ns.inst[k];
        if (kept_index(cur, in, alloc) >= 0)
            continue;
        rc = port_take(&ports, &in->port);
        if (rc < 0)
            goto fail;
        assert(in->port >= alloc->port_min && in->port <= alloc->port_max);
        if (!alloc->placement) {
            in->worker = ns.next_worker++;
            /* a new id, above every one handed out before */
            assert(in->worker >= 1 && in->worker >= cur->next_worker);
        }
        rc = in->token[0] ? 0 : agent_token_new(in->token);
        if (rc < 0)
            goto fail;
        rc = names_add(&pl.created, in->name);
        if (rc < 0)
            goto fail;
    }
    rc = agent_plan_metrics_ports(alloc, &ns);
    if (rc < 0)
        goto fail;
    agent_instances_sort(ns.inst, ns.ninst);
    agent_instances_sort(ns.retiring, ns.nretiring);
    names_sort(&pl.created);
    names_sort(&pl.updated);
    names_sort(&pl.deleted);
    names_sort(&pl.unchanged);
    /* in a cluster the ids come from the placement: next_worker stays above
     * every id recorded here (what agent.json's check wants, and ids are
     * never handed out again should this node run alone) */
    for (k = 0; alloc->placement && k < ns.ninst; k++)
        if (ns.inst[k].worker >= ns.next_worker)
            ns.next_worker = ns.inst[k].worker + 1;
    for (k = 0; alloc->placement && k < ns.nretiring; k++)
        if (ns.retiring[k].worker >= ns.next_worker)
            ns.next_worker = ns.retiring[k].worker + 1;
    if (agent_plan_changed(&pl))
        ns.generation++;
    else
        ns.next_worker = cur->next_worker ? cur->next_worker : 1;
    /* new settings come with this generation; a new instance starts with
     * them, one that stays runs what it ran until the roll-out reaches it
     * (or runs them already: an undo of a change not rolled out) */
    for (k = 0; k < ns.ninst; k++) {
        agent_instance *in = &ns.inst[k];
        if (agent_names_has(&pl.created, in->name)) {
            in->generation = ns.generation;
            agent_instance_set_running(in);
        } else if (agent_names_has(&pl.updated, in->name)) {
            in->generation = ns.generation;
        }
        if (!agent_instance_outdated(in))
            in->run.generation = in->generation;
    }
    rc = plan_rollouts(cur, &ns.spec, &ns, &pl);
    if (rc < 0)
        goto fail;
    assert(ns.next_worker >= 1 && ns.next_worker >= cur->next_worker);
    free(ports.used);
    *next = ns;
    *plan = pl;
    return 0;
fail:
    free(ports.used);
    agent_state_free(&ns);
    agent_plan_free(&pl);
    return rc;
}
