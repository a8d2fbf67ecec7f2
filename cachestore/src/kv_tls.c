/* kv_tls.c - see kv_tls.h. */
#include "kv_tls.h"

#include <errno.h>

#include "common/err.h"
#include "common/log.h"

int kv_tls_load(const kv_config *cfg, dpr_tls_ctx **out, dpr_err *err)
{
    dpr_tls_config tc = {
        .cert_file = cfg->tls_cert_file,
        .key_file = cfg->tls_key_file,
        .ca_file = cfg->tls_ca_cert_file[0] ? cfg->tls_ca_cert_file : NULL,
        .crl_file = cfg->tls_crl_file[0] ? cfg->tls_crl_file : NULL,
        .verify = cfg->tls_auth_clients,
    };

    *out = NULL;
    if (!cfg->tls_port)
        return 0;
    return dpr_tls_ctx_new(&tc, true, out, err);
}

/* *ctx replaced by fresh (the old one's connections keep it), or kept when
 * loading failed (r < 0, err); both logged. */
static int swap_ctx(dpr_tls_ctx **ctx, dpr_tls_ctx *fresh, int r, dpr_err *err,
                    const char *what)
{
    char desc[400];

    if (r < 0) {
        log_error("SIGHUP: %s not reloaded, new connections keep the old ones: %s", what,
                  dpr_err_str(err, r));
        return r;
    }
    dpr_tls_ctx_free(*ctx); /* connections made from it keep it */
    *ctx = fresh;
    dpr_tls_ctx_describe(fresh, desc, sizeof(desc));
    log_notice("SIGHUP: %s reloaded for new connections: %s", what, desc);
    return 0;
}

int kv_tls_reload(const kv_config *cfg, dpr_tls_ctx **ctx)
{
    dpr_tls_ctx *fresh = NULL;
    dpr_err err = DPR_ERR_INIT;
    int r;

    if (!*ctx) {
        if (!cfg->finder_tls)
            log_info("SIGHUP: no TLS port: nothing to reload");
        return 0;
    }
    r = kv_tls_load(cfg, &fresh, &err);
    return swap_ctx(ctx, fresh, r, &err, "TLS certificates");
}

int kv_tls_reload_finder(const kv_config *cfg, dpr_tls_ctx **ctx)
{
    dpr_tls_ctx *fresh = NULL;
    dpr_tls_config tc;
    dpr_err err = DPR_ERR_INIT;
    int r;

    if (!*ctx || !kv_tls_finder(cfg, &tc))
        return 0;
    r = dpr_tls_ctx_new(&tc, false, &fresh, &err);
    return swap_ctx(ctx, fresh, r, &err, "the finder link's TLS certificates");
}

const dpr_tls_config *kv_tls_finder(const kv_config *cfg, dpr_tls_config *out)
{
    if (!cfg->finder_tls)
        return NULL;
    *out = (dpr_tls_config){
        .cert_file = cfg->tls_cert_file,
        .key_file = cfg->tls_key_file,
        .ca_file = cfg->tls_ca_cert_file,
        .crl_file = cfg->tls_crl_file[0] ? cfg->tls_crl_file : NULL,
        .verify = DPR_TLS_VERIFY_REQUIRED,
    };
    return out;
}

int kv_tls_encrypt(dpr_tls_conn *t, dpr_buf *out, bool refused)
{
    int r = 0;

    if (out->len && !refused)
        r = dpr_tls_conn_write(t, out->data, out->len);
    out->len = 0;
    if (r == 0 && dpr_tls_conn_take(t, out) < 0)
        r = -ENOMEM;
    if (r < 0)
        log_warning("client: TLS: %s; closing the connection",
                    r == -ENOMEM ? "out of memory" : dpr_tls_conn_errstr(t));
    return r;
}
