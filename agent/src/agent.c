/* agent.c - lifecycle and control operations (see agent.h, agent_int.h). */
#include "agent.h"

#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_int.h"
#include "clusterspec.h"
#include "discovery.h"
#include "peerreq.h"
#include "replica.h"
#include "common/err.h"
#include "common/fs.h"
#include "common/log.h"
#include "envfile.h"
#include "insttls.h"
#include "log_instance.h"
#include "proto.h"
#include "spec.h"
#include "statefile.h"

/* ---- runtime table -------------------------------------------------------- */

inst_rt *agent_rt_find(agent *a, const char *name)
{
    for (size_t i = 0; i < a->nrt; i++)
        if (strcmp(a->rt[i].name, name) == 0)
            return &a->rt[i];
    return NULL;
}

inst_rt *agent_rt_ensure(agent *a, const char *name)
{
    inst_rt *v = agent_rt_find(a, name);

    if (v)
        return v;
    if (a->nrt == a->caprt) {
        size_t cap = a->caprt ? a->caprt * 2 : 16;
        v = realloc(a->rt, cap * sizeof(*v));
        if (!v)
            return NULL;
        a->rt = v;
        a->caprt = cap;
    }
    v = &a->rt[a->nrt++];
    memset(v, 0, sizeof(*v));
    snprintf(v->name, sizeof(v->name), "%s", name);
    return v;
}

/* ---- files ------------------------------------------------------------------- */

int agent_save_state(agent *a, const agent_state *st, dpr_err *err)
{
    dpr_err own = DPR_ERR_INIT;
    int rc;

    if (!err)
        err = &own;
    rc = agent_statefile_save(a->state_path, st, err);
    if (rc < 0)
        log_error("cannot save the state: %s", dpr_err_str(err, rc));
    return rc;
}

const char *agent_instance_tls(const agent *a, const agent_instance *in)
{
    if (!a->tls)
        return NULL;
    return in->tls_clients[0] ? in->tls_clients : "required";
}

/* The instance file has what the process is to run (in->run: a roll-out
 * moves it to the instance's settings, reconcile.c). */
int agent_write_env(agent *a, const agent_instance *desired)
{
    agent_instance view, *in = &view;
    agent_env_ctx ctx = { agent_config_impl_exec(a->cfg, desired->run.impl), a->cfg->cs_address,
                          agent_finder_address(a->finder), a->cfg->cluster,
                          a->cfg->node_name, a->replica ? a->cfg->repl_socket : NULL,
                          agent_replica_root(a), NULL, false };
    inst_rt *rt = agent_rt_find(a, desired->name);
    const char *tls_finder = a->tls ? agent_finder_tls_address(a->finder) : NULL;
    char *text, tls_dir[PATH_MAX];
    int rc;

    agent_instance_running_view(desired, &view);
    if (tls_finder && agent_insttls_dir(a->cfg, tls_dir, sizeof(tls_dir)) == 0) {
        /* TLS only: its port, and the finders' TLS ports */
        ctx.tls_dir = tls_dir;
        ctx.tls_crl = a->cfg->tls_crl && a->cfg->tls_crl[0];
        ctx.finder = tls_finder;
    }

    if (!ctx.exec) {
        if (rt)
            snprintf(rt->last_error, sizeof(rt->last_error), "implementation '%s' is not "
                     "configured on this node (cachestores.impls in %s)", in->impl,
                     a->cfg->path);
        agent_log_instance(DPR_LOG_ERR, in->name, "implementation '%s' is not configured "
                           "(cachestores.impls)", in->impl);
        return -ENOENT;
    }
    text = agent_env_render(in, &ctx);
    if (!text)
        return -ENOMEM;
    rc = agent_env_write(a->cfg->instance_dir, in->name, text);
    free(text);
    if (rc < 0) {
        if (rt)
            snprintf(rt->last_error, sizeof(rt->last_error), "cannot write %s/%s.env: %s",
                     a->cfg->instance_dir, in->name, strerror(-rc));
        agent_log_instance(DPR_LOG_ERR, in->name, "cannot write %s/%s.env: %s",
                           a->cfg->instance_dir, in->name, strerror(-rc));
    } else if (rc == 1) {
        agent_log_instance(DPR_LOG_DEBUG, in->name, "wrote %s/%s.env", a->cfg->instance_dir,
                           in->name);
    }
    return rc;
}

void agent_update_status(agent *a)
{
    char text[512], sick[160] = "", part[200] = "";
    size_t ready = 0, unhealthy = 0, off = 0;
    const char *why;

    agent_cluster_publish(a, true); /* other nodes see this node's instances */

    for (size_t i = 0; i < a->st.ninst; i++) {
        inst_rt *rt = agent_rt_find(a, a->st.inst[i].name);
        ready += rt && agent_rt_ready(rt);
        if (rt && rt->known && rt->health != AGENT_HEALTH_OK && unhealthy++ < 3 &&
            off < sizeof(sick))
            off += (size_t)snprintf(sick + off, sizeof(sick) - off, "%s%s %s",
                                    unhealthy > 1 ? ", " : "", rt->name,
                                    agent_health_name(rt->health));
    }
    if (unhealthy)
        snprintf(part, sizeof(part), ", %zu unhealthy (%s%s)", unhealthy, sick,
                 unhealthy > 3 ? ", ..." : "");
    snprintf(text, sizeof(text), "generation %llu: %zu/%zu instances ready%s; finder %s%s; %s",
             (unsigned long long)a->st.generation, ready, a->st.ninst, part,
             agent_finder_address(a->finder),
             a->finder_lost ? " STATE LOST (see docs/operations.md)" : "",
             agent_units_connected(a->units) ? "systemd connected" : "systemd not reachable");
    if (agent_net_degraded(a, &why)) {
        size_t len = strlen(text);
        snprintf(text + len, sizeof(text) - len, "; node degraded: %s", why);
    }
    if (strcmp(text, a->status_text) == 0)
        return;
    snprintf(a->status_text, sizeof(a->status_text), "%s", text);
    if (a->hooks.status)
        a->hooks.status(a->hooks.arg, text);
}

/* ---- operations ---------------------------------------------------------------- */

static json_t *plan_result(uint64_t generation, const agent_plan *plan)
{
    return json_pack("{s:I, s:o*}", "generation", (json_int_t)generation, "plan",
                     agent_plan_to_json(plan));
}

static void add_warning(agent *a, json_t *result)
{
    char msg[400];
    json_t *w;

    if (agent_units_connected(a->units) || !result)
        return;
    snprintf(msg, sizeof(msg), "systemd is not reachable (%s): the desired state is recorded "
             "and the agent applies it as soon as systemd is", agent_units_error(a->units));
    w = json_pack("[s]", msg);
    if (w)
        json_object_set_new(result, "warnings", w);
}

/* Moves to the state next (already saved) and starts the unit changes. */
static void adopt_plan(agent *a, agent_state *next, const agent_plan *plan)
{
    agent_state_free(&a->st);
    a->st = *next;
    agent_state_init(next);
    for (size_t i = 0; i < a->st.ninst; i++) {
        const agent_instance *in = &a->st.inst[i];
        inst_rt *rt = agent_rt_ensure(a, in->name);
        if (!rt)
            continue;
        if (agent_names_has(&plan->created, in->name) || agent_names_has(&plan->updated,
                                                                          in->name))
            agent_write_env(a, in);
        rt->want_start = true; /* converge: start what does not run */
        rt->retry_later = false;
    }
    for (size_t i = 0; i < plan->resumed.n; i++)
        agent_rollout_retry(a, plan->resumed.v[i]);
    for (size_t i = 0; i < plan->created.n; i++)
        agent_log_instance(DPR_LOG_INFO, plan->created.v[i], "created (generation %llu)",
                           (unsigned long long)a->st.generation);
    for (size_t i = 0; i < plan->updated.n; i++)
        agent_log_instance(DPR_LOG_INFO, plan->updated.v[i], "updated (generation %llu): "
                           "restarted when the roll-out reaches it",
                           (unsigned long long)a->st.generation);
    for (size_t i = 0; i < plan->deleted.n; i++)
        agent_log_instance(DPR_LOG_INFO, plan->deleted.v[i], "deleted (generation %llu): "
                           "stopping", (unsigned long long)a->st.generation);
    agent_check_finder(a);
    agent_reconcile(a);
    agent_update_status(a);
}

/* Logs a change (generation gen, plan) and emits its event. */
static void announce(agent *a, const agent_request *req, const char *event, uint64_t gen,
                     const agent_plan *plan)
{
    json_t *ev = json_pack("{s:I, s:o*}", "generation", (json_int_t)gen, "plan",
                           agent_plan_to_json(plan));

    if (ev && req->name && strcmp(event, "delete") == 0)
        json_object_set_new(ev, "name", json_string(req->name));
    agent_emit(a, event, ev);
    log_info("%s: generation %llu (%zu created, %zu updated, %zu deleted)", event,
             (unsigned long long)gen, plan->created.n, plan->updated.n, plan->deleted.n);
    for (size_t i = 0; i < plan->nresizes; i++)
        log_notice("deployment '%s': resizing from %u to %u shards (layout %llu): about "
                   "%.0f%% of its keys move; it pauses while they do",
                   plan->resizes[i].deployment, plan->resizes[i].from, plan->resizes[i].to,
                   (unsigned long long)plan->resizes[i].epoch,
                   100.0 * agent_resize_fraction(plan->resizes[i].from, plan->resizes[i].to));
}

/* plan, apply, delete: the spec desired (owned by the caller). */
static json_t *change(agent *a, const agent_request *req, const agent_spec *desired,
                      const agent_placement *placement, bool dry, const char *event)
{
    agent_alloc alloc = { a->cfg->port_min, a->cfg->port_max, a->cfg->metrics_port_min,
                          a->cfg->metrics_port_max, placement, a->cfg->node_name };
    agent_state next;
    agent_plan plan;
    agent_problems p;
    json_t *result, *reply;
    dpr_err err = DPR_ERR_INIT;
    char msg[DPR_ERR_MSG_MAX + 32];
    uint64_t before = a->st.generation;
    int rc;

    agent_problems_init(&p);
    if (agent_plan_check(&a->st, desired, &p) > 0) {
        reply = agent_reply_spec_invalid(req->id, &p);
        agent_problems_free(&p);
        return reply;
    }
    agent_problems_free(&p);
    rc = agent_plan_make(&a->st, desired, &alloc, &next, &plan);
    if (rc == -ENOSPC) {
        agent_problems_init(&p);
        char mports[96] = "";
        if (a->cfg->metrics_port_min)
            snprintf(mports, sizeof(mports), "; metrics ports %u..%u (metrics_port_min/max)",
                     a->cfg->metrics_port_min, a->cfg->metrics_port_max);
        agent_problems_add(&p, "cachestores", "not enough free ports: the node hands out "
                           "ports %u..%u (cachestores.port_min/port_max in %s), %zu free%s",
                           a->cfg->port_min, a->cfg->port_max, a->cfg->path,
                           agent_plan_free_ports(&a->st, &alloc), mports);
        reply = agent_reply_spec_invalid(req->id, &p);
        agent_problems_free(&p);
        return reply;
    }
    if (rc < 0)
        return NULL;
    /* a change is one generation; nothing to do keeps the generation */
    assert(next.generation == a->st.generation + (agent_plan_changed(&plan) ? 1 : 0));
    if (dry) {
        result = plan_result(a->st.generation, &plan);
        add_warning(a, result);
        agent_state_free(&next);
        agent_plan_free(&plan);
        return agent_reply_ok(req->id, result);
    }
    rc = agent_save_state(a, &next, &err);
    if (rc < 0) {
        agent_state_free(&next);
        agent_plan_free(&plan);
        snprintf(msg, sizeof(msg), "%s; nothing was changed", dpr_err_str(&err, rc));
        return agent_reply_error(req->id, AGENT_E_INTERNAL, msg, NULL);
    }
    /* the change is said (logged, its event) before the steps it causes
     * (the instances' lines, roll-out and instance events) */
    if (next.generation != before || strcmp(event, "delete") == 0)
        announce(a, req, event, next.generation, &plan);
    adopt_plan(a, &next, &plan);
    result = plan_result(a->st.generation, &plan);
    add_warning(a, result);
    agent_plan_free(&plan);
    return agent_reply_ok(req->id, result);
}

json_t *agent_apply_json(agent *a, json_t *id, const json_t *spec_json,
                         const agent_placement *placement, bool dry, const char *event)
{
    const char *impls[64];
    agent_spec_rules rules = { a->cfg->cluster, impls, 0, a->cfg->checkpoint_interval_ms,
                               a->cfg->max_clients, !a->cfg->tls_enabled };
    agent_request req;
    agent_problems p;
    agent_spec spec;
    json_t *reply;
    int rc;

    memset(&req, 0, sizeof(req));
    req.id = id;
    for (size_t i = 0; i < a->cfg->nimpls && i < 64; i++)
        impls[rules.nimpls++] = a->cfg->impls[i].name;
    agent_problems_init(&p);
    rc = agent_spec_parse(spec_json, &rules, &spec, &p);
    if (rc == -EINVAL) {
        reply = agent_reply_spec_invalid(id, &p);
        agent_problems_free(&p);
        return reply;
    }
    agent_problems_free(&p);
    if (rc < 0)
        return NULL;
    reply = change(a, &req, &spec, placement, dry, event);
    agent_spec_free(&spec);
    return reply;
}

static json_t *op_apply(agent *a, agent_client *c, const agent_request *req, bool dry)
{
    if (a->membership && !dry)
        return agent_cluster_change(a, c, req, req->spec, NULL); /* through the leader */
    if (a->membership)
        return agent_cluster_preview(a, req);
    return agent_apply_json(a, req->id, req->spec, NULL, dry, "apply");
}

static json_t *not_found(const agent_request *req, const char *name)
{
    char msg[200];

    snprintf(msg, sizeof(msg), "no deployment named '%.64s' in this cluster", name);
    return agent_reply_error(req->id, AGENT_E_NOT_FOUND, msg, NULL);
}

static json_t *op_delete(agent *a, agent_client *c, const agent_request *req)
{
    agent_spec spec;
    json_t *reply;
    int i = a->st.spec.name ? agent_spec_find(&a->st.spec, req->name) : -1;

    if (a->membership)
        return agent_cluster_change(a, c, req, NULL, req->name); /* through the leader */
    if (i < 0)
        return not_found(req, req->name);
    if (agent_spec_copy(&a->st.spec, &spec) < 0)
        return NULL;
    memmove(&spec.d[i], &spec.d[i + 1], (spec.n - (size_t)i - 1) * sizeof(*spec.d));
    spec.n--;
    reply = change(a, req, &spec, NULL, false, "delete");
    agent_spec_free(&spec);
    return reply;
}

/* rollout pause|resume|undo: the spec with deployment i changed, applied
 * like `apply` (in a cluster: through the leader, every node takes it). */
static json_t *rollout_change(agent *a, agent_client *c, const agent_request *req,
                              agent_spec *spec, int i)
{
    const agent_rollout_rec *r = agent_state_rollout(&a->st, req->name);
    agent_deploy *d = &spec->d[i];
    json_t *j, *reply;

    if (strcmp(req->action, "undo") == 0) {
        if (!r || !r->has_previous)
            return agent_reply_error(req->id, AGENT_E_NOT_FOUND, "nothing to undo: the "
                                     "settings of this deployment were never changed here",
                                     NULL);
        /* the processes' settings go back; shards, placement and the
         * roll-out settings stay (they are not what was rolled out) */
        memcpy(d->impl, r->previous.impl, sizeof(d->impl));
        memcpy(d->version, r->previous.version, sizeof(d->version));
        d->checkpoint_interval_ms = r->previous.checkpoint_interval_ms;
        d->max_clients = r->previous.max_clients;
        d->maxmemory = r->previous.maxmemory;
        memcpy(d->checkpoint_mode, r->previous.checkpoint_mode, sizeof(d->checkpoint_mode));
        memcpy(d->tls_clients, r->previous.tls_clients, sizeof(d->tls_clients));
        d->rollout.paused = false;
    } else {
        d->rollout.paused = strcmp(req->action, "pause") == 0;
        d->rollout.given = true;
    }
    /* every node that halted lifts its halt when it takes the new count
     * (plan.c); undo's new settings lift it anyway */
    if (strcmp(req->action, "resume") == 0 && d->rollout.resumed < AGENT_ROLLOUT_RESUMED_MAX)
        d->rollout.resumed++;
    log_info("deployment '%s': rollout %s", req->name, req->action);
    j = agent_spec_to_json(spec);
    if (!j)
        return NULL;
    if (a->membership)
        reply = agent_cluster_change(a, c, req, j, NULL); /* through the leader */
    else
        reply = agent_apply_json(a, req->id, j, NULL, false, "apply");
    json_decref(j);
    agent_reconcile(a);
    agent_update_status(a);
    return reply;
}

static json_t *op_rollout(agent *a, agent_client *c, const agent_request *req)
{
    agent_spec spec;
    agent_placement pl;
    json_t *reply, *ro;
    bool cluster = a->raft && agent_cluster_record(a, &spec, &pl) == 0;
    int i;

    if (!cluster && (!a->st.spec.name || agent_spec_copy(&a->st.spec, &spec) < 0))
        return not_found(req, req->name);
    i = agent_spec_find(&spec, req->name);
    if (i < 0) {
        reply = not_found(req, req->name);
    } else if (strcmp(req->action, "status") == 0) {
        ro = agent_rollout_json(a, &spec.d[i]);
        reply = ro ? agent_reply_ok(req->id, json_pack("{s:s, s:o}", "name", req->name,
                                                       "rollout", ro))
                   : NULL;
    } else {
        reply = rollout_change(a, c, req, &spec, i);
    }
    agent_spec_free(&spec);
    if (cluster)
        agent_placement_free(&pl);
    return reply;
}

static json_t *op_node_remove(agent *a, const agent_request *req)
{
    dpr_err err = DPR_ERR_INIT;
    char what[200];
    int rc;

    if (!a->membership)
        return agent_reply_error(req->id, AGENT_E_BAD_REQUEST, "this node is not in a "
                                 "cluster of agents (no raft group in agent.conf): it has no "
                                 "members to remove", NULL);
    rc = agent_membership_remove(a->membership, req->name, what, sizeof(what), &err);
    if (rc == -ENOENT)
        return agent_reply_error(req->id, AGENT_E_NOT_FOUND, err.msg, NULL);
    if (rc == -EBUSY || rc == -ENOTCONN)
        return agent_reply_error(req->id, AGENT_E_UNAVAILABLE, err.msg, NULL);
    if (rc < 0)
        return agent_reply_error(req->id, rc == -ENOMEM ? AGENT_E_INTERNAL : AGENT_E_BAD_REQUEST,
                                 err.msg, NULL);
    return agent_reply_ok(req->id, json_pack("{s:s}", "removing", what));
}

static json_t *handle(void *arg, agent_client *c, const agent_request *req)
{
    agent *a = arg;
    json_t *result;

    log_debug("request %s from %s", agent_op_name(req->op), agent_client_name(c));
    if ((unsigned)req->op < AGENT_OP_COUNT)
        a->control_requests[req->op]++;
    switch (req->op) {
    case AGENT_OP_PLAN:
        return op_apply(a, c, req, true);
    case AGENT_OP_APPLY:
        if (!req->dry_run)
            log_info("apply requested by %s", agent_client_name(c));
        return op_apply(a, c, req, req->dry_run);
    case AGENT_OP_DELETE:
        log_info("delete '%s' requested by %s", req->name, agent_client_name(c));
        return op_delete(a, c, req);
    case AGENT_OP_STATUS:
        if (req->name && (!a->st.spec.name || agent_spec_find(&a->st.spec, req->name) < 0) &&
            !agent_cluster_holds(a, req->name)) /* (another node's?) */
            return not_found(req, req->name);
        result = agent_status_json(a, req->name);
        return result ? agent_reply_ok(req->id, result) : NULL;
    case AGENT_OP_NODES:
        result = agent_nodes_json(a);
        return result ? agent_reply_ok(req->id, result) : NULL;
    case AGENT_OP_NODE_REMOVE:
        log_info("removal of node '%s' requested by %s", req->name, agent_client_name(c));
        return op_node_remove(a, req);
    case AGENT_OP_ROLLOUT:
        if (strcmp(req->action, "status") != 0)
            log_info("rollout %s of '%s' requested by %s", req->action, req->name,
                     agent_client_name(c));
        return op_rollout(a, c, req);
    case AGENT_OP_EVENTS:
        agent_client_make_stream(c);
        return agent_reply_ok(req->id, json_pack("{s:s}", "stream", "events"));
    }
    return NULL;
}

/* ---- start and stop -------------------------------------------------------------- */

static void on_finder_failed(void *arg, int err)
{
    agent *a = arg;
    char why[200];

    snprintf(why, sizeof(why), "the finder cannot save its state (%s): stopping, since "
             "nothing may be told about a cut that is not durable", strerror(-err));
    log_error("%s", why);
    if (a->hooks.fatal)
        a->hooks.fatal(a->hooks.arg, why);
}

/* The loaded instances' metrics ports under this agent.conf's range (set,
 * changed or dropped since they were recorded): durable before any
 * instance file carries them. */
static int load_metrics_ports(agent *a, dpr_err *err)
{
    agent_alloc alloc = { .metrics_port_min = a->cfg->metrics_port_min,
                          .metrics_port_max = a->cfg->metrics_port_max };
    int rc = agent_plan_metrics_ports(&alloc, &a->st);

    if (rc == -ENOSPC)
        return dpr_err_set(err, rc, "cachestores.metrics_port_min..max (%u..%u) in %s has not "
                           "enough free ports for the %zu instances; refusing to start",
                           a->cfg->metrics_port_min, a->cfg->metrics_port_max, a->cfg->path,
                           a->st.ninst);
    if (rc <= 0)
        return rc;
    rc = agent_statefile_save(a->state_path, &a->st, err);
    if (rc < 0) {
        dpr_err_prefix(err, "recording the instances' new metrics ports");
        return rc;
    }
    log_info("the instances' metrics ports follow %s (each serves its own from its next start)",
             a->cfg->path);
    return 0;
}

static int load_state(agent *a, dpr_err *err)
{
    char why[DPR_ERR_MSG_MAX];
    int rc;

    rc = dpr_path_join(a->state_path, sizeof(a->state_path), a->cfg->state_dir,
                       AGENT_STATE_FILE);
    if (rc < 0)
        return dpr_err_set(err, rc, "state directory path too long: %.80s...",
                           a->cfg->state_dir);
    rc = agent_statefile_load(a->state_path, &a->st, err);
    if (rc == -ENOENT) {
        agent_state_init(&a->st);
        log_info("no state in %s: a new agent", a->cfg->state_dir);
        return 0;
    }
    if (rc < 0) {
        /* the advice does not fit in err: it gets a line of its own */
        log_error("%s: starting over would hand out worker ids and ports again and lose "
                  "track of running instances. Repair the file, or move it away to start "
                  "empty (running cache-stores are then orphaned: stop them with systemctl)",
                  a->state_path);
        snprintf(why, sizeof(why), "%s", dpr_err_str(err, rc));
        return dpr_err_set(err, rc, "%s; refusing to start", why);
    }
    if (a->st.spec.name && strcmp(a->st.spec.name, a->cfg->cluster) != 0) {
        dpr_err_set(err, -EINVAL, "%s belongs to cluster '%s' but %s says cluster = \"%s\"; "
                    "refusing to start", a->state_path, a->st.spec.name, a->cfg->path,
                    a->cfg->cluster);
        agent_state_free(&a->st);
        return -EINVAL;
    }
    if (rc == 1) {
        /* instances recorded before finder tokens got new ones: durable
         * before any instance file carries them */
        rc = agent_statefile_save(a->state_path, &a->st, err);
        if (rc < 0) {
            snprintf(why, sizeof(why), "%s", dpr_err_str(err, rc));
            agent_state_free(&a->st);
            return dpr_err_set(err, rc, "cannot record the new finder tokens: %s; refusing to "
                               "start", why);
        }
        log_info("instances recorded without a finder token got one (each is registered "
                 "with it at its next start)");
    }
    rc = load_metrics_ports(a, err);
    if (rc < 0) {
        agent_state_free(&a->st);
        return rc;
    }
    log_info("state loaded: generation %llu, %zu instances, %zu retiring",
             (unsigned long long)a->st.generation, a->st.ninst, a->st.nretiring);
    return 0;
}

static void on_raft_changed(void *arg)
{
    agent *a = arg;

    if (a->stopping)
        return;
    agent_finder_raft_changed(a->finder);
    agent_membership_changed(a->membership);
    agent_note_raft(a);
    if (agent_raft_role_now(a->raft) != AGENT_RAFT_LEADER) {
        json_decref(a->spec_proposed); /* a new leader proposes from the log */
        a->spec_proposed = NULL;
    }
    agent_cluster_adopt(a);
    agent_update_status(a);
}

/* The finder committed, or this node started or stopped serving it. */
static void on_cluster_finder_commit(void *arg)
{
    agent *a = arg;

    agent_on_finder_commit(a);
    agent_cluster_adopt(a); /* a new leader may carry this node's spec over */
}

static void on_raft_applied(void *arg)
{
    agent *a = arg;

    if (a->stopping)
        return;
    agent_cluster_adopt(a);
    agent_cluster_publish(a, false); /* (when the log does not hold what was sent) */
}

static void on_cluster_tick(uv_timer_t *t)
{
    agent *a = t->data;

    if (!a->stopping) {
        agent_cluster_tick(a);
        if (a->start_gated) { /* an instance waits for the finder's hand-over */
            a->start_gated = false;
            agent_reconcile(a);
        }
        /* about once a second: copies are pruned; this node's instance
         * record is sent again if the last sending failed (no leader
         * answered in time: the first finder address it tried was a node
         * that stopped answering) and nothing else asked since */
        if (++a->cluster_ticks % (1000 / CLUSTER_TICK_MS) == 0) {
            agent_replica_tick(a);
            agent_cluster_publish(a, false);
        }
    }
}

static int on_cluster_command(void *arg, int argc, char *const *argv, const size_t *argvlen,
                              dpr_buf *out)
{
    agent *a = arg;
    int rc = agent_cluster_spec_command(a, argc, argv, argvlen, out);

    if (rc == 0 && a->membership)
        rc = agent_membership_command(a->membership, argc, argv, argvlen, out);
    return rc;
}

int agent_peer_targets(agent *a, dpr_finders *t, agent_tls *const **tls)
{
    const char *tls_at = a->tls ? agent_finder_tls_address(a->finder) : NULL;

    *tls = tls_at ? &a->tls : NULL;
    return dpr_finders_parse(tls_at ? tls_at : agent_finder_address(a->finder), t, NULL);
}

/* The finder's TLS port (finder.tls_listen) when TLS is on, else NULL. */
static const agent_finder_tls *finder_tls(const agent *a, agent_finder_tls *t)
{
    const agent_config *c = a->cfg;

    if (!a->tls || !c->finder_tls_listen)
        return NULL;
    *t = (agent_finder_tls){ .listen = c->finder_tls_listen, .cert = c->tls_cert,
                             .key = c->tls_key, .ca = c->tls_ca, .crl = c->tls_crl,
                             .cluster = c->cluster };
    return t;
}

/* A cluster (agent.conf raft group): the Raft member, then a finder that
 * the leader serves. */
static int open_cluster(agent *a, const agent_finder_hooks *hooks, dpr_err *err)
{
    agent_raft_config rc_cfg;
    agent_raft_hooks rh = { .changed = on_raft_changed, .applied = on_raft_applied, .arg = a };
    agent_finder_hooks fh = *hooks;
    agent_finder_tls ft;
    agent_membership_config mc;
    char dir[PATH_MAX];
    int rc;

    rc = dpr_path_join(dir, sizeof(dir), a->cfg->state_dir, "raft");
    if (rc < 0)
        return dpr_err_set(err, rc, "state directory path too long: %.80s...",
                           a->cfg->state_dir);
    memset(&rc_cfg, 0, sizeof(rc_cfg));
    rc_cfg.dir = dir;
    rc_cfg.address = a->cfg->raft_address;
    rc_cfg.peers = a->cfg->raft_peers;
    rc_cfg.npeers = a->cfg->nraft_peers;
    rc_cfg.election_ms = a->cfg->raft_election_ms;
    rc_cfg.heartbeat_ms = a->cfg->raft_heartbeat_ms;
    rc_cfg.join = a->cfg->raft_join;
    rc_cfg.wait_for_peers = a->cfg->discovery && a->cfg->nraft_peers == 0 &&
                            a->cfg->raft_expect > 0;
    rc_cfg.tls = a->tls;
    rc = agent_raft_open(a->loop, &rc_cfg, &rh, &a->raft, err);
    if (rc < 0)
        return rc;
    fh.command = on_cluster_command;
    fh.committed = on_cluster_finder_commit;
    rc = dpr_path_join(dir, sizeof(dir), a->cfg->state_dir, "finder");
    if (rc < 0)
        return dpr_err_set(err, rc, "state directory path too long: %.80s...",
                           a->cfg->state_dir);
    rc = agent_finder_open_cluster(a->loop, a->raft, a->cfg->finder_listen,
                                   a->cfg->node_address, finder_tls(a, &ft), dir, &fh,
                                   &a->finder, err);
    if (rc < 0)
        return rc;
    memset(&mc, 0, sizeof(mc));
    mc.cluster = a->cfg->cluster;
    mc.name = a->cfg->node_name;
    mc.raft_address = a->cfg->raft_address;
    mc.finder_address = agent_finder_listen(a->finder);
    mc.finder_tls_address = agent_finder_tls_address(a->finder);
    mc.tls = &a->tls;
    mc.peers = a->cfg->raft_peers;
    mc.npeers = a->cfg->nraft_peers;
    mc.join = a->cfg->raft_join;
    rc = agent_membership_start(a->loop, a->raft, &mc, &a->membership);
    if (rc < 0)
        return dpr_err_set(err, rc, "out of memory");
    rc = agent_replica_start(a, err);
    if (rc < 0)
        return rc;
    uv_timer_start(&a->cluster_timer, on_cluster_tick, CLUSTER_TICK_MS, CLUSTER_TICK_MS);
    return 0;
}

/* The hosted finder, told which domain (deployment) each of the agent's
 * workers belongs to, for the upgrade from a finder without domains. */
static int open_finder(agent *a, const char *dir, const agent_finder_hooks *fh, dpr_err *err)
{
    size_t n = a->st.ninst + a->st.nretiring;
    agent_finder_member *m;
    agent_finder_tls ft;
    int rc;

    if (a->cfg->raft_address)
        return open_cluster(a, fh, err);
    m = calloc(n ? n : 1, sizeof(*m));
    if (!m)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < a->st.ninst; i++)
        m[i] = (agent_finder_member){ a->st.inst[i].worker, a->st.inst[i].deployment };
    for (size_t i = 0; i < a->st.nretiring; i++)
        m[a->st.ninst + i] = (agent_finder_member){ a->st.retiring[i].worker,
                                                    a->st.retiring[i].deployment };
    rc = agent_finder_open(a->loop, dir, a->cfg->finder_listen, a->cfg->node_address,
                           finder_tls(a, &ft), m, n, fh, &a->finder, err);
    free(m);
    return rc;
}

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_publish_tick(uv_timer_t *t)
{
    agent_publish_update(t->data);
    agent_publish_peers(t->data);
}

static void on_discovery_state(void *arg)
{
    agent_update_status(arg);
}

static void on_discovery_peers(void *arg)
{
    agent_publish_peers(arg);
}

/* DNS-SD (agent.conf discovery.enabled): publishing, and in a cluster
 * browsing for its agents. */
static int start_discovery(agent *a, dpr_err *err)
{
    agent_discovery_config dc = { .cluster = a->cfg->cluster,
                                  .browse_agents = a->raft != NULL };
    agent_discovery_hooks dh = { .state = on_discovery_state, .peers = on_discovery_peers,
                                 .arg = a };

    if (!a->cfg->discovery) {
        log_info("discovery: off (agent.conf discovery.enabled = false)");
        return 0;
    }
    if (agent_discovery_start(a->loop, &dc, &dh, &a->discovery) < 0)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    agent_publish_update(a);
    uv_timer_start(&a->publish_timer, on_publish_tick, PUBLISH_TICK_MS, PUBLISH_TICK_MS);
    return 0;
}

int agent_start(uv_loop_t *loop, agent_config *cfg, const agent_hooks *hooks,
                agent **out, dpr_err *err)
{
    agent *a = calloc(1, sizeof(*a));
    agent_finder_hooks fh = { .arg = NULL };
    agent_units_hooks uh;
    agent_control_config cc;
    char dir[PATH_MAX];
    struct group *gr;
    int rc;

    *out = NULL;
    if (!a)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    a->loop = loop;
    a->cfg = cfg;
    a->lock_fd = -1;
    if (hooks)
        a->hooks = *hooks;
    agent_state_init(&a->st);
    /* 0711 like the unit's StateDirectoryMode: not listable by others */
    rc = dpr_mkdir_p(cfg->state_dir, 0711, NULL);
    if (rc < 0) {
        dpr_err_set(err, rc, "cannot create the state directory %s: %s", cfg->state_dir,
                    strerror(-rc));
        goto fail;
    }
    rc = agent_statefile_lock(cfg->state_dir, &a->lock_fd, err);
    if (rc < 0)
        goto fail;
    rc = load_state(a, err);
    if (rc < 0)
        goto fail;
    if (cfg->tls_enabled) {
        rc = agent_tls_load(cfg, &a->tls, err);
        if (rc < 0) {
            dpr_err_prefix(err, "tls");
            goto fail;
        }
        log_info("TLS on the links between agents: %s", a->tls->describe);
        /* the instances' copies of the node's files, before any instance
         * file names them */
        rc = agent_insttls_write(cfg, err);
        if (rc < 0) {
            dpr_err_prefix(err, "tls: the cache-stores' copies");
            goto fail;
        }
    }

    uv_timer_init(loop, &a->finder_timer);
    uv_timer_init(loop, &a->retry_timer);
    uv_timer_init(loop, &a->rollout_timer);
    a->rollout_timer.data = a;
    uv_timer_init(loop, &a->cluster_timer);
    uv_timer_init(loop, &a->publish_timer);
    a->finder_timer.data = a->retry_timer.data = a->cluster_timer.data = a;
    a->publish_timer.data = a;
    a->timers_open = true;
    *out = a; /* from here on handles exist on the loop */
    rc = agent_net_start(a, err); /* (node.address may name an interface) */
    if (rc < 0)
        goto fail_started;

    fh.committed = agent_on_finder_commit;
    fh.failed = on_finder_failed;
    fh.arg = a;
    rc = dpr_path_join(dir, sizeof(dir), cfg->state_dir, "finder");
    if (rc < 0) {
        dpr_err_set(err, rc, "state directory path too long: %.80s...", cfg->state_dir);
        goto fail_started;
    }
    rc = open_finder(a, dir, &fh, err);
    if (rc < 0)
        goto fail_started;
    agent_note_finder(a);
    agent_check_finder(a); /* a finder that lost its state is loud from the start */
    rc = agent_layouts_start(a, &a->layouts);
    if (rc < 0) {
        dpr_err_set(err, rc, "out of memory");
        goto fail_started;
    }

    for (size_t i = 0; i < a->st.ninst; i++) {
        inst_rt *rt = agent_rt_ensure(a, a->st.inst[i].name);
        if (!rt) {
            rc = dpr_err_set(err, -ENOMEM, "out of memory");
            goto fail_started;
        }
        rt->want_start = true;
        agent_write_env(a, &a->st.inst[i]);
    }

    memset(&cc, 0, sizeof(cc));
    cc.path = cfg->control_socket;
    cc.max_clients = cfg->control_max_connections;
    cc.max_per_user = cfg->control_max_per_user;
    cc.root_reserved = cfg->control_root_reserved;
    cc.idle_timeout_ms = cfg->control_idle_timeout_ms;
    cc.max_input_bytes = cfg->control_max_input_bytes;
    cc.listen = cfg->control_listen;
    cc.remote_full = cfg->control_remote_full;
    gr = getgrnam(cfg->control_group);
    if (gr) {
        cc.have_group = true;
        cc.group = gr->gr_gid;
    } else {
        log_warning("control group '%s' does not exist: only root may use the control socket",
                    cfg->control_group);
    }
    rc = agent_control_open(loop, &cc, handle, a, &a->ctl, err);
    if (rc < 0)
        goto fail_started;

    memset(&uh, 0, sizeof(uh));
    uh.connected = agent_on_units_connected;
    uh.props = agent_on_unit_props;
    uh.done = agent_on_unit_done;
    uh.arg = a;
    rc = agent_units_new(loop, &uh, &a->units);
    if (rc < 0) {
        dpr_err_set(err, rc, "out of memory");
        goto fail_started;
    }
    agent_retire_in_finder(a);
    rc = start_discovery(a, err);
    if (rc < 0)
        goto fail_started;
    rc = agent_metrics_start(a, err);
    if (rc < 0)
        goto fail_started;
    log_info("serving the control API on %s (cluster '%s', node '%s')", cfg->control_socket,
             cfg->cluster, cfg->node_name);
    agent_update_status(a);
    return 0;
fail_started:
    agent_stop(a);
    return rc;
fail:
    if (a->lock_fd >= 0)
        close(a->lock_fd);
    agent_tls_free(a->tls);
    agent_state_free(&a->st);
    free(a);
    return rc;
}

/* The copies of the TLS files are new: every running instance is reloaded
 * (its unit's ExecReload=, SIGHUP: dpr-kv reads them for new connections). */
static void reload_instances(agent *a)
{
    size_t n = 0;

    for (size_t i = 0; i < a->st.ninst; i++) {
        inst_rt *rt = agent_rt_find(a, a->st.inst[i].name);
        if (rt && agent_units_connected(a->units)) {
            rt->want_reload = true;
            n++;
        }
    }
    log_info("SIGHUP: the cache-stores' copies of the TLS files replaced; reloading %zu "
             "instance%s for their new connections", n, n == 1 ? "" : "s");
    agent_reconcile(a);
}

void agent_reload_tls(agent *a)
{
    dpr_err err = DPR_ERR_INIT;
    agent_tls *tls;
    int rc;

    if (!a->tls) {
        log_info("SIGHUP: TLS is off (tls.enabled), nothing to reload; the configuration is "
                 "read at start only (systemctl restart dpr-agent applies changes)");
        return;
    }
    rc = agent_tls_load(a->cfg, &tls, &err);
    if (rc < 0) {
        log_error("SIGHUP: TLS certificates not reloaded, new connections keep the old ones: "
                  "%s", dpr_err_str(&err, rc));
        return;
    }
    if (a->raft)
        agent_raft_set_tls(a->raft, tls);
    agent_replica_set_tls(a, tls);
    agent_finder_reload_tls(a->finder); /* the finder's TLS port */
    rc = agent_insttls_write(a->cfg, &err);
    if (rc < 0)
        log_error("SIGHUP: the cache-stores' copies of the TLS files were not replaced: %s",
                  dpr_err_str(&err, rc));
    else
        reload_instances(a);
    agent_tls_free(a->tls); /* open connections keep their references */
    a->tls = tls;
    log_info("SIGHUP: TLS certificates reloaded for new connections: %s", tls->describe);
}

void agent_stop(agent *a)
{
    if (!a || a->stopping)
        return;
    a->stopping = true;
    agent_control_close(a->ctl);
    a->ctl = NULL;
    agent_metrics_stop(a);
    agent_units_close(a->units);
    a->units = NULL;
    agent_replica_stop(a);
    agent_cluster_stop(a);
    agent_peerreq_cancel(a->retire_req);
    a->retire_req = NULL;
    agent_finder_stop(a->finder);
    agent_membership_stop(a->membership); /* frees itself once its requests ended */
    a->membership = NULL;
    agent_raft_close(a->raft); /* frees itself once closed */
    a->raft = NULL;
    agent_layouts_stop(a->layouts);
    agent_discovery_stop(a->discovery); /* withdraws every record */
    a->discovery = NULL;
    agent_net_stop(a);
    if (a->timers_open) {
        a->timers_open = false;
        uv_close((uv_handle_t *)&a->finder_timer, on_timer_closed);
        uv_close((uv_handle_t *)&a->retry_timer, on_timer_closed);
        uv_close((uv_handle_t *)&a->rollout_timer, on_timer_closed);
        uv_close((uv_handle_t *)&a->cluster_timer, on_timer_closed);
        uv_close((uv_handle_t *)&a->publish_timer, on_timer_closed);
    }
}

void agent_free(agent *a)
{
    if (!a)
        return;
    agent_finder_free(a->finder);
    agent_layouts_free(a->layouts);
    if (a->lock_fd >= 0)
        close(a->lock_fd);
    agent_tls_free(a->tls);
    agent_state_free(&a->st);
    free(a->rt);
    free(a->doms);
    free(a->members);
    free(a->ro_phase);
    free(a);
}
