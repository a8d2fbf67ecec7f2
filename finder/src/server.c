/* server.c - dpr-finder's RESP server with group commit (see finder_server.h). */
#include "dpr/finder_server.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "authz.h"
#include "cmd.h"
#include "common/list.h"
#include "common/addr.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/http.h"
#include "common/log.h"
#include "common/resp.h"
#include "common/tls.h"
#include "common/uvutil.h"
#include "dpr/finder_stats.h"
#include "request.h"

/* Stop reading from a client while this much output waits to be sent. */
#define MAX_PENDING_OUTPUT (16u * 1024 * 1024)
/* After SIGTERM, clients that do not take their replies are cut off. */
#define STOP_GRACE_MS 2000
#define READ_CHUNK (64 * 1024)
/* Refused TLS clients logged per second (anyone can connect). */
#define TLS_LOG_BURST 20

typedef struct dpr_server server;
typedef struct conn conn;

struct conn {
    uv_tcp_t tcp;
    server *srv;
    conn *prev, *next;      /* all connections */
    conn *next_flush;       /* in flush_list or commit_list */
    dpr_reqreader *rr;
    dpr_cmd_conn *cc;       /* its DPR.AUTH grants */
    dpr_tls_conn *tls;      /* a TLS connection's engine (NULL: plain) */
    bool tls_failed;        /* refused: only its alert goes out */
    bool tls_notified;      /* close_notify queued */
    dpr_buf out;            /* replies not yet released */
    size_t writes_pending;
    bool in_flush_list;
    bool in_commit_list;
    bool deferred;          /* requests wait for the commit in flight */
    bool close_after_flush; /* QUIT, protocol error, refused, EOF, stopping */
    bool closing;
    bool paused;            /* reading stopped for back-pressure */
    bool counted;           /* holds one of max_clients slots */
    char peer[DPR_ADDR_STR_MAX];
};

struct dpr_server {
    uv_loop_t own_loop;     /* dpr_server_run's loop */
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_tcp_t tls_listener;
    uv_signal_t sighup;
    uv_check_t check;
    uv_idle_t idle;
    uv_signal_t sigterm, sigint;
    uv_timer_t stop_timer;
    bool listener_open, check_open, idle_open, signals_open, timer_open;
    bool tls_listener_open;
    dpr_tls_ctx *tls;       /* for new TLS connections (reloaded) */
    uint64_t tls_log_ms;    /* refusal log lines: this second's start, */
    unsigned tls_log_lines; /* lines in it, */
    uint64_t tls_unlogged;  /* and refusals not logged */
    dpr_domains *ds;
    dpr_store *store;
    const dpr_server_config *cfg;
    conn *conns;
    size_t nconns;
    conn *flush_list;       /* connections with held replies */
    /* An asynchronous save in flight (dpr_store_is_async): the replies of
     * commit_list's connections wait for it; no request runs meanwhile. */
    bool committing;
    bool commit_dirty;      /* it saves commit_st (else it confirms) */
    dpr_domains_state commit_st;
    conn *commit_list;
    bool stopping;
    int fatal;            /* negative errno once a save failed */
    bool embedded;        /* started with dpr_server_start: no signals */
    dpr_server_hooks hooks;
    struct sockaddr_storage bound;
    dpr_finder_stats stats;
    uint64_t group_start_ns; /* the first reply held for the next commit (0: none) */
    uint64_t commit_group_ns; /* ... of the group whose save is in flight */
    uint64_t save_start_ns;
    dpr_http_server *metrics; /* cfg->metrics_listen */
    char readbuf[READ_CHUNK];
};

/* ---- connections -------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
    conn *c = h->data;

    dpr_reqreader_free(c->rr);
    dpr_cmd_conn_free(c->cc);
    dpr_tls_conn_free(c->tls);
    dpr_buf_free(&c->out);
    free(c);
}


/* Takes c out of a list linked by next_flush. */
static void unlink_flush(conn **head, conn *c)
{
    for (conn **pp = head; *pp; pp = &(*pp)->next_flush) {
        if (*pp == c) {
            *pp = c->next_flush;
            c->next_flush = NULL;
            return;
        }
    }
}

static void conn_close(conn *c)
{
    server *srv = c->srv;

    if (c->closing)
        return;
    c->closing = true;
    /* the lists can outlive this loop turn (a commit in flight) */
    if (c->in_flush_list) {
        unlink_flush(&srv->flush_list, c);
        c->in_flush_list = false;
    }
    if (c->in_commit_list) {
        unlink_flush(&srv->commit_list, c);
        c->in_commit_list = false;
    }
    if (c->close_after_flush)
        dpr_uv_discard_input((uv_handle_t *)&c->tcp);
    DPR_LIST_REMOVE(srv->conns, c);
    if (c->counted) {
        assert(srv->nconns > 0);
        srv->nconns--;
    }
    /* pending writes are cancelled; their callbacks run before ours */
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void stop_reading(conn *c)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
}

static void on_idle(uv_idle_t *h)
{
    (void)h; /* only there to keep the loop from sleeping */
}

/*
 * Queues c's replies for the next commit. Replies can be produced outside
 * the poll phase too (a write callback resuming a throttled client runs in
 * the pending phase): the idle handle makes sure the loop does not sleep
 * before the check handle has committed and released them.
 */
static void mark_for_flush(conn *c)
{
    server *srv = c->srv;

    /* (in the commit in flight, what it holds goes out with it; a closing
     * connection is unlinked for good: relinking either would leave a list
     * pointing at it after it is freed) */
    if (c->in_flush_list || c->in_commit_list || c->closing)
        return;
    c->in_flush_list = true;
    if (!srv->flush_list && !srv->group_start_ns)
        srv->group_start_ns = dpr_mono_ns();
    c->next_flush = srv->flush_list;
    srv->flush_list = c;
    if (srv->idle_open && !uv_is_active((uv_handle_t *)&srv->idle))
        uv_idle_start(&srv->idle, on_idle);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    server *srv = c->srv;

    (void)suggested;
    /* one read at a time on this thread: hiredis copies what we feed it */
    buf->base = srv->readbuf;
    buf->len = sizeof(srv->readbuf);
}

static void fail_conn(conn *c, const char *msg)
{
    /* a protocol error: answer it after the replies before it, then close */
    if (dpr_cmd_error(&c->out, msg) < 0) {
        conn_close(c);
        return;
    }
    c->close_after_flush = true;
    stop_reading(c);
    mark_for_flush(c);
}

/* Without a finder state (a follower): QUIT and PING are answered, every
 * other request gets the host's error (where the finder is). */
static int not_serving(server *srv, const conn *c, const dpr_request *req, dpr_buf *out,
                       unsigned *flags)
{
    const char *why = srv->hooks.not_serving
                          ? srv->hooks.not_serving(srv->hooks.arg, c->tls != NULL) : NULL;

    *flags = 0;
    if (req->argc >= 1 && req->argvlen[0] == 4 && strncasecmp(req->argv[0], "QUIT", 4) == 0) {
        *flags = DPR_CMD_CLOSE;
        return dpr_buf_append(out, "+OK\r\n", 5);
    }
    if (req->argc == 1 && req->argvlen[0] == 4 && strncasecmp(req->argv[0], "PING", 4) == 0)
        return dpr_buf_append(out, "+PONG\r\n", 7);
    return dpr_cmd_error(out, why ? why : "TRYAGAIN the finder is not served here");
}

/* A TLS peer that may not run req: a -ERR naming it and the command, and a
 * log line; the connection goes on (reads are still allowed). */
static int refuse_command(conn *c, const dpr_request *req)
{
    const dpr_tls_peer *peer = dpr_tls_conn_peer(c->tls);
    size_t before = c->out.len;

    if (dpr_authz_refuse(peer, req->argv[0], req->argvlen[0], &c->out) < 0) {
        log_error("client %s: out of memory; closing", c->peer);
        conn_close(c);
        return -ENOMEM;
    }
    /* the reply without "-ERR " and its line end */
    log_warning("client %s: refused: %.*s", c->peer, (int)(c->out.len - before - 7),
                c->out.data + before + 5);
    mark_for_flush(c);
    return 0;
}

static bool is_command(const dpr_request *req, const char *name)
{
    return req->argvlen[0] == strlen(name) && !strncasecmp(req->argv[0], name, req->argvlen[0]);
}

static dpr_finder_stats_view stats_view(const server *srv, char *listen, size_t cap)
{
    dpr_finder_stats_view v = {srv->embedded ? "agent" : "standalone", srv->ds != NULL, listen,
                               srv->nconns, true};
    if (srv->bound.ss_family)
        dpr_addr_format((const struct sockaddr *)&srv->bound, listen, cap);
    else
        listen[0] = '\0';
    return v;
}

/* INFO [section]: Redis' text of the finder's counters, a bulk string. */
static int info_reply(server *srv, const dpr_request *req, dpr_buf *out)
{
    char listen[DPR_ADDR_STR_MAX];
    dpr_finder_stats_view v = stats_view(srv, listen, sizeof(listen));
    dpr_buf text = DPR_BUF_INIT;
    int rc;

    if (req->argc > 2)
        return dpr_cmd_error(out, "ERR wrong number of arguments for 'info' command");
    rc = dpr_finder_stats_info(&srv->stats, &v, srv->ds, req->argc == 2 ? req->argv[1] : NULL,
                               req->argc == 2 ? req->argvlen[1] : 0, &text);
    if (rc == 0)
        dpr_resp_bulk(out, text.data ? text.data : "", text.len);
    dpr_buf_free(&text);
    return rc < 0 || dpr_buf_failed(out) ? -ENOMEM : 0;
}

int dpr_server_metrics(dpr_server *srv, bool per_worker, dpr_buf *out)
{
    char listen[DPR_ADDR_STR_MAX];
    dpr_finder_stats_view v = stats_view(srv, listen, sizeof(listen));
    v.per_worker = per_worker;
    return dpr_finder_stats_metrics(&srv->stats, &v, srv->ds, out);
}

static int metrics_page(void *arg, dpr_buf *out)
{
    dpr_server *srv = arg;
    return dpr_server_metrics(srv, !srv->cfg->metrics_no_workers, out);
}

static void handle_requests(conn *c)
{
    server *srv = c->srv;
    dpr_request req;
    unsigned flags;
    size_t before;
    char msg[256];
    int rc;

    if (srv->committing) {
        /* the replies of a commit in flight must not mix with later
         * ones: the buffered requests run once it is over */
        c->deferred = true;
        stop_reading(c);
        return;
    }
    for (;;) {
        /* back-pressure: a client that does not read its replies stops
         * being served (its requests stay buffered) until it catches up */
        if (c->out.len + uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) >
            MAX_PENDING_OUTPUT) {
            c->paused = true;
            stop_reading(c);
            return;
        }
        rc = dpr_reqreader_next(c->rr, &req);
        if (rc != 1)
            break;
        before = c->out.len;
        flags = 0;
        if (c->tls && !dpr_authz_allowed(dpr_tls_conn_peer(c->tls), req.argv[0],
                                         req.argvlen[0])) {
            if (refuse_command(c, &req) < 0)
                return;
            continue;
        }
        srv->stats.requests_total++;
        rc = srv->hooks.command ? srv->hooks.command(srv->hooks.arg, req.argc, req.argv,
                                                     req.argvlen, &c->out)
                                : 0;
        if (rc == 0 && is_command(&req, "INFO"))
            rc = info_reply(srv, &req, &c->out);
        else if (rc == 0 && srv->ds)
            rc = dpr_cmd_execute(srv->ds, c->cc, req.argc, req.argv, req.argvlen, &c->out,
                                 &flags);
        else if (rc == 0)
            rc = not_serving(srv, c, &req, &c->out, &flags);
        if (rc < 0) {
            log_error("client %s: out of memory; closing", c->peer);
            conn_close(c);
            return;
        }
        if (is_command(&req, "DPR.REPORT")) {
            if (c->out.len > before && c->out.data[before] == '+')
                srv->stats.reports_total++;
            else
                srv->stats.reports_failed++;
        }
        if (flags & DPR_CMD_DENIED) {
            /* the reply: "-ERR worker N is registered by its owner: ...\r\n"
             * or "-FENCED worker N ...\r\n" (never a token) */
            const char *reply = c->out.data + before;
            size_t n = c->out.len - before;
            if (n > 7 && memcmp(reply, "-ERR ", 5) == 0)
                log_warning("client %s: refused: %.*s", c->peer, (int)(n - 7), reply + 5);
            else if (n > 3 && reply[0] == '-')
                log_warning("client %s: refused: %.*s", c->peer, (int)(n - 3), reply + 1);
        }
        mark_for_flush(c);
        if (flags & DPR_CMD_CLOSE) {
            c->close_after_flush = true;
            stop_reading(c);
            return;
        }
    }
    if (rc < 0) {
        log_info("client %s: %s; closing", c->peer, dpr_reqreader_error(c->rr));
        snprintf(msg, sizeof(msg), "ERR %s", dpr_reqreader_error(c->rr));
        fail_conn(c, msg);
    }
}

static void on_write_done(uv_stream_t *stream, int status);

/* Sends what c's engine has to send now (handshake, alert; never held
 * replies, which enter the engine only in flush_conn). */
static int tls_send(conn *c)
{
    dpr_buf b;
    int rc;

    dpr_buf_init(&b);
    if (dpr_tls_conn_take(c->tls, &b) < 0) {
        dpr_buf_free(&b);
        return -ENOMEM;
    }
    if (b.len == 0) {
        dpr_buf_free(&b);
        return 0;
    }
    rc = dpr_uv_write((uv_stream_t *)&c->tcp, &b, on_write_done);
    if (rc == 0)
        c->writes_pending++;
    return rc;
}

/* A TLS client that failed the handshake (or broke the protocol): its
 * alert goes out, nothing it sent runs, it is closed. */
static void tls_refuse(conn *c)
{
    server *srv = c->srv;
    uint64_t now = dpr_mono_ms();

    if (now - srv->tls_log_ms >= 1000) {
        if (srv->tls_unlogged)
            log_warning("%llu more TLS clients refused",
                        (unsigned long long)srv->tls_unlogged);
        srv->tls_log_ms = now;
        srv->tls_log_lines = 0;
        srv->tls_unlogged = 0;
    }
    if (srv->tls_log_lines++ < TLS_LOG_BURST)
        log_warning("client %s: TLS refused: %s; closing the connection", c->peer,
                    dpr_tls_conn_errstr(c->tls));
    else
        srv->tls_unlogged++;
    c->tls_failed = true;
    c->close_after_flush = true;
    stop_reading(c);
    if (tls_send(c) < 0 || c->writes_pending == 0)
        conn_close(c);
}

/* Ciphertext arrived on a TLS connection: the plaintext goes to the
 * request reader; the handshake's bytes go out at once. */
static void tls_input(conn *c, const char *data, size_t n)
{
    bool was = dpr_tls_conn_established(c->tls);
    dpr_buf plain;
    ssize_t r;

    dpr_buf_init(&plain);
    r = dpr_tls_conn_input(c->tls, data, n, &plain);
    if (r < 0) {
        dpr_buf_free(&plain);
        tls_refuse(c);
        return;
    }
    if (!was && dpr_tls_conn_established(c->tls)) {
        char how[96], who[DPR_TLS_NAME_MAX + 96];
        dpr_tls_conn_describe(c->tls, how, sizeof(how));
        dpr_authz_describe(dpr_tls_conn_peer(c->tls), who, sizeof(who));
        log_debug("client %s: TLS %s, %s", c->peer, how, who);
    }
    if (tls_send(c) < 0) {
        dpr_buf_free(&plain);
        conn_close(c);
        return;
    }
    r = plain.len ? dpr_reqreader_feed(c->rr, plain.data, plain.len) : 0;
    dpr_buf_free(&plain);
    if (r < 0) {
        fail_conn(c, "ERR out of memory");
        return;
    }
    handle_requests(c);
    if (!c->closing && !c->close_after_flush && dpr_tls_conn_eof(c->tls)) {
        /* close_notify: the client is done sending */
        c->close_after_flush = true;
        stop_reading(c);
        mark_for_flush(c);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;

    (void)buf;
    if (c->closing || c->close_after_flush || c->srv->stopping || c->srv->fatal)
        return;
    if (nread == UV_EOF) {
        /* the client is done sending: answer what it sent, then close */
        c->close_after_flush = true;
        stop_reading(c);
        mark_for_flush(c);
        return;
    }
    if (nread < 0) {
        if (nread != UV_ECONNRESET)
            log_warning("client %s: read failed: %s", c->peer, uv_strerror((int)nread));
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->tls) {
        tls_input(c, buf->base, (size_t)nread);
        return;
    }
    if (dpr_reqreader_feed(c->rr, buf->base, (size_t)nread) < 0) {
        fail_conn(c, "ERR out of memory");
        return;
    }
    handle_requests(c);
}

static void resume_if_drained(conn *c)
{
    if (c->paused && !c->closing && !c->close_after_flush && !c->srv->stopping &&
        !c->srv->fatal && !c->deferred &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < MAX_PENDING_OUTPUT / 2) {
        c->paused = false;
        handle_requests(c); /* the ones left buffered when we paused */
        if (c->paused || c->closing || c->close_after_flush || c->deferred)
            return;
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
            conn_close(c);
    }
}

/* A write of released replies finished (its buffer is already freed). */
static void on_write_done(uv_stream_t *stream, int status)
{
    conn *c = stream->data;

    assert(c->writes_pending > 0);
    c->writes_pending--;
    if (c->closing)
        return;
    if (status < 0) {
        if (!dpr_uv_peer_gone(status))
            log_warning("client %s: write failed: %s", c->peer, uv_strerror(status));
        conn_close(c);
        return;
    }
    if (c->close_after_flush && c->writes_pending == 0 && c->out.len == 0) {
        conn_close(c);
        return;
    }
    resume_if_drained(c);
}

/* Releases c's held replies. */
static void flush_conn(conn *c)
{
    int rc;

    if (c->closing)
        return;
    if (c->tls && !c->tls_failed) {
        /* the released replies through the engine (and close_notify last) */
        rc = c->out.len ? dpr_tls_conn_write(c->tls, c->out.data, c->out.len) : 0;
        c->out.len = 0;
        if (rc == 0 && c->close_after_flush && !c->tls_notified) {
            c->tls_notified = true;
            rc = dpr_tls_conn_close_notify(c->tls);
        }
        if (rc == 0 && dpr_tls_conn_take(c->tls, &c->out) < 0)
            rc = -ENOMEM;
        if (rc < 0) {
            log_warning("client %s: TLS: %s; closing", c->peer,
                        rc == -ENOMEM ? "out of memory" : dpr_tls_conn_errstr(c->tls));
            conn_close(c);
            return;
        }
    }
    if (c->out.len > 0) {
        /* takes c->out's memory (c->out is empty afterwards, also on failure) */
        rc = dpr_uv_write((uv_stream_t *)&c->tcp, &c->out, on_write_done);
        if (rc < 0) {
            if (rc == UV_ENOMEM)
                log_error("client %s: out of memory; closing", c->peer);
            conn_close(c);
            return;
        }
        c->writes_pending++;
    }
    if (c->close_after_flush && c->writes_pending == 0) {
        conn_close(c);
        return;
    }
    if (!c->paused && !c->close_after_flush &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > MAX_PENDING_OUTPUT) {
        c->paused = true;
        stop_reading(c);
    }
}

/* ---- group commit --------------------------------------------------------- */

static void shut_down(server *srv);

/* A save failed (or this node lost the replicated state): nothing held is
 * ever answered. */
static void fail_commit(server *srv, int rc)
{
    srv->fatal = rc;
    shut_down(srv);
    if (srv->hooks.failed)
        srv->hooks.failed(srv->hooks.arg, rc);
}

/* st is durable: publish it. */
static void publish(server *srv, const dpr_domains_state *st)
{
    /* the held replies may go out now even if publishing fails: they
     * only show the working state, which is durable; SYNC from others
     * stays on the old published view until a later publish works */
    int rc = dpr_domains_publish(srv->ds, st);
    if (rc < 0)
        log_warning("publishing generation %llu failed: %s (will retry)",
                    (unsigned long long)st->generation, strerror(-rc));
    if (srv->hooks.committed)
        srv->hooks.committed(srv->hooks.arg);
}

/* Releases the held replies of list. */
static void flush_list(conn *c)
{
    conn *next;

    for (; c; c = next) {
        next = c->next_flush;
        c->next_flush = NULL;
        c->in_flush_list = c->in_commit_list = false;
        flush_conn(c);
    }
}

/* The requests that waited for a commit run now (their replies join the
 * next one). */
static void run_deferred(server *srv)
{
    conn *c, *next;

    for (c = srv->conns; c; c = next) {
        next = c->next;
        if (!c->deferred || c->closing)
            continue;
        c->deferred = false;
        handle_requests(c);
        if (c->closing || c->deferred || c->paused || c->close_after_flush)
            continue;
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
            conn_close(c);
    }
}

static void on_saved(void *arg, int status)
{
    server *srv = arg;

    srv->committing = false;
    if (status < 0 || srv->fatal) {
        /* (aborted meanwhile: whatever the store says, nothing goes out) */
        if (srv->commit_dirty)
            dpr_domains_state_free(&srv->commit_st);
        srv->commit_list = NULL;
        if (srv->fatal)
            return;
        if (status == -ENOTCONN)
            log_warning("this node no longer holds the finder state (leadership lost): "
                        "closing every client without answering");
        else
            log_error("saving the state failed: %s; exiting without answering (the state "
                      "is not durable)", dpr_store_error(srv->store));
        fail_commit(srv, status);
        return;
    }
    uint64_t now = dpr_mono_ns();
    dpr_histogram_observe(&srv->stats.save_seconds, (double)(now - srv->save_start_ns) / 1e9);
    if (srv->commit_dirty) {
        srv->stats.saves_total++;
        publish(srv, &srv->commit_st);
        dpr_domains_state_free(&srv->commit_st);
    }
    conn *list = srv->commit_list;
    srv->commit_list = NULL;
    if (list && srv->commit_group_ns)
        dpr_histogram_observe(&srv->stats.commit_seconds,
                              (double)(now - srv->commit_group_ns) / 1e9);
    flush_list(list);
    run_deferred(srv);
    if (srv->flush_list || dpr_domains_dirty(srv->ds))
        dpr_server_commit_soon(srv);
}

/* Starts an asynchronous save of the working state (or, when only reads
 * are held, a confirmation that it is still current); the held replies go
 * out in on_saved. */
static void commit_async(server *srv)
{
    int rc;

    srv->commit_dirty = dpr_domains_dirty(srv->ds);
    if (srv->commit_dirty) {
        rc = dpr_domains_get_state(srv->ds, &srv->commit_st);
        if (rc < 0) {
            log_error("cannot copy the finder state: %s; exiting without answering",
                      strerror(-rc));
            fail_commit(srv, rc);
            return;
        }
    }
    rc = dpr_store_save_async(srv->store, srv->commit_dirty ? &srv->commit_st : NULL, on_saved,
                              srv);
    if (rc < 0) {
        if (srv->commit_dirty)
            dpr_domains_state_free(&srv->commit_st);
        log_error("saving the state failed: %s; exiting without answering",
                  dpr_store_error(srv->store));
        fail_commit(srv, rc);
        return;
    }
    for (conn *c = srv->flush_list; c; c = c->next_flush) {
        c->in_flush_list = false;
        c->in_commit_list = true;
    }
    srv->commit_list = srv->flush_list;
    srv->flush_list = NULL;
    srv->commit_group_ns = srv->group_start_ns;
    srv->group_start_ns = 0;
    srv->save_start_ns = dpr_mono_ns();
    srv->committing = true;
    if (srv->idle_open)
        uv_idle_stop(&srv->idle);
}

/* Makes the working state durable, publishes it, releases held replies. */
static void commit_and_flush(server *srv)
{
    dpr_domains_state st;
    conn *c;
    int rc;

    if (srv->fatal || srv->committing)
        return;
    if (srv->ds && dpr_store_is_async(srv->store)) {
        if (srv->flush_list || dpr_domains_dirty(srv->ds))
            commit_async(srv);
        return;
    }
    if (srv->ds && dpr_domains_dirty(srv->ds)) {
        rc = dpr_domains_get_state(srv->ds, &st);
        if (rc < 0) {
            log_error("cannot copy the finder state: %s; exiting without answering",
                      strerror(-rc));
            fail_commit(srv, rc);
            return;
        }
        uint64_t t0 = dpr_mono_ns();
        rc = dpr_store_save(srv->store, &st);
        dpr_histogram_observe(&srv->stats.save_seconds, (double)(dpr_mono_ns() - t0) / 1e9);
        if (rc == 0)
            srv->stats.saves_total++;
        if (rc < 0) {
            log_error("saving the state failed: %s; exiting without answering (the state "
                      "is not durable)", dpr_store_error(srv->store));
            dpr_domains_state_free(&st);
            fail_commit(srv, rc);
            return;
        }
        publish(srv, &st);
        dpr_domains_state_free(&st);
    }
    c = srv->flush_list;
    srv->flush_list = NULL;
    if (srv->idle_open)
        uv_idle_stop(&srv->idle);
    if (c && srv->group_start_ns)
        dpr_histogram_observe(&srv->stats.commit_seconds,
                              (double)(dpr_mono_ns() - srv->group_start_ns) / 1e9);
    srv->group_start_ns = 0;
    flush_list(c);
}

static void on_check(uv_check_t *h)
{
    commit_and_flush(h->data);
}

/* ---- accepting -------------------------------------------------------------- */

static void on_connection(uv_stream_t *l, int status)
{
    server *srv = l->data;
    conn *c;
    int rc;

    if (status < 0) {
        log_warning("accept failed: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("out of memory accepting a client");
        return;
    }
    c->srv = srv;
    dpr_buf_init(&c->out);
    snprintf(c->peer, sizeof(c->peer), "?");
    rc = uv_tcp_init(srv->loop, &c->tcp);
    if (rc < 0) {
        free(c);
        log_warning("accept failed: %s", uv_strerror(rc));
        return;
    }
    c->tcp.data = c;
    DPR_LIST_PREPEND(srv->conns, c);
    srv->stats.connections_total++;
    rc = uv_accept(l, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        log_warning("accept failed: %s", uv_strerror(rc));
        conn_close(c);
        return;
    }
    dpr_uv_peer_name(&c->tcp, c->peer, sizeof(c->peer));
    if (srv->stopping || srv->nconns >= srv->cfg->max_clients) {
        log_warning("client %s refused: max number of clients (%zu) reached", c->peer,
                    srv->cfg->max_clients);
        if (l == (uv_stream_t *)&srv->tls_listener) {
            conn_close(c); /* no plain text on a TLS port */
            return;
        }
        if (dpr_cmd_error(&c->out, "ERR max number of clients reached") < 0) {
            conn_close(c);
            return;
        }
        c->close_after_flush = true;
        mark_for_flush(c);
        return;
    }
    c->counted = true;
    srv->nconns++;
    uv_tcp_nodelay(&c->tcp, 1);
    rc = dpr_reqreader_new(DPR_CMD_MAX_ARGS, srv->cfg->max_request_bytes, &c->rr);
    if (rc == 0)
        rc = dpr_cmd_conn_new(&c->cc);
    if (rc == 0 && l == (uv_stream_t *)&srv->tls_listener) {
        dpr_err err = DPR_ERR_INIT;
        rc = dpr_tls_conn_new(srv->tls, NULL, &c->tls, &err);
        if (rc < 0) {
            log_error("client %s: %s; closing", c->peer, dpr_err_str(&err, rc));
            conn_close(c);
            return;
        }
    }
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        log_error("client %s: cannot start reading: %s", c->peer,
                  rc == -ENOMEM ? "out of memory" : uv_strerror(rc));
        conn_close(c);
    }
}

/* ---- stopping ------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void close_service_handles(server *srv)
{
    dpr_http_close(srv->metrics);
    srv->metrics = NULL;
    if (srv->listener_open) {
        srv->listener_open = false;
        uv_close((uv_handle_t *)&srv->listener, on_handle_closed);
    }
    if (srv->tls_listener_open) {
        srv->tls_listener_open = false;
        uv_close((uv_handle_t *)&srv->tls_listener, on_handle_closed);
    }
    if (srv->signals_open) {
        srv->signals_open = false;
        uv_close((uv_handle_t *)&srv->sigterm, on_handle_closed);
        uv_close((uv_handle_t *)&srv->sigint, on_handle_closed);
        uv_close((uv_handle_t *)&srv->sighup, on_handle_closed);
    }
    if (srv->check_open) {
        srv->check_open = false;
        uv_close((uv_handle_t *)&srv->check, on_handle_closed);
    }
    if (srv->idle_open) {
        srv->idle_open = false;
        uv_close((uv_handle_t *)&srv->idle, on_handle_closed);
    }
}

static void close_timer(server *srv)
{
    if (srv->timer_open) {
        srv->timer_open = false;
        uv_close((uv_handle_t *)&srv->stop_timer, on_handle_closed);
    }
}

/* After a failed save: drop every held reply and close everything. */
static void shut_down(server *srv)
{
    close_service_handles(srv);
    close_timer(srv);
    while (srv->conns)
        conn_close(srv->conns);
    srv->flush_list = NULL;
    srv->commit_list = NULL;
}

static void on_stop_timer(uv_timer_t *t)
{
    server *srv = t->data;

    if (srv->conns)
        log_warning("closing %zu client(s) that did not take their replies", srv->nconns);
    while (srv->conns)
        conn_close(srv->conns);
    close_timer(srv);
}

/* Stops accepting; requests already read get their replies, then every
 * connection closes (cut off after STOP_GRACE_MS). */
static void begin_stop(server *srv)
{
    conn *c, *next;

    if (srv->stopping)
        return;
    srv->stopping = true;
    /* requests already read get their (durable) replies */
    commit_and_flush(srv);
    if (srv->fatal)
        return;
    close_service_handles(srv);
    for (c = srv->conns; c; c = next) {
        next = c->next;
        stop_reading(c);
        c->close_after_flush = true;
        if (c->writes_pending == 0)
            conn_close(c);
    }
    if (srv->conns && uv_timer_start(&srv->stop_timer, on_stop_timer, STOP_GRACE_MS, 0) == 0)
        return;
    close_timer(srv);
}

static void on_signal(uv_signal_t *h, int signum)
{
    server *srv = h->data;

    if (srv->stopping)
        return;
    log_info("%s received, stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    begin_stop(srv);
}

static void on_sighup(uv_signal_t *h, int signum)
{
    (void)signum;
    (void)dpr_server_reload_tls(h->data);
}

/* ---- running ---------------------------------------------------------------- */

/* Listens on addr ("HOST:PORT") with h; *bound gets the real address. */
static int listen_at(server *srv, uv_tcp_t *h, bool *open, const char *addr,
                     struct sockaddr_storage *bound)
{
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    dpr_hostport hp;
    dpr_err err = DPR_ERR_INIT;
    int rc;

    if (dpr_hostport_parse(addr, DPR_HOSTPORT_ANY | DPR_HOSTPORT_PORT0, &hp, &err) < 0 ||
        dpr_hostport_resolve(&hp, true, &ss, NULL, &err) < 0) {
        log_error("listen address: %s", err.msg);
        return -EINVAL;
    }
    rc = uv_tcp_init(srv->loop, h);
    if (rc < 0) {
        log_error("cannot start the server: %s", uv_strerror(rc));
        return rc;
    }
    *open = true;
    h->data = srv;
    rc = uv_tcp_bind(h, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)h, 511, on_connection);
    if (rc == 0)
        rc = uv_tcp_getsockname(h, (struct sockaddr *)bound, &sslen);
    if (rc < 0)
        log_error("cannot listen on %s: %s", addr, uv_strerror(rc));
    return rc;
}

/* The plain listener (unless plain_off) and the TLS one (tls_listen). */
static int start_listeners(server *srv)
{
    const dpr_server_config *cfg = srv->cfg;
    struct sockaddr_storage tls_bound;
    dpr_err err = DPR_ERR_INIT;
    char shown[DPR_ADDR_STR_MAX];
    int rc;

    if (!cfg->plain_off) {
        rc = listen_at(srv, &srv->listener, &srv->listener_open, cfg->listen, &srv->bound);
        if (rc < 0)
            return rc;
        dpr_addr_format((struct sockaddr *)&srv->bound, shown, sizeof(shown));
        if (!srv->embedded) /* tests and scripts wait for this text */
            log_info("dpr-finder listening on %s", shown);
    }
    if (!cfg->tls_listen)
        return 0;
    rc = dpr_tls_ctx_new(&cfg->tls, true, &srv->tls, &err);
    if (rc < 0) {
        log_error("cannot start the TLS port: %s", dpr_err_str(&err, rc));
        return rc;
    }
    rc = listen_at(srv, &srv->tls_listener, &srv->tls_listener_open, cfg->tls_listen,
                   &tls_bound);
    if (rc < 0)
        return rc;
    if (cfg->plain_off)
        srv->bound = tls_bound;
    dpr_addr_format((struct sockaddr *)&tls_bound, shown, sizeof(shown));
    log_info("dpr-finder listening on %s (TLS, client certificates: %s)", shown,
             dpr_tls_verify_name(cfg->tls.verify));
    return 0;
}

static int start(server *srv)
{
    int rc;

    dpr_finder_stats_init(&srv->stats);
    rc = start_listeners(srv);
    if (rc < 0)
        return rc;
    if (srv->cfg->metrics_listen) {
        dpr_err err;
        rc = dpr_http_start(&srv->metrics, srv->loop, srv->cfg->metrics_listen, metrics_page,
                            srv, &err);
        if (rc < 0) {
            log_error("%s", err.msg);
            return rc;
        }
        log_info("metrics on http://%s/metrics", dpr_http_bound(srv->metrics));
    }
    rc = uv_check_init(srv->loop, &srv->check);
    if (rc < 0)
        goto uv_fail;
    srv->check_open = true;
    srv->check.data = srv;
    rc = uv_check_start(&srv->check, on_check);
    if (rc < 0)
        goto uv_fail;
    rc = uv_idle_init(srv->loop, &srv->idle);
    if (rc < 0)
        goto uv_fail;
    srv->idle_open = true;
    srv->idle.data = srv;
    rc = uv_timer_init(srv->loop, &srv->stop_timer);
    if (rc < 0)
        goto uv_fail;
    srv->timer_open = true;
    srv->stop_timer.data = srv;
    if (srv->embedded)
        return 0;
    rc = uv_signal_init(srv->loop, &srv->sigterm);
    if (rc == 0)
        rc = uv_signal_init(srv->loop, &srv->sigint);
    if (rc == 0)
        rc = uv_signal_init(srv->loop, &srv->sighup);
    if (rc < 0)
        goto uv_fail;
    srv->signals_open = true;
    srv->sigterm.data = srv;
    srv->sigint.data = srv;
    srv->sighup.data = srv;
    rc = uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    if (rc == 0)
        rc = uv_signal_start(&srv->sigint, on_signal, SIGINT);
    if (rc == 0)
        rc = uv_signal_start(&srv->sighup, on_sighup, SIGHUP);
    if (rc < 0)
        goto uv_fail;
    return 0;
uv_fail:
    log_error("cannot start the server: %s", uv_strerror(rc));
    return rc;
}

int dpr_server_run(dpr_domains *ds, dpr_store *store, const dpr_server_config *cfg)
{
    server *srv = calloc(1, sizeof(*srv));
    int rc;

    if (!srv) {
        log_error("out of memory");
        return -ENOMEM;
    }
    signal(SIGPIPE, SIG_IGN);
    srv->ds = ds;
    srv->store = store;
    srv->cfg = cfg;
    srv->loop = &srv->own_loop;
    rc = uv_loop_init(srv->loop);
    if (rc < 0) {
        log_error("cannot create the event loop: %s", uv_strerror(rc));
        free(srv);
        return rc;
    }
    rc = start(srv);
    if (rc < 0) {
        shut_down(srv);
    } else {
        uv_run(srv->loop, UV_RUN_DEFAULT);
        rc = srv->fatal;
    }
    /* everything is closing: let the close callbacks run */
    shut_down(srv);
    uv_run(srv->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(srv->loop) != 0)
        log_warning("event loop still had handles at exit");
    dpr_tls_ctx_free(srv->tls);
    free(srv);
    return rc;
}

/* ---- hosted on someone else's loop -------------------------------------------- */

int dpr_server_start(uv_loop_t *loop, dpr_domains *ds, dpr_store *store,
                     const dpr_server_config *cfg, const dpr_server_hooks *hooks,
                     dpr_server **out)
{
    server *srv = calloc(1, sizeof(*srv));
    int rc;

    if (!srv) {
        log_error("out of memory");
        return -ENOMEM;
    }
    srv->loop = loop;
    srv->embedded = true;
    srv->ds = ds;
    srv->store = store;
    srv->cfg = cfg;
    if (hooks)
        srv->hooks = *hooks;
    rc = start(srv);
    if (rc < 0) {
        /* the handles close on the caller's loop; srv must outlive them */
        shut_down(srv);
        srv->stopping = true;
        *out = srv;
        return rc;
    }
    *out = srv;
    return 0;
}

const struct sockaddr_storage *dpr_server_bound(const dpr_server *srv)
{
    return &srv->bound;
}

void dpr_server_commit_soon(dpr_server *srv)
{
    if (srv->idle_open && !srv->stopping && !uv_is_active((uv_handle_t *)&srv->idle))
        uv_idle_start(&srv->idle, on_idle);
}

void dpr_server_stop(dpr_server *srv)
{
    if (!srv || srv->stopping)
        return;
    begin_stop(srv);
}

void dpr_server_abort(dpr_server *srv)
{
    if (!srv || srv->fatal)
        return;
    srv->stopping = true;
    srv->fatal = -ECANCELED;
    shut_down(srv);
}

int dpr_server_reload_tls(dpr_server *srv)
{
    dpr_tls_ctx *fresh = NULL;
    dpr_err err = DPR_ERR_INIT;
    char what[400];
    int rc;

    if (!srv->tls) {
        log_info("SIGHUP: no TLS port: nothing to reload");
        return 0;
    }
    rc = dpr_tls_ctx_new(&srv->cfg->tls, true, &fresh, &err);
    if (rc < 0) {
        log_error("SIGHUP: TLS certificates not reloaded, new connections keep the old ones: %s",
                  dpr_err_str(&err, rc));
        return rc;
    }
    dpr_tls_ctx_free(srv->tls); /* connections made from it keep it */
    srv->tls = fresh;
    dpr_tls_ctx_describe(fresh, what, sizeof(what));
    log_notice("SIGHUP: TLS certificates reloaded for new connections: %s", what);
    return 0;
}

void dpr_server_free(dpr_server *srv)
{
    if (srv)
        dpr_tls_ctx_free(srv->tls);
    free(srv);
}
