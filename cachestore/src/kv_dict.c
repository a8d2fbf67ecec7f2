/* kv_dict.c - see kv_dict.h. */
#include "kv_dict.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "kv_ckpt.h"
#include "kv_hash.h"

#define DICT_MIN_SIZE 4
#define DICT_FORCE_RATIO 5     /* grow even with a child alive above this load */
#define REHASH_EMPTY_VISITS 10 /* empty buckets skipped per bucket moved */

static void table_reset(kv_table *t)
{
    t->slots = NULL;
    t->size = 0;
    t->used = 0;
}

void kv_dict_init(kv_dict *d, const uint8_t seed[16])
{
    table_reset(&d->t[0]);
    table_reset(&d->t[1]);
    d->rehash_idx = -1;
    d->resize_ok = true;
    memcpy(d->seed, seed, sizeof(d->seed));
    d->entry_bytes = 0;
    d->log = NULL;
}

static void table_free(kv_table *t)
{
    for (size_t i = 0; i < t->size; i++) {
        kv_entry *e = t->slots[i];
        while (e) {
            kv_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(t->slots);
    table_reset(t);
}

void kv_dict_free(kv_dict *d)
{
    table_free(&d->t[0]);
    table_free(&d->t[1]);
    d->rehash_idx = -1;
    d->entry_bytes = 0;
}

void kv_dict_swap(kv_dict *dst, kv_dict *src)
{
    struct kv_ckpt_log *log = dst->log;

    kv_dict_free(dst);
    *dst = *src;
    dst->log = log;
    kv_dict_init(src, dst->seed);
}

/* After a change succeeded: its record (out of memory is sticky in the log). */
static inline void record(kv_dict *d, enum kv_ckpt_op op, const char *key, size_t klen,
                          const char *val, size_t vlen)
{
    if (d->log)
        (void)kv_ckpt_log_add(d->log, op, key, klen, val, vlen);
}

size_t kv_dict_size(const kv_dict *d)
{
    return d->t[0].used + d->t[1].used;
}

static inline bool rehashing(const kv_dict *d)
{
    return d->rehash_idx >= 0;
}

static inline uint64_t hash_of(const kv_dict *d, const char *key, size_t klen)
{
    return kv_hash(key, klen, d->seed);
}

/* Moves up to n buckets from t[0] to t[1]. Returns false when done. */
static bool rehash_step(kv_dict *d, size_t n)
{
    kv_table *from = &d->t[0], *to = &d->t[1];
    size_t empty = n * REHASH_EMPTY_VISITS;
    size_t idx = (size_t)d->rehash_idx;

    assert(rehashing(d) && to->size > 0);
    while (n-- && from->used) {
        /* buckets below rehash_idx are empty, so entries remain above it */
        assert(idx < from->size);
        while (!from->slots[idx]) {
            idx++;
            if (--empty == 0)
                goto out;
        }
        kv_entry *e = from->slots[idx];
        while (e) {
            kv_entry *next = e->next;
            size_t i = hash_of(d, e->data, e->klen) & (to->size - 1);
            e->next = to->slots[i];
            to->slots[i] = e;
            from->used--;
            to->used++;
            e = next;
        }
        from->slots[idx++] = NULL;
    }
out:
    d->rehash_idx = (ssize_t)idx;
    if (from->used == 0) {
        free(from->slots);
        *from = *to;
        table_reset(to);
        d->rehash_idx = -1;
        return false;
    }
    return true;
}

static size_t next_pow2(size_t want)
{
    size_t s = DICT_MIN_SIZE;
    while (s < want && s < (SIZE_MAX >> 1))
        s <<= 1;
    return s;
}

/* Starts moving to a table of (at least) `want` buckets. */
static int resize(kv_dict *d, size_t want)
{
    size_t size = next_pow2(want);
    kv_table *target;

    if (rehashing(d) || size == d->t[0].size)
        return 0;
    assert((size & (size - 1)) == 0 && d->t[1].size == 0); /* t[1] only while rehashing */
    if (size > SIZE_MAX / sizeof(kv_entry *))
        return -ENOMEM;
    target = d->t[0].size ? &d->t[1] : &d->t[0];
    target->slots = calloc(size, sizeof(kv_entry *));
    if (!target->slots)
        return -ENOMEM;
    target->size = size;
    target->used = 0;
    if (target == &d->t[1])
        d->rehash_idx = 0;
    return 0;
}

int kv_dict_reserve(kv_dict *d, size_t n)
{
    if (d->t[0].size != 0 || rehashing(d))
        return 0;
    return resize(d, n);
}

static int expand_if_needed(kv_dict *d)
{
    const kv_table *t = &d->t[0];

    if (rehashing(d))
        return 0;
    if (t->size == 0)
        return resize(d, DICT_MIN_SIZE);
    if (t->used >= t->size && (d->resize_ok || t->used / t->size > DICT_FORCE_RATIO))
        (void)resize(d, t->used * 2); /* on failure chains just get longer */
    return 0;
}

/* The link (slot or previous entry's next) that points at key's entry, or
 * NULL; *table gets the table holding it. */
static kv_entry **find_link(kv_dict *d, const char *key, size_t klen, uint64_t h,
                            int *table)
{
    for (int t = 0; t <= 1; t++) {
        kv_table *tab = &d->t[t];
        if (tab->size == 0)
            continue;
        kv_entry **link = &tab->slots[h & (tab->size - 1)];
        for (kv_entry *e = *link; e; link = &e->next, e = *link) {
            if (e->klen == klen && memcmp(e->data, key, klen) == 0) {
                *table = t;
                return link;
            }
        }
        if (!rehashing(d))
            break;
    }
    return NULL;
}

kv_entry *kv_dict_find(kv_dict *d, const char *key, size_t klen)
{
    int t;
    kv_entry **link;

    if (kv_dict_size(d) == 0)
        return NULL;
    if (rehashing(d))
        rehash_step(d, 1);
    link = find_link(d, key, klen, hash_of(d, key, klen), &t);
    return link ? *link : NULL;
}

static kv_entry *entry_new(kv_dict *d, const char *key, size_t klen, const char *val,
                           size_t vlen, size_t alloc)
{
    kv_entry *e = malloc(alloc);
    if (!e)
        return NULL;
    e->next = NULL;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    memcpy(e->data, key, klen);
    if (vlen)
        memcpy(e->data + klen, val, vlen);
    d->entry_bytes += malloc_usable_size(e);
    return e;
}

static void entry_free(kv_dict *d, kv_entry *e)
{
    assert(d->entry_bytes >= malloc_usable_size(e));
    d->entry_bytes -= malloc_usable_size(e);
    free(e);
}

/* Inserts a new entry (the key is known to be absent). */
static int insert_new(kv_dict *d, kv_entry *e, uint64_t h)
{
    int r = expand_if_needed(d);
    if (r < 0)
        return r;
    kv_table *t = rehashing(d) ? &d->t[1] : &d->t[0];
    size_t i;

    assert(t->size > 0); /* expand_if_needed made a table */
    i = h & (t->size - 1);
    e->next = t->slots[i];
    t->slots[i] = e;
    t->used++;
    return 0;
}

/* Replaces *link's entry by a new allocation of `alloc` bytes holding the
 * same key, the first `keep` bytes of the old value, then `val`. */
static int entry_replace(kv_dict *d, kv_entry **link, size_t keep, const char *val,
                         size_t vlen, size_t alloc)
{
    kv_entry *old = *link, *e;

    e = malloc(alloc);
    if (!e)
        return -ENOMEM;
    e->next = old->next;
    e->klen = old->klen;
    e->vlen = (uint32_t)(keep + vlen);
    memcpy(e->data, old->data, old->klen + keep);
    if (vlen)
        memcpy(e->data + old->klen + keep, val, vlen);
    d->entry_bytes += malloc_usable_size(e);
    entry_free(d, old);
    *link = e;
    return 0;
}

/* Shared start of every write: length limits, then one incremental rehash
 * step. 0 or -E2BIG. */
static int write_begin(kv_dict *d, size_t klen, size_t vlen)
{
    if (klen > KV_DICT_MAX_LEN || vlen > KV_DICT_MAX_LEN)
        return -E2BIG;
    if (rehashing(d))
        rehash_step(d, 1);
    return 0;
}

/* Inserts a key known to be absent, whose hash is h. */
static int add_absent(kv_dict *d, const char *key, size_t klen, const char *val, size_t vlen,
                      uint64_t h)
{
    kv_entry *e = entry_new(d, key, klen, val, vlen, sizeof(kv_entry) + klen + vlen);
    int r;

    if (!e)
        return -ENOMEM;
    r = insert_new(d, e, h);
    if (r < 0)
        entry_free(d, e);
    return r;
}

int kv_dict_set(kv_dict *d, const char *key, size_t klen, const char *val, size_t vlen,
                bool *created)
{
    uint64_t h;
    kv_entry **link, *e;
    size_t need;
    int t, r = 0;

    r = write_begin(d, klen, vlen);
    if (r < 0)
        return r;
    h = hash_of(d, key, klen);
    need = sizeof(kv_entry) + klen + vlen;
    link = find_link(d, key, klen, h, &t);
    if (link) {
        e = *link;
        size_t usable = malloc_usable_size(e);
        if (need <= usable && usable - need < 64 + need / 2) {
            if (vlen)
                memmove(kv_entry_val(e), val, vlen);
            e->vlen = (uint32_t)vlen;
        } else {
            r = entry_replace(d, link, 0, val, vlen, need);
        }
        if (r == 0) /* (from the entry: val may have pointed into the old one) */
            record(d, KV_CKPT_OP_SET, (*link)->data, klen, kv_entry_val(*link), vlen);
        if (created && r == 0)
            *created = false;
        return r;
    }
    r = add_absent(d, key, klen, val, vlen, h);
    if (r == 0)
        record(d, KV_CKPT_OP_SET, key, klen, val, vlen);
    if (created && r == 0)
        *created = true;
    return r;
}

int kv_dict_add_new(kv_dict *d, const char *key, size_t klen, const char *val, size_t vlen)
{
    int r = write_begin(d, klen, vlen);

    if (r < 0)
        return r;
    r = add_absent(d, key, klen, val, vlen, hash_of(d, key, klen));
    if (r == 0)
        record(d, KV_CKPT_OP_SET, key, klen, val, vlen);
    return r;
}

int kv_dict_append(kv_dict *d, const char *key, size_t klen, const char *val, size_t vlen,
                   size_t *newlen)
{
    uint64_t h;
    kv_entry **link, *e;
    int t, r = 0;

    r = write_begin(d, klen, vlen);
    if (r < 0)
        return r;
    h = hash_of(d, key, klen);
    link = find_link(d, key, klen, h, &t);
    if (!link) {
        r = add_absent(d, key, klen, val, vlen, h);
        if (r == 0) {
            *newlen = vlen;
            record(d, KV_CKPT_OP_APPEND, key, klen, val, vlen);
        }
        return r;
    }
    e = *link;
    if ((uint64_t)e->vlen + vlen > KV_DICT_MAX_LEN)
        return -E2BIG;
    size_t total = (size_t)e->vlen + vlen;
    size_t need = sizeof(kv_entry) + e->klen + total;
    if (need <= malloc_usable_size(e)) {
        memcpy(kv_entry_val(e) + e->vlen, val, vlen);
        e->vlen = (uint32_t)total;
    } else {
        /* grow greedily (like sds) so repeated APPENDs are amortised O(1) */
        size_t slack = need < (1u << 20) ? need : (1u << 20);
        r = entry_replace(d, link, e->vlen, val, vlen, need + slack);
        if (r < 0)
            r = entry_replace(d, link, e->vlen, val, vlen, need);
        if (r < 0)
            return r;
    }
    *newlen = total;
    /* (the appended bytes are the value's tail now) */
    record(d, KV_CKPT_OP_APPEND, (*link)->data, klen, kv_entry_val(*link) + total - vlen, vlen);
    return 0;
}

int kv_dict_delete(kv_dict *d, const char *key, size_t klen)
{
    kv_entry **link, *e;
    int t;

    if (kv_dict_size(d) == 0)
        return 0;
    if (rehashing(d))
        rehash_step(d, 1);
    link = find_link(d, key, klen, hash_of(d, key, klen), &t);
    if (!link)
        return 0;
    e = *link;
    *link = e->next;
    assert(d->t[t].used > 0);
    d->t[t].used--;
    record(d, KV_CKPT_OP_DEL, e->data, klen, NULL, 0);
    entry_free(d, e);
    return 1;
}

void kv_dict_set_resize(kv_dict *d, bool ok)
{
    d->resize_ok = ok;
}

void kv_dict_cron(kv_dict *d, uint64_t usec)
{
    const kv_table *t = &d->t[0];

    if (!d->resize_ok)
        return;
    if (!rehashing(d) && t->size > DICT_MIN_SIZE && t->used < t->size / 8)
        (void)resize(d, t->used); /* on failure: try again next time */
    if (!rehashing(d))
        return;
    uint64_t start = dpr_mono_ns();
    while (rehash_step(d, 100)) {
        if ((dpr_mono_ns() - start) / 1000u >= usec)
            break;
    }
}

size_t kv_dict_memory(const kv_dict *d)
{
    return (d->t[0].size + d->t[1].size) * sizeof(kv_entry *) + d->entry_bytes;
}

kv_entry *kv_dict_next(const kv_dict *d, size_t it[2], kv_entry *prev)
{
    if (prev && prev->next)
        return prev->next;
    if (prev)
        it[1]++;
    while (it[0] <= 1) {
        const kv_table *t = &d->t[it[0]];
        while (it[1] < t->size) {
            if (t->slots[it[1]])
                return t->slots[it[1]];
            it[1]++;
        }
        it[0]++;
        it[1] = 0;
    }
    return NULL;
}
