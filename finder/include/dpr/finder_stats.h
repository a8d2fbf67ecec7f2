/*
 * finder_stats.h - what the finder's server counts, and the two views of
 * it: the Prometheus page (dpr_finder_* metrics, common/metrics.h) and the
 * INFO reply (Redis' "# Section\r\nkey:value" text). No I/O.
 *
 * The server (finder_server.h) owns one and counts into it; the page and
 * INFO add each domain's published view (world-line, workers) and each
 * worker's cut lag (its durable version minus its version in the cut),
 * read from the working state. Public because the agent, which hosts the
 * finder, serves the finder's metrics on its own endpoint
 * (dpr_server_metrics).
 */
#ifndef DPR_FINDER_STATS_H
#define DPR_FINDER_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/metrics.h"
#include "dpr/domains.h"

typedef struct dpr_finder_stats {
    uint64_t start_ms;            /* wall clock */
    uint64_t connections_total;
    uint64_t requests_total;      /* every command run (or refused) */
    uint64_t reports_total;       /* DPR.REPORT answered +OK */
    uint64_t reports_failed;      /* DPR.REPORT answered with an error */
    uint64_t saves_total;         /* states made durable */
    dpr_histogram save_seconds;   /* one save (a file's fsyncs, a Raft round) */
    dpr_histogram commit_seconds; /* how long a group's replies were held */
} dpr_finder_stats;

void dpr_finder_stats_init(dpr_finder_stats *st);

/* What INFO and the page say about the server around the stats. */
typedef struct dpr_finder_stats_view {
    const char *mode;   /* "standalone" (dpr-finder) or "agent" (hosted) */
    bool serving;       /* holds the finder state (ds not NULL) */
    const char *listen; /* the bound address, "" when none */
    size_t clients;
    /* the per-worker families (dpr_finder_worker_*): three series a worker,
     * some 13 MB at 65k workers; false leaves them out (the per-domain
     * ones, dpr_finder_max_cut_lag_versions among them, stay) */
    bool per_worker;
} dpr_finder_stats_view;

/* The dpr_finder_* families into out (ds may be NULL: no domains), each
 * domain's working state copied once. 0 or -ENOMEM. */
int dpr_finder_stats_metrics(const dpr_finder_stats *st, const dpr_finder_stats_view *v,
                             const dpr_domains *ds, dpr_buf *out);
/* INFO's text (not yet a RESP bulk string) into out: sections server,
 * clients, stats, finder (domains, world-lines, workers, cuts). section:
 * NULL or "all"/"everything"/"default" for every one. 0 or -ENOMEM. */
int dpr_finder_stats_info(const dpr_finder_stats *st, const dpr_finder_stats_view *v,
                          const dpr_domains *ds, const char *section, size_t section_len,
                          dpr_buf *out);

#endif
