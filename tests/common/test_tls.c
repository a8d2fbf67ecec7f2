/* test_tls.c - TLS contexts and the memory-BIO engine (common/tls.h): two
 * engines talk to each other in memory, with a CA, certificates and a CRL
 * made here with the OpenSSL API in a temporary directory. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "testpki.h"
#include "common/tls.h"

static char dir[] = "/tmp/test_tls.XXXXXX";

static testpki ca, ca2;

static char *path(const char *name)
{
    static char buf[8][128];
    static int i;
    char *p = buf[i++ % 8];
    snprintf(p, 128, "%s/%s", dir, name);
    return p;
}

/* ca.crl: ca's CRL revoking serial `revoked`. */
static void save_crl(const char *name, long revoked)
{
    X509_CRL *crl = X509_CRL_new();
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_INTEGER *serial = ASN1_INTEGER_new();
    ASN1_TIME *t = ASN1_TIME_new();
    FILE *f;

    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca.cert));
    X509_gmtime_adj(t, -60);
    X509_CRL_set1_lastUpdate(crl, t);
    X509_REVOKED_set_revocationDate(r, t);
    X509_gmtime_adj(t, 86400);
    X509_CRL_set1_nextUpdate(crl, t);
    ASN1_INTEGER_set(serial, revoked);
    X509_REVOKED_set_serialNumber(r, serial);
    X509_CRL_add0_revoked(crl, r);
    X509_CRL_sort(crl);
    if (!X509_CRL_sign(crl, ca.key, EVP_sha256()))
        abort();
    f = fopen(path(name), "w");
    if (!f || !PEM_write_X509_CRL(f, crl))
        abort();
    fclose(f);
    ASN1_TIME_free(t);
    ASN1_INTEGER_free(serial);
    X509_CRL_free(crl);
}

static void setup(void)
{
    if (!mkdtemp(dir))
        abort();
    ca = testpki_make("test CA", NULL, 1, -60, 86400, NULL);
    ca2 = testpki_make("other CA", NULL, 1, -60, 86400, NULL);
    testpki_save(&ca, dir, "ca");
    testpki_save(&ca2, dir, "ca2");
    const struct {
        const char *name, *cn, *san;
        const testpki *issuer;
        long serial, from, to;
    } certs[] = {
        {"kv1", "kv1", "DNS:kv1,DNS:kv1.example,IP:127.0.0.1,URI:dpr://c1/node/kv1", &ca, 10, -60,
         86400},
        {"kv1b", "kv1", "DNS:kv1,URI:dpr://c1/node/kv1", &ca, 11, -60, 86400},
        {"app", "app", "URI:dpr://c1/client/app", &ca, 20, -60, 86400},
        {"expired", "old", "URI:dpr://c1/client/old", &ca, 21, -7200, -3600},
        {"revoked", "gone", "URI:dpr://c1/client/gone", &ca, 22, -60, 86400},
        {"foreign", "app", "URI:dpr://c1/client/app", &ca2, 23, -60, 86400},
        {"c2", "n", "URI:dpr://c2/node/n", &ca, 24, -60, 86400},
        {"nouri", "plain", "DNS:plain", &ca, 25, -60, 86400},
        {"baduri", "bad", "URI:dpr://c1/boss/x", &ca, 26, -60, 86400},
    };
    for (size_t i = 0; i < sizeof(certs) / sizeof(certs[0]); i++) {
        testpki p = testpki_make(certs[i].cn, certs[i].issuer, certs[i].serial, certs[i].from,
                                 certs[i].to, certs[i].san);
        testpki_save(&p, dir, certs[i].name);
        testpki_free(&p);
    }
    save_crl("ca.crl", 22);
}

static void teardown(void)
{
    char cmd[160];
    testpki_free(&ca);
    testpki_free(&ca2);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static dpr_tls_ctx *ctx(bool server, const char *cert, const char *ca_name, const char *crl,
                        dpr_tls_verify v, const char *cluster)
{
    char c[64], k[64];
    dpr_tls_config cfg = {0};
    dpr_tls_ctx *out = NULL;
    dpr_err err = DPR_ERR_INIT;

    snprintf(c, sizeof(c), "%s.crt", cert ? cert : "");
    snprintf(k, sizeof(k), "%s.key", cert ? cert : "");
    cfg.cert_file = cert ? path(c) : NULL;
    cfg.key_file = cert ? path(k) : NULL;
    cfg.ca_file = ca_name ? path(ca_name) : NULL;
    cfg.crl_file = crl ? path(crl) : NULL;
    cfg.verify = v;
    cfg.cluster = cluster;
    if (dpr_tls_ctx_new(&cfg, server, &out, &err) < 0)
        fprintf(stderr, "  ctx: %s\n", err.msg);
    return out;
}

typedef struct side {
    dpr_tls_conn *t;
    dpr_buf in;
    ssize_t r; /* bytes read so far, or the failure */
} side;

/* Moves bytes both ways until neither side has any to send. */
static void pump(side *a, side *b)
{
    for (int round = 0; round < 50; round++) {
        dpr_buf wire = DPR_BUF_INIT;
        bool moved = false;
        side *from[2] = {a, b}, *to[2] = {b, a};
        for (int i = 0; i < 2; i++) {
            wire.len = 0;
            if (dpr_tls_conn_take(from[i]->t, &wire) > 0) {
                moved = true;
                CHECK_EQ_INT(dpr_tls_conn_feed(to[i]->t, wire.data, wire.len), 0);
            }
            ssize_t r = dpr_tls_conn_read(to[i]->t, &to[i]->in);
            if (to[i]->r >= 0)
                to[i]->r = r < 0 ? r : to[i]->r + r; /* a failure sticks */
        }
        dpr_buf_free(&wire);
        if (!moved)
            return;
    }
}

static void pair(side *cl, side *sv, dpr_tls_ctx *cctx, dpr_tls_ctx *sctx, const char *host)
{
    memset(cl, 0, sizeof(*cl));
    memset(sv, 0, sizeof(*sv));
    CHECK_EQ_INT(dpr_tls_conn_new(cctx, host, &cl->t, NULL), 0);
    CHECK_EQ_INT(dpr_tls_conn_new(sctx, NULL, &sv->t, NULL), 0);
    pump(cl, sv);
}

static void unpair(side *cl, side *sv)
{
    dpr_tls_conn_free(cl->t);
    dpr_tls_conn_free(sv->t);
    dpr_buf_free(&cl->in);
    dpr_buf_free(&sv->in);
}

TEST(mutual_handshake_data_and_identity)
{
    dpr_tls_ctx *s = ctx(true, "kv1", "ca.crt", "ca.crl", DPR_TLS_VERIFY_REQUIRED, "c1");
    dpr_tls_ctx *c = ctx(false, "app", "ca.crt", NULL, DPR_TLS_VERIFY_REQUIRED, "c1");
    side cl, sv;
    const dpr_tls_peer *p;
    char desc[128];

    CHECK(s && c);
    if (!s || !c)
        return;
    pair(&cl, &sv, c, s, "kv1.example");
    /* the client writes before the handshake ended: kept, sent after it */
    CHECK_EQ_INT(dpr_tls_conn_write(cl.t, "PING\r\n", 6), 0);
    pump(&cl, &sv);
    CHECK(dpr_tls_conn_established(cl.t) && dpr_tls_conn_established(sv.t));
    CHECK(sv.in.len == 6 && memcmp(sv.in.data, "PING\r\n", 6) == 0);
    CHECK_EQ_INT(dpr_tls_conn_write(sv.t, "+PONG\r\n", 7), 0);
    pump(&cl, &sv);
    CHECK(cl.in.len == 7 && memcmp(cl.in.data, "+PONG\r\n", 7) == 0);
    p = dpr_tls_conn_peer(sv.t);
    CHECK(p && !strcmp(p->cn, "app") && !strcmp(p->cluster, "c1") && !strcmp(p->role, "client") &&
          !strcmp(p->name, "app"));
    p = dpr_tls_conn_peer(cl.t);
    CHECK(p && !strcmp(p->cn, "kv1") && p->ndns == 2 && !strcmp(p->dns[1], "kv1.example") &&
          !strcmp(p->role, "node") && !strcmp(p->name, "kv1"));
    dpr_tls_conn_describe(sv.t, desc, sizeof(desc));
    CHECK(strncmp(desc, "TLSv1.", 6) == 0);
    /* a large write goes through whole */
    static char big[300000];
    memset(big, 'x', sizeof(big));
    CHECK_EQ_INT(dpr_tls_conn_write(cl.t, big, sizeof(big)), 0);
    sv.in.len = 0;
    pump(&cl, &sv);
    CHECK_EQ_U64(sv.in.len, sizeof(big));
    /* close_notify: the peer sees the end */
    CHECK_EQ_INT(dpr_tls_conn_close_notify(cl.t), 0);
    pump(&cl, &sv);
    CHECK(dpr_tls_conn_eof(sv.t));
    unpair(&cl, &sv);
    dpr_tls_ctx_free(s);
    dpr_tls_ctx_free(c);
}

/* Runs a handshake of a client showing `cert` (NULL: none) to a server
 * with verify v (and the CRL); returns the server's read result and its
 * message in why. */
static ssize_t server_sees(const char *cert, dpr_tls_verify v, const char *cluster, char *why,
                           size_t cap, bool *client_ok)
{
    dpr_tls_ctx *s = ctx(true, "kv1", "ca.crt", "ca.crl", v, cluster);
    dpr_tls_ctx *c = ctx(false, cert, "ca.crt", NULL, DPR_TLS_VERIFY_REQUIRED, NULL);
    side cl, sv;
    ssize_t r;

    CHECK(s && c);
    if (!s || !c)
        return -999;
    pair(&cl, &sv, c, s, "kv1");
    (void)dpr_tls_conn_write(cl.t, "GET k\r\n", 7); /* fails when the client heard an alert */
    pump(&cl, &sv);
    r = sv.r;
    snprintf(why, cap, "%s", dpr_tls_conn_errstr(sv.t));
    if (client_ok)
        *client_ok = cl.r >= 0;
    if (r < 0)
        CHECK_EQ_U64(sv.in.len, 0); /* nothing of the request came through */
    unpair(&cl, &sv);
    dpr_tls_ctx_free(s);
    dpr_tls_ctx_free(c);
    return r;
}

TEST(refused_certificates)
{
    char why[300];
    bool client_ok;

    CHECK_EQ_INT(server_sees("expired", DPR_TLS_VERIFY_REQUIRED, NULL, why, sizeof(why), NULL),
                 -EPROTO);
    CHECK(strstr(why, "certificate has expired") != NULL);
    CHECK_EQ_INT(server_sees("revoked", DPR_TLS_VERIFY_REQUIRED, NULL, why, sizeof(why), NULL),
                 -EPROTO);
    CHECK(strstr(why, "certificate revoked") != NULL);
    CHECK_EQ_INT(server_sees("foreign", DPR_TLS_VERIFY_REQUIRED, NULL, why, sizeof(why), NULL),
                 -EPROTO);
    CHECK(strstr(why, "certificate verify failed") != NULL);
    CHECK_EQ_INT(server_sees(NULL, DPR_TLS_VERIFY_REQUIRED, NULL, why, sizeof(why), &client_ok),
                 -EPROTO);
    CHECK(strstr(why, "did not return a certificate") != NULL);
    CHECK(!client_ok); /* the client hears the alert */
    /* optional: none shown is fine, a bad one is not */
    CHECK_EQ_INT(server_sees(NULL, DPR_TLS_VERIFY_OPTIONAL, NULL, why, sizeof(why), NULL), 7);
    CHECK_EQ_INT(server_sees("expired", DPR_TLS_VERIFY_OPTIONAL, NULL, why, sizeof(why), NULL),
                 -EPROTO);
    /* no: not even asked for */
    CHECK_EQ_INT(server_sees("foreign", DPR_TLS_VERIFY_NONE, NULL, why, sizeof(why), NULL), 7);
}

TEST(cluster_name)
{
    char why[300];

    CHECK_EQ_INT(server_sees("app", DPR_TLS_VERIFY_REQUIRED, "c1", why, sizeof(why), NULL), 7);
    CHECK_EQ_INT(server_sees("c2", DPR_TLS_VERIFY_REQUIRED, "c1", why, sizeof(why), NULL), -EACCES);
    CHECK(strstr(why, "of cluster 'c2', not of cluster 'c1'") != NULL);
    CHECK_EQ_INT(server_sees("nouri", DPR_TLS_VERIFY_REQUIRED, "c1", why, sizeof(why), NULL),
                 -EACCES);
    CHECK(strstr(why, "no dpr:// URI") != NULL);
    CHECK_EQ_INT(server_sees("baduri", DPR_TLS_VERIFY_REQUIRED, NULL, why, sizeof(why), NULL),
                 -EACCES);
    CHECK(strstr(why, "bad role") != NULL);
    CHECK_EQ_INT(server_sees(NULL, DPR_TLS_VERIFY_OPTIONAL, "c1", why, sizeof(why), NULL), -EACCES);
    CHECK(strstr(why, "none shown") != NULL);
}

TEST(client_checks_the_server)
{
    dpr_tls_ctx *s = ctx(true, "kv1", NULL, NULL, DPR_TLS_VERIFY_NONE, NULL);
    dpr_tls_ctx *c = ctx(false, NULL, "ca2.crt", NULL, DPR_TLS_VERIFY_REQUIRED, NULL);
    dpr_tls_ctx *c1 = ctx(false, NULL, "ca.crt", NULL, DPR_TLS_VERIFY_REQUIRED, NULL);
    side cl, sv;

    CHECK(s && c && c1);
    if (!s || !c || !c1)
        return;
    pair(&cl, &sv, c, s, "kv1");
    CHECK_EQ_INT(cl.r, -EPROTO);
    CHECK(strstr(dpr_tls_conn_errstr(cl.t), "unable to get local issuer certificate") != NULL);
    unpair(&cl, &sv);
    /* the right CA, the wrong name */
    pair(&cl, &sv, c1, s, "kv2");
    CHECK_EQ_INT(cl.r, -EPROTO);
    CHECK(strstr(dpr_tls_conn_errstr(cl.t), "hostname mismatch") != NULL);
    unpair(&cl, &sv);
    pair(&cl, &sv, c1, s, "kv1");
    CHECK(cl.r >= 0 && dpr_tls_conn_established(cl.t));
    CHECK(dpr_tls_conn_peer(cl.t) != NULL);
    unpair(&cl, &sv);
    /* not checked: connected, but no identity to trust */
    dpr_tls_ctx *none = ctx(false, NULL, NULL, NULL, DPR_TLS_VERIFY_NONE, NULL);
    CHECK(none != NULL);
    if (none) {
        pair(&cl, &sv, none, s, NULL);
        CHECK(cl.r >= 0 && dpr_tls_conn_established(cl.t));
        CHECK(dpr_tls_conn_peer(cl.t) == NULL);
        unpair(&cl, &sv);
        dpr_tls_ctx_free(none);
    }
    dpr_tls_ctx_free(s);
    dpr_tls_ctx_free(c);
    dpr_tls_ctx_free(c1);
}

TEST(plain_text_is_refused)
{
    dpr_tls_ctx *s = ctx(true, "kv1", "ca.crt", NULL, DPR_TLS_VERIFY_OPTIONAL, NULL);
    dpr_tls_conn *t = NULL;
    dpr_buf in = DPR_BUF_INIT, out = DPR_BUF_INIT;
    static const char req[] = "*1\r\n$4\r\nPING\r\n";

    CHECK(s != NULL);
    if (!s)
        return;
    CHECK_EQ_INT(dpr_tls_conn_new(s, NULL, &t, NULL), 0);
    CHECK_EQ_INT(dpr_tls_conn_feed(t, req, sizeof(req) - 1), 0);
    CHECK_EQ_INT(dpr_tls_conn_read(t, &in), -EPROTO);
    CHECK(strstr(dpr_tls_conn_errstr(t), "TLS handshake failed: ") != NULL);
    CHECK(strstr(dpr_tls_conn_errstr(t), "plain text to a TLS port?") != NULL);
    CHECK_EQ_U64(in.len, 0);
    /* after the failure: the same error, nothing written */
    CHECK_EQ_INT(dpr_tls_conn_write(t, "x", 1), -EPROTO);
    CHECK(dpr_tls_conn_take(t, &out) >= 0);
    CHECK(!dpr_tls_conn_established(t) && dpr_tls_conn_peer(t) == NULL);
    dpr_tls_conn_free(t);
    dpr_buf_free(&in);
    dpr_buf_free(&out);
    dpr_tls_ctx_free(s);
}

TEST(reload_keeps_old_connections)
{
    dpr_tls_ctx *old = ctx(true, "kv1", NULL, NULL, DPR_TLS_VERIFY_NONE, NULL);
    dpr_tls_ctx *c = ctx(false, NULL, "ca.crt", NULL, DPR_TLS_VERIFY_REQUIRED, NULL);
    side cl, sv, cl2, sv2;
    char d[300];

    CHECK(old && c);
    if (!old || !c)
        return;
    dpr_tls_ctx_describe(old, d, sizeof(d));
    CHECK(strstr(d, "CN=kv1 serial 0A") != NULL);
    pair(&cl, &sv, c, old, "kv1");
    dpr_tls_ctx_free(old); /* a reload: the new context for new connections */
    dpr_tls_ctx *cur = ctx(true, "kv1b", NULL, NULL, DPR_TLS_VERIFY_NONE, NULL);
    CHECK(cur != NULL);
    if (!cur)
        return;
    dpr_tls_ctx_describe(cur, d, sizeof(d));
    CHECK(strstr(d, "serial 0B") != NULL);
    pair(&cl2, &sv2, c, cur, "kv1");
    CHECK_EQ_INT(dpr_tls_conn_write(cl.t, "old", 3), 0);
    CHECK_EQ_INT(dpr_tls_conn_write(cl2.t, "new", 3), 0);
    pump(&cl, &sv);
    pump(&cl2, &sv2);
    CHECK(sv.in.len == 3 && memcmp(sv.in.data, "old", 3) == 0);
    CHECK(sv2.in.len == 3 && memcmp(sv2.in.data, "new", 3) == 0);
    const dpr_tls_peer *p1 = dpr_tls_conn_peer(cl.t), *p2 = dpr_tls_conn_peer(cl2.t);
    CHECK(p1 && p2 && p1->ndns == 2 && p2->ndns == 1); /* kv1 has two names, kv1b one */
    unpair(&cl, &sv);
    unpair(&cl2, &sv2);
    dpr_tls_ctx_free(cur);
    dpr_tls_ctx_free(c);
}

TEST(bad_files)
{
    dpr_tls_config cfg = {0};
    dpr_tls_ctx *out = NULL;
    dpr_err err = DPR_ERR_INIT;

    cfg.cert_file = path("missing.crt");
    cfg.key_file = path("kv1.key");
    CHECK_EQ_INT(dpr_tls_ctx_new(&cfg, true, &out, &err), -EINVAL);
    CHECK(strstr(err.msg, "cannot load certificate file") && strstr(err.msg, "missing.crt"));
    cfg.cert_file = path("kv1.crt");
    cfg.key_file = path("app.key");
    CHECK_EQ_INT(dpr_tls_ctx_new(&cfg, true, &out, &err), -EINVAL);
    CHECK(strstr(err.msg, "does not match") != NULL);
    cfg.key_file = path("kv1.key");
    cfg.ca_file = path("kv1.key"); /* not a certificate */
    cfg.verify = DPR_TLS_VERIFY_REQUIRED;
    CHECK_EQ_INT(dpr_tls_ctx_new(&cfg, true, &out, &err), -EINVAL);
    CHECK(strstr(err.msg, "cannot load CA file") != NULL);
    cfg.ca_file = path("ca.crt");
    cfg.crl_file = path("ca.crt"); /* not a CRL */
    CHECK_EQ_INT(dpr_tls_ctx_new(&cfg, true, &out, &err), -EINVAL);
    CHECK(strstr(err.msg, "cannot load CRL file") != NULL);
    cfg.crl_file = NULL;
    cfg.ca_file = NULL;
    CHECK_EQ_INT(dpr_tls_ctx_new(&cfg, true, &out, &err), -EINVAL);
    CHECK(strstr(err.msg, "needs a CA file") != NULL);
    cfg.ca_file = path("ca.crt");
    cfg.cluster = "c1";
    cfg.verify = DPR_TLS_VERIFY_NONE;
    CHECK_EQ_INT(dpr_tls_ctx_new(&cfg, true, &out, &err), -EINVAL);
    CHECK(strstr(err.msg, "cluster needs its certificate checked") != NULL);
    cfg.cluster = NULL;
    cfg.ca_file = NULL;
    cfg.cert_file = NULL;
    CHECK_EQ_INT(dpr_tls_ctx_new(&cfg, true, &out, &err), -EINVAL);
    CHECK(out == NULL);
}

TEST(uri_and_verify_names)
{
    char c[64], r[16], n[256];
    dpr_err err = DPR_ERR_INIT;
    dpr_tls_verify v;
#define URI(s) dpr_tls_uri_parse(s, strlen(s), c, sizeof(c), r, sizeof(r), n, sizeof(n), &err)
    CHECK_EQ_INT(URI("dpr://prod-1/node/node-a.example"), 0);
    CHECK(!strcmp(c, "prod-1") && !strcmp(r, "node") && !strcmp(n, "node-a.example"));
    CHECK_EQ_INT(URI("dpr://c/client/x"), 0);
    CHECK(!strcmp(r, "client"));
    CHECK_EQ_INT(URI("https://c/node/x"), -EINVAL);
    CHECK_EQ_INT(URI("dpr://"), -EINVAL);
    CHECK_EQ_INT(URI("dpr://c"), -EINVAL);
    CHECK_EQ_INT(URI("dpr://c/node"), -EINVAL);
    CHECK_EQ_INT(URI("dpr://c/node/"), -EINVAL);
    CHECK_EQ_INT(URI("dpr://c/nodes/x"), -EINVAL);
    CHECK_EQ_INT(URI("dpr://c/node/x/y"), -EINVAL);
    CHECK_EQ_INT(URI("dpr://c d/node/x"), -EINVAL);
    CHECK_EQ_INT(URI("dpr:///node/x"), -EINVAL);
    CHECK(strstr(err.msg, "cluster") != NULL);
    CHECK_EQ_INT(
        URI("dpr://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/node/x"),
        -EINVAL); /* 64 characters */
    CHECK_EQ_INT(
        dpr_tls_uri_parse("dpr://c/node/xy", 14, c, sizeof(c), r, sizeof(r), n, sizeof(n), NULL),
        0); /* n bytes only */
    CHECK(!strcmp(n, "x"));
#undef URI
    CHECK(dpr_tls_verify_parse("yes", &v) == 0 && v == DPR_TLS_VERIFY_REQUIRED);
    CHECK(dpr_tls_verify_parse("optional", &v) == 0 && v == DPR_TLS_VERIFY_OPTIONAL);
    CHECK(dpr_tls_verify_parse("no", &v) == 0 && v == DPR_TLS_VERIFY_NONE);
    CHECK_EQ_INT(dpr_tls_verify_parse("maybe", &v), -EINVAL);
    CHECK(!strcmp(dpr_tls_verify_name(DPR_TLS_VERIFY_OPTIONAL), "optional"));
}

int main(void)
{
    setup();
    RUN(mutual_handshake_data_and_identity);
    RUN(refused_certificates);
    RUN(cluster_name);
    RUN(client_checks_the_server);
    RUN(plain_text_is_refused);
    RUN(reload_keeps_old_connections);
    RUN(bad_files);
    RUN(uri_and_verify_names);
    teardown();
    return check_summary("tls");
}
