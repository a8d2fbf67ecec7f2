/* test_worker.c - the worker side: versions, fast-forward, dependency
 * folding, checkpoints and reports, pruning, rollback, admission. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dpr/domain.h"
#include "dpr/worker.h"

#define SELF 100
/* the worker's domain ("default"), and another one's */
#define DOM dpr_domain_id(DPR_DOMAIN_DEFAULT, strlen(DPR_DOMAIN_DEFAULT))
#define OTHER dpr_domain_id("blue", 4)

/* A request header whose dependency list lives in raw[] (n pairs). */
typedef struct req {
    dpr_request_hdr h;
    uint8_t raw[16 * 8];
} req;

static void make_req(req *r, uint64_t world_line, uint64_t lb, size_t n,
                     const uint64_t *pairs)
{
    memset(r, 0, sizeof(*r));
    r->h.domain = DOM;
    r->h.world_line = world_line;
    r->h.version_lb = lb;
    r->h.batch_id = 1;
    r->h.op_count = 1;
    r->h.dep_count = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        dpr_put_u64(r->raw + 16 * i, pairs[2 * i]);
        dpr_put_u64(r->raw + 16 * i + 8, pairs[2 * i + 1]);
    }
    r->h.deps = n ? r->raw : NULL;
}

TEST(init_and_admission)
{
    dpr_worker w;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    CHECK_EQ_U64(w.id, SELF);
    CHECK_EQ_U64(w.domain, DOM);
    CHECK_EQ_U64(w.world_line, 1);
    CHECK_EQ_U64(w.version, 1);
    CHECK_EQ_U64(w.durable, 0);
    CHECK_EQ_U64(w.cut, 0);
    CHECK_EQ_U64(w.open_batches, 0);
    CHECK_EQ_INT(dpr_worker_admit(&w, 1), DPR_ADMIT_EXECUTE);
    CHECK_EQ_INT(dpr_worker_admit(&w, 0), DPR_ADMIT_REFUSE);
    CHECK_EQ_INT(dpr_worker_admit(&w, 2), DPR_ADMIT_CATCH_UP);
    dpr_worker_free(&w);

    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 4, 17), 0);
    CHECK_EQ_U64(w.version, 18);
    CHECK_EQ_U64(w.durable, 17);
    CHECK_EQ_U64(w.cut, 17);
    CHECK_EQ_INT(dpr_worker_admit(&w, 3), DPR_ADMIT_REFUSE);
    CHECK_EQ_INT(dpr_worker_admit(&w, 5), DPR_ADMIT_CATCH_UP);
    dpr_worker_free(&w);
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, UINT64_MAX), -EOVERFLOW);
    dpr_worker_free(&w);
    /* no name has the id 0 */
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, 0, 1, 0), -EINVAL);
    dpr_worker_free(&w);
}

TEST(batch_target)
{
    req r;
    CHECK_EQ_U64(dpr_worker_batch_target(NULL), 0);
    make_req(&r, 1, 4, 0, NULL);
    CHECK_EQ_U64(dpr_worker_batch_target(&r.h), 4);
    const uint64_t deps[] = {1, 3, 2, 9, SELF, 6};
    make_req(&r, 1, 4, 3, deps);
    CHECK_EQ_U64(dpr_worker_batch_target(&r.h), 9);
    make_req(&r, 1, 12, 3, deps);
    CHECK_EQ_U64(dpr_worker_batch_target(&r.h), 12);
}

TEST(fast_forward_relabels_empty_version)
{
    dpr_worker w;
    uint64_t v = 0;
    req r;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    const uint64_t deps[] = {7, 10};
    make_req(&r, 1, 3, 1, deps);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(v, 10);
    CHECK_EQ_U64(w.version, 10);
    CHECK_EQ_U64(w.open_batches, 1);
    CHECK_EQ_U64(dpr_depset_get(&w.open_deps, 7), 10);
    /* a lower target runs in the open version */
    make_req(&r, 1, 2, 0, NULL);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(v, 10);
    CHECK_EQ_U64(w.open_batches, 2);
    /* nothing sealed by the relabel: version 1 never held anything */
    CHECK_EQ_U64(w.nsealed, 0);
    dpr_worker_free(&w);
}

TEST(fast_forward_nonempty_needs_seal)
{
    dpr_worker w;
    uint64_t v = 0, sealed = 0;
    req r;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    const uint64_t d1[] = {7, 1};
    make_req(&r, 1, 0, 1, d1);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(v, 1);
    const uint64_t d2[] = {8, 5};
    make_req(&r, 1, 0, 1, d2);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), -EAGAIN);
    /* nothing changed */
    CHECK_EQ_U64(w.version, 1);
    CHECK_EQ_U64(w.open_batches, 1);
    CHECK_EQ_U64(dpr_depset_get(&w.open_deps, 8), 0);
    CHECK_EQ_U64(dpr_depset_count(&w.open_deps), 1);
    /* the caller seals and retries */
    CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, dpr_worker_batch_target(&r.h), &sealed), 0);
    CHECK_EQ_U64(sealed, 1);
    CHECK_EQ_U64(w.version, 5);
    CHECK_EQ_U64(w.open_batches, 0);
    CHECK_EQ_U64(dpr_depset_count(&w.open_deps), 0);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(v, 5);
    CHECK_EQ_U64(w.nsealed, 1);
    CHECK_EQ_U64(w.sealed[0].version, 1);
    CHECK_EQ_U64(dpr_depset_get(&w.sealed[0].deps, 7), 1);
    CHECK_EQ_U64(dpr_depset_get(&w.sealed[0].deps, 8), 0);
    CHECK_EQ_U64(dpr_depset_get(&w.open_deps, 8), 5);
    dpr_worker_free(&w);
}

TEST(plain_operations_do_not_pin)
{
    dpr_worker w;
    uint64_t v = 0;
    req r;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    CHECK_EQ_INT(dpr_worker_execute(&w, NULL, &v), 0);
    CHECK_EQ_U64(v, 1);
    CHECK_EQ_U64(w.open_batches, 0);
    make_req(&r, 1, 7, 0, NULL);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(v, 7);
    /* missing dependency list */
    r.h.dep_count = 2;
    r.h.deps = NULL;
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), -EINVAL);
    dpr_worker_free(&w);
}

TEST(dependency_folding)
{
    dpr_worker w;
    uint64_t v = 0;
    req r;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    make_req(&r, 1, 0, 0, NULL);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0); /* version 1 */
    CHECK_EQ_U64(dpr_depset_count(&w.open_deps), 0);
    uint64_t sealed;
    CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, 0, &sealed), 0);
    CHECK_EQ_U64(w.version, 2);
    /* self-dependency ignored; duplicates max-merged; across batches max */
    const uint64_t a[] = {SELF, 2, 1, 2, 3, 1, 1, 1};
    make_req(&r, 1, 0, 4, a);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(v, 2);
    const uint64_t b[] = {3, 2, 4, 1};
    make_req(&r, 1, 0, 2, b);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(dpr_depset_get(&w.open_deps, SELF), 0);
    CHECK_EQ_U64(dpr_depset_get(&w.open_deps, 1), 2);
    CHECK_EQ_U64(dpr_depset_get(&w.open_deps, 3), 2);
    CHECK_EQ_U64(dpr_depset_get(&w.open_deps, 4), 1);
    CHECK_EQ_U64(dpr_depset_count(&w.open_deps), 3);
    dpr_worker_free(&w);
}

TEST(checkpoint_order_and_reports)
{
    dpr_worker w;
    uint64_t v, s1, s2, s3;
    req r;
    dpr_worker_report rep;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 3, 0), 0);
    const uint64_t d[] = {9, 1};
    make_req(&r, 3, 0, 1, d);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, 0, &s1), 0);
    CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, 0, &s2), 0); /* empty version */
    CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, 10, &s3), 0); /* skips to 10 */
    CHECK_EQ_U64(s1, 1);
    CHECK_EQ_U64(s2, 2);
    CHECK_EQ_U64(s3, 3);
    CHECK_EQ_U64(w.version, 10);
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, 2, &rep), -EINVAL); /* out of order */
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, 99, &rep), -EINVAL);
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, 10, &rep), -EINVAL); /* still open */
    CHECK_EQ_U64(w.durable, 0);
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, 1, &rep), 0);
    CHECK_EQ_U64(w.durable, 1);
    CHECK_EQ_U64(rep.world_line, 3);
    CHECK_EQ_U64(rep.worker, SELF);
    CHECK_EQ_U64(rep.version, 1);
    CHECK_EQ_U64(dpr_depset_count(rep.deps), 1);
    CHECK_EQ_U64(dpr_depset_get(rep.deps, 9), 1);
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, 1, &rep), -EINVAL); /* twice */
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, 2, &rep), 0);
    CHECK_EQ_U64(dpr_depset_count(rep.deps), 0);
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, 3, &rep), 0);
    CHECK_EQ_U64(w.durable, 3);
    CHECK_EQ_U64(w.nsealed, 3); /* kept until a cut covers them */
    dpr_worker_free(&w);
}

TEST(checkpoint_abort_merges_into_the_open_version)
{
    dpr_worker w;
    uint64_t v, s1, s2;
    req r;
    dpr_worker_report rep;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 4), 0);
    const uint64_t d1[] = {9, 3, 8, 4};
    make_req(&r, 1, 0, 2, d1);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, 0, &s1), 0); /* seals 5: its write fails */
    const uint64_t d2[] = {9, 5};
    make_req(&r, 1, 0, 1, d2);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(s1, 5);
    CHECK_EQ_U64(v, 6);
    CHECK_EQ_INT(dpr_worker_checkpoint_abort(&w, 6), -EINVAL); /* still open */
    CHECK_EQ_INT(dpr_worker_checkpoint_abort(&w, s1), 0);
    CHECK_EQ_INT(dpr_worker_checkpoint_abort(&w, s1), -EINVAL); /* twice */
    CHECK_EQ_U64(w.nsealed, 0);
    CHECK_EQ_U64(w.version, 6);
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, s1, &rep), -EINVAL); /* never reported */
    /* the open version holds 5's dependencies, max-merged with its own */
    CHECK_EQ_U64(dpr_depset_get(&w.open_deps, 9), 5);
    CHECK_EQ_U64(dpr_depset_get(&w.open_deps, 8), 4);
    /* and counts as holding batches: a newer target needs a seal */
    make_req(&r, 1, 10, 0, NULL);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), -EAGAIN);
    CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, 10, &s2), 0);
    CHECK_EQ_U64(s2, 6);
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, 6, &rep), 0);
    CHECK_EQ_U64(rep.version, 6);
    CHECK_EQ_U64(dpr_depset_count(rep.deps), 2);
    CHECK_EQ_U64(w.durable, 6);
    /* a durable version cannot be aborted */
    CHECK_EQ_INT(dpr_worker_checkpoint_abort(&w, 6), -EINVAL);
    dpr_worker_free(&w);
}

TEST(pruning_by_cut)
{
    dpr_worker w;
    uint64_t s;
    dpr_worker_report rep;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, 0, &s), 0); /* seals 1..5 */
    for (uint64_t i = 1; i <= 3; i++)
        CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, i, &rep), 0);
    dpr_worker_observe_cut(&w, 2);
    CHECK_EQ_U64(w.cut, 2);
    CHECK_EQ_U64(w.nsealed, 3);
    CHECK_EQ_U64(w.sealed[0].version, 3);
    dpr_worker_observe_cut(&w, 1); /* an older cut changes nothing */
    CHECK_EQ_U64(w.cut, 2);
    CHECK_EQ_U64(w.nsealed, 3);
    dpr_worker_observe_cut(&w, 5); /* 4 and 5 are not durable yet */
    CHECK_EQ_U64(w.nsealed, 2);
    CHECK_EQ_U64(w.sealed[0].version, 4);
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, 4, &rep), 0);
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, 5, &rep), 0);
    dpr_worker_observe_cut(&w, 5);
    CHECK_EQ_U64(w.nsealed, 0);
    dpr_worker_free(&w);
}

TEST(rollback)
{
    dpr_worker w;
    uint64_t v, s;
    req r;
    dpr_worker_report rep;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    const uint64_t d[] = {5, 1};
    make_req(&r, 1, 0, 1, d);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
        CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, 0, &s), 0); /* seals 1..4 */
    }
    for (uint64_t i = 1; i <= 3; i++)
        CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, i, &rep), 0);
    dpr_worker_observe_cut(&w, 1);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0); /* open version 5 holds a batch */
    CHECK_EQ_U64(v, 5);
    CHECK_EQ_INT(dpr_worker_rollback(&w, 1, 2), -EINVAL); /* same world-line */
    CHECK_EQ_INT(dpr_worker_rollback(&w, 2, 0), -EINVAL); /* below the cut seen */
    CHECK_EQ_INT(dpr_worker_rollback(&w, 2, 2), 0);
    CHECK_EQ_U64(w.world_line, 2);
    CHECK_EQ_U64(w.nsealed, 0);
    CHECK_EQ_U64(w.durable, 2);
    CHECK_EQ_U64(w.cut, 2);
    CHECK_EQ_U64(w.version, 6); /* above every number used (5) */
    CHECK_EQ_U64(w.open_batches, 0);
    CHECK_EQ_U64(dpr_depset_count(&w.open_deps), 0);
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, 4, &rep), -EINVAL); /* dropped */
    CHECK_EQ_INT(dpr_worker_admit(&w, 1), DPR_ADMIT_REFUSE);
    CHECK_EQ_INT(dpr_worker_admit(&w, 2), DPR_ADMIT_EXECUTE);
    /* a fast-forward counts as a used number even if never sealed */
    make_req(&r, 2, 100, 0, NULL);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(v, 100);
    CHECK_EQ_INT(dpr_worker_rollback(&w, 3, 2), 0);
    CHECK_EQ_U64(w.version, 101);
    /* a restore above everything used (the cut came from another process) */
    CHECK_EQ_INT(dpr_worker_rollback(&w, 4, 500), 0);
    CHECK_EQ_U64(w.version, 501);
    CHECK_EQ_U64(w.cut, 500);
    dpr_worker_free(&w);
}

TEST(version_overflow)
{
    dpr_worker w;
    uint64_t v, s;
    req r;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    make_req(&r, 1, UINT64_MAX, 0, NULL);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(v, UINT64_MAX);
    CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, 0, &s), -EOVERFLOW);
    CHECK_EQ_INT(dpr_worker_rollback(&w, 2, 1), -EOVERFLOW);
    dpr_worker_free(&w);
}

/* --- dpr_worker_check_batch --------------------------------------------- */

#define TWO62 (UINT64_C(1) << 62)

/* The worker's observable state, to show a refused check changed nothing. */
typedef struct snapshot {
    uint64_t world_line, version, open_batches, durable, cut, highest, bound;
    size_t open_deps, nsealed;
} snapshot;

static snapshot snap(const dpr_worker *w, const dpr_worker_bounds *b)
{
    snapshot s = {w->world_line, w->version, w->open_batches, w->durable, w->cut, w->highest,
                  dpr_worker_version_bound(w, b), dpr_depset_count(&w->open_deps), w->nsealed};
    return s;
}

static bool same(snapshot a, snapshot b)
{
    return memcmp(&a, &b, sizeof(a)) == 0;
}

/* check_batch's code for lower bound lb and n (worker, version) pairs; err
 * gets the message. */
static int check(const dpr_worker *w, const dpr_worker_bounds *b, uint64_t lb, size_t n,
                 const uint64_t *pairs, dpr_err *err)
{
    req r;
    make_req(&r, w->world_line, lb, n, pairs);
    *err = (dpr_err)DPR_ERR_INIT;
    return dpr_worker_check_batch(w, &r.h, b, err);
}

/* Rule 1: a dependency on the worker itself is at most its highest version. */
TEST(check_dependency_on_itself)
{
    dpr_worker w;
    dpr_err err;
    const uint64_t domain[] = {7, SELF};
    dpr_worker_bounds b = {.max_version = 0, .workers = domain, .nworkers = 2};
    uint64_t v;
    req r;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 4), 0); /* opens 5 */
    CHECK_EQ_INT(check(&w, &b, 0, 1, (uint64_t[]){SELF, 5}, &err), 0);
    snapshot before = snap(&w, &b);
    CHECK_EQ_INT(check(&w, &b, 0, 1, (uint64_t[]){SELF, 6}, &err), -EINVAL);
    CHECK_EQ_INT(err.code, -EINVAL);
    CHECK(strcmp(err.msg, "dependency (100, 6): this worker never opened a version above 5") ==
          0);
    CHECK(same(before, snap(&w, &b)));
    /* even when the bound would allow the number: no session saw it here */
    CHECK(dpr_worker_version_bound(&w, &b) > 6);
    /* after a fast-forward to 40, 40 is fine and 41 is not */
    make_req(&r, 1, 40, 0, NULL);
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, NULL), 0);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(v, 40);
    CHECK_EQ_INT(check(&w, &b, 0, 1, (uint64_t[]){SELF, 40}, &err), 0);
    CHECK_EQ_INT(check(&w, &b, 0, 1, (uint64_t[]){SELF, 41}, &err), -EINVAL);
    dpr_worker_free(&w);
}

/* Rule 2: dependencies on other workers name a worker of the domain; the
 * issue's (999, 5) among them. */
TEST(check_unknown_worker)
{
    dpr_worker w;
    dpr_err err;
    const uint64_t domain[] = {3, 7, SELF, 1000};
    dpr_worker_bounds b = {.max_version = 10, .workers = domain, .nworkers = 4};
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    snapshot before = snap(&w, &b);
    CHECK_EQ_INT(check(&w, &b, 0, 2, (uint64_t[]){3, 5, 1000, 2}, &err), 0);
    CHECK_EQ_INT(check(&w, &b, 0, 1, (uint64_t[]){999, 5}, &err), -ENXIO);
    CHECK(strcmp(err.msg, "dependency (999, 5): worker 999 is not in this cluster") == 0);
    CHECK_EQ_INT(check(&w, &b, 0, 2, (uint64_t[]){7, 1, 999, 5}, &err), -ENXIO);
    CHECK_EQ_INT(check(&w, &b, 0, 1, (uint64_t[]){0, 1}, &err), -ENXIO);
    CHECK_EQ_INT(check(&w, &b, 0, 1, (uint64_t[]){UINT64_MAX, 1}, &err), -ENXIO);
    /* version 0 means no dependency: ignored, whatever the worker */
    CHECK_EQ_INT(check(&w, &b, 0, 1, (uint64_t[]){999, 0}, &err), 0);
    /* nothing learned yet (no DPR.SYNC answer): every other worker is unknown */
    dpr_worker_bounds none = {0};
    CHECK_EQ_INT(check(&w, &none, 0, 1, (uint64_t[]){3, 1}, &err), -ENXIO);
    CHECK_EQ_INT(check(&w, &none, 0, 1, (uint64_t[]){SELF, 1}, &err), 0);
    /* once the worker is listed the same batch passes */
    const uint64_t more[] = {3, 7, SELF, 999, 1000};
    dpr_worker_bounds b2 = {.max_version = 10, .workers = more, .nworkers = 5};
    CHECK_EQ_INT(check(&w, &b2, 0, 1, (uint64_t[]){999, 5}, &err), 0);
    CHECK(same(before, snap(&w, &b)));
    dpr_worker_free(&w);
}

/* Rule 3: versions at most max(highest, max_version + allowance), never at
 * or above 2^62; the 2^64 - 1 and 2^62 among them. */
TEST(check_version_bounds)
{
    dpr_worker w;
    dpr_err err;
    const uint64_t domain[] = {7, SELF};
    dpr_worker_bounds b = {.max_version = 100, .workers = domain, .nworkers = 2};
    const uint64_t bound = 100 + DPR_WORKER_SLACK;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    CHECK_EQ_U64(dpr_worker_version_bound(&w, &b), bound);
    snapshot before = snap(&w, &b);
    CHECK_EQ_INT(check(&w, &b, bound, 0, NULL, &err), 0);
    CHECK_EQ_INT(check(&w, &b, bound + 1, 0, NULL, &err), -ERANGE);
    CHECK(strcmp(err.msg, "version lower bound 1048677: above any version of this cluster "
                          "(at most 1048676 now)") == 0);
    CHECK_EQ_INT(check(&w, &b, 0, 1, (uint64_t[]){7, bound}, &err), 0);
    CHECK_EQ_INT(check(&w, &b, 0, 1, (uint64_t[]){7, bound + 1}, &err), -ERANGE);
    CHECK(strcmp(err.msg, "dependency (7, 1048677): above any version of this cluster "
                          "(at most 1048676 now)") == 0);
    /* the values */
    CHECK_EQ_INT(check(&w, &b, UINT64_MAX, 0, NULL, &err), -EINVAL);
    CHECK(strcmp(err.msg, "version lower bound 18446744073709551615: versions stay below "
                          "4611686018427387904") == 0);
    CHECK_EQ_INT(check(&w, &b, TWO62, 0, NULL, &err), -EINVAL);
    CHECK_EQ_INT(check(&w, &b, TWO62 - 1, 0, NULL, &err), -ERANGE);
    CHECK_EQ_INT(check(&w, &b, 0, 1, (uint64_t[]){7, UINT64_MAX}, &err), -EINVAL);
    CHECK(same(before, snap(&w, &b)));

    /* the allowance grows with the time since the answer, by the domain's
     * size per millisecond */
    b.since_sync_ms = 1000;
    CHECK_EQ_U64(dpr_worker_version_bound(&w, &b), bound + 2 * 1000);
    CHECK_EQ_INT(check(&w, &b, bound + 2000, 0, NULL, &err), 0);
    CHECK_EQ_INT(check(&w, &b, bound + 2001, 0, NULL, &err), -ERANGE);
    b.nworkers = 0; /* at least one per millisecond */
    b.workers = NULL;
    CHECK_EQ_U64(dpr_worker_version_bound(&w, &b), bound + 1000);
    /* a finder unreachable for ever: the bound saturates below the limit */
    b.since_sync_ms = UINT64_MAX;
    CHECK_EQ_U64(dpr_worker_version_bound(&w, &b), TWO62 - 1);
    CHECK_EQ_INT(check(&w, &b, TWO62 - 1, 0, NULL, &err), 0);
    CHECK_EQ_INT(check(&w, &b, TWO62, 0, NULL, &err), -EINVAL);
    b.since_sync_ms = 0;
    b.max_version = UINT64_MAX; /* a finder's nonsense cannot lift it either */
    CHECK_EQ_U64(dpr_worker_version_bound(&w, &b), TWO62 - 1);
    dpr_worker_free(&w);

    /* versions at or below the worker's own highest always pass */
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 5000000), 0);
    b = (dpr_worker_bounds){.max_version = 10, .workers = domain, .nworkers = 2};
    CHECK_EQ_U64(dpr_worker_version_bound(&w, &b), 5000001);
    CHECK_EQ_INT(check(&w, &b, 5000001, 1, (uint64_t[]){7, 5000001}, &err), 0);
    CHECK_EQ_INT(check(&w, &b, 5000002, 0, NULL, &err), -ERANGE);
    dpr_worker_free(&w);
}

/* Rule 0: a batch of another domain is refused with -EXDEV, whatever else
 * it holds, and changes nothing; the same batch in the worker's domain
 * runs. */
TEST(check_other_domain)
{
    dpr_worker w;
    dpr_err err = DPR_ERR_INIT;
    const uint64_t domain[] = {7, SELF};
    dpr_worker_bounds b = {.max_version = 100, .workers = domain, .nworkers = 2};
    uint64_t v;
    char want[160];
    req r;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    snapshot before = snap(&w, &b);
    /* a perfectly good batch, but of domain "blue" */
    make_req(&r, 1, 3, 1, (uint64_t[]){7, 2});
    r.h.domain = OTHER;
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, &err), -EXDEV);
    CHECK_EQ_INT(err.code, -EXDEV);
    snprintf(want, sizeof(want), "domain %" PRIu64 ": this worker belongs to domain %" PRIu64
             " (the batch comes from a session of another domain)", OTHER, DOM);
    CHECK(strcmp(err.msg, want) == 0);
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, NULL), -EXDEV); /* err optional */
    /* -EXDEV wins over every other rule: never-valid versions, unknown
     * workers, stale bounds, a missing dependency list */
    make_req(&r, 1, UINT64_MAX, 2, (uint64_t[]){SELF, 99, 999, 5});
    r.h.domain = OTHER;
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, &err), -EXDEV);
    r.h.deps = NULL;
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, &err), -EXDEV);
    /* a domain 0 (the decoder refuses it; a caller's own header) is foreign too */
    make_req(&r, 1, 0, 0, NULL);
    r.h.domain = 0;
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, &err), -EXDEV);
    /* nothing changed: no fast-forward, no dependency folded */
    CHECK(same(before, snap(&w, &b)));
    CHECK_EQ_U64(w.version, 1);
    CHECK_EQ_U64(dpr_depset_count(&w.open_deps), 0);
    /* the same batch in the worker's own domain passes and runs */
    make_req(&r, 1, 3, 1, (uint64_t[]){7, 2});
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, &err), 0);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(v, 3);
    CHECK_EQ_U64(dpr_depset_get(&w.open_deps, 7), 2);
    dpr_worker_free(&w);
    /* a worker of domain "blue" takes blue's batches and refuses default's */
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, OTHER, 1, 0), 0);
    make_req(&r, 1, 0, 0, NULL);
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, &err), -EXDEV);
    r.h.domain = OTHER;
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, &err), 0);
    dpr_worker_free(&w);
}

/* Which error wins, and malformed input to the function itself. */
TEST(check_error_order)
{
    dpr_worker w;
    dpr_err err;
    const uint64_t domain[] = {7, SELF};
    dpr_worker_bounds b = {.max_version = 100, .workers = domain, .nworkers = 2};
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    /* an unknown worker first, a dependency on itself above highest later */
    CHECK_EQ_INT(check(&w, &b, 0, 2, (uint64_t[]){999, 5, SELF, 9}, &err), -EINVAL);
    CHECK_EQ_INT(check(&w, &b, TWO62 - 1, 1, (uint64_t[]){999, 5}, &err), -ERANGE);
    CHECK_EQ_INT(check(&w, &b, 5, 2, (uint64_t[]){999, 5, 7, TWO62 - 1}, &err), -ENXIO);
    req r;
    make_req(&r, 1, 0, 1, (uint64_t[]){7, 1});
    r.h.deps = NULL;
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, &err), -EINVAL);
    dpr_worker_free(&w);
}

/* A forged batch lifts the worker to the bound at most once per finder
 * answer: the bound does not grow with the versions it lifted. */
TEST(check_no_compounding)
{
    dpr_worker w;
    const uint64_t domain[] = {SELF};
    dpr_worker_bounds b = {.max_version = 0, .workers = domain, .nworkers = 1};
    uint64_t v, s, bound;
    req r;
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    bound = dpr_worker_version_bound(&w, &b);
    for (int i = 0; i < 100; i++) {
        uint64_t lb = dpr_worker_version_bound(&w, &b);
        make_req(&r, 1, lb, 0, NULL);
        CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, NULL), 0);
        int rc = dpr_worker_execute(&w, &r.h, &v);
        if (rc == -EAGAIN) {
            CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, lb, &s), 0);
            rc = dpr_worker_execute(&w, &r.h, &v);
        }
        CHECK_EQ_INT(rc, 0);
        make_req(&r, 1, lb + 1, 0, NULL);
        CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, NULL), -ERANGE);
    }
    CHECK_EQ_U64(dpr_worker_version_bound(&w, &b), bound);
    CHECK_EQ_U64(w.version, bound);
    /* the worker's own checkpoints go on from there */
    CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, 0, &s), 0);
    CHECK_EQ_U64(w.version, bound + 1);
    CHECK_EQ_U64(dpr_worker_version_bound(&w, &b), bound + 1);
    /* the finder learned it: one more allowance */
    b.max_version = bound;
    CHECK_EQ_U64(dpr_worker_version_bound(&w, &b), bound + DPR_WORKER_SLACK);
    dpr_worker_free(&w);
}

/* Whatever passed the check, checkpoints and rollbacks keep working. */
TEST(checked_input_never_overflows)
{
    dpr_worker w;
    const uint64_t domain[] = {7, SELF};
    dpr_worker_bounds b = {.max_version = UINT64_MAX, .workers = domain, .nworkers = 2,
                           .since_sync_ms = UINT64_MAX};
    uint64_t v, s, lb = dpr_worker_version_bound(&(dpr_worker){.highest = 1}, &b);
    req r;
    CHECK_EQ_U64(lb, TWO62 - 1);
    CHECK_EQ_INT(dpr_worker_init(&w, SELF, DOM, 1, 0), 0);
    make_req(&r, 1, lb, 1, (uint64_t[]){7, lb});
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, NULL), 0);
    CHECK_EQ_INT(dpr_worker_execute(&w, &r.h, &v), 0);
    CHECK_EQ_U64(v, lb);
    for (int i = 0; i < 1000; i++)
        CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, 0, &s), 0);
    CHECK_EQ_INT(dpr_worker_rollback(&w, 2, 0), 0);
    CHECK(w.version < (UINT64_C(1) << 63));
    /* the worker is above the limit now: its own versions still pass */
    make_req(&r, 2, w.highest, 1, (uint64_t[]){SELF, w.highest});
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, NULL), 0);
    make_req(&r, 2, w.highest + 1, 0, NULL);
    CHECK_EQ_INT(dpr_worker_check_batch(&w, &r.h, &b, NULL), -EINVAL);
    dpr_worker_free(&w);
}

/* Random schedule: every report's dependencies are <= its version, on other
 * workers only, and equal the max over the batches that ran in it. */
TEST(random_reports_never_point_forward)
{
    dpr_worker w;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    bool ok = dpr_worker_init(&w, 3, DOM, 1, 0) == 0;
    dpr_depset expect[64]; /* per sealed version, by order */
    uint64_t expect_version[64];
    dpr_depset cur = DPR_DEPSET_INIT;
    size_t nsealed = 0, ncompleted = 0;
    for (int step = 0; step < 20000 && ok; step++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned what = (unsigned)(x % 10);
        if (what < 6) {
            uint64_t pairs[8];
            size_t n = (x >> 8) % 4;
            for (size_t i = 0; i < n; i++) {
                pairs[2 * i] = (x >> (12 + 3 * i)) % 6;
                pairs[2 * i + 1] = w.version + (x >> (20 + 4 * i)) % 3;
            }
            req r;
            make_req(&r, 1, (x >> 40) % 2 ? w.version : 0, n, pairs);
            uint64_t v;
            int rc = dpr_worker_execute(&w, &r.h, &v);
            if (rc == -EAGAIN && nsealed < 64) {
                uint64_t s;
                expect_version[nsealed] = w.version;
                dpr_depset_init(&expect[nsealed]);
                ok = ok && dpr_depset_copy(&expect[nsealed], &cur) == 0;
                dpr_depset_clear(&cur);
                nsealed++;
                ok = ok && dpr_worker_checkpoint_begin(&w, dpr_worker_batch_target(&r.h), &s) == 0;
                rc = dpr_worker_execute(&w, &r.h, &v);
            }
            if (rc == -EAGAIN)
                continue;
            ok = ok && rc == 0 && v >= dpr_worker_batch_target(&r.h);
            for (size_t i = 0; i < n; i++)
                if (pairs[2 * i] != 3)
                    ok = ok && dpr_depset_put_max(&cur, pairs[2 * i], pairs[2 * i + 1]) == 0;
        } else if (what < 8 && nsealed < 64) {
            uint64_t s;
            expect_version[nsealed] = w.version;
            dpr_depset_init(&expect[nsealed]);
            ok = ok && dpr_depset_copy(&expect[nsealed], &cur) == 0;
            dpr_depset_clear(&cur);
            nsealed++;
            ok = ok && dpr_worker_checkpoint_begin(&w, 0, &s) == 0 &&
                 s == expect_version[nsealed - 1];
        } else if (ncompleted < nsealed) {
            dpr_worker_report rep;
            ok = ok && dpr_worker_checkpoint_complete(&w, expect_version[ncompleted], &rep) == 0;
            size_t it = 0;
            dpr_dep d;
            while (ok && dpr_depset_next(rep.deps, &it, &d))
                ok = d.version <= rep.version && d.worker != 3 &&
                     dpr_depset_get(&expect[ncompleted], d.worker) == d.version;
            ok = ok && dpr_depset_count(rep.deps) == dpr_depset_count(&expect[ncompleted]);
            ncompleted++;
            dpr_worker_observe_cut(&w, rep.version);
        }
    }
    CHECK(ok);
    CHECK(ncompleted > 10);
    for (size_t i = 0; i < nsealed; i++)
        dpr_depset_free(&expect[i]);
    dpr_depset_free(&cur);
    dpr_worker_free(&w);
}

/* 70,000 workers in one batch's dependencies and in the report. */
TEST(many_workers)
{
    enum { N = 70000 };
    dpr_worker w;
    uint8_t *raw = malloc((size_t)N * 16);
    CHECK(raw != NULL);
    if (!raw)
        return;
    for (uint64_t i = 0; i < N; i++) {
        dpr_put_u64(raw + 16 * i, i * 0x100000001ULL + 1);
        dpr_put_u64(raw + 16 * i + 8, 1 + i % 50);
    }
    dpr_request_hdr h = {.domain = DOM, .world_line = 1, .batch_id = 1, .op_count = 1,
                         .dep_count = N,
                         .deps = raw};
    uint64_t v, s;
    dpr_worker_report rep;
    CHECK_EQ_INT(dpr_worker_init(&w, 0, DOM, 1, 0), 0);
    CHECK_EQ_INT(dpr_worker_execute(&w, &h, &v), 0);
    CHECK_EQ_U64(v, 50);
    CHECK_EQ_INT(dpr_worker_checkpoint_begin(&w, 0, &s), 0);
    CHECK_EQ_INT(dpr_worker_checkpoint_complete(&w, s, &rep), 0);
    CHECK_EQ_U64(dpr_depset_count(rep.deps), N);
    CHECK_EQ_U64(dpr_depset_get(rep.deps, 69999 * 0x100000001ULL + 1), 1 + 69999 % 50);
    dpr_worker_free(&w);
    free(raw);
}

int main(void)
{
    RUN(init_and_admission);
    RUN(batch_target);
    RUN(fast_forward_relabels_empty_version);
    RUN(fast_forward_nonempty_needs_seal);
    RUN(plain_operations_do_not_pin);
    RUN(dependency_folding);
    RUN(checkpoint_order_and_reports);
    RUN(checkpoint_abort_merges_into_the_open_version);
    RUN(pruning_by_cut);
    RUN(rollback);
    RUN(version_overflow);
    RUN(check_dependency_on_itself);
    RUN(check_unknown_worker);
    RUN(check_version_bounds);
    RUN(check_other_domain);
    RUN(check_error_order);
    RUN(check_no_compounding);
    RUN(checked_input_never_overflows);
    RUN(random_reports_never_point_forward);
    RUN(many_workers);
    return check_summary("worker");
}
