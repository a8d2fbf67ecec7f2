/* kv_peer.c - see kv_peer.h. */
#include "kv_peer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "common/addr.h"
#include "common/err.h"

int kv_peer_connect(kv_peer *p, const char *addr, dpr_tls_ctx *tls, int timeout_ms,
                    dpr_err *err)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    dpr_hostport hp;
    dpr_err why = DPR_ERR_INIT;

    memset(p, 0, sizeof(*p));
    dpr_buf_init(&p->io);
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    if (dpr_hostport_parse(addr, 0, &hp, &why) < 0)
        return dpr_err_set(err, -EINVAL, "%s: %s", addr, why.msg);
    p->ctx = redisConnectWithTimeout(hp.host, hp.port, tv);
    if (!p->ctx || p->ctx->err)
        return dpr_err_set(err, -ECONNREFUSED, "%s: cannot connect: %s", addr,
                           p->ctx ? p->ctx->errstr : "out of memory");
    if (redisSetTimeout(p->ctx, tv) != REDIS_OK)
        return dpr_err_set(err, -EIO, "%s: cannot set a timeout", addr);
    if (tls && dpr_tls_conn_new(tls, hp.host, &p->tls, &why) < 0)
        return dpr_err_set(err, -EPROTO, "%s: TLS: %s", addr, why.msg);
    return 0;
}

/* Sends what the engine has to send (the handshake, commands, an alert). */
static int tls_flush(kv_peer *p, dpr_err *err)
{
    const char *d;
    size_t n;

    p->io.len = 0;
    if (dpr_tls_conn_take(p->tls, &p->io) < 0)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    for (d = p->io.data, n = p->io.len; n > 0;) {
        ssize_t k = send(p->ctx->fd, d, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return dpr_err_set(err, -EIO, "%s: %s", p->addr, strerror(errno));
        d += k;
        n -= (size_t)k;
    }
    return 0;
}

int kv_peer_send(kv_peer *p, int argc, const char **argv, const size_t *lens, dpr_err *err)
{
    char *cmd = NULL;
    int n, rc;

    if (!p->tls) {
        if (redisAppendCommandArgv(p->ctx, argc, argv, lens) != REDIS_OK)
            return dpr_err_set(err, -ENOMEM, "out of memory");
        return 0;
    }
    n = redisFormatCommandArgv(&cmd, argc, argv, lens);
    rc = n < 0 ? -ENOMEM : dpr_tls_conn_write(p->tls, cmd, (size_t)n);
    if (cmd)
        redisFreeCommand(cmd);
    if (rc < 0)
        return dpr_err_set(err, rc, "%s: TLS: %s", p->addr,
                           rc == -ENOMEM ? "out of memory" : dpr_tls_conn_errstr(p->tls));
    return tls_flush(p, err);
}

/* The next reply over TLS: reads until hiredis' reader has one. */
static int tls_reply(kv_peer *p, redisReply **r, dpr_err *err)
{
    char chunk[16384];
    ssize_t k;

    while (redisReaderGetReply(p->ctx->reader, (void **)r) == REDIS_OK && !*r) {
        k = recv(p->ctx->fd, chunk, sizeof(chunk), 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return dpr_err_set(err, -EIO, "%s: %s", p->addr,
                               k == 0 ? "closed (TLS refused?)" : strerror(errno));
        p->io.len = 0;
        if (dpr_tls_conn_input(p->tls, chunk, (size_t)k, &p->io) < 0) {
            dpr_err_set(err, -EPROTO, "%s: TLS: %s", p->addr, dpr_tls_conn_errstr(p->tls));
            dpr_err ignored;
            (void)tls_flush(p, &ignored); /* its alert, if it can go */
            return -EPROTO;
        }
        if (p->io.len && redisReaderFeed(p->ctx->reader, p->io.data, p->io.len) != REDIS_OK)
            return dpr_err_set(err, -ENOMEM, "out of memory");
        if (tls_flush(p, err) < 0) /* the handshake's next step, commands it held */
            return -EIO;
    }
    return *r ? 0 : dpr_err_set(err, -EIO, "%s: not RESP", p->addr);
}

int kv_peer_reply(kv_peer *p, redisReply **r, dpr_err *err)
{
    *r = NULL;
    if (p->tls)
        return tls_reply(p, r, err);
    if (redisGetReply(p->ctx, (void **)r) != REDIS_OK)
        return dpr_err_set(err, -EIO, "%s: %s", p->addr, p->ctx->errstr);
    return 0;
}

void kv_peer_close(kv_peer *p)
{
    dpr_tls_conn_free(p->tls);
    p->tls = NULL;
    if (p->ctx)
        redisFree(p->ctx);
    p->ctx = NULL;
    dpr_buf_free(&p->io);
}
