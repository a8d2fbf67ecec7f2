/* replclient.c - see replclient.h. */
#include "replclient.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agenttls.h"
#include "common/addr.h"
#include "common/buf.h"
#include "common/bytes.h"
#include "common/resp.h"
#include "common/uvutil.h"

#define CHUNK (256u << 10)
#define WINDOW 4

struct agent_replclient {
    uv_loop_t *loop;
    char peer[300], peer_name[80], cluster[128], deployment[64], path[4096];
    uint64_t worker, version;
    agent_replclient_done_fn done;
    void *arg;

    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_timer_t timer;
    redisReader *reader;
    int handles;              /* open libuv handles */
    bool pool_busy;           /* a work item of it is on the thread pool */
    bool cancelled, finished, connected;
    dpr_tls_conn *tls;        /* TLS on: the engine (connected once the peer is verified) */
    bool verified;

    /* the file */
    int fd;
    uint64_t size;
    uint32_t crc;
    bool prepared;            /* size and crc known */
    int prepare_rc;

    /* the transfer */
    enum { ST_START, ST_HAVE, ST_PUT, ST_DONE } state;
    uint64_t next_off;        /* the next chunk to read */
    uint64_t acked;           /* bytes the peer confirmed */
    unsigned inflight;        /* PUTs sent, not answered (answered in order) */
    unsigned head;            /* lens[head] is the oldest one's length */
    size_t lens[WINDOW];
    int connect_rc;           /* < 0: no connection could be started */
    bool legacy;              /* the peer refused HAVE with size and CRC (an older agent) */
    bool resent;              /* DONE found a mismatch once: sent again from HAVE */
    bool reading;
    uv_work_t work;           /* prepare, or read one chunk */
    char *chunk;
    size_t chunk_len;
    int read_rc;
    char rbuf[4096];
};

static void pump(agent_replclient *q);

static void maybe_free(agent_replclient *q)
{
    if (q->handles > 0 || q->pool_busy || !(q->finished || q->cancelled))
        return;
    if (q->reader)
        redisReaderFree(q->reader);
    if (q->fd >= 0)
        close(q->fd);
    dpr_tls_conn_free(q->tls);
    free(q->chunk);
    free(q);
}

static void on_closed(uv_handle_t *h)
{
    agent_replclient *q = h->data;

    q->handles--;
    maybe_free(q);
}

static void close_all(agent_replclient *q)
{
    uv_timer_stop(&q->timer);
    if (!uv_is_closing((uv_handle_t *)&q->timer))
        uv_close((uv_handle_t *)&q->timer, on_closed);
    if (!uv_is_closing((uv_handle_t *)&q->tcp))
        uv_close((uv_handle_t *)&q->tcp, on_closed);
}

static void finish(agent_replclient *q, int status, const char *fmt, const char *what)
{
    char msg[600];

    if (q->finished || q->cancelled)
        return;
    q->finished = true;
    if (status < 0)
        snprintf(msg, sizeof(msg), fmt, what);
    close_all(q);
    q->done(q->arg, status, status < 0 ? msg : NULL);
    maybe_free(q);
}

static void on_timeout(uv_timer_t *t)
{
    agent_replclient *q = t->data;
    char what[400];

    if (q->connect_rc < 0) {
        snprintf(what, sizeof(what), "%s (%s): cannot connect: %s", q->peer_name, q->peer,
                 uv_strerror(q->connect_rc));
        finish(q, -ECONNREFUSED, "%s", what);
        return;
    }
    finish(q, -ETIMEDOUT, "%s: the copy took too long (timed out)", q->peer_name);
}

/* (the work of a failure found before the pool: after_prepare reports it) */
static void nothing(uv_work_t *w)
{
    (void)w;
}

/* ---- the file, on the pool --------------------------------------------------------- */

static void prepare_work(uv_work_t *w)
{
    agent_replclient *q = w->data;
    unsigned char *buf = malloc(1 << 20);
    uint32_t crc = dpr_crc32(NULL, 0);
    uint64_t n = 0;
    ssize_t r = 0;

    if (!buf) {
        q->prepare_rc = -ENOMEM;
        return;
    }
    while ((r = pread(q->fd, buf, 1 << 20, (off_t)n)) > 0) {
        crc = dpr_crc32_update(crc, buf, (size_t)r);
        n += (uint64_t)r;
    }
    free(buf);
    if (r < 0)
        q->prepare_rc = -errno;
    else if (n == 0)
        q->prepare_rc = -ENODATA;
    q->size = n;
    q->crc = crc;
}

static void read_work(uv_work_t *w)
{
    agent_replclient *q = w->data;
    uint64_t left = q->size - q->next_off;
    size_t want = left < CHUNK ? (size_t)left : CHUNK;
    ssize_t r = pread(q->fd, q->chunk, want, (off_t)q->next_off);

    q->read_rc = r < 0 ? -errno : (size_t)r != want ? -EIO : 0;
    q->chunk_len = want;
}

static void send_cmd(agent_replclient *q, int argc, const char **argv, const size_t *len);

static void after_prepare(uv_work_t *w, int status)
{
    agent_replclient *q = w->data;

    q->pool_busy = false;
    if (q->finished || q->cancelled) {
        maybe_free(q);
        return;
    }
    if (status < 0 || q->prepare_rc < 0) {
        char what[4200];
        int rc = status < 0 ? status : q->prepare_rc;

        snprintf(what, sizeof(what), "%s: %s", q->path, rc == -EPERM
                 ? "not a regular file of the cache-store that asked" : strerror(-rc));
        finish(q, rc, "cannot read the checkpoint %s", what);
        return;
    }
    q->prepared = true;
    pump(q);
}

static void after_read(uv_work_t *w, int status)
{
    agent_replclient *q = w->data;
    char dep[64], wk[24], ver[24], off[24];
    const char *argv[7] = { "DPR.REPL.PUT", q->cluster, dep, wk, ver, off, q->chunk };
    size_t len[7];

    q->pool_busy = false;
    q->reading = false;
    if (q->finished || q->cancelled) {
        maybe_free(q);
        return;
    }
    if (status < 0 || q->read_rc < 0) {
        finish(q, status < 0 ? status : q->read_rc, "cannot read the checkpoint %s", q->path);
        return;
    }
    snprintf(dep, sizeof(dep), "%s", q->deployment);
    snprintf(wk, sizeof(wk), "%" PRIu64, q->worker);
    snprintf(ver, sizeof(ver), "%" PRIu64, q->version);
    snprintf(off, sizeof(off), "%" PRIu64, q->next_off);
    for (int i = 0; i < 6; i++)
        len[i] = strlen(argv[i]);
    len[6] = q->chunk_len;
    send_cmd(q, 7, argv, len);
    q->lens[(q->head + q->inflight) % WINDOW] = q->chunk_len;
    q->next_off += q->chunk_len;
    q->inflight++;
    pump(q);
}

/* ---- the conversation ---------------------------------------------------------------- */

static void on_written(uv_stream_t *s, int status)
{
    agent_replclient *q = s->data;

    if (status < 0)
        finish(q, status, "%s: the connection broke", q->peer_name);
}

static void send_cmd(agent_replclient *q, int argc, const char **argv, const size_t *len)
{
    dpr_buf b = DPR_BUF_INIT;

    int rc;

    dpr_resp_command(&b, argc, argv, len);
    rc = dpr_buf_failed(&b) ? -ENOMEM : 0;
    if (rc == 0 && q->tls)
        rc = agent_tls_send(q->tls, (uv_stream_t *)&q->tcp, b.data, b.len, on_written);
    else if (rc == 0)
        rc = dpr_uv_write((uv_stream_t *)&q->tcp, &b, on_written);
    dpr_buf_free(&b);
    if (rc < 0)
        finish(q, -ECONNRESET, "%s: cannot send", q->peer_name);
}

/* HAVE (with the file's size and CRC-32 unless the peer is an older agent)
 * or DONE. */
static void send_simple(agent_replclient *q, const char *cmd, bool done)
{
    char wk[24], ver[24], size[24], crc[24];
    const char *argv[7] = { cmd, q->cluster, q->deployment, wk, ver, size, crc };

    snprintf(wk, sizeof(wk), "%" PRIu64, q->worker);
    snprintf(ver, sizeof(ver), "%" PRIu64, q->version);
    snprintf(size, sizeof(size), "%" PRIu64, q->size);
    snprintf(crc, sizeof(crc), "%" PRIu32, q->crc);
    send_cmd(q, done || !q->legacy ? 7 : 5, argv, NULL);
}

/* The next step, whatever is ready. */
static void pump(agent_replclient *q)
{
    if (q->finished || q->cancelled || !q->connected || !q->prepared)
        return;
    if (q->state == ST_START) {
        q->state = ST_HAVE;
        send_simple(q, "DPR.REPL.HAVE", false);
        return;
    }
    if (q->state != ST_PUT)
        return;
    if (q->acked >= q->size && q->inflight == 0) {
        q->state = ST_DONE;
        send_simple(q, "DPR.REPL.DONE", true);
        return;
    }
    if (q->reading || q->inflight >= WINDOW || q->next_off >= q->size)
        return;
    if (!q->chunk && !(q->chunk = malloc(CHUNK))) {
        finish(q, -ENOMEM, "%s", "out of memory");
        return;
    }
    q->reading = true;
    q->pool_busy = true;
    q->work.data = q;
    if (uv_queue_work(q->loop, &q->work, read_work, after_read) < 0) {
        q->reading = q->pool_busy = false;
        finish(q, -ENOMEM, "%s", "cannot queue a read");
    }
}

static void on_reply(agent_replclient *q, const redisReply *r)
{
    char msg[400];

    if (r->type == REDIS_REPLY_ERROR && q->state == ST_HAVE && !q->legacy &&
        strstr(r->str, "wrong number of arguments")) {
        /* an agent before protocol 2: it cannot tell whether its finished
         * copy is this file (a compacted image is not sent again to it) */
        q->legacy = true;
        send_simple(q, "DPR.REPL.HAVE", false);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR && q->state == ST_DONE && !q->resent &&
        strstr(r->str, "send it again")) {
        /* (a part left by an earlier transfer of another file of this
         * version, e.g. the change log a compaction replaced: the peer
         * removed it) */
        q->resent = true;
        q->state = ST_HAVE;
        q->acked = q->next_off = 0;
        send_simple(q, "DPR.REPL.HAVE", false);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(msg, sizeof(msg), "%s: -%.*s", q->peer_name, (int)r->len, r->str);
        finish(q, strstr(r->str, "No space left") ? -ENOSPC : -EREMOTEIO, "%s", msg);
        return;
    }
    switch (q->state) {
    case ST_HAVE:
        if (r->type != REDIS_REPLY_INTEGER)
            break;
        if (r->integer == -1) { /* it has the whole copy already */
            finish(q, 0, "%s", "");
            return;
        }
        q->state = ST_PUT;
        q->next_off = q->acked = (uint64_t)r->integer <= q->size ? (uint64_t)r->integer : 0;
        pump(q);
        return;
    case ST_PUT:
        if (r->type != REDIS_REPLY_STATUS || q->inflight == 0)
            break;
        q->acked += q->lens[q->head];
        q->head = (q->head + 1) % WINDOW;
        q->inflight--;
        pump(q);
        return;
    case ST_DONE:
        if (r->type != REDIS_REPLY_STATUS)
            break;
        finish(q, 0, "%s", "");
        return;
    default:
        break;
    }
    finish(q, -EPROTO, "%s: an answer that makes no sense", q->peer_name);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    agent_replclient *q = h->data;

    (void)hint;
    *buf = uv_buf_init(q->rbuf, sizeof(q->rbuf));
}

/* TLS: n bytes of ciphertext; the plaintext into the reader. 0, or < 0
 * once finished (refused). */
static int tls_input(agent_replclient *q, const char *data, size_t n)
{
    dpr_buf plain = DPR_BUF_INIT;
    char why[400], what[800];
    int rc = agent_tls_input(q->tls, (uv_stream_t *)&q->tcp, data, n, &q->verified, &plain,
                             "copy checkpoints", why, sizeof(why));

    if (rc < 0) {
        snprintf(what, sizeof(what), "%s (%s): TLS refused: %s", q->peer_name, q->peer, why);
        finish(q, rc, "%s", what);
    } else if (plain.len && redisReaderFeed(q->reader, plain.data, plain.len) != REDIS_OK) {
        rc = -EPROTO;
        finish(q, rc, "%s: not RESP", q->peer_name);
    } else if (q->verified && !q->connected) {
        q->connected = true;
        pump(q);
    }
    dpr_buf_free(&plain);
    return rc;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    agent_replclient *q = s->data;
    void *rep = NULL;

    if (q->finished || q->cancelled)
        return;
    if (n < 0) {
        finish(q, -ECONNRESET, q->tls && !q->verified ? "%s: the connection broke during "
               "the TLS handshake" : "%s: the connection broke", q->peer_name);
        return;
    }
    if (q->tls) {
        if (tls_input(q, buf->base, (size_t)n) < 0)
            return;
    } else if (redisReaderFeed(q->reader, buf->base, (size_t)n) != REDIS_OK) {
        finish(q, -EPROTO, "%s: not RESP", q->peer_name);
        return;
    }
    while (!q->finished && redisReaderGetReply(q->reader, &rep) == REDIS_OK && rep) {
        on_reply(q, rep);
        freeReplyObject(rep);
        rep = NULL;
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    agent_replclient *q = req->data;
    char what[400];

    if (q->finished || q->cancelled)
        return;
    if (status < 0) {
        snprintf(what, sizeof(what), "%s (%s): cannot connect: %s", q->peer_name, q->peer,
                 uv_strerror(status));
        finish(q, -ECONNREFUSED, "%s", what);
        return;
    }
    uv_tcp_nodelay(&q->tcp, 1);
    q->connected = !q->tls; /* TLS: once the peer is verified */
    if (uv_read_start((uv_stream_t *)&q->tcp, on_alloc, on_read) < 0 ||
        (q->tls && agent_tls_flush(q->tls, (uv_stream_t *)&q->tcp, on_written) < 0)) {
        finish(q, -ECONNRESET, "%s: cannot read", q->peer_name);
        return;
    }
    pump(q);
}

/* Opens path for reading when it is a regular file of owner (any owner
 * when owner is root): the agent reads with more rights than the
 * cache-store (CAP_DAC_READ_SEARCH) that named it, which must not get
 * another user's file copied (a symbolic link to one, a FIFO that blocks).
 * The descriptor, -EPERM for a file not its own, or another negative errno. */
static int open_owned(const char *path, uid_t owner)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), rc = 0;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0)
        rc = -errno;
    else if (!S_ISREG(st.st_mode) || (owner != 0 && st.st_uid != owner))
        rc = -EPERM;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int agent_replclient_send(uv_loop_t *loop, const agent_replclient_job *job,
                          agent_replclient_done_fn done, void *arg, agent_replclient **out)
{
    agent_replclient *q = calloc(1, sizeof(*q));
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    dpr_hostport hp;
    int rc;

    *out = NULL;
    if (!q)
        return -ENOMEM;
    q->fd = -1;
    q->loop = loop;
    q->done = done;
    q->arg = arg;
    q->worker = job->worker;
    q->version = job->version;
    if ((size_t)snprintf(q->peer, sizeof(q->peer), "%s", job->peer) >= sizeof(q->peer) ||
        (size_t)snprintf(q->path, sizeof(q->path), "%s", job->path) >= sizeof(q->path) ||
        (size_t)snprintf(q->deployment, sizeof(q->deployment), "%s", job->deployment) >=
            sizeof(q->deployment) ||
        (size_t)snprintf(q->cluster, sizeof(q->cluster), "%s", job->cluster) >=
            sizeof(q->cluster)) {
        free(q);
        return -ENAMETOOLONG;
    }
    snprintf(q->peer_name, sizeof(q->peer_name), "%s", job->peer_name ? job->peer_name
                                                                         : job->peer);
    q->reader = redisReaderCreate();
    if (!q->reader) {
        free(q);
        return -ENOMEM;
    }
    if (job->tls && dpr_tls_conn_new(job->tls, NULL, &q->tls, NULL) < 0) {
        redisReaderFree(q->reader);
        free(q);
        return -ENOMEM;
    }
    uv_timer_init(loop, &q->timer);
    q->timer.data = q;
    uv_tcp_init(loop, &q->tcp);
    q->tcp.data = q;
    q->connect.data = q;
    q->handles = 2;
    *out = q;
    uv_timer_start(&q->timer, on_timeout, job->timeout_ms, 0);
    /* what fails from here is told through done, on a later turn */
    q->fd = open_owned(q->path, job->owner);
    if (q->fd < 0) {
        q->prepare_rc = q->fd;
        q->pool_busy = true;
        q->work.data = q;
        uv_queue_work(loop, &q->work, nothing, after_prepare);
    } else {
        q->pool_busy = true;
        q->work.data = q;
        uv_queue_work(loop, &q->work, prepare_work, after_prepare);
    }
    rc = dpr_hostport_parse(q->peer, 0, &hp, NULL);
    if (rc == 0)
        rc = dpr_hostport_resolve(&hp, false, &ss, &sslen, NULL);
    if (rc == 0)
        rc = uv_tcp_connect(&q->connect, &q->tcp, (const struct sockaddr *)&ss, on_connect);
    if (rc < 0) {
        q->connect_rc = rc; /* told on the next turn (the timer at 0) */
        uv_timer_start(&q->timer, on_timeout, 0, 0);
    }
    return 0;
}

void agent_replclient_cancel(agent_replclient *q)
{
    if (!q || q->cancelled || q->finished)
        return;
    q->cancelled = true;
    close_all(q);
    maybe_free(q);
}
