/* rp_proxy.c - see rp_proxy.h. */
#include "rp_proxy.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/http.h"
#include "common/log.h"
#include "common/msgid.h"
#include "common/resp.h"
#include "common/uvutil.h"
#include "dpr/wire.h"
#include "dpr/worker.h"
#include "kv_finder.h"
#include "kv_gate.h"
#include "kv_batchops.h"
#include "kv_resp.h"
#include "kv_tls.h"
#include "rp_finder.h"
#include "rp_layout.h"
#include "rp_metrics.h"
#include "rp_proxy_int.h"
#include "rp_redis.h"
#include "rp_reply.h"
#include "rp_save.h"

/* what a read asks for at least (the Redis link and each client) */
#define READ_CHUNK 65536
#define OUT_HIGH_WATER (1 << 20)
/* commands of one client sent to Redis and not answered yet: a client
 * that pipelines more waits (its input stays unparsed) */
#define MAX_IN_FLIGHT 256
#define POLL_MS 2
#define STOP_TICK_MS 10
/* a planned stop: nothing of the request ran; the session sends it again
 * to the next process, which resumes the same world-line (dpr-kv's text) */
#define ERR_STOPPING                                                                            \
    "TRYAGAIN this shard is stopping for a planned restart: nothing of the request ran; "     \
    "retry (it comes back on the same world-line)"

static void client_process(rp_client *c);

void rp_fatal(rp_proxy *p, const char *fmt, const char *detail)
{
    log_error(fmt, detail);
    sd_notifyf(0, "STATUS=failed: %s", detail);
    if (!p->stopping) {
        p->stopping = true;
        p->exit_code = 1;
        uv_stop(p->loop);
    }
}

/* --- the slot queue ----------------------------------------------------- */

rp_slot *rp_slot_push(rp_proxy *p, enum slot_kind kind, rp_client *c)
{
    rp_slot *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->kind = kind;
    s->c = c;
    if (c)
        c->slots++;
    if (p->tail)
        p->tail->next = s;
    else
        p->head = s;
    p->tail = s;
    return s;
}

static void client_free_if_done(rp_client *c);

static void slot_pop(rp_proxy *p)
{
    rp_slot *s = p->head;
    p->head = s->next;
    if (!p->head)
        p->tail = NULL;
    if (s->c) {
        s->c->slots--;
        client_free_if_done(s->c);
    }
    free(s->local);
    free(s);
}

static void mark_dirty(rp_client *c)
{
    rp_proxy *p = c->p;
    if (c->dirty)
        return;
    if (p->ndirty == p->dirty_cap) {
        size_t cap = p->dirty_cap ? p->dirty_cap * 2 : 64;
        rp_client **d = realloc(p->dirty, cap * sizeof(*d));
        if (!d) {
            c->out.failed = true;
            return;
        }
        p->dirty = d;
        p->dirty_cap = cap;
    }
    c->dirty = true;
    p->dirty[p->ndirty++] = c;
}

/* Delivers bytes to the slot's client (if it is still there). */
static void slot_deliver(rp_slot *s, const char *data, size_t n)
{
    rp_client *c = s->c;
    if (!c || c->gone)
        return;
    dpr_buf_append(&c->out, data, n);
    if (s->close_after)
        c->quitting = true;
    mark_dirty(c);
}

/* Fires the local slots at the head of the queue. */
static void fire_local(rp_proxy *p)
{
    while (p->head && p->head->kind == SLOT_LOCAL) {
        slot_deliver(p->head, p->head->local, p->head->nlocal);
        slot_pop(p);
    }
}

/* A reply of the proxy's own: straight into the output when nothing is
 * in flight, else queued in order. */
void rp_local_reply(rp_client *c, dpr_buf *b, bool close_after)
{
    rp_proxy *p = c->p;
    if (!p->head) {
        rp_slot s = {.kind = SLOT_LOCAL, .c = c, .close_after = close_after};
        slot_deliver(&s, b->data, b->len);
        dpr_buf_reset(b);
        return;
    }
    rp_slot *s = rp_slot_push(p, SLOT_LOCAL, c);
    if (!s) {
        c->out.failed = true;
        dpr_buf_reset(b);
        return;
    }
    s->close_after = close_after;
    s->local = dpr_buf_steal(b, &s->nlocal);
}

void rp_local_error(rp_client *c, const char *msg)
{
    dpr_buf b = DPR_BUF_INIT;
    dpr_resp_error(&b, msg);
    rp_local_reply(c, &b, false);
    dpr_buf_free(&b);
}

/* --- the Redis link ----------------------------------------------------- */

void rp_redis_flush(rp_proxy *p)
{
    if (!p->rout.len || !p->redis)
        return;
    int r = dpr_uv_write((uv_stream_t *)p->redis, &p->rout, NULL);
    if (r < 0)
        rp_fatal(p, "cannot write to redis-server: %s", uv_strerror(r));
}

static void flush_clients(rp_proxy *p);

void rp_redis_command(rp_proxy *p, int argc, const char *const *argv, const size_t *lens)
{
    dpr_resp_command(&p->rout, argc, argv, lens);
}

void rp_internal(rp_proxy *p, void (*cb)(rp_proxy *, const char *, size_t), int argc,
                     const char *const *argv)
{
    rp_slot *s = rp_slot_push(p, SLOT_INTERNAL, NULL);
    if (!s) {
        rp_fatal(p, "%s", "out of memory");
        return;
    }
    s->cb = cb;
    rp_redis_command(p, argc, argv, NULL);
}

static void redis_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    rp_proxy *p = h->data;
    (void)suggested;
    dpr_uv_read_room(&p->rin, READ_CHUNK, buf);
}

/* A reply of Redis to its client, counting the writes Redis refused
 * (the texts are dpr-kv's too: clients see the same errors). */
static void forward_reply(rp_proxy *p, rp_slot *s, const char *reply, size_t n)
{
    if (n > 5 && memcmp(reply, "-OOM ", 5) == 0)
        p->writes_refused_oom++;
    else if (n > 9 && memcmp(reply, "-MISCONF ", 9) == 0)
        p->writes_refused_misconf++;
    slot_deliver(s, reply, n);
}

static void redis_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    rp_proxy *p = st->data;
    size_t pos = 0;
    (void)buf;

    if (nread < 0) {
        rp_fatal(p, "the connection to redis-server broke: %s", uv_strerror((int)nread));
        return;
    }
    p->rin.len += (size_t)nread;
    for (;;) {
        fire_local(p);
        ssize_t n = rp_reply_len(p->rin.data + pos, p->rin.len - pos);
        if (n == 0)
            break;
        if (n < 0 || !p->head) {
            rp_fatal(p, "%s", n < 0 ? "redis-server sent a malformed reply"
                                 : "redis-server sent a reply nobody asked for");
            return;
        }
        rp_slot *s = p->head;
        if (s->kind == SLOT_INTERNAL) {
            s->cb(p, p->rin.data + pos, (size_t)n);
        } else if (s->kind == SLOT_IMPORT) {
            rp_layout_import_reply(s, p->rin.data + pos, (size_t)n);
            if (s->count && !s->c->gone)
                mark_dirty(s->c);
        } else
            forward_reply(p, s, p->rin.data + pos, (size_t)n);
        pos += (size_t)n;
        slot_pop(p);
        if (p->stopping)
            return;
    }
    dpr_buf_consume(&p->rin, pos);
    rp_redis_flush(p);
    flush_clients(p);
}

static void redis_closed(uv_handle_t *h)
{
    free(h);
}

static void redis_connected(uv_connect_t *req, int status)
{
    rp_proxy *p = req->data;
    uv_pipe_t *pipe = (uv_pipe_t *)req->handle;
    free(req);
    if (pipe != p->redis)
        return; /* replaced by a rollback */
    if (status < 0) {
        rp_fatal(p, "cannot connect to redis-server: %s", uv_strerror(status));
        return;
    }
    int r = uv_read_start((uv_stream_t *)pipe, redis_alloc, redis_read);
    if (r < 0) {
        rp_fatal(p, "cannot read from redis-server: %s", uv_strerror(r));
        return;
    }
    rp_redis_flush(p);
}

/* Opens the link; commands queued meanwhile wait in rout. */
static int redis_connect(rp_proxy *p)
{
    uv_pipe_t *pipe = malloc(sizeof(*pipe));
    uv_connect_t *req = malloc(sizeof(*req));
    int r;

    if (!pipe || !req) {
        free(pipe);
        free(req);
        return -ENOMEM;
    }
    r = uv_pipe_init(p->loop, pipe, 0);
    if (r < 0) {
        free(pipe);
        free(req);
        return r;
    }
    pipe->data = p;
    req->data = p;
    p->redis = pipe;
    uv_pipe_connect(req, pipe, RP_REDIS_SOCKET, redis_connected);
    return 0;
}

void rp_resume_parked(rp_proxy *p)
{
    for (rp_client *c = p->clients; c; c = c->next)
        if (c->parked && !c->gone) {
            c->parked = false;
            client_process(c);
        }
    rp_redis_flush(p);
    flush_clients(p);
}

/* --- rollback ----------------------------------------------------------- */

static void client_close(rp_client *c);

void rp_rollback(rp_proxy *p, uint64_t world_line, uint64_t cut)
{
    char name[128] = "";
    uint64_t from = 0;
    dpr_err err = DPR_ERR_INIT;
    int r;

    for (size_t i = 0; i < p->nckpts; i++)
        if (p->ckpts[i] <= cut)
            from = p->ckpts[i];
    if (cut > 0 && from == 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "rollback to version %" PRIu64 ": no checkpoint on disk",
                 cut);
        rp_fatal(p, "%s", msg);
        return;
    }
    log_notice("rollback: world-line %" PRIu64 " -> %" PRIu64 ", restoring version %" PRIu64
               " (checkpoint %" PRIu64 ")",
               p->w.world_line, world_line, cut, from);
    /* every reply in flight is lost: the clients waiting for them go */
    for (rp_slot *s = p->head; s; s = s->next)
        if (s->c && !s->c->gone)
            client_close(s->c);
    while (p->head)
        slot_pop(p);
    dpr_buf_reset(&p->rin);
    dpr_buf_reset(&p->rout);
    uv_close((uv_handle_t *)p->redis, redis_closed);
    p->redis = NULL;
    rp_redis_kill(p->redis_pid);
    p->redis_pid = 0;
    p->saving = 0;
    p->poll_out = false;
    rp_save_drop(p, 0, cut);
    if (from)
        rp_ckpt_name(from, name, sizeof(name));
    else
        snprintf(name, sizeof(name), "empty.rdb");
    unlink("empty.rdb");
    r = rp_redis_start(name, p->cfg->maxmemory, 600000, &p->redis_pid, &err);
    if (r < 0) {
        rp_fatal(p, "cannot restart redis-server: %s", dpr_err_str(&err, r));
        return;
    }
    r = dpr_worker_rollback(&p->w, world_line, cut);
    if (r < 0) {
        rp_fatal(p, "rollback refused: %s", strerror(-r));
        return;
    }
    kv_finder_drop_old(p->finder, world_line);
    p->plain_dirty = false;
    p->rollbacks++;
    r = redis_connect(p);
    if (r < 0) {
        rp_fatal(p, "cannot connect to redis-server: %s", strerror(-r));
        return;
    }
    rp_layout_rolled_back(p);
}

/* The unit's WatchdogSec=: pinged while the loop runs. */
static void on_watchdog_timer(uv_timer_t *t)
{
    (void)t;
    sd_notify(0, "WATCHDOG=1");
}

/* --- clients ------------------------------------------------------------ */

static void client_freed(uv_handle_t *h)
{
    rp_client *c = h->data;
    c->closing = false; /* closed now */
    client_free_if_done(c);
}

static void client_free_if_done(rp_client *c)
{
    if (!c->gone || c->closing || c->slots || c->dirty)
        return;
    rp_proxy *p = c->p;
    rp_client **pp = &p->clients;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    p->nclients--;
    dpr_buf_free(&c->in);
    dpr_buf_free(&c->out);
    dpr_buf_free(&c->batch_hdr);
    dpr_buf_free(&c->batch_ops);
    kv_parser_free(&c->parser);
    dpr_tls_conn_free(c->tls);
    dpr_buf_free(&c->raw);
    free(c->import_err);
    free(c);
}

static void client_close(rp_client *c)
{
    if (c->gone)
        return;
    c->gone = true;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, client_freed);
}

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void client_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* Whether the client's requests may go on: fewer than `in_flight` of its
 * commands wait for Redis, and the replies it has not taken are below
 * OUT_HIGH_WATER. */
static bool may_send(rp_client *c, size_t in_flight)
{
    return c->slots < in_flight &&
           uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <= OUT_HIGH_WATER;
}

/* Reads while the client may send more: not while its batch waits
 * (parked), and not while the replies it has not taken exceed
 * OUT_HIGH_WATER (a client that sends without reading stops being read). */
static void set_reading(rp_client *c)
{
    bool want = !c->gone && !c->quitting && !c->parked && !c->throttled &&
                may_send(c, MAX_IN_FLIGHT);

    if (want == c->reading)
        return;
    if (want) {
        if (uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read) < 0) {
            client_close(c);
            return;
        }
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->reading = want;
}

static void written(uv_stream_t *st, int status)
{
    rp_client *c = st->data;
    if (status < 0 && !c->gone) {
        client_close(c);
    } else if (!c->gone && c->throttled && may_send(c, MAX_IN_FLIGHT / 2)) {
        c->throttled = false;
        client_process(c);
        rp_redis_flush(c->p);
        flush_clients(c->p);
    } else if (!c->gone) {
        set_reading(c);
    }
}

static void client_flush(rp_client *c)
{
    if (c->gone)
        return;
    /* (dpr_uv_write takes c->out whole: it holds plaintext only here) */
    if (dpr_buf_failed(&c->out) || (c->tls && kv_tls_encrypt(c->tls, &c->out, c->tls_failed) < 0)) {
        client_close(c);
        return;
    }
    if (c->out.len) {
        int r = dpr_uv_write((uv_stream_t *)&c->tcp, &c->out, written);
        if (r < 0) {
            client_close(c);
            return;
        }
    }
    set_reading(c);
    if (c->quitting) {
        dpr_uv_discard_input((uv_handle_t *)&c->tcp);
        client_close(c);
    }
}

static void flush_clients(rp_proxy *p)
{
    for (size_t i = 0; i < p->ndirty; i++) {
        rp_client *c = p->dirty[i];
        c->dirty = false;
        /* input left while too many of its commands were in flight */
        if (c->throttled && !c->gone && may_send(c, MAX_IN_FLIGHT / 2)) {
            c->throttled = false;
            client_process(c); /* (marks it dirty again: flushed below in this loop) */
            rp_redis_flush(p);
            continue;
        }
        client_flush(c);
        client_free_if_done(c);
    }
    p->ndirty = 0;
}

/* Commands a client may not send through the proxy: they would change
 * Redis' persistence or configuration, block or take over the shared
 * connection, or leave database 0. */
static const char *const DENIED[] = {
    "ACL", "AUTH", "BGREWRITEAOF", "BGSAVE", "BLMOVE", "BLMPOP", "BLPOP", "BRPOP",
    "BRPOPLPUSH", "BZMPOP", "BZPOPMAX", "BZPOPMIN", "CLIENT", "CLUSTER", "CONFIG", "DEBUG",
    "DISCARD", "EXEC", "FAILOVER", "HELLO", "MIGRATE", "MODULE", "MONITOR", "MOVE", "MULTI",
    "PSUBSCRIBE", "PSYNC", "PUNSUBSCRIBE", "READONLY", "READWRITE", "REPLCONF", "REPLICAOF",
    "RESET", "SAVE", "SHUTDOWN", "SLAVEOF", "SSUBSCRIBE", "SUBSCRIBE", "SUNSUBSCRIBE", "SWAPDB",
    "SYNC", "UNSUBSCRIBE", "UNWATCH", "WAIT", "WAITAOF", "WATCH", "XREAD", "XREADGROUP",
};

/* A command that cannot change the data (by Redis' own command table,
 * rp_keys.h's may_write): a plain one does not make the open version
 * worth a checkpoint, and it runs while saves fail. A command Redis does
 * not know counts as a write (an extra checkpoint at worst). */
static bool read_only(const rp_proxy *p, size_t argc, const kv_arg *argv)
{
    const rp_cmdinfo *ci = rp_keys_lookup(&p->lay.keys, argc, argv);

    return ci && !ci->may_write;
}

static bool denied(const kv_arg *cmd)
{
    for (size_t i = 0; i < sizeof(DENIED) / sizeof(DENIED[0]); i++)
        if (kv_arg_is(cmd, DENIED[i]))
            return true;
    return false;
}

static void info_dpr(rp_client *c)
{
    rp_proxy *p = c->p;
    char text[2560];
    dpr_buf b = DPR_BUF_INIT, lines = DPR_BUF_INIT;

    snprintf(text, sizeof(text),
             "# DPR\r\ndpr_impl:dpr-redis\r\ndpr_worker_id:%" PRIu64 "\r\ndpr_domain:%s\r\n"
             "dpr_world_line:%" PRIu64 "\r\ndpr_version:%" PRIu64 "\r\n"
             "dpr_durable_version:%" PRIu64 "\r\ndpr_cut_version:%" PRIu64 "\r\n"
             "dpr_restored_version:%" PRIu64 "\r\ndpr_cluster_max_version:%" PRIu64 "\r\n"
             "dpr_finder_connected:%d\r\ndpr_finder_workers:%zu\r\n"
             "dpr_checkpoints_pending:%d\r\n"
             "dpr_checkpoints_total:%" PRIu64 "\r\ndpr_checkpoints_on_disk:%zu\r\n"
             "dpr_batches:%" PRIu64 "\r\ndpr_batches_refused:%" PRIu64 "\r\n"
             "dpr_batches_invalid:%" PRIu64 "\r\ndpr_rollbacks:%" PRIu64 "\r\n"
             "dpr_last_checkpoint_version:%" PRIu64 "\r\n"
             "dpr_last_checkpoint_duration_ms:%" PRIu64 "\r\ndpr_reports_unacked:%zu\r\n"
             "dpr_redis_pid:%ld\r\ndpr_run_id:%ld-%" PRIu64 "\r\n"
             "dpr_writes_refused_oom:%" PRIu64 "\r\ndpr_writes_refused_misconf:%" PRIu64 "\r\n"
             "dpr_connected_clients:%zu\r\ndpr_rejected_connections:%" PRIu64 "\r\n"
             "dpr_checkpoint_failures:%" PRIu64 "\r\ndpr_checkpoint_status:%s\r\n"
             "dpr_checkpoint_last_error:%s\r\n"
             "dpr_tcp_port:%s\r\ndpr_tls_port:%s\r\n"
             "dpr_tls_connections_received:%" PRIu64 "\r\ndpr_tls_refused:%" PRIu64 "\r\n",
             p->w.id, p->cfg->domain, p->w.world_line, p->w.version, p->w.durable, p->w.cut,
             p->restored, p->cluster_max, kv_finder_connected(p->finder) ? 1 : 0, p->nworkers,
             p->saving ? 1 : 0, p->checkpoints, p->nckpts, p->batches, p->batches_refused,
             p->batches_invalid, p->rollbacks, p->last_ckpt, p->last_ckpt_ms,
             kv_finder_unacked(p->finder),
             (long)p->redis_pid, (long)getpid(), p->start_ms, p->writes_refused_oom,
             p->writes_refused_misconf, p->nclients, p->conns_rejected, p->ckpt_failures,
             p->ckpt_failing ? "failing" : "ok", p->ckpt_error,
             kv_listen_port(&p->ports, false), kv_listen_port(&p->ports, true), p->tls_conns,
             p->tls_refused);
    dpr_buf_append(&lines, text, strlen(text));
    rp_layout_info(p, &lines);
    dpr_resp_bulk(&b, lines.data, lines.len);
    dpr_buf_free(&lines);
    rp_local_reply(c, &b, false);
    dpr_buf_free(&b);
}

/* A plain command (or one operation of a batch, counted there). */
static void run_command(rp_client *c, size_t argc, const kv_arg *argv, bool in_batch)
{
    rp_proxy *p = c->p;
    const char *av[argc ? argc : 1];
    size_t lens[argc ? argc : 1];

    if (!in_batch) {
        if (kv_arg_is(&argv[0], "QUIT")) {
            dpr_buf b = DPR_BUF_INIT;
            dpr_resp_status(&b, "OK");
            rp_local_reply(c, &b, true);
            dpr_buf_free(&b);
            return;
        }
        if (kv_arg_is(&argv[0], "SELECT")) { /* one shared connection: database 0 only */
            dpr_buf b = DPR_BUF_INIT;
            if (argc == 2 && kv_arg_is(&argv[1], "0"))
                dpr_resp_status(&b, "OK");
            else
                dpr_resp_error(&b, "ERR dpr-redis serves database 0 only");
            rp_local_reply(c, &b, false);
            dpr_buf_free(&b);
            return;
        }
        if (argc == 2 && kv_arg_is(&argv[0], "INFO") && kv_arg_is(&argv[1], "dpr")) {
            info_dpr(c);
            return;
        }
    }
    if (denied(&argv[0])) {
        char msg[160];
        snprintf(msg, sizeof(msg), "ERR command '%.*s' is not allowed through dpr-redis",
                 (int)(argv[0].n > 40 ? 40 : argv[0].n), argv[0].p);
        rp_local_error(c, msg);
        return;
    }
    if (!in_batch && p->planned) {
        rp_local_error(c, ERR_STOPPING);
        p->batches_refused_stopping++;
        return;
    }
    if (kv_arg_is(&argv[0], "DPR.LAYOUT") || kv_arg_is(&argv[0], "DPR.IMPORT")) {
        if (in_batch)
            rp_local_error(c, "ERR this command cannot run inside DPR.BATCH");
        else if (kv_arg_is(&argv[0], "DPR.LAYOUT"))
            rp_layout_cmd(c, argc, argv);
        else
            rp_layout_cmd_import(c, argc, argv);
        return;
    }
    if (!in_batch) {
        dpr_buf b = DPR_BUF_INIT;
        if (!rp_layout_allows(p, argc, argv, &b)) {
            rp_local_reply(c, &b, false);
            dpr_buf_free(&b);
            return;
        }
    }
    bool reads = read_only(p, argc, argv);

    if (p->ckpt_failing && !reads) {
        /* Redis' stop-writes-on-bgsave-error needs save points: the proxy
         * refuses them itself, as dpr-kv (a batch's other ops run) */
        p->writes_refused_misconf++;
        rp_local_error(c, ERR_MISCONF);
        return;
    }
    if (!in_batch) {
        uint64_t v;
        (void)dpr_worker_execute(&p->w, NULL, &v); /* plain: cannot fail */
        if (!reads)
            p->plain_dirty = true;
    }
    for (size_t i = 0; i < argc; i++) {
        av[i] = argv[i].p;
        lens[i] = argv[i].n;
    }
    if (!rp_slot_push(p, SLOT_FORWARD, c)) {
        c->out.failed = true;
        return;
    }
    p->commands++;
    rp_redis_command(p, (int)argc, av, lens);
}

static void batch_end(rp_client *c)
{
    c->in_batch = false;
    kv_gate_reset(&c->gate);
    c->batch_want = c->batch_have = 0;
    c->batch_hdr.len = 0;
    c->batch_ops.len = 0;
}

static void batch_start(rp_client *c, const kv_arg *hdr)
{
    dpr_request_hdr h;
    ssize_t r = dpr_wire_decode_request((const uint8_t *)hdr->p, hdr->n, &h, NULL);
    dpr_buf b = DPR_BUF_INIT;

    if (r < 0 || (size_t)r != hdr->n || h.op_count == 0) {
        dpr_resp_errorf(&b, "ERR DPR.BATCH: malformed request header (%s)",
                        r < 0 ? (r == -EAGAIN ? "truncated" : strerror((int)-r))
                        : h.op_count == 0 ? "no operations" : "trailing bytes");
        rp_local_reply(c, &b, true);
        dpr_buf_free(&b);
        c->quitting = true; /* the commands that follow cannot be told apart */
        return;
    }
    c->batch_hdr.len = 0;
    c->batch_ops.len = 0;
    dpr_buf_append(&c->batch_hdr, hdr->p, hdr->n);
    c->in_batch = true;
    c->batch_want = h.op_count;
    c->batch_have = 0;
}

static void batch_run(rp_client *c);

static void batch_add(rp_client *c, size_t argc, const kv_arg *argv)
{
    size_t need = kv_batchops_size(argc, argv);
    if (c->batch_hdr.len + c->batch_ops.len + need > c->p->cfg->max_request_bytes) {
        rp_local_error(c, "ERR DPR.BATCH larger than the maximum request size "
                       "(--max-request-bytes)");
        c->quitting = true;
        batch_end(c);
        return;
    }
    kv_batchops_put(&c->batch_ops, argc, argv);
    if (++c->batch_have == c->batch_want)
        batch_run(c);
}

static void reply_header(rp_client *c, const dpr_response_hdr *rh, size_t k)
{
    uint8_t buf[DPR_WIRE_RESPONSE_FIXED + DPR_WIRE_VERSION_SIZE];
    ssize_t n = dpr_wire_encode_response(rh, buf, sizeof(buf));
    dpr_buf b = DPR_BUF_INIT;

    if (n < 0) {
        c->out.failed = true;
        return;
    }
    dpr_resp_array(&b, 2);
    dpr_resp_bulk(&b, buf, (size_t)n);
    dpr_resp_array(&b, k);
    rp_local_reply(c, &b, false);
    dpr_buf_free(&b);
}

/* One line per second at most: forged batches must not flood the log. */
static void log_invalid(rp_proxy *p, const char *msg)
{
    uint64_t held;

    if (!dpr_log_limit_pass(&p->invalid_log, dpr_mono_ms(), 1000, &held))
        return;
    if (held)
        log_warning("%s (and %" PRIu64 " more since the last message; dpr_batches_invalid in "
                    "INFO counts them)", msg + strlen("ERR "), held);
    else
        log_warning("%s", msg + strlen("ERR "));
}

static kv_gate_view gate_view(const rp_proxy *p)
{
    return (kv_gate_view){.worker = &p->w, .syncs = p->syncs,
                          .finder_world_line = p->finder_world_line,
                          .cluster_max = p->cluster_max, .workers = p->workers,
                          .nworkers = p->nworkers, .synced_ms = p->synced_ms};
}

/* 0 to run; 1 when parked (waiting for the finder) or refused (kv_gate.h). */
static int batch_check(rp_client *c, const dpr_request_hdr *h)
{
    rp_proxy *p = c->p;
    kv_gate_view v = gate_view(p);
    char msg[400];

    switch (kv_gate_check(&c->gate, &v, h, dpr_mono_ms(), msg, sizeof(msg))) {
    case KV_GATE_RUN:
        return 0;
    case KV_GATE_WAIT:
        c->parked = true;
        kv_finder_sync(p->finder);
        return 1;
    default:
        p->batches_invalid++;
        log_invalid(p, msg);
        rp_local_error(c, msg);
        batch_end(c);
        return 1;
    }
}

static void batch_run(rp_client *c)
{
    rp_proxy *p = c->p;
    dpr_request_hdr h;
    dpr_response_hdr rh;
    uint64_t version = 0;
    int r;

    if (dpr_buf_failed(&c->batch_ops) || dpr_buf_failed(&c->batch_hdr) ||
        dpr_wire_decode_request((const uint8_t *)c->batch_hdr.data, c->batch_hdr.len, &h,
                                NULL) < 0) {
        c->out.failed = true;
        batch_end(c);
        return;
    }
    memset(&rh, 0, sizeof(rh));
    rh.batch_id = h.batch_id;
    rh.op_count = h.op_count;
    if (p->planned) {
        rp_local_error(c, ERR_STOPPING);
        p->batches_refused_stopping++;
        batch_end(c);
        return;
    }
    if (h.domain != p->w.domain && batch_check(c, &h) != 0)
        return;
    kv_gate_view v = gate_view(p);
    char msg[200];
    switch (kv_gate_admit(&c->gate, &v, &h, msg, sizeof(msg))) {
    case KV_GATE_REFUSE:
        rh.status = DPR_WIRE_REFUSED;
        rh.world_line = p->w.world_line;
        reply_header(c, &rh, 0);
        p->batches_refused++;
        batch_end(c);
        return;
    case KV_GATE_ERROR:
    case KV_GATE_INVALID:
        rp_local_error(c, msg);
        batch_end(c);
        return;
    case KV_GATE_WAIT: /* the finder's rollback first */
        c->parked = true;
        kv_finder_sync(p->finder);
        return;
    case KV_GATE_RUN:
        break;
    }
    if (batch_check(c, &h) != 0)
        return;
    dpr_buf lb = DPR_BUF_INIT;
    if (!rp_layout_allows_batch(p, c->batch_ops.data, h.op_count, &lb)) {
        rp_local_reply(c, &lb, false); /* refused whole, before any of it runs */
        dpr_buf_free(&lb);
        batch_end(c);
        return;
    }
    r = dpr_worker_execute(&p->w, &h, &version);
    if (r == -EAGAIN) {
        /* the open version holds batches and is below the batch's target:
         * seal it, unless a save runs or a failed one's retry is not due
         * (then wait: resume_parked) */
        if (rp_save_blocked(p)) {
            c->parked = true;
            return;
        }
        rp_save_begin(p, dpr_worker_batch_target(&h));
        if (p->stopping)
            return;
        r = dpr_worker_execute(&p->w, &h, &version);
    }
    if (r < 0) {
        snprintf(msg, sizeof(msg), "ERR DPR.BATCH not executed: %s", strerror(-r));
        rp_local_error(c, msg);
        batch_end(c);
        return;
    }
    rh.status = DPR_WIRE_EXECUTED;
    rh.world_line = p->w.world_line;
    rh.version_count = 1;
    rh.versions_in = &version;
    reply_header(c, &rh, h.op_count);
    const char *q = c->batch_ops.data;
    for (uint32_t k = 0; k < h.op_count; k++) {
        uint32_t argc = kv_batchops_argc(q);
        kv_arg av[argc ? argc : 1];
        q = kv_batchops_args(q, av);
        run_command(c, argc, av, true);
    }
    p->batches++;
    batch_end(c);
}

static void client_process(rp_client *c)
{
    size_t pos = 0;

    if (c->in_batch && c->batch_have == c->batch_want && c->batch_want) {
        batch_run(c); /* parked before */
        if (c->parked)
            return;
    }
    while (!c->gone && !c->quitting && !c->parked) {
        size_t argc;
        if (!may_send(c, MAX_IN_FLIGHT)) {
            c->throttled = true;
            break;
        }
        kv_arg *argv;
        const char *err = NULL;
        ssize_t n = kv_parse(&c->parser, c->in.data + pos, c->in.len - pos, &argc, &argv, &err);
        if (n == 0)
            break;
        if (n < 0) {
            char msg[200];
            snprintf(msg, sizeof(msg), "ERR %s", n == -ENOMEM ? "out of memory" : err);
            rp_local_error(c, msg);
            c->quitting = true;
            break;
        }
        pos += (size_t)n;
        if (argc == 0)
            continue;
        if (c->in_batch)
            batch_add(c, argc, argv);
        else if (kv_arg_is(&argv[0], "DPR.BATCH") && argc == 2)
            batch_start(c, &argv[1]);
        else
            run_command(c, argc, argv, false);
    }
    if (pos)
        dpr_buf_consume(&c->in, pos);
    mark_dirty(c); /* client_flush: set_reading */
}

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    rp_client *c = h->data;
    (void)suggested;
    dpr_uv_read_room(c->tls ? &c->raw : &c->in, READ_CHUNK, buf); /* TLS: ciphertext first */
}

/* A refused TLS client (dpr-kv's line): its alert goes out, nothing it
 * sent runs, and it is closed. At most 20 lines a second: anyone can
 * connect. */
static void tls_refuse(rp_client *c)
{
    rp_proxy *p = c->p;
    char peer[DPR_ADDR_STR_MAX];
    uint64_t held;

    p->tls_refused++;
    if (dpr_log_limit_pass(&p->tls_log, dpr_mono_ms(), 50, &held)) {
        dpr_uv_peer_name(&c->tcp, peer, sizeof(peer));
        log_warning("client %s: TLS refused: %s; closing the connection%s", peer,
                    dpr_tls_conn_errstr(c->tls),
                    held ? " (more were refused since the last line: dpr_tls_refused in INFO "
                           "dpr counts them)" : "");
    }
    c->tls_failed = true;
    c->in.len = 0;
    c->quitting = true; /* client_flush sends the alert, then closes */
    mark_dirty(c);
}

/* n bytes of ciphertext arrived in c->raw: the plaintext goes to c->in. */
static bool tls_input(rp_client *c, size_t n)
{
    ssize_t r;

    c->raw.len += n;
    r = c->tls_failed ? -EPROTO : dpr_tls_conn_input(c->tls, c->raw.data, c->raw.len, &c->in);
    c->raw.len = 0;
    if (r < 0) {
        tls_refuse(c);
        return false;
    }
    if (dpr_tls_conn_eof(c->tls))
        c->quitting = true; /* close_notify: the client is done, after its replies */
    mark_dirty(c); /* what the handshake has to send */
    return true;
}

static void client_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    rp_client *c = st->data;
    rp_proxy *p = c->p;
    (void)buf;

    if (nread < 0) {
        client_close(c);
        return;
    }
    if (!c->tls)
        c->in.len += (size_t)nread;
    else if (!tls_input(c, (size_t)nread))
        goto out;
    if (!c->parked)
        client_process(c);
out:
    rp_redis_flush(p);
    flush_clients(p);
}

static void on_client(uv_stream_t *server, int status)
{
    rp_proxy *p = server->data;
    rp_client *c;

    if (status < 0)
        return;
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->p = p;
    kv_parser_init(&c->parser, p->cfg->max_request_bytes, 1024 * 1024);
    if (uv_tcp_init(p->loop, &c->tcp) < 0) {
        kv_parser_free(&c->parser);
        free(c);
        return;
    }
    c->tcp.data = c;
    c->next = p->clients;
    p->clients = c;
    p->nclients++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        client_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    p->conns++;
    if (kv_listen_is_tls(&p->ports, server)) {
        dpr_err err = DPR_ERR_INIT;
        p->tls_conns++;
        if (p->nclients > p->cfg->max_clients ||
            dpr_tls_conn_new(p->tls, NULL, &c->tls, &err) < 0) {
            /* (a TLS client could not read the error: closed without a word) */
            if (err.msg[0])
                log_error("cannot start TLS on a connection: %s", err.msg);
            p->conns_rejected++;
            client_close(c);
            return;
        }
    }
    if (p->nclients > p->cfg->max_clients) { /* dpr-kv's (and Redis') answer */
        dpr_buf b = DPR_BUF_INIT;
        p->conns_rejected++;
        dpr_resp_error(&b, "ERR max number of clients reached");
        rp_local_reply(c, &b, true);
        dpr_buf_free(&b);
        flush_clients(p);
        return;
    }
    set_reading(c);
}

/* --- the process -------------------------------------------------------- */

static void on_sigchld(uv_signal_t *h, int signum)
{
    rp_proxy *p = h->data;
    int status;
    (void)signum;

    if (p->redis_pid > 0 && waitpid(p->redis_pid, &status, WNOHANG) == p->redis_pid) {
        char msg[100];
        p->redis_pid = 0;
        snprintf(msg, sizeof(msg), "redis-server exited (status 0x%x)", status);
        rp_fatal(p, "%s", msg);
        return;
    }
    rp_layout_reap(p);
}

/* SIGTERM: a planned stop (stop_progress); SIGINT, or a second signal:
 * at once (the next start is a crash restart). */
static void on_stop_signal(uv_signal_t *h, int signum)
{
    rp_proxy *p = h->data;

    if (signum == SIGTERM && !p->planned) {
        log_info("SIGTERM: stopping for a planned restart (last checkpoint, report, "
                 "DPR.WORKER.LEAVE; at most %u ms)", p->cfg->shutdown_timeout_ms);
        sd_notify(0, "STOPPING=1\nSTATUS=stopping: last checkpoint and leaving the finder");
        p->planned = true;
        p->stop_deadline_ms = dpr_mono_ms() + p->cfg->shutdown_timeout_ms;
        uv_timer_init(p->loop, &p->stop_timer);
        p->stop_timer.data = p;
        uv_timer_start(&p->stop_timer, rp_finder_on_stop_timer, 0, STOP_TICK_MS);
        return;
    }
    log_info("signal %d: stopping now", signum);
    p->stopping = true;
    p->exit_code = 0;
    uv_stop(p->loop);
}

/* The plain port unless --port 0, and the TLS one with --tls-port
 * (dpr-kv's); then READY. */
static int listen_tcp(rp_proxy *p)
{
    int r = kv_listen_start(&p->ports, p->loop, p->cfg, p->tls != NULL, on_client, p);

    if (r < 0)
        return r;
    sd_notifyf(0, "READY=1\nSTATUS=serving on %s: worker %" PRIu64 ", world-line %" PRIu64
               ", restored version %" PRIu64, p->ports.bound, p->w.id, p->w.world_line,
               p->restored);
    return 0;
}

/* SIGHUP: dpr-kv's: the --tls-* files again for new connections (open ones
 * keep theirs), and --finder-tls' for the finder link's next connection. */
static void on_sighup(uv_signal_t *h, int signum)
{
    rp_proxy *p = h->data;
    (void)signum;

    (void)kv_tls_reload(p->cfg, &p->tls);
    if (p->finder_tls && kv_tls_reload_finder(p->cfg, &p->finder_tls) == 0)
        kv_finder_set_tls(p->finder, p->finder_tls);
}

static int metrics_page(void *data, dpr_buf *b)
{
    const rp_proxy *p = data;
    rp_stats st = {
        .worker = p->w.id, .domain = p->cfg->domain, .instance = p->cfg->instance,
        .start_ms = p->start_ms, .commands = p->commands, .connections = p->conns,
        .connections_rejected = p->conns_rejected, .clients = p->nclients,
        .batches = p->batches, .batches_refused = p->batches_refused,
        .batches_refused_stopping = p->batches_refused_stopping,
        .batches_invalid = p->batches_invalid, .writes_refused_oom = p->writes_refused_oom,
        .writes_refused_misconf = p->writes_refused_misconf, .checkpoints = p->checkpoints,
        .checkpoint_failures = p->ckpt_failures, .checkpoint_failing = p->ckpt_failing,
        .last_ckpt_ms = p->last_ckpt_ms, .checkpoints_on_disk = p->nckpts,
        .world_line = p->w.world_line, .version = p->w.version, .durable = p->w.durable,
        .cut = p->w.cut, .rollbacks = p->rollbacks,
        .finder_connected = kv_finder_connected(p->finder), .maxmemory = p->cfg->maxmemory};
    return rp_metrics_page(&st, b);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, h->type == UV_NAMED_PIPE ? redis_closed : NULL);
}

int rp_proxy_run(const kv_config *cfg, dpr_tls_ctx *tls_port, uint64_t world_line,
                 uint64_t restored, pid_t redis_pid, const uint64_t *ckpts, size_t nckpts)
{
    static rp_proxy px;
    rp_proxy *p = &px;
    kv_finder_cb cb = rp_finder_callbacks();
    dpr_tls_config tc;
    const dpr_tls_config *tls = kv_tls_finder(cfg, &tc);
    dpr_err err = DPR_ERR_INIT;
    int r;

    p->cfg = cfg;
    p->tls = tls_port;
    p->loop = uv_default_loop();
    p->redis_pid = redis_pid;
    p->restored = restored;
    p->exit_code = 1;
    p->start_ms = dpr_wall_ms();
    for (size_t i = 0; i < nckpts; i++)
        if (rp_save_add(p, ckpts[i]) < 0)
            return 1;
    r = dpr_worker_init(&p->w, cfg->worker, cfg->domain_id, world_line, restored);
    if (r < 0) {
        log_error("cannot start the worker: %s", strerror(-r));
        return 1;
    }
    p->synced_ms = dpr_mono_ms();
    if (tls) { /* --finder-tls, as dpr-kv (docs/tls.md) */
        r = dpr_tls_ctx_new(tls, false, &p->finder_tls, &err);
        if (r < 0) {
            log_error("--finder-tls: %s", dpr_err_str(&err, r));
            return 1;
        }
    }
    r = kv_finder_new(p->loop, cfg->finder, p->finder_tls, cfg->domain, cfg->worker, cfg->finder_token,
                      &cb, p, &p->finder);
    if (r < 0) {
        log_error("cannot start the finder link: %s", strerror(-r));
        return 1;
    }
    uv_timer_init(p->loop, &p->ckpt_timer);
    uv_timer_init(p->loop, &p->poll_timer);
    uv_timer_init(p->loop, &p->sync_timer);
    p->ckpt_timer.data = p->poll_timer.data = p->sync_timer.data = p;
    uv_timer_start(&p->ckpt_timer, rp_save_on_ckpt_timer, cfg->checkpoint_interval_ms,
                   cfg->checkpoint_interval_ms);
    uv_timer_start(&p->poll_timer, rp_save_on_poll_timer, POLL_MS, POLL_MS);
    uv_timer_start(&p->sync_timer, rp_finder_on_sync_timer, 0, cfg->sync_interval_ms);
    uint64_t wd_usec = 0;
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
        uv_timer_init(p->loop, &p->watchdog_timer);
        uv_timer_start(&p->watchdog_timer, on_watchdog_timer, 0,
                       wd_usec / 3000 > 0 ? wd_usec / 3000 : 1);
    }
    uv_signal_init(p->loop, &p->sigchld);
    uv_signal_init(p->loop, &p->sigterm);
    uv_signal_init(p->loop, &p->sigint);
    uv_signal_init(p->loop, &p->sighup);
    p->sigchld.data = p->sigterm.data = p->sigint.data = p->sighup.data = p;
    uv_signal_start(&p->sigchld, on_sigchld, SIGCHLD);
    uv_signal_start(&p->sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&p->sigint, on_stop_signal, SIGINT);
    uv_signal_start(&p->sighup, on_sighup, SIGHUP);
    r = redis_connect(p);
    if (r < 0) {
        log_error("cannot connect to redis-server: %s", strerror(-r));
        rp_redis_kill(p->redis_pid);
        return 1;
    }
    r = rp_layout_start(p, &err);
    if (r < 0) {
        log_error("cannot load the layout: %s", dpr_err_str(&err, r));
        rp_redis_kill(p->redis_pid);
        return 1;
    }
    if (listen_tcp(p) < 0) {
        rp_redis_kill(p->redis_pid);
        return 1;
    }
    if (cfg->metrics_address[0]) {
        r = dpr_http_start(&p->metrics, p->loop, cfg->metrics_address, metrics_page, p, &err);
        if (r < 0) {
            log_error("--metrics-address: %s", dpr_err_str(&err, r));
            rp_redis_kill(p->redis_pid);
            return 1;
        }
        log_info("metrics on http://%s/metrics", dpr_http_bound(p->metrics));
    }
    uv_run(p->loop, UV_RUN_DEFAULT);
    sd_notify(0, "STOPPING=1");
    dpr_http_close(p->metrics);
    rp_redis_kill(p->redis_pid);
    p->redis_pid = 0;
    kv_finder_close(p->finder);
    dpr_tls_ctx_free(p->finder_tls);
    dpr_tls_ctx_free(p->tls);
    uv_walk(p->loop, close_walk, NULL);
    uv_run(p->loop, UV_RUN_DEFAULT);
    rp_layout_free(&p->lay);
    log_info("exiting with status %d", p->exit_code);
    return p->exit_code;
}
