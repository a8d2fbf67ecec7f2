/* client.c - the DPR client and its sessions (see client.h). */
#include "dpr/client.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/addr.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/finders.h"
#include "common/num.h"
#include "common/resp.h"
#include "conn.h"
#include "cutreply.h"
#include "dpr/domain.h"
#include "dpr/route.h"
#include "dpr/wire.h"
#include "endpoints.h"

#define DEFAULT_CONNECT_MS 2000
#define DEFAULT_IO_MS 5000
#define DEFAULT_DEPTH 64
#define MAX_SHARDS 65536
#define DEFAULT_RESIZE_MS 120000
#define ROLLBACK_POLL_MS 10
#define RESIZE_POLL_MAX_MS 200
#define COMMIT_POLL_MS 2
#define DEFAULT_RECONNECT_MS 15000
#define RECONNECT_POLL_MS 50
/* a shard unreachable this long makes a session ask for a newer layout
 * (the shards and the agents), and again after every such period */
#define REFRESH_AFTER_MS 1000

typedef struct shard_ep {
    char *host;
    uint16_t port;
    uint64_t worker;
} shard_ep;

struct dpr_client {
    shard_ep *shards;
    size_t nshards;
    dpr_finders finders; /* the finder's addresses, the one asked now */
    char domain[DPR_DOMAIN_MAX + 1]; /* its name, valid (dpr_domain_valid) */
    uint64_t domain_id;
    uint64_t layout_epoch;           /* of shards[]: the agents' (0: given by hand) */
    /* a client from agents: their addresses and the deployment's name */
    dpr_hostport agents[DPR_CLIENT_MAX_FINDERS];
    size_t nagents;
    size_t agent_first;              /* the agent that answered last (atomic) */
    char deployment[DPR_DOMAIN_MAX + 1];
    int connect_ms, io_ms, resize_ms, reconnect_ms;
    dpr_tls_ctx *tls; /* the config's tls_* files (NULL: plain) */
    unsigned depth;
    pthread_mutex_t lock; /* the finder connection and err */
    dpr_conn finder;
    dpr_err err;          /* the last failure of a dpr_client_* call */
};

/* A batch sent to a shard and not yet returned by recv. */
typedef struct flight {
    uint64_t batch_id, first_seq;
    uint32_t op_count;
    int status; /* a dead batch's outcome (its connection is gone) */
} flight;

/* "dpr_run_id" of INFO dpr: the shard's process (docs/dpr-kv.md, "SIGTERM") */
#define RUN_ID_MAX 64

typedef struct shard_conn {
    dpr_conn conn;
    flight *q;          /* ring of `depth` entries, in send order */
    size_t qhead, qlen;
    size_t ndead;       /* the first ndead batches of q went on a connection
                         * that is gone: their outcome is their status */
    redisReply *ready;  /* complete answer for q[qhead], not handled yet */
    size_t active_pos;  /* index in the session's active list while qlen > 0 */
    bool write_failed;  /* the connection is only read until it ends */
    /* what the shard told of itself when the connection was made (INFO
     * dpr): its process ("": it did not tell) and world-line */
    char run_id[RUN_ID_MAX];
    uint64_t peer_world_line;
    /* the shard closed the connection with batches in flight (the dead
     * ones): did it stop on purpose? Decided by reconnecting (settle_cut_off) */
    bool cut_off;
    char cut_run_id[RUN_ID_MAX]; /* the process that closed it */
    uint64_t cut_since, next_try;
} shard_conn;

struct dpr_client_session {
    dpr_client *c;
    /* the shards the session routes to: the client's, until a resize gives
     * it a layout of its own (dpr_client_session_refresh_layout) */
    shard_ep *shards;
    size_t nshards;
    bool own_shards;
    uint64_t layout_epoch;
    dpr_session sess;
    shard_conn **sh;    /* nshards, allocated on first use */
    uint32_t *active;   /* shards with qlen > 0 */
    size_t nactive;
    struct pollfd *pfds;
    size_t inflight;
    uint64_t abandoned;        /* batches abandoned since the last rollback */
    uint64_t newer_world_line; /* newest world-line a cut named */
    uint8_t *hdr;
    size_t hdr_cap;
    dpr_err err;               /* the session's last failure */
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* ---- endpoints and cuts ------------------------------------------------------ */

int dpr_endpoint_parse(const char *text, dpr_endpoint *ep, char *hostbuf, size_t hostcap)
{
    const char *at = strrchr(text, '@');
    size_t n = at ? (size_t)(at - text) : strlen(text);
    uint64_t worker = 0;
    dpr_hostport hp;
    size_t hlen;

    memset(ep, 0, sizeof(*ep));
    if (at && dpr_parse_u64(at + 1, strlen(at + 1), 0, UINT64_MAX, &worker) < 0)
        return -EINVAL;
    if (dpr_hostport_parse_n(text, n, 0, &hp, NULL) < 0)
        return -EINVAL;
    hlen = strlen(hp.host);
    if (hlen >= hostcap)
        return -ENAMETOOLONG;
    memcpy(hostbuf, hp.host, hlen + 1);
    ep->host = hostbuf;
    ep->port = hp.port;
    ep->has_worker = at != NULL;
    ep->worker = worker;
    return 0;
}

void dpr_cut_init(dpr_cut *c)
{
    memset(c, 0, sizeof(*c));
    dpr_depset_init(&c->versions);
}

void dpr_cut_free(dpr_cut *c)
{
    dpr_depset_free(&c->versions);
    memset(c, 0, sizeof(*c));
}

int dpr_cut_copy(dpr_cut *dst, const dpr_cut *src)
{
    int r = dpr_depset_copy(&dst->versions, &src->versions);
    if (r == 0) {
        dst->world_line = src->world_line;
        dst->max_version = src->max_version;
    }
    return r;
}

/* ---- the client ---------------------------------------------------------------- */

/* The value of "field:" in INFO text (up to the end of its line), or NULL. */
/* Asks shard ep for its worker id (INFO dpr, field dpr_worker_id) and checks
 * its domain (field dpr_domain, when the shard tells it). */
static int learn_worker(dpr_client *c, shard_ep *ep, dpr_err *err)
{
    int r;
    dpr_conn conn;
    redisReply *reply = NULL;
    const char *argv[] = {"INFO", "dpr"};
    const char *v;
    size_t n = 0;

    dpr_conn_init(&conn);
    r = dpr_conn_connect(&conn, ep->host, ep->port, c->tls, c->connect_ms);
    if (r == 0)
        r = dpr_conn_request(&conn, 2, argv, NULL, c->io_ms, &reply);
    if (r < 0) {
        dpr_err_set(err, r, "shard %s:%u: %s", ep->host, (unsigned)ep->port, conn.err.msg);
        goto out;
    }
    r = -EPROTO;
    if (reply->type != REDIS_REPLY_STRING) {
        dpr_err_set(err, r, "shard %s:%u: INFO dpr: %s", ep->host,
                    (unsigned)ep->port,
                    reply->type == REDIS_REPLY_ERROR ? reply->str : "not a bulk string");
        goto out;
    }
    v = dpr_info_field(reply->str, "dpr_worker_id", &n);
    if (v && dpr_parse_u64(v, n, 0, UINT64_MAX, &ep->worker) == 0)
        r = 0;
    if (r < 0) {
        dpr_err_set(err, r, "shard %s:%u has no dpr_worker_id in INFO dpr (not a DPR "
                    "cache-store?)", ep->host, (unsigned)ep->port);
        goto out;
    }
    v = dpr_info_field(reply->str, "dpr_domain", &n);
    if (v && (n != strlen(c->domain) || memcmp(v, c->domain, n) != 0))
        r = dpr_err_set(err, -EXDEV, "shard %s:%u belongs to DPR domain '%.*s', not to the "
                        "client's domain '%s'", ep->host,
                        (unsigned)ep->port, n > DPR_DOMAIN_MAX ? DPR_DOMAIN_MAX : (int)n,
                        v, c->domain);
out:
    if (reply)
        freeReplyObject(reply);
    dpr_conn_free(&conn);
    return r;
}

static bool valid_server(const dpr_endpoint *ep)
{
    return ep->host && ep->host[0] && ep->port != 0 && strlen(ep->host) < DPR_HOST_MAX;
}

/* The agents, the deployment and the shards of a configuration. */
static int check_agents(const dpr_client_config *cfg, dpr_err *err)
{
    if (cfg->nagents == 0) {
        if (!cfg->shards || cfg->nshards == 0 || cfg->nshards > MAX_SHARDS)
            return dpr_err_set(err, -EINVAL, "need 1 to %d shards (or agents and a "
                               "deployment)", MAX_SHARDS);
        if (cfg->deployment)
            return dpr_err_set(err, -EINVAL, "a deployment is named only with agents");
        return 0;
    }
    if (!cfg->agents || cfg->nagents > DPR_CLIENT_MAX_FINDERS)
        return dpr_err_set(err, -EINVAL, "need 1 to %d agent addresses",
                           DPR_CLIENT_MAX_FINDERS);
    if (cfg->nshards || cfg->shards)
        return dpr_err_set(err, -EINVAL, "give the shards or the agents, not both (the agents "
                           "tell the shards)");
    for (size_t i = 0; i < cfg->nagents; i++)
        if (!valid_server(&cfg->agents[i]))
            return dpr_err_set(err, -EINVAL, "agent address %zu is missing or too long", i);
    if (!cfg->deployment)
        return dpr_err_set(err, -EINVAL, "a client from agents needs the deployment's name");
    if (!dpr_domain_valid(cfg->deployment, strlen(cfg->deployment)))
        return dpr_err_set(err, -EINVAL, "invalid deployment name '%.*s%s'", DPR_DOMAIN_MAX,
                           cfg->deployment,
                           strlen(cfg->deployment) > DPR_DOMAIN_MAX ? "..." : "");
    return 0;
}

static int check_config(const dpr_client_config *cfg, dpr_err *err)
{
    int r;

    if (!cfg)
        return dpr_err_set(err, -EINVAL, "no configuration");
    r = check_agents(cfg, err);
    if (r < 0)
        return r;
    _Static_assert(DPR_CLIENT_MAX_FINDERS <= DPR_FINDERS_MAX, "finder list too short");
    if (cfg->nfinders > DPR_CLIENT_MAX_FINDERS)
        return dpr_err_set(err, -EINVAL, "more than %d finder addresses",
                           DPR_CLIENT_MAX_FINDERS);
    for (size_t i = 0; i < cfg->nfinders; i++)
        if (!cfg->finders[i].host || cfg->finders[i].port == 0 ||
            strlen(cfg->finders[i].host) >= DPR_HOST_MAX)
            return dpr_err_set(err, -EINVAL, "finder address %zu is missing or too long", i);
    /* with agents and no finder given, the agents are the finders */
    if (cfg->nfinders == 0 && !(cfg->nagents && !cfg->finder.host) &&
        !valid_server(&cfg->finder))
        return dpr_err_set(err, -EINVAL, "no finder address");
    for (size_t i = 0; i < cfg->nshards; i++)
        if (!cfg->shards[i].host || cfg->shards[i].port == 0)
            return dpr_err_set(err, -EINVAL, "shard %zu has no address", i);
    if (cfg->connect_timeout_ms < 0 || cfg->io_timeout_ms < 0 ||
        cfg->reconnect_timeout_ms < 0 || cfg->resize_timeout_ms < 0)
        return dpr_err_set(err, -EINVAL, "negative timeout");
    if (cfg->domain && !dpr_domain_valid(cfg->domain, strlen(cfg->domain)))
        return dpr_err_set(err, -EINVAL, "invalid domain name '%.*s%s': expected 1 to %d "
                           "characters a-z, 0-9, '.', '_' or '-', starting with a letter or "
                           "a digit", DPR_DOMAIN_MAX, cfg->domain,
                           strlen(cfg->domain) > DPR_DOMAIN_MAX ? "..." : "", DPR_DOMAIN_MAX);
    return 0;
}

static int check_unique_workers(const dpr_client *c, dpr_err *err)
{
    int r = 0;
    dpr_depset seen = DPR_DEPSET_INIT;
    for (size_t i = 0; i < c->nshards; i++) {
        /* versions are 1-based here: store index + 1 */
        uint64_t prev = dpr_depset_get(&seen, c->shards[i].worker);
        if (prev) {
            r = dpr_err_set(err, -EINVAL, "shards %" PRIu64 " and %zu have the same worker id %"
                            PRIu64, prev - 1, i, c->shards[i].worker);
            goto out;
        }
        r = dpr_depset_set(&seen, c->shards[i].worker, i + 1);
        if (r < 0) {
            dpr_err_set(err, r, "out of memory");
            goto out;
        }
    }
out:
    dpr_depset_free(&seen);
    return r;
}

/* One request to the finder, with the lock held (DPR.SYNC and DPR.PREFIX are
 * idempotent): a connection that fails is tried again on the next address
 * (each address once); a NOTLEADER answer is followed, TRYAGAIN asked
 * again every 100 ms, both until io_timeout_ms passes (common/finders.h).
 * Another error reply is -EREMOTEIO. */
static int finder_request(dpr_client *c, int argc, const char *const *argv,
                          redisReply **out, dpr_err *err)
{
    uint64_t deadline = dpr_mono_ms() + (uint64_t)c->io_ms;
    size_t failures = 0;
    int r = 0;

    *out = NULL;
    for (;;) {
        const dpr_hostport *hp = dpr_finders_current(&c->finders);
        char at[DPR_ADDR_STR_MAX];
        snprintf(at, sizeof(at), "%s", dpr_finders_text(&c->finders));
        if (c->finder.fd < 0)
            r = dpr_conn_connect(&c->finder, hp->host, hp->port, c->tls, c->connect_ms);
        if (r == 0)
            r = dpr_conn_request(&c->finder, argc, argv, NULL, c->io_ms, out);
        if (r < 0) {
            dpr_err_set(err, r, "finder %s: %s", at, c->finder.err.msg);
            dpr_conn_close(&c->finder); /* a late answer would be taken for the next one */
            if (r == -ENOMEM || ++failures > c->finders.n)
                return r;
            dpr_finders_next(&c->finders);
            continue;
        }
        if ((*out)->type != REDIS_REPLY_ERROR) {
            dpr_finders_answered(&c->finders);
            return 0;
        }
        switch (dpr_finders_on_error(&c->finders, (*out)->str, (*out)->len)) {
        case DPR_FINDERS_OTHER:
            r = dpr_err_set(err, -EREMOTEIO, "finder %s: %s %s", at, argv[0], (*out)->str);
            freeReplyObject(*out);
            *out = NULL;
            return r;
        case DPR_FINDERS_MOVED:
        case DPR_FINDERS_RETRY:
            r = dpr_err_set(err, -EAGAIN, "finder %s: %s %s", at, argv[0], (*out)->str);
            freeReplyObject(*out);
            *out = NULL;
            dpr_conn_close(&c->finder);
            if (dpr_mono_ms() >= deadline)
                return r;
            if (strncmp(c->finders.text, at, sizeof(at)) == 0 || !c->finders.redirected) {
                struct timespec ts = { 0, 100 * 1000000L };
                nanosleep(&ts, NULL); /* no leader yet: not in a tight loop */
            }
            failures = 0;
            continue;
        }
    }
}

/* ---- the agents ----------------------------------------------------------------- */

/* "HOST:PORT" (brackets around an IPv6 host). */
static void fmt_hostport(char *out, size_t cap, const char *host, uint16_t port)
{
    snprintf(out, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
}

/*
 * DPR.CLUSTER.ENDPOINTS <deployment>, asking the agents in turn from the one
 * that answered last: 0 with *out (free it with dpr_endpoints_free) from the
 * first valid answer. An agent that cannot be reached, answers NOTLEADER or
 * TRYAGAIN, or answers of the wrong shape is skipped. strict (building the
 * client): an agent's refusal (-ENOENT: no such deployment; -EREMOTEIO)
 * ends it at once. When none answered, the message names every agent and
 * why; the code is the last agent's.
 */
static int agents_endpoints(dpr_client *c, bool strict, dpr_endpoints *out, dpr_err *err)
{
    const char *argv[2] = {"DPR.CLUSTER.ENDPOINTS", c->deployment};
    size_t first = __atomic_load_n(&c->agent_first, __ATOMIC_RELAXED);
    char why[DPR_ERR_MSG_MAX] = "";
    size_t wlen = 0;
    int last = -EHOSTUNREACH;

    memset(out, 0, sizeof(*out));
    assert(c->nagents > 0);
    for (size_t k = 0; k < c->nagents; k++) {
        size_t i = (first + k) % c->nagents;
        const dpr_hostport *a = &c->agents[i];
        char at[DPR_ADDR_STR_MAX];
        dpr_conn conn;
        redisReply *reply = NULL;
        dpr_err e = DPR_ERR_INIT;
        int r;

        fmt_hostport(at, sizeof(at), a->host, a->port);
        dpr_conn_init(&conn);
        r = dpr_conn_connect(&conn, a->host, a->port, c->tls, c->connect_ms);
        if (r < 0) {
            dpr_err_set(&e, r, "%s", r == -EHOSTUNREACH ? conn.err.msg : strerror(-r));
        } else {
            r = dpr_conn_request(&conn, 2, argv, NULL, c->io_ms, &reply);
            if (r < 0)
                dpr_err_set(&e, r, "%s", conn.err.msg);
            else
                r = dpr_endpoints_parse(reply, out, &e);
        }
        if (reply)
            freeReplyObject(reply);
        dpr_conn_free(&conn);
        if (r == 0) {
            __atomic_store_n(&c->agent_first, i, __ATOMIC_RELAXED);
            return 0;
        }
        dpr_endpoints_free(out);
        if (r == -ENOMEM)
            return dpr_err_set(err, r, "out of memory");
        if (strict && (r == -ENOENT || r == -EREMOTEIO))
            return dpr_err_set(err, r, "deployment '%s': agent %s answered: %s", c->deployment,
                               at, e.msg);
        last = r;
        if (wlen < sizeof(why)) {
            int n = snprintf(why + wlen, sizeof(why) - wlen, "%s%s: %s", wlen ? "; " : "", at,
                             e.msg);
            wlen += n > 0 ? (size_t)n : 0;
        }
    }
    return dpr_err_set(err, last, "no agent told the endpoints of deployment '%s': %s",
                       c->deployment, why);
}

/* The shard list of a client from agents, and its layout epoch. */
static int shards_from_agents(dpr_client *c, dpr_err *err)
{
    dpr_endpoints eps;
    size_t missing[8], nmissing;
    int r = agents_endpoints(c, true, &eps, err);

    if (r < 0)
        return r;
    nmissing = dpr_endpoints_missing(&eps, missing, 8);
    if (nmissing) {
        char list[80] = "";
        size_t len = 0;
        for (size_t i = 0; i < nmissing && i < 8 && len < sizeof(list); i++) {
            int n = snprintf(list + len, sizeof(list) - len, "%s%zu", i ? ", " : "",
                             missing[i]);
            len += n > 0 ? (size_t)n : 0;
        }
        r = dpr_err_set(err, -EHOSTDOWN, "deployment '%s': no endpoint known for shard%s %s%s "
                        "of %zu (its node is down, or it has not started yet); try again",
                        c->deployment, nmissing > 1 ? "s" : "", list,
                        nmissing > 8 ? ", ..." : "", eps.n);
        goto out;
    }
    c->shards = calloc(eps.n, sizeof(*c->shards));
    if (!c->shards) {
        r = dpr_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    c->nshards = eps.n;
    for (size_t i = 0; i < eps.n; i++) {
        c->shards[i].host = eps.shard[i].host;
        eps.shard[i].host = NULL; /* taken over */
        c->shards[i].port = eps.shard[i].port;
        c->shards[i].worker = eps.shard[i].worker;
    }
    c->layout_epoch = eps.epoch;
out:
    dpr_endpoints_free(&eps);
    return r;
}

/* dpr_client_sync, with the failure in err. */
static int client_sync(dpr_client *c, dpr_cut *out, dpr_err *err)
{
    int r;
    redisReply *reply = NULL;
    const char *argv[] = {"DPR.SYNC", c->domain};
    uint64_t wl, maxv;

    pthread_mutex_lock(&c->lock);
    r = finder_request(c, 2, argv, &reply, err);
    if (r < 0)
        goto out;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        !dpr_cutreply_u64(reply->element[0], &wl) ||
        !dpr_cutreply_u64(reply->element[1], &maxv)) {
        r = dpr_err_set(err, -EPROTO, "finder %s: DPR.SYNC answer of the wrong shape",
                        dpr_finders_text(&c->finders));
        goto out;
    }
    r = dpr_cutreply_flat(reply->element[2], &out->versions);
    if (r < 0) {
        dpr_err_set(err, r, "finder %s: bad cut in the DPR.SYNC answer",
                    dpr_finders_text(&c->finders));
        goto out;
    }
    out->world_line = wl;
    out->max_version = maxv;
out:
    pthread_mutex_unlock(&c->lock);
    if (reply)
        freeReplyObject(reply);
    return r;
}

int dpr_client_sync(dpr_client *c, dpr_cut *out)
{
    return client_sync(c, out, &c->err);
}

/* dpr_client_prefix, with the failure in err. */
static int client_prefix(dpr_client *c, uint64_t world_line, dpr_depset *cut, dpr_err *err)
{
    int r;
    redisReply *reply = NULL;
    char wl[DPR_FMT_U64_MAX + 1];
    const char *argv[] = {"DPR.PREFIX", c->domain, wl};

    wl[dpr_fmt_u64(wl, world_line)] = '\0';
    pthread_mutex_lock(&c->lock);
    r = finder_request(c, 3, argv, &reply, err);
    if (r < 0)
        goto out;
    r = dpr_cutreply_flat(reply, cut);
    if (r < 0)
        dpr_err_set(err, r, "finder %s: DPR.PREFIX answer of the wrong shape",
                    dpr_finders_text(&c->finders));
out:
    pthread_mutex_unlock(&c->lock);
    if (reply)
        freeReplyObject(reply);
    return r;
}

int dpr_client_prefix(dpr_client *c, uint64_t world_line, dpr_depset *cut)
{
    return client_prefix(c, world_line, cut, &c->err);
}

int dpr_client_new(const dpr_client_config *cfg, dpr_client **out, dpr_err *err)
{
    int r;
    dpr_client *c = NULL;
    dpr_cut cut;

    dpr_cut_init(&cut);
    *out = NULL;
    r = check_config(cfg, err);
    if (r < 0)
        goto fail;
    c = calloc(1, sizeof(*c));
    if (!c)
        goto nomem;
    dpr_conn_init(&c->finder);
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        c = NULL;
        goto nomem;
    }
    c->connect_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : DEFAULT_CONNECT_MS;
    c->io_ms = cfg->io_timeout_ms ? cfg->io_timeout_ms : DEFAULT_IO_MS;
    c->resize_ms = cfg->resize_timeout_ms ? cfg->resize_timeout_ms : DEFAULT_RESIZE_MS;
    c->reconnect_ms = cfg->reconnect_timeout_ms ? cfg->reconnect_timeout_ms
                                                : DEFAULT_RECONNECT_MS;
    c->depth = cfg->pipeline_depth ? cfg->pipeline_depth : DEFAULT_DEPTH;
    if (cfg->tls_ca_file) {
        dpr_tls_config tc = { .cert_file = cfg->tls_cert_file, .key_file = cfg->tls_key_file,
                              .ca_file = cfg->tls_ca_file, .verify = DPR_TLS_VERIFY_REQUIRED };
        r = dpr_tls_ctx_new(&tc, false, &c->tls, err);
        if (r < 0)
            goto fail;
    }
    snprintf(c->domain, sizeof(c->domain), "%s",
             cfg->domain ? cfg->domain : cfg->deployment ? cfg->deployment : DPR_DOMAIN_DEFAULT);
    c->domain_id = dpr_domain_id(c->domain, strlen(c->domain));
    for (size_t i = 0; i < cfg->nagents; i++) {
        snprintf(c->agents[i].host, DPR_HOST_MAX, "%s", cfg->agents[i].host);
        c->agents[i].port = cfg->agents[i].port;
        c->nagents = i + 1;
    }
    if (cfg->deployment)
        snprintf(c->deployment, sizeof(c->deployment), "%s", cfg->deployment);
    if (cfg->nfinders == 0 && cfg->finder.host) {
        c->finders.n = 1;
        snprintf(c->finders.list[0].host, DPR_HOST_MAX, "%s", cfg->finder.host);
        c->finders.list[0].port = cfg->finder.port;
    }
    for (size_t i = 0; i < cfg->nfinders; i++) {
        snprintf(c->finders.list[i].host, DPR_HOST_MAX, "%s", cfg->finders[i].host);
        c->finders.list[i].port = cfg->finders[i].port;
        c->finders.n = i + 1;
    }
    if (c->finders.n == 0) {
        /* a client from agents: they are its finders too */
        assert(c->nagents > 0); /* check_config */
        memcpy(c->finders.list, c->agents, c->nagents * sizeof(c->agents[0]));
        c->finders.n = c->nagents;
    }
    dpr_finders_reset(&c->finders);
    if (c->nagents) {
        r = shards_from_agents(c, err);
        if (r < 0)
            goto fail;
    } else {
        c->shards = calloc(cfg->nshards, sizeof(*c->shards));
        if (!c->shards)
            goto nomem;
        c->nshards = cfg->nshards;
        for (size_t i = 0; i < c->nshards; i++) {
            c->shards[i].host = strdup(cfg->shards[i].host);
            if (!c->shards[i].host)
                goto nomem;
            c->shards[i].port = cfg->shards[i].port;
            c->shards[i].worker = cfg->shards[i].worker;
        }
        for (size_t i = 0; i < c->nshards; i++) {
            if (cfg->shards[i].has_worker)
                continue;
            r = learn_worker(c, &c->shards[i], err);
            if (r < 0)
                goto fail;
        }
    }
    r = check_unique_workers(c, err);
    if (r < 0)
        goto fail;
    r = client_sync(c, &cut, err);
    if (r < 0)
        goto fail;
    *out = c;
    c = NULL;
    r = 0;
    goto done;
nomem:
    r = dpr_err_set(err, -ENOMEM, "out of memory");
fail:
    dpr_client_free(c);
done:
    dpr_cut_free(&cut);
    return r;
}

void dpr_client_free(dpr_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nshards; i++)
        free(c->shards[i].host);
    free(c->shards);
    dpr_conn_free(&c->finder);
    dpr_tls_ctx_free(c->tls); /* (after every connection of it) */
    pthread_mutex_destroy(&c->lock);
    free(c);
}

size_t dpr_client_nshards(const dpr_client *c)
{
    return c->nshards;
}

const char *dpr_client_domain(const dpr_client *c)
{
    return c->domain;
}

uint64_t dpr_client_layout_epoch(const dpr_client *c)
{
    return c->layout_epoch;
}

/* Host and port of shard i of a list (beyond it: "" and 0). */
static const char *ep_host(const shard_ep *v, size_t n, size_t i)
{
    return i < n ? v[i].host : "";
}

static uint16_t ep_port(const shard_ep *v, size_t n, size_t i)
{
    return i < n ? v[i].port : 0;
}

const char *dpr_client_shard_host(const dpr_client *c, size_t shard)
{
    return ep_host(c->shards, c->nshards, shard);
}

uint16_t dpr_client_shard_port(const dpr_client *c, size_t shard)
{
    return ep_port(c->shards, c->nshards, shard);
}

uint64_t dpr_client_worker(const dpr_client *c, size_t shard)
{
    return shard < c->nshards ? c->shards[shard].worker : 0;
}

uint32_t dpr_client_route(const dpr_client *c, const void *key, size_t len)
{
    return dpr_route_shard(key, len, (uint32_t)c->nshards);
}

uint32_t dpr_client_route_op(const dpr_client *c, const dpr_op *op)
{
    if (op->argc < 2)
        return 0;
    size_t len = op->argvlen ? op->argvlen[1] : strlen(op->argv[1]);
    return dpr_client_route(c, op->argv[1], len);
}

const char *dpr_client_errstr(const dpr_client *c)
{
    return c->err.msg;
}

/* ---- sessions: shard connections ------------------------------------------------ */

void dpr_batch_result_free(dpr_batch_result *r)
{
    if (r->owner_)
        freeReplyObject(r->owner_);
    memset(r, 0, sizeof(*r));
}

static shard_conn *get_shard(dpr_client_session *s, uint32_t k)
{
    shard_conn *sc = s->sh[k];
    if (sc)
        return sc;
    sc = calloc(1, sizeof(*sc));
    if (!sc)
        return NULL;
    sc->q = calloc(s->c->depth, sizeof(*sc->q));
    if (!sc->q) {
        free(sc);
        return NULL;
    }
    dpr_conn_init(&sc->conn);
    s->sh[k] = sc;
    return sc;
}

static flight *q_head(shard_conn *sc, unsigned depth)
{
    return &sc->q[sc->qhead % depth];
}

static void q_push(dpr_client_session *s, uint32_t k, const flight *f)
{
    shard_conn *sc = s->sh[k];
    unsigned depth = s->c->depth;
    assert(sc->qlen < depth); /* send checks the room */
    /* in send order: batch ids grow */
    assert(sc->qlen == 0 || sc->q[(sc->qhead + sc->qlen - 1) % depth].batch_id < f->batch_id);
    sc->q[(sc->qhead + sc->qlen) % depth] = *f;
    if (sc->qlen++ == 0) {
        sc->active_pos = s->nactive;
        s->active[s->nactive++] = k;
    }
    s->inflight++;
}

static flight q_pop(dpr_client_session *s, uint32_t k)
{
    shard_conn *sc = s->sh[k];
    unsigned depth = s->c->depth;
    assert(sc->qlen > 0 && s->active[sc->active_pos] == k);
    flight f = *q_head(sc, depth);
    sc->qhead = (sc->qhead + 1) % depth;
    s->inflight--;
    if (--sc->qlen == 0) {
        uint32_t last = s->active[--s->nactive];
        s->active[sc->active_pos] = last;
        s->sh[last]->active_pos = sc->active_pos;
        sc->qhead = 0;
    }
    return f;
}

/* Gives up dead batch f of shard k: in doubt (abandoned), outcome status. */
static void abandon_flight(dpr_client_session *s, flight *f, int status)
{
    if (dpr_session_abandon_batch(&s->sess, f->batch_id) == 0)
        s->abandoned++;
    f->status = status;
}

/* The connection failed: every batch on it is dead and will be returned by
 * recv. With `status` -ECONNRESET (the stream ended or was reset, not a
 * timeout nor a malformed answer) and a shard that told its process, the
 * batches wait for settle_cut_off: a shard that stopped on purpose ran none
 * of them. Else they are abandoned now, with `status`. */
static void break_conn(dpr_client_session *s, uint32_t k, int status)
{
    shard_conn *sc = s->sh[k];
    unsigned depth = s->c->depth;
    if (sc->conn.err.msg[0])
        dpr_err_set(&s->err, sc->conn.err.code, "shard %u (%s:%u): %s", k,
                    s->shards[k].host, (unsigned)s->shards[k].port, sc->conn.err.msg);
    assert(sc->ndead <= sc->qlen); /* dead batches are the oldest */
    bool wait = status == -ECONNRESET && sc->run_id[0] && sc->qlen > sc->ndead;
    for (size_t i = sc->ndead; i < sc->qlen; i++) {
        flight *f = &sc->q[(sc->qhead + i) % depth];
        if (wait)
            f->status = status;
        else
            abandon_flight(s, f, status);
    }
    sc->ndead = sc->qlen;
    if (wait) {
        sc->cut_off = true;
        memcpy(sc->cut_run_id, sc->run_id, sizeof(sc->run_id));
        sc->cut_since = dpr_mono_ms();
        sc->next_try = sc->cut_since;
    }
    if (sc->ready)
        freeReplyObject(sc->ready);
    sc->ready = NULL;
    sc->write_failed = false;
    sc->run_id[0] = '\0';
    dpr_conn_close(&sc->conn);
}

/* A write failed: the answers the shard wrote before its end may still be
 * read, so the connection is read until it ends (then break_conn). */
static void write_failed(dpr_client_session *s, uint32_t k)
{
    shard_conn *sc = s->sh[k];
    if (sc->qlen == 0) {
        break_conn(s, k, -ECONNRESET);
        return;
    }
    sc->write_failed = true;
    dpr_conn_shutdown_write(&sc->conn);
}

/* Connects to shard k and asks what it is (INFO dpr: its process and
 * world-line, for settle_cut_off). */
static int connect_shard(dpr_client_session *s, uint32_t k)
{
    shard_conn *sc = s->sh[k];
    const char *argv[] = {"INFO", "dpr"};
    redisReply *reply = NULL;
    const char *v;
    size_t n = 0;
    int r;

    sc->run_id[0] = '\0';
    sc->peer_world_line = 0;
    sc->write_failed = false;
    r = dpr_conn_connect(&sc->conn, s->shards[k].host, s->shards[k].port, s->c->tls,
                         s->c->connect_ms);
    if (r == 0)
        r = dpr_conn_request(&sc->conn, 2, argv, NULL, s->c->io_ms, &reply);
    if (r < 0) {
        dpr_err_set(&s->err, r, "shard %u: %s", k, sc->conn.err.msg);
        goto fail;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        r = dpr_err_set(&s->err, -EREMOTEIO, "shard %u: INFO dpr: %s", k,
                        reply->type == REDIS_REPLY_ERROR ? reply->str : "not a bulk string");
        goto fail;
    }
    v = dpr_info_field(reply->str, "dpr_run_id", &n);
    if (v && n > 0 && n < sizeof(sc->run_id)) {
        memcpy(sc->run_id, v, n);
        sc->run_id[n] = '\0';
    }
    v = dpr_info_field(reply->str, "dpr_world_line", &n);
    if (!v || dpr_parse_u64(v, n, 0, UINT64_MAX, &sc->peer_world_line) < 0)
        sc->peer_world_line = 0;
    freeReplyObject(reply);
    return 0;
fail:
    if (reply)
        freeReplyObject(reply);
    sc->run_id[0] = '\0';
    dpr_conn_close(&sc->conn);
    return r;
}

/* Before a batch goes to an idle connection: if the shard closed it (it
 * restarted, say) open a new one instead of losing the batch to it. */
static int ensure_connected(dpr_client_session *s, uint32_t k)
{
    shard_conn *sc = s->sh[k];
    if (sc->conn.fd >= 0 && sc->qlen == 0) {
        struct pollfd p = {.fd = sc->conn.fd, .events = POLLIN};
        if (sc->write_failed || poll(&p, 1, 0) > 0) {
            /* EOF, an error, or bytes nobody asked for: start over */
            (void)dpr_conn_read(&sc->conn);
            dpr_conn_close(&sc->conn);
        }
    }
    if (sc->conn.fd >= 0)
        return 0;
    return connect_shard(s, k);
}

/*
 * Shard k closed a connection with batches in flight (sc->cut_off): did it
 * stop on purpose? Then it comes back as another process (dpr_run_id) on
 * the session's world-line: a crash restart moves the world-line, and a
 * planned stop answers every batch it ran before its end of stream
 * (docs/dpr-kv.md, "SIGTERM"); the batches never ran and are withdrawn
 * (status -ERESTART: send them again). The same process, another
 * world-line, a world-line that moved on at the finder, or no shard within
 * reconnect_timeout_ms: abandoned (-ECONNRESET), in doubt as before.
 * Tries at most every RECONNECT_POLL_MS.
 */
static void settle_cut_off(dpr_client_session *s, uint32_t k)
{
    shard_conn *sc = s->sh[k];
    unsigned depth = s->c->depth;
    uint64_t now = dpr_mono_ms();
    bool planned;
    dpr_err why = DPR_ERR_INIT;

    if (!sc->cut_off || now < sc->next_try)
        return;
    assert(sc->conn.fd < 0 && sc->ndead == sc->qlen && sc->qlen > 0);
    if (connect_shard(s, k) < 0) {
        dpr_cut cut;
        bool moved = false;
        dpr_cut_init(&cut);
        if (client_sync(s->c, &cut, &why) == 0 && cut.world_line > s->sess.world_line)
            moved = true; /* a crash: the batches are in doubt */
        dpr_cut_free(&cut);
        if (!moved && now - sc->cut_since < (uint64_t)s->c->reconnect_ms) {
            sc->next_try = now + RECONNECT_POLL_MS;
            return;
        }
        dpr_err_set(&why, -ECONNRESET, "shard %u closed the connection with %zu batch(es) "
                    "in flight and %s: they are in doubt", k, sc->qlen,
                    moved ? "the world-line moved on (a crash)"
                          : "did not come back within reconnect_timeout_ms");
        planned = false;
    } else {
        planned = sc->run_id[0] && strcmp(sc->run_id, sc->cut_run_id) != 0 &&
                  sc->peer_world_line == s->sess.world_line;
        if (!planned)
            dpr_err_set(&why, -ECONNRESET, "shard %u closed the connection with %zu "
                        "batch(es) in flight and answers again %s: they are in doubt", k,
                        sc->qlen,
                        !sc->run_id[0] ? "without telling its process"
                        : strcmp(sc->run_id, sc->cut_run_id) == 0
                            ? "as the same process"
                            : "on another world-line (a crash)");
    }
    sc->cut_off = false;
    /* newest first: a batch that is the session's newest is cancelled, and
     * its sequence numbers are issued again */
    for (size_t i = sc->qlen; i-- > 0;) {
        flight *f = &sc->q[(sc->qhead + i) % depth];
        int r = planned ? dpr_session_withdraw_batch(&s->sess, f->batch_id) : -ECONNRESET;
        if (r >= 0)
            f->status = -ERESTART;
        else
            abandon_flight(s, f, -ECONNRESET);
    }
    if (planned)
        dpr_err_set(&s->err, -ERESTART, "shard %u stopped on purpose (a planned restart) "
                    "with %zu batch(es) in flight: they never ran; send them again", k,
                    sc->qlen);
    else
        s->err = why;
}

/* ---- sessions ------------------------------------------------------------------- */

static dpr_session_id random_session_id(void)
{
    static unsigned long counter;
    dpr_session_id id;
    if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
        id.hi = dpr_clock_ns(CLOCK_REALTIME);
        id.lo = ((uint64_t)getpid() << 32) ^ (uint64_t)__atomic_add_fetch(&counter, 1,
                                                                          __ATOMIC_RELAXED);
    }
    return id;
}

int dpr_client_session_open(dpr_client *c, unsigned flags, dpr_client_session **out)
{
    int r;
    dpr_cut cut;
    dpr_client_session *s = NULL;

    dpr_cut_init(&cut);
    *out = NULL;
    r = dpr_client_sync(c, &cut);
    if (r < 0)
        goto out;
    r = -ENOMEM;
    s = calloc(1, sizeof(*s));
    if (!s)
        goto out;
    s->c = c;
    s->shards = c->shards;
    s->nshards = c->nshards;
    s->layout_epoch = c->layout_epoch;
    r = dpr_session_init(&s->sess, random_session_id(), c->domain_id, cut.world_line, flags);
    if (r < 0) {
        dpr_err_set(&c->err, r, "bad session flags 0x%x", flags);
        goto out;
    }
    r = -ENOMEM;
    s->sh = calloc(s->nshards, sizeof(*s->sh));
    s->active = calloc(s->nshards, sizeof(*s->active));
    s->pfds = calloc(s->nshards, sizeof(*s->pfds));
    if (!s->sh || !s->active || !s->pfds)
        goto out;
    *out = s;
    s = NULL;
    r = 0;
out:
    if (r == -ENOMEM)
        dpr_err_set(&c->err, r, "out of memory");
    dpr_client_session_close(s);
    dpr_cut_free(&cut);
    return r;
}

static void free_shard_eps(shard_ep *eps, size_t n)
{
    for (size_t i = 0; eps && i < n; i++)
        free(eps[i].host);
    free(eps);
}

/* Closes and frees every shard connection of the session. */
static void drop_shard_conns(dpr_client_session *s)
{
    for (size_t k = 0; s->sh && k < s->nshards; k++) {
        shard_conn *sc = s->sh[k];
        if (!sc)
            continue;
        if (sc->ready)
            freeReplyObject(sc->ready);
        dpr_conn_free(&sc->conn);
        free(sc->q);
        free(sc);
        s->sh[k] = NULL;
    }
}

/* Everything the session has per shard: connections, its own shard list
 * (after a layout change), the arrays. */
static void free_shard_state(dpr_client_session *s)
{
    drop_shard_conns(s);
    if (s->own_shards)
        free_shard_eps(s->shards, s->nshards);
    free(s->sh);
    free(s->active);
    free(s->pfds);
}

void dpr_client_session_close(dpr_client_session *s)
{
    if (!s)
        return;
    free_shard_state(s);
    free(s->hdr);
    dpr_session_free(&s->sess);
    free(s);
}

const dpr_session *dpr_client_session_state(const dpr_client_session *s)
{
    return &s->sess;
}

const char *dpr_client_session_errstr(const dpr_client_session *s)
{
    return s->err.msg;
}

size_t dpr_client_session_inflight(const dpr_client_session *s, uint32_t shard)
{
    if (shard == UINT32_MAX)
        return s->inflight;
    if (shard >= s->nshards || !s->sh[shard])
        return 0;
    return s->sh[shard]->qlen;
}

bool dpr_client_session_needs_rollback(const dpr_client_session *s)
{
    return s->sess.seen_world_line > s->sess.world_line || s->abandoned > 0 ||
           s->newer_world_line > s->sess.world_line;
}

static size_t op_size(const dpr_op *op, size_t *lens)
{
    for (int i = 0; i < op->argc; i++)
        lens[i] = op->argvlen ? op->argvlen[i] : strlen(op->argv[i]);
    return dpr_resp_command_size(op->argc, lens);
}

/* Output bytes for a batch whose header takes hdr_len bytes. */
static int batch_size(const dpr_op *ops, uint32_t nops, size_t hdr_len, size_t *out)
{
    size_t lens_stack[16];
    size_t *lens = lens_stack;
    size_t cap = 16, total;
    size_t hl[2] = {9, hdr_len};
    int r = 0;

    total = dpr_resp_command_size(2, hl);
    for (uint32_t i = 0; i < nops; i++) {
        if (ops[i].argc < 1 || !ops[i].argv) {
            r = -EINVAL;
            goto out;
        }
        if ((size_t)ops[i].argc > cap) {
            size_t *p = realloc(lens == lens_stack ? NULL : lens,
                                (size_t)ops[i].argc * sizeof(*lens));
            if (!p) {
                r = -ENOMEM;
                goto out;
            }
            lens = p;
            cap = (size_t)ops[i].argc;
        }
        total += op_size(&ops[i], lens);
    }
    *out = total;
out:
    if (lens != lens_stack)
        free(lens);
    return r;
}

int dpr_client_session_send(dpr_client_session *s, uint32_t shard, const dpr_op *ops,
                            uint32_t nops, uint64_t *first_seq)
{
    int r;
    shard_conn *sc;
    size_t hdr_len, total;
    dpr_request_hdr hdr;
    uint64_t first;

    if (shard >= s->nshards || nops == 0 || nops > DPR_WIRE_MAX_OPS || !ops) {
        r = -EINVAL;
        goto out;
    }
    if (s->sess.seen_world_line > s->sess.world_line ||
        (!(s->sess.flags & DPR_SESSION_RELAXED) && s->sess.in_doubt)) {
        r = dpr_err_set(&s->err, -ESTALE, "the session must roll back first");
        goto out;
    }
    sc = get_shard(s, shard);
    if (!sc) {
        r = -ENOMEM;
        goto out;
    }
    /* dead batches (a lost connection) and a connection read until it
     * ends take nothing new: receive first */
    assert(sc->conn.fd >= 0 || sc->qlen == sc->ndead);
    if (sc->qlen >= s->c->depth || sc->ndead > 0 || (sc->write_failed && sc->qlen > 0)) {
        r = -EAGAIN;
        goto out;
    }
    if (!(s->sess.flags & DPR_SESSION_RELAXED) &&
        (s->nactive > 1 || (s->nactive == 1 && s->active[0] != shard))) {
        r = -EBUSY;
        goto out;
    }
    hdr_len = dpr_wire_request_size(dpr_depset_count(&s->sess.deps));
    r = batch_size(ops, nops, hdr_len, &total);
    if (r < 0)
        goto out;
    if (hdr_len > s->hdr_cap) {
        uint8_t *p = realloc(s->hdr, hdr_len);
        if (!p) {
            r = -ENOMEM;
            goto out;
        }
        s->hdr = p;
        s->hdr_cap = hdr_len;
    }
    r = ensure_connected(s, shard);
    if (r < 0)
        goto out;
    r = dpr_conn_reserve(&sc->conn, total);
    if (r < 0)
        goto out;
    r = dpr_session_begin_batch(&s->sess, s->shards[shard].worker, nops, &hdr, &first);
    if (r < 0)
        goto out;
    ssize_t n = dpr_wire_encode_request(&hdr, &s->sess.deps, s->hdr, hdr_len);
    /* sized above; the header is the session's own (at most nshards deps) */
    assert(n == (ssize_t)hdr_len);
    const char *bargv[2] = {"DPR.BATCH", (const char *)s->hdr};
    size_t blen[2] = {9, (size_t)n};
    dpr_conn_put_command(&sc->conn, 2, bargv, blen);
    for (uint32_t i = 0; i < nops; i++)
        dpr_conn_put_command(&sc->conn, ops[i].argc, ops[i].argv, ops[i].argvlen);
    flight f = {.batch_id = hdr.batch_id, .first_seq = first, .op_count = nops};
    q_push(s, shard, &f);
    if (dpr_conn_flush(&sc->conn) < 0)
        write_failed(s, shard); /* recv reports the batch */
    *first_seq = first;
    r = 0;
out:
    return r;
}

/* Handles the answer in sc->ready for the batch at the head of shard k. */
static void finish_answer(dpr_client_session *s, uint32_t k, const flight *f,
                          dpr_batch_result *res)
{
    shard_conn *sc = s->sh[k];
    redisReply *reply = sc->ready;
    dpr_response_hdr rh;
    int r;

    sc->ready = NULL;
    if (reply->type == REDIS_REPLY_ERROR &&
        (strncmp(reply->str, "MOVED ", 6) == 0 || strncmp(reply->str, "TRYAGAIN ", 9) == 0)) {
        /* refused before any of it ran (the layout): withdrawn, not in doubt */
        r = dpr_session_withdraw_batch(&s->sess, f->batch_id);
        if (r < 0) {
            res->status = dpr_err_set(&s->err, r, "shard %u: cannot withdraw batch %" PRIu64
                                      ": %s", k, f->batch_id, strerror(-r));
            (void)dpr_session_abandon_batch(&s->sess, f->batch_id);
            s->abandoned++;
            goto out;
        }
        res->status = dpr_err_set(&s->err, reply->str[0] == 'M' ? -EREMCHG : -EINPROGRESS,
                                  "shard %u: %s", k, reply->str);
        goto out;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        res->status = dpr_err_set(&s->err, -EREMOTEIO, "shard %u: %s", k, reply->str);
        (void)dpr_session_abandon_batch(&s->sess, f->batch_id);
        s->abandoned++;
        goto out;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY)
        goto bad;
    r = (int)dpr_wire_decode_response((const uint8_t *)reply->element[0]->str,
                                      reply->element[0]->len, &rh, NULL);
    if (r < 0 || (size_t)r != reply->element[0]->len || rh.batch_id != f->batch_id ||
        rh.op_count != f->op_count ||
        reply->element[1]->elements != (rh.status == DPR_WIRE_EXECUTED ? f->op_count : 0))
        goto bad;
    r = dpr_session_resolve(&s->sess, &rh);
    res->world_line = rh.world_line;
    if (rh.status == DPR_WIRE_REFUSED && r == -ESTALE) {
        res->status = dpr_err_set(&s->err, -ESTALE, "shard %u refused a batch: world-line %"
                                  PRIu64 " has ended (now %" PRIu64 ")", k,
                                  s->sess.world_line, rh.world_line);
        goto out;
    }
    if (r == -ENOMEM) {
        (void)dpr_session_abandon_batch(&s->sess, f->batch_id);
        s->abandoned++;
        res->status = -ENOMEM;
        goto out;
    }
    if (r < 0)
        goto bad;
    res->status = 0;
    res->version = dpr_wire_response_version(&rh, f->op_count - 1);
    res->replies = reply->element[1]->element;
    res->owner_ = reply;
    reply = NULL;
    goto out;
bad:
    res->status = dpr_err_set(&s->err, -EPROTO, "shard %u: malformed answer to a DPR batch", k);
    (void)dpr_session_abandon_batch(&s->sess, f->batch_id);
    s->abandoned++;
    dpr_err_clear(&sc->conn.err); /* keep the message above */
    break_conn(s, k, -EPROTO);
out:
    if (reply)
        freeReplyObject(reply);
}

/* Returns the oldest batch that has an outcome, if any (1), else 0. */
static int take_ready(dpr_client_session *s, dpr_batch_result *res)
{
    uint32_t best = UINT32_MAX;
    uint64_t best_id = UINT64_MAX;
    unsigned depth = s->c->depth;

    for (size_t i = 0; i < s->nactive; i++) {
        uint32_t k = s->active[i];
        shard_conn *sc = s->sh[k];
        if (sc->ndead == 0 && sc->conn.fd >= 0 && !sc->ready) {
            int r = dpr_conn_next_reply(&sc->conn, &sc->ready);
            if (r < 0)
                break_conn(s, k, -EPROTO);
        }
        bool has_outcome = sc->ndead > 0 ? !sc->cut_off : sc->ready != NULL;
        if (has_outcome && q_head(sc, depth)->batch_id < best_id) {
            best = k;
            best_id = q_head(sc, depth)->batch_id;
        }
    }
    if (best == UINT32_MAX)
        return 0;
    shard_conn *sc = s->sh[best];
    bool dead = sc->ndead > 0;
    if (dead)
        sc->ndead--;
    flight f = q_pop(s, best);
    memset(res, 0, sizeof(*res));
    res->batch_id = f.batch_id;
    res->first_seq = f.first_seq;
    res->op_count = f.op_count;
    res->shard = best;
    if (dead)
        res->status = f.status;
    else
        finish_answer(s, best, &f, res);
    return 1;
}

int dpr_client_session_recv(dpr_client_session *s, int timeout_ms, dpr_batch_result *res)
{
    int r;
    uint64_t deadline = dpr_deadline_ms(timeout_ms);

    memset(res, 0, sizeof(*res));
    for (;;) {
        if (s->inflight == 0) {
            r = -ENOENT;
            break;
        }
        uint64_t wake = UINT64_MAX; /* the next try of a cut-off shard */
        for (size_t i = 0; i < s->nactive; i++) {
            shard_conn *sc = s->sh[s->active[i]];
            settle_cut_off(s, s->active[i]);
            if (sc->cut_off && sc->next_try < wake)
                wake = sc->next_try;
        }
        if (take_ready(s, res)) {
            r = 0;
            break;
        }
        /* pfds[i] belongs to active[i]; a connection with nothing to read
         * (gone, or only dead batches) gets fd -1, which poll skips */
        size_t n = s->nactive;
        bool broke = false;
        for (size_t i = 0; i < n; i++) {
            uint32_t k = s->active[i];
            shard_conn *sc = s->sh[k];
            s->pfds[i].fd = -1;
            s->pfds[i].events = 0;
            s->pfds[i].revents = 0;
            if (sc->conn.fd < 0 || sc->ndead > 0)
                continue;
            if (!sc->write_failed && dpr_conn_flush(&sc->conn) < 0)
                write_failed(s, k);
            if (sc->conn.fd < 0) {
                broke = true;
                continue;
            }
            s->pfds[i].fd = sc->conn.fd;
            s->pfds[i].events = POLLIN;
            if (dpr_conn_pending_output(&sc->conn))
                s->pfds[i].events |= POLLOUT;
        }
        if (broke)
            continue; /* a connection broke: its batches may be ready */
        int ms = dpr_ms_left(deadline);
        if (wake != UINT64_MAX) {
            uint64_t now = dpr_mono_ms();
            int w = wake > now ? (int)(wake - now) : 0;
            if (ms < 0 || w < ms)
                ms = w;
        }
        r = poll(s->pfds, n, ms);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            r = dpr_err_set(&s->err, -e, "poll: %s", strerror(e));
            break;
        }
        if (r == 0) {
            if (dpr_ms_left(deadline) != 0)
                continue;
            r = timeout_ms == 0 ? -EAGAIN : -ETIMEDOUT;
            break;
        }
        assert(n == s->nactive); /* no shard left the list above */
        for (size_t i = 0; i < n; i++) {
            uint32_t k = s->active[i];
            shard_conn *sc = s->sh[k];
            if (s->pfds[i].fd < 0)
                continue;
            if (s->pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                int rr = dpr_conn_read(&sc->conn);
                if (rr < 0 && rr != -EAGAIN)
                    break_conn(s, k, -ECONNRESET);
            } else if (s->pfds[i].revents & POLLOUT) {
                if (dpr_conn_flush(&sc->conn) < 0)
                    write_failed(s, k);
            }
        }
    }
    return r;
}

size_t dpr_client_session_pollfds(dpr_client_session *s, struct pollfd *fds, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nactive && n < cap; i++) {
        shard_conn *sc = s->sh[s->active[i]];
        if (sc->conn.fd < 0 || sc->ndead > 0)
            continue;
        fds[n].fd = sc->conn.fd;
        fds[n].events = POLLIN;
        if (dpr_conn_pending_output(&sc->conn))
            fds[n].events |= POLLOUT;
        fds[n].revents = 0;
        n++;
    }
    return n;
}

static int refresh_layout(dpr_client_session *s, bool with_agents);

/* exec could not reach a shard (nothing was sent; the connect error is in
 * s->err): 1 when it should send again now (the layout changed, or after a
 * pause to try the shard again), else the error to return. *since is when
 * the shard was first found unreachable (0: it was reachable), *next_ask
 * when to ask for a newer layout again. */
static int exec_unreachable(dpr_client_session *s, int r, uint64_t *since, uint64_t *next_ask)
{
    dpr_err why = s->err;
    uint64_t now = dpr_mono_ms();
    bool ask = false, agents = true;

    if (*since == 0) {
        /* at once: the other shards (a resize removed this one); the agents
         * after a second (a restart takes about that long) */
        *since = now;
        *next_ask = now + REFRESH_AFTER_MS;
        ask = true;
        agents = false;
    } else if (now >= *next_ask) {
        *next_ask = now + REFRESH_AFTER_MS;
        ask = true;
    }
    if (ask && refresh_layout(s, agents) > 0) {
        *since = 0;
        return 1;
    }
    s->err = why; /* the connect error, not what asking met */
    if (now - *since >= (uint64_t)s->c->reconnect_ms)
        return dpr_err_set(&s->err, r, "%s (unreachable for %d ms: reconnect_timeout_ms; no "
                           "newer layout found)", why.msg, s->c->reconnect_ms);
    sleep_ms(RECONNECT_POLL_MS);
    return 1;
}

int dpr_client_session_exec(dpr_client_session *s, const dpr_op *op, redisReply **reply,
                            uint64_t *seq)
{
    int r, pause = 10;
    uint64_t first, deadline = dpr_deadline_ms(s->c->resize_ms);
    uint64_t unreachable_since = 0, next_ask = 0;
    dpr_batch_result res;

    memset(&res, 0, sizeof(res));
    *reply = NULL;
    if (s->inflight) {
        r = -EBUSY;
        goto out;
    }
    for (;;) {
        uint32_t k = dpr_client_session_route_op(s, op);
        r = dpr_client_session_send(s, k, op, 1, &first);
        if (r == -ENOMEM || r == -EINVAL || r == -EBUSY || r == -ESTALE || r == -EAGAIN)
            goto out;
        if (r < 0 && s->sh[k] && s->sh[k]->conn.fd < 0) {
            /* unreachable: it restarts, a resize removed it, or it moved */
            r = exec_unreachable(s, r, &unreachable_since, &next_ask);
            if (r > 0)
                continue;
            goto out;
        }
        if (r < 0)
            goto out;
        unreachable_since = 0;
        r = dpr_client_session_recv(s, s->c->io_ms, &res);
        while (r == -ETIMEDOUT && s->sh[k]->cut_off)
            r = dpr_client_session_recv(s, s->c->io_ms, &res); /* settles in reconnect_ms */
        if (r == -ETIMEDOUT) {
            /* no answer: its node may be lost (a silent peer leaves the
             * connection open); give the connection up, the batch comes back
             * abandoned and the next send connects again (or moves on) */
            dpr_err_set(&s->sh[k]->conn.err, -ETIMEDOUT, "no answer within %d ms "
                        "(io_timeout_ms): connection given up, the operation is in doubt",
                        s->c->io_ms);
            break_conn(s, k, -ETIMEDOUT);
            r = dpr_client_session_recv(s, 0, &res);
        }
        if (r < 0)
            goto out;
        r = res.status;
        if (r != -EREMCHG && r != -EINPROGRESS && r != -ERESTART)
            break;
        dpr_batch_result_free(&res);
        if (r == -ERESTART)
            continue; /* a planned restart: nothing ran; the shard is back */
        if (r == -EREMCHG && dpr_client_session_refresh_layout(s) > 0)
            continue; /* re-routed at once */
        if (dpr_ms_left(deadline) == 0) {
            r = dpr_err_set(&s->err, -ETIMEDOUT, "%s for %d ms (resize_timeout_ms): %s",
                            r == -EINPROGRESS ? "the deployment was being resized"
                                              : "the shards kept redirecting",
                            s->c->resize_ms, s->err.msg);
            goto out;
        }
        sleep_ms(pause);
        pause = pause * 2 > RESIZE_POLL_MAX_MS ? RESIZE_POLL_MAX_MS : pause * 2;
    }
    if (seq)
        *seq = first;
    if (r == 0) {
        *reply = res.replies[0];
        res.replies[0] = NULL;
    }
out:
    dpr_batch_result_free(&res);
    return r;
}

/* ---- layouts -------------------------------------------------------------------- */

uint32_t dpr_client_session_route_op(const dpr_client_session *s, const dpr_op *op)
{
    if (op->argc < 2)
        return 0;
    size_t len = op->argvlen ? op->argvlen[1] : strlen(op->argv[1]);
    return dpr_route_shard(op->argv[1], len, (uint32_t)s->nshards);
}

size_t dpr_client_session_nshards(const dpr_client_session *s)
{
    return s->nshards;
}

uint64_t dpr_client_session_layout_epoch(const dpr_client_session *s)
{
    return s->layout_epoch;
}

const char *dpr_client_session_shard_host(const dpr_client_session *s, size_t shard)
{
    return ep_host(s->shards, s->nshards, shard);
}

uint16_t dpr_client_session_shard_port(const dpr_client_session *s, size_t shard)
{
    return ep_port(s->shards, s->nshards, shard);
}

/* DPR.LAYOUT of shard ep as endpoints (worker ids unknown: 0): 0 with *out
 * (free it with dpr_endpoints_free), or < 0 (a shard that is down, was
 * removed, has no layout or answers of another shape). */
static int ask_layout(dpr_client *c, const shard_ep *ep, dpr_endpoints *out)
{
    dpr_conn conn;
    redisReply *reply = NULL;
    const redisReply *addrs;
    const char *argv[] = {"DPR.LAYOUT"};
    int r;

    memset(out, 0, sizeof(*out));
    dpr_conn_init(&conn);
    r = dpr_conn_connect(&conn, ep->host, ep->port, c->tls, c->connect_ms);
    if (r == 0)
        r = dpr_conn_request(&conn, 1, argv, NULL, c->io_ms, &reply);
    if (r == 0 && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
                   reply->element[0]->type != REDIS_REPLY_INTEGER ||
                   reply->element[0]->integer < 0 ||
                   reply->element[2]->type != REDIS_REPLY_ARRAY ||
                   reply->element[2]->elements == 0 ||
                   reply->element[2]->elements > MAX_SHARDS))
        r = -EPROTO;
    if (r < 0)
        goto out;
    addrs = reply->element[2];
    out->shard = calloc(addrs->elements, sizeof(*out->shard));
    if (!out->shard) {
        r = -ENOMEM;
        goto out;
    }
    out->n = addrs->elements;
    out->epoch = (uint64_t)reply->element[0]->integer;
    for (size_t i = 0; i < out->n; i++) {
        const redisReply *a = addrs->element[i];
        dpr_hostport hp;
        if (a->type != REDIS_REPLY_STRING ||
            dpr_hostport_parse_n(a->str, a->len, 0, &hp, NULL) < 0 || !hp.host[0]) {
            r = -EPROTO;
            goto out;
        }
        out->shard[i].port = hp.port;
        if (!(out->shard[i].host = strdup(hp.host))) {
            r = -ENOMEM;
            goto out;
        }
    }
out:
    if (r < 0)
        dpr_endpoints_free(out);
    if (reply)
        freeReplyObject(reply);
    dpr_conn_free(&conn);
    return r;
}

/* The shard list of a layout, worker ids taken from it (have_workers: the
 * agents tell them), else kept for addresses the session knows, else
 * learned (INFO): 0 or < 0. */
static int layout_shards(dpr_client_session *s, const dpr_endpoints *lay, bool have_workers,
                         shard_ep **out)
{
    size_t n = lay->n;
    shard_ep *eps = calloc(n, sizeof(*eps));
    int r = eps ? 0 : dpr_err_set(&s->err, -ENOMEM, "out of memory");

    for (size_t i = 0; r == 0 && i < n; i++) {
        const dpr_endpoints_shard *l = &lay->shard[i];
        assert(l->host); /* the caller took only layouts with every endpoint */
        eps[i].port = l->port;
        if (!(eps[i].host = strdup(l->host))) {
            r = dpr_err_set(&s->err, -ENOMEM, "out of memory");
            break;
        }
        if (have_workers) {
            eps[i].worker = l->worker;
            continue;
        }
        /* a shard the session knows keeps its worker id; a new one is asked */
        size_t k = 0;
        while (k < s->nshards &&
               !(s->shards[k].port == l->port && strcmp(s->shards[k].host, l->host) == 0))
            k++;
        if (k < s->nshards)
            eps[i].worker = s->shards[k].worker;
        else
            r = learn_worker(s->c, &eps[i], &s->err);
    }
    if (r < 0) {
        free_shard_eps(eps, n);
        return r;
    }
    *out = eps;
    return 0;
}

/* Do the agents tell the session's layout epoch and worker ids with a
 * shard at another address? A shard moved where no shard kept the epoch
 * (the only shard, or every one, moved): its new node gives the layout
 * anew, from the first epoch again. */
static bool moved_at_same_epoch(const dpr_client_session *s, const dpr_endpoints *e)
{
    bool differs = false;

    if (e->epoch != s->layout_epoch || e->n != s->nshards)
        return false;
    for (size_t i = 0; i < e->n; i++) {
        if (e->shard[i].worker != s->shards[i].worker)
            return false;
        differs |= e->shard[i].port != s->shards[i].port ||
                   strcmp(e->shard[i].host, s->shards[i].host) != 0;
    }
    return differs;
}

/* dpr_client_session_refresh_layout; with_agents false: the shards only. */
static int refresh_layout(dpr_client_session *s, bool with_agents)
{
    dpr_endpoints best, got;
    bool best_from_agents = false, moved = false;
    shard_ep *eps = NULL;
    shard_conn **sh = NULL;
    uint32_t *active = NULL;
    struct pollfd *pfds = NULL;
    size_t n;
    int r;

    memset(&best, 0, sizeof(best));
    if (s->inflight)
        return dpr_err_set(&s->err, -EBUSY, "batches are in flight: receive them first");
    for (size_t k = 0; k < s->nshards; k++) {
        if (ask_layout(s->c, &s->shards[k], &got) < 0)
            continue; /* down, removed, or not a shard with layouts */
        if (got.epoch > best.epoch) {
            dpr_endpoints_free(&best);
            best = got;
        } else {
            dpr_endpoints_free(&got);
        }
    }
    /* the cluster's view: the endpoints its agents know (a shard that
     * moved, when no other shard can tell); only when it names them all */
    if (with_agents && s->c->nagents && agents_endpoints(s->c, false, &got, NULL) == 0) {
        bool complete = dpr_endpoints_missing(&got, NULL, 0) == 0;
        moved = complete && best.epoch <= s->layout_epoch && moved_at_same_epoch(s, &got);
        if (complete && (got.epoch > best.epoch || moved)) {
            dpr_endpoints_free(&best);
            best = got;
            best_from_agents = true;
        } else {
            dpr_endpoints_free(&got);
        }
    }
    if (best.n == 0 || (best.epoch <= s->layout_epoch && !moved)) {
        r = 0;
        goto out;
    }
    n = best.n;
    r = layout_shards(s, &best, best_from_agents, &eps);
    if (r < 0)
        goto out;
    sh = calloc(n, sizeof(*sh));
    active = calloc(n, sizeof(*active));
    pfds = calloc(n, sizeof(*pfds));
    if (!sh || !active || !pfds) {
        r = dpr_err_set(&s->err, -ENOMEM, "out of memory");
        goto out;
    }
    free_shard_state(s);
    s->shards = eps;
    s->nshards = n;
    s->own_shards = true;
    s->sh = sh;
    s->active = active;
    s->pfds = pfds;
    s->nactive = 0;
    s->layout_epoch = best.epoch;
    eps = NULL;
    sh = NULL;
    active = NULL;
    pfds = NULL;
    r = 1;
out:
    if (eps)
        free_shard_eps(eps, best.n);
    free(sh);
    free(active);
    free(pfds);
    dpr_endpoints_free(&best);
    return r;
}

int dpr_client_session_refresh_layout(dpr_client_session *s)
{
    return refresh_layout(s, true);
}

/* ---- commit points and rollback ------------------------------------------------- */

int dpr_client_session_apply_cut(dpr_client_session *s, const dpr_cut *cut,
                                 uint64_t *commit_point)
{
    int r = 0;
    if (cut->world_line > s->sess.world_line) {
        if (cut->world_line > s->newer_world_line)
            s->newer_world_line = cut->world_line;
        r = dpr_err_set(&s->err, -ESTALE, "world-line %" PRIu64 " has ended (now %" PRIu64
                        "): the session must roll back", s->sess.world_line, cut->world_line);
    } else if (cut->world_line == s->sess.world_line) {
        (void)dpr_session_commit_point(&s->sess, &cut->versions);
    }
    if (commit_point)
        *commit_point = s->sess.commit_point;
    return r;
}

int dpr_client_session_commit_point(dpr_client_session *s, uint64_t *commit_point)
{
    int r;
    dpr_cut cut;
    dpr_cut_init(&cut);
    r = client_sync(s->c, &cut, &s->err);
    if (r == 0)
        r = dpr_client_session_apply_cut(s, &cut, commit_point);
    dpr_cut_free(&cut);
    return r;
}

bool dpr_client_session_is_committed(const dpr_client_session *s, uint64_t seq)
{
    return dpr_session_is_committed(&s->sess, seq);
}

static bool reported_lost(const dpr_session *ss, uint64_t seq)
{
    for (size_t i = 0; i < ss->nlost; i++)
        if (seq >= ss->lost[i].from && seq < ss->lost[i].to)
            return true;
    return false;
}

int dpr_client_session_wait_committed(dpr_client_session *s, uint64_t seq, int timeout_ms)
{
    int r;
    uint64_t deadline = dpr_deadline_ms(timeout_ms);

    if (seq == 0 || seq >= s->sess.next_seq)
        return -EINVAL;
    for (;;) {
        if (reported_lost(&s->sess, seq))
            return -ECANCELED;
        if (dpr_session_is_committed(&s->sess, seq))
            return 0;
        r = dpr_client_session_commit_point(s, NULL);
        if (r < 0)
            return r;
        if (dpr_session_is_committed(&s->sess, seq))
            return 0;
        if (dpr_ms_left(deadline) == 0)
            return dpr_err_set(&s->err, -ETIMEDOUT, "operation %" PRIu64
                               " not committed in time", seq);
        sleep_ms(COMMIT_POLL_MS);
    }
}

int dpr_client_session_rollback(dpr_client_session *s, int timeout_ms,
                                dpr_rollback_result *res)
{
    int r;
    dpr_cut cut;
    dpr_depset prefix = DPR_DEPSET_INIT;
    uint64_t deadline = dpr_deadline_ms(timeout_ms);

    dpr_cut_init(&cut);
    memset(res, 0, sizeof(*res));
    if (s->inflight) {
        r = dpr_err_set(&s->err, -EBUSY, "batches in flight: receive them first");
        goto out;
    }
    /* wait for the finder's world-line to move past the session's */
    for (;;) {
        r = client_sync(s->c, &cut, &s->err);
        if (r == 0 && cut.world_line > s->sess.world_line)
            break;
        if (dpr_ms_left(deadline) == 0) {
            if (r == 0)
                r = dpr_err_set(&s->err, -ETIMEDOUT, "world-line %" PRIu64 " did not end in"
                                " time (no shard restarted?)", s->sess.world_line);
            goto out; /* a failed sync left its message in s->err */
        }
        sleep_ms(ROLLBACK_POLL_MS);
    }
    r = client_prefix(s->c, s->sess.world_line, &prefix, &s->err);
    if (r < 0)
        goto out;
    r = dpr_session_rollback(&s->sess, cut.world_line, &prefix, res);
    if (r < 0)
        goto out;
    s->abandoned = 0;
    s->newer_world_line = 0;
    /* reconnect what broke; the shard that restarted may still be loading
     * (a shard still down is retried by the next send) */
    uint64_t rdeadline = dpr_deadline_ms(s->c->io_ms);
    if (rdeadline > deadline)
        rdeadline = deadline;
    for (uint32_t k = 0; k < s->nshards; k++) {
        uint64_t since = dpr_mono_ms();
        if (!s->sh[k])
            continue;
        while (ensure_connected(s, k) < 0 && dpr_ms_left(rdeadline) != 0) {
            /* gone for a second: it may have moved (a newer layout) */
            if (dpr_mono_ms() - since >= REFRESH_AFTER_MS) {
                if (refresh_layout(s, true) > 0)
                    goto reconnected; /* new connections open at the next send */
                since = dpr_mono_ms();
            }
            sleep_ms(ROLLBACK_POLL_MS);
        }
    }
reconnected:
    r = 0;
out:
    dpr_depset_free(&prefix);
    dpr_cut_free(&cut);
    return r;
}
