/* control.c - see control.h. */
#include "control.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/fs.h"
#include "common/list.h"
#include "common/log.h"
#include "common/uvutil.h"

#define READ_CHUNK (64 * 1024)
/* The most a connection buffers: one maximal line and its newline. */
#define INPUT_MAX ((size_t)AGENT_MAX_LINE + 1)
/* The first allocation for a connection's input (grown by doubling). */
#define INPUT_MIN 1024
/* A client that does not read its replies stops being read past this (as
 * much as an event stream may have queued). */
#define MAX_PENDING_OUTPUT (1024u * 1024)
/* Connections the kernel queues until the agent accepts them (it caps this
 * at net.core.somaxconn): a burst must not make connect() fail with EAGAIN
 * for clients with non-blocking sockets. */
#define LISTEN_BACKLOG 1024
/* Refusals logged one by one per second; the rest are counted. */
#define REFUSALS_LOGGED_PER_SEC 10
/* TCP keepalive of control connections: a remote peer that vanished (its
 * host crashed, the network split) is noticed even on an event stream,
 * which has no idle timeout, and gives its slot back. */
#define TCP_KEEPALIVE_SEC 60

/*
 * Log lines of refusals (anyone can cause them) are rate limited: at most
 * REFUSALS_LOGGED_PER_SEC a second one by one, the rest counted and their
 * number logged at the end of the second.
 */
typedef struct refusal_log {
    agent_control *ctl;
    const char *what;      /* "connections", "requests over TCP" */
    uv_timer_t timer;
    bool timer_open;
    uint64_t since_ms;     /* window start */
    size_t logged, quiet;  /* in this window: logged, not logged */
} refusal_log;

struct agent_client {
    union {                /* the connection: a pipe, or TCP (peer.remote) */
        uv_handle_t handle;
        uv_stream_t stream;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } conn;
    uv_timer_t idle_timer; /* served connections only */
    agent_control *ctl;
    agent_client *prev, *next;
    dpr_buf in;            /* bytes of the line being read; in.cap counts in ctl->input_bytes */
    agent_peer peer;
    size_t writes_pending;
    bool served;           /* in ctl->clients and counted; false: refused at accept */
    bool stream;           /* events only */
    bool make_stream;      /* becomes a stream after the current reply */
    bool close_after_write;
    bool closing;
    bool paused;
    agent_pending *pending; /* a request answered later: no further line runs */
    int handles;           /* conn (+ idle timer) still to be closed */
    char name[AGENT_PEER_ADDR_MAX]; /* for logs: "pid 12 uid 0", "10.0.0.5:41234" */
};

struct agent_pending {
    agent_client *client;  /* NULL once the client went away */
};

const char agent_reply_deferred_marker;

struct agent_control {
    uv_loop_t *loop;
    uv_pipe_t listener;
    bool listener_open;
    uv_tcp_t tcp_listener;  /* cfg.listen */
    bool tcp_listener_open;
    char tcp_address[DPR_ADDR_STR_MAX]; /* bound; "" when none */
    bool closing;
    size_t open_handles;   /* listeners, timers and clients still to be closed */
    agent_control_config cfg;
    char *path;
    char *listen;          /* cfg.listen's copy */
    agent_control_handler handler;
    void *arg;
    agent_client *clients; /* served connections */
    size_t nclients, nstreams;
    size_t input_bytes;    /* sum of in.cap over the served connections */
    dpr_buf deny_line;     /* the permission_denied line, made once */
    refusal_log refused_conns;    /* connections refused at accept */
    refusal_log refused_requests; /* requests refused over TCP (read-only) */
    char readbuf[READ_CHUNK];
};

static void maybe_free_ctl(agent_control *ctl)
{
    if (ctl->closing && ctl->open_handles == 0) {
        dpr_buf_free(&ctl->deny_line);
        free(ctl->path);
        free(ctl->listen);
        free(ctl);
    }
}

static void on_client_closed(uv_handle_t *h)
{
    agent_client *c = h->data;
    agent_control *ctl = c->ctl;

    if (--c->handles > 0)
        return;
    dpr_buf_free(&c->in);
    free(c);
    ctl->open_handles--;
    maybe_free_ctl(ctl);
}

/* Gives back the connection's input buffer (nothing more will be read). */
static void input_release(agent_client *c)
{
    assert(c->ctl->input_bytes >= c->in.cap);
    c->ctl->input_bytes -= c->in.cap;
    dpr_buf_free(&c->in);
}

static void client_close(agent_client *c)
{
    agent_control *ctl = c->ctl;

    if (c->closing)
        return;
    c->closing = true;
    if (c->pending) {
        c->pending->client = NULL; /* its reply goes nowhere */
        c->pending = NULL;
    }
    if (c->served) {
        dpr_uv_discard_input(&c->conn.handle);
        DPR_LIST_REMOVE(ctl->clients, c);
        ctl->nclients--;
        if (c->stream)
            ctl->nstreams--;
        input_release(c);
        uv_close((uv_handle_t *)&c->idle_timer, on_client_closed);
    }
    uv_close(&c->conn.handle, on_client_closed);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void process_lines(agent_client *c);
static void on_idle(uv_timer_t *t);

/*
 * The idle timer runs while the agent waits for the client's bytes: not
 * while a reply is being written (or the connection is paused because its
 * replies are not read), and never on an event stream. It starts when the
 * connection starts waiting and is not extended by partial lines, so a
 * request must be complete within idle_timeout_ms.
 */
static void idle_update(agent_client *c)
{
    bool waiting = !c->stream && !c->close_after_write && !c->paused && c->writes_pending == 0 &&
                   !c->pending;

    if (c->closing)
        return;
    if (!waiting)
        uv_timer_stop(&c->idle_timer);
    else if (!uv_is_active((uv_handle_t *)&c->idle_timer))
        uv_timer_start(&c->idle_timer, on_idle, c->ctl->cfg.idle_timeout_ms, 0);
}

static void on_write_done(uv_stream_t *s, int status)
{
    agent_client *c = s->data;

    c->writes_pending--;
    if (c->closing)
        return;
    if (status < 0) {
        if (!dpr_uv_peer_gone(status))
            log_warning("control client %s: write failed: %s", c->name, uv_strerror(status));
        client_close(c);
        return;
    }
    if (c->close_after_write && c->writes_pending == 0) {
        client_close(c);
        return;
    }
    if (c->paused &&
        uv_stream_get_write_queue_size(&c->conn.stream) < MAX_PENDING_OUTPUT / 2) {
        c->paused = false;
        process_lines(c);
        if (!c->closing && !c->paused && !c->close_after_write &&
            uv_read_start(&c->conn.stream, on_alloc, on_read) < 0)
            client_close(c);
    }
    idle_update(c);
}

/* Queues one line (takes the memory of *line; *line is empty afterwards). */
static int send_line(agent_client *c, dpr_buf *line)
{
    int rc;

    if (c->closing) {
        dpr_buf_free(line);
        return -EPIPE;
    }
    rc = dpr_uv_write(&c->conn.stream, line, on_write_done);
    if (rc < 0)
        return rc;
    c->writes_pending++;
    return 0;
}

static void send_json(agent_client *c, json_t *reply)
{
    static const char oom[] = "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"internal\","
                              "\"message\":\"out of memory\"}}\n";
    dpr_buf line = DPR_BUF_INIT;

    if (!reply || agent_json_line(reply, &line) < 0) {
        dpr_buf_reset(&line);
        if (dpr_buf_append(&line, oom, sizeof(oom) - 1) < 0) {
            dpr_buf_free(&line);
            client_close(c);
            return;
        }
    }
    if (send_line(c, &line) < 0)
        client_close(c);
}

/* Sends an error as the connection's last line: stops reading, drops the
 * input, and closes once the line is written. */
static void fail_and_close(agent_client *c, const char *code, const char *msg)
{
    json_t *reply = agent_reply_error(NULL, code, msg, NULL);

    uv_read_stop(&c->conn.stream);
    c->close_after_write = true;
    input_release(c);
    send_json(c, reply);
    json_decref(reply);
    if (!c->closing && c->writes_pending == 0)
        client_close(c);
    else
        idle_update(c);
}

static void on_idle(uv_timer_t *t)
{
    agent_client *c = t->data;
    char msg[160];

    if (c->closing)
        return;
    if (c->in.len > 0) {
        log_info("control client %s: request line not completed within %u ms; closing",
                 c->name, c->ctl->cfg.idle_timeout_ms);
        snprintf(msg, sizeof(msg), "request line not completed within %u ms "
                 "(control.idle_timeout_ms); closing the connection",
                 c->ctl->cfg.idle_timeout_ms);
        fail_and_close(c, AGENT_E_BAD_REQUEST, msg);
    } else {
        log_debug("control client %s: idle for %u ms; closing", c->name,
                  c->ctl->cfg.idle_timeout_ms);
        snprintf(msg, sizeof(msg), "idle for %u ms (control.idle_timeout_ms): closing the "
                 "connection; connect again to send more requests",
                 c->ctl->cfg.idle_timeout_ms);
        fail_and_close(c, AGENT_E_UNAVAILABLE, msg);
    }
}

static void on_refusal_timer(uv_timer_t *t)
{
    refusal_log *rl = t->data;

    log_notice("control socket: %zu more %s refused (at most %d a second are logged one by "
               "one)", rl->quiet, rl->what, REFUSALS_LOGGED_PER_SEC);
    rl->since_ms = dpr_mono_ms();
    rl->logged = rl->quiet = 0;
}

/* True when this refusal may be logged; the others are counted and their
 * number logged at the end of the second. */
static bool refusal_logged(refusal_log *rl)
{
    uint64_t now = dpr_mono_ms(), spent;

    if (rl->quiet == 0 && now - rl->since_ms >= 1000) {
        rl->since_ms = now;
        rl->logged = 0;
    }
    if (rl->logged < REFUSALS_LOGGED_PER_SEC) {
        rl->logged++;
        return true;
    }
    if (rl->quiet++ == 0) {
        spent = now - rl->since_ms;
        uv_timer_start(&rl->timer, on_refusal_timer, spent < 1000 ? 1000 - spent : 0, 0);
    }
    return false;
}

/*
 * What a TCP caller may do while control.remote_access is "read-only": an
 * allow-list of the ops that change nothing, so that an op added later is
 * refused over TCP until someone decides otherwise.
 */
static bool remote_read_only_allows(const agent_request *req)
{
    switch (req->op) {
    case AGENT_OP_STATUS:
    case AGENT_OP_NODES:
    case AGENT_OP_EVENTS:
    case AGENT_OP_PLAN:
        return true;
    case AGENT_OP_APPLY:
        return req->dry_run != 0;
    case AGENT_OP_ROLLOUT:
        return strcmp(req->action, "status") == 0;
    default:
        return false;
    }
}

/* The reply to a request that a TCP caller may not make. */
static json_t *remote_refusal(agent_client *c, const agent_request *req)
{
    const char *op = agent_op_name(req->op);
    char msg[240];

    if (refusal_logged(&c->ctl->refused_requests))
        log_notice("control client %s: %s refused: control.remote_access is read-only",
                   c->name, op);
    snprintf(msg, sizeof(msg), "%s is refused over TCP: this agent's control.remote_access is "
             "read-only (set \"full\" to allow, only on a trusted network until TLS)", op);
    return agent_reply_error(req->id, AGENT_E_PERMISSION_DENIED, msg, NULL);
}

static void handle_line(agent_client *c, char *line, size_t len)
{
    agent_control *ctl = c->ctl;
    agent_request req;
    json_t *reply = NULL;

    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (len == 0)
        return; /* blank lines are ignored */
    if (agent_request_parse(line, len, &req, &reply) == 0) {
        if (c->peer.remote && !ctl->cfg.remote_full && !remote_read_only_allows(&req)) {
            reply = remote_refusal(c, &req);
        } else {
            reply = ctl->handler(ctl->arg, c, &req);
            if (reply == AGENT_REPLY_DEFERRED) {
                agent_request_free(&req);
                idle_update(c);
                return; /* agent_pending_reply sends it */
            }
            if (!reply)
                reply = agent_reply_error(req.id, AGENT_E_INTERNAL, "internal error (see the "
                                          "agent's log)", NULL);
        }
        agent_request_free(&req);
    }
    send_json(c, reply);
    json_decref(reply);
    if (c->make_stream && !c->closing) {
        c->make_stream = false;
        c->stream = true;
        ctl->nstreams++;
    }
}

/* After lines were consumed: an empty buffer is given back, a mostly empty
 * big one shrunk, so that an idle connection holds (almost) nothing. */
static void input_shrink(agent_client *c)
{
    agent_control *ctl = c->ctl;
    size_t cap;
    char *p;

    if (c->in.len == 0) {
        input_release(c);
        return;
    }
    if (c->in.cap <= READ_CHUNK || c->in.len > c->in.cap / 4)
        return;
    cap = c->in.cap / 2;
    while (cap / 2 >= c->in.len && cap / 2 >= INPUT_MIN)
        cap /= 2;
    p = realloc(c->in.data, cap);
    if (!p)
        return; /* keeps the bigger block */
    ctl->input_bytes -= c->in.cap - cap;
    c->in.data = p;
    c->in.cap = cap;
}

static void process_lines(agent_client *c)
{
    size_t start = 0;

    while (!c->closing && !c->stream && !c->close_after_write && !c->pending) {
        char *nl = start < c->in.len ? memchr(c->in.data + start, '\n', c->in.len - start)
                                     : NULL; /* (no buffer at all when nothing waits) */
        size_t n;

        if (!nl)
            break;
        n = (size_t)(nl - (c->in.data + start));
        if (n > AGENT_MAX_LINE) {
            fail_and_close(c, AGENT_E_BAD_REQUEST, "request line longer than 1 MiB");
            return;
        }
        handle_line(c, c->in.data + start, n);
        start += n + 1;
        if (uv_stream_get_write_queue_size(&c->conn.stream) > MAX_PENDING_OUTPUT) {
            c->paused = true;
            uv_read_stop(&c->conn.stream);
            break;
        }
    }
    if (c->closing || c->close_after_write)
        return; /* the input is gone */
    if (c->stream)
        start = c->in.len; /* what follows `events` is ignored */
    dpr_buf_consume(&c->in, start);
    input_shrink(c);
    if (c->in.len > AGENT_MAX_LINE) {
        fail_and_close(c, AGENT_E_BAD_REQUEST, "request line longer than 1 MiB");
        return;
    }
    idle_update(c);
}

/* Whether x is root on the Unix socket (a TCP caller never is). */
static bool is_root(const agent_client *x)
{
    return !x->peer.remote && x->peer.uid == 0;
}

/*
 * The served connection to close when the input buffers would exceed the
 * budget: the one holding the most, non-root connections before root's; c
 * (which wants to hold c_cap) only when it is strictly the biggest, so a
 * connection that sits on a partial line goes before one still sending.
 */
static size_t holder_rank(const agent_client *x, size_t cap)
{
    return (!is_root(x) ? SIZE_MAX / 2 : 0) + cap; /* cap <= INPUT_MAX */
}

static agent_client *largest_holder(agent_control *ctl, agent_client *c, size_t c_cap)
{
    agent_client *best = NULL, *o;

    for (o = ctl->clients; o; o = o->next)
        if (o != c && !o->closing && o->in.cap > 0 &&
            (!best || holder_rank(o, o->in.cap) > holder_rank(best, best->in.cap)))
            best = o;
    if (!best || holder_rank(c, c_cap) > holder_rank(best, best->in.cap))
        best = c;
    return best;
}

/*
 * Makes room in c's input for `extra` more bytes, within INPUT_MAX and the
 * total budget (closing the biggest other holders when needed). 0;
 * -ENOBUFS when c is the one that must go; -ENOMEM.
 */
static int input_reserve(agent_client *c, size_t extra)
{
    agent_control *ctl = c->ctl;
    size_t need = c->in.len + extra, cap;
    char *p;

    if (need <= c->in.cap)
        return 0;
    assert(need <= INPUT_MAX); /* on_alloc never offers more */
    cap = c->in.cap ? c->in.cap : INPUT_MIN;
    while (cap < need)
        cap *= 2;
    if (cap > INPUT_MAX)
        cap = INPUT_MAX;
    while (ctl->input_bytes - c->in.cap + cap > ctl->cfg.max_input_bytes) {
        agent_client *victim = largest_holder(ctl, c, cap);
        char msg[200];

        if (victim == c)
            return -ENOBUFS;
        log_notice("control client %s: closing it: the control connections buffer more "
                   "than %zu bytes of input and it holds the most (%zu)", victim->name,
                   ctl->cfg.max_input_bytes, victim->in.cap);
        snprintf(msg, sizeof(msg), "the agent's control input buffers are full "
                 "(control.max_input_bytes = %zu) and this connection held the most; "
                 "retry later", ctl->cfg.max_input_bytes);
        fail_and_close(victim, AGENT_E_UNAVAILABLE, msg);
    }
    p = realloc(c->in.data, cap);
    if (!p)
        return -ENOMEM;
    ctl->input_bytes += cap - c->in.cap;
    c->in.data = p;
    c->in.cap = cap;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    agent_client *c = h->data;
    size_t room = INPUT_MAX - c->in.len;

    (void)suggested;
    assert(c->in.len <= AGENT_MAX_LINE); /* longer input was refused */
    buf->base = c->ctl->readbuf;
    buf->len = room < sizeof(c->ctl->readbuf) ? room : sizeof(c->ctl->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    agent_client *c = s->data;
    char msg[200];
    int rc;

    if (c->closing)
        return;
    if (nread == UV_EOF) {
        uv_read_stop(s);
        if (c->writes_pending == 0) {
            client_close(c);
        } else {
            c->close_after_write = true;
            input_release(c); /* an unfinished line stays so */
            idle_update(c);
        }
        return;
    }
    if (nread < 0) {
        client_close(c);
        return;
    }
    if (nread == 0 || c->stream || c->close_after_write)
        return;
    rc = input_reserve(c, (size_t)nread);
    if (rc == -ENOBUFS) {
        log_notice("control client %s: closing it: the control connections buffer more than "
                   "%zu bytes of input and it holds the most", c->name,
                   c->ctl->cfg.max_input_bytes);
        snprintf(msg, sizeof(msg), "the agent's control input buffers are full "
                 "(control.max_input_bytes = %zu) and this connection held the most; "
                 "retry later", c->ctl->cfg.max_input_bytes);
        fail_and_close(c, AGENT_E_UNAVAILABLE, msg);
        return;
    }
    if (rc < 0) {
        fail_and_close(c, AGENT_E_INTERNAL, "out of memory");
        return;
    }
    rc = dpr_buf_append(&c->in, buf->base, (size_t)nread);
    assert(rc == 0); /* the room was reserved */
    process_lines(c);
}

/* Writes one line to a connection refused at accept, without reading from
 * it, and closes it: it holds no slot and no buffer. The line is short and
 * the socket new, so a non-blocking write takes it whole. */
static void refuse(agent_client *c, const dpr_buf *line)
{
    uv_buf_t b;
    int rc;

    if (line && line->len > 0) {
        b = uv_buf_init(line->data, (unsigned)line->len);
        rc = uv_try_write(&c->conn.stream, &b, 1);
        if (rc < 0 && !dpr_uv_peer_gone(rc))
            log_debug("control client %s: cannot write the refusal: %s", c->name,
                      uv_strerror(rc));
    }
    client_close(c);
}

/* Refuses c for a limit with an `unavailable` line saying which. */
static void refuse_unavailable(agent_client *c, const char *msg)
{
    json_t *reply = agent_reply_error(NULL, AGENT_E_UNAVAILABLE, msg, NULL);
    dpr_buf line = DPR_BUF_INIT;

    if (reply && agent_json_line(reply, &line) < 0)
        dpr_buf_reset(&line);
    json_decref(reply);
    refuse(c, &line);
    dpr_buf_free(&line);
}

/* Served connections of the same "user" as peer: its uid on the Unix socket,
 * its IP address over TCP. */
static size_t user_count(const agent_control *ctl, const agent_peer *peer)
{
    size_t n = 0;

    for (const agent_client *o = ctl->clients; o; o = o->next)
        if (o->peer.remote == peer->remote &&
            (peer->remote ? strcmp(o->peer.ip, peer->ip) == 0 : o->peer.uid == peer->uid))
            n++;
    return n;
}

/* Whether the limits let c in; if not, refuses it (and returns false). */
static bool admit(agent_control *ctl, agent_client *c)
{
    const agent_control_config *cfg = &ctl->cfg;
    char msg[240];

    if (is_root(c)) {
        if (ctl->nclients < cfg->max_clients)
            return true;
        snprintf(msg, sizeof(msg), "too many control connections (control.max_connections "
                 "= %zu); retry later", cfg->max_clients);
    } else if (ctl->nclients >= cfg->max_clients - cfg->root_reserved) {
        snprintf(msg, sizeof(msg), "too many control connections (control.max_connections "
                 "= %zu, of which control.root_reserved_connections = %zu are kept for "
                 "root); retry later", cfg->max_clients, cfg->root_reserved);
    } else if (user_count(ctl, &c->peer) >= cfg->max_per_user) {
        if (c->peer.remote)
            snprintf(msg, sizeof(msg), "too many control connections from %s "
                     "(control.max_connections_per_user = %zu, for all TCP connections from "
                     "one address); close some and retry", c->peer.ip, cfg->max_per_user);
        else
            snprintf(msg, sizeof(msg), "too many control connections from uid %u "
                     "(control.max_connections_per_user = %zu); close some and retry",
                     (unsigned)c->peer.uid, cfg->max_per_user);
    } else {
        return true;
    }
    if (refusal_logged(&ctl->refused_conns))
        log_notice("control client %s refused: %s", c->name, msg);
    refuse_unavailable(c, msg);
    return false;
}

/* Who is on the other end of c (just accepted, on fd): 1 may connect, 0
 * not (credentials without the right), a negative errno (cannot tell). */
static int identify(agent_control *ctl, agent_client *c, int fd, bool tcp)
{
    int rc;

    if (tcp) {
        rc = agent_peer_remote(fd, &c->peer);
        if (rc < 0)
            return rc;
        /* per-request replies: no Nagle delay; keepalive: see TCP_KEEPALIVE_SEC */
        uv_tcp_nodelay(&c->conn.tcp, 1);
        uv_tcp_keepalive(&c->conn.tcp, 1, TCP_KEEPALIVE_SEC);
        rc = 1; /* what it may do is decided per request */
    } else {
        rc = agent_peer_check(fd, ctl->cfg.have_group, ctl->cfg.group, &c->peer);
    }
    agent_peer_describe(&c->peer, c->name, sizeof(c->name));
    return rc;
}

static void on_connection(uv_stream_t *l, int status)
{
    agent_control *ctl = l->data;
    bool tcp = l == (uv_stream_t *)&ctl->tcp_listener;
    agent_client *c;
    uv_os_fd_t fd;
    int rc;

    if (status < 0) {
        log_warning("control %s: accept failed: %s", tcp ? "TCP listener" : "socket",
                    uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->ctl = ctl;
    snprintf(c->name, sizeof(c->name), "?");
    rc = tcp ? uv_tcp_init(ctl->loop, &c->conn.tcp) : uv_pipe_init(ctl->loop, &c->conn.pipe, 0);
    if (rc < 0) {
        free(c);
        return;
    }
    c->handles = 1;
    c->conn.handle.data = c;
    ctl->open_handles++;
    rc = uv_accept(l, &c->conn.stream);
    if (rc < 0 || uv_fileno(&c->conn.handle, &fd) < 0) {
        client_close(c);
        return;
    }
    rc = identify(ctl, c, fd, tcp);
    if (rc < 0 && tcp) {
        client_close(c); /* no peer address: it is gone already */
        return;
    }
    if (rc <= 0) {
        if (refusal_logged(&ctl->refused_conns))
            log_notice("control client %s refused: neither root nor in the control group",
                       c->name);
        refuse(c, &ctl->deny_line);
        return;
    }
    if (!admit(ctl, c))
        return;
    uv_timer_init(ctl->loop, &c->idle_timer);
    c->idle_timer.data = c;
    c->handles++;
    c->served = true;
    DPR_LIST_PREPEND(ctl->clients, c);
    ctl->nclients++;
    if (tcp)
        log_debug("control client %s connected over TCP", c->name);
    else
        log_debug("control client %s connected", c->name);
    if (uv_read_start(&c->conn.stream, on_alloc, on_read) < 0) {
        client_close(c);
        return;
    }
    idle_update(c);
}

static int ensure_parent_dir(const char *path)
{
    char dir[PATH_MAX];
    int rc = dpr_dirname(path, dir, sizeof(dir));

    return rc < 0 ? rc : dpr_mkdir_p(dir, 0755, NULL);
}

/* The listeners' close callback. */
static void on_listener_closed(uv_handle_t *h)
{
    agent_control *ctl = h->data;

    ctl->open_handles--;
    maybe_free_ctl(ctl);
}

static void on_refusal_timer_closed(uv_handle_t *h)
{
    refusal_log *rl = h->data;

    rl->ctl->open_handles--;
    maybe_free_ctl(rl->ctl);
}

static void refusal_log_init(agent_control *ctl, refusal_log *rl, const char *what)
{
    rl->ctl = ctl;
    rl->what = what;
    rl->since_ms = dpr_mono_ms();
    uv_timer_init(ctl->loop, &rl->timer);
    rl->timer.data = rl;
    rl->timer_open = true;
    ctl->open_handles++;
}

static void refusal_log_close(refusal_log *rl)
{
    if (rl->timer_open) {
        rl->timer_open = false;
        uv_close((uv_handle_t *)&rl->timer, on_refusal_timer_closed);
    }
}

/*
 * Binds the TCP listener to ctl->listen and listens. A wildcard host
 * listens on IPv6's wildcard, which takes IPv4 too (libuv clears
 * IPV6_V6ONLY), or on IPv4's where the host has no IPv6.
 */
static int tcp_listen(agent_control *ctl, dpr_err *err)
{
    struct sockaddr_storage ss;
    int sslen = sizeof(ss), rc;
    dpr_hostport hp;

    rc = dpr_hostport_parse(ctl->listen, DPR_HOSTPORT_ANY | DPR_HOSTPORT_PORT0, &hp, err);
    if (rc < 0) {
        dpr_err_prefix(err, "control.listen");
        return rc;
    }
    rc = uv_tcp_init(ctl->loop, &ctl->tcp_listener);
    if (rc < 0)
        return dpr_err_set(err, rc, "control.listen: cannot create a TCP socket: %s",
                           uv_strerror(rc));
    ctl->tcp_listener.data = ctl;
    ctl->tcp_listener_open = true;
    ctl->open_handles++;
    if (!hp.host[0]) {
        memset(&ss, 0, sizeof(ss));
        uv_ip6_addr("::", hp.port, (struct sockaddr_in6 *)&ss);
        rc = uv_tcp_bind(&ctl->tcp_listener, (const struct sockaddr *)&ss, 0);
        if (rc == UV_EAFNOSUPPORT) { /* no IPv6 here (no socket was made: try again) */
            uv_ip4_addr("0.0.0.0", hp.port, (struct sockaddr_in *)&ss);
            rc = uv_tcp_bind(&ctl->tcp_listener, (const struct sockaddr *)&ss, 0);
        }
    } else {
        rc = dpr_hostport_resolve(&hp, true, &ss, NULL, err);
        if (rc < 0) {
            dpr_err_prefix(err, "control.listen");
            return rc;
        }
        rc = uv_tcp_bind(&ctl->tcp_listener, (const struct sockaddr *)&ss, 0);
    }
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ctl->tcp_listener, LISTEN_BACKLOG, on_connection);
    if (rc == 0)
        rc = uv_tcp_getsockname(&ctl->tcp_listener, (struct sockaddr *)&ss, &sslen);
    if (rc < 0)
        return dpr_err_set(err, rc, "control.listen: cannot listen on %s: %s", ctl->listen,
                           uv_strerror(rc));
    dpr_addr_format((const struct sockaddr *)&ss, ctl->tcp_address, sizeof(ctl->tcp_address));
    if (ctl->cfg.remote_full) {
        log_info("serving the control API over TCP on %s too, with full access "
                 "(control.remote_access = \"full\")", ctl->tcp_address);
        log_warning("control API on %s: anyone who reaches this address may apply, delete "
                    "and remove nodes: there is no authentication and no encryption (until "
                    "TLS); use control.remote_access = \"full\" only on a trusted network",
                    ctl->tcp_address);
    } else {
        log_info("serving the control API over TCP on %s too, read-only (status, nodes, "
                 "events, plan, apply with dry_run; control.remote_access = \"read-only\")",
                 ctl->tcp_address);
    }
    return 0;
}

static const char *deny_message(const agent_control *ctl)
{
    return ctl->cfg.have_group
        ? "permission denied: the control API is for root and members of the agent's "
          "control group"
        : "permission denied: the control API is for root (the control group does not "
          "exist on this host)";
}

int agent_control_open(uv_loop_t *loop, const agent_control_config *cfg,
                       agent_control_handler handler, void *arg, agent_control **out,
                       dpr_err *err)
{
    agent_control *ctl = calloc(1, sizeof(*ctl));
    json_t *deny;
    struct stat sb;
    int rc;

    if (!ctl || !(ctl->path = strdup(cfg->path)) ||
        (cfg->listen && !(ctl->listen = strdup(cfg->listen)))) {
        if (ctl)
            free(ctl->path);
        free(ctl);
        return dpr_err_set(err, -ENOMEM, "out of memory");
    }
    ctl->loop = loop;
    ctl->cfg = *cfg;
    ctl->cfg.path = ctl->path;
    ctl->cfg.listen = ctl->listen;
    if (!ctl->cfg.max_clients)
        ctl->cfg.max_clients = AGENT_CONTROL_MAX_CONNECTIONS;
    if (!ctl->cfg.max_per_user)
        ctl->cfg.max_per_user = AGENT_CONTROL_MAX_PER_USER;
    if (ctl->cfg.root_reserved >= ctl->cfg.max_clients)
        ctl->cfg.root_reserved = ctl->cfg.max_clients - 1;
    if (!ctl->cfg.idle_timeout_ms)
        ctl->cfg.idle_timeout_ms = AGENT_CONTROL_IDLE_TIMEOUT_MS;
    if (!ctl->cfg.max_input_bytes)
        ctl->cfg.max_input_bytes = AGENT_CONTROL_MAX_INPUT_BYTES;
    if (ctl->cfg.max_input_bytes < INPUT_MAX)
        ctl->cfg.max_input_bytes = INPUT_MAX;
    if (!ctl->cfg.max_event_backlog)
        ctl->cfg.max_event_backlog = 1024 * 1024;
    ctl->handler = handler;
    ctl->arg = arg;
    deny = agent_reply_error(NULL, AGENT_E_PERMISSION_DENIED, deny_message(ctl), NULL);
    rc = deny ? agent_json_line(deny, &ctl->deny_line) : -ENOMEM;
    json_decref(deny);
    if (rc < 0) {
        rc = dpr_err_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    rc = ensure_parent_dir(ctl->path);
    if (rc < 0) {
        dpr_err_set(err, rc, "cannot create the directory of %s: %s", ctl->path,
                    strerror(-rc));
        goto fail;
    }
    /* a socket left by an agent that died: the state lock says none runs */
    if (lstat(ctl->path, &sb) == 0) {
        if (!S_ISSOCK(sb.st_mode)) {
            rc = dpr_err_set(err, -EEXIST, "%s exists and is not a socket", ctl->path);
            goto fail;
        }
        unlink(ctl->path);
    }
    rc = uv_pipe_init(loop, &ctl->listener, 0);
    if (rc < 0) {
        dpr_err_set(err, rc, "cannot create the control socket: %s", uv_strerror(rc));
        goto fail;
    }
    ctl->listener.data = ctl;
    ctl->listener_open = true;
    ctl->open_handles = 1;
    refusal_log_init(ctl, &ctl->refused_conns, "connections");
    refusal_log_init(ctl, &ctl->refused_requests, "requests over TCP");
    rc = uv_pipe_bind(&ctl->listener, ctl->path);
    if (rc == 0 && chmod(ctl->path, 0666) < 0)
        rc = -errno;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ctl->listener, LISTEN_BACKLOG, on_connection);
    if (rc < 0)
        dpr_err_set(err, rc, "cannot listen on %s: %s", ctl->path, uv_strerror(rc));
    else if (ctl->listen)
        rc = tcp_listen(ctl, err);
    if (rc < 0) {
        agent_control_close(ctl);
        return rc;
    }
    *out = ctl;
    return 0;
fail:
    dpr_buf_free(&ctl->deny_line);
    free(ctl->path);
    free(ctl->listen);
    free(ctl);
    return rc;
}

agent_pending *agent_client_defer(agent_client *c)
{
    agent_pending *p;

    if (c->pending)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->client = c;
    c->pending = p;
    return p;
}

void agent_pending_cancel(agent_pending *p)
{
    if (!p)
        return;
    if (p->client)
        p->client->pending = NULL;
    free(p);
}

void agent_pending_reply(agent_pending *p, json_t *reply)
{
    agent_client *c = p ? p->client : NULL;

    if (c) {
        c->pending = NULL;
        send_json(c, reply);
        if (!c->closing)
            process_lines(c); /* the lines that waited */
    }
    json_decref(reply);
    free(p);
}

void agent_client_make_stream(agent_client *c)
{
    c->make_stream = true;
}

const agent_peer *agent_client_peer(const agent_client *c)
{
    return &c->peer;
}

const char *agent_client_name(const agent_client *c)
{
    return c->name;
}

const char *agent_control_tcp_address(const agent_control *ctl)
{
    return ctl->tcp_address[0] ? ctl->tcp_address : NULL;
}

size_t agent_control_stream_count(const agent_control *ctl)
{
    return ctl->nstreams;
}

void agent_control_publish(agent_control *ctl, const json_t *event)
{
    json_t *wrap;
    agent_client *c, *next;
    dpr_buf line = DPR_BUF_INIT, copy;
    int rc;

    if (!ctl || ctl->nstreams == 0)
        return;
    wrap = json_pack("{s:i, s:O}", "v", AGENT_PROTO_VERSION, "event", event);
    rc = wrap ? agent_json_line(wrap, &line) : -ENOMEM;
    json_decref(wrap);
    if (rc < 0) {
        dpr_buf_free(&line);
        return;
    }
    for (c = ctl->clients; c; c = next) {
        next = c->next;
        if (!c->stream || c->closing || c->close_after_write)
            continue;
        if (uv_stream_get_write_queue_size(&c->conn.stream) + line.len >
            ctl->cfg.max_event_backlog) {
            log_notice("event client %s does not keep up (%zu bytes queued): disconnecting it",
                       c->name, uv_stream_get_write_queue_size(&c->conn.stream));
            client_close(c);
            continue;
        }
        /* each write owns its bytes */
        dpr_buf_init(&copy);
        if (dpr_buf_append(&copy, line.data, line.len) < 0) {
            dpr_buf_free(&copy);
            client_close(c);
            continue;
        }
        if (send_line(c, &copy) < 0)
            client_close(c);
    }
    dpr_buf_free(&line);
}

void agent_control_close(agent_control *ctl)
{
    if (!ctl || ctl->closing)
        return;
    ctl->closing = true;
    while (ctl->clients)
        client_close(ctl->clients);
    if (ctl->listener_open) {
        ctl->listener_open = false;
        uv_close((uv_handle_t *)&ctl->listener, on_listener_closed);
        unlink(ctl->path);
    }
    if (ctl->tcp_listener_open) {
        ctl->tcp_listener_open = false;
        ctl->tcp_address[0] = '\0';
        uv_close((uv_handle_t *)&ctl->tcp_listener, on_listener_closed);
    }
    refusal_log_close(&ctl->refused_conns);
    refusal_log_close(&ctl->refused_requests);
    maybe_free_ctl(ctl);
}
