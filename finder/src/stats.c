/* stats.c - see dpr/finder_stats.h. */
#include "dpr/finder_stats.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/resp.h"
#include "common/version.h"

void dpr_finder_stats_init(dpr_finder_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->start_ms = dpr_wall_ms();
    /* (our own bounds: they are valid) */
    (void)dpr_histogram_init(&st->save_seconds, dpr_metrics_latency_bounds,
                             dpr_metrics_latency_nbounds);
    (void)dpr_histogram_init(&st->commit_seconds, dpr_metrics_latency_bounds,
                             dpr_metrics_latency_nbounds);
}

/* Each domain's working state (its workers' cuts and durable versions),
 * copied once for the whole page: *out[i] for domain i, *n of them. */
static int copy_states(const dpr_domains *ds, dpr_finder_state **out, size_t *n)
{
    size_t nd = ds ? dpr_domains_count(ds) : 0;
    dpr_finder_state *v = nd ? calloc(nd, sizeof(*v)) : NULL;
    int rc = 0;

    *out = NULL;
    *n = 0;
    if (nd && !v)
        return -ENOMEM;
    for (size_t i = 0; i < nd && rc == 0; i++) {
        rc = dpr_finder_get_state(dpr_domains_at(ds, i), &v[i]);
        if (rc == 0)
            *n = i + 1;
    }
    *out = v;
    return rc;
}

static void free_states(dpr_finder_state *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dpr_finder_state_free(&v[i]);
    free(v);
}

static uint64_t cut_lag(const dpr_finder_worker_state *w)
{
    return w->durable > w->cut ? w->durable - w->cut : 0;
}

static void per_worker(dpr_buf *out, const dpr_domains *ds, const dpr_finder_state *fs, size_t n,
                       const char *name, const char *help, int what)
{
    dpr_metrics_head(out, name, DPR_METRIC_GAUGE, help);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < fs[i].nworkers; k++) {
            const dpr_finder_worker_state *w = &fs[i].workers[k];
            char id[24];
            snprintf(id, sizeof(id), "%" PRIu64, w->worker);
            dpr_metric_label l[] = {{"domain", dpr_domains_name(ds, i)}, {"worker", id}};
            uint64_t v = what == 0 ? w->durable : what == 1 ? w->cut : cut_lag(w);
            dpr_metrics_sample_u64(out, name, l, 2, v);
        }
    }
}

static void per_domain(dpr_buf *out, const dpr_domains *ds, const dpr_finder_state *fs, size_t n,
                       const char *name, const char *help, int what)
{
    dpr_metrics_head(out, name, DPR_METRIC_GAUGE, help);
    for (size_t i = 0; i < n; i++) {
        const dpr_finder *f = dpr_domains_at(ds, i);
        dpr_metric_label l[] = {{"domain", dpr_domains_name(ds, i)}};
        uint64_t v = 0;
        if (what == 0)
            v = dpr_finder_world_line(f);
        else if (what == 1)
            v = dpr_finder_worker_count(f);
        else if (what == 2)
            v = dpr_finder_max_version(f);
        else
            for (size_t k = 0; k < fs[i].nworkers; k++)
                if (cut_lag(&fs[i].workers[k]) > v)
                    v = cut_lag(&fs[i].workers[k]);
        dpr_metrics_sample_u64(out, name, l, 1, v);
    }
}

int dpr_finder_stats_metrics(const dpr_finder_stats *st, const dpr_finder_stats_view *v,
                             const dpr_domains *ds, dpr_buf *out)
{
    dpr_metric_label info[] = {{"version", DPR_VERSION}, {"mode", v->mode}};
    dpr_metrics_head(out, "dpr_finder_info", DPR_METRIC_GAUGE,
                     "this finder: its version and mode (standalone or hosted by an agent)");
    dpr_metrics_sample(out, "dpr_finder_info", info, 2, 1);
    dpr_metrics_gauge(out, "dpr_finder_start_time_seconds",
                      "when the finder started serving (Unix time)", (double)st->start_ms / 1000.0);
    dpr_metrics_gauge(out, "dpr_finder_serving",
                      "1 while this process holds the finder state (0: a follower node)",
                      v->serving ? 1 : 0);
    dpr_metrics_gauge(out, "dpr_finder_clients", "connected clients", (double)v->clients);
    dpr_metrics_counter(out, "dpr_finder_connections_total", "connections accepted",
                        st->connections_total);
    dpr_metrics_counter(out, "dpr_finder_requests_total", "commands run (or refused)",
                        st->requests_total);
    dpr_metrics_head(out, "dpr_finder_reports_total", DPR_METRIC_COUNTER,
                     "checkpoint reports (DPR.REPORT): result ok or error");
    dpr_metric_label r[] = {{"result", "ok"}};
    dpr_metrics_sample_u64(out, "dpr_finder_reports_total", r, 1, st->reports_total);
    r[0].value = "error";
    dpr_metrics_sample_u64(out, "dpr_finder_reports_total", r, 1, st->reports_failed);
    dpr_metrics_counter(out, "dpr_finder_saves_total", "finder states made durable",
                        st->saves_total);
    dpr_metrics_histogram_family(out, "dpr_finder_save_duration_seconds",
                                 "one save of the state (file and fsyncs, or a Raft round)",
                                 &st->save_seconds);
    dpr_metrics_histogram_family(out, "dpr_finder_commit_duration_seconds",
                                 "how long a group commit held its replies", &st->commit_seconds);
    dpr_metrics_gauge(out, "dpr_finder_domains", "DPR domains",
                      (double)(ds ? dpr_domains_count(ds) : 0));
    dpr_finder_state *fs;
    size_t n;
    int rc = copy_states(ds, &fs, &n);
    if (rc < 0) {
        free_states(fs, n);
        return rc;
    }
    per_domain(out, ds, fs, n, "dpr_finder_world_line", "a domain's world-line (published)", 0);
    per_domain(out, ds, fs, n, "dpr_finder_workers", "a domain's registered workers (published)",
               1);
    per_domain(out, ds, fs, n, "dpr_finder_max_version",
               "the highest durable version a domain's workers reported", 2);
    per_domain(out, ds, fs, n, "dpr_finder_max_cut_lag_versions",
               "the largest cut lag of a domain's workers (durable minus cut version)", 3);
    if (v->per_worker) {
        per_worker(out, ds, fs, n, "dpr_finder_worker_durable_version",
                   "a worker's newest reported durable version", 0);
        per_worker(out, ds, fs, n, "dpr_finder_worker_cut_version",
                   "a worker's version in the cut", 1);
        per_worker(out, ds, fs, n, "dpr_finder_worker_cut_lag_versions",
                   "a worker's durable version minus its version in the cut: versions not yet "
                   "committed",
                   2);
    }
    free_states(fs, n);
    return dpr_buf_failed(out) ? -ENOMEM : 0;
}

static void sec_server(const dpr_finder_stats *st, const dpr_finder_stats_view *v,
                       const dpr_domains *ds, dpr_buf *b)
{
    uint64_t up = (dpr_wall_ms() - st->start_ms) / 1000;
    const char *colon = strrchr(v->listen, ':');
    (void)ds;
    dpr_resp_info_line(b, "# Server");
    dpr_resp_info_line(b, "dpr_finder_version:%s", DPR_VERSION);
    dpr_resp_info_line(b, "finder_mode:%s", v->mode);
    dpr_resp_info_line(b, "process_id:%d", (int)getpid());
    dpr_resp_info_line(b, "listen:%s", v->listen);
    dpr_resp_info_line(b, "tcp_port:%s", colon ? colon + 1 : "0");
    dpr_resp_info_line(b, "uptime_in_seconds:%" PRIu64, up);
}

static void sec_clients(const dpr_finder_stats *st, const dpr_finder_stats_view *v,
                        const dpr_domains *ds, dpr_buf *b)
{
    (void)st;
    (void)ds;
    dpr_resp_info_line(b, "# Clients");
    dpr_resp_info_line(b, "connected_clients:%zu", v->clients);
}

static void sec_stats(const dpr_finder_stats *st, const dpr_finder_stats_view *v,
                      const dpr_domains *ds, dpr_buf *b)
{
    (void)v;
    (void)ds;
    dpr_resp_info_line(b, "# Stats");
    dpr_resp_info_line(b, "total_connections_received:%" PRIu64, st->connections_total);
    dpr_resp_info_line(b, "total_commands_processed:%" PRIu64, st->requests_total);
    dpr_resp_info_line(b, "reports:%" PRIu64, st->reports_total);
    dpr_resp_info_line(b, "reports_failed:%" PRIu64, st->reports_failed);
    dpr_resp_info_line(b, "saves:%" PRIu64, st->saves_total);
}

static void sec_finder(const dpr_finder_stats *st, const dpr_finder_stats_view *v,
                       const dpr_domains *ds, dpr_buf *b)
{
    size_t nd = ds ? dpr_domains_count(ds) : 0;
    (void)st;
    dpr_resp_info_line(b, "# Finder");
    dpr_resp_info_line(b, "role:%s", v->serving ? "serving" : "not-serving");
    dpr_resp_info_line(b, "domains:%zu", nd);
    for (size_t i = 0; i < nd; i++) {
        const dpr_finder *f = dpr_domains_at(ds, i);
        dpr_finder_state fs;
        uint64_t lag = 0;
        if (dpr_finder_get_state(f, &fs) < 0) {
            b->failed = true;
            return;
        }
        for (size_t k = 0; k < fs.nworkers; k++)
            if (cut_lag(&fs.workers[k]) > lag)
                lag = cut_lag(&fs.workers[k]);
        /* one line per domain, as Redis' keyspace lines: name:key=value,... */
        dpr_resp_info_line(b,
                           "domain_%s:world_line=%" PRIu64 ",workers=%zu,max_version=%" PRIu64
                           ",max_cut_lag=%" PRIu64,
                           dpr_domains_name(ds, i), dpr_finder_world_line(f),
                           dpr_finder_worker_count(f), dpr_finder_max_version(f), lag);
        for (size_t k = 0; k < fs.nworkers; k++)
            dpr_resp_info_line(b,
                               "worker_%s_%" PRIu64 ":durable=%" PRIu64 ",cut=%" PRIu64 ",away=%d",
                               dpr_domains_name(ds, i), fs.workers[k].worker, fs.workers[k].durable,
                               fs.workers[k].cut, fs.workers[k].away ? 1 : 0);
        dpr_finder_state_free(&fs);
    }
}

typedef struct info_section {
    const char *name;
    void (*fn)(const dpr_finder_stats *st, const dpr_finder_stats_view *v, const dpr_domains *ds,
               dpr_buf *b);
} info_section;

static const info_section sections[] = {
    {"server", sec_server},
    {"clients", sec_clients},
    {"stats", sec_stats},
    {"finder", sec_finder},
};

int dpr_finder_stats_info(const dpr_finder_stats *st, const dpr_finder_stats_view *v,
                          const dpr_domains *ds, const char *section, size_t section_len,
                          dpr_buf *out)
{
    bool all = !section;
    static const char *const alls[] = {"all", "everything", "default"};
    for (size_t k = 0; section && k < sizeof(alls) / sizeof(alls[0]); k++)
        if (section_len == strlen(alls[k]) && !strncasecmp(section, alls[k], section_len))
            all = true;
    bool first = true;
    for (size_t k = 0; k < sizeof(sections) / sizeof(sections[0]); k++) {
        if (!all && !(section_len == strlen(sections[k].name) &&
                      !strncasecmp(section, sections[k].name, section_len)))
            continue;
        if (!first)
            dpr_buf_append(out, "\r\n", 2);
        first = false;
        sections[k].fn(st, v, ds, out);
    }
    return dpr_buf_failed(out) ? -ENOMEM : 0;
}
