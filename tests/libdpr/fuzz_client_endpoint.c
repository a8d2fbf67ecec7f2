/*
 * fuzz_client_endpoint.c - libFuzzer target for dpr_endpoint_parse
 * (dpr/client.h): a shard's "HOST:PORT[@WORKER]" as an application passes
 * it and as libdpr-discover reads it from a DNS-SD TXT record (the
 * endpoints of a deployment a cache-store or agent publishes).
 *
 * The input is the text (and, by its first byte, the room given for the
 * host). Checks: only documented return codes; an endpoint taken has its
 * host in the buffer given, terminated, a port 1..65535, and formats back
 * to text that parses to the same endpoint.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpr/client.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char host[256], host2[256], text[300], *in;
    dpr_endpoint ep, again;
    size_t cap;
    int r;

    if (size < 1)
        return 0;
    cap = data[0] % 2 ? sizeof(host) : (size_t)data[0] % sizeof(host);
    in = malloc(size);
    if (!in)
        return 0;
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';
    r = dpr_endpoint_parse(in, &ep, host, cap);
    REQUIRE(r == 0 || r == -EINVAL || r == -ENAMETOOLONG);
    if (r == 0) {
        REQUIRE(ep.host == host && memchr(host, '\0', cap) != NULL && ep.port > 0);
        int n = snprintf(text, sizeof(text), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
                         (unsigned)ep.port);
        if (ep.has_worker)
            snprintf(text + n, sizeof(text) - (size_t)n, "@%llu",
                     (unsigned long long)ep.worker);
        REQUIRE(dpr_endpoint_parse(text, &again, host2, sizeof(host2)) == 0);
        REQUIRE(strcmp(again.host, host) == 0 && again.port == ep.port &&
                again.has_worker == ep.has_worker && again.worker == ep.worker);
    }
    free(in);
    return 0;
}
