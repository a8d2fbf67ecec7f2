/*
 * test_client.c - the C client API (dpr/client.h) against fake servers.
 *
 * No real processes: a fake finder and fake shards run on threads of this
 * process, on loopback ports chosen by the kernel. They speak just enough
 * RESP: the finder answers DPR.SYNC <domain> and DPR.PREFIX <domain> <wl>
 * from a state the test sets, for its one domain (others are "unknown
 * domain"); a shard answers INFO (dpr_worker_id, dpr_domain when set) and
 * executes DPR.BATCH framed batches (SET/GET on a tiny table) in the
 * version the test sets, refuses batches of an older world-line and of
 * another domain, and can be told to hold its answers, to drop connections,
 * to answer an error or garbage. The fake finder is an agent too: it answers
 * DPR.CLUSTER.ENDPOINTS <deployment> as the test sets it (clients from
 * agents, a shard that moves). The real dpr-kv is exercised by
 * tests/libdpr/test_client.py, real agents by tests/libdpr/test_client_cluster.py.
 *
 * Nothing here depends on timing: waits are for events, timeouts only keep
 * a broken test from hanging.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "check.h"
#include "common/clock.h"
#include "dpr/client.h"
#include "dpr/domain.h"
#include "dpr/route.h"
#include "dpr/wire.h"

/* ======================================================================
 * Fake servers
 * ====================================================================== */

enum fake_kind { FAKE_FINDER, FAKE_SHARD };
enum shard_mode { MODE_NORMAL, MODE_CLOSE, MODE_ERROR, MODE_GARBAGE, MODE_MOVED_ONCE };

#define MAX_CONNS 16
#define MAX_KEYS 64
#define MAX_PREFIX 8

typedef struct fake_conn {
    int fd;
    redisReader *reader;
    char *out;
    size_t olen, ocap;
    /* a DPR batch being collected */
    bool in_batch;
    uint8_t hdr[1024];
    size_t hdr_len;
    uint32_t want, have;
    redisReply *ops[64];
    bool greeted; /* its INFO was answered: `hold` holds what follows */
} fake_conn;

typedef struct fake {
    enum fake_kind kind;
    pthread_t tid;
    pthread_mutex_t lock;
    int lfd, wake[2];
    uint16_t port;
    fake_conn conns[MAX_CONNS];
    /* control (under lock) */
    bool stop, drop_conns, hold;
    /* finder: its domain; shard: the domain its INFO tells ("": none) and
     * whose batches it runs */
    char domain[DPR_DOMAIN_MAX + 1];
    unsigned finder_cmds, bad_domain; /* finder commands; with a wrong domain */
    bool info_domain;                 /* shard: INFO tells dpr_domain */
    /* finder */
    uint64_t world_line, max_version;
    uint64_t cut[8][2];
    size_t ncut;
    /* agent: DPR.CLUSTER.ENDPOINTS of ep_deployment ("" addr: nil) */
    char ep_deployment[32];
    uint64_t ep_epoch;
    size_t ep_n;
    char ep_addr[4][32];
    uint64_t ep_worker[4];
    unsigned ep_asked;
    uint64_t prefix_wl[MAX_PREFIX];
    uint64_t prefix[MAX_PREFIX][8][2];
    size_t nprefix_entries[MAX_PREFIX], nprefix;
    unsigned syncs;
    /* shard */
    uint64_t worker, version;
    enum shard_mode mode;
    bool no_worker_id;
    char run_id[16]; /* INFO tells dpr_run_id (its "process") when set */
    unsigned batches, accepted;
    dpr_request_hdr last;
    uint64_t last_deps[8][2];
    char keys[MAX_KEYS][32], vals[MAX_KEYS][32];
    size_t nkeys;
} fake;

static void out_put(fake_conn *c, const void *p, size_t n)
{
    if (c->olen + n > c->ocap) {
        size_t cap = c->ocap ? c->ocap * 2 : 4096;
        while (cap < c->olen + n)
            cap *= 2;
        c->out = realloc(c->out, cap);
        if (!c->out)
            abort();
        c->ocap = cap;
    }
    memcpy(c->out + c->olen, p, n);
    c->olen += n;
}

static void out_fmt(fake_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(fake_conn *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    out_put(c, buf, (size_t)n);
}

static void out_bulk(fake_conn *c, const void *p, size_t n)
{
    out_fmt(c, "$%zu\r\n", n);
    out_put(c, p, n);
    out_put(c, "\r\n", 2);
}

static void conn_close(fake_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->reader)
        redisReaderFree(c->reader);
    c->reader = NULL;
    for (uint32_t i = 0; i < c->have; i++)
        freeReplyObject(c->ops[i]);
    c->in_batch = false;
    c->greeted = false;
    c->have = c->want = 0;
    c->olen = 0;
}

static bool arg_is(const redisReply *r, size_t i, const char *s)
{
    return i < r->elements && r->element[i]->type == REDIS_REPLY_STRING &&
           strcasecmp(r->element[i]->str, s) == 0;
}

/* ---- finder ---------------------------------------------------------------- */

static void agent_endpoints(fake *f, fake_conn *c, const redisReply *req)
{
    f->ep_asked++;
    if (req->elements != 2 || strcmp(req->element[1]->str, f->ep_deployment) != 0) {
        out_fmt(c, "-ERR no deployment '%s' in the cluster's spec\r\n",
                req->elements == 2 ? req->element[1]->str : "?");
        return;
    }
    out_fmt(c, "*3\r\n:%llu\r\n*%zu\r\n", (unsigned long long)f->ep_epoch, f->ep_n);
    for (size_t i = 0; i < f->ep_n; i++) {
        if (f->ep_addr[i][0])
            out_bulk(c, f->ep_addr[i], strlen(f->ep_addr[i]));
        else
            out_fmt(c, "$-1\r\n");
    }
    out_fmt(c, "*%zu\r\n", f->ep_n);
    for (size_t i = 0; i < f->ep_n; i++)
        out_fmt(c, ":%llu\r\n", (unsigned long long)f->ep_worker[i]);
}

static void finder_request(fake *f, fake_conn *c, const redisReply *req)
{
    if (arg_is(req, 0, "DPR.CLUSTER.ENDPOINTS")) {
        agent_endpoints(f, c, req);
        return;
    }
    if (arg_is(req, 0, "DPR.SYNC") || arg_is(req, 0, "DPR.PREFIX")) {
        /* the domain is always the first argument */
        f->finder_cmds++;
        if (req->elements < 2 || req->element[1]->type != REDIS_REPLY_STRING) {
            f->bad_domain++;
            out_fmt(c, "-ERR wrong number of arguments for '%s'\r\n", req->element[0]->str);
            return;
        }
        if (strcmp(req->element[1]->str, f->domain) != 0) {
            f->bad_domain++;
            out_fmt(c, "-ERR unknown domain '%s'\r\n", req->element[1]->str);
            return;
        }
    }
    if (arg_is(req, 0, "DPR.SYNC") && req->elements == 2) {
        f->syncs++;
        out_fmt(c, "*3\r\n:%llu\r\n:%llu\r\n*%zu\r\n", (unsigned long long)f->world_line,
                (unsigned long long)f->max_version, 2 * f->ncut);
        for (size_t i = 0; i < f->ncut; i++)
            out_fmt(c, ":%llu\r\n:%llu\r\n", (unsigned long long)f->cut[i][0],
                    (unsigned long long)f->cut[i][1]);
    } else if (arg_is(req, 0, "DPR.PREFIX") && req->elements == 3) {
        uint64_t wl = strtoull(req->element[2]->str, NULL, 10);
        for (size_t p = 0; p < f->nprefix; p++) {
            if (f->prefix_wl[p] != wl)
                continue;
            out_fmt(c, "*%zu\r\n", 2 * f->nprefix_entries[p]);
            for (size_t i = 0; i < f->nprefix_entries[p]; i++)
                out_fmt(c, ":%llu\r\n:%llu\r\n", (unsigned long long)f->prefix[p][i][0],
                        (unsigned long long)f->prefix[p][i][1]);
            return;
        }
        out_fmt(c, "-ERR world-line %llu has not ended\r\n", (unsigned long long)wl);
    } else {
        out_fmt(c, "-ERR unknown command\r\n");
    }
}

/* ---- shard ----------------------------------------------------------------- */

static const char *kv_get(fake *f, const char *k)
{
    for (size_t i = 0; i < f->nkeys; i++)
        if (!strcmp(f->keys[i], k))
            return f->vals[i];
    return NULL;
}

static void kv_set(fake *f, const char *k, const char *v)
{
    size_t i = 0;
    while (i < f->nkeys && strcmp(f->keys[i], k))
        i++;
    if (i == MAX_KEYS)
        return;
    if (i == f->nkeys)
        f->nkeys++;
    snprintf(f->keys[i], sizeof(f->keys[i]), "%s", k);
    snprintf(f->vals[i], sizeof(f->vals[i]), "%s", v);
}

/* Runs or refuses the collected batch; false: the connection was closed. */
static bool shard_run_batch(fake *f, fake_conn *c)
{
    dpr_request_hdr h;
    uint8_t buf[64];
    bool keep = true;
    if (dpr_wire_decode_request(c->hdr, c->hdr_len, &h, NULL) < 0)
        abort();
    f->batches++;
    f->last = h;
    f->last.deps = NULL;
    for (uint32_t i = 0; i < h.dep_count && i < 8; i++)
        dpr_wire_request_dep(&h, i, &f->last_deps[i][0], &f->last_deps[i][1]);
    if (f->mode == MODE_CLOSE) {
        keep = false;
        goto out;
    }
    if (f->mode == MODE_ERROR) {
        out_fmt(c, "-ERR DPR.BATCH not executed: test\r\n");
        goto out;
    }
    if (f->mode == MODE_GARBAGE) {
        out_fmt(c, "*2\r\n$3\r\nabc\r\n*0\r\n");
        goto out;
    }
    if (f->mode == MODE_MOVED_ONCE) { /* this batch only: a layout said no */
        f->mode = MODE_NORMAL;
        out_fmt(c, "-MOVED 1 127.0.0.1:1 2\r\n");
        goto out;
    }
    if (h.domain != dpr_domain_id(f->domain, strlen(f->domain))) {
        out_fmt(c, "-ERR DPR.BATCH refused: domain %llu: not this worker's\r\n",
                (unsigned long long)h.domain);
        goto out;
    }
    dpr_response_hdr r = {.batch_id = h.batch_id, .op_count = h.op_count};
    if (h.world_line < f->world_line) {
        r.status = DPR_WIRE_REFUSED;
        r.world_line = f->world_line;
        ssize_t n = dpr_wire_encode_response(&r, buf, sizeof(buf));
        out_fmt(c, "*2\r\n");
        out_bulk(c, buf, (size_t)n);
        out_fmt(c, "*0\r\n");
        goto out;
    }
    uint64_t v = f->version;
    r.status = DPR_WIRE_EXECUTED;
    r.world_line = h.world_line;
    r.version_count = 1;
    r.versions_in = &v;
    ssize_t n = dpr_wire_encode_response(&r, buf, sizeof(buf));
    out_fmt(c, "*2\r\n");
    out_bulk(c, buf, (size_t)n);
    out_fmt(c, "*%u\r\n", h.op_count);
    for (uint32_t i = 0; i < c->have; i++) {
        redisReply *op = c->ops[i];
        if (arg_is(op, 0, "SET") && op->elements == 3) {
            kv_set(f, op->element[1]->str, op->element[2]->str);
            out_fmt(c, "+OK\r\n");
        } else if (arg_is(op, 0, "GET") && op->elements == 2) {
            const char *val = kv_get(f, op->element[1]->str);
            if (val)
                out_bulk(c, val, strlen(val));
            else
                out_fmt(c, "$-1\r\n");
        } else {
            out_fmt(c, "-ERR unknown command\r\n");
        }
    }
out:
    for (uint32_t i = 0; i < c->have; i++)
        freeReplyObject(c->ops[i]);
    c->have = c->want = 0;
    c->in_batch = false;
    return keep;
}

static bool shard_request(fake *f, fake_conn *c, redisReply *req)
{
    if (c->in_batch) {
        if (c->have < 64)
            c->ops[c->have++] = req;
        else
            freeReplyObject(req);
        if (c->have == c->want)
            return shard_run_batch(f, c);
        return true;
    }
    if (arg_is(req, 0, "INFO")) {
        char info[256];
        int n = f->no_worker_id ? snprintf(info, sizeof(info), "# Server\r\nredis_version:7\r\n")
                                : snprintf(info, sizeof(info), "# DPR\r\ndpr_worker_id:%llu\r\n"
                                           "dpr_version:%llu\r\n", (unsigned long long)f->worker,
                                           (unsigned long long)f->version);
        if (!f->no_worker_id && f->info_domain)
            n += snprintf(info + n, sizeof(info) - (size_t)n, "dpr_domain:%s\r\n", f->domain);
        if (!f->no_worker_id && f->run_id[0])
            n += snprintf(info + n, sizeof(info) - (size_t)n, "dpr_run_id:%s\r\n"
                          "dpr_world_line:%llu\r\n", f->run_id,
                          (unsigned long long)f->world_line);
        out_bulk(c, info, (size_t)n);
        c->greeted = true;
    } else if (arg_is(req, 0, "DPR.BATCH") && req->elements == 2 &&
               req->element[1]->len <= sizeof(c->hdr)) {
        dpr_request_hdr h;
        memcpy(c->hdr, req->element[1]->str, req->element[1]->len);
        c->hdr_len = req->element[1]->len;
        if (dpr_wire_decode_request(c->hdr, c->hdr_len, &h, NULL) < 0 || h.op_count > 64) {
            out_fmt(c, "-ERR bad header\r\n");
        } else {
            c->in_batch = true;
            c->want = h.op_count;
            c->have = 0;
        }
    } else {
        out_fmt(c, "-ERR unknown command\r\n");
    }
    freeReplyObject(req);
    return true;
}

/* ---- the server loop --------------------------------------------------------- */

static void conn_input(fake *f, fake_conn *c)
{
    char buf[65536];
    /* held, or to be dropped, since the poll began: the loop's next round
     * leaves it out, or closes it */
    if ((f->hold && c->greeted) || f->drop_conns)
        return;
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n <= 0) {
        conn_close(c);
        return;
    }
    redisReaderFeed(c->reader, buf, (size_t)n);
    for (;;) {
        void *req = NULL;
        if (redisReaderGetReply(c->reader, &req) != REDIS_OK) {
            conn_close(c);
            return;
        }
        if (!req)
            break;
        if (f->kind == FAKE_FINDER) {
            finder_request(f, c, req);
            freeReplyObject(req);
        } else if (!shard_request(f, c, req)) {
            conn_close(c);
            return;
        }
    }
    size_t off = 0;
    while (off < c->olen) {
        ssize_t w = write(c->fd, c->out + off, c->olen - off);
        if (w <= 0) {
            conn_close(c);
            return;
        }
        off += (size_t)w;
    }
    c->olen = 0;
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    struct pollfd p[MAX_CONNS + 2];
    int idx[MAX_CONNS + 2];
    for (;;) {
        pthread_mutex_lock(&f->lock);
        bool stop = f->stop, hold = f->hold, drop = f->drop_conns;
        f->drop_conns = false;
        pthread_mutex_unlock(&f->lock);
        if (drop)
            for (int i = 0; i < MAX_CONNS; i++)
                conn_close(&f->conns[i]);
        if (stop)
            break;
        size_t n = 0;
        p[n].fd = f->wake[0];
        p[n].events = POLLIN;
        idx[n++] = -1;
        p[n].fd = f->lfd;
        p[n].events = POLLIN;
        idx[n++] = -2;
        for (int i = 0; i < MAX_CONNS; i++) {
            /* a new connection's INFO is answered (the client asks it
             * while connecting) */
            if (f->conns[i].fd < 0 || (hold && f->conns[i].greeted))
                continue;
            p[n].fd = f->conns[i].fd;
            p[n].events = POLLIN;
            idx[n++] = i;
        }
        if (poll(p, n, -1) < 0)
            continue;
        for (size_t k = 0; k < n; k++) {
            if (!p[k].revents)
                continue;
            if (idx[k] == -1) {
                char b[64];
                (void)!read(f->wake[0], b, sizeof(b));
            } else if (idx[k] == -2) {
                int fd = accept(f->lfd, NULL, NULL);
                if (fd < 0)
                    continue;
                int i = 0;
                while (i < MAX_CONNS && f->conns[i].fd >= 0)
                    i++;
                if (i == MAX_CONNS) {
                    close(fd);
                    continue;
                }
                f->conns[i].fd = fd;
                f->conns[i].reader = redisReaderCreate();
                pthread_mutex_lock(&f->lock);
                f->accepted++;
                pthread_mutex_unlock(&f->lock);
            } else {
                pthread_mutex_lock(&f->lock);
                conn_input(f, &f->conns[idx[k]]);
                pthread_mutex_unlock(&f->lock);
            }
        }
    }
    for (int i = 0; i < MAX_CONNS; i++)
        conn_close(&f->conns[i]);
    return NULL;
}

static void fake_wake(fake *f)
{
    (void)!write(f->wake[1], "x", 1);
}

static fake *fake_start(enum fake_kind kind, uint64_t worker)
{
    fake *f = calloc(1, sizeof(*f));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (!f)
        abort();
    f->kind = kind;
    f->worker = worker;
    f->world_line = 1;
    f->version = 1;
    snprintf(f->domain, sizeof(f->domain), "%s", DPR_DOMAIN_DEFAULT);
    f->info_domain = true;
    for (int i = 0; i < MAX_CONNS; i++)
        f->conns[i].fd = -1;
    pthread_mutex_init(&f->lock, NULL);
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(f->lfd, 16) < 0 || getsockname(f->lfd, (struct sockaddr *)&a, &alen) < 0 ||
        pipe(f->wake) < 0)
        abort();
    f->port = ntohs(a.sin_port);
    if (pthread_create(&f->tid, NULL, fake_main, f) != 0)
        abort();
    return f;
}

static void fake_stop(fake *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    f->stop = true;
    pthread_mutex_unlock(&f->lock);
    fake_wake(f);
    pthread_join(f->tid, NULL);
    for (int i = 0; i < MAX_CONNS; i++)
        free(f->conns[i].out);
    close(f->lfd);
    close(f->wake[0]);
    close(f->wake[1]);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

#define WITH_LOCK(f, stmt)                                                   \
    do {                                                                     \
        pthread_mutex_lock(&(f)->lock);                                      \
        stmt;                                                                \
        pthread_mutex_unlock(&(f)->lock);                                    \
        fake_wake(f);                                                        \
    } while (0)

static void finder_set_cut(fake *f, uint64_t w, uint64_t v)
{
    pthread_mutex_lock(&f->lock);
    size_t i = 0;
    while (i < f->ncut && f->cut[i][0] != w)
        i++;
    if (i == f->ncut)
        f->ncut++;
    f->cut[i][0] = w;
    f->cut[i][1] = v;
    if (v > f->max_version)
        f->max_version = v;
    pthread_mutex_unlock(&f->lock);
}

/* The cluster leaves world-line wl for wl + 1 with prefix {w0: v0, w1: v1}. */
static void finder_bump(fake *f, uint64_t w0, uint64_t v0, uint64_t w1, uint64_t v1)
{
    pthread_mutex_lock(&f->lock);
    size_t p = f->nprefix++;
    f->prefix_wl[p] = f->world_line;
    f->prefix[p][0][0] = w0;
    f->prefix[p][0][1] = v0;
    f->prefix[p][1][0] = w1;
    f->prefix[p][1][1] = v1;
    f->nprefix_entries[p] = 2;
    f->world_line++;
    f->ncut = 0;
    pthread_mutex_unlock(&f->lock);
}

/* Waits until the fake has closed every connection (after drop_conns). */
static void wait_no_conns(fake *f)
{
    for (int i = 0; i < 5000; i++) {
        bool open = false;
        pthread_mutex_lock(&f->lock);
        for (int k = 0; k < MAX_CONNS; k++)
            open |= f->conns[k].fd >= 0;
        pthread_mutex_unlock(&f->lock);
        if (!open)
            return;
        usleep(1000);
    }
}

/* Waits until the fake has accepted n connections in all. */
static unsigned wait_accepted(fake *f, unsigned n)
{
    unsigned got = 0;
    for (int i = 0; i < 5000; i++) {
        pthread_mutex_lock(&f->lock);
        got = f->accepted;
        pthread_mutex_unlock(&f->lock);
        if (got >= n)
            break;
        usleep(1000);
    }
    return got;
}

/* ======================================================================
 * Fixture: a finder, two shards (workers 101, 202), a client
 * ====================================================================== */

typedef struct fixture {
    fake *finder, *sh[2];
    dpr_client *c;
} fixture;

/* A client of the fixture's shards in `domain` (NULL: the default); err (if
 * not NULL) gets the failure. */
static int make_client_in(fixture *fx, unsigned depth, bool give_workers, const char *domain,
                          dpr_client **out, dpr_err *err)
{
    dpr_endpoint eps[2];
    dpr_err e;
    for (int i = 0; i < 2; i++)
        eps[i] = (dpr_endpoint){"127.0.0.1", fx->sh[i]->port, give_workers,
                                give_workers ? fx->sh[i]->worker : 0};
    dpr_client_config cfg = {.shards = eps, .nshards = 2,
                             .finder = {"127.0.0.1", fx->finder->port, false, 0},
                             .io_timeout_ms = 5000, .pipeline_depth = depth, .domain = domain};
    int r = dpr_client_new(&cfg, out, err ? err : &e);
    if (r < 0 && !err)
        fprintf(stderr, "  dpr_client_new: %s\n", e.msg);
    return r;
}

static int make_client(fixture *fx, unsigned depth, bool give_workers, dpr_client **out)
{
    return make_client_in(fx, depth, give_workers, NULL, out, NULL);
}

/* Every fake of the fixture in `domain`. */
static void fx_set_domain(fixture *fx, const char *domain)
{
    fake *all[3] = {fx->finder, fx->sh[0], fx->sh[1]};
    for (int i = 0; i < 3; i++)
        WITH_LOCK(all[i], snprintf(all[i]->domain, sizeof(all[i]->domain), "%s", domain));
}

static void fx_start(fixture *fx, unsigned depth)
{
    fx->finder = fake_start(FAKE_FINDER, 0);
    fx->sh[0] = fake_start(FAKE_SHARD, 101);
    fx->sh[1] = fake_start(FAKE_SHARD, 202);
    fx->c = NULL;
    if (make_client(fx, depth, false, &fx->c) < 0)
        fx->c = NULL;
}

static void fx_stop(fixture *fx)
{
    dpr_client_free(fx->c);
    fake_stop(fx->sh[0]);
    fake_stop(fx->sh[1]);
    fake_stop(fx->finder);
}

/* A key that routes to shard k of 2. */
static const char *key_on(unsigned k)
{
    static char buf[2][32];
    for (int i = 0;; i++) {
        snprintf(buf[k], sizeof(buf[k]), "key%d", i);
        if (dpr_route_shard(buf[k], strlen(buf[k]), 2) == k)
            return buf[k];
    }
}

static int exec_set(dpr_client_session *s, const char *key, const char *val, uint64_t *seq)
{
    const char *argv[3] = {"SET", key, val};
    dpr_op op = {3, argv, NULL};
    redisReply *reply = NULL;
    int r = dpr_client_session_exec(s, &op, &reply, seq);
    if (reply)
        freeReplyObject(reply);
    return r;
}

/* ======================================================================
 * Tests
 * ====================================================================== */

TEST(endpoint_parse)
{
    dpr_endpoint ep;
    char host[64];
    CHECK_EQ_INT(dpr_endpoint_parse("127.0.0.1:7001", &ep, host, sizeof(host)), 0);
    CHECK(!strcmp(ep.host, "127.0.0.1") && ep.port == 7001 && !ep.has_worker);
    CHECK_EQ_INT(dpr_endpoint_parse("localhost:1@42", &ep, host, sizeof(host)), 0);
    CHECK(!strcmp(ep.host, "localhost") && ep.port == 1 && ep.has_worker && ep.worker == 42);
    CHECK_EQ_INT(dpr_endpoint_parse("[::1]:65535", &ep, host, sizeof(host)), 0);
    CHECK(!strcmp(ep.host, "::1") && ep.port == 65535);
    CHECK_EQ_INT(dpr_endpoint_parse("h:18446744073709551615@18446744073709551615", &ep, host,
                                    sizeof(host)), -EINVAL); /* port too big */
    CHECK_EQ_INT(dpr_endpoint_parse("h:5@18446744073709551615", &ep, host, sizeof(host)), 0);
    CHECK_EQ_U64(ep.worker, UINT64_MAX);
    CHECK_EQ_INT(dpr_endpoint_parse("[fe80::1]:7001@5", &ep, host, sizeof(host)), 0);
    CHECK(!strcmp(ep.host, "fe80::1") && ep.port == 7001 && ep.has_worker && ep.worker == 5);
    const char *bad[] = {"", "host", ":7001", "h:", "h:0", "h:65536", "h:7x", "h:-1",
                         "[::1]7001", "[::1", "h:1@", "h:1@x", "h:1@-3", "::1:7001",
                         "*:7001", "h:07001", "h:1@07", "[]:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(dpr_endpoint_parse(bad[i], &ep, host, sizeof(host)), -EINVAL);
    CHECK_EQ_INT(dpr_endpoint_parse("averyveryverylonghostname:1", &ep, host, 8),
                 -ENAMETOOLONG);
}

TEST(client_learns_workers_and_routes)
{
    fixture fx;
    fx_start(&fx, 0);
    CHECK(fx.c != NULL);
    if (!fx.c)
        goto out;
    CHECK_EQ_U64(dpr_client_nshards(fx.c), 2);
    CHECK_EQ_U64(dpr_client_worker(fx.c, 0), 101);
    CHECK_EQ_U64(dpr_client_worker(fx.c, 1), 202);
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        CHECK_EQ_U64(dpr_client_route(fx.c, k, strlen(k)), dpr_route_shard(k, strlen(k), 2));
        const char *argv[2] = {"GET", k};
        dpr_op op = {2, argv, NULL};
        CHECK_EQ_U64(dpr_client_route_op(fx.c, &op), dpr_route_shard(k, strlen(k), 2));
    }
    const char *ping[1] = {"PING"};
    dpr_op op = {1, ping, NULL};
    CHECK_EQ_U64(dpr_client_route_op(fx.c, &op), 0);
out:
    fx_stop(&fx);
}

TEST(client_config_errors)
{
    fixture fx;
    dpr_client *c = NULL;
    dpr_err err;
    fx_start(&fx, 0);
    /* two shards with one worker id */
    WITH_LOCK(fx.sh[1], fx.sh[1]->worker = 101);
    CHECK_EQ_INT(make_client(&fx, 0, false, &c), -EINVAL);
    CHECK(c == NULL);
    /* a shard without dpr_worker_id */
    WITH_LOCK(fx.sh[1], fx.sh[1]->no_worker_id = true);
    CHECK_EQ_INT(make_client(&fx, 0, false, &c), -EPROTO);
    /* worker ids given: INFO is not asked */
    WITH_LOCK(fx.sh[1], fx.sh[1]->worker = 202);
    CHECK_EQ_INT(make_client(&fx, 0, true, &c), 0);
    CHECK(c != NULL);
    dpr_client_free(c);
    /* bad configurations */
    dpr_client_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    CHECK_EQ_INT(dpr_client_new(&cfg, &c, &err), -EINVAL);
    CHECK_EQ_INT(err.code, -EINVAL);
    CHECK(strstr(err.msg, "shards") != NULL);
    CHECK_EQ_INT(dpr_client_new(NULL, &c, NULL), -EINVAL);
    dpr_endpoint ep = {"127.0.0.1", fx.sh[0]->port, true, 1};
    cfg.shards = &ep;
    cfg.nshards = 1;
    CHECK_EQ_INT(dpr_client_new(&cfg, &c, &err), -EINVAL); /* no finder */
    CHECK(strstr(err.msg, "finder") != NULL);
    /* a finder that is not there */
    cfg.finder = (dpr_endpoint){"127.0.0.1", 1, false, 0};
    cfg.connect_timeout_ms = 500;
    int r = dpr_client_new(&cfg, &c, &err);
    CHECK(r < 0);
    CHECK_EQ_INT(err.code, r);
    CHECK(c == NULL);
    CHECK(strstr(err.msg, "finder 127.0.0.1:1: ") == err.msg);
    fx_stop(&fx);
}

/* The default domain: the finder commands name "default" and every batch
 * header carries its id. */
TEST(default_domain)
{
    fixture fx;
    dpr_client_session *s = NULL;
    uint64_t seq = 0, cp = 0;
    const uint64_t id = dpr_domain_id("default", 7);
    fx_start(&fx, 0);
    if (!fx.c || dpr_client_session_open(fx.c, 0, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    CHECK(strcmp(dpr_client_domain(fx.c), "default") == 0);
    CHECK_EQ_U64(dpr_client_session_state(s)->domain, id);
    CHECK_EQ_INT(exec_set(s, key_on(0), "a", &seq), 0);
    CHECK_EQ_INT(exec_set(s, key_on(1), "b", &seq), 0);
    CHECK_EQ_INT(dpr_client_session_commit_point(s, &cp), 0);
    for (int k = 0; k < 2; k++) {
        pthread_mutex_lock(&fx.sh[k]->lock);
        CHECK_EQ_U64(fx.sh[k]->batches, 1);
        CHECK_EQ_U64(fx.sh[k]->last.domain, id);
        pthread_mutex_unlock(&fx.sh[k]->lock);
    }
    pthread_mutex_lock(&fx.finder->lock);
    CHECK(fx.finder->finder_cmds >= 3); /* new, open, commit point */
    CHECK_EQ_U64(fx.finder->bad_domain, 0);
    pthread_mutex_unlock(&fx.finder->lock);
out:
    dpr_client_session_close(s);
    fx_stop(&fx);
}

/* A named domain end to end: a finder and shards of domain "orders.eu-1";
 * a client of that domain works (sync, batches, rollback through DPR.PREFIX
 * <domain> <wl>), one of another domain is told why it cannot. */
TEST(named_domain)
{
    fixture fx;
    dpr_client *c = NULL;
    dpr_client_session *s = NULL;
    dpr_err err;
    uint64_t seq = 0;
    dpr_rollback_result rb;
    const char *name = "orders.eu-1";
    const uint64_t id = dpr_domain_id(name, strlen(name));
    memset(&rb, 0, sizeof(rb));
    fx_start(&fx, 0); /* its default-domain client is not used */
    fx_set_domain(&fx, name);
    CHECK_EQ_INT(make_client_in(&fx, 0, false, name, &c, NULL), 0);
    if (!c || dpr_client_session_open(c, 0, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    CHECK(strcmp(dpr_client_domain(c), name) == 0);
    WITH_LOCK(fx.sh[0], fx.sh[0]->version = 3);
    CHECK_EQ_INT(exec_set(s, key_on(0), "1", &seq), 0);
    CHECK_EQ_INT(exec_set(s, key_on(0), "2", &seq), 0);
    pthread_mutex_lock(&fx.sh[0]->lock);
    CHECK_EQ_U64(fx.sh[0]->last.domain, id);
    pthread_mutex_unlock(&fx.sh[0]->lock);
    /* a rollback asks DPR.PREFIX of this domain */
    finder_bump(fx.finder, 101, 3, 202, 0);
    WITH_LOCK(fx.sh[0], fx.sh[0]->world_line = 2);
    CHECK_EQ_INT(exec_set(s, key_on(0), "3", &seq), -ESTALE);
    CHECK_EQ_INT(dpr_client_session_rollback(s, 5000, &rb), 0);
    CHECK_EQ_U64(rb.lost_from, 3);
    CHECK_EQ_U64(dpr_client_session_state(s)->world_line, 2);
    pthread_mutex_lock(&fx.finder->lock);
    CHECK_EQ_U64(fx.finder->bad_domain, 0);
    pthread_mutex_unlock(&fx.finder->lock);

    /* a client of the default domain: the shards say they are not its own */
    dpr_client *other = NULL;
    CHECK_EQ_INT(make_client_in(&fx, 0, false, NULL, &other, &err), -EXDEV);
    CHECK(other == NULL);
    CHECK(strstr(err.msg, "belongs to DPR domain 'orders.eu-1', not to the client's domain "
                          "'default'") != NULL);
    /* worker ids given (no INFO): the finder does not know the domain */
    CHECK_EQ_INT(make_client_in(&fx, 0, true, "default", &other, &err), -EREMOTEIO);
    CHECK(other == NULL);
    CHECK(strstr(err.msg, "unknown domain 'default'") != NULL);
    /* shards that do not tell their domain (older dpr-kv) are taken at
     * their word; the finder still has the last say, and the shards refuse
     * the batches of another domain */
    WITH_LOCK(fx.sh[0], fx.sh[0]->info_domain = false);
    WITH_LOCK(fx.sh[1], fx.sh[1]->info_domain = false);
    WITH_LOCK(fx.finder, snprintf(fx.finder->domain, sizeof(fx.finder->domain), "blue"));
    CHECK_EQ_INT(make_client_in(&fx, 0, false, "blue", &other, &err), 0);
    dpr_client_session *os = NULL;
    if (other && dpr_client_session_open(other, 0, &os) == 0) {
        CHECK_EQ_INT(exec_set(os, key_on(1), "x", &seq), -EREMOTEIO);
        CHECK(strstr(dpr_client_session_errstr(os), "DPR.BATCH refused: domain") != NULL);
    } else {
        CHECK(!"blue session");
    }
    dpr_client_session_close(os);
    dpr_client_free(other);
out:
    free(rb.survived_above);
    dpr_client_session_close(s);
    dpr_client_free(c);
    fx_stop(&fx);
}

/* dpr_client_new refuses a domain name that is not one, saying why, before
 * any connection. */
TEST(invalid_domain_names)
{
    fixture fx;
    dpr_client *c = NULL;
    dpr_err err;
    char longest[DPR_DOMAIN_MAX + 2];
    const char *bad[] = {"", "Default", "-x", ".x", "_x", "a b", "a/b", "dom\xc3\xa9",
                         "a\nb", NULL};
    fx_start(&fx, 0);
    pthread_mutex_lock(&fx.finder->lock);
    unsigned before = fx.finder->accepted;
    pthread_mutex_unlock(&fx.finder->lock);
    memset(longest, 'a', sizeof(longest));
    longest[DPR_DOMAIN_MAX + 1] = '\0'; /* 64 characters: one too many */
    bad[sizeof(bad) / sizeof(bad[0]) - 1] = longest;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(make_client_in(&fx, 0, true, bad[i], &c, &err), -EINVAL);
        CHECK(c == NULL);
        CHECK_EQ_INT(err.code, -EINVAL);
        CHECK(strncmp(err.msg, "invalid domain name '", 21) == 0);
        CHECK(strstr(err.msg, "expected 1 to 63 characters a-z, 0-9, '.', '_' or '-', "
                              "starting with a letter or a digit") != NULL);
    }
    /* the last one: a 64-character name, shown cut at 63 */
    char shown[DPR_DOMAIN_MAX + 8];
    snprintf(shown, sizeof(shown), "'%.*s...'", DPR_DOMAIN_MAX, longest);
    CHECK(strstr(err.msg, shown) != NULL);
    pthread_mutex_lock(&fx.finder->lock);
    CHECK_EQ_U64(fx.finder->accepted, before); /* nothing connected */
    pthread_mutex_unlock(&fx.finder->lock);
    /* the longest valid name, and names with every allowed character */
    longest[DPR_DOMAIN_MAX] = '\0';
    const char *good[] = {longest, "0", "a-b_c.d", "9lives"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        WITH_LOCK(fx.finder, snprintf(fx.finder->domain, sizeof(fx.finder->domain), "%s",
                                      good[i]));
        CHECK_EQ_INT(make_client_in(&fx, 0, true, good[i], &c, &err), 0);
        if (c)
            CHECK(strcmp(dpr_client_domain(c), good[i]) == 0);
        dpr_client_free(c);
        c = NULL;
    }
    fx_stop(&fx);
}

TEST(exec_and_commit)
{
    fixture fx;
    dpr_client_session *s = NULL;
    uint64_t seq1 = 0, seq2 = 0, cp = 99;
    fx_start(&fx, 0);
    if (!fx.c || dpr_client_session_open(fx.c, 0, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    CHECK_EQ_U64(dpr_client_session_state(s)->world_line, 1);
    WITH_LOCK(fx.sh[0], fx.sh[0]->version = 3);
    WITH_LOCK(fx.sh[1], fx.sh[1]->version = 7);
    CHECK_EQ_INT(exec_set(s, key_on(0), "a", &seq1), 0);
    CHECK_EQ_INT(exec_set(s, key_on(1), "b", &seq2), 0);
    CHECK_EQ_U64(seq1, 1);
    CHECK_EQ_U64(seq2, 2);
    /* GET sees the value */
    const char *argv[2] = {"GET", key_on(1)};
    dpr_op op = {2, argv, NULL};
    redisReply *reply = NULL;
    CHECK_EQ_INT(dpr_client_session_exec(s, &op, &reply, NULL), 0);
    CHECK(reply && reply->type == REDIS_REPLY_STRING && !strcmp(reply->str, "b"));
    if (reply)
        freeReplyObject(reply);
    /* the second shard saw the dependency on the first */
    pthread_mutex_lock(&fx.sh[1]->lock);
    CHECK_EQ_U64(fx.sh[1]->last.dep_count, 2);
    CHECK_EQ_U64(fx.sh[1]->last.version_lb, 7);
    pthread_mutex_unlock(&fx.sh[1]->lock);
    /* nothing committed yet; the finder lists both workers at 0 (DPR.SYNC
     * names every registered worker) */
    finder_set_cut(fx.finder, 101, 0);
    finder_set_cut(fx.finder, 202, 0);
    CHECK_EQ_INT(dpr_client_session_commit_point(s, &cp), 0);
    CHECK_EQ_U64(cp, 0);
    CHECK_EQ_INT(dpr_client_session_wait_committed(s, seq1, 20), -ETIMEDOUT);
    CHECK_EQ_INT(dpr_client_session_wait_committed(s, 4, 20), -EINVAL);
    CHECK_EQ_INT(dpr_client_session_wait_committed(s, 0, 20), -EINVAL);
    /* the cut covers shard 0 only: commit point 1 */
    finder_set_cut(fx.finder, 101, 3);
    CHECK_EQ_INT(dpr_client_session_wait_committed(s, seq1, 5000), 0);
    CHECK(dpr_client_session_is_committed(s, seq1));
    CHECK(!dpr_client_session_is_committed(s, seq2));
    CHECK_EQ_INT(dpr_client_session_commit_point(s, &cp), 0);
    CHECK_EQ_U64(cp, 1);
    /* then both */
    finder_set_cut(fx.finder, 202, 7);
    CHECK_EQ_INT(dpr_client_session_wait_committed(s, 3, 5000), 0);
    CHECK_EQ_INT(dpr_client_session_commit_point(s, &cp), 0);
    CHECK_EQ_U64(cp, 3);
    CHECK(!dpr_client_session_needs_rollback(s));
    /* committed dependencies are pruned: the next header carries none */
    CHECK_EQ_INT(exec_set(s, key_on(0), "c", NULL), 0);
    pthread_mutex_lock(&fx.sh[0]->lock);
    CHECK_EQ_U64(fx.sh[0]->last.dep_count, 0);
    pthread_mutex_unlock(&fx.sh[0]->lock);
out:
    dpr_client_session_close(s);
    fx_stop(&fx);
}

static dpr_op set_ops[8];
static const char *set_argv[8][3];

static void make_set_ops(unsigned shard)
{
    for (int i = 0; i < 8; i++) {
        set_argv[i][0] = "SET";
        set_argv[i][1] = key_on(shard);
        set_argv[i][2] = "v";
        set_ops[i] = (dpr_op){3, set_argv[i], NULL};
    }
}

TEST(pipeline_strict)
{
    fixture fx;
    dpr_client_session *s = NULL;
    uint64_t first[4], seq;
    dpr_batch_result res;
    fx_start(&fx, 3);
    if (!fx.c || dpr_client_session_open(fx.c, 0, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    make_set_ops(0);
    WITH_LOCK(fx.sh[0], fx.sh[0]->hold = true);
    CHECK_EQ_INT(dpr_client_session_send(s, 0, set_ops, 2, &first[0]), 0);
    CHECK_EQ_INT(dpr_client_session_send(s, 0, set_ops, 1, &first[1]), 0);
    CHECK_EQ_INT(dpr_client_session_send(s, 0, set_ops, 3, &first[2]), 0);
    CHECK_EQ_U64(first[0], 1);
    CHECK_EQ_U64(first[1], 3);
    CHECK_EQ_U64(first[2], 4);
    CHECK_EQ_INT(dpr_client_session_send(s, 0, set_ops, 1, &seq), -EAGAIN); /* depth 3 */
    CHECK_EQ_INT(dpr_client_session_send(s, 1, set_ops, 1, &seq), -EBUSY);  /* strict */
    CHECK_EQ_INT(dpr_client_session_send(s, 2, set_ops, 1, &seq), -EINVAL);
    CHECK_EQ_INT(dpr_client_session_send(s, 0, set_ops, 0, &seq), -EINVAL);
    CHECK_EQ_U64(dpr_client_session_inflight(s, UINT32_MAX), 3);
    CHECK_EQ_U64(dpr_client_session_inflight(s, 0), 3);
    CHECK_EQ_U64(dpr_client_session_inflight(s, 1), 0);
    struct pollfd pfd[2];
    CHECK_EQ_U64(dpr_client_session_pollfds(s, pfd, 2), 1);
    CHECK_EQ_INT(dpr_client_session_recv(s, 0, &res), -EAGAIN);
    CHECK_EQ_INT(dpr_client_session_recv(s, 30, &res), -ETIMEDOUT);
    redisReply *reply;
    const char *ping[1] = {"PING"};
    dpr_op pop = {1, ping, NULL};
    CHECK_EQ_INT(dpr_client_session_exec(s, &pop, &reply, NULL), -EBUSY);
    dpr_rollback_result rb;
    CHECK_EQ_INT(dpr_client_session_rollback(s, 10, &rb), -EBUSY);
    WITH_LOCK(fx.sh[0], fx.sh[0]->hold = false);
    for (int b = 0; b < 3; b++) {
        CHECK_EQ_INT(dpr_client_session_recv(s, 5000, &res), 0);
        CHECK_EQ_INT(res.status, 0);
        CHECK_EQ_U64(res.first_seq, first[b]);
        CHECK_EQ_U64(res.shard, 0);
        CHECK_EQ_U64(res.version, 1);
        for (uint32_t i = 0; i < res.op_count; i++)
            CHECK(res.replies[i]->type == REDIS_REPLY_STATUS && !strcmp(res.replies[i]->str, "OK"));
        dpr_batch_result_free(&res);
    }
    CHECK_EQ_INT(dpr_client_session_recv(s, 0, &res), -ENOENT);
    /* now the other shard may go */
    make_set_ops(1);
    CHECK_EQ_INT(dpr_client_session_send(s, 1, set_ops, 1, &seq), 0);
    CHECK_EQ_U64(seq, 7);
    CHECK_EQ_INT(dpr_client_session_recv(s, 5000, &res), 0);
    CHECK_EQ_INT(res.status, 0);
    dpr_batch_result_free(&res);
out:
    dpr_client_session_close(s);
    fx_stop(&fx);
}

TEST(pipeline_relaxed)
{
    fixture fx;
    dpr_client_session *s = NULL;
    uint64_t a, b;
    dpr_batch_result res;
    fx_start(&fx, 0);
    if (!fx.c || dpr_client_session_open(fx.c, DPR_SESSION_RELAXED, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    WITH_LOCK(fx.sh[0], fx.sh[0]->hold = true);
    make_set_ops(0);
    CHECK_EQ_INT(dpr_client_session_send(s, 0, set_ops, 2, &a), 0);
    make_set_ops(1);
    CHECK_EQ_INT(dpr_client_session_send(s, 1, set_ops, 2, &b), 0);
    /* shard 1 answers first although its batch is younger */
    CHECK_EQ_INT(dpr_client_session_recv(s, 5000, &res), 0);
    CHECK_EQ_U64(res.shard, 1);
    CHECK_EQ_U64(res.first_seq, b);
    dpr_batch_result_free(&res);
    WITH_LOCK(fx.sh[0], fx.sh[0]->hold = false);
    CHECK_EQ_INT(dpr_client_session_recv(s, 5000, &res), 0);
    CHECK_EQ_U64(res.shard, 0);
    CHECK_EQ_U64(res.first_seq, a);
    dpr_batch_result_free(&res);
    /* relaxed: op 3 (shard 1) commits before ops 1-2 */
    WITH_LOCK(fx.sh[1], fx.sh[1]->version = 1);
    finder_set_cut(fx.finder, 202, 1);
    uint64_t cp;
    CHECK_EQ_INT(dpr_client_session_commit_point(s, &cp), 0);
    CHECK_EQ_U64(cp, 0);
    CHECK(dpr_client_session_is_committed(s, b));
    CHECK(!dpr_client_session_is_committed(s, a));
out:
    dpr_client_session_close(s);
    fx_stop(&fx);
}

TEST(refusal_and_rollback)
{
    fixture fx;
    dpr_client_session *s = NULL;
    uint64_t seq;
    dpr_rollback_result rb;
    memset(&rb, 0, sizeof(rb));
    fx_start(&fx, 0);
    if (!fx.c || dpr_client_session_open(fx.c, 0, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    WITH_LOCK(fx.sh[0], fx.sh[0]->version = 3);
    CHECK_EQ_INT(exec_set(s, key_on(0), "1", &seq), 0); /* 1: version 3, survives */
    WITH_LOCK(fx.sh[1], fx.sh[1]->version = 4);
    CHECK_EQ_INT(exec_set(s, key_on(1), "2", &seq), 0); /* 2: version 4, lost */
    CHECK_EQ_INT(exec_set(s, key_on(1), "3", &seq), 0); /* 3: lost */
    /* shard 1 crashes and comes back; the cluster rolls back to {3, 3} */
    finder_bump(fx.finder, 101, 3, 202, 3);
    WITH_LOCK(fx.sh[0], fx.sh[0]->world_line = 2);
    CHECK_EQ_INT(exec_set(s, key_on(0), "4", &seq), -ESTALE); /* 4: refused */
    CHECK_EQ_U64(seq, 4);
    CHECK(dpr_client_session_needs_rollback(s));
    CHECK_EQ_INT(exec_set(s, key_on(0), "x", &seq), -ESTALE); /* nothing sent */
    CHECK_EQ_U64(dpr_client_session_state(s)->next_seq, 5);
    CHECK_EQ_INT(dpr_client_session_rollback(s, 5000, &rb), 0);
    CHECK_EQ_U64(rb.lost_from, 2);
    CHECK_EQ_U64(rb.lost_count, 3);
    CHECK_EQ_U64(rb.nsurvived_above, 0);
    CHECK_EQ_U64(dpr_client_session_state(s)->world_line, 2);
    CHECK(!dpr_client_session_needs_rollback(s));
    CHECK(dpr_client_session_is_committed(s, 1));
    CHECK_EQ_INT(dpr_client_session_wait_committed(s, 2, 10), -ECANCELED);
    /* and goes on */
    CHECK_EQ_INT(exec_set(s, key_on(0), "5", &seq), 0);
    CHECK_EQ_U64(seq, 5);
    pthread_mutex_lock(&fx.sh[0]->lock);
    CHECK_EQ_U64(fx.sh[0]->last.world_line, 2);
    pthread_mutex_unlock(&fx.sh[0]->lock);
out:
    free(rb.survived_above);
    dpr_client_session_close(s);
    fx_stop(&fx);
}

TEST(stale_cut_means_rollback)
{
    fixture fx;
    dpr_client_session *s = NULL;
    uint64_t seq, cp;
    dpr_rollback_result rb;
    memset(&rb, 0, sizeof(rb));
    fx_start(&fx, 0);
    if (!fx.c || dpr_client_session_open(fx.c, 0, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    CHECK_EQ_INT(exec_set(s, key_on(0), "1", &seq), 0);
    finder_bump(fx.finder, 101, 0, 202, 0);
    CHECK_EQ_INT(dpr_client_session_commit_point(s, &cp), -ESTALE);
    CHECK_EQ_INT(dpr_client_session_wait_committed(s, 1, 1000), -ESTALE);
    CHECK(dpr_client_session_needs_rollback(s));
    dpr_cut old;
    dpr_cut_init(&old);
    old.world_line = 0; /* an older cut is ignored */
    CHECK_EQ_INT(dpr_client_session_apply_cut(s, &old, &cp), 0);
    dpr_cut_free(&old);
    CHECK_EQ_INT(dpr_client_session_rollback(s, 5000, &rb), 0);
    CHECK_EQ_U64(rb.lost_from, 1);
    CHECK_EQ_U64(rb.lost_count, 1);
out:
    free(rb.survived_above);
    dpr_client_session_close(s);
    fx_stop(&fx);
}

TEST(connection_loss_and_reconnect)
{
    fixture fx;
    dpr_client_session *s = NULL;
    uint64_t seq;
    dpr_batch_result res;
    dpr_rollback_result rb;
    memset(&rb, 0, sizeof(rb));
    fx_start(&fx, 0);
    if (!fx.c || dpr_client_session_open(fx.c, 0, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    WITH_LOCK(fx.sh[1], fx.sh[1]->version = 2);
    CHECK_EQ_INT(exec_set(s, key_on(1), "1", &seq), 0); /* 1: version 2, survives */
    /* shard 1 dies while two batches are in flight */
    WITH_LOCK(fx.sh[1], fx.sh[1]->mode = MODE_CLOSE);
    make_set_ops(1);
    uint64_t a, b;
    CHECK_EQ_INT(dpr_client_session_send(s, 1, set_ops, 1, &a), 0);
    CHECK_EQ_INT(dpr_client_session_send(s, 1, set_ops, 2, &b), 0);
    CHECK_EQ_INT(dpr_client_session_recv(s, 5000, &res), 0);
    CHECK_EQ_INT(res.status, -ECONNRESET);
    CHECK_EQ_U64(res.first_seq, a);
    CHECK(res.replies == NULL);
    dpr_batch_result_free(&res);
    CHECK(dpr_client_session_needs_rollback(s));
    CHECK_EQ_INT(dpr_client_session_send(s, 0, set_ops, 1, &seq), -ESTALE);
    CHECK_EQ_INT(dpr_client_session_rollback(s, 10, &rb), -EBUSY); /* b not returned */
    CHECK_EQ_INT(dpr_client_session_recv(s, 5000, &res), 0);
    CHECK_EQ_INT(res.status, -ECONNRESET);
    CHECK_EQ_U64(res.first_seq, b);
    dpr_batch_result_free(&res);
    CHECK_EQ_INT(dpr_client_session_recv(s, 0, &res), -ENOENT);
    /* no shard restarted yet: the world-line does not move */
    CHECK_EQ_INT(dpr_client_session_rollback(s, 30, &rb), -ETIMEDOUT);
    /* it restarts: new world-line, cut {0, 2} */
    WITH_LOCK(fx.sh[1], (fx.sh[1]->mode = MODE_NORMAL, fx.sh[1]->world_line = 2));
    finder_bump(fx.finder, 101, 0, 202, 2);
    unsigned accepted0;
    pthread_mutex_lock(&fx.sh[1]->lock);
    accepted0 = fx.sh[1]->accepted;
    pthread_mutex_unlock(&fx.sh[1]->lock);
    CHECK_EQ_INT(dpr_client_session_rollback(s, 5000, &rb), 0);
    CHECK_EQ_U64(rb.lost_from, 2);
    CHECK_EQ_U64(rb.lost_count, 3);
    /* the rollback reconnected shard 1 (before any new operation) */
    CHECK_EQ_U64(wait_accepted(fx.sh[1], accepted0 + 1), accepted0 + 1);
    CHECK_EQ_INT(exec_set(s, key_on(1), "5", &seq), 0);
    CHECK_EQ_U64(seq, 5);
out:
    free(rb.survived_above);
    dpr_client_session_close(s);
    fx_stop(&fx);
}

TEST(idle_connection_dropped)
{
    fixture fx;
    dpr_client_session *s = NULL;
    uint64_t seq;
    fx_start(&fx, 0);
    if (!fx.c || dpr_client_session_open(fx.c, 0, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    CHECK_EQ_INT(exec_set(s, key_on(0), "1", &seq), 0);
    /* the shard closes every connection while the session is idle; wait
     * until the session's socket has seen the close */
    WITH_LOCK(fx.sh[0], fx.sh[0]->drop_conns = true);
    wait_no_conns(fx.sh[0]);
    /* the next operation goes over a new connection, nothing is lost */
    CHECK_EQ_INT(exec_set(s, key_on(0), "2", &seq), 0);
    CHECK_EQ_U64(seq, 2);
    CHECK(!dpr_client_session_needs_rollback(s));
out:
    dpr_client_session_close(s);
    fx_stop(&fx);
}

TEST(error_and_garbage_answers)
{
    fixture fx;
    dpr_client_session *s = NULL;
    uint64_t seq;
    dpr_batch_result res;
    fx_start(&fx, 0);
    if (!fx.c || dpr_client_session_open(fx.c, DPR_SESSION_RELAXED, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    WITH_LOCK(fx.sh[0], fx.sh[0]->mode = MODE_ERROR);
    CHECK_EQ_INT(exec_set(s, key_on(0), "1", &seq), -EREMOTEIO);
    CHECK(strstr(dpr_client_session_errstr(s), "not executed") != NULL);
    CHECK(dpr_client_session_needs_rollback(s));
    WITH_LOCK(fx.sh[0], fx.sh[0]->mode = MODE_GARBAGE);
    make_set_ops(0);
    CHECK_EQ_INT(dpr_client_session_send(s, 0, set_ops, 1, &seq), 0);
    CHECK_EQ_INT(dpr_client_session_recv(s, 5000, &res), 0);
    CHECK_EQ_INT(res.status, -EPROTO);
    dpr_batch_result_free(&res);
    /* relaxed sessions go on (the abandoned operations stay in doubt) */
    WITH_LOCK(fx.sh[0], fx.sh[0]->mode = MODE_NORMAL);
    CHECK_EQ_INT(exec_set(s, key_on(0), "3", &seq), 0);
    CHECK_EQ_U64(seq, 3);
out:
    dpr_client_session_close(s);
    fx_stop(&fx);
}

/* A batch refused before it ran (-MOVED) while a later one to the same
 * shard was in flight: withdrawn (its operations are void), not in doubt;
 * the later one runs; the commit point passes over the void ones. */
TEST(moved_batch_is_withdrawn)
{
    fixture fx;
    dpr_client_session *s = NULL;
    uint64_t first1, first2, cp;
    dpr_batch_result res;
    fx_start(&fx, 0);
    if (!fx.c || dpr_client_session_open(fx.c, 0, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    WITH_LOCK(fx.sh[0], fx.sh[0]->mode = MODE_MOVED_ONCE);
    make_set_ops(0);
    CHECK_EQ_INT(dpr_client_session_send(s, 0, set_ops, 2, &first1), 0);
    CHECK_EQ_INT(dpr_client_session_send(s, 0, set_ops, 1, &first2), 0);
    CHECK_EQ_INT(dpr_client_session_recv(s, 5000, &res), 0);
    CHECK_EQ_INT(res.status, -EREMCHG);
    CHECK(strstr(dpr_client_session_errstr(s), "MOVED 1 127.0.0.1:1 2") != NULL);
    dpr_batch_result_free(&res);
    CHECK_EQ_INT(dpr_client_session_recv(s, 5000, &res), 0);
    CHECK_EQ_INT(res.status, 0);
    dpr_batch_result_free(&res);
    CHECK(!dpr_client_session_needs_rollback(s));
    CHECK(dpr_session_is_withdrawn(dpr_client_session_state(s), first1));
    CHECK(dpr_session_is_withdrawn(dpr_client_session_state(s), first1 + 1));
    CHECK(!dpr_session_is_withdrawn(dpr_client_session_state(s), first2));
    finder_set_cut(fx.finder, 101, 1);
    CHECK_EQ_INT(dpr_client_session_commit_point(s, &cp), 0);
    CHECK_EQ_U64(cp, first2);
    CHECK(dpr_client_session_is_committed(s, first2));
    CHECK(!dpr_client_session_is_committed(s, first1));
out:
    dpr_client_session_close(s);
    fx_stop(&fx);
}

TEST(finder_restart_is_survived)
{
    fixture fx;
    dpr_cut cut;
    dpr_cut_init(&cut);
    fx_start(&fx, 0);
    if (!fx.c) {
        CHECK(!"setup");
        goto out;
    }
    finder_set_cut(fx.finder, 101, 5);
    CHECK_EQ_INT(dpr_client_sync(fx.c, &cut), 0);
    CHECK_EQ_U64(cut.world_line, 1);
    CHECK_EQ_U64(dpr_depset_get(&cut.versions, 101), 5);
    /* the finder drops its connections: the next sync reconnects */
    WITH_LOCK(fx.finder, fx.finder->drop_conns = true);
    wait_no_conns(fx.finder);
    CHECK_EQ_INT(dpr_client_sync(fx.c, &cut), 0);
    CHECK_EQ_U64(dpr_depset_get(&cut.versions, 101), 5);
    dpr_depset prefix = DPR_DEPSET_INIT;
    CHECK_EQ_INT(dpr_client_prefix(fx.c, 1, &prefix), -EREMOTEIO);
    CHECK(strstr(dpr_client_errstr(fx.c), "has not ended") != NULL);
    finder_bump(fx.finder, 101, 4, 202, 0);
    CHECK_EQ_INT(dpr_client_prefix(fx.c, 1, &prefix), 0);
    CHECK_EQ_U64(dpr_depset_get(&prefix, 101), 4);
    CHECK_EQ_U64(dpr_depset_count(&prefix), 1); /* version 0: absent */
    dpr_depset_free(&prefix);
out:
    dpr_cut_free(&cut);
    fx_stop(&fx);
}

/* A shard ends the connection with two batches in flight that it never
 * read (held). Back as another process on the session's world-line (a
 * planned restart): both are withdrawn, -ERESTART, the session's sequence
 * numbers are issued again and no rollback is needed. The same process, or
 * another one on a newer world-line (a crash): abandoned, in doubt. */
TEST(batches_cut_off_by_a_planned_restart)
{
    for (int variant = 0; variant < 3; variant++) {
        fixture fx;
        dpr_client_session *s = NULL;
        uint64_t seq, first[2];
        dpr_batch_result res;
        fx_start(&fx, 0);
        WITH_LOCK(fx.sh[0], snprintf(fx.sh[0]->run_id, sizeof(fx.sh[0]->run_id), "A"));
        if (!fx.c || dpr_client_session_open(fx.c, 0, &s) < 0) {
            CHECK(!"setup");
            goto next;
        }
        CHECK_EQ_INT(exec_set(s, key_on(0), "1", &seq), 0);
        CHECK_EQ_U64(seq, 1);
        make_set_ops(0);
        WITH_LOCK(fx.sh[0], fx.sh[0]->hold = true);
        CHECK_EQ_INT(dpr_client_session_send(s, 0, set_ops, 2, &first[0]), 0);
        CHECK_EQ_INT(dpr_client_session_send(s, 0, set_ops, 1, &first[1]), 0);
        CHECK_EQ_U64(first[1], 4);
        /* variant 0: a planned restart; 1: the connection closed by the same
         * process; 2: a crash restart (the world-line moved on) */
        WITH_LOCK(fx.sh[0], (snprintf(fx.sh[0]->run_id, sizeof(fx.sh[0]->run_id), "%s",
                                      variant == 1 ? "A" : "B"),
                             fx.sh[0]->world_line = variant == 2 ? 2 : 1,
                             fx.sh[0]->hold = false, fx.sh[0]->drop_conns = true));
        fake_wake(fx.sh[0]);
        for (int b = 0; b < 2; b++) {
            CHECK_EQ_INT(dpr_client_session_recv(s, 5000, &res), 0);
            CHECK_EQ_INT(res.status, variant == 0 ? -ERESTART : -ECONNRESET);
            CHECK_EQ_U64(res.first_seq, first[b]);
            dpr_batch_result_free(&res);
        }
        CHECK_EQ_INT(dpr_client_session_recv(s, 0, &res), -ENOENT);
        CHECK_EQ_INT(fx.sh[0]->batches, 1); /* nothing of them ran */
        if (variant == 0) {
            CHECK(strstr(dpr_client_session_errstr(s), "stopped on purpose") != NULL);
            CHECK(!dpr_client_session_needs_rollback(s));
            CHECK_EQ_U64(dpr_client_session_state(s)->next_seq, 2); /* cancelled */
            CHECK_EQ_INT(exec_set(s, key_on(0), "2", &seq), 0);
            CHECK_EQ_U64(seq, 2);
        } else {
            CHECK(strstr(dpr_client_session_errstr(s),
                         variant == 1 ? "as the same process" : "another world-line") != NULL);
            CHECK(dpr_client_session_needs_rollback(s));
            CHECK_EQ_INT(exec_set(s, key_on(0), "2", &seq), -ESTALE);
        }
    next:
        dpr_client_session_close(s);
        fx_stop(&fx);
    }
}

/* A shard that keeps its connection but never answers (its node was lost:
 * nothing closes the connection): exec gives the connection up after
 * io_timeout_ms, the operation is in doubt (the session needs a rollback)
 * and nothing stays in flight. */
TEST(exec_gives_up_a_silent_shard)
{
    fixture fx;
    dpr_client *c = NULL;
    dpr_client_session *s = NULL;
    dpr_endpoint eps[2];
    dpr_err err = DPR_ERR_INIT;
    uint64_t seq = 0, t0;
    fx_start(&fx, 0);
    for (int i = 0; i < 2; i++)
        eps[i] = (dpr_endpoint){"127.0.0.1", fx.sh[i]->port, false, 0};
    dpr_client_config cfg = {.shards = eps, .nshards = 2,
                             .finder = {"127.0.0.1", fx.finder->port, false, 0},
                             .io_timeout_ms = 300};
    if (dpr_client_new(&cfg, &c, &err) < 0 || dpr_client_session_open(c, 0, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    CHECK_EQ_INT(exec_set(s, key_on(0), "a", &seq), 0);
    /* (before the session connects to it: the fake never reads that one) */
    WITH_LOCK(fx.sh[1], fx.sh[1]->hold = true);
    t0 = dpr_mono_ms();
    CHECK_EQ_INT(exec_set(s, key_on(1), "b", &seq), -ETIMEDOUT);
    CHECK(dpr_mono_ms() - t0 >= 300 && dpr_mono_ms() - t0 < 3000);
    CHECK(strstr(dpr_client_session_errstr(s), "no answer within 300 ms (io_timeout_ms): "
                                               "connection given up") != NULL);
    CHECK_EQ_U64(dpr_client_session_inflight(s, UINT32_MAX), 0);
    CHECK(dpr_client_session_needs_rollback(s));
    CHECK_EQ_INT(exec_set(s, key_on(0), "c", &seq), -ESTALE); /* roll back first */
out:
    dpr_client_session_close(s);
    dpr_client_free(c);
    if (fx.sh[1])
        WITH_LOCK(fx.sh[1], fx.sh[1]->hold = false);
    fx_stop(&fx);
}

/* ---- clients from agents ------------------------------------------------------ */

/* A loopback port nothing listens on (bound, then closed). */
static uint16_t dead_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0)
        abort();
    close(fd);
    return ntohs(a.sin_port);
}

/* The fixture's finder, as an agent, tells deployment "kv" at epoch 3:
 * shard i at fx->sh[i] (missing: nil); every fake in domain "kv". */
static void fx_agent_tells(fixture *fx, int missing)
{
    fx_set_domain(fx, "kv");
    pthread_mutex_lock(&fx->finder->lock);
    snprintf(fx->finder->ep_deployment, sizeof(fx->finder->ep_deployment), "kv");
    fx->finder->ep_epoch = 3;
    fx->finder->ep_n = 2;
    for (int i = 0; i < 2; i++) {
        if (i == missing)
            fx->finder->ep_addr[i][0] = '\0';
        else
            snprintf(fx->finder->ep_addr[i], sizeof(fx->finder->ep_addr[i]), "127.0.0.1:%u",
                     fx->sh[i]->port);
        fx->finder->ep_worker[i] = fx->sh[i]->worker;
    }
    pthread_mutex_unlock(&fx->finder->lock);
}

/* A client of deployment `dep` from two agents: one that is not there,
 * then the fixture's finder. */
static int client_from_agents(fixture *fx, const char *dep, int reconnect_ms, dpr_client **out,
                              dpr_err *err)
{
    dpr_endpoint agents[2] = {{"127.0.0.1", dead_port(), false, 0},
                              {"127.0.0.1", fx->finder->port, false, 0}};
    dpr_client_config cfg = {.agents = agents, .nagents = 2, .deployment = dep,
                             .io_timeout_ms = 5000, .reconnect_timeout_ms = reconnect_ms};
    return dpr_client_new(&cfg, out, err);
}

TEST(client_from_agents)
{
    fixture fx;
    dpr_client *c = NULL;
    dpr_client_session *s = NULL;
    dpr_err err = DPR_ERR_INIT;
    uint64_t seq;
    fx_start(&fx, 0);
    fx_agent_tells(&fx, -1);
    CHECK_EQ_INT(client_from_agents(&fx, "kv", 0, &c, &err), 0);
    if (!c) {
        fprintf(stderr, "  %s\n", err.msg);
        goto out;
    }
    CHECK_EQ_U64(dpr_client_nshards(c), 2);
    CHECK_EQ_U64(dpr_client_worker(c, 0), 101);
    CHECK_EQ_U64(dpr_client_worker(c, 1), 202);
    CHECK_EQ_U64(dpr_client_shard_port(c, 1), fx.sh[1]->port);
    CHECK(!strcmp(dpr_client_shard_host(c, 1), "127.0.0.1"));
    CHECK(!strcmp(dpr_client_domain(c), "kv")); /* the deployment's */
    CHECK_EQ_U64(dpr_client_layout_epoch(c), 3);
    CHECK_EQ_INT(dpr_client_session_open(c, 0, &s), 0); /* the agents are the finders */
    if (!s)
        goto out;
    CHECK_EQ_U64(dpr_client_session_layout_epoch(s), 3);
    CHECK_EQ_INT(exec_set(s, key_on(0), "a", &seq), 0);
    CHECK_EQ_INT(exec_set(s, key_on(1), "b", &seq), 0);
    CHECK_EQ_U64(seq, 2);
    /* an explicit refresh finds nothing newer */
    CHECK_EQ_INT(dpr_client_session_refresh_layout(s), 0);
out:
    dpr_client_session_close(s);
    dpr_client_free(c);
    fx_stop(&fx);
}

TEST(client_from_agents_errors)
{
    fixture fx;
    dpr_client *c = NULL;
    dpr_err err = DPR_ERR_INIT;
    char want[64];
    fx_start(&fx, 0);
    fx_agent_tells(&fx, -1);
    /* no such deployment: the agent's answer, named */
    CHECK_EQ_INT(client_from_agents(&fx, "nope", 0, &c, &err), -ENOENT);
    CHECK(c == NULL);
    snprintf(want, sizeof(want), "agent 127.0.0.1:%u answered: ", fx.finder->port);
    CHECK(strstr(err.msg, "deployment 'nope': ") == err.msg);
    CHECK(strstr(err.msg, want) != NULL);
    CHECK(strstr(err.msg, "ERR no deployment 'nope' in the cluster's spec") != NULL);
    /* shard 1's node is down: no endpoint */
    fx_agent_tells(&fx, 1);
    CHECK_EQ_INT(client_from_agents(&fx, "kv", 0, &c, &err), -EHOSTDOWN);
    CHECK(!strcmp(err.msg, "deployment 'kv': no endpoint known for shard 1 of 2 (its node is "
                           "down, or it has not started yet); try again"));
    /* no agent answers: each named, with why */
    uint16_t p1 = dead_port(), p2 = dead_port();
    dpr_endpoint agents[2] = {{"127.0.0.1", p1, false, 0}, {"127.0.0.1", p2, false, 0}};
    dpr_client_config cfg = {.agents = agents, .nagents = 2, .deployment = "kv"};
    CHECK_EQ_INT(dpr_client_new(&cfg, &c, &err), -ECONNREFUSED);
    snprintf(want, sizeof(want), "127.0.0.1:%u: Connection refused; 127.0.0.1:%u: ", p1, p2);
    CHECK(strstr(err.msg, "no agent told the endpoints of deployment 'kv': ") == err.msg);
    CHECK(strstr(err.msg, want) != NULL);
    /* configurations */
    dpr_endpoint shards[1] = {{"127.0.0.1", fx.sh[0]->port, false, 0}};
    cfg.shards = shards;
    cfg.nshards = 1;
    CHECK_EQ_INT(dpr_client_new(&cfg, &c, &err), -EINVAL);
    CHECK(strstr(err.msg, "not both") != NULL);
    cfg.shards = NULL;
    cfg.nshards = 0;
    cfg.deployment = NULL;
    CHECK_EQ_INT(dpr_client_new(&cfg, &c, &err), -EINVAL);
    CHECK(strstr(err.msg, "needs the deployment's name") != NULL);
    cfg.deployment = "Bad Name";
    CHECK_EQ_INT(dpr_client_new(&cfg, &c, &err), -EINVAL);
    agents[1].port = 0;
    cfg.deployment = "kv";
    CHECK_EQ_INT(dpr_client_new(&cfg, &c, &err), -EINVAL);
    CHECK(strstr(err.msg, "agent address 1") != NULL);
    CHECK(c == NULL);
    fx_stop(&fx);
}

/* Shard 1 moves: the old one goes away, a new one (same worker id) serves
 * at another port, and only the agents tell (the other shard has no
 * layout). exec finds it after about a second; a session opened before
 * follows with an explicit refresh at once. */
TEST(session_follows_a_moved_shard_through_the_agents)
{
    fixture fx;
    dpr_client *c = NULL;
    dpr_client_session *s = NULL, *s2 = NULL;
    fake *moved = NULL;
    uint64_t seq;
    dpr_err err = DPR_ERR_INIT;
    fx_start(&fx, 0);
    fx_agent_tells(&fx, -1);
    if (client_from_agents(&fx, "kv", 0, &c, &err) < 0 || dpr_client_session_open(c, 0, &s) < 0 ||
        dpr_client_session_open(c, 0, &s2) < 0) {
        CHECK(!"setup");
        goto out;
    }
    CHECK_EQ_INT(exec_set(s, key_on(1), "1", &seq), 0);
    /* the move */
    fake_stop(fx.sh[1]);
    moved = fake_start(FAKE_SHARD, 202);
    WITH_LOCK(moved, snprintf(moved->domain, sizeof(moved->domain), "kv"));
    fx.sh[1] = moved;
    uint64_t t0 = dpr_mono_ms();
    unsigned asked0;
    pthread_mutex_lock(&fx.finder->lock);
    asked0 = fx.finder->ep_asked;
    pthread_mutex_unlock(&fx.finder->lock);
    /* until the agents know: exec keeps trying, then gives up */
    dpr_client *impatient = NULL;
    dpr_client_session *s3 = NULL;
    if (client_from_agents(&fx, "kv", 1500, &impatient, &err) == 0 &&
        dpr_client_session_open(impatient, 0, &s3) == 0) {
        fake *gone = fake_start(FAKE_SHARD, 1);
        uint16_t gone_port = gone->port;
        fake_stop(gone);
        /* s3 routes shard 1 to a port nothing listens on */
        WITH_LOCK(fx.finder, snprintf(fx.finder->ep_addr[1], sizeof(fx.finder->ep_addr[1]),
                                      "127.0.0.1:%u", gone_port));
        dpr_client_session_close(s3);
        dpr_client_free(impatient);
        CHECK_EQ_INT(client_from_agents(&fx, "kv", 1500, &impatient, &err), 0);
        CHECK_EQ_INT(dpr_client_session_open(impatient, 0, &s3), 0);
        WITH_LOCK(fx.finder, fx.finder->ep_epoch = 3);
        uint64_t t1 = dpr_mono_ms();
        CHECK_EQ_INT(exec_set(s3, key_on(1), "x", &seq), -ECONNREFUSED);
        CHECK(dpr_mono_ms() - t1 >= 1500);
        CHECK(strstr(dpr_client_session_errstr(s3), "unreachable for 1500 ms") != NULL);
        CHECK(strstr(dpr_client_session_errstr(s3), "Connection refused") != NULL);
        dpr_client_session_close(s3);
        dpr_client_free(impatient);
    } else {
        CHECK(!"impatient client");
    }
    /* now the agents tell the new address, at a newer epoch */
    WITH_LOCK(fx.finder, (fx.finder->ep_epoch = 4,
                          snprintf(fx.finder->ep_addr[1], sizeof(fx.finder->ep_addr[1]),
                                   "127.0.0.1:%u", moved->port)));
    t0 = dpr_mono_ms();
    CHECK_EQ_INT(exec_set(s, key_on(1), "2", &seq), 0);
    CHECK(dpr_mono_ms() - t0 >= 900); /* the agents are asked after about a second */
    CHECK_EQ_U64(seq, 2);
    CHECK_EQ_U64(dpr_client_session_layout_epoch(s), 4);
    CHECK_EQ_U64(dpr_client_session_shard_port(s, 1), moved->port);
    CHECK(!dpr_client_session_needs_rollback(s));
    pthread_mutex_lock(&moved->lock);
    CHECK(kv_get(moved, key_on(1)) && !strcmp(kv_get(moved, key_on(1)), "2"));
    pthread_mutex_unlock(&moved->lock);
    pthread_mutex_lock(&fx.finder->lock);
    CHECK(fx.finder->ep_asked > asked0);
    pthread_mutex_unlock(&fx.finder->lock);
    /* the other session: an explicit refresh asks the agents at once */
    CHECK_EQ_U64(dpr_client_session_layout_epoch(s2), 3);
    CHECK_EQ_INT(dpr_client_session_refresh_layout(s2), 1);
    CHECK_EQ_U64(dpr_client_session_layout_epoch(s2), 4);
    CHECK_EQ_U64(dpr_client_session_shard_port(s2, 1), moved->port);
    CHECK_EQ_INT(exec_set(s2, key_on(1), "3", &seq), 0);
    /* a newer layout that lacks an endpoint is not taken */
    WITH_LOCK(fx.finder, (fx.finder->ep_epoch = 5, fx.finder->ep_addr[0][0] = '\0'));
    CHECK_EQ_INT(dpr_client_session_refresh_layout(s2), 0);
    CHECK_EQ_U64(dpr_client_session_layout_epoch(s2), 4);
out:
    dpr_client_session_close(s);
    dpr_client_session_close(s2);
    dpr_client_free(c);
    fx_stop(&fx);
}

/* Every shard that knew the epoch moved (here: shard 1, and shard 0 has no
 * layout to tell): the agents tell the same epoch with shard 1 elsewhere,
 * same worker ids. The session follows; an answer at that epoch with other
 * worker ids is not a move and is not taken. */
TEST(session_follows_a_move_told_at_the_same_epoch)
{
    fixture fx;
    dpr_client *c = NULL;
    dpr_client_session *s = NULL;
    fake *moved = NULL;
    uint64_t seq;
    dpr_err err = DPR_ERR_INIT;
    fx_start(&fx, 0);
    fx_agent_tells(&fx, -1);
    if (client_from_agents(&fx, "kv", 0, &c, &err) < 0 || dpr_client_session_open(c, 0, &s) < 0) {
        CHECK(!"setup");
        goto out;
    }
    CHECK_EQ_INT(exec_set(s, key_on(1), "1", &seq), 0);
    fake_stop(fx.sh[1]);
    moved = fake_start(FAKE_SHARD, 202);
    WITH_LOCK(moved, snprintf(moved->domain, sizeof(moved->domain), "kv"));
    fx.sh[1] = moved;
    /* not a move: another worker at the new address */
    WITH_LOCK(fx.finder, (fx.finder->ep_worker[1] = 303,
                          snprintf(fx.finder->ep_addr[1], sizeof(fx.finder->ep_addr[1]),
                                   "127.0.0.1:%u", moved->port)));
    CHECK_EQ_INT(dpr_client_session_refresh_layout(s), 0);
    CHECK(dpr_client_session_shard_port(s, 1) != moved->port);
    WITH_LOCK(fx.finder, fx.finder->ep_worker[1] = 202);
    CHECK_EQ_INT(exec_set(s, key_on(1), "2", &seq), 0);
    CHECK_EQ_U64(seq, 2);
    CHECK_EQ_U64(dpr_client_session_layout_epoch(s), 3);
    CHECK_EQ_U64(dpr_client_session_shard_port(s, 1), moved->port);
    pthread_mutex_lock(&moved->lock);
    CHECK(kv_get(moved, key_on(1)) && !strcmp(kv_get(moved, key_on(1)), "2"));
    pthread_mutex_unlock(&moved->lock);
    /* nothing new now */
    CHECK_EQ_INT(dpr_client_session_refresh_layout(s), 0);
out:
    dpr_client_session_close(s);
    dpr_client_free(c);
    fx_stop(&fx);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(endpoint_parse);
    RUN(client_learns_workers_and_routes);
    RUN(client_config_errors);
    RUN(default_domain);
    RUN(named_domain);
    RUN(invalid_domain_names);
    RUN(exec_and_commit);
    RUN(pipeline_strict);
    RUN(pipeline_relaxed);
    RUN(refusal_and_rollback);
    RUN(stale_cut_means_rollback);
    RUN(connection_loss_and_reconnect);
    RUN(idle_connection_dropped);
    RUN(error_and_garbage_answers);
    RUN(moved_batch_is_withdrawn);
    RUN(finder_restart_is_survived);
    RUN(exec_gives_up_a_silent_shard);
    RUN(batches_cut_off_by_a_planned_restart);
    RUN(client_from_agents);
    RUN(client_from_agents_errors);
    RUN(session_follows_a_moved_shard_through_the_agents);
    RUN(session_follows_a_move_told_at_the_same_epoch);
    return check_summary("client");
}
