/*
 * session.h - the client session side of DPR, without I/O.
 *
 * A session numbers its operations 1, 2, 3, ... (sequence numbers). For every
 * worker it keeps the highest version any of its answered operations ran in:
 * the session's dependencies, sent with every batch. Given a cut (from the
 * finder's DPR.SYNC) it computes the commit point; given a new world-line and
 * its cut it computes exactly which operations survived a rollback.
 *
 * Ordering modes:
 *  - strict (default): a batch to worker B may be started only when every
 *    earlier batch to another worker has been answered (-EBUSY otherwise);
 *    batches to one worker pipeline freely. Then every operation depends on
 *    all earlier ones, so survivors after a rollback are always a prefix.
 *  - relaxed (DPR_SESSION_RELAXED): batches to different workers may be in
 *    flight together. The commit point is still a prefix, but operations
 *    above it may commit on their own; they are listed as exceptions (like
 *    libDPR's CommitPoint.ExcludedSerialNos, inverted), and after a rollback
 *    survivors above lost_from are listed the same way.
 *
 * All functions return 0 or a negative errno unless said otherwise.
 */
#ifndef DPR_SESSION_H
#define DPR_SESSION_H

#include "dpr/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpr/depset.h"
#include "dpr/wire.h"

#define DPR_SESSION_RELAXED 0x1u

/* One operation the session has not yet seen committed. */
typedef struct dpr_session_op {
    uint64_t seq;
    uint64_t worker;
    uint64_t batch_id;
    uint64_t version; /* 0 until the batch's response arrives */
    bool committed;   /* relaxed mode: committed above the commit point */
    bool withdrawn;   /* its batch was refused before it ran (withdrawn) */
} dpr_session_op;

/* A range [from, to) of sequence numbers (private). */
typedef struct dpr_seq_range {
    uint64_t from, to;
} dpr_seq_range;

/* A batch sent and not yet answered. */
typedef struct dpr_session_batch {
    uint64_t batch_id;
    uint64_t worker;
    uint64_t first_seq;
    uint32_t op_count;
} dpr_session_batch;

typedef struct dpr_session {
    /* read-only for callers */
    dpr_session_id id;
    uint64_t domain;         /* the domain's id, stamped on every batch */
    unsigned flags;
    uint64_t world_line;
    uint64_t next_seq;       /* sequence number the next operation gets */
    uint64_t next_batch_id;
    uint64_t commit_point;   /* every operation <= this is committed, or was
                              * reported lost by an earlier rollback */
    dpr_depset deps;         /* worker -> highest version seen (above the cut) */
    /* operations above the commit point, in sequence order */
    dpr_session_op *ops;
    size_t ops_head, ops_len, ops_cap; /* ring buffer */
    /* unanswered batches, in send order */
    dpr_session_batch *batches;
    size_t nbatches, batches_cap;
    /* private */
    uint64_t seen_world_line; /* newest world-line a refusal named */
    bool in_doubt;            /* strict mode: a batch was abandoned */
    uint64_t deps_max;        /* highest version in deps */
    dpr_seq_range *lost;      /* operations reported lost, ascending */
    size_t nlost, lost_cap;
    dpr_seq_range *withdrawn; /* operations withdrawn, ascending */
    size_t nwithdrawn, withdrawn_cap;
} dpr_session;

/* Result of a rollback. Operations < lost_from survived; lost_from itself
 * was lost (lost_from == next_seq when nothing was lost). In relaxed mode
 * `survived_above` lists operations > lost_from that survived anyway
 * (always 0 entries in strict mode); the array belongs to the caller (free()). */
typedef struct dpr_rollback_result {
    uint64_t lost_from;
    uint64_t lost_count;
    uint64_t *survived_above;
    size_t nsurvived_above;
} dpr_rollback_result;

/*
 * A session spans one domain (domain.h): domain_id is its id
 * (dpr_domain_id of the name), stamped on every batch header; workers of
 * other domains refuse the batches. world_line is the domain's current one
 * (its finder's DPR.SYNC <domain>). -EINVAL for domain_id 0 or unknown flags.
 */
DPR_EXPORT int dpr_session_init(dpr_session *s, dpr_session_id id, uint64_t domain_id,
                                uint64_t world_line, unsigned flags);
DPR_EXPORT void dpr_session_free(dpr_session *s);

/*
 * Starts a batch of op_count operations to worker: assigns them the
 * sequence numbers *first_seq.. and fills *hdr (the dependencies to encode
 * are s->deps; hdr->deps stays NULL and hdr->dep_count 0, so pass &s->deps
 * to dpr_wire_encode_request; hdr->version_lb is the highest version in
 * s->deps; hdr->domain is s->domain). -EBUSY in strict mode while a batch to another worker is
 * unanswered, and after an abandoned batch until the next rollback (its
 * operations are in doubt: anything issued after them could survive while
 * they are reported lost). -ESTALE after a refusal until the rollback.
 * -EINVAL for op_count 0 or above DPR_WIRE_MAX_OPS.
 */
DPR_EXPORT int dpr_session_begin_batch(dpr_session *s, uint64_t worker, uint32_t op_count,
                            dpr_request_hdr *hdr, uint64_t *first_seq);

/*
 * Applies a worker's answer. EXECUTED: records the versions and raises the
 * session's dependency on that worker. REFUSED: the batch's operations did
 * not run and are lost; returns -ESTALE (the worker is on world-line
 * r->world_line; resolve or abandon the other unanswered batches, fetch the
 * rollback cut and call dpr_session_rollback). -ENOENT for an unknown batch
 * id, -EBADMSG if the response does not match the batch (op count, version
 * count, a version 0 or decreasing versions, an EXECUTED answer from another
 * world-line, a refusal naming a world-line not newer than the session's).
 * On -EBADMSG and -ENOMEM nothing changes.
 */
DPR_EXPORT int dpr_session_resolve(dpr_session *s, const dpr_response_hdr *r);

/*
 * A batch whose answer will never come (connection lost): its operations are
 * in doubt and count as lost at the next rollback; they never commit, so the
 * commit point stops below them until then. In strict mode no new batch may
 * start until the next rollback (see dpr_session_begin_batch); if the worker
 * did not fail, no rollback comes: open a new session. -ENOENT if unknown.
 */
DPR_EXPORT int dpr_session_abandon_batch(dpr_session *s, uint64_t batch_id);

/*
 * The newest batch was refused as a whole before anything of it ran (the
 * shard does not own a key of it under its layout, -MOVED, or it is paused
 * for a resize, -TRYAGAIN): forgets the batch as if it had never begun, so
 * its operations can be sent again, re-routed, under the same sequence
 * numbers. Only for the batch begun last (-EBUSY for another: later
 * operations were issued after it; resolve or abandon instead). -ENOENT if
 * unknown. A batch that may have run must never be cancelled.
 */
DPR_EXPORT int dpr_session_cancel_batch(dpr_session *s, uint64_t batch_id);

/*
 * Like dpr_session_cancel_batch for any unanswered batch: when later
 * operations were issued after it, its operations cannot be taken back, so
 * they are *withdrawn*: they never ran and are not part of the session's
 * history. A withdrawn operation never commits (dpr_session_is_committed
 * is false) and is never reported lost; the commit point passes over it
 * ("every operation <= the commit point is committed, reported lost, or
 * withdrawn"). Send the operations again: they get new sequence numbers.
 * Returns 1 if the batch was the newest and was cancelled instead (its
 * sequence numbers are issued again), 0 if withdrawn; -ENOENT if unknown,
 * -ENOMEM (nothing changed).
 */
DPR_EXPORT int dpr_session_withdraw_batch(dpr_session *s, uint64_t batch_id);

/* Was operation seq withdrawn (dpr_session_withdraw_batch)? */
DPR_EXPORT bool dpr_session_is_withdrawn(const dpr_session *s, uint64_t seq);

/*
 * Advances and returns the commit point for a cut of the session's
 * world-line (worker -> cut version; absent workers are at 0). Committed
 * operations are forgotten; dependencies at or below the cut are pruned.
 */
DPR_EXPORT uint64_t dpr_session_commit_point(dpr_session *s, const dpr_depset *cut);

/* Is operation seq committed (at or below the commit point and not reported
 * lost, or - relaxed mode - committed above it as an exception) under the
 * last cut given? */
DPR_EXPORT bool dpr_session_is_committed(const dpr_session *s, uint64_t seq);

/*
 * The cluster rolled back to `cut` and moved to new_world_line (> the
 * session's, else -EINVAL). Every unanswered batch must have been resolved
 * or abandoned (-EBUSY otherwise). An operation survived iff it was answered
 * with a version v <= cut[its worker]. Fills *res, forgets lost operations,
 * clears the dependencies (those at or below the cut are committed, those
 * above it are gone), sets the commit point to next_seq - 1 (every earlier
 * operation is now committed or reported lost) and continues on the new
 * world-line. -ENOMEM leaves the session unchanged.
 *
 * `cut` must be the cut the cluster restored when it LEFT the session's
 * world-line (the cut at the bump to s->world_line + 1), not a later one:
 * versions numbered on the new world-line may equal or exceed the numbers of
 * lost versions of the old one, so a later cut would count lost operations
 * as survivors. (Later bumps never restore below it: the cut only grows.)
 */
DPR_EXPORT int dpr_session_rollback(dpr_session *s, uint64_t new_world_line, const dpr_depset *cut,
                         dpr_rollback_result *res);

#endif
