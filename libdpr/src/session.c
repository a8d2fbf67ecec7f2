/* session.c - the client session side of DPR (see session.h). */
#include "dpr/session.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- the ring of operations above the commit point ------------------------ */

static dpr_session_op *op_at(const dpr_session *s, size_t i)
{
    return &s->ops[(s->ops_head + i) & (s->ops_cap - 1)];
}

/* Makes room for `more` operations (capacity stays a power of two). */
static int ring_reserve(dpr_session *s, size_t more)
{
    if (more > SIZE_MAX / 2 - s->ops_len)
        return -ENOMEM;
    size_t need = s->ops_len + more;
    if (need <= s->ops_cap)
        return 0;
    size_t cap = s->ops_cap ? s->ops_cap : 16;
    while (cap < need)
        cap *= 2;
    if (cap > SIZE_MAX / sizeof(dpr_session_op))
        return -ENOMEM;
    assert((cap & (cap - 1)) == 0);
    dpr_session_op *ops = malloc(cap * sizeof(*ops));
    if (!ops)
        return -ENOMEM;
    for (size_t i = 0; i < s->ops_len; i++)
        ops[i] = *op_at(s, i);
    free(s->ops);
    s->ops = ops;
    s->ops_cap = cap;
    s->ops_head = 0;
    return 0;
}

static void ring_push(dpr_session *s, const dpr_session_op *op)
{
    assert(s->ops_len < s->ops_cap); /* reserved */
    assert(s->ops_len == 0 || op->seq == op_at(s, s->ops_len - 1)->seq + 1);
    *op_at(s, s->ops_len) = *op;
    s->ops_len++;
}

static void ring_pop(dpr_session *s)
{
    assert(s->ops_len > 0);
    s->ops_head = (s->ops_head + 1) & (s->ops_cap - 1);
    s->ops_len--;
}

/* Ring index of operation seq, or ops_len if it is not in the ring. The ring
 * always holds consecutive sequence numbers. */
static size_t ring_index(const dpr_session *s, uint64_t seq)
{
    if (s->ops_len == 0)
        return 0;
    uint64_t head = op_at(s, 0)->seq;
    assert(op_at(s, s->ops_len - 1)->seq - head == s->ops_len - 1);
    if (seq < head || seq - head >= s->ops_len)
        return s->ops_len;
    return (size_t)(seq - head);
}

/* ---- small arrays ---------------------------------------------------------- */

static int grow_array(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 8;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem)
            return -ENOMEM;
        n *= 2;
    }
    void *q = realloc(*p, n * elem);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static int batches_reserve(dpr_session *s, size_t more)
{
    void *p = s->batches;
    int r = grow_array(&p, &s->batches_cap, s->nbatches + more, sizeof(dpr_session_batch));
    s->batches = p;
    return r;
}

static int lost_reserve(dpr_session *s, size_t more)
{
    void *p = s->lost;
    int r = grow_array(&p, &s->lost_cap, s->nlost + more, sizeof(dpr_seq_range));
    s->lost = p;
    return r;
}

/* Appends [seq, seq + 1) to the lost ranges (capacity reserved; seq above
 * every range, so they stay ascending). */
static void lost_add(dpr_session *s, uint64_t seq)
{
    assert(s->nlost == 0 || s->lost[s->nlost - 1].to <= seq);
    if (s->nlost && s->lost[s->nlost - 1].to == seq) {
        s->lost[s->nlost - 1].to = seq + 1;
        return;
    }
    assert(s->nlost < s->lost_cap);
    s->lost[s->nlost].from = seq;
    s->lost[s->nlost].to = seq + 1;
    s->nlost++;
}

/* Index of the first range of r[0..n) that ends above seq (n if none). */
static size_t ranges_find(const dpr_seq_range *r, size_t n, uint64_t seq)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (seq >= r[mid].to)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool ranges_contain(const dpr_seq_range *r, size_t n, uint64_t seq)
{
    size_t i = ranges_find(r, n, seq);
    return i < n && seq >= r[i].from;
}

static bool lost_contains(const dpr_session *s, uint64_t seq)
{
    return ranges_contain(s->lost, s->nlost, seq);
}

static size_t find_batch(const dpr_session *s, uint64_t batch_id)
{
    size_t i = 0;
    while (i < s->nbatches && s->batches[i].batch_id != batch_id)
        i++;
    return i;
}

static void remove_batch(dpr_session *s, size_t i)
{
    memmove(&s->batches[i], &s->batches[i + 1],
            (s->nbatches - i - 1) * sizeof(*s->batches));
    s->nbatches--;
}

/* ---- API -------------------------------------------------------------------- */

int dpr_session_init(dpr_session *s, dpr_session_id id, uint64_t domain_id,
                     uint64_t world_line, unsigned flags)
{
    int r = 0;
    memset(s, 0, sizeof(*s));
    dpr_depset_init(&s->deps);
    if ((flags & ~DPR_SESSION_RELAXED) || domain_id == 0) {
        r = -EINVAL;
        goto out;
    }
    s->id = id;
    s->domain = domain_id;
    s->flags = flags;
    s->world_line = world_line;
    s->seen_world_line = world_line;
    s->next_seq = 1;
    s->next_batch_id = 1;
out:
    return r;
}

void dpr_session_free(dpr_session *s)
{
    dpr_depset_free(&s->deps);
    free(s->ops);
    free(s->batches);
    free(s->lost);
    free(s->withdrawn);
    memset(s, 0, sizeof(*s));
}

static bool relaxed(const dpr_session *s)
{
    return s->flags & DPR_SESSION_RELAXED;
}

static int check_can_start(const dpr_session *s, uint64_t worker)
{
    if (s->seen_world_line > s->world_line)
        return -ESTALE;
    if (relaxed(s))
        return 0;
    if (s->in_doubt)
        return -EBUSY;
    for (size_t i = 0; i < s->nbatches; i++)
        if (s->batches[i].worker != worker)
            return -EBUSY;
    return 0;
}

static uint64_t max_dep_version(const dpr_depset *deps)
{
    uint64_t m = 0;
    size_t it = 0;
    dpr_dep d;
    while (dpr_depset_next(deps, &it, &d))
        if (d.version > m)
            m = d.version;
    return m;
}

int dpr_session_begin_batch(dpr_session *s, uint64_t worker, uint32_t op_count,
                            dpr_request_hdr *hdr, uint64_t *first_seq)
{
    int r;
    if (op_count == 0 || op_count > DPR_WIRE_MAX_OPS) {
        r = -EINVAL;
        goto out;
    }
    r = check_can_start(s, worker);
    if (r < 0)
        goto out;
    if (s->next_seq > UINT64_MAX - op_count || s->next_batch_id == UINT64_MAX) {
        r = -EOVERFLOW;
        goto out;
    }
    r = ring_reserve(s, op_count);
    if (r < 0)
        goto out;
    r = batches_reserve(s, 1);
    if (r < 0)
        goto out;
    uint64_t batch_id = s->next_batch_id++;
    s->batches[s->nbatches++] = (dpr_session_batch){
        .batch_id = batch_id, .worker = worker, .first_seq = s->next_seq,
        .op_count = op_count};
    *first_seq = s->next_seq;
    for (uint32_t i = 0; i < op_count; i++) {
        dpr_session_op op = {.seq = s->next_seq++, .worker = worker, .batch_id = batch_id};
        ring_push(s, &op);
    }
    *hdr = (dpr_request_hdr){
        .session = s->id, .domain = s->domain, .world_line = s->world_line,
        .version_lb = s->deps_max, .batch_id = batch_id,
        .op_count = op_count, .dep_count = 0, .deps = NULL};
out:
    return r;
}

/* Checks an EXECUTED answer against its batch; *maxv gets its top version. */
static int check_executed(const dpr_session *s, const dpr_session_batch *b,
                          const dpr_response_hdr *r, uint64_t *maxv)
{
    if (r->world_line != s->world_line || r->op_count != b->op_count)
        return -EBADMSG;
    if (r->version_count != 1 && r->version_count != r->op_count)
        return -EBADMSG;
    if (!r->versions && !r->versions_in)
        return -EBADMSG;
    uint64_t prev = 1;
    for (uint32_t i = 0; i < r->op_count; i++) {
        uint64_t v = dpr_wire_response_version(r, i);
        if (v < prev)
            return -EBADMSG; /* 0, or decreasing */
        prev = v;
    }
    *maxv = prev;
    return 0;
}

static int resolve_refused(dpr_session *s, size_t bi, const dpr_response_hdr *r)
{
    if (r->world_line <= s->world_line)
        return -EBADMSG;
    remove_batch(s, bi); /* its operations keep version 0: lost */
    if (r->world_line > s->seen_world_line)
        s->seen_world_line = r->world_line;
    return -ESTALE;
}

int dpr_session_resolve(dpr_session *s, const dpr_response_hdr *r)
{
    int ret;
    size_t bi = find_batch(s, r->batch_id);
    if (bi == s->nbatches) {
        ret = -ENOENT;
        goto out;
    }
    if (r->status == DPR_WIRE_REFUSED) {
        ret = resolve_refused(s, bi, r);
        goto out;
    }
    dpr_session_batch b = s->batches[bi];
    uint64_t maxv = 0;
    ret = r->status == DPR_WIRE_EXECUTED ? check_executed(s, &b, r, &maxv) : -EBADMSG;
    if (ret < 0)
        goto out;
    ret = dpr_depset_put_max(&s->deps, b.worker, maxv);
    if (ret < 0)
        goto out;
    if (maxv > s->deps_max)
        s->deps_max = maxv;
    size_t first = ring_index(s, b.first_seq);
    /* an unanswered batch's operations (version 0) are never popped */
    assert(first + b.op_count <= s->ops_len);
    for (uint32_t i = 0; i < b.op_count; i++)
        op_at(s, first + i)->version = dpr_wire_response_version(r, i);
    remove_batch(s, bi);
out:
    return ret;
}

int dpr_session_abandon_batch(dpr_session *s, uint64_t batch_id)
{
    int r = 0;
    size_t bi = find_batch(s, batch_id);
    if (bi == s->nbatches) {
        r = -ENOENT;
        goto out;
    }
    remove_batch(s, bi); /* its operations keep version 0: never commit */
    if (!relaxed(s))
        s->in_doubt = true;
out:
    return r;
}

int dpr_session_cancel_batch(dpr_session *s, uint64_t batch_id)
{
    int r = 0;
    size_t bi = find_batch(s, batch_id);
    if (bi == s->nbatches) {
        r = -ENOENT;
        goto out;
    }
    /* only the newest: its operations are the last ones issued */
    if (s->batches[bi].first_seq + s->batches[bi].op_count != s->next_seq) {
        r = -EBUSY;
        goto out;
    }
    assert(s->ops_len >= s->batches[bi].op_count);
    s->ops_len -= s->batches[bi].op_count;
    s->next_seq = s->batches[bi].first_seq;
    remove_batch(s, bi);
out:
    return r;
}

int dpr_session_withdraw_batch(dpr_session *s, uint64_t batch_id)
{
    int r;
    size_t bi = find_batch(s, batch_id), at;
    dpr_session_batch b;
    void *p;

    if (bi == s->nbatches)
        return -ENOENT;
    b = s->batches[bi];
    if (b.first_seq + b.op_count == s->next_seq)
        return dpr_session_cancel_batch(s, batch_id) == 0 ? 1 : -EIO;
    /* the range goes in its place: batches may be withdrawn out of order */
    p = s->withdrawn;
    r = grow_array(&p, &s->withdrawn_cap, s->nwithdrawn + 1, sizeof(dpr_seq_range));
    s->withdrawn = p;
    if (r < 0)
        return r;
    at = ranges_find(s->withdrawn, s->nwithdrawn, b.first_seq);
    memmove(&s->withdrawn[at + 1], &s->withdrawn[at],
            (s->nwithdrawn - at) * sizeof(*s->withdrawn));
    s->withdrawn[at] = (dpr_seq_range){b.first_seq, b.first_seq + b.op_count};
    s->nwithdrawn++;
    for (size_t i = ring_index(s, b.first_seq), k = 0; k < b.op_count; k++)
        op_at(s, i + k)->withdrawn = true;
    remove_batch(s, bi);
    return 0;
}

bool dpr_session_is_withdrawn(const dpr_session *s, uint64_t seq)
{
    return ranges_contain(s->withdrawn, s->nwithdrawn, seq);
}

static bool op_in_cut(const dpr_session_op *op, const dpr_depset *cut)
{
    return op->committed || op->withdrawn ||
           (op->version != 0 && op->version <= dpr_depset_get(cut, op->worker));
}

static void update_commit_point(dpr_session *s)
{
    uint64_t cp = s->ops_len ? op_at(s, 0)->seq - 1 : s->next_seq - 1;
    assert(cp >= s->commit_point); /* the commit point only grows */
    s->commit_point = cp;
}

uint64_t dpr_session_commit_point(dpr_session *s, const dpr_depset *cut)
{
    while (s->ops_len && op_in_cut(op_at(s, 0), cut))
        ring_pop(s);
    /* Strict mode: nothing above the first uncommitted operation can be in a
     * closed cut (it depends on that operation). Relaxed: look at all. */
    if (relaxed(s)) {
        for (size_t i = 1; i < s->ops_len; i++) {
            dpr_session_op *op = op_at(s, i);
            if (!op->committed && op_in_cut(op, cut))
                op->committed = true;
        }
    }
    update_commit_point(s);
    if (dpr_depset_prune(&s->deps, cut))
        s->deps_max = max_dep_version(&s->deps);
    return s->commit_point;
}

bool dpr_session_is_committed(const dpr_session *s, uint64_t seq)
{
    if (seq == 0 || seq >= s->next_seq || lost_contains(s, seq) ||
        dpr_session_is_withdrawn(s, seq))
        return false;
    if (seq <= s->commit_point)
        return true;
    size_t i = ring_index(s, seq);
    return i < s->ops_len && op_at(s, i)->committed;
}

/* What a rollback to `cut` does to the ring: counts, without changing it. */
typedef struct rollback_scan {
    uint64_t lost_from;
    uint64_t lost_count;
    size_t survived_above;
    size_t lost_runs;
} rollback_scan;

static void scan_rollback(const dpr_session *s, const dpr_depset *cut, rollback_scan *sc)
{
    bool prev_lost = false;
    *sc = (rollback_scan){.lost_from = s->next_seq};
    for (size_t i = 0; i < s->ops_len; i++) {
        const dpr_session_op *op = op_at(s, i);
        bool lost = !op_in_cut(op, cut);
        if (op->withdrawn)
            continue; /* not part of the history: neither lost nor survived */
        if (lost) {
            if (sc->lost_count++ == 0)
                sc->lost_from = op->seq;
            if (!prev_lost)
                sc->lost_runs++;
        } else if (sc->lost_count) {
            sc->survived_above++;
        }
        prev_lost = lost;
    }
}

int dpr_session_rollback(dpr_session *s, uint64_t new_world_line, const dpr_depset *cut,
                         dpr_rollback_result *res)
{
    int r = 0;
    rollback_scan sc;
    uint64_t *above = NULL;
    memset(res, 0, sizeof(*res));
    if (new_world_line <= s->world_line) {
        r = -EINVAL;
        goto out;
    }
    if (s->nbatches) {
        r = -EBUSY;
        goto out;
    }
    scan_rollback(s, cut, &sc);
    if (sc.survived_above) {
        above = malloc(sc.survived_above * sizeof(*above));
        if (!above) {
            r = -ENOMEM;
            goto out;
        }
    }
    r = lost_reserve(s, sc.lost_runs);
    if (r < 0)
        goto out;
    size_t n = 0;
    for (size_t i = 0; i < s->ops_len; i++) {
        const dpr_session_op *op = op_at(s, i);
        if (op->withdrawn)
            continue;
        if (!op_in_cut(op, cut))
            lost_add(s, op->seq);
        else if (op->seq > sc.lost_from)
            above[n++] = op->seq;
    }
    assert(n == sc.survived_above); /* scan_rollback counted them */
    res->lost_from = sc.lost_from;
    res->lost_count = sc.lost_count;
    res->survived_above = above;
    res->nsurvived_above = n;
    above = NULL;
    s->ops_head = 0;
    s->ops_len = 0;
    update_commit_point(s);
    dpr_depset_clear(&s->deps);
    s->deps_max = 0;
    s->world_line = new_world_line;
    if (s->seen_world_line < new_world_line)
        s->seen_world_line = new_world_line;
    s->in_doubt = false;
out:
    free(above);
    return r;
}
