/*
 * kv_peer.h - a blocking connection from one shard to another (a
 * migration's DPR.IMPORTs: dpr-kv's kv_migrate.c, dpr-redis' rp_layout.c),
 * in plain text or over TLS. hiredis formats the commands and reads the
 * replies; with TLS, common/tls.h's engine sits between the socket and
 * hiredis' buffers (a shard that serves TLS only is reached only so).
 * Errors name the peer's address.
 */
#ifndef KV_PEER_H
#define KV_PEER_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/tls.h"
#include "dpr/err.h"

typedef struct kv_peer {
    redisContext *ctx;
    dpr_tls_conn *tls; /* NULL: plain */
    dpr_buf io;        /* TLS: bytes through the engine */
    char addr[264];    /* "host:port", for errors */
} kv_peer;

/* Connects to addr ("host:port") within timeout_ms (also each read's and
 * write's limit), over TLS with tls (the server's name checked against
 * host), or plain with NULL. 0, or a negative errno with err set; close
 * with kv_peer_close in both cases. */
int kv_peer_connect(kv_peer *p, const char *addr, dpr_tls_ctx *tls, int timeout_ms,
                    dpr_err *err);
/* Sends a command (plain: hiredis buffers it until a reply is read). 0 or
 * a negative errno with err set. */
int kv_peer_send(kv_peer *p, int argc, const char **argv, const size_t *lens, dpr_err *err);
/* The next reply into *r (free with freeReplyObject). 0 or a negative
 * errno with err set (the connection is unusable then). */
int kv_peer_reply(kv_peer *p, redisReply **r, dpr_err *err);
void kv_peer_close(kv_peer *p);

#endif
