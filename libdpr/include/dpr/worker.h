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
#include "dpr/wire.h"

typedef struct dpr_worker_version {
    uint64_t version;
    bool durable;      /* checkpoint completed (on disk) */
    dpr_depset deps;   /* other workers' versions this version depends on */
} dpr_worker_version;

typedef struct dpr_worker {
    /* read-only for callers */
    uint64_t id;
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

/* restored: the checkpoint version the worker restored (0: fresh start),
 * i.e. its cut entry (DPR.WORKER.ADD's version-to-restore) or, after a
 * planned restart, a checkpoint already inside the cut. Opens restored + 1;
 * durable and cut start at restored. */
DPR_EXPORT int dpr_worker_init(dpr_worker *w, uint64_t id, uint64_t world_line, uint64_t restored);
DPR_EXPORT void dpr_worker_free(dpr_worker *w);

DPR_EXPORT dpr_admit dpr_worker_admit(const dpr_worker *w, uint64_t batch_world_line);

/* Lowest version the batch may execute in: max(version_lb, its dependencies). */
DPR_EXPORT uint64_t dpr_worker_batch_target(const dpr_request_hdr *h);

/*
 * Executes a batch (the caller has admitted it): fast-forwards an empty open
 * version to the batch's target, folds the batch's dependencies (other
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
