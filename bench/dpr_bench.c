/*
 * dpr_bench.c - dpr-bench, a closed-loop key-value load generator for Redis,
 * dpr-kv without DPR (plain RESP) and dpr-kv with DPR sessions.
 *
 * Not a test: it measures and prints; it asserts nothing about time.
 *
 * Load: --connections connections spread over --threads threads (each a
 * poll loop). Every connection keeps a *window* of --pipeline operations:
 * it issues the window, waits until every reply is in, issues the next
 * (like redis-benchmark -P). An operation is a GET with probability
 * --read-ratio, else a SET of a --value-size byte value; keys are
 * "key:NNNNNNNNNNNN" drawn from --keys keys, uniformly or from a scrambled
 * Zipfian distribution (YCSB's, theta --zipf-theta). --prefill first SETs
 * every key once (plain pipelined commands), so reads hit and memory per
 * key is measurable.
 *
 * Modes:
 *  - plain: every operation is an ordinary RESP command on --server.
 *  - dpr: every connection is a DPR client session (dpr/client.h) over the
 *    --shard list and --finder, in DPR domain --domain (default "default",
 *    dpr-kv's default too). A window is routed by key and sent as one
 *    batch per shard; strict sessions (the default) send the next shard's
 *    batch when the previous one was answered, --relaxed sessions send them
 *    together.
 *
 * Latency of an operation: from the start of its window until its reply
 * arrived (so in strict DPR mode it includes waiting for the other shards'
 * batches of the window). Commit latency (dpr): from the reply until the
 * session's commit point covers the operation; a poller thread asks the
 * finder (DPR.SYNC) every --sync-interval-ms and hands the cut to the
 * connection threads. After --duration the benchmark stops issuing, waits
 * for the replies and (dpr) up to --commit-wait seconds for the commits.
 * Only operations answered after --warmup count.
 *
 * The last line of the output is machine readable:
 *   RESULT mode=... ops=N seconds=S ops_per_sec=X p50_us=... p99_us=...
 *          p999_us=... commit_p50_ms=... commit_p99_ms=... uncommitted=N errors=N
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/addr.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/num.h"
#include "common/resp.h"
#include "dpr/client.h"
#include "dpr/domain.h"
#include "dpr/route.h"
#include "hist.h"

#define MAX_SHARDS 64
#define KEY_LEN 16 /* "key:" + 12 digits */

/* ---- options ------------------------------------------------------------------- */

typedef struct options {
    bool dpr;
    dpr_hostport server;
    dpr_endpoint shards[MAX_SHARDS];
    char shard_hosts[MAX_SHARDS][DPR_HOST_MAX];
    size_t nshards;
    dpr_endpoint finder;
    char finder_host[DPR_HOST_MAX];
    const char *domain;
    unsigned connections, pipeline, threads;
    double read_ratio;
    uint64_t keys;
    unsigned value_size;
    bool zipf;
    double zipf_theta;
    double duration, warmup, commit_wait;
    bool prefill, prefill_only;
    bool relaxed;
    unsigned sync_interval_ms;
    uint64_t seed;
    bool quiet;
} options;

static options opt = {
    .connections = 16, .pipeline = 16, .threads = 1, .read_ratio = 0.5, .keys = 100000,
    .value_size = 64, .zipf_theta = 0.99, .duration = 10, .warmup = 1, .commit_wait = 5,
    .sync_interval_ms = 1, .seed = 1, .domain = DPR_DOMAIN_DEFAULT,
};

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dpr-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        die("out of memory");
    return p;
}

/* ---- random numbers and keys --------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s)
{
    return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* YCSB's Zipfian generator over [0, n) with a scramble (FNV-1a of the rank),
 * so hot keys spread over the key space and the shards. */
static struct {
    double theta, zetan, alpha, eta, half_pow;
} zipf;

static void zipf_init(uint64_t n, double theta)
{
    double zetan = 0;
    for (uint64_t i = 1; i <= n; i++)
        zetan += 1.0 / pow((double)i, theta);
    double zeta2 = 1.0 + 1.0 / pow(2.0, theta);
    zipf.theta = theta;
    zipf.zetan = zetan;
    zipf.alpha = 1.0 / (1.0 - theta);
    zipf.eta = (1.0 - pow(2.0 / (double)n, 1.0 - theta)) / (1.0 - zeta2 / zetan);
    zipf.half_pow = 1.0 + pow(0.5, theta);
}

static uint64_t fnv64(uint64_t v)
{
    uint64_t h = 14695981039346656037ULL;
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t next_key(uint64_t *rng)
{
    if (!opt.zipf)
        return splitmix64(rng) % opt.keys;
    double u = uniform01(rng);
    double uz = u * zipf.zetan;
    uint64_t rank;
    if (uz < 1.0)
        rank = 0;
    else if (uz < zipf.half_pow)
        rank = 1;
    else
        rank = (uint64_t)((double)opt.keys * pow(zipf.eta * u - zipf.eta + 1.0, zipf.alpha));
    if (rank >= opt.keys)
        rank = opt.keys - 1;
    return fnv64(rank) % opt.keys;
}

static void format_key(char *buf, uint64_t k)
{
    /* fixed width, no snprintf in the hot path */
    memcpy(buf, "key:", 4);
    for (int i = KEY_LEN - 1; i >= 4; i--) {
        buf[i] = (char)('0' + k % 10);
        k /= 10;
    }
}

static char *value_buf;

/* ---- shared run state ---------------------------------------------------------- */

static uint64_t t_measure; /* ns: operations answered from here on count */
static uint64_t t_end;     /* ns: no new window after this */
static dpr_client *client;

/* the latest cut, published by the poller */
static pthread_mutex_t cut_lock = PTHREAD_MUTEX_INITIALIZER;
static dpr_cut shared_cut;
static atomic_uint_fast64_t cut_gen;
static atomic_bool poller_stop;
static atomic_uint_fast64_t sync_count, sync_errors;

/* ---- one window of operations ------------------------------------------------- */

typedef struct window {
    char (*keys)[KEY_LEN];
    char (*tmp)[KEY_LEN];  /* keys in generation order */
    uint32_t *shard_of;    /* shard of tmp[i] */
    const char *(*argv)[3];
    size_t (*lens)[3];
    dpr_op *ops;     /* grouped by shard (dpr) */
    uint32_t *group_start; /* nshards + 1 */
    uint32_t next_group;   /* dpr strict: next shard group to send */
    uint32_t outstanding;  /* operations not answered */
    uint64_t start_ns;
} window;

static void window_init(window *w)
{
    unsigned d = opt.pipeline;
    w->keys = xcalloc(d, sizeof(*w->keys));
    w->tmp = xcalloc(d, sizeof(*w->tmp));
    w->shard_of = xcalloc(d, sizeof(*w->shard_of));
    w->argv = xcalloc(d, sizeof(*w->argv));
    w->lens = xcalloc(d, sizeof(*w->lens));
    w->ops = xcalloc(d, sizeof(*w->ops));
    w->group_start = xcalloc(MAX_SHARDS + 1, sizeof(*w->group_start));
}

static void window_free(window *w)
{
    free(w->keys);
    free(w->tmp);
    free(w->shard_of);
    free(w->argv);
    free(w->lens);
    free(w->ops);
    free(w->group_start);
}

/* Fills the window's operations; with nshards > 1 groups them by shard
 * (a counting sort on each key's shard). */
static void window_fill(window *w, uint64_t *rng, uint32_t nshards)
{
    unsigned d = opt.pipeline;
    uint32_t count[MAX_SHARDS + 1];
    memset(count, 0, sizeof(count));
    for (unsigned i = 0; i < d; i++) {
        format_key(w->tmp[i], next_key(rng));
        w->shard_of[i] = nshards > 1 ? dpr_route_shard(w->tmp[i], KEY_LEN, nshards) : 0;
        count[w->shard_of[i] + 1]++;
    }
    for (uint32_t s = 0; s < nshards; s++)
        count[s + 1] += count[s];
    for (uint32_t s = 0; s <= nshards; s++)
        w->group_start[s] = count[s];
    for (unsigned i = 0; i < d; i++) {
        uint32_t pos = count[w->shard_of[i]]++;
        memcpy(w->keys[pos], w->tmp[i], KEY_LEN);
        bool read = uniform01(rng) < opt.read_ratio;
        w->argv[pos][0] = read ? "GET" : "SET";
        w->argv[pos][1] = w->keys[pos];
        w->argv[pos][2] = value_buf;
        w->lens[pos][0] = 3;
        w->lens[pos][1] = KEY_LEN;
        w->lens[pos][2] = opt.value_size;
        w->ops[pos] = (dpr_op){read ? 2 : 3, w->argv[pos], w->lens[pos]};
    }
    w->next_group = 0;
    w->outstanding = d;
}

/* ---- connections --------------------------------------------------------------- */

typedef struct commit_rec {
    uint64_t last_seq, reply_ns;
    uint32_t count;
} commit_rec;

typedef struct conn {
    /* plain */
    int fd;
    redisReader *reader;
    dpr_buf out; /* bytes [woff, out.len) are still to be written */
    size_t woff;
    /* dpr */
    dpr_client_session *sess;
    commit_rec *crec;
    size_t chead, clen, ccap;
    window w;
    uint64_t rng;
    bool done;
} conn;

typedef struct thread_ctx {
    pthread_t tid;
    unsigned index;
    conn *conns;
    unsigned nconns;
    hist lat, commit;
    uint64_t ops, errors, uncommitted, windows;
    uint64_t local_gen;
    dpr_cut cut;
    struct pollfd *pfds;
    unsigned *pfd_conn;
} thread_ctx;

static int tcp_connect(const char *host, uint16_t port)
{
    char ps[DPR_FMT_U64_MAX + 1];
    struct addrinfo hints, *res, *ai;
    int fd = -1;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    ps[dpr_fmt_u64(ps, port)] = '\0';
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        die("cannot resolve %s", host);
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        die("cannot connect to %s:%u: %s", host, (unsigned)port, strerror(errno));
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* plain: writes what the socket takes (non-blocking socket) */
static void plain_flush(conn *c)
{
    while (c->woff < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->woff, c->out.len - c->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            die("write: %s", strerror(errno));
        }
        c->woff += (size_t)n;
    }
    dpr_buf_reset(&c->out);
    c->woff = 0;
}

static void plain_start_window(conn *c)
{
    window_fill(&c->w, &c->rng, 1);
    c->w.start_ns = dpr_mono_ns();
    for (unsigned i = 0; i < opt.pipeline; i++) {
        const dpr_op *op = &c->w.ops[i];
        dpr_resp_command(&c->out, op->argc, op->argv, op->argvlen);
    }
    if (dpr_buf_failed(&c->out))
        die("out of memory");
    plain_flush(c);
}

static void count_ops(thread_ctx *t, uint64_t done_ns, uint64_t start_ns, uint32_t n)
{
    if (done_ns >= t_measure && start_ns <= t_end) {
        hist_add(&t->lat, done_ns - start_ns, n);
        t->ops += n;
    }
}

static void plain_on_readable(thread_ctx *t, conn *c)
{
    char buf[65536];
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        die("server closed the connection (%s)", n < 0 ? strerror(errno) : "EOF");
    uint64_t now = dpr_mono_ns();
    if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK)
        die("out of memory");
    uint32_t got = 0;
    for (;;) {
        void *r = NULL;
        if (redisReaderGetReply(c->reader, &r) != REDIS_OK)
            die("protocol error from the server: %s", c->reader->errstr);
        if (!r)
            break;
        if (((redisReply *)r)->type == REDIS_REPLY_ERROR) {
            if (t->errors++ == 0)
                fprintf(stderr, "dpr-bench: error reply: %s\n", ((redisReply *)r)->str);
        }
        freeReplyObject(r);
        got++;
    }
    if (got > c->w.outstanding)
        die("more replies than requests");
    c->w.outstanding -= got;
    count_ops(t, now, c->w.start_ns, got);
    if (c->w.outstanding == 0) {
        t->windows++;
        if (now < t_end)
            plain_start_window(c);
        else
            c->done = true;
    }
}

/* dpr: sends the next shard group(s) of the window */
static void dpr_send_groups(conn *c)
{
    uint32_t nsh = (uint32_t)opt.nshards;
    while (c->w.next_group < nsh) {
        uint32_t g = c->w.next_group;
        uint32_t a = c->w.group_start[g], b = c->w.group_start[g + 1];
        if (a == b) {
            c->w.next_group++;
            continue;
        }
        uint64_t first;
        int r = dpr_client_session_send(c->sess, g, &c->w.ops[a], b - a, &first);
        if (r == -EBUSY || r == -EAGAIN)
            return; /* strict: wait for the answer of the previous group */
        if (r < 0)
            die("send: %s (%s)", strerror(-r), dpr_client_session_errstr(c->sess));
        c->w.next_group++;
        if (!opt.relaxed)
            return;
    }
}

static void dpr_start_window(conn *c)
{
    window_fill(&c->w, &c->rng, (uint32_t)opt.nshards);
    c->w.start_ns = dpr_mono_ns();
    dpr_send_groups(c);
}

static void crec_push(conn *c, uint64_t last_seq, uint64_t reply_ns, uint32_t count)
{
    if (c->clen == c->ccap) {
        size_t cap = c->ccap ? 2 * c->ccap : 1024;
        commit_rec *p = xcalloc(cap, sizeof(*p));
        for (size_t i = 0; i < c->clen; i++)
            p[i] = c->crec[(c->chead + i) % c->ccap];
        free(c->crec);
        c->crec = p;
        c->ccap = cap;
        c->chead = 0;
    }
    c->crec[(c->chead + c->clen) % c->ccap] = (commit_rec){last_seq, reply_ns, count};
    c->clen++;
}

/* Applies the thread's current cut to a session and records commit latency. */
static void dpr_apply_cut(thread_ctx *t, conn *c, uint64_t now)
{
    uint64_t cp;
    int r = dpr_client_session_apply_cut(c->sess, &t->cut, &cp);
    if (r < 0)
        die("the cluster rolled back during the benchmark (%s)",
            dpr_client_session_errstr(c->sess));
    while (c->clen && c->crec[c->chead].last_seq <= cp) {
        commit_rec *cr = &c->crec[c->chead];
        if (cr->reply_ns >= t_measure && cr->reply_ns <= t_end)
            hist_add(&t->commit, now - cr->reply_ns, cr->count);
        c->chead = (c->chead + 1) % c->ccap;
        c->clen--;
    }
}

static void dpr_on_ready(thread_ctx *t, conn *c)
{
    for (;;) {
        dpr_batch_result res;
        int r = dpr_client_session_recv(c->sess, 0, &res);
        if (r == -EAGAIN || r == -ENOENT)
            break;
        if (r < 0)
            die("recv: %s (%s)", strerror(-r), dpr_client_session_errstr(c->sess));
        if (res.status != 0)
            die("batch failed: %s (%s)", strerror(-res.status),
                dpr_client_session_errstr(c->sess));
        uint64_t now = dpr_mono_ns();
        for (uint32_t i = 0; i < res.op_count; i++)
            if (res.replies[i]->type == REDIS_REPLY_ERROR && t->errors++ == 0)
                fprintf(stderr, "dpr-bench: error reply: %s\n", res.replies[i]->str);
        count_ops(t, now, c->w.start_ns, res.op_count);
        crec_push(c, res.first_seq + res.op_count - 1, now, res.op_count);
        c->w.outstanding -= res.op_count;
        dpr_batch_result_free(&res);
        if (c->w.outstanding == 0) {
            t->windows++;
            if (now < t_end)
                dpr_start_window(c);
            else
                c->done = true;
        } else {
            dpr_send_groups(c);
        }
    }
}

static void thread_take_cut(thread_ctx *t)
{
    uint64_t g = atomic_load(&cut_gen);
    if (g == t->local_gen)
        return;
    pthread_mutex_lock(&cut_lock);
    int r = dpr_cut_copy(&t->cut, &shared_cut);
    g = atomic_load(&cut_gen);
    pthread_mutex_unlock(&cut_lock);
    if (r < 0)
        die("out of memory");
    t->local_gen = g;
    uint64_t now = dpr_mono_ns();
    for (unsigned i = 0; i < t->nconns; i++)
        dpr_apply_cut(t, &t->conns[i], now);
}

static void *thread_main(void *arg)
{
    thread_ctx *t = arg;
    for (unsigned i = 0; i < t->nconns; i++) {
        if (opt.dpr)
            dpr_start_window(&t->conns[i]);
        else
            plain_start_window(&t->conns[i]);
    }
    unsigned live = t->nconns;
    while (live) {
        if (opt.dpr)
            thread_take_cut(t);
        size_t n = 0;
        live = 0;
        for (unsigned i = 0; i < t->nconns; i++) {
            conn *c = &t->conns[i];
            if (c->done)
                continue;
            live++;
            if (opt.dpr) {
                size_t k = dpr_client_session_pollfds(c->sess, &t->pfds[n], opt.nshards);
                for (size_t j = 0; j < k; j++)
                    t->pfd_conn[n + j] = i;
                n += k;
            } else {
                t->pfds[n].fd = c->fd;
                t->pfds[n].events = POLLIN | (c->out.len > c->woff ? POLLOUT : 0);
                t->pfds[n].revents = 0;
                t->pfd_conn[n++] = i;
            }
        }
        if (!live)
            break;
        int r = poll(t->pfds, n, opt.dpr ? (int)opt.sync_interval_ms : 1000);
        if (r < 0 && errno != EINTR)
            die("poll: %s", strerror(errno));
        for (size_t j = 0; r > 0 && j < n; j++) {
            if (!t->pfds[j].revents)
                continue;
            conn *c = &t->conns[t->pfd_conn[j]];
            if (opt.dpr) {
                dpr_on_ready(t, c);
            } else {
                if (t->pfds[j].revents & POLLOUT)
                    plain_flush(c);
                if (t->pfds[j].revents & (POLLIN | POLLHUP | POLLERR))
                    plain_on_readable(t, c);
            }
        }
    }
    /* dpr: wait for the commits of what was answered */
    if (opt.dpr) {
        uint64_t deadline = dpr_mono_ns() + (uint64_t)(opt.commit_wait * 1e9);
        for (;;) {
            thread_take_cut(t);
            size_t left = 0;
            for (unsigned i = 0; i < t->nconns; i++)
                left += t->conns[i].clen;
            if (left == 0 || dpr_mono_ns() >= deadline)
                break;
            usleep(opt.sync_interval_ms * 1000);
        }
        for (unsigned i = 0; i < t->nconns; i++) {
            conn *c = &t->conns[i];
            for (size_t k = 0; k < c->clen; k++) {
                commit_rec *cr = &c->crec[(c->chead + k) % c->ccap];
                if (cr->reply_ns >= t_measure && cr->reply_ns <= t_end)
                    t->uncommitted += cr->count;
            }
        }
    }
    return NULL;
}

/* ---- the finder poller --------------------------------------------------------- */

static uint64_t cut_digest(const dpr_cut *c)
{
    uint64_t h = c->world_line * 0x9E3779B97F4A7C15ull;
    size_t it = 0;
    dpr_dep d;
    while (dpr_depset_next(&c->versions, &it, &d))
        h += fnv64(d.worker ^ (d.version * 0xBF58476D1CE4E5B9ull));
    return h;
}

static void *poller_main(void *arg)
{
    (void)arg;
    dpr_cut cut;
    uint64_t last = 0;
    dpr_cut_init(&cut);
    while (!atomic_load(&poller_stop)) {
        int r = dpr_client_sync(client, &cut);
        atomic_fetch_add(&sync_count, 1);
        if (r < 0) {
            atomic_fetch_add(&sync_errors, 1);
        } else {
            uint64_t d = cut_digest(&cut);
            if (d != last) {
                pthread_mutex_lock(&cut_lock);
                r = dpr_cut_copy(&shared_cut, &cut);
                pthread_mutex_unlock(&cut_lock);
                if (r < 0)
                    die("out of memory");
                atomic_fetch_add(&cut_gen, 1);
                last = d;
            }
        }
        usleep(opt.sync_interval_ms * 1000);
    }
    dpr_cut_free(&cut);
    return NULL;
}

/* ---- prefill ------------------------------------------------------------------- */

static void prefill_one(const char *host, uint16_t port, uint32_t shard, uint32_t nshards)
{
    struct timeval tv = {10, 0};
    redisContext *rc = redisConnectWithTimeout(host, port, tv);
    if (!rc || rc->err)
        die("prefill: cannot connect to %s:%u: %s", host, (unsigned)port,
            rc ? rc->errstr : "out of memory");
    if (redisSetTimeout(rc, tv) != REDIS_OK)
        die("prefill: %s", rc->errstr);
    char key[KEY_LEN];
    const char *argv[3] = {"SET", key, value_buf};
    size_t lens[3] = {3, KEY_LEN, opt.value_size};
    unsigned pending = 0;
    for (uint64_t k = 0; k <= opt.keys; k++) {
        if (k < opt.keys) {
            format_key(key, k);
            if (nshards > 1 && dpr_route_shard(key, KEY_LEN, nshards) != shard)
                continue;
            if (redisAppendCommandArgv(rc, 3, argv, lens) != REDIS_OK)
                die("prefill: %s", rc->errstr);
            pending++;
        }
        if (pending == 1000 || (k == opt.keys && pending)) {
            while (pending) {
                void *r;
                if (redisGetReply(rc, &r) != REDIS_OK)
                    die("prefill: %s", rc->errstr);
                if (((redisReply *)r)->type == REDIS_REPLY_ERROR)
                    die("prefill: %s", ((redisReply *)r)->str);
                freeReplyObject(r);
                pending--;
            }
        }
    }
    redisFree(rc);
}

/* ---- command line -------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
"Usage: dpr-bench --mode plain --server HOST:PORT [options]\n"
"       dpr-bench --mode dpr --finder HOST:PORT --shard HOST:PORT [--shard ...] [options]\n"
"\n"
"A closed-loop key-value load generator: Redis or dpr-kv over plain RESP, or\n"
"dpr-kv through DPR client sessions (libdpr's dpr/client.h). Prints ops/s,\n"
"latency p50/p99/p99.9 and, with DPR, commit latency p50/p99; the last line\n"
"(RESULT key=value ...) is for scripts.\n"
"\n"
"Options:\n"
"  --mode plain|dpr        plain RESP commands, or DPR sessions (default plain)\n"
"  --server HOST:PORT      plain: the server\n"
"  --shard HOST:PORT[@ID]  dpr: a shard, in routing order (repeat; the worker id\n"
"                          is asked from the shard's INFO unless given)\n"
"  --finder HOST:PORT      dpr: the finder\n"
"  --domain NAME           dpr: the shards' DPR domain (dpr-kv --domain; in a\n"
"                          cluster, the deployment's name) (default %s)\n"
"  --connections N         connections (DPR sessions) (default %u)\n"
"  --pipeline N            operations in flight per connection: each connection\n"
"                          issues a window of N and waits for all (default %u)\n"
"  --threads N             client threads sharing the connections (default %u)\n"
"  --read-ratio R          fraction of GETs, the rest are SETs (default %.2f)\n"
"  --keys N                key space (default %" PRIu64 ")\n"
"  --value-size N          bytes per value (default %u)\n"
"  --dist uniform|zipf     key distribution (default uniform)\n"
"  --zipf-theta T          Zipfian skew, 0 < T < 1 (default %.2f)\n"
"  --duration S            seconds of load (default %.0f)\n"
"  --warmup S              first seconds not measured (default %.0f)\n"
"  --prefill               SET every key once before the run\n"
"  --prefill-only          SET every key once, then exit\n"
"  --relaxed               dpr: relaxed sessions (batches to all shards of a\n"
"                          window at once) instead of strict\n"
"  --sync-interval-ms N    dpr: how often to ask the finder for the cut (default %u)\n"
"  --commit-wait S         dpr: at the end, wait up to S s for commits (default %.0f)\n"
"  --seed N                random seed (default %" PRIu64 ")\n"
"  --quiet                 only the RESULT line\n"
"  --help                  this text\n"
"\n"
"Latency runs from the start of an operation's window to its reply; commit\n"
"latency from the reply until the session's commit point (finder's DPR.SYNC)\n"
"covers the operation. Exit status 0, 1 on errors, 2 on bad usage.\n",
            opt.domain, opt.connections, opt.pipeline, opt.threads, opt.read_ratio, opt.keys,
            opt.value_size, opt.zipf_theta, opt.duration, opt.warmup, opt.sync_interval_ms,
            opt.commit_wait, opt.seed);
}

static void bad_usage(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dpr-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(dpr-bench --help lists the options)\n");
    va_end(ap);
    exit(2);
}

static uint64_t parse_uint(const char *name, const char *s, uint64_t lo, uint64_t hi)
{
    uint64_t v;
    if (dpr_parse_u64_str(s, lo, hi, &v) < 0)
        bad_usage("--%s: expected an integer in %" PRIu64 "..%" PRIu64 ", got '%s'", name, lo,
                  hi, s);
    return v;
}

static double parse_double(const char *name, const char *s, double lo, double hi)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi))
        bad_usage("--%s: expected a number in %g..%g, got '%s'", name, lo, hi, s);
    return v;
}

static void parse_args(int argc, char **argv)
{
    enum { OPT_MODE = 256, OPT_SERVER, OPT_SHARD, OPT_FINDER, OPT_DOMAIN, OPT_CONNS, OPT_PIPE, OPT_THREADS, OPT_READ,
           OPT_KEYS, OPT_VSIZE, OPT_DIST, OPT_THETA, OPT_DUR, OPT_WARM, OPT_PREFILL, OPT_RELAXED, OPT_SYNC,
           OPT_CWAIT, OPT_SEED, OPT_QUIET, OPT_HELP, OPT_PREFILL_ONLY };
    static const struct option lo[] = {
        {"mode", required_argument, NULL, OPT_MODE},
        {"server", required_argument, NULL, OPT_SERVER},
        {"shard", required_argument, NULL, OPT_SHARD},
        {"finder", required_argument, NULL, OPT_FINDER},
        {"domain", required_argument, NULL, OPT_DOMAIN},
        {"connections", required_argument, NULL, OPT_CONNS},
        {"pipeline", required_argument, NULL, OPT_PIPE},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"read-ratio", required_argument, NULL, OPT_READ},
        {"keys", required_argument, NULL, OPT_KEYS},
        {"value-size", required_argument, NULL, OPT_VSIZE},
        {"dist", required_argument, NULL, OPT_DIST},
        {"zipf-theta", required_argument, NULL, OPT_THETA},
        {"duration", required_argument, NULL, OPT_DUR},
        {"warmup", required_argument, NULL, OPT_WARM},
        {"prefill", no_argument, NULL, OPT_PREFILL},
        {"prefill-only", no_argument, NULL, OPT_PREFILL_ONLY},
        {"relaxed", no_argument, NULL, OPT_RELAXED},
        {"sync-interval-ms", required_argument, NULL, OPT_SYNC},
        {"commit-wait", required_argument, NULL, OPT_CWAIT},
        {"seed", required_argument, NULL, OPT_SEED},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0}};
    bool have_server = false;
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case OPT_MODE:
            if (!strcmp(optarg, "dpr"))
                opt.dpr = true;
            else if (!strcmp(optarg, "plain"))
                opt.dpr = false;
            else
                bad_usage("--mode: plain or dpr");
            break;
        case OPT_SERVER:
            if (dpr_hostport_parse(optarg, 0, &opt.server, NULL) < 0)
                bad_usage("--server: expected HOST:PORT, got '%s'", optarg);
            have_server = true;
            break;
        case OPT_SHARD:
            if (opt.nshards == MAX_SHARDS)
                bad_usage("at most %d shards", MAX_SHARDS);
            if (dpr_endpoint_parse(optarg, &opt.shards[opt.nshards],
                                   opt.shard_hosts[opt.nshards], sizeof(opt.shard_hosts[0])) < 0)
                bad_usage("--shard: expected HOST:PORT[@ID], got '%s'", optarg);
            opt.nshards++;
            break;
        case OPT_FINDER:
            if (dpr_endpoint_parse(optarg, &opt.finder, opt.finder_host,
                                   sizeof(opt.finder_host)) < 0)
                bad_usage("--finder: expected HOST:PORT, got '%s'", optarg);
            break;
        case OPT_DOMAIN:
            if (!dpr_domain_valid(optarg, strlen(optarg)))
                bad_usage("--domain: expected 1 to %d characters a-z, 0-9, '.', '_' or '-', "
                          "starting with a letter or a digit, got '%s'", DPR_DOMAIN_MAX, optarg);
            opt.domain = optarg;
            break;
        case OPT_CONNS: opt.connections = (unsigned)parse_uint("connections", optarg, 1, 10000); break;
        case OPT_PIPE: opt.pipeline = (unsigned)parse_uint("pipeline", optarg, 1, 100000); break;
        case OPT_THREADS: opt.threads = (unsigned)parse_uint("threads", optarg, 1, 256); break;
        case OPT_READ: opt.read_ratio = parse_double("read-ratio", optarg, 0, 1); break;
        case OPT_KEYS: opt.keys = parse_uint("keys", optarg, 1, 999999999999ull); break;
        case OPT_VSIZE: opt.value_size = (unsigned)parse_uint("value-size", optarg, 0, 64 << 20); break;
        case OPT_DIST:
            if (!strcmp(optarg, "zipf") || !strcmp(optarg, "zipfian"))
                opt.zipf = true;
            else if (!strcmp(optarg, "uniform"))
                opt.zipf = false;
            else
                bad_usage("--dist: uniform or zipf");
            break;
        case OPT_THETA: opt.zipf_theta = parse_double("zipf-theta", optarg, 0.01, 0.999); break;
        case OPT_DUR: opt.duration = parse_double("duration", optarg, 0.1, 86400); break;
        case OPT_WARM: opt.warmup = parse_double("warmup", optarg, 0, 86400); break;
        case OPT_PREFILL: opt.prefill = true; break;
        case OPT_PREFILL_ONLY: opt.prefill = opt.prefill_only = true; break;
        case OPT_RELAXED: opt.relaxed = true; break;
        case OPT_SYNC: opt.sync_interval_ms = (unsigned)parse_uint("sync-interval-ms", optarg, 1, 10000); break;
        case OPT_CWAIT: opt.commit_wait = parse_double("commit-wait", optarg, 0, 3600); break;
        case OPT_SEED: opt.seed = parse_uint("seed", optarg, 0, UINT64_MAX); break;
        case OPT_QUIET: opt.quiet = true; break;
        case OPT_HELP: usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc)
        bad_usage("unexpected argument '%s'", argv[optind]);
    if (opt.dpr && (opt.nshards == 0 || !opt.finder.host))
        bad_usage("--mode dpr needs --finder and at least one --shard");
    if (!opt.dpr && !have_server)
        bad_usage("--mode plain needs --server");
    if (opt.warmup >= opt.duration)
        bad_usage("--warmup must be shorter than --duration");
    if (opt.threads > opt.connections)
        opt.threads = opt.connections;
}

/* ---- main ---------------------------------------------------------------------- */

static void fmt_us(char *buf, size_t cap, double ns)
{
    if (isnan(ns))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.1f", ns / 1e3);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    value_buf = xcalloc(opt.value_size + 1, 1);
    for (unsigned i = 0; i < opt.value_size; i++)
        value_buf[i] = (char)('a' + i % 26);
    if (opt.zipf)
        zipf_init(opt.keys, opt.zipf_theta);

    if (opt.dpr) {
        dpr_err err;
        dpr_client_config cfg = {.shards = opt.shards, .nshards = opt.nshards,
                                 .finder = opt.finder, .domain = opt.domain,
                                 .pipeline_depth = 1}; /* one batch per shard and window */
        int r = dpr_client_new(&cfg, &client, &err);
        if (r < 0)
            die("%s", err.msg);
    }
    if (opt.prefill) {
        uint64_t t0 = dpr_mono_ns();
        if (opt.dpr)
            for (size_t k = 0; k < opt.nshards; k++)
                prefill_one(opt.shards[k].host, opt.shards[k].port, (uint32_t)k,
                            (uint32_t)opt.nshards);
        else
            prefill_one(opt.server.host, opt.server.port, 0, 1);
        if (!opt.quiet)
            fprintf(stderr, "prefilled %" PRIu64 " keys in %.2f s\n", opt.keys,
                    (double)(dpr_mono_ns() - t0) / 1e9);
        if (opt.prefill_only) {
            dpr_client_free(client);
            free(value_buf);
            return 0;
        }
    }

    thread_ctx *threads = xcalloc(opt.threads, sizeof(*threads));
    conn *conns = xcalloc(opt.connections, sizeof(*conns));
    for (unsigned i = 0; i < opt.connections; i++) {
        conn *c = &conns[i];
        c->rng = opt.seed * 0x100000001b3ull + i;
        window_init(&c->w);
        c->fd = -1;
        dpr_buf_init(&c->out);
        if (opt.dpr) {
            int r = dpr_client_session_open(client, opt.relaxed ? DPR_SESSION_RELAXED : 0,
                                            &c->sess);
            if (r < 0)
                die("session: %s", dpr_client_errstr(client));
        } else {
            c->fd = tcp_connect(opt.server.host, opt.server.port);
            c->reader = redisReaderCreate();
            if (!c->reader)
                die("out of memory");
        }
    }
    unsigned per = opt.connections / opt.threads, extra = opt.connections % opt.threads;
    unsigned at = 0;
    for (unsigned i = 0; i < opt.threads; i++) {
        thread_ctx *t = &threads[i];
        t->index = i;
        t->conns = &conns[at];
        t->nconns = per + (i < extra);
        at += t->nconns;
        size_t nfd = (size_t)t->nconns * (opt.dpr ? opt.nshards : 1);
        t->pfds = xcalloc(nfd, sizeof(*t->pfds));
        t->pfd_conn = xcalloc(nfd, sizeof(*t->pfd_conn));
        dpr_cut_init(&t->cut);
    }
    if (!opt.dpr)
        for (unsigned i = 0; i < opt.connections; i++) {
            int fl = fcntl(conns[i].fd, F_GETFL);
            if (fl < 0 || fcntl(conns[i].fd, F_SETFL, fl | O_NONBLOCK) < 0)
                die("fcntl: %s", strerror(errno));
        }

    pthread_t poller;
    dpr_cut_init(&shared_cut);
    if (opt.dpr && pthread_create(&poller, NULL, poller_main, NULL) != 0)
        die("cannot start the poller thread");
    uint64_t t0 = dpr_mono_ns();
    t_measure = t0 + (uint64_t)(opt.warmup * 1e9);
    t_end = t0 + (uint64_t)(opt.duration * 1e9);
    for (unsigned i = 0; i < opt.threads; i++)
        if (pthread_create(&threads[i].tid, NULL, thread_main, &threads[i]) != 0)
            die("cannot start thread %u", i);
    for (unsigned i = 0; i < opt.threads; i++)
        pthread_join(threads[i].tid, NULL);
    if (opt.dpr) {
        atomic_store(&poller_stop, true);
        pthread_join(poller, NULL);
    }

    hist *lat = xcalloc(1, sizeof(*lat)), *commit = xcalloc(1, sizeof(*commit));
    uint64_t ops = 0, errors = 0, uncommitted = 0, windows = 0;
    for (unsigned i = 0; i < opt.threads; i++) {
        hist_merge(lat, &threads[i].lat);
        hist_merge(commit, &threads[i].commit);
        ops += threads[i].ops;
        errors += threads[i].errors;
        uncommitted += threads[i].uncommitted;
        windows += threads[i].windows;
    }
    double secs = opt.duration - opt.warmup;
    double rate = (double)ops / secs;
    char p50[32], p99[32], p999[32], c50[32], c99[32];
    fmt_us(p50, sizeof(p50), hist_quantile(lat, 0.5));
    fmt_us(p99, sizeof(p99), hist_quantile(lat, 0.99));
    fmt_us(p999, sizeof(p999), hist_quantile(lat, 0.999));
    double cq50 = hist_quantile(commit, 0.5), cq99 = hist_quantile(commit, 0.99);
    snprintf(c50, sizeof(c50), "%.2f", isnan(cq50) ? -1.0 : cq50 / 1e6);
    snprintf(c99, sizeof(c99), "%.2f", isnan(cq99) ? -1.0 : cq99 / 1e6);
    if (!opt.quiet) {
        printf("mode %s, %u connections x pipeline %u, %u thread(s), %.0f%% reads, %" PRIu64
               " keys (%s), %u-byte values, %.1f s measured\n",
               opt.dpr ? (opt.relaxed ? "dpr (relaxed)" : "dpr (strict)") : "plain",
               opt.connections, opt.pipeline, opt.threads, opt.read_ratio * 100, opt.keys,
               opt.zipf ? "zipf" : "uniform", opt.value_size, secs);
        printf("ops/s %.0f   latency us p50 %s  p99 %s  p99.9 %s", rate, p50, p99, p999);
        if (opt.dpr)
            printf("   commit ms p50 %s  p99 %s  (%" PRIu64 " uncommitted, %" PRIu64
                   " syncs)", c50, c99, uncommitted, (uint64_t)atomic_load(&sync_count));
        printf("\n");
    }
    printf("RESULT mode=%s ops=%" PRIu64 " seconds=%.3f ops_per_sec=%.0f p50_us=%s p99_us=%s "
           "p999_us=%s commit_p50_ms=%s commit_p99_ms=%s uncommitted=%" PRIu64
           " errors=%" PRIu64 " windows=%" PRIu64 "\n",
           opt.dpr ? "dpr" : "plain", ops, secs, rate, p50, p99, p999, opt.dpr ? c50 : "-",
           opt.dpr ? c99 : "-", uncommitted, errors, windows);

    for (unsigned i = 0; i < opt.connections; i++) {
        conn *c = &conns[i];
        window_free(&c->w);
        free(c->crec);
        dpr_buf_free(&c->out);
        if (c->reader)
            redisReaderFree(c->reader);
        if (c->fd >= 0)
            close(c->fd);
        dpr_client_session_close(c->sess);
    }
    for (unsigned i = 0; i < opt.threads; i++) {
        free(threads[i].pfds);
        free(threads[i].pfd_conn);
        dpr_cut_free(&threads[i].cut);
    }
    dpr_cut_free(&shared_cut);
    dpr_client_free(client);
    free(threads);
    free(conns);
    free(lat);
    free(commit);
    free(value_buf);
    return errors ? 1 : 0;
}
