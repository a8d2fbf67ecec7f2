/*
 * raftnode.h - this agent's member of the cluster's Raft group (c-raft on
 * the agent's libuv loop, TCP transport), whose log holds the replicated
 * cluster state (cstate.h).
 *
 * Membership: a fresh node bootstraps the configuration made of its own
 * address and its peers (agent.conf raft.peers), the same on every node:
 * the first 5 addresses in byte order are voters, the others standbys.
 * A fresh node with raft.join instead bootstraps nothing and waits until
 * the leader adds it (membership.c asks for that). A node's Raft id is the
 * FNV-1a hash of its Raft address. A node that has a log already starts
 * from it (the seed list then changes nothing).
 *
 * Everything here runs on the loop thread (c-raft's API is loop-only).
 * c-raft writes to peers' sockets: the program must ignore SIGPIPE.
 */
#ifndef AGENT_RAFTNODE_H
#define AGENT_RAFTNODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cstate.h"
#include "dpr/err.h"

#define AGENT_RAFT_MAX_VOTERS 5
#define AGENT_RAFT_ADDRESS_MAX 64

typedef struct agent_raft agent_raft;

typedef struct agent_raft_config {
    const char *dir;              /* the log and snapshots (created, mode 0700) */
    const char *address;          /* this node: "IPV4:PORT" */
    char *const *peers;           /* the others' addresses */
    size_t npeers;
    unsigned election_ms, heartbeat_ms;
    bool join;                    /* a fresh node waits to be added */
    /* no seed list: a fresh node does not start until agent_raft_begin
     * (its agent finds the others by DNS-SD) */
    bool wait_for_peers;
    /* mutual TLS on every Raft connection (rafttls.h); NULL: plain TCP.
     * Kept alive by the caller (agent_raft_set_tls replaces it). */
    const struct agent_tls *tls;
} agent_raft_config;

typedef struct agent_raft_hooks {
    /* This node's role, the leader, the term or the configuration (its
     * members) changed (noticed within a heartbeat; also called once the
     * node starts). */
    void (*changed)(void *arg);
    /* Entries were applied to the replicated state (cstate.h's `changes`
     * moved; noticed within a heartbeat). */
    void (*applied)(void *arg);
    void *arg;
} agent_raft_hooks;

typedef enum agent_raft_role {
    AGENT_RAFT_UNAVAILABLE,
    AGENT_RAFT_FOLLOWER,
    AGENT_RAFT_CANDIDATE,
    AGENT_RAFT_LEADER,
} agent_raft_role;

typedef enum agent_raft_vote {
    AGENT_RAFT_STANDBY, /* replicates the log, no vote */
    AGENT_RAFT_VOTER,
    AGENT_RAFT_SPARE,   /* neither */
} agent_raft_vote;

typedef struct agent_raft_member {
    uint64_t id;
    char address[AGENT_RAFT_ADDRESS_MAX];
    agent_raft_vote vote;
    const char *role;  /* "voter", "standby", "spare" */
    bool leader;
    /* ms since this node last heard from it (the leader: from every
     * member; a follower: from the leader); -1 unknown; 0 for itself */
    int64_t last_contact_ms;
} agent_raft_member;

/* The end of a request: 0, -ENOTCONN (not the leader, or it lost its
 * leadership before the entry committed: nothing is known of it), -ENOMEM,
 * -EIO (another c-raft failure, logged). */
typedef void (*agent_raft_done_fn)(void *arg, int status);

/* Starts the member. 0 or a negative errno with a message in err (then
 * *out is NULL and nothing is left on the loop). */
int agent_raft_open(uv_loop_t *loop, const agent_raft_config *cfg,
                    const agent_raft_hooks *hooks, agent_raft **out, dpr_err *err);
/* New Raft connections use tls (a member opened with TLS only); open
 * ones keep the certificates they were made with. */
void agent_raft_set_tls(agent_raft *r, const struct agent_tls *tls);
/* Is the member new and waiting for agent_raft_begin (wait_for_peers)? */
bool agent_raft_waiting(const agent_raft *r);
/* Starts a waiting member: join, or bootstrap a new cluster of this node
 * and peers (the same list on every node bootstrapping it). 0, -EALREADY
 * (not waiting), or another negative errno with a message in err (the
 * member stays waiting). */
int agent_raft_begin(agent_raft *r, char *const *peers, size_t npeers, bool join, dpr_err *err);
/* Leaves the group (c-raft closes on the loop; the memory goes by itself
 * afterwards). Requests in flight end with -ENOTCONN. NULL: nothing. */
void agent_raft_close(agent_raft *r);

agent_raft_role agent_raft_role_now(agent_raft *r);
const char *agent_raft_role_name(agent_raft_role role);
uint64_t agent_raft_id(const agent_raft *r);
uint64_t agent_raft_term(agent_raft *r);
/* The leader as this node knows it: 0 and *address NULL when none. */
uint64_t agent_raft_leader(agent_raft *r, const char **address);
/* The configuration's members (at most cap into m): how many there are. */
size_t agent_raft_members(agent_raft *r, agent_raft_member *m, size_t cap);
/* Is this node in the configuration (a new joiner, or a removed node,
 * is not)? */
bool agent_raft_is_member(agent_raft *r);
/* The Raft id of an address (the FNV-1a hash of its text, never 0). */
uint64_t agent_raft_id_of(const char *address);

/* The replicated state as applied on this node. */
const agent_cstate *agent_raft_cstate(const agent_raft *r);

/* Appends an entry (cstate.h type and payload) and calls done once it is
 * committed and applied here, or failed. 0 if started; else a negative
 * errno (-ENOTCONN: not the leader) and done is never called. */
int agent_raft_apply(agent_raft *r, int type, const void *payload, size_t len,
                     agent_raft_done_fn done, void *arg);
/* A barrier: done(0) once every entry before it is committed and applied
 * here and this node was still the leader of a quorum then. */
int agent_raft_barrier(agent_raft *r, agent_raft_done_fn done, void *arg);

/* Membership changes (leader only; one at a time: -EBUSY while another
 * runs). add: the new member joins as a spare and is then given vote
 * (voter or standby); done once both steps committed. assign: a member's
 * vote. remove: a member leaves the configuration. -ENOTCONN: not the
 * leader; -EEXIST: already a member (add); -ENOENT: not a member. */
int agent_raft_add(agent_raft *r, uint64_t id, const char *address, agent_raft_vote vote,
                   agent_raft_done_fn done, void *arg);
int agent_raft_assign(agent_raft *r, uint64_t id, agent_raft_vote vote,
                      agent_raft_done_fn done, void *arg);
int agent_raft_remove(agent_raft *r, uint64_t id, agent_raft_done_fn done, void *arg);

/*
 * The snapshot threshold (entries) after `entries` entries carried `bytes`
 * bytes of state machine commands: halfway from current towards about
 * 64 MiB of log between snapshots (barriers count as entries without
 * bytes), within 1024..262144; current when entries < 64. Pure.
 */
unsigned agent_raft_tune_threshold(unsigned current, uint64_t bytes, uint64_t entries);

#endif
