/* tls.c - see common/tls.h. OpenSSL 3 with memory BIOs: the socket is the
 * caller's. No session cache and no tickets: every connection is verified
 * in full, against the CRL of the context it was made from. */
#include "common/tls.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/err.h"

#define READ_CHUNK (16u * 1024)

struct dpr_tls_ctx {
    SSL_CTX *ssl;
    bool server;
    dpr_tls_verify verify;
    char cluster[64]; /* "": any */
};

struct dpr_tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl once rbio_owned */
    bool rbio_owned;
    char cluster[64];      /* copied from the context */
    dpr_tls_verify verify; /* copied from the context */
    dpr_buf pending;       /* plaintext written before the handshake ended */
    dpr_tls_peer *peer;
    bool established, eof;
    int failed; /* a negative errno once failed */
    dpr_err err;
};

int dpr_tls_verify_parse(const char *s, dpr_tls_verify *out)
{
    if (!strcasecmp(s, "no") || !strcasecmp(s, "off") || !strcasecmp(s, "none"))
        *out = DPR_TLS_VERIFY_NONE;
    else if (!strcasecmp(s, "optional"))
        *out = DPR_TLS_VERIFY_OPTIONAL;
    else if (!strcasecmp(s, "yes") || !strcasecmp(s, "required"))
        *out = DPR_TLS_VERIFY_REQUIRED;
    else
        return -EINVAL;
    return 0;
}

const char *dpr_tls_verify_name(dpr_tls_verify v)
{
    return v == DPR_TLS_VERIFY_REQUIRED ? "yes" : v == DPR_TLS_VERIFY_OPTIONAL ? "optional" : "no";
}

/* OpenSSL's reason for the oldest queued error ("no start line"), and
 * clears the queue. */
static const char *ssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_error();
    const char *r;

    if (!e) {
        snprintf(buf, cap, "unknown error");
        return buf;
    }
    r = ERR_reason_error_string(e);
    if (r)
        snprintf(buf, cap, "%s", r);
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

static int load_crl(SSL_CTX *ssl, const char *path, dpr_err *err)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ssl);
    X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    char why[160];

    if (!lookup || X509_load_crl_file(lookup, path, X509_FILETYPE_PEM) <= 0)
        return dpr_err_set(err, -EINVAL, "cannot load CRL file %s: %s", path,
                           ssl_reason(why, sizeof(why)));
    /* the leaf's issuer must have a CRL in the file: a CA without one fails
     * every peer (a clear failure rather than a silent skip) */
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    return 0;
}

static int load_files(SSL_CTX *ssl, const dpr_tls_config *cfg, dpr_err *err)
{
    char why[160];

    if (cfg->cert_file && SSL_CTX_use_certificate_chain_file(ssl, cfg->cert_file) != 1)
        return dpr_err_set(err, -EINVAL, "cannot load certificate file %s: %s", cfg->cert_file,
                           ssl_reason(why, sizeof(why)));
    if (cfg->key_file && SSL_CTX_use_PrivateKey_file(ssl, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH)
            return dpr_err_set(err, -EINVAL,
                               "key file %s does not match certificate file %s: "
                               "%s",
                               cfg->key_file, cfg->cert_file, ssl_reason(why, sizeof(why)));
        return dpr_err_set(err, -EINVAL, "cannot load key file %s: %s", cfg->key_file,
                           ssl_reason(why, sizeof(why)));
    }
    if (cfg->cert_file && cfg->key_file && SSL_CTX_check_private_key(ssl) != 1)
        return dpr_err_set(err, -EINVAL, "key file %s does not match certificate file %s: %s",
                           cfg->key_file, cfg->cert_file, ssl_reason(why, sizeof(why)));
    if (cfg->ca_file) {
        if (SSL_CTX_load_verify_locations(ssl, cfg->ca_file, NULL) != 1)
            return dpr_err_set(err, -EINVAL, "cannot load CA file %s: %s", cfg->ca_file,
                               ssl_reason(why, sizeof(why)));
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
        if (names)
            SSL_CTX_set_client_CA_list(ssl, names); /* takes them */
    }
    if (cfg->crl_file && load_crl(ssl, cfg->crl_file, err) < 0)
        return err ? err->code : -EINVAL;
    return 0;
}

int dpr_tls_ctx_new(const dpr_tls_config *cfg, bool server, dpr_tls_ctx **out, dpr_err *err)
{
    dpr_tls_ctx *c = calloc(1, sizeof(*c));
    char why[160];
    int mode, r;

    *out = NULL;
    if (!c)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    if (cfg->cluster && strlen(cfg->cluster) >= sizeof(c->cluster)) {
        free(c);
        return dpr_err_set(err, -EINVAL, "cluster name '%s' too long", cfg->cluster);
    }
    if (server && (!cfg->cert_file || !cfg->key_file)) {
        free(c);
        return dpr_err_set(err, -EINVAL, "a TLS server needs a certificate and a key file");
    }
    if (cfg->verify != DPR_TLS_VERIFY_NONE && !cfg->ca_file) {
        free(c);
        return dpr_err_set(err, -EINVAL, "checking peers' certificates needs a CA file");
    }
    if (cfg->cluster && cfg->verify == DPR_TLS_VERIFY_NONE) {
        free(c);
        return dpr_err_set(err, -EINVAL,
                           "checking a peer's cluster needs its certificate "
                           "checked (verify optional or required)");
    }
    c->server = server;
    c->verify = cfg->verify;
    if (cfg->cluster)
        snprintf(c->cluster, sizeof(c->cluster), "%s", cfg->cluster);
    c->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!c->ssl) {
        r = dpr_err_set(err, -ENOMEM, "cannot make a TLS context: %s",
                        ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION) != 1) {
        r = dpr_err_set(err, -EINVAL, "cannot require TLS 1.2: %s", ssl_reason(why, sizeof(why)));
        goto fail;
    }
    SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(c->ssl, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    (void)SSL_CTX_set_num_tickets(c->ssl, 0);
    r = load_files(c->ssl, cfg, err);
    if (r < 0)
        goto fail;
    mode = SSL_VERIFY_NONE;
    if (cfg->verify != DPR_TLS_VERIFY_NONE)
        mode = SSL_VERIFY_PEER;
    if (server && cfg->verify == DPR_TLS_VERIFY_REQUIRED)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(c->ssl, mode, NULL);
    *out = c;
    return 0;
fail:
    SSL_CTX_free(c->ssl);
    free(c);
    return r;
}

void dpr_tls_ctx_free(dpr_tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl); /* connections hold references of their own */
    free(ctx);
}

void dpr_tls_ctx_describe(const dpr_tls_ctx *ctx, char *out, size_t cap)
{
    X509 *x = SSL_CTX_get0_certificate(ctx->ssl);
    char subject[DPR_TLS_NAME_MAX] = "", serial[80] = "?";

    if (!x) {
        snprintf(out, cap, "no certificate");
        return;
    }
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex)
        snprintf(serial, sizeof(serial), "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    snprintf(out, cap, "%s serial %s", subject, serial);
}

/* --- identity ------------------------------------------------------------ */

static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
}

/* A component of [p, end) up to '/' or the end: its length, or 0 when empty,
 * longer than max or with a character outside name_char. */
static size_t component(const char *p, const char *end, size_t max)
{
    size_t n = 0;
    while (p + n < end && p[n] != '/') {
        if (!name_char(p[n]))
            return 0;
        n++;
    }
    return n <= max ? n : 0;
}

int dpr_tls_uri_parse(const char *uri, size_t n, char *cluster, size_t ccap, char *role,
                      size_t rcap, char *name, size_t ncap, dpr_err *err)
{
    static const char scheme[] = "dpr://";
    const char *p = uri, *end = uri + n;
    size_t len;

    if (n < sizeof(scheme) - 1 || memcmp(uri, scheme, sizeof(scheme) - 1) != 0)
        return dpr_err_set(err, -EINVAL, "not a dpr:// URI");
    p += sizeof(scheme) - 1;
    len = component(p, end, 63);
    if (!len || len >= ccap || p + len == end)
        return dpr_err_set(err, -EINVAL,
                           "bad cluster name in dpr:// URI (1 to 63 characters "
                           "of A-Z a-z 0-9 . _ -, then /ROLE/NAME)");
    memcpy(cluster, p, len);
    cluster[len] = '\0';
    p += len + 1;
    len = component(p, end, 6);
    if (!((len == 4 && !memcmp(p, "node", 4)) || (len == 6 && !memcmp(p, "client", 6))) ||
        len >= rcap || p + len == end)
        return dpr_err_set(err, -EINVAL, "bad role in dpr:// URI (node or client, then /NAME)");
    memcpy(role, p, len);
    role[len] = '\0';
    p += len + 1;
    len = component(p, end, 255);
    if (!len || len >= ncap || p + len != end)
        return dpr_err_set(err, -EINVAL,
                           "bad name in dpr:// URI (1 to 255 characters of "
                           "A-Z a-z 0-9 . _ -)");
    memcpy(name, p, len);
    name[len] = '\0';
    return 0;
}

static void copy_asn1(char *dst, size_t cap, const ASN1_STRING *s)
{
    int n = ASN1_STRING_length(s);
    const unsigned char *d = ASN1_STRING_get0_data(s);
    size_t k = 0;

    for (int i = 0; i < n && k + 1 < cap; i++)
        dst[k++] = d[i] >= 0x20 && d[i] < 0x7f ? (char)d[i] : '?';
    dst[k] = '\0';
}

/* Fills p from x; a dpr:// URI that does not parse is an error (a
 * certificate that claims a cluster in a malformed way is not trusted to
 * be of any). */
static int peer_fill(dpr_tls_peer *p, X509 *x, dpr_err *err)
{
    X509_NAME *subj = X509_get_subject_name(x);
    GENERAL_NAMES *alt;
    int idx, r = 0;

    X509_NAME_oneline(subj, p->subject, sizeof(p->subject));
    idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx >= 0)
        copy_asn1(p->cn, sizeof(p->cn), X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
    alt = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; alt && i < sk_GENERAL_NAME_num(alt) && r == 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(alt, i);
        if (g->type == GEN_DNS && p->ndns < DPR_TLS_DNS_MAX) {
            copy_asn1(p->dns[p->ndns++], DPR_TLS_NAME_MAX, g->d.dNSName);
        } else if (g->type == GEN_URI) {
            const ASN1_STRING *u = g->d.uniformResourceIdentifier;
            const char *d = (const char *)ASN1_STRING_get0_data(u);
            size_t n = (size_t)ASN1_STRING_length(u);
            if (n < 6 || memcmp(d, "dpr://", 6) != 0)
                continue;
            if (p->cluster[0])
                r = dpr_err_set(err, -EACCES, "peer certificate has more than one dpr:// URI");
            else
                r = dpr_tls_uri_parse(d, n, p->cluster, sizeof(p->cluster), p->role,
                                      sizeof(p->role), p->name, sizeof(p->name), err);
        }
    }
    GENERAL_NAMES_free(alt);
    return r;
}

/* --- the engine ------------------------------------------------------------ */

int dpr_tls_conn_new(dpr_tls_ctx *ctx, const char *peer_host, dpr_tls_conn **out, dpr_err *err)
{
    dpr_tls_conn *t = calloc(1, sizeof(*t));
    char why[160];
    int r;

    *out = NULL;
    if (!t)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    dpr_buf_init(&t->pending);
    memcpy(t->cluster, ctx->cluster, sizeof(t->cluster));
    t->verify = ctx->verify;
    t->ssl = SSL_new(ctx->ssl);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        r = dpr_err_set(err, -ENOMEM, "cannot make a TLS connection: %s",
                        ssl_reason(why, sizeof(why)));
        goto fail;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* ssl owns them now */
    t->rbio_owned = true;
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (peer_host && (SSL_set_tlsext_host_name(t->ssl, peer_host) != 1 ||
                          SSL_set1_host(t->ssl, peer_host) != 1)) {
            r = dpr_err_set(err, -EINVAL, "cannot set the peer's name '%s': %s", peer_host,
                            ssl_reason(why, sizeof(why)));
            goto fail;
        }
        /* the client hello, for the caller's first dpr_tls_conn_take */
        r = SSL_do_handshake(t->ssl);
        if (r != 1 && SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ) {
            r = dpr_err_set(err, -EPROTO, "cannot start a TLS handshake: %s",
                            ssl_reason(why, sizeof(why)));
            goto fail;
        }
    }
    *out = t;
    return 0;
fail:
    if (!t->rbio_owned) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
    }
    SSL_free(t->ssl);
    free(t);
    return r;
}

void dpr_tls_conn_free(dpr_tls_conn *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    dpr_buf_free(&t->pending);
    free(t->peer);
    free(t);
}

int dpr_tls_conn_feed(dpr_tls_conn *t, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    if (n > INT_MAX)
        return -EINVAL; /* callers feed what one read brought */
    if (BIO_write(t->rbio, data, (int)n) != (int)n)
        return -ENOMEM;
    return 0;
}

/* Records a failure of an SSL_* call that returned ret: -EPROTO with
 * OpenSSL's reason (and, for a refused certificate, the verify result). */
static int fail_ssl(dpr_tls_conn *t, int ret, const char *what)
{
    int e = SSL_get_error(t->ssl, ret);
    long vr = SSL_get_verify_result(t->ssl);
    char why[160];

    int reason = ERR_GET_REASON(ERR_peek_error());
    bool not_tls = !t->established &&
                   (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_HTTP_REQUEST ||
                    reason == SSL_R_HTTPS_PROXY_REQUEST || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
                    reason == SSL_R_UNKNOWN_PROTOCOL);

    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
        snprintf(why, sizeof(why), "unexpected end of the peer's data");
    else
        ssl_reason(why, sizeof(why));
    if (not_tls) {
        t->failed = dpr_err_set(&t->err, -EPROTO,
                                "%s failed: %s (the peer does not speak "
                                "TLS: plain text to a TLS port?)",
                                what, why);
        return t->failed;
    }
    if (vr != X509_V_OK)
        t->failed = dpr_err_set(&t->err, -EPROTO, "%s failed: %s: %s", what, why,
                                X509_verify_cert_error_string(vr));
    else
        t->failed = dpr_err_set(&t->err, -EPROTO, "%s failed: %s", what, why);
    return t->failed;
}

static int established(dpr_tls_conn *t)
{
    X509 *x = SSL_get0_peer_certificate(t->ssl);

    t->established = true;
    /* an identity only from a certificate that was checked */
    if (x && t->verify != DPR_TLS_VERIFY_NONE && SSL_get_verify_result(t->ssl) == X509_V_OK) {
        t->peer = calloc(1, sizeof(*t->peer));
        if (!t->peer)
            return t->failed = dpr_err_set(&t->err, -ENOMEM, "out of memory");
        if (peer_fill(t->peer, x, &t->err) < 0) {
            dpr_err_prefix(&t->err, "peer certificate refused");
            return t->failed = t->err.code = -EACCES;
        }
    }
    if (t->cluster[0]) {
        if (!t->peer)
            return t->failed = dpr_err_set(&t->err, -EACCES,
                                           "peer certificate refused: none "
                                           "shown, cluster '%s' needs one",
                                           t->cluster);
        if (strcmp(t->peer->cluster, t->cluster) != 0)
            return t->failed = dpr_err_set(
                       &t->err, -EACCES,
                       "peer certificate refused: %s is %s%s%s, not of "
                       "cluster '%s'",
                       t->peer->subject,
                       t->peer->cluster[0] ? "of cluster '" : "of no cluster (no dpr:// URI)",
                       t->peer->cluster, t->peer->cluster[0] ? "'" : "", t->cluster);
    }
    return 0;
}

static int flush_pending(dpr_tls_conn *t)
{
    size_t done = 0;

    if (!t->pending.len)
        return 0;
    /* a memory BIO takes everything: no partial writes */
    if (SSL_write_ex(t->ssl, t->pending.data, t->pending.len, &done) != 1 || done != t->pending.len)
        return fail_ssl(t, 0, "TLS write");
    dpr_buf_free(&t->pending);
    return 0;
}

ssize_t dpr_tls_conn_read(dpr_tls_conn *t, dpr_buf *plain)
{
    size_t total = 0;
    int r;

    if (t->failed)
        return t->failed;
    if (!t->established) {
        r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            return fail_ssl(t, r, "TLS handshake");
        }
        r = established(t);
        if (r < 0)
            return r;
        r = flush_pending(t);
        if (r < 0)
            return r;
    }
    for (;;) {
        size_t got = 0;
        if (dpr_buf_reserve(plain, READ_CHUNK) < 0)
            return t->failed = dpr_err_set(&t->err, -ENOMEM, "out of memory");
        r = SSL_read_ex(t->ssl, plain->data + plain->len, plain->cap - plain->len, &got);
        if (r == 1) {
            plain->len += got;
            total += got;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            t->eof = true;
            break;
        }
        return fail_ssl(t, r, "TLS read");
    }
    return (ssize_t)total;
}

ssize_t dpr_tls_conn_input(dpr_tls_conn *t, const void *data, size_t n, dpr_buf *plain)
{
    int r = dpr_tls_conn_feed(t, data, n);

    return r < 0 ? r : dpr_tls_conn_read(t, plain);
}

int dpr_tls_conn_write(dpr_tls_conn *t, const void *data, size_t n)
{
    size_t done = 0;

    if (t->failed)
        return t->failed;
    if (n == 0)
        return 0;
    if (!t->established || t->pending.len) {
        if (dpr_buf_append(&t->pending, data, n) < 0)
            return t->failed = dpr_err_set(&t->err, -ENOMEM, "out of memory");
        return 0;
    }
    /* a memory BIO takes everything: no partial writes */
    if (SSL_write_ex(t->ssl, data, n, &done) != 1 || done != n)
        return fail_ssl(t, 0, "TLS write");
    return 0;
}

ssize_t dpr_tls_conn_take(dpr_tls_conn *t, dpr_buf *out)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    int got;

    if (n == 0)
        return 0;
    if (n > INT_MAX)
        n = INT_MAX; /* the rest on the next call */
    if (dpr_buf_reserve(out, n) < 0)
        return -ENOMEM;
    got = BIO_read(t->wbio, out->data + out->len, (int)n);
    if (got <= 0)
        return 0;
    out->len += (size_t)got;
    return got;
}

int dpr_tls_conn_close_notify(dpr_tls_conn *t)
{
    if (t->failed || !t->established)
        return 0;
    (void)SSL_shutdown(t->ssl); /* 0: sent, the peer's has not come: fine */
    ERR_clear_error();
    return 0;
}

bool dpr_tls_conn_established(const dpr_tls_conn *t)
{
    return t->established && !t->failed;
}

bool dpr_tls_conn_eof(const dpr_tls_conn *t)
{
    return t->eof;
}

const dpr_tls_peer *dpr_tls_conn_peer(const dpr_tls_conn *t)
{
    return t->established && !t->failed ? t->peer : NULL;
}

void dpr_tls_conn_describe(const dpr_tls_conn *t, char *out, size_t cap)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    snprintf(out, cap, "%s %s", SSL_get_version(t->ssl), c ? SSL_CIPHER_get_name(c) : "-");
}

const char *dpr_tls_conn_errstr(const dpr_tls_conn *t)
{
    return t->err.msg;
}
