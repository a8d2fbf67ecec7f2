/* respconn.c - see respconn.h. */
#include "respconn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agenttls.h"
#include "common/addr.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/resp.h"
#include "common/uvutil.h"
#include "respread.h"

/* A command waiting for its reply. */
typedef struct pend {
    struct pend *next;
    agent_respconn_reply_fn cb;
    void *arg;
} pend;

struct agent_respconn {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_timer_t timer;        /* the connect timeout; a failure told on the next turn */
    int handles;             /* open libuv handles */
    char endpoint[DPR_HOST_MAX + 16];
    unsigned connect_ms;
    dpr_tls_conn *tls;       /* TLS on: the engine */
    const char *tls_what;
    bool verified;           /* TLS: the peer is a node of the cluster */
    bool connected;          /* the TCP connection is up */
    bool ready;              /* connected (TLS: and verified): commands go out */
    bool failed, closed;
    int later;               /* the failure fail_later tells */
    dpr_buf out;             /* commands given before ready */
    pend *head, *tail;
    size_t npending;
    agent_respread rd;
    dpr_err err;
    char rbuf[16384];
};

static void maybe_free(agent_respconn *c)
{
    if (c->handles > 0 || !c->closed)
        return;
    agent_respread_free(&c->rd);
    dpr_tls_conn_free(c->tls);
    dpr_buf_free(&c->out);
    free(c);
}

static void on_closed(uv_handle_t *h)
{
    agent_respconn *c = h->data;

    c->handles--;
    maybe_free(c);
}

static void close_handle(agent_respconn *c, uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, on_closed);
}

/* Every waiting callback gets status (callbacks may close c meanwhile). */
static void fail_all(agent_respconn *c, int status)
{
    pend *p;

    while ((p = c->head)) {
        c->head = p->next;
        if (!c->head)
            c->tail = NULL;
        c->npending--;
        p->cb(p->arg, status, NULL);
        free(p);
    }
}

/* The connection is lost: status (< 0) to every waiting command. why (a
 * format) is the reason unless c->err holds one already. */
static void fail(agent_respconn *c, int status, const char *why, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(agent_respconn *c, int status, const char *why, ...)
{
    char msg[400];
    va_list ap;

    if (c->failed || c->closed)
        return;
    c->failed = true;
    if (why && !c->err.code) {
        va_start(ap, why);
        vsnprintf(msg, sizeof(msg), why, ap);
        va_end(ap);
        dpr_err_set(&c->err, status, "%s: %s", c->endpoint, msg);
    } else if (c->err.code) {
        dpr_err_prefix(&c->err, "%s", c->endpoint);
    }
    uv_timer_stop(&c->timer);
    close_handle(c, (uv_handle_t *)&c->tcp);
    fail_all(c, status);
}

static void on_later(uv_timer_t *t)
{
    agent_respconn *c = t->data;

    fail(c, c->later, NULL);
}

/* A failure found inside a call of the caller's: told on the next turn. */
static void fail_later(agent_respconn *c, int status)
{
    c->later = status;
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_later, 0, 0);
}

static void on_timeout(uv_timer_t *t)
{
    agent_respconn *c = t->data;

    fail(c, -ETIMEDOUT, "%s within %u ms",
         c->connected ? "no TLS handshake" : "cannot connect", c->connect_ms);
}

static void on_written(uv_stream_t *s, int status)
{
    agent_respconn *c = s->data;

    if (status < 0)
        fail(c, -ECONNRESET, "cannot send: %s", uv_strerror(status));
}

/* Sends b (taken: empty after). 0 or a negative errno. */
static int send_bytes(agent_respconn *c, dpr_buf *b)
{
    int rc;

    if (!c->tls)
        return dpr_uv_write((uv_stream_t *)&c->tcp, b, on_written);
    rc = agent_tls_send(c->tls, (uv_stream_t *)&c->tcp, b->data, b->len, on_written);
    dpr_buf_free(b);
    return rc;
}

/* Connected (and verified): what was given before goes out. */
static void become_ready(agent_respconn *c)
{
    c->ready = true;
    uv_timer_stop(&c->timer);
    if (c->out.len && send_bytes(c, &c->out) < 0)
        fail(c, -ECONNRESET, "cannot send");
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    agent_respconn *c = h->data;

    (void)hint;
    *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

/* n bytes from the peer into the reader (TLS: deciphered first). 0, or < 0
 * once failed. */
static int take_input(agent_respconn *c, const char *data, size_t n)
{
    dpr_buf plain = DPR_BUF_INIT;
    char why[400];
    int rc;

    if (!c->tls) {
        rc = agent_respread_feed(&c->rd, data, n);
        if (rc < 0)
            fail(c, rc, "out of memory");
        return rc;
    }
    rc = agent_tls_input(c->tls, (uv_stream_t *)&c->tcp, data, n, &c->verified, &plain,
                         c->tls_what, why, sizeof(why));
    if (rc < 0)
        fail(c, rc, "TLS refused: %s", why);
    else if ((rc = agent_respread_feed(&c->rd, plain.data, plain.len)) < 0)
        fail(c, rc, "out of memory");
    else if (c->verified && !c->ready)
        become_ready(c);
    dpr_buf_free(&plain);
    return c->failed ? -ECONNRESET : rc;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    agent_respconn *c = s->data;
    redisReply *rep;
    pend *p;
    int rc;

    if (c->failed || c->closed)
        return;
    if (n < 0) {
        fail(c, -ECONNRESET, "%s", n == UV_EOF ? (c->tls && !c->verified
                                                      ? "closed during the TLS handshake"
                                                      : "closed by the peer")
                                               : uv_strerror((int)n));
        return;
    }
    if (n == 0 || take_input(c, buf->base, (size_t)n) < 0)
        return;
    while (!c->failed && !c->closed) {
        rc = agent_respread_next(&c->rd, &rep, &c->err);
        if (rc == 0)
            break;
        if (rc < 0) {
            fail(c, rc, NULL);
            break;
        }
        if (!(p = c->head)) {
            freeReplyObject(rep);
            fail(c, -EPROTO, "a reply to no command");
            break;
        }
        c->head = p->next;
        if (!c->head)
            c->tail = NULL;
        c->npending--;
        p->cb(p->arg, 0, rep);
        freeReplyObject(rep);
        free(p);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    agent_respconn *c = req->data;

    if (c->failed || c->closed)
        return;
    if (status < 0) {
        fail(c, -ECONNREFUSED, "cannot connect: %s", uv_strerror(status));
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        fail(c, -ECONNRESET, "cannot read");
        return;
    }
    if (!c->tls) {
        become_ready(c);
        return;
    }
    if (agent_tls_flush(c->tls, (uv_stream_t *)&c->tcp, on_written) < 0)
        fail(c, -ECONNRESET, "cannot send the TLS hello");
}

int agent_respconn_open(uv_loop_t *loop, const agent_respconn_opts *o, agent_respconn **out,
                        dpr_err *err)
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    agent_respconn *c = NULL;
    dpr_hostport hp;
    int rc;

    *out = NULL;
    rc = dpr_hostport_parse(o->endpoint, 0, &hp, err);
    if (rc == 0)
        rc = dpr_hostport_resolve(&hp, false, &ss, &sslen, err);
    if (rc < 0)
        return rc;
    if (!(c = calloc(1, sizeof(*c))))
        return dpr_err_set(err, -ENOMEM, "out of memory");
    c->loop = loop;
    snprintf(c->endpoint, sizeof(c->endpoint), "%s", o->endpoint);
    c->connect_ms = o->connect_ms ? o->connect_ms : AGENT_RESPCONN_CONNECT_MS;
    c->tls_what = o->tls_what ? o->tls_what : "answer agents";
    c->err = (dpr_err)DPR_ERR_INIT;
    rc = agent_respread_init(&c->rd, o->max_reply ? o->max_reply : AGENT_RESPCONN_MAX_REPLY);
    if (rc == 0 && o->tls)
        rc = dpr_tls_conn_new(o->tls, NULL, &c->tls, err) < 0 ? -ENOMEM : 0;
    if (rc < 0) {
        agent_respread_free(&c->rd);
        dpr_tls_conn_free(c->tls);
        free(c);
        return dpr_err_set(err, rc, "out of memory");
    }
    uv_timer_init(loop, &c->timer);
    uv_tcp_init(loop, &c->tcp);
    c->timer.data = c;
    c->tcp.data = c;
    c->connect.data = c;
    c->handles = 2;
    uv_timer_start(&c->timer, on_timeout, c->connect_ms, 0);
    rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&ss, on_connect);
    if (rc < 0) {
        dpr_err_set(&c->err, -ECONNREFUSED, "cannot connect: %s", uv_strerror(rc));
        fail_later(c, -ECONNREFUSED);
    }
    *out = c;
    return 0;
}

int agent_respconn_command(agent_respconn *c, int argc, const char *const *argv,
                           const size_t *argvlen, agent_respconn_reply_fn cb, void *arg)
{
    dpr_buf b = DPR_BUF_INIT;
    pend *p;

    if (agent_respconn_failed(c))
        return -ENOTCONN;
    dpr_resp_command(&b, argc, argv, argvlen);
    if (dpr_buf_failed(&b) || (!c->ready && dpr_buf_reserve(&c->out, b.len) < 0) ||
        !(p = calloc(1, sizeof(*p)))) {
        c->out.failed = false; /* (a failed reserve leaves it as it was) */
        dpr_buf_free(&b);
        return -ENOMEM;
    }
    p->cb = cb;
    p->arg = arg;
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    c->npending++;
    if (!c->ready) {
        dpr_buf_append(&c->out, b.data, b.len); /* (room reserved) */
        dpr_buf_free(&b);
    } else if (send_bytes(c, &b) < 0) {
        dpr_err_set(&c->err, -ECONNRESET, "cannot send");
        fail_later(c, -ECONNRESET);
    }
    return 0;
}

void agent_respconn_close(agent_respconn *c)
{
    if (!c || c->closed)
        return;
    if (!c->failed)
        dpr_err_set(&c->err, -ECANCELED, "%s: closed", c->endpoint);
    c->closed = true;
    uv_timer_stop(&c->timer);
    close_handle(c, (uv_handle_t *)&c->timer);
    close_handle(c, (uv_handle_t *)&c->tcp);
    fail_all(c, -ECANCELED);
    maybe_free(c);
}

bool agent_respconn_failed(const agent_respconn *c)
{
    return c->failed || c->closed || c->later < 0;
}

size_t agent_respconn_pending(const agent_respconn *c)
{
    return c->npending;
}

const char *agent_respconn_errstr(const agent_respconn *c)
{
    return c->err.code ? c->err.msg : "";
}
