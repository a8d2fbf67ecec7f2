/*
 * membership.h - this agent's part in the cluster's membership (the Raft
 * configuration and the node table of cstate.h).
 *
 * The leader's agent
 *  - answers DPR.CLUSTER.JOIN <raft-address> <name> <finder-address>
 *    [<cluster>] (on the finder port; a node of another cluster is
 *    refused): adds a new agent to the configuration (a voter
 *    while there are fewer than 5, else a standby) and records its node
 *    (name and addresses) in the replicated node table; for a member it
 *    only records the node;
 *  - answers DPR.CLUSTER.REMOVE <name>: takes a member out (never itself:
 *    stop the leader's agent first, another leads);
 *  - tends the membership every second: its own record, a standby promoted
 *    when voters are fewer than 5 (a voter was removed), records of nodes
 *    that are no members dropped.
 * Every other agent sends DPR.CLUSTER.JOIN to the leader (peerreq.h) while
 * it is no member and was configured to join (raft.join), or while the
 * node table does not hold it as it is configured (a hello after a
 * bootstrap or a change of node.name). Followers answer DPR.CLUSTER.* with
 * NOTLEADER like every other finder-port request.
 *
 * Loop thread only.
 */
#ifndef AGENT_MEMBERSHIP_H
#define AGENT_MEMBERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "common/buf.h"
#include "dpr/err.h"
#include "raftnode.h"

typedef struct agent_membership agent_membership;

typedef struct agent_membership_config {
    const char *cluster;         /* the cluster's name (a joiner of another is refused) */
    const char *name;            /* node.name */
    const char *raft_address;    /* raft.address */
    const char *finder_address;  /* this node's finder, "HOST:PORT" */
    /* this node's finder TLS port, "HOST:PORT" (NULL: none): requests to
     * the leader go to the TLS ports (the same on every node) over TLS
     * with the agent's contexts, *tls (peerreq.h) */
    const char *finder_tls_address;
    struct agent_tls *const *tls;
    char *const *peers;          /* raft.peers (Raft addresses) */
    size_t npeers;
    bool join;                   /* raft.join */
} agent_membership_config;

/* 0 or -ENOMEM. The strings are copied. */
int agent_membership_start(uv_loop_t *loop, agent_raft *raft,
                           const agent_membership_config *cfg, agent_membership **out);
/* Cancels what is in flight; the memory goes once the loop closed the
 * handles. NULL: nothing. */
void agent_membership_stop(agent_membership *m);
/* The Raft role or leader changed. */
void agent_membership_changed(agent_membership *m);
/* A command on the finder port: 1 answered (reply appended to out), 0 not
 * a membership command or this node does not lead (the caller redirects),
 * -ENOMEM. */
int agent_membership_command(agent_membership *m, int argc, char *const *argv,
                             const size_t *argvlen, dpr_buf *out);
/*
 * Removes the member named name (its node name, or its Raft address): on
 * the leader started at once, elsewhere sent to the leader. 0 and a
 * description in what (e.g. "removing node3 (10.0.0.3:7400)"); -ENOENT (no
 * such member), -EINVAL (this node leads: it cannot remove itself),
 * -EBUSY (another change runs), -ENOTCONN (no leader known), -ENOMEM; err
 * says why.
 */
int agent_membership_remove(agent_membership *m, const char *name, char *what, size_t cap,
                            dpr_err *err);
/* The agents to ask to be added (Raft addresses, copied), found by
 * DNS-SD: from now on this node asks them while it is no member, like a
 * node with raft.join. 0 or -ENOMEM (nothing changed). */
int agent_membership_set_peers(agent_membership *m, const char *const *addrs, size_t n);
/* The node's name as the node table holds it, or NULL (also for m NULL). */
const char *agent_membership_name_of(agent_membership *m, uint64_t id);

#endif
