/* peerreq.c - one request to the leader agent (see peerreq.h). */
#include "peerreq.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/uvutil.h"

/* One attempt's connection (its connect request may end after the
 * attempt was given up: it is freed with the handle). */
typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    agent_peerreq *q;
    bool current;            /* the attempt in progress */
} conn;

struct agent_peerreq {
    uv_loop_t *loop;
    dpr_finders targets;
    uint64_t deadline;       /* uv_now after which no attempt starts */
    char *cmd;               /* the RESP command */
    int cmdlen;
    agent_peerreq_done_fn done;
    void *arg;
    conn *c;                 /* the attempt's connection; NULL between attempts */
    uv_timer_t timer;        /* the attempt's timeout, or the pause after TRYAGAIN */
    redisReader *reader;
    bool cancelled, finished;
    int handles;             /* open: the timer and a connection */
    char rbuf[4096];
};

static void attempt(agent_peerreq *q);

static void free_if_done(agent_peerreq *q)
{
    if (q->handles > 0 || !(q->finished || q->cancelled))
        return;
    if (q->reader)
        redisReaderFree(q->reader);
    redisFreeCommand(q->cmd);
    free(q);
}

static void on_timer_closed(uv_handle_t *h)
{
    agent_peerreq *q = h->data;

    q->handles--;
    free_if_done(q);
}

static void on_conn_closed(uv_handle_t *h)
{
    conn *c = h->data;
    agent_peerreq *q = c->q;

    free(c);
    q->handles--;
    free_if_done(q);
}

static void drop_conn(agent_peerreq *q)
{
    if (q->c) {
        q->c->current = false;
        uv_close((uv_handle_t *)&q->c->tcp, on_conn_closed);
        q->c = NULL;
    }
    if (q->reader) {
        redisReaderFree(q->reader);
        q->reader = NULL;
    }
}

static void finish(agent_peerreq *q, int status, int error, const char *text)
{
    drop_conn(q);
    uv_timer_stop(&q->timer);
    q->finished = true;
    if (!q->cancelled)
        q->done(q->arg, status, error, text);
    uv_close((uv_handle_t *)&q->timer, on_timer_closed);
}

static void on_pause(uv_timer_t *t)
{
    attempt(t->data);
}

/* This attempt failed: the next address (after pause_ms), or give up. */
static void retry(agent_peerreq *q, bool next, unsigned pause_ms)
{
    drop_conn(q);
    if (next)
        dpr_finders_next(&q->targets);
    if (uv_now(q->loop) >= q->deadline) {
        finish(q, -EHOSTUNREACH, 0, NULL);
        return;
    }
    uv_timer_stop(&q->timer);
    if (pause_ms == 0) {
        attempt(q);
        return;
    }
    uv_timer_start(&q->timer, on_pause, pause_ms, 0);
}

static void on_timeout(uv_timer_t *t)
{
    retry(t->data, true, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    agent_peerreq *q = ((conn *)h->data)->q;

    (void)suggested;
    *buf = uv_buf_init(q->rbuf, sizeof(q->rbuf));
}

static void on_reply(agent_peerreq *q, redisReply *rep)
{
    char text[512];

    snprintf(text, sizeof(text), "%.*s", (int)(rep->str ? rep->len : 0), rep->str ? rep->str : "");
    if (rep->type == REDIS_REPLY_ERROR) {
        switch (dpr_finders_on_error(&q->targets, rep->str, rep->len)) {
        case DPR_FINDERS_MOVED:
            retry(q, false, 0);
            return;
        case DPR_FINDERS_RETRY:
            retry(q, false, 200); /* on_error moved on already */
            return;
        case DPR_FINDERS_OTHER:
            finish(q, 0, 1, text);
            return;
        }
    }
    dpr_finders_answered(&q->targets);
    finish(q, 0, 0, text);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn *c = s->data;
    agent_peerreq *q = c->q;
    void *rep = NULL;

    if (!c->current)
        return;
    if (n < 0) {
        retry(q, true, 50);
        return;
    }
    if (n == 0)
        return;
    if (redisReaderFeed(q->reader, buf->base, (size_t)n) != REDIS_OK ||
        redisReaderGetReply(q->reader, &rep) != REDIS_OK) {
        retry(q, true, 50);
        return;
    }
    if (!rep)
        return;
    on_reply(q, rep);
    freeReplyObject(rep);
}

static void on_written(uv_stream_t *s, int status)
{
    conn *c = s->data;

    if (status < 0 && c->current)
        retry(c->q, true, 0);
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *c = req->data;
    agent_peerreq *q = c->q;
    dpr_buf b = DPR_BUF_INIT;

    if (!c->current)
        return; /* an attempt given up */
    if (status < 0) {
        retry(q, true, 50);
        return;
    }
    q->reader = redisReaderCreate();
    if (!q->reader || dpr_buf_append(&b, q->cmd, (size_t)q->cmdlen) < 0 ||
        dpr_uv_write((uv_stream_t *)&c->tcp, &b, on_written) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        dpr_buf_free(&b);
        retry(q, true, 50);
    }
}

static void attempt(agent_peerreq *q)
{
    const dpr_hostport *hp = dpr_finders_current(&q->targets);
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);

    uv_timer_start(&q->timer, on_timeout, AGENT_PEERREQ_ATTEMPT_MS, 0);
    if (dpr_hostport_resolve(hp, false, &ss, &sslen, NULL) < 0) {
        retry(q, true, 50);
        return;
    }
    q->c = calloc(1, sizeof(*q->c));
    if (!q->c || uv_tcp_init(q->loop, &q->c->tcp) < 0) {
        free(q->c);
        q->c = NULL;
        finish(q, -ENOMEM, 0, NULL);
        return;
    }
    q->c->q = q;
    q->c->current = true;
    q->c->tcp.data = q->c;
    q->c->connect.data = q->c;
    q->handles++;
    if (uv_tcp_connect(&q->c->connect, &q->c->tcp, (const struct sockaddr *)&ss,
                       on_connect) < 0)
        retry(q, true, 50);
}

int agent_peerreq_send(uv_loop_t *loop, const dpr_finders *targets, unsigned timeout_ms, int argc,
                       const char **argv, agent_peerreq_done_fn done, void *arg,
                       agent_peerreq **out)
{
    agent_peerreq *q = calloc(1, sizeof(*q));

    *out = NULL;
    if (!q)
        return -ENOMEM;
    q->cmdlen = redisFormatCommandArgv(&q->cmd, argc, argv, NULL);
    if (q->cmdlen < 0) {
        free(q);
        return -ENOMEM;
    }
    q->loop = loop;
    q->targets = *targets;
    q->deadline = uv_now(loop) + timeout_ms;
    q->done = done;
    q->arg = arg;
    uv_timer_init(loop, &q->timer);
    q->timer.data = q;
    q->handles = 1;
    uv_timer_start(&q->timer, on_pause, 0, 0); /* done is never called from inside */
    *out = q;
    return 0;
}

void agent_peerreq_cancel(agent_peerreq *q)
{
    if (!q || q->cancelled || q->finished)
        return;
    q->cancelled = true;
    drop_conn(q);
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->timer, on_timer_closed);
}
