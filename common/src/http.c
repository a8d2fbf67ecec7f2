/* http.c - see common/http.h. */
#include "common/http.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "common/clock.h"
#include "common/list.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/uvutil.h"

/* --- parsing (pure) ------------------------------------------------------ */

typedef struct parse_state {
    dpr_http_request *req;
    size_t path_len;
    bool in_query;
    bool complete;
} parse_state;

static int on_url(http_parser *p, const char *at, size_t n)
{
    parse_state *st = p->data;
    for (size_t i = 0; i < n && !st->in_query; i++) {
        if (at[i] == '?' || at[i] == '#') {
            st->in_query = true;
            break;
        }
        if (st->path_len + 1 < sizeof(st->req->path))
            st->req->path[st->path_len++] = at[i];
    }
    st->req->path[st->path_len] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    parse_state *st = p->data;
    st->complete = true;
    /* the reply does not depend on a body: stop here */
    http_parser_pause(p, 1);
    return 0;
}

int dpr_http_parse_request(const char *p, size_t n, dpr_http_request *req)
{
    http_parser_settings settings;
    http_parser parser;
    parse_state st = {req, 0, false, false};

    memset(req, 0, sizeof(*req));
    memset(&settings, 0, sizeof(settings));
    settings.on_url = on_url;
    settings.on_headers_complete = on_headers_complete;
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = &st;
    /* (the whole request is parsed again as bytes arrive: it is small) */
    size_t len = n < DPR_HTTP_MAX_REQUEST ? n : DPR_HTTP_MAX_REQUEST;
    (void)http_parser_execute(&parser, &settings, p, len);
    if (st.complete) {
        if (parser.http_major != 1)
            return -EBADMSG;
        snprintf(req->method, sizeof(req->method), "%s",
                 http_method_str((enum http_method)parser.method));
        return 1;
    }
    if (HTTP_PARSER_ERRNO(&parser) != HPE_OK)
        return -EBADMSG;
    return n >= DPR_HTTP_MAX_REQUEST ? -EMSGSIZE : 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 431:
        return "Request Header Fields Too Large";
    default:
        return "Internal Server Error";
    }
}

int dpr_http_respond(int parsed, const dpr_http_request *req, dpr_http_metrics_fn fn, void *data,
                     dpr_buf *out)
{
    const dpr_http_route metrics = { "/metrics", DPR_METRICS_CONTENT_TYPE, fn };
    return dpr_http_respond_routes(parsed, req, &metrics, 1, data, out);
}

int dpr_http_respond_routes(int parsed, const dpr_http_request *req, const dpr_http_route *routes,
                            size_t n, void *data, dpr_buf *out)
{
    dpr_buf body = DPR_BUF_INIT;
    const char *type = "text/plain; charset=utf-8";
    const dpr_http_route *route = NULL;
    bool head = false;
    int status;
    char line[160];

    for (size_t i = 0; parsed == 1 && i < n && !route; i++)
        if (strcmp(req->path, routes[i].path) == 0)
            route = &routes[i];
    if (parsed == -EMSGSIZE)
        status = 431;
    else if (parsed != 1)
        status = 400;
    else if (!route)
        status = 404;
    else if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
        status = 405;
    else {
        head = !strcmp(req->method, "HEAD");
        status = route->fn(data, &body) < 0 || dpr_buf_failed(&body) ? 500 : 200;
        if (status == 200)
            type = route->content_type;
        else
            dpr_buf_reset(&body);
    }
    if (status != 200) {
        dpr_buf_append_str(&body, reason(status));
        dpr_buf_append(&body, "\n", 1);
    }
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, reason(status));
    dpr_buf_append_str(out, line);
    snprintf(line, sizeof(line), "Content-Type: %s\r\nContent-Length: %zu\r\n", type, body.len);
    dpr_buf_append_str(out, line);
    if (status == 405)
        dpr_buf_append_str(out, "Allow: GET, HEAD\r\n");
    dpr_buf_append_str(out, "Connection: close\r\n\r\n");
    if (!head && body.len)
        dpr_buf_append(out, body.data, body.len);
    dpr_buf_free(&body);
    return status;
}

/* --- the server ------------------------------------------------------------ */

typedef struct http_client {
    struct http_client *prev, *next;
    uv_tcp_t tcp;
    dpr_http_server *srv;
    char in[DPR_HTTP_MAX_REQUEST];
    size_t len;
    uint64_t deadline_ms;
    bool answered;
} http_client;

struct dpr_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t sweep; /* closes clients past their deadline */
    dpr_http_route routes[DPR_HTTP_MAX_ROUTES];
    size_t nroutes;
    void *data;
    http_client *clients;
    size_t nclients;
    size_t open_handles; /* freed when this reaches 0 after dpr_http_close */
    bool closing;
    char bound[DPR_ADDR_STR_MAX];
};

static void server_unref(dpr_http_server *h)
{
    if (--h->open_handles == 0 && h->closing)
        free(h);
}

static void on_server_handle_closed(uv_handle_t *hd)
{
    server_unref(hd->data);
}

static void on_client_closed(uv_handle_t *hd)
{
    http_client *c = hd->data;
    dpr_http_server *h = c->srv;
    free(c);
    server_unref(h);
}

static void client_close(http_client *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    DPR_LIST_REMOVE(c->srv->clients, c);
    c->srv->nclients--;
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static void on_written(uv_stream_t *stream, int status)
{
    (void)status;
    client_close(stream->data);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    http_client *c = hd->data;
    (void)suggested;
    /* (on_read answers before the buffer is full: never a 0-byte buffer) */
    *buf = uv_buf_init(c->in + c->len, (unsigned)(sizeof(c->in) - c->len));
}

static void answer(http_client *c, int parsed, const dpr_http_request *req)
{
    dpr_buf out = DPR_BUF_INIT;
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    int status = dpr_http_respond_routes(parsed, req, c->srv->routes, c->srv->nroutes,
                                         c->srv->data, &out);
    if (status != 200)
        log_debug("metrics: answered %d", status);
    if (status >= 400 && status != 404 && status != 405)
        dpr_uv_discard_input((uv_handle_t *)&c->tcp);
    if (dpr_buf_failed(&out) || dpr_uv_write((uv_stream_t *)&c->tcp, &out, on_written) < 0) {
        dpr_buf_free(&out);
        client_close(c);
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    http_client *c = stream->data;
    dpr_http_request req;
    (void)buf;

    if (nread < 0) {
        client_close(c);
        return;
    }
    if (nread == 0 || c->answered)
        return;
    c->len += (size_t)nread;
    int r = dpr_http_parse_request(c->in, c->len, &req);
    if (r == 0 && c->len >= sizeof(c->in))
        r = -EMSGSIZE;
    if (r != 0)
        answer(c, r, &req);
}

static void on_connection(uv_stream_t *listener, int status)
{
    dpr_http_server *h = listener->data;
    http_client *c;

    if (status < 0)
        return;
    c = calloc(1, sizeof(*c));
    if (!c)
        return; /* the connection waits in the backlog */
    c->srv = h;
    if (uv_tcp_init(h->loop, &c->tcp) < 0) {
        free(c);
        return;
    }
    c->tcp.data = c;
    h->open_handles++;
    DPR_LIST_PREPEND(h->clients, c);
    h->nclients++;
    c->deadline_ms = dpr_mono_ms() + DPR_HTTP_TIMEOUT_MS;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0 || h->nclients > DPR_HTTP_MAX_CLIENTS ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        client_close(c);
}

static void on_sweep(uv_timer_t *t)
{
    dpr_http_server *h = t->data;
    uint64_t now = dpr_mono_ms();
    for (http_client *c = h->clients, *next; c; c = next) {
        next = c->next;
        if (now > c->deadline_ms)
            client_close(c);
    }
}

int dpr_http_start(dpr_http_server **out, uv_loop_t *loop, const char *address,
                   dpr_http_metrics_fn fn, void *data, dpr_err *err)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int len = sizeof(ss), r;
    dpr_hostport hp;
    dpr_http_server *h;

    *out = NULL;
    r = dpr_hostport_parse(address, DPR_HOSTPORT_PORT0 | DPR_HOSTPORT_ANY, &hp, err);
    if (r < 0)
        return r;
    r = dpr_hostport_resolve(&hp, true, &ss, &sslen, err);
    if (r < 0)
        return r;
    h = calloc(1, sizeof(*h));
    if (!h)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    h->loop = loop;
    h->routes[0] = (dpr_http_route){ "/metrics", DPR_METRICS_CONTENT_TYPE, fn };
    h->nroutes = 1;
    h->data = data;
    r = uv_tcp_init(loop, &h->listener);
    if (r < 0) {
        free(h);
        return dpr_err_set(err, r, "metrics listener: %s", uv_strerror(r));
    }
    h->listener.data = h;
    h->open_handles++;
    r = uv_timer_init(loop, &h->sweep);
    if (r == 0) {
        h->sweep.data = h;
        h->open_handles++;
        r = uv_timer_start(&h->sweep, on_sweep, 1000, 1000);
    }
    if (r == 0)
        r = uv_tcp_bind(&h->listener, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&h->listener, 64, on_connection);
    if (r == 0)
        r = uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &len);
    dpr_addr_format((struct sockaddr *)&ss, h->bound, sizeof(h->bound));
    if (r < 0) {
        dpr_err_set(err, r, "cannot listen on %s for metrics: %s", h->bound, uv_strerror(r));
        dpr_http_close(h);
        return r;
    }
    uv_unref((uv_handle_t *)&h->sweep); /* the timer alone keeps no loop running */
    *out = h;
    return 0;
}

int dpr_http_add(dpr_http_server *h, const char *path, const char *content_type,
                 dpr_http_metrics_fn fn)
{
    if (h->nroutes == DPR_HTTP_MAX_ROUTES)
        return -ENOSPC;
    h->routes[h->nroutes++] = (dpr_http_route){ path, content_type, fn };
    return 0;
}

const char *dpr_http_bound(const dpr_http_server *h)
{
    return h->bound;
}

void dpr_http_close(dpr_http_server *h)
{
    if (!h || h->closing)
        return;
    h->closing = true;
    while (h->clients)
        client_close(h->clients);
    uv_close((uv_handle_t *)&h->listener, on_server_handle_closed);
    if (h->sweep.data == h) /* (set once the timer is initialised) */
        uv_close((uv_handle_t *)&h->sweep, on_server_handle_closed);
}
