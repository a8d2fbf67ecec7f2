/*
 * fuzz_common_parse.c - the base layer's small text parsers on arbitrary
 * bytes: numbers (common/num.h; RESP lengths, flags, configuration and
 * environment values, the finder's answers), HOST:PORT (common/addr.h;
 * configuration, flags, the finder's redirects, layouts, DNS-SD records),
 * fields of INFO text (common/resp.h; what shards answer the agent's
 * layout driver and the client) and the TLS verify modes (common/tls.h).
 *
 * The whole input is each parser's text; its first line is also looked up
 * as an INFO field in the rest. Checks: nothing crashes or reads outside
 * the input; a number accepted is exactly its canonical decimal text (no
 * sign, leading zero or blank); an address accepted has a terminated host,
 * a port the flags allow, and formats back to text that parses to the same
 * address; a refusal carries a message; an INFO value lies inside the text
 * after "field:" on one line.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "common/num.h"
#include "common/resp.h"
#include "common/tls.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void numbers(const char *s, size_t n)
{
    char text[DPR_FMT_I64_MAX];
    uint64_t u = 0, again = 0;
    int64_t i = 0;
    int r;

    r = dpr_parse_u64(s, n, 0, UINT64_MAX, &u);
    REQUIRE(r == 0 || r == -EINVAL || r == -ERANGE);
    if (r == 0) {
        REQUIRE(dpr_fmt_u64(text, u) == n && memcmp(text, s, n) == 0);
        REQUIRE(dpr_parse_u64(s, n, u, u, &again) == 0 && again == u);
        REQUIRE(u == 0 || dpr_parse_u64(s, n, 0, u - 1, &again) == -ERANGE);
    }
    r = dpr_parse_i64(s, n, &i);
    REQUIRE(r == 0 || r == -EINVAL || r == -ERANGE);
    if (r == 0)
        REQUIRE(dpr_fmt_i64(text, i) == n && memcmp(text, s, n) == 0);
}

static void hostport(const char *s, size_t n, unsigned flags)
{
    char text[DPR_ADDR_STR_MAX + 8];
    dpr_err err = DPR_ERR_INIT;
    dpr_hostport hp, again;
    int r = dpr_hostport_parse_n(s, n, flags, &hp, &err);

    if (r < 0) {
        REQUIRE(r == -EINVAL && err.msg[0]);
        return;
    }
    REQUIRE(memchr(hp.host, '\0', sizeof(hp.host)) != NULL);
    REQUIRE(hp.port != 0 || (flags & DPR_HOSTPORT_PORT0));
    REQUIRE(hp.host[0] || (flags & DPR_HOSTPORT_ANY));
    snprintf(text, sizeof(text), strchr(hp.host, ':') ? "[%s]:%u" : "%s:%u", hp.host,
             (unsigned)hp.port);
    REQUIRE(dpr_hostport_parse(text, flags, &again, NULL) == 0);
    REQUIRE(strcmp(again.host, hp.host) == 0 && again.port == hp.port);
}

static void info(const char *text)
{
    const char *nl = strchr(text, '\n'), *v;
    char field[64];
    size_t flen, len = 0;

    if (!nl || (size_t)(nl - text) >= sizeof(field))
        return;
    flen = (size_t)(nl - text);
    memcpy(field, text, flen);
    field[flen] = '\0';
    v = dpr_info_field(nl + 1, field, &len);
    if (!v)
        return;
    REQUIRE(v >= nl + 1 + flen + 1 && v + len <= nl + 1 + strlen(nl + 1));
    REQUIRE(v[-1] == ':' && memcmp(v - 1 - flen, field, flen) == 0);
    REQUIRE(v - 1 - flen == nl + 1 || v[-2 - (ptrdiff_t)flen] == '\n');
    REQUIRE(memchr(v, '\n', len) == NULL && memchr(v, '\r', len) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    dpr_tls_verify v, again;

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    numbers(text, size);
    for (unsigned flags = 0; flags < 4; flags++)
        hostport(text, size, flags);
    info(text);
    if (dpr_tls_verify_parse(text, &v) == 0)
        REQUIRE(dpr_tls_verify_parse(dpr_tls_verify_name(v), &again) == 0 && again == v);
    free(text);
    return 0;
}
