/* metrics.c - see common/metrics.h. */
#include "common/metrics.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

const double dpr_metrics_latency_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                             0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                             1,      2.5,     5,      10};
const size_t dpr_metrics_latency_nbounds =
    sizeof(dpr_metrics_latency_bounds) / sizeof(dpr_metrics_latency_bounds[0]);

int dpr_histogram_init(dpr_histogram *h, const double *bounds, size_t n)
{
    memset(h, 0, sizeof(*h));
    if (n > DPR_HISTOGRAM_MAX_BUCKETS)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return -EINVAL;
        h->bounds[i] = bounds[i];
    }
    h->nbounds = n;
    return 0;
}

void dpr_histogram_observe(dpr_histogram *h, double v)
{
    size_t i = 0;
    /* a bucket counts the values <= its bound (le) */
    while (i < h->nbounds && !(v <= h->bounds[i]))
        i++;
    h->counts[i]++;
    h->count++;
    if (!isnan(v))
        h->sum += v;
}

static bool valid_name(const char *s)
{
    if (!s || !*s ||
        !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' || *s == ':'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == ':'))
            return false;
    return true;
}

/* Escapes \ and newline (and " in label values). */
static void append_escaped(dpr_buf *b, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (quote && *s == '"')
            esc = "\\\"";
        if (!esc)
            continue;
        dpr_buf_append(b, run, (size_t)(s - run));
        dpr_buf_append_str(b, esc);
        run = s + 1;
    }
    dpr_buf_append(b, run, (size_t)(s - run));
}

static const char *type_name(dpr_metric_type t)
{
    switch (t) {
    case DPR_METRIC_COUNTER:
        return "counter";
    case DPR_METRIC_GAUGE:
        return "gauge";
    case DPR_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

void dpr_metrics_head(dpr_buf *b, const char *name, dpr_metric_type type, const char *help)
{
    assert(valid_name(name));
    dpr_buf_append_str(b, "# HELP ");
    dpr_buf_append_str(b, name);
    dpr_buf_append(b, " ", 1);
    append_escaped(b, help, false);
    dpr_buf_append_str(b, "\n# TYPE ");
    dpr_buf_append_str(b, name);
    dpr_buf_append(b, " ", 1);
    dpr_buf_append_str(b, type_name(type));
    dpr_buf_append(b, "\n", 1);
}

/* The shortest of %.15g and %.17g that reads back as v; +Inf, -Inf, NaN. */
static void format_double(char *out, size_t cap, double v)
{
    if (isnan(v))
        snprintf(out, cap, "NaN");
    else if (isinf(v))
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
    else {
        snprintf(out, cap, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, cap, "%.17g", v);
    }
}

/* name{labels[,le="extra"]} */
static void append_series(dpr_buf *b, const char *name, const char *suffix,
                          const dpr_metric_label *labels, size_t nlabels, const char *le)
{
    assert(valid_name(name));
    dpr_buf_append_str(b, name);
    dpr_buf_append_str(b, suffix);
    if (!nlabels && !le)
        return;
    dpr_buf_append(b, "{", 1);
    for (size_t i = 0; i < nlabels; i++) {
        assert(valid_name(labels[i].name));
        if (i)
            dpr_buf_append(b, ",", 1);
        dpr_buf_append_str(b, labels[i].name);
        dpr_buf_append(b, "=\"", 2);
        append_escaped(b, labels[i].value, true);
        dpr_buf_append(b, "\"", 1);
    }
    if (le) {
        dpr_buf_append_str(b, nlabels ? ",le=\"" : "le=\"");
        dpr_buf_append_str(b, le);
        dpr_buf_append(b, "\"", 1);
    }
    dpr_buf_append(b, "}", 1);
}

static void append_value(dpr_buf *b, const char *text)
{
    dpr_buf_append(b, " ", 1);
    dpr_buf_append_str(b, text);
    dpr_buf_append(b, "\n", 1);
}

void dpr_metrics_sample(dpr_buf *b, const char *name, const dpr_metric_label *labels,
                        size_t nlabels, double value)
{
    char v[40];
    format_double(v, sizeof(v), value);
    append_series(b, name, "", labels, nlabels, NULL);
    append_value(b, v);
}

void dpr_metrics_sample_u64(dpr_buf *b, const char *name, const dpr_metric_label *labels,
                            size_t nlabels, uint64_t value)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRIu64, value);
    append_series(b, name, "", labels, nlabels, NULL);
    append_value(b, v);
}

void dpr_metrics_histogram(dpr_buf *b, const char *name, const dpr_metric_label *labels,
                           size_t nlabels, const dpr_histogram *h)
{
    char le[40], v[40];
    uint64_t cum = 0;

    for (size_t i = 0; i <= h->nbounds; i++) {
        cum += h->counts[i];
        format_double(le, sizeof(le), i < h->nbounds ? h->bounds[i] : INFINITY);
        snprintf(v, sizeof(v), "%" PRIu64, cum);
        append_series(b, name, "_bucket", labels, nlabels, le);
        append_value(b, v);
    }
    assert(cum == h->count); /* every observation is in one bucket */
    format_double(v, sizeof(v), h->sum);
    append_series(b, name, "_sum", labels, nlabels, NULL);
    append_value(b, v);
    snprintf(v, sizeof(v), "%" PRIu64, h->count);
    append_series(b, name, "_count", labels, nlabels, NULL);
    append_value(b, v);
}

void dpr_metrics_counter(dpr_buf *b, const char *name, const char *help, uint64_t value)
{
    dpr_metrics_head(b, name, DPR_METRIC_COUNTER, help);
    dpr_metrics_sample_u64(b, name, NULL, 0, value);
}

void dpr_metrics_gauge(dpr_buf *b, const char *name, const char *help, double value)
{
    dpr_metrics_head(b, name, DPR_METRIC_GAUGE, help);
    dpr_metrics_sample(b, name, NULL, 0, value);
}

void dpr_metrics_histogram_family(dpr_buf *b, const char *name, const char *help,
                                  const dpr_histogram *h)
{
    dpr_metrics_head(b, name, DPR_METRIC_HISTOGRAM, help);
    dpr_metrics_histogram(b, name, NULL, 0, h);
}
