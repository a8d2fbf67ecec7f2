/* raftnode.c - this agent's Raft member (see raftnode.h). */
#include "raftnode.h"

#include <errno.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/log.h"
#include "rafttransport.h"

/* Log segments (c-raft preallocates 3): measured with bench/raft.py, 1 MiB
 * segments filled about once a second at 512 workers, and every rollover
 * held a commit 30 to 50 ms (report->cut p99 66 ms); with 8 MiB (c-raft's
 * default) p99 was 5.5 ms. */
#define SEGMENT_SIZE (8u << 20)
/* Snapshots: c-raft counts entries, but ours differ a thousandfold in size
 * (a finder entry is the whole finder state, about 25 bytes per worker; a
 * barrier is a few bytes), and each snapshot held commits 30 to 50 ms. So
 * the threshold follows the log's bytes: about SNAPSHOT_LOG_BYTES of
 * entries between snapshots (recomputed every SNAPSHOT_TUNE_MS from the
 * bytes applied per entry), within [MIN, MAX] entries, SNAPSHOT_TRAILING
 * kept behind each. */
#define SNAPSHOT_LOG_BYTES (64u << 20)
#define SNAPSHOT_THRESHOLD_MIN 1024
#define SNAPSHOT_THRESHOLD_MAX 262144
#define SNAPSHOT_THRESHOLD_START 4096
#define SNAPSHOT_TRAILING 512
#define SNAPSHOT_TUNE_MS 1000

struct agent_raft {
    struct raft raft;
    struct raft_io io;
    agent_raft_transport transport; /* c-raft's TCP transport, wrapped */
    struct raft_fsm fsm;
    uv_timer_t poll;
    bool io_open, transport_open, raft_open, poll_open, closing;
    int pending_closes; /* raft and the poll timer */
    struct request *requests; /* applies, barriers and changes not yet ended */
    uint64_t drain_until;     /* closing: when to close even with entries in flight */
    agent_raft_hooks hooks;
    agent_cstate cs;
    dpr_buf scratch;    /* entry and snapshot images */
    /* when the leader last saw each member answer (on_poll) */
    struct contact { uint64_t id; uint64_t ms; } contacts[64];
    size_t ncontacts;
    uint64_t leader_since;  /* when this node last became leader (uv_now) */
    bool changing;      /* a membership change runs */
    /* the snapshot threshold's tuning: bytes applied since, and the last
     * applied index and time it was tuned at */
    uint64_t tune_bytes, tune_index, tune_ms;
    unsigned threshold;
    /* what the hook last heard */
    int last_state;
    raft_id last_leader;
    raft_term last_term;
    raft_index last_config;  /* configuration_index */
    uint64_t last_changes;   /* cs.changes the applied hook last heard */
    char dir[4096];
    /* a fresh node without a seed list: not started until agent_raft_begin */
    bool waiting;
    char address[AGENT_RAFT_ADDRESS_MAX];
    unsigned heartbeat_ms;
};

typedef struct request {
    union {
        struct raft_apply apply;
        struct raft_barrier barrier;
        struct raft_change change;
    } u;
    struct request *next, **pprev; /* in agent_raft.requests */
    agent_raft *r;
    agent_raft_done_fn done;        /* NULL once told at close (detached) */
    void *arg;
    uint64_t id;        /* a membership change's member */
    int then_role;      /* add: the role to assign next (-1: none) */
} request;

static uint64_t id_of(const char *address)
{
    uint64_t h = 14695981039346656037ull;

    for (const unsigned char *p = (const unsigned char *)address; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return h ? h : 1; /* 0 is no id for c-raft */
}

static int from_raft(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case RAFT_NOMEM:
        return -ENOMEM;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED:
        return -ENOTCONN;
    default:
        return -EIO;
    }
}

/* ---- requests ------------------------------------------------------------------ */

static void request_track(agent_raft *r, request *q)
{
    q->r = r;
    q->next = r->requests;
    if (q->next)
        q->next->pprev = &q->next;
    q->pprev = &r->requests;
    r->requests = q;
}

/* Request q ended (c-raft called back with status): told, unless it was
 * told already at close, and freed. */
static void request_end(request *q, int status)
{
    agent_raft_done_fn done = q->done;

    *q->pprev = q->next;
    if (q->next)
        q->next->pprev = q->pprev;
    if (done)
        done(q->arg, from_raft(status));
    free(q);
}

/* ---- the state machine ---------------------------------------------------- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    agent_raft *r = fsm->data;
    dpr_err err = DPR_ERR_INIT;
    int rc;

    *result = NULL;
    r->tune_bytes += buf->len;
    rc = agent_cstate_apply(&r->cs, buf->base, buf->len, &err);
    if (rc < 0) {
        /* a committed entry this node cannot apply: its state would
         * diverge from the others', so it must not go on */
        log_error("raft: cannot apply a committed entry: %s", err.msg);
        return rc == -ENOMEM ? RAFT_NOMEM : RAFT_MALFORMED;
    }
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n)
{
    agent_raft *r = fsm->data;
    struct raft_buffer *b;

    if (agent_cstate_snapshot(&r->cs, &r->scratch) < 0)
        return RAFT_NOMEM;
    b = raft_malloc(sizeof(*b));
    if (!b)
        return RAFT_NOMEM;
    b->len = r->scratch.len;
    b->base = raft_malloc(b->len);
    if (!b->base) {
        raft_free(b);
        return RAFT_NOMEM;
    }
    memcpy(b->base, r->scratch.data, b->len);
    *bufs = b;
    *n = 1;
    return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n)
{
    (void)fsm;
    for (unsigned i = 0; i < *n; i++)
        raft_free((*bufs)[i].base);
    raft_free(*bufs);
    *bufs = NULL;
    *n = 0;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    agent_raft *r = fsm->data;
    dpr_err err = DPR_ERR_INIT;
    int rc = agent_cstate_restore(&r->cs, buf->base, buf->len, &err);

    if (rc < 0) {
        log_error("raft: cannot restore a snapshot: %s", err.msg);
        return rc == -ENOMEM ? RAFT_NOMEM : RAFT_MALFORMED;
    }
    raft_free(buf->base); /* ours once restored */
    return 0;
}

/* ---- watching the role ------------------------------------------------------ */

/* The leader notes which members answered within the last election
 * timeout (c-raft's progress[].recent_recv). */
static void note_contacts(agent_raft *r)
{
    uint64_t now = uv_now(r->poll.loop);
    const struct raft_configuration *c = &r->raft.configuration;

    if (raft_state(&r->raft) != RAFT_LEADER || !r->raft.leader_state.progress)
        return;
    for (unsigned i = 0; i < c->n; i++) {
        size_t k;
        if (!r->raft.leader_state.progress[i].recent_recv && c->servers[i].id != r->raft.id)
            continue;
        for (k = 0; k < r->ncontacts && r->contacts[k].id != c->servers[i].id; k++)
            ;
        if (k == r->ncontacts) {
            if (k == sizeof(r->contacts) / sizeof(r->contacts[0]))
                continue;
            r->ncontacts++;
        }
        r->contacts[k].id = c->servers[i].id;
        r->contacts[k].ms = now;
    }
}

unsigned agent_raft_tune_threshold(unsigned current, uint64_t bytes, uint64_t entries)
{
    uint64_t want;

    if (entries < 64)
        return current; /* too few to tell */
    want = SNAPSHOT_LOG_BYTES / (bytes / entries + 1);
    if (want < SNAPSHOT_THRESHOLD_MIN)
        want = SNAPSHOT_THRESHOLD_MIN;
    if (want > SNAPSHOT_THRESHOLD_MAX)
        want = SNAPSHOT_THRESHOLD_MAX;
    /* move halfway: one busy second does not decide alone */
    return (unsigned)(((uint64_t)current + want) / 2);
}

/* Every SNAPSHOT_TUNE_MS: the threshold for the entries applied since. */
static void tune_snapshots(agent_raft *r)
{
    uint64_t now = uv_now(r->poll.loop), index = raft_last_applied(&r->raft);
    unsigned want;

    if (now - r->tune_ms < SNAPSHOT_TUNE_MS || index < r->tune_index)
        return;
    want = agent_raft_tune_threshold(r->threshold, r->tune_bytes, index - r->tune_index);
    if (want != r->threshold) {
        r->threshold = want;
        raft_set_snapshot_threshold(&r->raft, r->threshold);
    }
    r->tune_bytes = 0;
    r->tune_index = index;
    r->tune_ms = now;
}

static void on_poll(uv_timer_t *t)
{
    agent_raft *r = t->data;
    raft_id leader = 0;
    const char *addr = NULL;
    int state;

    if (r->closing)
        return;
    note_contacts(r);
    tune_snapshots(r);
    if (r->cs.changes != r->last_changes) {
        r->last_changes = r->cs.changes;
        if (r->hooks.applied)
            r->hooks.applied(r->hooks.arg);
        if (r->closing)
            return;
    }
    state = raft_state(&r->raft);
    raft_leader(&r->raft, &leader, &addr);
    if (state == r->last_state && leader == r->last_leader &&
        r->raft.current_term == r->last_term && r->raft.configuration_index == r->last_config)
        return;
    r->last_config = r->raft.configuration_index;
    if (state == RAFT_LEADER && r->last_state != RAFT_LEADER)
        r->leader_since = uv_now(r->poll.loop);
    if (state != r->last_state)
        log_info("raft: %s (term %llu, leader %s)", agent_raft_role_name(agent_raft_role_now(r)),
                 (unsigned long long)r->raft.current_term, addr ? addr : "unknown");
    r->last_state = state;
    r->last_leader = leader;
    r->last_term = r->raft.current_term;
    if (r->hooks.changed)
        r->hooks.changed(r->hooks.arg);
}

/* ---- closing ------------------------------------------------------------------- */

static void free_if_closed(agent_raft *r)
{
    if (--r->pending_closes > 0)
        return;
    agent_cstate_free(&r->cs);
    dpr_buf_free(&r->scratch);
    free(r);
}

static void on_poll_closed(uv_handle_t *h)
{
    free_if_closed(h->data);
}

static void on_raft_closed(struct raft *raft)
{
    agent_raft *r = raft->data;

    raft_uv_close(&r->io);
    agent_raft_transport_free(&r->transport);
    free_if_closed(r);
}

/* How long a closing member waits for the entries it is writing. */
#define CLOSE_DRAIN_MS 1000

static void close_now(agent_raft *r);

/* Are entries of the log still being written (or not yet applied)? */
static bool entries_in_flight(agent_raft *r)
{
    return r->raft_open && raft_last_applied(&r->raft) < raft_last_index(&r->raft);
}

static void on_drain(uv_timer_t *t)
{
    agent_raft *r = t->data;

    if (entries_in_flight(r) && uv_now(t->loop) < r->drain_until)
        return;
    uv_timer_stop(t);
    close_now(r);
}

/*
 * Closing. c-raft 0.15 (Debian 12) crashes in raft_close when an append to
 * the log is still being written (the write's callback releases entries the
 * close already released: a NULL read in its entry reference table, seen
 * under ASan on SIGTERM right after an apply). So the callers are told at
 * once (-ENOTCONN, as the close would tell them; their requests are
 * detached), and raft_close waits until the log's last entry is applied, at
 * most CLOSE_DRAIN_MS (a follower whose leader is gone never applies its
 * last entries).
 */
void agent_raft_close(agent_raft *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    for (request *q = r->requests; q; q = q->next) {
        agent_raft_done_fn done = q->done;
        q->done = NULL;
        if (done)
            done(q->arg, -ENOTCONN);
    }
    if (r->poll_open && entries_in_flight(r)) {
        r->drain_until = uv_now(r->poll.loop) + CLOSE_DRAIN_MS;
        uv_timer_start(&r->poll, on_drain, 10, 10);
        return;
    }
    close_now(r);
}

static void close_now(agent_raft *r)
{
    r->pending_closes = 1;
    if (r->poll_open) {
        r->pending_closes++;
        uv_close((uv_handle_t *)&r->poll, on_poll_closed);
    }
    if (r->raft_open) {
        r->pending_closes++;
        raft_close(&r->raft, on_raft_closed);
    } else {
        if (r->io_open)
            raft_uv_close(&r->io);
        if (r->transport_open)
            agent_raft_transport_free(&r->transport);
    }
    free_if_closed(r);
}

/* ---- starting -------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The first configuration: this node and its peers. */
static int bootstrap(agent_raft *r, const agent_raft_config *cfg, dpr_err *err)
{
    struct raft_configuration conf;
    const char **all = calloc(cfg->npeers + 1, sizeof(*all));
    size_t n = 0;
    int rv;

    if (!all)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    if (cfg->join) {
        free(all);
        return 0; /* the leader adds this node */
    }
    all[n++] = cfg->address;
    for (size_t i = 0; i < cfg->npeers; i++)
        all[n++] = cfg->peers[i];
    qsort(all, n, sizeof(*all), cmp_str);
    raft_configuration_init(&conf);
    rv = 0;
    for (size_t i = 0; i < n && rv == 0; i++)
        rv = raft_configuration_add(&conf, id_of(all[i]), all[i],
                                    i < AGENT_RAFT_MAX_VOTERS ? RAFT_VOTER : RAFT_STANDBY);
    if (rv == 0) {
        rv = raft_bootstrap(&r->raft, &conf);
        if (rv == 0)
            log_info("raft: bootstrapped a cluster of %zu member%s", n, n == 1 ? "" : "s");
        else if (rv == RAFT_CANTBOOTSTRAP)
            rv = 0; /* a log exists: it knows the configuration */
        else
            dpr_err_set(err, -EIO, "raft: cannot bootstrap: %s", raft_errmsg(&r->raft));
    } else {
        dpr_err_set(err, from_raft(rv), "raft: bad configuration: %s", raft_strerror(rv));
    }
    raft_configuration_close(&conf);
    free(all);
    return rv == 0 ? 0 : (err && err->code ? err->code : -EIO);
}

/* Does dir hold no Raft state (c-raft's metadata files)? */
static bool fresh(const char *dir)
{
    static const char *const files[] = { "metadata1", "metadata2" };
    char path[4200];

    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        if (access(path, F_OK) == 0)
            return false;
    }
    return true;
}

/* Bootstraps (unless cfg->join) and starts the member, and its poll. */
static int start(agent_raft *r, const agent_raft_config *cfg, dpr_err *err)
{
    int rv, rc = bootstrap(r, cfg, err);

    if (rc < 0)
        return rc;
    rv = raft_start(&r->raft);
    if (rv != 0)
        return dpr_err_set(err, -EIO, "raft: cannot start from %s: %s", r->dir,
                           raft_errmsg(&r->raft));
    uv_timer_start(&r->poll, on_poll, 0, r->heartbeat_ms);
    return 0;
}

bool agent_raft_waiting(const agent_raft *r)
{
    return r->waiting;
}

int agent_raft_begin(agent_raft *r, char *const *peers, size_t npeers, bool join, dpr_err *err)
{
    agent_raft_config cfg = { .dir = r->dir, .address = r->address, .peers = peers,
                              .npeers = npeers, .join = join };
    int rc;

    if (!r->waiting)
        return dpr_err_set(err, -EALREADY, "raft: the member has started already");
    rc = start(r, &cfg, err);
    if (rc < 0)
        return rc;
    r->waiting = false;
    log_info("raft: member %016llx on %s %s (found by DNS-SD)",
             (unsigned long long)id_of(r->address), r->address,
             join ? "asks the cluster's agents to add it" : "bootstrapped a new cluster");
    return 0;
}

void agent_raft_set_tls(agent_raft *r, const struct agent_tls *tls)
{
    agent_raft_transport_tls(&r->transport, tls);
}

int agent_raft_open(uv_loop_t *loop, const agent_raft_config *cfg,
                    const agent_raft_hooks *hooks, agent_raft **out, dpr_err *err)
{
    agent_raft *r = calloc(1, sizeof(*r));
    int rv, rc;

    *out = NULL;
    if (!r)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    agent_cstate_init(&r->cs);
    dpr_buf_init(&r->scratch);
    if (hooks)
        r->hooks = *hooks;
    r->last_state = -1;
    snprintf(r->dir, sizeof(r->dir), "%s", cfg->dir);
    rc = dpr_mkdir_p(cfg->dir, 0700, err);
    if (rc < 0) {
        dpr_err_prefix(err, "raft data directory");
        goto fail;
    }
    rv = agent_raft_transport_init(&r->transport, loop, cfg->tls);
    if (rv != 0) {
        rc = dpr_err_set(err, -EIO, "raft: cannot create the transport: %s", raft_strerror(rv));
        goto fail;
    }
    r->transport_open = true;
    rv = raft_uv_init(&r->io, loop, cfg->dir, &r->transport.outer);
    if (rv != 0) {
        rc = dpr_err_set(err, -EIO, "raft: cannot open %s: %s", cfg->dir, r->io.errmsg);
        goto fail;
    }
    r->io_open = true;
    raft_uv_set_segment_size(&r->io, SEGMENT_SIZE);
    r->fsm.version = 2;
    r->fsm.data = r;
    r->fsm.apply = fsm_apply;
    r->fsm.snapshot = fsm_snapshot;
    r->fsm.snapshot_finalize = fsm_snapshot_finalize;
    r->fsm.restore = fsm_restore;
    rv = raft_init(&r->raft, &r->io, &r->fsm, id_of(cfg->address), cfg->address);
    if (rv != 0) {
        rc = dpr_err_set(err, -EIO, "raft: cannot start: %s", raft_errmsg(&r->raft));
        goto fail;
    }
    r->raft_open = true;
    r->raft.data = r;
    raft_set_election_timeout(&r->raft, cfg->election_ms);
    raft_set_heartbeat_timeout(&r->raft, cfg->heartbeat_ms);
    raft_set_pre_vote(&r->raft, true);
    r->threshold = SNAPSHOT_THRESHOLD_START;
    raft_set_snapshot_threshold(&r->raft, r->threshold);
    raft_set_snapshot_trailing(&r->raft, SNAPSHOT_TRAILING);
    snprintf(r->address, sizeof(r->address), "%s", cfg->address);
    r->heartbeat_ms = cfg->heartbeat_ms;
    uv_timer_init(loop, &r->poll);
    r->poll.data = r;
    r->poll_open = true;
    if (cfg->wait_for_peers && fresh(cfg->dir)) {
        r->waiting = true;
        log_info("raft: member %016llx on %s is new and has no seed list: waiting for the "
                 "agents of its cluster (DNS-SD)", (unsigned long long)id_of(cfg->address),
                 cfg->address);
        *out = r;
        return 0;
    }
    rc = start(r, cfg, err);
    if (rc < 0)
        goto fail;
    log_info("raft: member %016llx on %s (%zu peer%s, election %u ms, heartbeat %u ms)",
             (unsigned long long)id_of(cfg->address), cfg->address, cfg->npeers,
             cfg->npeers == 1 ? "" : "s", cfg->election_ms, cfg->heartbeat_ms);
    *out = r;
    return 0;
fail:
    agent_raft_close(r);
    return rc;
}

/* ---- asking ---------------------------------------------------------------------- */

agent_raft_role agent_raft_role_now(agent_raft *r)
{
    switch (raft_state(&r->raft)) {
    case RAFT_FOLLOWER:
        return AGENT_RAFT_FOLLOWER;
    case RAFT_CANDIDATE:
        return AGENT_RAFT_CANDIDATE;
    case RAFT_LEADER:
        return AGENT_RAFT_LEADER;
    default:
        return AGENT_RAFT_UNAVAILABLE;
    }
}

const char *agent_raft_role_name(agent_raft_role role)
{
    static const char *const names[] = { "unavailable", "follower", "candidate", "leader" };

    return (unsigned)role < 4 ? names[role] : "unknown";
}

uint64_t agent_raft_id(const agent_raft *r)
{
    return r->raft.id;
}

uint64_t agent_raft_term(agent_raft *r)
{
    return r->raft.current_term;
}

uint64_t agent_raft_leader(agent_raft *r, const char **address)
{
    raft_id id = 0;
    const char *a = NULL;

    raft_leader(&r->raft, &id, &a);
    *address = id ? a : NULL;
    return id;
}

static int64_t last_contact(agent_raft *r, uint64_t id, raft_id leader)
{
    uint64_t now = uv_now(r->poll.loop);

    if (id == r->raft.id)
        return 0;
    if (raft_state(&r->raft) == RAFT_LEADER) {
        for (size_t k = 0; k < r->ncontacts; k++)
            if (r->contacts[k].id == id && r->contacts[k].ms >= r->leader_since)
                return (int64_t)(now - r->contacts[k].ms);
        /* not heard from since this node leads */
        return (int64_t)(now - r->leader_since);
    }
    if (id == leader && raft_state(&r->raft) == RAFT_FOLLOWER) {
        raft_time t = r->io.time(&r->io);
        return t >= r->raft.election_timer_start ? (int64_t)(t - r->raft.election_timer_start)
                                                  : 0;
    }
    return -1;
}

size_t agent_raft_members(agent_raft *r, agent_raft_member *m, size_t cap)
{
    const struct raft_configuration *c = &r->raft.configuration;
    raft_id leader = 0;
    const char *la = NULL;

    raft_leader(&r->raft, &leader, &la);
    for (unsigned i = 0; i < c->n && i < cap; i++) {
        m[i].id = c->servers[i].id;
        snprintf(m[i].address, sizeof(m[i].address), "%s", c->servers[i].address);
        m[i].vote = c->servers[i].role == RAFT_VOTER ? AGENT_RAFT_VOTER :
                    c->servers[i].role == RAFT_STANDBY ? AGENT_RAFT_STANDBY : AGENT_RAFT_SPARE;
        m[i].role = m[i].vote == AGENT_RAFT_VOTER ? "voter" :
                    m[i].vote == AGENT_RAFT_STANDBY ? "standby" : "spare";
        m[i].leader = c->servers[i].id == leader;
        m[i].last_contact_ms = last_contact(r, m[i].id, leader);
    }
    return c->n;
}

bool agent_raft_is_member(agent_raft *r)
{
    const struct raft_configuration *c = &r->raft.configuration;

    for (unsigned i = 0; i < c->n; i++)
        if (c->servers[i].id == r->raft.id)
            return true;
    return false;
}

uint64_t agent_raft_id_of(const char *address)
{
    return id_of(address);
}

const agent_cstate *agent_raft_cstate(const agent_raft *r)
{
    return &r->cs;
}

static void on_applied(struct raft_apply *req, int status, void *result)
{
    request *q = req->data;

    (void)result;
    if (status != 0 && from_raft(status) == -EIO)
        log_error("raft: an entry failed: %s", raft_strerror(status));
    request_end(q, status);
}

int agent_raft_apply(agent_raft *r, int type, const void *payload, size_t len,
                     agent_raft_done_fn done, void *arg)
{
    struct raft_buffer buf;
    request *q;
    int rv;

    if (r->closing || raft_state(&r->raft) != RAFT_LEADER)
        return -ENOTCONN;
    if (agent_cstate_entry_encode(type, payload, len, &r->scratch) < 0)
        return -ENOMEM;
    q = calloc(1, sizeof(*q));
    buf.len = r->scratch.len;
    buf.base = raft_malloc(buf.len);
    if (!q || !buf.base) {
        free(q);
        raft_free(buf.base);
        return -ENOMEM;
    }
    memcpy(buf.base, r->scratch.data, buf.len);
    q->done = done;
    q->arg = arg;
    q->u.apply.data = q;
    rv = raft_apply(&r->raft, &q->u.apply, &buf, 1, on_applied);
    if (rv != 0) {
        raft_free(buf.base);
        free(q);
        return from_raft(rv);
    }
    request_track(r, q);
    return 0;
}

static void on_barrier(struct raft_barrier *req, int status)
{
    request_end(req->data, status);
}

int agent_raft_barrier(agent_raft *r, agent_raft_done_fn done, void *arg)
{
    request *q;
    int rv;

    if (r->closing || raft_state(&r->raft) != RAFT_LEADER)
        return -ENOTCONN;
    q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->done = done;
    q->arg = arg;
    q->u.barrier.data = q;
    rv = raft_barrier(&r->raft, &q->u.barrier, on_barrier);
    if (rv != 0) {
        free(q);
        return from_raft(rv);
    }
    request_track(r, q);
    return 0;
}

/* ---- membership ------------------------------------------------------------------ */

static int raft_role_of(agent_raft_vote vote)
{
    return vote == AGENT_RAFT_VOTER ? RAFT_VOTER : vote == AGENT_RAFT_STANDBY ? RAFT_STANDBY
                                                                              : RAFT_SPARE;
}

static bool in_config(agent_raft *r, uint64_t id, int *role)
{
    const struct raft_configuration *c = &r->raft.configuration;

    for (unsigned i = 0; i < c->n; i++)
        if (c->servers[i].id == id) {
            if (role)
                *role = c->servers[i].role;
            return true;
        }
    return false;
}

static void on_changed(struct raft_change *req, int status)
{
    request *q = req->data;
    agent_raft *r = q->r;
    int rv;

    if (status == 0 && q->then_role >= 0 && !r->closing) {
        /* added as a spare: now its vote */
        int role = q->then_role;
        q->then_role = -1;
        q->u.change.data = q;
        rv = raft_assign(&r->raft, &q->u.change, q->id, role, on_changed);
        if (rv == 0)
            return;
        status = rv;
    }
    if (status != 0)
        log_warning("raft: a membership change failed: %s", raft_strerror(status));
    r->changing = false;
    request_end(q, status);
}

/* Starts a change: kind 'a' add, 's' assign, 'r' remove. */
static int change(agent_raft *r, char kind, uint64_t id, const char *address,
                  agent_raft_vote vote, agent_raft_done_fn done, void *arg)
{
    request *q;
    int role = -1, rv;

    if (r->closing || raft_state(&r->raft) != RAFT_LEADER)
        return -ENOTCONN;
    if (r->changing)
        return -EBUSY;
    if (kind == 'a' && in_config(r, id, NULL))
        return -EEXIST;
    if (kind != 'a' && !in_config(r, id, &role))
        return -ENOENT;
    if (kind == 's' && role == raft_role_of(vote))
        return -EALREADY;
    q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->done = done;
    q->arg = arg;
    q->id = id;
    q->then_role = kind == 'a' && vote != AGENT_RAFT_SPARE ? raft_role_of(vote) : -1;
    q->u.change.data = q;
    if (kind == 'a')
        rv = raft_add(&r->raft, &q->u.change, id, address, on_changed);
    else if (kind == 's')
        rv = raft_assign(&r->raft, &q->u.change, id, raft_role_of(vote), on_changed);
    else
        rv = raft_remove(&r->raft, &q->u.change, id, on_changed);
    if (rv != 0) {
        free(q);
        return rv == RAFT_CANTCHANGE ? -EBUSY : from_raft(rv);
    }
    request_track(r, q);
    r->changing = true;
    return 0;
}

int agent_raft_add(agent_raft *r, uint64_t id, const char *address, agent_raft_vote vote,
                   agent_raft_done_fn done, void *arg)
{
    return change(r, 'a', id, address, vote, done, arg);
}

int agent_raft_assign(agent_raft *r, uint64_t id, agent_raft_vote vote,
                      agent_raft_done_fn done, void *arg)
{
    return change(r, 's', id, NULL, vote, done, arg);
}

int agent_raft_remove(agent_raft *r, uint64_t id, agent_raft_done_fn done, void *arg)
{
    return change(r, 'r', id, NULL, AGENT_RAFT_SPARE, done, arg);
}
