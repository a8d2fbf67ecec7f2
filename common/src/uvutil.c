/* uvutil.c - see common/uvutil.h. */
#include "common/uvutil.h"

#include <stdlib.h>
#include <sys/socket.h>

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
