/*
 * common/http.h - the metrics endpoint: a minimal HTTP/1.x responder on
 * libuv that answers GET (and HEAD) /metrics with what a callback writes
 * (common/metrics.h), and the other paths a server adds (dpr_http_add:
 * the agent's Prometheus service discovery at /sd), nothing else.
 *
 * One request per connection: the request (line and headers) is read up to
 * DPR_HTTP_MAX_REQUEST bytes and parsed with http-parser (Debian's
 * libhttp-parser); the reply has Connection: close and the connection is
 * closed once it is written. Anything else gets an error status and never
 * a crash: a request that does not parse 400, too long 431, another path
 * 404, another method 405, a failing callback 500. A client that has not
 * sent a whole request within DPR_HTTP_TIMEOUT_MS is closed, and at most
 * DPR_HTTP_MAX_CLIENTS are served at once (more are closed at accept).
 *
 *     dpr_http_server *h;
 *     r = dpr_http_start(&h, loop, "127.0.0.1:9464", write_metrics, s, &err);
 *     ...
 *     dpr_http_close(h); // before the loop ends
 *
 * The parsing and the reply are pure (dpr_http_parse_request,
 * dpr_http_respond) for the unit tests and the fuzz target.
 */
#ifndef COMMON_HTTP_H
#define COMMON_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "common/addr.h"
#include "common/buf.h"
#include "common/err.h"

#define DPR_HTTP_MAX_REQUEST 8192
#define DPR_HTTP_MAX_CLIENTS 64
#define DPR_HTTP_TIMEOUT_MS 10000
#define DPR_HTTP_PATH_MAX 256

/* A parsed request: what the reply depends on. */
typedef struct dpr_http_request {
    char method[16];              /* "GET" */
    char path[DPR_HTTP_PATH_MAX]; /* the URL's path, without the query; may be truncated */
} dpr_http_request;

/*
 * Parses the bytes received so far, p[0..n): 1 when they hold a whole
 * request (line and headers; *req filled), 0 when more are needed, or
 * -EBADMSG (not HTTP/1.x) or -EMSGSIZE (no end of headers within
 * DPR_HTTP_MAX_REQUEST bytes).
 */
int dpr_http_parse_request(const char *p, size_t n, dpr_http_request *req);

/* Writes a metrics page (0, or a negative errno: the reply is 500). */
typedef int (*dpr_http_metrics_fn)(void *data, dpr_buf *body);

/* A page: its path, its Content-Type and what writes it. */
typedef struct dpr_http_route {
    const char *path;
    const char *content_type;
    dpr_http_metrics_fn fn;
} dpr_http_route;

#define DPR_HTTP_MAX_ROUTES 4

/*
 * The whole reply to the outcome of dpr_http_parse_request (parsed: its
 * result, 1 or negative; req: the request when 1) into *out: the status
 * line, headers and body; the fn of the route whose path the request names
 * is called only for GET or HEAD (routes[0..n)). Returns the status code.
 */
int dpr_http_respond_routes(int parsed, const dpr_http_request *req, const dpr_http_route *routes,
                            size_t n, void *data, dpr_buf *out);
/* The same with the one route /metrics (DPR_METRICS_CONTENT_TYPE). */
int dpr_http_respond(int parsed, const dpr_http_request *req, dpr_http_metrics_fn fn, void *data,
                     dpr_buf *out);

typedef struct dpr_http_server dpr_http_server;

/*
 * Listens on address (HOST:PORT, common/addr.h; port 0 picks a free one)
 * and serves fn's page there. *out is freed with dpr_http_close. 0, or a
 * negative errno with a message naming the address.
 */
int dpr_http_start(dpr_http_server **out, uv_loop_t *loop, const char *address,
                   dpr_http_metrics_fn fn, void *data, dpr_err *err);
/* Serves fn's page at path too (with data, as /metrics): 0, or -ENOSPC
 * past DPR_HTTP_MAX_ROUTES. */
int dpr_http_add(dpr_http_server *h, const char *path, const char *content_type,
                 dpr_http_metrics_fn fn);
/* The address it listens on ("127.0.0.1:9464"; the port chosen for 0). */
const char *dpr_http_bound(const dpr_http_server *h);
/* Closes the listener and every connection; the memory goes when libuv
 * has closed them (the loop must run on). NULL does nothing. */
void dpr_http_close(dpr_http_server *h);

#endif
