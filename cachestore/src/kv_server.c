/* kv_server.c - connections, request dispatch and DPR.BATCH (see kv_server.h). */
#include "kv_server.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/addr.h"
#include "common/list.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/num.h"
#include "common/resp.h"
#include "common/uvutil.h"
#include "dpr/wire.h"
#include "kv_batchops.h"
#include "kv_resize.h"
#include "kv_tls.h"

#define READ_CHUNK (16u * 1024)
#define OUT_HIGH_WATER (4u << 20) /* stop reading a client with this much unsent */
#define BUF_KEEP (64u * 1024)     /* larger idle buffers are given back */
#define MAX_ARGS (1u << 20)
#define CRON_MS 50
#define CRON_REHASH_USEC 1000
#define TLS_LOG_BURST 20          /* refused TLS clients logged per second, at most */

static void client_process(kv_client *c);
static void client_flush(kv_client *c);
static void batch_run(kv_client *c);

/* --- client lifetime ---------------------------------------------------- */

static void unpark(kv_client *c)
{
    kv_client **pp = &c->srv->parked;
    while (*pp && *pp != c)
        pp = &(*pp)->park_next;
    if (*pp)
        *pp = c->park_next;
    c->park_next = NULL;
    c->parked = KV_PARK_NONE;
}

static void client_closed(uv_handle_t *h)
{
    kv_client *c = h->data;
    dpr_buf_free(&c->in);
    dpr_buf_free(&c->out);
    dpr_buf_free(&c->wbuf);
    dpr_buf_free(&c->raw);
    dpr_tls_conn_free(c->tls);
    dpr_buf_free(&c->batch_hdr);
    dpr_buf_free(&c->batch_ops);
    kv_parser_free(&c->parser);
    free(c);
}

static void client_close(kv_client *c)
{
    kv_server *s = c->srv;

    if (c->closing)
        return;
    c->closing = true;
    if (c->parked)
        unpark(c);
    DPR_LIST_REMOVE(s->clients, c);
    assert(s->nclients > 0);
    s->nclients--;
    uv_close((uv_handle_t *)&c->tcp, client_closed);
}

static void set_reading(kv_client *c, bool on);

static void park(kv_client *c, enum kv_park why)
{
    kv_server *s = c->srv;
    assert(why != KV_PARK_NONE && c->parked == KV_PARK_NONE); /* on the list at most once */
    c->parked = why;
    c->park_next = s->parked;
    s->parked = c;
    set_reading(c, false);
}

/* Continues a parked client. */
static void client_resume(kv_client *c)
{
    c->parked = KV_PARK_NONE;
    c->park_next = NULL;
    if (c->closing)
        return;
    if (c->in_batch && c->batch_have == c->batch_want)
        batch_run(c);
    if (c->parked == KV_PARK_NONE)
        client_process(c);
    else
        client_flush(c);
}

/* --- output ------------------------------------------------------------- */

static void shrink(dpr_buf *b)
{
    if (b->len == 0 && b->cap > BUF_KEEP)
        dpr_buf_free(b);
}

static void drain_step(kv_client *c);

static void write_done(uv_write_t *req, int status)
{
    kv_client *c = req->data;
    assert(c->writing);
    c->writing = false;
    if (status == 0)
        c->written += c->wbuf.len;
    c->wbuf.len = 0;
    shrink(&c->wbuf);
    if (c->closing)
        return;
    if (status < 0) {
        client_close(c);
        return;
    }
    if (c->draining)
        drain_step(c);
    else if (c->parked == KV_PARK_NONE && !c->close_after_reply)
        client_process(c); /* requests may wait in the buffer: output drained */
    else
        client_flush(c);
}

static void client_flush(kv_client *c)
{
    uv_buf_t b;
    int n;

    if (c->closing || c->writing)
        return;
    if (dpr_buf_failed(&c->out)) {
        log_warning("client: out of memory building a reply; closing the connection");
        client_close(c);
        return;
    }
    if (c->tls && kv_tls_encrypt(c->tls, &c->out, c->tls_failed) < 0) {
        client_close(c);
        return;
    }
    if (c->out.len == 0) {
        shrink(&c->out);
        if (c->close_after_reply)
            client_close(c);
        return;
    }
    b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN)
        n = 0;
    if (n < 0) {
        client_close(c);
        return;
    }
    c->written += (size_t)n;
    if ((size_t)n == c->out.len) {
        c->out.len = 0;
        shrink(&c->out);
        if (c->close_after_reply)
            client_close(c);
        return;
    }
    dpr_buf_consume(&c->out, (size_t)n);
    /* no write in flight, so wbuf is empty: swap so the unsent rest is
     * written async */
    assert(c->wbuf.len == 0);
    dpr_buf tmp = c->wbuf;
    c->wbuf = c->out;
    c->out = tmp;
    b = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
    c->wreq.data = c;
    n = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_done);
    if (n < 0) {
        client_close(c);
        return;
    }
    c->writing = true;
}

/* --- input -------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    kv_client *c = h->data;
    dpr_buf *b = c->tls ? &c->raw : &c->in; /* TLS: ciphertext first */
    (void)suggested;
    dpr_uv_read_room(b, READ_CHUNK, buf);
}

/* A refused TLS client: its alert goes out, nothing it sent runs, and it is
 * closed. At most TLS_LOG_BURST lines a second: anyone can connect. */
static void tls_refuse(kv_client *c)
{
    kv_server *s = c->srv;
    uint64_t now = dpr_mono_ms();
    char peer[DPR_ADDR_STR_MAX];

    s->tls_refused++;
    if (now - s->tls_log_ms >= 1000) {
        if (s->tls_unlogged)
            log_warning("%" PRIu64 " more TLS clients refused (tls_refused in INFO counts "
                        "them)", s->tls_unlogged);
        s->tls_log_ms = now;
        s->tls_log_lines = s->tls_unlogged = 0;
    }
    if (s->tls_log_lines++ < TLS_LOG_BURST) {
        dpr_uv_peer_name(&c->tcp, peer, sizeof(peer));
        log_warning("client %s: TLS refused: %s; closing the connection", peer,
                    dpr_tls_conn_errstr(c->tls));
    } else {
        s->tls_unlogged++;
    }
    c->tls_failed = true;
    c->in.len = 0;
    c->out.len = 0;
    c->close_after_reply = true;
    set_reading(c, false);
    client_flush(c); /* the alert, if the engine made one; then the close */
}

/* n bytes of ciphertext arrived in c->raw. */
static void tls_input(kv_client *c, size_t n)
{
    bool was = dpr_tls_conn_established(c->tls);
    ssize_t r;

    c->raw.len += n;
    r = c->tls_failed ? -EPROTO : dpr_tls_conn_input(c->tls, c->raw.data, c->raw.len, &c->in);
    c->raw.len = 0;
    shrink(&c->raw);
    if (r < 0) {
        tls_refuse(c);
        return;
    }
    if (!was && dpr_tls_conn_established(c->tls) && c->srv->cfg->verbose) {
        const dpr_tls_peer *p = dpr_tls_conn_peer(c->tls);
        char peer[DPR_ADDR_STR_MAX], how[96];
        dpr_uv_peer_name(&c->tcp, peer, sizeof(peer));
        dpr_tls_conn_describe(c->tls, how, sizeof(how));
        log_debug("client %s: TLS %s, %s", peer, how, p ? p->subject : "no client certificate");
    }
    client_process(c); /* also sends what the handshake has to send */
    if (!c->closing && dpr_tls_conn_eof(c->tls)) {
        c->close_after_reply = true; /* close_notify: the client is done */
        client_flush(c);
    }
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    kv_client *c = st->data;
    (void)buf;
    if (nread < 0) {
        if (nread != UV_EOF && nread != UV_ECONNRESET)
            log_debug("client: read failed: %s", uv_strerror((int)nread));
        client_close(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->draining)
        return; /* after the last reply: runs nothing (the buffer is reused) */
    c->input_ms = dpr_mono_ms();
    if (c->tls) {
        tls_input(c, (size_t)nread);
        return;
    }
    c->in.len += (size_t)nread;
    client_process(c);
}

static void set_reading(kv_client *c, bool on)
{
    if (c->closing || on == c->reading)
        return;
    if (on) {
        if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0) {
            client_close(c);
            return;
        }
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->reading = on;
}

/* --- commands ----------------------------------------------------------- */

static void cmd_select(kv_client *c, const kv_arg *db)
{
    int64_t n;
    if (dpr_parse_i64(db->p, db->n, &n) < 0)
        dpr_resp_error(&c->out, "ERR value is not an integer or out of range");
    else if (n != 0)
        dpr_resp_error(&c->out, "ERR DB index is out of range");
    else
        dpr_buf_append(&c->out, "+OK\r\n", 5);
}

static void batch_start(kv_client *c, const kv_arg *hdr);

/* Redis' texts, so that clients recognise them */
#define ERR_MISCONF                                                                              \
    "MISCONF dpr-kv cannot write checkpoints to disk. Commands that may modify the data set "  \
    "are disabled until a checkpoint succeeds. See 'INFO dpr' "                                 \
    "(dpr_checkpoint_last_error) and the log"
#define ERR_OOM "OOM command not allowed when used memory > 'maxmemory'."
/* a planned stop: clients retry TRYAGAIN (nothing ran), and reconnect to
 * the next process, which resumes the same world-line */
#define ERR_STOPPING                                                                            \
    "TRYAGAIN this shard is stopping for a planned restart: nothing of the request ran; "     \
    "retry (it comes back on the same world-line)"

/* glibc's allocated bytes */
static uint64_t malloc_used(void)
{
    struct mallinfo2 mi = mallinfo2();

    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

uint64_t kv_server_used_memory(const kv_server *s)
{
    uint64_t used = malloc_used();
    size_t data = kv_dict_memory(&s->dict);
    /* never below the data set (an allocator other than glibc's, e.g. a
     * sanitizer's, may report nothing) */
    return used > data ? used : data;
}

uint64_t kv_server_memory_not_counted(const kv_server *s)
{
    return (uint64_t)s->log.buf.cap + kv_logw_memory(&s->logw);
}

uint64_t kv_server_memory_estimate(const kv_server *s)
{
    size_t now = kv_dict_memory(&s->dict);
    if (now >= s->mem_dict_at_sample)
        return s->mem_sampled + (now - s->mem_dict_at_sample);
    size_t freed = s->mem_dict_at_sample - now;
    return s->mem_sampled > freed ? s->mem_sampled - freed : 0;
}

static void sample_memory(kv_server *s)
{
    uint64_t used = malloc_used(), other = kv_server_memory_not_counted(s);
    size_t data = kv_dict_memory(&s->dict);

    /* the change logs are left out, as Redis leaves out its AOF buffer: a
     * write is refused at the same point in both checkpoint modes */
    used = used > other ? used - other : 0;
    s->mem_sampled = used > data ? used : data;
    s->mem_dict_at_sample = data;
}

/* Why a write command may not run now (an error reply), or NULL. Checked
 * before the command touches anything, so a refused write changes nothing:
 * no key, no version (a plain write does not even dirty the open version). */
const char *kv_server_write_refused(kv_server *s, const kv_command *cmd)
{
    if (kv_dpr_refusing_writes(s)) {
        s->writes_refused_misconf++;
        return ERR_MISCONF;
    }
    /* noeviction: what can only grow the dataset is refused; DEL runs */
    if ((cmd->flags & KV_CMD_DENYOOM) && s->cfg->maxmemory &&
        kv_server_memory_estimate(s) > s->cfg->maxmemory) {
        s->writes_refused_oom++;
        return ERR_OOM;
    }
    return NULL;
}

/* Runs one command; in_batch: inside a DPR batch (already admitted). */
static void exec_command(kv_client *c, size_t argc, const kv_arg *argv, bool in_batch)
{
    kv_server *s = c->srv;
    const kv_command *cmd = kv_command_lookup(argv[0].p, argv[0].n);

    if (!cmd) {
        kv_reply_unknown_command(&c->out, argc, argv);
        return;
    }
    if (!kv_command_arity_ok(cmd, argc)) {
        kv_reply_wrong_arity(&c->out, cmd);
        return;
    }
    s->cmds_total++;
    if (in_batch && (cmd->flags & KV_CMD_NOBATCH)) {
        dpr_resp_errorf(&c->out, "ERR '%s' is not allowed inside DPR.BATCH", cmd->name);
        return;
    }
    if (cmd->flags & KV_CMD_SERVER) {
        switch (cmd->id) {
        case KV_SCMD_INFO:
            kv_info_reply(s, &c->out, argc, argv);
            break;
        case KV_SCMD_QUIT:
            dpr_buf_append(&c->out, "+OK\r\n", 5);
            c->close_after_reply = true;
            break;
        case KV_SCMD_COMMAND:
            kv_command_reply(&c->out, argc, argv);
            break;
        case KV_SCMD_CONFIG:
            kv_config_reply(s, &c->out, argc, argv);
            break;
        case KV_SCMD_SELECT:
            cmd_select(c, &argv[1]);
            break;
        case KV_SCMD_DPR_BATCH:
            batch_start(c, &argv[1]);
            break;
        case KV_SCMD_DPR_LAYOUT:
            kv_resize_cmd_layout(c, argc, argv);
            break;
        case KV_SCMD_DPR_IMPORT:
            kv_resize_cmd_import(c, argc, argv);
            break;
        case KV_SCMD_NONE:
            break;
        }
        return;
    }
    /* a batch's keys were checked before any of it ran */
    if (!in_batch && !kv_resize_allows(s, cmd, argc, argv, &c->out))
        return;
    if ((cmd->flags & KV_CMD_WRITE) && s->stopping) {
        dpr_resp_error(&c->out, ERR_STOPPING);
        return;
    }
    if (cmd->flags & KV_CMD_WRITE) {
        const char *refused = kv_server_write_refused(s, cmd);
        if (refused) {
            dpr_resp_error(&c->out, refused);
            return;
        }
    }
    if ((cmd->flags & KV_CMD_WRITE) && !in_batch) {
        uint64_t v; /* untracked: runs in the open version, pins nothing */
        (void)dpr_worker_execute(&s->worker, NULL, &v);
    }
    kv_cmd_ctx ctx = {&s->dict, &c->out, 0};
    cmd->fn(&ctx, argc, argv);
    s->writes += ctx.writes;
}

/* --- DPR batches -------------------------------------------------------- */

static void batch_end(kv_client *c)
{
    c->in_batch = false;
    kv_gate_reset(&c->gate);
    c->batch_want = c->batch_have = 0;
    c->batch_hdr.len = 0;
    c->batch_ops.len = 0;
    shrink(&c->batch_ops);
}

static void batch_start(kv_client *c, const kv_arg *hdr)
{
    dpr_request_hdr h;
    ssize_t r = dpr_wire_decode_request((const uint8_t *)hdr->p, hdr->n, &h, NULL);

    if (r < 0 || (size_t)r != hdr->n || h.op_count == 0) {
        /* the commands that follow cannot be told apart from plain ones:
         * the stream is lost */
        if (r == -EPROTONOSUPPORT) /* a client older (or newer) than the shard */
            dpr_resp_errorf(&c->out,
                            "ERR DPR.BATCH: malformed request header (format %u: this shard "
                            "reads format %d, which names the session's domain)",
                            (unsigned)(uint8_t)hdr->p[0], DPR_WIRE_REQUEST_FORMAT);
        else
            dpr_resp_errorf(&c->out, "ERR DPR.BATCH: malformed request header (%s)",
                            r < 0             ? (r == -EAGAIN ? "truncated" : strerror((int)-r))
                            : h.op_count == 0 ? "no operations"
                                              : "trailing bytes");
        c->close_after_reply = true;
        return;
    }
    c->batch_hdr.len = 0;
    c->batch_ops.len = 0;
    dpr_buf_append(&c->batch_hdr, hdr->p, hdr->n);
    c->in_batch = true;
    c->batch_want = h.op_count;
    c->batch_have = 0;
}

static void batch_add(kv_client *c, size_t argc, const kv_arg *argv)
{
    size_t need = kv_batchops_size(argc, argv);

    assert(c->in_batch && c->batch_have < c->batch_want);
    if (c->batch_hdr.len + c->batch_ops.len + need > c->srv->cfg->max_request_bytes) {
        dpr_resp_error(&c->out, "ERR DPR.BATCH larger than the maximum request size "
                                "(--max-request-bytes)");
        c->close_after_reply = true;
        batch_end(c);
        return;
    }
    if (dpr_buf_reserve(&c->batch_ops, need) < 0) {
        c->out.failed = true; /* the batch cannot be kept: close the connection */
        return;
    }
    kv_batchops_put(&c->batch_ops, argc, argv); /* (room reserved) */
    if (++c->batch_have == c->batch_want)
        batch_run(c);
}

static int scratch_reserve(kv_server *s, size_t n)
{
    if (n <= s->scratch_cap)
        return 0;
    size_t cap = s->scratch_cap ? s->scratch_cap : 16;
    while (cap < n)
        cap *= 2;
    kv_arg *p = realloc(s->scratch, cap * sizeof(*p));
    if (!p)
        return -ENOMEM;
    s->scratch = p;
    s->scratch_cap = cap;
    return 0;
}

static void reply_batch_header(kv_client *c, const dpr_response_hdr *rh)
{
    uint8_t buf[DPR_WIRE_RESPONSE_FIXED + DPR_WIRE_VERSION_SIZE];
    ssize_t n = dpr_wire_encode_response(rh, buf, sizeof(buf));
    if (n < 0) { /* cannot happen for the headers built here */
        log_error("cannot encode a DPR response header: %s", strerror((int)-n));
        c->out.failed = true;
        return;
    }
    dpr_resp_array(&c->out, 2);
    dpr_resp_bulk(&c->out, (const char *)buf, (size_t)n);
}

const char *kv_server_batch_op(kv_server *s, const char *op, size_t *argc)
{
    *argc = kv_batchops_argc(op);
    if (scratch_reserve(s, *argc) < 0)
        return NULL;
    return kv_batchops_args(op, s->scratch);
}

static void run_ops(kv_client *c, uint32_t count)
{
    kv_server *s = c->srv;
    const char *p = c->batch_ops.data, *end = p + c->batch_ops.len;
    size_t argc;

    for (uint32_t k = 0; k < count; k++) {
        assert(end - p >= 4); /* batch_add stored exactly `count` ops */
        if (!(p = kv_server_batch_op(s, p, &argc))) {
            c->out.failed = true;
            return;
        }
        assert(p <= end);
        exec_command(c, argc, s->scratch, true);
    }
    assert(p == end);
}

int kv_server_set_workers(kv_server *s, const uint64_t *workers, size_t n, uint64_t at_ms)
{
    if (n > s->workers_cap) {
        uint64_t *p = realloc(s->workers, n * sizeof(*p));
        if (!p)
            return -ENOMEM;
        s->workers = p;
        s->workers_cap = n;
    }
    if (n)
        memcpy(s->workers, workers, n * sizeof(*workers));
    s->nworkers = n;
    s->synced_ms = at_ms;
    return 0;
}

/* One line per second at most: forged batches must not flood the log. */
static void log_invalid(kv_client *c, const char *why)
{
    kv_server *s = c->srv;
    char peer[DPR_ADDR_STR_MAX];
    uint64_t held;

    if (!dpr_log_limit_pass(&s->invalid_log, dpr_mono_ms(), 1000, &held))
        return;
    dpr_uv_peer_name(&c->tcp, peer, sizeof(peer));
    if (held)
        log_warning("client %s: DPR.BATCH refused: %s (and %" PRIu64 " more since the last "
                    "message; dpr_batches_invalid in INFO counts them)", peer, why, held);
    else
        log_warning("client %s: DPR.BATCH refused: %s", peer, why);
}

_Static_assert(KV_GATE_CHECK_WAIT_MS == KV_FINDER_TIMEOUT_MS,
               "a batch waits for fresher bounds as long as for one finder answer");

/* What the shard knows, for kv_gate. */
static kv_gate_view gate_view(const kv_server *s)
{
    return (kv_gate_view){.worker = &s->worker, .syncs = s->syncs,
                          .finder_world_line = s->finder_world_line,
                          .cluster_max = s->cluster_max, .workers = s->workers,
                          .nworkers = s->nworkers, .synced_ms = s->synced_ms};
}

/*
 * Checks an admitted batch (or, before admission, one of another domain:
 * never valid) against what a real session can have seen (kv_gate_check):
 * 0 to run it; 1 when it cannot run now (the client is parked until
 * fresher DPR.SYNC answers, or the batch got its error). A refused batch
 * changes nothing: no fast-forward, no dependency folded, no operation run.
 */
static int batch_check(kv_client *c, const dpr_request_hdr *h)
{
    kv_server *s = c->srv;
    kv_gate_view v = gate_view(s);
    char msg[400];

    switch (kv_gate_check(&c->gate, &v, h, dpr_mono_ms(), msg, sizeof(msg))) {
    case KV_GATE_RUN:
        return 0;
    case KV_GATE_WAIT:
        park(c, KV_PARK_CHECK);
        kv_dpr_sync_now(s);
        return 1;
    default:
        s->batches_invalid++;
        log_invalid(c, msg + strlen("ERR DPR.BATCH refused: "));
        dpr_resp_error(&c->out, msg);
        batch_end(c);
        return 1;
    }
}

static void batch_run(kv_client *c)
{
    kv_server *s = c->srv;
    dpr_request_hdr h;
    dpr_response_hdr rh;
    uint64_t version = 0;
    int r;

    assert(c->in_batch && c->batch_have == c->batch_want);
    if (dpr_buf_failed(&c->batch_ops) || dpr_buf_failed(&c->batch_hdr) ||
        dpr_wire_decode_request((const uint8_t *)c->batch_hdr.data, c->batch_hdr.len, &h,
                                NULL) < 0) {
        c->out.failed = true; /* closes the connection */
        batch_end(c);
        return;
    }
    memset(&rh, 0, sizeof(rh));
    rh.batch_id = h.batch_id;
    rh.op_count = h.op_count;
    /* a planned stop: the last version is sealed, nothing more runs; the
     * session sends the batch again (to the next process) */
    if (s->stopping) {
        dpr_resp_error(&c->out, ERR_STOPPING);
        s->batches_refused_stopping++;
        batch_end(c);
        return;
    }
    /* a session of another domain: its world-line means nothing here, so
     * it is refused before admission (an answer REFUSED with this domain's
     * world-line would roll that session back, and a newer one would wait
     * for this domain's finder); batch_check gives the error (-EXDEV) */
    if (h.domain != s->worker.domain && batch_check(c, &h) != 0)
        return;
    /* paused for a resize, or a key of another shard: nothing of it runs,
     * and the session may send it again (re-routed) */
    if (!kv_resize_allows_batch(s, c->batch_ops.data, c->batch_ops.len, h.op_count, &c->out)) {
        batch_end(c);
        return;
    }
    kv_gate_view v = gate_view(s);
    char msg[200];
    switch (kv_gate_admit(&c->gate, &v, &h, msg, sizeof(msg))) {
    case KV_GATE_REFUSE:
        rh.status = DPR_WIRE_REFUSED;
        rh.world_line = s->worker.world_line;
        reply_batch_header(c, &rh);
        dpr_resp_array(&c->out, 0);
        s->batches_refused++;
        batch_end(c);
        return;
    case KV_GATE_ERROR: /* a world-line the finder does not reach is bogus */
    case KV_GATE_INVALID:
        dpr_resp_error(&c->out, msg);
        batch_end(c);
        return;
    case KV_GATE_WAIT:
        /* learn the new world-line from the finder (and roll back) first */
        park(c, KV_PARK_CATCHUP);
        kv_dpr_sync_now(s);
        return;
    case KV_GATE_RUN:
        break;
    }
    if (batch_check(c, &h) != 0)
        return;
    r = dpr_worker_execute(&s->worker, &h, &version);
    if (r == -EAGAIN) {
        /* the open version holds batches and is below what this batch
         * depends on: seal it now */
        r = kv_dpr_checkpoint(s, dpr_worker_batch_target(&h));
        if (r < 0) {
            park(c, KV_PARK_SEAL);
            return;
        }
        r = dpr_worker_execute(&s->worker, &h, &version);
    }
    if (r < 0) {
        dpr_resp_errorf(&c->out, "ERR DPR.BATCH not executed: %s", strerror(-r));
        batch_end(c);
        return;
    }
    rh.status = DPR_WIRE_EXECUTED;
    rh.world_line = s->worker.world_line;
    rh.version_count = 1;
    rh.versions_in = &version;
    reply_batch_header(c, &rh);
    dpr_resp_array(&c->out, h.op_count);
    run_ops(c, h.op_count);
    s->batches_total++;
    /* (every byte before the end of this reply) */
    c->ran_mark = c->written + (c->writing ? c->wbuf.len : 0) + c->out.len;
    batch_end(c);
}

/* --- the request loop --------------------------------------------------- */

static void client_process(kv_client *c)
{
    size_t pos = 0;

    while (!c->closing && !c->close_after_reply && c->parked == KV_PARK_NONE) {
        size_t argc;
        kv_arg *argv;
        const char *err = NULL;
        if (c->out.len + c->wbuf.len > OUT_HIGH_WATER) {
            /* hand the replies to the kernel; if it cannot take them (the
             * client does not read), stop until the write completes */
            if (c->writing)
                break;
            client_flush(c);
            if (c->closing)
                return;
            if (c->writing)
                break;
        }
        ssize_t n = kv_parse(&c->parser, c->in.data + pos, c->in.len - pos, &argc, &argv, &err);
        if (n == 0)
            break;
        if (n < 0) {
            dpr_resp_errorf(&c->out, "ERR %s", n == -ENOMEM ? "out of memory" : err);
            c->close_after_reply = true;
            break;
        }
        pos += (size_t)n;
        if (argc == 0)
            continue;
        if (c->in_batch)
            batch_add(c, argc, argv);
        else
            exec_command(c, argc, argv, false);
        if (dpr_buf_failed(&c->out))
            break;
    }
    if (c->closing)
        return;
    if (pos)
        dpr_buf_consume(&c->in, pos);
    if (c->in.len == 0)
        shrink(&c->in);
    set_reading(c, !c->close_after_reply && c->parked == KV_PARK_NONE &&
                       c->out.len + c->wbuf.len <= OUT_HIGH_WATER);
    client_flush(c);
}

/* --- accepting ---------------------------------------------------------- */

static void reject_closed(uv_handle_t *h)
{
    free(h->data); /* the kv_client the handle is part of */
}

static void on_connection(uv_stream_t *server, int status)
{
    kv_server *s = server->data;
    kv_client *c;

    if (status < 0) {
        log_warning("accept failed: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c || uv_tcp_init(s->loop, &c->tcp) < 0) {
        log_error("out of memory accepting a connection");
        free(c);
        return;
    }
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, reject_closed);
        return;
    }
    if (s->nclients >= s->cfg->max_clients || s->stopping) {
        static const char msg[] = "-ERR max number of clients reached\r\n";
        uv_buf_t b = uv_buf_init((char *)msg, sizeof(msg) - 1);
        /* (a TLS client could not read it: closed without a word) */
        if (!s->stopping && !kv_listen_is_tls(&s->ports, server))
            (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        s->conns_rejected++;
        uv_close((uv_handle_t *)&c->tcp, reject_closed);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    if (kv_listen_is_tls(&s->ports, server)) {
        dpr_err err = DPR_ERR_INIT;
        if (dpr_tls_conn_new(s->tls, NULL, &c->tls, &err) < 0) {
            log_error("cannot start TLS on a connection: %s", err.msg);
            s->conns_rejected++;
            uv_close((uv_handle_t *)&c->tcp, reject_closed);
            return;
        }
        s->tls_conns_total++;
    }
    c->srv = s;
    dpr_buf_init(&c->in);
    dpr_buf_init(&c->out);
    dpr_buf_init(&c->wbuf);
    dpr_buf_init(&c->batch_hdr);
    dpr_buf_init(&c->batch_ops);
    kv_parser_init(&c->parser, s->cfg->max_request_bytes, MAX_ARGS);
    DPR_LIST_PREPEND(s->clients, c);
    s->nclients++;
    s->conns_total++;
    set_reading(c, true);
}

void kv_server_stop_listening(kv_server *s)
{
    kv_listen_stop(&s->ports);
}

void kv_server_close_clients(kv_server *s)
{
    while (s->clients)
        client_close(s->clients);
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status; /* failed: the client's end or the drain deadline closes it */
}

/* Sends FIN once every reply is written (uv_shutdown waits for the writes
 * queued before it; none may be queued after it). */
static void drain_step(kv_client *c)
{
    if (c->closing || c->shut || c->writing)
        return;
    if (c->out.len > 0) {
        client_flush(c);
        if (c->closing || c->writing)
            return; /* write_done comes back here */
    }
    if (c->tls && !c->tls_notified) {
        c->tls_notified = true; /* the client reads a clean end of the stream */
        (void)dpr_tls_conn_close_notify(c->tls);
        client_flush(c);
        if (c->closing || c->writing)
            return;
    }
    c->shut = true;
    c->shut_req.data = c;
    if (uv_shutdown(&c->shut_req, (uv_stream_t *)&c->tcp, shutdown_done) < 0)
        client_close(c);
}

bool kv_server_replies_written(const kv_server *s)
{
    for (const kv_client *c = s->clients; c; c = c->next)
        if (!c->closing && c->written < c->ran_mark)
            return false;
    return true;
}

void kv_server_drain_clients(kv_server *s, bool now)
{
    uint64_t t = dpr_mono_ms();
    kv_client *next;

    for (kv_client *c = s->clients; c; c = next) {
        next = c->next;
        if (c->draining)
            continue;
        /* a client that sends (TRYAGAIN'd batches, retried) is answered
         * until it pauses: its end of stream then meets no request on the
         * way (one that did never ran, but the session cannot know) */
        if (!now && (t - c->input_ms < KV_DRAIN_QUIET_MS || c->in.len > 0 ||
                     c->parked != KV_PARK_NONE))
            continue;
        c->draining = true;
        if (c->parked)
            unpark(c);
        c->in.len = 0;
        if (c->in_batch) /* cut off before it ran: never executed */
            batch_end(c);
        set_reading(c, true); /* to see its end (EOF closes it) */
        drain_step(c);
    }
}

/* --- timers and signals ------------------------------------------------- */

static void kick_parked(kv_server *s)
{
    kv_client *list = s->parked;
    s->parked = NULL;
    while (list) {
        kv_client *c = list;
        list = c->park_next;
        client_resume(c);
    }
}

static void on_cron(uv_timer_t *t)
{
    kv_server *s = t->data;
    kv_dict_cron(&s->dict, CRON_REHASH_USEC);
    if (s->cfg->maxmemory)
        sample_memory(s);
    kv_dpr_reap(s); /* in case a SIGCHLD was coalesced; also notices failing checkpoints */
    kv_resize_reap(s);
    if (s->parked)
        kick_parked(s);
    if (s->stopping)
        kv_dpr_shutdown_progress(s);
    else
        kv_dpr_status(s, false);
}

static void on_signal(uv_signal_t *h, int signum)
{
    kv_server *s = h->data;
    if (signum == SIGHUP) {
        (void)kv_tls_reload(s->cfg, &s->tls);
        if (s->finder && kv_tls_reload_finder(s->cfg, &s->finder_tls) == 0)
            kv_finder_set_tls(s->finder, s->finder_tls);
        return;
    }
    if (signum == SIGCHLD) {
        kv_dpr_reap(s);
        kv_resize_reap(s);
        if (s->parked)
            kick_parked(s);
        return;
    }
    if (s->stopping) {
        log_error("second %s: exiting now", signum == SIGTERM ? "SIGTERM" : "SIGINT");
        kv_snap_kill_all(&s->snap);
        _exit(1);
    }
    log_info("%s: taking a last checkpoint and stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    kv_dpr_begin_shutdown(s);
}

/* Called by kv_dpr.c after a DPR.SYNC or a rollback. */
static int start_timers(kv_server *s)
{
    int r;
    s->cron.data = s;
    r = uv_timer_init(s->loop, &s->cron);
    if (r == 0)
        r = uv_timer_start(&s->cron, on_cron, CRON_MS, CRON_MS);
    if (r < 0)
        return r;
    uv_signal_t *sigs[] = {&s->sig_term, &s->sig_int, &s->sig_chld, &s->sig_hup};
    int nums[] = {SIGTERM, SIGINT, SIGCHLD, SIGHUP};
    for (int i = 0; i < 4; i++) {
        r = uv_signal_init(s->loop, sigs[i]);
        if (r < 0)
            return r;
        sigs[i]->data = s;
        r = uv_signal_start(sigs[i], on_signal, nums[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

int kv_server_init(kv_server *s, const kv_config *cfg, uv_loop_t *loop, kv_dict *restored,
                   uint64_t world_line, uint64_t restored_version, const uint64_t *ckpts,
                   size_t nckpts, uint64_t committed, kv_layout_state *layout,
                   dpr_tls_ctx *tls)
{
    int r;

    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    s->tls = tls;
    s->loop = loop;
    s->start_ms = dpr_wall_ms();
    s->restored_version = restored_version;
    s->finder_world_line = world_line;
    s->synced_ms = dpr_mono_ms(); /* the finder answered DPR.WORKER.ADD just now */
    s->committed_sealed = committed;
    kv_dict_init(&s->dict, restored->seed);
    kv_dict_swap(&s->dict, restored);
    sample_memory(s);
    r = dpr_worker_init(&s->worker, cfg->worker, cfg->domain_id, world_line, restored_version);
    if (r < 0)
        return r;
    /* (before the purge below: it changes the keyspace too) */
    if (cfg->checkpoint_log)
        kv_dict_set_log(&s->dict, &s->log);
    kv_resize_init(s, layout);
    /* a checkpoint from before a committed resize holds keys that left */
    kv_resize_purge(s, "after the restore");
    for (size_t i = 0; i < nckpts; i++) {
        r = kv_ckpts_add(s, ckpts[i]);
        if (r < 0)
            return r;
    }
    s->last_file = nckpts ? ckpts[nckpts - 1] : 0;
    r = kv_snap_init(&s->snap, cfg->dir, cfg->worker, cfg->checkpoint_interval_ms);
    if (r < 0)
        return r;
    r = kv_dpr_logw_init(s);
    if (r < 0)
        return r;
    r = kv_listen_start(&s->ports, s->loop, s->cfg, s->tls != NULL, on_connection, s);
    if (r < 0)
        return r;
    r = kv_metrics_start(s);
    if (r < 0)
        return r;
    r = start_timers(s);
    if (r < 0)
        return r;
    return kv_dpr_start(s);
}

int kv_server_run(kv_server *s)
{
    uv_run(s->loop, UV_RUN_DEFAULT);
    return s->exit_code;
}
