/* hist.c - see hist.h. */
#include "hist.h"

#include <math.h>
#include <stddef.h>

void hist_add(hist *h, uint64_t v, uint64_t weight)
{
    size_t idx;

    if (v < 128) {
        idx = (size_t)v;
    } else {
        unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 7 */
        size_t sub = (size_t)((v >> (e - 6)) & (HIST_SUB - 1));
        idx = 128 + (size_t)(e - 7) * HIST_SUB + sub;
    }
    h->b[idx] += weight;
    h->n += weight;
    if (v > h->max)
        h->max = v;
}

void hist_merge(hist *dst, const hist *src)
{
    for (size_t i = 0; i < HIST_NB; i++)
        dst->b[i] += src->b[i];
    dst->n += src->n;
    if (src->max > dst->max)
        dst->max = src->max;
}

double hist_quantile(const hist *h, double q)
{
    uint64_t rank, seen = 0;

    if (h->n == 0)
        return NAN;
    rank = (uint64_t)(q * (double)h->n);
    if (rank >= h->n)
        rank = h->n - 1;
    for (size_t i = 0; i < HIST_NB; i++) {
        seen += h->b[i];
        if (seen > rank) {
            if (i < 128)
                return (double)i;
            size_t e = (i - 128) / HIST_SUB + 7, sub = (i - 128) % HIST_SUB;
            double lo = (double)((uint64_t)(HIST_SUB + sub) << (e - 6));
            double mid = lo + (double)(1ull << (e - 6)) / 2;
            return mid > (double)h->max ? (double)h->max : mid;
        }
    }
    return (double)h->max;
}
