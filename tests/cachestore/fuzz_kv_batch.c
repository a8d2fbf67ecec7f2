/*
 * fuzz_kv_batch.c - DPR.BATCH headers and dependencies against a live worker
 * (issue 8: one forged batch froze the cut and later crashed shards).
 *
 * Not only the decoder: the input is a program of steps that dpr-kv's batch
 * path and its finder link would take, applied to one dpr_worker:
 *
 *   'B'  a batch built from fields (world-line, version lower bound and
 *        dependencies chosen near the interesting values: the bound, the
 *        worker's highest version, 2^62, 2^64 - 1, raw; the domain: the
 *        worker's, another deployment's or raw), encoded with the wire
 *        encoder and decoded again;
 *   'W'  raw bytes as a request header (dpr_wire_decode_request);
 *   'R'  raw bytes as a RESP stream (kv_parse), whose DPR.BATCH commands'
 *        headers are decoded;
 *   'S'  a DPR.SYNC answer: the finder's max version, its registered
 *        workers, this worker's cut entry; or a newer world-line with the
 *        cut to restore (dpr_worker_rollback), as kv_dpr.c's on_sync does;
 *   'C'  a periodic checkpoint (opens cluster max + 1, as kv_dpr.c does), or
 *        the shutdown one; 'D' the oldest pending checkpoint completes;
 *   'T'  time passes (the allowance grows).
 *
 * Every decoded batch goes through what kv_server.c's batch_run does: a
 * batch of another domain is checked (and refused) before admission, at any
 * world-line; otherwise admission, dpr_worker_check_batch against the
 * bounds learned so far, dpr_worker_execute, and on -EAGAIN a checkpoint at
 * the batch's target. Checks after every step:
 *   - the check agrees with an independent statement of the rules
 *     (worker.h): accepted iff the domain is the worker's, every version is
 *     at most the worker's highest or below both the bound and 2^62, every
 *     other worker named is known; -EXDEV exactly for another domain, then
 *     -EINVAL exactly for what no answer can make valid;
 *   - a refused batch changes nothing (the worker's fields are compared);
 *   - an accepted batch runs, at least at its target; checkpoint_begin,
 *     checkpoint_complete and rollback never fail on a state reached this
 *     way (no -EOVERFLOW): versions stay below 2^63 plus one per step;
 *   - the worker's invariants (version <= highest, durable < version,
 *     cut <= durable), and every reported dependency is on another worker
 *     the finder listed at some point, at most the reported version.
 *
 * Seeds (corpus/fuzz_kv_batch/) are programs that reach each of these;
 * their raw headers ('W', 'R') are of wire format 2, most with the id of
 * DPR_DOMAIN_DEFAULT (the worker's domain here), some with another.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dpr/depset.h"
#include "dpr/domain.h"
#include "dpr/err.h"
#include "dpr/wire.h"
#include "dpr/worker.h"
#include "kv_resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

#define SELF 5
#define DOMAIN "default" /* the worker's domain (DPR_DOMAIN_DEFAULT) */
#define MAX_WORKERS 8
#define MAX_DEPS 6
#define FINDER_MAX ((uint64_t)INT64_MAX) /* kv_finder_reply.c refuses larger numbers */

typedef struct input {
    const uint8_t *p;
    size_t n;
} input;

static uint8_t u8(input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static uint64_t u64(input *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)u8(in) << (8 * i);
    return v;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static uint64_t sat_sub(uint64_t a, uint64_t b)
{
    return a < b ? 0 : a - b;
}

typedef struct model {
    dpr_worker w;
    uint64_t now_ms, synced_ms;
    uint64_t cluster_max;        /* as kv_dpr.c keeps it: never lowered */
    uint64_t workers[MAX_WORKERS]; /* of the last DPR.SYNC: ascending, no duplicates */
    size_t nworkers;
    dpr_depset ever; /* every worker a DPR.SYNC listed (value 1) */
    uint64_t steps;
} model;

static dpr_worker_bounds bounds(const model *m)
{
    dpr_worker_bounds b = {m->cluster_max, m->workers, m->nworkers, m->now_ms - m->synced_ms};
    return b;
}

static bool listed(const model *m, uint64_t id)
{
    for (size_t i = 0; i < m->nworkers; i++)
        if (m->workers[i] == id)
            return true;
    return false;
}

/* A version near something interesting. */
static uint64_t pick_version(model *m, input *in)
{
    dpr_worker_bounds b = bounds(m);
    uint64_t bound = dpr_worker_version_bound(&m->w, &b);
    uint8_t sel = u8(in);
    int64_t delta = (int8_t)u8(in);
    uint64_t base;

    switch (sel % 8) {
    case 0:
        return u64(in);
    case 1:
        return (uint64_t)(uint8_t)delta; /* small */
    case 2:
        base = bound;
        break;
    case 3:
        base = m->w.highest;
        break;
    case 4:
        base = DPR_WORKER_VERSION_LIMIT;
        break;
    case 5:
        base = UINT64_MAX;
        break;
    case 6:
        base = m->cluster_max;
        break;
    default:
        base = m->w.version;
        break;
    }
    return delta >= 0 ? sat_add(base, (uint64_t)delta) : sat_sub(base, (uint64_t)-delta);
}

static uint64_t pick_worker(model *m, input *in)
{
    uint8_t sel = u8(in);
    switch (sel % 4) {
    case 0:
        return SELF;
    case 1:
        return m->nworkers ? m->workers[u8(in) % m->nworkers] : SELF;
    case 2:
        return u64(in);
    default:
        return u8(in) % 16;
    }
}

/* The rules of worker.h stated again, independently: 0, -EINVAL, or 1 for
 * "refused, but a fresher answer could change that". */
static int expected(const model *m, const dpr_request_hdr *h)
{
    if (h->domain != m->w.domain)
        return -EXDEV;
    dpr_worker_bounds b = bounds(m);
    /* the workers listed, per millisecond since the answer; 2^20 on top */
    uint64_t rate = m->nworkers > 1 ? m->nworkers : 1;
    uint64_t allowance = sat_add(DPR_WORKER_SLACK, sat_mul(rate, b.since_sync_ms));
    uint64_t soft = sat_add(m->cluster_max, allowance);
    bool never = false, stale = false;

    for (int64_t i = -1; i < (int64_t)h->dep_count; i++) {
        uint64_t worker = SELF, version = h->version_lb;
        bool dep = i >= 0;
        if (dep)
            dpr_wire_request_dep(h, (uint32_t)i, &worker, &version);
        if (dep && version == 0)
            continue;
        if (dep && worker == m->w.id) {
            never |= version > m->w.highest;
            continue;
        }
        if (dep && !listed(m, worker))
            stale = true;
        if (version <= m->w.highest)
            continue;
        if (version >= DPR_WORKER_VERSION_LIMIT)
            never = true;
        else if (version > soft)
            stale = true;
    }
    return never ? -EINVAL : stale ? 1 : 0;
}

typedef struct snapshot {
    uint64_t world_line, version, open_batches, durable, cut, highest;
    size_t open_deps, nsealed;
} snapshot;

static snapshot snap(const dpr_worker *w)
{
    snapshot s = {w->world_line,
                  w->version,
                  w->open_batches,
                  w->durable,
                  w->cut,
                  w->highest,
                  dpr_depset_count(&w->open_deps),
                  w->nsealed};
    return s;
}

static void invariants(const model *m)
{
    const dpr_worker *w = &m->w;
    REQUIRE(w->version <= w->highest);
    REQUIRE(w->durable < w->version);
    REQUIRE(w->cut <= w->durable);
    /* from input, versions reach at most 2^63 - 1 (the finder's numbers) or
     * 2^62 - 1 (batches); the worker adds one per step at most */
    REQUIRE(w->highest <= FINDER_MAX + 1 + m->steps);
    size_t it = 0;
    dpr_dep d;
    while (dpr_depset_next(&w->open_deps, &it, &d)) {
        REQUIRE(d.worker != w->id && d.version <= w->version);
        REQUIRE(dpr_depset_get(&m->ever, d.worker) != 0);
    }
}

/* kv_server.c's batch_run for one decoded header. */
static void run_batch(model *m, const dpr_request_hdr *h)
{
    dpr_worker_bounds b = bounds(m);
    dpr_err err = DPR_ERR_INIT;
    uint64_t v = 0, sealed = 0;
    int r;

    if (h->domain != m->w.domain) {
        /* kv_server.c refuses it before admission, whatever its world-line:
         * a REFUSED answer with this domain's world-line would roll the
         * other domain's session back */
        snapshot before = snap(&m->w);
        REQUIRE(expected(m, h) == -EXDEV);
        r = dpr_worker_check_batch(&m->w, h, &b, &err);
        REQUIRE(r == -EXDEV && err.code == r && err.msg[0] != '\0');
        snapshot after = snap(&m->w);
        REQUIRE(memcmp(&before, &after, sizeof(before)) == 0);
        return;
    }
    if (dpr_worker_admit(&m->w, h->world_line) != DPR_ADMIT_EXECUTE)
        return; /* refused with the newer world-line, or parked: nothing runs */
    snapshot before = snap(&m->w);
    int want = expected(m, h);
    r = dpr_worker_check_batch(&m->w, h, &b, &err);
    if (r < 0) {
        REQUIRE(r == -EINVAL || r == -ENXIO || r == -ERANGE);
        REQUIRE(err.code == r && err.msg[0] != '\0');
        REQUIRE(want == (r == -EINVAL ? -EINVAL : 1));
        snapshot after = snap(&m->w);
        REQUIRE(memcmp(&before, &after, sizeof(before)) == 0); /* changed nothing */
        return;
    }
    REQUIRE(want == 0);
    uint64_t target = dpr_worker_batch_target(h);
    REQUIRE(target <= dpr_worker_version_bound(&m->w, &b));
    r = dpr_worker_execute(&m->w, h, &v);
    if (r == -EAGAIN) {
        REQUIRE(m->w.open_batches > 0 && target > m->w.version);
        r = dpr_worker_checkpoint_begin(&m->w, target, &sealed);
        if (r == -ENOMEM)
            return;
        REQUIRE(r == 0);
        r = dpr_worker_execute(&m->w, h, &v);
    }
    if (r == -ENOMEM)
        return;
    REQUIRE(r == 0 && v == m->w.version && v >= target);
}

/* 'B': a batch from fields. */
static void step_fields(model *m, input *in)
{
    uint8_t raw[DPR_WIRE_REQUEST_FIXED + MAX_DEPS * DPR_WIRE_DEP_SIZE];
    dpr_request_hdr h = {.batch_id = 1, .op_count = 1};
    dpr_request_hdr d;
    uint8_t wl = u8(in);
    size_t ndeps = u8(in) % (MAX_DEPS + 1);

    h.world_line = wl % 8 == 0 ? m->w.world_line + 1 : wl % 8 == 1 ? 0 : m->w.world_line;
    /* the domain from the same byte's high bits (0 in most seeds: the own) */
    switch ((wl >> 3) & 7) {
    case 7: /* a session of another deployment */
        h.domain = dpr_domain_id("blue", 4);
        break;
    case 6:
        h.domain = u64(in);
        if (h.domain == 0)
            h.domain = 1; /* the encoder refuses 0 (no name has it) */
        break;
    default:
        h.domain = m->w.domain;
    }
    h.version_lb = pick_version(m, in);
    h.batch_id = 1 + u8(in);
    h.op_count = 1 + u8(in) % 4;
    /* the encoder writes exactly the pairs it is given through h.deps */
    for (size_t i = 0; i < ndeps; i++) {
        uint64_t worker = pick_worker(m, in), version = pick_version(m, in);
        dpr_put_u64(raw + DPR_WIRE_REQUEST_FIXED + 16 * i, worker);
        dpr_put_u64(raw + DPR_WIRE_REQUEST_FIXED + 16 * i + 8, version ? version : 1);
    }
    h.dep_count = (uint32_t)ndeps;
    h.deps = ndeps ? raw + DPR_WIRE_REQUEST_FIXED : NULL;
    /* re-encode and decode, as the bytes would travel */
    uint8_t buf[sizeof(raw)];
    ssize_t n = dpr_wire_encode_request(&h, NULL, buf, sizeof(buf));
    REQUIRE(n == (ssize_t)dpr_wire_request_size(ndeps));
    REQUIRE(dpr_wire_decode_request(buf, (size_t)n, &d, NULL) == n);
    run_batch(m, &d);
}

/* 'W': raw header bytes. */
static void step_wire(model *m, input *in)
{
    size_t len = u8(in) * 4u;
    if (len > in->n)
        len = in->n;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return;
    memcpy(copy, in->p, len);
    in->p += len;
    in->n -= len;
    dpr_request_hdr h;
    ssize_t r = dpr_wire_decode_request(copy, len, &h, NULL);
    if (r > 0 && (size_t)r == len)
        run_batch(m, &h);
    free(copy);
}

/* 'R': a RESP stream; each "DPR.BATCH <header>" request runs its header. */
static void step_resp(model *m, input *in)
{
    size_t hi = u8(in), lo = u8(in) & 3;
    size_t len = hi << 2 | lo;
    if (len > in->n)
        len = in->n;
    char *buf = malloc(len ? len : 1);
    if (!buf)
        return;
    memcpy(buf, in->p, len);
    in->p += len;
    in->n -= len;
    kv_parser p;
    kv_parser_init(&p, 1 << 16, 64);
    size_t pos = 0;
    for (;;) {
        size_t argc = 0;
        kv_arg *argv = NULL;
        const char *err = NULL;
        ssize_t r = kv_parse(&p, buf + pos, len - pos, &argc, &argv, &err);
        if (r <= 0)
            break;
        pos += (size_t)r;
        if (argc == 2 && argv[0].n == 9 && strncasecmp(argv[0].p, "DPR.BATCH", 9) == 0) {
            dpr_request_hdr h;
            ssize_t n = dpr_wire_decode_request((const uint8_t *)argv[1].p, argv[1].n, &h, NULL);
            if (n > 0 && (size_t)n == argv[1].n && h.op_count > 0)
                run_batch(m, &h);
        }
    }
    kv_parser_free(&p);
    free(buf);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* 'S': a DPR.SYNC answer, handled as kv_finder.c and kv_dpr.c do. */
static void step_sync(model *m, input *in)
{
    uint8_t kind = u8(in);
    uint64_t maxv = pick_version(m, in);
    size_t n = u8(in) % (MAX_WORKERS + 1);
    uint64_t ids[MAX_WORKERS];

    if (maxv > FINDER_MAX)
        return; /* kv_finder_reply.c: malformed answer, nothing learned */
    for (size_t i = 0; i < n; i++) {
        uint8_t sel = u8(in);
        ids[i] = sel % 4 == 0 ? u64(in) % (FINDER_MAX + 1) : (uint64_t)(sel % 12);
    }
    qsort(ids, n, sizeof(*ids), cmp_u64);
    m->nworkers = 0;
    for (size_t i = 0; i < n; i++) {
        if (m->nworkers && m->workers[m->nworkers - 1] == ids[i])
            continue;
        m->workers[m->nworkers++] = ids[i];
        if (dpr_depset_put_max(&m->ever, ids[i], 1) < 0)
            return;
    }
    m->synced_ms = m->now_ms;
    if (maxv > m->cluster_max)
        m->cluster_max = maxv;
    if (kind % 4 == 0) {
        /* a newer world-line: restore the finder's cut entry, which never
         * goes back (kv_dpr.c is fatal otherwise: not input from clients) */
        uint64_t restore = kind & 4 ? m->w.durable : m->w.cut + u8(in) % 4;
        if ((kind & 8) && m->w.cut < FINDER_MAX)
            restore = m->w.cut + u64(in) % (FINDER_MAX + 1 - m->w.cut);
        if (restore > FINDER_MAX || restore < m->w.cut)
            return;
        REQUIRE(dpr_worker_rollback(&m->w, m->w.world_line + 1 + u8(in) % 3, restore) == 0);
    } else if (kind % 4 == 1 && m->w.durable > m->w.cut) {
        /* the cut moved up to a durable version */
        dpr_worker_observe_cut(&m->w, m->w.cut + 1 + u8(in) % (m->w.durable - m->w.cut));
    }
}

/* 'C': a checkpoint as kv_dpr.c starts them. */
static void step_checkpoint(model *m, input *in)
{
    uint64_t sealed = 0;
    uint64_t next = u8(in) & 1 ? 0 : m->cluster_max + 1; /* shutdown: 0 */
    int r = dpr_worker_checkpoint_begin(&m->w, next, &sealed);
    REQUIRE(r == 0 || r == -ENOMEM);
}

/* 'D': the oldest pending checkpoint is durable; its report goes out. */
static void step_complete(model *m)
{
    for (size_t i = 0; i < m->w.nsealed; i++) {
        if (m->w.sealed[i].durable)
            continue;
        dpr_worker_report rep;
        uint64_t v = m->w.sealed[i].version;
        REQUIRE(dpr_worker_checkpoint_complete(&m->w, v, &rep) == 0);
        REQUIRE(rep.version == v && rep.worker == SELF);
        /* what the finder accepts: numbers up to 2^63 - 1, dependencies on
         * workers it knows, never pointing forward */
        REQUIRE(rep.version <= FINDER_MAX + 1 + m->steps);
        size_t it = 0;
        dpr_dep d;
        while (dpr_depset_next(rep.deps, &it, &d)) {
            REQUIRE(d.worker != SELF && d.version <= rep.version);
            REQUIRE(dpr_depset_get(&m->ever, d.worker) != 0);
        }
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in = {data, size};
    model m;
    uint64_t restored = u8(&in);
    if (restored % 4 == 0)
        restored = u64(&in) % (FINDER_MAX + 1); /* the finder's numbers */

    memset(&m, 0, sizeof(m));
    dpr_depset_init(&m.ever);
    if (dpr_worker_init(&m.w, SELF, dpr_domain_id(DOMAIN, strlen(DOMAIN)), 1 + u8(&in) % 3,
                        restored) < 0)
        return 0;
    m.now_ms = m.synced_ms = 1000;
    while (in.n > 0 && m.steps < 4096) {
        uint8_t op = u8(&in);
        m.steps++;
        switch (op) {
        case 'B':
            step_fields(&m, &in);
            break;
        case 'W':
            step_wire(&m, &in);
            break;
        case 'R':
            step_resp(&m, &in);
            break;
        case 'S':
            step_sync(&m, &in);
            break;
        case 'C':
            step_checkpoint(&m, &in);
            break;
        case 'D':
            step_complete(&m);
            break;
        case 'T': {
            uint64_t ms = u8(&in);
            m.now_ms += ms << (u8(&in) % 24);
            break;
        }
        default:
            /* the rest of the byte space: a batch from fields, so random
             * inputs reach the worker too */
            step_fields(&m, &in);
            break;
        }
        invariants(&m);
    }
    dpr_worker_free(&m.w);
    dpr_depset_free(&m.ever);
    return 0;
}
