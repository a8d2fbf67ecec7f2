/*
 * domains.c - see dpr/domains.h and docs/finder.md ("Domains").
 *
 * A sorted array of (name, core). Cores live on the heap, so the pointer
 * dpr_domains_find / ensure / at gives stays valid when other domains come
 * and go; only dpr_domains_split (which replaces `from`'s core) and
 * dpr_domains_free end a core.
 *
 * GENERATION. The cores bump their own generations; the generation of the
 * whole is base + sum over domains of (core generation - the core's
 * generation when it joined). Every change of a core raises it by the
 * core's bump; a structural change (a domain created, replaced or dropped)
 * folds the leaving core's part into base and adds 1. So it rises with
 * every change and never goes back, without scanning anything per request.
 *
 * PUBLISHING. A saved copy carries each domain's part with the core's own
 * generation; dpr_domains_publish hands each part to its core. An entry
 * remembers the whole's generation at which it joined (born): a part saved
 * before that belongs to an earlier core of the same name (split, a later
 * re-creation) and is not published to the new one.
 */
#include "dpr/domains.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char name[DPR_DOMAIN_MAX + 1];
    dpr_finder *f;
    uint64_t gen0; /* f's generation when it joined */
    uint64_t born; /* the whole's generation right after it joined */
} entry;

struct dpr_domains {
    entry *v; /* sorted by name */
    size_t n, cap;
    uint64_t base;       /* see GENERATION */
    uint64_t struct_gen; /* generation right after the last structural change */
    uint64_t pub_gen;    /* generation of the last published copy */
};

/* A valid, NUL-terminated name (its length in *len). */
static bool name_ok(const char *name, size_t *len)
{
    if (!name)
        return false;
    *len = strnlen(name, DPR_DOMAIN_MAX + 1);
    return dpr_domain_valid(name, *len);
}

/* Index of the first entry not below name; *found when it is name. */
static size_t lower_bound(const dpr_domains *ds, const char *name, bool *found)
{
    size_t lo = 0, hi = ds->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(ds->v[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < ds->n && strcmp(ds->v[lo].name, name) == 0;
    return lo;
}

static uint64_t generation(const dpr_domains *ds)
{
    uint64_t g = ds->base;

    for (size_t i = 0; i < ds->n; i++) {
        uint64_t fg = dpr_finder_generation(ds->v[i].f);
        assert(fg >= ds->v[i].gen0); /* a core's generation never goes back */
        g += fg - ds->v[i].gen0;
    }
    return g;
}

static int reserve(dpr_domains *ds, size_t need)
{
    entry *v;
    size_t cap;

    if (need <= ds->cap)
        return 0;
    cap = ds->cap ? ds->cap * 2 : 8;
    while (cap < need)
        cap *= 2;
    v = realloc(ds->v, cap * sizeof(*v));
    if (!v)
        return -ENOMEM;
    ds->v = v;
    ds->cap = cap;
    return 0;
}

/* Inserts (name, f) at position pos (room reserved); a structural change. */
static void insert_at(dpr_domains *ds, size_t pos, const char *name, dpr_finder *f)
{
    entry *e;

    assert(ds->n < ds->cap);
    memmove(&ds->v[pos + 1], &ds->v[pos], (ds->n - pos) * sizeof(*ds->v));
    ds->n++;
    e = &ds->v[pos];
    memset(e, 0, sizeof(*e));
    memcpy(e->name, name, strnlen(name, DPR_DOMAIN_MAX)); /* valid: at most the maximum */
    e->f = f;
    e->gen0 = dpr_finder_generation(f);
}

void dpr_domains_state_free(dpr_domains_state *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n; i++)
        dpr_finder_state_free(&st->domains[i].state);
    free(st->domains);
    st->domains = NULL;
    st->n = 0;
}

int dpr_domains_new(dpr_domains **out)
{
    dpr_domains *ds;

    if (!out)
        return -EINVAL;
    ds = calloc(1, sizeof(*ds));
    if (!ds)
        return -ENOMEM;
    *out = ds;
    return 0;
}

void dpr_domains_free(dpr_domains *ds)
{
    if (!ds)
        return;
    for (size_t i = 0; i < ds->n; i++)
        dpr_finder_free(ds->v[i].f);
    free(ds->v);
    free(ds);
}

int dpr_domains_restore(const dpr_domains_state *st, dpr_domains **out)
{
    dpr_domains *ds = NULL;
    size_t len;
    int rc;

    if (!st || !out || (st->n > 0 && !st->domains))
        return -EINVAL;
    for (size_t i = 0; i < st->n; i++) {
        const char *name = st->domains[i].name;
        if (!name_ok(name, &len) || (i > 0 && strcmp(st->domains[i - 1].name, name) >= 0))
            return -EINVAL; /* bad, unsorted or duplicate name */
    }
    rc = dpr_domains_new(&ds);
    if (rc == 0)
        rc = reserve(ds, st->n);
    for (size_t i = 0; i < st->n && rc == 0; i++) {
        dpr_finder *f = NULL;
        rc = dpr_finder_restore(&st->domains[i].state, &f);
        if (rc == 0)
            insert_at(ds, ds->n, st->domains[i].name, f);
    }
    if (rc < 0) {
        dpr_domains_free(ds);
        return rc;
    }
    /* generation() == st->generation: every core starts at its gen0 */
    ds->base = st->generation;
    ds->struct_gen = ds->pub_gen = st->generation;
    for (size_t i = 0; i < ds->n; i++)
        ds->v[i].born = st->generation;
    *out = ds;
    return 0;
}

dpr_finder *dpr_domains_find(const dpr_domains *ds, const char *name)
{
    bool found;
    size_t i;

    if (!ds || !name)
        return NULL;
    i = lower_bound(ds, name, &found);
    return found ? ds->v[i].f : NULL;
}

int dpr_domains_ensure(dpr_domains *ds, const char *name, dpr_finder **out)
{
    dpr_finder *f = NULL;
    bool found;
    size_t pos, len;
    int rc;

    if (!ds || !out || !name_ok(name, &len))
        return -EINVAL;
    pos = lower_bound(ds, name, &found);
    if (found) {
        *out = ds->v[pos].f;
        return 0;
    }
    rc = reserve(ds, ds->n + 1);
    if (rc == 0)
        rc = dpr_finder_new(&f);
    if (rc < 0)
        return rc;
    insert_at(ds, pos, name, f);
    ds->base++;
    ds->struct_gen = generation(ds);
    ds->v[pos].born = ds->struct_gen;
    *out = f;
    return 0;
}

size_t dpr_domains_count(const dpr_domains *ds)
{
    return ds ? ds->n : 0;
}

const char *dpr_domains_name(const dpr_domains *ds, size_t i)
{
    return ds && i < ds->n ? ds->v[i].name : NULL;
}

dpr_finder *dpr_domains_at(const dpr_domains *ds, size_t i)
{
    return ds && i < ds->n ? ds->v[i].f : NULL;
}

bool dpr_domains_dirty(const dpr_domains *ds)
{
    if (ds->struct_gen > ds->pub_gen)
        return true;
    for (size_t i = 0; i < ds->n; i++)
        if (dpr_finder_dirty(ds->v[i].f))
            return true;
    return false;
}

int dpr_domains_get_state(const dpr_domains *ds, dpr_domains_state *out)
{
    dpr_domains_state st = { .domains = NULL };
    int rc = 0;

    if (!ds || !out)
        return -EINVAL;
    st.generation = ds->base;
    if (ds->n > 0 && !(st.domains = calloc(ds->n, sizeof(*st.domains))))
        return -ENOMEM;
    for (size_t i = 0; i < ds->n && rc == 0; i++) {
        dpr_domain_state *d = &st.domains[i];
        st.n = i + 1; /* so that a failure frees what is there */
        memcpy(d->name, ds->v[i].name, sizeof(d->name));
        rc = dpr_finder_get_state(ds->v[i].f, &d->state);
        if (rc == 0)
            st.generation += d->state.generation - ds->v[i].gen0;
    }
    if (rc < 0) {
        dpr_domains_state_free(&st);
        return rc;
    }
    *out = st;
    return 0;
}

int dpr_domains_publish(dpr_domains *ds, const dpr_domains_state *saved)
{
    if (!ds || !saved || (saved->n > 0 && !saved->domains))
        return -EINVAL;
    if (saved->generation < ds->pub_gen)
        return 0; /* older than what is published */
    if (saved->generation > generation(ds))
        return -EINVAL; /* not a copy of this working state */
    for (size_t i = 0; i < saved->n; i++) {
        const dpr_domain_state *d = &saved->domains[i];
        bool found;
        size_t k = lower_bound(ds, d->name, &found);
        dpr_finder *f;
        int rc;

        if (!found || ds->v[k].born > saved->generation)
            continue; /* dropped since, or a later core of that name */
        f = ds->v[k].f;
        if (d->state.generation == dpr_finder_generation(f))
            rc = dpr_finder_publish(f, d->state.generation); /* the copy is current */
        else
            rc = dpr_finder_publish_state(f, &d->state);
        if (rc < 0)
            return rc; /* the parts published so far are durable too */
    }
    ds->pub_gen = saved->generation;
    return 0;
}

/* ---- split ---------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static bool in_set(const uint64_t *set, size_t n, uint64_t w)
{
    return n && bsearch(&w, set, n, sizeof(*set), cmp_u64) != NULL;
}

/*
 * out = the part of st whose workers are (moved ? in : not in) set: the
 * same world-line and generation, those workers, and every remembered
 * prefix restricted to them (a prefix left empty is kept: the world-line
 * did end, and a session of it needs to learn that its cut was empty).
 */
static int restrict_state(const dpr_finder_state *st, const uint64_t *set, size_t nset,
                          bool moved, dpr_finder_state *out)
{
    dpr_finder_state r = { .world_line = st->world_line, .generation = st->generation };

    if (st->nworkers > 0 && !(r.workers = calloc(st->nworkers, sizeof(*r.workers))))
        return -ENOMEM;
    for (size_t i = 0; i < st->nworkers; i++)
        if (in_set(set, nset, st->workers[i].worker) == moved)
            r.workers[r.nworkers++] = st->workers[i];
    if (st->nprefixes > 0 && !(r.prefixes = calloc(st->nprefixes, sizeof(*r.prefixes)))) {
        dpr_finder_state_free(&r);
        return -ENOMEM;
    }
    for (size_t i = 0; i < st->nprefixes; i++) {
        const dpr_finder_prefix *p = &st->prefixes[i];
        dpr_finder_prefix *q = &r.prefixes[i];
        r.nprefixes = i + 1;
        q->world_line = p->world_line;
        if (p->n > 0 && !(q->cut = malloc(p->n * sizeof(*q->cut)))) {
            dpr_finder_state_free(&r);
            return -ENOMEM;
        }
        for (size_t j = 0; j < p->n; j++)
            if (in_set(set, nset, p->cut[j].worker) == moved)
                q->cut[q->n++] = p->cut[j];
    }
    *out = r;
    return 0;
}

int dpr_domains_split(dpr_domains *ds, const char *from, const char *to,
                      const uint64_t *workers, size_t n)
{
    dpr_finder_state st = { .workers = NULL }, moved = { .workers = NULL },
                     rest = { .workers = NULL };
    dpr_finder *fto = NULL, *frest = NULL, *old;
    uint64_t *set = NULL;
    size_t nset = 0, ifrom, ito, len;
    bool found;
    int rc;

    if (!ds || !name_ok(from, &len) || !name_ok(to, &len) || (n > 0 && !workers))
        return -EINVAL;
    ifrom = lower_bound(ds, from, &found);
    if (!found)
        return -ENOENT;
    (void)lower_bound(ds, to, &found);
    if (found)
        return -EEXIST; /* also when to == from */
    old = ds->v[ifrom].f;
    if (dpr_finder_dirty(old))
        return -EBUSY; /* the new cores would publish what is not durable yet */
    if (n > 0) {
        if (!(set = malloc(n * sizeof(*set))))
            return -ENOMEM;
        memcpy(set, workers, n * sizeof(*set));
        qsort(set, n, sizeof(*set), cmp_u64);
        for (size_t i = 0; i < n; i++) /* duplicates name one worker */
            if (nset == 0 || set[nset - 1] != set[i])
                set[nset++] = set[i];
    }
    for (size_t i = 0; i < nset; i++) {
        if (!dpr_finder_has_worker(old, set[i])) {
            rc = -ENOENT;
            goto out;
        }
    }
    rc = reserve(ds, ds->n + 1);
    if (rc == 0)
        rc = dpr_finder_get_state(old, &st);
    if (rc == 0)
        rc = restrict_state(&st, set, nset, true, &moved);
    if (rc == 0)
        rc = restrict_state(&st, set, nset, false, &rest);
    if (rc == 0)
        rc = dpr_finder_restore(&moved, &fto);
    if (rc == 0 && nset > 0 && rest.nworkers > 0)
        rc = dpr_finder_restore(&rest, &frest);
    if (rc < 0)
        goto out;

    /* nothing can fail from here on */
    if (nset > 0) {
        /* from's core leaves: its part of the generation goes into base */
        ds->base += dpr_finder_generation(old) - ds->v[ifrom].gen0;
        if (frest) {
            ds->v[ifrom].f = frest;
            ds->v[ifrom].gen0 = dpr_finder_generation(frest);
        } else { /* every worker moved: from is dropped */
            memmove(&ds->v[ifrom], &ds->v[ifrom + 1], (ds->n - ifrom - 1) * sizeof(*ds->v));
            ds->n--;
        }
        dpr_finder_free(old);
    }
    ito = lower_bound(ds, to, &found);
    assert(!found);
    insert_at(ds, ito, to, fto);
    fto = NULL;
    ds->base++;
    ds->struct_gen = generation(ds);
    ds->v[ito].born = ds->struct_gen;
    if (frest) {
        ifrom = lower_bound(ds, from, &found);
        assert(found);
        ds->v[ifrom].born = ds->struct_gen;
    }
out:
    dpr_finder_free(fto);
    dpr_finder_state_free(&st);
    dpr_finder_state_free(&moved);
    dpr_finder_state_free(&rest);
    free(set);
    return rc;
}
