/*
 * testpki.h - certificates for the unit suites that run TLS (common's
 * test_tls, the agent's test_agent_respconn): a CA, certificates it signs,
 * PEM files in a directory, made with the OpenSSL API. Static functions: one
 * suite includes it once. Failures abort (the suite's own certificates).
 *
 *     testpki ca = testpki_make("test CA", NULL, 1, -60, 86400, NULL);
 *     testpki n1 = testpki_make("n1", &ca, 10, -60, 86400, "URI:dpr://c1/node/n1");
 *     testpki_save(&n1, dir, "n1");   (dir/n1.crt, dir/n1.key)
 */
#ifndef DPR_TESTPKI_H
#define DPR_TESTPKI_H

#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

typedef struct testpki {
    EVP_PKEY *key;
    X509 *cert;
} testpki;

static void testpki_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!e || X509_add_ext(x, e, -1) != 1)
        abort();
    X509_EXTENSION_free(e);
}

/* A certificate for CN cn valid from now+from_s to now+to_s, signed by
 * issuer (NULL: self-signed, a CA). san: "DNS:...,URI:..." or NULL. */
static testpki testpki_make(const char *cn, const testpki *issuer, long serial, long from_s,
                            long to_s, const char *san)
{
    testpki p = {EVP_EC_gen("P-256"), X509_new()};
    X509_NAME *name = X509_NAME_new();

    if (!p.key || !p.cert || !name)
        abort();
    X509_set_version(p.cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(p.cert), serial);
    X509_gmtime_adj(X509_getm_notBefore(p.cert), from_s);
    X509_gmtime_adj(X509_getm_notAfter(p.cert), to_s);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(p.cert, name);
    X509_set_issuer_name(p.cert, issuer ? X509_get_subject_name(issuer->cert) : name);
    X509_set_pubkey(p.cert, p.key);
    X509 *signer = issuer ? issuer->cert : p.cert;
    if (!issuer) {
        testpki_add_ext(p.cert, signer, NID_basic_constraints, "critical,CA:TRUE");
        testpki_add_ext(p.cert, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        testpki_add_ext(p.cert, signer, NID_basic_constraints, "CA:FALSE");
    }
    if (san)
        testpki_add_ext(p.cert, signer, NID_subject_alt_name, san);
    if (!X509_sign(p.cert, issuer ? issuer->key : p.key, EVP_sha256()))
        abort();
    X509_NAME_free(name);
    return p;
}

/* dir/base.crt and (with a key) dir/base.key. */
static void testpki_save(const testpki *p, const char *dir, const char *base)
{
    char n[256];
    FILE *f;

    snprintf(n, sizeof(n), "%s/%s.crt", dir, base);
    f = fopen(n, "w");
    if (!f || !PEM_write_X509(f, p->cert))
        abort();
    fclose(f);
    if (!p->key)
        return;
    snprintf(n, sizeof(n), "%s/%s.key", dir, base);
    f = fopen(n, "w");
    if (!f || !PEM_write_PrivateKey(f, p->key, NULL, NULL, 0, NULL, NULL))
        abort();
    fclose(f);
}

static void testpki_free(testpki *p)
{
    EVP_PKEY_free(p->key);
    X509_free(p->cert);
}

#endif
