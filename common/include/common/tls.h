/*
 * common/tls.h - TLS (OpenSSL, TLS 1.2 and up) for every link of the tree:
 * contexts made from PEM files, and a per-connection engine that works on
 * bytes only (memory BIOs), so that a libuv server or client wraps its
 * connections without changing how it reads and writes (docs/tls.md).
 *
 * A context holds the certificate, key, CA, optional CRL and the verify
 * mode. Reloading (new certificates, a new CRL) is making a new context and
 * using it for new connections: a connection holds a reference to the
 * context it was made from, so dpr_tls_ctx_free on the old one lets
 * existing connections finish with their certificates.
 *
 * The engine, wired into a libuv stream:
 *
 *     read_cb(bytes):    dpr_tls_conn_feed(t, bytes, n);
 *                        r = dpr_tls_conn_read(t, &plain_in);   (< 0: refuse, close)
 *                        ...process plain_in as before...
 *     flush:             dpr_tls_conn_write(t, plain_out, n);
 *                        dpr_tls_conn_take(t, &cipher_out);    then write cipher_out
 *
 * dpr_tls_conn_read may produce bytes to send (the handshake), so the
 * caller flushes after it even when it has no reply. A connecting side's
 * engine holds its hello from dpr_tls_conn_new on: take and send it once
 * connected. Plaintext written before the handshake is done waits inside
 * the engine.
 *
 * Identity: a node or client certificate of a cluster carries a URI SAN
 * "dpr://CLUSTER/node/NAME" or "dpr://CLUSTER/client/NAME" (made by
 * `dprctl pki issue`). With dpr_tls_config.cluster set, a peer certificate
 * without that URI or of another cluster fails the handshake.
 */
#ifndef COMMON_TLS_H
#define COMMON_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/buf.h"
#include "dpr/err.h"

/* What a peer must show: for a server, the client's certificate (Redis'
 * tls-auth-clients no|optional|yes); for a client, the server's
 * (none: not checked at all, for tests and --insecure only). */
typedef enum dpr_tls_verify {
    DPR_TLS_VERIFY_NONE,
    DPR_TLS_VERIFY_OPTIONAL, /* checked if shown */
    DPR_TLS_VERIFY_REQUIRED,
} dpr_tls_verify;

/* "no"/"off"/"none", "optional", "yes"/"required": 0, or -EINVAL. */
int dpr_tls_verify_parse(const char *s, dpr_tls_verify *out);
const char *dpr_tls_verify_name(dpr_tls_verify v);

typedef struct dpr_tls_config {
    const char *cert_file; /* PEM, the leaf first (then intermediates); NULL: none (a client) */
    const char *key_file;  /* PEM private key of cert_file */
    const char *ca_file;   /* PEM CA certificates peers are checked against */
    const char *crl_file;  /* PEM CRLs of those CAs (NULL: no revocation check) */
    dpr_tls_verify verify;
    const char *cluster; /* non-NULL: a peer's certificate must be of this cluster */
} dpr_tls_config;

typedef struct dpr_tls_ctx dpr_tls_ctx;

/* Loads the files (server: accepting side; else connecting side). The
 * message names the file and OpenSSL's reason. *out is freed with
 * dpr_tls_ctx_free. */
int dpr_tls_ctx_new(const dpr_tls_config *cfg, bool server, dpr_tls_ctx **out, dpr_err *err);
/* Drops the caller's reference; connections made from it keep theirs. */
void dpr_tls_ctx_free(dpr_tls_ctx *ctx);
/* The certificate's subject and serial number, for a log line ("CN=kv1
 * serial 1A2B"). */
void dpr_tls_ctx_describe(const dpr_tls_ctx *ctx, char *out, size_t cap);

/* A verified peer certificate. */
#define DPR_TLS_NAME_MAX 256
#define DPR_TLS_DNS_MAX 8 /* DNS names kept (the first ones) */
typedef struct dpr_tls_peer {
    char subject[DPR_TLS_NAME_MAX]; /* one line, RFC 2253 */
    char cn[DPR_TLS_NAME_MAX];
    char dns[DPR_TLS_DNS_MAX][DPR_TLS_NAME_MAX];
    size_t ndns;
    /* from the URI SAN dpr://CLUSTER/ROLE/NAME ("" when there is none) */
    char cluster[64];
    char role[16];
    char name[DPR_TLS_NAME_MAX];
} dpr_tls_peer;

/* The parts of a URI "dpr://CLUSTER/ROLE/NAME" (n bytes, not necessarily
 * terminated): CLUSTER 1..63 and NAME 1..255 characters of A-Z a-z 0-9 . _ -,
 * ROLE "node" or "client". 0, or -EINVAL with the reason. */
int dpr_tls_uri_parse(const char *uri, size_t n, char *cluster, size_t ccap, char *role,
                      size_t rcap, char *name, size_t ncap, dpr_err *err);

typedef struct dpr_tls_conn dpr_tls_conn;

/* A connection's engine. peer_host (connecting side only; NULL: not
 * checked) is sent as SNI and must match the server's certificate. */
int dpr_tls_conn_new(dpr_tls_ctx *ctx, const char *peer_host, dpr_tls_conn **out, dpr_err *err);
void dpr_tls_conn_free(dpr_tls_conn *t);

/* Bytes read from the socket (at most INT_MAX at a time). 0, -ENOMEM or
 * -EINVAL (too many at once). */
int dpr_tls_conn_feed(dpr_tls_conn *t, const void *data, size_t n);
/* Runs the handshake and appends the plaintext that arrived to *plain:
 * the number of bytes appended (0: none yet), or -EPROTO (not TLS, refused
 * certificate, protocol error), -EACCES (the peer is of another cluster),
 * -ENOMEM; the reason is in dpr_tls_conn_errstr. After a failure the
 * engine may still hold an alert to send (dpr_tls_conn_take). */
ssize_t dpr_tls_conn_read(dpr_tls_conn *t, dpr_buf *plain);
/* dpr_tls_conn_feed then dpr_tls_conn_read: n bytes from the socket in,
 * the plaintext they complete appended to *plain; read's result (or feed's
 * error). */
ssize_t dpr_tls_conn_input(dpr_tls_conn *t, const void *data, size_t n, dpr_buf *plain);
/* Plaintext to send (kept until the handshake is done). 0 or a negative
 * errno (after a failure: the failure's code). */
int dpr_tls_conn_write(dpr_tls_conn *t, const void *data, size_t n);
/* Appends the bytes waiting to be sent to *out: their number, or -ENOMEM. */
ssize_t dpr_tls_conn_take(dpr_tls_conn *t, dpr_buf *out);
/* Queues close_notify (the peer sees a clean end); take and send it before
 * the socket's shutdown. */
int dpr_tls_conn_close_notify(dpr_tls_conn *t);

bool dpr_tls_conn_established(const dpr_tls_conn *t); /* handshake done */
bool dpr_tls_conn_eof(const dpr_tls_conn *t);         /* peer sent close_notify */
/* The verified peer certificate once established, or NULL (none shown). */
const dpr_tls_peer *dpr_tls_conn_peer(const dpr_tls_conn *t);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" once established. */
void dpr_tls_conn_describe(const dpr_tls_conn *t, char *out, size_t cap);
/* The last failure's text ("" none). */
const char *dpr_tls_conn_errstr(const dpr_tls_conn *t);

#endif
