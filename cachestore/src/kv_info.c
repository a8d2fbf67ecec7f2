/* kv_info.c - INFO, CONFIG GET and COMMAND (see kv_server.h). */
#include "kv_server.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/resp.h"
#include "kv_resize.h"

#define KV_VERSION "0.1.0"

static void human(char *buf, size_t cap, uint64_t bytes)
{
    const char *unit = "B";
    double v = (double)bytes;
    if (v >= 1024.0 * 1024 * 1024) {
        v /= 1024.0 * 1024 * 1024;
        unit = "G";
    } else if (v >= 1024.0 * 1024) {
        v /= 1024.0 * 1024;
        unit = "M";
    } else if (v >= 1024.0) {
        v /= 1024.0;
        unit = "K";
    }
    snprintf(buf, cap, "%.2f%s", v, unit);
}

static void sec_server(kv_server *s, dpr_buf *b)
{
    struct utsname u;
    uint64_t up = (dpr_wall_ms() - s->start_ms) / 1000;
    if (uname(&u) < 0)
        memset(&u, 0, sizeof(u));
    dpr_resp_info_line(b, "# Server");
    /* clients that look at the version see a Redis 7.0 feature level */
    dpr_resp_info_line(b, "redis_version:7.0.0");
    dpr_resp_info_line(b, "dpr_kv_version:%s", KV_VERSION);
    dpr_resp_info_line(b, "redis_mode:standalone");
    dpr_resp_info_line(b, "os:%s %s %s", u.sysname, u.release, u.machine);
    dpr_resp_info_line(b, "arch_bits:%d", (int)(sizeof(void *) * 8));
    dpr_resp_info_line(b, "multiplexing_api:libuv %s", uv_version_string());
    dpr_resp_info_line(b, "process_id:%d", (int)getpid());
    dpr_resp_info_line(b, "listen:%s", s->ports.bound);
    dpr_resp_info_line(b, "tcp_port:%s", kv_listen_port(&s->ports, false));
    dpr_resp_info_line(b, "tls_port:%s", kv_listen_port(&s->ports, true));
    dpr_resp_info_line(b, "uptime_in_seconds:%" PRIu64, up);
    dpr_resp_info_line(b, "uptime_in_days:%" PRIu64, up / 86400);
}

static void sec_clients(kv_server *s, dpr_buf *b)
{
    size_t parked = 0;
    for (kv_client *c = s->parked; c; c = c->park_next)
        parked++;
    dpr_resp_info_line(b, "# Clients");
    dpr_resp_info_line(b, "connected_clients:%zu", s->nclients);
    dpr_resp_info_line(b, "maxclients:%zu", s->cfg->max_clients);
    dpr_resp_info_line(b, "blocked_clients:%zu", parked);
}

static void sec_memory(kv_server *s, dpr_buf *b)
{
    uint64_t used = kv_server_used_memory(s);
    char h[32], mh[32];
    human(h, sizeof(h), used);
    human(mh, sizeof(mh), s->cfg->maxmemory);
    dpr_resp_info_line(b, "# Memory");
    dpr_resp_info_line(b, "used_memory:%" PRIu64, used);
    dpr_resp_info_line(b, "used_memory_human:%s", h);
    dpr_resp_info_line(b, "used_memory_dataset:%zu", kv_dict_memory(&s->dict));
    dpr_resp_info_line(b, "mem_not_counted_for_evict:%" PRIu64, kv_server_memory_not_counted(s));
    dpr_resp_info_line(b, "maxmemory:%" PRIu64, s->cfg->maxmemory);
    dpr_resp_info_line(b, "maxmemory_human:%s", mh);
    dpr_resp_info_line(b, "maxmemory_policy:noeviction");
    dpr_resp_info_line(b, "mem_allocator:libc");
}

static void sec_stats(kv_server *s, dpr_buf *b)
{
    dpr_resp_info_line(b, "# Stats");
    dpr_resp_info_line(b, "total_connections_received:%" PRIu64, s->conns_total);
    dpr_resp_info_line(b, "total_commands_processed:%" PRIu64, s->cmds_total);
    dpr_resp_info_line(b, "rejected_connections:%" PRIu64, s->conns_rejected);
    dpr_resp_info_line(b, "tls_connections_received:%" PRIu64, s->tls_conns_total);
    dpr_resp_info_line(b, "tls_refused:%" PRIu64, s->tls_refused);
    dpr_resp_info_line(b, "total_writes:%" PRIu64, s->writes);
}

uint64_t kv_info_checkpoint_failures(kv_server *s, dpr_err *snap_last, dpr_err *logw_last)
{
    return kv_snap_failures(&s->snap, snap_last) + kv_logw_failures(&s->logw, logw_last) +
           s->ckpts_forks_failed;
}

static void sec_dpr(kv_server *s, dpr_buf *b)
{
    dpr_err last, wlast;
    uint64_t failures = kv_info_checkpoint_failures(s, &last, &wlast);
    dpr_resp_info_line(b, "# DPR");
    dpr_resp_info_line(b, "dpr_impl:dpr-kv");
    dpr_resp_info_line(b, "dpr_worker_id:%" PRIu64, s->worker.id);
    dpr_resp_info_line(b, "dpr_domain:%s", s->cfg->domain);
    dpr_resp_info_line(b, "dpr_domain_id:%" PRIu64, s->worker.domain);
    dpr_resp_info_line(b, "dpr_world_line:%" PRIu64, s->worker.world_line);
    dpr_resp_info_line(b, "dpr_version:%" PRIu64, s->worker.version);
    dpr_resp_info_line(b, "dpr_durable_version:%" PRIu64, s->worker.durable);
    dpr_resp_info_line(b, "dpr_cut_version:%" PRIu64, s->worker.cut);
    dpr_resp_info_line(b, "dpr_restored_version:%" PRIu64, s->restored_version);
    /* this process (pid, start time): a session whose connection broke with
     * a batch in flight tells a restart from it (docs/dpr-kv.md, "SIGTERM") */
    dpr_resp_info_line(b, "dpr_run_id:%d-%" PRIu64, (int)getpid(), s->start_ms);
    dpr_resp_info_line(b, "dpr_finder:%s", s->cfg->finder);
    dpr_resp_info_line(b, "dpr_finder_connected:%d",
                       s->finder && kv_finder_connected(s->finder) ? 1 : 0);
    dpr_resp_info_line(b, "dpr_finder_world_line:%" PRIu64, s->finder_world_line);
    dpr_resp_info_line(b, "dpr_cluster_max_version:%" PRIu64, s->cluster_max);
    dpr_resp_info_line(b, "dpr_finder_workers:%zu", s->nworkers);
    dpr_resp_info_line(b, "dpr_checkpoint_interval_ms:%u", s->cfg->checkpoint_interval_ms);
    dpr_resp_info_line(b, "dpr_checkpoint_mode:%s", s->cfg->checkpoint_log ? "log" : "full");
    dpr_resp_info_line(b, "dpr_checkpoints_pending:%zu", kv_dpr_pending(s));
    dpr_resp_info_line(b, "dpr_checkpoints_total:%" PRIu64, s->ckpts_total);
    dpr_resp_info_line(b, "dpr_checkpoints_on_disk:%zu", s->nckpts);
    dpr_resp_info_line(b, "dpr_checkpoints_full:%" PRIu64, s->ckpts_full);
    dpr_resp_info_line(b, "dpr_checkpoints_log:%" PRIu64, s->ckpts_log);
    dpr_resp_info_line(b, "dpr_checkpoint_bytes_written:%" PRIu64, s->ckpt_bytes_written);
    dpr_resp_info_line(b, "dpr_checkpoint_log_bytes:%" PRIu64,
                       s->log_bytes_since_full + s->log.buf.len);
    dpr_resp_info_line(b, "dpr_compactions:%" PRIu64, s->compactions);
    dpr_resp_info_line(b, "dpr_compactions_failed:%" PRIu64, s->compactions_failed);
    dpr_resp_info_line(b, "dpr_compaction_running:%d", s->compact_pid || s->compact_ready ? 1 : 0);
    dpr_resp_info_line(b, "dpr_committed_on_disk:%" PRIu64, s->committed_sealed);
    dpr_resp_info_line(b, "dpr_last_checkpoint_version:%" PRIu64, s->last_ckpt_version);
    dpr_resp_info_line(b, "dpr_last_checkpoint_time_ms:%" PRIu64, s->last_ckpt_unix_ms);
    dpr_resp_info_line(b, "dpr_last_checkpoint_duration_ms:%" PRIu64, s->last_ckpt_ms);
    dpr_resp_info_line(b, "dpr_last_fork_usec:%" PRIu64, s->last_fork_usec);
    dpr_resp_info_line(b, "dpr_checkpoint_status:%s", kv_dpr_refusing_writes(s) ? "failing" : "ok");
    dpr_resp_info_line(b, "dpr_checkpoint_failures:%" PRIu64, failures);
    if (kv_logw_failing(&s->logw, NULL) || (wlast.msg[0] && !last.msg[0]))
        last = wlast;
    else if (s->fork_failing && !kv_snap_failing(&s->snap, NULL))
        last = s->fork_error;
    dpr_resp_info_line(b, "dpr_checkpoint_last_error:%s", last.msg);
    dpr_resp_info_line(b, "dpr_writes_refused:%" PRIu64,
                       s->writes_refused_misconf + s->writes_refused_oom);
    dpr_resp_info_line(b, "dpr_writes_refused_misconf:%" PRIu64, s->writes_refused_misconf);
    dpr_resp_info_line(b, "dpr_writes_refused_oom:%" PRIu64, s->writes_refused_oom);
    dpr_resp_info_line(b, "dpr_finder_knows_worker:%d", s->finder_lost ? 0 : 1);
    dpr_resp_info_line(b, "dpr_finder_lost_reason:%s",
                       s->finder_lost ? s->finder_lost_why.msg : "");
    dpr_resp_info_line(b, "dpr_reports_unacked:%zu", s->finder ? kv_finder_unacked(s->finder) : 0);
    dpr_resp_info_line(b, "dpr_reports_refused:%" PRIu64, s->reports_refused);
    /* a cluster: reports wait until the agent copied the checkpoint (kv_replica.h) */
    dpr_resp_info_line(b, "dpr_replication_status:%s",
                       !s->replica ? "off"
                       : kv_replica_error(s->replica)[0] ? "failing"
                       : kv_replica_pending(s->replica) ? "copying" : "ok");
    dpr_resp_info_line(b, "dpr_replication_pending:%zu",
                       s->replica ? kv_replica_pending(s->replica) : 0);
    dpr_resp_info_line(b, "dpr_replication_copied:%" PRIu64,
                       s->replica ? kv_replica_copied(s->replica) : 0);
    dpr_resp_info_line(b, "dpr_replication_recopy_pending:%zu",
                       s->recopy ? kv_replica_pending(s->recopy) : 0);
    dpr_resp_info_line(b, "dpr_replication_last_error:%s",
                       s->replica ? kv_replica_error(s->replica) : "");
    dpr_resp_info_line(b, "dpr_batches:%" PRIu64, s->batches_total);
    dpr_resp_info_line(b, "dpr_batches_refused:%" PRIu64, s->batches_refused);
    dpr_resp_info_line(b, "dpr_batches_refused_stopping:%" PRIu64, s->batches_refused_stopping);
    dpr_resp_info_line(b, "dpr_batches_invalid:%" PRIu64, s->batches_invalid);
    dpr_resp_info_line(b, "dpr_rollbacks:%" PRIu64, s->rollbacks);
    kv_resize_info(s, b);
}

static void sec_keyspace(kv_server *s, dpr_buf *b)
{
    dpr_resp_info_line(b, "# Keyspace");
    if (kv_dict_size(&s->dict))
        dpr_resp_info_line(b, "db0:keys=%zu,expires=0,avg_ttl=0", kv_dict_size(&s->dict));
}

typedef struct section {
    const char *name;
    void (*fn)(kv_server *s, dpr_buf *b);
} section;

static const section sections[] = {
    {"server", sec_server}, {"clients", sec_clients}, {"memory", sec_memory},
    {"stats", sec_stats},   {"dpr", sec_dpr},         {"keyspace", sec_keyspace},
};
#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))

void kv_info_reply(kv_server *s, dpr_buf *out, size_t argc, const kv_arg *argv)
{
    bool want[NSECTIONS];
    dpr_buf b = DPR_BUF_INIT;
    bool all = argc == 1;

    memset(want, 0, sizeof(want));
    for (size_t i = 1; i < argc; i++) {
        const kv_arg *a = &argv[i];
        if ((a->n == 3 && !strncasecmp(a->p, "all", 3)) ||
            (a->n == 7 && !strncasecmp(a->p, "default", 7)) ||
            (a->n == 10 && !strncasecmp(a->p, "everything", 10)))
            all = true;
        for (size_t k = 0; k < NSECTIONS; k++)
            if (a->n == strlen(sections[k].name) &&
                !strncasecmp(a->p, sections[k].name, a->n))
                want[k] = true;
    }
    for (size_t k = 0; k < NSECTIONS; k++) {
        if (!all && !want[k])
            continue;
        if (b.len)
            dpr_buf_append(&b, "\r\n", 2);
        sections[k].fn(s, &b);
    }
    if (dpr_buf_failed(&b))
        dpr_resp_error(out, "OOM command not allowed: out of memory");
    else
        dpr_resp_bulk(out, b.data ? b.data : "", b.len);
    dpr_buf_free(&b);
}

/* CONFIG GET: the few parameters clients ask for (redis-benchmark reads
 * "save" and "appendonly"); CONFIG SET changes nothing here. */
void kv_config_reply(kv_server *s, dpr_buf *out, size_t argc, const kv_arg *argv)
{
    char pattern[256], maxclients[24], maxreq[24], maxmem[24];
    const kv_arg *sub = &argv[1];

    if (sub->n == 9 && !strncasecmp(sub->p, "resetstat", 9) && argc == 2) {
        dpr_buf_append(out, "+OK\r\n", 5);
        return;
    }
    if (!(sub->n == 3 && !strncasecmp(sub->p, "get", 3))) {
        if (sub->n == 3 && !strncasecmp(sub->p, "set", 3))
            dpr_resp_error(out, "ERR CONFIG SET is not supported by dpr-kv: use its flags");
        else
            dpr_resp_errorf(out, "ERR unknown subcommand '%.*s'. Try CONFIG HELP.",
                            (int)(sub->n > 128 ? 128 : sub->n), sub->p);
        return;
    }
    if (argc < 3) {
        dpr_resp_error(out, "ERR wrong number of arguments for 'config|get' command");
        return;
    }
    snprintf(maxclients, sizeof(maxclients), "%zu", s->cfg->max_clients);
    snprintf(maxreq, sizeof(maxreq), "%zu", s->cfg->max_request_bytes);
    snprintf(maxmem, sizeof(maxmem), "%" PRIu64, s->cfg->maxmemory);
    const char *params[][2] = {
        {"save", ""},
        {"appendonly", "no"},
        {"databases", "1"},
        {"maxmemory", maxmem},
        {"maxmemory-policy", "noeviction"},
        {"maxclients", maxclients},
        {"proto-max-bulk-len", "536870912"},
        {"client-query-buffer-limit", maxreq},
        {"port", kv_listen_port(&s->ports, false)},
        {"tls-port", kv_listen_port(&s->ports, true)},
        {"tls-auth-clients", dpr_tls_verify_name(s->cfg->tls_auth_clients)},
        {"dir", s->cfg->dir},
    };
    size_t n = sizeof(params) / sizeof(params[0]), hits = 0;
    bool hit[sizeof(params) / sizeof(params[0])];
    memset(hit, 0, sizeof(hit));
    for (size_t i = 2; i < argc; i++) {
        size_t len = argv[i].n < sizeof(pattern) - 1 ? argv[i].n : sizeof(pattern) - 1;
        memcpy(pattern, argv[i].p, len);
        pattern[len] = '\0';
        for (size_t k = 0; k < n; k++)
            if (!hit[k] && fnmatch(pattern, params[k][0], FNM_CASEFOLD) == 0) {
                hit[k] = true;
                hits++;
            }
    }
    dpr_resp_array(out, 2 * hits);
    for (size_t k = 0; k < n; k++) {
        if (!hit[k])
            continue;
        dpr_resp_bulk(out, params[k][0], strlen(params[k][0]));
        dpr_resp_bulk(out, params[k][1], strlen(params[k][1]));
    }
}

/* COMMAND: enough for redis-cli and redis-benchmark (they only look). */
void kv_command_reply(dpr_buf *out, size_t argc, const kv_arg *argv)
{
    if (argc >= 2 && argv[1].n == 5 && !strncasecmp(argv[1].p, "count", 5))
        dpr_resp_int(out, (int64_t)kv_command_count());
    else
        dpr_resp_array(out, 0);
}
