/*
 * kv_gate.h - what a cache-store does with a complete DPR batch before it
 * runs (pure): admit it by world-line and check its header against what
 * the shard learned from the finder. Shared by dpr-kv (kv_server.c) and
 * dpr-redis (cachestore/redis/rp_proxy.c), which do the replies, the
 * parking and the DPR.SYNC requests themselves.
 *
 *  - kv_gate_admit: dpr_worker_admit. Same world-line: run. Older: answer
 *    REFUSED with the worker's world-line. Newer: the worker has not heard
 *    of the rollback yet: wait for DPR.SYNC answers (and the rollback they
 *    bring), then decide again; after KV_GATE_CATCHUP_SYNCS answers that do
 *    not reach it, the batch gets an error (a bogus world-line).
 *  - kv_gate_check: dpr_worker_check_batch (worker.h). A header that may
 *    only look wrong because the shard's knowledge is stale (-ENXIO, a
 *    worker registered since; -ERANGE, versions grown since) waits for
 *    KV_GATE_CHECK_SYNCS fresh answers, or KV_GATE_CHECK_WAIT_MS when the
 *    finder does not answer; then, or at once for anything else, it is
 *    refused (docs/protocol.md, "Checking batches").
 *
 * The per-connection state of a waiting batch is a kv_gate; batch_end
 * resets it with kv_gate_reset.
 */
#ifndef KV_GATE_H
#define KV_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpr/wire.h"
#include "dpr/worker.h"

/* sync answers a batch waits for before an unknown worker or a version
 * above the bound is final: the answer in flight when it arrived may have
 * been sent before that worker registered; the next one was not */
#define KV_GATE_CHECK_SYNCS 2
/* ... and how long, when the finder does not answer (KV_FINDER_TIMEOUT_MS) */
#define KV_GATE_CHECK_WAIT_MS 5000
/* sync answers a batch of a newer world-line waits for */
#define KV_GATE_CATCHUP_SYNCS 3

typedef struct kv_gate {
    bool catching_up;       /* waits for a newer world-line */
    uint64_t catchup_syncs; /* syncs when it started waiting */
    bool checking;          /* waits for fresher bounds */
    uint64_t check_syncs, check_ms; /* syncs and dpr_mono_ms() when it started */
} kv_gate;

/* What the shard knows (from the finder's last DPR.SYNC answer). */
typedef struct kv_gate_view {
    const dpr_worker *worker;
    uint64_t syncs;             /* DPR.SYNC answers received so far */
    uint64_t finder_world_line; /* the last answer's */
    uint64_t cluster_max;       /* the finder's max version */
    const uint64_t *workers;    /* the registered workers, ascending */
    size_t nworkers;
    uint64_t synced_ms;         /* dpr_mono_ms() of the last answer */
} kv_gate_view;

typedef enum kv_gate_verdict {
    KV_GATE_RUN,     /* go on */
    KV_GATE_REFUSE,  /* admit: answer REFUSED (older world-line) */
    KV_GATE_WAIT,    /* wait for the next DPR.SYNC answer (ask for it now), then again */
    KV_GATE_INVALID, /* check: refused, msg says why (counts as an invalid batch) */
    KV_GATE_ERROR,   /* admit: the world-line never came, msg says so */
} kv_gate_verdict;

void kv_gate_reset(kv_gate *g);

/* msg (cap bytes) gets the error text, "ERR DPR.BATCH ...", for
 * KV_GATE_INVALID and KV_GATE_ERROR. */
kv_gate_verdict kv_gate_admit(kv_gate *g, const kv_gate_view *v, const dpr_request_hdr *h,
                              char *msg, size_t cap);
kv_gate_verdict kv_gate_check(kv_gate *g, const kv_gate_view *v, const dpr_request_hdr *h,
                              uint64_t now_ms, char *msg, size_t cap);

#endif
