/*
 * problems.h - a list of (where, message) problems, for validators that
 * report every problem at once (spec fields, config settings): the control
 * API sends it as a spec_invalid reply's details, --check-config prints it.
 * One failure is a dpr_err (dpr/err.h); this is for many at once.
 */
#ifndef AGENT_PROBLEMS_H
#define AGENT_PROBLEMS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct agent_problem {
    char *where;   /* "cachestores[0].shards", or "FILE:LINE" */
    char *message;
} agent_problem;

typedef struct agent_problems {
    size_t n, cap;
    agent_problem *v;
    bool oom;      /* a problem could not be recorded */
} agent_problems;

void agent_problems_init(agent_problems *p);
/* Records one problem; on allocation failure sets p->oom. */
void agent_problems_add(agent_problems *p, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void agent_problems_addv(agent_problems *p, const char *where, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void agent_problems_free(agent_problems *p);

#endif
