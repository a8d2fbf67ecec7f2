/*
 * rp_metrics.h - dpr-redis' Prometheus page (--metrics-address): the
 * proxy's counters under dpr-kv's metric names where they mean the same
 * (docs/operations.md, "Metrics"), so one dashboard shows both
 * implementations; dpr_kv_info has impl="dpr-redis".
 */
#ifndef RP_METRICS_H
#define RP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* What the page shows, filled by the proxy at each scrape. */
typedef struct rp_stats {
    uint64_t worker;
    const char *domain, *instance;
    uint64_t start_ms;
    uint64_t commands, connections, connections_rejected;
    size_t clients;
    uint64_t batches, batches_refused, batches_refused_stopping, batches_invalid;
    uint64_t writes_refused_misconf, writes_refused_oom;
    uint64_t checkpoints, checkpoint_failures, last_ckpt_ms;
    size_t checkpoints_on_disk;
    bool checkpoint_failing;
    uint64_t world_line, version, durable, cut, rollbacks;
    bool finder_connected;
    uint64_t maxmemory;
} rp_stats;

/* Appends the page for st to b: 0, or -ENOMEM. */
int rp_metrics_page(const rp_stats *st, dpr_buf *b);

#endif
