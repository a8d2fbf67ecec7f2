/* agenttls.c - the agent's TLS contexts (see agenttls.h). */
#include "agenttls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* The dpr:// URI of cert into cluster/role/name: 0, or -EACCES. */
static int own_uri(X509 *cert, char *cluster, size_t ccap, char *role, size_t rcap, char *name,
                   size_t ncap, dpr_err *err)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int rc = dpr_err_set(err, -EACCES, "it has no URI SAN dpr://CLUSTER/node/NAME "
                         "(make it with dprctl pki issue node)");

    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        const char *s;
        int n;

        if (g->type != GEN_URI)
            continue;
        s = (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        n = ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (n < 6 || strncmp(s, "dpr://", 6) != 0)
            continue;
        rc = dpr_tls_uri_parse(s, (size_t)n, cluster, ccap, role, rcap, name, ncap, err);
        if (rc < 0)
            rc = -EACCES;
        break;
    }
    GENERAL_NAMES_free(sans);
    return rc;
}

int agent_tls_check_own(const char *cert_file, const char *cluster, const char *node,
                        dpr_err *err)
{
    char ccl[64], role[16], name[DPR_TLS_NAME_MAX];
    FILE *f = fopen(cert_file, "r");
    X509 *cert = NULL;
    int rc;

    if (!f)
        return dpr_err_set(err, -errno, "cannot read %s: %s", cert_file, strerror(errno));
    cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!cert)
        return dpr_err_set(err, -EIO, "%s holds no PEM certificate", cert_file);
    rc = own_uri(cert, ccl, sizeof(ccl), role, sizeof(role), name, sizeof(name), err);
    if (rc < 0)
        dpr_err_prefix(err, "the node certificate %s is not this node's", cert_file);
    else if (strcmp(role, "node") != 0 || strcmp(ccl, cluster) != 0 || strcmp(name, node) != 0)
        rc = dpr_err_set(err, -EACCES, "the node certificate %s is dpr://%s/%s/%s, not this "
                         "node's dpr://%s/node/%s (issue one with dprctl pki issue node --node "
                         "%s)", cert_file, ccl, role, name, cluster, node, node);
    else if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0)
        rc = dpr_err_set(err, -EACCES, "the node certificate %s has expired", cert_file);
    else if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
        rc = dpr_err_set(err, -EACCES, "the node certificate %s is not valid yet", cert_file);
    X509_free(cert);
    return rc;
}

int agent_tls_load(const agent_config *c, agent_tls **out, dpr_err *err)
{
    dpr_tls_config cfg = {
        .cert_file = c->tls_cert, .key_file = c->tls_key, .ca_file = c->tls_ca,
        .crl_file = c->tls_crl, .verify = DPR_TLS_VERIFY_REQUIRED, .cluster = c->cluster,
    };
    agent_tls *t = calloc(1, sizeof(*t));
    int rc;

    *out = NULL;
    if (!t)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    rc = agent_tls_check_own(c->tls_cert, c->cluster, c->node_name, err);
    if (rc < 0)
        goto fail;
    rc = dpr_tls_ctx_new(&cfg, true, &t->server, err);
    if (rc < 0)
        goto fail;
    rc = dpr_tls_ctx_new(&cfg, false, &t->client, err);
    if (rc < 0)
        goto fail;
    dpr_tls_ctx_describe(t->server, t->describe, sizeof(t->describe));
    *out = t;
    return 0;
fail:
    agent_tls_free(t);
    return rc;
}

void agent_tls_free(agent_tls *t)
{
    if (!t)
        return;
    dpr_tls_ctx_free(t->server);
    dpr_tls_ctx_free(t->client);
    free(t);
}

/* ---- a connection's engine on a libuv stream ------------------------------------------ */

#define REFUSALS_PER_SECOND 20

int agent_tls_flush(dpr_tls_conn *t, uv_stream_t *s, dpr_uv_written_cb done)
{
    dpr_buf b = DPR_BUF_INIT;
    ssize_t n = dpr_tls_conn_take(t, &b);

    if (n <= 0) {
        dpr_buf_free(&b);
        return (int)n;
    }
    return dpr_uv_write(s, &b, done);
}

int agent_tls_send(dpr_tls_conn *t, uv_stream_t *s, const void *data, size_t n,
                   dpr_uv_written_cb done)
{
    int rc = dpr_tls_conn_write(t, data, n);

    return rc < 0 ? rc : agent_tls_flush(t, s, done);
}

int agent_tls_input(dpr_tls_conn *t, uv_stream_t *s, const void *data, size_t n,
                    bool *verified, dpr_buf *plain, const char *what, char *why, size_t cap)
{
    const dpr_tls_peer *p;
    ssize_t r = dpr_tls_conn_input(t, data, n, plain);

    /* (after a failure the engine may hold an alert for the peer) */
    agent_tls_flush(t, s, NULL);
    if (r < 0) {
        snprintf(why, cap, "%s", r == -ENOMEM ? "out of memory" : dpr_tls_conn_errstr(t));
        return (int)r;
    }
    if (*verified || !dpr_tls_conn_established(t))
        return 0;
    p = dpr_tls_conn_peer(t);
    if (!p || strcmp(p->role, "node") != 0) {
        snprintf(why, cap, "the peer's certificate (%s) is not a node's: only agents %s",
                 p ? p->subject : "none", what);
        return -EACCES;
    }
    *verified = true;
    return 0;
}

bool agent_tls_limit_ok(agent_tls_limit *l, uint64_t now_ms)
{
    uint64_t sec = now_ms / 1000;

    if (sec != l->second) {
        l->second = sec;
        l->count = 0;
    }
    return l->count++ < REFUSALS_PER_SECOND;
}
