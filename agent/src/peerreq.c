/* peerreq.c - one request to the leader agent (see peerreq.h): each
 * attempt is a RESP connection of its own (respconn.h). */
#include "peerreq.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agenttls.h"
#include "common/addr.h"
#include "respconn.h"

struct agent_peerreq {
    uv_loop_t *loop;
    dpr_finders targets;
    struct agent_tls *const *tls; /* NULL or *tls NULL: plain */
    uint64_t deadline;       /* uv_now after which no attempt starts */
    int argc;
    char **argv;             /* the command (copied) */
    agent_peerreq_done_fn done;
    void *arg;
    agent_respconn *c;       /* the attempt's connection; NULL between attempts */
    uv_timer_t timer;        /* the attempt's timeout, or the pause after TRYAGAIN */
    bool cancelled, finished;
};

static void attempt(agent_peerreq *q);

static void on_timer_closed(uv_handle_t *h)
{
    agent_peerreq *q = h->data;

    for (int i = 0; i < q->argc; i++)
        free(q->argv[i]);
    free(q->argv);
    free(q);
}

/* (its callback sees q->c NULL: an attempt given up) */
static void drop_conn(agent_peerreq *q)
{
    agent_respconn *c = q->c;

    q->c = NULL;
    agent_respconn_close(c);
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

static void on_reply(void *arg, int status, const redisReply *rep)
{
    agent_peerreq *q = arg;
    char text[512];

    if (!q->c || q->finished || q->cancelled)
        return; /* an attempt given up */
    if (status < 0) {
        retry(q, true, 50); /* refused, broken, not RESP */
        return;
    }
    snprintf(text, sizeof(text), "%.*s", (int)(rep->str ? rep->len : 0), rep->str ? rep->str : "");
    if (rep->type == REDIS_REPLY_ERROR) {
        switch (dpr_finders_on_error(&q->targets, rep->str, rep->len)) {
        case DPR_FINDERS_MOVED: /* (a TLS port names the leader's TLS port) */
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

static void attempt(agent_peerreq *q)
{
    const dpr_hostport *hp = dpr_finders_current(&q->targets);
    char endpoint[DPR_ADDR_STR_MAX];
    agent_respconn_opts o = {.endpoint = endpoint, .connect_ms = AGENT_PEERREQ_ATTEMPT_MS,
                             .tls = q->tls && *q->tls ? (*q->tls)->client : NULL};
    int rc;

    snprintf(endpoint, sizeof(endpoint), strchr(hp->host, ':') ? "[%s]:%u" : "%s:%u",
             hp->host, (unsigned)hp->port);
    uv_timer_start(&q->timer, on_timeout, AGENT_PEERREQ_ATTEMPT_MS, 0);
    rc = agent_respconn_open(q->loop, &o, &q->c, NULL);
    if (rc == -ENOMEM) {
        finish(q, -ENOMEM, 0, NULL);
        return;
    }
    if (rc == 0)
        rc = agent_respconn_command(q->c, q->argc, (const char *const *)q->argv, NULL,
                                    on_reply, q);
    if (rc == -ENOMEM)
        finish(q, -ENOMEM, 0, NULL);
    else if (rc < 0)
        retry(q, true, 50); /* (an address that does not resolve) */
}

int agent_peerreq_send(uv_loop_t *loop, const dpr_finders *targets,
                       struct agent_tls *const *tls, unsigned timeout_ms, int argc,
                       const char **argv, agent_peerreq_done_fn done, void *arg,
                       agent_peerreq **out)
{
    agent_peerreq *q = calloc(1, sizeof(*q));

    *out = NULL;
    if (!q || !(q->argv = calloc((size_t)argc, sizeof(*q->argv)))) {
        free(q);
        return -ENOMEM;
    }
    for (q->argc = 0; q->argc < argc; q->argc++) {
        if (!(q->argv[q->argc] = strdup(argv[q->argc]))) {
            for (int i = 0; i < q->argc; i++)
                free(q->argv[i]);
            free(q->argv);
            free(q);
            return -ENOMEM;
        }
    }
    q->loop = loop;
    q->targets = *targets;
    q->tls = tls;
    q->deadline = uv_now(loop) + timeout_ms;
    q->done = done;
    q->arg = arg;
    uv_timer_init(loop, &q->timer);
    q->timer.data = q;
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
