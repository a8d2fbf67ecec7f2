/*
 * states_equal.h - comparisons of the finder's durable states for the
 * finder's unit suites (test_store.c, test_domains.c): every field, tokens
 * and prefixes included.
 */
#ifndef TESTS_FINDER_STATES_EQUAL_H
#define TESTS_FINDER_STATES_EQUAL_H

#include <string.h>

#include "dpr/domains.h"
#include "dpr/finder.h"

static inline int finder_states_equal(const dpr_finder_state *a, const dpr_finder_state *b)
{
    if (a->world_line != b->world_line || a->generation != b->generation ||
        a->nworkers != b->nworkers || a->nprefixes != b->nprefixes)
        return 0;
    for (size_t i = 0; i < a->nworkers; i++)
        if (a->workers[i].worker != b->workers[i].worker ||
            a->workers[i].cut != b->workers[i].cut ||
            a->workers[i].durable != b->workers[i].durable ||
            a->workers[i].away != b->workers[i].away ||
            strcmp(a->workers[i].token, b->workers[i].token) != 0)
            return 0;
    for (size_t i = 0; i < a->nprefixes; i++) {
        const dpr_finder_prefix *x = &a->prefixes[i], *y = &b->prefixes[i];
        if (x->world_line != y->world_line || x->n != y->n)
            return 0;
        for (size_t j = 0; j < x->n; j++)
            if (x->cut[j].worker != y->cut[j].worker || x->cut[j].version != y->cut[j].version)
                return 0;
    }
    return 1;
}

static inline int domains_states_equal(const dpr_domains_state *a, const dpr_domains_state *b)
{
    if (a->generation != b->generation || a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->domains[i].name, b->domains[i].name) != 0 ||
            !finder_states_equal(&a->domains[i].state, &b->domains[i].state))
            return 0;
    return 1;
}

#endif
