/* kv_finder.c - see kv_finder.h. */
#include "kv_finder.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/addr.h"
#include "common/finders.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/num.h"
#include "dpr/domain.h"

#define TICK_MS 100
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* After TRYAGAIN (no finder leader yet): ask again this much later. */
#define RETRY_PAUSE_MS 200

enum link_state { LINK_DOWN, LINK_RESOLVING, LINK_CONNECTING, LINK_UP };
enum pend_kind { PEND_REPORT, PEND_SYNC, PEND_AUTH, PEND_LEAVE };

typedef struct pend {
    enum pend_kind kind;
    uint64_t sent_ms;
} pend;

/* One TCP connection; freed when its handle has closed. */
typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t req;
    dpr_tls_conn *tls; /* --finder-tls: its engine */
} conn;

typedef struct wreq {
    uv_write_t req;
    uv_buf_t buf;
    char data[];
} wreq;

typedef struct kv_queued_report {
    uint64_t world_line;
    uint64_t version;
    char *cmd; /* the RESP command */
    size_t len;
} kv_queued_report;

typedef struct gai_req {
    uv_getaddrinfo_t req;
    kv_finder *f;
} gai_req;

struct kv_finder {
    uv_loop_t *loop;
    dpr_finders finders; /* the addresses and the one asked now */
    const char *addr;    /* the one asked now, for messages */
    char port[8];        /* its port, for getaddrinfo */
    bool keep_target;    /* the next connection goes where a redirect said */
    bool quiet;          /* the reason for this disconnect was logged */
    uint64_t retry_logged_ms;
    char domain[DPR_DOMAIN_MAX + 1];
    uint64_t worker;
    char *sync_cmd; /* DPR.SYNC <domain>, in RESP */
    size_t sync_len;
    char *leave_cmd; /* DPR.WORKER.LEAVE <domain> <worker>, in RESP (the grant is the token) */
    size_t leave_len;
    bool leave_inflight;
    char *auth_cmd; /* DPR.AUTH <domain> <worker> <token>, in RESP (NULL: no token;
                     * wiped before it is freed) */
    size_t auth_len;
    bool authed;    /* this connection's DPR.AUTH was answered +OK */
    bool fenced;    /* the finder fenced this incarnation: no more connections */
    kv_finder_cb cb;
    void *ud;
    dpr_tls_ctx *tls; /* --finder-tls (NULL: plain) */
    enum link_state state;
    uint64_t state_since_ms;
    conn *c;
    gai_req *gai;
    uv_timer_t timer;
    redisReader *reader;
    /* reports in version order; the first nsent went out on this connection.
     * Of those, the first nkept were refused because the finder does not
     * know this worker: they stay queued (answered; sent again on the next
     * connection). After them, the first ndropped were dropped by a
     * rollback. nkept and ndropped are never both non-zero. */
    kv_queued_report *reports;
    size_t nreports, cap, nsent, ndropped, nkept;
    /* kv_finder_hold: only reports of versions <= released leave */
    bool held;
    uint64_t released;
    /* replies we wait for, in order */
    pend *pend;
    size_t pend_head, pend_len, pend_cap;
    bool sync_inflight;
    uint64_t *workers; /* the workers of the last DPR.SYNC answer */
    size_t workers_cap;
    unsigned backoff_ms;
    uint64_t next_attempt_ms;
    bool closing;
    char rbuf[65536];
};

/* --- start-up requests (blocking) -------------------------------------- */

/* Sends all of n bytes on c's blocking socket (its timeouts apply). */
static int send_all(redisContext *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* redisCommandArgv over TLS on c's connected socket: the engine between
 * the socket and c's reader. The reply, or NULL with why set. */
static redisReply *tls_command(redisContext *c, dpr_tls_ctx *ctx, const char *host, int argc,
                               const char **argv, char *why, size_t cap)
{
    dpr_tls_conn *t = NULL;
    dpr_buf io;
    dpr_err err = DPR_ERR_INIT;
    char *cmd = NULL, chunk[16384];
    void *rep = NULL;
    int n, r;

    dpr_buf_init(&io);
    r = dpr_tls_conn_new(ctx, host, &t, &err);
    if (r < 0) {
        snprintf(why, cap, "%s", dpr_err_str(&err, r));
        goto out;
    }
    n = redisFormatCommandArgv(&cmd, argc, argv, NULL);
    r = n < 0 ? -ENOMEM : dpr_tls_conn_write(t, cmd, (size_t)n);
    while (r >= 0) {
        io.len = 0;
        if (dpr_tls_conn_take(t, &io) < 0)
            r = -ENOMEM;
        if (r >= 0 && io.len)
            r = send_all(c, io.data, io.len); /* the handshake, the command */
        if (r < 0)
            break;
        if (redisReaderGetReply(c->reader, &rep) != REDIS_OK) {
            r = -EPROTO;
            snprintf(why, cap, "protocol error");
            goto out;
        }
        if (rep)
            goto out;
        ssize_t k = recv(c->fd, chunk, sizeof(chunk), 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            r = k == 0 ? -ECONNRESET : -errno;
            snprintf(why, cap, "%s", k == 0 ? "closed by the finder (TLS refused?)"
                                            : strerror(errno));
            goto out;
        }
        io.len = 0;
        r = (int)dpr_tls_conn_input(t, chunk, (size_t)k, &io);
        if (r >= 0 && io.len && redisReaderFeed(c->reader, io.data, io.len) != REDIS_OK)
            r = -ENOMEM;
    }
    if (r == -ENOMEM)
        snprintf(why, cap, "out of memory");
    else if (r == -EPROTO || r == -EACCES)
        snprintf(why, cap, "TLS: %s", dpr_tls_conn_errstr(t));
    else
        snprintf(why, cap, "%s", strerror(-r));
    if (t && (r == -EPROTO || r == -EACCES)) {
        io.len = 0; /* the alert, if any: the finder logs the reason too */
        if (dpr_tls_conn_take(t, &io) > 0)
            (void)send_all(c, io.data, io.len);
    }
out:
    if (cmd)
        redisFreeCommand(cmd);
    dpr_tls_conn_free(t);
    dpr_buf_free(&io);
    return rep;
}

/*
 * Sends one command (argv) to the finder (fl: its addresses) and reads its
 * answer into *rep (the caller frees it with freeReplyObject). Connects,
 * retrying every 200 ms (the next address each time) until timeout_ms
 * passes (0: forever, logging every few seconds); a NOTLEADER answer is
 * followed at once, TRYAGAIN is asked again later; any other answer, even
 * an error, ends the loop. -ETIMEDOUT.
 */
static int request_blocking(dpr_finders *fl, dpr_tls_ctx *tls, int argc, const char **argv,
                            unsigned timeout_ms, redisReply **rep, dpr_err *err)
{
    uint64_t start = dpr_mono_ms(), last_log = 0;
    char why[256], tls_why[256] = "";

    for (;;) {
        struct timeval tv = {2, 0};
        const dpr_hostport *hp = dpr_finders_current(fl);
        redisContext *c = redisConnectWithTimeout(hp->host, hp->port, tv);
        dpr_finders_answer a = DPR_FINDERS_RETRY;
        *rep = NULL;
        if (c && !c->err) {
            kv_finder_reader_limit(c->reader);
            redisSetTimeout(c, tv);
            if (tls)
                *rep = tls_command(c, tls, hp->host, argc, argv, tls_why, sizeof(tls_why));
            else
                *rep = redisCommandArgv(c, argc, argv, NULL);
        }
        if (*rep && (*rep)->type == REDIS_REPLY_ERROR)
            a = dpr_finders_on_error(fl, (*rep)->str, (*rep)->len);
        else if (*rep)
            a = DPR_FINDERS_OTHER;
        if (a == DPR_FINDERS_OTHER) {
            dpr_finders_answered(fl);
            redisFree(c);
            return 0;
        }
        bool redirected = *rep != NULL; /* dpr_finders_on_error moved on already */
        snprintf(why, sizeof(why), "%s", *rep   ? (*rep)->str
                                         : !c   ? "out of memory"
                                         : tls_why[0] ? tls_why : c->errstr);
        if (*rep)
            freeReplyObject(*rep);
        *rep = NULL;
        if (c)
            redisFree(c);
        if (a == DPR_FINDERS_MOVED) {
            log_info("finder: %s", why);
            continue; /* ask the leader now */
        }
        if (!redirected)
            dpr_finders_next(fl); /* unreachable: the next address */
        uint64_t now = dpr_mono_ms();
        if (now - last_log >= 5000) {
            log_warning("finder %s not reachable (%s); retrying", dpr_finders_text(fl), why);
            last_log = now;
        }
        if (timeout_ms && now - start >= timeout_ms)
            return dpr_err_set(err, -ETIMEDOUT, "finder %s not reachable within %u ms (%s)",
                               dpr_finders_text(fl), timeout_ms, why);
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* The client context of cfg (NULL: plain), into *out. */
static int tls_open(const dpr_tls_config *cfg, dpr_tls_ctx **out, dpr_err *err)
{
    int r;

    *out = NULL;
    if (!cfg)
        return 0;
    r = dpr_tls_ctx_new(cfg, false, out, err);
    if (r < 0)
        dpr_err_prefix(err, "--finder-tls");
    return r;
}

int kv_finder_register(const char *hostport, const dpr_tls_config *tlscfg, const char *domain,
                       uint64_t worker, const char *token, unsigned timeout_ms,
                       uint64_t *world_line, uint64_t *restore, dpr_err *err)
{
    dpr_tls_ctx *tls = NULL;
    char wid[DPR_FMT_U64_MAX + 1];
    const char *argv[4] = {"DPR.WORKER.ADD", domain, wid, token};
    bool has_token = token && *token;
    redisReply *rep;
    int r;

    dpr_finders fl;

    wid[dpr_fmt_u64(wid, worker)] = '\0';
    r = dpr_finders_parse(hostport, &fl, err);
    if (r < 0)
        return r;
    r = tls_open(tlscfg, &tls, err);
    if (r < 0)
        return r;
    r = request_blocking(&fl, tls, has_token ? 4 : 3, argv, timeout_ms, &rep, err);
    dpr_tls_ctx_free(tls);
    if (r < 0)
        return r;
    r = kv_finder_add_parse(rep, dpr_finders_text(&fl), worker, has_token, world_line, restore,
                            err);
    freeReplyObject(rep);
    return r;
}

int kv_finder_query_cut(const char *hostport, const dpr_tls_config *tlscfg, const char *domain,
                        uint64_t worker, unsigned timeout_ms, uint64_t *world_line,
                        uint64_t *cut, dpr_err *err)
{
    dpr_tls_ctx *tls = NULL;
    const char *argv[2] = {"DPR.SYNC", domain};
    uint64_t *ids = NULL;
    size_t cap = 0;
    redisReply *rep;
    kv_sync sync;
    dpr_finders fl;
    int r = dpr_finders_parse(hostport, &fl, err);

    if (r < 0)
        return r;
    r = tls_open(tlscfg, &tls, err);
    if (r < 0)
        return r;
    r = request_blocking(&fl, tls, 2, argv, timeout_ms, &rep, err);
    dpr_tls_ctx_free(tls);
    if (r < 0)
        return r;
    hostport = dpr_finders_text(&fl);
    if (rep->type == REDIS_REPLY_ERROR && kv_finder_error_unknown_domain(rep->str)) {
        /* no domain, no worker in it: what a finder that lost its state
         * answered before domains (an empty cut) */
        log_warning("finder %s does not know domain '%s' (%s): it has no cut for worker %" PRIu64
                    " (its state was lost, or --domain is not this shard's?)",
                    hostport, domain, rep->str, worker);
        freeReplyObject(rep);
        *world_line = 0;
        *cut = 0;
        return 0;
    }
    r = kv_finder_sync_parse(rep, hostport, worker, &ids, &cap, &sync, err);
    freeReplyObject(rep);
    free(ids);
    if (r < 0)
        return r;
    *world_line = sync.world_line;
    *cut = sync.cut;
    return 0;
}

/* --- the asynchronous link ---------------------------------------------- */

static void start_connect(kv_finder *f);

static void conn_closed(uv_handle_t *h)
{
    conn *c = (conn *)(void *)h; /* the tcp handle is the first member of conn */

    dpr_tls_conn_free(c->tls);
    free(c);
}

/* The next connection's target: where a redirect said, else the next
 * address of the list (a connection that failed or broke). */
static void pick_target(kv_finder *f)
{
    if (f->keep_target)
        f->keep_target = false;
    else
        dpr_finders_next(&f->finders);
    f->addr = dpr_finders_text(&f->finders);
    snprintf(f->port, sizeof(f->port), "%u", (unsigned)dpr_finders_current(&f->finders)->port);
}

static void disconnect(kv_finder *f, const char *why)
{
    bool was_up = f->state == LINK_UP;

    if (f->c) {
        f->c->tcp.data = NULL;
        uv_close((uv_handle_t *)&f->c->tcp, conn_closed);
        f->c = NULL;
    }
    if (f->state != LINK_DOWN && !f->closing && !f->quiet)
        log_warning("finder %s: connection lost (%s); reconnecting", f->addr, why);
    f->quiet = false;
    f->state = LINK_DOWN;
    /* every report goes out again on the next connection */
    if (f->ndropped) {
        assert(f->nkept == 0);
        for (size_t i = 0; i < f->ndropped; i++)
            free(f->reports[i].cmd);
        memmove(f->reports, f->reports + f->ndropped,
                (f->nreports - f->ndropped) * sizeof(*f->reports));
        f->nreports -= f->ndropped;
        f->ndropped = 0;
    }
    f->nsent = 0;
    f->nkept = 0;
    f->pend_head = f->pend_len = 0;
    f->sync_inflight = false;
    f->leave_inflight = false;
    f->authed = false;
    if (f->reader) {
        redisReaderFree(f->reader);
        f->reader = NULL;
    }
    if (f->keep_target) {
        f->next_attempt_ms = dpr_mono_ms(); /* redirected: at once */
    } else {
        f->next_attempt_ms = dpr_mono_ms() + f->backoff_ms;
        f->backoff_ms = f->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : f->backoff_ms * 2;
    }
    pick_target(f);
    if (was_up && f->cb.on_connection && !f->closing)
        f->cb.on_connection(f->ud, false);
}

static void write_done(uv_write_t *req, int status)
{
    kv_finder *f = req->handle->data;
    free(req);
    if (f && status < 0)
        disconnect(f, uv_strerror(status));
}

static int send_raw(kv_finder *f, const char *p, size_t n)
{
    wreq *w = malloc(sizeof(*w) + n);
    int r;

    if (!w)
        return -ENOMEM;
    memcpy(w->data, p, n);
    w->buf = uv_buf_init(w->data, (unsigned)n);
    r = uv_write(&w->req, (uv_stream_t *)&f->c->tcp, &w->buf, 1, write_done);
    if (r < 0) {
        free(w);
        return r;
    }
    return 0;
}

/* What the TLS engine has to send (handshake, records). */
static int send_tls(kv_finder *f)
{
    dpr_buf b;
    int r = 0;

    dpr_buf_init(&b);
    if (dpr_tls_conn_take(f->c->tls, &b) < 0)
        r = -ENOMEM;
    else if (b.len)
        r = send_raw(f, b.data, b.len);
    dpr_buf_free(&b);
    return r;
}

/* n bytes of a command: as they are, or through the TLS engine. */
static int send_bytes(kv_finder *f, const char *p, size_t n)
{
    int r;

    if (!f->c->tls)
        return send_raw(f, p, n);
    r = dpr_tls_conn_write(f->c->tls, p, n);
    return r < 0 ? r : send_tls(f);
}

static int push_pend(kv_finder *f, enum pend_kind kind)
{
    if (f->pend_len == f->pend_cap) {
        size_t cap = f->pend_cap ? f->pend_cap * 2 : 16;
        pend *p = malloc(cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        for (size_t i = 0; i < f->pend_len; i++)
            p[i] = f->pend[(f->pend_head + i) % f->pend_cap];
        free(f->pend);
        f->pend = p;
        f->pend_cap = cap;
        f->pend_head = 0;
    }
    f->pend[(f->pend_head + f->pend_len) % f->pend_cap] = (pend){kind, dpr_mono_ms()};
    f->pend_len++;
    return 0;
}

/* Sends the reports not yet sent on this connection. */
static void send_reports(kv_finder *f)
{
    while (f->state == LINK_UP && f->nsent < f->nreports) {
        kv_queued_report *rep = &f->reports[f->nsent];
        int r;
        if (f->held && rep->version > f->released)
            break; /* its copies are not made yet */
        r = push_pend(f, PEND_REPORT);
        if (r == 0)
            r = send_bytes(f, rep->cmd, rep->len);
        if (r < 0) {
            disconnect(f, r == -ENOMEM ? "out of memory" : uv_strerror(r));
            return;
        }
        f->nsent++;
    }
}

/* The finder says another incarnation of this worker holds it: stop the
 * link for good and tell the owner (which may close the link). */
static void fence(kv_finder *f, const char *answer)
{
    char why[300];

    snprintf(why, sizeof(why), "%s", answer); /* answer lives in the reply being read */
    f->fenced = f->quiet = true;
    disconnect(f, why);
    if (f->cb.on_fenced)
        f->cb.on_fenced(f->ud, why);
}

static void on_report_reply(kv_finder *f, const redisReply *rep)
{
    assert(f->nkept == 0 || f->ndropped == 0);
    kv_queued_report r = f->reports[f->nkept];
    const char *error;
    kv_report_outcome outcome = kv_finder_report_classify(rep, &error);
    bool dropped = f->ndropped > 0, acked = outcome == KV_REPORT_ACKED;

    if (outcome == KV_REPORT_FENCED || (outcome == KV_REPORT_NEEDS_AUTH && !f->auth_cmd)) {
        /* without a token: another owner registered this worker with one */
        log_error("finder %s refused the report of checkpoint %" PRIu64 ": %s", f->addr,
                  r.version, error);
        fence(f, error);
        return;
    }
    if (outcome == KV_REPORT_NEEDS_AUTH) {
        /* the finder learnt of this worker's token after our DPR.AUTH (it
         * did not know the worker then): authenticate on a new connection;
         * every unanswered report goes again */
        log_info("finder %s: %s; reconnecting to authenticate", f->addr, error);
        f->quiet = true;
        disconnect(f, "reports need DPR.AUTH");
        return;
    }

    if (!dropped && outcome == KV_REPORT_KEPT) {
        /* sending it again to this finder gets the same answer, but a
         * finder whose state is restored needs it: every report carries
         * dependencies that no later report repeats */
        log_debug("finder refused the report of checkpoint %" PRIu64 ": %s; kept", r.version,
                  error);
        f->nkept++;
        if (f->cb.on_report_done)
            f->cb.on_report_done(f->ud, r.version, false, error);
        return;
    }
    if (!acked && !dropped)
        log_warning("finder refused the report of checkpoint %" PRIu64 " (world-line %" PRIu64
                    "): %s; dropped",
                    r.version, r.world_line, error ? error : "unexpected reply");
    memmove(f->reports + f->nkept, f->reports + f->nkept + 1,
            (f->nreports - f->nkept - 1) * sizeof(*f->reports));
    f->nreports--;
    f->nsent--;
    if (dropped)
        f->ndropped--;
    free(r.cmd);
    if (!dropped && f->cb.on_report_done)
        f->cb.on_report_done(f->ud, r.version, acked, error);
}

/* The cut lists every registered worker of the domain (docs/protocol.md,
 * DPR.SYNC): the workers the shard checks batches against (worker.h). */
static int on_sync_reply(kv_finder *f, const redisReply *rep)
{
    kv_sync sync;
    int r;

    f->sync_inflight = false;
    r = kv_finder_sync_parse(rep, f->addr, f->worker, &f->workers, &f->workers_cap, &sync, NULL);
    if (r == -EREMOTEIO) {
        if (!kv_finder_error_lost_worker(rep->str)) /* that one is the caller's to say */
            log_warning("finder %s: DPR.SYNC %s failed: %s", f->addr, f->domain, rep->str);
        if (f->cb.on_sync_refused)
            f->cb.on_sync_refused(f->ud, rep->str);
        return 0;
    }
    if (r < 0)
        return r;
    sync.at_ms = dpr_mono_ms();
    if (f->cb.on_sync)
        f->cb.on_sync(f->ud, &sync);
    return 0;
}

/* The answer to this connection's DPR.AUTH (the first request on it). */
static void on_auth_reply(kv_finder *f, const redisReply *rep)
{
    const char *error;

    switch (kv_finder_auth_classify(rep, &error)) {
    case KV_AUTH_OK:
        f->authed = true;
        f->backoff_ms = BACKOFF_MIN_MS;
        log_debug("finder %s: authenticated for worker %" PRIu64, f->addr, f->worker);
        break;
    case KV_AUTH_FENCED:
        log_error("finder %s refused DPR.AUTH of worker %" PRIu64 " of domain %s: %s", f->addr,
                  f->worker, f->domain, error);
        fence(f, error);
        break;
    case KV_AUTH_LOST:
        /* as for reports: the replies to the reports behind it say so to
         * the owner (kv_finder_error_lost_worker) and keep them */
        log_warning("finder %s does not know worker %" PRIu64 " of domain %s (DPR.AUTH: %s)",
                    f->addr, f->worker, f->domain, error);
        f->backoff_ms = BACKOFF_MIN_MS;
        break;
    case KV_AUTH_UNSUPPORTED:
        /* a finder from before DPR.AUTH: its reports need no grant */
        log_info("finder %s does not know DPR.AUTH (%s): reporting without it", f->addr, error);
        f->authed = true;
        f->backoff_ms = BACKOFF_MIN_MS;
        break;
    case KV_AUTH_FAILED:
        log_warning("finder %s refused DPR.AUTH of worker %" PRIu64 ": %s; reconnecting",
                    f->addr, f->worker, error ? error : "unexpected reply");
        f->quiet = true;
        disconnect(f, "DPR.AUTH refused");
        break;
    }
}

static void on_reply(kv_finder *f, redisReply *rep)
{
    if (f->pend_len == 0) {
        disconnect(f, "unexpected reply");
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        char why[300], at[DPR_ADDR_STR_MAX];
        snprintf(why, sizeof(why), "%s", rep->str);
        snprintf(at, sizeof(at), "%s", f->addr); /* on_error moves f->addr */
        switch (dpr_finders_on_error(&f->finders, rep->str, rep->len)) {
        case DPR_FINDERS_MOVED:
            /* this agent does not serve the finder: every request goes
             * again to the leader */
            log_info("finder %s: %s; reconnecting there", at, why);
            f->keep_target = f->quiet = true;
            disconnect(f, why);
            return;
        case DPR_FINDERS_RETRY: {
            uint64_t now = dpr_mono_ms();
            if (now - f->retry_logged_ms >= 5000) {
                log_info("finder %s: %s; trying again", at, why);
                f->retry_logged_ms = now;
            }
            f->keep_target = f->quiet = true; /* on_error moved on already */
            disconnect(f, why);
            f->next_attempt_ms = now + RETRY_PAUSE_MS;
            return;
        }
        case DPR_FINDERS_OTHER:
            break;
        }
    } else {
        dpr_finders_answered(&f->finders);
    }
    enum pend_kind kind = f->pend[f->pend_head].kind;
    f->pend_head = (f->pend_head + 1) % f->pend_cap;
    f->pend_len--;
    if (kind == PEND_AUTH) {
        on_auth_reply(f, rep);
    } else if (kind == PEND_LEAVE) {
        bool ok = rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "OK") == 0;
        f->leave_inflight = false;
        if (f->cb.on_leave)
            f->cb.on_leave(f->ud, ok, rep->type == REDIS_REPLY_ERROR ? rep->str : NULL);
    } else if (kind == PEND_REPORT) {
        on_report_reply(f, rep);
    } else {
        int r = on_sync_reply(f, rep);
        if (r < 0)
            disconnect(f, r == -ENOMEM ? "out of memory" : "malformed DPR.SYNC reply");
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    kv_finder *f = h->data;
    (void)suggested;
    *buf = uv_buf_init(f->rbuf, sizeof(f->rbuf));
}

/* Ciphertext from the finder: its plaintext into the reader, the
 * handshake's answers out. 0, or -1 after disconnecting. */
static int tls_input(kv_finder *f, const char *data, size_t n)
{
    dpr_buf plain;
    char why[300];
    ssize_t r;

    dpr_buf_init(&plain);
    r = dpr_tls_conn_input(f->c->tls, data, n, &plain);
    if (r >= 0)
        r = send_tls(f);
    if (r >= 0 && plain.len && redisReaderFeed(f->reader, plain.data, plain.len) != REDIS_OK)
        r = -ENOMEM;
    dpr_buf_free(&plain);
    if (r >= 0 && dpr_tls_conn_eof(f->c->tls))
        r = -ECONNRESET;
    if (r < 0) {
        snprintf(why, sizeof(why), "%s%s", r == -EPROTO || r == -EACCES ? "TLS: " : "",
                 r == -ENOMEM ? "out of memory"
                 : r == -ECONNRESET ? "closed by the finder"
                 : r == -EPROTO || r == -EACCES ? dpr_tls_conn_errstr(f->c->tls)
                 : uv_strerror((int)r));
        disconnect(f, why);
        return -1;
    }
    return 0;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    kv_finder *f = s->data;
    void *reply;

    if (!f)
        return;
    if (nread < 0) {
        disconnect(f, nread == UV_EOF ? "closed by the finder" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    if (f->c->tls) {
        if (tls_input(f, buf->base, (size_t)nread) < 0)
            return;
    } else if (redisReaderFeed(f->reader, buf->base, (size_t)nread) != REDIS_OK) {
        disconnect(f, "out of memory");
        return;
    }
    for (;;) {
        if (redisReaderGetReply(f->reader, &reply) != REDIS_OK) {
            disconnect(f, "protocol error");
            return;
        }
        if (!reply)
            break;
        on_reply(f, reply);
        freeReplyObject(reply);
        if (f->state != LINK_UP) /* on_reply or a callback disconnected */
            return;
    }
}

static void connect_cb(uv_connect_t *req, int status)
{
    kv_finder *f = req->handle->data;
    int r;

    if (!f)
        return; /* closed meanwhile */
    if (status < 0) {
        log_debug("finder %s: connect failed: %s", f->addr, uv_strerror(status));
        disconnect(f, uv_strerror(status));
        return;
    }
    if (kv_finder_reader_new(&f->reader) < 0) {
        disconnect(f, "out of memory");
        return;
    }
    if (f->tls) {
        dpr_err err = DPR_ERR_INIT;
        r = dpr_tls_conn_new(f->tls, dpr_finders_current(&f->finders)->host, &f->c->tls, &err);
        if (r == 0)
            r = send_tls(f); /* the hello */
        if (r < 0) {
            disconnect(f, r == -ENOMEM ? "out of memory" : dpr_err_str(&err, r));
            return;
        }
    }
    r = uv_read_start((uv_stream_t *)&f->c->tcp, alloc_cb, read_cb);
    if (r < 0) {
        disconnect(f, uv_strerror(r));
        return;
    }
    (void)uv_tcp_nodelay(&f->c->tcp, 1);
    f->state = LINK_UP;
    log_info("finder %s: connected", f->addr);
    if (f->auth_cmd) {
        /* first on every connection: the reports pipelined behind it run
         * with its grant; the backoff is reset once it is answered */
        r = push_pend(f, PEND_AUTH);
        if (r == 0)
            r = send_bytes(f, f->auth_cmd, f->auth_len);
        if (r < 0) {
            disconnect(f, r == -ENOMEM ? "out of memory" : uv_strerror(r));
            return;
        }
    } else {
        f->backoff_ms = BACKOFF_MIN_MS;
    }
    if (f->cb.on_connection)
        f->cb.on_connection(f->ud, true);
    if (f->state == LINK_UP)
        send_reports(f);
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    gai_req *g = (gai_req *)req;
    kv_finder *f = g->f;
    int r;

    free(g);
    if (!f) {
        uv_freeaddrinfo(res);
        return;
    }
    f->gai = NULL;
    if (status < 0) {
        log_debug("finder %s: cannot resolve: %s", f->addr, uv_strerror(status));
        f->state = LINK_CONNECTING; /* so disconnect() schedules the retry quietly */
        disconnect(f, uv_strerror(status));
        return;
    }
    f->c = calloc(1, sizeof(*f->c));
    if (!f->c) {
        uv_freeaddrinfo(res);
        disconnect(f, "out of memory");
        return;
    }
    r = uv_tcp_init(f->loop, &f->c->tcp);
    if (r < 0) {
        free(f->c);
        f->c = NULL;
        uv_freeaddrinfo(res);
        disconnect(f, uv_strerror(r));
        return;
    }
    f->c->tcp.data = f;
    f->state = LINK_CONNECTING;
    f->state_since_ms = dpr_mono_ms();
    r = uv_tcp_connect(&f->c->req, &f->c->tcp, res->ai_addr, connect_cb);
    uv_freeaddrinfo(res);
    if (r < 0)
        disconnect(f, uv_strerror(r));
}

static void start_connect(kv_finder *f)
{
    struct addrinfo hints;
    int r;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    f->gai = malloc(sizeof(*f->gai));
    if (!f->gai) {
        f->next_attempt_ms = dpr_mono_ms() + BACKOFF_MAX_MS;
        return;
    }
    f->gai->f = f;
    f->state = LINK_RESOLVING;
    r = uv_getaddrinfo(f->loop, &f->gai->req, resolved, dpr_finders_current(&f->finders)->host,
                       f->port, &hints);
    if (r < 0) {
        free(f->gai);
        f->gai = NULL;
        disconnect(f, uv_strerror(r));
    }
}

static void tick(uv_timer_t *t)
{
    kv_finder *f = t->data;
    uint64_t now = dpr_mono_ms();

    if (f->fenced)
        return; /* superseded: never again */
    if (f->state == LINK_DOWN && now >= f->next_attempt_ms)
        start_connect(f);
    else if (f->state == LINK_UP && f->pend_len &&
             now - f->pend[f->pend_head].sent_ms > KV_FINDER_TIMEOUT_MS)
        disconnect(f, "no answer within the timeout");
    else if (f->state == LINK_CONNECTING && now - f->state_since_ms > KV_FINDER_TIMEOUT_MS)
        disconnect(f, "connect timed out");
}

static void wipe_auth(kv_finder *f)
{
    if (f->auth_cmd)
        explicit_bzero(f->auth_cmd, f->auth_len); /* it holds the token */
    free(f->auth_cmd);
    f->auth_cmd = NULL;
}

static void timer_closed(uv_handle_t *h)
{
    kv_finder *f = h->data;
    for (size_t i = 0; i < f->nreports; i++)
        free(f->reports[i].cmd);
    free(f->reports);
    free(f->pend);
    free(f->workers);
    free(f->sync_cmd);
    free(f->leave_cmd);
    wipe_auth(f);
    free(f);
}

int kv_finder_new(uv_loop_t *loop, const char *hostport, dpr_tls_ctx *tls, const char *domain,
                  uint64_t worker, const char *token, const kv_finder_cb *cb, void *ud,
                  kv_finder **out)
{
    kv_finder *f = calloc(1, sizeof(*f));
    const char *sync_argv[2] = {"DPR.SYNC", domain};
    char wid[DPR_FMT_U64_MAX + 1];
    const char *leave_argv[3] = {"DPR.WORKER.LEAVE", domain, wid};
    const char *auth_argv[4] = {"DPR.AUTH", domain, wid, token};
    int r, n;

    if (!f)
        return -ENOMEM;
    r = dpr_finders_parse(hostport, &f->finders, NULL);
    if (r < 0 || strlen(domain) >= sizeof(f->domain)) {
        free(f);
        return r < 0 ? r : -EINVAL;
    }
    n = redisFormatCommandArgv(&f->sync_cmd, 2, sync_argv, NULL);
    if (n < 0) {
        free(f);
        return -ENOMEM;
    }
    f->sync_len = (size_t)n;
    wid[dpr_fmt_u64(wid, worker)] = '\0';
    n = redisFormatCommandArgv(&f->leave_cmd, 3, leave_argv, NULL);
    if (n < 0) {
        free(f->sync_cmd);
        free(f);
        return -ENOMEM;
    }
    f->leave_len = (size_t)n;
    if (token && *token) {
        n = redisFormatCommandArgv(&f->auth_cmd, 4, auth_argv, NULL);
        if (n < 0) {
            free(f->leave_cmd);
            free(f->sync_cmd);
            free(f);
            return -ENOMEM;
        }
        f->auth_len = (size_t)n;
    }
    snprintf(f->domain, sizeof(f->domain), "%s", domain);
    f->addr = dpr_finders_text(&f->finders);
    snprintf(f->port, sizeof(f->port), "%u", (unsigned)dpr_finders_current(&f->finders)->port);
    f->loop = loop;
    f->worker = worker;
    f->cb = *cb;
    f->ud = ud;
    f->tls = tls;
    f->state = LINK_DOWN;
    f->backoff_ms = BACKOFF_MIN_MS;
    r = uv_timer_init(loop, &f->timer);
    if (r < 0) {
        free(f->sync_cmd);
        free(f->leave_cmd);
        wipe_auth(f);
        free(f);
        return r;
    }
    f->timer.data = f;
    r = uv_timer_start(&f->timer, tick, 0, TICK_MS);
    if (r < 0) {
        f->closing = true;
        uv_close((uv_handle_t *)&f->timer, timer_closed); /* frees f */
        return r;
    }
    *out = f;
    return 0;
}

void kv_finder_set_tls(kv_finder *f, dpr_tls_ctx *tls)
{
    if (f->tls && tls) /* (plain stays plain) */
        f->tls = tls;
}

void kv_finder_close(kv_finder *f)
{
    if (!f)
        return;
    f->closing = true;
    if (f->gai) {
        f->gai->f = NULL;
        uv_cancel((uv_req_t *)&f->gai->req);
        f->gai = NULL;
    }
    disconnect(f, "closing");
    if (f->reader) {
        redisReaderFree(f->reader);
        f->reader = NULL;
    }
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, timer_closed);
}

/* DPR.REPORT <domain> <world-line> <worker> <version> [<dep-w> <dep-v>]... */
static int format_report(const char *domain, const dpr_worker_report *r, char **cmd, size_t *len)
{
    size_t ndeps = dpr_depset_count(r->deps), argc = 5 + 2 * ndeps, it = 0, i = 5;
    const char **argv = malloc(argc * sizeof(*argv));
    char (*nums)[24] = malloc(argc * sizeof(*nums));
    dpr_dep d;
    int n, rc = 0;

    if (!argv || !nums) {
        rc = -ENOMEM;
        goto out;
    }
    argv[0] = "DPR.REPORT";
    argv[1] = domain;
    snprintf(nums[2], sizeof(nums[2]), "%" PRIu64, r->world_line);
    snprintf(nums[3], sizeof(nums[3]), "%" PRIu64, r->worker);
    snprintf(nums[4], sizeof(nums[4]), "%" PRIu64, r->version);
    for (int k = 2; k <= 4; k++)
        argv[k] = nums[k];
    while (i < argc && dpr_depset_next(r->deps, &it, &d)) {
        snprintf(nums[i], sizeof(nums[i]), "%" PRIu64, d.worker);
        argv[i] = nums[i];
        snprintf(nums[i + 1], sizeof(nums[i + 1]), "%" PRIu64, d.version);
        argv[i + 1] = nums[i + 1];
        i += 2;
    }
    n = redisFormatCommandArgv(cmd, (int)i, argv, NULL);
    if (n < 0)
        rc = -ENOMEM;
    else
        *len = (size_t)n;
out:
    free(argv);
    free(nums);
    return rc;
}

void kv_finder_hold(kv_finder *f)
{
    f->held = true;
}

void kv_finder_release(kv_finder *f, uint64_t version)
{
    if (version > f->released)
        f->released = version;
    send_reports(f);
}

int kv_finder_report(kv_finder *f, const dpr_worker_report *r)
{
    kv_queued_report rep = {r->world_line, r->version, NULL, 0};
    int rc;

    if (f->nreports == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        kv_queued_report *p = realloc(f->reports, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        f->reports = p;
        f->cap = cap;
    }
    rc = format_report(f->domain, r, &rep.cmd, &rep.len);
    if (rc < 0)
        return rc;
    f->reports[f->nreports++] = rep;
    send_reports(f);
    return 0;
}

/* Sends a request of which at most one is in flight (*inflight). */
static void send_once(kv_finder *f, enum pend_kind kind, const char *cmd, size_t len,
                      bool *inflight)
{
    int r;

    if (f->state != LINK_UP || *inflight)
        return;
    r = push_pend(f, kind);
    if (r == 0)
        r = send_bytes(f, cmd, len);
    if (r < 0) {
        disconnect(f, r == -ENOMEM ? "out of memory" : uv_strerror(r));
        return;
    }
    *inflight = true;
}

void kv_finder_sync(kv_finder *f)
{
    send_once(f, PEND_SYNC, f->sync_cmd, f->sync_len, &f->sync_inflight);
}

void kv_finder_leave(kv_finder *f)
{
    send_once(f, PEND_LEAVE, f->leave_cmd, f->leave_len, &f->leave_inflight);
}

void kv_finder_drop_old(kv_finder *f, uint64_t world_line)
{
    size_t k = 0, kept;
    while (k < f->nreports && f->reports[k].world_line < world_line)
        k++;
    /* kept reports were answered: the old ones go at once */
    kept = k < f->nkept ? k : f->nkept;
    if (kept) {
        for (size_t i = 0; i < kept; i++)
            free(f->reports[i].cmd);
        memmove(f->reports, f->reports + kept, (f->nreports - kept) * sizeof(*f->reports));
        f->nreports -= kept;
        f->nsent -= kept;
        f->nkept -= kept;
        k -= kept;
    }
    /* a kept report left is of the new world-line, and so is every later one */
    assert(f->nkept == 0 || k == 0);
    if (k <= f->nsent) {
        if (k > f->ndropped)
            f->ndropped = k;
        return;
    }
    /* sent ones wait for their replies; unsent ones go now */
    for (size_t i = f->nsent; i < k; i++)
        free(f->reports[i].cmd);
    memmove(f->reports + f->nsent, f->reports + k, (f->nreports - k) * sizeof(*f->reports));
    f->nreports -= k - f->nsent;
    f->ndropped = f->nsent;
}

size_t kv_finder_unacked(const kv_finder *f)
{
    return f->nreports - f->ndropped;
}

bool kv_finder_connected(const kv_finder *f)
{
    return f->state == LINK_UP;
}

bool kv_finder_fenced(const kv_finder *f)
{
    return f->fenced;
}
