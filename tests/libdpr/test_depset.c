/* test_depset.c - the sparse worker -> version map against a brute-force model. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dpr/depset.h"

static uint64_t rng_state = 0x243f6a8885a308d3ULL;

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

/* ---- brute-force model: an unsorted array of pairs ------------------------ */

#define MODEL_MAX 4096

typedef struct model {
    dpr_dep e[MODEL_MAX];
    size_t n;
} model;

static size_t model_find(const model *m, uint64_t w)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].worker == w)
            return i;
    return m->n;
}

static uint64_t model_get(const model *m, uint64_t w)
{
    size_t i = model_find(m, w);
    return i < m->n ? m->e[i].version : 0;
}

static void model_remove(model *m, uint64_t w)
{
    size_t i = model_find(m, w);
    if (i < m->n)
        m->e[i] = m->e[--m->n];
}

static void model_set(model *m, uint64_t w, uint64_t v)
{
    if (v == 0) {
        model_remove(m, w);
        return;
    }
    size_t i = model_find(m, w);
    if (i == m->n)
        m->e[m->n++] = (dpr_dep){w, v};
    else
        m->e[i].version = v;
}

static void model_put_max(model *m, uint64_t w, uint64_t v)
{
    if (v > model_get(m, w))
        model_set(m, w, v);
}

/* Same content: counts, every model entry found, iteration sees each once. */
static bool same(const dpr_depset *s, const model *m)
{
    if (dpr_depset_count(s) != m->n)
        return false;
    for (size_t i = 0; i < m->n; i++)
        if (dpr_depset_get(s, m->e[i].worker) != m->e[i].version)
            return false;
    size_t it = 0, seen = 0;
    dpr_dep d;
    while (dpr_depset_next(s, &it, &d)) {
        if (model_get(m, d.worker) != d.version)
            return false;
        seen++;
    }
    return seen == m->n;
}

/* Keys from a small pool (many collisions and long probe chains after the
 * table is 3/4 full) mixed with arbitrary 64-bit ids. */
static uint64_t pick_key(uint64_t pool)
{
    uint64_t k = rnd() % pool;
    switch (rnd() % 4) {
    case 0: return k;
    case 1: return k << 32;          /* same low bits */
    case 2: return UINT64_MAX - k;   /* the top of the range */
    default: return k * 0x10000ULL;  /* multiples of 65,536 */
    }
}

TEST(basic)
{
    dpr_depset s = DPR_DEPSET_INIT;
    CHECK_EQ_U64(dpr_depset_count(&s), 0);
    CHECK_EQ_U64(dpr_depset_get(&s, 7), 0);
    CHECK(!dpr_depset_remove(&s, 7));
    CHECK_EQ_INT(dpr_depset_set(&s, 7, 3), 0);
    CHECK_EQ_INT(dpr_depset_set(&s, 0, 5), 0); /* worker id 0 is an ordinary id */
    CHECK_EQ_U64(dpr_depset_get(&s, 7), 3);
    CHECK_EQ_U64(dpr_depset_get(&s, 0), 5);
    CHECK_EQ_INT(dpr_depset_put_max(&s, 7, 2), 0);
    CHECK_EQ_U64(dpr_depset_get(&s, 7), 3);
    CHECK_EQ_INT(dpr_depset_put_max(&s, 7, 9), 0);
    CHECK_EQ_U64(dpr_depset_get(&s, 7), 9);
    CHECK_EQ_INT(dpr_depset_set(&s, 7, 1), 0); /* set may lower */
    CHECK_EQ_U64(dpr_depset_get(&s, 7), 1);
    CHECK_EQ_INT(dpr_depset_put_max(&s, 8, 0), 0); /* put_max 0: no-op */
    CHECK_EQ_U64(dpr_depset_count(&s), 2);
    CHECK_EQ_INT(dpr_depset_set(&s, 7, 0), 0); /* set 0 removes */
    CHECK_EQ_U64(dpr_depset_count(&s), 1);
    CHECK(dpr_depset_remove(&s, 0));
    CHECK_EQ_U64(dpr_depset_count(&s), 0);
    dpr_depset_clear(&s);
    dpr_depset_free(&s);
}

TEST(random_against_model)
{
    static model m;
    dpr_depset s;
    dpr_depset_init(&s);
    m.n = 0;
    bool ok = true;
    for (int step = 0; step < 200000 && ok; step++) {
        uint64_t w = pick_key(600);
        uint64_t v = rnd() % 8; /* 0 included: set(0) removes */
        switch (rnd() % 5) {
        case 0:
            ok = dpr_depset_set(&s, w, v) == 0;
            model_set(&m, w, v);
            break;
        case 1:
            ok = dpr_depset_put_max(&s, w, v) == 0;
            model_put_max(&m, w, v);
            break;
        case 2:
        case 3: {
            bool had = model_get(&m, w) != 0;
            ok = dpr_depset_remove(&s, w) == had;
            model_remove(&m, w);
            break;
        }
        default:
            ok = dpr_depset_get(&s, w) == model_get(&m, w);
        }
        if (ok && step % 97 == 0)
            ok = same(&s, &m);
        if (step % 50000 == 49999)
            dpr_depset_clear(&s), m.n = 0;
    }
    CHECK(ok);
    CHECK(same(&s, &m));
    dpr_depset_free(&s);
}

/* Fill to the growth threshold, then remove in random order: every removal
 * must keep the other entries' probe chains intact. */
TEST(removal_with_collisions)
{
    static model m;
    bool ok = true;
    for (int round = 0; round < 200 && ok; round++) {
        dpr_depset s = DPR_DEPSET_INIT;
        m.n = 0;
        size_t n = 1 + rnd() % 700;
        for (size_t i = 0; i < n; i++) {
            uint64_t w = pick_key(100000);
            ok = ok && dpr_depset_set(&s, w, 1 + rnd() % 100) == 0;
            model_set(&m, w, dpr_depset_get(&s, w));
        }
        while (ok && m.n) {
            uint64_t w = m.e[rnd() % m.n].worker;
            ok = dpr_depset_remove(&s, w) && dpr_depset_get(&s, w) == 0;
            model_remove(&m, w);
            if (rnd() % 8 == 0)
                ok = ok && same(&s, &m);
        }
        ok = ok && dpr_depset_count(&s) == 0;
        dpr_depset_free(&s);
    }
    CHECK(ok);
}

TEST(copy_max_prune)
{
    static model ma, mb, mc;
    bool ok = true;
    for (int round = 0; round < 300 && ok; round++) {
        dpr_depset a = DPR_DEPSET_INIT, b = DPR_DEPSET_INIT, c = DPR_DEPSET_INIT;
        ma.n = mb.n = mc.n = 0;
        for (int i = 0; i < (int)(rnd() % 300); i++) {
            uint64_t w = pick_key(200), v = 1 + rnd() % 10;
            ok = ok && dpr_depset_set(&a, w, v) == 0;
            model_set(&ma, w, v);
        }
        for (int i = 0; i < (int)(rnd() % 300); i++) {
            uint64_t w = pick_key(200), v = 1 + rnd() % 10;
            ok = ok && dpr_depset_set(&b, w, v) == 0;
            model_set(&mb, w, v);
        }
        /* copy */
        ok = ok && dpr_depset_set(&c, 12345, 1) == 0; /* dropped by the copy */
        ok = ok && dpr_depset_copy(&c, &a) == 0 && same(&c, &ma);
        /* put_max of every entry of b: max per worker */
        size_t it = 0;
        dpr_dep d;
        while (dpr_depset_next(&b, &it, &d))
            ok = ok && dpr_depset_put_max(&a, d.worker, d.version) == 0;
        for (size_t i = 0; i < mb.n; i++)
            model_put_max(&ma, mb.e[i].worker, mb.e[i].version);
        ok = ok && same(&a, &ma) && same(&b, &mb);
        /* prune a by cut b: remove entries at or below b's entry */
        size_t expect_removed = 0;
        mc.n = 0;
        for (size_t i = 0; i < ma.n; i++) {
            if (ma.e[i].version <= model_get(&mb, ma.e[i].worker))
                expect_removed++;
            else
                mc.e[mc.n++] = ma.e[i];
        }
        ok = ok && dpr_depset_prune(&a, &b) == expect_removed && same(&a, &mc);
        dpr_depset_free(&a);
        dpr_depset_free(&b);
        dpr_depset_free(&c);
    }
    CHECK(ok);
}

TEST(prune_everything_and_nothing)
{
    dpr_depset s = DPR_DEPSET_INIT, cut = DPR_DEPSET_INIT;
    for (uint64_t w = 0; w < 5000; w++) {
        CHECK_EQ_INT(dpr_depset_set(&s, w, 10), 0);
        CHECK_EQ_INT(dpr_depset_set(&cut, w, 9), 0);
    }
    CHECK_EQ_U64(dpr_depset_prune(&s, &cut), 0);
    for (uint64_t w = 0; w < 5000; w++)
        CHECK_EQ_INT(dpr_depset_set(&cut, w, 10), 0);
    CHECK_EQ_U64(dpr_depset_prune(&s, &cut), 5000);
    CHECK_EQ_U64(dpr_depset_count(&s), 0);
    dpr_depset empty = DPR_DEPSET_INIT;
    CHECK_EQ_U64(dpr_depset_prune(&empty, &cut), 0);
    dpr_depset_free(&s);
    dpr_depset_free(&cut);
}

TEST(hundred_thousand_workers)
{
    enum { N = 100000 };
    dpr_depset s = DPR_DEPSET_INIT;
    bool ok = true;
    for (uint64_t i = 0; i < N; i++)
        ok = ok && dpr_depset_set(&s, i * 0x9e3779b97f4a7c15ULL, i + 1) == 0;
    ok = ok && dpr_depset_count(&s) == N;
    for (uint64_t i = 0; i < N; i++)
        ok = ok && dpr_depset_get(&s, i * 0x9e3779b97f4a7c15ULL) == i + 1;
    for (uint64_t i = 0; i < N; i += 2)
        ok = ok && dpr_depset_remove(&s, i * 0x9e3779b97f4a7c15ULL);
    ok = ok && dpr_depset_count(&s) == N / 2;
    for (uint64_t i = 0; i < N; i++)
        ok = ok && dpr_depset_get(&s, i * 0x9e3779b97f4a7c15ULL) == (i % 2 ? i + 1 : 0);
    size_t it = 0, seen = 0;
    dpr_dep d;
    while (dpr_depset_next(&s, &it, &d))
        seen++;
    ok = ok && seen == N / 2;
    /* sequential ids too */
    dpr_depset_clear(&s);
    for (uint64_t i = 0; i < N; i++)
        ok = ok && dpr_depset_put_max(&s, i, 1) == 0;
    ok = ok && dpr_depset_count(&s) == N && dpr_depset_get(&s, N - 1) == 1;
    CHECK(ok);
    dpr_depset_free(&s);
}

int main(void)
{
    RUN(basic);
    RUN(random_against_model);
    RUN(removal_with_collisions);
    RUN(copy_max_prune);
    RUN(prune_everything_and_nothing);
    RUN(hundred_thousand_workers);
    return check_summary("depset");
}
