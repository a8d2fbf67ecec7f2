/*
 * nodenet.c - the agent's use of netwatch.h: node.address as an interface
 * name is resolved at start and followed as it changes; losing the
 * address or the link marks the node degraded (status, a "network" event),
 * and it is healthy again when they come back.
 *
 * node.address is watched when it is a literal IPv4 address or the name of
 * an interface that exists at start; a host name is not watched (what it
 * resolves to is DNS's business).
 */
#include <net/if.h>
#include <errno.h>
#include <string.h>

#include "agent_int.h"
#include "common/err.h"
#include "common/addr.h"
#include "common/log.h"
#include "netstate.h"
#include "netwatch.h"

/* The network part of events and status. */
static json_t *net_json(const agent *a, const agent_netstate *st)
{
    return json_pack("{s:s, s:s, s:s?, s:s, s:s?}", "state", st->healthy ? "healthy" : "degraded",
                     "address", a->cfg->node_address, "interface",
                     st->ifname[0] ? st->ifname : NULL, "watching",
                     a->cfg->node_interface ? "interface" : "address", "reason",
                     st->healthy ? NULL : st->reason);
}

static void on_net_changed(void *arg, const agent_netstate *before, const agent_netstate *now)
{
    agent *a = arg;
    unsigned what = agent_netstate_diff(before, now);

    if (a->cfg->node_interface && (what & AGENT_NETSTATE_ADDRESS) && now->address[0] &&
        strcmp(now->address, a->cfg->node_address) != 0) {
        log_notice("node.address: interface %s now has %s (was %s): publishing the new "
                   "address; the listeners listen on every address and stay as they are",
                   a->cfg->node_interface, now->address, a->cfg->node_address);
        if (agent_config_resolve_address(a->cfg, a->cfg->node_interface, now->address) < 0)
            log_error("node.address: out of memory taking the new address %s", now->address);
        a->insts_dirty = true; /* the instance record names the new endpoints */
    }
    agent_emit(a, "network", net_json(a, now));
    agent_update_status(a);
    agent_publish_update(a);
}

int agent_net_start(agent *a, dpr_err *err)
{
    char want[AGENT_NETSTATE_IFNAME_MAX > DPR_HOST_MAX ? AGENT_NETSTATE_IFNAME_MAX
                                                       : DPR_HOST_MAX];
    agent_netwatch_hooks h = { .changed = on_net_changed, .arg = a };
    bool by_name;
    const agent_netstate *st;
    int rc;

    /* (a copy: resolving the interface replaces cfg->node_address) */
    snprintf(want, sizeof(want), "%s", a->cfg->node_address);
    by_name = !agent_netstate_is_ipv4(want);
    if (by_name && (!agent_netstate_ifname_valid(want) || if_nametoindex(want) == 0))
        return 0; /* a host name */
    rc = agent_netwatch_start(a->loop, want, &h, &a->net, err);
    if (rc < 0) {
        if (by_name) {
            dpr_err_prefix(err, "node.address names the interface %s", want);
            return rc;
        }
        log_warning("not watching the network (the node is not reported degraded when %s "
                    "goes): %s", want, err->msg);
        return 0;
    }
    st = agent_netwatch_state(a->net);
    if (!by_name)
        return 0;
    if (!st->address[0])
        return dpr_err_set(err, -EADDRNOTAVAIL, "node.address names the interface %s: %s",
                           want, st->reason);
    if (agent_config_resolve_address(a->cfg, want, st->address) < 0)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    log_info("node.address: interface %s, address %s", want, st->address);
    return 0;
}

void agent_net_stop(agent *a)
{
    agent_netwatch_stop(a->net);
    a->net = NULL;
}

json_t *agent_net_json(agent *a)
{
    if (!a->net)
        return json_pack("{s:s, s:s, s:s}", "state", "unknown", "address",
                         a->cfg->node_address, "watching", "nothing");
    return net_json(a, agent_netwatch_state(a->net));
}

bool agent_net_degraded(agent *a, const char **reason)
{
    const agent_netstate *st = a->net ? agent_netwatch_state(a->net) : NULL;

    if (!st || st->healthy)
        return false;
    *reason = st->reason;
    return true;
}
