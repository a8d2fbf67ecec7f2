/*
 * common/addr.h - "HOST:PORT" text, socket addresses and their names.
 *
 * The one parser of addresses in configuration, flags and the network:
 *
 *     10.0.0.5:7400   node1.lan:7400   [fe80::1]:7400   *:7400   :7400
 *
 * An IPv6 literal must be in brackets (a bare "fe80::1:7400" is ambiguous
 * and refused), and brackets hold nothing else (text with a ':' and no
 * '['). The port is decimal, 1..65535 (0 too with
 * DPR_HOSTPORT_PORT0, for listeners that let the kernel choose). An empty
 * host or "*" means every address, accepted only with DPR_HOSTPORT_ANY.
 */
#ifndef COMMON_ADDR_H
#define COMMON_ADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/err.h"

#define DPR_HOST_MAX 256           /* host name or literal, with its NUL */
#define DPR_ADDR_STR_MAX (DPR_HOST_MAX + 8) /* "[host]:65535" */

enum {
    DPR_HOSTPORT_PORT0 = 1 << 0, /* port 0 is allowed */
    DPR_HOSTPORT_ANY = 1 << 1,   /* "" and "*" as host: every address (host "") */
};

typedef struct dpr_hostport {
    char host[DPR_HOST_MAX]; /* without brackets; "" = every address */
    uint16_t port;
} dpr_hostport;

/* Parses text (n bytes; no NUL needed). 0, or -EINVAL with a message that
 * quotes the text and says what was expected. */
int dpr_hostport_parse_n(const char *text, size_t n, unsigned flags, dpr_hostport *out,
                         dpr_err *err);
int dpr_hostport_parse(const char *text, unsigned flags, dpr_hostport *out, dpr_err *err);

/* Resolves hp (a literal or a host name; "" = every address when passive)
 * for a TCP socket: the first address getaddrinfo gives. passive: for bind.
 * 0, or -EHOSTUNREACH / -ENOMEM with a message. */
int dpr_hostport_resolve(const dpr_hostport *hp, bool passive, struct sockaddr_storage *out,
                         socklen_t *outlen, dpr_err *err);

/* "1.2.3.4:80", "[::1]:80" ("?" for another family). */
void dpr_addr_format(const struct sockaddr *sa, char *out, size_t cap);

#endif
