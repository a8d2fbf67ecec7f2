/* state.c - see state.h. */
#include "state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void agent_state_init(agent_state *st)
{
    memset(st, 0, sizeof(*st));
    st->next_worker = 1;
}

void agent_state_free(agent_state *st)
{
    agent_spec_free(&st->spec);
    free(st->inst);
    free(st->retiring);
    agent_state_init(st);
}

static int dup_array(const agent_instance *src, size_t n, agent_instance **dst)
{
    *dst = NULL;
    if (n == 0)
        return 0;
    *dst = malloc(n * sizeof(**dst));
    if (!*dst)
        return -ENOMEM;
    memcpy(*dst, src, n * sizeof(**dst));
    return 0;
}

int agent_state_copy(const agent_state *src, agent_state *dst)
{
    agent_state s;

    agent_state_init(&s);
    s.generation = src->generation;
    s.next_worker = src->next_worker;
    s.ninst = src->ninst;
    s.nretiring = src->nretiring;
    if ((src->spec.name && agent_spec_copy(&src->spec, &s.spec) < 0) ||
        dup_array(src->inst, src->ninst, &s.inst) < 0 ||
        dup_array(src->retiring, src->nretiring, &s.retiring) < 0) {
        agent_state_free(&s);
        return -ENOMEM;
    }
    *dst = s;
    return 0;
}

static int find(const agent_instance *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return (int)i;
    return -1;
}

int agent_state_find(const agent_state *st, const char *name)
{
    return find(st->inst, st->ninst, name);
}

int agent_state_find_retiring(const agent_state *st, const char *name)
{
    return find(st->retiring, st->nretiring, name);
}

void agent_state_drop_retiring(agent_state *st, const char *name, uint64_t worker)
{
    size_t i;

    for (i = 0; i < st->nretiring; i++)
        if (strcmp(st->retiring[i].name, name) == 0 && st->retiring[i].worker == worker)
            break;
    if (i == st->nretiring)
        return;
    memmove(&st->retiring[i], &st->retiring[i + 1],
            (st->nretiring - (size_t)i - 1) * sizeof(*st->retiring));
    st->nretiring--;
}

static int cmp_inst(const void *a, const void *b)
{
    return strcmp(((const agent_instance *)a)->name, ((const agent_instance *)b)->name);
}

void agent_instances_sort(agent_instance *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_inst);
}
