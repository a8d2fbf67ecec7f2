/* kv_gate.c - see kv_gate.h. */
#include "kv_gate.h"

#include <errno.h>
#include <stdio.h>

void kv_gate_reset(kv_gate *g)
{
    g->catching_up = false;
    g->checking = false;
}

kv_gate_verdict kv_gate_admit(kv_gate *g, const kv_gate_view *v, const dpr_request_hdr *h,
                              char *msg, size_t cap)
{
    switch (dpr_worker_admit(v->worker, h->world_line)) {
    case DPR_ADMIT_REFUSE:
        g->catching_up = false;
        return KV_GATE_REFUSE;
    case DPR_ADMIT_CATCH_UP:
        if (!g->catching_up) {
            g->catching_up = true;
            g->catchup_syncs = v->syncs;
        } else if (v->syncs - g->catchup_syncs >= KV_GATE_CATCHUP_SYNCS) {
            g->catching_up = false;
            snprintf(msg, cap, "ERR DPR.BATCH world-line %llu is newer than the finder's (%llu)",
                     (unsigned long long)h->world_line,
                     (unsigned long long)v->finder_world_line);
            return KV_GATE_ERROR;
        }
        return KV_GATE_WAIT;
    case DPR_ADMIT_EXECUTE:
        break;
    }
    g->catching_up = false;
    return KV_GATE_RUN;
}

kv_gate_verdict kv_gate_check(kv_gate *g, const kv_gate_view *v, const dpr_request_hdr *h,
                              uint64_t now_ms, char *msg, size_t cap)
{
    dpr_err err = DPR_ERR_INIT;
    dpr_worker_bounds b = {.max_version = v->cluster_max,
                           .workers = v->workers,
                           .nworkers = v->nworkers,
                           .since_sync_ms = now_ms > v->synced_ms ? now_ms - v->synced_ms : 0};
    int r = dpr_worker_check_batch(v->worker, h, &b, &err);

    if (r == 0) {
        g->checking = false;
        return KV_GATE_RUN;
    }
    if (r == -ENXIO || r == -ERANGE) {
        if (!g->checking) {
            g->checking = true;
            g->check_syncs = v->syncs;
            g->check_ms = now_ms;
        }
        if (v->syncs - g->check_syncs < KV_GATE_CHECK_SYNCS &&
            now_ms - g->check_ms < KV_GATE_CHECK_WAIT_MS)
            return KV_GATE_WAIT;
    }
    g->checking = false;
    snprintf(msg, cap, "ERR DPR.BATCH refused: %s", err.msg);
    return KV_GATE_INVALID;
}
