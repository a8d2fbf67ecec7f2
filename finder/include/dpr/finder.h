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

/* The durable part of the finder: what a store saves and loads. */
typedef struct dpr_finder_worker_state {
    uint64_t worker;
    uint64_t cut;
    uint64_t durable;
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
 * -EINVAL for inconsistent state (cut > durable, duplicate ids, world-line 0). */
int dpr_finder_restore(const dpr_finder_state *st, dpr_finder **out);
void dpr_finder_free(dpr_finder *f);

/*
 * Registers worker. New worker: *world_line = current, *restore = 0.
 * Known worker (restart after a crash): bumps the world-line, the cluster
 * rolls back to the current (working) cut, *restore = cut[worker].
 * A worker removed earlier in this finder's life resumes at its final cut:
 * no new world-line, *restore = that cut. world_line and restore may be NULL.
 */
int dpr_finder_add_worker(dpr_finder *f, uint64_t worker, uint64_t *world_line,
                          uint64_t *restore);
/* Forgets worker (-ENOENT if unknown; -EBUSY, changing nothing, while one of
 * its reported checkpoints is not yet in the cut). Dependencies on its versions at or
 * below its cut stay satisfied; dependencies above it never commit (that
 * memory is not part of the durable state: remove a worker only once its
 * last checkpoint is in the cut). */
int dpr_finder_remove_worker(dpr_finder *f, uint64_t worker);

/*
 * Checkpoint `version` of worker is durable and depends on deps[0..ndeps).
 * Returns 0 when accepted or already known (a resend), -ESTALE when dropped
 * because it comes from an older world-line and lies above the cut, -ENOENT
 * for an unregistered worker, -EINVAL for version 0, world-line 0, a
 * world-line newer than the finder's, or a dependency that points forward
 * (dep version > version). Dependencies with version 0 and on the worker
 * itself are ignored (the implicit edge covers the latter). A rejected
 * report changes nothing. May raise the working cut.
 */
int dpr_finder_report(dpr_finder *f, uint64_t world_line, uint64_t worker,
                      uint64_t version, const dpr_dep *deps, size_t ndeps);

/* Working state changed since the last publish? */
bool dpr_finder_dirty(const dpr_finder *f);
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
uint64_t dpr_finder_max_version(const dpr_finder *f); /* max durable version */
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

#endif
