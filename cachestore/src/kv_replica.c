/* kv_replica.c - see kv_replica.h. */
#include "kv_replica.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/resp.h"
#include "common/uvutil.h"
#include "kv_ckpt.h"

#define RETRY_MS 1000
#define RECONNECT_MS 500

struct kv_replica {
    uv_loop_t *loop;
    char socket[4096], instance[64], token[160], dir[4096];
    bool again;           /* compacted images sent again (kv_replica.h) */
    kv_replica *after;    /* again: the lane each version waits for */
    kv_replica *follower; /* the again lane waiting for this one */
    kv_replica_copied_fn copied;
    void *ud;

    uv_pipe_t pipe;
    uv_connect_t connect;
    uv_timer_t timer;
    bool pipe_open, connected, connecting, closing;
    int handles;
    redisReader *reader;
    char rbuf[4096];

    uint64_t *queue;      /* versions to copy, in asking order; queue[0] is asked */
    size_t n, cap;
    bool asked;           /* queue[0] was sent and is not answered */
    bool head_stale;      /* a rollback dropped queue[0] while it was asked */
    uint64_t done;        /* the newest version copied */
    char error[400];
};

static void step(kv_replica *r);

static void maybe_free(kv_replica *r)
{
    if (!r->closing || r->handles > 0)
        return;
    if (r->reader)
        redisReaderFree(r->reader);
    free(r->queue);
    free(r);
}

static void on_closed(uv_handle_t *h)
{
    kv_replica *r = h->data;

    r->handles--;
    maybe_free(r);
}

static void on_retry(uv_timer_t *t)
{
    step(t->data);
}

/* The connection is gone: connect again after a pause, ask again. */
static void on_pipe_closed(uv_handle_t *h)
{
    kv_replica *r = h->data;

    r->handles--;
    r->pipe_open = false;
    if (r->closing) {
        maybe_free(r);
        return;
    }
    uv_timer_start(&r->timer, on_retry, RECONNECT_MS, 0);
}

static void drop_connection(kv_replica *r, const char *why)
{
    if (why && strcmp(r->error, why) != 0) {
        log_warning("replication: %s; checkpoints are reported once copied", why);
        snprintf(r->error, sizeof(r->error), "%s", why);
    }
    if (r->head_stale && r->n) { /* (no answer will come for it now) */
        memmove(r->queue, r->queue + 1, (r->n - 1) * sizeof(*r->queue));
        r->n--;
    }
    r->head_stale = false;
    r->connected = r->connecting = r->asked = false;
    if (r->reader) {
        redisReaderFree(r->reader);
        r->reader = NULL;
    }
    if (r->pipe_open && !uv_is_closing((uv_handle_t *)&r->pipe))
        uv_close((uv_handle_t *)&r->pipe, on_pipe_closed);
}

static void on_reply(kv_replica *r, const redisReply *rep)
{
    uint64_t v = r->queue[0];

    r->asked = false;
    if (r->head_stale) { /* dropped by a rollback: whatever the answer */
        r->head_stale = false;
        memmove(r->queue, r->queue + 1, (r->n - 1) * sizeof(*r->queue));
        r->n--;
        step(r);
        return;
    }
    if (rep->type == REDIS_REPLY_STATUS) {
        memmove(r->queue, r->queue + 1, (r->n - 1) * sizeof(*r->queue));
        r->n--;
        if (v > r->done)
            r->done = v;
        if (r->error[0])
            log_info("replication: checkpoint %" PRIu64 " copied: copies are made again", v);
        r->error[0] = '\0';
        if (r->copied)
            r->copied(r->ud, v);
        step(r);
        if (r->follower)
            step(r->follower);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "ERR ", 4) == 0 &&
        strcmp(r->error, rep->str + 4) != 0) {
        log_warning("replication: checkpoint %" PRIu64 " is not copied%s: %s; asking again "
                    "every second%s", v, r->again ? " again as a full image" : "",
                    rep->str + 4, r->again ? "" : " (it is not reported durable until then)");
        snprintf(r->error, sizeof(r->error), "%s", rep->str + 4);
    }
    uv_timer_start(&r->timer, on_retry, RETRY_MS, 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    kv_replica *r = h->data;

    (void)hint;
    *buf = uv_buf_init(r->rbuf, sizeof(r->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    kv_replica *r = s->data;
    void *rep = NULL;

    if (n < 0) {
        drop_connection(r, "the agent closed the replication socket");
        return;
    }
    if (redisReaderFeed(r->reader, buf->base, (size_t)n) != REDIS_OK) {
        drop_connection(r, "the agent's answer is not RESP");
        return;
    }
    while (r->connected && redisReaderGetReply(r->reader, &rep) == REDIS_OK && rep) {
        if (r->asked && r->n)
            on_reply(r, rep);
        freeReplyObject(rep);
        rep = NULL;
    }
}

static void on_written(uv_stream_t *s, int status)
{
    if (status < 0)
        drop_connection(s->data, "cannot write to the agent's replication socket");
}

static void on_connect(uv_connect_t *c, int status)
{
    kv_replica *r = c->data;
    char why[4200];

    r->connecting = false;
    if (r->closing)
        return;
    if (status < 0) {
        snprintf(why, sizeof(why), "cannot connect to the agent's socket %s: %s", r->socket,
                 uv_strerror(status));
        drop_connection(r, why);
        return;
    }
    r->reader = redisReaderCreate();
    if (!r->reader || uv_read_start((uv_stream_t *)&r->pipe, on_alloc, on_read) < 0) {
        drop_connection(r, "out of memory");
        return;
    }
    r->connected = true;
    step(r);
}

/* The next thing to do: connect, or ask for queue[0]. */
static void step(kv_replica *r)
{
    char ver[24], path[4200];
    const char *argv[5] = { "DPR.REPLICA.SHIP", r->instance, r->token, ver, path };
    dpr_buf b = DPR_BUF_INIT;

    if (r->closing || r->asked || r->n == 0 || r->connecting)
        return;
    /* (never while the other lane may still send that version's change log:
     * both would write the same copy on the replica node) */
    if (r->after && r->after->done < r->queue[0])
        return;
    if (!r->connected) {
        if (r->pipe_open)
            return; /* (closing: on_pipe_closed comes back) */
        uv_pipe_init(r->loop, &r->pipe, 0);
        r->pipe.data = r;
        r->pipe_open = true;
        r->handles++;
        r->connecting = true;
        r->connect.data = r;
        uv_pipe_connect(&r->connect, &r->pipe, r->socket, on_connect);
        return;
    }
    snprintf(ver, sizeof(ver), "%" PRIu64, r->queue[0]);
    if (kv_ckpt_path(path, sizeof(path), r->dir, r->queue[0], 0) < 0) {
        drop_connection(r, "the checkpoint's path is too long");
        return;
    }
    if (r->again && access(path, F_OK) < 0 && errno == ENOENT) {
        /* (collected since its compaction: nothing to send again) */
        memmove(r->queue, r->queue + 1, (r->n - 1) * sizeof(*r->queue));
        r->n--;
        step(r);
        return;
    }
    dpr_resp_command(&b, 5, argv, NULL);
    if (dpr_buf_failed(&b) || dpr_uv_write((uv_stream_t *)&r->pipe, &b, on_written) < 0) {
        dpr_buf_free(&b);
        drop_connection(r, "cannot write to the agent's replication socket");
        return;
    }
    r->asked = true;
}

int kv_replica_new(uv_loop_t *loop, const kv_replica_config *cfg, kv_replica_copied_fn copied,
                   void *ud, kv_replica **out)
{
    kv_replica *r = calloc(1, sizeof(*r));

    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->copied = copied;
    r->ud = ud;
    snprintf(r->socket, sizeof(r->socket), "%s", cfg->socket);
    snprintf(r->instance, sizeof(r->instance), "%s", cfg->instance);
    snprintf(r->token, sizeof(r->token), "%s", cfg->token);
    snprintf(r->dir, sizeof(r->dir), "%s", cfg->dir);
    r->again = cfg->again;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    r->handles = 1;
    *out = r;
    return 0;
}

int kv_replica_ship(kv_replica *r, uint64_t version)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        uint64_t *q = realloc(r->queue, cap * sizeof(*q));
        if (!q)
            return -ENOMEM;
        r->queue = q;
        r->cap = cap;
    }
    r->queue[r->n++] = version;
    step(r);
    return 0;
}

void kv_replica_drop_above(kv_replica *r, uint64_t version)
{
    /* (the one asked stays until its answer comes, then goes; the queue
     * of compacted images is not in version order) */
    size_t keep = r->asked && r->n ? 1 : 0, m = keep;

    for (size_t i = keep; i < r->n; i++)
        if (r->queue[i] <= version)
            r->queue[m++] = r->queue[i];
    r->n = m;
    if (keep && r->queue[0] > version)
        r->head_stale = true;
    if (r->done > version) /* (versions above may come again) */
        r->done = version;
}

void kv_replica_follow(kv_replica *main, kv_replica *again)
{
    main->follower = again;
    again->after = main;
}

size_t kv_replica_pending(const kv_replica *r)
{
    return r->n;
}

uint64_t kv_replica_copied(const kv_replica *r)
{
    return r->done;
}

const char *kv_replica_error(const kv_replica *r)
{
    return r->error;
}

void kv_replica_close(kv_replica *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    if (r->follower)
        r->follower->after = NULL;
    if (r->after)
        r->after->follower = NULL;
    uv_close((uv_handle_t *)&r->timer, on_closed);
    if (r->pipe_open && !uv_is_closing((uv_handle_t *)&r->pipe))
        uv_close((uv_handle_t *)&r->pipe, on_pipe_closed);
}
