/* kv_metrics.c - dpr-kv's Prometheus page (see kv_server.h): the counters
 * INFO shows (kv_info.c), under Prometheus names; docs/operations.md,
 * "Metrics", lists them. */
#include "kv_server.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "common/log.h"
#include "common/version.h"

void kv_metrics_refusals(dpr_buf *b, uint64_t worldline, uint64_t stopping, uint64_t invalid,
                         uint64_t misconf, uint64_t oom)
{
    dpr_metrics_head(b, "dpr_kv_batches_refused_total", DPR_METRIC_COUNTER,
                     "DPR batches not executed, by reason: worldline (REFUSED, a session "
                     "behind a rollback), stopping (TRYAGAIN in a planned stop), invalid");
    dpr_metric_label why[] = {{"reason", "worldline"}};
    dpr_metrics_sample_u64(b, "dpr_kv_batches_refused_total", why, 1, worldline);
    why[0].value = "stopping";
    dpr_metrics_sample_u64(b, "dpr_kv_batches_refused_total", why, 1, stopping);
    why[0].value = "invalid";
    dpr_metrics_sample_u64(b, "dpr_kv_batches_refused_total", why, 1, invalid);
    dpr_metrics_head(b, "dpr_kv_writes_refused_total", DPR_METRIC_COUNTER,
                     "writes refused: misconf (checkpoints failing), oom (--maxmemory)");
    why[0].value = "misconf";
    dpr_metrics_sample_u64(b, "dpr_kv_writes_refused_total", why, 1, misconf);
    why[0].value = "oom";
    dpr_metrics_sample_u64(b, "dpr_kv_writes_refused_total", why, 1, oom);
}

static int write_page(void *data, dpr_buf *b)
{
    kv_server *s = data;
    dpr_err snap_last, logw_last;
    char worker[24];

    snprintf(worker, sizeof(worker), "%" PRIu64, s->worker.id);
    dpr_metric_label info[] = {{"version", DPR_VERSION},
                               {"worker", worker},
                               {"domain", s->cfg->domain},
                               {"instance", s->cfg->instance}};
    dpr_metrics_head(b, "dpr_kv_info", DPR_METRIC_GAUGE,
                     "this dpr-kv: its version, worker id, DPR domain and instance name (1)");
    dpr_metrics_sample(b, "dpr_kv_info", info, sizeof(info) / sizeof(info[0]), 1);
    dpr_metrics_gauge(b, "dpr_kv_start_time_seconds", "when the process started (Unix time)",
                      (double)s->start_ms / 1000.0);

    dpr_metrics_counter(b, "dpr_kv_commands_total",
                        "commands executed (RESP commands and ops of batches)", s->cmds_total);
    dpr_metrics_counter(b, "dpr_kv_writes_total", "write commands executed", s->writes);
    dpr_metrics_counter(b, "dpr_kv_connections_total", "connections accepted", s->conns_total);
    dpr_metrics_counter(b, "dpr_kv_connections_rejected_total",
                        "connections refused (--max-clients)", s->conns_rejected);
    dpr_metrics_gauge(b, "dpr_kv_clients", "connected clients", (double)s->nclients);

    dpr_metrics_counter(b, "dpr_kv_batches_total", "DPR batches executed", s->batches_total);
    kv_metrics_refusals(b, s->batches_refused, s->batches_refused_stopping, s->batches_invalid,
                        s->writes_refused_misconf, s->writes_refused_oom);

    dpr_metrics_counter(b, "dpr_kv_checkpoints_total", "checkpoints made durable", s->ckpts_total);
    dpr_metrics_counter(b, "dpr_kv_checkpoint_failures_total",
                        "checkpoints that failed (image or change-log write, fork)",
                        kv_info_checkpoint_failures(s, &snap_last, &logw_last));
    dpr_metrics_counter(b, "dpr_kv_checkpoint_written_bytes_total", "bytes of checkpoints written",
                        s->ckpt_bytes_written);
    dpr_metrics_histogram_family(b, "dpr_kv_checkpoint_duration_seconds",
                                 "time from a checkpoint's start to its durability",
                                 &s->ckpt_seconds);
    dpr_metrics_gauge(b, "dpr_kv_checkpoints_pending", "checkpoints started, not yet durable",
                      (double)kv_dpr_pending(s));
    dpr_metrics_gauge(b, "dpr_kv_checkpoints_on_disk", "checkpoints kept in the state directory",
                      (double)s->nckpts);
    dpr_metrics_gauge(b, "dpr_kv_checkpoints_failing",
                      "1 while checkpoints fail and writes are refused",
                      kv_dpr_refusing_writes(s) ? 1 : 0);
    dpr_metrics_counter(b, "dpr_kv_compactions_total", "change logs compacted into a full image",
                        s->compactions);
    dpr_metrics_counter(b, "dpr_kv_compactions_failed_total", "compactions that failed",
                        s->compactions_failed);
    dpr_metrics_counter(b, "dpr_kv_rollbacks_total",
                        "rollbacks to the finder's cut (new world-lines)", s->rollbacks);

    dpr_metrics_gauge(b, "dpr_kv_world_line", "the world-line this worker is on",
                      (double)s->worker.world_line);
    dpr_metrics_gauge(b, "dpr_kv_version", "the open DPR version", (double)s->worker.version);
    dpr_metrics_gauge(b, "dpr_kv_durable_version", "the newest durable version",
                      (double)s->worker.durable);
    dpr_metrics_gauge(b, "dpr_kv_cut_version", "this worker's version in the finder's cut",
                      (double)s->worker.cut);
    dpr_metrics_gauge(b, "dpr_kv_finder_connected", "1 while connected to the finder",
                      s->finder && kv_finder_connected(s->finder) ? 1 : 0);
    dpr_metrics_gauge(b, "dpr_kv_reports_unacked",
                      "checkpoint reports the finder has not answered yet",
                      (double)(s->finder ? kv_finder_unacked(s->finder) : 0));
    dpr_metrics_counter(b, "dpr_kv_reports_refused_total", "checkpoint reports the finder refused",
                        s->reports_refused);
    dpr_metrics_gauge(b, "dpr_kv_replication_pending", "checkpoints waiting for the agent's copy",
                      (double)(s->replica ? kv_replica_pending(s->replica) : 0));

    dpr_metrics_gauge(b, "dpr_kv_keys", "keys in the data set", (double)kv_dict_size(&s->dict));
    dpr_metrics_gauge(b, "dpr_kv_memory_used_bytes", "memory used (INFO used_memory)",
                      (double)kv_server_used_memory(s));
    dpr_metrics_gauge(b, "dpr_kv_memory_max_bytes", "--maxmemory (0: no limit)",
                      (double)s->cfg->maxmemory);
    return dpr_buf_failed(b) ? -ENOMEM : 0;
}

int kv_metrics_start(kv_server *s)
{
    dpr_err err;
    int r = dpr_histogram_init(&s->ckpt_seconds, dpr_metrics_latency_bounds,
                               dpr_metrics_latency_nbounds);
    assert(r == 0); /* the bounds are ours */
    if (!s->cfg->metrics_address[0])
        return 0;
    r = dpr_http_start(&s->metrics, s->loop, s->cfg->metrics_address, write_page, s, &err);
    if (r < 0) {
        log_error("%s", err.msg);
        return r;
    }
    log_info("metrics on http://%s/metrics", dpr_http_bound(s->metrics));
    return 0;
}

void kv_metrics_stop(kv_server *s)
{
    dpr_http_close(s->metrics);
    s->metrics = NULL;
}
