/* reconcile.c - makes systemd's units follow the recorded state: starts
 * and adopts desired instances, restarts updated ones one at a time per
 * deployment, stops and cleans up retiring ones, and forgets retired
 * workers in the finder (in their deployment's domain). Driven by events
 * only: apply/delete, unit property changes, job ends, (re)connection,
 * finder commits; plus a retry timer for operations that failed. */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent_int.h"
#include "clusterspec.h"
#include "common/clock.h"
#include "common/finders.h"
#include "common/log.h"
#include "common/msgid.h"
#include "envfile.h"
#include "log_instance.h"
#include "peerreq.h"

#define RETRY_MS 5000

/* The phase last told of a deployment's roll-out (an event per change). */
struct agent_ro_told {
    char deployment[AGENT_DEPLOY_NAME_MAX + 1];
    agent_ro_phase phase;
};

static bool is_halted(const agent *a, const char *deployment)
{
    const agent_rollout_rec *r = agent_state_rollout(&a->st, deployment);

    return r && r->halted[0];
}

void agent_set_halted(agent *a, const char *deployment, const char *reason)
{
    agent_rollout_rec *r = agent_state_rollout(&a->st, deployment);

    if (!reason && (!r || !r->halted[0]))
        return;
    if (!r) {
        int d = a->st.spec.name ? agent_spec_find(&a->st.spec, deployment) : -1;
        if (agent_state_rollout_add(&a->st, deployment, &r) < 0) {
            log_error("deployment '%s': cannot record its roll-out: out of memory", deployment);
            return;
        }
        /* (a resume from now on lifts it, not the count taken before) */
        r->resumed = d >= 0 ? a->st.spec.d[d].rollout.resumed : 0;
    }
    snprintf(r->halted, sizeof(r->halted), "%s", reason ? reason : "");
    char dep_field[160];
    const char *fields[] = { dep_field, reason ? DPR_MSGID_FIELD(DPR_MSGID_ROLLOUT_HALTED)
                                               : DPR_MSGID_FIELD(DPR_MSGID_ROLLOUT_RESUMED),
                             NULL };
    snprintf(dep_field, sizeof(dep_field), "DPR_DEPLOYMENT=%s", deployment);
    if (reason) {
        dpr_log_fields(DPR_LOG_ERR, fields, "deployment '%s': roll-out halted: %s", deployment,
                       reason);
        agent_emit(a, "rollout", json_pack("{s:s, s:s, s:s}", "deployment", deployment,
                                           "phase", "halted", "reason", reason));
    } else {
        dpr_log_fields(DPR_LOG_INFO, fields, "deployment '%s': roll-out resumed", deployment);
    }
    agent_save_state(a, &a->st, NULL); /* (logged; the halt holds in memory) */
}

static void on_retry(uv_timer_t *t)
{
    agent *a = t->data;

    for (size_t i = 0; i < a->nrt; i++)
        a->rt[i].retry_later = false;
    agent_reconcile(a);
    agent_retire_in_finder(a);
}

static void retry_soon(agent *a)
{
    if (a->timers_open && !uv_is_active((uv_handle_t *)&a->retry_timer))
        uv_timer_start(&a->retry_timer, on_retry, RETRY_MS, 0);
}

static bool state_is(const inst_rt *rt, const char *s)
{
    return strcmp(rt->props.active_state, s) == 0;
}

/* Running or on its way there (systemd's own restarts included). */
static bool running(const inst_rt *rt)
{
    return state_is(rt, "active") || state_is(rt, "activating") || state_is(rt, "reloading");
}

/* A retiring unit of this name still has to be stopped and cleaned. */
static bool retiring_blocks(const agent *a, const char *name)
{
    for (size_t i = 0; i < a->st.nretiring; i++)
        if (!a->st.retiring[i].unit_retired && strcmp(a->st.retiring[i].name, name) == 0)
            return true;
    return false;
}

static int issue(agent *a, inst_rt *rt, agent_unit_op op)
{
    int rc;

    /* one operation at a time per unit (ready_to_act); a desired instance
     * starts only once the retiring unit of its name is gone */
    assert(!rt->in_flight);
    assert((op != AGENT_UNIT_START && op != AGENT_UNIT_RESTART) || !retiring_blocks(a, rt->name));
    if (op == AGENT_UNIT_SET_MEMORY_MAX)
        rc = agent_units_set_memory_max(a->units, rt->name, rt->memory_max_want);
    else
        rc = agent_units_request(a->units, rt->name, op);
    if (rc < 0) {
        snprintf(rt->last_error, sizeof(rt->last_error), "cannot %s the unit: %s",
                 agent_unit_op_name(op), strerror(-rc));
        agent_log_instance(DPR_LOG_WARNING, rt->name, "%s", rt->last_error);
        rt->retry_later = true;
        retry_soon(a);
        return rc;
    }
    if (op == AGENT_UNIT_SET_MEMORY_MAX && rt->memory_max_want == AGENT_MEMORY_MAX_NONE)
        agent_log_instance(DPR_LOG_INFO, rt->name, "removing the MemoryMax of "
                           "dpr-cachestore@%s.service (no maxmemory)", rt->name);
    else if (op == AGENT_UNIT_SET_MEMORY_MAX)
        agent_log_instance(DPR_LOG_INFO, rt->name, "setting MemoryMax=%llu of "
                           "dpr-cachestore@%s.service", (unsigned long long)rt->memory_max_want,
                           rt->name);
    else
        agent_log_instance(DPR_LOG_INFO, rt->name, "%s dpr-cachestore@%s.service",
                           op == AGENT_UNIT_START     ? "starting"
                           : op == AGENT_UNIT_RESTART ? "restarting"
                           : op == AGENT_UNIT_STOP    ? "stopping"
                           : op == AGENT_UNIT_CLEAN   ? "removing the state of"
                           : op == AGENT_UNIT_RELOAD  ? "reloading"
                                                      : "resetting the failed state of",
                           rt->name);
    rt->in_flight = true;
    rt->op = op;
    return 0;
}

/* Common gate: the unit's state is known and nothing is in flight. */
static bool ready_to_act(agent *a, inst_rt *rt)
{
    if (rt->in_flight || rt->retry_later)
        return false;
    if (!rt->watched) {
        if (agent_units_watch(a->units, rt->name) == 0)
            rt->watched = true;
        return false;
    }
    return rt->known;
}

/* Did the instance file change after the running process started (an
 * update the agent did not finish rolling out before it stopped)? */
static bool env_newer_than_process(agent *a, const inst_rt *rt)
{
    char path[PATH_MAX];
    struct stat sb;
    uint64_t mtime;

    if (!(rt->props.have & AGENT_UP_STARTED) || rt->props.started_usec == 0)
        return false;
    if (snprintf(path, sizeof(path), "%s/%s.env", a->cfg->instance_dir, rt->name) >=
            (int)sizeof(path) ||
        stat(path, &sb) < 0)
        return false;
    mtime = (uint64_t)sb.st_mtim.tv_sec * 1000000u + (uint64_t)sb.st_mtim.tv_nsec / 1000u;
    return mtime > rt->props.started_usec;
}

/*
 * The unit's MemoryMax is the one the instance's maxmemory implies (spec.h,
 * agent_memory_max_of), or systemd refused that value once (the instance
 * runs without it: last_error says so). Otherwise sets it (an operation in
 * flight) and returns false: the caller acts when it is done.
 */
static bool memory_max_set(agent *a, const agent_instance *in, inst_rt *rt)
{
    /* what its process runs (a roll-out restarts it for new settings) */
    uint64_t want = agent_memory_max_of(in->run.maxmemory, in->run.max_clients);

    if (!(rt->props.have & AGENT_UP_MEMORY_MAX) || rt->props.memory_max == want ||
        rt->memory_max_refused == want)
        return true;
    rt->memory_max_want = want;
    issue(a, rt, AGENT_UNIT_SET_MEMORY_MAX);
    return false;
}

static void start_or_adopt(agent *a, const agent_instance *in, inst_rt *rt)
{
    if (rt->retry_reset && ready_to_act(a, rt)) {
        /* (its restarts by systemd may have used up the start limit: a
         * start would fail at once) */
        if (issue(a, rt, AGENT_UNIT_RESET_FAILED) == 0) {
            rt->retry_reset = false;
            rt->retry_resetting = true;
        }
        return; /* then start it (done) */
    }
    if (rt->want_reload && !rt->want_start && ready_to_act(a, rt)) {
        /* new copies of the TLS files: its new connections take them */
        if (!running(rt) || issue(a, rt, AGENT_UNIT_RELOAD) == 0)
            rt->want_reload = false;
        return;
    }
    if (!rt->want_start || !ready_to_act(a, rt))
        return;
    if (running(rt)) {
        rt->want_start = false; /* adopted as it is */
        if (!rt->restart_pending && env_newer_than_process(a, rt)) {
            agent_log_instance(DPR_LOG_INFO, rt->name, "runs with older settings than its "
                               "instance file: restarting it (rolling)");
            rt->restart_pending = true;
        } else if (!rt->restart_pending) {
            memory_max_set(a, in, rt); /* its process has this maxmemory: the limit, live */
        }
        return;
    }
    if (state_is(rt, "deactivating"))
        return; /* wait until it is down */
    if (!agent_cluster_may_start(a, in)) {
        /* moved here: the leader hands its worker over first; or an old
         * incarnation, which retires once this node has the placement */
        snprintf(rt->last_error, sizeof(rt->last_error), "not started: the finder holds "
                 "another token for worker %llu (moved here: waiting for the hand-over)",
                 (unsigned long long)in->worker);
        rt->waits_hand_over = true;
        a->start_gated = true; /* asked again at the next cluster tick */
        return;
    }
    if (rt->waits_hand_over) {
        rt->waits_hand_over = false;
        rt->last_error[0] = '\0';
    }
    if (agent_write_env(a, in) < 0) {
        rt->want_start = false;
        return;
    }
    if (state_is(rt, "failed")) {
        issue(a, rt, AGENT_UNIT_RESET_FAILED); /* then start (see done) */
        return;
    }
    if (!memory_max_set(a, in, rt))
        return; /* then start (see done) */
    if (issue(a, rt, AGENT_UNIT_START) == 0)
        rt->want_start = false;
}

/* Failed, or systemd restarts it, or it says it failed. */
static bool inst_failed(const inst_rt *rt)
{
    return state_is(rt, "failed") || strcmp(rt->props.sub_state, "auto-restart") == 0 ||
           rt->health == AGENT_HEALTH_FAILED;
}

static int by_shard(const void *x, const void *y)
{
    const agent_instance *a = *(const agent_instance *const *)x;
    const agent_instance *b = *(const agent_instance *const *)y;

    return a->shard < b->shard ? -1 : a->shard > b->shard;
}

typedef struct ro_entry {
    agent_instance *in; /* NULL: on another node */
    agent_ro_inst ro;
} ro_entry;

static int by_entry_shard(const void *x, const void *y)
{
    const ro_entry *a = x, *b = y;

    if (a->ro.shard != b->ro.shard)
        return a->ro.shard < b->ro.shard ? -1 : 1;
    return (a->in == NULL) - (b->in == NULL); /* this node's first */
}

/* In a cluster of agents: dep's instances on the other nodes (their
 * instance records) join *v (NULL entries) and *ro, in shard order; a
 * shard known here too is this node's. */
static int add_remote(agent *a, const agent_deploy *dep, agent_instance ***v,
                      agent_ro_inst **ro, size_t *n)
{
    agent_ro_inst *rem = NULL;
    ro_entry *all = NULL;
    size_t nrem = 0, k = 0;
    int rc = 0;

    if (!a->raft || !a->placement.n)
        return 0;
    rem = calloc(dep->shards, sizeof(*rem));
    if (!rem)
        return -ENOMEM;
    nrem = agent_cluster_remote_instances(a, dep, rem, dep->shards);
    if (!nrem)
        goto out;
    all = calloc(*n + nrem, sizeof(*all));
    if (!all) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < *n; i++)
        all[i] = (ro_entry){ (*v)[i], (*ro)[i] };
    for (size_t i = 0; i < nrem; i++)
        all[*n + i] = (ro_entry){ NULL, rem[i] };
    qsort(all, *n + nrem, sizeof(*all), by_entry_shard);
    free(*v);
    free(*ro);
    *v = calloc(*n + nrem, sizeof(**v));
    *ro = calloc(*n + nrem, sizeof(**ro));
    if (!*v || !*ro) {
        free(*v);
        free(*ro);
        *v = NULL;
        *ro = NULL;
        *n = 0;
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < *n + nrem; i++) {
        if (k && (*ro)[k - 1].shard == all[i].ro.shard)
            continue; /* (a record that lags behind a move) */
        (*v)[k] = all[i].in;
        (*ro)[k++] = all[i].ro;
    }
    *n = k;
out:
    free(all);
    free(rem);
    return rc;
}

/* The monotonic time of a roll-out's restart at wall-clock time at_ms,
 * recorded by an agent that ran before this one (never 0, never later than
 * now): its progress deadline and min_ready_seconds go on from there. After
 * a reboot the monotonic clock starts anew: then from the boot at the
 * latest (the instance was started again since). */
static uint64_t rolled_before(uint64_t at_ms)
{
    uint64_t now = dpr_mono_ms(), wall = dpr_wall_ms();
    uint64_t ago = wall > at_ms ? wall - at_ms : 0;

    return now > ago ? now - ago : 1;
}

/* dep's instances on this node in shard order (*v allocated: the caller
 * frees it) and what the roll-out sees of them (*ro); in a cluster, the
 * other nodes' too (NULL in *v). */
static int gather(agent *a, const agent_deploy *dep, agent_instance ***v, agent_ro_inst **ro,
                  size_t *n)
{
    size_t k = 0;

    *v = NULL;
    *ro = NULL;
    *n = 0;
    for (size_t i = 0; i < a->st.ninst; i++)
        k += strcmp(a->st.inst[i].deployment, dep->name) == 0;
    if (!k)
        return -ENOENT;
    *v = calloc(k, sizeof(**v));
    *ro = calloc(k, sizeof(**ro));
    if (!*v || !*ro) {
        free(*v);
        free(*ro);
        *v = NULL;
        *ro = NULL;
        return -ENOMEM;
    }
    for (size_t i = 0; i < a->st.ninst; i++)
        if (strcmp(a->st.inst[i].deployment, dep->name) == 0)
            (*v)[(*n)++] = &a->st.inst[i];
    assert(*n == k);
    qsort(*v, k, sizeof(**v), by_shard);
    for (size_t i = 0; i < k; i++) {
        const agent_instance *in = (*v)[i];
        inst_rt *rt = agent_rt_find(a, in->name);
        agent_ro_inst *r = &(*ro)[i];
        r->shard = in->shard;
        r->outdated = agent_instance_outdated(in) || (rt && rt->restart_pending);
        if (!rt)
            continue;
        r->busy = (rt->in_flight && (rt->op == AGENT_UNIT_RESTART || rt->op == AGENT_UNIT_START)) ||
                  rt->retry_reset || rt->retry_resetting;
        r->ready = agent_rt_ready(rt);
        /* a failure since the roll-out restarted it (not an old one: the
         * health of a failed instance sticks until it serves again) */
        r->failed = rt->known && inst_failed(rt) && rt->rolled_ms &&
                    rt->fail_seq != rt->fail_seq_rolled;
        r->ready_since_ms = r->ready ? rt->ready_since_ms : 0;
        if (!rt->rolled_ms && in->rolled_at_ms && !r->outdated)
            rt->rolled_ms = rolled_before(in->rolled_at_ms);
        r->rolled_ms = rt->rolled_ms;
    }
    return add_remote(a, dep, v, ro, n);
}

int agent_rollout_now(agent *a, const agent_deploy *dep, agent_ro_step *out)
{
    agent_instance **v;
    agent_ro_inst *ro;
    size_t n, *next;
    int rc;

    rc = gather(a, dep, &v, &ro, &n);
    if (rc < 0) {
        free(v);
        free(ro);
        return rc;
    }
    next = calloc(n, sizeof(*next));
    rc = next ? agent_rollout_step(dep->name, ro, n, &dep->rollout, is_halted(a, dep->name),
                                   dpr_mono_ms(), next, out)
              : -ENOMEM;
    free(next);
    free(v);
    free(ro);
    return rc;
}

static void on_rollout_timer(uv_timer_t *t)
{
    agent_reconcile(t->data);
    agent_update_status(t->data);
}

/* An event when dep's roll-out enters another phase. */
static void tell_phase(agent *a, const agent_deploy *dep, const agent_ro_step *s)
{
    struct agent_ro_told *t = NULL, *v;

    for (size_t i = 0; i < a->nro_phase && !t; i++)
        if (strcmp(a->ro_phase[i].deployment, dep->name) == 0)
            t = &a->ro_phase[i];
    if (!t) {
        v = realloc(a->ro_phase, (a->nro_phase + 1) * sizeof(*v));
        if (!v)
            return;
        a->ro_phase = v;
        t = &v[a->nro_phase++];
        snprintf(t->deployment, sizeof(t->deployment), "%s", dep->name);
        t->phase = AGENT_RO_DONE; /* nothing to tell of a deployment at rest */
    }
    if (t->phase == s->phase)
        return;
    t->phase = s->phase;
    agent_cluster_publish(a, true); /* (the other nodes' status shows it) */
    if (s->phase == AGENT_RO_HALTED)
        return; /* agent_set_halted told */
    log_info("deployment '%s': roll-out %s (%zu/%zu updated)", dep->name,
             agent_ro_phase_name(s->phase), s->updated, s->targets);
    agent_emit(a, "rollout", json_pack("{s:s, s:s, s:I, s:I}", "deployment", dep->name, "phase",
                                       agent_ro_phase_name(s->phase), "updated",
                                       (json_int_t)s->updated, "targets",
                                       (json_int_t)s->targets));
}

/* Restarts in (the roll-out reached it) with its settings. */
static void roll_one(agent *a, agent_instance *in, inst_rt *rt)
{
    agent_run before = in->run;
    uint64_t before_at = in->rolled_at_ms;

    if (retiring_blocks(a, in->name) || !ready_to_act(a, rt))
        return;
    /* the finder does not know its data: restarted now, it could not
     * recover (docs/operations.md, "The finder's state was lost") */
    if (agent_worker_lost(a, in))
        return;
    assert(!rt->in_flight);
    if (running(rt) && !rt->roll_reset_done) {
        /* a planned restart is no crash: systemd's start limit (which an
         * earlier failed version or an undo may have used up) starts anew */
        if (issue(a, rt, AGENT_UNIT_RESET_FAILED) == 0)
            rt->roll_reset = true;
        return; /* then restart: the next round */
    }
    rt->roll_reset_done = false;
    agent_instance_set_running(in);
    in->rolled_at_ms = dpr_wall_ms(); /* (a restarted agent goes on from there) */
    if (agent_save_state(a, &a->st, NULL) < 0) {
        in->run = before; /* it still runs those */
        in->rolled_at_ms = before_at;
        retry_soon(a);
        return;
    }
    if (agent_write_env(a, in) < 0) {
        rt->restart_pending = false;
        return;
    }
    rt->restart_pending = false;
    rt->rolled_ms = dpr_mono_ms();
    rt->fail_seq_rolled = rt->fail_seq;
    agent_log_instance(DPR_LOG_INFO, in->name, "roll-out: restarting it for generation %llu "
                       "(impl %s, version %s)", (unsigned long long)in->generation, in->impl,
                       in->version);
    agent_emit(a, "rollout", json_pack("{s:s, s:s, s:s, s:I}", "deployment", in->deployment,
                                       "phase", "restarting", "instance", in->name,
                                       "generation", (json_int_t)in->generation));
    if (running(rt)) {
        if (!memory_max_set(a, in, rt)) {
            rt->restart_pending = true; /* then restart: the next round */
            return;
        }
        issue(a, rt, AGENT_UNIT_RESTART);
    } else {
        /* not running: an ordinary start picks up the new settings */
        rt->want_start = true;
        start_or_adopt(a, in, rt);
    }
}

void agent_rollout_retry(agent *a, const char *deployment)
{
    bool save = false;

    log_info("deployment '%s': roll-out resumed (its halt lifted)", deployment);
    for (size_t i = 0; i < a->st.ninst; i++) {
        agent_instance *in = &a->st.inst[i];
        inst_rt *rt = agent_rt_find(a, in->name);
        if (strcmp(in->deployment, deployment) != 0 || agent_instance_outdated(in) ||
            (!in->rolled_at_ms && (!rt || !rt->rolled_ms)))
            continue;
        in->rolled_at_ms = dpr_wall_ms();
        save = true;
        if (!rt)
            continue;
        rt->rolled_ms = dpr_mono_ms();
        rt->fail_seq_rolled = rt->fail_seq;
        rt->want_start = true;
        rt->retry_reset = true;
    }
    if (save)
        agent_save_state(a, &a->st, NULL); /* (logged) */
}

/* The instances of v (ro: what the roll-out saw) that the roll-out
 * restarted and that are available now (ready for min_ready_ms): its
 * restart is done with, also for a restarted agent (recorded). */
static void settled(agent *a, agent_instance **v, const agent_ro_inst *ro, size_t n,
                    uint64_t min_ready_ms, uint64_t now)
{
    bool save = false;

    for (size_t i = 0; i < n; i++) {
        inst_rt *rt;
        if (ro[i].remote || !ro[i].rolled_ms || !ro[i].ready || ro[i].busy || ro[i].outdated ||
            now - ro[i].ready_since_ms < min_ready_ms)
            continue;
        rt = agent_rt_find(a, v[i]->name);
        if (rt)
            rt->rolled_ms = 0;
        save = save || v[i]->rolled_at_ms;
        v[i]->rolled_at_ms = 0;
    }
    if (save)
        agent_save_state(a, &a->st, NULL); /* (logged; else an agent restarted before
                                                the next save waits min_ready again) */
}

/* dep's roll-out on this node: the next restarts, halting, its timer. */
static void rolling_restart(agent *a, const agent_deploy *dep)
{
    const agent_layout *lay = agent_state_layout(&a->st, dep->name);
    agent_instance **v;
    agent_ro_inst *ro;
    agent_ro_step s;
    size_t n, *next = NULL;
    uint64_t now = dpr_mono_ms();

    if (lay && lay->target_epoch)
        return; /* not while it is resized: after */
    if (gather(a, dep, &v, &ro, &n) < 0) {
        free(v);
        free(ro);
        return;
    }
    next = calloc(n, sizeof(*next));
    if (!next || agent_rollout_step(dep->name, ro, n, &dep->rollout, is_halted(a, dep->name),
                                    now, next, &s) < 0)
        goto out;
    if (s.halt >= 0)
        agent_set_halted(a, dep->name, s.reason);
    settled(a, v, ro, n, (uint64_t)dep->rollout.min_ready_seconds * 1000u, now);
    tell_phase(a, dep, &s);
    /* waiting for another node's instance: its record comes through Raft,
     * not as an event here; asked again at the next cluster tick */
    for (size_t i = 0; s.phase == AGENT_RO_PROGRESSING && i < n; i++)
        if (ro[i].remote && (ro[i].outdated || !ro[i].ready))
            a->start_gated = true;
    for (size_t i = 0; i < s.nrestart; i++) {
        inst_rt *rt;
        assert(v[next[i]] && !ro[next[i]].remote); /* another node's is never restarted */
        rt = agent_rt_ensure(a, v[next[i]]->name);
        if (rt)
            roll_one(a, v[next[i]], rt);
    }
    if (s.wake_ms && a->timers_open) {
        uint64_t due = uv_is_active((uv_handle_t *)&a->rollout_timer)
                           ? uv_timer_get_due_in(&a->rollout_timer)
                           : UINT64_MAX;
        if (s.wake_ms - now + 1 < due)
            uv_timer_start(&a->rollout_timer, on_rollout_timer, s.wake_ms - now + 1, 0);
    }
out:
    free(next);
    free(v);
    free(ro);
}

static void retire_unit(agent *a, agent_instance *r)
{
    inst_rt *rt = agent_rt_ensure(a, r->name);

    const agent_layout *lay = agent_state_layout(&a->st, r->deployment);

    if (!rt || r->unit_retired || !ready_to_act(a, rt))
        return;
    if (r->held && lay && lay->target_epoch)
        return; /* its keys move to the remaining shards first (layout.c) */
    assert(rt->retire_step >= 0 && rt->retire_step <= 2); /* stop, clean, done */
    if (rt->retire_step == 0) {
        issue(a, rt, AGENT_UNIT_STOP);
        return;
    }
    if (rt->retire_step == 1) {
        /* systemd cleans only an inactive unit: a failed one (an instance
         * that could not start, say a fenced one) is reset first */
        issue(a, rt, state_is(rt, "failed") ? AGENT_UNIT_RESET_FAILED : AGENT_UNIT_CLEAN);
        return;
    }
    /* stopped and cleaned: its configuration goes too */
    agent_env_remove(a->cfg->instance_dir, r->name);
    r->unit_retired = true;
    rt->retire_step = 0;
    agent_log_instance(DPR_LOG_INFO, r->name, "unit stopped and its state removed");
    if (agent_save_state(a, &a->st, NULL) < 0)
        retry_soon(a);
}

/* The leader's answer to a follower's DPR.WORKER.REMOVE (see below). */
static void on_remote_removed(void *arg, int status, int error, const char *text)
{
    agent *a = arg;
    int i;

    a->retire_req = NULL;
    if (status < 0 || (error && strstr(text, "not in the cut yet"))) {
        retry_soon(a); /* no leader, or its last checkpoint is not committed yet */
        return;
    }
    i = agent_state_find_retiring(&a->st, a->retire_name);
    if (i < 0 || a->st.retiring[i].worker != a->retire_worker)
        return;
    if (error && strstr(text, "token")) {
        agent_log_instance(DPR_LOG_WARNING, a->retire_name,
                           "retired, but worker %llu stays in the finder: %s",
                           (unsigned long long)a->retire_worker, text);
    } else if (error && !strstr(text, "unknown")) {
        agent_log_instance(DPR_LOG_WARNING, a->retire_name,
                           "cannot remove worker %llu from the finder: %s",
                           (unsigned long long)a->retire_worker, text);
        retry_soon(a);
        return;
    } else {
        agent_log_instance(DPR_LOG_INFO, a->retire_name, "retired (worker %llu %s)",
                           (unsigned long long)a->retire_worker,
                           error ? "was unknown to the finder" : "removed from the finder");
    }
    agent_state_drop_retiring(&a->st, a->retire_name, a->retire_worker);
    if (agent_save_state(a, &a->st, NULL) < 0)
        retry_soon(a);
    agent_retire_in_finder(a); /* the next one */
}

/* In a cluster a follower's finder does not serve: the leader's removes the
 * worker (DPR.WORKER.REMOVE with its token, sent to the finder port). One
 * at a time. */
static void remove_remotely(agent *a, const agent_instance *r)
{
    const char *argv[4] = { "DPR.WORKER.REMOVE", r->deployment, NULL, r->token };
    char worker[24];
    agent_tls *const *tls;
    dpr_finders t;

    if (a->retire_req || !a->raft ||
        agent_peer_targets(a, &t, &tls) < 0) {
        retry_soon(a);
        return;
    }
    snprintf(worker, sizeof(worker), "%llu", (unsigned long long)r->worker);
    argv[2] = worker;
    snprintf(a->retire_name, sizeof(a->retire_name), "%s", r->name);
    a->retire_worker = r->worker;
    if (agent_peerreq_send(a->loop, &t, tls, 5000, 4, argv, on_remote_removed, a,
                           &a->retire_req) < 0) {
        a->retire_req = NULL;
        retry_soon(a);
    }
}

void agent_retire_in_finder(agent *a)
{
    bool changed = false;

    if (!a->finder || a->stopping)
        return;
    for (size_t i = a->st.nretiring; i > 0; i--) {
        agent_instance *r = &a->st.retiring[i - 1];
        int rc;
        if (!r->unit_retired)
            continue;
        rc = agent_finder_remove_worker(a->finder, r->deployment, r->worker, r->token);
        if (rc == -EBUSY)
            continue; /* its last checkpoint is not in the cut yet: after a commit */
        if (rc == -EAGAIN) {
            /* this node does not serve the finder: in a cluster the leader's
             * does (a single node: it will, once started) */
            if (a->raft)
                remove_remotely(a, r);
            else
                retry_soon(a);
            continue;
        }
        if (rc == -EACCES) {
            /* someone else registered this id with a token of their own:
             * not ours to remove, and asking again would not change that */
            agent_log_instance(DPR_LOG_WARNING, r->name,
                               "retired, but worker %llu stays in the finder: it is registered "
                               "there with another token than this instance's",
                               (unsigned long long)r->worker);
            agent_state_drop_retiring(&a->st, r->name, r->worker);
            changed = true;
            continue;
        }
        if (rc < 0 && rc != -ENOENT) {
            agent_log_instance(DPR_LOG_WARNING, r->name,
                               "cannot remove worker %llu from the finder: %s",
                               (unsigned long long)r->worker, strerror(-rc));
            retry_soon(a);
            continue;
        }
        agent_log_instance(DPR_LOG_INFO, r->name, "retired (worker %llu %s)",
                           (unsigned long long)r->worker, rc == 0 ? "removed from the finder"
                                                                  : "was unknown to the finder");
        agent_state_drop_retiring(&a->st, r->name, r->worker);
        changed = true;
    }
    if (changed && agent_save_state(a, &a->st, NULL) < 0)
        retry_soon(a);
}

void agent_reconcile(agent *a)
{
    if (a->stopping || !a->units || !agent_units_connected(a->units))
        return;
    for (size_t i = 0; i < a->st.nretiring; i++)
        retire_unit(a, &a->st.retiring[i]);
    /* roll-outs first: an outdated instance that is down and due starts
     * with its new settings, not with its old ones first */
    for (size_t d = 0; a->st.spec.name && d < a->st.spec.n; d++)
        rolling_restart(a, &a->st.spec.d[d]);
    for (size_t i = 0; i < a->st.ninst; i++) {
        const agent_instance *in = &a->st.inst[i];
        inst_rt *rt = agent_rt_ensure(a, in->name);
        if (!rt || retiring_blocks(a, in->name))
            continue;
        start_or_adopt(a, in, rt);
    }
    agent_retire_in_finder(a);
}

/* ---- systemd's side ---------------------------------------------------------- */

void agent_on_units_connected(void *arg, bool up, const char *why)
{
    agent *a = arg;

    for (size_t i = 0; i < a->nrt; i++) {
        inst_rt *rt = &a->rt[i];
        rt->watched = false;
        rt->known = false;
        rt->in_flight = false;
        rt->half_state = rt->half_pid = false;
        rt->retry_later = false;
        rt->retire_step = 0;
        rt->memory_max_refused = 0; /* systemd may be another one now */
        rt->ready_since_ms = 0;
        rt->roll_reset = rt->roll_reset_done = false;
        memset(&rt->props, 0, sizeof(rt->props));
    }
    if (up) {
        /* converge: whatever is desired and not running is started, what
         * runs is adopted as it is */
        for (size_t i = 0; i < a->st.ninst; i++) {
            inst_rt *rt = agent_rt_ensure(a, a->st.inst[i].name);
            if (rt)
                rt->want_start = true;
        }
        agent_reconcile(a);
    } else {
        log_warning("systemd connection lost (%s): instances keep running; re-adopting them "
                    "when it is back", why);
    }
    agent_update_status(a);
}

/* p changes the unit's state or restart count (not only its main PID). */
static bool state_differs(const agent_unit_props *old, const agent_unit_props *p)
{
    return ((p->have & AGENT_UP_ACTIVE) && strcmp(old->active_state, p->active_state)) ||
           ((p->have & AGENT_UP_SUB) && strcmp(old->sub_state, p->sub_state)) ||
           ((p->have & AGENT_UP_RESTARTS) && old->n_restarts != p->n_restarts);
}

static bool pid_differs(const agent_unit_props *old, const agent_unit_props *p)
{
    return (p->have & AGENT_UP_PID) && old->main_pid != p->main_pid;
}

/* Takes the fields p has into rt's. */
static void take_props(inst_rt *rt, const agent_unit_props *p)
{
    if (p->have & AGENT_UP_ACTIVE)
        snprintf(rt->props.active_state, sizeof(rt->props.active_state), "%s", p->active_state);
    if (p->have & AGENT_UP_SUB)
        snprintf(rt->props.sub_state, sizeof(rt->props.sub_state), "%s", p->sub_state);
    if (p->have & AGENT_UP_RESULT)
        snprintf(rt->props.result, sizeof(rt->props.result), "%s", p->result);
    if (p->have & AGENT_UP_LOAD)
        snprintf(rt->props.load_state, sizeof(rt->props.load_state), "%s", p->load_state);
    if (p->have & AGENT_UP_RESTARTS)
        rt->props.n_restarts = p->n_restarts;
    if (p->have & AGENT_UP_PID)
        rt->props.main_pid = p->main_pid;
    if (p->have & AGENT_UP_STARTED)
        rt->props.started_usec = p->started_usec;
    if (p->have & AGENT_UP_STATUS_TEXT)
        snprintf(rt->props.status_text, sizeof(rt->props.status_text), "%s", p->status_text);
    if (p->have & AGENT_UP_MEMORY_MAX)
        rt->props.memory_max = p->memory_max;
    rt->props.have |= p->have & ~(unsigned)AGENT_UP_FIRST_HALF;
}

void agent_on_unit_props(void *arg, const char *instance, const agent_unit_props *p)
{
    agent *a = arg;
    inst_rt *rt = agent_rt_ensure(a, instance);
    bool changed, pid_changed, was_failed, desired, new_reason = false, unit_failed;
    agent_health before;

    if (!rt)
        return;
    if (p->have & AGENT_UP_FIRST_HALF) {
        /* the Service interface's half of a change (its new MainPID,
         * NRestarts, ...): taken now, acted on and reported with the Unit
         * interface's half, as one change in one event. Else a transition
         * would be reported twice: with the new PID and the old state,
         * then with the new state */
        rt->half_state = rt->half_state || state_differs(&rt->props, p);
        rt->half_pid = rt->half_pid || pid_differs(&rt->props, p);
        take_props(rt, p);
        return;
    }
    desired = agent_state_find(&a->st, instance) >= 0;
    changed = state_differs(&rt->props, p) || rt->half_state || !rt->known;
    pid_changed = pid_differs(&rt->props, p) || rt->half_pid;
    rt->half_state = rt->half_pid = false;
    was_failed = state_is(rt, "failed");
    unit_failed = was_failed || strcmp(rt->props.sub_state, "auto-restart") == 0;
    take_props(rt, p);
    /* a new main PID alone is news while the unit is active (its main
     * process replaced in place); in the other states systemd gives a
     * starting process's PID before it says that the unit starts, and that
     * change reports it: the unit's state appears once */
    changed = changed || (pid_changed && state_is(rt, "active"));
    /* both interfaces read: state, restarts, pid and start time are known */
    if ((rt->props.have & AGENT_UP_ACTIVE) && (rt->props.have & AGENT_UP_SERVICE_READ))
        rt->known = true;
    if (!agent_rt_ready(rt))
        rt->ready_since_ms = 0;
    else if (!rt->ready_since_ms)
        rt->ready_since_ms = dpr_mono_ms();
    before = rt->health;
    if (rt->known) {
        /* STATUS= repeats every second: only a new health is news */
        rt->health = agent_health_of(rt->props.active_state, rt->props.sub_state,
                                     rt->props.status_text, before);
        if (agent_status_is_failure(rt->props.status_text) &&
            strcmp(rt->fail_text, rt->props.status_text) != 0) {
            /* the cache-store says why it exits (e.g. it cannot recover) */
            snprintf(rt->fail_text, sizeof(rt->fail_text), "%s", rt->props.status_text);
            snprintf(rt->last_error, sizeof(rt->last_error), "%s", rt->fail_text);
            changed = true;
            new_reason = true;
        }
        if (rt->health == AGENT_HEALTH_OK)
            rt->fail_text[0] = '\0';
    }
    if ((!unit_failed && (state_is(rt, "failed") ||
                          strcmp(rt->props.sub_state, "auto-restart") == 0)) ||
        (before != AGENT_HEALTH_FAILED && rt->health == AGENT_HEALTH_FAILED))
        rt->fail_seq++;
    if (!was_failed && state_is(rt, "failed")) {
        snprintf(rt->last_error, sizeof(rt->last_error), "the unit failed (result: %s)%s%s",
                 rt->props.result[0] ? rt->props.result : "unknown",
                 rt->fail_text[0] ? "; last status: " : "", rt->fail_text);
        agent_log_instance(DPR_LOG_WARNING, instance, "%s", rt->last_error);
    }
    if (changed) {
        agent_log_instance(DPR_LOG_DEBUG, instance, "unit %s/%s, %u restarts, pid %u",
                           rt->props.active_state, rt->props.sub_state, rt->props.n_restarts,
                           rt->props.main_pid);
        if (desired)
            agent_emit_instance(a, rt);
        agent_update_status(a);
    }
    if (rt->health != before) {
        if (desired)
            agent_report_health(a, rt, before);
        else
            rt->health = AGENT_HEALTH_OK; /* retiring: nobody asks */
    } else if (new_reason && desired) {
        /* failed already (its unit failed first): now it says why; each
         * reason once, however often systemd restarts it */
        agent_log_instance_id(DPR_LOG_ERR, instance, DPR_MSGID_INSTANCE_FAILED, "%s",
                              rt->fail_text); /* "failed: <its reason>" */
    }
    agent_reconcile(a);
}

static bool benign(agent_unit_op op, const char *ename)
{
    /* stopping or cleaning a unit that does not exist: nothing to do */
    if (op != AGENT_UNIT_STOP && op != AGENT_UNIT_CLEAN && op != AGENT_UNIT_RESET_FAILED)
        return false;
    return strcmp(ename, "org.freedesktop.systemd1.NoSuchUnit") == 0 ||
           strcmp(ename, "org.freedesktop.systemd1.NothingToClean") == 0 ||
           strcmp(ename, "org.freedesktop.systemd1.LoadFailed") == 0;
}

void agent_on_unit_done(void *arg, const char *instance, agent_unit_op op, const char *ename,
                        const char *emsg)
{
    agent *a = arg;
    inst_rt *rt = agent_rt_ensure(a, instance);
    bool retiring = false, desired;

    if (!rt)
        return;
    rt->in_flight = false;
    if (op == AGENT_UNIT_RESET_FAILED && rt->retry_resetting) {
        /* a resume's reset: the failures before it were the halt's */
        rt->retry_resetting = false;
        rt->fail_seq_rolled = rt->fail_seq;
        rt->rolled_ms = dpr_mono_ms();
        rt->want_start = true;
    }
    if (ename && op == AGENT_UNIT_RESET_FAILED && rt->roll_reset) {
        rt->roll_reset = false; /* (restarted all the same: the next round) */
        rt->roll_reset_done = true;
    }
    for (size_t i = 0; i < a->st.nretiring; i++)
        retiring |= !a->st.retiring[i].unit_retired && !strcmp(a->st.retiring[i].name, instance);
    desired = agent_state_find(&a->st, instance) >= 0;
    if (ename && !benign(op, ename)) {
        snprintf(rt->last_error, sizeof(rt->last_error), "%s failed: %s",
                 agent_unit_op_name(op), emsg ? emsg : ename);
        agent_log_instance(DPR_LOG_WARNING, instance, "%s", rt->last_error);
        if (op == AGENT_UNIT_SET_MEMORY_MAX) {
            /* run without the limit rather than not at all; not tried again
             * for this value (last_error and the log say so) */
            rt->memory_max_refused = rt->memory_max_want;
            agent_log_instance(DPR_LOG_WARNING, instance, "runs without MemoryMax=%llu",
                               (unsigned long long)rt->memory_max_want);
        } else if (op == AGENT_UNIT_RESTART || op == AGENT_UNIT_START) {
            const agent_instance *in = desired ? &a->st.inst[agent_state_find(&a->st,
                                                                              instance)] : NULL;
            char why[AGENT_HALT_REASON_MAX];
            /* (a start of older settings that ends after an undo or a new
             * apply is no failure of the roll-out: it is outdated now) */
            if (in && rt->rolled_ms && !agent_instance_outdated(in) &&
                !is_halted(a, in->deployment)) {
                snprintf(why, sizeof(why), "%s failed after its update: %s failed: %.120s",
                         instance, agent_unit_op_name(op), emsg ? emsg : ename);
                agent_set_halted(a, in->deployment, why);
            }
        } else {
            rt->retry_later = true;
            retry_soon(a);
        }
        if (desired)
            agent_emit_instance(a, rt);
    } else if (retiring && (op == AGENT_UNIT_STOP || op == AGENT_UNIT_CLEAN)) {
        rt->retire_step = op == AGENT_UNIT_STOP ? 1 : 2;
    } else if ((op == AGENT_UNIT_RESTART || op == AGENT_UNIT_START) && rt->rolled_ms &&
               agent_rt_ready(rt)) {
        /* the job ends once the new process said READY=1: min_ready_seconds
         * count from now (the unit's states in between may have come as
         * one change, active to active) */
        rt->ready_since_ms = dpr_mono_ms();
    } else if (op == AGENT_UNIT_SET_MEMORY_MAX) {
        /* systemd does not emit MemoryMax changes: what it now has */
        rt->props.memory_max = rt->memory_max_want;
        rt->props.have |= AGENT_UP_MEMORY_MAX;
    } else if (op == AGENT_UNIT_RESET_FAILED && rt->roll_reset) {
        rt->roll_reset = false;
        rt->roll_reset_done = true; /* the roll-out restarts it now (roll_one) */
    } else if (op == AGENT_UNIT_RESET_FAILED && (desired || retiring)) {
        rt->want_start = desired; /* now inactive: start it, or clean it (retire_unit) */
        snprintf(rt->props.active_state, sizeof(rt->props.active_state), "inactive");
    }
    agent_reconcile(a);
    agent_update_status(a);
}
