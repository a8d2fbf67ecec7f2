/* rafttls.c - c-raft's transport over mutual TLS (see rafttls.h). */
#include "rafttls.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/uvutil.h"
#include "rafthello.h"

#define READ_CHUNK 65536
/* a connection not verified by then is closed (checked every second) */
#define HANDSHAKE_TIMEOUT_MS 10000

typedef struct rafttls rafttls;

typedef struct tlink {
    rafttls *tr;
    struct tlink *prev, *next;
    uv_tcp_t tcp;
    uv_pipe_t local;           /* our end of the pair */
    uv_connect_t creq;
    dpr_tls_conn *tls;
    dpr_buf plain;             /* incoming: plaintext before c-raft's handshake is whole */
    bool incoming, verified, handed, closing, local_open;
    bool tcp_up;               /* outgoing: the TCP connection is made */
    uint64_t started;          /* uv_now when made */
    int handles;               /* open handles of ours (tcp, local) */
    struct raft_uv_connect *req; /* outgoing, until its callback ran */
    raft_uv_connect_cb cb;
    char peer[96];             /* "127.0.0.2:41234" or the member's address */
} tlink;

struct rafttls {
    struct raft_uv_transport *t;
    uv_loop_t *loop;
    const agent_tls *tls;
    raft_id id;
    char address[AGENT_RAFT_HELLO_ADDRESS_MAX];
    uv_tcp_t listener;
    uv_timer_t sweep;          /* closes connections stuck in their handshake */
    bool listener_init, sweep_init, closing;
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb close_cb;
    tlink *links;
    agent_tls_limit refusals;
};


static void link_close(tlink *l);

static void refused(rafttls *tr, const tlink *l, const char *why)
{
    if (agent_tls_limit_ok(&tr->refusals, uv_now(tr->loop)))
        log_warning("raft: TLS refused the connection %s %s: %s",
                    l->incoming ? "from" : "to", l->peer, why);
}

/* Writes b's bytes (taken) to s. 0 or a negative errno. */
static int write_buf(uv_stream_t *s, dpr_buf *b)
{
    return b->len ? dpr_uv_write(s, b, NULL) : 0;
}

/* Sends what the engine has for the peer. */
static int send_cipher(tlink *l)
{
    return agent_tls_flush(l->tls, (uv_stream_t *)&l->tcp, NULL);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = malloc(READ_CHUNK);
    buf->len = buf->base ? READ_CHUNK : 0;
}

static void list_remove(tlink *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        l->tr->links = l->next;
    if (l->next)
        l->next->prev = l->prev;
}

static void maybe_closed(rafttls *tr)
{
    raft_uv_transport_close_cb cb = tr->close_cb;

    if (!tr->closing || tr->links || tr->listener_init || tr->sweep_init || !cb)
        return;
    tr->close_cb = NULL;
    cb(tr->t);
}

static void on_link_handle_closed(uv_handle_t *h)
{
    tlink *l = h->data;
    rafttls *tr = l->tr;

    if (--l->handles > 0)
        return;
    list_remove(l);
    dpr_tls_conn_free(l->tls);
    dpr_buf_free(&l->plain);
    free(l);
    maybe_closed(tr);
}

/* The end of an outgoing attempt that never reached c-raft. */
static void connect_failed(tlink *l, int status)
{
    struct raft_uv_connect *req = l->req;

    l->req = NULL;
    if (req && !l->handed)
        l->cb(req, NULL, status);
}

static void on_shutdown(uv_shutdown_t *s, int status)
{
    tlink *l = s->data;

    (void)status;
    free(s);
    uv_close((uv_handle_t *)&l->tcp, on_link_handle_closed);
}

/* Closes the tlink: what the engine still has (an alert, close_notify) is
 * sent first. */
static void link_close(tlink *l)
{
    uv_shutdown_t *s;

    if (l->closing)
        return;
    l->closing = true;
    connect_failed(l, l->tr->closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
    if (l->local_open) {
        l->local_open = false;
        uv_close((uv_handle_t *)&l->local, on_link_handle_closed);
    }
    uv_read_stop((uv_stream_t *)&l->tcp);
    if (l->tls && !l->tr->closing)
        send_cipher(l);
    s = l->tr->closing ? NULL : calloc(1, sizeof(*s));
    if (s) {
        s->data = l;
        if (uv_shutdown(s, (uv_stream_t *)&l->tcp, on_shutdown) == 0)
            return;
        free(s);
    }
    uv_close((uv_handle_t *)&l->tcp, on_link_handle_closed);
}

static void on_app_closed(uv_handle_t *h)
{
    raft_free(h);
}

/* c-raft wrote: into TLS. */
static void on_local_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    tlink *l = s->data;
    int rc = 0;

    if (n > 0)
        rc = dpr_tls_conn_write(l->tls, buf->base, (size_t)n);
    free(buf->base);
    if (n > 0 && rc == 0)
        rc = send_cipher(l);
    if (n < 0 || rc < 0) {
        if (n < 0)
            dpr_tls_conn_close_notify(l->tls);
        link_close(l);
    }
}

/* Gives c-raft its end of a socket pair; leftover plaintext goes in. */
static int hand_over(tlink *l, const char *left, size_t nleft, uv_stream_t **app_out)
{
    uv_pipe_t *app = NULL;
    int sv[2] = { -1, -1 };
    dpr_buf b;
    int rc;

    *app_out = NULL;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    app = raft_malloc(sizeof(*app));
    if (!app) {
        rc = -ENOMEM;
        goto fail;
    }
    uv_pipe_init(l->tr->loop, app, 0);
    uv_pipe_init(l->tr->loop, &l->local, 0);
    l->local.data = l;
    l->handles++;
    l->local_open = true;
    rc = uv_pipe_open(app, sv[0]);
    if (rc == 0) {
        sv[0] = -1;
        rc = uv_pipe_open(&l->local, sv[1]);
    }
    if (rc == 0) {
        sv[1] = -1;
        rc = uv_read_start((uv_stream_t *)&l->local, on_alloc, on_local_read);
    }
    if (rc == 0 && nleft) {
        dpr_buf_init(&b);
        rc = dpr_buf_append(&b, left, nleft);
        if (rc == 0)
            rc = write_buf((uv_stream_t *)&l->local, &b);
        dpr_buf_free(&b);
    }
    if (rc < 0) {
        uv_close((uv_handle_t *)app, on_app_closed);
        app = NULL;
        goto fail;
    }
    l->handed = true;
    *app_out = (uv_stream_t *)app;
    return 0;
fail:
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    return rc;
}

/* The incoming side: c-raft's handshake (rafthello.h) from l->plain once
 * it is whole, then c-raft gets the connection. */
static void incoming_handshake(tlink *l)
{
    char address[AGENT_RAFT_HELLO_ADDRESS_MAX];
    dpr_err err = DPR_ERR_INIT;
    uv_stream_t *app;
    uint64_t id;
    long used = agent_raft_hello_parse(l->plain.data, l->plain.len, &id, address,
                                       sizeof(address), &err);

    if (used == 0)
        return;
    if (used < 0) {
        refused(l->tr, l, err.msg);
        link_close(l);
        return;
    }
    if (hand_over(l, l->plain.data + used, l->plain.len - (size_t)used, &app) < 0) {
        link_close(l);
        return;
    }
    dpr_buf_free(&l->plain);
    l->tr->accept_cb(l->tr->t, id, address, app);
}

/* The outgoing side: c-raft's handshake inside TLS, then the connection
 * is c-raft's. */
static void outgoing_ready(tlink *l)
{
    rafttls *tr = l->tr;
    struct raft_uv_connect *req = l->req;
    uv_stream_t *app;
    dpr_buf b;
    int rc;

    dpr_buf_init(&b);
    rc = agent_raft_hello_encode(tr->id, tr->address, &b);
    if (rc == 0)
        rc = dpr_tls_conn_write(l->tls, b.data, b.len);
    dpr_buf_free(&b);
    if (rc == 0)
        rc = send_cipher(l);
    if (rc == 0)
        rc = hand_over(l, NULL, 0, &app);
    if (rc < 0) {
        link_close(l);
        return;
    }
    l->req = NULL;
    l->cb(req, app, 0);
}

static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    tlink *l = s->data;
    bool was_verified = l->verified;
    dpr_buf plain;
    char why[400];
    int rc;

    if (n <= 0) {
        free(buf->base);
        if (n < 0) {
            if (!l->verified)
                log_debug("raft: the connection %s %s ended before TLS was established: %s",
                          l->incoming ? "from" : "to", l->peer, uv_strerror((int)n));
            link_close(l);
        }
        return;
    }
    dpr_buf_init(&plain);
    rc = agent_tls_input(l->tls, s, buf->base, (size_t)n, &l->verified, &plain, "speak Raft",
                         why, sizeof(why));
    free(buf->base);
    if (rc < 0) {
        refused(l->tr, l, why);
        goto close;
    }
    if (!dpr_tls_conn_established(l->tls))
        goto out;
    if (!was_verified) {
        if (!l->incoming) {
            outgoing_ready(l);
            if (l->closing)
                goto out;
        }
    }
    if (l->handed && plain.len) {
        if (write_buf((uv_stream_t *)&l->local, &plain) < 0)
            goto close;
    } else if (!l->handed && plain.len) {
        if (dpr_buf_append(&l->plain, plain.data, plain.len) < 0)
            goto close;
        incoming_handshake(l);
    }
    if (dpr_tls_conn_eof(l->tls))
        goto close;
out:
    dpr_buf_free(&plain);
    return;
close:
    dpr_buf_free(&plain);
    link_close(l);
}

static tlink *link_new(rafttls *tr, bool incoming)
{
    tlink *l = calloc(1, sizeof(*l));

    if (!l)
        return NULL;
    l->tr = tr;
    l->incoming = incoming;
    l->started = uv_now(tr->loop);
    dpr_buf_init(&l->plain);
    uv_tcp_init(tr->loop, &l->tcp);
    l->tcp.data = l;
    l->handles = 1;
    l->next = tr->links;
    if (tr->links)
        tr->links->prev = l;
    tr->links = l;
    return l;
}

static int link_tls(tlink *l)
{
    dpr_err err = DPR_ERR_INIT;
    dpr_tls_ctx *ctx = l->incoming ? l->tr->tls->server : l->tr->tls->client;
    int rc = dpr_tls_conn_new(ctx, NULL, &l->tls, &err);

    if (rc < 0)
        log_error("raft: a TLS connection %s %s: %s", l->incoming ? "from" : "to", l->peer,
                  err.msg);
    return rc;
}

static void on_connection(uv_stream_t *server, int status)
{
    rafttls *tr = server->data;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    tlink *l;

    if (status < 0 || tr->closing)
        return;
    l = link_new(tr, true);
    if (!l)
        return;
    if (uv_accept(server, (uv_stream_t *)&l->tcp) < 0) {
        link_close(l);
        return;
    }
    uv_tcp_nodelay(&l->tcp, 1);
    if (uv_tcp_getpeername(&l->tcp, (struct sockaddr *)&ss, &len) == 0)
        dpr_addr_format((struct sockaddr *)&ss, l->peer, sizeof(l->peer));
    if (link_tls(l) < 0 ||
        uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_tcp_read) < 0)
        link_close(l);
}

static void on_tcp_connected(uv_connect_t *c, int status)
{
    tlink *l = c->data;

    if (l->closing)
        return;
    if (status < 0) {
        log_debug("raft: cannot connect to %s: %s", l->peer, uv_strerror(status));
        link_close(l);
        return;
    }
    l->tcp_up = true;
    uv_tcp_nodelay(&l->tcp, 1);
    /* the engine holds the client's hello */
    if (send_cipher(l) < 0 ||
        uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_tcp_read) < 0)
        link_close(l);
}

static rafttls *of(struct raft_uv_transport *t)
{
    return t->impl;
}

/* "IPV4:PORT" into an address. */
static int parse_address(const char *address, struct sockaddr_in *sa)
{
    dpr_hostport hp;
    dpr_err err = DPR_ERR_INIT;

    if (dpr_hostport_parse(address, 0, &hp, &err) < 0)
        return -EINVAL;
    return uv_ip4_addr(hp.host, hp.port, sa);
}

static void on_sweep(uv_timer_t *h)
{
    rafttls *tr = h->data;
    uint64_t now = uv_now(tr->loop);
    tlink *l, *next;

    for (l = tr->links; l; l = next) {
        next = l->next;
        if (l->handed || l->closing || now - l->started < HANDSHAKE_TIMEOUT_MS)
            continue;
        if (!l->incoming && !l->tcp_up) /* (a node that is down: nothing refused) */
            log_debug("raft: cannot connect to %s within 10 s", l->peer);
        else
            refused(tr, l, "no TLS and Raft handshake within 10 s");
        link_close(l);
    }
}

static int t_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    rafttls *tr = of(t);

    if (strlen(address) >= sizeof(tr->address)) {
        snprintf(t->errmsg, sizeof(t->errmsg), "address too long");
        return RAFT_INVALID;
    }
    tr->id = id;
    snprintf(tr->address, sizeof(tr->address), "%s", address);
    uv_tcp_init(tr->loop, &tr->listener);
    tr->listener.data = tr;
    tr->listener_init = true;
    uv_timer_init(tr->loop, &tr->sweep);
    tr->sweep.data = tr;
    tr->sweep_init = true;
    uv_timer_start(&tr->sweep, on_sweep, 1000, 1000);
    return 0;
}

static int t_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    rafttls *tr = of(t);
    struct sockaddr_in sa;
    int rc = parse_address(tr->address, &sa);

    tr->accept_cb = cb;
    if (rc == 0)
        rc = uv_tcp_bind(&tr->listener, (struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&tr->listener, 128, on_connection);
    if (rc < 0) {
        snprintf(t->errmsg, sizeof(t->errmsg), "listen on %.200s: %s", tr->address,
                 uv_strerror(rc));
        return RAFT_IOERR;
    }
    return 0;
}

static int t_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                     const char *address, raft_uv_connect_cb cb)
{
    rafttls *tr = of(t);
    struct sockaddr_in sa;
    tlink *l;
    int rc;

    (void)id;
    if (parse_address(address, &sa) < 0) {
        snprintf(t->errmsg, sizeof(t->errmsg), "bad address %s", address);
        return RAFT_NOCONNECTION;
    }
    l = link_new(tr, false);
    if (!l)
        return RAFT_NOMEM;
    snprintf(l->peer, sizeof(l->peer), "%s", address);
    l->creq.data = l;
    rc = link_tls(l);
    if (rc == 0)
        rc = uv_tcp_connect(&l->creq, &l->tcp, (struct sockaddr *)&sa, on_tcp_connected);
    if (rc < 0) {
        link_close(l); /* no callback: req is not set yet */
        snprintf(t->errmsg, sizeof(t->errmsg), "connect to %s: %s", address,
                 rc == -ENOMEM ? "out of memory" : "cannot start");
        return RAFT_NOCONNECTION;
    }
    l->req = req;
    l->cb = cb;
    return 0;
}

static void on_sweep_closed(uv_handle_t *h)
{
    rafttls *tr = h->data;

    tr->sweep_init = false;
    maybe_closed(tr);
}

static void on_listener_closed(uv_handle_t *h)
{
    rafttls *tr = h->data;

    tr->listener_init = false;
    maybe_closed(tr);
}

static void t_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    rafttls *tr = of(t);
    tlink *l, *next;

    tr->closing = true;
    tr->close_cb = cb;
    for (l = tr->links; l; l = next) {
        next = l->next;
        link_close(l);
    }
    if (tr->sweep_init)
        uv_close((uv_handle_t *)&tr->sweep, on_sweep_closed);
    if (tr->listener_init)
        uv_close((uv_handle_t *)&tr->listener, on_listener_closed);
    maybe_closed(tr);
}

int agent_rafttls_init(struct raft_uv_transport *t, uv_loop_t *loop, const agent_tls *tls)
{
    rafttls *tr = calloc(1, sizeof(*tr));

    if (!tr)
        return RAFT_NOMEM;
    tr->t = t;
    tr->loop = loop;
    tr->tls = tls;
    t->impl = tr;
    t->init = t_init;
    t->listen = t_listen;
    t->connect = t_connect;
    t->close = t_close;
    return 0;
}

void agent_rafttls_set(struct raft_uv_transport *t, const agent_tls *tls)
{
    of(t)->tls = tls;
}

void agent_rafttls_free(struct raft_uv_transport *t)
{
    free(t->impl);
    t->impl = NULL;
}
