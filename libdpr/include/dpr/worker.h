/*
 * worker.h - the worker (cache-store shard) side of DPR, without I/O.
 *
 * The worker owns a sequence of versions. Batches execute in the *open*
 * version. A checkpoint *seals* the open version v (the state image is taken
 * at that boundary) and opens the next one; when the image of v is on disk
 * the checkpoint *completes* and v is reported to the finder together with
 * its dependency set. Version numbers only grow but may skip (fast-forward).
 *
 * Invariant that makes sparse version numbers safe: a version in which a
 * DPR batch executed (a version number some session was told) is always
 * sealed under exactly that number. The open version is relabelled upwards
 * only while no batch ran in it (untracked plain operations do not count:
 * nobody holds their version number); otherwise a fast-forward seals it
 * first (dpr_worker_execute returns -EAGAIN). So
 * checkpoint N holds every operation of every version <= N, and a cut
 * version c is restored from the newest checkpoint <= c.
 *
 * The implicit edge from a version to the worker's own previous version is
 * never stored: the finder applies it.
 *
 * All functions return 0 or a negative errno.
 */
#ifndef DPR_WORKER_H
#define DPR_WORKER_H

#include "dpr/export.h"

#include <stdbool.h>
#include <stdint.h>

#include "dpr/depset.h"
#include "dpr/err.h"
#include "dpr/wire.h"

typedef struct dpr_worker_version {
    uint64_t version;
    bool durable;      /* checkpoint completed (on disk) */
    dpr_depset deps;   /* other workers' versions this version depends on */
} dpr_worker_version;

typedef struct dpr_worker {
    /* read-only for callers */
    uint64_t id;
    uint64_t domain;         /* id of the worker's domain (dpr_domain_id, domain.h) */
    uint64_t world_line;
    uint64_t version;        /* the open version */
    uint64_t open_batches;   /* batches executed in the open version */
    dpr_depset open_deps;    /* dependencies of the open version */
    uint64_t durable;        /* newest completed checkpoint (0: none) */
    uint64_t cut;            /* own entry of the newest cut seen */
    /* sealed versions above the cut, oldest first */
    dpr_worker_version *sealed;
    size_t nsealed, cap;
    /* private */
    uint64_t highest;        /* highest version number opened so far */
} dpr_worker;

/* What to send to the finder after a checkpoint completes. */
typedef struct dpr_worker_report {
    uint64_t world_line;
    uint64_t worker;
    uint64_t version;
    const dpr_depset *deps; /* valid until the next call that changes the worker */
} dpr_worker_report;

typedef enum dpr_admit {
    DPR_ADMIT_EXECUTE,  /* same world-line: run it */
    DPR_ADMIT_REFUSE,   /* batch from an older world-line: answer REFUSED with ours */
    DPR_ADMIT_CATCH_UP, /* batch from a newer world-line: learn it (finder), roll back, retry */
} dpr_admit;

/* id: the worker's id; domain_id: its domain's id (dpr_domain_id of the
 * name, domain.h; -EINVAL for 0, which no name has): the worker runs only
 * batches of that domain (dpr_worker_check_batch). restored: the checkpoint
 * version the worker restored (0: fresh start), i.e. its cut entry
 * (DPR.WORKER.ADD's version-to-restore) or, after a planned restart, a
 * checkpoint already inside the cut. Opens restored + 1; durable and cut
 * start at restored. */
DPR_EXPORT int dpr_worker_init(dpr_worker *w, uint64_t id, uint64_t domain_id,
                               uint64_t world_line, uint64_t restored);
DPR_EXPORT void dpr_worker_free(dpr_worker *w);

DPR_EXPORT dpr_admit dpr_worker_admit(const dpr_worker *w, uint64_t batch_world_line);

/* Lowest version the batch may execute in: max(version_lb, its dependencies). */
DPR_EXPORT uint64_t dpr_worker_batch_target(const dpr_request_hdr *h);

/*
 * Checking a batch from the network (dpr_worker_check_batch).
 *
 * A request header comes from whoever can open a TCP connection to the
 * shard, and its version lower bound and dependencies move the worker:
 * dpr_worker_execute fast-forwards the open version to them and folds them
 * into the version's dependency set, which goes to the finder. A version
 * near 2^64 makes every later checkpoint and rollback fail (-EOVERFLOW); a
 * dependency on a worker that does not exist holds the cut back forever. So
 * before executing, the caller checks the header against what a real
 * session can have seen, given what the worker learned from the finder
 * (dpr_worker_bounds). Rules (version 0 dependencies are ignored, as
 * everywhere):
 *
 *  0. The header's domain is the worker's own (w->domain). Otherwise
 *     -EXDEV: the batch belongs to a session of another domain (another
 *     deployment), whose versions, world-lines and worker ids mean nothing
 *     here; no answer of this worker's finder can change that.
 *  1. A dependency on this worker itself is at most `highest`, the highest
 *     version this worker ever opened: no session can have seen more.
 *     Otherwise -EINVAL.
 *  2. A dependency on another worker names a worker of the domain: one the
 *     finder listed as registered in its last DPR.SYNC answer. Otherwise
 *     -ENXIO (the worker may have registered after that answer: ask again,
 *     then check again).
 *  3. The version lower bound and every dependency version are at most
 *     dpr_worker_version_bound() = max(highest, min(max_version + allowance,
 *     DPR_WORKER_VERSION_LIMIT - 1)), with
 *         allowance = DPR_WORKER_SLACK + max(nworkers, 1) * since_sync_ms.
 *     Above it: -ERANGE (the bounds may be stale: ask the finder again,
 *     then check again), or -EINVAL at or above DPR_WORKER_VERSION_LIMIT
 *     (no answer can make that valid).
 *
 * Why a real session never trips rule 3. A session's versions are versions
 * some worker opened. Only three things open a version above every version
 * opened before (the cluster's newest, G): a periodic checkpoint (it opens
 * max(sealed + 1, the cluster max learned + 1) <= G + 1), a rollback (the
 * worker's own highest + 1 <= G + 1) and a restart (restore + 1). A seal
 * forced by a batch opens that batch's target, which is <= G; a
 * fast-forward moves to a version that exists already. So G grows by at
 * most one per checkpoint, and every worker checkpoints at most once per
 * checkpoint interval (at least 1 ms; the agent enforces 10 ms): at most
 * nworkers per millisecond. The finder's max version (DPR.SYNC, never
 * lowered, see finder.h) trails G by the versions sealed but not yet
 * durable and reported, a few per worker (one periodic checkpoint at a
 * time); DPR_WORKER_SLACK (2^20) covers that for clusters of up to tens of
 * thousands of workers, and the time term covers the growth since the
 * answer arrived. When the finder is unreachable no answer arrives,
 * since_sync_ms keeps growing and so does the allowance, at the fastest
 * rate G can grow: sessions that keep working without the finder are never
 * refused for their versions. A version at or below `highest` is always
 * accepted (the worker was there itself). One case is left: a finder that
 * restarts just after a rollback which forgot many versions (a cut that
 * lagged far behind) answers a max version below the versions the workers
 * continue from; a worker that started afresh then finds sessions' versions
 * above its bound (-ERANGE) until the other workers' first checkpoints on
 * the new world-line are reported, and a caller that asks the finder again
 * before deciding (as dpr-kv does) usually sees that happen.
 *
 * Why versions stay far from 2^64 for the life of a cluster. A forged batch
 * can lift the worker to at most max_version + allowance, not more, however
 * often it is sent: the bound does not grow with `highest` (which is why it
 * is max(highest, max_version + allowance) and not max(highest,
 * max_version) + allowance: that would let every forged batch add another
 * allowance). It grows only when the finder's max version does, i.e. after
 * the lifted version was checkpointed, reported to the finder and learned
 * back through DPR.SYNC: one allowance (2^20 plus the workers' growth over a
 * sync interval) per sync cycle. Even at an absurd thousand cycles a second
 * that takes more than a century to reach DPR_WORKER_VERSION_LIMIT (2^62),
 * and versions that come from the network never pass that limit; the 2^62
 * left above it are room for the worker's own checkpoints and rollbacks (+1
 * each), and keep every version below 2^63, the largest number the finder
 * accepts. So checkpoint_begin and rollback never fail with -EOVERFLOW
 * because of input.
 */
#define DPR_WORKER_SLACK (UINT64_C(1) << 20)
#define DPR_WORKER_VERSION_LIMIT (UINT64_C(1) << 62)

/* What the worker knows about its domain, from the finder's last DPR.SYNC
 * answer (or from start-up, before the first: max_version 0, no workers,
 * since_sync_ms counting from registration). */
typedef struct dpr_worker_bounds {
    uint64_t max_version;    /* the finder's max version (never lowered by the caller) */
    const uint64_t *workers; /* every registered worker of the domain, ascending */
    size_t nworkers;
    uint64_t since_sync_ms;  /* time since that answer arrived (monotonic clock) */
} dpr_worker_bounds;

/* The highest version a batch may carry now (rule 3 above). */
DPR_EXPORT uint64_t dpr_worker_version_bound(const dpr_worker *w, const dpr_worker_bounds *b);

/*
 * Checks batch header h against the rules above, changing nothing. Returns 0
 * when it may execute; otherwise err says which field is wrong and why,
 * and the code tells the caller what to do:
 *   -EXDEV   never valid: a batch of another domain (rule 0; the message
 *            names both domain ids): refuse it;
 *   -EINVAL  never valid (rule 1, the version limit, dep_count > 0 with
 *            deps == NULL): refuse it;
 *   -ENXIO   a dependency on a worker not in b->workers (rule 2), and
 *   -ERANGE  a version above the bound (rule 3): b may be stale; refuse it
 *            unless a fresher DPR.SYNC answer makes it pass.
 * When several fields are wrong, -EXDEV wins (nothing else of a foreign
 * batch is worth looking at), then -EINVAL, then the first one found.
 */
DPR_EXPORT int dpr_worker_check_batch(const dpr_worker *w, const dpr_request_hdr *h,
                                      const dpr_worker_bounds *b, dpr_err *err);

/*
 * Executes a batch (the caller has admitted it, and checked it with
 * dpr_worker_check_batch when it comes from the network): fast-forwards an
 * empty open version to the batch's target, folds the batch's dependencies (other
 * workers only) into the open version, and sets *version to the version the
 * batch runs in. Returns -EAGAIN without changing anything if the open
 * version is non-empty and below the target: the caller seals it with
 * dpr_worker_checkpoint_begin(w, dpr_worker_batch_target(h), ...) and calls
 * again. -ENOMEM on allocation failure (the batch must not run; the open
 * version may have been relabelled and may hold some of its dependencies,
 * which is harmless). -EINVAL for dep_count > 0 with deps == NULL.
 * Dependencies on this worker itself are ignored (the implicit edge covers
 * them); duplicate workers in h's list are max-merged. Plain (untracked)
 * operations pass h == NULL: they run in the open version but do not count
 * as a batch, so they never prevent relabelling it (nobody depends on them).
 */
DPR_EXPORT int dpr_worker_execute(dpr_worker *w, const dpr_request_hdr *h, uint64_t *version);

/*
 * Seals the open version (the caller snapshots its state at this instant)
 * and opens max(sealed + 1, next_version). *sealed gets the sealed version.
 */
DPR_EXPORT int dpr_worker_checkpoint_begin(dpr_worker *w, uint64_t next_version, uint64_t *sealed);

/*
 * The image of sealed version `version` is durable. Checkpoints complete in
 * the order they were sealed (-EINVAL otherwise, or if unknown, e.g. dropped
 * by a rollback). Fills *out with the report to send; every dependency in it
 * is <= version (dependencies never point forward).
 */
DPR_EXPORT int dpr_worker_checkpoint_complete(dpr_worker *w, uint64_t version,
                                   dpr_worker_report *out);

/*
 * The image of sealed version `version` could not be made (its write
 * failed) and cannot be made again (the state has moved on). It must be the
 * newest sealed version and not durable (-EINVAL otherwise). It is no longer
 * sealed: its dependencies join the open version, which the next checkpoint
 * seals and which then covers it (the finder takes a dependency on version
 * x as met by the smallest reported version >= x); it is never reported.
 * The open version keeps its number and counts as holding batches, so it is
 * not relabelled. -ENOMEM: nothing changed.
 */
DPR_EXPORT int dpr_worker_checkpoint_abort(dpr_worker *w, uint64_t version);

/* A newer cut names `cut_version` for this worker: forget durable versions <= it. */
DPR_EXPORT void dpr_worker_observe_cut(dpr_worker *w, uint64_t cut_version);

/*
 * The finder moved to new_world_line (> world_line, else -EINVAL) and this
 * worker restored the checkpoint for restore_version, its entry in the cut
 * the cluster rolled back to (-EINVAL if below the cut already seen: the cut
 * never goes backwards). Drops every sealed version above it and the open
 * version (lost), forgets those at or below it (inside the cut), so nothing
 * is left sealed; durable and cut become restore_version. The next open
 * version is above every number used so far, so no version number is reused
 * within this process. A checkpoint still being written for a dropped
 * version must be discarded (checkpoint_complete then returns -EINVAL).
 */
DPR_EXPORT int dpr_worker_rollback(dpr_worker *w, uint64_t new_world_line, uint64_t restore_version);

#endif
