/*
 * hist.h - the benchmarks' latency histogram: log-linear, exact below 128
 * (ns), then 64 buckets per power of two (at most 1.6 % relative error),
 * with weights, mergeable across threads. No allocation: a hist is ~30 KiB.
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB 64
#define HIST_NB (128 + 57 * HIST_SUB)

typedef struct hist {
    uint64_t n, max;
    uint64_t b[HIST_NB];
} hist;

/* Counts value v `weight` times. */
void hist_add(hist *h, uint64_t v, uint64_t weight);
void hist_merge(hist *dst, const hist *src);
/* Value at quantile q (0..1): the midpoint of the bucket holding it, at most
 * the largest value seen; NAN when empty. */
double hist_quantile(const hist *h, double q);

#endif
