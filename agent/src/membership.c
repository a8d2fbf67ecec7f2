/* membership.c - joining, hello, removal and the node table (see membership.h). */
#include "membership.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/finders.h"
#include "common/log.h"
#include "common/resp.h"
#include "cstate.h"
#include "peerreq.h"

#define TEND_MS 1000
/* How long a hello, or a removal sent to the leader, looks for it. */
#define HELLO_MS 2000
#define REMOVE_MS 10000

struct agent_membership {
    uv_loop_t *loop;
    agent_raft *raft;
    agent_cstate_node self;     /* this node as it is configured */
    char cluster[64];           /* (agent.conf: at most 63 characters) */
    char **peers;
    size_t npeers;
    bool join;
    unsigned finder_port;       /* the TLS port with TLS */
    struct agent_tls *const *tls; /* NULL: plain */
    uv_timer_t timer;
    bool timer_open, stopping;
    agent_peerreq *hello;       /* a JOIN in flight to the leader */
    agent_peerreq *remove;      /* a REMOVE forwarded to the leader */
    bool was_member;
    dpr_buf scratch;
    /* Raft requests in flight: their callbacks need this object, which
     * goes only when they all ended and the timer closed */
    size_t pending;
    bool timer_closed;
};

static void maybe_free(agent_membership *m)
{
    if (!m->stopping || m->pending > 0 || !m->timer_closed)
        return;
    for (size_t i = 0; i < m->npeers; i++)
        free(m->peers[i]);
    free(m->peers);
    dpr_buf_free(&m->scratch);
    free(m);
}

/* ---- replies ------------------------------------------------------------ */

static int reply_status(dpr_buf *out, const char *text)
{
    dpr_resp_status(out, text);
    return dpr_buf_failed(out) ? -ENOMEM : 1;
}

static int reply_error(dpr_buf *out, const char *text)
{
    dpr_resp_error(out, text);
    return dpr_buf_failed(out) ? -ENOMEM : 1;
}

/* ---- the leader ------------------------------------------------------------ */

static void on_entry(void *arg, int status)
{
    agent_membership *m = arg;

    m->pending--;
    if (status < 0 && status != -ENOTCONN && !m->stopping)
        log_warning("cluster: recording a node failed: %s", strerror(-status));
    maybe_free(m);
}

/* Records n in the node table unless it is there as it is. */
static void record(agent_membership *m, const agent_cstate_node *n)
{
    const agent_cstate_node *have = agent_cstate_node_find(agent_raft_cstate(m->raft), n->id);
    int rc;

    if (have && memcmp(have, n, sizeof(*n)) == 0)
        return;
    rc = agent_cstate_node_payload(n, &m->scratch);
    if (rc == 0)
        rc = agent_raft_apply(m->raft, AGENT_CSTATE_ENTRY_NODE, m->scratch.data,
                              m->scratch.len, on_entry, m);
    if (rc < 0 && rc != -ENOTCONN)
        log_warning("cluster: cannot record node %s: %s", n->name, strerror(-rc));
    else if (rc == 0) {
        m->pending++;
        log_info("cluster: node %s is %s (finder %s)", n->name, n->raft, n->finder);
    }
}

static void forget(agent_membership *m, uint64_t id)
{
    unsigned char p[8];

    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(id >> (8 * i));
    if (agent_raft_apply(m->raft, AGENT_CSTATE_ENTRY_NODE_GONE, p, sizeof(p), on_entry, m) ==
        0 && ++m->pending)
        log_info("cluster: forgetting the node record of member %016llx (no member any more)",
                 (unsigned long long)id);
}

static void on_tend(uv_timer_t *t);

static void on_change_done(void *arg, int status)
{
    agent_membership *m = arg;

    m->pending--;
    if (m->stopping) {
        maybe_free(m);
        return;
    }
    if (status < 0)
        log_warning("cluster: a membership change did not complete: %s", strerror(-status));
    uv_timer_start(&m->timer, on_tend, 0, 0); /* the next step soon */
}

/* The leader's upkeep: its own record, voters, stale records. */
static void tend_leader(agent_membership *m)
{
    const agent_cstate *cs = agent_raft_cstate(m->raft);
    agent_raft_member mem[64];
    size_t n = agent_raft_members(m->raft, mem, 64), voters = 0, want;
    int rc;

    record(m, &m->self);
    if (n > 64)
        n = 64;
    for (size_t i = 0; i < n; i++)
        voters += mem[i].vote == AGENT_RAFT_VOTER;
    want = n < AGENT_RAFT_MAX_VOTERS ? n : AGENT_RAFT_MAX_VOTERS;
    for (size_t i = 0; i < n && voters < want; i++) {
        /* a standby the leader hears from becomes a voter */
        if (mem[i].vote == AGENT_RAFT_VOTER || mem[i].last_contact_ms < 0 ||
            mem[i].last_contact_ms > 2000)
            continue;
        rc = agent_raft_assign(m->raft, mem[i].id, AGENT_RAFT_VOTER, on_change_done, m);
        if (rc == 0 && ++m->pending)
            log_notice("cluster: promoting %s to voter (%zu voters of %zu wanted)",
                       mem[i].address, voters, want);
        break; /* one change at a time */
    }
    for (size_t k = 0; k < cs->nnodes; k++) {
        bool member = false;
        for (size_t i = 0; i < n && !member; i++)
            member = mem[i].id == cs->nodes[k].id;
        if (!member) {
            forget(m, cs->nodes[k].id);
            break; /* the next one at the next turn */
        }
    }
}

/* How many members vote; *member: whether id is one of the members. */
static size_t voters_and(agent_membership *m, uint64_t id, bool *member)
{
    agent_raft_member mem[64];
    size_t n = agent_raft_members(m->raft, mem, 64), voters = 0;

    *member = false;
    for (size_t i = 0; i < n && i < 64; i++) {
        voters += mem[i].vote == AGENT_RAFT_VOTER;
        *member = *member || mem[i].id == id;
    }
    return voters;
}

/* DPR.CLUSTER.JOIN on the leader. */
static int cmd_join(agent_membership *m, int argc, char *const *argv, const size_t *len,
                    dpr_buf *out)
{
    const agent_cstate *cs = agent_raft_cstate(m->raft);
    const agent_cstate_node *taken;
    agent_cstate_node n;
    char msg[300];
    size_t voters;
    bool member;
    int rc;

    memset(&n, 0, sizeof(n));
    /* a 5th argument: the joiner's cluster (agents before discovery send 4) */
    if (argc == 5 && (len[4] != strlen(m->cluster) || memcmp(argv[4], m->cluster, len[4]) != 0)) {
        snprintf(msg, sizeof(msg), "ERR this is cluster '%s', not '%.*s': a node joins only "
                 "its own cluster", m->cluster, (int)(len[4] < 64 ? len[4] : 64), argv[4]);
        return reply_error(out, msg);
    }
    if (len[1] >= sizeof(n.raft) || len[2] >= sizeof(n.name) || len[3] >= sizeof(n.finder))
        return reply_error(out, "ERR DPR.CLUSTER.JOIN: an argument is too long");
    memcpy(n.raft, argv[1], len[1]);
    memcpy(n.name, argv[2], len[2]);
    memcpy(n.finder, argv[3], len[3]);
    n.id = agent_raft_id_of(n.raft);
    if (strlen(n.raft) != len[1] || strlen(n.name) != len[2] || strlen(n.finder) != len[3] ||
        !agent_cstate_node_valid(&n))
        return reply_error(out, "ERR DPR.CLUSTER.JOIN: expected RAFT-ADDRESS NAME "
                                "FINDER-ADDRESS (a name of letters, digits, '-', '.', '_')");
    taken = agent_cstate_node_named(cs, n.name);
    if (taken && taken->id != n.id) {
        snprintf(msg, sizeof(msg), "ERR node name '%s' is taken by the member at %s: give "
                 "this node another node.name", n.name, taken->raft);
        return reply_error(out, msg);
    }
    voters = voters_and(m, n.id, &member);
    if (!member) {
        agent_raft_vote vote = voters < AGENT_RAFT_MAX_VOTERS ? AGENT_RAFT_VOTER
                                                              : AGENT_RAFT_STANDBY;
        rc = agent_raft_add(m->raft, n.id, n.raft, vote, on_change_done, m);
        if (rc == -EBUSY)
            return reply_error(out, "TRYAGAIN a membership change is running");
        if (rc < 0) {
            snprintf(msg, sizeof(msg), "ERR cannot add %s: %s", n.raft, strerror(-rc));
            return reply_error(out, msg);
        }
        m->pending++;
        log_notice("cluster: adding node %s (%s) as a %s", n.name, n.raft,
                   vote == AGENT_RAFT_VOTER ? "voter" : "standby");
        record(m, &n);
        return reply_status(out, "OK joining");
    }
    record(m, &n);
    return reply_status(out, "OK member");
}

/* Finds a member by node name or Raft address: its id, or 0. */
static uint64_t resolve(agent_membership *m, const char *name, char *addr, size_t cap)
{
    const agent_cstate_node *n = agent_cstate_node_named(agent_raft_cstate(m->raft), name);
    agent_raft_member mem[64];
    size_t k = agent_raft_members(m->raft, mem, 64);

    for (size_t i = 0; i < k && i < 64; i++)
        if ((n && mem[i].id == n->id) || strcmp(mem[i].address, name) == 0) {
            snprintf(addr, cap, "%s", mem[i].address);
            return mem[i].id;
        }
    return 0;
}

/* Removal on the leader: 0, or a negative errno with err set. */
static int remove_here(agent_membership *m, const char *name, char *what, size_t cap,
                       dpr_err *err)
{
    char addr[AGENT_RAFT_ADDRESS_MAX];
    uint64_t id = resolve(m, name, addr, sizeof(addr));
    int rc;

    if (!id)
        return dpr_err_set(err, -ENOENT, "no member named '%s' (dprctl nodes lists them)",
                           name);
    if (id == agent_raft_id(m->raft))
        return dpr_err_set(err, -EINVAL, "'%s' is the leader: stop its agent (another "
                           "member leads then) and remove it from another node", name);
    rc = agent_raft_remove(m->raft, id, on_change_done, m);
    if (rc == -EBUSY)
        return dpr_err_set(err, rc, "a membership change is running: try again");
    if (rc < 0)
        return dpr_err_set(err, rc, "cannot remove %s: %s", addr, strerror(-rc));
    m->pending++;
    log_notice("cluster: removing %s (%s)", name, addr);
    snprintf(what, cap, "removing %s (%s)", name, addr);
    return 0;
}

/* DPR.CLUSTER.REMOVE on the leader. */
static int cmd_remove(agent_membership *m, char *const *argv, const size_t *len, dpr_buf *out)
{
    char name[AGENT_CSTATE_ADDR_MAX + 1], what[200], msg[DPR_ERR_MSG_MAX + 16];
    dpr_err err = DPR_ERR_INIT;

    if (len[1] >= sizeof(name) || memchr(argv[1], '\0', len[1]))
        return reply_error(out, "ERR DPR.CLUSTER.REMOVE: bad name");
    memcpy(name, argv[1], len[1]);
    name[len[1]] = '\0';
    if (remove_here(m, name, what, sizeof(what), &err) < 0) {
        snprintf(msg, sizeof(msg), "%s %s", err.code == -EBUSY ? "TRYAGAIN" : "ERR", err.msg);
        return reply_error(out, msg);
    }
    return reply_status(out, what);
}

int agent_membership_command(agent_membership *m, int argc, char *const *argv,
                             const size_t *argvlen, dpr_buf *out)
{
    if (argc < 1 || argvlen[0] < 12 || strncasecmp(argv[0], "DPR.CLUSTER.", 12) != 0)
        return 0;
    if (agent_raft_role_now(m->raft) != AGENT_RAFT_LEADER)
        return 0; /* the server names the leader */
    if (argvlen[0] == 16 && strncasecmp(argv[0], "DPR.CLUSTER.JOIN", 16) == 0 &&
        (argc == 4 || argc == 5))
        return cmd_join(m, argc, argv, argvlen, out);
    if (argvlen[0] == 18 && strncasecmp(argv[0], "DPR.CLUSTER.REMOVE", 18) == 0 && argc == 2)
        return cmd_remove(m, argv, argvlen, out);
    return reply_error(out, "ERR unknown cluster command or wrong number of arguments "
                            "(DPR.CLUSTER.JOIN RAFT-ADDRESS NAME FINDER-ADDRESS, "
                            "DPR.CLUSTER.REMOVE NAME)");
}

/* ---- every other agent ------------------------------------------------------ */

/* Where to send: the leader's finder first, then every peer's. */
static void targets(agent_membership *m, dpr_finders *t)
{
    const char *leader_addr = NULL;
    char text[64 * (DPR_FINDERS_MAX + 1)];
    size_t off = 0;

    agent_raft_leader(m->raft, &leader_addr);
    memset(t, 0, sizeof(*t));
    for (size_t i = 0; i <= m->npeers && off < sizeof(text); i++) {
        const char *a = i == 0 ? leader_addr : m->peers[i - 1];
        const char *colon = a ? strrchr(a, ':') : NULL;
        if (!colon)
            continue;
        off += (size_t)snprintf(text + off, sizeof(text) - off, "%s%.*s:%u", off ? "," : "",
                                (int)(colon - a), a, m->finder_port);
        if (i + 1 >= DPR_FINDERS_MAX)
            break;
    }
    if (off == 0 || off >= sizeof(text) || dpr_finders_parse(text, t, NULL) < 0)
        t->n = 0;
}

static void on_hello_done(void *arg, int status, int error, const char *text)
{
    agent_membership *m = arg;

    m->hello = NULL;
    if (status < 0)
        log_debug("cluster: no leader answered the join request: %s", strerror(-status));
    else if (error)
        log_warning("cluster: the leader refused this node: %s", text);
    else
        log_debug("cluster: the leader answered: %s", text);
}

static void hello(agent_membership *m)
{
    const agent_cstate *cs = agent_raft_cstate(m->raft);
    const agent_cstate_node *have = agent_cstate_node_find(cs, m->self.id);
    bool member = agent_raft_is_member(m->raft);
    const char *argv[5] = { "DPR.CLUSTER.JOIN", m->self.raft, m->self.name, m->self.finder,
                            m->cluster };
    dpr_finders t;

    if (m->hello)
        return;
    if (member ? have && memcmp(have, &m->self, sizeof(*have)) == 0 : !m->join)
        return; /* recorded as it is; or removed (not asking back in) */
    targets(m, &t);
    if (t.n == 0)
        return;
    if (agent_peerreq_send(m->loop, &t, m->tls, HELLO_MS, 5, argv, on_hello_done, m, &m->hello) < 0)
        m->hello = NULL;
}

/* ---- both ---------------------------------------------------------------------- */

static void on_tend(uv_timer_t *t)
{
    agent_membership *m = t->data;
    bool member;

    if (m->stopping)
        return;
    member = agent_raft_is_member(m->raft);
    if (m->was_member && !member)
        log_warning("cluster: this node is no member of the cluster any more (removed); "
                    "to join again, clear %s's Raft state and set raft.join", m->self.name);
    m->was_member = member;
    if (agent_raft_role_now(m->raft) == AGENT_RAFT_LEADER)
        tend_leader(m);
    else
        hello(m);
    uv_timer_start(&m->timer, on_tend, TEND_MS, 0);
}

int agent_membership_start(uv_loop_t *loop, agent_raft *raft,
                           const agent_membership_config *cfg, agent_membership **out)
{
    agent_membership *m = calloc(1, sizeof(*m));
    const char *colon = strrchr(cfg->finder_address, ':');

    *out = NULL;
    if (!m)
        return -ENOMEM;
    m->loop = loop;
    m->raft = raft;
    m->join = cfg->join;
    dpr_buf_init(&m->scratch);
    m->self.id = agent_raft_id_of(cfg->raft_address);
    snprintf(m->self.name, sizeof(m->self.name), "%s", cfg->name);
    snprintf(m->self.raft, sizeof(m->self.raft), "%s", cfg->raft_address);
    snprintf(m->self.finder, sizeof(m->self.finder), "%s", cfg->finder_address);
    snprintf(m->cluster, sizeof(m->cluster), "%s", cfg->cluster ? cfg->cluster : "");
    m->finder_port = colon ? (unsigned)atoi(colon + 1) : 0;
    if (cfg->finder_tls_address && cfg->tls) {
        colon = strrchr(cfg->finder_tls_address, ':');
        m->finder_port = colon ? (unsigned)atoi(colon + 1) : 0;
        m->tls = cfg->tls;
    }
    m->peers = calloc(cfg->npeers ? cfg->npeers : 1, sizeof(*m->peers));
    if (!m->peers) {
        free(m);
        return -ENOMEM;
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        if (!(m->peers[i] = strdup(cfg->peers[i]))) {
            m->timer_closed = true; /* never opened */
            agent_membership_stop(m);
            return -ENOMEM;
        }
        m->npeers++;
    }
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    m->timer_open = true;
    uv_timer_start(&m->timer, on_tend, TEND_MS, 0);
    *out = m;
    return 0;
}

int agent_membership_set_peers(agent_membership *m, const char *const *addrs, size_t n)
{
    char **v = calloc(n ? n : 1, sizeof(*v));
    size_t made = 0;

    if (!v)
        return -ENOMEM;
    for (; made < n; made++)
        if (!(v[made] = strdup(addrs[made]))) {
            while (made-- > 0)
                free(v[made]);
            free(v);
            return -ENOMEM;
        }
    for (size_t i = 0; i < m->npeers; i++)
        free(m->peers[i]);
    free(m->peers);
    m->peers = v;
    m->npeers = n;
    m->join = true;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    agent_membership *m = h->data;

    m->timer_closed = true;
    maybe_free(m);
}

void agent_membership_stop(agent_membership *m)
{
    if (!m || m->stopping)
        return;
    m->stopping = true;
    agent_peerreq_cancel(m->hello);
    agent_peerreq_cancel(m->remove);
    m->hello = m->remove = NULL;
    if (m->timer_open)
        uv_close((uv_handle_t *)&m->timer, on_timer_closed);
    else
        maybe_free(m);
}

void agent_membership_changed(agent_membership *m)
{
    if (m && !m->stopping)
        uv_timer_start(&m->timer, on_tend, 0, 0);
}

static void on_remove_done(void *arg, int status, int error, const char *text)
{
    agent_membership *m = arg;

    m->remove = NULL;
    if (status < 0)
        log_warning("cluster: the removal did not reach the leader: %s", strerror(-status));
    else if (error)
        log_warning("cluster: the leader refused the removal: %s", text);
    else
        log_notice("cluster: the leader is %s", text);
}

int agent_membership_remove(agent_membership *m, const char *name, char *what, size_t cap,
                            dpr_err *err)
{
    char addr[AGENT_RAFT_ADDRESS_MAX];
    const char *argv[2] = { "DPR.CLUSTER.REMOVE", name };
    dpr_finders t;

    if (agent_raft_role_now(m->raft) == AGENT_RAFT_LEADER)
        return remove_here(m, name, what, cap, err);
    if (!resolve(m, name, addr, sizeof(addr)))
        return dpr_err_set(err, -ENOENT, "no member named '%s' (dprctl nodes lists them)",
                           name);
    if (m->remove)
        return dpr_err_set(err, -EBUSY, "a removal is on its way to the leader: try again");
    targets(m, &t);
    if (t.n == 0 || !agent_raft_leader(m->raft, &(const char *){ NULL }))
        return dpr_err_set(err, -ENOTCONN, "no leader is known (no quorum?): nothing removed");
    if (agent_peerreq_send(m->loop, &t, m->tls, REMOVE_MS, 2, argv, on_remove_done, m, &m->remove) < 0)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    snprintf(what, cap, "removal of %s (%s) sent to the leader", name, addr);
    return 0;
}

const char *agent_membership_name_of(agent_membership *m, uint64_t id)
{
    const agent_cstate_node *n = m ? agent_cstate_node_find(agent_raft_cstate(m->raft), id)
                                   : NULL;

    return n ? n->name : NULL;
}
