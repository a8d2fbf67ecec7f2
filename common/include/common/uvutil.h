/*
 * common/uvutil.h - libuv helpers for the daemons' servers (the finder's
 * RESP server, the agent's control socket, dpr-kv, dpr-redis).
 */
#ifndef COMMON_UVUTIL_H
#define COMMON_UVUTIL_H

#include <stdbool.h>

#include <uv.h>

#include "common/buf.h"
#include "dpr/err.h"

/*
 * Before closing a client that was answered with an error, drop what it has
 * already sent: closing a socket with unread input makes the kernel send a
 * reset, which can destroy the error reply before the client reads it.
 * Works on any stream handle (TCP or pipe); reads at most 1 MiB.
 */
void dpr_uv_discard_input(uv_handle_t *h);

/*
 * An alloc_cb's work for a stream read into a dpr_buf: reserves at least
 * chunk free bytes at the end of b and points *out at all of its free
 * room; without memory *out is empty (the read_cb then gets UV_ENOBUFS).
 */
void dpr_uv_read_room(dpr_buf *b, size_t chunk, uv_buf_t *out);

/* Whether a failed write's status only says the peer went away (or the
 * handle was closed): nothing worth logging. */
bool dpr_uv_peer_gone(int status);

/* Called when a dpr_uv_write finished (status < 0: it failed); the buffer
 * is already freed. */
typedef void (*dpr_uv_written_cb)(uv_stream_t *stream, int status);

/*
 * Writes the content of *b to stream and takes its memory: *b is empty
 * afterwards, and the bytes are freed when the write is done, just before
 * done(stream, status) runs (done may be NULL). 0, or a negative libuv error
 * (then nothing was queued and *b is freed).
 */
int dpr_uv_write(uv_stream_t *stream, dpr_buf *b, dpr_uv_written_cb done);

/* The peer's address of a TCP handle, "host:port" ("?" when unknown). */
void dpr_uv_peer_name(const uv_tcp_t *t, char *out, size_t cap);

/*
 * A listener on listen's host ("HOST:PORT", common/addr.h) at port (-1:
 * listen's own port; 0 picks a free one), calling cb for each connection.
 * *l is initialised here with l->data = data, and *inited set once it is
 * (close the handle then, also on failure). The address it listens on goes
 * to bound. 0, or a negative errno / libuv error with err set ("cannot use
 * listen address ...", "cannot listen on ADDR: ...").
 */
int dpr_uv_tcp_listen(uv_loop_t *loop, uv_tcp_t *l, bool *inited, const char *listen, int port,
                      uv_connection_cb cb, void *data, char *bound, size_t cap, dpr_err *err);

#endif
