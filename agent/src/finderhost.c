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
    dpr_finder *f;
    dpr_store *store;
    dpr_server *srv;
    dpr_server_config cfg;
    char *listen;
    char address[300];
};

static int load(agent_finder *af, const char *dir, dpr_err *err)
{
    dpr_finder_state st = { .workers = NULL };
    int rc = dpr_store_load(af->store, &st);

    if (rc == -ENOENT) {
        rc = dpr_finder_new(&af->f);
        if (rc < 0)
            dpr_err_set(err, rc, "cannot create the finder: %s", strerror(-rc));
        else
            log_info("finder: no state in %s, starting fresh (world-line %d)", dir,
                     DPR_FINDER_FIRST_WORLD_LINE);
        return rc;
    }
    if (rc < 0) {
        /* the advice does not fit in err: it gets a line of its own */
        log_error("finder: starting over would lose committed data; repair or restore "
                  "%s/finder.state", dir);
        return dpr_err_set(err, rc, "cannot load the finder state: %s; refusing to start",
                           dpr_store_error(af->store));
    }
    rc = dpr_finder_restore(&st, &af->f);
    if (rc < 0)
        dpr_err_set(err, rc, "cannot restore the finder state from %s/finder.state: %s", dir,
                    strerror(-rc));
    else
        log_info("finder: restored world-line %llu with %zu workers from %s",
                 (unsigned long long)st.world_line, st.nworkers, dir);
    dpr_finder_state_free(&st);
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
                      const char *advertise_host, const agent_finder_hooks *hooks,
                      agent_finder **out, dpr_err *err)
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
    af->cfg.listen = af->listen;
    af->cfg.max_clients = DPR_SERVER_DEFAULT_MAX_CLIENTS;
    af->cfg.max_request_bytes = DPR_SERVER_DEFAULT_MAX_REQUEST_BYTES;
    if (hooks) {
        sh.committed = hooks->committed;
        sh.failed = hooks->failed;
        sh.arg = hooks->arg;
    }
    rc = dpr_server_start(loop, af->f, af->store, &af->cfg, &sh, &af->srv);
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
    if (af->f)
        dpr_finder_free(af->f);
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

dpr_finder *agent_finder_core(agent_finder *af)
{
    return af->f;
}

int agent_finder_remove_worker(agent_finder *af, uint64_t worker, const char *token)
{
    int rc = dpr_finder_remove_worker_token(af->f, worker, token, token ? strlen(token) : 0);

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
    if (af->f)
        dpr_finder_free(af->f);
    dpr_store_close(af->store);
    free(af->listen);
    free(af);
}
