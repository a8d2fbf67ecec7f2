/*
 * common/metrics.h - Prometheus metrics: histograms, and the writer of the
 * text exposition format 0.0.4 that dpr-kv, dpr-finder and dpr-agent serve
 * on their metrics address (common/http.h; docs/operations.md, "Metrics").
 *
 * The values live where the daemons already count them (a counter is a
 * field of the server that INFO shows too; nothing is counted twice); a
 * scrape writes them, family by family, into a buffer:
 *
 *     dpr_buf b = DPR_BUF_INIT;
 *     dpr_metrics_counter(&b, "dpr_kv_batches_total", "DPR batches executed", s->batches);
 *     dpr_metrics_head(&b, "dpr_kv_cut_lag_versions", DPR_METRIC_GAUGE, "...");
 *     dpr_metric_label l[] = {{"worker", "3"}};
 *     dpr_metrics_sample(&b, "dpr_kv_cut_lag_versions", l, 1, 12);
 *     if (dpr_buf_failed(&b)) ... 500 ...
 *
 * Histograms (dpr_histogram) are the only values kept here: fixed bucket
 * bounds, counts, sum; observed on the loop thread.
 *
 * Metric and label names are the caller's constants and must match
 * [a-zA-Z_:][a-zA-Z0-9_:]* (asserted); label values and help texts are
 * escaped as the format says.
 */
#ifndef COMMON_METRICS_H
#define COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* The Content-Type of a scrape's answer. */
#define DPR_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef enum dpr_metric_type {
    DPR_METRIC_COUNTER,
    DPR_METRIC_GAUGE,
    DPR_METRIC_HISTOGRAM,
} dpr_metric_type;

typedef struct dpr_metric_label {
    const char *name;
    const char *value; /* any bytes but NUL: escaped */
} dpr_metric_label;

#define DPR_HISTOGRAM_MAX_BUCKETS 24

typedef struct dpr_histogram {
    size_t nbounds;                                 /* finite upper bounds */
    double bounds[DPR_HISTOGRAM_MAX_BUCKETS];       /* increasing */
    uint64_t counts[DPR_HISTOGRAM_MAX_BUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
    uint64_t count;
    double sum;
} dpr_histogram;

/* Bounds in seconds for latencies from 100 us to 10 s. */
extern const double dpr_metrics_latency_bounds[];
extern const size_t dpr_metrics_latency_nbounds;

/* Sets up h with n increasing bounds (n <= DPR_HISTOGRAM_MAX_BUCKETS);
 * 0, or -EINVAL when they are not. */
int dpr_histogram_init(dpr_histogram *h, const double *bounds, size_t n);
void dpr_histogram_observe(dpr_histogram *h, double v);

/* "# HELP name help" and "# TYPE name type". */
void dpr_metrics_head(dpr_buf *b, const char *name, dpr_metric_type type, const char *help);
/* One sample line: name{labels} value (nlabels may be 0). */
void dpr_metrics_sample(dpr_buf *b, const char *name, const dpr_metric_label *labels,
                        size_t nlabels, double value);
/* The same with an exact integer value (counters past 2^53 stay exact). */
void dpr_metrics_sample_u64(dpr_buf *b, const char *name, const dpr_metric_label *labels,
                            size_t nlabels, uint64_t value);
/* name_bucket{labels,le="..."} for each bound and +Inf (cumulative), name_sum
 * and name_count. */
void dpr_metrics_histogram(dpr_buf *b, const char *name, const dpr_metric_label *labels,
                           size_t nlabels, const dpr_histogram *h);

/* A head and one unlabelled sample. */
void dpr_metrics_counter(dpr_buf *b, const char *name, const char *help, uint64_t value);
void dpr_metrics_gauge(dpr_buf *b, const char *name, const char *help, double value);
/* A head and a histogram without labels. */
void dpr_metrics_histogram_family(dpr_buf *b, const char *name, const char *help,
                                  const dpr_histogram *h);

#endif
