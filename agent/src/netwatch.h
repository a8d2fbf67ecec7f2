/*
 * netwatch.h - watches this node's links and IPv4 addresses through
 * netlink (libnl-route's cache manager, on the caller's libuv loop) and
 * says when what node.address resolves to changes (netstate.h).
 *
 * Start reads every link and address synchronously, so the state is there
 * at once (an interface name resolved before anything listens). After
 * that, netlink events update the caches; a burst of them (an address
 * added with its routes, a link and its addresses going away, a whole
 * reconfiguration) is evaluated once, AGENT_NETWATCH_SETTLE_MS after its
 * first event, and the changed hook runs when the evaluated state differs
 * from the last one, never for the same state again. When the kernel drops
 * events (the socket overran: ENOBUFS), the caches are read again from
 * scratch before the next evaluation.
 *
 * The watch logs each change: info when the address is usable, warning
 * with the reason when not (see netstate.h); the hook need not.
 *
 *     agent_netwatch_hooks h = { .changed = on_net, .arg = a };
 *     if (agent_netwatch_start(loop, cfg->node_address, &h, &a->net, &err) < 0)
 *         log_warning("not watching the network: %s", err.msg);  (runs without)
 *     st = agent_netwatch_state(a->net);    (st->address, st->healthy ...)
 *     ...
 *     agent_netwatch_stop(a->net);          (then run the loop to close it)
 *
 * Loop thread only.
 */
#ifndef AGENT_NETWATCH_H
#define AGENT_NETWATCH_H

#include <stddef.h>
#include <uv.h>

#include "dpr/err.h"
#include "netstate.h"

/* How long a burst of netlink events may go on before it is evaluated. */
#define AGENT_NETWATCH_SETTLE_MS 50

typedef struct agent_netwatch agent_netwatch;

typedef struct agent_netwatch_hooks {
    /* The evaluated state changed: before is the last state (the one the
     * previous call gave as now, or the state at start), now the new one,
     * also agent_netwatch_state's from now on. Both are valid during the
     * call only. May call agent_netwatch_stop. NULL: none. */
    void (*changed)(void *arg, const agent_netstate *before, const agent_netstate *now);
    void *arg;
} agent_netwatch_hooks;

/*
 * Starts watching for want (node.address: an IPv4 address or an interface
 * name, copied), reading the current links and addresses first (and
 * logging the state found). hooks is copied; NULL: none. 0 and *out set.
 * Else *out is NULL, a negative errno and a message in err: -EINVAL with
 * agent_netstate_classify's message (want is invalid; put "node.address: "
 * in front), or "cannot watch the network: netlink: STEP: WHY" with
 * -ENOMEM, what netlink gave (no netlink, e.g. RestrictAddressFamilies=:
 * -EAFNOSUPPORT; not allowed: -EPERM or -EACCES; other: -EIO) or a libuv
 * error. A handle already opened is closed: the loop frees it when it runs.
 */
int agent_netwatch_start(uv_loop_t *loop, const char *want, const agent_netwatch_hooks *hooks,
                         agent_netwatch **out, dpr_err *err);

/* The last evaluated state (the one the last changed call gave as now). */
const agent_netstate *agent_netwatch_state(const agent_netwatch *w);

/* How many times the caches were read again after netlink dropped events
 * (for status and tests). */
size_t agent_netwatch_resyncs(const agent_netwatch *w);

/* Stops watching: no hook runs any more. The memory goes once the loop
 * has closed the handles. NULL: nothing. */
void agent_netwatch_stop(agent_netwatch *w);

#endif
