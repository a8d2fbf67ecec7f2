/* rafttransport.c - the Raft transport wrapper (see rafttransport.h). */
#include "rafttransport.h"
#include "rafttls.h"

#include <stdlib.h>
#include <string.h>

/* What the wrapper adds to every connection. */
static void tune(struct uv_stream_s *stream)
{
    if (stream && stream->type == UV_TCP)
        uv_tcp_nodelay((uv_tcp_t *)stream, 1);
}

static agent_raft_transport *of_outer(struct raft_uv_transport *t)
{
    return (agent_raft_transport *)t; /* outer is the first member */
}

static void copy_error(agent_raft_transport *w)
{
    memcpy(w->outer.errmsg, w->inner.errmsg, sizeof(w->outer.errmsg));
}

static int t_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    agent_raft_transport *w = of_outer(t);
    int rv = w->inner.init(&w->inner, id, address);

    if (rv != 0)
        copy_error(w);
    return rv;
}

static void on_accept(struct raft_uv_transport *inner, raft_id id, const char *address,
                      struct uv_stream_s *stream)
{
    agent_raft_transport *w = inner->data;

    tune(stream);
    w->accept_cb(&w->outer, id, address, stream);
}

static int t_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    agent_raft_transport *w = of_outer(t);
    int rv;

    w->accept_cb = cb;
    rv = w->inner.listen(&w->inner, on_accept);
    if (rv != 0)
        copy_error(w);
    return rv;
}

typedef struct connect_req {
    struct raft_uv_connect inner;
    struct raft_uv_connect *outer;
    raft_uv_connect_cb cb;
} connect_req;

static void on_connect(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
    connect_req *c = req->data;
    struct raft_uv_connect *outer = c->outer;
    raft_uv_connect_cb cb = c->cb;

    free(c);
    if (status == 0)
        tune(stream);
    cb(outer, stream, status);
}

static int t_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                     const char *address, raft_uv_connect_cb cb)
{
    agent_raft_transport *w = of_outer(t);
    connect_req *c = calloc(1, sizeof(*c));
    int rv;

    if (!c)
        return RAFT_NOMEM;
    c->inner.data = c;
    c->outer = req;
    c->cb = cb;
    rv = w->inner.connect(&w->inner, &c->inner, id, address, on_connect);
    if (rv != 0) {
        copy_error(w);
        free(c);
    }
    return rv;
}

static void on_closed(struct raft_uv_transport *inner)
{
    agent_raft_transport *w = inner->data;

    if (w->close_cb)
        w->close_cb(&w->outer);
}

static void t_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    agent_raft_transport *w = of_outer(t);

    w->close_cb = cb;
    w->inner.close(&w->inner, on_closed);
}

int agent_raft_transport_init(agent_raft_transport *t, uv_loop_t *loop, const agent_tls *tls)
{
    int rv;

    memset(t, 0, sizeof(*t));
    t->tls = tls != NULL;
    rv = tls ? agent_rafttls_init(&t->inner, loop, tls) : raft_uv_tcp_init(&t->inner, loop);
    if (rv != 0)
        return rv;
    t->inner_open = 1;
    t->inner.data = t;
    t->outer.init = t_init;
    t->outer.listen = t_listen;
    t->outer.connect = t_connect;
    t->outer.close = t_close;
    return 0;
}

void agent_raft_transport_free(agent_raft_transport *t)
{
    if (t->inner_open && t->tls)
        agent_rafttls_free(&t->inner);
    else if (t->inner_open)
        raft_uv_tcp_close(&t->inner);
    t->inner_open = 0;
}

void agent_raft_transport_tls(agent_raft_transport *t, const agent_tls *tls)
{
    if (t->inner_open && t->tls && tls)
        agent_rafttls_set(&t->inner, tls);
}
