/* test_domains.c - the finder's domains (finder/src/domains.c): lookup and
 * creation, independence of domains, the state copy and publishing of all
 * domains at once, restore, and the split (the upgrade path). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "states_equal.h"
#include "dpr/domains.h"

/* The working state of one domain (freed by the caller). */
static int state_of(dpr_domains *ds, const char *name, dpr_finder_state *st)
{
    dpr_finder *f = dpr_domains_find(ds, name);

    memset(st, 0, sizeof(*st));
    return f ? dpr_finder_get_state(f, st) : -ENOENT;
}

static const dpr_finder_worker_state *worker_in(const dpr_finder_state *st, uint64_t w)
{
    for (size_t i = 0; i < st->nworkers; i++)
        if (st->workers[i].worker == w)
            return &st->workers[i];
    return NULL;
}

/* What the server does after a loop turn, without the store. */
static void commit(dpr_domains *ds)
{
    dpr_domains_state st;

    CHECK_EQ_INT(dpr_domains_get_state(ds, &st), 0);
    CHECK_EQ_INT(dpr_domains_publish(ds, &st), 0);
    dpr_domains_state_free(&st);
    CHECK(!dpr_domains_dirty(ds));
}

TEST(create_and_find)
{
    dpr_domains *ds = NULL;
    dpr_finder *kv = NULL, *again = NULL, *a = NULL, *z = NULL;
    char long_name[DPR_DOMAIN_MAX + 2];

    CHECK_EQ_INT(dpr_domains_new(&ds), 0);
    CHECK_EQ_U64(dpr_domains_count(ds), 0);
    CHECK(dpr_domains_find(ds, "kv") == NULL);
    CHECK(dpr_domains_find(ds, NULL) == NULL);
    CHECK(!dpr_domains_dirty(ds));
    CHECK(dpr_domains_name(ds, 0) == NULL && dpr_domains_at(ds, 0) == NULL);

    CHECK_EQ_INT(dpr_domains_ensure(ds, "kv", &kv), 0);
    CHECK(kv != NULL);
    CHECK(dpr_domains_dirty(ds)); /* a new domain is a change */
    CHECK_EQ_U64(dpr_finder_world_line(kv), DPR_FINDER_FIRST_WORLD_LINE);
    CHECK_EQ_U64(dpr_finder_worker_count(kv), 0);
    CHECK_EQ_INT(dpr_domains_ensure(ds, "kv", &again), 0);
    CHECK(again == kv);
    CHECK(dpr_domains_find(ds, "kv") == kv);
    /* names before and after it: kept sorted, kv's core does not move */
    CHECK_EQ_INT(dpr_domains_ensure(ds, "zz", &z), 0);
    CHECK_EQ_INT(dpr_domains_ensure(ds, "a", &a), 0);
    for (int i = 0; i < 40; i++) { /* grow the array a few times */
        char name[16];
        dpr_finder *f;
        snprintf(name, sizeof(name), "d%02d", 39 - i);
        CHECK_EQ_INT(dpr_domains_ensure(ds, name, &f), 0);
    }
    CHECK_EQ_U64(dpr_domains_count(ds), 43);
    CHECK(dpr_domains_find(ds, "kv") == kv && dpr_domains_find(ds, "a") == a &&
          dpr_domains_find(ds, "zz") == z);
    CHECK(strcmp(dpr_domains_name(ds, 0), "a") == 0 && dpr_domains_at(ds, 0) == a);
    CHECK(strcmp(dpr_domains_name(ds, 1), "d00") == 0);
    CHECK(strcmp(dpr_domains_name(ds, 41), "kv") == 0 && dpr_domains_at(ds, 41) == kv);
    CHECK(strcmp(dpr_domains_name(ds, 42), "zz") == 0);
    CHECK(dpr_domains_name(ds, 43) == NULL);
    for (size_t i = 1; i < dpr_domains_count(ds); i++)
        CHECK(strcmp(dpr_domains_name(ds, i - 1), dpr_domains_name(ds, i)) < 0);

    /* invalid names create nothing */
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    CHECK_EQ_INT(dpr_domains_ensure(ds, "", &again), -EINVAL);
    CHECK_EQ_INT(dpr_domains_ensure(ds, "KV", &again), -EINVAL);
    CHECK_EQ_INT(dpr_domains_ensure(ds, "-kv", &again), -EINVAL);
    CHECK_EQ_INT(dpr_domains_ensure(ds, "k v", &again), -EINVAL);
    CHECK_EQ_INT(dpr_domains_ensure(ds, long_name, &again), -EINVAL);
    CHECK_EQ_INT(dpr_domains_ensure(ds, NULL, &again), -EINVAL);
    long_name[DPR_DOMAIN_MAX] = '\0'; /* exactly the maximum is fine */
    CHECK_EQ_INT(dpr_domains_ensure(ds, long_name, &again), 0);
    CHECK_EQ_U64(dpr_domains_count(ds), 44);
    commit(ds);
    dpr_domains_free(ds);
    dpr_domains_free(NULL);
}

/* A crash-restart (re-registration) in one domain bumps that domain's
 * world-line only; the other's state and generation do not move. */
TEST(independent_world_lines)
{
    dpr_domains *ds = NULL;
    dpr_finder *a = NULL, *b = NULL;
    dpr_finder_state b_before, b_after;
    uint64_t wl = 0, restore = 0;

    CHECK_EQ_INT(dpr_domains_new(&ds), 0);
    CHECK_EQ_INT(dpr_domains_ensure(ds, "alpha", &a), 0);
    CHECK_EQ_INT(dpr_domains_ensure(ds, "beta", &b), 0);
    for (uint64_t w = 1; w <= 3; w++) {
        CHECK_EQ_INT(dpr_finder_add_worker(a, w, NULL, NULL), 0);
        CHECK_EQ_INT(dpr_finder_add_worker(b, w, NULL, NULL), 0); /* same ids, other domain */
    }
    for (uint64_t w = 1; w <= 3; w++) {
        CHECK_EQ_INT(dpr_finder_report(a, 1, w, 4, NULL, 0), 0);
        CHECK_EQ_INT(dpr_finder_report(b, 1, w, 7, NULL, 0), 0);
    }
    commit(ds);
    CHECK_EQ_U64(dpr_finder_cut_of(a, 2), 4);
    CHECK_EQ_U64(dpr_finder_cut_of(b, 2), 7);
    CHECK_EQ_INT(state_of(ds, "beta", &b_before), 0);

    CHECK_EQ_INT(dpr_finder_add_worker(a, 2, &wl, &restore), 0);
    CHECK_EQ_U64(wl, 2);
    CHECK_EQ_U64(restore, 4);
    CHECK(dpr_domains_dirty(ds));
    CHECK(!dpr_finder_dirty(b));
    commit(ds);
    CHECK_EQ_U64(dpr_finder_world_line(a), 2);
    CHECK_EQ_U64(dpr_finder_world_line(b), 1);
    CHECK_EQ_INT(state_of(ds, "beta", &b_after), 0);
    CHECK(finder_states_equal(&b_before, &b_after));
    /* beta goes on on world-line 1 */
    CHECK_EQ_INT(dpr_finder_report(b, 1, 1, 8, NULL, 0), 0);
    CHECK_EQ_INT(dpr_finder_report(a, 1, 1, 8, NULL, 0), -ESTALE);
    dpr_finder_state_free(&b_before);
    dpr_finder_state_free(&b_after);
    dpr_domains_free(ds);
}

TEST(state_copy_and_publish)
{
    dpr_domains *ds = NULL, *back = NULL;
    dpr_finder *kv = NULL, *ss = NULL, *x = NULL;
    dpr_domains_state s1, s2, s3, s4;
    uint64_t g0;

    CHECK_EQ_INT(dpr_domains_new(&ds), 0);
    CHECK_EQ_INT(dpr_domains_get_state(ds, &s1), 0);
    CHECK_EQ_U64(s1.n, 0);
    g0 = s1.generation;
    dpr_domains_state_free(&s1);

    CHECK_EQ_INT(dpr_domains_ensure(ds, "sessions", &ss), 0);
    CHECK_EQ_INT(dpr_domains_ensure(ds, "kv", &kv), 0);
    CHECK_EQ_INT(dpr_finder_add_worker_token(kv, 5, "tok", 3, NULL, NULL), 0);
    CHECK_EQ_INT(dpr_finder_add_worker(ss, 9, NULL, NULL), 0);
    CHECK_EQ_INT(dpr_finder_report(kv, 1, 5, 3, NULL, 0), 0);
    CHECK_EQ_INT(dpr_domains_get_state(ds, &s1), 0);
    CHECK(s1.generation > g0);
    CHECK_EQ_U64(s1.n, 2);
    CHECK(strcmp(s1.domains[0].name, "kv") == 0 && strcmp(s1.domains[1].name, "sessions") == 0);
    CHECK_EQ_U64(s1.domains[0].state.nworkers, 1);
    CHECK(strcmp(s1.domains[0].state.workers[0].token, "tok") == 0);
    CHECK_EQ_U64(s1.domains[0].state.workers[0].cut, 3);
    CHECK_EQ_U64(s1.domains[1].state.workers[0].worker, 9);
    /* nothing is shown before it is published */
    CHECK_EQ_U64(dpr_finder_worker_count(kv), 0);
    CHECK_EQ_U64(dpr_finder_cut_of(kv, 5), 0);

    /* every change of any domain raises the generation */
    CHECK_EQ_INT(dpr_finder_report(ss, 1, 9, 2, NULL, 0), 0);
    CHECK_EQ_INT(dpr_domains_get_state(ds, &s2), 0);
    CHECK(s2.generation > s1.generation);
    CHECK_EQ_INT(dpr_finder_report(kv, 1, 5, 4, NULL, 0), 0);
    CHECK_EQ_INT(dpr_domains_get_state(ds, &s3), 0);
    CHECK(s3.generation > s2.generation);

    /* publishing a copy that the working state has moved past (a store that
     * saves asynchronously): that copy is shown, the rest stays dirty */
    CHECK_EQ_INT(dpr_domains_publish(ds, &s2), 0);
    CHECK(dpr_domains_dirty(ds));
    CHECK_EQ_U64(dpr_finder_cut_of(kv, 5), 3);
    CHECK_EQ_U64(dpr_finder_cut_of(ss, 9), 2);
    CHECK(!dpr_finder_dirty(ss));
    CHECK(dpr_finder_dirty(kv));
    /* an older copy than the published one is ignored */
    CHECK_EQ_INT(dpr_domains_publish(ds, &s1), 0);
    CHECK_EQ_U64(dpr_finder_cut_of(ss, 9), 2);
    CHECK_EQ_INT(dpr_domains_publish(ds, &s3), 0);
    CHECK(!dpr_domains_dirty(ds));
    CHECK_EQ_U64(dpr_finder_cut_of(kv, 5), 4);
    /* a copy newer than the working state is not ours */
    s3.generation += 10;
    CHECK_EQ_INT(dpr_domains_publish(ds, &s3), -EINVAL);
    s3.generation -= 10;
    CHECK_EQ_INT(dpr_domains_publish(NULL, &s3), -EINVAL);
    CHECK_EQ_INT(dpr_domains_publish(ds, NULL), -EINVAL);

    /* a domain that comes into being after a copy was taken: dirty until a
     * later copy is published */
    CHECK_EQ_INT(dpr_domains_ensure(ds, "x", &x), 0);
    CHECK(dpr_domains_dirty(ds));
    CHECK_EQ_INT(dpr_domains_publish(ds, &s3), 0);
    CHECK(dpr_domains_dirty(ds));
    CHECK_EQ_INT(dpr_domains_get_state(ds, &s4), 0);
    CHECK(s4.generation > s3.generation);
    CHECK_EQ_U64(s4.n, 3);
    CHECK_EQ_INT(dpr_domains_publish(ds, &s4), 0);
    CHECK(!dpr_domains_dirty(ds));

    /* the copy restores to the same state */
    CHECK_EQ_INT(dpr_domains_restore(&s4, &back), 0);
    CHECK(!dpr_domains_dirty(back));
    {
        dpr_domains_state again;
        CHECK_EQ_INT(dpr_domains_get_state(back, &again), 0);
        CHECK(domains_states_equal(&s4, &again));
        dpr_domains_state_free(&again);
    }
    CHECK_EQ_U64(dpr_finder_cut_of(dpr_domains_find(back, "kv"), 5), 4);
    CHECK_EQ_U64(dpr_finder_cut_of(dpr_domains_find(back, "sessions"), 9), 2);
    /* and goes on from its generation */
    CHECK_EQ_INT(dpr_finder_report(dpr_domains_find(back, "kv"), 1, 5, 6, NULL, 0), 0);
    {
        dpr_domains_state later;
        CHECK_EQ_INT(dpr_domains_get_state(back, &later), 0);
        CHECK(later.generation > s4.generation);
        dpr_domains_state_free(&later);
    }
    dpr_domains_free(back);

    dpr_domains_state_free(&s1);
    dpr_domains_state_free(&s2);
    dpr_domains_state_free(&s3);
    dpr_domains_state_free(&s4);
    dpr_domains_state_free(NULL);
    dpr_domains_free(ds);
}

TEST(restore_validation)
{
    dpr_finder_worker_state ws[2] = { { 1, 2, 3, "", false }, { 2, 0, 0, "t", false } };
    dpr_finder_worker_state bad_cut[1] = { { 1, 4, 3, "", false } };
    dpr_domain_state d[3];
    dpr_domains_state st = { .generation = 7, .n = 2, .domains = d };
    dpr_domains *ds = (dpr_domains *)&st; /* overwritten only on success */

    memset(d, 0, sizeof(d));
    strcpy(d[0].name, "a");
    d[0].state.world_line = 3;
    d[0].state.generation = 11;
    d[0].state.nworkers = 2;
    d[0].state.workers = ws;
    strcpy(d[1].name, "b");
    d[1].state.world_line = 1;
    CHECK_EQ_INT(dpr_domains_restore(&st, &ds), 0);
    CHECK_EQ_U64(dpr_domains_count(ds), 2);
    CHECK_EQ_U64(dpr_finder_world_line(dpr_domains_find(ds, "a")), 3);
    CHECK_EQ_U64(dpr_finder_cut_of(dpr_domains_find(ds, "a"), 1), 2);
    CHECK(!dpr_domains_dirty(ds));
    {
        dpr_domains_state again;
        CHECK_EQ_INT(dpr_domains_get_state(ds, &again), 0);
        CHECK(domains_states_equal(&st, &again));
        dpr_domains_state_free(&again);
    }
    dpr_domains_free(ds);

    ds = NULL;
    strcpy(d[1].name, "a"); /* duplicate */
    CHECK_EQ_INT(dpr_domains_restore(&st, &ds), -EINVAL);
    CHECK(ds == NULL);
    strcpy(d[0].name, "c"); /* unsorted */
    CHECK_EQ_INT(dpr_domains_restore(&st, &ds), -EINVAL);
    strcpy(d[0].name, "a");
    strcpy(d[1].name, "B"); /* invalid */
    CHECK_EQ_INT(dpr_domains_restore(&st, &ds), -EINVAL);
    strcpy(d[1].name, "");
    CHECK_EQ_INT(dpr_domains_restore(&st, &ds), -EINVAL);
    memset(d[1].name, 'b', sizeof(d[1].name)); /* not terminated */
    CHECK_EQ_INT(dpr_domains_restore(&st, &ds), -EINVAL);
    strcpy(d[1].name, "b");
    d[1].state.workers = bad_cut; /* a domain dpr_finder_restore refuses */
    d[1].state.nworkers = 1;
    CHECK_EQ_INT(dpr_domains_restore(&st, &ds), -EINVAL);
    d[1].state.nworkers = 0;
    d[1].state.world_line = 0;
    CHECK_EQ_INT(dpr_domains_restore(&st, &ds), -EINVAL);
    d[1].state.world_line = 1;
    st.domains = NULL;
    CHECK_EQ_INT(dpr_domains_restore(&st, &ds), -EINVAL);
    CHECK_EQ_INT(dpr_domains_restore(NULL, &ds), -EINVAL);
    CHECK(ds == NULL);
    /* no domains at all */
    st.n = 0;
    CHECK_EQ_INT(dpr_domains_restore(&st, &ds), 0);
    CHECK_EQ_U64(dpr_domains_count(ds), 0);
    dpr_domains_free(ds);
}

/*
 * The state of a finder from before domains: one domain "default" with
 * workers 1..6 (tokens on some), world-line 3 with two ended world-lines
 * remembered, cuts below durable versions.
 */
static dpr_domains *old_finder(void)
{
    dpr_domains *ds = NULL;
    dpr_finder *f = NULL;

    CHECK_EQ_INT(dpr_domains_ensure((dpr_domains_new(&ds), ds), DPR_DOMAIN_DEFAULT, &f), 0);
    for (uint64_t w = 1; w <= 6; w++) {
        char tok[8];
        snprintf(tok, sizeof(tok), "tok%llu", (unsigned long long)w);
        CHECK_EQ_INT(dpr_finder_add_worker_token(f, w, w % 2 ? tok : NULL, w % 2 ? 4 : 0,
                                                 NULL, NULL), 0);
        CHECK_EQ_INT(dpr_finder_report(f, 1, w, w, NULL, 0), 0);
    }
    /* cut: min rule at 1, worker 2 (<- nothing) commits up to 2, ... */
    CHECK_EQ_INT(dpr_finder_add_worker_token(f, 1, "tok1", 4, NULL, NULL), 0); /* wl 2 */
    for (uint64_t w = 1; w <= 6; w++)
        CHECK_EQ_INT(dpr_finder_report(f, 2, w, 10 + w, NULL, 0), 0);
    CHECK_EQ_INT(dpr_finder_add_worker_token(f, 3, "tok3", 4, NULL, NULL), 0); /* wl 3 */
    /* durable above the cut for some: waiting for a dependency (within
     * what becomes one domain: sessions never spanned deployments) */
    {
        dpr_dep on3 = { 3, 30 }, on1 = { 1, 31 };
        CHECK_EQ_INT(dpr_finder_report(f, 3, 4, 30, &on3, 1), 0);
        CHECK_EQ_INT(dpr_finder_report(f, 3, 5, 31, &on1, 1), 0);
    }
    commit(ds);
    return ds;
}

TEST(split)
{
    dpr_domains *ds = old_finder();
    dpr_finder *def = dpr_domains_find(ds, DPR_DOMAIN_DEFAULT), *kv, *ss;
    dpr_finder_state before, st_kv, st_def, st_ss;
    dpr_domains_state all_before, all_after;
    const uint64_t kv_workers[] = { 5, 1, 2, 1 }; /* unsorted, with a duplicate */
    const uint64_t ss_workers[] = { 3, 4, 6 };
    uint64_t wl = 0, restore = 0;

    CHECK_EQ_INT(state_of(ds, DPR_DOMAIN_DEFAULT, &before), 0);
    CHECK_EQ_U64(before.world_line, 3);
    CHECK_EQ_U64(before.nprefixes, 2);
    CHECK(worker_in(&before, 5)->durable > worker_in(&before, 5)->cut); /* the case we keep */
    CHECK_EQ_INT(dpr_domains_get_state(ds, &all_before), 0);

    /* failures change nothing */
    CHECK_EQ_INT(dpr_domains_split(ds, "nope", "kv", kv_workers, 4), -ENOENT);
    {
        const uint64_t unknown[] = { 1, 99 };
        CHECK_EQ_INT(dpr_domains_split(ds, DPR_DOMAIN_DEFAULT, "kv", unknown, 2), -ENOENT);
    }
    CHECK_EQ_INT(dpr_domains_split(ds, DPR_DOMAIN_DEFAULT, DPR_DOMAIN_DEFAULT, kv_workers, 4),
                 -EEXIST);
    CHECK_EQ_INT(dpr_domains_split(ds, DPR_DOMAIN_DEFAULT, "Bad", kv_workers, 4), -EINVAL);
    CHECK_EQ_INT(dpr_domains_split(ds, "Bad", "kv", kv_workers, 4), -EINVAL);
    CHECK_EQ_INT(dpr_domains_split(ds, DPR_DOMAIN_DEFAULT, "kv", NULL, 4), -EINVAL);
    CHECK_EQ_INT(dpr_domains_split(NULL, DPR_DOMAIN_DEFAULT, "kv", kv_workers, 4), -EINVAL);
    {
        dpr_finder *other = NULL;
        CHECK_EQ_INT(dpr_domains_ensure(ds, "taken", &other), 0);
        commit(ds);
        dpr_domains_state_free(&all_before);
        CHECK_EQ_INT(dpr_domains_get_state(ds, &all_before), 0);
        CHECK_EQ_INT(dpr_domains_split(ds, DPR_DOMAIN_DEFAULT, "taken", kv_workers, 4),
                     -EEXIST);
    }
    /* unsaved changes in from: refused until published */
    CHECK_EQ_INT(dpr_finder_report(def, 3, 6, 40, NULL, 0), 0);
    CHECK_EQ_INT(dpr_domains_split(ds, DPR_DOMAIN_DEFAULT, "kv", kv_workers, 4), -EBUSY);
    commit(ds);
    dpr_domains_state_free(&all_before);
    dpr_finder_state_free(&before);
    CHECK_EQ_INT(dpr_domains_get_state(ds, &all_before), 0);
    CHECK_EQ_INT(state_of(ds, DPR_DOMAIN_DEFAULT, &before), 0);
    CHECK(dpr_domains_find(ds, DPR_DOMAIN_DEFAULT) == def); /* nothing was replaced */
    CHECK_EQ_INT(dpr_domains_get_state(ds, &all_after), 0);
    CHECK(domains_states_equal(&all_before, &all_after));
    dpr_domains_state_free(&all_after);

    /* kv takes workers 1, 2, 5 */
    CHECK_EQ_INT(dpr_domains_split(ds, DPR_DOMAIN_DEFAULT, "kv", kv_workers, 4), 0);
    CHECK(dpr_domains_dirty(ds));
    kv = dpr_domains_find(ds, "kv");
    def = dpr_domains_find(ds, DPR_DOMAIN_DEFAULT);
    CHECK(kv != NULL && def != NULL);
    CHECK_EQ_INT(state_of(ds, "kv", &st_kv), 0);
    CHECK_EQ_INT(state_of(ds, DPR_DOMAIN_DEFAULT, &st_def), 0);
    CHECK_EQ_U64(st_kv.world_line, before.world_line);
    CHECK_EQ_U64(st_def.world_line, before.world_line);
    CHECK_EQ_U64(st_kv.nworkers, 3);
    CHECK_EQ_U64(st_def.nworkers, 3);
    for (uint64_t w = 1; w <= 6; w++) {
        const dpr_finder_worker_state *was = worker_in(&before, w);
        const dpr_finder_worker_state *now =
            worker_in(w == 1 || w == 2 || w == 5 ? &st_kv : &st_def, w);
        CHECK(now != NULL);
        if (!now)
            continue;
        CHECK_EQ_U64(now->cut, was->cut);
        CHECK_EQ_U64(now->durable, was->durable);
        CHECK(strcmp(now->token, was->token) == 0);
        CHECK(worker_in(w == 1 || w == 2 || w == 5 ? &st_def : &st_kv, w) == NULL);
    }
    /* the published views show the same (the split's state is the one
     * published before it, only divided) */
    CHECK_EQ_U64(dpr_finder_world_line(kv), 3);
    CHECK_EQ_U64(dpr_finder_cut_of(kv, 5), worker_in(&before, 5)->cut);
    CHECK_EQ_U64(dpr_finder_worker_count(kv), 3);
    CHECK_EQ_U64(dpr_finder_worker_count(def), 3);
    /* prefixes: every ended world-line, restricted to the domain's workers */
    CHECK_EQ_U64(st_kv.nprefixes, before.nprefixes);
    CHECK_EQ_U64(st_def.nprefixes, before.nprefixes);
    for (size_t i = 0; i < before.nprefixes; i++) {
        const dpr_finder_prefix *p = &before.prefixes[i];
        size_t in_kv = 0;
        CHECK_EQ_U64(st_kv.prefixes[i].world_line, p->world_line);
        CHECK_EQ_U64(st_def.prefixes[i].world_line, p->world_line);
        for (size_t j = 0; j < p->n; j++) {
            uint64_t w = p->cut[j].worker;
            const dpr_finder_prefix *q = w == 1 || w == 2 || w == 5 ? &st_kv.prefixes[i]
                                                                     : &st_def.prefixes[i];
            bool found = false;
            for (size_t k = 0; k < q->n; k++)
                found |= q->cut[k].worker == w && q->cut[k].version == p->cut[j].version;
            CHECK(found);
            in_kv += w == 1 || w == 2 || w == 5;
        }
        CHECK_EQ_U64(st_kv.prefixes[i].n, in_kv);
        CHECK_EQ_U64(st_def.prefixes[i].n, p->n - in_kv);
    }
    {
        const dpr_dep *cut = NULL;
        size_t n = 0;
        CHECK_EQ_INT(dpr_finder_prefix_cut(kv, 2, &cut, &n), 0);
        CHECK_EQ_INT(dpr_finder_prefix_cut(kv, 3, &cut, &n), -ENOENT);
    }
    /* the split state saves and comes back */
    CHECK_EQ_INT(dpr_domains_get_state(ds, &all_after), 0);
    CHECK(all_after.generation > all_before.generation);
    CHECK_EQ_U64(all_after.n, 3);
    CHECK_EQ_INT(dpr_domains_publish(ds, &all_after), 0);
    CHECK(!dpr_domains_dirty(ds));
    /* a copy from before the split is not published onto the new cores */
    CHECK_EQ_INT(dpr_domains_publish(ds, &all_before), 0);
    CHECK_EQ_U64(dpr_finder_worker_count(dpr_domains_find(ds, DPR_DOMAIN_DEFAULT)), 3);
    {
        dpr_domains *back = NULL;
        dpr_domains_state again;
        CHECK_EQ_INT(dpr_domains_restore(&all_after, &back), 0);
        CHECK_EQ_INT(dpr_domains_get_state(back, &again), 0);
        CHECK(domains_states_equal(&all_after, &again));
        dpr_domains_state_free(&again);
        dpr_domains_free(back);
    }

    /* the moved workers go on in their domain: tokens kept, reports commit,
     * a crash-restart in kv leaves default alone */
    CHECK_EQ_INT(dpr_finder_add_worker(kv, 1, NULL, NULL), -EACCES);
    CHECK_EQ_INT(dpr_finder_report(kv, 3, 5, 32, NULL, 0), 0);
    CHECK_EQ_INT(dpr_finder_report(kv, 3, 1, 40, NULL, 0), 0);
    CHECK_EQ_INT(dpr_finder_report(kv, 3, 2, 40, NULL, 0), 0);
    CHECK_EQ_INT(dpr_finder_add_worker_token(kv, 5, "tok5", 4, &wl, &restore), 0);
    CHECK_EQ_U64(wl, 4);
    CHECK(restore >= worker_in(&before, 5)->cut);
    commit(ds);
    CHECK_EQ_U64(dpr_finder_world_line(kv), 4);
    CHECK_EQ_U64(dpr_finder_world_line(dpr_domains_find(ds, DPR_DOMAIN_DEFAULT)), 3);
    /* reports naming a worker now in another domain are refused */
    {
        dpr_dep dep = { 4, 1 };
        CHECK_EQ_INT(dpr_finder_report(kv, 4, 1, 41, &dep, 1), -ENXIO);
    }

    /* the rest moves out: default has no workers left and is dropped */
    CHECK_EQ_INT(dpr_domains_split(ds, DPR_DOMAIN_DEFAULT, "sessions", ss_workers, 3), 0);
    CHECK(dpr_domains_find(ds, DPR_DOMAIN_DEFAULT) == NULL);
    CHECK(dpr_domains_find(ds, "kv") == kv); /* untouched */
    ss = dpr_domains_find(ds, "sessions");
    CHECK(ss != NULL);
    CHECK_EQ_INT(state_of(ds, "sessions", &st_ss), 0);
    CHECK_EQ_U64(st_ss.world_line, 3);
    CHECK_EQ_U64(st_ss.nworkers, 3);
    CHECK(strcmp(worker_in(&st_ss, 3)->token, "tok3") == 0);
    CHECK_EQ_U64(dpr_domains_count(ds), 3); /* kv, sessions, taken */
    commit(ds);
    /* default can be made again (by a worker of its own), at world-line 1 */
    {
        dpr_finder *d2 = NULL;
        dpr_domains_state s;
        CHECK_EQ_INT(dpr_domains_ensure(ds, DPR_DOMAIN_DEFAULT, &d2), 0);
        CHECK_EQ_U64(dpr_finder_world_line(d2), 1);
        /* a copy from before the drop is not published onto it */
        CHECK_EQ_INT(dpr_domains_get_state(ds, &s), 0);
        CHECK_EQ_INT(dpr_domains_publish(ds, &all_after), 0);
        CHECK(dpr_domains_dirty(ds));
        CHECK_EQ_INT(dpr_domains_publish(ds, &s), 0);
        CHECK(!dpr_domains_dirty(ds));
        dpr_domains_state_free(&s);
    }

    /* moving no worker makes an empty domain on from's world-line */
    CHECK_EQ_INT(dpr_domains_split(ds, "kv", "empty", NULL, 0), 0);
    CHECK(dpr_domains_find(ds, "kv") == kv);
    CHECK_EQ_U64(dpr_finder_world_line(dpr_domains_find(ds, "empty")), 4);
    CHECK_EQ_U64(dpr_finder_worker_count(dpr_domains_find(ds, "empty")), 0);
    commit(ds);

    dpr_finder_state_free(&before);
    dpr_finder_state_free(&st_kv);
    dpr_finder_state_free(&st_def);
    dpr_finder_state_free(&st_ss);
    dpr_domains_state_free(&all_before);
    dpr_domains_state_free(&all_after);
    dpr_domains_free(ds);
}

int main(void)
{
    RUN(create_and_find);
    RUN(independent_world_lines);
    RUN(state_copy_and_publish);
    RUN(restore_validation);
    RUN(split);
    return check_summary("domains");
}
