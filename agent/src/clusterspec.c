/* clusterspec.c - the cluster's desired spec in the Raft log (see clusterspec.h). */
#include "clusterspec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent_int.h"
#include "common/finders.h"
#include "common/log.h"
#include "common/resp.h"
#include "cstate.h"
#include "envfile.h"
#include "peerreq.h"

/* How long apply/delete look for a leader (an election takes about one to
 * two election timeouts). */
#define SPEC_FORWARD_MS 15000

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
}

/* The record (cstate's spec) as JSON, or NULL when there is none. */
static json_t *record(agent *a)
{
    const agent_cstate *cs = agent_raft_cstate(a->raft);

    return cs->spec ? json_loadb(cs->spec, cs->spec_len, 0, NULL) : NULL;
}

/* The placement a spec gets: each deployment keeps its node (in base, a
 * placement object, may be NULL), new ones go to node. New reference. */
static json_t *place(const json_t *spec, const json_t *base, const char *node)
{
    json_t *out = json_object(), *d;
    size_t i;

    json_array_foreach(json_object_get(spec, "cachestores"), i, d) {
        const char *name = json_string_value(json_object_get(d, "name"));
        json_t *was = name ? json_object_get(base, name) : NULL;
        if (name && json_object_set_new(out, name, was ? json_incref(was)
                                                       : json_string(node)) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* spec's deployments placed on node, as a spec of their own. New reference. */
static json_t *part_of(const json_t *spec, const json_t *placement, const char *node)
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
        const char *at = name ? json_string_value(json_object_get(placement, name)) : NULL;
        if (at && strcmp(at, node) == 0)
            json_array_append(keep, d);
    }
    json_object_set_new(part, "cachestores", keep);
    return part;
}

/* ---- the leader ------------------------------------------------------------ */

static int cmd_spec(agent *a, int argc, char *const *argv, const size_t *argvlen,
                    dpr_buf *out);

static void on_record(void *arg, int status)
{
    (void)arg;
    if (status < 0 && status != -ENOTCONN)
        log_warning("cluster: the spec record was not committed: %s", strerror(-status));
}

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

int agent_cluster_spec_command(agent *a, int argc, char *const *argv, const size_t *argvlen,
                               dpr_buf *out)
{
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

/* DPR.CLUSTER.SPEC on the leader. */
static int cmd_spec(agent *a, int argc, char *const *argv, const size_t *argvlen, dpr_buf *out)
{
    const char *impls[64];
    agent_spec_rules rules;
    agent_problems probs;
    agent_spec spec;
    json_t *j = NULL, *canon = NULL, *old = NULL, *placement = NULL;
    dpr_buf payload = DPR_BUF_INIT;
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
    j = json_loadb(argv[2], argvlen[2], JSON_REJECT_DUPLICATES, NULL);
    rc = j ? agent_spec_parse(j, &rules, &spec, &probs) : -EINVAL;
    if (rc < 0) {
        snprintf(msg, sizeof(msg), "ERR spec invalid on the leader: %s%s%s",
                 probs.n ? probs.v[0].where : "", probs.n ? ": " : "not JSON",
                 probs.n ? probs.v[0].message : "");
        dpr_resp_error(out, msg);
        goto out;
    }
    canon = agent_spec_to_json(&spec);
    agent_spec_free(&spec);
    /* the newest record: proposed by this leader (not committed yet), else
     * the committed one */
    old = a->spec_proposed && (uint64_t)json_integer_value(json_object_get(
                                  a->spec_proposed, "generation")) >
                                  agent_raft_cstate(a->raft)->spec_generation
              ? json_incref(a->spec_proposed)
              : record(a);
    placement = canon ? place(canon, json_object_get(old, "placement"), node) : NULL;
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
    rc = agent_cstate_spec_payload(gen, canon, placement, &payload);
    if (rc == 0)
        rc = agent_raft_apply(a->raft, AGENT_CSTATE_ENTRY_SPEC, payload.data, payload.len,
                              on_record, a);
    if (rc < 0) {
        snprintf(msg, sizeof(msg), "%s the spec record cannot be proposed: %s",
                 rc == -ENOTCONN ? "TRYAGAIN" : "ERR", strerror(-rc));
        dpr_resp_error(out, msg);
        goto out;
    }
    json_decref(a->spec_proposed);
    a->spec_proposed = json_pack("{s:I, s:O, s:O}", "generation", (json_int_t)gen, "spec",
                                 canon, "placement", placement);
    log_info("cluster: spec generation %" PRIu64 " from node %s", gen, node);
    /* held by the finder server until its next barrier: after this entry */
    snprintf(msg, sizeof(msg), "OK %" PRIu64, gen);
    dpr_resp_status(out, msg);
out:
    agent_problems_free(&probs);
    dpr_buf_free(&payload);
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
                json_object_set(res, "placement", json_object_get(rec, "placement"));
            }
        }
        agent_pending_reply(w->pending, r);
        waiter_free(w);
    }
    json_decref(oom);
}

/* A fresh cluster led by a node that ran deployments alone: its spec
 * becomes the record, every deployment placed on it. */
static void import_local(agent *a)
{
    json_t *spec = agent_spec_to_json(&a->st.spec), *placement = NULL;
    dpr_buf payload = DPR_BUF_INIT;

    placement = spec ? place(spec, NULL, a->cfg->node_name) : NULL;
    if (placement && agent_cstate_spec_payload(1, spec, placement, &payload) == 0 &&
        agent_raft_apply(a->raft, AGENT_CSTATE_ENTRY_SPEC, payload.data, payload.len,
                         on_record, a) == 0) {
        log_notice("cluster: this node's deployments (%zu) become the new cluster's spec, "
                   "placed on it", a->st.spec.n);
        json_decref(a->spec_proposed);
        a->spec_proposed = json_pack("{s:i, s:O, s:O}", "generation", 1, "spec", spec,
                                     "placement", placement);
    }
    dpr_buf_free(&payload);
    json_decref(spec);
    json_decref(placement);
}

void agent_cluster_adopt(agent *a)
{
    const agent_cstate *cs;
    json_t *rec, *part, *reply;
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
    if (a->spec_adopted == 0 && (stray = unknown_local(a, json_object_get(rec, "spec")))) {
        /* never delete what this node ran before it took the cluster's spec */
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
    part = part_of(json_object_get(rec, "spec"), json_object_get(rec, "placement"),
                   a->cfg->node_name);
    reply = part ? agent_apply_json(a, NULL, part, false, "apply") : NULL;
    a->spec_adopted = cs->spec_generation;
    if (reply && json_is_false(json_object_get(reply, "ok")))
        log_error("cluster: this node cannot take its part of spec generation %" PRIu64
                  ": %s", cs->spec_generation,
                  json_string_value(json_object_get(json_object_get(reply, "error"),
                                                    "message")));
    else
        log_info("cluster: took spec generation %" PRIu64, cs->spec_generation);
    agent_cluster_publish(a);
    answer(a, reply, rec);
    json_decref(reply);
    json_decref(part);
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
        /* adopted already (nothing changed, or this node was quick) */
        json_t *rec = record(a), *part = NULL, *reply = NULL;
        if (rec)
            part = part_of(json_object_get(rec, "spec"), json_object_get(rec, "placement"),
                           a->cfg->node_name);
        reply = part ? agent_apply_json(a, NULL, part, true, "plan") : NULL;
        answer(a, reply, rec);
        json_decref(reply);
        json_decref(part);
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
    if (!text || !w || dpr_finders_parse(agent_finder_address(a->finder), &t, NULL) < 0) {
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
        agent_peerreq_send(a->loop, &t, SPEC_FORWARD_MS, 3, argv, on_forwarded, w, &w->req) < 0) {
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
    json_t *rec = record(a), *canon = NULL, *placement = NULL, *part = NULL, *reply = NULL;
    int rc;

    rules_of(a, &rules, impls, 64);
    agent_problems_init(&probs);
    rc = agent_spec_parse(req->spec, &rules, &parsed, &probs);
    if (rc == -EINVAL)
        reply = agent_reply_spec_invalid(req->id, &probs);
    agent_problems_free(&probs);
    if (rc < 0)
        goto out;
    canon = agent_spec_to_json(&parsed);
    agent_spec_free(&parsed);
    placement = canon ? place(canon, json_object_get(rec, "placement"), a->cfg->node_name)
                      : NULL;
    part = placement ? part_of(canon, placement, a->cfg->node_name) : NULL;
    reply = part ? agent_apply_json(a, req->id, part, true, "plan") : NULL;
    if (reply && json_is_object(json_object_get(reply, "result")))
        json_object_set(json_object_get(reply, "result"), "placement", placement);
out:
    json_decref(rec);
    json_decref(canon);
    json_decref(placement);
    json_decref(part);
    return reply;
}

/* This node's instance record: its deployments and their instances (new
 * reference). */
static json_t *own_instances(agent *a)
{
    json_t *deps = json_array();

    for (size_t i = 0; deps && a->st.spec.name && i < a->st.spec.n; i++) {
        json_t *insts = json_array();
        for (size_t k = 0; insts && k < a->st.ninst; k++) {
            const agent_instance *in = &a->st.inst[k];
            char endpoint[320];
            if (strcmp(in->deployment, a->st.spec.d[i].name) != 0)
                continue;
            agent_env_endpoint(in, a->cfg->cs_address, endpoint, sizeof(endpoint));
            json_array_append_new(insts, json_pack("{s:s, s:I, s:I, s:s}", "name", in->name,
                                                   "shard", (json_int_t)in->shard, "worker",
                                                   (json_int_t)in->worker, "endpoint",
                                                   endpoint));
        }
        json_array_append_new(deps, json_pack("{s:s, s:I, s:o*}", "name",
                                              a->st.spec.d[i].name, "shards",
                                              (json_int_t)a->st.spec.d[i].shards, "instances",
                                              insts));
    }
    return deps ? json_pack("{s:s, s:o}", "node", a->cfg->node_name, "deployments", deps)
                : NULL;
}

static void on_published(void *arg, int status, int error, const char *text)
{
    agent *a = arg;

    a->insts_req = NULL;
    if (status < 0 || error)
        log_debug("cluster: publishing this node's instances failed: %s",
                  text ? text : strerror(-status));
}

void agent_cluster_publish(agent *a)
{
    json_t *mine, *theirs = NULL;
    const char *have;
    char *text = NULL;
    bool same;
    dpr_finders t;

    if (!a->raft || a->stopping || a->insts_req || !agent_raft_is_member(a->raft))
        return;
    /* nothing to compare again unless this node's state or the log moved
     * (this runs whenever entries were applied) */
    if (a->insts_checked_gen == a->st.generation + 1 &&
        a->insts_checked_changes == agent_raft_cstate(a->raft)->changes)
        return;
    mine = own_instances(a);
    have = agent_cstate_insts_of(agent_raft_cstate(a->raft), a->cfg->node_name);
    if (have)
        theirs = json_loads(have, 0, NULL);
    same = mine && theirs && json_equal(mine, theirs);
    if (same) {
        a->insts_checked_gen = a->st.generation + 1; /* (+1: generation 0 counts too) */
        a->insts_checked_changes = agent_raft_cstate(a->raft)->changes;
    }
    if (!same && mine && (text = json_dumps(mine, JSON_COMPACT | JSON_SORT_KEYS))) {
        if (agent_raft_role_now(a->raft) == AGENT_RAFT_LEADER) {
            agent_raft_apply(a->raft, AGENT_CSTATE_ENTRY_INSTANCES, text, strlen(text),
                             on_insts, a);
        } else if (dpr_finders_parse(agent_finder_address(a->finder), &t, NULL) == 0) {
            const char *argv[3] = { "DPR.CLUSTER.INSTANCES", a->cfg->node_name, text };
            if (agent_peerreq_send(a->loop, &t, 2000, 3, argv, on_published, a,
                                   &a->insts_req) < 0)
                a->insts_req = NULL;
        }
    }
    free(text);
    json_decref(mine);
    json_decref(theirs);
}

json_t *agent_cluster_remote(agent *a, const char *name)
{
    const agent_cstate *cs;
    json_t *out = json_array(), *rec = NULL;

    if (!a->raft || !out)
        return out;
    cs = agent_raft_cstate(a->raft);
    rec = record(a);
    for (size_t i = 0; i < cs->ninsts; i++) {
        json_t *j, *d;
        size_t k;
        if (strcmp(cs->insts[i].node, a->cfg->node_name) == 0)
            continue;
        j = json_loads(cs->insts[i].json, 0, NULL);
        json_array_foreach(json_object_get(j, "deployments"), k, d) {
            const char *dn = json_string_value(json_object_get(d, "name"));
            const char *at = dn ? json_string_value(json_object_get(
                                      json_object_get(rec, "placement"), dn)) : NULL;
            json_t *inst;
            size_t m;
            /* only what the spec still places there */
            if (!at || strcmp(at, cs->insts[i].node) != 0 || (name && strcmp(name, dn) != 0))
                continue;
            json_array_foreach(json_object_get(d, "instances"), m, inst)
                json_object_set_new(inst, "node", json_string(cs->insts[i].node));
            json_object_set_new(d, "node", json_string(cs->insts[i].node));
            json_object_set_new(d, "remote", json_true());
            json_object_set_new(d, "domain", json_string(dn));
            json_array_append(out, d);
        }
        json_decref(j);
    }
    json_decref(rec);
    return out;
}

json_t *agent_cluster_spec_json(agent *a)
{
    json_t *rec = a->raft ? record(a) : NULL, *out;

    if (!rec)
        return json_null();
    out = json_pack("{s:O, s:O, s:I}", "generation", json_object_get(rec, "generation"),
                    "placement", json_object_get(rec, "placement"), "adopted",
                    (json_int_t)a->spec_adopted);
    json_decref(rec);
    return out ? out : json_null();
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
    agent_peerreq_cancel(a->insts_req);
    a->insts_req = NULL;
}
