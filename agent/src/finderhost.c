/* finderhost.c - see finderhost.h. */
#include "finderhost.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/err.h"
#include "common/fs.h"
#include "common/log.h"
#include "dpr/finder_server.h"
#include "dpr/store.h"
#include "raftstore.h"

/* Servers replaced on a leadership change are freed this long after (their
 * handles close on the loop turn they were stopped in). */
#define REAP_MS 100

typedef enum finder_mode {
    MODE_ALONE,     /* one node: the file store */
    MODE_FOLLOWER,  /* another node leads (or none): requests are redirected */
    MODE_STARTING,  /* this node leads: a barrier runs before it serves */
    MODE_LEADER,    /* serving from the Raft log */
} finder_mode;

struct agent_finder {
    dpr_domains *ds;
    dpr_store *store;
    dpr_server *srv;
    dpr_server_config cfg;
    char *listen;
    char address[1024];
    /* the TLS port (tls_listen NULL: none); the strings of cfg.tls */
    char *tls_listen, *tls_files[5];
    unsigned tls_port;
    char tls_address[1024];
    /* a cluster (raft != NULL) */
    uv_loop_t *loop;
    agent_raft *raft;
    finder_mode mode;
    uint64_t epoch;           /* bumps at every mode change */
    agent_finder_hooks hooks;
    unsigned port;            /* finder.listen's port: every node's finder port */
    char not_serving[320];
    dpr_server **retired;     /* stopped servers, freed by the reaper */
    size_t nretired;
    uv_timer_t reaper;
    bool reaper_open, stopping;
    dpr_domains *view;        /* a follower's view of the replicated state */
    uint64_t view_changes;
    char *legacy_dir;         /* a single node's file store, imported once */
};

/* "kv (world-line 3, 3 workers), sessions (...)" of the published view,
 * shortened with "..." when it does not fit. */
static void describe_domains(const dpr_domains *ds, char *out, size_t cap)
{
    size_t off = 0, n = dpr_domains_count(ds);

    out[0] = '\0';
    for (size_t i = 0; i < n && off < cap; i++) {
        dpr_finder *f = dpr_domains_at(ds, i);
        int w = snprintf(out + off, cap - off, "%s%s (world-line %llu, %zu worker%s)",
                         i ? ", " : "", dpr_domains_name(ds, i),
                         (unsigned long long)dpr_finder_world_line(f),
                         dpr_finder_worker_count(f), dpr_finder_worker_count(f) == 1 ? "" : "s");
        if (w < 0 || (size_t)w >= cap - off) {
            if (cap > 4)
                snprintf(out + cap - 4, 4, "...");
            return;
        }
        off += (size_t)w;
    }
}

static int load(agent_finder *af, const char *dir, dpr_err *err)
{
    dpr_domains_state st = { 0, 0, NULL };
    char what[400];
    int rc = dpr_store_load(af->store, &st);

    if (rc == -ENOENT) {
        rc = dpr_domains_new(&af->ds);
        if (rc < 0)
            dpr_err_set(err, rc, "cannot create the finder: %s", strerror(-rc));
        else
            log_info("finder: no state in %s, starting fresh (no domains yet: each deployment "
                     "gets its own when its first instance registers)", dir);
        return rc;
    }
    if (rc < 0) {
        /* the advice does not fit in err: it gets a line of its own */
        log_error("finder: starting over would lose committed data; repair or restore "
                  "%s/finder.state", dir);
        return dpr_err_set(err, rc, "cannot load the finder state: %s; refusing to start",
                           dpr_store_error(af->store));
    }
    rc = dpr_domains_restore(&st, &af->ds);
    if (rc < 0) {
        dpr_err_set(err, rc, "cannot restore the finder state from %s/finder.state: %s", dir,
                    strerror(-rc));
    } else {
        describe_domains(af->ds, what, sizeof(what));
        log_info("finder: restored %zu domain%s from %s%s%s", dpr_domains_count(af->ds),
                 dpr_domains_count(af->ds) == 1 ? "" : "s", dir, st.n ? ": " : "", what);
    }
    dpr_domains_state_free(&st);
    return rc;
}

/* The workers of members[0..n) that belong to domain (and are in `from`). */
static size_t members_of(const agent_finder_member *m, size_t n, const char *domain,
                         const dpr_finder *from, uint64_t *out)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].domain, domain) == 0 && dpr_finder_has_worker(from, m[i].worker))
            out[k++] = m[i].worker;
    return k;
}

/*
 * The upgrade from a finder without domains (finderhost.h): the default
 * domain's workers that belong to members of other domains move to those
 * domains; the result is saved before anything is served.
 */
static int split_default(agent_finder *af, const char *dir, const agent_finder_member *m,
                         size_t n, dpr_err *err)
{
    uint64_t *workers;
    size_t moved = 0;
    dpr_domains_state st = { 0, 0, NULL };
    dpr_finder *def;
    int rc = 0;

    if (!n || !dpr_domains_find(af->ds, DPR_DOMAIN_DEFAULT))
        return 0;
    if (!(workers = malloc(n * sizeof(*workers))))
        return dpr_err_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t k;
        bool seen = false;
        /* each domain once, at its first member */
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(m[j].domain, m[i].domain) == 0;
        if (seen || strcmp(m[i].domain, DPR_DOMAIN_DEFAULT) == 0)
            continue;
        /* looked up again each time: a split may drop an emptied domain */
        if (!(def = dpr_domains_find(af->ds, DPR_DOMAIN_DEFAULT)))
            break;
        k = members_of(m, n, m[i].domain, def, workers);
        if (k == 0)
            continue;
        rc = dpr_domains_split(af->ds, DPR_DOMAIN_DEFAULT, m[i].domain, workers, k);
        if (rc == -EEXIST) {
            log_error("finder: %zu worker%s of deployment '%s' %s in domain '%s', but domain "
                      "'%s' exists already: left as they are (their instances cannot recover "
                      "in their own domain; see docs/operations.md, \"Upgrading to domains\")", k,
                      k == 1 ? "" : "s", m[i].domain, k == 1 ? "is" : "are", DPR_DOMAIN_DEFAULT,
                      m[i].domain);
            rc = 0;
            continue;
        }
        if (rc < 0) {
            dpr_err_set(err, rc, "cannot move the workers of deployment '%s' into a domain of "
                        "their own: %s", m[i].domain, strerror(-rc));
            goto out;
        }
        moved++;
        log_notice("finder: upgrade: %zu worker%s of deployment '%s' moved from domain '%s' "
                   "into domain '%s', keeping world-line %llu, cuts and tokens", k,
                   k == 1 ? "" : "s", m[i].domain, DPR_DOMAIN_DEFAULT, m[i].domain,
                   (unsigned long long)dpr_finder_world_line(
                       dpr_domains_find(af->ds, m[i].domain)));
    }
    if (!moved)
        goto out;
    def = dpr_domains_find(af->ds, DPR_DOMAIN_DEFAULT);
    if (def && dpr_finder_worker_count(def))
        log_info("finder: domain '%s' keeps %zu worker%s that belong%s to no instance of this "
                 "agent", DPR_DOMAIN_DEFAULT, dpr_finder_worker_count(def),
                 dpr_finder_worker_count(def) == 1 ? "" : "s",
                 dpr_finder_worker_count(def) == 1 ? "s" : "");
    rc = dpr_domains_get_state(af->ds, &st);
    if (rc < 0) {
        dpr_err_set(err, rc, "out of memory");
        goto out;
    }
    rc = dpr_store_save(af->store, &st);
    if (rc < 0) {
        dpr_err_set(err, rc, "cannot save the finder state split into domains: %s",
                    dpr_store_error(af->store));
        goto out;
    }
    rc = dpr_domains_publish(af->ds, &st);
    if (rc < 0) {
        dpr_err_set(err, rc, "cannot publish the finder state split into domains: %s",
                    strerror(-rc));
        goto out;
    }
    log_info("finder: saved the state split into domains in %s/finder.state", dir);
out:
    dpr_domains_state_free(&st);
    free(workers);
    return rc;
}

/* Is host "every address" ("", "*", 0.0.0.0, ::, any spelling of them)? */
static bool wildcard_host(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (!*host)
        return true; /* "*" or an empty host, as parsed */
    if (inet_pton(AF_INET, host, &a4) == 1)
        return a4.s_addr == htonl(INADDR_ANY);
    return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_UNSPECIFIED(&a6);
}

/* "HOST:PORT" ("[v6]:PORT" for a host with colons) into out. */
static void join_host_port(char *out, size_t cap, const char *host, unsigned port)
{
    if (strchr(host, ':'))
        snprintf(out, cap, "[%s]:%u", host, port);
    else
        snprintf(out, cap, "%s:%u", host, port);
}

/*
 * Where to listen: finder.listen, except that a wildcard host means
 * node.address (advertise_host). The finder must be reachable by the
 * node's cache-stores (and, with several nodes, by the others), not on
 * every address the machine has: whoever reaches it can report to it.
 * *replaced says whether the wildcard was replaced.
 */
static int listen_address(const char *listen, const char *advertise_host, char *out, size_t cap,
                          bool *replaced, dpr_err *err)
{
    dpr_hostport hp;
    int rc = dpr_hostport_parse(listen, DPR_HOSTPORT_ANY | DPR_HOSTPORT_PORT0, &hp, err);

    *replaced = false;
    if (rc < 0)
        return rc;
    if (wildcard_host(hp.host) && advertise_host && *advertise_host) {
        join_host_port(out, cap, advertise_host, hp.port);
        *replaced = true;
    } else {
        snprintf(out, cap, "%s", listen);
    }
    return 0;
}

/* The advertised address: node.address when it replaced a wildcard (the
 * name as configured), else the bound address (with the real port). */
static void make_address(agent_finder *af, const char *advertise_host, bool replaced)
{
    const struct sockaddr_storage *ss = dpr_server_bound(af->srv);
    char host[INET6_ADDRSTRLEN] = "";
    unsigned port = 0;

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    join_host_port(af->address, sizeof(af->address),
                   replaced || wildcard_host(host) ? advertise_host : host, port);
}

static void free_tls(agent_finder *af)
{
    free(af->tls_listen);
    for (size_t i = 0; i < sizeof(af->tls_files) / sizeof(af->tls_files[0]); i++)
        free(af->tls_files[i]);
}

/* The TLS port of cfg (tls NULL: none): its address (a wildcard host means
 * advertise_host) and copies of the files' names. */
static int set_tls(agent_finder *af, const agent_finder_tls *tls, const char *advertise_host,
                   dpr_err *err)
{
    const char *src[] = { tls ? tls->cert : NULL, tls ? tls->key : NULL, tls ? tls->ca : NULL,
                          tls ? tls->crl : NULL, tls ? tls->cluster : NULL };
    char where[DPR_ADDR_STR_MAX];
    dpr_hostport hp;
    bool replaced;
    int rc;

    if (!tls || !tls->listen)
        return 0;
    rc = listen_address(tls->listen, advertise_host, where, sizeof(where), &replaced, err);
    if (rc == 0)
        rc = dpr_hostport_parse(where, DPR_HOSTPORT_ANY | DPR_HOSTPORT_PORT0, &hp, err);
    if (rc < 0) {
        dpr_err_prefix(err, "finder.tls_listen");
        return rc;
    }
    if (!(af->tls_listen = strdup(where)))
        return dpr_err_set(err, -ENOMEM, "out of memory");
    af->tls_port = hp.port;
    snprintf(af->tls_address, sizeof(af->tls_address), "%s", where);
    for (size_t i = 0; i < sizeof(src) / sizeof(src[0]); i++)
        if (src[i] && !(af->tls_files[i] = strdup(src[i])))
            return dpr_err_set(err, -ENOMEM, "out of memory");
    af->cfg.tls_listen = af->tls_listen;
    af->cfg.tls = (dpr_tls_config){
        .cert_file = af->tls_files[0], .key_file = af->tls_files[1], .ca_file = af->tls_files[2],
        .crl_file = af->tls_files[3], .cluster = af->tls_files[4],
        .verify = DPR_TLS_VERIFY_REQUIRED,
    };
    return 0;
}

int agent_finder_open(uv_loop_t *loop, const char *dir, const char *listen,
                      const char *advertise_host, const agent_finder_tls *tls,
                      const agent_finder_member *members, size_t nmembers,
                      const agent_finder_hooks *hooks, agent_finder **out, dpr_err *err)
{
    agent_finder *af = calloc(1, sizeof(*af));
    dpr_server_hooks sh = { .arg = NULL };
    char where[DPR_ADDR_STR_MAX], bound[DPR_ADDR_STR_MAX];
    bool replaced;
    int rc;

    *out = NULL;
    if (!af)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    rc = listen_address(listen, advertise_host, where, sizeof(where), &replaced, err);
    if (rc < 0) {
        free(af);
        dpr_err_prefix(err, "finder.listen");
        return rc;
    }
    if (!(af->listen = strdup(where))) {
        free(af);
        return dpr_err_set(err, -ENOMEM, "out of memory");
    }
    rc = set_tls(af, tls, advertise_host, err);
    if (rc < 0)
        goto fail;
    rc = dpr_store_file_open(dir, &af->store, err);
    if (rc < 0) {
        dpr_err_prefix(err, "finder state");
        goto fail;
    }
    rc = load(af, dir, err);
    if (rc < 0)
        goto fail;
    rc = split_default(af, dir, members, nmembers, err);
    if (rc < 0)
        goto fail;
    af->cfg.listen = af->listen;
    af->cfg.max_clients = DPR_SERVER_DEFAULT_MAX_CLIENTS;
    af->cfg.max_request_bytes = DPR_SERVER_DEFAULT_MAX_REQUEST_BYTES;
    if (hooks) {
        sh.committed = hooks->committed;
        sh.failed = hooks->failed;
        sh.arg = hooks->arg;
    }
    rc = dpr_server_start(loop, af->ds, af->store, &af->cfg, &sh, &af->srv);
    if (rc < 0) {
        dpr_err_set(err, rc, "the finder cannot listen on %s%s: %s", af->listen,
                    replaced ? " (node.address, for the wildcard of finder.listen)" : "",
                    rc == -EINVAL ? "bad address" : uv_strerror(rc));
        /* its handles are closing on the loop: keep af (and srv) for free */
        *out = af;
        return rc;
    }
    make_address(af, advertise_host, replaced);
    dpr_addr_format((const struct sockaddr *)dpr_server_bound(af->srv), bound, sizeof(bound));
    if (replaced)
        log_info("finder listening on %s only: finder.listen %s has a wildcard host, which "
                 "means node.address (cache-stores use %s)", bound, listen, af->address);
    else
        log_info("finder listening on %s (cache-stores use %s)", bound, af->address);
    *out = af;
    return 0;
fail:
    if (af->ds)
        dpr_domains_free(af->ds);
    dpr_store_close(af->store);
    free(af->listen);
    free_tls(af);
    free(af);
    *out = NULL;
    return rc;
}

/* Every member's finder port into out: any of them answers or names the
 * leader. */
static const char *members_at(agent_finder *af, unsigned port, char *out, size_t cap)
{
    agent_raft_member m[32];
    size_t n, off = 0;

    n = agent_raft_members(af->raft, m, sizeof(m) / sizeof(m[0]));
    out[0] = '\0';
    for (size_t i = 0; i < n && i < sizeof(m) / sizeof(m[0]); i++) {
        const char *colon = strrchr(m[i].address, ':');
        int w = snprintf(out + off, cap - off, "%s%.*s:%u", off ? "," : "",
                         colon ? (int)(colon - m[i].address) : 0, m[i].address, port);
        if (w < 0 || (size_t)w >= cap - off)
            break;
        off += (size_t)w;
    }
    return out;
}

const char *agent_finder_address(agent_finder *af)
{
    if (!af->raft)
        return af->address;
    return members_at(af, af->port, af->address, sizeof(af->address));
}

const char *agent_finder_tls_address(agent_finder *af)
{
    if (!af || !af->tls_listen)
        return NULL;
    if (!af->raft)
        return af->tls_address;
    return members_at(af, af->tls_port, af->tls_address, sizeof(af->tls_address));
}

void agent_finder_reload_tls(agent_finder *af)
{
    if (af && af->tls_listen && af->srv)
        dpr_server_reload_tls(af->srv); /* logs the outcome */
}

/* A follower's view: the finder state as the Raft log holds it here
 * (committed), decoded again only when it changed. */
static dpr_domains *replicated_view(agent_finder *af)
{
    const agent_cstate *cs = agent_raft_cstate(af->raft);
    dpr_domains_state st = { 0, 0, NULL };
    dpr_domains *ds = NULL;

    if (af->view && af->view_changes == cs->changes)
        return af->view;
    if (cs->finder && dpr_store_image_decode(cs->finder, cs->finder_len, "raft log", &st,
                                             NULL) == 0) {
        if (dpr_domains_restore(&st, &ds) < 0)
            ds = NULL;
        dpr_domains_state_free(&st);
    }
    if (af->view)
        dpr_domains_free(af->view);
    af->view = ds;
    af->view_changes = cs->changes;
    return ds;
}

dpr_domains *agent_finder_domains(agent_finder *af)
{
    if (!af)
        return NULL;
    if (af->raft && af->mode != MODE_LEADER)
        return replicated_view(af);
    return af->ds;
}

dpr_finder *agent_finder_domain(agent_finder *af, const char *name)
{
    return dpr_domains_find(agent_finder_domains(af), name);
}

const char *agent_finder_listen(const agent_finder *af)
{
    return af->listen;
}

int agent_finder_metrics(agent_finder *af, bool per_worker, dpr_buf *out)
{
    return af && af->srv ? dpr_server_metrics(af->srv, per_worker, out) : 0;
}

bool agent_finder_serving(const agent_finder *af)
{
    return af && (af->mode == MODE_ALONE || af->mode == MODE_LEADER);
}

int agent_finder_remove_worker(agent_finder *af, const char *domain, uint64_t worker,
                               const char *token)
{
    dpr_finder *f;
    int rc;

    if (!agent_finder_serving(af))
        return -EAGAIN; /* the leader's agent removes it (its finder knows the token) */
    f = dpr_domains_find(af->ds, domain);
    if (!f)
        return -ENOENT;
    rc = dpr_finder_remove_worker_token(f, worker, token, token ? strlen(token) : 0);
    if (rc == 0)
        dpr_server_commit_soon(af->srv);
    return rc;
}

int agent_finder_hand_over(agent_finder *af, const char *domain, uint64_t worker,
                           const char *token)
{
    dpr_finder *f;
    int rc;

    if (!agent_finder_serving(af))
        return -EAGAIN;
    f = dpr_domains_find(af->ds, domain);
    if (!f)
        return -ENOENT;
    rc = dpr_finder_token_check(f, worker, token, strlen(token));
    if (rc != -EACCES)
        return rc; /* 0: it has that token already; -ENOENT: never registered */
    rc = dpr_finder_set_token(f, worker, token, strlen(token));
    if (rc < 0)
        return rc;
    dpr_server_commit_soon(af->srv);
    return 1;
}

void agent_finder_stop(agent_finder *af)
{
    if (!af)
        return;
    af->stopping = true;
    af->epoch++;
    if (af->srv)
        dpr_server_stop(af->srv);
    if (af->reaper_open) {
        af->reaper_open = false;
        uv_close((uv_handle_t *)&af->reaper, NULL);
    }
}

void agent_finder_free(agent_finder *af)
{
    if (!af)
        return;
    /* the store first: its callbacks must not reach a freed server */
    dpr_store_close(af->store);
    dpr_server_free(af->srv);
    for (size_t i = 0; i < af->nretired; i++)
        dpr_server_free(af->retired[i]);
    free(af->retired);
    if (af->ds)
        dpr_domains_free(af->ds);
    if (af->view)
        dpr_domains_free(af->view);
    free(af->legacy_dir);
    free(af->listen);
    free_tls(af);
    free(af);
}

/* ---- a cluster: the finder on the Raft leader ---------------------------------- */

static void on_reap(uv_timer_t *t)
{
    agent_finder *af = t->data;

    /* their handles closed on an earlier loop turn */
    for (size_t i = 0; i < af->nretired; i++)
        dpr_server_free(af->retired[i]);
    af->nretired = 0;
}

/* Stops the server at once (no held reply goes out) and frees it later. */
static void retire_server(agent_finder *af)
{
    dpr_server **v;

    if (!af->srv)
        return;
    dpr_server_abort(af->srv);
    v = realloc(af->retired, (af->nretired + 1) * sizeof(*v));
    if (v) {
        af->retired = v;
        af->retired[af->nretired++] = af->srv;
    } else {
        log_error("finder: out of memory: a stopped server's memory is leaked");
    }
    af->srv = NULL;
    if (af->reaper_open)
        uv_timer_start(&af->reaper, on_reap, REAP_MS, 0);
}

static const char *not_serving(void *arg, bool tls)
{
    agent_finder *af = arg;
    const char *leader_addr = NULL;
    uint64_t leader = agent_raft_leader(af->raft, &leader_addr);
    const char *colon = leader_addr ? strrchr(leader_addr, ':') : NULL;

    if (af->mode == MODE_STARTING || (leader && leader == agent_raft_id(af->raft)))
        snprintf(af->not_serving, sizeof(af->not_serving),
                 "TRYAGAIN the finder is starting on this node (new raft leader)");
    else if (leader && colon)
        /* (every node's finder ports are the same: the leader's host, this
         * node's port of the kind asked on) */
        snprintf(af->not_serving, sizeof(af->not_serving), "NOTLEADER %.*s:%u",
                 (int)(colon - leader_addr), leader_addr, tls ? af->tls_port : af->port);
    else
        snprintf(af->not_serving, sizeof(af->not_serving),
                 "TRYAGAIN no finder: no raft leader (an election, or no quorum)");
    return af->not_serving;
}

static void on_leader_failed(void *arg, int err);

static int on_command(void *arg, int argc, char *const *argv, const size_t *argvlen,
                      dpr_buf *out)
{
    agent_finder *af = arg;

    return af->hooks.command(af->hooks.arg, argc, argv, argvlen, out);
}

static void on_leader_committed(void *arg)
{
    agent_finder *af = arg;

    if (af->hooks.committed)
        af->hooks.committed(af->hooks.arg);
}

/* (Re)starts the server: serving ds from the Raft log, or redirecting. */
static int start_server(agent_finder *af, bool serve)
{
    dpr_server_hooks sh = { .arg = af };
    int rc;

    if (af->hooks.command)
        sh.command = on_command;
    if (serve) {
        sh.committed = on_leader_committed;
        sh.failed = on_leader_failed;
    } else {
        sh.not_serving = not_serving;
    }
    rc = dpr_server_start(af->loop, serve ? af->ds : NULL, serve ? af->store : NULL, &af->cfg,
                          &sh, &af->srv);
    if (rc < 0) {
        log_error("finder: cannot listen on %s: %s", af->listen,
                  rc == -EINVAL ? "bad address" : uv_strerror(rc));
        retire_server(af);
    }
    return rc;
}

/* This node serves no finder: drop the leader's state, redirect. */
static void become_follower(agent_finder *af, const char *why)
{
    bool was = af->mode == MODE_LEADER || af->mode == MODE_STARTING;

    af->epoch++;
    if (af->mode == MODE_FOLLOWER && af->srv)
        return;
    if (was)
        log_warning("finder: no longer served on this node: %s", why);
    retire_server(af);
    dpr_store_close(af->store);
    af->store = NULL;
    if (af->ds) {
        dpr_domains_free(af->ds);
        af->ds = NULL;
    }
    af->mode = MODE_FOLLOWER;
    start_server(af, false);
    if (was && af->hooks.committed)
        af->hooks.committed(af->hooks.arg); /* the agent looks at the replicated view */
}

static void on_leader_failed(void *arg, int err)
{
    agent_finder *af = arg;

    if (af->stopping)
        return;
    become_follower(af, err == -ENOTCONN ? "this node lost its raft leadership"
                                         : "the raft log did not take the finder state");
}

typedef struct barrier_ctx {
    agent_finder *af;
    uint64_t epoch;
} barrier_ctx;

static void on_barrier(void *arg, int status);

/*
 * A fresh cluster (no finder state in the log) led by a node that was a
 * single node: its file store's state becomes the log's first finder
 * entry, so that its deployments keep their world-lines, cuts and tokens.
 * 1 when an entry was proposed (on_barrier runs again once it committed),
 * 0 when there is nothing to import, or a negative errno (logged).
 */
static int import_single_node(agent_finder *af, barrier_ctx *b)
{
    dpr_store *fs = NULL;
    dpr_domains_state st = { 0, 0, NULL };
    dpr_err err = DPR_ERR_INIT;
    dpr_buf image = DPR_BUF_INIT;
    char path[PATH_MAX];
    int rc;

    if (!af->legacy_dir || dpr_path_join(path, sizeof(path), af->legacy_dir,
                                         "finder.state") < 0 || access(path, F_OK) != 0)
        return 0;
    rc = dpr_store_file_open(af->legacy_dir, &fs, &err);
    if (rc == 0)
        rc = dpr_store_load(fs, &st);
    if (rc == 0)
        rc = dpr_store_image_encode(&st, &image, &err);
    if (rc == 0)
        rc = agent_raft_apply(af->raft, AGENT_CSTATE_ENTRY_FINDER, image.data, image.len,
                              on_barrier, b);
    if (rc == 0)
        log_notice("finder: importing this node's single-node finder state (%s, %zu "
                   "domain%s) into the new cluster's raft log", path, st.n,
                   st.n == 1 ? "" : "s");
    else if (rc != -ENOENT)
        log_error("finder: cannot import %s into the raft log: %s", path,
                  err.msg[0] ? err.msg : fs ? dpr_store_error(fs) : strerror(-rc));
    dpr_domains_state_free(&st);
    dpr_buf_free(&image);
    dpr_store_close(fs);
    return rc == 0 ? 1 : rc == -ENOENT ? 0 : rc;
}

/* The barrier ran: every entry of earlier leaders is applied here. */
static void on_barrier(void *arg, int status)
{
    barrier_ctx *b = arg;
    agent_finder *af = b->af;
    dpr_domains_state st = { 0, 0, NULL };
    dpr_err err = DPR_ERR_INIT;
    char what[400];
    int rc;

    if (b->epoch != af->epoch || af->stopping) {
        free(b);
        return; /* the node's role changed meanwhile */
    }
    if (status < 0 || agent_raft_role_now(af->raft) != AGENT_RAFT_LEADER) {
        free(b);
        become_follower(af, "the raft barrier failed");
        return;
    }
    if (!agent_raft_cstate(af->raft)->finder && af->legacy_dir) {
        rc = import_single_node(af, b);
        free(af->legacy_dir); /* tried once */
        af->legacy_dir = NULL;
        if (rc == 1)
            return; /* on_barrier again once the entry committed */
        if (rc < 0) {
            /* never start over beside a state that could not be carried */
            free(b);
            become_follower(af, "the single-node finder state could not be imported");
            return;
        }
    }
    free(b);
    rc = agent_raftstore_open(af->raft, &af->store);
    if (rc == 0) {
        rc = dpr_store_load(af->store, &st);
        if (rc == -ENOENT)
            rc = dpr_domains_new(&af->ds);
        else if (rc == 0)
            rc = dpr_domains_restore(&st, &af->ds);
        else
            dpr_err_set(&err, rc, "%s", dpr_store_error(af->store));
    }
    dpr_domains_state_free(&st);
    if (rc < 0) {
        /* never serve a state that is not the replicated one */
        log_error("finder: cannot take the replicated finder state: %s; not serving it",
                  err.msg[0] ? err.msg : strerror(-rc));
        become_follower(af, "its replicated state is unreadable");
        return;
    }
    retire_server(af);
    af->mode = MODE_LEADER;
    af->epoch++;
    if (start_server(af, true) < 0) {
        become_follower(af, "cannot listen");
        return;
    }
    describe_domains(af->ds, what, sizeof(what));
    log_notice("finder: serving on this node (raft leader, term %llu): %zu domain%s%s%s",
               (unsigned long long)agent_raft_term(af->raft), dpr_domains_count(af->ds),
               dpr_domains_count(af->ds) == 1 ? "" : "s", dpr_domains_count(af->ds) ? ": " : "",
               what);
    if (af->hooks.committed)
        af->hooks.committed(af->hooks.arg);
}

void agent_finder_raft_changed(agent_finder *af)
{
    barrier_ctx *b;
    bool leader;
    int rc;

    if (!af || !af->raft || af->stopping)
        return;
    leader = agent_raft_role_now(af->raft) == AGENT_RAFT_LEADER;
    if (!leader) {
        become_follower(af, "this node is no longer the raft leader");
        return;
    }
    if (af->mode != MODE_FOLLOWER)
        return; /* starting or serving already */
    /* a new leader serves nothing before a barrier: entries of earlier
     * terms are committed and applied here first */
    b = malloc(sizeof(*b));
    if (!b) {
        log_error("finder: out of memory taking over");
        return;
    }
    af->mode = MODE_STARTING;
    af->epoch++;
    *b = (barrier_ctx){ af, af->epoch };
    rc = agent_raft_barrier(af->raft, on_barrier, b);
    if (rc < 0) {
        free(b);
        af->mode = MODE_FOLLOWER;
        log_warning("finder: cannot take over as raft leader: %s", strerror(-rc));
    }
}

int agent_finder_open_cluster(uv_loop_t *loop, agent_raft *raft, const char *listen,
                              const char *advertise_host, const agent_finder_tls *tls,
                              const char *legacy_dir, const agent_finder_hooks *hooks,
                              agent_finder **out, dpr_err *err)
{
    agent_finder *af = calloc(1, sizeof(*af));
    char where[DPR_ADDR_STR_MAX];
    dpr_hostport hp;
    bool replaced;
    int rc;

    *out = NULL;
    if (!af)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    af->loop = loop;
    af->raft = raft;
    af->mode = MODE_FOLLOWER;
    if (hooks)
        af->hooks = *hooks;
    rc = listen_address(listen, advertise_host, where, sizeof(where), &replaced, err);
    if (rc == 0)
        rc = dpr_hostport_parse(where, DPR_HOSTPORT_ANY, &hp, err);
    if (rc < 0) {
        free(af);
        dpr_err_prefix(err, "finder.listen");
        return rc;
    }
    af->port = hp.port;
    if (legacy_dir && !(af->legacy_dir = strdup(legacy_dir))) {
        free(af);
        return dpr_err_set(err, -ENOMEM, "out of memory");
    }
    if (!(af->listen = strdup(where))) {
        free(af->legacy_dir);
        free(af);
        return dpr_err_set(err, -ENOMEM, "out of memory");
    }
    rc = set_tls(af, tls, advertise_host, err);
    if (rc == 0 && af->tls_listen && af->tls_port == 0)
        rc = dpr_err_set(err, -EINVAL, "finder.tls_listen needs a port (not 0) in a cluster");
    if (rc < 0) {
        free(af->legacy_dir);
        free(af->listen);
        free_tls(af);
        free(af);
        return rc;
    }
    af->cfg.listen = af->listen;
    af->cfg.max_clients = DPR_SERVER_DEFAULT_MAX_CLIENTS;
    af->cfg.max_request_bytes = DPR_SERVER_DEFAULT_MAX_REQUEST_BYTES;
    uv_timer_init(loop, &af->reaper);
    af->reaper.data = af;
    af->reaper_open = true;
    *out = af; /* handles exist on the loop from here on */
    rc = start_server(af, false);
    if (rc < 0)
        return dpr_err_set(err, rc, "the finder cannot listen on %s: %s", af->listen,
                           rc == -EINVAL ? "bad address" : uv_strerror(rc));
    log_info("finder: listening on %s%s%s; served by the raft leader's agent (followers name "
             "it)", af->listen, af->tls_listen ? " and with TLS on " : "",
             af->tls_listen ? af->tls_listen : "");
    return 0;
}
