/* finderhost.c - see finderhost.h. */
#include "finderhost.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "common/err.h"
#include "common/log.h"
#include "dpr/finder_server.h"
#include "dpr/store.h"

struct agent_finder {
    dpr_domains *ds;
    dpr_store *store;
    dpr_server *srv;
    dpr_server_config cfg;
    char *listen;
    char address[300];
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

int agent_finder_open(uv_loop_t *loop, const char *dir, const char *listen,
                      const char *advertise_host, const agent_finder_member *members,
                      size_t nmembers, const agent_finder_hooks *hooks, agent_finder **out,
                      dpr_err *err)
{
    agent_finder *af = calloc(1, sizeof(*af));
    dpr_server_hooks sh = { NULL, NULL, NULL };
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
    free(af);
    *out = NULL;
    return rc;
}

const char *agent_finder_address(const agent_finder *af)
{
    return af->address;
}

dpr_domains *agent_finder_domains(agent_finder *af)
{
    return af->ds;
}

dpr_finder *agent_finder_domain(agent_finder *af, const char *name)
{
    return dpr_domains_find(af->ds, name);
}

int agent_finder_remove_worker(agent_finder *af, const char *domain, uint64_t worker,
                               const char *token)
{
    dpr_finder *f = dpr_domains_find(af->ds, domain);
    int rc;

    if (!f)
        return -ENOENT;
    rc = dpr_finder_remove_worker_token(f, worker, token, token ? strlen(token) : 0);
    if (rc == 0)
        dpr_server_commit_soon(af->srv);
    return rc;
}

void agent_finder_stop(agent_finder *af)
{
    if (af && af->srv)
        dpr_server_stop(af->srv);
}

void agent_finder_free(agent_finder *af)
{
    if (!af)
        return;
    dpr_server_free(af->srv);
    if (af->ds)
        dpr_domains_free(af->ds);
    dpr_store_close(af->store);
    free(af->listen);
    free(af);
}
