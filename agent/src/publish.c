/*
 * publish.c - what this agent publishes by DNS-SD (dnssd.h's records made
 * from its state), handed to discovery.c at every publish tick; and the
 * discovery part of status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_int.h"
#include "control.h"
#include "common/log.h"
#include "discovery.h"
#include "dnssd.h"

/* The port of "HOST:PORT" (0: none). */
static uint16_t port_of(const char *hostport)
{
    const char *colon = hostport ? strrchr(hostport, ':') : NULL;
    long v = colon ? strtol(colon + 1, NULL, 10) : 0;

    return v > 0 && v <= 65535 ? (uint16_t)v : 0;
}

static const char *raft_state(agent *a)
{
    if (!a->raft)
        return "single";
    return agent_raft_is_member(a->raft) ? "member" : "fresh";
}

/* Where the control API serves over TCP (a wildcard listener: on
 * node.address): false when it does not. */
static bool control_address(agent *a, char *out, size_t cap)
{
    const char *tcp = a->ctl ? agent_control_tcp_address(a->ctl) : NULL;
    uint16_t port = port_of(tcp);
    bool wildcard = tcp && (strncmp(tcp, "[::]:", 5) == 0 || strncmp(tcp, "0.0.0.0:", 8) == 0);

    if (!port)
        return false;
    if (wildcard)
        snprintf(out, cap, "%s:%u", a->cfg->node_address, port);
    else
        snprintf(out, cap, "%s", tcp);
    return true;
}

/* This node's _dpr-agent._tcp record. */
static int agent_record(agent *a, agent_dnssd_service *s)
{
    const char *finder = agent_finder_listen(a->finder);
    char ctl[AGENT_DNSSD_ADDR_MAX];
    int rc = agent_dnssd_init(s, AGENT_DNSSD_AGENT, a->cfg->node_name, a->cfg->cluster,
                              port_of(finder));

    if (rc == 0)
        rc = agent_dnssd_txt(s, "node", "%s", a->cfg->node_name);
    if (rc == 0)
        rc = agent_dnssd_txt(s, "api", "%d", AGENT_PROTO_VERSION);
    if (rc == 0)
        rc = agent_dnssd_txt(s, "finder", "%s", finder);
    if (rc == 0 && a->cfg->raft_address)
        rc = agent_dnssd_txt(s, "raft", "%s", a->cfg->raft_address);
    if (rc == 0)
        rc = agent_dnssd_txt(s, "state", "%s", raft_state(a));
    if (rc == 0 && control_address(a, ctl, sizeof(ctl)))
        rc = agent_dnssd_txt(s, "ctl", "%s", ctl);
    return rc;
}

/* The _dpr-finder._tcp record, published where the finder serves. */
static int finder_record(agent *a, agent_dnssd_service *s)
{
    const char *finder = agent_finder_listen(a->finder);
    int rc = agent_dnssd_init(s, AGENT_DNSSD_FINDER, "finder", a->cfg->cluster,
                              port_of(finder));

    if (rc == 0)
        rc = agent_dnssd_txt(s, "node", "%s", a->cfg->node_name);
    if (rc == 0)
        rc = agent_dnssd_txt(s, "term", "%llu",
                             a->raft ? (unsigned long long)agent_raft_term(a->raft) : 0ULL);
    if (rc == 0)
        rc = agent_dnssd_txt(s, "finder", "%s", finder);
    return rc;
}

/* The _dpr-cs._tcp record of a running instance. */
static int instance_record(agent *a, const agent_instance *in, agent_dnssd_service *s)
{
    int k = agent_spec_find(&a->st.spec, in->deployment);
    int rc = agent_dnssd_init(s, AGENT_DNSSD_CS, in->name, a->cfg->cluster, in->port);

    if (rc == 0)
        rc = agent_dnssd_txt(s, "deployment", "%s", in->deployment);
    if (rc == 0)
        rc = agent_dnssd_txt(s, "shard", "%u", in->shard);
    if (rc == 0 && k >= 0)
        rc = agent_dnssd_txt(s, "shards", "%u", a->st.spec.d[k].shards);
    if (rc == 0)
        rc = agent_dnssd_txt(s, "worker", "%llu", (unsigned long long)in->worker);
    if (rc == 0)
        rc = agent_dnssd_txt(s, "version", "%s", in->version);
    if (rc == 0)
        rc = agent_dnssd_txt(s, "impl", "%s", in->impl);
    if (rc == 0)
        rc = agent_dnssd_txt(s, "node", "%s", a->cfg->node_name);
    if (rc == 0)
        rc = agent_dnssd_txt(s, "addr", "%s:%u", agent_config_cs_host(a->cfg), in->port);
    /* its port speaks TLS only (docs/tls.md): how it asks for certificates */
    if (rc == 0 && agent_instance_tls(a, in))
        rc = agent_dnssd_txt(s, "tls", "%s", agent_instance_tls(a, in));
    return rc;
}

void agent_publish_update(agent *a)
{
    size_t cap = 2 + a->st.ninst, n = 0;
    agent_dnssd_service *s;

    if (!a->discovery)
        return;
    s = calloc(cap, sizeof(*s));
    if (!s)
        return; /* (the next tick tries again) */
    if (agent_record(a, &s[n]) == 0)
        n++;
    if (agent_finder_serving(a->finder) && finder_record(a, &s[n]) == 0)
        n++;
    for (size_t i = 0; i < a->st.ninst; i++) {
        const inst_rt *rt = agent_rt_find(a, a->st.inst[i].name);
        if (rt && agent_rt_ready(rt) && instance_record(a, &a->st.inst[i], &s[n]) == 0)
            n++;
    }
    if (agent_discovery_publish(a->discovery, s, n) < 0)
        log_warning("discovery: out of memory publishing %zu services", n);
    free(s);
}

json_t *agent_discovery_json(agent *a)
{
    const char *reason = NULL;
    agent_discovery_state_t st;

    if (!a->discovery)
        return json_pack("{s:s, s:s}", "state", "off", "reason",
                         "disabled in agent.conf (discovery.enabled = false)");
    st = agent_discovery_state(a->discovery, &reason);
    return json_pack("{s:s, s:s?, s:I}", "state", agent_discovery_state_name(st), "reason",
                     *reason ? reason : NULL, "published",
                     (json_int_t)agent_discovery_published(a->discovery));
}

/* ---- agents found ------------------------------------------------------------ */

/* How long the set a fresh node would bootstrap must stay the same (every
 * fresh agent of the set has had time to find the same ones). */
#define SETTLE_MS 2000
#define FOUND_MAX 64

static uint64_t key_of(char (*addrs)[AGENT_DNSSD_ADDR_MAX], size_t n)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < n; i++)
        for (const char *c = addrs[i]; ; c++) {
            h = (h ^ (unsigned char)*c) * 1099511628211ULL;
            if (!*c)
                break;
        }
    return h;
}

void agent_publish_peers(agent *a)
{
    char addrs[FOUND_MAX][AGENT_DNSSD_ADDR_MAX];
    const char *list[FOUND_MAX];
    const agent_dnssd_peer *peers;
    agent_dnssd_action act;
    dpr_err err = DPR_ERR_INIT;
    size_t np, n, others = 0;
    uint64_t key;

    if (!a->discovery || !a->raft || !a->membership || a->cfg->nraft_peers ||
        !(a->cfg->raft_join || a->cfg->raft_expect))
        return; /* a seed list, or a node that neither joins nor bootstraps */
    np = agent_discovery_peers(a->discovery, &peers);
    act = agent_dnssd_decide(a->cfg->raft_address, a->cfg->raft_expect, peers, np, addrs,
                             FOUND_MAX, &n);
    key = key_of(addrs, n);
    for (size_t i = 0; i < n; i++) /* (a bootstrap set holds this node too) */
        if (strcmp(addrs[i], a->cfg->raft_address) != 0)
            list[others++] = addrs[i];
    if (agent_raft_waiting(a->raft)) {
        if (act == AGENT_DNSSD_WAIT) {
            a->boot_key = 0;
            return;
        }
        if (act == AGENT_DNSSD_BOOTSTRAP) {
            if (key != a->boot_key) {
                a->boot_key = key;
                a->boot_since = uv_now(a->loop);
                log_info("cluster: found %zu new agents of cluster '%s' (raft.expect %u); "
                         "bootstrapping with them unless that changes within %d ms", n,
                         a->cfg->cluster, a->cfg->raft_expect, SETTLE_MS);
                return;
            }
            if (uv_now(a->loop) - a->boot_since < SETTLE_MS)
                return;
        }
        if (agent_raft_begin(a->raft, (char *const *)list, others, act == AGENT_DNSSD_JOIN,
                             &err) < 0) {
            log_warning("cluster: %s", err.msg);
            return;
        }
    }
    if (act == AGENT_DNSSD_JOIN && !agent_raft_is_member(a->raft) && key != a->join_key) {
        if (agent_membership_set_peers(a->membership, list, others) < 0)
            return;
        a->join_key = key;
        log_info("cluster: asking the %zu member%s of cluster '%s' found by DNS-SD to add "
                 "this node", n, n == 1 ? "" : "s", a->cfg->cluster);
    }
}
