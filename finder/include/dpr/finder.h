/*
 * finder.h - the DPR finder core: the cut algorithm and world-lines, no I/O.
 *
 * Workers register (dpr_finder_add_worker) and report durable checkpoints
 * (dpr_finder_report). The finder keeps, per worker, its durable version
 * (newest reported checkpoint) and its cut version, and computes the cut:
 *
 *  - exact rule: from each worker's oldest uncommitted reported version, walk
 *    the precedence graph (its dependencies, plus the implicit edge to the
 *    worker's own earlier versions); when every version in the closure is
 *    durable, commit the whole closure. A dependency (u, x) is committed when
 *    cut[u] >= x and durable when durable[u] >= x.
 *  - minimum rule: V = min over registered workers of durable[w]; every
 *    worker's cut is raised to at least V. Always valid because dependencies
 *    never point forward; it is the only rule for versions whose graph was
 *    lost in a restart (versions <= the durable version loaded from storage).
 *
 * The cut only grows. World-lines: a worker that registers again (it crashed
 * and restarted) bumps the world-line; every worker must roll back to its cut
 * version, uncommitted reports are forgotten and durable[w] falls back to
 * cut[w]. Reports from an older world-line above the cut are dropped.
 *
 * Durability: the finder has a working state and a published state.
 * Mutations change the working state; after the caller has made the working
 * state durable (dpr_finder_get_state + a store's save), dpr_finder_publish()
 * exposes it. The query functions below only show published values, so no
 * one is told about a cut or world-line that is not durable.
 *
 * All functions return 0 or a negative errno unless said otherwise.
 */
#ifndef DPR_FINDER_H
#define DPR_FINDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpr/depset.h"

#define DPR_FINDER_FIRST_WORLD_LINE 1

typedef struct dpr_finder dpr_finder;

/*
 * Registration tokens. A worker may register with a token (its owner's
 * secret, e.g. the agent that runs the instance): from then on only a
 * caller presenting the same token may register it again (which bumps the
 * world-line) or remove it. A token is 1..DPR_FINDER_TOKEN_MAX visible
 * ASCII characters (0x21..0x7e: no spaces, no control bytes); the finder
 * compares them in constant time and never logs or returns them.
 */
#define DPR_FINDER_TOKEN_MAX 128

/* The durable part of the finder: what a store saves and loads. */
typedef struct dpr_finder_worker_state {
    uint64_t worker;
    uint64_t cut;
    uint64_t durable;
    char token[DPR_FINDER_TOKEN_MAX + 1]; /* NUL-terminated; "" = registered without */
    bool away; /* left on purpose (dpr_finder_leave_worker); then cut == durable */
} dpr_finder_worker_state;

/* How many ended world-lines the finder remembers the prefix of. */
#define DPR_FINDER_MAX_PREFIXES 16

/* The surviving prefix of a world-line that ended: the cut every worker
 * rolled back to when the world-line moved on. A session that ran on that
 * world-line needs exactly this cut (not a later one) to tell which of its
 * operations survived. */
typedef struct dpr_finder_prefix {
    uint64_t world_line; /* the world-line that ended */
    size_t n;
    dpr_dep *cut;        /* sorted by worker, versions > 0 */
} dpr_finder_prefix;

typedef struct dpr_finder_state {
    uint64_t world_line;
    uint64_t generation;  /* bumped by every change of the working state */
    size_t nworkers;
    dpr_finder_worker_state *workers; /* registered workers, sorted by id */
    size_t nprefixes;     /* at most DPR_FINDER_MAX_PREFIXES */
    dpr_finder_prefix *prefixes; /* newest world-lines that ended, oldest first */
} dpr_finder_state;

void dpr_finder_state_free(dpr_finder_state *st);

/* A fresh finder: world-line 1, no workers; published state == working state. */
int dpr_finder_new(dpr_finder **out);
/* A finder restarted from stored state: the graph is lost, so versions at or
 * below each stored durable version commit through the minimum rule only.
 * -EINVAL for inconsistent state (cut > durable, duplicate ids, world-line 0,
 * a token that is not valid or not NUL-terminated). */
int dpr_finder_restore(const dpr_finder_state *st, dpr_finder **out);
void dpr_finder_free(dpr_finder *f);

/* Is token[0..len) a valid registration token (see DPR_FINDER_TOKEN_MAX)? */
bool dpr_finder_token_valid(const char *token, size_t len);

/*
 * Registers worker, presenting token[0..token_len) (token NULL or
 * token_len 0: none; an invalid token is -EINVAL).
 * New worker: registered with the token presented; *world_line = current,
 * *restore = 0. A worker removed earlier in this finder's life resumes at
 * its final cut: no new world-line, *restore = that cut (it, too, takes the
 * token presented).
 * Known worker (restart after a crash): bumps the world-line, the cluster
 * rolls back to the current (working) cut, *restore = cut[worker]. If the
 * worker was registered with a token, the same token must be presented:
 * otherwise -EACCES and nothing changes. A known worker registered without
 * a token takes the token presented (if any).
 * A worker that is away (dpr_finder_leave_worker: a planned stop) comes
 * back: the mark is cleared, no new world-line, *restore = its cut (its
 * last checkpoint); the token rule is the same.
 * world_line and restore may be NULL.
 */
int dpr_finder_add_worker_token(dpr_finder *f, uint64_t worker, const char *token,
                                size_t token_len, uint64_t *world_line, uint64_t *restore);
/* dpr_finder_add_worker_token without a token. */
int dpr_finder_add_worker(dpr_finder *f, uint64_t worker, uint64_t *world_line,
                          uint64_t *restore);
/* Forgets worker (-ENOENT if unknown; -EACCES, changing nothing, when it was
 * registered with a token and token[0..token_len) is not that token; -EBUSY,
 * changing nothing, while one of its reported checkpoints is not yet in the
 * cut; -EINVAL for an invalid token). Its token is forgotten with it.
 * Dependencies on its versions at or below its cut stay satisfied;
 * dependencies above it never commit (that memory is not part of the
 * durable state: remove a worker only once its last checkpoint is in the
 * cut). */
int dpr_finder_remove_worker_token(dpr_finder *f, uint64_t worker, const char *token,
                                   size_t token_len);
/* dpr_finder_remove_worker_token without a token. */
int dpr_finder_remove_worker(dpr_finder *f, uint64_t worker);

/*
 * A planned stop: worker leaves on purpose, with its last reported
 * checkpoint in the cut (it stopped serving and checkpointed first), and
 * will come back with exactly that state (dpr_finder_add_worker_token then
 * needs no new world-line). Marks it *away* (durable state); it stays
 * registered (its cut, its token, its place in the minimum rule) and
 * reports nothing until it is added again. Returns 0 (also when it is
 * away already: nothing changes); -ENOENT when not registered; -EACCES
 * (nothing changes) when it was registered with a token and
 * token[0..token_len) is not that token; -EBUSY (nothing changes) while
 * one of its reported checkpoints is not yet in the cut; -EINVAL for an
 * invalid token.
 */
int dpr_finder_leave_worker(dpr_finder *f, uint64_t worker, const char *token,
                            size_t token_len);
/* Is worker registered and away (working state)? */
bool dpr_finder_is_away(const dpr_finder *f, uint64_t worker);

/*
 * Fencing: the owner moved worker (e.g. to another node after its node was
 * lost) and gives the record a new token, token[0..token_len): from then
 * on only the new incarnation, presenting the new token, may register it
 * again, and the server refuses the reports of connections that
 * authenticated with the old one (dpr_finder_token_check at every report).
 * Nothing else changes: no new world-line, cut and versions as they are.
 * The token is part of the durable state (the working state changes, so
 * save and publish as after any mutation; the same token again changes
 * nothing). Returns 0; -EINVAL for an invalid token (dpr_finder_token_valid);
 * -ENOENT when worker is not registered (unknown, or retired); -ENOMEM
 * (nothing changed).
 */
int dpr_finder_set_token(dpr_finder *f, uint64_t worker, const char *token, size_t token_len);
/*
 * Is worker registered with exactly token[0..token_len) (working state,
 * compared in constant time)? 0 when it is; -EACCES when it is registered
 * with another token or without one; -ENOENT when it is not registered.
 * token_len 0 asks about "no token": 0 when the worker is registered
 * without one, -EACCES when it has one. A token that is not valid matches
 * no worker (-EACCES). Changes nothing.
 */
int dpr_finder_token_check(const dpr_finder *f, uint64_t worker, const char *token,
                           size_t token_len);

/*
 * Checkpoint `version` of worker is durable and depends on deps[0..ndeps).
 * Returns 0 when accepted or already known (a resend), -ESTALE when dropped
 * because it comes from an older world-line and lies above the cut, -ENOENT
 * for an unregistered worker, -EINVAL for version 0, world-line 0, a
 * world-line newer than the finder's, or a dependency that points forward
 * (dep version > version), -ENXIO for a dependency on a worker the finder
 * does not know (dpr_finder_knows_worker: no real session can depend on a
 * worker that never registered, and such a dependency would hold the
 * reporter's cut back), -EPERM for a new version of a worker that is away
 * (it left with its last checkpoint; a resend still returns 0). Dependencies with version 0 and on the worker
 * itself are ignored (the implicit edge covers the latter). A rejected
 * report changes nothing. May raise the working cut.
 */
int dpr_finder_report(dpr_finder *f, uint64_t world_line, uint64_t worker,
                      uint64_t version, const dpr_dep *deps, size_t ndeps);

/* Working state changed since the last publish? */
bool dpr_finder_dirty(const dpr_finder *f);
/* The working state's generation (what dpr_finder_get_state would copy). */
uint64_t dpr_finder_generation(const dpr_finder *f);
/* Copy of the working state, to be saved. Free with dpr_finder_state_free. */
int dpr_finder_get_state(const dpr_finder *f, dpr_finder_state *out);
/* The working state of generation `generation` is durable: publish it.
 * Returns 0 (also when generation is older than the published one: ignored),
 * -ESTALE when the working state changed since that generation (publishing
 * it would expose a state that is not durable: save again, or use
 * dpr_finder_publish_state with the saved copy), -ENOMEM (nothing
 * published). */
int dpr_finder_publish(dpr_finder *f, uint64_t generation);
/* Publishes a saved copy st (from dpr_finder_get_state of this finder), for
 * stores that save asynchronously while the working state moves on. Ignored
 * (0) when older than the published state; -EINVAL when newer than the
 * working state. */
int dpr_finder_publish_state(dpr_finder *f, const dpr_finder_state *st);

/* Published view (worker_count too: the workers of the published state). */
uint64_t dpr_finder_world_line(const dpr_finder *f);
/* The highest durable version any worker has reported in this finder's life
 * (the highest stored one after a restart). A rollback does not lower it:
 * the versions it forgot were seen, and the workers number their next
 * versions above them, so shards use it to judge what a real session can
 * have seen (worker.h, dpr_worker_bounds). */
uint64_t dpr_finder_max_version(const dpr_finder *f);
/* Published cut: worker -> version (workers at 0 are absent). */
const dpr_depset *dpr_finder_cut(const dpr_finder *f);
/* Published cut entry of one worker, 0 if unknown. */
uint64_t dpr_finder_cut_of(const dpr_finder *f, uint64_t worker);
size_t dpr_finder_worker_count(const dpr_finder *f);
/*
 * Published prefix of an ended world-line: *cut (n entries, sorted by
 * worker, owned by the finder, valid until its next mutation). -ENOENT if
 * world_line has not ended (it is current, in the future, or 0); -ESRCH if
 * it ended so long ago that it is forgotten (more than
 * DPR_FINDER_MAX_PREFIXES world-lines back).
 */
int dpr_finder_prefix_cut(const dpr_finder *f, uint64_t world_line, const dpr_dep **cut,
                          size_t *n);
/* Is worker registered (working state)? */
bool dpr_finder_has_worker(const dpr_finder *f, uint64_t worker);
/* Does the finder know worker: registered now, or removed during this
 * finder's life (working state)? Dependencies may name only those. */
bool dpr_finder_knows_worker(const dpr_finder *f, uint64_t worker);

/*
 * What DPR.SYNC shows, from the working state (equal to the published state
 * unless dpr_finder_dirty): the world-line, the max version (never lower
 * than dpr_finder_max_version) and every registered worker with its cut,
 * version 0 for one with nothing committed yet, sorted by worker id. *cut
 * is allocated (the caller frees it with free(); NULL when *n is 0).
 */
int dpr_finder_sync_view(const dpr_finder *f, uint64_t *world_line, uint64_t *max_version,
                         dpr_dep **cut, size_t *n);

#endif
