/* layout.c - see layout.h. */
#include "layout.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_int.h"
#include "clusterspec.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/num.h"
#include "common/resp.h"
#include "envfile.h"
#include "respconn.h"

#define ENDPOINT_MAX 320
/* A round whose answers do not all come within this is given up: its
 * connections are dropped (a shard that takes the connection and never
 * answers) and the next round starts afresh. */
#define ROUND_TIMEOUT_MS 3000

/* One connection to an instance (by endpoint); kept across ticks. */
typedef struct lconn {
    struct lconn *next;
    char endpoint[ENDPOINT_MAX];
    agent_respconn *rc; /* NULL: not connected (again at the next use) */
} lconn;

/* An instance taking part, and what its last INFO said. */
typedef struct member {
    char name[AGENT_INSTANCE_NAME_MAX + 1];
    char endpoint[ENDPOINT_MAX];
    int64_t index;   /* in the target layout; -1: it leaves */
    bool source;     /* it gives keys up */
    bool have;       /* INFO answered this round */
    uint64_t epoch, pending, world_line, migrate_epoch, migrate_wl, migrate_keys;
    bool committed;
    char migrate_state[16];
    char migrate_error[200];
} member;

/* The work on one deployment. */
typedef struct job {
    char deployment[AGENT_DEPLOY_NAME_MAX + 1];
    member *m;
    size_t n;
    unsigned outstanding; /* answers awaited */
    uint64_t round;       /* answers of older rounds are dropped */
    uint64_t round_ms;    /* when the awaited answers were asked (monotonic) */
    bool polled;          /* m[] holds this round's INFO */
    char step[64];
    char error[256];
    uint64_t start_ms;    /* of the resize (monotonic) */
    uint64_t moved_keys;
    uint64_t give;        /* the epoch this round of giving layouts gives (0: none) */
} job;

/* Which nodes a deployment's shards ran on when its layout was last found
 * given (a cluster: a shard that moves needs the layout again). */
typedef struct given {
    char deployment[AGENT_DEPLOY_NAME_MAX + 1];
    uint64_t nodes; /* nodes_hash */
} given;

struct agent_layouts {
    agent *a;
    uv_timer_t timer;
    bool timer_open, stopping;
    lconn *conns;
    job *jobs;
    size_t njobs;
    given *given;
    size_t ngiven;
};

/* An answer's context. */
typedef struct req {
    agent_layouts *l;
    char deployment[AGENT_DEPLOY_NAME_MAX + 1];
    uint64_t round;
    size_t member;
    bool info;            /* INFO dpr (else a layout command) */
    char what[24];        /* the command, for messages */
} req;

/* ---- connections ------------------------------------------------------------- */

static lconn *conn_get(agent_layouts *l, const char *endpoint)
{
    lconn *c;

    for (c = l->conns; c; c = c->next)
        if (strcmp(c->endpoint, endpoint) == 0)
            break;
    if (!c) {
        if (!(c = calloc(1, sizeof(*c))))
            return NULL;
        snprintf(c->endpoint, sizeof(c->endpoint), "%s", endpoint);
        c->next = l->conns;
        l->conns = c;
    }
    if (c->rc && agent_respconn_failed(c->rc)) {
        agent_respconn_close(c->rc); /* (its commands were told) */
        c->rc = NULL;
    }
    if (c->rc)
        return c;
    /* the agents' TLS: the shards serve TLS only, with a node certificate */
    agent_respconn_opts o = {.endpoint = endpoint,
                             .tls = l->a->tls ? l->a->tls->client : NULL,
                             .tls_what = "and their cache-stores serve shards"};
    if (agent_respconn_open(l->a->loop, &o, &c->rc, NULL) < 0)
        return NULL;
    return c;
}

/* ---- jobs and members ------------------------------------------------------------ */

static job *job_find(agent_layouts *l, const char *deployment)
{
    for (size_t i = 0; i < l->njobs; i++)
        if (strcmp(l->jobs[i].deployment, deployment) == 0)
            return &l->jobs[i];
    return NULL;
}

static job *job_ensure(agent_layouts *l, const char *deployment)
{
    job *j = job_find(l, deployment), *v;

    if (j)
        return j;
    v = realloc(l->jobs, (l->njobs + 1) * sizeof(*v));
    if (!v)
        return NULL;
    l->jobs = v;
    j = &l->jobs[l->njobs++];
    memset(j, 0, sizeof(*j));
    snprintf(j->deployment, sizeof(j->deployment), "%s", deployment);
    return j;
}

static void job_drop(agent_layouts *l, size_t i)
{
    free(l->jobs[i].m);
    l->jobs[i] = l->jobs[--l->njobs];
}

static int member_add_at(job *j, const char *name, const char *endpoint, int64_t index,
                         bool source)
{
    member *v;

    for (size_t i = 0; i < j->n; i++)
        if (strcmp(j->m[i].name, name) == 0)
            return 0;
    v = realloc(j->m, (j->n + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    j->m = v;
    v = &j->m[j->n++];
    memset(v, 0, sizeof(*v));
    snprintf(v->name, sizeof(v->name), "%s", name);
    snprintf(v->endpoint, sizeof(v->endpoint), "%s", endpoint);
    v->index = index;
    v->source = source;
    return 0;
}

static int member_add(agent_layouts *l, job *j, const agent_instance *in, int64_t index,
                      bool source)
{
    char endpoint[ENDPOINT_MAX];

    agent_env_endpoint(in, agent_config_cs_host(l->a->cfg), endpoint, sizeof(endpoint));
    return member_add_at(j, in->name, endpoint, index, source);
}

/* In a cluster, the shards of j's deployment other nodes run, at the
 * endpoints they published: -EAGAIN while one is not published yet. */
static int members_remote(agent_layouts *l, job *j)
{
    const agent_placed_dep *d = agent_placement_find(&l->a->placement, j->deployment);
    int rc = 0;

    for (uint32_t s = 0; d && rc == 0 && s < d->shards; s++) {
        json_t *o;
        const char *ep, *name;
        if (strcmp(d->slot[s].node, l->a->cfg->node_name) == 0)
            continue;
        o = agent_cluster_published(l->a, j->deployment, s, &d->slot[s]);
        ep = json_string_value(json_object_get(o, "endpoint"));
        name = json_string_value(json_object_get(o, "name"));
        if (!o)
            rc = -ENOMEM;
        else if (!ep || !name || (json_is_true(json_object_get(o, "units")) &&
                                  !json_is_true(json_object_get(o, "ready"))))
            rc = -EAGAIN; /* not published (or, its node sees units, not ready) yet */
        else
            rc = member_add_at(j, name, ep, s, false);
        json_decref(o);
    }
    return rc;
}

/* The instances of j's deployment that take part, from the recorded state:
 * without a resize, the desired ones; in a resize, the old shards (desired
 * or retiring held) and the new ones. */
static int members_build(agent_layouts *l, job *j, const agent_layout *lay)
{
    const agent_state *st = &l->a->st;
    int rc = 0;

    j->n = 0;
    for (size_t i = 0; rc == 0 && i < st->ninst; i++) {
        const agent_instance *in = &st->inst[i];
        inst_rt *rt;
        if (strcmp(in->deployment, lay->deployment) != 0)
            continue;
        /* a first layout: once every shard is ready (asking one that does
         * not listen yet would hold the round until its timeout); without
         * systemd (tests that run cache-stores by hand) no unit says so */
        rt = agent_rt_find(l->a, in->name);
        if (!lay->target_epoch && agent_units_connected(l->a->units) &&
            !(rt && agent_rt_ready(rt)))
            return -EAGAIN;
        bool old = lay->target_epoch && in->shard < lay->shards;
        bool grows = lay->target_shards > lay->shards;
        rc = member_add(l, j, in, in->shard, old && grows);
    }
    for (size_t i = 0; rc == 0 && lay->target_epoch && i < st->nretiring; i++) {
        const agent_instance *in = &st->retiring[i];
        if (strcmp(in->deployment, lay->deployment) == 0 && in->held && !in->unit_retired &&
            in->shard < lay->shards)
            rc = member_add(l, j, in, -1, true);
    }
    /* (a deployment spread over nodes is never resized: placement.h) */
    if (rc == 0 && l->a->raft && !lay->target_epoch)
        rc = members_remote(l, j);
    return rc;
}

/* ---- commands and answers ----------------------------------------------------------- */

/* A number of INFO text (0 when absent or not a number). */
static uint64_t info_u64(const char *text, const char *field)
{
    size_t n;
    uint64_t v;
    const char *p = dpr_info_field(text, field, &n);

    return p && dpr_parse_u64(p, n, 0, UINT64_MAX, &v) == 0 ? v : 0;
}

static void info_str(const char *text, const char *field, char *out, size_t cap)
{
    size_t n = 0;
    const char *p = dpr_info_field(text, field, &n);

    snprintf(out, cap, "%.*s", p ? (int)n : 0, p ? p : "");
}

/* (reply NULL: the connection failed, or was dropped) */
static void on_reply(void *arg, int status, const redisReply *reply)
{
    req *q = arg;
    job *j = q->l->stopping ? NULL : job_find(q->l, q->deployment);

    (void)status;
    if (!j || j->round != q->round || q->member >= j->n) {
        free(q);
        return;
    }
    member *m = &j->m[q->member];
    if (q->info) {
        if (reply && reply->type == REDIS_REPLY_STRING) {
            m->have = true;
            m->epoch = info_u64(reply->str, "dpr_layout_epoch");
            m->pending = info_u64(reply->str, "dpr_layout_pending_epoch");
            m->committed = info_u64(reply->str, "dpr_layout_committed") == 1;
            m->world_line = info_u64(reply->str, "dpr_world_line");
            m->migrate_epoch = info_u64(reply->str, "dpr_migrate_epoch");
            m->migrate_wl = info_u64(reply->str, "dpr_migrate_world_line");
            m->migrate_keys = info_u64(reply->str, "dpr_migrate_keys");
            info_str(reply->str, "dpr_migrate_state", m->migrate_state,
                     sizeof(m->migrate_state));
            info_str(reply->str, "dpr_migrate_error", m->migrate_error,
                     sizeof(m->migrate_error));
        }
    } else if (!reply) {
        snprintf(j->error, sizeof(j->error), "%s: DPR.LAYOUT %s: connection lost", m->name,
                 q->what);
    } else if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "TRYAGAIN", 8) != 0) {
        char msg[sizeof(j->error)];
        snprintf(msg, sizeof(msg), "%s: %s", m->name, reply->str);
        if (strcmp(msg, j->error) != 0) /* each refusal once in the log */
            log_warning("layout of '%s': %s refused DPR.LAYOUT %s: %s", j->deployment, m->name,
                        q->what, reply->str);
        memcpy(j->error, msg, sizeof(msg));
    }
    if (j->outstanding && --j->outstanding == 0 && q->info)
        j->polled = true;
    free(q);
}

static void ask(agent_layouts *l, job *j, size_t i, bool info, const char *what, int argc,
                const char **argv)
{
    lconn *c = conn_get(l, j->m[i].endpoint);
    req *q = calloc(1, sizeof(*q));

    if (!c || !c->rc || !q) {
        free(q);
        return; /* not reachable now: the next round tries again */
    }
    q->l = l;
    snprintf(q->deployment, sizeof(q->deployment), "%s", j->deployment);
    q->round = j->round;
    q->member = i;
    q->info = info;
    snprintf(q->what, sizeof(q->what), "%s", what);
    if (agent_respconn_command(c->rc, argc, argv, NULL, on_reply, q) < 0) {
        free(q);
        return;
    }
    if (j->outstanding++ == 0)
        j->round_ms = dpr_mono_ms();
}

/* DPR.LAYOUT SET|PREPARE <epoch> <index|-> <addr>... to member i. */
static void send_layout(agent_layouts *l, job *j, size_t i, const char *sub, uint64_t epoch)
{
    size_t n = 0;
    char e[24], idx[24];
    const char **argv;

    for (size_t k = 0; k < j->n; k++)
        n += j->m[k].index >= 0;
    argv = calloc(n + 4, sizeof(*argv));
    if (!argv)
        return;
    snprintf(e, sizeof(e), "%" PRIu64, epoch);
    if (j->m[i].index >= 0)
        snprintf(idx, sizeof(idx), "%" PRId64, j->m[i].index);
    else
        snprintf(idx, sizeof(idx), "-");
    argv[0] = "DPR.LAYOUT";
    argv[1] = sub;
    argv[2] = e;
    argv[3] = idx;
    /* the addresses in shard order: members with index k */
    for (size_t k = 0; k < j->n; k++)
        if (j->m[k].index >= 0 && (size_t)j->m[k].index < n)
            argv[4 + j->m[k].index] = j->m[k].endpoint;
    for (size_t k = 0; k < n; k++)
        if (!argv[4 + k]) {
            free(argv);
            return; /* a shard index is missing: the state is in between */
        }
    ask(l, j, i, false, sub, (int)(n + 4), argv);
    free(argv);
}

/* DPR.LAYOUT MIGRATE|COMMIT|ABORT <epoch> [FORCE] to member i. */
static void send_epoch_cmd(agent_layouts *l, job *j, size_t i, const char *sub, uint64_t epoch,
                           bool force)
{
    char e[24];
    const char *argv[4] = {"DPR.LAYOUT", sub, e, "FORCE"};

    snprintf(e, sizeof(e), "%" PRIu64, epoch);
    ask(l, j, i, false, sub, force ? 4 : 3, argv);
}

/* ---- the steps ------------------------------------------------------------------ */

static void set_step(job *j, const char *step)
{
    snprintf(j->step, sizeof(j->step), "%s", step);
}

static bool all_have(job *j)
{
    for (size_t i = 0; i < j->n; i++)
        if (!j->m[i].have)
            return false;
    return true;
}

static void save_or_revert(agent *a, agent_layout *lay, const agent_layout *before)
{
    dpr_err err = DPR_ERR_INIT;

    if (agent_save_state(a, &a->st, &err) < 0)
        *lay = *before; /* logged by agent_save_state; tried again next round */
}

static uint32_t desired_of(const agent *a, const char *deployment);

/* FNV-1a over the nodes of deployment's shards in the placement this node
 * took (0: a single node, or not placed). */
static uint64_t nodes_hash(const agent *a, const char *deployment)
{
    const agent_placed_dep *d = a->raft ? agent_placement_find(&a->placement, deployment)
                                        : NULL;
    uint64_t h = 1469598103934665603ULL;

    if (!d)
        return 0;
    for (uint32_t s = 0; s < d->shards; s++)
        for (const char *c = d->slot[s].node;; c++) {
            h = (h ^ (unsigned char)*c) * 1099511628211ULL;
            if (!*c)
                break;
        }
    return h;
}

static given *given_find(agent_layouts *l, const char *deployment)
{
    for (size_t i = 0; i < l->ngiven; i++)
        if (strcmp(l->given[i].deployment, deployment) == 0)
            return &l->given[i];
    return NULL;
}

/* The shards of deployment have their layout with the nodes they run on now. */
static void given_now(agent_layouts *l, const char *deployment)
{
    given *g = given_find(l, deployment), *v;

    if (!g) {
        v = realloc(l->given, (l->ngiven + 1) * sizeof(*v));
        if (!v)
            return; /* (one more round later) */
        l->given = v;
        g = &l->given[l->ngiven++];
        snprintf(g->deployment, sizeof(g->deployment), "%s", deployment);
    }
    g->nodes = nodes_hash(l->a, deployment);
}

/* Did a shard of deployment move since its layout was given? Always no on
 * a single node. */
static bool moved_since_given(agent_layouts *l, const char *deployment)
{
    const given *g;

    if (!l->a->raft)
        return false;
    g = given_find(l, deployment);
    return !g || g->nodes != nodes_hash(l->a, deployment);
}

static void assign(agent_layouts *l, job *j, agent_layout *lay)
{
    uint64_t want, top = lay->epoch, seen;
    size_t done = 0, at_top = 0;

    set_step(j, "giving the shards their layout");
    if (!all_have(j))
        return;
    /* (the epoch the deployment's last driving node gave, when its shard 0
     * moved here: the new layout is above it) */
    seen = agent_cluster_layout_epoch(l->a, lay->deployment);
    top = seen > top ? seen : top;
    /* every shard has the newest epoch already (this driver restarted, or
     * took over from another node): nothing to give */
    for (size_t i = 0; i < j->n; i++)
        top = j->m[i].epoch > top ? j->m[i].epoch : top;
    for (size_t i = 0; i < j->n; i++)
        at_top += j->m[i].epoch == top;
    if (!j->give && top > 0 && at_top == j->n && j->n == desired_of(l->a, lay->deployment)) {
        if (lay->epoch != top) {
            agent_layout before = *lay;
            lay->epoch = top;
            lay->shards = (uint32_t)j->n;
            save_or_revert(l->a, lay, &before);
        }
        given_now(l, lay->deployment);
        return;
    }
    /* else a newer epoch than any shard has (a shard that moved starts
     * without one), the same for the whole round */
    if (!j->give)
        j->give = top + 1;
    want = j->give;
    for (size_t i = 0; i < j->n; i++) {
        if (j->m[i].epoch == want)
            done++;
        else if (j->m[i].epoch < want && !j->m[i].pending)
            send_layout(l, j, i, "SET", want);
    }
    if (done == j->n) {
        agent_layout before = *lay;
        lay->epoch = want;
        lay->shards = (uint32_t)j->n;
        j->give = 0;
        save_or_revert(l->a, lay, &before);
        given_now(l, lay->deployment);
        log_info("deployment '%s': layout %" PRIu64 " (%zu shards) given to its shards",
                 lay->deployment, want, j->n);
        j->error[0] = '\0';
        agent_cluster_publish(l->a, true); /* other nodes show it */
    }
}

static void finish(agent_layouts *l, job *j, agent_layout *lay)
{
    agent *a = l->a;
    agent_layout before = *lay;
    double secs = (double)(dpr_mono_ms() - j->start_ms) / 1000.0;

    lay->epoch = lay->target_epoch;
    lay->shards = lay->target_shards;
    lay->target_epoch = 0;
    lay->target_shards = 0;
    /* the shards it removed are not needed any more: they retire */
    for (size_t i = 0; i < a->st.nretiring; i++)
        if (strcmp(a->st.retiring[i].deployment, lay->deployment) == 0)
            a->st.retiring[i].held = false;
    save_or_revert(a, lay, &before);
    if (lay->target_epoch)
        return;
    log_notice("deployment '%s' resized from %u to %u shards (layout %" PRIu64 "): %" PRIu64
               " keys moved in %.1f s", lay->deployment, before.shards, lay->shards,
               lay->epoch, j->moved_keys, j->start_ms ? secs : 0.0);
    agent_emit(a, "resize", json_pack("{s:s, s:I, s:I, s:I, s:I, s:f}", "deployment",
                                      lay->deployment, "from", (json_int_t)before.shards,
                                      "to", (json_int_t)lay->shards, "epoch",
                                      (json_int_t)lay->epoch, "moved_keys",
                                      (json_int_t)j->moved_keys, "seconds",
                                      j->start_ms ? secs : 0.0));
    j->error[0] = '\0';
    agent_reconcile(a); /* the shards it removed retire now */
    agent_update_status(a);
}

static void resize(agent_layouts *l, job *j, agent_layout *lay)
{
    uint64_t e = lay->target_epoch, wl = 0;
    size_t done = 0, unprepared = 0, uncommitted = 0;
    bool wl_set = false, sources_ok = true;

    if (!j->start_ms)
        j->start_ms = dpr_mono_ms();
    if (!all_have(j)) {
        set_step(j, "waiting for every shard to answer");
        return;
    }
    for (size_t i = 0; i < j->n; i++) {
        done += j->m[i].epoch == e;
        unprepared += j->m[i].epoch != e && j->m[i].pending != e;
        uncommitted += !j->m[i].committed;
    }
    if (done == j->n) {
        finish(l, j, lay);
        return;
    }
    if (unprepared) {
        set_step(j, "pausing the shards");
        for (size_t i = 0; i < j->n; i++)
            if (j->m[i].epoch != e && j->m[i].pending != e)
                send_layout(l, j, i, "PREPARE", e);
        return;
    }
    if (done) {
        /* some shards committed already (the agent restarted in between, or
         * a shard restarted before its COMMIT): the copies were checked
         * before the first COMMIT went out, so the others commit even if
         * their migration's record is gone (a restart forgets it) */
        set_step(j, "committing");
        for (size_t i = 0; i < j->n; i++)
            if (j->m[i].pending == e)
                send_epoch_cmd(l, j, i, "COMMIT", e, true);
        return;
    }
    if (uncommitted) {
        set_step(j, "waiting until the paused state is in the cut");
        return;
    }
    for (size_t i = 0; i < j->n; i++) {
        member *m = &j->m[i];
        if (!m->source)
            continue;
        bool ok = !strcmp(m->migrate_state, "done") && m->migrate_epoch == e &&
                  m->migrate_wl == m->world_line;
        bool running = !strcmp(m->migrate_state, "running") && m->migrate_epoch == e;
        if (!ok)
            sources_ok = false;
        if (!ok && !running) {
            if (!strcmp(m->migrate_state, "failed") && m->migrate_epoch == e) {
                log_warning("resize of '%s': migration from %s failed: %s; again",
                            lay->deployment, m->name, m->migrate_error);
                snprintf(j->error, sizeof(j->error), "%s: %s", m->name, m->migrate_error);
            }
            send_epoch_cmd(l, j, i, "MIGRATE", e, false);
        }
        if (ok && !wl_set) {
            wl = m->migrate_wl;
            wl_set = true;
        }
    }
    if (!sources_ok) {
        set_step(j, "moving keys");
        return;
    }
    /* every copy is in the cut, on the world-line the migrations ran on */
    for (size_t i = 0; wl_set && i < j->n; i++) {
        if (j->m[i].world_line != wl) {
            set_step(j, "waiting for the world-line to settle");
            return;
        }
    }
    j->moved_keys = 0;
    for (size_t i = 0; i < j->n; i++)
        j->moved_keys += j->m[i].source ? j->m[i].migrate_keys : 0;
    set_step(j, "committing");
    for (size_t i = 0; i < j->n; i++)
        send_epoch_cmd(l, j, i, "COMMIT", e, false);
}

/* Drops the connections of j's members: their answers will not come. */
static void give_up_round(agent_layouts *l, job *j)
{
    for (size_t i = 0; i < j->n; i++) {
        for (lconn *c = l->conns; c; c = c->next) {
            if (c->rc && strcmp(c->endpoint, j->m[i].endpoint) == 0) {
                agent_respconn *rc = c->rc;
                c->rc = NULL;
                agent_respconn_close(rc); /* the callbacks run now, with no reply */
            }
        }
    }
    j->outstanding = 0;
    j->polled = false;
    j->round++;
}

/* How many shards deployment has: here, or in a cluster on every node. */
static uint32_t desired_of(const agent *a, const char *deployment)
{
    const agent_placed_dep *d = agent_placement_find(&a->placement, deployment);
    uint32_t n = 0;

    if (a->raft && d)
        return d->shards;
    for (size_t i = 0; i < a->st.ninst; i++)
        n += strcmp(a->st.inst[i].deployment, deployment) == 0;
    return n;
}

static void on_tick(uv_timer_t *t)
{
    agent_layouts *l = t->data;
    agent *a = l->a;

    /* jobs of deployments that need nothing (any more) */
    for (size_t i = l->njobs; i > 0; i--) {
        agent_layout *lay = agent_state_layout(&a->st, l->jobs[i - 1].deployment);
        if (!lay || (!lay->target_epoch && lay->epoch &&
                     lay->shards == desired_of(a, lay->deployment) &&
                     !moved_since_given(l, lay->deployment)))
            job_drop(l, i - 1);
    }
    for (size_t d = 0; d < a->st.nlayouts; d++) {
        agent_layout *lay = &a->st.layouts[d];
        job *j;
        if (!agent_cluster_drives(a, lay->deployment))
            continue; /* the node running its shard 0 does */
        if (!lay->target_epoch && lay->epoch &&
            lay->shards == desired_of(a, lay->deployment) &&
            !moved_since_given(l, lay->deployment))
            continue; /* nothing to do */
        if (!lay->target_epoch && desired_of(a, lay->deployment) == 0)
            continue;
        if (!(j = job_ensure(l, lay->deployment)))
            continue;
        if (j->outstanding && dpr_mono_ms() - j->round_ms > ROUND_TIMEOUT_MS)
            give_up_round(l, j);
        if (j->outstanding)
            continue; /* answers of this round still coming */
        if (!j->polled) {
            /* a new round: who takes part, and what each says */
            j->round++;
            if (members_build(l, j, lay) < 0)
                continue;
            for (size_t i = 0; i < j->n; i++) {
                const char *argv[2] = {"INFO", "dpr"};
                j->m[i].have = false;
                ask(l, j, i, true, "INFO", 2, argv);
            }
            if (j->n && !j->outstanding)
                set_step(j, "waiting for every shard to answer");
            continue;
        }
        j->polled = false;
        j->round++; /* the commands' answers belong to a round of their own */
        if (lay->target_epoch)
            resize(l, j, lay);
        else
            assign(l, j, lay);
    }
}

/* ---- life cycle, status ---------------------------------------------------------- */

int agent_layouts_start(agent *a, agent_layouts **out)
{
    agent_layouts *l = calloc(1, sizeof(*l));

    if (!l)
        return -ENOMEM;
    l->a = a;
    uv_timer_init(a->loop, &l->timer);
    l->timer.data = l;
    l->timer_open = true;
    uv_timer_start(&l->timer, on_tick, LAYOUT_TICK_MS, LAYOUT_TICK_MS);
    *out = l;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
}

void agent_layouts_stop(agent_layouts *l)
{
    if (!l || l->stopping)
        return;
    l->stopping = true;
    for (lconn *c = l->conns; c; c = c->next) {
        if (c->rc) {
            agent_respconn *rc = c->rc;
            c->rc = NULL;
            agent_respconn_close(rc); /* callbacks get NULL replies; the handles close */
        }
    }
    if (l->timer_open) {
        l->timer_open = false;
        uv_close((uv_handle_t *)&l->timer, on_timer_closed);
    }
}

void agent_layouts_free(agent_layouts *l)
{
    if (!l)
        return;
    while (l->conns) {
        lconn *c = l->conns;
        l->conns = c->next;
        free(c);
    }
    for (size_t i = 0; i < l->njobs; i++)
        free(l->jobs[i].m);
    free(l->jobs);
    free(l->given);
    free(l);
}

json_t *agent_layouts_status(agent_layouts *l, const char *deployment)
{
    const agent_layout *lay = l ? agent_state_layout(&l->a->st, deployment) : NULL;
    job *j = l ? job_find(l, deployment) : NULL;
    json_t *resize = json_null();

    if (!lay)
        return json_null();
    if (lay->target_epoch)
        resize = json_pack("{s:I, s:I, s:I, s:s, s:I, s:f, s:s?}", "from",
                           (json_int_t)lay->shards, "to", (json_int_t)lay->target_shards,
                           "epoch", (json_int_t)lay->target_epoch, "step",
                           j && j->step[0] ? j->step : "starting", "moved_keys",
                           (json_int_t)(j ? j->moved_keys : 0), "seconds",
                           j && j->start_ms ? (double)(dpr_mono_ms() - j->start_ms) / 1000.0
                                            : 0.0,
                           "error", j && j->error[0] ? j->error : NULL);
    return json_pack("{s:I, s:I, s:o}", "epoch", (json_int_t)lay->epoch, "shards",
                     (json_int_t)lay->shards, "resize", resize);
}
