/* problems.c - see problems.h. */
#include "problems.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void agent_problems_init(agent_problems *p)
{
    memset(p, 0, sizeof(*p));
}

void agent_problems_add(agent_problems *p, const char *where, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    agent_problems_addv(p, where, fmt, ap);
    va_end(ap);
}

void agent_problems_addv(agent_problems *p, const char *where, const char *fmt, va_list ap)
{
    char msg[512];
    agent_problem *v;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        v = realloc(p->v, cap * sizeof(*v));
        if (!v) {
            p->oom = true;
            return;
        }
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n].where = strdup(where ? where : "");
    p->v[p->n].message = strdup(msg);
    if (!p->v[p->n].where || !p->v[p->n].message) {
        free(p->v[p->n].where);
        free(p->v[p->n].message);
        p->oom = true;
        return;
    }
    p->n++;
}

void agent_problems_free(agent_problems *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].where);
        free(p->v[i].message);
    }
    free(p->v);
    memset(p, 0, sizeof(*p));
}
