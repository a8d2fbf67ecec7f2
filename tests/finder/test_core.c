/*
 * test_finder.c - the finder core (finder/src/core.c): the exact and minimum
 * rules, restarts with the graph lost, world-lines, bad input, publishing,
 * a brute-force oracle, a randomized cluster with finder restarts, scale.
 */
#include "check.h"

#include "dpr/finder.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* helpers                                                              */

static uint64_t rng;

static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Working cut / durable of one worker (0 when not registered). */
static void working_of(const dpr_finder *f, uint64_t w, uint64_t *cut,
                       uint64_t *durable)
{
    dpr_finder_state st;
    *cut = *durable = 0;
    if (dpr_finder_get_state(f, &st) != 0)
        return;
    for (size_t i = 0; i < st.nworkers; i++) {
        if (st.workers[i].worker == w) {
            *cut = st.workers[i].cut;
            *durable = st.workers[i].durable;
        }
    }
    dpr_finder_state_free(&st);
}

static uint64_t wcut(const dpr_finder *f, uint64_t w)
{
    uint64_t c, d;
    working_of(f, w, &c, &d);
    return c;
}

static uint64_t wdur(const dpr_finder *f, uint64_t w)
{
    uint64_t c, d;
    working_of(f, w, &c, &d);
    return d;
}

static int rep(dpr_finder *f, uint64_t wl, uint64_t w, uint64_t v)
{
    return dpr_finder_report(f, wl, w, v, NULL, 0);
}

static int rep1(dpr_finder *f, uint64_t wl, uint64_t w, uint64_t v,
                uint64_t dw, uint64_t dv)
{
    dpr_dep d = { dw, dv };
    return dpr_finder_report(f, wl, w, v, &d, 1);
}

static int rep2(dpr_finder *f, uint64_t wl, uint64_t w, uint64_t v,
                uint64_t dw1, uint64_t dv1, uint64_t dw2, uint64_t dv2)
{
    dpr_dep d[2] = { { dw1, dv1 }, { dw2, dv2 } };
    return dpr_finder_report(f, wl, w, v, d, 2);
}

static int add(dpr_finder *f, uint64_t w, uint64_t *wl, uint64_t *restore)
{
    uint64_t a, b;
    return dpr_finder_add_worker(f, w, wl ? wl : &a, restore ? restore : &b);
}

/* get_state + publish, as a server with a synchronous store does. */
static int publish_now(dpr_finder *f)
{
    dpr_finder_state st;
    int rc = dpr_finder_get_state(f, &st);
    if (rc < 0)
        return rc;
    rc = dpr_finder_publish(f, st.generation);
    dpr_finder_state_free(&st);
    return rc;
}

static bool state_equal(const dpr_finder_state *a, const dpr_finder_state *b)
{
    if (a->world_line != b->world_line || a->generation != b->generation ||
        a->nworkers != b->nworkers)
        return false;
    return a->nworkers == 0 ||
           memcmp(a->workers, b->workers, a->nworkers * sizeof(*a->workers)) == 0;
}

/* Checks working and published cuts of three workers. */
static void expect3(const dpr_finder *f, const uint64_t id[3], uint64_t a,
                    uint64_t b, uint64_t c, bool published, int line)
{
    uint64_t want[3] = { a, b, c };
    for (int i = 0; i < 3; i++) {
        uint64_t got = published ? dpr_finder_cut_of(f, id[i]) : wcut(f, id[i]);
        if (got != want[i]) {
            fprintf(stderr, "  line %d: %s cut of worker %d is %llu, want %llu\n",
                    line, published ? "published" : "working", i,
                    (unsigned long long)got, (unsigned long long)want[i]);
            check_cur_failed = 1;
        }
    }
}
#define EXPECT3(f, id, a, b, c, pub) expect3(f, id, a, b, c, pub, __LINE__)

/* ------------------------------------------------------------------ */
/* 1. libDPR's sequential graph scenario                                */

TEST(sequential_graph)
{
    dpr_finder *f;
    const uint64_t id[3] = { 0xA, 0xB, 0xC };
    const uint64_t A = id[0], B = id[1], C = id[2];
    uint64_t wl, rs;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK(!dpr_finder_dirty(f));
    CHECK_EQ_U64(dpr_finder_world_line(f), DPR_FINDER_FIRST_WORLD_LINE);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(add(f, id[i], &wl, &rs), 0);
        CHECK_EQ_U64(wl, 1);
        CHECK_EQ_U64(rs, 0);
    }
    CHECK(dpr_finder_dirty(f));
    CHECK_EQ_U64(dpr_finder_worker_count(f), 0); /* not published yet */
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK(!dpr_finder_dirty(f));
    CHECK_EQ_U64(dpr_finder_worker_count(f), 3);

    /* A1 */
    CHECK_EQ_INT(rep(f, 1, A, 1), 0);
    EXPECT3(f, id, 1, 0, 0, false);
    EXPECT3(f, id, 0, 0, 0, true);
    CHECK(dpr_finder_dirty(f));
    CHECK_EQ_INT(publish_now(f), 0);
    EXPECT3(f, id, 1, 0, 0, true);
    CHECK_EQ_U64(dpr_finder_max_version(f), 1);

    /* B1 <- A1 */
    CHECK_EQ_INT(rep1(f, 1, B, 1, A, 1), 0);
    EXPECT3(f, id, 1, 1, 0, false);
    EXPECT3(f, id, 1, 0, 0, true);
    CHECK_EQ_INT(publish_now(f), 0);
    EXPECT3(f, id, 1, 1, 0, true);

    /* A2 <- {A1, B2}: B2 is not durable */
    CHECK_EQ_INT(rep2(f, 1, A, 2, A, 1, B, 2), 0);
    EXPECT3(f, id, 1, 1, 0, false);
    CHECK(dpr_finder_dirty(f)); /* durable[A] changed */
    CHECK_EQ_INT(publish_now(f), 0);
    EXPECT3(f, id, 1, 1, 0, true);
    CHECK_EQ_U64(dpr_finder_max_version(f), 2);

    /* B2 <- {B1, C2}: C2 is not durable */
    CHECK_EQ_INT(rep2(f, 1, B, 2, B, 1, C, 2), 0);
    EXPECT3(f, id, 1, 1, 0, false);
    CHECK_EQ_INT(publish_now(f), 0);
    EXPECT3(f, id, 1, 1, 0, true);

    /* C2 <- A2: the cycle A2 -> B2 -> C2 -> A2 is durable */
    CHECK_EQ_INT(rep1(f, 1, C, 2, A, 2), 0);
    EXPECT3(f, id, 2, 2, 2, false);
    EXPECT3(f, id, 1, 1, 0, true);
    CHECK_EQ_INT(publish_now(f), 0);
    EXPECT3(f, id, 2, 2, 2, true);
    CHECK_EQ_U64(dpr_depset_count(dpr_finder_cut(f)), 3);
    dpr_finder_free(f);
}

/* The sequential scenario with B's and C's roles made sparse: a dependency
 * on a version that was never reported is met by the next checkpoint. */
TEST(sparse_versions)
{
    dpr_finder *f;
    const uint64_t id[3] = { 1, 2, 3 };
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(add(f, id[i], NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, 1, 3), 0);           /* A3 */
    CHECK_EQ_INT(rep1(f, 1, 2, 5, 1, 5), 0);    /* B5 <- A5 (A has 3 only) */
    EXPECT3(f, id, 3, 0, 0, false);
    CHECK_EQ_INT(rep1(f, 1, 1, 7, 2, 5), 0);    /* A7 <- B5: A5 lies in A7 */
    EXPECT3(f, id, 7, 5, 0, false);
    CHECK_EQ_INT(rep(f, 1, 3, 6), 0);           /* C6: V = 5 */
    EXPECT3(f, id, 7, 5, 6, false);
    dpr_finder_free(f);
}

/* A blocker above the blocked worker's oldest version: the minimum rule can
 * overtake that version, and the worker must then go on. */
TEST(min_rule_overtakes_blocked)
{
    dpr_finder *f;
    const uint64_t W = 1, Z = 2, U = 3, X = 4;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add(f, W, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, Z, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, U, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, X, NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, U, 6), 0);
    CHECK_EQ_INT(rep(f, 1, Z, 3), 0);
    CHECK_EQ_INT(rep1(f, 1, Z, 9, U, 9), 0);     /* Z9 waits for U9 */
    CHECK_EQ_INT(rep1(f, 1, W, 5, Z, 5), 0);     /* W5 needs Z9, so U9 */
    CHECK_EQ_U64(wcut(f, W), 0);
    CHECK_EQ_INT(rep(f, 1, X, 5), 0);            /* V = 5: W5 commits */
    CHECK_EQ_U64(wcut(f, W), 5);
    CHECK_EQ_INT(rep(f, 1, W, 6), 0);            /* exact rule: W6 */
    CHECK_EQ_U64(wcut(f, W), 6);
    CHECK_EQ_U64(wcut(f, Z), 5);                 /* V; Z9 still waits */
    CHECK_EQ_INT(rep(f, 1, U, 9), 0);
    CHECK_EQ_U64(wcut(f, Z), 9);
    CHECK_EQ_U64(wcut(f, U), 9);
    dpr_finder_free(f);
}

/* ------------------------------------------------------------------ */
/* 2. restart from stored state with the graph lost                     */

TEST(restart_graph_lost)
{
    dpr_finder *f, *g;
    const uint64_t id[3] = { 100, 200, 300 };
    const uint64_t A = id[0], B = id[1], C = id[2];
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(add(f, id[i], NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, A, 1), 0);
    CHECK_EQ_INT(rep(f, 1, A, 2), 0);
    CHECK_EQ_INT(rep1(f, 1, B, 1, A, 1), 0);
    CHECK_EQ_INT(rep1(f, 1, B, 2, C, 2), 0);  /* waits for C2 */
    CHECK_EQ_INT(rep1(f, 1, A, 3, B, 2), 0);  /* waits for B2 */
    CHECK_EQ_INT(rep(f, 1, C, 1), 0);
    EXPECT3(f, id, 2, 1, 1, false);

    dpr_finder_state st;
    CHECK_EQ_INT(dpr_finder_get_state(f, &st), 0);
    CHECK_EQ_U64(st.nworkers, 3);
    CHECK_EQ_U64(st.workers[0].worker, A); /* sorted by id */
    CHECK_EQ_U64(st.workers[0].durable, 3);
    CHECK_EQ_U64(st.workers[1].durable, 2);
    CHECK_EQ_INT(dpr_finder_publish(f, st.generation), 0);
    CHECK_EQ_INT(dpr_finder_restore(&st, &g), 0);

    /* restored: published == working, not dirty */
    CHECK(!dpr_finder_dirty(g));
    EXPECT3(g, id, 2, 1, 1, true);
    EXPECT3(g, id, 2, 1, 1, false);
    CHECK_EQ_U64(dpr_finder_world_line(g), 1);
    CHECK_EQ_U64(dpr_finder_max_version(g), 3);
    CHECK(dpr_finder_has_worker(g, B));
    CHECK_EQ_U64(dpr_finder_worker_count(g), 3);
    dpr_finder_state st2;
    CHECK_EQ_INT(dpr_finder_get_state(g, &st2), 0);
    CHECK(state_equal(&st, &st2));
    dpr_finder_state_free(&st2);

    /* resends at or below the stored durable versions are duplicates */
    CHECK_EQ_INT(rep1(g, 1, A, 3, B, 2), 0);
    CHECK_EQ_INT(rep1(g, 1, B, 2, C, 2), 0);
    CHECK(!dpr_finder_dirty(g));

    /* C2: the original commits B2 and A3 through the graph; the restored
     * finder lost it, so only the minimum rule (V = 2) moves A and B */
    CHECK_EQ_INT(rep(f, 1, C, 2), 0);
    EXPECT3(f, id, 3, 2, 2, false);
    CHECK_EQ_INT(rep(g, 1, C, 2), 0);
    EXPECT3(g, id, 2, 2, 2, false);

    /* above the stored durable versions the graph is rebuilt ... */
    CHECK_EQ_INT(rep(g, 1, B, 3), 0);
    EXPECT3(g, id, 2, 3, 2, false);          /* exact rule: B3 */
    /* ... but A4 needs A3, which is in A's lost region */
    CHECK_EQ_INT(rep(g, 1, A, 4), 0);
    EXPECT3(g, id, 2, 3, 2, false);
    /* C3: V = 3 covers A3, and A4 follows through the exact rule */
    CHECK_EQ_INT(rep(g, 1, C, 3), 0);
    EXPECT3(g, id, 4, 3, 3, false);
    /* exact rule above the minimum: B4 <- A4 while V = 3 */
    CHECK_EQ_INT(rep1(g, 1, B, 4, A, 4), 0);
    EXPECT3(g, id, 4, 4, 3, false);
    CHECK_EQ_INT(rep2(g, 1, C, 5, A, 4, B, 5), 0); /* waits for B5 */
    EXPECT3(g, id, 4, 4, 4, false);          /* V = 4 */
    CHECK_EQ_INT(rep1(g, 1, B, 5, C, 5), 0);
    EXPECT3(g, id, 4, 5, 5, false);
    EXPECT3(g, id, 2, 1, 1, true);           /* nothing published yet */
    CHECK_EQ_INT(publish_now(g), 0);
    EXPECT3(g, id, 4, 5, 5, true);

    /* inconsistent stored state */
    dpr_finder *h = NULL;
    st.workers[1].cut = st.workers[1].durable + 1;
    CHECK_EQ_INT(dpr_finder_restore(&st, &h), -EINVAL);
    st.workers[1].cut = 0;
    st.workers[2].worker = st.workers[0].worker;
    CHECK_EQ_INT(dpr_finder_restore(&st, &h), -EINVAL);
    st.workers[2].worker = C;
    st.world_line = 0;
    CHECK_EQ_INT(dpr_finder_restore(&st, &h), -EINVAL);
    CHECK(h == NULL);
    dpr_finder_state_free(&st);

    /* an empty stored state */
    dpr_finder_state empty = { .world_line = 7, .generation = 42 };
    CHECK_EQ_INT(dpr_finder_restore(&empty, &h), 0);
    CHECK_EQ_U64(dpr_finder_world_line(h), 7);
    CHECK(!dpr_finder_dirty(h));
    dpr_finder_free(h);
    dpr_finder_free(f);
    dpr_finder_free(g);
}

/* ------------------------------------------------------------------ */
/* 3. world-lines                                                       */

TEST(world_lines)
{
    dpr_finder *f;
    const uint64_t A = 1, B = 2;
    uint64_t wl, rs;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add(f, A, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, B, NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, A, 1), 0);
    CHECK_EQ_INT(rep(f, 1, A, 2), 0);
    CHECK_EQ_INT(rep(f, 1, A, 3), 0);
    CHECK_EQ_INT(rep1(f, 1, B, 1, A, 1), 0);
    CHECK_EQ_INT(rep1(f, 1, B, 2, A, 2), 0);
    CHECK_EQ_INT(rep1(f, 1, B, 4, A, 4), 0);  /* A4 is not durable */
    CHECK_EQ_U64(wcut(f, A), 3);
    CHECK_EQ_U64(wcut(f, B), 3);              /* minimum rule: V = 3 */
    CHECK_EQ_U64(wdur(f, B), 4);
    CHECK_EQ_INT(publish_now(f), 0);

    /* A crashed and registers again */
    uint64_t gen = 0;
    {
        dpr_finder_state st;
        CHECK_EQ_INT(dpr_finder_get_state(f, &st), 0);
        gen = st.generation;
        dpr_finder_state_free(&st);
    }
    CHECK_EQ_INT(add(f, A, &wl, &rs), 0);
    CHECK_EQ_U64(wl, 2);
    CHECK_EQ_U64(rs, 3);
    CHECK(dpr_finder_dirty(f));
    CHECK_EQ_U64(dpr_finder_world_line(f), 1); /* not durable yet */
    {
        dpr_finder_state st;
        CHECK_EQ_INT(dpr_finder_get_state(f, &st), 0);
        CHECK(st.generation > gen);
        CHECK_EQ_U64(st.world_line, 2);
        dpr_finder_state_free(&st);
    }
    CHECK_EQ_U64(wcut(f, A), 3);
    CHECK_EQ_U64(wcut(f, B), 3);
    CHECK_EQ_U64(wdur(f, B), 3);              /* B4 is lost */
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_U64(dpr_finder_world_line(f), 2);
    /* B4 was seen: the max version is not lowered by the rollback */
    CHECK_EQ_U64(dpr_finder_max_version(f), 4);

    /* reports from world-line 1: harmless at or below the cut, else dropped */
    dpr_finder_state before, after;
    CHECK_EQ_INT(dpr_finder_get_state(f, &before), 0);
    CHECK_EQ_INT(rep1(f, 1, B, 4, A, 4), -ESTALE);
    CHECK_EQ_INT(rep(f, 1, A, 4), -ESTALE);
    CHECK_EQ_INT(rep1(f, 1, B, 2, A, 2), 0);
    CHECK_EQ_INT(rep(f, 1, B, 3), 0);
    CHECK_EQ_INT(rep(f, 1, A, 1), 0);
    CHECK_EQ_INT(rep(f, 3, A, 5), -EINVAL);   /* a future world-line */
    CHECK_EQ_INT(dpr_finder_get_state(f, &after), 0);
    CHECK(state_equal(&before, &after));
    CHECK(!dpr_finder_dirty(f));
    dpr_finder_state_free(&before);
    dpr_finder_state_free(&after);

    /* world-line 2 reuses version numbers above the cut */
    CHECK_EQ_INT(rep1(f, 2, B, 4, A, 4), 0);  /* waits for the new A4 */
    CHECK_EQ_U64(wcut(f, B), 3);
    CHECK_EQ_INT(rep(f, 2, A, 4), 0);
    CHECK_EQ_U64(wcut(f, A), 4);
    CHECK_EQ_U64(wcut(f, B), 4);
    CHECK_EQ_INT(rep(f, 2, A, 4), 0);         /* a resend */
    CHECK_EQ_INT(rep1(f, 2, B, 6, A, 6), 0);  /* waits for A6 */

    /* B crashes: world-line 3; it restores its cut, B6 is lost */
    CHECK_EQ_INT(add(f, B, &wl, &rs), 0);
    CHECK_EQ_U64(wl, 3);
    CHECK_EQ_U64(rs, 4);
    CHECK_EQ_U64(wdur(f, B), 4);
    CHECK_EQ_INT(rep(f, 2, A, 6), -ESTALE);
    CHECK_EQ_INT(rep(f, 3, A, 6), 0);         /* does not commit a lost B6 */
    CHECK_EQ_U64(wcut(f, A), 6);
    CHECK_EQ_U64(wcut(f, B), 4);
    CHECK_EQ_INT(rep(f, 3, B, 5), 0);
    CHECK_EQ_U64(wcut(f, B), 5);
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_U64(dpr_finder_world_line(f), 3);
    CHECK_EQ_U64(dpr_finder_cut_of(f, A), 6);
    CHECK_EQ_U64(dpr_finder_cut_of(f, B), 5);
    dpr_finder_free(f);
}

/* ------------------------------------------------------------------ */
/* 4. bad input changes nothing                                         */

TEST(bad_input)
{
    dpr_finder *f;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add(f, 1, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, 2, NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, 1, 1), 0);
    CHECK_EQ_INT(rep1(f, 1, 2, 2, 1, 2), 0); /* waits for 1:2 */
    CHECK_EQ_INT(publish_now(f), 0);

    dpr_finder_state before, after;
    CHECK_EQ_INT(dpr_finder_get_state(f, &before), 0);
    dpr_dep fwd[2] = { { 1, 1 }, { 1, 4 } };
    CHECK_EQ_INT(dpr_finder_report(f, 1, 1, 3, fwd, 2), -EINVAL);  /* forward */
    CHECK_EQ_INT(rep1(f, 1, 1, 3, 1, 9), -EINVAL);     /* forward on itself */
    CHECK_EQ_INT(rep(f, 1, 1, 0), -EINVAL);            /* version 0 */
    CHECK_EQ_INT(rep(f, 2, 1, 2), -EINVAL);            /* future world-line */
    CHECK_EQ_INT(rep(f, 0, 1, 2), -EINVAL);            /* world-line 0 */
    CHECK_EQ_INT(rep(f, 1, 99, 2), -ENOENT);           /* unknown worker */
    CHECK_EQ_INT(dpr_finder_report(f, 1, 1, 2, NULL, 3), -EINVAL);
    CHECK_EQ_INT(dpr_finder_remove_worker(f, 99), -ENOENT);
    CHECK_EQ_INT(rep(f, 1, 1, 1), 0);                  /* a resend */
    CHECK_EQ_INT(dpr_finder_get_state(f, &after), 0);
    CHECK(state_equal(&before, &after));
    CHECK(!dpr_finder_dirty(f));
    CHECK_EQ_U64(dpr_finder_cut_of(f, 1), 1);
    CHECK(!dpr_finder_has_worker(f, 99));
    dpr_finder_state_free(&after);

    /* the rejected ones had no effect on the algorithm either */
    CHECK_EQ_INT(rep(f, 1, 1, 2), 0);
    CHECK_EQ_U64(wcut(f, 1), 2);
    CHECK_EQ_U64(wcut(f, 2), 2);
    dpr_finder_state_free(&before);

    /* dependencies with version 0 and on itself are ignored; one on a worker
     * that never registered is refused (issue 8: it held the cut back while
     * any worker was idle), changing nothing */
    dpr_dep odd[3] = { { 7, 0 }, { 1, 3 }, { 12345, 2 } };
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_INT(dpr_finder_get_state(f, &before), 0);
    CHECK_EQ_INT(dpr_finder_report(f, 1, 1, 3, odd, 3), -ENXIO);
    CHECK_EQ_INT(rep1(f, 1, 1, 3, 999, 3), -ENXIO);
    CHECK(!dpr_finder_knows_worker(f, 12345) && !dpr_finder_knows_worker(f, 999));
    CHECK_EQ_INT(dpr_finder_get_state(f, &after), 0);
    CHECK(state_equal(&before, &after));
    CHECK(!dpr_finder_dirty(f));
    dpr_finder_state_free(&before);
    dpr_finder_state_free(&after);
    dpr_dep even[2] = { { 7, 0 }, { 1, 3 } };
    CHECK_EQ_INT(dpr_finder_report(f, 1, 1, 3, even, 2), 0);
    CHECK_EQ_U64(wcut(f, 1), 3);        /* no dependencies left: the exact rule */
    CHECK_EQ_INT(add(f, 12345, NULL, NULL), 0);
    CHECK(dpr_finder_knows_worker(f, 12345));
    CHECK_EQ_INT(rep1(f, 1, 1, 4, 12345, 2), 0);
    CHECK_EQ_U64(wcut(f, 1), 3);        /* waits for 12345:2 */
    CHECK_EQ_INT(rep(f, 1, 12345, 2), 0);
    CHECK_EQ_U64(wcut(f, 1), 4);

    CHECK_EQ_INT(dpr_finder_new(NULL), -EINVAL);
    CHECK_EQ_INT(dpr_finder_restore(NULL, &f), -EINVAL);
    dpr_finder_free(NULL);
    dpr_finder_free(f);
}

/* ------------------------------------------------------------------ */
/* membership and publishing                                            */

TEST(remove_worker)
{
    dpr_finder *f;
    const uint64_t A = 1, B = 2, C = 3;
    uint64_t wl, rs;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add(f, A, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, B, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, C, NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, C, 1), 0);
    CHECK_EQ_INT(rep(f, 1, C, 2), 0);
    CHECK_EQ_U64(wcut(f, C), 2);
    CHECK_EQ_INT(rep1(f, 1, A, 3, C, 3), 0);  /* waits for C3 */
    CHECK_EQ_INT(dpr_finder_remove_worker(f, C), 0);
    CHECK(!dpr_finder_has_worker(f, C));
    CHECK_EQ_INT(dpr_finder_remove_worker(f, C), -ENOENT);
    CHECK_EQ_INT(rep(f, 1, C, 3), -ENOENT);
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_U64(dpr_finder_worker_count(f), 2);
    CHECK_EQ_U64(dpr_finder_cut_of(f, C), 0);
    dpr_finder_state st;
    CHECK_EQ_INT(dpr_finder_get_state(f, &st), 0);
    CHECK_EQ_U64(st.nworkers, 2);
    dpr_finder_state_free(&st);

    /* at or below C's final cut: met; above: never through the graph */
    CHECK_EQ_INT(rep1(f, 1, B, 2, C, 2), 0);
    CHECK_EQ_U64(wcut(f, B), 2);
    CHECK_EQ_U64(wcut(f, A), 2);              /* V = 2; A3 waits for C3 */
    /* only the minimum rule, which no longer counts C, passes over A3
     * (hence: remove a worker only once its last checkpoint is committed) */
    CHECK_EQ_INT(rep(f, 1, B, 3), 0);
    CHECK_EQ_U64(wcut(f, A), 3);
    CHECK_EQ_INT(rep1(f, 1, A, 4, C, 4), 0);
    CHECK_EQ_INT(rep(f, 1, B, 5), 0);
    CHECK_EQ_U64(wcut(f, A), 4);              /* V */
    CHECK_EQ_INT(rep(f, 1, A, 5), 0);
    CHECK_EQ_INT(rep1(f, 1, A, 3 + 4, C, 7), 0);
    CHECK_EQ_INT(rep(f, 1, B, 6), 0);
    CHECK_EQ_U64(wcut(f, A), 6);              /* V; A7 waits for C */
    /* C comes back: it resumes at its final cut, same world-line */
    CHECK_EQ_INT(add(f, C, &wl, &rs), 0);
    CHECK_EQ_U64(wl, 1);
    CHECK_EQ_U64(rs, 2);
    CHECK_EQ_INT(rep(f, 1, C, 7), 0);
    CHECK_EQ_U64(wcut(f, C), 7);
    CHECK_EQ_U64(wcut(f, A), 7);

    CHECK_EQ_INT(dpr_finder_remove_worker(f, C), 0);
    CHECK_EQ_INT(rep(f, 1, B, 8), 0);
    CHECK_EQ_INT(rep(f, 1, A, 8), 0);
    CHECK_EQ_U64(wcut(f, A), 8);
    CHECK_EQ_U64(wcut(f, B), 8);
    CHECK_EQ_INT(dpr_finder_remove_worker(f, A), 0);
    CHECK_EQ_INT(dpr_finder_remove_worker(f, B), 0);
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_U64(dpr_finder_worker_count(f), 0);
    CHECK_EQ_U64(dpr_depset_count(dpr_finder_cut(f)), 0);
    /* a worker joining later does not get the old minimum */
    CHECK_EQ_INT(add(f, 9, &wl, &rs), 0);
    CHECK_EQ_U64(rs, 0);
    CHECK_EQ_U64(wcut(f, 9), 0);
    dpr_finder_free(f);
}

/* Every world-line that ends leaves its prefix (the cut the cluster rolled
 * back to), visible once published, kept across restore, forgotten after
 * DPR_FINDER_MAX_PREFIXES newer ones. */
TEST(world_line_prefixes)
{
    dpr_finder *f, *g;
    const dpr_dep *cut;
    size_t n;
    uint64_t wl, rs;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add(f, 1, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, 2, NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, 1, 3), 0);
    CHECK_EQ_INT(rep(f, 1, 2, 2), 0);         /* cut (3, 2): no dependencies */
    CHECK_EQ_INT(dpr_finder_prefix_cut(f, 1, &cut, &n), -ENOENT);
    CHECK_EQ_INT(add(f, 2, &wl, &rs), 0);     /* crash restart of 2 */
    CHECK_EQ_U64(wl, 2);
    CHECK_EQ_U64(rs, 2);
    /* not published yet: world-line 1 has not ended for the outside */
    CHECK_EQ_INT(dpr_finder_prefix_cut(f, 1, &cut, &n), -ENOENT);
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_INT(dpr_finder_prefix_cut(f, 1, &cut, &n), 0);
    CHECK_EQ_U64(n, 2);
    CHECK(n == 2 && cut[0].worker == 1 && cut[0].version == 3);
    CHECK(n == 2 && cut[1].worker == 2 && cut[1].version == 2);
    CHECK_EQ_INT(dpr_finder_prefix_cut(f, 2, &cut, &n), -ENOENT);
    CHECK_EQ_INT(dpr_finder_prefix_cut(f, 0, &cut, &n), -ENOENT);
    /* the new world-line moves on; the old prefix stays as it was */
    CHECK_EQ_INT(rep(f, 2, 1, 5), 0);
    CHECK_EQ_INT(rep(f, 2, 2, 5), 0);
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_U64(dpr_finder_cut_of(f, 1), 5);
    CHECK_EQ_INT(dpr_finder_prefix_cut(f, 1, &cut, &n), 0);
    CHECK(n == 2 && cut[0].version == 3 && cut[1].version == 2);

    /* survives a restart */
    dpr_finder_state st;
    CHECK_EQ_INT(dpr_finder_get_state(f, &st), 0);
    CHECK_EQ_U64(st.nprefixes, 1);
    CHECK_EQ_INT(dpr_finder_restore(&st, &g), 0);
    CHECK_EQ_INT(dpr_finder_prefix_cut(g, 1, &cut, &n), 0);
    CHECK(n == 2 && cut[0].version == 3 && cut[1].version == 2);
    /* inconsistent stored prefixes are refused */
    st.prefixes[0].world_line = st.world_line;
    dpr_finder *bad = NULL;
    CHECK_EQ_INT(dpr_finder_restore(&st, &bad), -EINVAL);
    CHECK(bad == NULL);
    dpr_finder_state_free(&st);
    dpr_finder_free(g);

    /* only the newest DPR_FINDER_MAX_PREFIXES are kept */
    for (int i = 0; i < DPR_FINDER_MAX_PREFIXES + 2; i++)
        CHECK_EQ_INT(add(f, 1, NULL, NULL), 0);
    CHECK_EQ_INT(publish_now(f), 0);
    uint64_t now = dpr_finder_world_line(f);
    CHECK_EQ_U64(now, 2 + DPR_FINDER_MAX_PREFIXES + 2);
    CHECK_EQ_INT(dpr_finder_prefix_cut(f, now - 1, &cut, &n), 0);
    CHECK_EQ_INT(dpr_finder_prefix_cut(f, now - DPR_FINDER_MAX_PREFIXES, &cut, &n), 0);
    CHECK_EQ_INT(dpr_finder_prefix_cut(f, now - DPR_FINDER_MAX_PREFIXES - 1, &cut, &n),
                 -ESRCH);
    CHECK_EQ_INT(dpr_finder_prefix_cut(f, 1, &cut, &n), -ESRCH);
    dpr_finder_free(f);
}

/* A worker whose reported checkpoint is not committed cannot leave: the
 * minimum rule would otherwise commit what depends on it. */
TEST(remove_uncommitted_refused)
{
    dpr_finder *f;
    const uint64_t A = 1, B = 2;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add(f, A, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, B, NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, A, 1), 0);
    CHECK_EQ_INT(rep1(f, 1, A, 2, B, 2), 0);  /* A2 waits for B2 */
    CHECK_EQ_U64(wcut(f, A), 1);              /* A1 commits, A2 cannot */
    dpr_finder_state before, after;
    CHECK_EQ_INT(dpr_finder_get_state(f, &before), 0);
    CHECK_EQ_INT(dpr_finder_remove_worker(f, A), -EBUSY);
    CHECK(dpr_finder_has_worker(f, A));
    CHECK_EQ_INT(dpr_finder_get_state(f, &after), 0);
    CHECK_EQ_U64(after.generation, before.generation);
    CHECK_EQ_U64(after.nworkers, 2);
    dpr_finder_state_free(&before);
    dpr_finder_state_free(&after);
    CHECK_EQ_INT(rep(f, 1, B, 2), 0);         /* commits A2 and B2 */
    CHECK_EQ_U64(wcut(f, A), 2);
    CHECK_EQ_INT(dpr_finder_remove_worker(f, A), 0);
    dpr_finder_free(f);
}

/* Workers blocked on non-members: retried when that id joins, and when the
 * minimum rule passes the blocked version. */
TEST(blocked_on_non_members)
{
    dpr_finder *f;
    const uint64_t A = 1, B = 2, C = 3, G = 77;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add(f, A, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, B, NULL, NULL), 0);
    /* G never registered: a report depending on it is refused (it would wait
     * until every member reports past it); once G joins it is accepted and
     * waits for G while B holds V at 0 */
    CHECK_EQ_INT(rep1(f, 1, A, 1, G, 1), -ENXIO);
    CHECK_EQ_U64(wdur(f, A), 0);
    CHECK_EQ_INT(add(f, G, NULL, NULL), 0);
    CHECK_EQ_INT(rep1(f, 1, A, 1, G, 1), 0);
    CHECK_EQ_U64(wcut(f, A), 0);
    CHECK_EQ_INT(rep(f, 1, G, 1), 0);
    CHECK_EQ_U64(wcut(f, A), 1);
    CHECK_EQ_U64(wcut(f, B), 0);
    dpr_finder_free(f);

    /* a refused report leaves no trace: the next one commits as usual */
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add(f, A, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, B, NULL, NULL), 0);
    CHECK_EQ_INT(rep1(f, 1, A, 1, G, 1), -ENXIO);
    CHECK_EQ_INT(rep(f, 1, B, 1), 0);
    CHECK_EQ_U64(wcut(f, A), 0);              /* V = 0: A reported nothing */
    CHECK_EQ_INT(rep(f, 1, A, 2), 0);
    CHECK_EQ_U64(wcut(f, A), 2);              /* exact rule */
    dpr_finder_free(f);

    /* the same when the blocker is removed while A waits on it */
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add(f, A, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, B, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, C, NULL, NULL), 0);
    CHECK_EQ_INT(rep1(f, 1, A, 1, C, 1), 0);  /* waits for C1 */
    CHECK_EQ_INT(dpr_finder_remove_worker(f, C), 0);
    CHECK_EQ_INT(rep(f, 1, B, 1), 0);
    CHECK_EQ_U64(wcut(f, A), 1);              /* V = 1 */
    CHECK_EQ_INT(rep(f, 1, A, 2), 0);
    CHECK_EQ_U64(wcut(f, A), 2);
    dpr_finder_free(f);
}

/* What DPR.SYNC shows (dpr_finder_sync_view): every registered worker,
 * sorted, 0 for those with nothing committed (issue 8: a shard must tell a
 * worker that just registered from one that does not exist), and a max
 * version that a rollback does not lower. */
TEST(sync_view)
{
    dpr_finder *f;
    dpr_dep *cut = NULL;
    size_t n = 99;
    uint64_t wl = 0, maxv = 99;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(dpr_finder_sync_view(f, &wl, &maxv, &cut, &n), 0);
    CHECK(cut == NULL && n == 0 && wl == 1 && maxv == 0);
    CHECK_EQ_INT(add(f, 30, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, 10, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, 20, NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, 20, 5), 0);
    CHECK_EQ_INT(rep(f, 1, 30, 2), 0);
    CHECK_EQ_INT(dpr_finder_sync_view(f, &wl, &maxv, &cut, &n), 0);
    CHECK(dpr_finder_dirty(f)); /* the working state: the caller holds the reply */
    CHECK_EQ_U64(n, 3);
    CHECK_EQ_U64(maxv, 5);
    if (n == 3) {
        CHECK(cut[0].worker == 10 && cut[0].version == 0);
        CHECK(cut[1].worker == 20 && cut[1].version == 5);
        CHECK(cut[2].worker == 30 && cut[2].version == 2);
    }
    free(cut);
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_U64(dpr_finder_max_version(f), 5);
    /* 30 restarts: a new world-line, 20 falls back to its cut (0: V = 0
     * with 10 at 0, and 20 has nothing committed), yet the max stays */
    CHECK_EQ_INT(add(f, 30, &wl, NULL), 0);
    CHECK_EQ_U64(wl, 2);
    CHECK_EQ_U64(wdur(f, 20), wcut(f, 20));
    CHECK_EQ_INT(dpr_finder_sync_view(f, &wl, &maxv, &cut, &n), 0);
    CHECK_EQ_U64(wl, 2);
    CHECK_EQ_U64(maxv, 5);
    free(cut);
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_U64(dpr_finder_max_version(f), 5);
    /* a removed worker is not listed */
    CHECK_EQ_INT(dpr_finder_remove_worker(f, 10), 0);
    CHECK_EQ_INT(dpr_finder_sync_view(f, &wl, &maxv, &cut, &n), 0);
    CHECK_EQ_U64(n, 2);
    if (n == 2)
        CHECK(cut[0].worker == 20 && cut[1].worker == 30);
    free(cut);
    CHECK(dpr_finder_knows_worker(f, 10)); /* dependencies on it stay allowed */
    CHECK(!dpr_finder_has_worker(f, 10));
    CHECK_EQ_INT(dpr_finder_sync_view(f, NULL, &maxv, &cut, &n), -EINVAL);
    dpr_finder_free(f);
}

/* A worker added later starts at 0 and lowers V; the others keep theirs. */
TEST(join_keeps_cut)
{
    dpr_finder *f;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add(f, 1, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, 2, NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, 1, 4), 0);
    CHECK_EQ_INT(rep1(f, 1, 2, 4, 1, 6 - 2), 0);
    CHECK_EQ_INT(rep1(f, 1, 2, 6, 1, 6), 0);  /* waits for 1:6 */
    CHECK_EQ_U64(wcut(f, 2), 4);
    CHECK_EQ_INT(rep(f, 1, 1, 5), 0);
    CHECK_EQ_U64(wcut(f, 2), 5);              /* V = 5 */
    CHECK_EQ_INT(add(f, 3, NULL, NULL), 0);   /* V drops to 0 */
    CHECK_EQ_U64(wcut(f, 1), 5);
    CHECK_EQ_U64(wcut(f, 2), 5);
    CHECK_EQ_U64(wcut(f, 3), 0);
    CHECK_EQ_INT(rep(f, 1, 3, 2), 0);
    CHECK_EQ_INT(add(f, 4, NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, 4, 3), 0);
    CHECK_EQ_U64(wcut(f, 2), 5);
    CHECK_EQ_U64(wcut(f, 3), 2);              /* V = 2 */
    CHECK_EQ_INT(rep(f, 1, 1, 6), 0);         /* the graph commits 2:6 */
    CHECK_EQ_U64(wcut(f, 2), 6);
    CHECK_EQ_INT(rep(f, 1, 3, 9), 0);
    CHECK_EQ_INT(rep(f, 1, 4, 9), 0);
    CHECK_EQ_U64(wcut(f, 1), 6);              /* V = 6 */
    CHECK_EQ_U64(wcut(f, 3), 9);
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_U64(dpr_finder_cut_of(f, 2), 6);
    dpr_finder_free(f);
}

TEST(publish_rules)
{
    dpr_finder *f;
    dpr_finder_state s1, s2;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add(f, 1, NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, 1, 1), 0);
    CHECK_EQ_INT(dpr_finder_get_state(f, &s1), 0);
    CHECK_EQ_INT(rep(f, 1, 1, 2), 0);
    CHECK_EQ_INT(dpr_finder_get_state(f, &s2), 0);
    CHECK(s2.generation > s1.generation);
    /* the working state moved on: generation s1 cannot be published as is */
    CHECK_EQ_INT(dpr_finder_publish(f, s1.generation), -ESTALE);
    CHECK_EQ_U64(dpr_finder_cut_of(f, 1), 0);
    /* the saved copy can */
    CHECK_EQ_INT(dpr_finder_publish_state(f, &s1), 0);
    CHECK_EQ_U64(dpr_finder_cut_of(f, 1), 1);
    CHECK(dpr_finder_dirty(f));
    CHECK_EQ_INT(dpr_finder_publish(f, s2.generation), 0);
    CHECK_EQ_U64(dpr_finder_cut_of(f, 1), 2);
    CHECK(!dpr_finder_dirty(f));
    /* older than published: ignored */
    CHECK_EQ_INT(dpr_finder_publish_state(f, &s1), 0);
    CHECK_EQ_INT(dpr_finder_publish(f, s1.generation), 0);
    CHECK_EQ_U64(dpr_finder_cut_of(f, 1), 2);
    s1.generation = s2.generation + 5;
    CHECK_EQ_INT(dpr_finder_publish_state(f, &s1), -EINVAL);
    CHECK_EQ_U64(dpr_finder_cut_of(f, 1), 2);
    dpr_finder_state_free(&s1);
    dpr_finder_state_free(&s2);
    dpr_finder_free(f);
}

/* get_state lists the members sorted by id, also after joins and removals. */
static bool state_sorted_has(const dpr_finder *f, const uint64_t *ids, size_t n)
{
    dpr_finder_state st;
    bool ok = dpr_finder_get_state(f, &st) == 0 && st.nworkers == n;
    for (size_t i = 0; ok && i < n; i++) {
        if (i > 0 && st.workers[i - 1].worker >= st.workers[i].worker)
            ok = false;
        bool found = false;
        for (size_t j = 0; j < n; j++)
            found |= st.workers[i].worker == ids[j];
        ok = ok && found && st.workers[i].cut == wcut(f, st.workers[i].worker);
    }
    dpr_finder_state_free(&st);
    return ok;
}

TEST(state_order)
{
    dpr_finder *f;
    uint64_t ids[40];
    size_t n = 0;
    rng = 5;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    for (int round = 0; round < 200; round++) {
        uint64_t r = below(10);
        if (r < 4 || n == 0) {
            if (n < 40) {
                ids[n] = rnd();
                CHECK_EQ_INT(add(f, ids[n], NULL, NULL), 0);
                n++;
            }
        } else if (r < 6) {
            size_t k = (size_t)below(n);
            int rc = dpr_finder_remove_worker(f, ids[k]);
            /* -EBUSY: its newest checkpoint is not committed yet */
            CHECK(rc == 0 || (rc == -EBUSY && wdur(f, ids[k]) > wcut(f, ids[k])));
            if (rc == 0)
                ids[k] = ids[--n];
        } else {
            size_t k = (size_t)below(n);
            CHECK_EQ_INT(rep(f, 1, ids[k], wdur(f, ids[k]) + 1), 0);
        }
        if (below(3) == 0) { /* several changes between two copies */
            CHECK(state_sorted_has(f, ids, n));
            CHECK(state_sorted_has(f, ids, n)); /* from the cached order */
        }
        if (round % 10 == 0) {
            CHECK_EQ_INT(publish_now(f), 0);
            size_t in_cut = 0;
            for (size_t k = 0; k < n; k++) {
                in_cut += wcut(f, ids[k]) > 0;
                CHECK_EQ_U64(dpr_finder_cut_of(f, ids[k]), wcut(f, ids[k]));
            }
            /* removed workers are gone from the published cut */
            CHECK_EQ_U64(dpr_depset_count(dpr_finder_cut(f)), in_cut);
        }
    }
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_U64(dpr_finder_worker_count(f), n);
    /* a removal alone between two publishes */
    CHECK_EQ_INT(add(f, 4242, NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, 4242, 1), 0);
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_U64(dpr_finder_cut_of(f, 4242), 1);
    CHECK_EQ_INT(dpr_finder_remove_worker(f, 4242), 0);
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_U64(dpr_finder_cut_of(f, 4242), 0);
    CHECK_EQ_U64(dpr_finder_worker_count(f), n);
    dpr_finder_free(f);
}

/* ------------------------------------------------------------------ */
/* 5. property test against a brute-force oracle                        */

#define PW 6
#define PV 16 /* version numbers 1..PV (dense: 1..8) */

typedef struct pgraph {
    int nw;
    uint64_t id[PW];
    int nver[PW];               /* versions of w: ver[w][0..nver) increasing */
    uint64_t ver[PW][PV];
    int ndeps[PW][PV];          /* per version index */
    int dw[PW][PV][PW + 1];     /* dependency: worker index ... */
    uint64_t dv[PW][PV][PW + 1]; /* ... and version */
    int dur[PW];                /* durable prefix: versions [0, dur) */
} pgraph;

static void pgraph_make(pgraph *g, bool sparse)
{
    memset(g, 0, sizeof(*g));
    g->nw = 1 + (int)below(PW);
    uint64_t p100 = 5 + below(50); /* dependency probability in percent */
    for (int w = 0; w < g->nw; w++) {
        g->id[w] = rnd();
        for (uint64_t v = 1; v <= (sparse ? PV : 8); v++)
            if (!sparse || below(2))
                g->ver[w][g->nver[w]++] = v;
        g->dur[w] = (int)below((uint64_t)g->nver[w] + 1);
        if (below(3) == 0)
            g->dur[w] = g->nver[w];
    }
    for (int w = 0; w < g->nw; w++) {
        for (int i = 0; i < g->nver[w]; i++) {
            uint64_t v = g->ver[w][i];
            for (int u = 0; u < g->nw; u++) {
                if (below(100) >= p100)
                    continue;
                /* a version of u at or below v */
                int cand = 0;
                while (cand < g->nver[u] && g->ver[u][cand] <= v)
                    cand++;
                if (cand == 0)
                    continue;
                int k = g->ndeps[w][i]++;
                g->dw[w][i][k] = u; /* u == w: a dependency on itself */
                g->dv[w][i][k] = g->ver[u][below((uint64_t)cand)];
            }
        }
    }
}

/* Largest committed version of w in content terms: the highest version of
 * w that is <= cut (a cut may fall between sparse versions). */
static int content_index(const pgraph *g, int w, uint64_t cut)
{
    int k = 0;
    while (k < g->nver[w] && g->ver[w][k] <= cut)
        k++;
    return k; /* versions [0, k) are in */
}

/* The largest dependency-closed durable cut, as a prefix length per worker. */
static void oracle(const pgraph *g, int c[PW])
{
    for (int w = 0; w < g->nw; w++)
        c[w] = g->dur[w];
    bool changed = true;
    while (changed) {
        changed = false;
        for (int w = 0; w < g->nw; w++) {
            for (int i = 0; i < c[w]; i++) {
                bool ok = true;
                for (int k = 0; k < g->ndeps[w][i]; k++) {
                    int u = g->dw[w][i][k];
                    /* (u, x) is in iff u's prefix c[u] contains x */
                    if (c[u] == 0 || g->ver[u][c[u] - 1] < g->dv[w][i][k])
                        ok = false;
                }
                if (!ok) {
                    c[w] = i;
                    changed = true;
                    break;
                }
            }
        }
    }
}

/* Safety of the working cut: every cut version reported and its
 * dependencies in the cut. reported[w] = number of versions reported. */
static bool pgraph_safe(const pgraph *g, const dpr_finder *f,
                        const int reported[PW], uint64_t prev[PW])
{
    dpr_finder_state st;
    uint64_t cut[PW] = { 0 };
    if (dpr_finder_get_state(f, &st) != 0)
        return false;
    for (size_t i = 0; i < st.nworkers; i++)
        for (int w = 0; w < g->nw; w++)
            if (st.workers[i].worker == g->id[w])
                cut[w] = st.workers[i].cut;
    dpr_finder_state_free(&st);
    for (int w = 0; w < g->nw; w++) {
        if (cut[w] < prev[w])
            return false; /* regressed */
        prev[w] = cut[w];
        int k = content_index(g, w, cut[w]);
        if (k > reported[w])
            return false; /* not durable */
        for (int i = 0; i < k; i++)
            for (int d = 0; d < g->ndeps[w][i]; d++)
                if (g->dv[w][i][d] > cut[g->dw[w][i][d]])
                    return false;
    }
    return true;
}

static int pgraph_report(dpr_finder *f, const pgraph *g, int w, int i)
{
    dpr_dep deps[PW + 1];
    for (int k = 0; k < g->ndeps[w][i]; k++) {
        deps[k].worker = g->id[g->dw[w][i][k]];
        deps[k].version = g->dv[w][i][k];
    }
    return dpr_finder_report(f, 1, g->id[w], g->ver[w][i], deps,
                             (size_t)g->ndeps[w][i]);
}

/* One seed: 0 when the finder matches the oracle and stays safe. */
static int oracle_run(uint64_t seed, bool sparse)
{
    pgraph g;
    rng = seed;
    pgraph_make(&g, sparse);
    dpr_finder *f;
    if (dpr_finder_new(&f) != 0)
        return 1;
    int bad = 0;
    for (int w = 0; w < g.nw && !bad; w++)
        bad = add(f, g.id[w], NULL, NULL) != 0;
    int reported[PW] = { 0 };
    uint64_t prev[PW] = { 0 };
    int left = 0;
    for (int w = 0; w < g.nw; w++)
        left += g.dur[w];
    while (left > 0 && !bad) {
        int w = (int)below((uint64_t)g.nw);
        if (reported[w] == g.dur[w])
            continue;
        if (reported[w] > 0 && below(8) == 0) /* a resend */
            bad |= pgraph_report(f, &g, w, (int)below((uint64_t)reported[w])) != 0;
        bad |= pgraph_report(f, &g, w, reported[w]++) != 0;
        left--;
        if (!pgraph_safe(&g, f, reported, prev))
            bad = 2;
    }
    int c[PW];
    oracle(&g, c);
    for (int w = 0; w < g.nw && !bad; w++)
        if (content_index(&g, w, wcut(f, g.id[w])) != c[w])
            bad = 3;
    if (bad)
        fprintf(stderr, "  oracle mismatch (%d): seed %llu sparse %d\n", bad,
                (unsigned long long)seed, (int)sparse);
    dpr_finder_free(f);
    return bad;
}

TEST(oracle_dense)
{
    int failures = 0;
    for (uint64_t seed = 1; seed <= 5000 && failures < 5; seed++)
        failures += oracle_run(seed, false) != 0;
    CHECK_EQ_INT(failures, 0);
}

TEST(oracle_sparse)
{
    int failures = 0;
    for (uint64_t seed = 1; seed <= 3000 && failures < 5; seed++)
        failures += oracle_run(seed * 7919 + 13, true) != 0;
    CHECK_EQ_INT(failures, 0);
}

/* ------------------------------------------------------------------ */
/* 6. randomized cluster with finder restarts                           */

#define HN 16
#define HMAXD 6

typedef struct hver {
    uint64_t version;
    size_t ndeps;
    dpr_dep deps[HMAXD];
} hver;

typedef struct hmsg {
    uint64_t wl;
    hver v;
} hmsg;

typedef struct hqueue {
    hmsg *m;
    size_t head, len, cap;
} hqueue;

typedef struct hworker {
    uint64_t id, cur;
    size_t ncur;
    dpr_dep curdeps[HMAXD];
    hver *hist;          /* checkpoints of the surviving lineage */
    size_t nhist, chist;
    hqueue out;          /* not delivered yet, oldest first */
    hqueue sent;         /* delivered, not yet in a published state */
} hworker;

typedef struct harness {
    dpr_finder *f;
    hworker w[HN];
    uint64_t wl;
    dpr_finder_state saved; /* the durable copy */
    uint64_t lastpub[HN];
    int failed;
    int restarts, crashes, publishes, stale;
} harness;

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return q;
}

static void q_push(hqueue *q, const hmsg *m)
{
    if (q->head + q->len == q->cap) {
        if (q->head > 0) {
            memmove(q->m, q->m + q->head, q->len * sizeof(*q->m));
            q->head = 0;
        }
        if (q->len == q->cap) {
            q->cap = q->cap ? 2 * q->cap : 16;
            q->m = xrealloc(q->m, q->cap * sizeof(*q->m));
        }
    }
    q->m[q->head + q->len++] = *m;
}

static hmsg q_pop(hqueue *q)
{
    hmsg m = q->m[q->head++];
    if (--q->len == 0)
        q->head = 0;
    return m;
}

/* out = sent ++ out (a resend after a finder restart). */
static void q_resend(hworker *w)
{
    hqueue nq = { NULL, 0, 0, 0 };
    while (w->sent.len > 0) {
        hmsg m = q_pop(&w->sent);
        q_push(&nq, &m);
    }
    while (w->out.len > 0) {
        hmsg m = q_pop(&w->out);
        q_push(&nq, &m);
    }
    free(w->out.m);
    w->out = nq;
}

static void h_fail(harness *h, const char *what, int k, uint64_t a, uint64_t b)
{
    if (h->failed++ < 5)
        fprintf(stderr, "  harness: %s (worker %d: %llu vs %llu)\n", what, k,
                (unsigned long long)a, (unsigned long long)b);
}

/* Cut closed under the true dependencies and below what was executed. */
static void h_check_cut(harness *h, const uint64_t cut[HN], const char *which)
{
    for (int k = 0; k < HN; k++) {
        hworker *w = &h->w[k];
        if (cut[k] >= w->cur)
            h_fail(h, which, k, cut[k], w->cur);
        for (size_t i = 0; i < w->nhist && w->hist[i].version <= cut[k]; i++) {
            const hver *v = &w->hist[i];
            for (size_t d = 0; d < v->ndeps; d++) {
                int u = (int)(v->deps[d].worker - 1000);
                if (v->deps[d].version > cut[u])
                    h_fail(h, "committed version with an uncommitted dependency",
                           k, v->version, v->deps[d].version);
            }
        }
    }
}

static void h_check_working(harness *h)
{
    dpr_finder_state st;
    uint64_t cut[HN];
    if (dpr_finder_get_state(h->f, &st) != 0 || st.nworkers != HN) {
        h_fail(h, "get_state", -1, 0, 0);
        return;
    }
    for (int k = 0; k < HN; k++)
        cut[k] = st.workers[k].cut; /* ids 1000.. are sorted */
    dpr_finder_state_free(&st);
    h_check_cut(h, cut, "working cut not durable");
}

static void h_check_published(harness *h)
{
    uint64_t cut[HN];
    if (dpr_finder_world_line(h->f) != h->wl)
        h_fail(h, "published world-line", -1, dpr_finder_world_line(h->f), h->wl);
    for (int k = 0; k < HN; k++) {
        cut[k] = dpr_finder_cut_of(h->f, h->w[k].id);
        if (cut[k] < h->lastpub[k])
            h_fail(h, "published cut regressed", k, cut[k], h->lastpub[k]);
        h->lastpub[k] = cut[k];
    }
    h_check_cut(h, cut, "published cut not durable");
}

static void h_save(harness *h, dpr_finder_state *st)
{
    dpr_finder_state_free(&h->saved);
    h->saved = *st;
}

/* Synchronous save + publish: everything delivered so far is acknowledged. */
static void h_publish(harness *h)
{
    dpr_finder_state st;
    if (dpr_finder_get_state(h->f, &st) != 0) {
        h_fail(h, "get_state", -1, 0, 0);
        return;
    }
    if (dpr_finder_publish(h->f, st.generation) != 0)
        h_fail(h, "publish", -1, 0, 0);
    h_save(h, &st);
    for (int k = 0; k < HN; k++)
        h->w[k].sent.len = h->w[k].sent.head = 0;
    h->publishes++;
    h_check_published(h);
}

static void h_deliver(harness *h, int k)
{
    hworker *w = &h->w[k];
    hmsg m = q_pop(&w->out);
    uint64_t cut = 0, dur = 0;
    if (m.wl != h->wl)
        working_of(h->f, w->id, &cut, &dur);
    int rc = dpr_finder_report(h->f, m.wl, w->id, m.v.version, m.v.deps, m.v.ndeps);
    if (m.wl == h->wl) {
        if (rc != 0)
            h_fail(h, "report refused", k, m.v.version, (uint64_t)-rc);
        q_push(&w->sent, &m);
    } else {
        int want = m.v.version <= cut ? 0 : -ESTALE;
        if (rc != want)
            h_fail(h, "stale report", k, m.v.version, (uint64_t)-rc);
        h->stale++;
    }
    h_check_working(h);
}

/* Saves now, publishes after a few more deliveries (a store that saves in
 * the background): only what was delivered before the copy is acknowledged. */
static void h_publish_async(harness *h)
{
    dpr_finder_state st;
    size_t acked[HN];
    if (dpr_finder_get_state(h->f, &st) != 0) {
        h_fail(h, "get_state", -1, 0, 0);
        return;
    }
    for (int k = 0; k < HN; k++)
        acked[k] = h->w[k].sent.len;
    for (int n = (int)below(4); n > 0; n--) {
        int k = (int)below(HN);
        if (h->w[k].out.len > 0 && h->w[k].out.m[h->w[k].out.head].wl == h->wl)
            h_deliver(h, k);
    }
    dpr_finder_state cur;
    if (dpr_finder_get_state(h->f, &cur) == 0) {
        /* publishing the old generation must refuse when the state moved */
        int rc = dpr_finder_publish(h->f, st.generation);
        if (cur.generation != st.generation && rc != -ESTALE)
            h_fail(h, "published a generation that is not the working one", -1,
                   st.generation, cur.generation);
        dpr_finder_state_free(&cur);
    }
    if (dpr_finder_publish_state(h->f, &st) != 0)
        h_fail(h, "publish_state", -1, 0, 0);
    h_save(h, &st);
    for (int k = 0; k < HN; k++) {
        hqueue *q = &h->w[k].sent;
        q->head += acked[k];
        q->len -= acked[k];
    }
    h->publishes++;
    h_check_published(h);
}

static void h_restart_finder(harness *h)
{
    dpr_finder_free(h->f);
    h->f = NULL;
    if (dpr_finder_restore(&h->saved, &h->f) != 0) {
        h_fail(h, "restore", -1, 0, 0);
        exit(2);
    }
    for (int k = 0; k < HN; k++)
        q_resend(&h->w[k]);
    h->restarts++;
    h_check_published(h);
}

static void h_crash(harness *h, int k)
{
    uint64_t wl, rs;
    if (add(h->f, h->w[k].id, &wl, &rs) != 0 || wl != h->wl + 1)
        h_fail(h, "re-registration", k, wl, h->wl + 1);
    h->wl = wl;
    h_publish(h); /* answered only once durable */
    if (rs != dpr_finder_cut_of(h->f, h->w[k].id))
        h_fail(h, "restore version", k, rs, dpr_finder_cut_of(h->f, h->w[k].id));
    /* every worker rolls back to its cut; messages in flight stay in flight */
    for (int j = 0; j < HN; j++) {
        hworker *w = &h->w[j];
        uint64_t c = dpr_finder_cut_of(h->f, w->id);
        while (w->nhist > 0 && w->hist[w->nhist - 1].version > c)
            w->nhist--;
        w->cur = c + 1;
        w->ncur = 0;
    }
    h->crashes++;
}

static void h_checkpoint(harness *h, int k)
{
    hworker *w = &h->w[k];
    hmsg m;
    m.wl = h->wl;
    m.v.version = w->cur;
    m.v.ndeps = w->ncur;
    memcpy(m.v.deps, w->curdeps, w->ncur * sizeof(dpr_dep));
    if (w->nhist == w->chist) {
        w->chist = w->chist ? 2 * w->chist : 64;
        w->hist = xrealloc(w->hist, w->chist * sizeof(*w->hist));
    }
    w->hist[w->nhist++] = m.v;
    q_push(&w->out, &m);
    w->cur += 1 + (below(3) == 0);
    w->ncur = 0;
}

/* A client operation on k after one on j: k depends on j's version y. */
static void h_op(harness *h, int k, int j)
{
    hworker *w = &h->w[k];
    uint64_t y = below(10) < 7 ? h->w[j].cur : 1 + below(h->w[j].cur);
    if (y > w->cur)
        w->cur = y; /* fast-forward: never a forward dependency */
    for (size_t i = 0; i < w->ncur; i++) {
        if (w->curdeps[i].worker == h->w[j].id) {
            if (y > w->curdeps[i].version)
                w->curdeps[i].version = y;
            return;
        }
    }
    if (w->ncur < HMAXD) {
        w->curdeps[w->ncur].worker = h->w[j].id;
        w->curdeps[w->ncur].version = y;
        w->ncur++;
    }
}

static void h_deliver_all(harness *h)
{
    for (;;) {
        int live[HN], n = 0;
        for (int k = 0; k < HN; k++)
            if (h->w[k].out.len > 0)
                live[n++] = k;
        if (n == 0)
            return;
        h_deliver(h, live[below((uint64_t)n)]);
    }
}

static int harness_run(uint64_t seed, bool restarts, int steps)
{
    harness *h = calloc(1, sizeof(*h));
    if (!h)
        return 1;
    rng = seed;
    h->wl = 1;
    if (dpr_finder_new(&h->f) != 0)
        return 1;
    for (int k = 0; k < HN; k++) {
        h->w[k].id = 1000 + (uint64_t)k;
        h->w[k].cur = 1;
        if (add(h->f, h->w[k].id, NULL, NULL) != 0)
            h_fail(h, "add", k, 0, 0);
    }
    h_publish(h);
    for (int s = 0; s < steps && !h->failed; s++) {
        uint64_t r = below(1000);
        int k = (int)below(HN);
        if (r < 400) {
            int j = (int)below(HN - 1);
            h_op(h, k, j >= k ? j + 1 : j);
        } else if (r < 600) {
            h_checkpoint(h, k);
        } else if (r < 940) {
            int live[HN], n = 0;
            for (int i = 0; i < HN; i++)
                if (h->w[i].out.len > 0)
                    live[n++] = i;
            if (n > 0)
                h_deliver(h, live[below((uint64_t)n)]);
        } else if (r < 965) {
            h_publish(h);
        } else if (r < 990) {
            h_publish_async(h);
        } else if (r < 995 && restarts) {
            h_restart_finder(h);
        } else if (r < 998) {
            h_crash(h, k);
        }
    }
    /* the load stops: every executed version is checkpointed and delivered */
    for (int k = 0; k < HN; k++)
        h_checkpoint(h, k);
    h_deliver_all(h);
    h_publish(h);
    if (!restarts) {
        /* the exact rule alone: everything durable commits */
        for (int k = 0; k < HN; k++) {
            hworker *w = &h->w[k];
            uint64_t c = dpr_finder_cut_of(h->f, w->id);
            if (c != w->hist[w->nhist - 1].version)
                h_fail(h, "durable version never committed", k, c,
                       w->hist[w->nhist - 1].version);
        }
    }
    /* workers keep checkpointing (idle, fast-forwarded to a common version):
     * the lost regions of restarts are covered by the minimum rule */
    uint64_t top = 0;
    for (int k = 0; k < HN; k++)
        top = h->w[k].cur > top ? h->w[k].cur : top;
    for (int k = 0; k < HN; k++) {
        h->w[k].cur = top;
        h_checkpoint(h, k);
    }
    h_deliver_all(h);
    h_publish(h);
    for (int k = 0; k < HN; k++)
        if (dpr_finder_cut_of(h->f, h->w[k].id) != top)
            h_fail(h, "final version never committed", k,
                   dpr_finder_cut_of(h->f, h->w[k].id), top);
    int failed = h->failed;
    if (failed)
        fprintf(stderr, "  harness seed %llu restarts %d failed\n",
                (unsigned long long)seed, (int)restarts);
    static int printed;
    if (!printed++)
        printf("     harness seed %llu: %d publishes, %d finder restarts, "
               "%d crashes, %d stale reports\n", (unsigned long long)seed,
               h->publishes, h->restarts, h->crashes, h->stale);
    for (int k = 0; k < HN; k++) {
        free(h->w[k].hist);
        free(h->w[k].out.m);
        free(h->w[k].sent.m);
    }
    dpr_finder_state_free(&h->saved);
    dpr_finder_free(h->f);
    free(h);
    return failed;
}

TEST(cluster_with_finder_restarts)
{
    int failures = 0;
    for (uint64_t seed = 1; seed <= 40 && failures < 3; seed++)
        failures += harness_run(seed, true, 20000) != 0;
    CHECK_EQ_INT(failures, 0);
}

TEST(cluster_exact_liveness)
{
    int failures = 0;
    for (uint64_t seed = 101; seed <= 140 && failures < 3; seed++)
        failures += harness_run(seed, false, 20000) != 0;
    CHECK_EQ_INT(failures, 0);
}

/* ------------------------------------------------------------------ */
/* 7. scale                                                             */

#define SCALE_N 65536

static uint64_t scale_id(uint64_t i)
{
    return i * 0x9e3779b97f4a7c15ULL + 1; /* distinct, scattered */
}

TEST(scale_65536_workers)
{
    dpr_finder *f;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    rng = 4242;
    double t0 = now_s();
    int bad = 0;
    for (uint64_t i = 0; i < SCALE_N; i++)
        bad |= add(f, scale_id(i), NULL, NULL) != 0;
    CHECK_EQ_INT(bad, 0);
    double t1 = now_s();
    const uint64_t rounds = 8;
    for (uint64_t v = 1; v <= rounds; v++) {
        for (uint64_t i = 0; i < SCALE_N; i++) {
            if (below(2)) {
                uint64_t u = below(SCALE_N - 1);
                u = u >= i ? u + 1 : u;
                bad |= rep1(f, 1, scale_id(i), v, scale_id(u), v) != 0;
            } else {
                bad |= rep(f, 1, scale_id(i), v) != 0;
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
    double t2 = now_s();
    CHECK_EQ_INT(publish_now(f), 0);
    double t3 = now_s();
    dpr_finder_state st;
    CHECK_EQ_INT(dpr_finder_get_state(f, &st), 0);
    CHECK_EQ_U64(st.nworkers, SCALE_N);
    size_t wrong = 0;
    for (size_t i = 0; i < st.nworkers; i++) {
        wrong += st.workers[i].cut != rounds || st.workers[i].durable != rounds;
        if (i > 0 && st.workers[i - 1].worker >= st.workers[i].worker)
            wrong++;
    }
    CHECK_EQ_U64(wrong, 0);
    dpr_finder_state_free(&st);
    CHECK_EQ_U64(dpr_finder_cut_of(f, scale_id(777)), rounds);
    CHECK_EQ_U64(dpr_depset_count(dpr_finder_cut(f)), SCALE_N);
    printf("     %d workers: add %.0f ms, %llu reports %.0f ms (%.2f M/s), "
           "publish %.1f ms\n", SCALE_N, (t1 - t0) * 1e3,
           (unsigned long long)(rounds * SCALE_N), (t2 - t1) * 1e3,
           (double)(rounds * SCALE_N) / (t2 - t1) / 1e6, (t3 - t2) * 1e3);
    dpr_finder_free(f);
}

/* Workers joining one by one while the others report: each join lowers V. */
TEST(scale_join_while_reporting)
{
    dpr_finder *f;
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    rng = 99;
    double t0 = now_s();
    int bad = 0;
    for (uint64_t i = 0; i < SCALE_N; i++) {
        bad |= add(f, scale_id(i), NULL, NULL) != 0;
        if (i > 0 && below(2))
            bad |= rep1(f, 1, scale_id(i), 1, scale_id(below(i)), 1) != 0;
        else
            bad |= rep(f, 1, scale_id(i), 1) != 0;
    }
    CHECK_EQ_INT(bad, 0);
    for (uint64_t i = 0; i < SCALE_N; i++)
        bad |= rep(f, 1, scale_id(i), 2) != 0;
    double t1 = now_s();
    CHECK_EQ_INT(publish_now(f), 0);
    size_t wrong = 0;
    for (uint64_t i = 0; i < SCALE_N; i++)
        wrong += dpr_finder_cut_of(f, scale_id(i)) != 2;
    CHECK_EQ_U64(wrong, 0);
    CHECK(t1 - t0 < 5.0);
    printf("     %d joins with reports in between: %.0f ms\n", SCALE_N,
           (t1 - t0) * 1e3);
    dpr_finder_free(f);
}

/* ------------------------------------------------------------------ */
/* registration tokens                                                  */

static int add_tok(dpr_finder *f, uint64_t w, const char *tok, uint64_t *wl, uint64_t *restore)
{
    uint64_t a, b;
    return dpr_finder_add_worker_token(f, w, tok, tok ? strlen(tok) : 0, wl ? wl : &a,
                                       restore ? restore : &b);
}

static int remove_tok(dpr_finder *f, uint64_t w, const char *tok)
{
    return dpr_finder_remove_worker_token(f, w, tok, tok ? strlen(tok) : 0);
}

/* The stored token of a registered worker ("" none; NULL not registered). */
static const char *token_of(const dpr_finder *f, uint64_t w, char *buf, size_t n)
{
    dpr_finder_state st;
    const char *found = NULL;
    if (dpr_finder_get_state(f, &st) < 0)
        return NULL;
    for (size_t i = 0; i < st.nworkers; i++) {
        if (st.workers[i].worker == w) {
            snprintf(buf, n, "%s", st.workers[i].token);
            found = buf;
        }
    }
    dpr_finder_state_free(&st);
    return found;
}

/* Issue 8: anyone who reached the finder could re-register a live worker
 * and force a rollback of the whole cluster. With a token, only its owner
 * can; a refusal changes nothing (no world-line bump, no generation). */
TEST(tokens_guard_registration)
{
    dpr_finder *f;
    uint64_t wl = 0, rs = 0;
    char buf[DPR_FINDER_TOKEN_MAX + 1];
    static const char *const wrong[] = { NULL, "", "t", "t1x", "T1", "t2" };
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add_tok(f, 1, "t1", &wl, &rs), 0);
    CHECK_EQ_U64(wl, 1);
    CHECK_EQ_U64(rs, 0);
    CHECK_EQ_INT(add(f, 2, NULL, NULL), 0);  /* no token */
    CHECK_EQ_INT(rep(f, 1, 1, 3), 0);
    CHECK_EQ_INT(rep(f, 1, 2, 2), 0);
    CHECK_EQ_INT(rep(f, 1, 1, 4), 0);        /* durable 4, above the cut */
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK(strcmp(token_of(f, 1, buf, sizeof(buf)), "t1") == 0);
    CHECK(strcmp(token_of(f, 2, buf, sizeof(buf)), "") == 0);

    dpr_finder_state before, after;
    CHECK_EQ_INT(dpr_finder_get_state(f, &before), 0);
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        CHECK_EQ_INT(add_tok(f, 1, wrong[i], &wl, &rs), -EACCES);
        CHECK_EQ_INT(remove_tok(f, 1, wrong[i]), -EACCES);
    }
    CHECK_EQ_INT(add(f, 1, NULL, NULL), -EACCES);
    CHECK_EQ_INT(dpr_finder_remove_worker(f, 1), -EACCES);
    /* invalid tokens are refused as such, whoever registered */
    CHECK_EQ_INT(add_tok(f, 2, "a b", NULL, NULL), -EINVAL);
    CHECK_EQ_INT(add_tok(f, 3, "tab\t", NULL, NULL), -EINVAL);
    char longtok[DPR_FINDER_TOKEN_MAX + 2];
    memset(longtok, 'x', sizeof(longtok) - 1);
    longtok[sizeof(longtok) - 1] = '\0';
    CHECK_EQ_INT(add_tok(f, 3, longtok, NULL, NULL), -EINVAL);
    CHECK_EQ_INT(remove_tok(f, 99, "t1"), -ENOENT);
    CHECK_EQ_INT(dpr_finder_get_state(f, &after), 0);
    CHECK(state_equal(&before, &after));
    CHECK(!dpr_finder_dirty(f));
    CHECK_EQ_U64(dpr_finder_world_line(f), 1);
    CHECK(!dpr_finder_has_worker(f, 3));
    dpr_finder_state_free(&before);
    dpr_finder_state_free(&after);

    /* the owner's token: the crash-restart path, a new world-line */
    CHECK_EQ_INT(add_tok(f, 1, "t1", &wl, &rs), 0);
    CHECK_EQ_U64(wl, 2);
    CHECK_EQ_U64(rs, wcut(f, 1));
    CHECK_EQ_U64(wdur(f, 1), rs);            /* its version 4 is lost */
    CHECK(strcmp(token_of(f, 1, buf, sizeof(buf)), "t1") == 0);

    /* a worker registered without a token adopts the one presented at its
     * next registration, which is then needed */
    CHECK_EQ_INT(add_tok(f, 2, "t2", &wl, NULL), 0);
    CHECK_EQ_U64(wl, 3);
    CHECK(strcmp(token_of(f, 2, buf, sizeof(buf)), "t2") == 0);
    CHECK_EQ_INT(add(f, 2, NULL, NULL), -EACCES);
    CHECK_EQ_INT(add_tok(f, 2, "t1", NULL, NULL), -EACCES); /* another worker's */
    CHECK_EQ_INT(add_tok(f, 2, "t2", &wl, NULL), 0);
    CHECK_EQ_U64(wl, 4);
    /* ... and one that registers again without a token stays without */
    CHECK_EQ_INT(add(f, 5, NULL, NULL), 0);
    CHECK_EQ_INT(add(f, 5, &wl, NULL), 0);
    CHECK_EQ_U64(wl, 5);
    CHECK(strcmp(token_of(f, 5, buf, sizeof(buf)), "") == 0);

    /* removal needs the token too; the token goes with the worker */
    CHECK_EQ_INT(rep(f, 5, 1, 7), 0);
    CHECK_EQ_INT(rep(f, 5, 2, 7), 0);
    CHECK_EQ_INT(rep(f, 5, 5, 7), 0);
    CHECK_EQ_U64(wcut(f, 1), 7);
    CHECK_EQ_INT(remove_tok(f, 1, "t2"), -EACCES);
    CHECK(dpr_finder_has_worker(f, 1));
    CHECK_EQ_INT(remove_tok(f, 1, "t1"), 0);
    CHECK(!dpr_finder_has_worker(f, 1));
    CHECK(token_of(f, 1, buf, sizeof(buf)) == NULL);
    CHECK_EQ_INT(remove_tok(f, 5, "any"), 0); /* registered without a token */
    /* a removed worker that comes back takes the token it presents */
    CHECK_EQ_INT(add_tok(f, 1, "again", &wl, &rs), 0);
    CHECK_EQ_U64(wl, 5);                     /* no new world-line */
    CHECK_EQ_U64(rs, 7);                     /* its final cut */
    CHECK_EQ_INT(add_tok(f, 1, "t1", NULL, NULL), -EACCES);
    CHECK_EQ_INT(publish_now(f), 0);

    /* tokens survive a restart from the stored state */
    dpr_finder_state st;
    dpr_finder *g;
    CHECK_EQ_INT(dpr_finder_get_state(f, &st), 0);
    CHECK_EQ_INT(dpr_finder_restore(&st, &g), 0);
    CHECK_EQ_INT(add(g, 1, NULL, NULL), -EACCES);
    CHECK_EQ_INT(add_tok(g, 2, "again", NULL, NULL), -EACCES);
    CHECK_EQ_INT(add_tok(g, 2, "t2", &wl, NULL), 0);
    CHECK_EQ_U64(wl, 6);
    dpr_finder_free(g);
    /* an invalid stored token is inconsistent state */
    snprintf(st.workers[0].token, sizeof(st.workers[0].token), "has space");
    CHECK_EQ_INT(dpr_finder_restore(&st, &g), -EINVAL);
    memset(st.workers[0].token, 'x', sizeof(st.workers[0].token)); /* unterminated */
    CHECK_EQ_INT(dpr_finder_restore(&st, &g), -EINVAL);
    dpr_finder_state_free(&st);
    dpr_finder_free(f);

    /* the validity rule */
    CHECK(dpr_finder_token_valid("!", 1));
    CHECK(dpr_finder_token_valid("~", 1));
    CHECK(dpr_finder_token_valid(longtok, DPR_FINDER_TOKEN_MAX));
    CHECK(!dpr_finder_token_valid(longtok, DPR_FINDER_TOKEN_MAX + 1));
    CHECK(!dpr_finder_token_valid("", 0));
    CHECK(!dpr_finder_token_valid("a\0b", 3));
    CHECK(!dpr_finder_token_valid("\x7f", 1));
    CHECK(!dpr_finder_token_valid(" ", 1));
}

static int leave_tok(dpr_finder *f, uint64_t w, const char *tok)
{
    return dpr_finder_leave_worker(f, w, tok, tok ? strlen(tok) : 0);
}

/* Issue 13: a planned stop. A worker whose last checkpoint is in the cut
 * leaves (away, durable state) and comes back with no new world-line,
 * restoring exactly that checkpoint; one with checkpoints outside the cut
 * may not leave yet; the token rule is REMOVE's; an away worker reports
 * nothing new; a crash restart of another worker while it is away rolls
 * the others back and leaves its state alone. */
TEST(planned_leave)
{
    dpr_finder *f, *g;
    dpr_finder_state st, before, after;
    uint64_t wl = 0, rs = 0;

    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add_tok(f, 1, "t1", NULL, NULL), 0);
    CHECK_EQ_INT(add_tok(f, 2, "t2", NULL, NULL), 0);
    CHECK_EQ_INT(add(f, 3, NULL, NULL), 0); /* no token */
    CHECK_EQ_INT(rep(f, 1, 1, 4), 0);
    CHECK_EQ_INT(rep1(f, 1, 2, 5, 1, 4), 0);
    CHECK_EQ_INT(rep(f, 1, 3, 1), 0);
    CHECK_EQ_U64(wcut(f, 1), 4);
    CHECK_EQ_U64(wcut(f, 2), 5);
    CHECK_EQ_INT(rep1(f, 1, 1, 6, 2, 6), 0); /* needs (2, 6): not durable */
    CHECK_EQ_INT(publish_now(f), 0);

    /* refusals change nothing */
    CHECK_EQ_INT(dpr_finder_get_state(f, &before), 0);
    CHECK_EQ_INT(leave_tok(f, 1, "t1"), -EBUSY); /* version 6 is not in the cut */
    CHECK_EQ_INT(leave_tok(f, 2, NULL), -EACCES);
    CHECK_EQ_INT(leave_tok(f, 2, "t1"), -EACCES);
    CHECK_EQ_INT(leave_tok(f, 9, "t1"), -ENOENT);
    CHECK_EQ_INT(leave_tok(f, 2, "a b"), -EINVAL);
    CHECK_EQ_INT(dpr_finder_get_state(f, &after), 0);
    CHECK(state_equal(&before, &after));
    CHECK(!dpr_finder_dirty(f));
    CHECK(!dpr_finder_is_away(f, 1));
    dpr_finder_state_free(&before);
    dpr_finder_state_free(&after);

    /* worker 2 stops on purpose: its last checkpoint 5 is in the cut */
    CHECK_EQ_INT(leave_tok(f, 2, "t2"), 0);
    CHECK(dpr_finder_is_away(f, 2));
    CHECK(dpr_finder_dirty(f));
    CHECK(dpr_finder_has_worker(f, 2));
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_INT(leave_tok(f, 2, "t2"), 0); /* again: nothing changes */
    CHECK(!dpr_finder_dirty(f));
    CHECK_EQ_INT(rep(f, 1, 2, 5), 0);       /* a resend is fine */
    CHECK_EQ_INT(rep(f, 1, 2, 7), -EPERM);  /* a new version is not */
    CHECK(!dpr_finder_dirty(f));
    CHECK_EQ_U64(wdur(f, 2), 5);

    /* it survives a finder restart */
    CHECK_EQ_INT(dpr_finder_get_state(f, &st), 0);
    CHECK(st.workers[1].away && !st.workers[0].away && !st.workers[2].away);
    CHECK_EQ_INT(dpr_finder_restore(&st, &g), 0);
    CHECK(dpr_finder_is_away(g, 2));
    /* an inconsistent stored mark (away above the cut) is refused */
    st.workers[0].away = true; /* worker 1: cut 4, durable 6 */
    dpr_finder *h = NULL;
    CHECK_EQ_INT(dpr_finder_restore(&st, &h), -EINVAL);
    CHECK(h == NULL);
    dpr_finder_state_free(&st);
    dpr_finder_free(f);
    f = g;

    /* the owner moves it while it is away (a node shut down cleanly, then
     * marked down): the new token brings it back, the old one no longer */
    CHECK_EQ_INT(dpr_finder_set_token(f, 2, "t2b", 3), 0);
    CHECK(dpr_finder_is_away(f, 2));
    CHECK_EQ_INT(add_tok(f, 2, "t2", NULL, NULL), -EACCES);
    CHECK_EQ_INT(dpr_finder_set_token(f, 2, "t2", 2), 0); /* (and back, for the rest) */
    /* coming back: the owner's token, no new world-line, its checkpoint */
    CHECK_EQ_INT(add(f, 2, NULL, NULL), -EACCES);
    CHECK(dpr_finder_is_away(f, 2));
    CHECK_EQ_INT(add_tok(f, 2, "t2", &wl, &rs), 0);
    CHECK_EQ_U64(wl, 1);
    CHECK_EQ_U64(rs, 5);
    CHECK(!dpr_finder_is_away(f, 2));
    CHECK_EQ_INT(publish_now(f), 0);
    CHECK_EQ_U64(dpr_finder_world_line(f), 1);
    /* and it works on: version 6 of 2 commits, then 1's version 6 */
    CHECK_EQ_INT(rep(f, 1, 2, 6), 0);
    CHECK_EQ_U64(wcut(f, 2), 6);
    CHECK_EQ_INT(rep(f, 1, 1, 7), 0);
    CHECK_EQ_INT(rep(f, 1, 3, 7), 0);
    CHECK_EQ_U64(wcut(f, 1), 7);
    /* a second planned stop, now of the worker without a token */
    CHECK_EQ_INT(leave_tok(f, 3, NULL), 0);
    CHECK(dpr_finder_is_away(f, 3));
    /* a crash restart of worker 1 meanwhile: the usual rollback, worker 3
     * keeps its state and stays away */
    CHECK_EQ_INT(rep(f, 1, 1, 8), 0);
    CHECK_EQ_INT(add_tok(f, 1, "t1", &wl, &rs), 0);
    CHECK_EQ_U64(wl, 2);
    CHECK_EQ_U64(wdur(f, 1), rs);
    CHECK(dpr_finder_is_away(f, 3));
    CHECK_EQ_U64(wcut(f, 3), 7);
    CHECK_EQ_U64(wdur(f, 3), 7);
    /* it comes back on the new world-line with its own checkpoint */
    CHECK_EQ_INT(add_tok(f, 3, "t3", &wl, &rs), 0);
    CHECK_EQ_U64(wl, 2);
    CHECK_EQ_U64(rs, 7);
    char buf[DPR_FINDER_TOKEN_MAX + 1];
    CHECK(strcmp(token_of(f, 3, buf, sizeof(buf)), "t3") == 0); /* adopted, as at a crash */
    /* now it is not away: ADD again is the crash path */
    CHECK_EQ_INT(add_tok(f, 3, "t3", &wl, NULL), 0);
    CHECK_EQ_U64(wl, 3);
    /* an away worker may be removed; it then joins as a removed one */
    CHECK_EQ_INT(leave_tok(f, 3, "t3"), 0);
    CHECK_EQ_INT(remove_tok(f, 3, "t3"), 0);
    CHECK(!dpr_finder_is_away(f, 3));
    CHECK_EQ_INT(add_tok(f, 3, "t4", &wl, &rs), 0);
    CHECK_EQ_U64(wl, 3);
    CHECK(!dpr_finder_is_away(f, 3));
    dpr_finder_free(f);
}

/* Fencing: the owner moved worker 1 (its node was lost) and gives its
 * record a new token. Nothing else changes (no world-line, cut or durable
 * version moves); the old token no longer passes dpr_finder_token_check nor
 * registers the worker; the new one does both; the token is durable state. */
TEST(tokens_change_owner)
{
    dpr_finder *f, *g;
    dpr_finder_state before, after, st;
    uint64_t gen, wl = 0, rs = 0;
    char buf[DPR_FINDER_TOKEN_MAX + 1], longtok[DPR_FINDER_TOKEN_MAX + 2];

    memset(longtok, 'x', sizeof(longtok) - 1);
    longtok[sizeof(longtok) - 1] = '\0';
    CHECK_EQ_INT(dpr_finder_new(&f), 0);
    CHECK_EQ_INT(add_tok(f, 1, "old", NULL, NULL), 0);
    CHECK_EQ_INT(add(f, 2, NULL, NULL), 0);
    CHECK_EQ_INT(rep(f, 1, 1, 3), 0);
    CHECK_EQ_INT(rep(f, 1, 2, 2), 0);
    CHECK_EQ_INT(rep(f, 1, 1, 5), 0); /* durable 5, above the cut */
    CHECK_EQ_INT(publish_now(f), 0);

    /* who holds which token */
    CHECK_EQ_INT(dpr_finder_token_check(f, 1, "old", 3), 0);
    CHECK_EQ_INT(dpr_finder_token_check(f, 1, "ol", 2), -EACCES);
    CHECK_EQ_INT(dpr_finder_token_check(f, 1, "oldx", 4), -EACCES);
    CHECK_EQ_INT(dpr_finder_token_check(f, 1, NULL, 0), -EACCES); /* it has one */
    CHECK_EQ_INT(dpr_finder_token_check(f, 1, longtok, sizeof(longtok) - 1), -EACCES);
    CHECK_EQ_INT(dpr_finder_token_check(f, 1, "a b", 3), -EACCES);
    CHECK_EQ_INT(dpr_finder_token_check(f, 2, "old", 3), -EACCES); /* it has none */
    CHECK_EQ_INT(dpr_finder_token_check(f, 2, NULL, 0), 0);
    CHECK_EQ_INT(dpr_finder_token_check(f, 3, "old", 3), -ENOENT);
    CHECK_EQ_INT(dpr_finder_token_check(f, 3, NULL, 0), -ENOENT);

    /* refusals change nothing */
    CHECK_EQ_INT(dpr_finder_get_state(f, &before), 0);
    CHECK_EQ_INT(dpr_finder_set_token(f, 1, NULL, 0), -EINVAL);
    CHECK_EQ_INT(dpr_finder_set_token(f, 1, "", 0), -EINVAL);
    CHECK_EQ_INT(dpr_finder_set_token(f, 1, "a b", 3), -EINVAL);
    CHECK_EQ_INT(dpr_finder_set_token(f, 1, longtok, sizeof(longtok) - 1), -EINVAL);
    CHECK_EQ_INT(dpr_finder_set_token(f, 3, "new", 3), -ENOENT);
    CHECK_EQ_INT(dpr_finder_set_token(f, 1, "old", 3), 0); /* the same owner */
    CHECK(!dpr_finder_dirty(f));
    CHECK_EQ_INT(dpr_finder_get_state(f, &after), 0);
    CHECK(state_equal(&before, &after));
    dpr_finder_state_free(&after);

    /* the move: a new token, one new generation, nothing else */
    gen = dpr_finder_generation(f);
    CHECK_EQ_INT(dpr_finder_set_token(f, 1, "new", 3), 0);
    CHECK_EQ_U64(dpr_finder_generation(f), gen + 1);
    CHECK(dpr_finder_dirty(f));
    CHECK_EQ_INT(dpr_finder_get_state(f, &after), 0);
    CHECK_EQ_U64(after.world_line, before.world_line);
    CHECK_EQ_U64(after.nworkers, before.nworkers);
    for (size_t i = 0; i < after.nworkers; i++) {
        CHECK_EQ_U64(after.workers[i].worker, before.workers[i].worker);
        CHECK_EQ_U64(after.workers[i].cut, before.workers[i].cut);
        CHECK_EQ_U64(after.workers[i].durable, before.workers[i].durable);
    }
    CHECK(strcmp(after.workers[0].token, "new") == 0);
    CHECK(strcmp(after.workers[1].token, "") == 0);
    dpr_finder_state_free(&before);
    dpr_finder_state_free(&after);
    CHECK_EQ_INT(dpr_finder_token_check(f, 1, "old", 3), -EACCES);
    CHECK_EQ_INT(dpr_finder_token_check(f, 1, "new", 3), 0);
    CHECK_EQ_U64(dpr_finder_world_line(f), 1);
    CHECK_EQ_INT(publish_now(f), 0);
    /* reports go on (the server checks who sends them) */
    CHECK_EQ_INT(rep(f, 1, 1, 6), 0);
    /* a worker registered without a token may be given one */
    CHECK_EQ_INT(dpr_finder_set_token(f, 2, "two", 3), 0);
    CHECK_EQ_INT(dpr_finder_token_check(f, 2, NULL, 0), -EACCES);
    CHECK_EQ_INT(add(f, 2, NULL, NULL), -EACCES);
    CHECK_EQ_INT(publish_now(f), 0);

    /* durable: a finder restored from the saved state knows the new token */
    CHECK_EQ_INT(dpr_finder_get_state(f, &st), 0);
    CHECK_EQ_INT(dpr_finder_restore(&st, &g), 0);
    dpr_finder_state_free(&st);
    CHECK_EQ_INT(dpr_finder_token_check(g, 1, "new", 3), 0);
    CHECK_EQ_INT(dpr_finder_token_check(g, 1, "old", 3), -EACCES);
    CHECK(strcmp(token_of(g, 1, buf, sizeof(buf)), "new") == 0);
    /* the old incarnation cannot register (and so roll the domain back) ... */
    CHECK_EQ_INT(add_tok(g, 1, "old", &wl, &rs), -EACCES);
    CHECK_EQ_U64(dpr_finder_world_line(g), 1);
    /* ... the new one can: the crash-restart path, restoring the cut */
    CHECK_EQ_INT(add_tok(g, 1, "new", &wl, &rs), 0);
    CHECK_EQ_U64(wl, 2);
    CHECK_EQ_U64(rs, wcut(g, 1));
    /* a retired worker has no token to change */
    CHECK_EQ_INT(remove_tok(g, 2, "two"), 0);
    CHECK_EQ_INT(dpr_finder_set_token(g, 2, "three", 5), -ENOENT);
    CHECK_EQ_INT(dpr_finder_token_check(g, 2, "two", 3), -ENOENT);
    dpr_finder_free(g);
    dpr_finder_free(f);
}

int main(void)
{
    RUN(sequential_graph);
    RUN(sparse_versions);
    RUN(min_rule_overtakes_blocked);
    RUN(restart_graph_lost);
    RUN(world_lines);
    RUN(bad_input);
    RUN(remove_worker);
    RUN(remove_uncommitted_refused);
    RUN(tokens_guard_registration);
    RUN(tokens_change_owner);
    RUN(world_line_prefixes);
    RUN(blocked_on_non_members);
    RUN(sync_view);
    RUN(join_keeps_cut);
    RUN(publish_rules);
    RUN(state_order);
    RUN(oracle_dense);
    RUN(oracle_sparse);
    RUN(cluster_with_finder_restarts);
    RUN(cluster_exact_liveness);
    RUN(scale_65536_workers);
    RUN(scale_join_while_reporting);
    RUN(planned_leave);
    return check_summary("finder");
}
