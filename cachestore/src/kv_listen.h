/*
 * kv_listen.h - a cache-store's client ports (dpr-kv's and dpr-redis'):
 * the plain one (--port, unless 0) and the TLS one (--tls-port, Redis'
 * model: docs/tls.md) on --listen's host. Which one a connection came
 * through is what decides whether it gets a TLS engine.
 */
#ifndef KV_LISTEN_H
#define KV_LISTEN_H

#include <stdbool.h>
#include <uv.h>

#include "common/addr.h"
#include "kv_config.h"

typedef struct kv_listen {
    uv_tcp_t plain, tls;
    bool plain_on, tls_on;             /* the handle is initialised (close it) */
    char bound[DPR_ADDR_STR_MAX];      /* the address served: the plain one, or the TLS one
                                        * with --port 0 */
    char tls_bound[DPR_ADDR_STR_MAX];
} kv_listen;

/* Listens on cfg's plain port unless it is 0, and on its TLS port when
 * tls (a context was made from the --tls-* files), calling cb with
 * server->data = data for each connection. Logs "listening on ADDR" (with
 * " (TLS, client certificates: ...)") or the failure. 0 or a negative
 * errno / libuv error; kv_listen_stop in both cases. */
int kv_listen_start(kv_listen *l, uv_loop_t *loop, const kv_config *cfg, bool tls,
                    uv_connection_cb cb, void *data);
/* Closes the listeners (no new connections). */
void kv_listen_stop(kv_listen *l);
/* Did server (a connection callback's) come from the TLS port? */
bool kv_listen_is_tls(const kv_listen *l, const uv_stream_t *server);
/* The port number listened on, as text: the TLS one or the plain one; "0"
 * when there is none (INFO tcp_port/tls_port, CONFIG GET). */
const char *kv_listen_port(const kv_listen *l, bool tls);

#endif
