/* finderhost.c - see finderhost.h. */
#include "finderhost.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The advertised address: the bound one, with a wildcard host replaced. */
static void make_address(agent_finder *af, const char *advertise_host)
{
    const struct sockaddr_storage *ss = dpr_server_bound(af->srv);
    char host[INET6_ADDRSTRLEN] = "";
    int port = 0, wildcard = 0;

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        wildcard = in->sin_addr.s_addr == htonl(INADDR_ANY);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        wildcard = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
    }
    if (wildcard && advertise_host)
        snprintf(host, sizeof(host), "%s", advertise_host);
    if (strchr(host, ':'))
        snprintf(af->address, sizeof(af->address), "[%s]:%d", host, port);
    else
        snprintf(af->address, sizeof(af->address), "%s:%d", host, port);
}

int agent_finder_open(uv_loop_t *loop, const char *dir, const char *listen,
                      const char *advertise_host, const agent_finder_hooks *hooks,
                      agent_finder **out, dpr_err *err)
{
    agent_finder *af = calloc(1, sizeof(*af));
    dpr_server_hooks sh = { NULL, NULL, NULL };
    int rc;

    if (!af || !(af->listen = strdup(listen))) {
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
        dpr_err_set(err, rc, "the finder cannot listen on %s: %s", listen,
                    rc == -EINVAL ? "bad address" : uv_strerror(rc));
        /* its handles are closing on the loop: keep af (and srv) for free */
        *out = af;
        return rc;
    }
    make_address(af, advertise_host);
    log_info("finder listening on %s (cache-stores use %s)", listen, af->address);
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

int agent_finder_remove_worker(agent_finder *af, uint64_t worker)
{
    int rc = dpr_finder_remove_worker(af->f, worker);

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
