/* rollout.c - see rollout.h. */
#include "rollout.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *agent_ro_phase_name(agent_ro_phase p)
{
    switch (p) {
    case AGENT_RO_DONE: return "done";
    case AGENT_RO_PROGRESSING: return "progressing";
    case AGENT_RO_PAUSED: return "paused";
    case AGENT_RO_HALTED: return "halted";
    }
    return "unknown";
}

static void wake_at(agent_ro_step *s, uint64_t t)
{
    if (!s->wake_ms || t < s->wake_ms)
        s->wake_ms = t;
}

/* Restarted by the roll-out and ready for less than min_ready? */
static bool settling(const agent_ro_inst *in, uint64_t min_ready_ms, uint64_t now_ms)
{
    return in->rolled_ms && in->ready && now_ms - in->ready_since_ms < min_ready_ms;
}

/* An updated instance that failed or missed its deadline: the reason. */
static bool check_halt(const char *name, const agent_ro_inst *in, uint64_t deadline_ms,
                       uint64_t now_ms, agent_ro_step *s)
{
    if (!in->rolled_ms || in->outdated || in->ready || in->remote)
        return false;
    if (in->failed) {
        snprintf(s->reason, sizeof(s->reason), "%s-%u failed after its update (see its "
                 "last_error and the journal); undo, or apply a fix", name, in->shard);
        return true;
    }
    if (now_ms - in->rolled_ms >= deadline_ms) {
        snprintf(s->reason, sizeof(s->reason), "%s-%u was not ready within %llu s of its "
                 "update (progress_deadline_seconds); undo, or apply a fix", name, in->shard,
                 (unsigned long long)(deadline_ms / 1000));
        return true;
    }
    wake_at(s, in->rolled_ms + deadline_ms);
    return false;
}

int agent_rollout_step(const char *name, const agent_ro_inst *v, size_t n,
                       const agent_rollout_spec *ro, bool halted, uint64_t now_ms, size_t *next,
                       agent_ro_step *out)
{
    uint64_t min_ready_ms, deadline_ms;
    size_t pending = 0;
    bool waiting = false;

    if (!name || (!v && n) || !ro || !next || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->halt = -1;
    min_ready_ms = (uint64_t)ro->min_ready_seconds * 1000u;
    deadline_ms = (uint64_t)ro->progress_deadline_seconds * 1000u;
    for (size_t i = 0; i < n; i++) {
        const agent_ro_inst *in = &v[i];
        bool target = in->shard >= ro->partition;
        assert(i == 0 || v[i - 1].shard < in->shard); /* ascending shard order */
        if (!in->ready || in->busy || settling(in, min_ready_ms, now_ms))
            out->unavailable++;
        if (settling(in, min_ready_ms, now_ms)) {
            wake_at(out, in->ready_since_ms + min_ready_ms);
            waiting = true;
        }
        if (in->rolled_ms && !in->outdated && (!in->ready || in->busy))
            waiting = true;
        if (!target)
            continue;
        out->targets++;
        if (in->outdated)
            pending++;
        else
            out->updated++;
        if (!halted && out->halt < 0 && check_halt(name, in, deadline_ms, now_ms, out))
            out->halt = (int)i;
    }
    if (halted || out->halt >= 0) {
        out->phase = AGENT_RO_HALTED;
        out->wake_ms = 0;
        return 0;
    }
    if (pending == 0) {
        out->phase = waiting ? AGENT_RO_PROGRESSING : AGENT_RO_DONE;
        return 0;
    }
    if (ro->paused) {
        out->phase = AGENT_RO_PAUSED;
        return 0;
    }
    out->phase = AGENT_RO_PROGRESSING;
    /* in shard order, never skipping one that must wait */
    for (size_t i = 0; i < n; i++) {
        const agent_ro_inst *in = &v[i];
        if (in->shard < ro->partition || !in->outdated)
            continue;
        if (in->busy || in->remote)
            break; /* (another node's: its node restarts it first) */
        if (in->ready) {
            if (out->unavailable >= ro->max_unavailable)
                break;
            out->unavailable++; /* it goes down now */
        }
        assert(out->nrestart < n);
        next[out->nrestart++] = i;
    }
    return 0;
}
