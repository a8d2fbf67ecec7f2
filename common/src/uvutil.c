/* uvutil.c - see common/uvutil.h. */
#include "common/uvutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "common/addr.h"
#include "common/err.h"

void dpr_uv_read_room(dpr_buf *b, size_t chunk, uv_buf_t *out)
{
    if (dpr_buf_reserve(b, chunk) < 0) {
        *out = uv_buf_init(NULL, 0);
        return;
    }
    *out = uv_buf_init(b->data + b->len, (unsigned)(b->cap - b->len));
}

void dpr_uv_discard_input(uv_handle_t *h)
{
    uv_os_fd_t fd;
    char sink[4096];

    if (uv_fileno(h, &fd) < 0)
        return;
    for (int i = 0; i < 256; i++)
        if (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) <= 0)
            break;
}

bool dpr_uv_peer_gone(int status)
{
    return status == UV_ECANCELED || status == UV_EPIPE || status == UV_ECONNRESET;
}

typedef struct owned_write {
    uv_write_t req;
    dpr_uv_written_cb done;
    char *data;
} owned_write;

static void on_owned_write(uv_write_t *req, int status)
{
    owned_write *w = (owned_write *)req;
    dpr_uv_written_cb done = w->done;
    uv_stream_t *stream = req->handle;

    free(w->data);
    free(w);
    if (done)
        done(stream, status);
}

int dpr_uv_write(uv_stream_t *stream, dpr_buf *b, dpr_uv_written_cb done)
{
    owned_write *w = malloc(sizeof(*w));
    size_t len;
    uv_buf_t ub;
    int r;

    if (!w) {
        dpr_buf_free(b);
        return UV_ENOMEM;
    }
    w->done = done;
    w->data = dpr_buf_steal(b, &len);
    ub = uv_buf_init(w->data, (unsigned)len);
    r = uv_write(&w->req, stream, &ub, 1, on_owned_write);
    if (r < 0) {
        free(w->data);
        free(w);
    }
    return r;
}

void dpr_uv_peer_name(const uv_tcp_t *t, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    snprintf(out, cap, "?");
    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) == 0)
        dpr_addr_format((struct sockaddr *)&ss, out, cap);
}

int dpr_uv_tcp_listen(uv_loop_t *loop, uv_tcp_t *l, bool *inited, const char *listen, int port,
                      uv_connection_cb cb, void *data, char *bound, size_t cap, dpr_err *err)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int len = sizeof(ss), r;
    dpr_hostport hp;
    dpr_err perr = DPR_ERR_INIT;

    r = dpr_hostport_parse(listen, DPR_HOSTPORT_PORT0, &hp, &perr);
    if (r == 0 && port >= 0)
        hp.port = (uint16_t)port;
    if (r == 0 && dpr_hostport_resolve(&hp, true, &ss, &sslen, &perr) < 0)
        r = -EADDRNOTAVAIL;
    if (r < 0)
        return dpr_err_set(err, r, "cannot use listen address '%s': %s", listen, perr.msg);
    r = uv_tcp_init(loop, l);
    if (r < 0)
        return dpr_err_set(err, r, "cannot listen on %s: %s", listen, uv_strerror(r));
    l->data = data;
    *inited = true;
    r = uv_tcp_bind(l, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)l, 511, cb);
    if (r == 0)
        r = uv_tcp_getsockname(l, (struct sockaddr *)&ss, &len);
    dpr_addr_format((struct sockaddr *)&ss, bound, cap);
    if (r < 0)
        return dpr_err_set(err, r, "cannot listen on %s: %s", bound, uv_strerror(r));
    return 0;
}
