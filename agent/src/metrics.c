/* metrics.c - the agent's Prometheus endpoint (metrics.address; see
 * agent_int.h): dpr_agent_* of what the agent keeps (its state, its units'
 * properties, its Raft member, its control requests) and the hosted
 * finder's dpr_finder_*; docs/operations.md, "Metrics", lists them. At /sd
 * it serves Prometheus HTTP service discovery: itself and the metrics
 * endpoints of this node's instances. */
#include "agent_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/http.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/version.h"
#include "envfile.h"

static void instances(agent *a, dpr_buf *b)
{
    size_t ready = 0, health[AGENT_HEALTH_FAILED + 1] = {0};

    dpr_metrics_gauge(b, "dpr_agent_instances", "instances this node should run",
                      (double)a->st.ninst);
    dpr_metrics_gauge(b, "dpr_agent_instances_retiring", "deleted instances not yet cleaned up",
                      (double)a->st.nretiring);
    dpr_metrics_head(b, "dpr_agent_instance_ready", DPR_METRIC_GAUGE,
                     "1 while an instance is ready (its unit active and serving)");
    for (size_t i = 0; i < a->st.ninst; i++) {
        const agent_instance *in = &a->st.inst[i];
        inst_rt *rt = agent_rt_find(a, in->name);
        bool r = rt && agent_rt_ready(rt);
        dpr_metric_label l[] = {{"instance", in->name}, {"deployment", in->deployment}};
        dpr_metrics_sample(b, "dpr_agent_instance_ready", l, 2, r ? 1 : 0);
        ready += r;
        if (rt && rt->health <= AGENT_HEALTH_FAILED)
            health[rt->health]++;
    }
    dpr_metrics_gauge(b, "dpr_agent_instances_ready", "instances ready", (double)ready);
    dpr_metrics_head(b, "dpr_agent_instances_health", DPR_METRIC_GAUGE,
                     "instances by health (as in dprctl status)");
    for (int h = AGENT_HEALTH_OK; h <= AGENT_HEALTH_FAILED; h++) {
        dpr_metric_label l[] = {{"health", agent_health_name((agent_health)h)}};
        dpr_metrics_sample(b, "dpr_agent_instances_health", l, 1, (double)health[h]);
    }
    dpr_metrics_head(b, "dpr_agent_instance_restarts_total", DPR_METRIC_COUNTER,
                     "automatic restarts of an instance's unit (systemd's NRestarts)");
    for (size_t i = 0; i < a->st.ninst; i++) {
        inst_rt *rt = agent_rt_find(a, a->st.inst[i].name);
        if (!rt || !rt->known || !(rt->props.have & AGENT_UP_RESTARTS))
            continue;
        dpr_metric_label l[] = {{"instance", rt->name}};
        dpr_metrics_sample_u64(b, "dpr_agent_instance_restarts_total", l, 1, rt->props.n_restarts);
    }
    dpr_metrics_head(b, "dpr_agent_instance_failures_total", DPR_METRIC_COUNTER,
                     "times an instance failed (unit failed or auto-restarting, or failed "
                     "health)");
    for (size_t i = 0; i < a->st.ninst; i++) {
        inst_rt *rt = agent_rt_find(a, a->st.inst[i].name);
        dpr_metric_label l[] = {{"instance", a->st.inst[i].name}};
        dpr_metrics_sample_u64(b, "dpr_agent_instance_failures_total", l, 1, rt ? rt->fail_seq : 0);
    }
}

static void rollouts(agent *a, dpr_buf *b)
{
    size_t halted = 0;
    for (size_t i = 0; i < a->st.nrollouts; i++)
        halted += a->st.rollouts[i].halted[0] != '\0';
    dpr_metrics_gauge(b, "dpr_agent_rollouts", "deployments with a recorded roll-out",
                      (double)a->st.nrollouts);
    dpr_metrics_gauge(b, "dpr_agent_rollouts_halted", "roll-outs halted by a failure",
                      (double)halted);
    dpr_metrics_gauge(b, "dpr_agent_spec_generation", "the generation of the applied spec",
                      (double)a->st.generation);
}

static void raft(agent *a, dpr_buf *b)
{
    agent_raft_role role = a->raft ? agent_raft_role_now(a->raft) : AGENT_RAFT_UNAVAILABLE;

    dpr_metrics_gauge(b, "dpr_agent_raft_member", "1 in a cluster of agents (a Raft member)",
                      a->raft ? 1 : 0);
    dpr_metrics_head(b, "dpr_agent_raft_role", DPR_METRIC_GAUGE,
                     "1 for this node's Raft role (a single node: none)");
    for (int r = AGENT_RAFT_UNAVAILABLE; r <= AGENT_RAFT_LEADER; r++) {
        dpr_metric_label l[] = {{"role", agent_raft_role_name((agent_raft_role)r)}};
        dpr_metrics_sample(b, "dpr_agent_raft_role", l, 1, a->raft && (int)role == r ? 1 : 0);
    }
    dpr_metrics_gauge(b, "dpr_agent_raft_term", "the Raft term (0: a single node)",
                      a->raft ? (double)agent_raft_term(a->raft) : 0);
}

static int write_page(void *arg, dpr_buf *b)
{
    agent *a = arg;
    dpr_metric_label info[] = {
        {"version", DPR_VERSION}, {"cluster", a->cfg->cluster}, {"node", a->cfg->node_name}};

    dpr_metrics_head(b, "dpr_agent_info", DPR_METRIC_GAUGE,
                     "this agent: its version, cluster and node name (1)");
    dpr_metrics_sample(b, "dpr_agent_info", info, 3, 1);
    instances(a, b);
    rollouts(a, b);
    raft(a, b);
    dpr_metrics_head(b, "dpr_agent_control_requests_total", DPR_METRIC_COUNTER,
                     "control requests (dprctl, the API) by operation");
    for (int op = 0; op < AGENT_OP_COUNT; op++) {
        dpr_metric_label l[] = {{"op", agent_op_name((agent_op)op)}};
        dpr_metrics_sample_u64(b, "dpr_agent_control_requests_total", l, 1,
                               a->control_requests[op]);
    }
    dpr_metrics_gauge(b, "dpr_agent_finder_serving",
                      "1 while this node serves the finder (one node, or the Raft leader)",
                      a->finder && agent_finder_serving(a->finder) ? 1 : 0);
    if (agent_finder_metrics(a->finder, a->cfg->metrics_workers, b) < 0)
        return -ENOMEM;
    return dpr_buf_failed(b) ? -ENOMEM : 0;
}

/* One target group of /sd: {"targets": [target], "labels": {...}}. */
static int sd_add(json_t *groups, const char *target, json_t *labels)
{
    json_t *g = json_pack("{s:[s], s:o}", "targets", target, "labels", labels);
    return g && json_array_append_new(groups, g) == 0 ? 0 : -ENOMEM;
}

/* The agent's own target: where it listens, the node's address for a
 * wildcard address (0.0.0.0:P, [::]:P). */
static void sd_self(agent *a, char *out, size_t outlen)
{
    const char *bound = dpr_http_bound(a->metrics), *port = strrchr(bound, ':');

    if (strncmp(bound, "0.0.0.0:", 8) == 0 || strncmp(bound, "[::]:", 5) == 0)
        snprintf(out, outlen, strchr(a->cfg->node_address, ':') ? "[%s]%s" : "%s%s",
                 a->cfg->node_address, port);
    else
        snprintf(out, outlen, "%s", bound);
}

static int write_sd(void *arg, dpr_buf *b)
{
    agent *a = arg;
    json_t *groups = json_array();
    char target[320], shard[16];
    char *text = NULL;
    int rc = groups ? 0 : -ENOMEM;

    /* the agent, with the finder it hosts */
    sd_self(a, target, sizeof(target));
    if (rc == 0)
        rc = sd_add(groups, target, json_pack("{s:s, s:s, s:s, s:s}", "component", "dpr-agent",
                                              "cluster", a->cfg->cluster, "node",
                                              a->cfg->node_name, "instance", a->cfg->node_name));
    for (size_t i = 0; rc == 0 && i < a->st.ninst; i++) {
        const agent_instance *in = &a->st.inst[i];
        if (!agent_env_metrics_endpoint(in, agent_config_cs_host(a->cfg), target,
                                        sizeof(target)))
            continue;
        snprintf(shard, sizeof(shard), "%u", in->shard);
        rc = sd_add(groups, target, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "component",
                                              in->impl, "cluster", a->cfg->cluster, "node",
                                              a->cfg->node_name, "deployment", in->deployment,
                                              "shard", shard, "instance", in->name));
    }
    if (rc == 0 && !(text = json_dumps(groups, JSON_COMPACT)))
        rc = -ENOMEM;
    if (rc == 0) {
        dpr_buf_append_str(b, text);
        dpr_buf_append(b, "\n", 1);
    }
    free(text);
    json_decref(groups);
    return rc < 0 ? rc : dpr_buf_failed(b) ? -ENOMEM : 0;
}

int agent_metrics_start(agent *a, dpr_err *err)
{
    int rc;

    if (!a->cfg->metrics_address)
        return 0;
    rc = dpr_http_start(&a->metrics, a->loop, a->cfg->metrics_address, write_page, a, err);
    if (rc < 0)
        return rc;
    rc = dpr_http_add(a->metrics, "/sd", "application/json", write_sd);
    if (rc < 0) {
        agent_metrics_stop(a);
        return dpr_err_set(err, rc, "cannot serve /sd beside /metrics");
    }
    log_info("metrics on http://%s/metrics, Prometheus service discovery on http://%s/sd",
             dpr_http_bound(a->metrics), dpr_http_bound(a->metrics));
    return 0;
}

void agent_metrics_stop(agent *a)
{
    dpr_http_close(a->metrics);
    a->metrics = NULL;
}
