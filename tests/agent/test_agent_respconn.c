/* test_agent_respconn.c - the agent's RESP client connection (respconn.h)
 * against a small RESP server on the same libuv loop (plain, or TLS with
 * the common TLS engine and certificates made here, testpki.h): order of
 * pipelined replies, every failure told once to every command, the bound on
 * a reply, closing from a callback, TLS with the right and a wrong CA. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "check.h"
#include "common/buf.h"
#include "common/tls.h"
#include "common/uvutil.h"
#include "respconn.h"
#include "testpki.h"

static char dir[] = "/tmp/test_respconn.XXXXXX";
static uv_loop_t loop;

/* ---- the server ------------------------------------------------------------------- */

typedef struct sconn {
    struct sconn *next;
    uv_tcp_t tcp;
    struct srv *s;
    redisReader *rd;
    dpr_tls_conn *tls;
    bool closing;
    char buf[16384];
} sconn;

typedef struct srv {
    uv_tcp_t tcp;
    int port;
    dpr_tls_ctx *tls; /* NULL: plain */
    bool silent;      /* reads and never answers */
    sconn *conns;
} srv;

static void sconn_closed(uv_handle_t *h)
{
    sconn *c = h->data;

    if (c->rd)
        redisReaderFree(c->rd);
    dpr_tls_conn_free(c->tls);
    free(c);
}

static void sconn_close(sconn *c)
{
    sconn **pp;

    if (c->closing)
        return;
    c->closing = true;
    for (pp = &c->s->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    uv_close((uv_handle_t *)&c->tcp, sconn_closed);
}

static void sconn_send(sconn *c, const void *p, size_t n)
{
    dpr_buf b = DPR_BUF_INIT;

    if (c->tls) {
        if (dpr_tls_conn_write(c->tls, p, n) < 0 || dpr_tls_conn_take(c->tls, &b) < 0)
            abort();
    } else if (dpr_buf_append(&b, p, n) < 0) {
        abort();
    }
    if (b.len && dpr_uv_write((uv_stream_t *)&c->tcp, &b, NULL) < 0)
        sconn_close(c);
    dpr_buf_free(&b);
}

static void sconn_sendf(sconn *c, const char *s)
{
    sconn_send(c, s, strlen(s));
}

static void on_shutdown(uv_shutdown_t *sh, int status)
{
    (void)status;
    free(sh);
}

/* One command (an array of bulk strings). */
static void serve(sconn *c, const redisReply *cmd)
{
    const char *name = cmd->elements ? cmd->element[0]->str : "";
    const char *arg = cmd->elements > 1 ? cmd->element[1]->str : "";
    char head[64];

    if (!strcmp(name, "PING")) {
        sconn_sendf(c, "+PONG\r\n");
    } else if (!strcmp(name, "ECHO")) {
        snprintf(head, sizeof(head), "$%zu\r\n", strlen(arg));
        sconn_sendf(c, head);
        sconn_sendf(c, arg);
        sconn_sendf(c, "\r\n");
    } else if (!strcmp(name, "BIG")) {
        size_t n = strtoul(arg, NULL, 10);
        char *v = malloc(n);
        if (!v)
            abort();
        memset(v, 'x', n);
        snprintf(head, sizeof(head), "$%zu\r\n", n);
        sconn_sendf(c, head);
        sconn_send(c, v, n);
        sconn_sendf(c, "\r\n");
        free(v);
    } else if (!strcmp(name, "HUGEARRAY")) {
        sconn_sendf(c, "*100000000\r\n:1\r\n");
    } else if (!strcmp(name, "HALF")) { /* half a reply, then the end */
        sconn_sendf(c, "$10\r\nabc");
        uv_shutdown_t *sh = calloc(1, sizeof(*sh));
        if (!sh || uv_shutdown(sh, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
            abort();
    } else if (!strcmp(name, "TWICE")) {
        sconn_sendf(c, "+one\r\n+two\r\n");
    } else if (!strcmp(name, "GARBAGE")) {
        sconn_sendf(c, "?what\r\n");
    } else {
        sconn_sendf(c, "-ERR unknown command\r\n");
    }
}

static void s_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sconn *c = h->data;

    (void)hint;
    *buf = uv_buf_init(c->buf, sizeof(c->buf));
}

static void s_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    sconn *c = st->data;
    dpr_buf plain = DPR_BUF_INIT, out = DPR_BUF_INIT;
    void *rep = NULL;

    if (n < 0) {
        sconn_close(c);
        return;
    }
    if (n == 0 || c->s->silent)
        return;
    if (c->tls) {
        ssize_t r = dpr_tls_conn_input(c->tls, buf->base, (size_t)n, &plain);
        if (dpr_tls_conn_take(c->tls, &out) > 0)
            dpr_uv_write(st, &out, NULL);
        dpr_buf_free(&out);
        if (r < 0) {
            dpr_buf_free(&plain);
            sconn_close(c);
            return;
        }
    } else if (dpr_buf_append(&plain, buf->base, (size_t)n) < 0) {
        abort();
    }
    if (plain.len && redisReaderFeed(c->rd, plain.data, plain.len) != REDIS_OK)
        abort();
    dpr_buf_free(&plain);
    while (!c->closing) {
        if (redisReaderGetReply(c->rd, &rep) != REDIS_OK) {
            sconn_close(c); /* not RESP (a TLS hello to the plain server) */
            return;
        }
        if (!rep)
            break;
        serve(c, rep);
        freeReplyObject(rep);
    }
}

static void s_accept(uv_stream_t *st, int status)
{
    srv *s = st->data;
    sconn *c = calloc(1, sizeof(*c));

    if (status < 0 || !c || !(c->rd = redisReaderCreate()))
        abort();
    c->s = s;
    c->tcp.data = c;
    uv_tcp_init(&loop, &c->tcp);
    if (uv_accept(st, (uv_stream_t *)&c->tcp) < 0)
        abort();
    c->next = s->conns;
    s->conns = c;
    if (s->tls && dpr_tls_conn_new(s->tls, NULL, &c->tls, NULL) < 0)
        abort();
    uv_read_start((uv_stream_t *)&c->tcp, s_alloc, s_read);
}

static void srv_start(srv *s, dpr_tls_ctx *tls, bool silent)
{
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    memset(s, 0, sizeof(*s));
    s->tls = tls;
    s->silent = silent;
    uv_tcp_init(&loop, &s->tcp);
    s->tcp.data = s;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    if (uv_tcp_bind(&s->tcp, (const struct sockaddr *)&sa, 0) < 0 ||
        uv_listen((uv_stream_t *)&s->tcp, 16, s_accept) < 0 ||
        uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len) < 0)
        abort();
    s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void srv_stop(srv *s)
{
    while (s->conns)
        sconn_close(s->conns);
    uv_close((uv_handle_t *)&s->tcp, NULL);
}

/* ---- the client's side -------------------------------------------------------------- */

#define MAXREC 512

/* What the callbacks got, in the order they were called. */
typedef struct rec {
    int n;
    int status[MAXREC];
    char text[MAXREC][48];
    agent_respconn *close_on_first; /* closes this from the first callback */
} rec;

static void on_reply(void *arg, int status, const redisReply *r)
{
    rec *x = arg;

    if (x->n >= MAXREC)
        abort();
    x->status[x->n] = status;
    snprintf(x->text[x->n], sizeof(x->text[0]), "%.*s", r && r->str ? (int)r->len : 0,
             r && r->str ? r->str : "");
    if (r && r->type == REDIS_REPLY_STRING && r->len > 40)
        snprintf(x->text[x->n], sizeof(x->text[0]), "len %zu", r->len);
    x->n++;
    if (x->close_on_first) {
        agent_respconn *c = x->close_on_first;
        x->close_on_first = NULL;
        agent_respconn_close(c);
    }
}

/* Runs the loop until *n reaches want (or 5 s). */
static void run_until(const int *n, int want)
{
    time_t end = time(NULL) + 5;

    while (*n < want && time(NULL) < end)
        uv_run(&loop, UV_RUN_ONCE);
}

/* Runs the loop until every handle closed. */
static void settle(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
}

static agent_respconn *open_to(int port, dpr_tls_ctx *tls, size_t max, unsigned connect_ms)
{
    char ep[64];
    agent_respconn *c = NULL;
    agent_respconn_opts o = {.endpoint = ep, .tls = tls, .max_reply = max,
                             .connect_ms = connect_ms};

    snprintf(ep, sizeof(ep), "127.0.0.1:%d", port);
    CHECK(agent_respconn_open(&loop, &o, &c, NULL) == 0);
    return c;
}

static int cmd1(agent_respconn *c, const char *a, const char *b, rec *x)
{
    const char *argv[2] = {a, b};

    return agent_respconn_command(c, b ? 2 : 1, argv, NULL, on_reply, x);
}

/* ---- certificates ----------------------------------------------------------------- */

static dpr_tls_ctx *ctx_of(bool server, const char *cert, const char *ca)
{
    char c[256], k[256], a[256];
    dpr_tls_config cfg = {.cert_file = c, .key_file = k, .ca_file = a,
                          .verify = DPR_TLS_VERIFY_REQUIRED, .cluster = "c1"};
    dpr_tls_ctx *out = NULL;
    dpr_err err = DPR_ERR_INIT;

    snprintf(c, sizeof(c), "%s/%s.crt", dir, cert);
    snprintf(k, sizeof(k), "%s/%s.key", dir, cert);
    snprintf(a, sizeof(a), "%s/%s.crt", dir, ca);
    if (dpr_tls_ctx_new(&cfg, server, &out, &err) < 0) {
        fprintf(stderr, "  ctx: %s\n", err.msg);
        abort();
    }
    return out;
}

static void make_pki(void)
{
    if (!mkdtemp(dir))
        abort();
    testpki ca = testpki_make("test CA", NULL, 1, -60, 86400, NULL);
    testpki ca2 = testpki_make("other CA", NULL, 1, -60, 86400, NULL);
    testpki n1 = testpki_make("n1", &ca, 10, -60, 86400, "DNS:n1,URI:dpr://c1/node/n1");
    testpki n2 = testpki_make("n2", &ca, 11, -60, 86400, "DNS:n2,URI:dpr://c1/node/n2");
    testpki app = testpki_make("app", &ca, 12, -60, 86400, "URI:dpr://c1/client/app");
    testpki c2 = testpki_make("x", &ca, 13, -60, 86400, "URI:dpr://c2/node/x");
    testpki_save(&ca, dir, "ca");
    testpki_save(&ca2, dir, "ca2");
    testpki_save(&n1, dir, "n1");
    testpki_save(&n2, dir, "n2");
    testpki_save(&app, dir, "app");
    testpki_save(&c2, dir, "c2");
    testpki_free(&ca);
    testpki_free(&ca2);
    testpki_free(&n1);
    testpki_free(&n2);
    testpki_free(&app);
    testpki_free(&c2);
}

/* ---- the cases ---------------------------------------------------------------------- */

TEST(ping)
{
    srv s;
    rec x = {0};

    srv_start(&s, NULL, false);
    agent_respconn *c = open_to(s.port, NULL, 0, 0);
    CHECK(cmd1(c, "PING", NULL, &x) == 0);
    CHECK(x.n == 0); /* never from inside the call */
    run_until(&x.n, 1);
    CHECK(x.n == 1 && x.status[0] == 0 && !strcmp(x.text[0], "PONG"));
    CHECK(!agent_respconn_failed(c) && agent_respconn_pending(c) == 0);
    CHECK(!strcmp(agent_respconn_errstr(c), ""));
    agent_respconn_close(c);
    srv_stop(&s);
    settle();
}

/* 300 commands given before the connection is up and 100 after, all
 * pipelined: the callbacks in order, each with its own reply. */
TEST(pipelining_order)
{
    static rec x;
    srv s;
    char v[32];
    bool ok = true;

    memset(&x, 0, sizeof(x));
    srv_start(&s, NULL, false);
    agent_respconn *c = open_to(s.port, NULL, 0, 0);
    for (int i = 0; i < 300; i++) {
        snprintf(v, sizeof(v), "v%d", i);
        CHECK(cmd1(c, "ECHO", v, &x) == 0);
    }
    CHECK_EQ_U64(agent_respconn_pending(c), 300);
    run_until(&x.n, 1);
    for (int i = 300; i < 400; i++) {
        snprintf(v, sizeof(v), "v%d", i);
        CHECK(cmd1(c, "ECHO", v, &x) == 0);
    }
    run_until(&x.n, 400);
    CHECK_EQ_INT(x.n, 400);
    for (int i = 0; i < x.n; i++) {
        snprintf(v, sizeof(v), "v%d", i);
        ok = ok && x.status[i] == 0 && !strcmp(x.text[i], v);
    }
    CHECK(ok);
    agent_respconn_close(c);
    srv_stop(&s);
    settle();
}

/* The server sends half a reply and closes: that command and the one after
 * it get an error, once each; the connection stays failed. */
TEST(server_closes_mid_reply)
{
    srv s;
    rec x = {0};

    srv_start(&s, NULL, false);
    agent_respconn *c = open_to(s.port, NULL, 0, 0);
    CHECK(cmd1(c, "PING", NULL, &x) == 0);
    CHECK(cmd1(c, "HALF", NULL, &x) == 0);
    CHECK(cmd1(c, "PING", NULL, &x) == 0);
    run_until(&x.n, 3);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(x.n, 3);
    CHECK(x.status[0] == 0 && !strcmp(x.text[0], "PONG"));
    CHECK_EQ_INT(x.status[1], -ECONNRESET);
    CHECK_EQ_INT(x.status[2], -ECONNRESET);
    CHECK(agent_respconn_failed(c));
    CHECK(strstr(agent_respconn_errstr(c), "closed by the peer") != NULL);
    CHECK_EQ_INT(cmd1(c, "PING", NULL, &x), -ENOTCONN);
    agent_respconn_close(c);
    CHECK_EQ_INT(x.n, 3); /* (closing tells nobody twice) */
    srv_stop(&s);
    settle();
}

/* A bulk reply over the bound is refused, and so is an array header that
 * asks for more elements than the bound allows; one under it is fine. */
TEST(oversized_reply_refused)
{
    srv s;
    rec x = {0}, y = {0};

    srv_start(&s, NULL, false);
    agent_respconn *c = open_to(s.port, NULL, 4096, 0);
    CHECK(cmd1(c, "BIG", "4000", &x) == 0);
    CHECK(cmd1(c, "BIG", "100000", &x) == 0);
    CHECK(cmd1(c, "PING", NULL, &x) == 0);
    run_until(&x.n, 3);
    CHECK_EQ_INT(x.n, 3);
    CHECK(x.status[0] == 0 && !strcmp(x.text[0], "len 4000"));
    CHECK_EQ_INT(x.status[1], -EMSGSIZE);
    CHECK_EQ_INT(x.status[2], -EMSGSIZE);
    CHECK(strstr(agent_respconn_errstr(c), "more than 4096 bytes") != NULL);
    agent_respconn_close(c);

    c = open_to(s.port, NULL, 4096, 0);
    CHECK(cmd1(c, "HUGEARRAY", NULL, &y) == 0);
    run_until(&y.n, 1);
    CHECK(y.n == 1 && y.status[0] == -EMSGSIZE);
    agent_respconn_close(c);

    /* (one that comes whole in one read) */
    memset(&y, 0, sizeof(y));
    c = open_to(s.port, NULL, 1024, 0);
    CHECK(cmd1(c, "BIG", "2000", &y) == 0);
    run_until(&y.n, 1);
    CHECK(y.n == 1 && y.status[0] == -EMSGSIZE);
    agent_respconn_close(c);
    srv_stop(&s);
    settle();
}

/* Not RESP, or a reply nobody asked for: the connection fails. */
TEST(protocol_errors)
{
    srv s;
    rec x = {0}, y = {0};

    srv_start(&s, NULL, false);
    agent_respconn *c = open_to(s.port, NULL, 0, 0);
    CHECK(cmd1(c, "GARBAGE", NULL, &x) == 0);
    run_until(&x.n, 1);
    CHECK(x.n == 1 && x.status[0] == -EPROTO);
    CHECK(strstr(agent_respconn_errstr(c), "not RESP") != NULL);
    agent_respconn_close(c);

    c = open_to(s.port, NULL, 0, 0);
    CHECK(cmd1(c, "TWICE", NULL, &y) == 0);
    run_until(&y.n, 1);
    for (int i = 0; i < 50 && !agent_respconn_failed(c); i++)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK(y.n == 1 && y.status[0] == 0 && !strcmp(y.text[0], "one"));
    CHECK(agent_respconn_failed(c));
    CHECK(strstr(agent_respconn_errstr(c), "a reply to no command") != NULL);
    agent_respconn_close(c);
    srv_stop(&s);
    settle();
}

TEST(connect_refused)
{
    srv s;
    rec x = {0};
    int port;

    srv_start(&s, NULL, false); /* a port that was free a moment ago */
    port = s.port;
    srv_stop(&s);
    settle();
    agent_respconn *c = open_to(port, NULL, 0, 0);
    CHECK(cmd1(c, "PING", NULL, &x) == 0);
    CHECK(cmd1(c, "PING", NULL, &x) == 0);
    run_until(&x.n, 2);
    CHECK(x.n == 2 && x.status[0] == -ECONNREFUSED && x.status[1] == -ECONNREFUSED);
    CHECK(strstr(agent_respconn_errstr(c), "cannot connect") != NULL);
    agent_respconn_close(c);
    settle();

    agent_respconn_opts o = {.endpoint = "no port here"};
    dpr_err err = DPR_ERR_INIT;
    CHECK_EQ_INT(agent_respconn_open(&loop, &o, &c, &err), -EINVAL);
    CHECK(c == NULL && err.msg[0]);
}

/* Closing from inside a callback: the others get -ECANCELED, once. */
TEST(close_in_callback)
{
    srv s;
    rec x = {0};

    srv_start(&s, NULL, false);
    agent_respconn *c = open_to(s.port, NULL, 0, 0);
    x.close_on_first = c;
    for (int i = 0; i < 5; i++)
        CHECK(cmd1(c, "PING", NULL, &x) == 0);
    run_until(&x.n, 5);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(x.n, 5);
    CHECK(x.status[0] == 0);
    for (int i = 1; i < 5; i++)
        CHECK_EQ_INT(x.status[i], -ECANCELED);
    srv_stop(&s);
    settle();
}

/* Closing with commands waiting: their callbacks run inside close. */
TEST(close_with_pending)
{
    srv s;
    rec x = {0};

    srv_start(&s, NULL, false);
    agent_respconn *c = open_to(s.port, NULL, 0, 0);
    CHECK(cmd1(c, "PING", NULL, &x) == 0);
    CHECK(cmd1(c, "PING", NULL, &x) == 0);
    agent_respconn_close(c);
    CHECK(x.n == 2 && x.status[0] == -ECANCELED && x.status[1] == -ECANCELED);
    srv_stop(&s);
    settle();
    CHECK_EQ_INT(x.n, 2);
}

TEST(tls_handshake)
{
    dpr_tls_ctx *sctx = ctx_of(true, "n1", "ca"), *cctx = ctx_of(false, "n2", "ca");
    srv s;
    rec x = {0};

    srv_start(&s, sctx, false);
    agent_respconn *c = open_to(s.port, cctx, 0, 0);
    CHECK(cmd1(c, "PING", NULL, &x) == 0);
    CHECK(cmd1(c, "ECHO", "secret", &x) == 0);
    CHECK(cmd1(c, "BIG", "100000", &x) == 0);
    run_until(&x.n, 3);
    CHECK(x.n == 3 && x.status[0] == 0 && !strcmp(x.text[0], "PONG"));
    CHECK(x.status[1] == 0 && !strcmp(x.text[1], "secret"));
    CHECK(x.status[2] == 0 && !strcmp(x.text[2], "len 100000"));
    agent_respconn_close(c);
    srv_stop(&s);
    settle();
    dpr_tls_ctx_free(sctx);
    dpr_tls_ctx_free(cctx);
}

/* A PING over TLS to a server showing server_cert, with the client's CA
 * client_ca: refused with want (status) and a reason holding why. */
static void tls_refused(const char *server_cert, const char *client_ca, int want,
                        const char *why)
{
    dpr_tls_ctx *sctx = ctx_of(true, server_cert, "ca"), *cctx = ctx_of(false, "n2", client_ca);
    srv s;
    rec x = {0};

    srv_start(&s, sctx, false);
    agent_respconn *c = open_to(s.port, cctx, 0, 0);
    CHECK(cmd1(c, "PING", NULL, &x) == 0);
    run_until(&x.n, 1);
    CHECK(x.n == 1 && x.status[0] == want);
    CHECK(strstr(agent_respconn_errstr(c), why) != NULL);
    if (!strstr(agent_respconn_errstr(c), why))
        fprintf(stderr, "  errstr: %s\n", agent_respconn_errstr(c));
    agent_respconn_close(c);
    srv_stop(&s);
    settle();
    dpr_tls_ctx_free(sctx);
    dpr_tls_ctx_free(cctx);
}

/* A server whose certificate another CA signed: refused in the handshake,
 * nothing sent. */
TEST(tls_wrong_ca_refused)
{
    tls_refused("n1", "ca2", -EPROTO, "TLS refused");
}

/* A server of the right CA that is not a node (an application's
 * certificate), or a node of another cluster: refused. */
TEST(tls_not_a_node_refused)
{
    tls_refused("app", "ca", -EACCES, "not a node's");
    tls_refused("c2", "ca", -EACCES, "TLS refused");
}

/* TLS to a server that never answers the hello, and to a plain server
 * (which drops the hello): the timeout, and the end during the handshake. */
TEST(tls_to_silent_or_plain_server)
{
    dpr_tls_ctx *cctx = ctx_of(false, "n2", "ca");
    srv s, p;
    rec x = {0}, y = {0};

    srv_start(&s, NULL, true);
    agent_respconn *c = open_to(s.port, cctx, 0, 200);
    CHECK(cmd1(c, "PING", NULL, &x) == 0);
    run_until(&x.n, 1);
    CHECK(x.n == 1 && x.status[0] == -ETIMEDOUT);
    CHECK(strstr(agent_respconn_errstr(c), "no TLS handshake within 200 ms") != NULL);
    agent_respconn_close(c);

    srv_start(&p, NULL, false);
    c = open_to(p.port, cctx, 0, 0);
    CHECK(cmd1(c, "PING", NULL, &y) == 0);
    run_until(&y.n, 1);
    CHECK(y.n == 1 && y.status[0] == -ECONNRESET);
    CHECK(strstr(agent_respconn_errstr(c), "closed during the TLS handshake") != NULL);
    agent_respconn_close(c);
    srv_stop(&s);
    srv_stop(&p);
    settle();
    dpr_tls_ctx_free(cctx);
}

int main(void)
{
    char cmd[128];
    int rc;

    signal(SIGPIPE, SIG_IGN);
    make_pki();
    uv_loop_init(&loop);
    RUN(ping);
    RUN(pipelining_order);
    RUN(server_closes_mid_reply);
    RUN(oversized_reply_refused);
    RUN(protocol_errors);
    RUN(connect_refused);
    RUN(close_in_callback);
    RUN(close_with_pending);
    RUN(tls_handshake);
    RUN(tls_wrong_ca_refused);
    RUN(tls_not_a_node_refused);
    RUN(tls_to_silent_or_plain_server);
    settle();
    CHECK_EQ_INT(uv_loop_close(&loop), 0); /* every handle closed */
    rc = check_summary("agent_respconn");
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return rc;
}
