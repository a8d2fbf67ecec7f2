/*
 * fuzz_common_tls_uri.c - the dpr:// URI of a peer's certificate
 * (common/tls.h, dpr_tls_uri_parse) on arbitrary bytes: nothing may crash,
 * and what is accepted has the documented shape.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n < 1 || n > max)
        return 0;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char cluster[64], role[16], name[256];

    if (dpr_tls_uri_parse((const char *)data, size, cluster, sizeof(cluster), role, sizeof(role),
                          name, sizeof(name), NULL) < 0)
        return 0;
    if (!name_ok(cluster, 63) || !name_ok(name, 255) ||
        (strcmp(role, "node") != 0 && strcmp(role, "client") != 0))
        abort();
    if (size != 6 + strlen(cluster) + 1 + strlen(role) + 1 + strlen(name))
        abort();
    return 0;
}
