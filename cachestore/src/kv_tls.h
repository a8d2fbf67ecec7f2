/*
 * kv_tls.h - dpr-kv's TLS port (Redis' model, docs/tls.md): the context made
 * from the --tls-* files, and its reload on SIGHUP. The connections
 * themselves are kv_server.c's (common/tls.h's engine per client).
 */
#ifndef KV_TLS_H
#define KV_TLS_H

#include "common/tls.h"
#include "kv_config.h"

/* The context of cfg's --tls-* files; *out NULL when there is no TLS port.
 * The message names the file and OpenSSL's reason. */
int kv_tls_load(const kv_config *cfg, dpr_tls_ctx **out, dpr_err *err);

/* SIGHUP: loads the files again into *ctx for new connections (existing
 * ones keep the context they were made from). A failure keeps the old
 * context; both outcomes are logged. 0 or the failure's code. */
int kv_tls_reload(const kv_config *cfg, dpr_tls_ctx **ctx);

/* A TLS client's replies through its engine: the plaintext in *out goes
 * in (none after a refusal: refused), and what the engine has to send
 * (replies, handshake, alerts) replaces it in *out. Only when no write of
 * *out is in flight. 0, or a negative errno (logged: the connection is to
 * be closed). */
int kv_tls_encrypt(dpr_tls_conn *t, dpr_buf *out, bool refused);

/* --finder-tls: the finder link's client settings in *out (pointing into
 * cfg: this node's certificate and key, the CA the finder's certificate is
 * checked against); NULL without --finder-tls. */
const dpr_tls_config *kv_tls_finder(const kv_config *cfg, dpr_tls_config *out);

/* SIGHUP with --finder-tls: *ctx (the finder link's) made again from the
 * files, for its next connection (kv_finder_set_tls); a failure keeps the
 * old one. Both logged. 0 or the failure's code. */
int kv_tls_reload_finder(const kv_config *cfg, dpr_tls_ctx **ctx);

#endif
