/* clusterspec.c - the cluster's desired spec in the Raft log (see clusterspec.h). */
#include "clusterspec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent_int.h"
#include "common/clock.h"
#include "common/finders.h"
#include "common/log.h"
#include "common/msgid.h"
#include "common/resp.h"
#include "cstate.h"
#include "envfile.h"
#include "peerreq.h"
#include "replica.h"

/* How long apply/delete look for a leader (an election takes about one to
 * two election timeouts). */
#define SPEC_FORWARD_MS 15000
/* An instance record sent and not in the log yet is sent again after this
 * (its entry may have been lost with a leader). */
#define PUBLISH_AGAIN_MS 2000
/* How long sending it may take: time for a finder address that does not
 * answer (a lost node: one attempt's timeout) and then the others. */
#define PUBLISH_SEND_MS (3 * AGENT_PEERREQ_ATTEMPT_MS)

/* A caller of apply/delete waiting for the leader, then for this node to
 * adopt generation `gen`. */
typedef struct cluster_waiter {
    struct cluster_waiter *next;
    agent *a;
    agent_pending *pending;
    json_t *id;           /* the request's id (a reference) */
    agent_peerreq *req;   /* the forwarded request, while in flight */
    uint64_t gen;         /* 0 until the leader answered */
} waiter;

static void waiter_free(waiter *w)
{
    json_decref(w->id);
    free(w);
}

static void unlink_waiter(agent *a, waiter *w)
{
    for (waiter **pp = &a->spec_waiters; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            return;
        }
}

/* The spec rules of this node's configuration. */
static void rules_of(agent *a, agent_spec_rules *r, const char **impls, size_t cap)
{
    memset(r, 0, sizeof(*r));
    r->cluster = a->cfg->cluster;
    r->impls = impls;
    for (size_t i = 0; i < a->cfg->nimpls && i < cap; i++)
        impls[r->nimpls++] = a->cfg->impls[i].name;
    r->default_interval_ms = a->cfg->checkpoint_interval_ms;
    r->default_max_clients = a->cfg->max_clients;
    r->no_tls = !a->cfg->tls_enabled;
}

/* The record (cstate's spec) as JSON, or NULL when there is none. */
static json_t *record(agent *a)
{
    const agent_cstate *cs = agent_raft_cstate(a->raft);

    return cs->spec ? json_loadb(cs->spec, cs->spec_len, 0, NULL) : NULL;
}

/* Rules for reading the record (written by the leader, checked there):
 * any implementation, any cluster name. */
static const agent_spec_rules record_rules = { NULL, NULL, 0, 0, 0, false };

/* The record's spec and placement (rec may be NULL: none). 0; -ENOENT
 * without a record; -EINVAL; -ENOMEM. */
static int record_parse(const json_t *rec, agent_spec *spec, agent_placement *pl)
{
    agent_problems probs;
    int rc;

    if (!rec)
        return -ENOENT;
    agent_problems_init(&probs);
    rc = agent_spec_parse(json_object_get(rec, "spec"), &record_rules, spec, &probs);
    agent_problems_free(&probs);
    if (rc < 0)
        return rc;
    rc = agent_placement_from_json(json_object_get(rec, "placement"), pl);
    if (rc < 0)
        agent_spec_free(spec);
    return rc;
}

/* The nodes the leader may place on: the members, with what their
 * instance records say of them (labels, max_instances); a member that has
 * not published one yet takes nothing. */
typedef struct node_view {
    size_t n;
    size_t unknown;      /* live members without a record (yet) */
    agent_place_node *v;
    const char **labels; /* v[i].labels point in here */
    json_t **recs;       /* the parsed records (own the strings) */
} node_view;

static void node_view_free(node_view *nv)
{
    for (size_t i = 0; i < nv->n; i++)
        json_decref(nv->recs[i]);
    free(nv->v);
    free(nv->labels);
    free(nv->recs);
    memset(nv, 0, sizeof(*nv));
}

/* Did the node of this instance record ever take the cluster's spec? This
 * run (adopted: the generation), or before it restarted (placed: its
 * instances came from the cluster's placement). NULL: no. */
static bool took_spec(const json_t *rec)
{
    return json_integer_value(json_object_get(rec, "adopted")) > 0 ||
           json_is_true(json_object_get(rec, "placed"));
}

/* Has this node heard from member id lately (itself: yes)? */
static bool alive(agent *a, uint64_t id)
{
    agent_raft_member m[64];
    size_t n = agent_raft_members(a->raft, m, 64);

    for (size_t i = 0; i < n && i < 64; i++)
        if (m[i].id == id)
            return m[i].last_contact_ms >= 0 &&
                   m[i].last_contact_ms <= 2 * (int64_t)a->cfg->raft_election_ms;
    return false;
}

static int node_view_make(agent *a, node_view *nv)
{
    const agent_cstate *cs = agent_raft_cstate(a->raft);
    size_t nl = 0;

    memset(nv, 0, sizeof(*nv));
    nv->v = calloc(cs->nnodes + 1, sizeof(*nv->v));
    nv->recs = calloc(cs->nnodes + 1, sizeof(*nv->recs));
    nv->labels = calloc((cs->nnodes + 1) * AGENT_SELECTOR_MAX, sizeof(*nv->labels));
    if (!nv->v || !nv->recs || !nv->labels) {
        node_view_free(nv);
        return -ENOMEM;
    }
    for (size_t i = 0; i < cs->nnodes; i++) {
        const char *text = agent_cstate_insts_of(cs, cs->nodes[i].name);
        json_t *rec = text ? json_loads(text, 0, NULL) : NULL, *l, *mi;
        agent_place_node *n = &nv->v[nv->n];
        size_t k;
        n->name = cs->nodes[i].name;
        n->labels = &nv->labels[nl];
        mi = json_object_get(rec, "max_instances");
        nv->unknown += !rec && alive(a, cs->nodes[i].id);
        /* (a node that runs deployments of its own and did not take the
         * spec takes nothing until it does) */
        n->up = json_is_integer(mi) && json_integer_value(mi) >= 0 &&
                (took_spec(rec) || json_array_size(json_object_get(rec, "deployments")) == 0);
        n->max_instances = n->up ? (uint32_t)json_integer_value(mi) : 0;
        json_array_foreach(json_object_get(rec, "labels"), k, l)
            if (json_is_string(l) && n->nlabels < AGENT_SELECTOR_MAX)
                nv->labels[nl + n->nlabels++] = json_string_value(l);
        nl += n->nlabels;
        nv->recs[nv->n++] = rec;
    }
    return 0;
}

/* {"kv": ["n1", "n2", ...]}: each deployment's nodes in shard order (what
 * users read). New reference. */
static json_t *placement_brief(const agent_placement *p)
{
    json_t *out = json_object();

    for (size_t i = 0; out && i < p->n; i++) {
        json_t *l = json_array();
        for (uint32_t s = 0; l && s < p->d[i].shards; s++)
            if (json_array_append_new(l, json_string(p->d[i].slot[s].node)) < 0) {
                json_decref(l);
                l = NULL;
            }
        if (!l || json_object_set_new(out, p->d[i].name, l) < 0) {
            json_decref(out);
            out = NULL;
        }
    }
    return out;
}

/* The brief placement of a record (or null). */
static json_t *record_brief(const json_t *rec)
{
    agent_placement pl;
    json_t *out;

    if (!rec || agent_placement_from_json(json_object_get(rec, "placement"), &pl) < 0)
        return json_null();
    out = placement_brief(&pl);
    agent_placement_free(&pl);
    return out ? out : json_null();
}

/* The spec's deployments with an instance on node, as a spec of their own.
 * New reference. */
static json_t *part_of(const json_t *spec, const agent_placement *pl, const char *node)
{
    json_t *part = json_deep_copy(spec), *keep = json_array(), *d;
    size_t i;

    if (!part || !keep) {
        json_decref(part);
        json_decref(keep);
        return NULL;
    }
    json_array_foreach(json_object_get(spec, "cachestores"), i, d) {
        const char *name = json_string_value(json_object_get(d, "name"));
        const agent_placed_dep *pd = name ? agent_placement_find(pl, name) : NULL;
        bool here = false;
        for (uint32_t s = 0; pd && s < pd->shards && !here; s++)
            here = strcmp(pd->slot[s].node, node) == 0;
        if (here)
            json_array_append(keep, d);
    }
    json_object_set_new(part, "cachestores", keep);
    return part;
}

/* Sets shard's slot of deployment name in p (grown as needed). */
static int running_add(agent_placement *p, const char *name, uint32_t shard, const char *node,
                       uint64_t worker)
{
    agent_placed_dep *d = (agent_placed_dep *)agent_placement_find(p, name);

    if (!d) {
        agent_placed_dep *v = realloc(p->d, (p->n + 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        p->d = v;
        d = &p->d[p->n++];
        memset(d, 0, sizeof(*d));
        snprintf(d->name, sizeof(d->name), "%s", name);
    }
    if (shard >= d->shards) {
        agent_slot *v = realloc(d->slot, (shard + 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        memset(&v[d->shards], 0, (shard + 1 - d->shards) * sizeof(*v));
        d->slot = v;
        d->shards = shard + 1;
    }
    if (!d->slot[shard].worker) { /* (the first node that says so) */
        snprintf(d->slot[shard].node, sizeof(d->slot[shard].node), "%s", node);
        d->slot[shard].worker = worker;
    }
    return 0;
}

/* What members that never took the cluster's spec run, as their instance
 * records say (placement.h, agent_place's `running`). */
static int running_of(agent *a, agent_placement *out)
{
    const agent_cstate *cs = agent_raft_cstate(a->raft);
    int rc = 0;

    agent_placement_init(out);
    for (size_t i = 0; rc == 0 && i < cs->nnodes; i++) {
        const char *text = agent_cstate_insts_of(cs, cs->nodes[i].name);
        json_t *rec = text ? json_loads(text, 0, NULL) : NULL, *d, *in;
        size_t k, m;
        /* only a node that never took the cluster's spec runs deployments
         * of its own (one that did may still run some the spec deleted,
         * also when it comes back after the spec deleted them) */
        if (took_spec(rec)) {
            json_decref(rec);
            continue;
        }
        json_array_foreach(json_object_get(rec, "deployments"), k, d) {
            const char *name = json_string_value(json_object_get(d, "name"));
            if (!name || !agent_name_valid(name, AGENT_DEPLOY_NAME_MAX))
                continue;
            json_array_foreach(json_object_get(d, "instances"), m, in) {
                json_t *sh = json_object_get(in, "shard"), *w = json_object_get(in, "worker");
                if (rc == 0 && json_is_integer(sh) && json_integer_value(sh) >= 0 &&
                    json_integer_value(sh) < AGENT_SHARDS_MAX && json_is_integer(w) &&
                    json_integer_value(w) >= 1)
                    rc = running_add(out, name, (uint32_t)json_integer_value(sh),
                                     cs->nodes[i].name, (uint64_t)json_integer_value(w));
            }
        }
        json_decref(rec);
    }
    if (rc < 0)
        agent_placement_free(out);
    return rc;
}

/* Does next place an instance cur does not hold? */
static bool places_new(const agent_placement *cur, const agent_placement *next)
{
    for (size_t i = 0; i < next->n; i++) {
        const agent_placed_dep *was = agent_placement_find(cur, next->d[i].name);
        if (!was || was->shards < next->d[i].shards)
            return true;
    }
    return false;
}

/* Places spec (checked) from the record rec (may be NULL): 0 and *out;
 * -EINVAL with the problems; -EAGAIN (one problem saying so) when live
 * members have not published what they take yet and the placement would
 * place new instances (strict) or fails (placement may work once they
 * did, and new instances would spread over them); -ENOMEM. */
/* Gives every instance agent_place moved off a lost node a new finder
 * token (its new incarnation's; the leader gives the worker's finder
 * record the same, agent_cluster_tick, which fences the old one). 0 or a
 * negative errno. */
static int give_tokens(agent_placement *p)
{
    int rc = 0;

    for (size_t i = 0; i < p->n && rc == 0; i++)
        for (uint32_t s = 0; s < p->d[i].shards && rc == 0; s++) {
            agent_slot *sl = &p->d[i].slot[s];
            if (sl->moved_from[0] && !sl->token[0])
                rc = agent_token_new(sl->token);
        }
    return rc;
}

static int place_spec(agent *a, const agent_spec *spec, const json_t *rec, bool strict,
                      agent_placement *out, agent_problems *probs)
{
    agent_placement cur, running;
    node_view nv;
    int rc;

    agent_placement_init(&cur);
    if (rec && agent_placement_from_json(json_object_get(rec, "placement"), &cur) < 0)
        agent_placement_init(&cur);
    rc = running_of(a, &running);
    if (rc < 0) {
        agent_placement_free(&cur);
        return rc;
    }
    rc = node_view_make(a, &nv);
    if (rc == 0)
        rc = agent_place(spec, &cur, &running, nv.v, nv.n, out, probs);
    if (nv.unknown && (rc == -EINVAL || (rc == 0 && strict && places_new(&cur, out)))) {
        if (rc == 0)
            agent_placement_free(out);
        agent_problems_add(probs, "", "%zu live member%s of the cluster did not tell what "
                           "%s take%s yet (its instance record)", nv.unknown,
                           nv.unknown == 1 ? "" : "s", nv.unknown == 1 ? "it" : "they",
                           nv.unknown == 1 ? "s" : "");
        rc = -EAGAIN;
    }
    if (rc == 0 && (rc = give_tokens(out)) < 0)
        agent_placement_free(out);
    node_view_free(&nv);
    agent_placement_free(&running);
    agent_placement_free(&cur);
    return rc;
}

static json_t *node_record(agent *a, const char *node);

/* ---- the leader ------------------------------------------------------------ */

static void on_record(void *arg, int status)
{
    (void)arg;
    if (status < 0 && status != -ENOTCONN)
        log_warning("cluster: the spec record was not committed: %s", strerror(-status));
}

/* The newest record: proposed by this leader (not committed yet), else the
 * committed one (new reference, or NULL). */
static json_t *newest_record(agent *a)
{
    json_t *p = a->spec_proposed;

    if (p && (uint64_t)json_integer_value(json_object_get(p, "generation")) >
                 agent_raft_cstate(a->raft)->spec_generation)
        return json_incref(p);
    return record(a);
}

/* Appends the record (gen, spec, placement) to the log: 0, or
 * agent_raft_apply's error (-ENOTCONN: not the leader). */
static int propose(agent *a, uint64_t gen, const json_t *spec, const json_t *placement)
{
    dpr_buf payload = DPR_BUF_INIT;
    int rc = agent_cstate_spec_payload(gen, spec, placement, &payload);

    if (rc == 0)
        rc = agent_raft_apply(a->raft, AGENT_CSTATE_ENTRY_SPEC, payload.data, payload.len,
                              on_record, a);
    dpr_buf_free(&payload);
    if (rc < 0)
        return rc;
    json_decref(a->spec_proposed);
    a->spec_proposed = json_pack("{s:I, s:O, s:O}", "generation", (json_int_t)gen, "spec",
                                 spec, "placement", placement);
    return 0;
}

static int cmd_spec(agent *a, int argc, char *const *argv, const size_t *argvlen,
                    dpr_buf *out);

static void on_insts(void *arg, int status)
{
    (void)arg;
    if (status < 0 && status != -ENOTCONN)
        log_warning("cluster: an instance record was not committed: %s", strerror(-status));
}

/* DPR.CLUSTER.INSTANCES <node> <json>: a node's instances, as it runs them. */
static int cmd_instances(agent *a, char *const *argv, const size_t *argvlen, dpr_buf *out)
{
    json_t *j = json_loadb(argv[2], argvlen[2], JSON_REJECT_DUPLICATES, NULL);
    const char *node = json_string_value(json_object_get(j, "node"));
    int rc;

    if (!node || strlen(node) != argvlen[1] || memcmp(node, argv[1], argvlen[1]) != 0 ||
        !json_is_array(json_object_get(j, "deployments"))) {
        dpr_resp_error(out, "ERR DPR.CLUSTER.INSTANCES NODE {\"node\": NODE, "
                       "\"deployments\": [...]}");
    } else {
        rc = agent_raft_apply(a->raft, AGENT_CSTATE_ENTRY_INSTANCES, argv[2], argvlen[2],
                              on_insts, a);
        if (rc < 0)
            dpr_resp_errorf(out, "%s the instance record cannot be proposed: %s",
                            rc == -ENOTCONN ? "TRYAGAIN" : "ERR", strerror(-rc));
        else
            dpr_resp_status(out, "OK");
    }
    json_decref(j);
    return dpr_buf_failed(out) ? -ENOMEM : 1;
}

static int cmd_endpoints(agent *a, int argc, char *const *argv, const size_t *argvlen,
                         dpr_buf *out);

int agent_cluster_spec_command(agent *a, int argc, char *const *argv, const size_t *argvlen,
                               dpr_buf *out)
{
    if (argc >= 1 && argvlen[0] == 21 && strncasecmp(argv[0], "DPR.CLUSTER.ENDPOINTS", 21) == 0)
        return cmd_endpoints(a, argc, argv, argvlen, out);
    if (argc >= 1 && argvlen[0] == 21 && strncasecmp(argv[0], "DPR.CLUSTER.INSTANCES", 21) == 0 &&
        a->raft && agent_raft_role_now(a->raft) == AGENT_RAFT_LEADER) {
        if (argc != 3) {
            dpr_resp_error(out, "ERR DPR.CLUSTER.INSTANCES NODE JSON");
            return dpr_buf_failed(out) ? -ENOMEM : 1;
        }
        return cmd_instances(a, argv, argvlen, out);
    }
    return cmd_spec(a, argc, argv, argvlen, out);
}

/*
 * DPR.CLUSTER.ENDPOINTS <deployment>, answered by every agent from the
 * committed spec record and the instance records it has: *3 :<layout
 * epoch> *n <endpoint of shard i, or nil while not published or its node
 * is down> *n :<worker of shard i>. The layout epoch is the one the node of
 * shard 0 published (0: none). A client that knows only the agents builds
 * its shard list from it, and asks again when a shard stops answering (it
 * moved).
 */
static int cmd_endpoints(agent *a, int argc, char *const *argv, const size_t *argvlen,
                         dpr_buf *out)
{
    char name[AGENT_DEPLOY_NAME_MAX + 1];
    const agent_placed_dep *d = NULL;
    agent_placement pl;
    json_t *rec, *lay;

    if (argc != 2 || argvlen[1] == 0 || argvlen[1] >= sizeof(name) ||
        memchr(argv[1], '\0', argvlen[1])) {
        dpr_resp_error(out, "ERR wrong number of arguments for 'DPR.CLUSTER.ENDPOINTS': "
                       "DPR.CLUSTER.ENDPOINTS DEPLOYMENT");
        return dpr_buf_failed(out) ? -ENOMEM : 1;
    }
    memcpy(name, argv[1], argvlen[1]);
    name[argvlen[1]] = '\0';
    agent_placement_init(&pl);
    rec = a->raft ? record(a) : NULL;
    if (rec && agent_placement_from_json(json_object_get(rec, "placement"), &pl) == 0)
        d = agent_placement_find(&pl, name);
    json_decref(rec);
    if (!d) {
        dpr_resp_errorf(out, "ERR no deployment '%s' in the cluster's spec%s", name,
                        a->raft ? "" : " (this agent runs alone: see its control socket)");
        agent_placement_free(&pl);
        return dpr_buf_failed(out) ? -ENOMEM : 1;
    }
    lay = agent_cluster_layout(a, name, &pl);
    dpr_resp_array(out, 3);
    dpr_resp_uint(out, (uint64_t)json_integer_value(json_object_get(lay, "epoch")));
    json_decref(lay);
    dpr_resp_array(out, d->shards);
    for (uint32_t s = 0; s < d->shards; s++) {
        json_t *o = agent_cluster_published(a, name, s, &d->slot[s]);
        const char *ep = json_string_value(json_object_get(o, "endpoint"));
        if (ep && !agent_placement_is_down(&pl, d->slot[s].node))
            dpr_resp_bulk_str(out, ep);
        else
            dpr_resp_nil(out);
        json_decref(o);
    }
    dpr_resp_array(out, d->shards);
    for (uint32_t s = 0; s < d->shards; s++)
        dpr_resp_uint(out, d->slot[s].worker);
    agent_placement_free(&pl);
    return dpr_buf_failed(out) ? -ENOMEM : 1;
}

/* DPR.CLUSTER.SPEC on the leader. */
static int cmd_spec(agent *a, int argc, char *const *argv, const size_t *argvlen, dpr_buf *out)
{
    const char *impls[64];
    agent_spec_rules rules;
    agent_problems probs;
    agent_spec spec;
    agent_placement placed;
    json_t *j = NULL, *canon = NULL, *old = NULL, *placement = NULL;
    char node[AGENT_CSTATE_NAME_MAX + 1], msg[400];
    uint64_t gen;
    int rc;

    if (argc < 1 || argvlen[0] != 16 || strncasecmp(argv[0], "DPR.CLUSTER.SPEC", 16) != 0)
        return 0;
    if (!a->raft || agent_raft_role_now(a->raft) != AGENT_RAFT_LEADER)
        return 0; /* the server names the leader */
    if (argc != 3 || argvlen[1] == 0 || argvlen[1] >= sizeof(node) ||
        memchr(argv[1], '\0', argvlen[1])) {
        dpr_resp_error(out, "ERR DPR.CLUSTER.SPEC NODE SPEC-JSON");
        return dpr_buf_failed(out) ? -ENOMEM : 1;
    }
    memcpy(node, argv[1], argvlen[1]);
    node[argvlen[1]] = '\0';
    rules_of(a, &rules, impls, 64);
    agent_problems_init(&probs);
    agent_placement_init(&placed);
    j = json_loadb(argv[2], argvlen[2], JSON_REJECT_DUPLICATES, NULL);
    rc = j ? agent_spec_parse(j, &rules, &spec, &probs) : -EINVAL;
    if (rc < 0) {
        snprintf(msg, sizeof(msg), "ERR spec invalid on the leader: %s%s%s",
                 probs.n ? probs.v[0].where : "", probs.n ? ": " : "not JSON",
                 probs.n ? probs.v[0].message : "");
        dpr_resp_error(out, msg);
        goto out;
    }
    old = newest_record(a);
    if (old) {
        agent_spec was;
        agent_placement pl;
        if (record_parse(old, &was, &pl) == 0) {
            agent_spec_keep_resumed(&spec, &was); /* (an apply without the count) */
            agent_spec_free(&was);
            agent_placement_free(&pl);
        }
    }
    canon = agent_spec_to_json(&spec);
    rc = canon ? place_spec(a, &spec, old, true, &placed, &probs) : -ENOMEM;
    agent_spec_free(&spec);
    if (rc == -EINVAL || rc == -EAGAIN) {
        /* TRYAGAIN: the caller's agent asks again until its timeout (the
         * reason is the last problem) */
        const agent_problem *pr = &probs.v[rc == -EAGAIN ? probs.n - 1 : 0];
        if (rc == -EAGAIN)
            snprintf(msg, sizeof(msg), "TRYAGAIN %s", pr->message);
        else
            snprintf(msg, sizeof(msg), "ERR spec invalid on the leader: %s: %s", pr->where,
                     pr->message);
        dpr_resp_error(out, msg);
        goto out;
    }
    placement = rc == 0 ? agent_placement_to_json(&placed) : NULL;
    agent_placement_free(&placed);
    if (!placement) {
        dpr_resp_error(out, "ERR out of memory");
        goto out;
    }
    gen = old ? (uint64_t)json_integer_value(json_object_get(old, "generation")) : 0;
    if (old && json_equal(json_object_get(old, "spec"), canon) &&
        json_equal(json_object_get(old, "placement"), placement)) {
        snprintf(msg, sizeof(msg), "OK %" PRIu64, gen); /* nothing changes */
        dpr_resp_status(out, msg);
        goto out;
    }
    gen++;
    rc = propose(a, gen, canon, placement);
    if (rc < 0) {
        snprintf(msg, sizeof(msg), "%s the spec record cannot be proposed: %s",
                 rc == -ENOTCONN ? "TRYAGAIN" : "ERR", strerror(-rc));
        dpr_resp_error(out, msg);
        goto out;
    }
    log_info("cluster: spec generation %" PRIu64 " from node %s", gen, node);
    /* held by the finder server until its next barrier: after this entry */
    snprintf(msg, sizeof(msg), "OK %" PRIu64, gen);
    dpr_resp_status(out, msg);
out:
    agent_problems_free(&probs);
    json_decref(j);
    json_decref(canon);
    json_decref(old);
    json_decref(placement);
    return dpr_buf_failed(out) ? -ENOMEM : 1;
}

/* ---- every agent: adopting its part ------------------------------------------ */

/* Local deployments the record does not hold (a node that ran its own
 * before it joined): never deleted by an adoption. The first one, or NULL. */
static const char *unknown_local(agent *a, const json_t *spec)
{
    for (size_t i = 0; a->st.spec.name && i < a->st.spec.n; i++) {
        bool found = false;
        json_t *d;
        size_t k;
        json_array_foreach(json_object_get(spec, "cachestores"), k, d) {
            const char *name = json_string_value(json_object_get(d, "name"));
            found = found || (name && strcmp(name, a->st.spec.d[i].name) == 0);
        }
        if (!found)
            return a->st.spec.d[i].name;
    }
    return NULL;
}

/* Answers the callers whose generation is adopted: the adoption's reply
 * (its plan here; NULL: out of memory) with their id, and the record's
 * generation and placement. */
static void answer(agent *a, const json_t *reply, const json_t *rec)
{
    json_t *oom = NULL;
    waiter *w, *next;

    if (!reply)
        reply = oom = agent_reply_error(NULL, AGENT_E_INTERNAL, "out of memory", NULL);
    for (w = a->spec_waiters; w; w = next) {
        json_t *r;
        next = w->next;
        if (!w->gen || w->gen > agent_raft_cstate(a->raft)->spec_generation)
            continue;
        unlink_waiter(a, w);
        r = json_deep_copy(reply);
        if (r) {
            json_object_set(r, "id", w->id ? w->id : json_null());
            if (!w->id)
                json_object_del(r, "id");
            json_t *res = json_object_get(r, "result");
            if (json_is_object(res)) {
                json_object_set_new(res, "cluster_generation",
                                    json_integer((json_int_t)w->gen));
                json_object_set_new(res, "placement", record_brief(rec));
            }
        }
        agent_pending_reply(w->pending, r);
        waiter_free(w);
    }
    json_decref(oom);
}

/* A fresh cluster led by a node that ran deployments alone: its spec
 * becomes the record, every instance placed on it with its worker id. */
static void import_local(agent *a)
{
    json_t *spec = agent_spec_to_json(&a->st.spec), *placement = NULL;
    agent_placement pl;
    int rc = spec ? 0 : -ENOMEM;

    agent_placement_init(&pl);
    pl.next_worker = a->st.next_worker;
    if (rc == 0 && a->st.spec.n && !(pl.d = calloc(a->st.spec.n, sizeof(*pl.d))))
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < a->st.spec.n; i++) {
        agent_placed_dep *d = &pl.d[pl.n++];
        snprintf(d->name, sizeof(d->name), "%s", a->st.spec.d[i].name);
        d->shards = a->st.spec.d[i].shards;
        if (!(d->slot = calloc(d->shards, sizeof(*d->slot))))
            rc = -ENOMEM;
        for (size_t k = 0; rc == 0 && k < a->st.ninst; k++) {
            const agent_instance *in = &a->st.inst[k];
            if (strcmp(in->deployment, d->name) != 0 || in->shard >= d->shards)
                continue;
            snprintf(d->slot[in->shard].node, sizeof(d->slot[in->shard].node), "%s",
                     a->cfg->node_name);
            d->slot[in->shard].worker = in->worker;
        }
        for (uint32_t s = 0; rc == 0 && s < d->shards; s++)
            if (!d->slot[s].worker) /* (a resize in progress: shards not made yet) */
                rc = -EBUSY;
    }
    placement = rc == 0 ? agent_placement_to_json(&pl) : NULL;
    if (rc == -EBUSY) /* (tried again with every applied entry) */
        log_debug("cluster: this node's deployments are being resized: they become the "
                  "cluster's spec once that is done");
    if (placement && propose(a, 1, spec, placement) == 0)
        log_notice("cluster: this node's deployments (%zu) become the new cluster's spec, "
                   "placed on it", a->st.spec.n);
    agent_placement_free(&pl);
    json_decref(spec);
    json_decref(placement);
}

/* Events for the nodes marked down or back from `was` to `now`. */
static void tell_down(agent *a, const agent_placement *was, const agent_placement *now)
{
    for (size_t i = 0; i < now->ndown; i++)
        if (!agent_placement_is_down(was, now->down[i]))
            agent_emit(a, "node", json_pack("{s:s, s:s}", "name", now->down[i], "state",
                                            "down"));
    for (size_t i = 0; i < was->ndown; i++)
        if (!agent_placement_is_down(now, was->down[i]))
            agent_emit(a, "node", json_pack("{s:s, s:s}", "name", was->down[i], "state", "up"));
}

/* This node's part of the record rec, applied (dry: planned) as `event`:
 * the reply, NULL on ENOMEM. */
static json_t *take_part(agent *a, const json_t *rec, json_t *id, bool dry, const char *event)
{
    agent_placement pl;
    json_t *part, *reply = NULL;

    if (agent_placement_from_json(json_object_get(rec, "placement"), &pl) < 0)
        return agent_reply_error(id, AGENT_E_INTERNAL, "the cluster's spec record holds no "
                                 "placement this agent reads (written by another version?)",
                                 NULL);
    part = part_of(json_object_get(rec, "spec"), &pl, a->cfg->node_name);
    if (part)
        reply = agent_apply_json(a, id, part, &pl, dry, event);
    json_decref(part);
    if (!dry) {
        /* what the layouts, the status and clients go by from now on */
        tell_down(a, &a->placement, &pl);
        agent_placement_free(&a->placement);
        a->placement = pl;
    } else {
        agent_placement_free(&pl);
    }
    return reply;
}

void agent_cluster_adopt(agent *a)
{
    const agent_cstate *cs;
    json_t *rec, *reply;
    const char *stray;

    if (!a->raft || a->stopping)
        return;
    cs = agent_raft_cstate(a->raft);
    if (!cs->spec && !a->spec_proposed && a->st.spec.name && a->st.spec.n > 0 &&
        agent_finder_serving(a->finder)) /* the leader, past its barrier */
        import_local(a);
    if (!cs->spec || cs->spec_generation <= a->spec_adopted)
        return;
    rec = record(a);
    if (!rec)
        return;
    if (a->spec_adopted == 0 && !a->st.placed &&
        (stray = unknown_local(a, json_object_get(rec, "spec")))) {
        /* never delete what this node ran before it took the cluster's spec
         * (what it runs from the cluster's placement is the cluster's to
         * delete, also while the node was away) */
        if (cs->spec_generation != a->spec_refused)
            log_error("cluster: this node runs deployment '%s', which the cluster's spec "
                      "(generation %" PRIu64 ") does not hold: not taking the cluster's spec, "
                      "so nothing is deleted. Apply a spec that holds it (from this node: it "
                      "stays here), or delete it here first", stray, cs->spec_generation);
        a->spec_refused = cs->spec_generation;
        {
            char msg[300];
            json_t *err;
            snprintf(msg, sizeof(msg), "the cluster took the spec (generation %" PRIu64 "), "
                     "but this node does not: it runs deployment '%s', which the spec does "
                     "not hold (nothing is deleted; see the agent's log)",
                     cs->spec_generation, stray);
            err = agent_reply_error(NULL, AGENT_E_UNAVAILABLE, msg, NULL);
            answer(a, err, rec);
            json_decref(err);
        }
        json_decref(rec);
        return;
    }
    /* (set first: the instance record this node publishes while it takes
     * its part says it took the spec) */
    a->spec_adopted = cs->spec_generation;
    /* (said before the steps taking it logs) */
    log_info("cluster: taking spec generation %" PRIu64, cs->spec_generation);
    reply = take_part(a, rec, NULL, false, "apply");
    if (reply && json_is_false(json_object_get(reply, "ok")))
        log_error("cluster: this node cannot take its part of spec generation %" PRIu64
                  ": %s", cs->spec_generation,
                  json_string_value(json_object_get(json_object_get(reply, "error"),
                                                    "message")));
    agent_cluster_publish(a, true); /* (the generation it took is in the record) */
    answer(a, reply, rec);
    json_decref(a->spec_adopted_reply);
    a->spec_adopted_reply = reply; /* (taken) */
    json_decref(rec);
}

/* ---- every agent: sending apply and delete to the leader ----------------------- */

static void on_forwarded(void *arg, int status, int error, const char *text)
{
    waiter *w = arg;
    agent *a = w->a;
    char msg[600];
    uint64_t gen = 0;

    w->req = NULL;
    if (status < 0 || error || sscanf(text, "OK %" SCNu64, &gen) != 1 || gen == 0) {
        const char *code = AGENT_E_UNAVAILABLE;
        if (status < 0)
            snprintf(msg, sizeof(msg), "no leader answered (%s): nothing was changed",
                     strerror(-status));
        else if (error && strncmp(text, "ERR spec invalid", 16) == 0) {
            code = AGENT_E_SPEC_INVALID;
            snprintf(msg, sizeof(msg), "%s", text + 4);
        } else
            snprintf(msg, sizeof(msg), "the leader refused: %s", text ? text : "?");
        unlink_waiter(a, w);
        agent_pending_reply(w->pending, agent_reply_error(w->id, code, msg, NULL));
        waiter_free(w);
        return;
    }
    w->gen = gen;
    if (gen <= a->spec_adopted) {
        /* adopted already: this node was quick (the plan it took is the
         * answer), or nothing changed, or a later spec came meanwhile (what
         * taking the record now would do) */
        json_t *rec = record(a), *reply = NULL;
        if (rec && gen == a->spec_adopted && a->spec_adopted_reply)
            reply = json_incref(a->spec_adopted_reply);
        else if (rec)
            reply = take_part(a, rec, NULL, true, "plan");
        answer(a, reply, rec);
        json_decref(reply);
        json_decref(rec);
        return;
    }
    agent_cluster_adopt(a); /* the record may be here already */
}

json_t *agent_cluster_change(agent *a, agent_client *c, const agent_request *req,
                             const json_t *spec, const char *delete_name)
{
    const char *impls[64];
    agent_spec_rules rules;
    agent_problems probs;
    agent_spec parsed;
    json_t *canon = NULL, *rec = NULL;
    const char *argv[3];
    char *text = NULL;
    agent_tls *const *tls;
    dpr_finders t;
    waiter *w;
    int rc;

    rec = record(a);
    if (delete_name) {
        json_t *list = json_object_get(json_object_get(rec, "spec"), "cachestores"), *d;
        size_t i;
        bool found = false;
        canon = json_deep_copy(json_object_get(rec, "spec"));
        json_array_foreach(list, i, d)
            found = found || strcmp(json_string_value(json_object_get(d, "name")) ?
                                    json_string_value(json_object_get(d, "name")) : "",
                                    delete_name) == 0;
        if (!found) {
            json_decref(canon);
            json_decref(rec);
            return agent_reply_error(req->id, AGENT_E_NOT_FOUND, "no deployment of that name "
                                     "in the cluster's spec", NULL);
        }
        list = json_object_get(canon, "cachestores");
        for (i = json_array_size(list); i > 0; i--)
            if (strcmp(json_string_value(json_object_get(json_array_get(list, i - 1),
                                                         "name")), delete_name) == 0)
                json_array_remove(list, i - 1);
    } else {
        rules_of(a, &rules, impls, 64);
        agent_problems_init(&probs);
        rc = agent_spec_parse(spec, &rules, &parsed, &probs);
        if (rc < 0) {
            json_t *reply = rc == -EINVAL ? agent_reply_spec_invalid(req->id, &probs) : NULL;
            agent_problems_free(&probs);
            json_decref(rec);
            return reply;
        }
        agent_problems_free(&probs);
        canon = agent_spec_to_json(&parsed);
        agent_spec_free(&parsed);
    }
    json_decref(rec);
    text = canon ? json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(canon);
    w = calloc(1, sizeof(*w));
    if (!text || !w || agent_peer_targets(a, &t, &tls) < 0) {
        free(text);
        free(w);
        return NULL;
    }
    w->a = a;
    w->id = json_incref(req->id);
    w->pending = agent_client_defer(c);
    argv[0] = "DPR.CLUSTER.SPEC";
    argv[1] = a->cfg->node_name;
    argv[2] = text;
    /* (peerreq answers on a later loop turn, never from inside the call) */
    if (!w->pending ||
        agent_peerreq_send(a->loop, &t, tls, SPEC_FORWARD_MS, 3, argv, on_forwarded, w,
                           &w->req) < 0) {
        agent_pending_cancel(w->pending);
        free(text);
        waiter_free(w);
        return NULL;
    }
    free(text);
    w->next = a->spec_waiters;
    a->spec_waiters = w;
    return AGENT_REPLY_DEFERRED;
}

json_t *agent_cluster_preview(agent *a, const agent_request *req)
{
    const char *impls[64];
    agent_spec_rules rules;
    agent_problems probs;
    agent_spec parsed;
    agent_placement pl;
    json_t *rec = record(a), *canon = NULL, *part = NULL, *reply = NULL;
    int rc;

    rules_of(a, &rules, impls, 64);
    agent_problems_init(&probs);
    agent_placement_init(&pl);
    rc = agent_spec_parse(req->spec, &rules, &parsed, &probs);
    if (rc == 0) {
        /* where this node's view of the cluster would put each instance
         * (the leader decides, with the same rules and the same log) */
        canon = agent_spec_to_json(&parsed);
        rc = canon ? place_spec(a, &parsed, rec, false, &pl, &probs) : -ENOMEM;
        agent_spec_free(&parsed);
    }
    if (rc == -EINVAL || rc == -EAGAIN)
        reply = agent_reply_spec_invalid(req->id, &probs);
    agent_problems_free(&probs);
    if (rc < 0)
        goto out;
    part = part_of(canon, &pl, a->cfg->node_name);
    reply = part ? agent_apply_json(a, req->id, part, &pl, true, "plan") : NULL;
    if (reply && json_is_object(json_object_get(reply, "result")))
        json_object_set_new(json_object_get(reply, "result"), "placement",
                            placement_brief(&pl));
out:
    agent_placement_free(&pl);
    json_decref(rec);
    json_decref(canon);
    json_decref(part);
    return reply;
}

/* What the record tells of a local instance. New reference. */
/* Ready, and (restarted by a roll-out) ready for its min_ready_seconds:
 * what the other nodes' roll-outs count (rollout.h). */
static bool available(agent *a, const agent_instance *in, const inst_rt *rt)
{
    int d = a->st.spec.name ? agent_spec_find(&a->st.spec, in->deployment) : -1;
    uint64_t min_ready = d >= 0 ? (uint64_t)a->st.spec.d[d].rollout.min_ready_seconds * 1000u
                                : 0;

    if (!rt || !agent_rt_ready(rt))
        return false;
    /* (a restart in flight: its unit may still read as the old process,
     * ready; the other nodes must not go on before it is back) */
    if (rt->in_flight && (rt->op == AGENT_UNIT_RESTART || rt->op == AGENT_UNIT_START))
        return false;
    return !rt->rolled_ms || dpr_mono_ms() - rt->ready_since_ms >= min_ready;
}

static json_t *published_instance(agent *a, const agent_instance *in)
{
    inst_rt *rt = agent_rt_find(a, in->name);
    bool known = rt && rt->known;
    char endpoint[320];
    json_t *o;

    agent_env_endpoint(in, agent_config_cs_host(a->cfg), endpoint, sizeof(endpoint));
    o = json_pack("{s:s, s:I, s:I, s:s, s:b, s:b}", "name", in->name, "shard",
                  (json_int_t)in->shard, "worker", (json_int_t)in->worker, "endpoint", endpoint,
                  "ready", rt && agent_rt_ready(rt), "units", agent_units_connected(a->units));
    if (o && agent_instance_tls(a, in) &&
        json_object_set_new(o, "tls", json_string(agent_instance_tls(a, in))) < 0) {
        json_decref(o);
        return NULL;
    }
    if (o && known) {
        /* the unit's state as status shows it (not its pid or counters:
         * each change would be an entry) */
        json_object_set_new(o, "active_state", json_string(rt->props.active_state));
        json_object_set_new(o, "sub_state", json_string(rt->props.sub_state));
        json_object_set_new(o, "health", json_string(agent_health_name(rt->health)));
        if (rt->last_error[0])
            json_object_set_new(o, "last_error", json_stringn(rt->last_error,
                                                              strnlen(rt->last_error, 200)));
    }
    /* the roll-out: what its process runs (status and wait_ready elsewhere) */
    if (o && (json_object_set_new(o, "generation", json_integer((json_int_t)in->generation)) < 0 ||
              json_object_set_new(o, "running_generation",
                                  json_integer((json_int_t)in->run.generation)) < 0 ||
              json_object_set_new(o, "running_version", json_string(in->run.version)) < 0 ||
              json_object_set_new(o, "outdated",
                                  json_boolean(agent_instance_outdated(in) ||
                                               (rt && rt->restart_pending))) < 0 ||
              json_object_set_new(o, "available", json_boolean(available(a, in, rt))) < 0)) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

/* The layout a deployment's driving node publishes: epoch, shards and a
 * resize's endpoints (not its progress). New reference, or NULL. */
static json_t *published_layout(agent *a, const char *deployment)
{
    json_t *l = agent_layouts_status(a->layouts, deployment), *r, *out;

    if (!l)
        return NULL;
    r = json_object_get(l, "resize");
    out = json_pack("{s:O, s:O, s:o}", "epoch", json_object_get(l, "epoch"), "shards",
                    json_object_get(l, "shards"), "resize",
                    json_is_object(r) ? json_pack("{s:O, s:O, s:O}", "from",
                                                  json_object_get(r, "from"), "to",
                                                  json_object_get(r, "to"), "epoch",
                                                  json_object_get(r, "epoch"))
                                      : json_null());
    json_decref(l);
    return out;
}

/* Does this node drive deployment's layout (it runs its shard 0)? */
bool agent_cluster_drives(agent *a, const char *deployment)
{
    const agent_placed_dep *d;

    if (!a->raft)
        return true;
    d = agent_placement_find(&a->placement, deployment);
    return d && d->shards && strcmp(d->slot[0].node, a->cfg->node_name) == 0;
}

/* This node's roll-out of a deployment: its phase and why it halted (not
 * its counts: each change would be an entry). New reference, or NULL. */
static json_t *published_rollout(agent *a, const agent_deploy *dep)
{
    json_t *ro = agent_rollout_json(a, dep), *out;

    if (!ro)
        return NULL;
    out = json_pack("{s:O, s:O}", "phase", json_object_get(ro, "phase"), "halted",
                    json_object_get(ro, "halted"));
    json_decref(ro);
    return out;
}

/* This node's instance record: what it takes (labels, max_instances), the
 * spec generation it took, its deployments and their instances. New
 * reference. */
static json_t *own_instances(agent *a)
{
    json_t *deps = json_array(), *labels = json_array();

    for (size_t i = 0; labels && i < a->cfg->nnode_labels; i++)
        json_array_append_new(labels, json_string(a->cfg->node_labels[i]));
    for (size_t i = 0; deps && a->st.spec.name && i < a->st.spec.n; i++) {
        const char *name = a->st.spec.d[i].name;
        json_t *insts = json_array(), *d;
        for (size_t k = 0; insts && k < a->st.ninst; k++)
            if (strcmp(a->st.inst[k].deployment, name) == 0)
                json_array_append_new(insts, published_instance(a, &a->st.inst[k]));
        d = json_pack("{s:s, s:I, s:o*}", "name", name, "shards",
                      (json_int_t)a->st.spec.d[i].shards, "instances", insts);
        if (d && agent_cluster_drives(a, name))
            json_object_set_new(d, "layout", published_layout(a, name));
        if (d)
            json_object_set_new(d, "rollout", published_rollout(a, &a->st.spec.d[i]));
        json_array_append_new(deps, d);
    }
    if (!deps || !labels) {
        json_decref(deps);
        json_decref(labels);
        return NULL;
    }
    return json_pack("{s:s, s:o, s:I, s:I, s:b, s:s?, s:o}", "node", a->cfg->node_name,
                     "labels", labels, "max_instances", (json_int_t)a->cfg->max_instances,
                     "adopted", (json_int_t)a->spec_adopted, "placed", a->st.placed,
                     "replica_address", agent_replica_address(a), "deployments", deps);
}

static void on_published(void *arg, int status, int error, const char *text)
{
    agent *a = arg;

    a->insts_req = NULL;
    if (status < 0 || error)
        log_debug("cluster: publishing this node's instances failed: %s",
                  text ? text : strerror(-status));
    agent_cluster_publish(a, false); /* what changed while it was on its way */
}

void agent_cluster_publish(agent *a, bool changed)
{
    json_t *mine;
    const char *have;
    char *text;
    agent_tls *const *tls;
    dpr_finders t;

    a->insts_dirty |= changed;
    if (!a->raft || a->stopping || a->insts_req || !agent_raft_is_member(a->raft))
        return;
    have = agent_cstate_insts_of(agent_raft_cstate(a->raft), a->cfg->node_name);
    /* nothing changed here and the log holds what this node sent: no
     * record to build (this runs on every applied entry) */
    if (!a->insts_dirty && a->insts_sent && have && strcmp(have, a->insts_sent) == 0)
        return;
    a->insts_dirty = false;
    mine = own_instances(a);
    text = mine ? json_dumps(mine, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(mine);
    if (!text) {
        a->insts_dirty = true; /* (out of memory: later) */
        return;
    }
    if (have && strcmp(have, text) == 0) {
        /* the log holds the same text: nothing to write */
        free(a->insts_sent);
        a->insts_sent = text;
        return;
    }
    if (a->insts_sent && strcmp(a->insts_sent, text) == 0 &&
        dpr_mono_ms() - a->insts_sent_ms < PUBLISH_AGAIN_MS) {
        free(text); /* on its way */
        return;
    }
    free(a->insts_sent);
    a->insts_sent = strdup(text);
    a->insts_sent_ms = dpr_mono_ms();
    if (agent_raft_role_now(a->raft) == AGENT_RAFT_LEADER) {
        agent_raft_apply(a->raft, AGENT_CSTATE_ENTRY_INSTANCES, text, strlen(text), on_insts,
                         a);
    } else if (agent_peer_targets(a, &t, &tls) == 0) {
        const char *argv[3] = { "DPR.CLUSTER.INSTANCES", a->cfg->node_name, text };
        if (agent_peerreq_send(a->loop, &t, tls, PUBLISH_SEND_MS, 3, argv, on_published, a,
                               &a->insts_req) < 0)
            a->insts_req = NULL;
    }
    free(text);
}

json_t *agent_cluster_node_info(agent *a, const char *node)
{
    json_t *rec = node_record(a, node), *out;

    out = json_pack("{s:O*, s:O*, s:O*, s:I, s:b}", "labels", json_object_get(rec, "labels"),
                    "max_instances", json_object_get(rec, "max_instances"), "replica_address",
                    json_object_get(rec, "replica_address"), "instances",
                    (json_int_t)agent_placement_count(&a->placement, node), "down",
                    agent_placement_is_down(&a->placement, node));
    json_decref(rec);
    return out;
}

bool agent_cluster_holds(agent *a, const char *name)
{
    agent_spec spec;
    agent_placement pl;
    bool found;

    if (agent_cluster_record(a, &spec, &pl) < 0)
        return false;
    found = agent_spec_find(&spec, name) >= 0;
    agent_spec_free(&spec);
    agent_placement_free(&pl);
    return found;
}

int agent_cluster_record(agent *a, agent_spec *spec, agent_placement *pl)
{
    json_t *rec;
    int rc;

    if (!a->raft)
        return -ENOENT;
    rec = record(a);
    rc = record_parse(rec, spec, pl);
    json_decref(rec);
    return rc;
}

/* The published deployment d of node's record j, or NULL. */
static json_t *published_dep(json_t *j, const char *d)
{
    json_t *e;
    size_t i;

    json_array_foreach(json_object_get(j, "deployments"), i, e)
        if (json_is_string(json_object_get(e, "name")) &&
            strcmp(json_string_value(json_object_get(e, "name")), d) == 0)
            return e;
    return NULL;
}

/* The record node published, parsed (new reference), or NULL. */
static json_t *node_record(agent *a, const char *node)
{
    const char *text = agent_cstate_insts_of(agent_raft_cstate(a->raft), node);

    return text ? json_loads(text, 0, NULL) : NULL;
}

size_t agent_cluster_remote_instances(agent *a, const agent_deploy *dep, agent_ro_inst *out,
                                      size_t max)
{
    const agent_cstate *cs = agent_raft_cstate(a->raft);
    size_t n = 0;

    for (size_t i = 0; i < cs->ninsts; i++) {
        json_t *j, *e;
        bool stale;
        size_t k;
        if (strcmp(cs->insts[i].node, a->cfg->node_name) == 0)
            continue;
        j = json_loads(cs->insts[i].json, 0, NULL);
        /* a node that has not taken the spec this one took: what it says
         * of its instances is of an older spec (still to be updated) */
        stale = (uint64_t)json_integer_value(json_object_get(j, "adopted")) < a->spec_adopted;
        json_array_foreach(json_object_get(published_dep(j, dep->name), "instances"), k, e) {
            json_t *sh = json_object_get(e, "shard"), *av = json_object_get(e, "available");
            agent_ro_inst *r;
            if (n >= max || !json_is_integer(sh) || json_integer_value(sh) < 0 ||
                json_integer_value(sh) >= dep->shards)
                continue;
            r = &out[n++];
            memset(r, 0, sizeof(*r));
            r->remote = true;
            r->shard = (uint32_t)json_integer_value(sh);
            r->outdated = stale || json_is_true(json_object_get(e, "outdated"));
            r->ready = !stale && (av ? json_is_true(av) : json_is_true(json_object_get(e,
                                                                                    "ready")));
        }
        json_decref(j);
    }
    return n;
}

void agent_cluster_rollout_merge(agent *a, const char *deployment, json_t *ro)
{
    const agent_cstate *cs = agent_raft_cstate(a->raft);
    static const char *const order[] = { "done", "paused", "progressing", "halted", NULL };
    json_t *nodes = json_object();
    int worst = 0;

    if (!ro || !nodes) {
        json_decref(nodes);
        return;
    }
    for (int k = 0; order[k]; k++)
        if (json_is_string(json_object_get(ro, "phase")) &&
            strcmp(order[k], json_string_value(json_object_get(ro, "phase"))) == 0)
            worst = k;
    for (size_t i = 0; i < cs->ninsts; i++) {
        json_t *j = strcmp(cs->insts[i].node, a->cfg->node_name) == 0
                        ? NULL
                        : json_loads(cs->insts[i].json, 0, NULL);
        json_t *r = json_object_get(published_dep(j, deployment), "rollout");
        const char *phase = json_string_value(json_object_get(r, "phase"));
        /* a node that has not taken the spec this one took yet: its part
         * is still to come (its halt, if any, is of an older spec) */
        if (phase && (uint64_t)json_integer_value(json_object_get(j, "adopted")) <
                         a->spec_adopted) {
            phase = "progressing";
            r = NULL;
        }
        for (int k = 0; phase && order[k]; k++) {
            if (strcmp(order[k], phase) != 0)
                continue;
            json_object_set_new(nodes, cs->insts[i].node, json_string(phase));
            if (k == 3 && !json_is_string(json_object_get(ro, "halted")) &&
                json_is_string(json_object_get(r, "halted")))
                json_object_set_new(ro, "halted",
                                    json_sprintf("on %s: %s", cs->insts[i].node,
                                                 json_string_value(json_object_get(r,
                                                                                   "halted"))));
            if (k > worst)
                worst = k;
        }
        json_decref(j);
    }
    json_object_set_new(ro, "phase", json_string(order[worst]));
    json_object_set_new(ro, "nodes", nodes);
}

json_t *agent_cluster_published(agent *a, const char *deployment, uint32_t shard,
                                const agent_slot *slot)
{
    json_t *j = node_record(a, slot->node), *e, *out = NULL;
    size_t i;

    json_array_foreach(json_object_get(published_dep(j, deployment), "instances"), i, e) {
        json_t *w = json_object_get(e, "worker"), *sh = json_object_get(e, "shard");
        if (json_is_integer(w) && (uint64_t)json_integer_value(w) == slot->worker &&
            json_is_integer(sh) && (uint64_t)json_integer_value(sh) == shard) {
            out = json_deep_copy(e);
            break;
        }
    }
    json_decref(j);
    if (!out) {
        /* placed, not running there (yet) */
        char name[AGENT_INSTANCE_NAME_MAX + 1];
        snprintf(name, sizeof(name), "%s-%u", deployment, shard);
        out = json_pack("{s:s, s:I, s:I, s:b}", "name", name, "shard", (json_int_t)shard,
                        "worker", (json_int_t)slot->worker, "ready", 0);
    }
    if (out)
        json_object_set_new(out, "node", json_string(slot->node));
    return out;
}

json_t *agent_cluster_layout(agent *a, const char *deployment, const agent_placement *pl)
{
    const agent_placed_dep *d = agent_placement_find(pl, deployment);
    json_t *j, *out;

    if (!d || !d->shards)
        return NULL;
    j = node_record(a, d->slot[0].node);
    out = json_incref(json_object_get(published_dep(j, deployment), "layout"));
    json_decref(j);
    return out;
}

uint64_t agent_cluster_layout_epoch(agent *a, const char *deployment)
{
    const agent_cstate *cs;
    uint64_t top = 0;

    if (!a->raft)
        return 0;
    cs = agent_raft_cstate(a->raft);
    for (size_t i = 0; i < cs->nnodes; i++) {
        json_t *j = node_record(a, cs->nodes[i].name);
        json_t *e = json_object_get(json_object_get(published_dep(j, deployment), "layout"),
                                    "epoch");
        if (json_is_integer(e) && json_integer_value(e) > 0 &&
            (uint64_t)json_integer_value(e) > top)
            top = (uint64_t)json_integer_value(e);
        json_decref(j);
    }
    return top;
}

json_t *agent_cluster_spec_json(agent *a)
{
    json_t *rec = a->raft ? record(a) : NULL, *out;

    if (!rec)
        return json_null();
    out = json_pack("{s:O, s:o, s:I}", "generation", json_object_get(rec, "generation"),
                    "placement", record_brief(rec), "adopted", (json_int_t)a->spec_adopted);
    if (out) {
        json_t *down = json_array();
        for (size_t i = 0; down && i < a->placement.ndown; i++)
            json_array_append_new(down, json_string(a->placement.down[i]));
        json_object_set_new(out, "down", down ? down : json_null());
    }
    json_decref(rec);
    return out ? out : json_null();
}

/* Says which instances next moves off lost nodes (cur: before). */
static void log_moves(const agent_placement *cur, const agent_placement *next)
{
    for (size_t i = 0; i < next->n; i++) {
        const agent_placed_dep *old = agent_placement_find(cur, next->d[i].name);
        for (uint32_t s = 0; old && s < next->d[i].shards && s < old->shards; s++) {
            const agent_slot *a = &old->slot[s], *b = &next->d[i].slot[s];
            if (b->token[0] && strcmp(a->token, b->token) != 0)
                log_notice("cluster: %s-%u (worker %" PRIu64 ") moves from %s, which is "
                           "down, to %s: it starts there from its copied checkpoints",
                           next->d[i].name, s, b->worker, b->moved_from, b->node);
        }
    }
}

/* The placement of rec's spec from cur (the record's, with a new down
 * list): replicas on nodes now down move to live ones. New reference;
 * NULL when placing fails (logged when loud) or on ENOMEM. */
static json_t *replaced(agent *a, const json_t *rec, const agent_placement *cur, bool loud)
{
    agent_problems probs;
    agent_placement next;
    agent_spec spec;
    node_view nv;
    json_t *out = NULL;
    int rc;

    agent_problems_init(&probs);
    rc = agent_spec_parse(json_object_get(rec, "spec"), &record_rules, &spec, &probs);
    if (rc == 0) {
        rc = node_view_make(a, &nv);
        if (rc == 0) {
            rc = agent_place(&spec, cur, NULL, nv.v, nv.n, &next, &probs);
            node_view_free(&nv);
            if (rc == 0 && (rc = give_tokens(&next)) < 0)
                agent_placement_free(&next);
        }
        agent_spec_free(&spec);
    }
    if (rc == 0) {
        log_moves(cur, &next);
        out = agent_placement_to_json(&next);
        agent_placement_free(&next);
    } else if (loud) {
        log_warning("cluster: placing again with the nodes down failed (%s%s%s)",
                    probs.n ? probs.v[0].where : "", probs.n ? ": " : "",
                    probs.n ? probs.v[0].message : strerror(-rc));
    }
    agent_problems_free(&probs);
    return out;
}

/* Is member id down, as the leader sees it (was_down: it is marked so)? */
/* A node down or back, with its MESSAGE_ID (common/msgid.h). */
static void log_node_down(const char *name, bool down)
{
    char node_field[128];
    const char *fields[] = { down ? DPR_MSGID_FIELD(DPR_MSGID_NODE_DOWN)
                                  : DPR_MSGID_FIELD(DPR_MSGID_NODE_UP),
                             node_field, NULL };

    snprintf(node_field, sizeof(node_field), "DPR_NODE=%s", name);
    dpr_log_fields(DPR_LOG_NOTICE, fields, "cluster: node %s %s", name,
                   down ? "is down: no contact for raft.node_down_after_ms; its instances wait "
                          "for it" : "is back");
}

static bool member_down(agent *a, uint64_t id, bool was_down, uint64_t now)
{
    agent_raft_member m[64];
    size_t n = agent_raft_members(a->raft, m, 64);
    int64_t ms = -1;

    if (id == agent_raft_id(a->raft))
        return false;
    for (size_t i = 0; i < n && i < 64; i++)
        if (m[i].id == id)
            ms = m[i].last_contact_ms;
    if (ms < 0) /* not heard from since this node leads */
        return was_down || now - a->lead_since_ms > a->cfg->node_down_after_ms;
    if (was_down) /* back once it answers like a live member */
        return ms > 2 * (int64_t)a->cfg->raft_election_ms;
    return ms > (int64_t)a->cfg->node_down_after_ms;
}

/* The leader: every moved instance's worker has its new token in the
 * finder (the record this node took: its placement is committed). */
static void hand_over(agent *a)
{
    const agent_placement *p = &a->placement;

    for (size_t i = 0; i < p->n; i++)
        for (uint32_t s = 0; s < p->d[i].shards; s++) {
            const agent_slot *sl = &p->d[i].slot[s];
            int rc;
            if (!sl->token[0])
                continue;
            rc = agent_finder_hand_over(a->finder, p->d[i].name, sl->worker, sl->token);
            if (rc == 1)
                log_notice("cluster: worker %" PRIu64 " of '%s' belongs to its instance on "
                           "%s now: the finder refuses its old incarnation (on %s)", sl->worker,
                           p->d[i].name, sl->node, sl->moved_from);
            else if (rc < 0 && rc != -ENOENT && rc != -EAGAIN)
                log_warning("cluster: cannot hand worker %" PRIu64 " of '%s' over to %s: %s",
                            sl->worker, p->d[i].name, sl->node, strerror(-rc));
        }
}

bool agent_cluster_may_start(agent *a, const agent_instance *in)
{
    dpr_finder *f = a->raft ? agent_domain(a, in->deployment) : NULL;

    if (!f || dpr_finder_token_check(f, in->worker, in->token, strlen(in->token)) != -EACCES)
        return true; /* its token, or a worker the finder does not know */
    /* registered with another token: not this incarnation's (yet), unless
     * it was registered without one (before tokens: it takes this one) */
    return dpr_finder_token_check(f, in->worker, NULL, 0) == 0;
}

void agent_cluster_tick(agent *a)
{
    const agent_cstate *cs;
    const char *down[AGENT_PLACEMENT_DOWN_MAX];
    agent_placement pl;
    json_t *rec, *placement = NULL;
    size_t n = 0;
    uint64_t now = dpr_mono_ms(), gen;
    bool changed = false;

    if (!a->raft || agent_raft_role_now(a->raft) != AGENT_RAFT_LEADER ||
        !agent_finder_serving(a->finder)) {
        a->lead_since_ms = 0;
        return;
    }
    if (!a->lead_since_ms)
        a->lead_since_ms = now;
    hand_over(a);
    rec = newest_record(a);
    if (!rec || agent_placement_from_json(json_object_get(rec, "placement"), &pl) < 0) {
        json_decref(rec);
        return;
    }
    cs = agent_raft_cstate(a->raft);
    for (size_t i = 0; i < cs->nnodes && n < AGENT_PLACEMENT_DOWN_MAX; i++) {
        const char *name = cs->nodes[i].name;
        bool was = agent_placement_is_down(&pl, name);
        bool is = member_down(a, cs->nodes[i].id, was, now);
        if (is)
            down[n++] = name;
        if (is != was)
            log_node_down(name, is);
        changed |= is != was;
    }
    /* (a member that left is no longer listed) */
    changed |= n != pl.ndown;
    gen = (uint64_t)json_integer_value(json_object_get(rec, "generation"));
    /* placed again with the nodes down now: replicas move off nodes that
     * went down, and instances short of replicas get them once a node can
     * take them (a node back, a new member) */
    if (agent_placement_set_down(&pl, down, n) == 0 &&
        ((placement = replaced(a, rec, &pl, changed)) ||
         /* (placing failed: only the list of nodes down changes) */
         (changed && (placement = agent_placement_to_json(&pl)))) &&
        !json_equal(placement, json_object_get(rec, "placement")) &&
        propose(a, gen + 1, json_object_get(rec, "spec"), placement) == 0)
        log_info("cluster: spec generation %" PRIu64 ": %zu node%s down%s", gen + 1, n,
                 n == 1 ? "" : "s", changed ? "" : "; replicas placed again");
    json_decref(placement);
    agent_placement_free(&pl);
    json_decref(rec);
}

void agent_cluster_stop(agent *a)
{
    waiter *w, *next;

    for (w = a->spec_waiters; w; w = next) {
        next = w->next;
        agent_peerreq_cancel(w->req);
        agent_pending_reply(w->pending, agent_reply_error(w->id, AGENT_E_UNAVAILABLE,
                                                          "the agent is stopping", NULL));
        waiter_free(w);
    }
    a->spec_waiters = NULL;
    json_decref(a->spec_proposed);
    a->spec_proposed = NULL;
    json_decref(a->spec_adopted_reply);
    a->spec_adopted_reply = NULL;
    agent_peerreq_cancel(a->insts_req);
    a->insts_req = NULL;
    free(a->insts_sent);
    a->insts_sent = NULL;
    agent_placement_free(&a->placement);
}
