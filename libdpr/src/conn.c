/* conn.c - one RESP connection over TCP (see conn.h). */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t dpr_conn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline_ms)
{
    int64_t left = deadline_ms - dpr_conn_now_ms();
    if (left <= 0)
        return 0;
    return left > 60000 ? 60000 : (int)left;
}

void dpr_conn_init(dpr_conn *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

void dpr_conn_close(dpr_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->reader)
        redisReaderFree(c->reader);
    c->reader = NULL;
    c->ooff = c->olen = 0;
}

void dpr_conn_free(dpr_conn *c)
{
    dpr_conn_close(c);
    free(c->obuf);
    c->obuf = NULL;
    c->ocap = 0;
}

/* Connects one address within the deadline; returns the fd or -errno. */
static int connect_addr(const struct addrinfo *ai, int64_t deadline_ms)
{
    int r;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
        return -errno;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            r = -errno;
            goto fail;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        do {
            r = poll(&p, 1, remaining_ms(deadline_ms));
        } while (r < 0 && errno == EINTR);
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

int dpr_conn_connect(dpr_conn *c, const char *host, uint16_t port, int timeout_ms)
{
    int r;
    char portstr[8];
    struct addrinfo hints, *res = NULL;
    int64_t deadline = dpr_conn_now_ms() + (timeout_ms > 0 ? timeout_ms : 1);

    dpr_conn_close(c);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    r = getaddrinfo(host, portstr, &hints, &res);
    if (r != 0) {
        snprintf(c->err, sizeof(c->err), "cannot resolve %s: %s", host, gai_strerror(r));
        r = r == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
        goto out;
    }
    r = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        r = connect_addr(ai, deadline);
        if (r >= 0 || r == -ETIMEDOUT)
            break;
    }
    if (r < 0) {
        snprintf(c->err, sizeof(c->err), "cannot connect to %s:%u: %s", host,
                 (unsigned)port, strerror(-r));
        goto out;
    }
    c->fd = r;
    c->reader = redisReaderCreate();
    if (!c->reader) {
        dpr_conn_close(c);
        snprintf(c->err, sizeof(c->err), "out of memory");
        r = -ENOMEM;
        goto out;
    }
    r = 0;
out:
    if (res)
        freeaddrinfo(res);
    return r;
}

int dpr_conn_reserve(dpr_conn *c, size_t n)
{
    if (c->ooff > 0 && c->ooff == c->olen)
        c->ooff = c->olen = 0;
    if (n <= c->ocap - c->olen)
        return 0;
    if (c->ooff > 0) { /* reuse the written part first */
        memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
        c->olen -= c->ooff;
        c->ooff = 0;
        if (n <= c->ocap - c->olen)
            return 0;
    }
    if (n > SIZE_MAX / 2 - c->olen)
        return -ENOMEM;
    size_t cap = c->ocap ? c->ocap : 4096;
    while (cap < c->olen + n)
        cap *= 2;
    char *p = realloc(c->obuf, cap);
    if (!p)
        return -ENOMEM;
    c->obuf = p;
    c->ocap = cap;
    return 0;
}

static void put_bytes(dpr_conn *c, const void *p, size_t n)
{
    memcpy(c->obuf + c->olen, p, n);
    c->olen += n;
}

/* "<type><decimal v>\r\n" (hot: no snprintf) */
static void put_header(dpr_conn *c, char type, size_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    tmp[--i] = '\n';
    tmp[--i] = '\r';
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    tmp[--i] = type;
    put_bytes(c, tmp + i, sizeof(tmp) - i);
}

void dpr_conn_put_command(dpr_conn *c, int argc, const char *const *argv,
                          const size_t *argvlen)
{
    put_header(c, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        put_header(c, '$', len);
        put_bytes(c, argv[i], len);
        put_bytes(c, "\r\n", 2);
    }
}

size_t dpr_conn_pending_output(const dpr_conn *c)
{
    return c->olen - c->ooff;
}

int dpr_conn_flush(dpr_conn *c)
{
    if (c->fd < 0)
        return -ENOTCONN;
    while (c->ooff < c->olen) {
        ssize_t n = send(c->fd, c->obuf + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            int e = errno;
            snprintf(c->err, sizeof(c->err), "write: %s", strerror(e));
            return -e;
        }
        c->ooff += (size_t)n;
    }
    c->ooff = c->olen = 0;
    return 0;
}

int dpr_conn_read(dpr_conn *c)
{
    char buf[65536];
    ssize_t n;
    if (c->fd < 0)
        return -ENOTCONN;
    do {
        n = read(c->fd, buf, sizeof(buf));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -EAGAIN;
        int e = errno;
        snprintf(c->err, sizeof(c->err), "read: %s", strerror(e));
        return -e;
    }
    if (n == 0) {
        snprintf(c->err, sizeof(c->err), "connection closed by the server");
        return -ECONNRESET;
    }
    if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
        snprintf(c->err, sizeof(c->err), "out of memory");
        return -ENOMEM;
    }
    return (int)n;
}

int dpr_conn_next_reply(dpr_conn *c, redisReply **out)
{
    void *reply = NULL;
    *out = NULL;
    if (!c->reader)
        return -ENOTCONN;
    if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
        snprintf(c->err, sizeof(c->err), "protocol error: %s", c->reader->errstr);
        return -EPROTO;
    }
    if (!reply)
        return 0;
    *out = reply;
    return 1;
}

int dpr_conn_wait_reply(dpr_conn *c, int64_t deadline_ms, redisReply **out)
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
        r = poll(&p, 1, remaining_ms(deadline_ms));
        if (r < 0 && errno != EINTR) {
            r = -errno;
            snprintf(c->err, sizeof(c->err), "poll: %s", strerror(-r));
            return r;
        }
        if (r == 0) {
            snprintf(c->err, sizeof(c->err), "no answer in time");
            return -ETIMEDOUT;
        }
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
        return -EINVAL;
    for (int i = 0; i < argc; i++)
        lens[i] = argvlen ? argvlen[i] : strlen(argv[i]);
    r = dpr_conn_reserve(c, dpr_resp_command_size(argc, lens));
    if (r < 0)
        return r;
    dpr_conn_put_command(c, argc, argv, lens);
    return dpr_conn_wait_reply(c, dpr_conn_now_ms() + timeout_ms, out);
}
