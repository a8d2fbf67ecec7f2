/*
 * fuzz_common_http.c - the metrics endpoint's request parsing and reply
 * (common/http.h) on arbitrary bytes, fed as a client would send them: in
 * pieces of growing length. Nothing may crash; a parsed request has a
 * NUL-terminated method and path; the reply always starts with a status
 * line, and a page is written only for GET or HEAD of its path (/metrics,
 * or /sd as the agent adds it).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "common/http.h"
#include "common/metrics.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int page(void *arg, dpr_buf *body)
{
    int *calls = arg;
    (*calls)++;
    dpr_metrics_counter(body, "fuzz_total", "fuzz", (uint64_t)*calls);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    dpr_http_request req;
    int r = 0, calls = 0;
    size_t n = 0;

    /* the bytes as they could arrive: 1, 2, 4, ... at a time */
    for (size_t step = 1; n < size && r == 0; step *= 2) {
        n = n + step < size ? n + step : size;
        r = dpr_http_parse_request(p, n, &req);
    }
    REQUIRE(r == 0 || r == 1 || r == -EBADMSG || r == -EMSGSIZE);
    if (r == 0)
        return 0;
    if (r == 1)
        REQUIRE(memchr(req.method, '\0', sizeof(req.method)) &&
                memchr(req.path, '\0', sizeof(req.path)));
    dpr_buf out = DPR_BUF_INIT;
    const dpr_http_route routes[] = { { "/metrics", DPR_METRICS_CONTENT_TYPE, page },
                                      { "/sd", "application/json", page } };
    int status = dpr_http_respond_routes(r, &req, routes, 2, &calls, &out);
    REQUIRE(out.len > 17 && memcmp(out.data, "HTTP/1.1 ", 9) == 0);
    REQUIRE((status == 200) == (calls == 1));
    REQUIRE(calls == 0 ||
            (r == 1 && (!strcmp(req.path, "/metrics") || !strcmp(req.path, "/sd")) &&
             (!strcmp(req.method, "GET") || !strcmp(req.method, "HEAD"))));
    dpr_buf_free(&out);
    return 0;
}
