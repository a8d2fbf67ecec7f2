/* kv_listen.c - see kv_listen.h. */
#include "kv_listen.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/tls.h"
#include "common/uvutil.h"

/* A listener on --listen's host at port (-1: --listen's port). */
static int listen_on(uv_tcp_t *h, bool *on, uv_loop_t *loop, const kv_config *cfg, int port,
                     const char *what, uv_connection_cb cb, void *data, char *bound, size_t cap)
{
    dpr_err err = DPR_ERR_INIT;
    int r = dpr_uv_tcp_listen(loop, h, on, cfg->listen, port, cb, data, bound, cap, &err);

    if (r < 0)
        log_error("%s%s", err.msg, what);
    else
        log_info("listening on %s%s", bound, what);
    return r;
}

int kv_listen_start(kv_listen *l, uv_loop_t *loop, const kv_config *cfg, bool tls,
                    uv_connection_cb cb, void *data)
{
    char tls_what[128];
    int r = 0;

    if (cfg->port != 0)
        r = listen_on(&l->plain, &l->plain_on, loop, cfg, cfg->port, "", cb, data, l->bound,
                      sizeof(l->bound));
    if (r == 0 && tls) {
        snprintf(tls_what, sizeof(tls_what), " (TLS, client certificates: %s)",
                 dpr_tls_verify_name(cfg->tls_auth_clients));
        r = listen_on(&l->tls, &l->tls_on, loop, cfg, (int)cfg->tls_port, tls_what, cb, data,
                      l->tls_bound, sizeof(l->tls_bound));
        if (r == 0 && !l->plain_on)
            memcpy(l->bound, l->tls_bound, sizeof(l->bound));
    }
    return r;
}

void kv_listen_stop(kv_listen *l)
{
    if (l->plain_on) {
        uv_close((uv_handle_t *)&l->plain, NULL);
        l->plain_on = false;
    }
    if (l->tls_on) {
        uv_close((uv_handle_t *)&l->tls, NULL);
        l->tls_on = false;
    }
}

bool kv_listen_is_tls(const kv_listen *l, const uv_stream_t *server)
{
    return l->tls_on && server == (const uv_stream_t *)&l->tls;
}

const char *kv_listen_port(const kv_listen *l, bool tls)
{
    const char *b = tls ? l->tls_bound : l->bound;
    const char *colon = strrchr(b, ':');

    return (tls ? l->tls_on : l->plain_on) && colon ? colon + 1 : "0";
}
