/*
 * core.c - the DPR finder core: cut algorithms and world-lines, no I/O.
 *
 * Contract: finder/include/dpr/finder.h. Long form: docs/finder.md.
 *
 * RECORDS. Every worker id the finder has seen gets a record (an index into
 * f->w, found through the depset f->ids: id -> index + 1). A record is
 * registered (a member), retired (removed; its cut is final), or a ghost (an
 * id only seen as someone's dependency; reports naming an id without a
 * record are refused now, so no new ghosts arise). Only registered records take part
 * in the minimum rule and the state. Dependencies are stored as record
 * indices, so a closure walk never hashes.
 *
 * EFFECTIVE CUT. A record's cut is max(cut, V, era floor), where V is the
 * minimum rule (V = min durable over registered workers) and cut is what the
 * exact rule committed. V is the root of a min tournament tree over the
 * registered workers' durable versions; a report updates its leaf and climbs
 * only while the subtree minimum changes (O(log n) at worst, O(1) amortised
 * when workers move up together). V drops only when a worker is added
 * with a lower durable version; the old V then stays valid for every worker
 * registered before, which an "era" stack records: an era ends with such a
 * drop, and a worker registered in era e gets the floor
 * max{ V at the end of era e' : e' >= e } (a monotone stack answers this by
 * binary search; the value is folded into cut when the record is touched).
 *
 * EXACT RULE. Each registered worker keeps its uncommitted reported versions,
 * oldest first, with their dependencies (versions at or below the effective
 * cut are dropped lazily). To commit a worker's oldest one, walk its closure:
 * "need (u, x)" means u's versions up to x must be committed; it is
 * satisfied when x <= cut(u); otherwise it includes every uncommitted
 * reported version of u up to the smallest one >= x (the implicit edge to
 * earlier versions) and needs their dependencies in turn. The walk fails on
 * the first need that is not durable:
 *   - durable[u] < x: wait in u's wait list until u reports a version >= x;
 *   - u not registered, or u's cut below its lost-graph floor (after a
 *     restore only the minimum rule may commit those versions): wait in the
 *     min list, retried whenever V increases (or a worker is added).
 * On success every worker in the closure gets cut = its highest included
 * version, and the workers touched are retried (their next version may now
 * commit). Each worker is in at most one wait list at a time (with its
 * position, so leaving is O(1)), plus optionally the V list when its blocker
 * lies above its own oldest version (sparse versions), so that a V that
 * overtakes it retries it. A report costs its own walk plus the walks of the
 * workers it wakes; nothing scans all workers.
 *
 * TOKENS. A registered record may hold its owner's token (rec.token, a
 * zero-padded copy of DPR_FINDER_TOKEN_MAX bytes, NULL for none): adding or
 * removing that worker again needs the same token, compared in constant
 * time (token_equal) before anything else happens, so a refusal changes
 * nothing. A retired record forgets its token. When the owner moves the
 * worker elsewhere it gives the record a new token (dpr_finder_set_token);
 * the server then refuses the old incarnation's reports
 * (dpr_finder_token_check at each one).
 *
 * WORLD-LINES. Adding a registered worker again bumps the world-line: every
 * cut is materialised, durable falls back to the cut, all uncommitted
 * versions, wait lists and eras are dropped (O(records), rare).
 *
 * DURABILITY. Any change to the world-line, a cut, a durable version or the
 * membership sets f->changed; the public call then bumps f->generation. The
 * query functions read the published copy, refreshed by dpr_finder_publish.
 */
#include "dpr/finder.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NO_IDX UINT32_MAX          /* not waiting anywhere */
#define MIN_IDX (UINT32_MAX - 1)   /* waiting in the min list */
#define MAX_RECORDS (UINT32_MAX - 2)

enum { NEED_OK = 0, NEED_BLOCKED = 1 };

typedef struct pend_ent {
    uint64_t version;
    size_t dep_off; /* index of the first dependency in rec.deps */
    size_t ndeps;
} pend_ent;

typedef struct idx_dep {
    uint64_t version;
    uint32_t idx;
} idx_dep;

typedef struct wait_ent {
    uint64_t x;      /* the version waited for (or the head, in the V list) */
    uint32_t waiter;
} wait_ent;

typedef struct wait_list {
    wait_ent *v;
    size_t n, cap;
    uint64_t min_x;  /* lower bound of the x values; UINT64_MAX when empty */
} wait_list;

typedef struct rec {
    uint64_t id;
    uint64_t cut;        /* exact-rule cut, with folded era floors */
    uint64_t durable;
    uint64_t lost_floor; /* versions <= this (loaded from storage) have no graph */
    uint64_t era;        /* era in which the floor was last folded */
    /* uncommitted reported versions: pend[pend_head..pend_len) */
    pend_ent *pend;
    size_t pend_head, pend_len, pend_cap;
    idx_dep *deps;
    size_t dep_head, dep_len, dep_cap;
    /* workers blocked on this one */
    wait_list waiters;
    /* where this worker waits */
    uint32_t wait_on;    /* NO_IDX, MIN_IDX or a record index */
    uint32_t wait_pos;
    uint32_t vwait_pos;  /* position in f->v_waiters when vwaiting */
    uint32_t reg_pos;    /* position in f->reg when registered */
    /* closure walk scratch, valid when walk_epoch == f->epoch */
    uint64_t walk_epoch;
    uint64_t walk_base;  /* effective cut at the start of the walk */
    uint64_t walk_upto;  /* highest version included so far */
    size_t walk_pos;
    bool walk_touched;
    bool vwaiting;
    bool registered;
    bool queued;
    bool away;           /* left on purpose: durable == cut, reports nothing */
    char *token;         /* DPR_FINDER_TOKEN_MAX bytes, zero-padded; NULL: none */
} rec;

/* Members in id order, for dpr_finder_get_state; valid while membership
 * is unchanged. Reached through a pointer so that the const get_state may
 * refresh it. */
typedef struct sort_cache {
    uint32_t *order;
    size_t n;
    uint64_t membership;
    bool valid;
} sort_cache;

typedef struct era_ent {
    uint64_t era;
    uint64_t floor; /* V when that era ended; decreasing along the stack */
} era_ent;

struct dpr_finder {
    rec *w;
    size_t nrec, rec_cap;
    dpr_depset ids;          /* worker id -> record index + 1 */
    uint32_t *reg;           /* registered records */
    size_t nreg, reg_cap;
    uint64_t world_line;
    uint64_t generation;
    uint64_t membership;     /* bumped when the set of members changes */
    bool changed;
    /* minimum rule: V = vmin = mt[1] (0 without members) */
    uint64_t vmin;
    uint64_t *mt;            /* tournament tree: leaves mt[mt_cap + reg_pos] */
    size_t mt_cap;           /* leaves, a power of two */
    uint64_t era;
    era_ent *eras;
    size_t neras, eras_cap;
    /* retry queue: a ring of capacity rec_cap (each record at most once) */
    uint32_t *queue;
    size_t q_head, q_len;
    uint32_t *touched;       /* records in the current closure, rec_cap */
    size_t ntouched;
    idx_dep *stack;          /* closure walk stack */
    size_t sp, stack_cap;
    uint64_t epoch;
    wait_list min_waiters;   /* retried when V increases or a worker joins */
    wait_list v_waiters;     /* retried when V reaches their oldest version */
    idx_dep *scratch;        /* a report's resolved dependencies */
    size_t scratch_cap;
    sort_cache *sorted;
    /* surviving prefixes of the newest ended world-lines, oldest first */
    dpr_finder_prefix *prefixes;
    size_t nprefixes;
    /* published view */
    uint64_t pub_generation;
    uint64_t pub_world_line;
    uint64_t pub_max_version;
    uint64_t pub_membership; /* membership of pub_cut (publish_working) */
    size_t pub_count;
    dpr_depset pub_cut;
};

/* ------------------------------------------------------------------ */
/* small helpers                                                        */

static inline uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* Makes room for `need` elements of size `elem` in *p (capacity *cap). */
static int reserve(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 4;
    while (ncap < need)
        ncap *= 2;
    if (ncap > SIZE_MAX / elem)
        return -ENOMEM;
    void *np = realloc(*p, ncap * elem);
    if (!np)
        return -ENOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

static uint32_t lookup(const dpr_finder *f, uint64_t id)
{
    uint64_t v = dpr_depset_get(&f->ids, id);
    return v ? (uint32_t)(v - 1) : NO_IDX;
}

/* ------------------------------------------------------------------ */
/* eras and the effective cut                                           */

/* max{ floor of ended eras >= e }, 0 if none. */
static uint64_t era_floor(const dpr_finder *f, uint64_t e)
{
    size_t lo = 0, hi = f->neras;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->eras[mid].era < e)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < f->neras ? f->eras[lo].floor : 0;
}

/* Ends the current era with floor V (capacity reserved by the caller). */
static void era_end(dpr_finder *f, uint64_t floor)
{
    while (f->neras > 0 && f->eras[f->neras - 1].floor <= floor)
        f->neras--;
    assert(f->neras < f->eras_cap);
    f->eras[f->neras].era = f->era;
    f->eras[f->neras].floor = floor;
    f->neras++;
    f->era++;
}

/* Effective cut without touching the record. */
static uint64_t eff_cut_const(const dpr_finder *f, const rec *r)
{
    if (!r->registered)
        return r->cut;
    uint64_t c = r->cut;
    if (r->era != f->era)
        c = max_u64(c, era_floor(f, r->era));
    return max_u64(c, f->vmin);
}

/* Effective cut; folds a pending era floor into r->cut (same value). */
static uint64_t eff_cut(dpr_finder *f, rec *r)
{
    if (!r->registered)
        return r->cut;
    if (r->era != f->era) {
        r->cut = max_u64(r->cut, era_floor(f, r->era));
        r->era = f->era;
    }
    return max_u64(r->cut, f->vmin);
}

/* ------------------------------------------------------------------ */
/* records                                                              */

/* Grows the record array and the per-record arrays to hold `need`. */
static int ensure_records(dpr_finder *f, size_t need)
{
    if (need <= f->rec_cap)
        return 0;
    if (need > MAX_RECORDS)
        return -ENOMEM;
    size_t ncap = f->rec_cap ? f->rec_cap : 16;
    while (ncap < need)
        ncap *= 2;
    rec *nw = realloc(f->w, ncap * sizeof(*nw));
    if (!nw)
        return -ENOMEM;
    f->w = nw;
    uint32_t *nt = realloc(f->touched, ncap * sizeof(*nt));
    if (!nt)
        return -ENOMEM;
    f->touched = nt;
    uint32_t *nq = malloc(ncap * sizeof(*nq));
    if (!nq)
        return -ENOMEM;
    for (size_t i = 0; i < f->q_len; i++)
        nq[i] = f->queue[(f->q_head + i) & (f->rec_cap - 1)];
    free(f->queue);
    f->queue = nq;
    f->q_head = 0;
    assert((ncap & (ncap - 1)) == 0);
    f->rec_cap = ncap; /* a power of two: the ring masks with it */
    return 0;
}

/* A new unregistered record for id; *idx gets its index. */
static int new_record(dpr_finder *f, uint64_t id, uint32_t *idx)
{
    int r = ensure_records(f, f->nrec + 1);
    if (r < 0)
        return r;
    r = dpr_depset_set(&f->ids, id, (uint64_t)f->nrec + 1);
    if (r < 0)
        return r;
    rec *w = &f->w[f->nrec];
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->wait_on = NO_IDX;
    w->waiters.min_x = UINT64_MAX;
    *idx = (uint32_t)f->nrec++;
    return 0;
}

static void rec_free(rec *r)
{
    free(r->pend);
    free(r->deps);
    free(r->waiters.v);
    free(r->token);
}

/* ------------------------------------------------------------------ */
/* tokens                                                               */

bool dpr_finder_token_valid(const char *token, size_t len)
{
    if (!token || len < 1 || len > DPR_FINDER_TOKEN_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)token[i] < 0x21 || (unsigned char)token[i] > 0x7e)
            return false;
    return true;
}

/* A zero-padded copy of token[0..len) (len >= 1), or NULL on ENOMEM. */
static char *token_copy(const char *token, size_t len)
{
    char *t = calloc(1, DPR_FINDER_TOKEN_MAX + 1);

    assert(len >= 1 && len <= DPR_FINDER_TOKEN_MAX); /* validated by the caller */
    if (t)
        memcpy(t, token, len);
    return t;
}

/* Does the stored (zero-padded) token equal token[0..len)? Every byte is
 * looked at whatever the contents, so the time taken tells nothing about
 * how much of a guess was right. Tokens hold no NUL bytes, so comparing the
 * padded forms compares the strings. */
static bool token_equal(const char *stored, const char *token, size_t len)
{
    unsigned char diff = 0;

    assert(len <= DPR_FINDER_TOKEN_MAX);
    for (size_t i = 0; i < DPR_FINDER_TOKEN_MAX; i++) {
        unsigned char given = i < len ? (unsigned char)token[i] : 0;
        diff |= (unsigned char)stored[i] ^ given;
    }
    return diff == 0;
}

/* May the caller presenting token[0..len) act on registered record r? */
static bool token_allows(const rec *r, const char *token, size_t len)
{
    if (!r->token)
        return true; /* registered without a token (before tokens existed) */
    if (len == 0)
        return false;
    return token_equal(r->token, token, len);
}

static void clear_pending(rec *r)
{
    r->pend_head = r->pend_len = 0;
    r->dep_head = r->dep_len = 0;
}

/* Moves the live pending entries to the front of their arrays. */
static void compact_pending(rec *r)
{
    size_t n = r->pend_len - r->pend_head;
    size_t nd = r->dep_len - r->dep_head;
    memmove(r->pend, r->pend + r->pend_head, n * sizeof(*r->pend));
    if (nd > 0)
        memmove(r->deps, r->deps + r->dep_head, nd * sizeof(*r->deps));
    for (size_t i = 0; i < n; i++)
        r->pend[i].dep_off -= r->dep_head;
    r->pend_head = 0;
    r->pend_len = n;
    r->dep_head = 0;
    r->dep_len = nd;
}

/* Drops the pending versions at or below the effective cut. */
static void pop_committed(dpr_finder *f, rec *r)
{
    uint64_t c = eff_cut(f, r);
    while (r->pend_head < r->pend_len && r->pend[r->pend_head].version <= c) {
        const pend_ent *e = &r->pend[r->pend_head++];
        r->dep_head = e->dep_off + e->ndeps;
    }
    if (r->pend_head == r->pend_len)
        clear_pending(r);
    else if (r->pend_head >= 64 && r->pend_head * 2 >= r->pend_len)
        compact_pending(r);
}

/* ------------------------------------------------------------------ */
/* wait lists and the retry queue                                       */

static void enqueue(dpr_finder *f, uint32_t w)
{
    if (f->w[w].queued)
        return;
    f->w[w].queued = true;
    f->queue[(f->q_head + f->q_len) & (f->rec_cap - 1)] = w;
    f->q_len++;
}

static wait_list *list_of(dpr_finder *f, uint32_t on)
{
    return on == MIN_IDX ? &f->min_waiters : &f->w[on].waiters;
}

/* Removes entry pos of l, keeping the moved entry's position right. */
static void list_remove(dpr_finder *f, wait_list *l, size_t pos, bool vlist)
{
    l->n--;
    if (pos == l->n)
        return;
    l->v[pos] = l->v[l->n];
    rec *moved = &f->w[l->v[pos].waiter];
    if (vlist)
        moved->vwait_pos = (uint32_t)pos;
    else
        moved->wait_pos = (uint32_t)pos;
}

static int list_append(wait_list *l, uint32_t waiter, uint64_t x, uint32_t *pos)
{
    int r = reserve((void **)&l->v, &l->cap, l->n + 1, sizeof(*l->v));
    if (r < 0)
        return r;
    l->v[l->n].x = x;
    l->v[l->n].waiter = waiter;
    *pos = (uint32_t)l->n++;
    if (x < l->min_x)
        l->min_x = x;
    return 0;
}

/* Takes worker w out of every wait list it is in. */
static void wait_unlink(dpr_finder *f, uint32_t w)
{
    rec *r = &f->w[w];
    if (r->wait_on != NO_IDX) {
        assert(list_of(f, r->wait_on)->v[r->wait_pos].waiter == w);
        list_remove(f, list_of(f, r->wait_on), r->wait_pos, false);
        r->wait_on = NO_IDX;
    }
    if (r->vwaiting) {
        assert(f->v_waiters.v[r->vwait_pos].waiter == w);
        list_remove(f, &f->v_waiters, r->vwait_pos, true);
        r->vwaiting = false;
    }
}

/* Worker w (oldest uncommitted version head) waits on `on` for version x. */
static int wait_register(dpr_finder *f, uint32_t w, uint32_t on, uint64_t x,
                         uint64_t head)
{
    wait_unlink(f, w);
    rec *r = &f->w[w];
    assert(r->wait_on == NO_IDX && !r->vwaiting); /* in at most one wait list */
    int rc = list_append(list_of(f, on), w, x, &r->wait_pos);
    if (rc < 0)
        return rc;
    r->wait_on = on;
    if (on != MIN_IDX && x > head) {
        /* V could overtake head while the blocker is unresolved */
        rc = list_append(&f->v_waiters, w, head, &r->vwait_pos);
        if (rc < 0)
            return rc;
        r->vwaiting = true;
    }
    return 0;
}

/* Enqueues the waiters in l that wait for a version <= d. */
static void wake_list(dpr_finder *f, wait_list *l, uint64_t d)
{
    if (l->n == 0 || d < l->min_x)
        return;
    uint64_t m = UINT64_MAX;
    size_t i = 0;
    while (i < l->n) {
        if (l->v[i].x <= d) {
            uint32_t w = l->v[i].waiter;
            wait_unlink(f, w); /* moves the last entry to i */
            enqueue(f, w);
        } else {
            if (l->v[i].x < m)
                m = l->v[i].x;
            i++;
        }
    }
    l->min_x = m;
}

/* Enqueues everyone in l. */
static void wake_all(dpr_finder *f, wait_list *l)
{
    while (l->n > 0) {
        uint32_t w = l->v[l->n - 1].waiter;
        wait_unlink(f, w);
        enqueue(f, w);
    }
    l->min_x = UINT64_MAX;
}

/* V increased: retry the min list and the V list entries it overtook. */
static void wake_min(dpr_finder *f)
{
    wake_all(f, &f->min_waiters);
    wake_list(f, &f->v_waiters, f->vmin);
}

/* ------------------------------------------------------------------ */
/* minimum rule                                                         */

/* Sets the leaf of registration slot pos and fixes the minima above it,
 * stopping as soon as one does not change. */
static void mt_set(dpr_finder *f, size_t pos, uint64_t d)
{
    size_t i = f->mt_cap + pos;
    f->mt[i] = d;
    for (i >>= 1; i >= 1; i >>= 1) {
        uint64_t m = f->mt[2 * i] < f->mt[2 * i + 1] ? f->mt[2 * i] : f->mt[2 * i + 1];
        if (f->mt[i] == m)
            break;
        f->mt[i] = m;
    }
}

/* Rebuilds the tree with room for `need` members. */
static int mt_build(dpr_finder *f, size_t need)
{
    size_t cap = f->mt_cap ? f->mt_cap : 16;
    while (cap < need)
        cap *= 2;
    if (cap != f->mt_cap) {
        if (cap > SIZE_MAX / (2 * sizeof(uint64_t)))
            return -ENOMEM;
        uint64_t *nt = malloc(2 * cap * sizeof(*nt));
        if (!nt)
            return -ENOMEM;
        free(f->mt);
        f->mt = nt;
        f->mt_cap = cap;
    }
    for (size_t i = 0; i < f->mt_cap; i++)
        f->mt[f->mt_cap + i] = i < f->nreg ? f->w[f->reg[i]].durable : UINT64_MAX;
    for (size_t i = f->mt_cap - 1; i >= 1; i--)
        f->mt[i] = f->mt[2 * i] < f->mt[2 * i + 1] ? f->mt[2 * i] : f->mt[2 * i + 1];
    return 0;
}

/* Makes room in the tree for `need` members (rebuilding when it grows). */
static int mt_reserve(dpr_finder *f, size_t need)
{
    return need <= f->mt_cap ? 0 : mt_build(f, need);
}

/* Re-reads V from the tree; when it rose, retries who waits for that. */
static void min_refresh(dpr_finder *f)
{
    uint64_t v = f->nreg > 0 ? f->mt[1] : 0;
    /* V drops only when a worker joins (join, era_end) or nobody is left */
    assert(v >= f->vmin || f->nreg == 0);
    if (v > f->vmin) {
        f->vmin = v;
        f->changed = true;
        wake_min(f);
    } else {
        f->vmin = v; /* a drop is handled by the caller (era_end) */
    }
}

/* ------------------------------------------------------------------ */
/* exact rule: closure walk                                             */

static int push_need(dpr_finder *f, uint32_t idx, uint64_t version)
{
    if (f->sp == f->stack_cap) {
        int r = reserve((void **)&f->stack, &f->stack_cap, f->sp + 1,
                        sizeof(*f->stack));
        if (r < 0)
            return r;
    }
    f->stack[f->sp].idx = idx;
    f->stack[f->sp].version = version;
    f->sp++;
    return 0;
}

/* Pushes the dependencies of pending entry e that are not obviously met. */
static int push_deps(dpr_finder *f, const rec *r, const pend_ent *e)
{
    for (size_t k = 0; k < e->ndeps; k++) {
        idx_dep d = r->deps[e->dep_off + k];
        const rec *t = &f->w[d.idx];
        if (d.version <= t->cut || (t->registered && d.version <= f->vmin))
            continue;
        if (t->walk_epoch == f->epoch && d.version <= t->walk_upto)
            continue;
        int rc = push_need(f, d.idx, d.version);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Need (u, x) in the current walk: NEED_OK, NEED_BLOCKED (*on, *bx set) or
 * a negative errno. */
static int need(dpr_finder *f, uint32_t u, uint64_t x, uint32_t *on,
                uint64_t *bx)
{
    rec *r = &f->w[u];
    if (r->walk_epoch != f->epoch) {
        r->walk_epoch = f->epoch;
        r->walk_base = eff_cut(f, r);
        r->walk_upto = r->walk_base;
        r->walk_pos = r->pend_head;
        r->walk_touched = false;
    }
    if (x <= r->walk_upto)
        return NEED_OK;
    *bx = x;
    if (!r->registered || r->walk_base < r->lost_floor) {
        *on = MIN_IDX;
        return NEED_BLOCKED;
    }
    if (r->durable < x) {
        *on = u;
        return NEED_BLOCKED;
    }
    while (r->walk_upto < x) {
        if (r->walk_pos >= r->pend_len) { /* cannot happen: durable >= x */
            assert(!"pending versions end below the durable version");
            *on = MIN_IDX;
            return NEED_BLOCKED;
        }
        const pend_ent *e = &r->pend[r->walk_pos++];
        if (e->version <= r->walk_base)
            continue;
        int rc = push_deps(f, r, e);
        if (rc < 0)
            return rc;
        r->walk_upto = e->version;
    }
    if (!r->walk_touched) {
        r->walk_touched = true;
        f->touched[f->ntouched++] = u;
    }
    return NEED_OK;
}

/* The walk succeeded: commit the closure, retry the other workers in it. */
static void commit_closure(dpr_finder *f, uint32_t w)
{
    for (size_t i = 0; i < f->ntouched; i++) {
        uint32_t u = f->touched[i];
        rec *r = &f->w[u];
        assert(r->registered && r->walk_upto <= r->durable); /* cut <= durable */
        r->cut = max_u64(r->cut, r->walk_upto);
        pop_committed(f, r);
        if (u != w && r->pend_head < r->pend_len)
            enqueue(f, u);
    }
    f->changed = true;
}

/* Tries to commit w's oldest uncommitted version: 1 committed, 0 blocked
 * (*on, *bx say on what), or a negative errno. */
static int attempt(dpr_finder *f, uint32_t w, uint32_t *on, uint64_t *bx)
{
    rec *r = &f->w[w];
    f->epoch++;
    f->ntouched = 0;
    f->sp = 0;
    int rc = push_need(f, w, r->pend[r->pend_head].version);
    while (rc == NEED_OK && f->sp > 0) {
        f->sp--;
        rc = need(f, f->stack[f->sp].idx, f->stack[f->sp].version, on, bx);
    }
    if (rc < 0)
        return rc;
    if (rc == NEED_BLOCKED)
        return 0;
    commit_closure(f, w);
    return 1;
}

/* Commits as many of w's versions as possible, then parks w. */
static int process(dpr_finder *f, uint32_t w)
{
    rec *r = &f->w[w];
    if (!r->registered) {
        wait_unlink(f, w);
        return 0;
    }
    for (;;) {
        pop_committed(f, r);
        if (r->pend_head == r->pend_len) {
            wait_unlink(f, w);
            return 0;
        }
        uint32_t on = NO_IDX;
        uint64_t bx = 0;
        int rc = attempt(f, w, &on, &bx);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return wait_register(f, w, on, bx, r->pend[r->pend_head].version);
    }
}

/* Runs the retry queue. On error the queue keeps its work for later. */
static int drain(dpr_finder *f)
{
    while (f->q_len > 0) {
        uint32_t w = f->queue[f->q_head];
        int rc = process(f, w);
        if (rc < 0)
            return rc;
        f->q_head = (f->q_head + 1) & (f->rec_cap - 1);
        f->q_len--;
        f->w[w].queued = false;
    }
    return 0;
}

/* End of a mutating call: one generation per call that changed anything. */
static int finish(dpr_finder *f, int rc)
{
    if (f->changed) {
        f->generation++;
        f->changed = false;
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* published view                                                       */

/* Builds the published copy from (id, cut, durable) triples. */
static int publish_from(dpr_finder *f, uint64_t generation, uint64_t world_line,
                        const dpr_finder_worker_state *ws, size_t n)
{
    dpr_depset cut = DPR_DEPSET_INIT;
    uint64_t maxv = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        maxv = max_u64(maxv, ws[i].durable);
        rc = dpr_depset_set(&cut, ws[i].worker, ws[i].cut);
    }
    if (rc < 0) {
        dpr_depset_free(&cut);
        return rc;
    }
    dpr_depset_free(&f->pub_cut);
    f->pub_cut = cut;
    f->pub_generation = generation;
    f->pub_world_line = world_line;
    f->pub_max_version = max_u64(maxv, f->pub_max_version); /* never lowered */
    f->pub_membership = f->membership - 1; /* not known to match */
    f->pub_count = n;
    return 0;
}

/* Builds the published copy from the working state. With the same members
 * as last time it starts from a copy of the published cut, so that setting
 * the entries finds every key in a table of the right size. */
static int publish_working(dpr_finder *f)
{
    dpr_depset cut = DPR_DEPSET_INIT;
    uint64_t maxv = 0;
    int rc = 0;
    if (f->membership == f->pub_membership)
        rc = dpr_depset_copy(&cut, &f->pub_cut);
    for (size_t i = 0; i < f->nreg && rc == 0; i++) {
        const rec *r = &f->w[f->reg[i]];
        maxv = max_u64(maxv, r->durable);
        rc = dpr_depset_set(&cut, r->id, eff_cut_const(f, r));
    }
    if (rc < 0) {
        dpr_depset_free(&cut);
        return rc;
    }
    dpr_depset_free(&f->pub_cut);
    f->pub_cut = cut;
    f->pub_generation = f->generation;
    f->pub_world_line = f->world_line;
    f->pub_max_version = max_u64(maxv, f->pub_max_version); /* never lowered */
    f->pub_membership = f->membership;
    f->pub_count = f->nreg;
    return 0;
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                            */

static dpr_finder *alloc_finder(void)
{
    dpr_finder *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->sorted = calloc(1, sizeof(*f->sorted));
    f->prefixes = calloc(DPR_FINDER_MAX_PREFIXES, sizeof(*f->prefixes));
    if (!f->sorted || !f->prefixes) {
        free(f->sorted);
        free(f->prefixes);
        free(f);
        return NULL;
    }
    dpr_depset_init(&f->ids);
    dpr_depset_init(&f->pub_cut);
    f->world_line = DPR_FINDER_FIRST_WORLD_LINE;
    f->pub_world_line = DPR_FINDER_FIRST_WORLD_LINE;
    f->min_waiters.min_x = UINT64_MAX;
    f->v_waiters.min_x = UINT64_MAX;
    return f;
}

/* ------------------------------------------------------------------ */
/* prefixes of ended world-lines                                        */

static void prefixes_free(dpr_finder_prefix *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i].cut);
}

static int cmp_dep_worker(const void *a, const void *b)
{
    const dpr_dep *x = a, *y = b;
    return (x->worker > y->worker) - (x->worker < y->worker);
}

/* Deep copy of n prefixes into a new array *out (NULL when n == 0). */
static int prefixes_copy(const dpr_finder_prefix *src, size_t n, dpr_finder_prefix **out)
{
    dpr_finder_prefix *p = NULL;
    size_t done = 0;
    int rc = 0;
    if (n > 0) {
        p = calloc(n, sizeof(*p));
        if (!p)
            return -ENOMEM;
    }
    for (; done < n; done++) {
        p[done] = src[done];
        p[done].cut = NULL;
        if (src[done].n == 0)
            continue;
        p[done].cut = malloc(src[done].n * sizeof(dpr_dep));
        if (!p[done].cut) {
            rc = -ENOMEM;
            break;
        }
        memcpy(p[done].cut, src[done].cut, src[done].n * sizeof(dpr_dep));
    }
    if (rc < 0) {
        prefixes_free(p, done);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* Valid stored prefixes: increasing ended world-lines below world_line,
 * sorted cuts without duplicates or zero versions. */
static int check_prefixes(const dpr_finder_state *st)
{
    if (st->nprefixes > DPR_FINDER_MAX_PREFIXES || (st->nprefixes > 0 && !st->prefixes))
        return -EINVAL;
    for (size_t i = 0; i < st->nprefixes; i++) {
        const dpr_finder_prefix *p = &st->prefixes[i];
        if (p->world_line < DPR_FINDER_FIRST_WORLD_LINE || p->world_line >= st->world_line)
            return -EINVAL;
        if (i > 0 && p->world_line <= st->prefixes[i - 1].world_line)
            return -EINVAL;
        if (p->n > 0 && !p->cut)
            return -EINVAL;
        for (size_t j = 0; j < p->n; j++) {
            if (p->cut[j].version == 0)
                return -EINVAL;
            if (j > 0 && p->cut[j].worker <= p->cut[j - 1].worker)
                return -EINVAL;
        }
    }
    return 0;
}

/* The working cut of every member, sorted by worker (zero entries left out). */
static int current_prefix(dpr_finder *f, dpr_finder_prefix *out)
{
    dpr_dep *cut = NULL;
    size_t n = 0;
    if (f->nreg > 0) {
        cut = malloc(f->nreg * sizeof(*cut));
        if (!cut)
            return -ENOMEM;
    }
    for (size_t i = 0; i < f->nreg; i++) {
        const rec *r = &f->w[f->reg[i]];
        uint64_t c = eff_cut_const(f, r);
        if (c > 0)
            cut[n++] = (dpr_dep){ r->id, c };
    }
    qsort(cut, n, sizeof(*cut), cmp_dep_worker);
    out->world_line = f->world_line;
    out->n = n;
    out->cut = cut;
    return 0;
}

/* Appends p (taking its memory), forgetting the oldest when full. */
static void prefixes_push(dpr_finder *f, dpr_finder_prefix p)
{
    if (f->nprefixes == DPR_FINDER_MAX_PREFIXES) {
        free(f->prefixes[0].cut);
        memmove(&f->prefixes[0], &f->prefixes[1],
                (f->nprefixes - 1) * sizeof(*f->prefixes));
        f->nprefixes--;
    }
    f->prefixes[f->nprefixes++] = p;
}

int dpr_finder_prefix_cut(const dpr_finder *f, uint64_t world_line, const dpr_dep **cut,
                          size_t *n)
{
    if (!f || !cut || !n)
        return -EINVAL;
    if (world_line < DPR_FINDER_FIRST_WORLD_LINE || world_line >= f->pub_world_line)
        return -ENOENT;
    for (size_t i = 0; i < f->nprefixes; i++) {
        if (f->prefixes[i].world_line == world_line) {
            *cut = f->prefixes[i].cut;
            *n = f->prefixes[i].n;
            return 0;
        }
    }
    return -ESRCH;
}

void dpr_finder_free(dpr_finder *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nrec; i++)
        rec_free(&f->w[i]);
    free(f->w);
    dpr_depset_free(&f->ids);
    free(f->reg);
    free(f->eras);
    free(f->mt);
    free(f->queue);
    free(f->touched);
    free(f->stack);
    free(f->min_waiters.v);
    free(f->v_waiters.v);
    free(f->scratch);
    free(f->sorted->order);
    free(f->sorted);
    dpr_depset_free(&f->pub_cut);
    prefixes_free(f->prefixes, f->nprefixes);
    free(f->prefixes);
    free(f);
}

int dpr_finder_new(dpr_finder **out)
{
    if (!out)
        return -EINVAL;
    dpr_finder *f = alloc_finder();
    if (!f)
        return -ENOMEM;
    *out = f;
    return 0;
}

static int check_state(const dpr_finder_state *st)
{
    if (!st || st->world_line < DPR_FINDER_FIRST_WORLD_LINE)
        return -EINVAL;
    if (st->nworkers > 0 && !st->workers)
        return -EINVAL;
    if (st->nworkers > MAX_RECORDS)
        return -EINVAL;
    for (size_t i = 0; i < st->nworkers; i++) {
        const dpr_finder_worker_state *ws = &st->workers[i];
        size_t tl = strnlen(ws->token, sizeof(ws->token));
        if (ws->cut > ws->durable || tl == sizeof(ws->token) ||
            (tl > 0 && !dpr_finder_token_valid(ws->token, tl)) ||
            (ws->away && ws->cut != ws->durable))
            return -EINVAL;
    }
    return check_prefixes(st);
}

/* Registers the stored workers of st in f (duplicates: -EINVAL). */
static int load_workers(dpr_finder *f, const dpr_finder_state *st)
{
    int rc = reserve((void **)&f->reg, &f->reg_cap, st->nworkers,
                     sizeof(*f->reg));
    if (rc == 0)
        rc = ensure_records(f, st->nworkers);
    for (size_t i = 0; i < st->nworkers && rc == 0; i++) {
        const dpr_finder_worker_state *ws = &st->workers[i];
        uint32_t idx;
        if (lookup(f, ws->worker) != NO_IDX)
            return -EINVAL;
        rc = new_record(f, ws->worker, &idx);
        if (rc < 0)
            break;
        rec *r = &f->w[idx];
        if (ws->token[0] && !(r->token = token_copy(ws->token, strlen(ws->token))))
            return -ENOMEM;
        r->registered = true;
        r->cut = ws->cut;
        r->durable = ws->durable;
        r->lost_floor = ws->durable;
        r->away = ws->away;
        r->reg_pos = (uint32_t)f->nreg;
        f->reg[f->nreg++] = idx;
    }
    return rc;
}

int dpr_finder_restore(const dpr_finder_state *st, dpr_finder **out)
{
    if (!out)
        return -EINVAL;
    int rc = check_state(st);
    if (rc < 0)
        return rc;
    dpr_finder *f = alloc_finder();
    if (!f)
        return -ENOMEM;
    rc = load_workers(f, st);
    if (rc == 0 && st->nprefixes > 0) {
        dpr_finder_prefix *p = NULL;
        rc = prefixes_copy(st->prefixes, st->nprefixes, &p);
        if (rc == 0) {
            memcpy(f->prefixes, p, st->nprefixes * sizeof(*p));
            f->nprefixes = st->nprefixes;
            free(p);
        }
    }
    if (rc == 0) {
        f->world_line = st->world_line;
        f->generation = st->generation;
        rc = mt_build(f, f->nreg);
    }
    if (rc == 0) {
        min_refresh(f); /* from 0: V can only rise; nothing waits yet */
        f->changed = false;
        rc = publish_working(f);
    }
    if (rc < 0) {
        dpr_finder_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* ------------------------------------------------------------------ */
/* membership                                                           */

/* Crash restart of a registered worker: a new world-line. The cut it rolls
 * back to is remembered as the ended world-line's prefix. */
static int bump_world_line(dpr_finder *f)
{
    dpr_finder_prefix prefix;
    int rc = current_prefix(f, &prefix);
    if (rc < 0)
        return rc; /* nothing changed */
    prefixes_push(f, prefix);
    for (size_t i = 0; i < f->nreg; i++) {
        rec *r = &f->w[f->reg[i]];
        uint64_t c = eff_cut(f, r);
        assert(c <= r->durable); /* durable falls back to the cut */
        r->cut = c;
        r->durable = c;
        r->lost_floor = 0;
        r->era = 0;
        clear_pending(r);
    }
    for (size_t i = 0; i < f->nrec; i++) {
        rec *r = &f->w[i];
        r->waiters.n = 0;
        r->waiters.min_x = UINT64_MAX;
        r->wait_on = NO_IDX;
        r->vwaiting = false;
        r->queued = false;
    }
    f->min_waiters.n = 0;
    f->min_waiters.min_x = UINT64_MAX;
    f->v_waiters.n = 0;
    f->v_waiters.min_x = UINT64_MAX;
    f->q_len = 0;
    f->neras = 0;
    f->era = 0;
    f->world_line++;
    for (size_t i = 0; i < f->nreg; i++)
        mt_set(f, i, f->w[f->reg[i]].durable);
    f->vmin = 0;
    min_refresh(f); /* nothing waits, so no wake-ups */
    f->changed = true;
    return 0;
}

/* Registers an unregistered record (new, ghost or retired). */
static int join(dpr_finder *f, uint64_t worker, uint32_t *idx)
{
    int rc = reserve((void **)&f->reg, &f->reg_cap, f->nreg + 1,
                     sizeof(*f->reg));
    if (rc == 0)
        rc = reserve((void **)&f->eras, &f->eras_cap, f->neras + 1,
                     sizeof(*f->eras));
    if (rc == 0)
        rc = mt_reserve(f, f->nreg + 1);
    if (rc == 0 && *idx == NO_IDX)
        rc = new_record(f, worker, idx);
    if (rc < 0)
        return rc;
    rec *r = &f->w[*idx];
    r->durable = r->cut; /* a retired worker resumes at its final cut */
    r->lost_floor = 0;
    clear_pending(r);
    if (f->nreg > 0 && r->durable < f->vmin)
        era_end(f, f->vmin); /* V drops: the old V stays everyone else's floor */
    r->era = f->era;
    r->registered = true;
    r->reg_pos = (uint32_t)f->nreg;
    f->reg[f->nreg++] = *idx;
    mt_set(f, r->reg_pos, r->durable);
    f->vmin = f->mt[1];
    f->membership++;
    wake_all(f, &f->min_waiters); /* some may have waited for this id */
    f->changed = true;
    return 0;
}

/* An away worker is added again (token allowed): it comes back with the
 * state it left with, on the current world-line. */
static int come_back(dpr_finder *f, uint32_t idx, const char *token, size_t token_len,
                     uint64_t *world_line, uint64_t *restore)
{
    rec *r = &f->w[idx];
    char *keep = NULL;
    if (token_len > 0 && !r->token) {
        keep = token_copy(token, token_len); /* as a crash restart takes it */
        if (!keep)
            return -ENOMEM;
    }
    int rc = drain(f);
    if (rc < 0) {
        free(keep);
        return finish(f, rc);
    }
    /* it served nothing since it left, and the cut never goes back */
    assert(r->durable == eff_cut(f, r));
    r->away = false;
    if (keep)
        r->token = keep;
    f->changed = true;
    if (world_line)
        *world_line = f->world_line;
    if (restore)
        *restore = r->cut;
    return finish(f, 0);
}

int dpr_finder_add_worker_token(dpr_finder *f, uint64_t worker, const char *token,
                                size_t token_len, uint64_t *world_line, uint64_t *restore)
{
    if (!f || (token_len > 0 && !dpr_finder_token_valid(token, token_len)))
        return -EINVAL;
    uint32_t idx = lookup(f, worker);
    bool known = idx != NO_IDX && f->w[idx].registered;
    if (known && !token_allows(&f->w[idx], token, token_len))
        return -EACCES; /* before anything moves: a refusal changes nothing */
    if (known && f->w[idx].away)
        return come_back(f, idx, token, token_len, world_line, restore);
    /* the token the record keeps: the one presented, unless it has one */
    char *keep = NULL;
    if (token_len > 0 && !(known && f->w[idx].token)) {
        keep = token_copy(token, token_len);
        if (!keep)
            return -ENOMEM;
    }
    int rc = drain(f);
    if (rc == 0)
        rc = known ? bump_world_line(f) : join(f, worker, &idx);
    if (rc < 0) {
        free(keep);
        return finish(f, rc);
    }
    if (keep) {
        rec *r = &f->w[idx];
        assert(!r->token); /* retired records forget theirs; ghosts never had one */
        r->token = keep;
        f->changed = true;
    }
    rc = drain(f);
    if (rc == 0) {
        if (world_line)
            *world_line = f->world_line;
        if (restore)
            *restore = f->w[idx].cut;
    }
    return finish(f, rc);
}

int dpr_finder_add_worker(dpr_finder *f, uint64_t worker, uint64_t *world_line,
                          uint64_t *restore)
{
    return dpr_finder_add_worker_token(f, worker, NULL, 0, world_line, restore);
}

/* A worker's owner moved it (say, to another node): the record takes the
 * new owner's token and nothing else changes. Whoever still holds the old
 * token is fenced off from then on (dpr_finder_token_check). */
int dpr_finder_set_token(dpr_finder *f, uint64_t worker, const char *token, size_t token_len)
{
    if (!f || !dpr_finder_token_valid(token, token_len))
        return -EINVAL;
    uint32_t idx = lookup(f, worker);
    if (idx == NO_IDX || !f->w[idx].registered)
        return -ENOENT;
    rec *r = &f->w[idx];
    if (r->token && token_equal(r->token, token, token_len))
        return 0; /* the same owner: no new generation */
    char *keep = token_copy(token, token_len);
    if (!keep)
        return -ENOMEM;
    free(r->token);
    r->token = keep;
    f->changed = true;
    return finish(f, 0);
}

int dpr_finder_token_check(const dpr_finder *f, uint64_t worker, const char *token,
                           size_t token_len)
{
    if (!f)
        return -EINVAL;
    uint32_t idx = lookup(f, worker);
    if (idx == NO_IDX || !f->w[idx].registered)
        return -ENOENT;
    const rec *r = &f->w[idx];
    if (token_len == 0)
        return r->token ? -EACCES : 0;
    /* a token that is not valid was never stored: it matches nothing */
    if (!r->token || !dpr_finder_token_valid(token, token_len))
        return -EACCES;
    return token_equal(r->token, token, token_len) ? 0 : -EACCES;
}

/* The start of a planned leave and of a removal: worker is a member, the
 * token allows it, and every checkpoint it reported is in the cut. 0 with
 * *out its index; else the error, nothing changed. */
static int settled_member(dpr_finder *f, uint64_t worker, const char *token, size_t token_len,
                          uint32_t *out)
{
    if (!f || (token_len > 0 && !dpr_finder_token_valid(token, token_len)))
        return -EINVAL;
    uint32_t idx = lookup(f, worker);
    if (idx == NO_IDX || !f->w[idx].registered)
        return -ENOENT;
    if (!token_allows(&f->w[idx], token, token_len))
        return -EACCES;
    int rc = drain(f);
    if (rc < 0)
        return finish(f, rc);
    rec *r = &f->w[idx];
    r->cut = eff_cut(f, r);
    if (r->durable > r->cut)
        return finish(f, -EBUSY); /* reported checkpoints not yet committed */
    *out = idx;
    return 0;
}

int dpr_finder_leave_worker(dpr_finder *f, uint64_t worker, const char *token,
                            size_t token_len)
{
    uint32_t idx;
    int rc = settled_member(f, worker, token, token_len, &idx);
    if (rc == 0 && !f->w[idx].away) { /* again: nothing changes */
        f->w[idx].away = true;
        f->changed = true;
    }
    return rc < 0 ? rc : finish(f, 0);
}

bool dpr_finder_is_away(const dpr_finder *f, uint64_t worker)
{
    uint32_t idx = f ? lookup(f, worker) : NO_IDX;
    return idx != NO_IDX && f->w[idx].registered && f->w[idx].away;
}

int dpr_finder_remove_worker(dpr_finder *f, uint64_t worker)
{
    return dpr_finder_remove_worker_token(f, worker, NULL, 0);
}

int dpr_finder_remove_worker_token(dpr_finder *f, uint64_t worker, const char *token,
                                   size_t token_len)
{
    uint32_t idx;
    int rc = settled_member(f, worker, token, token_len, &idx);
    if (rc < 0)
        return rc;
    rec *r = &f->w[idx];
    r->durable = r->cut;
    clear_pending(r);
    wait_unlink(f, idx);
    r->registered = false;
    r->away = false;
    free(r->token);
    r->token = NULL;
    uint32_t last = f->reg[--f->nreg];
    f->reg[r->reg_pos] = last;
    f->w[last].reg_pos = r->reg_pos;
    mt_set(f, r->reg_pos, f->w[last].durable);
    mt_set(f, f->nreg, UINT64_MAX);
    f->membership++;
    wake_all(f, &r->waiters); /* they now wait on a non-member */
    f->changed = true;
    min_refresh(f);
    return finish(f, drain(f));
}

/* ------------------------------------------------------------------ */
/* reports                                                              */

static int check_report(const dpr_finder *f, uint64_t world_line,
                        uint64_t version, const dpr_dep *deps, size_t ndeps)
{
    if (!f || version == 0 || world_line < DPR_FINDER_FIRST_WORLD_LINE ||
        world_line > f->world_line || (ndeps > 0 && !deps))
        return -EINVAL;
    for (size_t i = 0; i < ndeps; i++)
        if (deps[i].version > version)
            return -EINVAL;
    return 0;
}

/* Every dependency on another worker names a worker the finder knows
 * (dpr_finder_knows_worker): a dependency on an id that never registered
 * cannot be real (a worker registers before it serves a batch) and would
 * hold the reporter's cut back until every member reports past it. */
static int check_dep_workers(const dpr_finder *f, uint64_t worker, const dpr_dep *deps,
                             size_t ndeps)
{
    for (size_t i = 0; i < ndeps; i++)
        if (deps[i].version != 0 && deps[i].worker != worker &&
            !dpr_finder_knows_worker(f, deps[i].worker))
            return -ENXIO;
    return 0;
}

/* Resolves deps to record indices into f->scratch (every id has a record:
 * check_dep_workers), leaving out the ones already committed; *n gets the
 * count. */
static int resolve_deps(dpr_finder *f, uint64_t worker, const dpr_dep *deps,
                        size_t ndeps, size_t *n)
{
    int rc = reserve((void **)&f->scratch, &f->scratch_cap, ndeps,
                     sizeof(*f->scratch));
    if (rc < 0)
        return rc;
    size_t k = 0;
    for (size_t i = 0; i < ndeps; i++) {
        if (deps[i].version == 0 || deps[i].worker == worker)
            continue; /* no dependency / the implicit edge */
        uint32_t idx = lookup(f, deps[i].worker);
        assert(idx != NO_IDX); /* refused before: check_dep_workers */
        if (deps[i].version <= eff_cut(f, &f->w[idx]))
            continue;
        f->scratch[k].idx = idx;
        f->scratch[k].version = deps[i].version;
        k++;
    }
    *n = k;
    return 0;
}

/* Appends version (with the resolved deps in f->scratch) to r's pending. */
static int append_pending(dpr_finder *f, rec *r, uint64_t version, size_t n)
{
    int rc = reserve((void **)&r->pend, &r->pend_cap, r->pend_len + 1,
                     sizeof(*r->pend));
    if (rc == 0)
        rc = reserve((void **)&r->deps, &r->dep_cap, r->dep_len + n,
                     sizeof(*r->deps));
    if (rc < 0)
        return rc;
    /* oldest first: a new version is above every pending one */
    assert(r->pend_len == r->pend_head || r->pend[r->pend_len - 1].version < version);
    pend_ent *e = &r->pend[r->pend_len++];
    e->version = version;
    e->dep_off = r->dep_len;
    e->ndeps = n;
    if (n > 0) {
        memcpy(r->deps + r->dep_len, f->scratch, n * sizeof(*r->deps));
        r->dep_len += n;
    }
    return 0;
}

int dpr_finder_report(dpr_finder *f, uint64_t world_line, uint64_t worker,
                      uint64_t version, const dpr_dep *deps, size_t ndeps)
{
    int rc = check_report(f, world_line, version, deps, ndeps);
    if (rc < 0)
        return rc;
    uint32_t idx = lookup(f, worker);
    if (idx == NO_IDX || !f->w[idx].registered)
        return -ENOENT;
    rc = drain(f);
    if (rc < 0)
        return finish(f, rc);
    if (world_line < f->world_line)
        return version <= eff_cut(f, &f->w[idx]) ? 0 : -ESTALE;
    if (version <= f->w[idx].durable)
        return 0; /* a resend */
    if (f->w[idx].away)
        return finish(f, -EPERM); /* it left with its last checkpoint: serves nothing */
    rc = check_dep_workers(f, worker, deps, ndeps);
    if (rc < 0)
        return finish(f, rc); /* nothing changed (drain found its queue empty) */
    size_t n = 0;
    rc = resolve_deps(f, worker, deps, ndeps, &n);
    if (rc < 0)
        return rc;
    rec *r = &f->w[idx]; /* stable from here: no more records are made */
    pop_committed(f, r);
    rc = append_pending(f, r, version, n);
    if (rc < 0)
        return rc;
    r->durable = version;
    f->changed = true;
    mt_set(f, r->reg_pos, version);
    min_refresh(f);
    wake_list(f, &f->w[idx].waiters, version);
    if (r->wait_on == NO_IDX)
        enqueue(f, idx);
    return finish(f, drain(f));
}

/* ------------------------------------------------------------------ */
/* state and publishing                                                 */

bool dpr_finder_dirty(const dpr_finder *f)
{
    assert(f->pub_generation <= f->generation); /* the published state is never ahead */
    return f->generation != f->pub_generation;
}

uint64_t dpr_finder_generation(const dpr_finder *f)
{
    return f->generation;
}

static int cmp_worker(const void *a, const void *b)
{
    uint64_t x = ((const dpr_finder_worker_state *)a)->worker;
    uint64_t y = ((const dpr_finder_worker_state *)b)->worker;
    return (x > y) - (x < y);
}

/* Remembers the id order of the members listed in ws (sorted). */
static void remember_order(const dpr_finder *f, const dpr_finder_worker_state *ws)
{
    sort_cache *c = f->sorted;
    uint32_t *order = realloc(c->order, (f->nreg ? f->nreg : 1) * sizeof(*order));
    if (!order)
        return; /* no cache: the next call sorts again */
    c->order = order;
    for (size_t i = 0; i < f->nreg; i++)
        order[i] = lookup(f, ws[i].worker);
    c->n = f->nreg;
    c->membership = f->membership;
    c->valid = true;
}

static void fill_worker(const dpr_finder *f, uint32_t idx,
                        dpr_finder_worker_state *out)
{
    const rec *r = &f->w[idx];
    out->worker = r->id;
    out->cut = eff_cut_const(f, r);
    out->durable = r->durable;
    out->away = r->away;
    if (r->token)
        memcpy(out->token, r->token, sizeof(out->token)); /* zero-padded, so terminated */
    /* else: out is zeroed (calloc), and so is every byte of a copy */
}

int dpr_finder_get_state(const dpr_finder *f, dpr_finder_state *out)
{
    if (!f || !out)
        return -EINVAL;
    dpr_finder_worker_state *ws = NULL;
    dpr_finder_prefix *prefixes = NULL;
    int rc = prefixes_copy(f->prefixes, f->nprefixes, &prefixes);
    if (rc < 0)
        return rc;
    if (f->nreg > 0) {
        ws = calloc(f->nreg, sizeof(*ws));
        if (!ws) {
            prefixes_free(prefixes, f->nprefixes);
            free(prefixes);
            return -ENOMEM;
        }
    }
    const sort_cache *c = f->sorted;
    if (c->valid && c->membership == f->membership && c->n == f->nreg) {
        for (size_t i = 0; i < f->nreg; i++)
            fill_worker(f, c->order[i], &ws[i]);
    } else {
        bool sorted = true;
        for (size_t i = 0; i < f->nreg; i++) {
            fill_worker(f, f->reg[i], &ws[i]);
            if (i > 0 && ws[i - 1].worker > ws[i].worker)
                sorted = false;
        }
        if (!sorted)
            qsort(ws, f->nreg, sizeof(*ws), cmp_worker);
        remember_order(f, ws);
    }
    out->world_line = f->world_line;
    out->generation = f->generation;
    out->nworkers = f->nreg;
    out->workers = ws;
    out->nprefixes = f->nprefixes;
    out->prefixes = prefixes;
    return 0;
}

void dpr_finder_state_free(dpr_finder_state *st)
{
    if (!st)
        return;
    free(st->workers);
    st->workers = NULL;
    st->nworkers = 0;
    prefixes_free(st->prefixes, st->nprefixes);
    free(st->prefixes);
    st->prefixes = NULL;
    st->nprefixes = 0;
}

int dpr_finder_publish(dpr_finder *f, uint64_t generation)
{
    if (!f)
        return -EINVAL;
    if (generation < f->pub_generation)
        return 0; /* older than what is out already */
    if (generation != f->generation)
        return -ESTALE; /* the working state moved on since that copy */
    return publish_working(f);
}

int dpr_finder_publish_state(dpr_finder *f, const dpr_finder_state *st)
{
    if (!f || !st || (st->nworkers > 0 && !st->workers))
        return -EINVAL;
    if (st->generation > f->generation)
        return -EINVAL;
    if (st->generation < f->pub_generation)
        return 0;
    return publish_from(f, st->generation, st->world_line, st->workers,
                        st->nworkers);
}

uint64_t dpr_finder_world_line(const dpr_finder *f)
{
    return f->pub_world_line;
}

uint64_t dpr_finder_max_version(const dpr_finder *f)
{
    return f->pub_max_version;
}

const dpr_depset *dpr_finder_cut(const dpr_finder *f)
{
    return &f->pub_cut;
}

uint64_t dpr_finder_cut_of(const dpr_finder *f, uint64_t worker)
{
    return dpr_depset_get(&f->pub_cut, worker);
}

size_t dpr_finder_worker_count(const dpr_finder *f)
{
    return f->pub_count;
}

bool dpr_finder_has_worker(const dpr_finder *f, uint64_t worker)
{
    uint32_t idx = lookup(f, worker);
    return idx != NO_IDX && f->w[idx].registered;
}

int dpr_finder_sync_view(const dpr_finder *f, uint64_t *world_line, uint64_t *max_version,
                         dpr_dep **cut, size_t *n)
{
    if (!f || !world_line || !max_version || !cut || !n)
        return -EINVAL;
    dpr_dep *all = NULL;
    uint64_t maxv = f->pub_max_version; /* never lowered, like the published one */
    if (f->nreg > 0 && !(all = malloc(f->nreg * sizeof(*all))))
        return -ENOMEM;
    const sort_cache *c = f->sorted;
    bool cached = c->valid && c->membership == f->membership && c->n == f->nreg;
    bool sorted = true;
    for (size_t i = 0; i < f->nreg; i++) {
        const rec *r = &f->w[cached ? c->order[i] : f->reg[i]];
        maxv = max_u64(maxv, r->durable);
        all[i].worker = r->id;
        all[i].version = eff_cut_const(f, r);
        if (i > 0 && all[i - 1].worker > all[i].worker)
            sorted = false;
    }
    if (!sorted)
        qsort(all, f->nreg, sizeof(*all), cmp_dep_worker);
    *world_line = f->world_line;
    *max_version = maxv;
    *cut = all;
    *n = f->nreg;
    return 0;
}

bool dpr_finder_knows_worker(const dpr_finder *f, uint64_t worker)
{
    return lookup(f, worker) != NO_IDX; /* registered or retired: no ghosts arise */
}
