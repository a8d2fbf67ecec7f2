/* uvutil.h - libuv helpers shared by the finder's server and the agent. */
#ifndef DPR_UVUTIL_H
#define DPR_UVUTIL_H

#include <stdbool.h>

#include <uv.h>

/*
 * Before closing a client that was answered with an error, drop what it has
 * already sent: closing a socket with unread input makes the kernel send a
 * reset, which can destroy the error reply before the client reads it.
 * Works on any stream handle (TCP or pipe); reads at most 1 MiB.
 */
void dpr_uv_discard_input(uv_handle_t *h);

/*
 * Whether a failed write's status only says the peer went away (or the
 * handle was closed): nothing worth logging.
 */
bool dpr_uv_peer_gone(int status);

#endif
