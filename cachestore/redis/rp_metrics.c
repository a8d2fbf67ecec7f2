/* rp_metrics.c - see rp_metrics.h. */
#include "rp_metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "common/metrics.h"
#include "common/version.h"
#include "kv_server.h"

int rp_metrics_page(const rp_stats *st, dpr_buf *b)
{
    char worker[24];

    snprintf(worker, sizeof(worker), "%" PRIu64, st->worker);
    dpr_metric_label info[] = {{"version", DPR_VERSION},
                               {"worker", worker},
                               {"domain", st->domain},
                               {"instance", st->instance},
                               {"impl", "dpr-redis"}};
    dpr_metrics_head(b, "dpr_kv_info", DPR_METRIC_GAUGE,
                     "this cache-store: its version, worker id, DPR domain, instance name and "
                     "implementation (1)");
    dpr_metrics_sample(b, "dpr_kv_info", info, sizeof(info) / sizeof(info[0]), 1);
    dpr_metrics_gauge(b, "dpr_kv_start_time_seconds", "when the process started (Unix time)",
                      (double)st->start_ms / 1000.0);
    dpr_metrics_counter(b, "dpr_kv_commands_total",
                        "commands forwarded to redis-server (plain ones and ops of batches)",
                        st->commands);
    dpr_metrics_counter(b, "dpr_kv_connections_total", "connections accepted", st->connections);
    dpr_metrics_counter(b, "dpr_kv_connections_rejected_total",
                        "connections refused (--max-clients)", st->connections_rejected);
    dpr_metrics_gauge(b, "dpr_kv_clients", "connected clients", (double)st->clients);

    dpr_metrics_counter(b, "dpr_kv_batches_total", "DPR batches executed", st->batches);
    kv_metrics_refusals(b, st->batches_refused, st->batches_refused_stopping,
                        st->batches_invalid, st->writes_refused_misconf, st->writes_refused_oom);

    dpr_metrics_counter(b, "dpr_kv_checkpoints_total", "checkpoints made durable",
                        st->checkpoints);
    dpr_metrics_counter(b, "dpr_kv_checkpoint_failures_total", "checkpoints that failed (BGSAVE)",
                        st->checkpoint_failures);
    dpr_metrics_gauge(b, "dpr_kv_checkpoint_last_duration_seconds",
                      "the last checkpoint's time from seal to durable",
                      (double)st->last_ckpt_ms / 1000.0);
    dpr_metrics_gauge(b, "dpr_kv_checkpoints_on_disk", "checkpoints kept in the state directory",
                      (double)st->checkpoints_on_disk);
    dpr_metrics_gauge(b, "dpr_kv_checkpoints_failing",
                      "1 while checkpoints fail and writes are refused",
                      st->checkpoint_failing ? 1 : 0);
    dpr_metrics_counter(b, "dpr_kv_rollbacks_total",
                        "rollbacks to the finder's cut (new world-lines)", st->rollbacks);
    dpr_metrics_gauge(b, "dpr_kv_world_line", "the world-line this worker is on",
                      (double)st->world_line);
    dpr_metrics_gauge(b, "dpr_kv_version", "the open DPR version", (double)st->version);
    dpr_metrics_gauge(b, "dpr_kv_durable_version", "the newest durable version",
                      (double)st->durable);
    dpr_metrics_gauge(b, "dpr_kv_cut_version", "this worker's version in the finder's cut",
                      (double)st->cut);
    dpr_metrics_gauge(b, "dpr_kv_finder_connected", "1 while connected to the finder",
                      st->finder_connected ? 1 : 0);
    dpr_metrics_gauge(b, "dpr_kv_memory_max_bytes", "--maxmemory (0: no limit)",
                      (double)st->maxmemory);
    return dpr_buf_failed(b) ? -ENOMEM : 0;
}
