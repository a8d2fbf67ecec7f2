/* addr.c - see common/addr.h. */
#include "common/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "common/num.h"

int dpr_hostport_parse_n(const char *text, size_t n, unsigned flags, dpr_hostport *out,
                         dpr_err *err)
{
    const char *host, *hend, *colon, *end = text + n;
    uint64_t port;
    size_t hlen;
    int r;

    if (n == 0)
        return dpr_err_set(err, -EINVAL, "empty address (expected HOST:PORT)");
    if (memchr(text, '\0', n))
        return dpr_err_set(err, -EINVAL, "address contains a NUL byte");
    if (text[0] == '[') {
        host = text + 1;
        hend = memchr(host, ']', (size_t)(end - host));
        /* what the brackets hold is an IPv6 literal: it has a ':' (else
         * "[*]:1" or "[[]:1" would name a host that formats back to text
         * meaning another address, or none) */
        if (!hend || hend + 1 >= end || hend[1] != ':' || hend == host ||
            !memchr(host, ':', (size_t)(hend - host)) || memchr(host, '[', (size_t)(hend - host)))
            return dpr_err_set(err, -EINVAL, "bad address '%.*s' (expected [IPv6]:PORT)",
                               (int)n, text);
        colon = hend + 1;
    } else {
        host = text;
        colon = memrchr(text, ':', n);
        if (!colon)
            return dpr_err_set(err, -EINVAL, "bad address '%.*s' (expected HOST:PORT)",
                               (int)n, text);
        hend = colon;
        if (memchr(host, ':', (size_t)(hend - host)))
            return dpr_err_set(err, -EINVAL,
                               "bad address '%.*s' (an IPv6 address goes in brackets: "
                               "[IPv6]:PORT)", (int)n, text);
    }
    hlen = (size_t)(hend - host);
    if (hlen >= sizeof(out->host))
        return dpr_err_set(err, -EINVAL, "bad address '%.*s': host name too long (at most %d)",
                           (int)n > 80 ? 80 : (int)n, text, DPR_HOST_MAX - 1);
    r = dpr_parse_u64(colon + 1, (size_t)(end - colon - 1),
                      (flags & DPR_HOSTPORT_PORT0) ? 0 : 1, 65535, &port);
    if (r < 0)
        return dpr_err_set(err, -EINVAL, "bad port in address '%.*s' (expected %s..65535)",
                           (int)n, text, (flags & DPR_HOSTPORT_PORT0) ? "0" : "1");
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (hlen == 1 && host[0] == '*' && text[0] != '[')
        out->host[0] = '\0';
    if (out->host[0] == '\0' && !(flags & DPR_HOSTPORT_ANY))
        return dpr_err_set(err, -EINVAL, "bad address '%.*s': a host is needed", (int)n, text);
    out->port = (uint16_t)port;
    return 0;
}

int dpr_hostport_parse(const char *text, unsigned flags, dpr_hostport *out, dpr_err *err)
{
    if (!text)
        return dpr_err_set(err, -EINVAL, "empty address (expected HOST:PORT)");
    return dpr_hostport_parse_n(text, strlen(text), flags, out, err);
}

int dpr_hostport_resolve(const dpr_hostport *hp, bool passive, struct sockaddr_storage *out,
                         socklen_t *outlen, dpr_err *err)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    int r;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    snprintf(port, sizeof(port), "%u", (unsigned)hp->port);
    r = getaddrinfo(hp->host[0] ? hp->host : NULL, port, &hints, &res);
    if (r != 0 || !res) {
        if (res)
            freeaddrinfo(res);
        return dpr_err_set(err, r == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH,
                           "cannot resolve '%s': %s", hp->host[0] ? hp->host : "*",
                           r ? gai_strerror(r) : "no address");
    }
    memset(out, 0, sizeof(*out));
    memcpy(out, res->ai_addr, res->ai_addrlen);
    if (outlen)
        *outlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

void dpr_addr_format(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(out, cap, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, cap, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else {
        snprintf(out, cap, "?");
    }
}
