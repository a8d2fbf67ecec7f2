/* worker.c - the worker side of DPR (see worker.h). */
#include "dpr/worker.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

int dpr_worker_init(dpr_worker *w, uint64_t id, uint64_t domain_id, uint64_t world_line,
                    uint64_t restored)
{
    int r = 0;
    memset(w, 0, sizeof(*w));
    dpr_depset_init(&w->open_deps);
    if (domain_id == 0) {
        r = -EINVAL;
        goto out;
    }
    if (restored == UINT64_MAX) {
        r = -EOVERFLOW;
        goto out;
    }
    w->id = id;
    w->domain = domain_id;
    w->world_line = world_line;
    w->version = restored + 1;
    w->highest = w->version;
    w->durable = restored;
    w->cut = restored;
out:
    return r;
}

static void drop_sealed(dpr_worker *w, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        dpr_depset_free(&w->sealed[i].deps);
}

void dpr_worker_free(dpr_worker *w)
{
    drop_sealed(w, 0, w->nsealed);
    free(w->sealed);
    dpr_depset_free(&w->open_deps);
    memset(w, 0, sizeof(*w));
}

dpr_admit dpr_worker_admit(const dpr_worker *w, uint64_t batch_world_line)
{
    if (batch_world_line == w->world_line)
        return DPR_ADMIT_EXECUTE;
    return batch_world_line < w->world_line ? DPR_ADMIT_REFUSE : DPR_ADMIT_CATCH_UP;
}

uint64_t dpr_worker_batch_target(const dpr_request_hdr *h)
{
    if (!h)
        return 0;
    uint64_t target = h->version_lb;
    for (uint32_t i = 0; h->deps && i < h->dep_count; i++) {
        uint64_t worker, version;
        dpr_wire_request_dep(h, i, &worker, &version);
        if (version > target)
            target = version;
    }
    return target;
}

/* --- checking batches from the network --------------------------------- */

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static bool known_worker(const dpr_worker_bounds *b, uint64_t id)
{
    size_t lo = 0, hi = b->workers ? b->nworkers : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->workers[mid] == id)
            return true;
        if (b->workers[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

uint64_t dpr_worker_version_bound(const dpr_worker *w, const dpr_worker_bounds *b)
{
    uint64_t rate = b->nworkers > 1 ? b->nworkers : 1; /* versions per ms, at most */
    uint64_t allowance = sat_add(DPR_WORKER_SLACK, sat_mul(rate, b->since_sync_ms));
    uint64_t bound = sat_add(b->max_version, allowance);
    if (bound > DPR_WORKER_VERSION_LIMIT - 1)
        bound = DPR_WORKER_VERSION_LIMIT - 1;
    return bound > w->highest ? bound : w->highest;
}

/* What a version of the header is, for messages: "version lower bound" or
 * "dependency (W, V)". */
static void describe(char *buf, size_t cap, bool is_dep, uint64_t worker, uint64_t version)
{
    if (is_dep)
        snprintf(buf, cap, "dependency (%" PRIu64 ", %" PRIu64 ")", worker, version);
    else
        snprintf(buf, cap, "version lower bound %" PRIu64, version);
}

/* Rule 1 and the version limit for one version of h (worker == w->id for
 * dependencies on the worker itself): 0 or -EINVAL. */
static int check_never_valid(const dpr_worker *w, bool is_dep, uint64_t worker,
                             uint64_t version, dpr_err *err)
{
    char what[96];

    if (version <= w->highest)
        return 0;
    describe(what, sizeof(what), is_dep, worker, version);
    if (is_dep && worker == w->id)
        return dpr_err_set(err, -EINVAL,
                           "%s: this worker never opened a version above %" PRIu64, what,
                           w->highest);
    if (version >= DPR_WORKER_VERSION_LIMIT)
        return dpr_err_set(err, -EINVAL, "%s: versions stay below %" PRIu64, what,
                           DPR_WORKER_VERSION_LIMIT);
    return 0;
}

/* Rules 2 and 3 for one version of h: 0, -ENXIO or -ERANGE. */
static int check_stale(const dpr_worker *w, const dpr_worker_bounds *b, uint64_t bound,
                       bool is_dep, uint64_t worker, uint64_t version, dpr_err *err)
{
    char what[96];

    describe(what, sizeof(what), is_dep, worker, version);
    if (is_dep && worker != w->id && !known_worker(b, worker))
        return dpr_err_set(err, -ENXIO, "%s: worker %" PRIu64 " is not in this cluster",
                           what, worker);
    if (version > bound)
        return dpr_err_set(err, -ERANGE,
                           "%s: above any version of this cluster (at most %" PRIu64 " now)",
                           what, bound);
    return 0;
}

int dpr_worker_check_batch(const dpr_worker *w, const dpr_request_hdr *h,
                           const dpr_worker_bounds *b, dpr_err *err)
{
    uint64_t bound = dpr_worker_version_bound(w, b);
    int r;

    if (h->domain != w->domain)
        return dpr_err_set(err, -EXDEV,
                           "domain %" PRIu64 ": this worker belongs to domain %" PRIu64
                           " (the batch comes from a session of another domain)",
                           h->domain, w->domain);
    if (h->dep_count && !h->deps)
        return dpr_err_set(err, -EINVAL, "%" PRIu32 " dependencies announced, none given",
                           h->dep_count);
    /* first what no answer of the finder can make valid, then the rest */
    for (int pass = 0; pass < 2; pass++) {
        r = pass == 0 ? check_never_valid(w, false, 0, h->version_lb, err)
                      : check_stale(w, b, bound, false, 0, h->version_lb, err);
        for (uint32_t i = 0; r == 0 && i < h->dep_count; i++) {
            uint64_t worker, version;
            dpr_wire_request_dep(h, i, &worker, &version);
            if (version == 0)
                continue; /* no dependency */
            r = pass == 0 ? check_never_valid(w, true, worker, version, err)
                          : check_stale(w, b, bound, true, worker, version, err);
        }
        if (r < 0)
            return r;
    }
    return 0;
}

/* Folds the batch's dependencies on other workers into the open version
 * (already at or above the batch's target). */
static int fold_deps(dpr_worker *w, const dpr_request_hdr *h)
{
    int r = 0;
    for (uint32_t i = 0; i < h->dep_count; i++) {
        uint64_t worker, version;
        dpr_wire_request_dep(h, i, &worker, &version);
        assert(version <= w->version); /* dependencies never point forward */
        if (worker == w->id)
            continue;
        r = dpr_depset_put_max(&w->open_deps, worker, version);
        if (r < 0)
            break;
    }
    return r;
}

int dpr_worker_execute(dpr_worker *w, const dpr_request_hdr *h, uint64_t *version)
{
    int r = 0;
    if (!h)
        goto done; /* untracked operation: does not pin the version number */
    if (h->dep_count && !h->deps) {
        r = -EINVAL;
        goto out;
    }
    uint64_t target = dpr_worker_batch_target(h);
    if (target > w->version) {
        if (w->open_batches) {
            r = -EAGAIN;
            goto out;
        }
        /* relabel the empty open version before folding, so no stored
         * dependency is ever above the version that holds it */
        w->version = target;
        if (target > w->highest)
            w->highest = target;
    }
    assert(w->version >= target && w->version <= w->highest);
    r = fold_deps(w, h);
    if (r < 0)
        goto out; /* deps folded so far are <= version: harmless */
    w->open_batches++;
done:
    *version = w->version;
out:
    return r;
}

static int reserve_sealed(dpr_worker *w)
{
    if (w->nsealed < w->cap)
        return 0;
    size_t cap = w->cap ? w->cap * 2 : 4;
    dpr_worker_version *p = realloc(w->sealed, cap * sizeof(*p));
    if (!p)
        return -ENOMEM;
    w->sealed = p;
    w->cap = cap;
    return 0;
}

int dpr_worker_checkpoint_begin(dpr_worker *w, uint64_t next_version, uint64_t *sealed)
{
    int r = 0;
    if (w->version == UINT64_MAX) {
        r = -EOVERFLOW;
        goto out;
    }
    r = reserve_sealed(w);
    if (r < 0)
        goto out;
    dpr_worker_version *v = &w->sealed[w->nsealed++];
    v->version = w->version;
    v->durable = false;
    v->deps = w->open_deps; /* moved */
    dpr_depset_init(&w->open_deps);
    *sealed = w->version;
    w->version = next_version > w->version + 1 ? next_version : w->version + 1;
    if (w->version > w->highest)
        w->highest = w->version;
    assert(w->version > *sealed); /* versions only grow */
    w->open_batches = 0;
out:
    return r;
}

int dpr_worker_checkpoint_complete(dpr_worker *w, uint64_t version,
                                   dpr_worker_report *out)
{
    int r = -EINVAL;
    for (size_t i = 0; i < w->nsealed; i++) {
        dpr_worker_version *v = &w->sealed[i];
        if (v->durable)
            continue;
        if (v->version != version)
            break; /* not the oldest pending checkpoint */
        assert(version > w->durable); /* sealed versions grow, so durable does */
        v->durable = true;
        w->durable = version;
        out->world_line = w->world_line;
        out->worker = w->id;
        out->version = version;
        out->deps = &v->deps;
        r = 0;
        break;
    }
    return r;
}

int dpr_worker_checkpoint_abort(dpr_worker *w, uint64_t version)
{
    dpr_depset merged;
    dpr_dep d;
    size_t it = 0;
    int r = -EINVAL;

    dpr_depset_init(&merged);
    if (w->nsealed == 0)
        goto out;
    dpr_worker_version *v = &w->sealed[w->nsealed - 1];
    if (v->version != version || v->durable)
        goto out;
    r = dpr_depset_copy(&merged, &w->open_deps);
    while (r == 0 && dpr_depset_next(&v->deps, &it, &d))
        r = dpr_depset_put_max(&merged, d.worker, d.version);
    if (r < 0)
        goto out;
    dpr_depset_free(&w->open_deps);
    w->open_deps = merged; /* moved */
    dpr_depset_init(&merged);
    dpr_depset_free(&v->deps);
    w->nsealed--;
    w->open_batches++;
out:
    dpr_depset_free(&merged);
    return r;
}

/* Drops the durable versions at or below the cut (a prefix of sealed[]). */
static void prune_sealed(dpr_worker *w)
{
    size_t k = 0;
    while (k < w->nsealed && w->sealed[k].durable && w->sealed[k].version <= w->cut)
        k++;
    if (k == 0)
        return;
    drop_sealed(w, 0, k);
    memmove(w->sealed, w->sealed + k, (w->nsealed - k) * sizeof(*w->sealed));
    w->nsealed -= k;
}

void dpr_worker_observe_cut(dpr_worker *w, uint64_t cut_version)
{
    if (cut_version > w->cut)
        w->cut = cut_version;
    prune_sealed(w);
}

int dpr_worker_rollback(dpr_worker *w, uint64_t new_world_line, uint64_t restore_version)
{
    int r = 0;
    uint64_t base = w->highest > restore_version ? w->highest : restore_version;
    if (new_world_line <= w->world_line || restore_version < w->cut) {
        r = -EINVAL;
        goto out;
    }
    if (base == UINT64_MAX) {
        r = -EOVERFLOW;
        goto out;
    }
    /* above restore_version: lost; at or below: inside the cut, pruned */
    drop_sealed(w, 0, w->nsealed);
    w->nsealed = 0;
    dpr_depset_clear(&w->open_deps);
    w->open_batches = 0;
    w->world_line = new_world_line;
    w->version = base + 1;
    w->highest = w->version;
    w->durable = restore_version;
    w->cut = restore_version;
    assert(w->version > w->durable); /* no version number is reused */
out:
    return r;
}
