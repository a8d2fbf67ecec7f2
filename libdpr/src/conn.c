/* conn.c - one RESP connection over TCP (see conn.h). */
#include "conn.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/num.h"
#include "replyreader.h"

void dpr_conn_init(dpr_conn *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    dpr_buf_init(&c->out);
    dpr_buf_init(&c->wire);
}

void dpr_conn_close(dpr_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    dpr_replyreader_free(c->reader);
    c->reader = NULL;
    dpr_buf_reset(&c->out);
    c->woff = 0;
    dpr_tls_conn_free(c->tls);
    c->tls = NULL;
    dpr_buf_reset(&c->wire);
    c->wire_off = 0;
}

void dpr_conn_free(dpr_conn *c)
{
    dpr_conn_close(c);
    dpr_buf_free(&c->out);
    dpr_buf_free(&c->wire);
}

/* Connects one address within the deadline; returns the fd or -errno. */
static int connect_addr(const struct addrinfo *ai, uint64_t deadline_ms)
{
    int r;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            r = -errno;
            goto fail;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        do {
            r = poll(&p, 1, dpr_ms_left(deadline_ms));
        } while ((r < 0 && errno == EINTR) || (r == 0 && dpr_ms_left(deadline_ms) != 0));
        if (r < 0) {
            r = -errno;
            goto fail;
        }
        if (r == 0) {
            r = -ETIMEDOUT;
            goto fail;
        }
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
            r = -errno;
            goto fail;
        }
        if (soerr) {
            r = -soerr;
            goto fail;
        }
    }
    int one = 1;
    if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
fail:
    close(fd);
    return r;
}

int dpr_conn_connect(dpr_conn *c, const char *host, uint16_t port, dpr_tls_ctx *tls,
                     int timeout_ms)
{
    int r;
    char portstr[DPR_FMT_U64_MAX + 1];
    struct addrinfo hints, *res = NULL;
    uint64_t deadline = dpr_deadline_ms(timeout_ms > 0 ? timeout_ms : 1);

    dpr_conn_close(c);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    portstr[dpr_fmt_u64(portstr, port)] = '\0';
    r = getaddrinfo(host, portstr, &hints, &res);
    if (r != 0) {
        r = dpr_err_set(&c->err, r == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH, "cannot resolve %s: %s",
                        host, gai_strerror(r));
        goto out;
    }
    r = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        r = connect_addr(ai, deadline);
        if (r >= 0 || r == -ETIMEDOUT)
            break;
    }
    if (r < 0) {
        dpr_err_set(&c->err, r, "cannot connect to %s:%u: %s", host, (unsigned)port, strerror(-r));
        goto out;
    }
    c->fd = r;
    c->reader = dpr_replyreader_new(DPR_REPLYREADER_MAX_ELEMENTS);
    if (!c->reader) {
        dpr_conn_close(c);
        r = dpr_err_set(&c->err, -ENOMEM, "out of memory");
        goto out;
    }
    r = 0;
    if (tls) {
        dpr_err e = DPR_ERR_INIT;
        r = dpr_tls_conn_new(tls, host, &c->tls, &e);
        if (r < 0) {
            dpr_conn_close(c);
            dpr_err_set(&c->err, r, "%s:%u: %s", host, (unsigned)port, dpr_err_str(&e, r));
        }
    }
out:
    if (res)
        freeaddrinfo(res);
    return r;
}

int dpr_conn_reserve(dpr_conn *c, size_t n)
{
    if (c->woff > 0 && (c->woff == c->out.len || c->out.cap - c->out.len < n)) {
        /* reuse the written part first */
        dpr_buf_consume(&c->out, c->woff);
        c->woff = 0;
    }
    if (dpr_buf_reserve(&c->out, n) < 0) {
        c->out.failed = false; /* nothing was written: the content is whole */
        return dpr_err_set(&c->err, -ENOMEM, "out of memory");
    }
    return 0;
}

void dpr_conn_put_command(dpr_conn *c, int argc, const char *const *argv, const size_t *argvlen)
{
    dpr_resp_command(&c->out, argc, argv, argvlen);
    assert(!dpr_buf_failed(&c->out)); /* in the room reserved: cannot fail */
}

size_t dpr_conn_pending_output(const dpr_conn *c)
{
    return c->out.len - c->woff + c->wire.len - c->wire_off;
}

/* A TLS failure's code with the engine's reason. */
static int tls_fail(dpr_conn *c, int r)
{
    if (r == -ENOMEM)
        return dpr_err_set(&c->err, r, "out of memory");
    return dpr_err_set(&c->err, r, "TLS: %s", dpr_tls_conn_errstr(c->tls));
}

/* TLS: the plaintext of out into the engine, what it has to send into
 * wire. */
static int tls_encrypt(dpr_conn *c)
{
    int r = 0;

    if (c->woff < c->out.len)
        r = dpr_tls_conn_write(c->tls, c->out.data + c->woff, c->out.len - c->woff);
    if (r < 0)
        return tls_fail(c, r);
    dpr_buf_reset(&c->out);
    c->woff = 0;
    if (c->wire_off > 0 && c->wire_off == c->wire.len) {
        dpr_buf_reset(&c->wire);
        c->wire_off = 0;
    }
    if (dpr_tls_conn_take(c->tls, &c->wire) < 0)
        return tls_fail(c, -ENOMEM);
    return 0;
}

/* Sends b[*off, len) as far as the socket takes it now. */
static int send_some(dpr_conn *c, dpr_buf *b, size_t *off)
{
    while (*off < b->len) {
        ssize_t n = send(c->fd, b->data + *off, b->len - *off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            int e = errno;
            return dpr_err_set(&c->err, -e, "write: %s", strerror(e));
        }
        *off += (size_t)n;
    }
    dpr_buf_reset(b);
    *off = 0;
    return 0;
}

int dpr_conn_flush(dpr_conn *c)
{
    int r;

    if (c->fd < 0)
        return dpr_err_set(&c->err, -ENOTCONN, "not connected");
    if (c->tls) {
        r = tls_encrypt(c);
        return r < 0 ? r : send_some(c, &c->wire, &c->wire_off);
    }
    return send_some(c, &c->out, &c->woff);
}

void dpr_conn_shutdown_write(dpr_conn *c)
{
    dpr_buf_reset(&c->out);
    c->woff = 0;
    dpr_buf_reset(&c->wire);
    c->wire_off = 0;
    if (c->fd >= 0)
        (void)shutdown(c->fd, SHUT_WR); /* fails harmlessly after a reset */
}

/* TLS: n bytes of ciphertext arrived; the plaintext into the reader, and
 * what the engine answers (the handshake) out. n, or a negative errno. */
static int tls_input(dpr_conn *c, const char *data, size_t n)
{
    dpr_buf plain;
    size_t got;
    ssize_t r;

    dpr_buf_init(&plain);
    r = dpr_tls_conn_input(c->tls, data, n, &plain);
    if (r >= 0 && plain.len && redisReaderFeed(c->reader, plain.data, plain.len) != REDIS_OK)
        r = -ENOMEM;
    got = plain.len;
    dpr_buf_free(&plain);
    if (r < 0)
        return tls_fail(c, (int)r);
    r = tls_encrypt(c);
    if (r == 0)
        r = send_some(c, &c->wire, &c->wire_off);
    if (r < 0)
        return (int)r;
    if (got == 0 && dpr_tls_conn_eof(c->tls)) /* (the replies before it count first) */
        return dpr_err_set(&c->err, -ECONNRESET, "connection closed by the server");
    return (int)n;
}

int dpr_conn_read(dpr_conn *c)
{
    char buf[65536];
    ssize_t n;
    if (c->fd < 0)
        return dpr_err_set(&c->err, -ENOTCONN, "not connected");
    do {
        n = read(c->fd, buf, sizeof(buf));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return -EAGAIN;
        return dpr_err_set(&c->err, -e, "read: %s", strerror(e));
    }
    if (n == 0)
        return dpr_err_set(&c->err, -ECONNRESET, "connection closed by the server");
    if (c->tls)
        return tls_input(c, buf, (size_t)n);
    if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK)
        return dpr_err_set(&c->err, -ENOMEM, "out of memory");
    return (int)n;
}

int dpr_conn_next_reply(dpr_conn *c, redisReply **out)
{
    void *reply = NULL;
    *out = NULL;
    if (!c->reader)
        return dpr_err_set(&c->err, -ENOTCONN, "not connected");
    if (redisReaderGetReply(c->reader, &reply) != REDIS_OK)
        return dpr_err_set(&c->err, -EPROTO, "protocol error: %s%s", c->reader->errstr,
                           c->reader->err == REDIS_ERR_OOM ? " (or an array of more than "
                           "the client takes)" : "");
    if (!reply)
        return 0;
    dpr_replyreader_reply_done(c->reader);
    *out = reply;
    return 1;
}

/* Blocks (poll) until the output is written and one reply arrived, or the
 * deadline (dpr_mono_ms scale; UINT64_MAX: none) passes: -ETIMEDOUT. */
static int wait_reply(dpr_conn *c, uint64_t deadline_ms, redisReply **out)
{
    int r;
    *out = NULL;
    for (;;) {
        r = dpr_conn_next_reply(c, out);
        if (r != 0)
            return r < 0 ? r : 0;
        r = dpr_conn_flush(c);
        if (r < 0)
            return r;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (dpr_conn_pending_output(c))
            p.events |= POLLOUT;
        r = poll(&p, 1, dpr_ms_left(deadline_ms));
        if (r < 0 && errno != EINTR) {
            int e = errno;
            return dpr_err_set(&c->err, -e, "poll: %s", strerror(e));
        }
        if (r == 0 && dpr_ms_left(deadline_ms) == 0)
            return dpr_err_set(&c->err, -ETIMEDOUT, "no answer in time");
        if (r > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            r = dpr_conn_read(c);
            if (r < 0 && r != -EAGAIN)
                return r;
        }
    }
}

int dpr_conn_request(dpr_conn *c, int argc, const char *const *argv, const size_t *argvlen,
                     int timeout_ms, redisReply **out)
{
    size_t lens[8];
    int r;
    *out = NULL;
    if (argc < 1 || argc > 8)
        return dpr_err_set(&c->err, -EINVAL, "%d arguments (1 to 8 allowed)", argc);
    for (int i = 0; i < argc; i++)
        lens[i] = argvlen ? argvlen[i] : strlen(argv[i]);
    r = dpr_conn_reserve(c, dpr_resp_command_size(argc, lens));
    if (r < 0)
        return r;
    dpr_conn_put_command(c, argc, argv, lens);
    return wait_reply(c, dpr_deadline_ms(timeout_ms), out);
}
