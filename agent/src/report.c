/* report.c - what the agent tells: status, nodes, the event stream, finder
 * events (docs/control-api.md). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent_int.h"
#include "clusterspec.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/msgid.h"
#include "envfile.h"
#include "log_instance.h"
#include "replica.h"

#define FINDER_EVENT_MIN_MS 1000

bool agent_rt_ready(const inst_rt *rt)
{
    /* Type=notify: active only after READY=1 (recovery done) */
    return rt->known && strcmp(rt->props.active_state, "active") == 0 &&
           strcmp(rt->props.sub_state, "running") == 0;
}

static json_t *str_or_null(const char *s, bool known)
{
    return known && s[0] ? json_string(s) : json_null();
}

/* Durable (newest reported) version per worker, from a domain's working state. */
static uint64_t durable_of(const dpr_finder_state *fs, uint64_t worker, bool *found)
{
    size_t lo = 0, hi = fs->nworkers;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (fs->workers[mid].worker == worker) {
            *found = true;
            return fs->workers[mid].durable;
        }
        if (fs->workers[mid].worker < worker)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return 0;
}

dpr_finder *agent_domain(agent *a, const char *deployment)
{
    return a->finder ? agent_finder_domain(a->finder, deployment) : NULL;
}

/* What the finder says of worker (f: the core of its domain, fs its
 * working state, have_fs: known): its durable version, world-line and cut
 * entry (null while it is not registered). */
static void finder_fields(json_t *o, dpr_finder *f, const dpr_finder_state *fs, bool have_fs,
                          uint64_t worker)
{
    bool registered = false;
    uint64_t durable = have_fs ? durable_of(fs, worker, &registered) : 0;

    json_object_set_new(o, "durable_version", registered ? json_integer((json_int_t)durable)
                                                 : json_null());
    json_object_set_new(o, "world_line", registered
                        ? json_integer((json_int_t)dpr_finder_world_line(f)) : json_null());
    json_object_set_new(o, "cut", registered
                        ? json_integer((json_int_t)dpr_finder_cut_of(f, worker))
                        : json_null());
}

/* f: the core of in's domain, fs its working state (have_fs: known). */
static json_t *instance_json(agent *a, const agent_instance *in, dpr_finder *f,
                             const dpr_finder_state *fs, bool have_fs)
{
    inst_rt *rt = agent_rt_find(a, in->name);
    char unit[128], endpoint[320];
    bool known = rt && rt->known;
    json_t *o;

    snprintf(unit, sizeof(unit), AGENT_UNIT_PREFIX "%s" AGENT_UNIT_SUFFIX, in->name);
    agent_env_endpoint(in, agent_config_cs_host(a->cfg), endpoint, sizeof(endpoint));
    o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:o, s:o, s:b, s:o, s:o}",
                  "name", in->name, "unit", unit, "node", a->cfg->node_name,
                  "worker", (json_int_t)in->worker, "shard", (json_int_t)in->shard,
                  "endpoint", endpoint,
                  "active_state", str_or_null(rt ? rt->props.active_state : "", known),
                  "sub_state", str_or_null(rt ? rt->props.sub_state : "", known),
                  "ready", rt && agent_rt_ready(rt),
                  "restarts", known && (rt->props.have & AGENT_UP_RESTARTS)
                                  ? json_integer(rt->props.n_restarts) : json_null(),
                  "main_pid", known && (rt->props.have & AGENT_UP_PID) && rt->props.main_pid
                                  ? json_integer(rt->props.main_pid) : json_null());
    if (!o)
        return NULL;
    /* its Prometheus endpoint (cachestores.metrics_port_min/max), or null */
    json_object_set_new(o, "metrics_endpoint",
                        agent_env_metrics_endpoint(in, agent_config_cs_host(a->cfg), endpoint,
                                                   sizeof(endpoint))
                            ? json_string(endpoint) : json_null());
    /* TLS: how its port asks clients for certificates; null: plain */
    json_object_set_new(o, "tls", agent_instance_tls(a, in)
                                      ? json_string(agent_instance_tls(a, in)) : json_null());
    finder_fields(o, f, fs, have_fs, in->worker);
    json_object_set_new(o, "health", known ? json_string(agent_health_name(rt->health))
                                           : json_null());
    json_object_set_new(o, "status_text", str_or_null(rt ? rt->props.status_text : "", known));
    json_object_set_new(o, "memory_max", known && (rt->props.have & AGENT_UP_MEMORY_MAX) &&
                                                 rt->props.memory_max != AGENT_MEMORY_MAX_NONE
                                             ? json_integer((json_int_t)rt->props.memory_max)
                                             : json_null());
    if (a->replica) {
        /* its checkpoints' copies on other nodes */
        json_t *r = agent_replica_instance_json(a, in);
        json_object_update(o, r);
        json_decref(r);
    }
    /* the generation of its settings, and the one its process runs (a
     * roll-out moves it up) */
    json_object_set_new(o, "generation", json_integer((json_int_t)in->generation));
    json_object_set_new(o, "running_generation", json_integer((json_int_t)in->run.generation));
    json_object_set_new(o, "running_version", json_string(in->run.version));
    json_object_set_new(o, "outdated", json_boolean(agent_instance_outdated(in) ||
                                                    (rt && rt->restart_pending)));
    if (rt && rt->last_error[0])
        json_object_set_new(o, "last_error", json_string(rt->last_error));
    else if (!agent_units_connected(a->units))
        json_object_set_new(o, "last_error", json_string(agent_units_error(a->units)));
    else
        json_object_set_new(o, "last_error", json_null());
    return o;
}

/* How many nodes run d's instances. */
static size_t nodes_of(const agent_placed_dep *d)
{
    size_t n = 0;

    for (uint32_t s = 0; s < d->shards; s++) {
        bool seen = false;
        for (uint32_t k = 0; k < s && !seen; k++)
            seen = strcmp(d->slot[k].node, d->slot[s].node) == 0;
        n += !seen;
    }
    return n;
}

/* This node's instance of shard s of deployment (with worker, unless 0),
 * or NULL. */
static const agent_instance *local_shard(agent *a, const char *deployment, uint32_t s,
                                         uint64_t worker)
{
    for (size_t i = 0; i < a->st.ninst; i++) {
        const agent_instance *in = &a->st.inst[i];
        if (in->shard == s && strcmp(in->deployment, deployment) == 0 &&
            (!worker || in->worker == worker))
            return in;
    }
    return NULL;
}

json_t *agent_rollout_json(agent *a, const agent_deploy *dep)
{
    const agent_rollout_rec *r = agent_state_rollout(&a->st, dep->name);
    agent_ro_step s;
    int rc = agent_rollout_now(a, dep, &s);
    json_t *o;

    if (rc == -ENOENT) {
        /* no instance of it on this node: nothing rolls here */
        memset(&s, 0, sizeof(s));
        s.phase = r && r->halted[0] ? AGENT_RO_HALTED : AGENT_RO_DONE;
    } else if (rc < 0) {
        return NULL;
    }
    o = json_pack("{s:s, s:I, s:I, s:I, s:b, s:s?, s:b, s:o}", "phase",
                  agent_ro_phase_name(s.phase), "updated", (json_int_t)s.updated, "targets",
                  (json_int_t)s.targets, "unavailable", (json_int_t)s.unavailable, "paused",
                  dep->rollout.paused, "halted", r && r->halted[0] ? r->halted : NULL,
                  "can_undo", r && r->has_previous, "settings",
                  agent_rollout_spec_to_json(&dep->rollout));
    if (o && !json_object_get(o, "halted"))
        json_object_set_new(o, "halted", json_null());
    return o;
}

/* The deployment with its domain's world-line and cut (its instances'
 * entries in shard order, null for one not registered) and its instances:
 * those of this node, and in a cluster (pl not NULL) those other nodes
 * published. */
static json_t *deployment_json(agent *a, const agent_deploy *d, const agent_placement *pl)
{
    const agent_placed_dep *placed = pl ? agent_placement_find(pl, d->name) : NULL;
    json_t *o = agent_deploy_to_json(d), *insts = json_array(), *cut = json_array(), *layout;
    dpr_finder *f = agent_domain(a, d->name);
    dpr_finder_state fs = { .workers = NULL };
    bool have_fs = f && dpr_finder_get_state(f, &fs) == 0;
    size_t ready = 0, ndown = 0;
    char waiting[160] = "", why[320];

    if (!o || !insts || !cut)
        goto fail;
    /* TLS as it is (the agents' tls.enabled): the spec's, or required */
    if (a->tls && !d->tls_clients[0] &&
        json_object_set_new(o, "tls", json_pack("{s:s}", "clients", "required")) < 0)
        goto fail;
    for (uint32_t s = 0; s < d->shards; s++) {
        const agent_slot *slot = placed && s < placed->shards ? &placed->slot[s] : NULL;
        const agent_instance *in = NULL;
        json_t *ij;
        if (!slot || strcmp(slot->node, a->cfg->node_name) == 0)
            in = local_shard(a, d->name, s, slot ? slot->worker : 0);
        if (in) {
            ij = instance_json(a, in, f, &fs, have_fs);
        } else if (slot) {
            ij = agent_cluster_published(a, d->name, s, slot);
            if (ij) {
                char unit[128];
                json_object_del(ij, "units"); /* (the layout driver's business) */
                snprintf(unit, sizeof(unit), AGENT_UNIT_PREFIX "%s" AGENT_UNIT_SUFFIX,
                         json_string_value(json_object_get(ij, "name")));
                json_object_set_new(ij, "unit", json_string(unit));
                finder_fields(ij, f, &fs, have_fs, slot->worker);
            }
            if (ij && agent_placement_is_down(pl, slot->node)) {
                /* what its node published last is not to be believed */
                json_object_set_new(ij, "ready", json_false());
                json_object_set_new(ij, "health", json_string("node-down"));
                json_object_set_new(ij, "node_down", json_true());
                ndown++;
                if (!waiting[0])
                    snprintf(waiting, sizeof(waiting), "%s (on %s)",
                             json_string_value(json_object_get(ij, "name")), slot->node);
            }
        } else {
            continue; /* not made yet (a resize) */
        }
        if (!ij)
            goto fail;
        ready += json_is_true(json_object_get(ij, "ready"));
        if (json_array_append(cut, json_object_get(ij, "cut")) < 0 ||
            json_array_append_new(insts, ij) < 0)
            goto fail;
    }
    json_object_set_new(o, "ready", json_integer((json_int_t)ready));
    json_object_set_new(o, "domain", json_string(d->name));
    json_object_set_new(o, "world_line", f ? json_integer((json_int_t)dpr_finder_world_line(f))
                                           : json_null());
    json_object_set_new(o, "max_version",
                        f ? json_integer((json_int_t)dpr_finder_max_version(f)) : json_null());
    json_object_set_new(o, "cut", cut);
    /* the layout as the node that drives it knows it */
    layout = !pl || agent_cluster_drives(a, d->name) ? agent_layouts_status(a->layouts, d->name)
                                                   : agent_cluster_layout(a, d->name, pl);
    json_object_set_new(o, "layout", layout ? layout : json_null());
    if (placed)
        json_object_set_new(o, "nodes", json_integer((json_int_t)nodes_of(placed)));
    /* instances on a node that is down: none of its checkpoints is on
     * another node, so it waits for its node (it never starts empty) */
    if (ndown)
        snprintf(why, sizeof(why), "%zu instance%s on a node that is down, waiting for it: "
                 "%s%s", ndown, ndown == 1 ? "" : "s", waiting, ndown > 1 ? ", ..." : "");
    json_object_set_new(o, "degraded", ndown ? json_string(why) : json_null());
    json_object_set_new(o, "instances", insts);
    json_object_set_new(o, "rollout", agent_rollout_json(a, d));
    if (pl) /* every node rolls its own instances */
        agent_cluster_rollout_merge(a, d->name, json_object_get(o, "rollout"));
    if (have_fs)
        dpr_finder_state_free(&fs);
    return o;
fail:
    if (have_fs)
        dpr_finder_state_free(&fs);
    json_decref(o);
    json_decref(insts);
    json_decref(cut);
    return NULL;
}

/* The finder's domains: name, world-line, max version, workers. */
static json_t *domains_json(agent *a)
{
    dpr_domains *ds = agent_finder_domains(a->finder);
    json_t *l = json_array();

    for (size_t i = 0; l && i < dpr_domains_count(ds); i++) {
        dpr_finder *f = dpr_domains_at(ds, i);
        if (json_array_append_new(l, json_pack("{s:s, s:I, s:I, s:I}", "name",
                                               dpr_domains_name(ds, i), "world_line",
                                               (json_int_t)dpr_finder_world_line(f),
                                               "max_version",
                                               (json_int_t)dpr_finder_max_version(f), "workers",
                                               (json_int_t)dpr_finder_worker_count(f))) < 0) {
            json_decref(l);
            return NULL;
        }
    }
    return l;
}

/* The instances whose workers the finder lost (sorted by name). */
static json_t *lost_json(agent *a)
{
    json_t *l = json_array();

    for (size_t i = 0; l && a->finder_lost && i < a->st.ninst; i++)
        if (agent_worker_lost(a, &a->st.inst[i]) &&
            json_array_append_new(l, json_string(a->st.inst[i].name)) < 0) {
            json_decref(l);
            return NULL;
        }
    return l;
}

static void finder_error(agent *a, char *out, size_t outlen)
{
    snprintf(out, outlen, "the finder does not know %zu worker%s whose versions it had "
             "committed (%s%s): its state was lost or replaced; their commits stopped and "
             "their rolling restarts wait (docs/operations.md, \"The finder's state was lost\")",
             a->finder_lost, a->finder_lost == 1 ? "" : "s", a->finder_lost_first,
             a->finder_lost > 1 ? ", ..." : "");
}

static json_t *finder_error_json(agent *a)
{
    char msg[512];

    if (!a->finder_lost)
        return json_null();
    finder_error(a, msg, sizeof(msg));
    return json_string(msg);
}

/* The Raft member's view: role, term, leader. */
static json_t *raft_json(agent *a)
{
    const char *leader_addr = NULL;
    uint64_t leader;

    if (!a->raft)
        return json_null();
    leader = agent_raft_leader(a->raft, &leader_addr);
    return json_pack("{s:s, s:s, s:I, s:s?, s:b}", "address", a->cfg->raft_address, "role",
                     agent_raft_role_name(agent_raft_role_now(a->raft)), "term",
                     (json_int_t)agent_raft_term(a->raft), "leader", leader ? leader_addr : NULL,
                     "quorum", leader != 0);
}

json_t *agent_status_json(agent *a, const char *deployment)
{
    json_t *deps = json_array(), *o, *retiring = json_array();
    agent_spec cspec;
    agent_placement pl;
    bool cluster = a->raft && agent_cluster_record(a, &cspec, &pl) == 0;

    /* in a cluster: every deployment of the cluster's spec, wherever its
     * instances run */
    for (size_t i = 0; deps && cluster && i < cspec.n; i++) {
        if (deployment && strcmp(deployment, cspec.d[i].name) != 0)
            continue;
        if (json_array_append_new(deps, deployment_json(a, &cspec.d[i], &pl)) < 0) {
            json_decref(deps);
            deps = NULL;
        }
    }
    /* this node's (in a cluster: those the cluster's spec does not hold) */
    for (size_t i = 0; deps && a->st.spec.name && i < a->st.spec.n; i++) {
        if ((deployment && strcmp(deployment, a->st.spec.d[i].name) != 0) ||
            (cluster && agent_spec_find(&cspec, a->st.spec.d[i].name) >= 0))
            continue;
        if (json_array_append_new(deps, deployment_json(a, &a->st.spec.d[i], NULL)) < 0) {
            json_decref(deps);
            deps = NULL;
        }
    }
    if (cluster) {
        agent_spec_free(&cspec);
        agent_placement_free(&pl);
    }
    for (size_t i = 0; retiring && i < a->st.nretiring; i++)
        json_array_append_new(retiring, json_string(a->st.retiring[i].name));
    o = json_pack("{s:s, s:s, s:I, s:{s:s, s:b, s:o*, s:s, s:o*, s:o}, s:o*, s:o*, s:{s:b, "
                  "s:o}, s:o*}",
                  "cluster", a->cfg->cluster, "node", a->cfg->node_name,
                  "generation", (json_int_t)a->st.generation,
                  "finder", "address", agent_finder_address(a->finder),
                  "served_here", agent_finder_serving(a->finder),
                  "domains", domains_json(a),
                  "state", a->finder_lost ? "lost" : "ok", "lost", lost_json(a),
                  "error", finder_error_json(a),
                  "deployments", deps, "retiring", retiring,
                  "systemd", "connected", agent_units_connected(a->units),
                  "error", agent_units_connected(a->units) ? json_null()
                                                            : json_string(agent_units_error(
                                                                  a->units)),
                  "raft", raft_json(a));
    if (o) {
        /* the finders' TLS ports (finder.tls_listen), null without TLS */
        const char *tls = agent_finder_tls_address(a->finder);
        json_object_set_new(json_object_get(o, "finder"), "tls_address",
                            tls ? json_string(tls) : json_null());
    }
    if (o)
        json_object_set_new(o, "discovery", agent_discovery_json(a));
    if (o)
        json_object_set_new(o, "network", agent_net_json(a));
    if (o && a->raft)
        json_object_set_new(o, "cluster_spec", agent_cluster_spec_json(a));
    return o;
}

/* What the node knows of a member's health: its last contact (ms, -1
 * unknown) against the election timeout. */
static const char *health_of(agent *a, int64_t ms)
{
    if (ms < 0)
        return "unknown";
    return ms <= 2 * (int64_t)a->cfg->raft_election_ms ? "ok" : "unreachable";
}

json_t *agent_nodes_json(agent *a)
{
    agent_raft_member m[64];
    json_t *l;
    size_t n;

    if (!a->raft)
        return json_pack("{s:[{s:s, s:s, s:b, s:b, s:s, s:s}]}", "nodes", "name",
                         a->cfg->node_name, "address", a->cfg->node_address, "self", 1,
                         "leader", 1, "state", "up", "role", "single");
    n = agent_raft_members(a->raft, m, sizeof(m) / sizeof(m[0]));
    l = json_array();
    for (size_t i = 0; l && i < n && i < sizeof(m) / sizeof(m[0]); i++) {
        bool self = m[i].id == agent_raft_id(a->raft);
        const char *name = a->membership ? agent_membership_name_of(a->membership, m[i].id)
                                         : NULL;
        char id[17];
        snprintf(id, sizeof(id), "%016llx", (unsigned long long)m[i].id);
        /* a member the node table does not hold yet is named by its address */
        if (json_array_append_new(l, json_pack("{s:s, s:s, s:s, s:b, s:b, s:s, s:s, s:I, s:o, "
                                               "s:s}",
                                               "name", self ? a->cfg->node_name :
                                                       name ? name : m[i].address,
                                               "address", m[i].address, "raft_id", id,
                                               "self", self, "leader", m[i].leader, "state",
                                               m[i].leader ? "leader" :
                                               self ? agent_raft_role_name(
                                                          agent_raft_role_now(a->raft)) :
                                                      "member",
                                               "role", m[i].role, "term",
                                               (json_int_t)agent_raft_term(a->raft),
                                               "last_contact_ms",
                                               m[i].last_contact_ms < 0 ? json_null() :
                                               json_integer(m[i].last_contact_ms),
                                               "health", health_of(a, m[i].last_contact_ms))) <
            0) {
            json_decref(l);
            l = NULL;
        }
        if (l && name) {
            /* what placement goes by: its labels, room, instances placed */
            json_t *info = agent_cluster_node_info(a, self ? a->cfg->node_name : name);
            json_object_update(json_array_get(l, json_array_size(l) - 1), info);
            json_decref(info);
        }
    }
    return json_pack("{s:o*, s:o*}", "nodes", l, "raft", raft_json(a));
}

void agent_emit(agent *a, const char *type, json_t *fields)
{
    char stamp[64];
    uint64_t ms = dpr_wall_ms();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    json_t *ev;

    if (!fields)
        return;
    a->event_seq++;
    if (!a->ctl || agent_control_stream_count(a->ctl) == 0) {
        json_decref(fields);
        return;
    }
    gmtime_r(&secs, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + strlen(stamp), sizeof(stamp) - strlen(stamp), ".%03uZ",
             (unsigned)(ms % 1000));
    ev = json_pack("{s:I, s:s, s:s}", "seq", (json_int_t)a->event_seq, "time", stamp, "type",
                   type);
    if (ev && json_object_update(ev, fields) == 0)
        agent_control_publish(a->ctl, ev);
    json_decref(ev);
    json_decref(fields);
}

void agent_emit_instance(agent *a, const inst_rt *rt)
{
    json_t *o = json_pack("{s:s, s:o, s:o, s:b, s:o, s:o, s:o}", "name", rt->name,
                          "active_state", str_or_null(rt->props.active_state, rt->known),
                          "sub_state", str_or_null(rt->props.sub_state, rt->known),
                          "ready", agent_rt_ready(rt),
                          "restarts", rt->known && (rt->props.have & AGENT_UP_RESTARTS)
                                          ? json_integer(rt->props.n_restarts) : json_null(),
                          "main_pid", rt->known && rt->props.main_pid
                                          ? json_integer(rt->props.main_pid) : json_null(),
                          "health", rt->known ? json_string(agent_health_name(rt->health))
                                              : json_null());

    if (o && rt->last_error[0])
        json_object_set_new(o, "last_error", json_string(rt->last_error));
    agent_emit(a, "instance", o);
}

/* A finder event: about domain d (its world-line and max version, now
 * noted as told), or, d NULL, about the finder's state only. */
static void emit_finder(agent *a, finder_dom *d, const dpr_finder *f)
{
    json_t *ev;

    if (d) {
        d->pending = false;
        d->last_event_ms = dpr_mono_ms();
        d->world_line = dpr_finder_world_line(f);
        d->max_version = dpr_finder_max_version(f);
        ev = json_pack("{s:s, s:I, s:I}", "domain", d->name, "world_line",
                       (json_int_t)d->world_line, "max_version", (json_int_t)d->max_version);
    } else {
        ev = json_pack("{s:n, s:n, s:n}", "domain", "world_line", "max_version");
    }
    if (ev) {
        json_object_set_new(ev, "state", json_string(a->finder_lost ? "lost" : "ok"));
        json_object_set_new(ev, "lost", lost_json(a));
    }
    agent_emit(a, "finder", ev);
}

void agent_report_health(agent *a, inst_rt *rt, agent_health before)
{
    const char *text = rt->props.status_text;
    json_t *ev;

    assert(rt->health != before); /* a transition, reported once */
    if (rt->health == AGENT_HEALTH_OK)
        agent_log_instance_id(DPR_LOG_NOTICE, rt->name, DPR_MSGID_INSTANCE_HEALTHY,
                              "ok again (was %s)%s%s", agent_health_name(before),
                              text[0] ? ": " : "", text);
    else if (rt->health == AGENT_HEALTH_FAILED && rt->fail_text[0])
        agent_log_instance_id(DPR_LOG_ERR, rt->name, DPR_MSGID_INSTANCE_FAILED, "%s",
                              rt->fail_text); /* "failed: <its reason>" */
    else if (rt->health == AGENT_HEALTH_FAILED)
        agent_log_instance_id(DPR_LOG_ERR, rt->name, DPR_MSGID_INSTANCE_FAILED, "failed: %s",
                              rt->last_error[0] ? rt->last_error : "the unit failed");
    else
        agent_log_instance_id(DPR_LOG_WARNING, rt->name, DPR_MSGID_INSTANCE_UNHEALTHY,
                              "%s: %s", agent_health_name(rt->health), text);
    ev = json_pack("{s:s, s:s, s:s, s:o}", "name", rt->name, "health",
                   agent_health_name(rt->health), "previous", agent_health_name(before),
                   "status_text", text[0] ? json_string(text) : json_null());
    if (ev && rt->health != AGENT_HEALTH_OK && rt->last_error[0])
        json_object_set_new(ev, "last_error", json_string(rt->last_error));
    agent_emit(a, "health", ev);
    agent_update_status(a);
}

bool agent_worker_lost(agent *a, const agent_instance *in)
{
    dpr_finder *f;

    if (!a->finder || !in->committed || !agent_finder_domains(a->finder))
        return false; /* (a cluster's follower before any replicated state) */
    f = agent_domain(a, in->deployment);
    return !f || !dpr_finder_has_worker(f, in->worker);
}

void agent_check_finder(agent *a)
{
    size_t lost = 0;
    const char *first = "";
    bool marked = false;
    char msg[512];

    if (!a->finder || a->stopping)
        return;
    for (size_t i = 0; i < a->st.ninst; i++) {
        agent_instance *in = &a->st.inst[i];
        dpr_finder *f = agent_domain(a, in->deployment);
        if (!in->committed && f && dpr_finder_cut_of(f, in->worker) > 0) {
            /* durable in the finder: from now on it must know the worker */
            in->committed = true;
            marked = true;
        }
        if (agent_worker_lost(a, in) && lost++ == 0)
            first = in->name;
    }
    if (marked)
        agent_save_state(a, &a->st, NULL); /* a failure is logged; saved with the next change */
    if (lost == a->finder_lost)
        return;
    snprintf(a->finder_lost_first, sizeof(a->finder_lost_first), "%s", first);
    if (lost && !a->finder_lost) {
        const char *fields[] = { DPR_MSGID_FIELD(DPR_MSGID_FINDER_STATE_LOST), NULL };
        a->finder_lost = lost;
        finder_error(a, msg, sizeof(msg));
        dpr_log_fields(DPR_LOG_ERR, fields, "finder: %s", msg);
    } else if (!lost) {
        log_notice("finder: it knows every worker it had committed versions of again");
    }
    a->finder_lost = lost;
    emit_finder(a, NULL, NULL);
    agent_update_status(a);
}

/* ---- finder events per domain --------------------------------------------- */

static finder_dom *dom_find(agent *a, const char *name)
{
    for (size_t i = 0; i < a->ndoms; i++)
        if (strcmp(a->doms[i].name, name) == 0)
            return &a->doms[i];
    return NULL;
}

/* A new entry (zeroed: nothing told yet), or NULL on ENOMEM. Moves the
 * table: earlier pointers into it become invalid. */
static finder_dom *dom_add(agent *a, const char *name)
{
    finder_dom *v = realloc(a->doms, (a->ndoms + 1) * sizeof(*v));

    if (!v)
        return NULL;
    a->doms = v;
    v = &a->doms[a->ndoms++];
    memset(v, 0, sizeof(*v));
    snprintf(v->name, sizeof(v->name), "%s", name);
    return v;
}

void agent_note_finder(agent *a)
{
    dpr_domains *ds = agent_finder_domains(a->finder);

    a->ndoms = 0;
    for (size_t i = 0; i < dpr_domains_count(ds); i++) {
        dpr_finder *f = dpr_domains_at(ds, i);
        finder_dom *d = dom_add(a, dpr_domains_name(ds, i));
        if (!d)
            return; /* its first commit then reports it: an event more, no harm */
        d->world_line = dpr_finder_world_line(f);
        d->max_version = dpr_finder_max_version(f);
    }
}

/* Sends the events held back for the rate limit whose time has come and
 * sets the timer for the next. */
static void on_finder_timer(uv_timer_t *t);

static void schedule_finder_events(agent *a)
{
    uint64_t now = dpr_mono_ms(), due = UINT64_MAX;

    for (size_t i = 0; i < a->ndoms; i++) {
        finder_dom *d = &a->doms[i];
        dpr_finder *f;
        if (!d->pending)
            continue;
        if (now - d->last_event_ms >= FINDER_EVENT_MIN_MS && (f = agent_domain(a, d->name))) {
            emit_finder(a, d, f);
            continue;
        }
        if (!agent_domain(a, d->name)) {
            d->pending = false; /* gone meanwhile */
            continue;
        }
        if (d->last_event_ms + FINDER_EVENT_MIN_MS - now < due)
            due = d->last_event_ms + FINDER_EVENT_MIN_MS - now;
    }
    if (due != UINT64_MAX && a->timers_open)
        uv_timer_start(&a->finder_timer, on_finder_timer, due, 0);
}

static void on_finder_timer(uv_timer_t *t)
{
    schedule_finder_events(t->data);
}

/* A domain's new world-line, with its MESSAGE_ID (common/msgid.h). */
static void log_rollback(const char *domain, uint64_t wl, uint64_t old)
{
    char dom_field[128], wl_field[48], old_field[48];
    const char *fields[] = { DPR_MSGID_FIELD(DPR_MSGID_ROLLBACK), dom_field, wl_field, old_field,
                             NULL };

    snprintf(dom_field, sizeof(dom_field), "DPR_DOMAIN=%s", domain);
    snprintf(wl_field, sizeof(wl_field), "DPR_WORLD_LINE=%llu", (unsigned long long)wl);
    snprintf(old_field, sizeof(old_field), "DPR_OLD_WORLD_LINE=%llu", (unsigned long long)old);
    dpr_log_fields(DPR_LOG_NOTICE, fields, "finder: domain '%s': world-line %llu (was %llu): its "
                   "workers rolled back to its cut", domain, (unsigned long long)wl,
                   (unsigned long long)old);
}

void agent_on_finder_commit(void *arg)
{
    agent *a = arg;
    dpr_domains *ds = agent_finder_domains(a->finder);
    uint64_t now = dpr_mono_ms();
    size_t kept = 0;

    /* first the finder's state (lost or not), so that the domain events
     * below carry the state as it is now */
    agent_check_finder(a);
    for (size_t i = 0; i < a->ndoms; i++)
        a->doms[i].seen = false;
    for (size_t i = 0; i < dpr_domains_count(ds); i++) {
        const char *name = dpr_domains_name(ds, i);
        dpr_finder *f = dpr_domains_at(ds, i);
        uint64_t wl = dpr_finder_world_line(f), mv = dpr_finder_max_version(f);
        finder_dom *d = dom_find(a, name);
        if (!d && !(d = dom_add(a, name)))
            continue;
        d->seen = true;
        if (wl != d->world_line) {
            if (d->world_line)
                log_rollback(name, wl, d->world_line);
            else
                log_info("finder: domain '%s' begins (world-line %llu)", name,
                         (unsigned long long)wl);
            emit_finder(a, d, f); /* at once */
        } else if (mv != d->max_version) {
            /* the cut moves with every checkpoint: at most one event a
             * second per domain */
            if (now - d->last_event_ms >= FINDER_EVENT_MIN_MS)
                emit_finder(a, d, f);
            else
                d->pending = true;
        }
    }
    /* domains that went away (their last worker was removed) */
    for (size_t i = 0; i < a->ndoms; i++)
        if (a->doms[i].seen)
            a->doms[kept++] = a->doms[i];
    a->ndoms = kept;
    schedule_finder_events(a);
    agent_retire_in_finder(a);
}

/* ---- the Raft member's events -------------------------------------------- */

static bool had_member(const agent *a, uint64_t id)
{
    for (size_t i = 0; i < a->nmembers; i++)
        if (a->members[i] == id)
            return true;
    return false;
}

void agent_note_raft(agent *a)
{
    agent_raft_member m[64];
    const char *leader_addr = NULL;
    uint64_t *ids;
    size_t n;
    char told[sizeof(a->raft_told)];
    agent_raft_role role;

    if (!a->raft)
        return;
    role = agent_raft_role_now(a->raft);
    agent_raft_leader(a->raft, &leader_addr);
    snprintf(told, sizeof(told), "%s %llu %s", agent_raft_role_name(role),
             (unsigned long long)agent_raft_term(a->raft), leader_addr ? leader_addr : "-");
    if (strcmp(told, a->raft_told) != 0) {
        snprintf(a->raft_told, sizeof(a->raft_told), "%s", told);
        agent_emit(a, "raft", json_pack("{s:s, s:I, s:s?}", "role", agent_raft_role_name(role),
                                        "term", (json_int_t)agent_raft_term(a->raft),
                                        "leader", leader_addr));
    }
    n = agent_raft_members(a->raft, m, sizeof(m) / sizeof(m[0]));
    if (n > sizeof(m) / sizeof(m[0]))
        n = sizeof(m) / sizeof(m[0]);
    if (!(ids = malloc((n ? n : 1) * sizeof(*ids))))
        return; /* told at the next change */
    for (size_t i = 0; i < n; i++) {
        const char *name = agent_membership_name_of(a->membership, m[i].id);
        ids[i] = m[i].id;
        if (a->members && !had_member(a, m[i].id))
            agent_emit(a, "node", json_pack("{s:s, s:s, s:s}", "name", name ? name : m[i].address,
                                            "address", m[i].address, "state", "joined"));
    }
    for (size_t k = 0; a->members && k < a->nmembers; k++) {
        bool still = false;
        for (size_t i = 0; i < n && !still; i++)
            still = ids[i] == a->members[k];
        if (!still) {
            const char *name = agent_membership_name_of(a->membership, a->members[k]);
            char id[17];
            snprintf(id, sizeof(id), "%016llx", (unsigned long long)a->members[k]);
            agent_emit(a, "node", json_pack("{s:s, s:s, s:s}", "name", name ? name : id,
                                            "raft_id", id, "state", "left"));
        }
    }
    free(a->members);
    a->members = ids;
    a->nmembers = n;
}
