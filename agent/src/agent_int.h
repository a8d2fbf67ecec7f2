/*
 * agent_int.h - the agent's internal state, shared by agent.c (lifecycle,
 * operations), reconcile.c (units) and report.c (status, events).
 */
#ifndef AGENT_AGENT_INT_H
#define AGENT_AGENT_INT_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent.h"
#include "config.h"
#include "control.h"
#include "dpr/err.h"
#include "agenttls.h"
#include "common/finders.h"
#include "finderhost.h"
#include "health.h"
#include "layout.h"
#include "plan.h"
#include "membership.h"
#include "raftnode.h"
#include "rollout.h"
#include "state.h"
#include "units.h"

/* What the agent last told about one domain of the finder (events). */
typedef struct finder_dom {
    char name[DPR_DOMAIN_MAX + 1];
    uint64_t world_line, max_version;
    uint64_t last_event_ms; /* dpr_mono_ms() */
    bool pending;           /* a max_version change waits for its event */
    bool seen;              /* still in the finder (a sweep's mark) */
} finder_dom;

/* What the agent knows and wants of one unit (by instance name). */
typedef struct inst_rt {
    char name[AGENT_INSTANCE_NAME_MAX + 1];
    bool watched;          /* properties requested on this connection */
    bool known;            /* ActiveState received */
    /* the first half of a change (AGENT_UP_FIRST_HALF) changed the state
     * or restarts, the main PID */
    bool half_state, half_pid;
    agent_unit_props props;
    char last_error[320 + AGENT_STATUS_TEXT_MAX];
    agent_health health;   /* derived from the unit and its StatusText; reported */
    char fail_text[AGENT_STATUS_TEXT_MAX]; /* the last "failed: ..." StatusText */
    bool want_start;       /* start it if it is not running */
    bool want_reload;      /* reload it if it runs (the agent's TLS files were reloaded:
                              its copies are new, insttls.h) */
    bool waits_hand_over;  /* last_error says it waits for its worker's hand-over */
    bool restart_pending;  /* restart it in rolling order although its settings are
                              those it runs (its instance file is newer) */
    uint64_t ready_since_ms; /* dpr_mono_ms() when it became ready; 0: not ready */
    uint64_t rolled_ms;    /* dpr_mono_ms() when the roll-out restarted it; 0: not yet */
    /* how often it went into failed, auto-restart or the failed health;
     * the count when the roll-out restarted it (a new failure halts it) */
    uint64_t fail_seq, fail_seq_rolled;
    bool roll_reset;       /* the roll-out's reset of systemd's start limit is in flight */
    bool roll_reset_done;  /* ... and done: restart it */
    /* a resume lifted the halt: systemd's start limit (which the failing
     * version used up) is reset first, then the failures count anew */
    bool retry_reset, retry_resetting;
    bool in_flight;        /* an operation was issued, not yet done */
    agent_unit_op op;
    int retire_step;       /* for a retiring unit: 0 stop, 1 clean, 2 done */
    uint64_t memory_max_want;    /* the MemoryMax being set */
    uint64_t memory_max_refused; /* a MemoryMax systemd refused (not tried again); 0 none */
    bool retry_later;      /* an operation failed: the retry timer tries again */
} inst_rt;

struct agent {
    uv_loop_t *loop;
    agent_config *cfg;     /* (node.address of an interface follows it: nodenet.c) */
    agent_hooks hooks;
    char state_path[PATH_MAX];
    int lock_fd;
    agent_state st;
    agent_control *ctl;
    agent_units *units;
    agent_finder *finder;
    agent_raft *raft;      /* a cluster's Raft member; NULL on a single node */
    agent_tls *tls;        /* tls.enabled: the contexts of the links between agents */
    agent_membership *membership; /* a cluster: joining, hello, removal */
    /* what the events last told of the Raft member: role, term, leader,
     * and the members (their ids) */
    char raft_told[160];
    uint64_t *members;
    size_t nmembers;
    /* the cluster's spec record (clusterspec.c) */
    struct cluster_waiter *spec_waiters; /* callers of apply/delete waiting */
    uint64_t spec_adopted;  /* the record generation this node took */
    uint64_t spec_refused;  /* one it could not take (logged once) */
    json_t *spec_adopted_reply; /* taking spec_adopted: its plan here (the answer to
                                 * an apply answered after this node took it) */
    json_t *spec_proposed;  /* the leader's newest record, maybe not committed */
    agent_placement placement; /* of the record this node took (none: n == 0) */
    uint64_t lead_since_ms; /* when this node's finder began to serve (0: it does not) */
    struct agent_peerreq *insts_req; /* this node's instance record on its way */
    /* a follower asking the leader's finder to forget a retired worker */
    struct agent_peerreq *retire_req;
    char retire_name[AGENT_INSTANCE_NAME_MAX + 1];
    uint64_t retire_worker;
    char *insts_sent;       /* the record last sent */
    bool insts_dirty;       /* the record may differ from insts_sent */
    uint64_t insts_sent_ms;
    agent_layouts *layouts; /* layouts and resizes (layout.c) */
    struct agent_replica *replica; /* checkpoint replication (a cluster, replica.c) */
    struct agent_discovery *discovery; /* DNS-SD (discovery.h); NULL: disabled */
    struct agent_netwatch *net; /* node.address's link and address; NULL: not watched */
    uv_timer_t publish_timer; /* agent_publish_update every PUBLISH_TICK_MS */
    /* a fresh node bootstrapping from what DNS-SD found: the set it would
     * bootstrap (a hash) and since when it has not changed (uv_now) */
    uint64_t boot_key, boot_since;
    uint64_t join_key;        /* the agents last given to membership (a hash) */
    inst_rt *rt;
    size_t nrt, caprt;
    /* the roll-out phase last told per deployment (events), in spec order */
    struct agent_ro_told *ro_phase;
    size_t nro_phase;
    uv_timer_t rollout_timer; /* decides again (min_ready_seconds, deadlines) */
    uint64_t event_seq;
    /* finder events, per domain */
    finder_dom *doms;
    size_t ndoms;
    uv_timer_t finder_timer;
    uv_timer_t retry_timer; /* failed unit operations, blocked retirements */
    uv_timer_t cluster_timer; /* a cluster: agent_cluster_tick every CLUSTER_TICK_MS */
    unsigned cluster_ticks;   /* how many ran (the replica tick runs every 4th) */
    bool start_gated;         /* an instance waits for its worker's hand-over in the
                                 finder (agent_cluster_may_start), or a roll-out for
                                 another node's instance: reconcile at the next
                                 cluster tick */
    bool timers_open;
    bool stopping;
    char status_text[512];
    /* the finder does not know workers it had committed versions of */
    size_t finder_lost;    /* how many desired instances */
    char finder_lost_first[AGENT_INSTANCE_NAME_MAX + 1];
    /* metrics.c: the endpoint (metrics.address; NULL: none), control
     * requests answered per op */
    struct dpr_http_server *metrics;
    uint64_t control_requests[AGENT_OP_COUNT];
};

/* agent.c */
/* The runtime entry of instance name, or NULL: a lookup, never allocates. */
inst_rt *agent_rt_find(agent *a, const char *name);
/* The entry of name, added (zeroed) when there is none; NULL on ENOMEM.
 * Adding may move the table: pointers from earlier calls become invalid. */
inst_rt *agent_rt_ensure(agent *a, const char *name);
/* Parses spec_json against this node's rules and plans it (dry: only
 * says what would change) like `apply`: the control reply (id may be
 * NULL). placement: in a cluster, the instances placed here and their
 * worker ids (plan.h, agent_alloc); NULL on one node. */
json_t *agent_apply_json(agent *a, json_t *id, const json_t *spec_json,
                         const agent_placement *placement, bool dry, const char *event);
/* Saves st durably (the error is logged too). */
int agent_save_state(agent *a, const agent_state *st, dpr_err *err);
int agent_write_env(agent *a, const agent_instance *in);
/* How in's port asks clients for certificates, its deployment's
 * tls.clients ("required" when not given): NULL when the agents' TLS is
 * off (its port is plain). */
const char *agent_instance_tls(const agent *a, const agent_instance *in);
void agent_update_status(agent *a);

/* reconcile.c */
void agent_reconcile(agent *a);
void agent_on_units_connected(void *arg, bool up, const char *why);
void agent_on_unit_props(void *arg, const char *instance, const agent_unit_props *p);
void agent_on_unit_done(void *arg, const char *instance, agent_unit_op op, const char *ename,
                        const char *emsg);
void agent_retire_in_finder(agent *a);
/* Where a peer request (peerreq.h) goes: every member's finder TLS port
 * with TLS (*tls = &a->tls), else its plain port (*tls NULL). 0 or
 * -EINVAL (no address yet). */
int agent_peer_targets(agent *a, dpr_finders *t, agent_tls *const **tls);
/* Halts deployment's roll-out with reason (recorded, logged, an event);
 * NULL lifts the halt. */
void agent_set_halted(agent *a, const char *deployment, const char *reason);
/* deployment's halt was lifted (`rollout resume`): its instances that the
 * roll-out restarted and that are not available count from now (their
 * progress deadline anew, only a new failure halts), and are started. */
void agent_rollout_retry(agent *a, const char *deployment);
/* The roll-out step of deployment on this node now (rollout.h), without
 * acting on it; 0, or -ENOENT when it has no instances here. */
int agent_rollout_now(agent *a, const agent_deploy *dep, agent_ro_step *out);
/* The "rollout" part of a deployment's status: phase, progress, paused,
 * halted and why, and whether undo has a previous spec. */
json_t *agent_rollout_json(agent *a, const agent_deploy *dep);

/* nodenet.c */
/* Watches node.address (an interface: resolves it into cfg first). 0, or
 * a negative errno with a message (an interface without an address). */
int agent_net_start(agent *a, dpr_err *err);
void agent_net_stop(agent *a);
/* The network part of status. */
json_t *agent_net_json(agent *a);
/* Has the node lost its address or link? *reason says how. */
bool agent_net_degraded(agent *a, const char **reason);

/* publish.c */
/* How often the records are brought up to date (cheap when unchanged). */
#define PUBLISH_TICK_MS 250
/* Hands discovery what this node publishes now (a no-op when unchanged). */
void agent_publish_update(agent *a);
/* What a node without a seed list makes of the agents DNS-SD found:
 * bootstraps a new cluster with them (raft.expect), or asks them to add it
 * (raft.join, or left out of the bootstrap). */
void agent_publish_peers(agent *a);
/* The discovery part of status. */
json_t *agent_discovery_json(agent *a);

/* report.c */
json_t *agent_status_json(agent *a, const char *deployment);
json_t *agent_nodes_json(agent *a);
void agent_emit(agent *a, const char *type, json_t *fields); /* steals fields */
void agent_emit_instance(agent *a, const inst_rt *rt);
void agent_on_finder_commit(void *arg);
/* Takes note of every domain's world-line and max version (at start: no
 * events for what was there before). */
void agent_note_finder(agent *a);
bool agent_rt_ready(const inst_rt *rt);
/* The finder's core of deployment's domain (its name), or NULL when the
 * finder has none (yet). */
dpr_finder *agent_domain(agent *a, const char *deployment);
/* Marks instances whose versions the finder committed, and finds those it
 * no longer knows (its state was lost): logs, events and status on change. */
void agent_check_finder(agent *a);
/* Did the finder commit versions of in's worker and no longer know it? */
bool agent_worker_lost(agent *a, const agent_instance *in);
/* A new health of rt (already in rt->health): log, event, status. */
void agent_report_health(agent *a, inst_rt *rt, agent_health before);
/* The Raft member's view changed: a "raft" event for a new role, term or
 * leader, "node" events for members that joined or left. */
void agent_note_raft(agent *a);

/* metrics.c */
/* Serves metrics.address when set: 0, or a negative errno with *err. */
int agent_metrics_start(agent *a, dpr_err *err);
/* Closes the endpoint (at stop). */
void agent_metrics_stop(agent *a);

#endif
