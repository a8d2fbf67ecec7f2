/* replserver.c - see replserver.h. */
#include "replserver.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agenttls.h"
#include "common/addr.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/num.h"
#include "common/resp.h"
#include "common/uvutil.h"
#include "replproto.h"
#include "replstore.h"
#include "request.h"

#define MAX_CONNS 64
#define MAX_ARGS 8
/* TLS: a connection not verified by then is closed (checked every second):
 * an unknown peer holds none of the MAX_CONNS for long */
#define HANDSHAKE_TIMEOUT_MS 10000

typedef struct conn {
    struct conn *next;
    agent_replserver *srv;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    bool local;     /* a cache-store on the unix socket */
    uid_t peer_uid; /* local: the cache-store's uid (SO_PEERCRED) */
    dpr_tls_conn *tls; /* TLS on: the connection's engine */
    bool verified;  /* TLS: the peer is a node of the cluster */
    uint64_t started; /* uv_now when accepted */
    char peer[DPR_ADDR_STR_MAX];
    dpr_reqreader *rd;
    bool busy;      /* a command runs on the thread pool */
    bool closed;    /* uv_close called */
    bool ending;    /* conn_end: no more commands, closed once written */
    bool handle_gone; /* its close callback ran */
    /* the command running */
    uv_work_t work;
    agent_repl_cmd cmd;
    char *data;     /* PUT: its bytes (cmd.data points here) */
    int rc;
    uint64_t size;  /* HAVE, PUT: what this node has */
    bool complete;  /* HAVE: the whole copy */
} conn;

struct agent_replserver {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_pipe_t local;
    bool listener_open, local_open, sweep_open, stopping;
    uv_timer_t sweep;           /* closes TLS connections stuck in their handshake */
    agent_replserver_ship_fn ship;
    void *ship_arg;
    char cluster[128];
    char root[4096];
    char address[DPR_ADDR_STR_MAX];
    conn *conns;
    size_t nconns;
    dpr_tls_ctx *tls;           /* not owned; NULL: plain TCP */
    agent_tls_limit refusals;
};

static void process(conn *c);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf);

/* ---- connections -------------------------------------------------------------------- */

static void maybe_free_server(agent_replserver *s)
{
    if (s->stopping && !s->listener_open && !s->local_open && !s->sweep_open && !s->conns)
        free(s);
}

static void unlink_conn(conn *c)
{
    agent_replserver *s = c->srv;

    for (conn **pp = &s->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            s->nconns--;
            break;
        }
}

/* Frees c once its handle is closed and no work of it is on the pool. */
static void maybe_free_conn(conn *c)
{
    agent_replserver *s = c->srv;

    if (!c->handle_gone || c->busy)
        return;
    unlink_conn(c);
    dpr_reqreader_free(c->rd);
    dpr_tls_conn_free(c->tls);
    free(c->data);
    free(c);
    maybe_free_server(s);
}

static void on_conn_closed(uv_handle_t *h)
{
    conn *c = h->data;

    c->handle_gone = true;
    maybe_free_conn(c);
}

static void conn_close(conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    uv_close(&c->h.handle, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn *c = req->data;

    (void)status;
    free(req);
    conn_close(c);
}

/* Closes c once what was queued for it (a TLS alert) is sent. */
static void conn_end(conn *c)
{
    uv_shutdown_t *req = c->closed ? NULL : calloc(1, sizeof(*req));

    c->ending = true;
    uv_read_stop(&c->h.stream);
    if (req) {
        req->data = c;
        if (uv_shutdown(req, &c->h.stream, on_shutdown) == 0)
            return;
        free(req);
    }
    conn_close(c);
}

static void on_written(uv_stream_t *stream, int status)
{
    conn *c = stream->data;

    if (status < 0)
        conn_close(c);
}

static void send_reply(conn *c, dpr_buf *out)
{
    int rc = dpr_buf_failed(out) ? -ENOMEM : 0;

    if (rc == 0 && c->tls)
        rc = agent_tls_send(c->tls, &c->h.stream, out->data, out->len, on_written);
    else if (rc == 0)
        rc = dpr_uv_write(&c->h.stream, out, on_written);
    dpr_buf_free(out);
    if (rc < 0)
        conn_close(c);
}

static void reply_error(conn *c, const char *fmt, const char *what)
{
    dpr_buf out = DPR_BUF_INIT;

    dpr_resp_errorf(&out, fmt, what);
    send_reply(c, &out);
}

/* ---- the commands, on the pool -------------------------------------------------------- */

static void work(uv_work_t *w)
{
    conn *c = w->data;
    const agent_repl_cmd *m = &c->cmd;

    switch (m->op) {
    case AGENT_REPL_HAVE: {
        agent_replstore_sum want = { m->size, m->crc };
        c->rc = agent_replstore_have(c->srv->root, m->deployment, m->worker, m->version,
                                     m->sum ? &want : NULL, &c->size, &c->complete);
        break;
    }
    case AGENT_REPL_PUT:
        c->rc = agent_replstore_put(c->srv->root, m->deployment, m->worker, m->version,
                                    m->offset, m->data, m->len, &c->size);
        break;
    case AGENT_REPL_DONE:
        c->rc = agent_replstore_finish(c->srv->root, m->deployment, m->worker, m->version,
                                       m->size, m->crc);
        break;
    case AGENT_REPL_SHIP: /* (never on the pool: the hook answers it) */
        c->rc = -EINVAL;
        break;
    }
}

static void after_work(uv_work_t *w, int status)
{
    conn *c = w->data;
    dpr_buf out = DPR_BUF_INIT;
    char msg[200];

    c->busy = false;
    free(c->data);
    c->data = NULL;
    if (c->closed) {
        maybe_free_conn(c);
        return;
    }
    if (status < 0) {
        reply_error(c, "ERR %s", uv_strerror(status));
    } else if (c->rc == -ESPIPE) {
        snprintf(msg, sizeof(msg), "offset %" PRIu64 ": this node has %" PRIu64 " bytes",
                 c->cmd.offset, c->size);
        reply_error(c, "ERR %s", msg);
    } else if (c->rc == -EBADMSG) {
        reply_error(c, "ERR %s", "the copy's size or CRC-32 differ: send it again");
    } else if (c->rc < 0) {
        snprintf(msg, sizeof(msg), "%s/%" PRIu64 " version %" PRIu64 ": %s", c->cmd.deployment,
                 c->cmd.worker, c->cmd.version, strerror(-c->rc));
        reply_error(c, "ERR %s", msg);
    } else {
        if (c->cmd.op == AGENT_REPL_HAVE)
            dpr_resp_int(&out, c->complete ? -1 : (int64_t)c->size);
        else
            dpr_resp_status(&out, "OK");
        send_reply(c, &out);
    }
    if (!c->closed && !c->ending) {
        uv_read_start(&c->h.stream, on_alloc, on_read);
        process(c);
    }
}

/* ---- parsing ------------------------------------------------------------------------- */

/* Checks req and loads it into c: NULL, or what is wrong. */
static const char *load(conn *c, const dpr_request *req)
{
    const char *bad = agent_repl_parse(req->argc, req->argv, req->argvlen, c->local,
                                       c->srv->cluster, &c->cmd);

    if (bad || c->cmd.op != AGENT_REPL_PUT)
        return bad;
    /* (the request's memory goes with the next read: a copy for the pool) */
    c->data = malloc(c->cmd.len);
    if (!c->data)
        return "out of memory";
    memcpy(c->data, c->cmd.data, c->cmd.len);
    c->cmd.data = c->data;
    return NULL;
}

/* Runs the next buffered command, if any and none runs. */
static void process(conn *c)
{
    dpr_request req;
    const char *bad;
    int rc;

    while (!c->busy && !c->closed && !c->ending) {
        rc = dpr_reqreader_next(c->rd, &req);
        if (rc == 0)
            return;
        if (rc < 0) {
            reply_error(c, "ERR %s", dpr_reqreader_error(c->rd));
            dpr_uv_discard_input(&c->h.handle);
            conn_close(c);
            return;
        }
        bad = load(c, &req);
        if (bad) {
            reply_error(c, "ERR %s", bad);
            continue;
        }
        c->busy = true;
        c->work.data = c;
        uv_read_stop(&c->h.stream); /* one command at a time */
        if (c->cmd.op == AGENT_REPL_SHIP) {
            /* answered by agent_replserver_answer */
            c->srv->ship(c->srv->ship_arg, (agent_replserver_call *)c, c->cmd.instance,
                         c->cmd.token, c->cmd.version, c->cmd.path, c->peer_uid);
            continue;
        }
        rc = uv_queue_work(c->srv->loop, &c->work, work, after_work);
        if (rc < 0) {
            c->busy = false;
            free(c->data);
            c->data = NULL;
            reply_error(c, "ERR %s", uv_strerror(rc));
        }
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[65536]; /* (fed to the reader at once) */

    (void)h;
    (void)hint;
    *buf = uv_buf_init(slab, sizeof(slab));
}

/* TLS: n bytes of ciphertext into the request reader. 0, or a negative
 * errno (the connection is refused: logged). */
static int tls_input(conn *c, const char *data, size_t n)
{
    dpr_buf plain = DPR_BUF_INIT;
    char why[400];
    int rc = agent_tls_input(c->tls, &c->h.stream, data, n, &c->verified, &plain,
                             "copy checkpoints", why, sizeof(why));

    if (rc < 0 && agent_tls_limit_ok(&c->srv->refusals, uv_now(c->srv->loop)))
        log_warning("replication: TLS refused the connection from %s: %s", c->peer, why);
    if (rc == 0 && plain.len)
        rc = dpr_reqreader_feed(c->rd, plain.data, plain.len);
    dpr_buf_free(&plain);
    return rc;
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    conn *c = stream->data;
    int rc;

    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n == 0)
        return;
    rc = c->tls ? tls_input(c, buf->base, (size_t)n)
                : dpr_reqreader_feed(c->rd, buf->base, (size_t)n);
    if (rc < 0) {
        conn_end(c);
        return;
    }
    process(c);
    if (c->tls && dpr_tls_conn_eof(c->tls))
        conn_end(c);
}

static void accept_conn(uv_stream_t *listener, agent_replserver *s, bool local)
{
    conn *c = calloc(1, sizeof(*c));

    if (!c || dpr_reqreader_new(MAX_ARGS, AGENT_REPL_CHUNK_MAX + 4096, &c->rd) < 0) {
        free(c);
        return;
    }
    c->srv = s;
    c->local = local;
    c->started = uv_now(s->loop);
    if (local)
        uv_pipe_init(s->loop, &c->h.pipe, 0);
    else
        uv_tcp_init(s->loop, &c->h.tcp);
    c->h.handle.data = c;
    c->next = s->conns;
    s->conns = c;
    s->nconns++;
    if (uv_accept(listener, &c->h.stream) < 0 || s->nconns > MAX_CONNS) {
        conn_close(c);
        return;
    }
    if (local) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        uv_os_fd_t fd;

        /* whose files it may name (agent_replclient_job.owner) */
        if (uv_fileno(&c->h.handle, &fd) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
            conn_close(c);
            return;
        }
        c->peer_uid = cred.uid;
    } else {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        dpr_err err = DPR_ERR_INIT;

        uv_tcp_nodelay(&c->h.tcp, 1);
        if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0)
            dpr_addr_format((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
        if (s->tls && dpr_tls_conn_new(s->tls, NULL, &c->tls, &err) < 0) {
            log_error("replication: the connection from %s: %s", c->peer, err.msg);
            conn_close(c);
            return;
        }
    }
    uv_read_start(&c->h.stream, on_alloc, on_read);
}

static void on_connection(uv_stream_t *listener, int status)
{
    if (status == 0)
        accept_conn(listener, listener->data, false);
}

static void on_local_connection(uv_stream_t *listener, int status)
{
    if (status == 0)
        accept_conn(listener, listener->data, true);
}

int agent_replserver_listen_local(agent_replserver *s, const char *path,
                                  agent_replserver_ship_fn ship, void *arg, dpr_err *err)
{
    int rc;

    s->ship = ship;
    s->ship_arg = arg;
    unlink(path); /* (a socket left by an agent that did not stop cleanly) */
    uv_pipe_init(s->loop, &s->local, 0);
    s->local.data = s;
    s->local_open = true;
    rc = uv_pipe_bind(&s->local, path);
    if (rc == 0)
        rc = chmod(path, 0600) < 0 ? -errno : 0;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->local, 64, on_local_connection);
    if (rc < 0)
        return dpr_err_set(err, rc, "replication: cannot listen on %s: %s", path,
                           uv_strerror(rc));
    return 0;
}

void agent_replserver_answer(agent_replserver_call *call, int status, const char *error)
{
    conn *c = (conn *)call;
    dpr_buf out = DPR_BUF_INIT;

    c->busy = false;
    if (c->closed) {
        maybe_free_conn(c);
        return;
    }
    if (status < 0)
        dpr_resp_errorf(&out, "ERR %s", error ? error : strerror(-status));
    else
        dpr_resp_status(&out, "OK");
    send_reply(c, &out);
    if (!c->closed && !c->ending) {
        uv_read_start(&c->h.stream, on_alloc, on_read);
        process(c);
    }
}

/* ---- life cycle ------------------------------------------------------------------------ */

int agent_replserver_start(uv_loop_t *loop, const char *listen, const char *cluster,
                           const char *root, agent_replserver **out, dpr_err *err)
{
    agent_replserver *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    int sslen = sizeof(ss), rc;
    dpr_hostport hp;

    if (!s)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    s->loop = loop;
    snprintf(s->cluster, sizeof(s->cluster), "%s", cluster);
    snprintf(s->root, sizeof(s->root), "%s", root);
    rc = dpr_hostport_parse(listen, DPR_HOSTPORT_PORT0, &hp, err);
    if (rc == 0)
        rc = dpr_hostport_resolve(&hp, true, &ss, NULL, err);
    if (rc < 0) {
        free(s);
        return rc;
    }
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->listener_open = true;
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
    if (rc == 0)
        rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &sslen);
    if (rc < 0) {
        dpr_err_set(err, rc, "replication: cannot listen on %s: %s", listen, uv_strerror(rc));
        agent_replserver_stop(s);
        return rc;
    }
    dpr_addr_format((const struct sockaddr *)&ss, s->address, sizeof(s->address));
    *out = s;
    return 0;
}

const char *agent_replserver_address(const agent_replserver *s)
{
    return s->address;
}

static void on_sweep(uv_timer_t *h)
{
    agent_replserver *s = h->data;
    uint64_t now = uv_now(s->loop);

    for (conn *c = s->conns; c; c = c->next)
        if (c->tls && !c->verified && !c->closed && !c->ending &&
            now - c->started >= HANDSHAKE_TIMEOUT_MS) {
            if (agent_tls_limit_ok(&s->refusals, now))
                log_warning("replication: TLS refused the connection from %s: no TLS "
                            "handshake within 10 s", c->peer);
            conn_end(c);
        }
}

void agent_replserver_set_tls(agent_replserver *s, dpr_tls_ctx *tls)
{
    s->tls = tls;
    if (tls && !s->sweep_open && !s->stopping) {
        uv_timer_init(s->loop, &s->sweep);
        s->sweep.data = s;
        s->sweep_open = true;
        uv_timer_start(&s->sweep, on_sweep, 1000, 1000);
    }
}

static void on_server_handle_closed(uv_handle_t *h)
{
    agent_replserver *s = h->data;

    if (h == (uv_handle_t *)&s->local)
        s->local_open = false;
    else if (h == (uv_handle_t *)&s->sweep)
        s->sweep_open = false;
    else
        s->listener_open = false;
    maybe_free_server(s);
}

void agent_replserver_stop(agent_replserver *s)
{
    if (!s || s->stopping)
        return;
    s->stopping = true;
    for (conn *c = s->conns; c; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    if (s->local_open)
        uv_close((uv_handle_t *)&s->local, on_server_handle_closed);
    if (s->sweep_open)
        uv_close((uv_handle_t *)&s->sweep, on_server_handle_closed);
}
