/*
 * state.h - the agent's recorded state: the desired spec, the instances it
 * implies with their allocations (worker id, port) and the instances being
 * retired. This is what survives agent restarts (statefile.h) and what a
 * plan (plan.h) moves from one generation to the next.
 */
#ifndef AGENT_STATE_H
#define AGENT_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec.h"

/* "<deployment>-<shard>": 32 + 1 + 4 (room for any %u) */
#define AGENT_INSTANCE_NAME_MAX 48
/* An instance's finder registration token: 128 random bits in hex. */
#define AGENT_TOKEN_LEN 32

/* What an instance's process was last started with: the roll-out
 * (rollout.h) moves it to the instance's desired settings. */
typedef struct agent_run {
    uint64_t generation;   /* the generation of those settings */
    char impl[AGENT_SPEC_IMPL_MAX + 1];
    char version[AGENT_VERSION_MAX + 1];
    uint32_t checkpoint_interval_ms;
    uint32_t max_clients;
    uint64_t maxmemory;
    char checkpoint_mode[AGENT_CHECKPOINT_MODE_MAX + 1];
    char tls_clients[AGENT_TLS_CLIENTS_MAX + 1];
} agent_run;

typedef struct agent_instance {
    char name[AGENT_INSTANCE_NAME_MAX + 1];
    char deployment[AGENT_DEPLOY_NAME_MAX + 1];
    uint32_t shard;
    uint64_t worker;       /* stable for the instance's life; never reused */
    uint16_t port;         /* stable for the instance's life */
    /* its Prometheus endpoint's port (DPR_KV_METRICS_ADDRESS, on the host
     * it listens on), from cachestores.metrics_port_min..max; 0: none (no
     * range configured); stable while the range holds it */
    uint16_t metrics_port;
    /* the secret the instance registers with in the finder (its env file,
     * DPR_KV_FINDER_TOKEN), so that only its owner can re-register (a
     * rollback of the cluster) or remove the worker; stable for its life */
    char token[AGENT_TOKEN_LEN + 1];
    /* what reaches the process (a change is an update) */
    char impl[AGENT_SPEC_IMPL_MAX + 1];
    char version[AGENT_VERSION_MAX + 1];
    uint32_t checkpoint_interval_ms;
    uint32_t max_clients;
    uint64_t maxmemory;    /* bytes; 0: no limit */
    char checkpoint_mode[AGENT_CHECKPOINT_MODE_MAX + 1]; /* "": dpr-kv's default */
    /* the spec's tls.clients ("": not given; with the agents' TLS: required) */
    char tls_clients[AGENT_TLS_CLIENTS_MAX + 1];
    uint64_t generation;   /* the generation that gave it these settings */
    agent_run run;         /* what its process runs (a roll-out in progress: older) */
    /* when (wall clock, ms) the roll-out restarted it for its settings, while
     * it has not been available since (ready for min_ready_seconds): a
     * restarted agent goes on from there (its progress deadline, a failure
     * halts); 0: none */
    uint64_t rolled_at_ms;
    /* the finder has committed a version of this worker (its cut entry was
     * > 0): a finder that no longer knows the worker lost its state */
    bool committed;
    /* retiring entries only: its unit is stopped and its state removed
     * (what remains is forgetting the worker in the finder) */
    bool unit_retired;
    /* retiring entries only: a resize of its deployment still needs it (its
     * keys move to the remaining shards first); not stopped until then */
    bool held;
} agent_instance;

/*
 * The layout a deployment's shards were given (docs/dpr-kv.md, "Layouts
 * and resizing"), and a resize in progress. Epoch 0: not given one yet
 * (a new deployment, or one from before layouts): the agent gives epoch 1
 * once every shard runs. A resize goes from (epoch, shards) to
 * (target_epoch, target_shards); layout.c drives it.
 */
typedef struct agent_layout {
    char deployment[AGENT_DEPLOY_NAME_MAX + 1];
    uint64_t epoch;
    uint32_t shards;
    uint64_t target_epoch;  /* 0: no resize in progress */
    uint32_t target_shards;
} agent_layout;

/* A deployment's roll-out, as far as it must survive a restart. */
#define AGENT_HALT_REASON_MAX 256
typedef struct agent_rollout_rec {
    char deployment[AGENT_DEPLOY_NAME_MAX + 1];
    char halted[AGENT_HALT_REASON_MAX]; /* why it halted; "": it did not */
    uint32_t resumed;      /* the spec's rollout.resumed this node took */
    bool has_previous;
    agent_deploy previous; /* its settings before the last change: what undo applies */
} agent_rollout_rec;

typedef struct agent_state {
    uint64_t generation;   /* 0: nothing applied yet */
    /* the instances follow a cluster's placement (placement.h): only some
     * shards of a deployment may run here, worker ids come from the
     * placement (unique per deployment) */
    bool placed;
    uint64_t next_worker;  /* the next worker id to hand out (>= 1) */
    agent_spec spec;       /* the desired spec (name NULL: none yet) */
    size_t ninst;
    agent_instance *inst;  /* desired instances, sorted by name */
    size_t nretiring;
    agent_instance *retiring; /* deleted, not yet stopped and cleaned up */
    size_t nlayouts;
    agent_layout *layouts;    /* one per deployment of the spec, in spec order */
    size_t nrollouts;
    agent_rollout_rec *rollouts; /* deployments of the spec that were changed */
} agent_state;

/* An empty state: generation 0, next worker 1, no spec. */
void agent_state_init(agent_state *st);
void agent_state_free(agent_state *st);

/* Index of instance name in st->inst (or st->retiring), or -1. */
int agent_state_find(const agent_state *st, const char *name);
int agent_state_find_retiring(const agent_state *st, const char *name);
/* Removes the retiring entry (name, worker) (no-op if absent). A name may
 * retire more than once (deleted, created again, deleted again) with
 * different worker ids. */
void agent_state_drop_retiring(agent_state *st, const char *name, uint64_t worker);

/* The layout record of deployment, or NULL. */
agent_layout *agent_state_layout(const agent_state *st, const char *deployment);

/* Does in's process run other settings than in's (a roll-out must
 * restart it)? */
bool agent_instance_outdated(const agent_instance *in);
/* Its process is (re)started with its settings now: in->run follows them. */
void agent_instance_set_running(agent_instance *in);
/* *out = *in with the settings its process runs (for its instance file
 * and its unit's MemoryMax). */
void agent_instance_running_view(const agent_instance *in, agent_instance *out);
/* Would a change from a to b reach the processes (impl, version,
 * checkpoint interval, max_clients, maxmemory, checkpoint_mode, tls)? */
bool agent_deploy_process_differs(const agent_deploy *a, const agent_deploy *b);

/* The roll-out record of deployment, or NULL: a lookup. */
agent_rollout_rec *agent_state_rollout(const agent_state *st, const char *deployment);
/* The record of deployment, added (empty) when there is none: 0, -ENOMEM.
 * Adding may move the table. */
int agent_state_rollout_add(agent_state *st, const char *deployment, agent_rollout_rec **out);

/* Sorts instances by name (strcmp). */
void agent_instances_sort(agent_instance *v, size_t n);

/* A new registration token: AGENT_TOKEN_LEN lowercase hex digits of
 * getrandom(2) bytes, NUL-terminated. 0 or a negative errno. */
int agent_token_new(char out[AGENT_TOKEN_LEN + 1]);
/* Is s a token agent_token_new could have made (AGENT_TOKEN_LEN lowercase
 * hex digits)? */
bool agent_token_valid(const char *s);

#endif
