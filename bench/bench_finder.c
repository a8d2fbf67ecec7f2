/*
 * bench_finder.c - throughput and report-to-cut latency of the DPR finder.
 *
 * Not a test: it makes no timed assertions. It prints a markdown table to
 * stdout (progress goes to stderr); bench/finder.sh puts the table into
 * docs/benchmarks.md. Run with --help for the flags.
 *
 * Workload (libDPR's finder benchmark, with one dependency per report):
 *  - W simulated workers with distinct pseudo-random 63-bit ids.
 *  - Lockstep checkpoints: at tick k (every --period-ms, 25 ms by default)
 *    every worker completes checkpoint k and reports (worker, k, deps), in
 *    worker order. As in libDPR's benchmark, all workers move through the
 *    same version numbers.
 *  - deps: with probability --dep-prob (0.5), exactly one dependency
 *    (u, k) on a worker u drawn uniformly from the W-1 other workers; "the
 *    latest version of u" is u's version k, the one u is checkpointing in the
 *    same tick (never forward). Otherwise no explicit dependency; the edge to
 *    the worker's own version k-1 is implicit in the finder. (libDPR's
 *    generator adds (u, k) for *each* other worker with the probability;
 *    here it is one random worker.) The random stream is splitmix64 seeded
 *    by --seed.
 *
 * Paths:
 *  - inproc: the finder core API directly on this thread. After every tick's
 *    group of W reports it does what the server does after a read batch:
 *    if dpr_finder_dirty(): dpr_finder_get_state() + dpr_finder_publish()
 *    (no store save: the in-memory cost only). A report is "handed" just
 *    before its dpr_finder_report() call; it is covered when, right after a
 *    publish, dpr_finder_cut_of(worker) >= its version.
 *  - tcp: a real dpr-finder process (temporary state dir, port 0), one
 *    connection per --conn-workers workers carrying their pipelined
 *    DPR.REPORTs (one write per connection per tick), plus one poller
 *    connection that issues DPR.SYNC back to back (the next one as soon as
 *    the previous reply is in). A report is handed when its connection's
 *    write for the tick is issued; it is covered when the first SYNC reply
 *    received after that shows cut[worker] >= its version (the reply's
 *    arrival time is used, so the latency includes the finder's fsync
 *    before publishing and up to one SYNC round trip).
 *
 * Loads:
 *  - paced: ticks on the real-time schedule (k-th tick at start + k*period).
 *  - saturation: ticks back to back. inproc: as fast as this thread can;
 *    tcp: a new tick is sent while fewer than max(2*W, 1024) reports are
 *    unanswered (pipelining window).
 *
 * Latency samples skip the first two ticks (table growth). At the end the
 * benchmark stops sending and waits (up to 3 s) until every report is
 * answered and covered, so the tail is in the sample. TCP rows also note
 * report->+OK (the finder answers only after its durable save), the CPU
 * use of the finder and of this process, and after the table the cost of
 * dpr_store_save alone on the same file system, so a reader can tell disk
 * time from finder time.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/addr.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/num.h"
#include "common/resp.h"
#include "dpr/depset.h"
#include "dpr/domain.h"
#include "dpr/domains.h"
#include "dpr/finder.h"
#include "dpr/store.h"
#include "hist.h"

extern char **environ;

/* Every worker of the run is in one DPR domain. */
/* The domain TCP runs use (--domain; a running finder needs one per run:
 * its workers would be known from an earlier run). */
static const char *g_domain = DPR_DOMAIN_DEFAULT;
#define BENCH_DOMAIN g_domain

/* ------------------------------------------------------------------------ */
/* small helpers                                                            */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static pid_t g_child = -1;       /* the dpr-finder we started, if any */
static char g_tmpdir[PATH_MAX];  /* its temporary directory, if any */

static void kill_child(void)
{
    if (g_child > 0) {
        if (kill(g_child, SIGKILL) == 0) {
            int st;
            while (waitpid(g_child, &st, 0) < 0 && errno == EINTR)
                ;
        }
        g_child = -1;
    }
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path) < 0 ? -1 : 0;
    return unlink(path) < 0 ? -1 : 0;
}

static void remove_tmpdir(void)
{
    if (g_tmpdir[0]) {
        if (nftw(g_tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS) != 0)
            fprintf(stderr, "bench-finder: cannot remove %s: %s\n", g_tmpdir, strerror(errno));
        g_tmpdir[0] = '\0';
    }
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench-finder: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (g_tmpdir[0]) {
        char log[PATH_MAX + 16];
        snprintf(log, sizeof log, "%s/finder.log", g_tmpdir);
        FILE *fp = fopen(log, "r");
        if (fp) {
            char line[512];
            fputs("--- dpr-finder log ---\n", stderr);
            while (fgets(line, sizeof line, fp))
                fputs(line, stderr);
            fclose(fp);
        }
    }
    kill_child();
    remove_tmpdir();
    exit(1);
}

static volatile sig_atomic_t g_signal;

/* First signal: the run loops notice it and clean up (die). A second one
 * while cleaning up kills the finder and leaves at once. */
static void on_signal(int sig)
{
    if (g_signal) {
        if (g_child > 0)
            kill(g_child, SIGKILL);
        _exit(128 + sig);
    }
    g_signal = sig;
}

static void check_signal(void)
{
    if (g_signal)
        die("interrupted by signal %d", (int)g_signal);
}

static void fmt_ns(char *out, size_t n, double ns);

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        die("out of memory");
    return p;
}

static void sleep_until(uint64_t t_ns)
{
    struct timespec ts = { (time_t)(t_ns / 1000000000u), (long)(t_ns % 1000000000u) };
    int rc;
    while ((rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)) == EINTR)
        check_signal();
    if (rc != 0)
        die("clock_nanosleep: %s", strerror(rc));
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------------------ */
/* the workload                                                             */

typedef struct workload {
    size_t W;
    uint64_t *ids;     /* worker index -> id */
    size_t map_cap;    /* id -> index, open addressing (power of two) */
    uint64_t *map_id;  /* 0 = empty */
    uint32_t *map_idx;
    uint64_t rng;
    uint64_t dep_threshold; /* dependency when (rng >> 11) < threshold */
} workload;

static uint64_t id_hash(uint64_t id)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdull;
    id ^= id >> 33;
    return id;
}

static void workload_init(workload *wl, size_t W, uint64_t seed, double dep_prob)
{
    memset(wl, 0, sizeof *wl);
    wl->W = W;
    wl->ids = xcalloc(W, sizeof *wl->ids);
    wl->map_cap = 16;
    while (wl->map_cap < 2 * W)
        wl->map_cap *= 2;
    wl->map_id = xcalloc(wl->map_cap, sizeof *wl->map_id);
    wl->map_idx = xcalloc(wl->map_cap, sizeof *wl->map_idx);
    uint64_t s = seed ^ 0x5eed1d5ull;
    for (size_t i = 0; i < W; i++) {
        for (;;) {
            uint64_t id = splitmix64(&s) >> 1; /* 63 bits: fits a RESP integer */
            if (id == 0)
                continue;
            size_t m = wl->map_cap - 1, j = (size_t)id_hash(id) & m;
            while (wl->map_id[j] && wl->map_id[j] != id)
                j = (j + 1) & m;
            if (wl->map_id[j] == id)
                continue; /* duplicate id: draw again */
            wl->map_id[j] = id;
            wl->map_idx[j] = (uint32_t)i;
            wl->ids[i] = id;
            break;
        }
    }
    wl->rng = seed;
    double t = dep_prob * 9007199254740992.0; /* 2^53 */
    wl->dep_threshold = dep_prob >= 1.0 ? UINT64_MAX : (uint64_t)t;
}

static void workload_free(workload *wl)
{
    free(wl->ids);
    free(wl->map_id);
    free(wl->map_idx);
}

static long workload_index(const workload *wl, uint64_t id)
{
    size_t m = wl->map_cap - 1, j = (size_t)id_hash(id) & m;
    while (wl->map_id[j]) {
        if (wl->map_id[j] == id)
            return (long)wl->map_idx[j];
        j = (j + 1) & m;
    }
    return -1;
}

/* The dependency of worker i's report of version k: 0 or 1 entries. */
static size_t workload_deps(workload *wl, size_t i, uint64_t k, dpr_dep *dep)
{
    if (wl->W < 2)
        return 0;
    uint64_t r = splitmix64(&wl->rng);
    if ((r >> 11) >= wl->dep_threshold)
        return 0;
    uint64_t r2 = splitmix64(&wl->rng);
    size_t u = (i + 1 + (size_t)(r2 % (wl->W - 1))) % wl->W;
    dep->worker = wl->ids[u];
    dep->version = k;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* latency tracker: when was (worker, tick) handed, and when covered        */

typedef struct tracker {
    size_t W;
    uint64_t T;          /* ring of ticks, power of two */
    uint64_t *hand;      /* [T][W] hand-off time */
    uint32_t *uncovered; /* [T] reports of the tick not yet covered */
    uint64_t *covered;   /* [W] highest covered version */
    uint64_t oldest;     /* oldest tick with uncovered reports (last+1: none) */
    uint64_t last;       /* newest tick begun */
    uint64_t skip;       /* ticks <= skip give no sample */
    uint64_t ahead;      /* cut entries above any reported version (finder bug) */
    hist h;
} tracker;

static void tracker_init(tracker *tr, size_t W)
{
    memset(tr, 0, sizeof *tr);
    tr->W = W;
    tr->T = 64;
    while (tr->T * W < (1u << 20)) /* about 8 MiB of timestamps */
        tr->T *= 2;
    tr->hand = xcalloc(tr->T * W, sizeof *tr->hand);
    tr->uncovered = xcalloc(tr->T, sizeof *tr->uncovered);
    tr->covered = xcalloc(W, sizeof *tr->covered);
    tr->oldest = 1;
    tr->skip = 2;
}

static void tracker_free(tracker *tr)
{
    free(tr->hand);
    free(tr->uncovered);
    free(tr->covered);
}

/* Room for one more tick in the ring? */
static bool tracker_room(const tracker *tr)
{
    return tr->last + 1 - tr->oldest < tr->T;
}

static void tracker_begin_tick(tracker *tr, uint64_t k)
{
    if (k != tr->last + 1 || !tracker_room(tr))
        die("internal: tick ring overflow (the cut lags %" PRIu64 " ticks)", k - tr->oldest);
    tr->last = k;
    tr->uncovered[k & (tr->T - 1)] = (uint32_t)tr->W;
}

static inline void tracker_hand(tracker *tr, uint64_t k, size_t w, uint64_t t)
{
    tr->hand[(k & (tr->T - 1)) * tr->W + w] = t;
}

static void tracker_cut(tracker *tr, size_t w, uint64_t c, uint64_t t)
{
    if (c <= tr->covered[w])
        return;
    if (c > tr->last) {
        tr->ahead++;
        c = tr->last;
    }
    for (uint64_t v = tr->covered[w] + 1; v <= c; v++) {
        uint64_t slot = v & (tr->T - 1);
        if (v > tr->skip) {
            uint64_t h = tr->hand[slot * tr->W + w];
            hist_add(&tr->h, t > h ? t - h : 0, 1);
        }
        tr->uncovered[slot]--;
    }
    tr->covered[w] = c;
    while (tr->oldest <= tr->last && tr->uncovered[tr->oldest & (tr->T - 1)] == 0)
        tr->oldest++;
}

static bool tracker_done(const tracker *tr)
{
    return tr->oldest > tr->last;
}

/* ------------------------------------------------------------------------ */
/* results                                                                  */

enum path { PATH_INPROC, PATH_TCP };
enum load { LOAD_PACED, LOAD_SAT };

typedef struct result {
    size_t W;
    enum path path;
    enum load load;
    double rate;      /* reports answered per second */
    double p50, p99;  /* ns, NAN if no sample */
    uint64_t samples;
    uint64_t uncovered; /* reports never covered before the drain timeout */
    char notes[256];
} result;

typedef struct options {
    size_t workers[16];
    size_t nworkers;
    bool do_inproc, do_tcp, do_paced, do_sat;
    double seconds;
    double period_ms;
    double dep_prob;
    size_t conn_workers;
    double sync_interval_us;
    uint64_t seed;
    const char *finder_bin;
    const char *tmpdir;
    const char *finder_addr; /* a running finder (e.g. a Raft leader's agent) */
    pid_t finder_pid;        /* its process, for its CPU time (0: unknown) */
    const char *label;       /* the path column of TCP rows */
} options;

static const options *g_opts;

static void fill_latency(result *r, const tracker *tr)
{
    r->p50 = hist_quantile(&tr->h, 0.50);
    r->p99 = hist_quantile(&tr->h, 0.99);
    r->samples = tr->h.n;
    uint64_t unc = 0;
    for (uint64_t k = tr->oldest; k <= tr->last; k++)
        unc += tr->uncovered[k & (tr->T - 1)];
    r->uncovered = unc;
}

static void note(result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(result *r, const char *fmt, ...)
{
    size_t len = strlen(r->notes);
    if (len && len + 2 < sizeof r->notes) {
        memcpy(r->notes + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->notes + len, sizeof r->notes - len, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* in-process                                                               */

static void inproc_publish(dpr_finder *f)
{
    if (!dpr_finder_dirty(f))
        return;
    dpr_finder_state st;
    int rc = dpr_finder_get_state(f, &st);
    if (rc != 0)
        die("dpr_finder_get_state: %s", strerror(-rc));
    rc = dpr_finder_publish(f, st.generation);
    dpr_finder_state_free(&st);
    if (rc != 0)
        die("dpr_finder_publish: %s", strerror(-rc));
}

static void run_inproc(const options *o, size_t W, enum load load, result *r)
{
    workload wl;
    tracker tr;
    dpr_finder *f = NULL;
    int rc;

    workload_init(&wl, W, o->seed, o->dep_prob);
    tracker_init(&tr, W);
    if ((rc = dpr_finder_new(&f)) != 0)
        die("dpr_finder_new: %s", strerror(-rc));
    uint64_t world_line = 0;
    for (size_t i = 0; i < W; i++) {
        uint64_t wline, restore;
        if ((rc = dpr_finder_add_worker(f, wl.ids[i], &wline, &restore)) != 0)
            die("dpr_finder_add_worker: %s", strerror(-rc));
        if (restore != 0)
            die("fresh worker told to restore version %" PRIu64, restore);
        world_line = wline;
    }
    inproc_publish(f);

    const uint64_t period = (uint64_t)(o->period_ms * 1e6);
    const uint64_t t0 = dpr_mono_ns(), end = t0 + (uint64_t)(o->seconds * 1e9);
    uint64_t reports = 0, busy = 0, max_late = 0, t_stop = t0;
    for (uint64_t k = 1;; k++) {
        check_signal();
        if (load == LOAD_PACED) {
            uint64_t due = t0 + (k - 1) * period;
            if (due >= end)
                break;
            uint64_t t = dpr_mono_ns();
            if (t < due)
                sleep_until(due);
            else if (t - due > max_late)
                max_late = t - due;
        }
        uint64_t ts = dpr_mono_ns();
        if (ts >= end)
            break;
        tracker_begin_tick(&tr, k);
        for (size_t i = 0; i < W; i++) {
            dpr_dep dep;
            size_t nd = workload_deps(&wl, i, k, &dep);
            tracker_hand(&tr, k, i, dpr_mono_ns());
            rc = dpr_finder_report(f, world_line, wl.ids[i], k, &dep, nd);
            if (rc != 0)
                die("dpr_finder_report(worker %" PRIu64 ", version %" PRIu64 "): %s",
                    wl.ids[i], k, strerror(-rc));
        }
        reports += W;
        inproc_publish(f);
        uint64_t tc = dpr_mono_ns();
        for (size_t i = 0; i < W; i++)
            tracker_cut(&tr, i, dpr_finder_cut_of(f, wl.ids[i]), tc);
        t_stop = dpr_mono_ns();
        busy += t_stop - ts;
    }
    double elapsed = (double)(t_stop - t0) / 1e9;
    if (load == LOAD_PACED) /* the schedule's span, not up to the last tick's end */
        elapsed = (double)(reports / W) * (double)period / 1e9;
    r->W = W;
    r->path = PATH_INPROC;
    r->load = load;
    r->rate = elapsed > 0 ? (double)reports / elapsed : 0;
    fill_latency(r, &tr);
    if (load == LOAD_PACED) {
        note(r, "busy %.2f%% of wall time", 100.0 * (double)busy / (double)(t_stop - t0));
        if (max_late > period / 10)
            note(r, "ticks up to %.1f ms late", (double)max_late / 1e6);
    } else {
        note(r, "%.1f s, %" PRIu64 " reports", elapsed, reports);
    }
    if (tr.ahead)
        note(r, "FINDER BUG: %" PRIu64 " cut entries above reported versions", tr.ahead);
    dpr_finder_free(f);
    tracker_free(&tr);
    workload_free(&wl);
}

/* ------------------------------------------------------------------------ */
/* TCP: buffers, connections, the dpr-finder process                        */

/* Requests are built with common/resp.h; the bench dies when memory runs out. */
static void check_buf(const dpr_buf *b)
{
    if (dpr_buf_failed(b))
        die("out of memory");
}

typedef struct conn {
    int fd;
    dpr_buf out;           /* requests not yet sent */
    redisReader *rd;
    size_t w0, w1;         /* workers [w0, w1) report over this connection */
    uint64_t outstanding;  /* commands without a reply */
    /* ticks written and not fully answered, oldest first (FIFO ring) */
    struct batch { uint64_t t, left; } *fifo;
    size_t fifo_cap, fifo_head, fifo_len;
} conn;

static void fifo_push(conn *c, uint64_t t, uint64_t n)
{
    if (c->fifo_len == c->fifo_cap) {
        size_t cap = c->fifo_cap ? 2 * c->fifo_cap : 64;
        struct batch *nb = xcalloc(cap, sizeof *nb);
        for (size_t i = 0; i < c->fifo_len; i++)
            nb[i] = c->fifo[(c->fifo_head + i) % c->fifo_cap];
        free(c->fifo);
        c->fifo = nb;
        c->fifo_cap = cap;
        c->fifo_head = 0;
    }
    c->fifo[(c->fifo_head + c->fifo_len) % c->fifo_cap] = (struct batch){ t, n };
    c->fifo_len++;
}

/* One report answered: its hand-off time. */
static uint64_t fifo_answer(conn *c)
{
    if (c->fifo_len == 0)
        die("reply without a request");
    struct batch *b = &c->fifo[c->fifo_head];
    uint64_t t = b->t;
    if (--b->left == 0) {
        c->fifo_head = (c->fifo_head + 1) % c->fifo_cap;
        c->fifo_len--;
    }
    return t;
}

static void conn_open(conn *c, const struct sockaddr_storage *sa, socklen_t salen)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    if (connect(c->fd, (const struct sockaddr *)sa, salen) != 0)
        die("connect to dpr-finder: %s", strerror(errno));
    int one = 1;
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        die("setsockopt TCP_NODELAY: %s", strerror(errno));
    int fl = fcntl(c->fd, F_GETFL);
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
        die("fcntl O_NONBLOCK: %s", strerror(errno));
    c->rd = redisReaderCreate();
    if (!c->rd)
        die("redisReaderCreate failed");
}

static void conn_close(conn *c)
{
    if (c->fd >= 0 && close(c->fd) != 0)
        die("close: %s", strerror(errno));
    c->fd = -1;
    if (c->rd)
        redisReaderFree(c->rd);
    c->rd = NULL;
    dpr_buf_free(&c->out);
    free(c->fifo);
    c->fifo = NULL;
    c->fifo_cap = c->fifo_len = c->fifo_head = 0;
}

/* Writes what the socket takes now; keeps the rest. */
static void conn_flush(conn *c)
{
    size_t sent = 0;

    check_buf(&c->out);
    while (sent < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + sent, c->out.len - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            die("send to dpr-finder: %s", strerror(errno));
        }
        sent += (size_t)n;
    }
    dpr_buf_consume(&c->out, sent);
}

/* Reads what is there into the reader; false on EOF. */
static bool conn_read(conn *c)
{
    char tmp[65536];
    for (;;) {
        ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return true;
            die("recv from dpr-finder: %s", strerror(errno));
        }
        if (n == 0)
            return false;
        if (redisReaderFeed(c->rd, tmp, (size_t)n) != REDIS_OK)
            die("reply parser: %s", c->rd->errstr);
        if ((size_t)n < sizeof tmp)
            return true;
    }
}

/* Next complete reply or NULL. */
static redisReply *conn_reply(conn *c)
{
    void *rep = NULL;
    if (redisReaderGetReply(c->rd, &rep) != REDIS_OK)
        die("reply parser: %s", c->rd->errstr);
    return rep;
}

static uint64_t reply_u64(const redisReply *r, const char *what)
{
    if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0)
        return (uint64_t)r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
        uint64_t v;
        if (dpr_parse_u64(r->str, r->len, 0, UINT64_MAX, &v) == 0)
            return v;
    }
    die("unexpected %s in reply (type %d)", what, r->type);
}

static const char *fs_name(long type)
{
    switch ((unsigned long)type) {
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x794c7630: return "overlayfs";
    default: return "other";
    }
}

/* Starts dpr-finder on 127.0.0.1:0 with a fresh state dir (or, with
 * --finder-addr, uses the running finder there); fills *sa. */
static void finder_start(const options *o, struct sockaddr_storage *sa, socklen_t *salen,
                         char *fsdesc, size_t fslen)
{
    dpr_err err = DPR_ERR_INIT;

    if (o->finder_addr) {
        dpr_hostport hp;
        if (dpr_hostport_parse(o->finder_addr, 0, &hp, &err) < 0 ||
            dpr_hostport_resolve(&hp, false, sa, salen, &err) < 0)
            die("--finder-addr: %s", err.msg);
        snprintf(fsdesc, fslen, "a running finder");
        return;
    }

    snprintf(g_tmpdir, sizeof g_tmpdir, "%s/dpr-bench-finder.XXXXXX", o->tmpdir);
    if (!mkdtemp(g_tmpdir)) {
        int e = errno;
        g_tmpdir[0] = '\0';
        die("mkdtemp in %s: %s", o->tmpdir, strerror(e));
    }
    char state[PATH_MAX + 16], log[PATH_MAX + 16];
    snprintf(state, sizeof state, "%s/state", g_tmpdir);
    snprintf(log, sizeof log, "%s/finder.log", g_tmpdir);
    if (dpr_mkdir_p(state, 0700, &err) < 0)
        die("%s", err.msg);
    struct statfs sfs;
    if (statfs(state, &sfs) != 0)
        die("statfs %s: %s", state, strerror(errno));
    snprintf(fsdesc, fslen, "%s", fs_name((long)sfs.f_type));

    posix_spawn_file_actions_t fa;
    int rc;
    if ((rc = posix_spawn_file_actions_init(&fa)) != 0 ||
        (rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) != 0 ||
        (rc = posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0600)) != 0 ||
        (rc = posix_spawn_file_actions_adddup2(&fa, 2, 1)) != 0)
        die("posix_spawn_file_actions: %s", strerror(rc));
    char *argv[] = { (char *)o->finder_bin, "--listen", "127.0.0.1:0", "--state", state, NULL };
    pid_t pid;
    rc = posix_spawn(&pid, o->finder_bin, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        die("cannot start %s: %s", o->finder_bin, strerror(rc));
    g_child = pid;

    uint64_t deadline = dpr_mono_ns() + 10000000000ull;
    for (;;) {
        FILE *fp = fopen(log, "r");
        if (fp) {
            char line[512];
            while (fgets(line, sizeof line, fp)) {
                const char *p = strstr(line, "listening on ");
                if (!p)
                    continue;
                p += strlen("listening on ");
                dpr_hostport hp;
                if (dpr_hostport_parse_n(p, strcspn(p, " \r\n"), 0, &hp, NULL) < 0)
                    continue; /* not complete yet */
                if (dpr_hostport_resolve(&hp, false, sa, salen, &err) < 0)
                    die("finder address: %s", err.msg);
                fclose(fp);
                return;
            }
            fclose(fp);
        }
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            g_child = -1;
            die("dpr-finder exited during start-up (status %d)", st);
        }
        if (dpr_mono_ns() > deadline)
            die("dpr-finder did not print its address within 10 s");
        check_signal();
        usleep(10000);
    }
}

/* SIGTERM, wait up to 5 s, then SIGKILL. Returns a note if not clean. */
static void finder_stop(result *r)
{
    if (g_child > 0) {
        if (kill(g_child, SIGTERM) != 0)
            die("kill dpr-finder: %s", strerror(errno));
        uint64_t deadline = dpr_mono_ns() + 5000000000ull;
        int st = 0;
        for (;;) {
            pid_t w = waitpid(g_child, &st, WNOHANG);
            if (w == g_child)
                break;
            if (w < 0 && errno != EINTR)
                die("waitpid: %s", strerror(errno));
            if (dpr_mono_ns() > deadline) {
                note(r, "dpr-finder ignored SIGTERM for 5 s");
                kill_child();
                st = 0;
                break;
            }
            usleep(5000);
        }
        g_child = -1;
        if (WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0))
            note(r, "dpr-finder exit status %d on SIGTERM", st);
    }
    remove_tmpdir();
}

/* user+system CPU time of a process, in seconds */
static double proc_cpu(pid_t pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, fp);
    fclose(fp);
    line[n] = '\0';
    char *p = strrchr(line, ')');
    if (!p)
        return -1;
    unsigned long long ut, st;
    /* after ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return hz > 0 ? (double)(ut + st) / (double)hz : -1;
}

/* CPU time of this process, in seconds */
static double self_cpu(void)
{
    return (double)dpr_clock_ns(CLOCK_PROCESS_CPUTIME_ID) / 1e9;
}

/* ------------------------------------------------------------------------ */
/* TCP run                                                                  */

typedef struct tcp_run {
    const options *o;
    workload wl;
    tracker tr;
    conn *rep;      /* reporter connections */
    size_t nrep;
    conn poll;      /* DPR.SYNC poller */
    bool sync_out;  /* a SYNC is in flight */
    uint64_t syncs;
    uint64_t world_line;
    uint64_t sent, acked;
    bool registering; /* tcp_register() takes the replies itself */
    hist ack;         /* report -> +OK */
    struct pollfd *pfd;
} tcp_run;

static void sync_send(tcp_run *t)
{
    dpr_resp_array(&t->poll.out, 2);
    dpr_resp_bulk_str(&t->poll.out, "DPR.SYNC");
    dpr_resp_bulk_str(&t->poll.out, BENCH_DOMAIN);
    t->poll.outstanding++;
    t->sync_out = true;
    conn_flush(&t->poll);
}

static void sync_reply(tcp_run *t, redisReply *r)
{
    uint64_t tnow = dpr_mono_ns();
    if (r->type == REDIS_REPLY_ERROR)
        die("DPR.SYNC: %s", r->str);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[2]->type != REDIS_REPLY_ARRAY || r->element[2]->elements % 2)
        die("DPR.SYNC: unexpected reply shape");
    uint64_t wline = reply_u64(r->element[0], "world-line");
    if (wline != t->world_line)
        die("DPR.SYNC: world-line moved from %" PRIu64 " to %" PRIu64, t->world_line, wline);
    const redisReply *cut = r->element[2];
    for (size_t i = 0; i < cut->elements; i += 2) {
        uint64_t id = reply_u64(cut->element[i], "worker id");
        uint64_t v = reply_u64(cut->element[i + 1], "cut version");
        long idx = workload_index(&t->wl, id);
        if (idx < 0)
            die("DPR.SYNC: unknown worker %" PRIu64 " in the cut", id);
        tracker_cut(&t->tr, (size_t)idx, v, tnow);
    }
    t->syncs++;
    t->sync_out = false;
    t->poll.outstanding--;
}

/* Appends and writes tick k on every reporter connection. */
static void send_tick(tcp_run *t, uint64_t k)
{
    tracker_begin_tick(&t->tr, k);
    for (size_t c = 0; c < t->nrep; c++) {
        conn *cn = &t->rep[c];
        uint64_t th = dpr_mono_ns();
        for (size_t i = cn->w0; i < cn->w1; i++) {
            dpr_dep dep;
            size_t nd = workload_deps(&t->wl, i, k, &dep);
            dpr_resp_array(&cn->out, 5 + 2 * nd);
            dpr_buf_append(&cn->out, "$10\r\nDPR.REPORT\r\n", 17);
            dpr_resp_bulk_str(&cn->out, BENCH_DOMAIN);
            dpr_resp_bulk_u64(&cn->out, t->world_line);
            dpr_resp_bulk_u64(&cn->out, t->wl.ids[i]);
            dpr_resp_bulk_u64(&cn->out, k);
            if (nd) {
                dpr_resp_bulk_u64(&cn->out, dep.worker);
                dpr_resp_bulk_u64(&cn->out, dep.version);
            }
            tracker_hand(&t->tr, k, i, th);
        }
        cn->outstanding += cn->w1 - cn->w0;
        fifo_push(cn, th, cn->w1 - cn->w0);
        conn_flush(cn);
    }
    t->sent += t->wl.W;
}

/* One poll round: waits at most timeout_ns, handles replies and writes. */
static void tcp_pump(tcp_run *t, uint64_t timeout_ns)
{
    size_t n = t->nrep + 1;
    for (size_t c = 0; c < t->nrep; c++) {
        t->pfd[c].fd = t->rep[c].fd;
        t->pfd[c].events = POLLIN | (t->rep[c].out.len > 0 ? POLLOUT : 0);
        t->pfd[c].revents = 0;
    }
    t->pfd[t->nrep].fd = t->poll.fd;
    t->pfd[t->nrep].events = POLLIN | (t->poll.out.len > 0 ? POLLOUT : 0);
    t->pfd[t->nrep].revents = 0;
    struct timespec ts = { (time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u) };
    int rc = ppoll(t->pfd, (nfds_t)n, &ts, NULL);
    if (rc < 0) {
        if (errno == EINTR)
            return;
        die("ppoll: %s", strerror(errno));
    }
    for (size_t c = 0; c < n; c++) {
        short re = t->pfd[c].revents;
        if (!re)
            continue;
        conn *cn = c < t->nrep ? &t->rep[c] : &t->poll;
        if (re & POLLOUT)
            conn_flush(cn);
        if (re & (POLLIN | POLLHUP | POLLERR)) {
            if (!conn_read(cn))
                die("dpr-finder closed a connection");
            if (t->registering)
                continue;
            redisReply *r;
            while ((r = conn_reply(cn)) != NULL) {
                if (cn == &t->poll) {
                    sync_reply(t, r);
                } else {
                    if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0)
                        die("DPR.REPORT answered %s (reply type %d)", r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS ? r->str : "not +OK", r->type);
                    if (cn->outstanding == 0)
                        die("reply without a request");
                    cn->outstanding--;
                    t->acked++;
                    uint64_t th = fifo_answer(cn), ta = dpr_mono_ns();
                    if (t->tr.last > t->tr.skip)
                        hist_add(&t->ack, ta > th ? ta - th : 0, 1);
                }
                freeReplyObject(r);
            }
        }
    }
}

static void tcp_register(tcp_run *t)
{
    for (size_t c = 0; c < t->nrep; c++) {
        conn *cn = &t->rep[c];
        for (size_t i = cn->w0; i < cn->w1; i++) {
            dpr_resp_array(&cn->out, 3);
            dpr_resp_bulk_str(&cn->out, "DPR.WORKER.ADD");
            dpr_resp_bulk_str(&cn->out, BENCH_DOMAIN);
            dpr_resp_bulk_u64(&cn->out, t->wl.ids[i]);
        }
        cn->outstanding = cn->w1 - cn->w0;
        conn_flush(cn);
    }
    t->registering = true;
    uint64_t deadline = dpr_mono_ns() + 20000000000ull;
    bool have_wl = false;
    for (;;) {
        bool pending = false;
        for (size_t c = 0; c < t->nrep; c++) {
            conn *cn = &t->rep[c];
            redisReply *r;
            while (cn->outstanding && (r = conn_reply(cn)) != NULL) {
                if (r->type == REDIS_REPLY_ERROR)
                    die("DPR.WORKER.ADD: %s", r->str);
                if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
                    die("DPR.WORKER.ADD: unexpected reply shape");
                uint64_t wline = reply_u64(r->element[0], "world-line");
                uint64_t restore = reply_u64(r->element[1], "restore version");
                if (restore != 0)
                    die("fresh worker told to restore version %" PRIu64, restore);
                if (have_wl && wline != t->world_line)
                    die("world-line changed while adding fresh workers");
                t->world_line = wline;
                have_wl = true;
                cn->outstanding--;
                freeReplyObject(r);
            }
            if (cn->outstanding)
                pending = true;
        }
        if (!pending) {
            t->registering = false;
            break;
        }
        check_signal();
        if (dpr_mono_ns() > deadline)
            die("DPR.WORKER.ADD replies did not arrive within 20 s");
        tcp_pump(t, 10000000);
    }
}

static void run_tcp(const options *o, size_t W, enum load load, result *r)
{
    tcp_run t;
    memset(&t, 0, sizeof t);
    t.o = o;
    r->W = W;
    r->path = PATH_TCP;
    r->load = load;
    workload_init(&t.wl, W, o->seed, o->dep_prob);
    tracker_init(&t.tr, W);

    struct sockaddr_storage sa;
    socklen_t salen = sizeof sa;
    char fs[32];
    finder_start(o, &sa, &salen, fs, sizeof fs);
    t.nrep = (W + o->conn_workers - 1) / o->conn_workers;
    t.rep = xcalloc(t.nrep, sizeof *t.rep);
    t.pfd = xcalloc(t.nrep + 1, sizeof *t.pfd);
    for (size_t c = 0; c < t.nrep; c++) {
        conn_open(&t.rep[c], &sa, salen);
        t.rep[c].w0 = c * o->conn_workers;
        t.rep[c].w1 = t.rep[c].w0 + o->conn_workers < W ? t.rep[c].w0 + o->conn_workers : W;
    }
    conn_open(&t.poll, &sa, salen);
    tcp_register(&t);

    const uint64_t period = (uint64_t)(o->period_ms * 1e6);
    const uint64_t window = 2 * W > 1024 ? 2 * W : 1024;
    pid_t fpid = o->finder_addr ? o->finder_pid : g_child;
    double cpu0 = fpid > 0 ? proc_cpu(fpid) : -1, self0 = self_cpu();
    const uint64_t t0 = dpr_mono_ns(), end = t0 + (uint64_t)(o->seconds * 1e9);
    const uint64_t drain_end = end + 3000000000ull;
    uint64_t k = 0, max_late = 0, t_last_ack = t0, acked_at_end = 0;
    bool ended = false;
    const uint64_t sync_gap = (uint64_t)(o->sync_interval_us * 1e3);
    uint64_t next_sync = 0;
    for (;;) {
        check_signal();
        uint64_t tn = dpr_mono_ns();
        uint64_t timeout = 1000000; /* 1 ms */
        if (tn < end) {
            if (load == LOAD_PACED) {
                uint64_t due;
                while ((due = t0 + k * period) <= tn && due < end) {
                    if (tn - due > max_late)
                        max_late = tn - due;
                    if (!tracker_room(&t.tr))
                        die("the cut lags %" PRIu64 " ticks behind", k + 1 - t.tr.oldest);
                    send_tick(&t, ++k);
                    tn = dpr_mono_ns();
                }
                due = t0 + k * period;
                timeout = due > tn ? due - tn : 0;
            } else {
                if (t.sent - t.acked + W <= window && tracker_room(&t.tr))
                    send_tick(&t, ++k);
                /* keep going without sleeping while the window has room */
                timeout = (t.sent - t.acked + W <= window && tracker_room(&t.tr)) ? 0 : 1000000;
            }
            if (end - tn < timeout)
                timeout = end - tn;
        } else {
            if (!ended) {
                ended = true;
                acked_at_end = t.acked;
            }
            if (t.acked == t.sent && tracker_done(&t.tr))
                break;
            if (tn >= drain_end)
                break;
        }
        if (!t.sync_out) {
            if (tn >= next_sync) {
                sync_send(&t);
                next_sync = tn + sync_gap;
            } else if (next_sync - tn < timeout) {
                timeout = next_sync - tn;
            }
        }
        uint64_t before = t.acked;
        tcp_pump(&t, timeout);
        if (t.acked != before)
            t_last_ack = dpr_mono_ns();
    }
    double cpu1 = fpid > 0 ? proc_cpu(fpid) : -1, self1 = self_cpu();
    uint64_t t_end = dpr_mono_ns();
    (void)t_end;
    /* throughput: reports answered between t0 and the last answer */
    double elapsed = (double)(t_last_ack - t0) / 1e9;
    if (load == LOAD_PACED && elapsed < (double)k * (double)period / 1e9)
        elapsed = (double)k * (double)period / 1e9; /* the schedule's span */
    r->rate = elapsed > 0 ? (double)t.acked / elapsed : 0;
    fill_latency(r, &t.tr);
    if (t.ack.n) {
        char a50[32], a99[32];
        fmt_ns(a50, sizeof a50, hist_quantile(&t.ack, 0.5));
        fmt_ns(a99, sizeof a99, hist_quantile(&t.ack, 0.99));
        note(r, "report→+OK p50 %s, p99 %s", a50, a99);
    }
    if (load == LOAD_PACED && max_late > period / 10)
        note(r, "ticks up to %.1f ms late", (double)max_late / 1e6);
    if (t.acked != t.sent)
        note(r, "%" PRIu64 " reports unanswered after 3 s", t.sent - t.acked);
    if (cpu0 >= 0 && cpu1 >= 0 && elapsed > 0)
        note(r, "finder CPU %.0f%%", 100.0 * (cpu1 - cpu0) / elapsed);
    if (elapsed > 0)
        note(r, "bench CPU %.0f%%", 100.0 * (self1 - self0) / elapsed);
    note(r, "%.0f SYNC/s", elapsed > 0 ? (double)t.syncs / elapsed : 0);
    note(r, "%zu+1 conns, state on %s", t.nrep, fs);
    if (load == LOAD_SAT)
        note(r, "%" PRIu64 " answered in %.1f s", t.acked, elapsed);
    (void)acked_at_end;
    if (t.tr.ahead)
        note(r, "FINDER BUG: %" PRIu64 " cut entries above reported versions", t.tr.ahead);

    for (size_t c = 0; c < t.nrep; c++)
        conn_close(&t.rep[c]);
    conn_close(&t.poll);
    finder_stop(r);
    free(t.rep);
    free(t.pfd);
    tracker_free(&t.tr);
    workload_free(&t.wl);
}

/* ------------------------------------------------------------------------ */
/* the file store alone: what one group commit costs                        */

#define SAVES 200

static void measure_saves(const options *o, size_t W, double *p50, double *p99, char *fs, size_t fslen)
{
    snprintf(g_tmpdir, sizeof g_tmpdir, "%s/dpr-bench-store.XXXXXX", o->tmpdir);
    if (!mkdtemp(g_tmpdir)) {
        int e = errno;
        g_tmpdir[0] = '\0';
        die("mkdtemp in %s: %s", o->tmpdir, strerror(e));
    }
    struct statfs sfs;
    if (statfs(g_tmpdir, &sfs) != 0)
        die("statfs %s: %s", g_tmpdir, strerror(errno));
    snprintf(fs, fslen, "%s", fs_name((long)sfs.f_type));
    dpr_store *st = NULL;
    dpr_err err = DPR_ERR_INIT;
    int rc = dpr_store_file_open(g_tmpdir, &st, &err);
    if (rc != 0)
        die("dpr_store_file_open: %s", dpr_err_str(&err, rc));
    dpr_finder_state fst;
    memset(&fst, 0, sizeof fst);
    fst.world_line = DPR_FINDER_FIRST_WORLD_LINE;
    fst.nworkers = W;
    fst.workers = xcalloc(W, sizeof *fst.workers);
    dpr_domain_state dom;
    memset(&dom, 0, sizeof dom);
    snprintf(dom.name, sizeof dom.name, "%s", DPR_DOMAIN_DEFAULT);
    dpr_domains_state all = {.n = 1, .domains = &dom};
    hist *h = xcalloc(1, sizeof *h);
    for (int n = 1; n <= SAVES; n++) {
        fst.generation = (uint64_t)n;
        all.generation = (uint64_t)n;
        for (size_t i = 0; i < W; i++) {
            fst.workers[i].worker = i + 1;
            fst.workers[i].durable = (uint64_t)n;
            fst.workers[i].cut = (uint64_t)n - 1;
        }
        uint64_t t = dpr_mono_ns();
        dom.state = fst;
        rc = dpr_store_save(st, &all);
        uint64_t d = dpr_mono_ns() - t;
        if (rc != 0)
            die("dpr_store_save: %s", dpr_store_error(st));
        if (n > 2)
            hist_add(h, d, 1);
    }
    *p50 = hist_quantile(h, 0.5);
    *p99 = hist_quantile(h, 0.99);
    free(h);
    free(fst.workers);
    dpr_store_close(st);
    remove_tmpdir();
}

/* ------------------------------------------------------------------------ */
/* output                                                                   */

static void fmt_rate(char *out, size_t n, double v)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", v);
    size_t len = strlen(digits), o = 0;
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

static void fmt_ns(char *out, size_t n, double ns)
{
    if (isnan(ns))
        snprintf(out, n, "-");
    else if (ns < 1000)
        snprintf(out, n, "%.2f µs", ns / 1e3);
    else if (ns < 1e6)
        snprintf(out, n, "%.0f µs", ns / 1e3);
    else
        snprintf(out, n, "%.2f ms", ns / 1e6);
}

#define GOAL_RATE 1000000.0
/* p99 goals: one dpr-finder (file store); a finder of a Raft cluster */
#define GOAL_P99_NS (g_opts->finder_addr ? 10e6 : 5e6)
#define GOAL_P99_TEXT (g_opts->finder_addr ? "10 ms" : "5 ms")
#define GOAL_P99_W 512

static const char *goal_cell(const result *r, char *out, size_t n)
{
    out[0] = '\0';
    if (r->path == PATH_INPROC && r->load == LOAD_SAT)
        snprintf(out, n, "≥ 1,000,000/s: %s", r->rate >= GOAL_RATE ? "**met**" : "**not met**");
    else if (r->path == PATH_TCP && r->load == LOAD_PACED && r->W == GOAL_P99_W)
        snprintf(out, n, "p99 < %s: %s", GOAL_P99_TEXT,
                 !isnan(r->p99) && r->p99 < GOAL_P99_NS && r->uncovered == 0 ? "**met**" : "**not met**");
    return out;
}

static void print_table(const options *o, const result *res, size_t nres)
{
    char period[32];
    snprintf(period, sizeof period, "%g ms", o->period_ms);
    printf("| workers | path | load | reports/s | report→cut p50 | report→cut p99 | goal | notes |\n");
    printf("|---:|---|---|---:|---:|---:|---|---|\n");
    for (size_t i = 0; i < nres; i++) {
        const result *r = &res[i];
        char rate[48], p50[32], p99[32], goal[64], notes[320];
        fmt_rate(rate, sizeof rate, r->rate);
        fmt_ns(p50, sizeof p50, r->p50);
        fmt_ns(p99, sizeof p99, r->p99);
        snprintf(notes, sizeof notes, "%s", r->notes);
        if (r->uncovered) {
            size_t len = strlen(notes);
            snprintf(notes + len, sizeof notes - len, "%s%" PRIu64 " reports never covered",
                     len ? "; " : "", r->uncovered);
        }
        printf("| %zu | %s | %s%s | %s | %s | %s | %s | %s |\n", r->W,
               r->path == PATH_INPROC ? "in-process" : g_opts->label ? g_opts->label : "TCP",
               r->load == LOAD_PACED ? "paced " : "saturation",
               r->load == LOAD_PACED ? period : "", rate, p50, p99,
               goal_cell(r, goal, sizeof goal), notes);
    }
    printf("\n");

    /* goal summary */
    bool any = false;
    for (size_t i = 0; i < nres; i++) {
        const result *r = &res[i];
        if (!(r->path == PATH_INPROC && r->load == LOAD_SAT))
            continue;
        if (!any)
            printf("Goal ≥ 1,000,000 reports/s on one core, in-process (saturation rows):\n");
        any = true;
        char rate[48];
        fmt_rate(rate, sizeof rate, r->rate);
        if (r->rate >= GOAL_RATE)
            printf("- %zu workers: met (%s/s, %.1fx the goal)\n", r->W, rate, r->rate / GOAL_RATE);
        else
            printf("- %zu workers: **not met** (%s/s, %.0f%% short)\n", r->W, rate,
                   100.0 * (1.0 - r->rate / GOAL_RATE));
    }
    for (size_t i = 0; i < nres; i++) {
        const result *r = &res[i];
        if (!(r->path == PATH_TCP && r->load == LOAD_PACED && r->W == GOAL_P99_W))
            continue;
        char p99[32];
        fmt_ns(p99, sizeof p99, r->p99);
        if (!isnan(r->p99) && r->p99 < GOAL_P99_NS && r->uncovered == 0)
            printf("\nGoal report-to-cut p99 < %s at 512 workers over TCP (paced): met (p99 %s)\n",
                   GOAL_P99_TEXT, p99);
        else
            printf("\nGoal report-to-cut p99 < %s at 512 workers over TCP (paced): **not met** "
                   "(p99 %s, %.1fx the limit)\n", GOAL_P99_TEXT, p99, r->p99 / GOAL_P99_NS);
    }
}

/* ------------------------------------------------------------------------ */
/* command line                                                             */

static void usage(FILE *fp)
{
    fputs("usage: bench-finder [options]\n"
          "\n"
          "Throughput and report-to-cut latency of the DPR finder, in-process (core API)\n"
          "and over loopback TCP against a dpr-finder it starts. Prints a markdown table.\n"
          "\n"
          "  --workers LIST      comma-separated worker counts (default 8,64,512,4096)\n"
          "  --mode M            inproc, tcp or all (default all)\n"
          "  --load L            paced, saturation or all (default all)\n"
          "  --seconds S         duration of each run (default 5)\n"
          "  --period-ms MS      checkpoint period of every worker (default 25)\n"
          "  --dep-prob P        probability that a report depends on one other\n"
          "                      worker's same version (default 0.5)\n"
          "  --conn-workers N    workers per TCP connection (default 64)\n"
          "  --sync-interval-us U  least time between two DPR.SYNC polls (default 0:\n"
          "                      back to back, the next as soon as a reply is in)\n"
          "  --finder-bin PATH   dpr-finder binary for --mode tcp (default build/dpr-finder)\n"
          "  --tmpdir DIR        where the finder's temporary state dir goes (default $TMPDIR or /tmp)\n"
          "  --finder-addr H:P   --mode tcp against a running finder instead (e.g. the\n"
          "                      finder of a Raft cluster's leader; see bench/raft.py)\n"
          "  --finder-pid PID    that finder's process, for its CPU time\n"
          "  --label TEXT        the path column of TCP rows (default TCP)\n"
          "  --domain NAME       the DPR domain of TCP runs (default \"default\")\n"
          "  --seed N            random seed (default 1)\n"
          "  --help              this text\n",
          fp);
}

static double parse_double(const char *s, const char *flag, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "bench-finder: bad value '%s' for %s\n", s, flag);
        exit(2);
    }
    return v;
}

static void parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    static const size_t def_workers[] = { 8, 64, 512, 4096 };
    memcpy(o->workers, def_workers, sizeof def_workers);
    o->nworkers = 4;
    o->do_inproc = o->do_tcp = o->do_paced = o->do_sat = true;
    o->seconds = 5;
    o->period_ms = 25;
    o->dep_prob = 0.5;
    o->conn_workers = 64;
    o->seed = 1;
    o->finder_bin = "build/dpr-finder";
    const char *td = getenv("TMPDIR");
    o->tmpdir = td && *td ? td : "/tmp";

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench-finder: unknown option or missing value: %s\n", a);
            usage(stderr);
            exit(2);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--workers")) {
            o->nworkers = 0;
            char *copy = strdup(v), *save = NULL;
            if (!copy)
                die("out of memory");
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (o->nworkers == sizeof o->workers / sizeof o->workers[0]) {
                    fprintf(stderr, "bench-finder: too many worker counts\n");
                    exit(2);
                }
                o->workers[o->nworkers++] = (size_t)parse_double(tok, "--workers", 1, 1 << 20);
            }
            free(copy);
            if (!o->nworkers) {
                fprintf(stderr, "bench-finder: --workers needs a list\n");
                exit(2);
            }
        } else if (!strcmp(a, "--mode")) {
            o->do_inproc = !strcmp(v, "inproc") || !strcmp(v, "all");
            o->do_tcp = !strcmp(v, "tcp") || !strcmp(v, "all");
            if (!o->do_inproc && !o->do_tcp) {
                fprintf(stderr, "bench-finder: --mode is inproc, tcp or all\n");
                exit(2);
            }
        } else if (!strcmp(a, "--load")) {
            o->do_paced = !strcmp(v, "paced") || !strcmp(v, "all");
            o->do_sat = !strcmp(v, "saturation") || !strcmp(v, "sat") || !strcmp(v, "all");
            if (!o->do_paced && !o->do_sat) {
                fprintf(stderr, "bench-finder: --load is paced, saturation or all\n");
                exit(2);
            }
        } else if (!strcmp(a, "--seconds")) {
            o->seconds = parse_double(v, a, 0.1, 3600);
        } else if (!strcmp(a, "--period-ms")) {
            o->period_ms = parse_double(v, a, 0.01, 60000);
        } else if (!strcmp(a, "--dep-prob")) {
            o->dep_prob = parse_double(v, a, 0, 1);
        } else if (!strcmp(a, "--conn-workers")) {
            o->conn_workers = (size_t)parse_double(v, a, 1, 1 << 20);
        } else if (!strcmp(a, "--sync-interval-us")) {
            o->sync_interval_us = parse_double(v, a, 0, 1e7);
        } else if (!strcmp(a, "--finder-bin")) {
            o->finder_bin = v;
        } else if (!strcmp(a, "--tmpdir")) {
            o->tmpdir = v;
        } else if (!strcmp(a, "--finder-addr")) {
            o->finder_addr = v;
        } else if (!strcmp(a, "--finder-pid")) {
            o->finder_pid = (pid_t)parse_double(v, a, 1, 4194304);
        } else if (!strcmp(a, "--label")) {
            o->label = v;
        } else if (!strcmp(a, "--domain")) {
            if (!dpr_domain_valid(v, strlen(v))) {
                fprintf(stderr, "bench-finder: bad domain name '%s'\n", v);
                exit(2);
            }
            g_domain = v;
        } else if (!strcmp(a, "--seed")) {
            o->seed = (uint64_t)parse_double(v, a, 0, 9007199254740992.0);
        } else {
            fprintf(stderr, "bench-finder: unknown option %s\n", a);
            usage(stderr);
            exit(2);
        }
    }
}

int main(int argc, char **argv)
{
    options o;
    parse_args(argc, argv, &o);
    g_opts = &o;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGINT, &sa, NULL) != 0 ||
        sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGHUP, &sa, NULL) != 0)
        die("sigaction: %s", strerror(errno));
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        die("signal: %s", strerror(errno));
    if (o.do_tcp && !o.finder_addr && access(o.finder_bin, X_OK) != 0)
        die("%s: %s (build it, or pass --finder-bin)", o.finder_bin, strerror(errno));

    result *res = xcalloc(o.nworkers * 4, sizeof *res);
    size_t nres = 0;
    for (size_t wi = 0; wi < o.nworkers; wi++) {
        size_t W = o.workers[wi];
        for (int p = 0; p < 2; p++) {
            if ((p == 0 && !o.do_inproc) || (p == 1 && !o.do_tcp))
                continue;
            for (int l = 0; l < 2; l++) {
                if ((l == 0 && !o.do_paced) || (l == 1 && !o.do_sat))
                    continue;
                fprintf(stderr, "bench-finder: %zu workers, %s, %s ...\n", W,
                        p == 0 ? "in-process" : "TCP", l == 0 ? "paced" : "saturation");
                result *r = &res[nres++];
                if (p == 0)
                    run_inproc(&o, W, l == 0 ? LOAD_PACED : LOAD_SAT, r);
                else
                    run_tcp(&o, W, l == 0 ? LOAD_PACED : LOAD_SAT, r);
            }
        }
    }
    printf("Setup: lockstep checkpoints every %g ms; each report depends with probability %g on "
           "the same version of one uniformly random other worker; %g s per run; seed %" PRIu64
           "; TCP: %zu workers per connection + 1 DPR.SYNC poller.\n\n",
           o.period_ms, o.dep_prob, o.seconds, o.seed, o.conn_workers);
    print_table(&o, res, nres);
    free(res);
    if (o.do_tcp && !o.finder_addr) {
        printf("\nThe finder's durable save alone (dpr_store_save of the file store: write, fsync, "
               "rename, fsync of the directory; %d saves in --tmpdir). dpr-finder does one per "
               "event-loop iteration that changed state, before any reply or SYNC shows the change:\n\n",
               SAVES);
        printf("| workers | save p50 | save p99 | filesystem |\n|---:|---:|---:|---|\n");
        for (size_t wi = 0; wi < o.nworkers; wi++) {
            double p50, p99;
            char fs[32], a[32], b[32];
            measure_saves(&o, o.workers[wi], &p50, &p99, fs, sizeof fs);
            fmt_ns(a, sizeof a, p50);
            fmt_ns(b, sizeof b, p99);
            printf("| %zu | %s | %s | %s |\n", o.workers[wi], a, b, fs);
        }
    }
    if (fflush(stdout) != 0)
        die("stdout: %s", strerror(errno));
    return 0;
}
