/*
 * rollout.h - the decisions of a deployment's roll-out (docs/operations.md,
 * "Roll-outs"): which of its instances on this node to restart next for new
 * settings, when the roll-out is done, paused or halted, and why. Pure: the
 * caller (reconcile.c) says what each instance runs and how it is doing,
 * and does the restarts.
 *
 * Rules: only shards >= partition are updated (a canary); in shard order,
 * never skipping one (in a cluster of agents, over the instances of every
 * node: an instance on another node that is still to be updated holds the
 * later shards here); an instance that is ready costs one of
 * max_unavailable to restart, one that is not ready (down already) costs
 * nothing; an instance the roll-out restarted counts as unavailable until
 * it has been ready for min_ready_seconds; one that fails, or is not ready
 * within progress_deadline_seconds of its restart, halts the roll-out (the
 * reason says which and why); paused or halted, nothing is restarted.
 */
#ifndef AGENT_ROLLOUT_H
#define AGENT_ROLLOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec.h"

/* One instance of the deployment, as the caller sees it now. */
typedef struct agent_ro_inst {
    uint32_t shard;
    bool outdated;           /* its process does not run the desired settings */
    bool busy;               /* a start or restart is in flight */
    bool ready;              /* running and ready */
    bool failed;             /* its unit failed, restarts, or it says it failed */
    uint64_t ready_since_ms; /* when it became ready (monotonic; 0: not ready) */
    uint64_t rolled_ms;      /* when the roll-out restarted it (0: it did not, or
                                before the agent started) */
    /* on another node of a cluster of agents: its node restarts it (never
     * in next[]); an outdated one that is due holds the shards after it
     * here; ready means available there (ready for min_ready_seconds) */
    bool remote;
} agent_ro_inst;

typedef enum agent_ro_phase {
    AGENT_RO_DONE = 0,    /* every instance it updates runs the settings and is available */
    AGENT_RO_PROGRESSING, /* restarting, or waiting for an updated instance */
    AGENT_RO_PAUSED,      /* rollout.paused: instances left to update wait */
    AGENT_RO_HALTED,      /* an updated instance failed: nothing more is restarted */
} agent_ro_phase;

#define AGENT_RO_REASON_MAX 256

typedef struct agent_ro_step {
    agent_ro_phase phase;
    size_t nrestart;      /* how many indices next[] holds: restart those now */
    int halt;             /* the index whose failure halts the roll-out now; -1 none */
    char reason[AGENT_RO_REASON_MAX]; /* why it halts (halt >= 0) */
    uint64_t wake_ms;     /* decide again at this time even without events; 0: no need */
    size_t targets;       /* instances the roll-out updates (shard >= partition) */
    size_t updated;       /* of those, how many run the settings */
    size_t unavailable;   /* instances not available (after the restarts of next[]) */
} agent_ro_step;

/* "done", "progressing", "paused", "halted". */
const char *agent_ro_phase_name(agent_ro_phase p);

/*
 * The next step over v[0..n), in ascending shard order (asserted), with
 * the deployment's rollout settings ro; halted: the roll-out was halted
 * before (only a new apply, resume or undo lifts that); now_ms: the
 * monotonic clock. next must have room for n indices into v. name is the
 * deployment's (for the reason). 0 and *out; -EINVAL for a NULL argument.
 */
int agent_rollout_step(const char *name, const agent_ro_inst *v, size_t n,
                       const agent_rollout_spec *ro, bool halted, uint64_t now_ms, size_t *next,
                       agent_ro_step *out);

#endif
