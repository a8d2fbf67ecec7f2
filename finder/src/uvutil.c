/* uvutil.c - libuv helpers (see uvutil.h). */
#include "uvutil.h"

#include <sys/socket.h>

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
