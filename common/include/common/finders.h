/*
 * finders.h - where a cluster's finder is: a list of finder addresses (any
 * agents of the cluster, "HOST:PORT,HOST:PORT,..."), the one a client uses
 * now, and what the finder's redirect errors mean. Pure: no I/O; the
 * finder clients (dpr-kv's link, libdpr's client) do the connecting.
 *
 * A cluster's finder runs on the Raft leader's agent; every other agent
 * answers any request with
 *   -NOTLEADER HOST:PORT   the leader's finder: ask there instead;
 *   -TRYAGAIN ...          no finder yet (an election, no quorum, a new
 *                          leader's barrier): ask again a little later.
 * A client follows NOTLEADER at once (at most DPR_FINDERS_MAX_HOPS times in
 * a row, then it pauses like after TRYAGAIN) and, when a connection fails,
 * goes on with the next address of its list.
 */
#ifndef COMMON_FINDERS_H
#define COMMON_FINDERS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/addr.h"
#include "dpr/err.h"

#define DPR_FINDERS_MAX 16
#define DPR_FINDERS_MAX_HOPS 4

typedef struct dpr_finders {
    dpr_hostport list[DPR_FINDERS_MAX];
    size_t n;
    size_t cur;              /* list[cur] unless redirected */
    bool redirected;         /* to `leader` (a NOTLEADER answer) */
    dpr_hostport leader;
    unsigned hops;           /* NOTLEADER answers followed in a row */
    char text[DPR_ADDR_STR_MAX]; /* the current target, for messages */
} dpr_finders;

/* What an error reply says about where the finder is. */
typedef enum dpr_finders_answer {
    DPR_FINDERS_OTHER,       /* not a redirect: the finder's own answer */
    DPR_FINDERS_MOVED,       /* NOTLEADER: the target changed, ask again now */
    DPR_FINDERS_RETRY,       /* TRYAGAIN, or too many hops: ask again later */
} dpr_finders_answer;

/* Parses "HOST:PORT[,HOST:PORT...]" (at most DPR_FINDERS_MAX; spaces
 * around commas allowed). 0, or -EINVAL with a message naming the bad
 * entry. */
int dpr_finders_parse(const char *list, dpr_finders *out, dpr_err *err);
/* After filling list[0..n) by hand: start at the first address. */
void dpr_finders_reset(dpr_finders *f);
/* The address to ask now. */
const dpr_hostport *dpr_finders_current(const dpr_finders *f);
/* "HOST:PORT" of the current target (for messages). */
const char *dpr_finders_text(const dpr_finders *f);
/* A connection to the current target failed: forget a redirect and move
 * on to the next address of the list. */
void dpr_finders_next(dpr_finders *f);
/* An answer that was not an error arrived: the target is the finder. */
void dpr_finders_answered(dpr_finders *f);
/* An error reply (its text without '-' and line end, n bytes): a redirect
 * is followed (MOVED), TRYAGAIN moves to the next address (RETRY). */
dpr_finders_answer dpr_finders_on_error(dpr_finders *f, const char *text, size_t n);

#endif
