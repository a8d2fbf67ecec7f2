/*
 * client_driver.c - drives the C client API (dpr/client.h, dpr/discover.h)
 * against real dpr-kv shards for tests/libdpr/test_client*.py, tests/agent
 * and tests/cluster.
 *
 *   client-driver --finder HOST:PORT --shard HOST:PORT [--shard ...]
 *                 [--domain NAME] SCENARIO
 *   client-driver --agent HOST:PORT [--agent ...] --deployment NAME SCENARIO
 *   client-driver --cluster NAME --deployment NAME [--dns-domain DOMAIN]
 *                 [--nameserver IP[:PORT]] [--discover-timeout MS] SCENARIO
 *
 * The client is given its shards and finder(s); or a cluster's agents (their
 * finder ports: dpr_client_config.agents, the agents tell the shards); or
 * only the cluster's name (dpr_client_discover: DNS-SD in DOMAIN, "local"
 * by default: mDNS through avahi-daemon; another domain: unicast DNS-SD,
 * asking the nameserver or the system's resolver). Also
 * --reconnect-timeout MS (dpr_client_config.reconnect_timeout_ms), and
 * --tls-ca FILE [--tls-cert FILE --tls-key FILE] (dpr_client_config.tls_*:
 * every connection over TLS).
 * A client made from agents or a name prints "CLIENT shards=<n> epoch=<e>
 * domain=<d>" and "SHARD <i> <host:port> <worker>" per shard first.
 *
 * --domain: the shards' DPR domain (dpr_client_config.domain; default
 * "default", the deployment's with agents). A client that cannot start (an
 * invalid name, shards or a finder of another domain, a cluster not found)
 * prints "FAIL: client: <message> (<errno text>)".
 *
 * Scenarios (each prints "PASS <scenario>" and exits 0, or "FAIL: ..." and 1):
 *   basic     SET/GET/INCR/DEL across the shards with exec, pipelined batches
 *             with send/recv, strict -EBUSY, commit points, wait_committed.
 *   writer    --seconds S [--relaxed]: SETs key "w<tag>:<seq>" = "<seq>" in
 *             batches, round robin over the shards, for S seconds; prints
 *             "COMMIT <cp>" lines, and on a rollback "ROLLBACK lost_from=L
 *             lost=N world_line=W" and goes on. The test kills and restarts a
 *             shard meanwhile. At the end it waits until every operation is
 *             committed and reads every key back: a key must exist iff its
 *             operation was not reported lost (nor withdrawn), and no
 *             operation at or below a reported commit point may be lost.
 *             --burst N: N batches to a shard before the next (pipelined:
 *             pipeline_depth is 8). Batches that never ran (-ERESTART: a
 *             planned restart cut them off; -EINPROGRESS: TRYAGAIN) are
 *             counted; the writer goes on with new ones. Last lines
 *             "VERIFIED ..." and "RESENT restarted=R tryagain=T withdrawn=W
 *             world_line=A->B".
 *   idle      --seconds S: one SET, then sleeps S seconds (the test restarts a
 *             shard meanwhile), then goes on: the session must learn of the
 *             rollback and continue on the new world-line.
 *   follow    --seconds S: SETs "f<seq>" = "<seq>" one at a time with exec for
 *             S seconds (the test resizes the deployment meanwhile: exec
 *             follows -MOVED and -TRYAGAIN), then waits until all are
 *             committed, reads every key back and prints "PASS follow
 *             epoch=<layout epoch> shards=<n> ops=<n>".
 *   roam      --seconds S [--stop-file PATH]: SETs "r<pid>:<seq>" = "<seq>"
 *             one at a time with exec, for S seconds or until PATH exists,
 *             printing "PROGRESS <last seq> <layout epoch> <rollbacks>"
 *             twice a second. The test moves a shard meanwhile (its node is
 *             lost): exec finds it again by itself (the agents' newer
 *             layout); a failed batch makes the session roll back
 *             ("ROLLBACK lost_from=L lost=N world_line=W") and go on. Then
 *             it waits until everything is committed and reads every key
 *             back through the same session: a key must exist iff its
 *             operation was not reported lost. "PASS roam epoch=<e> ops=<n>
 *             lost=<n> rollbacks=<n>", then "SHARD ..." lines of the
 *             session's layout.
 *   shards    nothing but making the client: "PASS shards" after its
 *             CLIENT and SHARD lines (what discovery or the agents gave).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/addr.h"
#include "common/clock.h"
#include "dpr/client.h"
#include "dpr/discover.h"

#define MAX_SHARDS 16

static dpr_client *client;

#define FAIL(...)                                                                    \
    do {                                                                             \
        printf("FAIL: ");                                                            \
        printf(__VA_ARGS__);                                                         \
        printf("\n");                                                                \
        fflush(stdout);                                                              \
        exit(1);                                                                     \
    } while (0)

static double now_s(void)
{
    return (double)dpr_mono_ns() / 1e9;
}

static redisReply *exec3(dpr_client_session *s, const char *a, const char *b, const char *c,
                         uint64_t *seq)
{
    const char *argv[3] = {a, b, c};
    dpr_op op = {c ? 3 : 2, argv, NULL};
    redisReply *reply;
    int r = dpr_client_session_exec(s, &op, &reply, seq);
    if (r < 0)
        FAIL("exec %s %s: %s (%s)", a, b, strerror(-r), dpr_client_session_errstr(s));
    return reply;
}

static void expect_str(redisReply *r, const char *want, const char *what)
{
    if (!r || (want && (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) ||
        (want && strcmp(r->str, want) != 0) || (!want && r->type != REDIS_REPLY_NIL))
        FAIL("%s: got type %d '%s', want '%s'", what, r ? r->type : -1,
             r && r->str ? r->str : "", want ? want : "(nil)");
    freeReplyObject(r);
}

static void scenario_basic(void)
{
    dpr_client_session *s;
    uint64_t seq = 0, cp = 0;
    int r = dpr_client_session_open(client, 0, &s);
    if (r < 0)
        FAIL("open: %s", dpr_client_errstr(client));
    const char *dom = dpr_client_domain(client);
    if (dpr_client_session_state(s)->domain != dpr_domain_id(dom, strlen(dom)))
        FAIL("the session's domain id is not that of '%s'", dom);
    printf("DOMAIN %s\n", dom);

    /* exec across shards */
    char key[32], val[32];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "basic:%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        expect_str(exec3(s, "SET", key, val, &seq), "OK", "SET");
    }
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "basic:%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        expect_str(exec3(s, "GET", key, NULL, NULL), val, "GET");
    }
    redisReply *rep = exec3(s, "INCR", "basic:ctr", NULL, NULL);
    if (rep->type != REDIS_REPLY_INTEGER || rep->integer != 1)
        FAIL("INCR");
    freeReplyObject(rep);
    rep = exec3(s, "DEL", "basic:ctr", NULL, NULL);
    if (rep->type != REDIS_REPLY_INTEGER || rep->integer != 1)
        FAIL("DEL");
    freeReplyObject(rep);

    /* pipelined batches to one shard, then -EBUSY for another (strict) */
    uint32_t nsh = (uint32_t)dpr_client_nshards(client);
    const char *argv[3] = {"SET", NULL, "x"};
    char keys[8][32];
    dpr_op ops[8];
    for (int i = 0; i < 8; i++) {
        snprintf(keys[i], sizeof(keys[i]), "{pipe}:%d", i);
        ops[i].argc = 3;
        ops[i].argv = NULL;
        ops[i].argvlen = NULL;
    }
    const char *argvs[8][3];
    for (int i = 0; i < 8; i++) {
        argvs[i][0] = argv[0];
        argvs[i][1] = keys[i];
        argvs[i][2] = argv[2];
        ops[i].argv = argvs[i];
    }
    uint32_t shard = dpr_client_route(client, "pipe", 4);
    uint64_t first[4];
    for (int b = 0; b < 4; b++) {
        r = dpr_client_session_send(s, shard, ops + 2 * b, 2, &first[b]);
        if (r < 0)
            FAIL("send %d: %s", b, strerror(-r));
    }
    if (nsh > 1) {
        r = dpr_client_session_send(s, (shard + 1) % nsh, ops, 1, &seq);
        if (r != -EBUSY)
            FAIL("strict send to another shard: %d, want -EBUSY", r);
    }
    if (dpr_client_session_inflight(s, UINT32_MAX) != 4)
        FAIL("inflight");
    for (int b = 0; b < 4; b++) {
        dpr_batch_result res;
        r = dpr_client_session_recv(s, 5000, &res);
        if (r < 0 || res.status != 0 || res.first_seq != first[b] || res.op_count != 2 ||
            res.shard != shard)
            FAIL("recv %d: %d status %d", b, r, res.status);
        for (int i = 0; i < 2; i++)
            if (res.replies[i]->type != REDIS_REPLY_STATUS || strcmp(res.replies[i]->str, "OK"))
                FAIL("batch reply");
        seq = res.first_seq + 1;
        dpr_batch_result_free(&res);
    }
    dpr_batch_result none;
    if (dpr_client_session_recv(s, 0, &none) != -ENOENT)
        FAIL("recv with nothing in flight");

    /* commit */
    r = dpr_client_session_wait_committed(s, seq, 10000);
    if (r < 0)
        FAIL("wait_committed %" PRIu64 ": %s (%s)", seq, strerror(-r),
             dpr_client_session_errstr(s));
    r = dpr_client_session_commit_point(s, &cp);
    if (r < 0 || cp < seq)
        FAIL("commit point %" PRIu64 " < %" PRIu64, cp, seq);
    if (!dpr_client_session_is_committed(s, 1))
        FAIL("op 1 not committed");
    dpr_client_session_close(s);
    printf("PASS basic\n");
}

/* ---- writer: the crash test ---------------------------------------------------- */

typedef struct range {
    uint64_t from, to;
} range;

static range *lost;
static size_t nlost, lost_cap;
static uint64_t max_cp;
static int rollback_ms = 20000; /* --rollback-timeout */
static uint8_t *shard_of; /* seq -> shard the writer sent it to */
static size_t shard_of_cap;
static unsigned burst = 1; /* --burst: batches to a shard before the next */
/* batches that never ran (withdrawn: -ERESTART, -EINPROGRESS, -EREMCHG),
 * and those of them whose sequence numbers are void (not issued again) */
static uint64_t nrestarted, ntryagain, nwithdrawn;
static range *void_ops;
static size_t nvoid, void_cap;
static bool lost_sorted, void_sorted; /* in_ranges: cleared by each addition */

static void add_lost(uint64_t from, uint64_t to)
{
    if (from >= to)
        return;
    if (nlost == lost_cap) {
        lost_cap = lost_cap ? 2 * lost_cap : 64;
        lost = realloc(lost, lost_cap * sizeof(*lost));
        if (!lost)
            FAIL("out of memory");
    }
    lost_sorted = false;
    lost[nlost].from = from;
    lost[nlost].to = to;
    nlost++;
}

static int range_cmp(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->from < y->from ? -1 : x->from > y->from;
}

/* Whether seq is in one of r[0..*n): the ranges are sorted and merged first
 * when *sorted is false (a read-back asks millions of times, over thousands
 * of withdrawn batches), then found by binary search. */
static bool in_ranges(range *r, size_t *n, bool *sorted, uint64_t seq)
{
    size_t lo = 0, hi;

    if (!*sorted && *n) {
        size_t m = 0;
        qsort(r, *n, sizeof(*r), range_cmp);
        for (size_t i = 1; i < *n; i++) {
            if (r[i].from <= r[m].to) {
                if (r[i].to > r[m].to)
                    r[m].to = r[i].to;
            } else {
                r[++m] = r[i];
            }
        }
        *n = m + 1;
    }
    *sorted = true;
    hi = *n;
    while (lo < hi) { /* the first range starting after seq */
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].from <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && seq < r[lo - 1].to;
}

static bool is_lost(uint64_t seq)
{
    return in_ranges(lost, &nlost, &lost_sorted, seq);
}

static bool is_void(uint64_t seq)
{
    return in_ranges(void_ops, &nvoid, &void_sorted, seq);
}

/* A batch's outcome: one that never ran is counted, and its operations, if
 * withdrawn for good, must read back absent (a cancelled batch's sequence
 * numbers are issued again to the writer's next batch). */
static void note_result(dpr_client_session *s, const dpr_batch_result *res)
{
    if (res->status != -ERESTART && res->status != -EINPROGRESS && res->status != -EREMCHG)
        return;
    if (res->status == -ERESTART)
        nrestarted++;
    else
        ntryagain++;
    if (!dpr_session_is_withdrawn(dpr_client_session_state(s), res->first_seq))
        return;
    nwithdrawn++;
    if (nvoid == void_cap) {
        void_cap = void_cap ? 2 * void_cap : 64;
        void_ops = realloc(void_ops, void_cap * sizeof(*void_ops));
        if (!void_ops)
            FAIL("out of memory");
    }
    void_sorted = false;
    void_ops[nvoid++] = (range){res->first_seq, res->first_seq + res->op_count};
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void do_rollback(dpr_client_session *s)
{
    dpr_batch_result res;
    int r;
    while ((r = dpr_client_session_recv(s, 20000, &res)) == 0) {
        note_result(s, &res);
        dpr_batch_result_free(&res);
    }
    if (r != -ENOENT)
        FAIL("draining before rollback: %s", strerror(-r));
    dpr_rollback_result rb;
    uint64_t next = dpr_client_session_state(s)->next_seq;
    r = dpr_client_session_rollback(s, rollback_ms, &rb);
    if (r < 0)
        FAIL("rollback: %s (%s)", strerror(-r), dpr_client_session_errstr(s));
    printf("ROLLBACK lost_from=%" PRIu64 " lost=%" PRIu64 " survived_above=%zu world_line=%"
           PRIu64 "\n", rb.lost_from, rb.lost_count, rb.nsurvived_above,
           dpr_client_session_state(s)->world_line);
    if (rb.lost_count) {
        if (rb.lost_from <= max_cp)
            FAIL("lost_from %" PRIu64 " <= reported commit point %" PRIu64, rb.lost_from,
                 max_cp);
        if (rb.lost_count + rb.nsurvived_above != next - rb.lost_from)
            FAIL("lost %" PRIu64 " + survivors %zu != %" PRIu64 " operations from %" PRIu64,
                 rb.lost_count, rb.nsurvived_above, next - rb.lost_from, rb.lost_from);
        if (!(dpr_client_session_state(s)->flags & DPR_SESSION_RELAXED) &&
            rb.nsurvived_above)
            FAIL("strict rollback with survivors above lost_from");
        if (rb.nsurvived_above)
            qsort(rb.survived_above, rb.nsurvived_above, sizeof(uint64_t), cmp_u64);
        uint64_t from = rb.lost_from;
        for (size_t i = 0; i < rb.nsurvived_above; i++) {
            add_lost(from, rb.survived_above[i]);
            from = rb.survived_above[i] + 1;
        }
        add_lost(from, next);
    }
    free(rb.survived_above);
    fflush(stdout);
}

static void note_shard(uint64_t first, uint32_t n, uint32_t shard)
{
    while (first + n > shard_of_cap) {
        size_t cap = shard_of_cap ? 2 * shard_of_cap : 4096;
        shard_of = realloc(shard_of, cap);
        if (!shard_of)
            FAIL("out of memory");
        memset(shard_of + shard_of_cap, 0xff, cap - shard_of_cap);
        shard_of_cap = cap;
    }
    memset(shard_of + first, (int)shard, n);
}

/* A hash tag that routes to shard k. */
static void tag_for(uint32_t k, char *tg, size_t cap)
{
    int t = 0;
    do {
        snprintf(tg, cap, "%d", t++);
    } while (dpr_client_route(client, tg, strlen(tg)) != k);
}

enum { WBATCH = 4, RBATCH = 256 };

static void read_back(const char *tag, uint64_t total, uint64_t *present, uint64_t *absent)
{
    dpr_client_session *rd;
    uint32_t nsh = (uint32_t)dpr_client_nshards(client);
    int r = dpr_client_session_open(client, 0, &rd);
    if (r < 0)
        FAIL("open reader: %s", dpr_client_errstr(client));
    static char keys[RBATCH][96];
    static const char *argv[RBATCH][2];
    static dpr_op ops[RBATCH];
    static uint64_t seqs[RBATCH];
    for (uint32_t k = 0; k < nsh; k++) {
        char tg[16];
        tag_for(k, tg, sizeof(tg));
        uint64_t seq = 1;
        while (seq <= total) {
            uint32_t n = 0;
            for (; seq <= total && n < RBATCH; seq++) {
                if (seq >= shard_of_cap || shard_of[seq] != k)
                    continue;
                snprintf(keys[n], sizeof(keys[n]), "%s:{%s}:%" PRIu64, tag, tg, seq);
                argv[n][0] = "GET";
                argv[n][1] = keys[n];
                ops[n] = (dpr_op){2, argv[n], NULL};
                seqs[n++] = seq;
            }
            if (n == 0)
                break;
            uint64_t first;
            dpr_batch_result res;
            r = dpr_client_session_send(rd, k, ops, n, &first);
            if (r == 0)
                r = dpr_client_session_recv(rd, 10000, &res);
            if (r < 0 || res.status != 0)
                FAIL("read back: %s", strerror(r < 0 ? -r : -res.status));
            for (uint32_t i = 0; i < n; i++) {
                redisReply *rep = res.replies[i];
                bool found = rep->type == REDIS_REPLY_STRING;
                char v[24];
                snprintf(v, sizeof(v), "%" PRIu64, seqs[i]);
                if (found && strcmp(rep->str, v) != 0)
                    FAIL("key %s holds %s", keys[i], rep->str);
                if (found && is_void(seqs[i]))
                    FAIL("operation %" PRIu64 ": present but withdrawn (it never ran)",
                         seqs[i]);
                if (found == (is_lost(seqs[i]) || is_void(seqs[i])))
                    FAIL("operation %" PRIu64 ": %s but %s", seqs[i],
                         found ? "present" : "absent",
                         is_lost(seqs[i]) ? "reported lost" : "not reported lost");
                if (found)
                    (*present)++;
                else
                    (*absent)++;
            }
            dpr_batch_result_free(&res);
        }
    }
    dpr_client_session_close(rd);
}


/* What a failing test needs to know when operations stay uncommitted: the
 * first one (its worker and version) and the finder's cut now. */
static void describe_uncommitted(dpr_client_session *s)
{
    const dpr_session *ss = dpr_client_session_state(s);
    dpr_cut cut;

    if (ss->ops_len) {
        const dpr_session_op *op = &ss->ops[ss->ops_head];
        printf("UNCOMMITTED first seq=%" PRIu64 " worker=%" PRIu64 " version=%" PRIu64
               " withdrawn=%d (commit point %" PRIu64 ", world-line %" PRIu64 ", %zu in the "
               "ring)\n", op->seq, op->worker, op->version, (int)op->withdrawn,
               ss->commit_point, ss->world_line, ss->ops_len);
    }
    dpr_cut_init(&cut);
    if (dpr_client_sync(client, &cut) == 0) {
        printf("CUT world-line %" PRIu64 ":", cut.world_line);
        for (uint64_t w = 1; w <= 16; w++)
            if (dpr_depset_get(&cut.versions, w))
                printf(" %" PRIu64 "=%" PRIu64, w, dpr_depset_get(&cut.versions, w));
        printf("\n");
    } else {
        printf("CUT unknown: %s\n", dpr_client_errstr(client));
    }
    dpr_cut_free(&cut);
    fflush(stdout);
}

/* Receives what is in flight, rolls back when needed, and waits until the
 * last operation not reported lost is committed. */
static void settle(dpr_client_session *s, uint64_t *rollbacks)
{
    int r;
    for (int round = 0; round < 10; round++) {
        dpr_batch_result res;
        while ((r = dpr_client_session_recv(s, 20000, &res)) == 0) {
            note_result(s, &res);
            dpr_batch_result_free(&res);
        }
        if (dpr_client_session_needs_rollback(s)) {
            do_rollback(s);
            (*rollbacks)++;
            continue;
        }
        uint64_t last = dpr_client_session_state(s)->next_seq - 1;
        while (last > 0 && (is_lost(last) || is_void(last)))
            last--;
        if (last == 0)
            return;
        r = dpr_client_session_wait_committed(s, last, 20000);
        if (r == 0)
            return;
        if (r != -ESTALE) {
            describe_uncommitted(s);
            FAIL("final wait_committed %" PRIu64 ": %s (%s)", last, strerror(-r),
                 dpr_client_session_errstr(s));
        }
    }
    FAIL("still rolling back after 10 rounds");
}

static void scenario_writer(double seconds, unsigned flags)
{
    dpr_client_session *s;
    int r = dpr_client_session_open(client, flags, &s);
    if (r < 0)
        FAIL("open: %s", dpr_client_errstr(client));
    char tag[32];
    snprintf(tag, sizeof(tag), "w%d", (int)getpid());
    uint32_t nsh = (uint32_t)dpr_client_nshards(client);
    double end = now_s() + seconds, next_cp = 0;
    uint32_t shard = 0;
    char keys[WBATCH][96], vals[WBATCH][24];
    const char *argv[WBATCH][3];
    dpr_op ops[WBATCH];
    uint64_t rollbacks = 0, world_line = dpr_client_session_state(s)->world_line;
    unsigned sent = 0;

    while (now_s() < end) {
        if (dpr_client_session_needs_rollback(s)) {
            do_rollback(s);
            rollbacks++;
        }
        /* the batch's keys carry a hash tag of `shard` */
        uint64_t seq0 = dpr_client_session_state(s)->next_seq;
        char tg[16];
        tag_for(shard, tg, sizeof(tg));
        for (int i = 0; i < WBATCH; i++) {
            snprintf(keys[i], sizeof(keys[i]), "%s:{%s}:%" PRIu64, tag, tg, seq0 + (uint64_t)i);
            snprintf(vals[i], sizeof(vals[i]), "%" PRIu64, seq0 + (uint64_t)i);
            argv[i][0] = "SET";
            argv[i][1] = keys[i];
            argv[i][2] = vals[i];
            ops[i] = (dpr_op){3, argv[i], NULL};
        }
        uint64_t first;
        r = dpr_client_session_send(s, shard, ops, WBATCH, &first);
        if (r == -EBUSY || r == -EAGAIN) {
            dpr_batch_result res;
            r = dpr_client_session_recv(s, 20000, &res);
            if (r < 0 && r != -ENOENT)
                FAIL("recv: %s", strerror(-r));
            if (r == 0) {
                note_result(s, &res);
                dpr_batch_result_free(&res);
            }
            continue;
        }
        if (r == -ESTALE)
            continue; /* needs_rollback handles it */
        if (r < 0) {
            /* the shard is down (connect failed); nothing was sent */
            usleep(20000);
            continue;
        }
        if (first != seq0)
            FAIL("first seq %" PRIu64 " != %" PRIu64, first, seq0);
        note_shard(first, WBATCH, shard);
        if (++sent % burst == 0)
            shard = (shard + 1) % nsh;
        if (now_s() >= next_cp) {
            uint64_t cp;
            r = dpr_client_session_commit_point(s, &cp);
            if (r == 0 && cp > max_cp) {
                max_cp = cp;
                printf("COMMIT %" PRIu64 "\n", cp);
                fflush(stdout);
            }
            next_cp = now_s() + 0.05;
        }
    }
    settle(s, &rollbacks);
    uint64_t present = 0, absent = 0;
    uint64_t total = dpr_client_session_state(s)->next_seq - 1;
    read_back(tag, total, &present, &absent);
    uint64_t world_line_end = dpr_client_session_state(s)->world_line;
    dpr_client_session_close(s);
    printf("VERIFIED ops=%" PRIu64 " present=%" PRIu64 " lost=%" PRIu64 " rollbacks=%" PRIu64
           " max_commit=%" PRIu64 "\n", total, present, absent, rollbacks, max_cp);
    printf("RESENT restarted=%" PRIu64 " tryagain=%" PRIu64 " withdrawn=%" PRIu64
           " world_line=%" PRIu64 "->%" PRIu64 "\n", nrestarted, ntryagain, nwithdrawn,
           world_line, world_line_end);
    printf("PASS writer\n");
}

static void scenario_idle(double seconds)
{
    dpr_client_session *s;
    uint64_t seq;
    int r = dpr_client_session_open(client, 0, &s);
    if (r < 0)
        FAIL("open: %s", dpr_client_errstr(client));
    uint64_t wl0 = dpr_client_session_state(s)->world_line;
    char key[48];
    snprintf(key, sizeof(key), "idle:%d", (int)getpid());
    for (uint32_t k = 0; k < dpr_client_nshards(client); k++) {
        /* touch every shard so each has a connection that goes stale */
        char tg[16], kk[96];
        int t = 0;
        do {
            snprintf(tg, sizeof(tg), "%d", t++);
        } while (dpr_client_route(client, tg, strlen(tg)) != k);
        snprintf(kk, sizeof(kk), "%s:{%s}", key, tg);
        expect_str(exec3(s, "SET", kk, "before", &seq), "OK", "SET before");
    }
    r = dpr_client_session_wait_committed(s, seq, 10000);
    if (r < 0)
        FAIL("wait_committed: %s", strerror(-r));
    printf("READY\n");
    fflush(stdout);
    usleep((useconds_t)(seconds * 1e6));
    /* every shard: the restarted one refuses (or its connection is gone) */
    int rollbacks = 0;
    for (int attempt = 0; attempt < 10; attempt++) {
        const char *argv[3] = {"SET", key, "after"};
        dpr_op op = {3, argv, NULL};
        redisReply *reply = NULL;
        r = dpr_client_session_exec(s, &op, &reply, &seq);
        if (reply)
            freeReplyObject(reply);
        if (r == 0 && dpr_client_session_state(s)->world_line > wl0)
            break;
        if (r == 0) {
            /* a shard that did not restart may still run the old world-line
             * until it hears from the finder: try again */
            usleep(50000);
            continue;
        }
        if (r != -ESTALE && r != -ECONNRESET && r != -EREMOTEIO)
            FAIL("exec after restart: %s (%s)", strerror(-r), dpr_client_session_errstr(s));
        dpr_rollback_result rb;
        r = dpr_client_session_rollback(s, 20000, &rb);
        if (r < 0)
            FAIL("rollback: %s (%s)", strerror(-r), dpr_client_session_errstr(s));
        rollbacks++;
        printf("ROLLBACK lost_from=%" PRIu64 " lost=%" PRIu64 " world_line=%" PRIu64 "\n",
               rb.lost_from, rb.lost_count, dpr_client_session_state(s)->world_line);
        free(rb.survived_above);
    }
    if (dpr_client_session_state(s)->world_line == wl0) {
        /* the shard the key lives on did not restart: learn it from the finder */
        uint64_t cp;
        r = dpr_client_session_commit_point(s, &cp);
        if (r != -ESTALE)
            FAIL("world-line did not move (commit_point: %d)", r);
        dpr_rollback_result rb;
        r = dpr_client_session_rollback(s, 20000, &rb);
        if (r < 0)
            FAIL("rollback: %s", strerror(-r));
        rollbacks++;
        free(rb.survived_above);
    }
    expect_str(exec3(s, "SET", key, "final", &seq), "OK", "SET final");
    r = dpr_client_session_wait_committed(s, seq, 10000);
    if (r < 0)
        FAIL("wait_committed after rollback: %s", strerror(-r));
    printf("rollbacks=%d world_line=%" PRIu64 "\n", rollbacks,
           dpr_client_session_state(s)->world_line);
    dpr_client_session_close(s);
    printf("PASS idle\n");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: client-driver --finder HOST:PORT [--finder ...] --shard HOST:PORT "
               "[--shard ...] [--domain NAME]\n"
               "       client-driver --agent HOST:PORT [--agent ...] --deployment NAME\n"
               "       client-driver --cluster NAME --deployment NAME [--dns-domain DOMAIN]\n"
               "                     [--nameserver IP[:PORT]] [--discover-timeout MS]\n"
               "  then [--seconds S] [--relaxed] [--reconnect-timeout MS] "
               "[--rollback-timeout MS]\n"
               "       [--stop-file PATH] [--burst N] [--tls-ca FILE [--tls-cert FILE "
               "--tls-key FILE]]\n"
               "       basic|writer|idle|follow|roam|shards\n");
}

static void scenario_follow(double seconds)
{
    dpr_client_session *s;
    uint64_t seq = 0, n = 0;
    char key[32], val[32];
    int r = dpr_client_session_open(client, 0, &s);

    if (r < 0)
        FAIL("open: %s", dpr_client_errstr(client));
    printf("READY\n");
    fflush(stdout);
    for (double end = now_s() + seconds; now_s() < end; n++) {
        snprintf(key, sizeof(key), "f%llu", (unsigned long long)n + 1);
        snprintf(val, sizeof(val), "%llu", (unsigned long long)n + 1);
        expect_str(exec3(s, "SET", key, val, &seq), "OK", "SET");
        if (seq != n + 1) /* withdrawn batches were taken back: no gaps */
            FAIL("operation %llu got sequence number %llu", (unsigned long long)n + 1,
                 (unsigned long long)seq);
        usleep(2000);
    }
    r = dpr_client_session_wait_committed(s, seq, 30000);
    if (r < 0)
        FAIL("wait_committed: %s (%s)", strerror(-r), dpr_client_session_errstr(s));
    for (uint64_t i = 1; i <= n; i++) {
        snprintf(key, sizeof(key), "f%llu", (unsigned long long)i);
        snprintf(val, sizeof(val), "%llu", (unsigned long long)i);
        expect_str(exec3(s, "GET", key, NULL, NULL), val, key);
    }
    printf("PASS follow epoch=%llu shards=%zu ops=%llu\n",
           (unsigned long long)dpr_client_session_layout_epoch(s),
           dpr_client_session_nshards(s), (unsigned long long)n);
    dpr_client_session_close(s);
}

/* "SHARD <i> <host:port> <worker>" of the client's list (s NULL) or of a
 * session's layout. */
static void print_shards(dpr_client_session *s)
{
    size_t n = s ? dpr_client_session_nshards(s) : dpr_client_nshards(client);
    for (size_t i = 0; i < n; i++) {
        const char *h = s ? dpr_client_session_shard_host(s, i) : dpr_client_shard_host(client, i);
        unsigned port = s ? dpr_client_session_shard_port(s, i) : dpr_client_shard_port(client, i);
        printf(strchr(h, ':') ? "SHARD %zu [%s]:%u" : "SHARD %zu %s:%u", i, h, port);
        printf(s ? "\n" : " %" PRIu64 "\n", dpr_client_worker(client, i));
    }
    fflush(stdout);
}

static void scenario_roam(double seconds, const char *stop_file)
{
    dpr_client_session *s;
    uint64_t seq, issued = 0, rollbacks = 0, present = 0, absent = 0;
    char tag[24], key[64], val[24];
    double next_report = 0;
    int r = dpr_client_session_open(client, 0, &s);

    if (r < 0)
        FAIL("open: %s", dpr_client_errstr(client));
    snprintf(tag, sizeof(tag), "r%d", (int)getpid());
    printf("READY\n");
    fflush(stdout);
    for (double end = now_s() + seconds;
         now_s() < end && !(stop_file && access(stop_file, F_OK) == 0);) {
        if (dpr_client_session_needs_rollback(s)) {
            do_rollback(s);
            rollbacks++;
        }
        uint64_t next = dpr_client_session_state(s)->next_seq;
        snprintf(key, sizeof(key), "%s:%" PRIu64, tag, next);
        snprintf(val, sizeof(val), "%" PRIu64, next);
        const char *argv[3] = {"SET", key, val};
        dpr_op op = {3, argv, NULL};
        redisReply *reply = NULL;
        r = dpr_client_session_exec(s, &op, &reply, &seq);
        if (r == 0) {
            if (seq != next)
                FAIL("operation %" PRIu64 " got sequence number %" PRIu64, next, seq);
            expect_str(reply, "OK", "SET");
            issued = seq;
        } else if (r == -ESTALE || r == -ECONNRESET || r == -ETIMEDOUT || r == -EREMOTEIO ||
                   r == -EPROTO) {
            /* refused or abandoned (its shard's node was lost): roll back */
            if (reply)
                freeReplyObject(reply);
            if (!dpr_client_session_needs_rollback(s))
                FAIL("exec: %s (%s), yet the session needs no rollback", strerror(-r),
                     dpr_client_session_errstr(s));
        } else {
            FAIL("exec %s: %s (%s)", key, strerror(-r), dpr_client_session_errstr(s));
        }
        if (now_s() >= next_report) {
            uint64_t cp = 0;
            if (dpr_client_session_commit_point(s, &cp) == 0 && cp > max_cp)
                max_cp = cp;
            printf("PROGRESS %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", issued, max_cp,
                   dpr_client_session_layout_epoch(s), rollbacks);
            fflush(stdout);
            next_report = now_s() + 0.5;
        }
        usleep(2000);
    }
    settle(s, &rollbacks);
    uint64_t total = dpr_client_session_state(s)->next_seq - 1;
    for (uint64_t i = 1; i <= total; i++) {
        snprintf(key, sizeof(key), "%s:%" PRIu64, tag, i);
        snprintf(val, sizeof(val), "%" PRIu64, i);
        expect_str(exec3(s, "GET", key, NULL, NULL), is_lost(i) ? NULL : val, key);
        *(is_lost(i) ? &absent : &present) += 1;
    }
    printf("PASS roam epoch=%" PRIu64 " ops=%" PRIu64 " present=%" PRIu64 " lost=%" PRIu64
           " rollbacks=%" PRIu64 "\n", dpr_client_session_layout_epoch(s), total, present,
           absent, rollbacks);
    print_shards(s);
    dpr_client_session_close(s);
}

/* Appends the endpoint of option --opt to list (at most cap; its host text
 * in hosts[*n]). */
static void add_endpoint(const char *opt, const char *text, dpr_endpoint *list,
                         char (*hosts)[DPR_HOST_MAX], size_t *n, size_t cap)
{
    if (*n == cap || dpr_endpoint_parse(text, &list[*n], hosts[*n], DPR_HOST_MAX) < 0)
        FAIL("bad --%s %s", opt, text);
    (*n)++;
}

/* The client from a cluster's name (DNS-SD) or its agents: *cfg holds the
 * other settings. */
static int client_of_cluster(const char *cluster, const char *deployment,
                             const dpr_discover_config *dc, dpr_client_config *cfg,
                             const dpr_endpoint *agents, size_t nagents, dpr_err *err)
{
    int r;
    if (cluster) {
        r = dpr_client_discover(cluster, deployment, dc, cfg, &client, err);
    } else {
        cfg->agents = agents;
        cfg->nagents = nagents;
        cfg->deployment = deployment;
        r = dpr_client_new(cfg, &client, err);
    }
    if (r < 0)
        return r;
    printf("CLIENT shards=%zu epoch=%" PRIu64 " domain=%s\n", dpr_client_nshards(client),
           dpr_client_layout_epoch(client), dpr_client_domain(client));
    print_shards(NULL);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"finder", required_argument, NULL, 'f'},
        {"shard", required_argument, NULL, 's'},
        {"seconds", required_argument, NULL, 't'},
        {"relaxed", no_argument, NULL, 'r'},
        {"domain", required_argument, NULL, 'd'},
        {"agent", required_argument, NULL, 'a'},
        {"deployment", required_argument, NULL, 'D'},
        {"cluster", required_argument, NULL, 'c'},
        {"dns-domain", required_argument, NULL, 'N'},
        {"nameserver", required_argument, NULL, 'n'},
        {"discover-timeout", required_argument, NULL, 'T'},
        {"reconnect-timeout", required_argument, NULL, 'R'},
        {"rollback-timeout", required_argument, NULL, 'B'},
        {"stop-file", required_argument, NULL, 'S'},
        {"burst", required_argument, NULL, 'b'},
        {"tls-ca", required_argument, NULL, 'C'},
        {"tls-cert", required_argument, NULL, 'E'},
        {"tls-key", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    dpr_endpoint shards[MAX_SHARDS];
    char hosts[MAX_SHARDS][DPR_HOST_MAX], fhosts[DPR_CLIENT_MAX_FINDERS][DPR_HOST_MAX];
    char ahosts[DPR_CLIENT_MAX_FINDERS][DPR_HOST_MAX];
    dpr_endpoint finders[DPR_CLIENT_MAX_FINDERS], agents[DPR_CLIENT_MAX_FINDERS];
    size_t nshards = 0, nfinders = 0, nagents = 0;
    const char *cluster = NULL, *deployment = NULL, *stop_file = NULL;
    dpr_discover_config dc;
    dpr_client_config cfg;
    double seconds = 3;
    unsigned flags = 0;
    int opt;

    memset(&cfg, 0, sizeof(cfg));
    memset(&dc, 0, sizeof(dc));
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'f': /* several: a cluster's finders (cfg.finders) */
            add_endpoint("finder", optarg, finders, fhosts, &nfinders, DPR_CLIENT_MAX_FINDERS);
            break;
        case 's':
            add_endpoint("shard", optarg, shards, hosts, &nshards, MAX_SHARDS);
            break;
        case 't':
            seconds = atof(optarg);
            break;
        case 'r':
            flags = DPR_SESSION_RELAXED;
            break;
        case 'd':
            cfg.domain = optarg; /* checked by dpr_client_new */
            break;
        case 'a': /* several: a cluster's agents (cfg.agents) */
            add_endpoint("agent", optarg, agents, ahosts, &nagents, DPR_CLIENT_MAX_FINDERS);
            break;
        case 'D':
            deployment = optarg;
            break;
        case 'c':
            cluster = optarg;
            break;
        case 'N':
            dc.domain = optarg; /* checked by dpr_client_discover */
            break;
        case 'n':
            dc.nameserver = optarg;
            break;
        case 'T':
            dc.timeout_ms = atoi(optarg);
            break;
        case 'R':
            cfg.reconnect_timeout_ms = atoi(optarg);
            break;
        case 'B':
            rollback_ms = atoi(optarg);
            break;
        case 'S':
            stop_file = optarg;
            break;
        case 'C':
            cfg.tls_ca_file = optarg;
            break;
        case 'E':
            cfg.tls_cert_file = optarg;
            break;
        case 'K':
            cfg.tls_key_file = optarg;
            break;
        case 'b':
            burst = (unsigned)atoi(optarg);
            if (burst < 1) {
                usage(stderr);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    /* one of: shards and finders; agents; a cluster's name */
    bool by_hand = nshards > 0 && nfinders > 0 && !nagents && !cluster && !deployment;
    bool of_cluster = !nshards && !nfinders && deployment && (nagents > 0) != (cluster != NULL);
    if (optind != argc - 1 || (!by_hand && !of_cluster)) {
        usage(stderr);
        return 2;
    }
    dpr_err err;
    int r;
    cfg.pipeline_depth = 8;
    if (by_hand) {
        if (nfinders == 1) {
            cfg.finder = finders[0];
        } else {
            cfg.finders = finders;
            cfg.nfinders = nfinders;
        }
        cfg.shards = shards;
        cfg.nshards = nshards;
        r = dpr_client_new(&cfg, &client, &err);
    } else {
        r = client_of_cluster(cluster, deployment, &dc, &cfg, agents, nagents, &err);
    }
    if (r < 0)
        FAIL("client: %s (%s)", err.msg, strerror(-r));
    const char *sc = argv[optind];
    if (!strcmp(sc, "basic"))
        scenario_basic();
    else if (!strcmp(sc, "writer"))
        scenario_writer(seconds, flags);
    else if (!strcmp(sc, "idle"))
        scenario_idle(seconds);
    else if (!strcmp(sc, "follow"))
        scenario_follow(seconds);
    else if (!strcmp(sc, "roam"))
        scenario_roam(seconds, stop_file);
    else if (!strcmp(sc, "shards"))
        printf("PASS shards\n"); /* the client's list only (printed above) */
    else
        FAIL("unknown scenario %s", sc);
    dpr_client_free(client);
    return 0;
}
