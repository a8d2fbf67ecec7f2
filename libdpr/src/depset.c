/* depset.c - sparse worker -> version map (see depset.h). */
#include "dpr/depset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static inline size_t slot_of(uint64_t worker, size_t cap)
{
    /* splitmix64 finaliser: spreads sequential ids over the table */
    uint64_t z = worker + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (size_t)z & (cap - 1);
}

void dpr_depset_init(dpr_depset *s)
{
    s->slots = NULL;
    s->cap = 0;
    s->count = 0;
}

void dpr_depset_free(dpr_depset *s)
{
    free(s->slots);
    dpr_depset_init(s);
}

void dpr_depset_clear(dpr_depset *s)
{
    if (s->slots)
        memset(s->slots, 0, s->cap * sizeof(*s->slots));
    s->count = 0;
}

size_t dpr_depset_count(const dpr_depset *s)
{
    return s->count;
}

/* Index of worker's slot, or of the empty slot where it would go. */
static size_t find(const dpr_depset *s, uint64_t worker)
{
    size_t mask = s->cap - 1;
    size_t i = slot_of(worker, s->cap);
    while (s->slots[i].version != 0 && s->slots[i].worker != worker)
        i = (i + 1) & mask;
    return i;
}

uint64_t dpr_depset_get(const dpr_depset *s, uint64_t worker)
{
    if (s->count == 0)
        return 0;
    return s->slots[find(s, worker)].version; /* 0 when empty */
}

static int grow(dpr_depset *s, size_t need)
{
    size_t cap = s->cap ? s->cap : 8;
    while (need * 4 > cap * 3)
        cap *= 2;
    if (cap == s->cap)
        return 0;
    dpr_dep *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    dpr_depset old = *s;
    s->slots = slots;
    s->cap = cap;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].version != 0)
            s->slots[find(s, old.slots[i].worker)] = old.slots[i];
    free(old.slots);
    return 0;
}

static int upsert(dpr_depset *s, uint64_t worker, uint64_t version, int keep_max)
{
    if (version == 0) {
        if (!keep_max)
            dpr_depset_remove(s, worker);
        return 0;
    }
    int r = grow(s, s->count + 1);
    if (r < 0)
        return r;
    dpr_dep *d = &s->slots[find(s, worker)];
    if (d->version == 0) {
        d->worker = worker;
        d->version = version;
        s->count++;
    } else if (!keep_max || version > d->version) {
        d->version = version;
    }
    return 0;
}

int dpr_depset_set(dpr_depset *s, uint64_t worker, uint64_t version)
{
    return upsert(s, worker, version, 0);
}

int dpr_depset_put_max(dpr_depset *s, uint64_t worker, uint64_t version)
{
    return upsert(s, worker, version, 1);
}

bool dpr_depset_remove(dpr_depset *s, uint64_t worker)
{
    if (s->count == 0)
        return false;
    size_t mask = s->cap - 1;
    size_t i = find(s, worker);
    if (s->slots[i].version == 0)
        return false;
    /* backward-shift deletion keeps probe chains intact without tombstones */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (s->slots[j].version == 0)
            break;
        size_t home = slot_of(s->slots[j].worker, s->cap);
        /* move j into the hole at i unless its home lies cyclically in (i, j] */
        bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i].version = 0;
    s->slots[i].worker = 0;
    s->count--;
    return true;
}

size_t dpr_depset_prune(dpr_depset *s, const dpr_depset *cut)
{
    /* Walk the slots; after a removal the backward shift may have moved an
     * unchecked entry into slot i, so look at i again. Entries shifted across
     * the end of the table land at or after i, never before it, except ones
     * that were already checked (and kept). */
    size_t removed = 0;
    size_t i = 0;
    while (i < s->cap) {
        dpr_dep d = s->slots[i];
        if (d.version != 0 && d.version <= dpr_depset_get(cut, d.worker)) {
            dpr_depset_remove(s, d.worker);
            removed++;
            continue;
        }
        i++;
    }
    return removed;
}

int dpr_depset_copy(dpr_depset *dst, const dpr_depset *src)
{
    dpr_dep *slots = NULL;
    if (src->cap) {
        slots = malloc(src->cap * sizeof(*slots));
        if (!slots)
            return -ENOMEM;
        memcpy(slots, src->slots, src->cap * sizeof(*slots));
    }
    free(dst->slots);
    dst->slots = slots;
    dst->cap = src->cap;
    dst->count = src->count;
    return 0;
}

bool dpr_depset_next(const dpr_depset *s, size_t *it, dpr_dep *out)
{
    for (size_t i = *it; i < s->cap; i++) {
        if (s->slots[i].version != 0) {
            *out = s->slots[i];
            *it = i + 1;
            return true;
        }
    }
    *it = s->cap;
    return false;
}
