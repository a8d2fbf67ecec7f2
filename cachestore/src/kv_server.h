/*
 * kv_server.h - the dpr-kv server state, shared by its parts:
 *
 *   kv_server.c  the libuv loop, connections, request dispatch, DPR.BATCH
 *   kv_dpr.c     checkpoints, reports, DPR.SYNC, cut, rollback, shutdown
 *   kv_info.c    INFO, CONFIG GET, COMMAND replies
 *   kv_metrics.c the Prometheus page (--metrics-address): INFO's counters
 *   kv_resize.c  the layout: -MOVED, the pause of a resize, DPR.LAYOUT,
 *                DPR.IMPORT, the migration child, the purge
 *
 * Everything runs on the loop thread.
 */
#ifndef KV_SERVER_H
#define KV_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/addr.h"
#include "common/buf.h"
#include "common/http.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/tls.h"
#include "dpr/worker.h"
#include "kv_gate.h"
#include "kv_cmd.h"
#include "kv_config.h"
#include "kv_dict.h"
#include "kv_finder.h"
#include "kv_replica.h"
#include "kv_layout.h"
#include "kv_listen.h"
#include "kv_migrate.h"
#include "kv_resp.h"
#include "kv_logw.h"
#include "kv_snap.h"

/* Why a client waits (its DPR batch cannot run yet). */
enum kv_park {
    KV_PARK_NONE = 0,
    KV_PARK_SEAL,    /* needs a checkpoint that cannot be started right now */
    KV_PARK_CATCHUP, /* batch from a newer world-line: waiting for DPR.SYNC */
    KV_PARK_CHECK,   /* batch names a worker or version newer than our last
                      * DPR.SYNC answer: waiting for the next (batch_check) */
};

typedef struct kv_server kv_server;

typedef struct kv_client {
    kv_server *srv;
    uv_tcp_t tcp;
    /* a client of the TLS port: its engine; raw: bytes read from the
     * socket (in and out hold plaintext until client_flush encrypts) */
    dpr_tls_conn *tls;
    dpr_buf raw;
    bool tls_failed;                    /* refused: only its alert goes out */
    bool tls_notified;                  /* close_notify queued (drain) */
    struct kv_client *prev, *next;      /* all clients */
    struct kv_client *park_next;
    enum kv_park parked;
    kv_gate gate;                       /* its batch waits for the finder (kv_gate.h) */
    dpr_buf in;                         /* query buffer */
    kv_parser parser;
    dpr_buf out;                        /* replies not yet written */
    dpr_buf wbuf;                       /* being written (uv_write) */
    uv_write_t wreq;
    bool writing, reading, closing, close_after_reply;
    /* reply bytes written to the socket since it connected, and how many
     * of them it takes to have written the reply of the last batch that
     * ran: a planned stop leaves the finder only once every client has its
     * replies (kv_server_replies_written) */
    uint64_t written, ran_mark;
    /* planned stop: replies flushed, then FIN; input discarded (kv_server_drain_clients) */
    bool draining, shut;
    uv_shutdown_t shut_req;
    uint64_t input_ms;                  /* when its last bytes came (dpr_mono_ms) */
    /* DPR batch being received */
    bool in_batch;
    uint32_t batch_want, batch_have;
    dpr_buf batch_hdr;                  /* encoded request header */
    dpr_buf batch_ops;                  /* ops: u32 argc, then (u32 len, bytes)... */
} kv_client;

struct kv_server {
    const kv_config *cfg;
    uv_loop_t *loop;
    kv_listen ports; /* the plain and the TLS port (ports.bound: the address served) */
    /* the TLS port (--tls-port): its context, reloaded on SIGHUP */
    dpr_tls_ctx *tls;
    uint64_t tls_conns_total, tls_refused;
    uint64_t tls_log_ms, tls_log_lines, tls_unlogged; /* refusals' log lines, rate-limited */
    uv_timer_t cron, ckpt_timer, sync_timer, watchdog;
    uv_signal_t sig_term, sig_int, sig_chld, sig_hup;
    uint64_t watchdog_usec;

    kv_dict dict;
    dpr_worker worker;
    kv_snapper snap;
    /* --checkpoint-log: the open version's changes, and their writer */
    kv_ckpt_log log;
    kv_logw logw;
    uint64_t last_file;                 /* newest checkpoint written or being written: the
                                         * next change log's base (0: none) */
    uint64_t log_bytes_since_full;      /* change-log bytes since the newest full image */
    uint64_t last_log_seal_ms;          /* monotonic: the newest change log's seal */
    uint64_t ckpt_bytes_written;        /* bytes of the checkpoint files completed */
    uint64_t ckpts_full, ckpts_log;     /* completed, by kind */
    pid_t compact_pid;                  /* a compaction child (0: none) */
    uint64_t compact_version;           /* the version it writes */
    bool compact_ready;                 /* its file is on disk, not yet installed */
    uint64_t compactions, compactions_failed;
    kv_finder *finder;
    dpr_tls_ctx *finder_tls; /* --finder-tls: the link's client context */
    kv_replica *replica;                /* a cluster: checkpoints copied first (or NULL) */
    kv_replica *recopy;                 /* compacted images copied again (with replica) */
    kv_arg *scratch;                    /* argv for batch ops */
    size_t scratch_cap;

    uint64_t committed_sealed;          /* highest `committed` a sealed checkpoint records */
    uint64_t cluster_max;               /* max-version from the last DPR.SYNC */
    uint64_t finder_world_line;         /* world-line of the last DPR.SYNC */
    uint64_t syncs;                     /* DPR.SYNC answers received */
    /* what batches are checked against (dpr_worker_bounds, batch_check) */
    uint64_t *workers;                  /* registered workers of the last DPR.SYNC, ascending */
    size_t nworkers, workers_cap;
    uint64_t synced_ms;                 /* dpr_mono_ms() of that answer (start-up before) */
    uint64_t writes, writes_at_seal;
    uint64_t *ckpts;                    /* checkpoint versions on disk, ascending */
    size_t nckpts, ckpts_cap;

    kv_client *clients;
    size_t nclients;
    kv_client *parked;

    /* checkpoints failing (kv_snap_failing): writes are refused */
    bool ckpt_failing;                  /* the state last logged and shown */
    uint64_t ckpt_failing_version;
    bool fork_failing;                  /* the last fork for a checkpoint failed */
    dpr_err fork_error;
    /* the finder does not know this worker (its state was lost?) */
    bool finder_lost;                   /* one of the two below */
    bool finder_lost_report;            /* it refused a report: unknown worker, ... */
    bool finder_lost_sync;              /* its DPR.SYNC: behind us, or a cut that went back */
    dpr_err finder_lost_why;
    uint64_t reports_refused;

    /* the layout (kv_resize.c) */
    kv_layout_state layout;
    kv_migrate migrate;
    uint64_t migrate_world_line;        /* the world-line the last migration started on */
    uint64_t layout_moved, layout_tryagain, imported_keys, purged_keys;

    /* memory: used_memory sampled by the cron, plus the dataset's change since */
    uint64_t mem_sampled;
    size_t mem_dict_at_sample;

    /* statistics */
    uint64_t start_ms;
    uint64_t conns_total, conns_rejected, cmds_total, batches_total, batches_refused;
    uint64_t batches_refused_stopping;  /* TRYAGAIN during a planned stop */
    uint64_t batches_invalid;           /* refused by batch_check */
    dpr_log_limit invalid_log;          /* rate limit of their log lines */
    uint64_t writes_refused_misconf, writes_refused_oom;
    uint64_t rollbacks, ckpts_total, ckpts_forks_failed;
    uint64_t last_ckpt_version, last_ckpt_unix_ms, last_ckpt_ms, last_fork_usec;
    dpr_histogram ckpt_seconds;         /* checkpoint durations (last_ckpt_ms of each) */
    dpr_http_server *metrics;           /* --metrics-address; NULL: none */
    uint64_t restored_version;

    /* shutdown */
    bool stopping;
    uint64_t stop_deadline_ms;
    bool left;                          /* the finder took DPR.WORKER.LEAVE */
    bool leave_failed;                  /* ... or refused it for good: no planned stop */
    uint64_t leave_next_ms;             /* refused for now: ask again from then on */
    bool draining;                      /* the last replies go out (kv_server_drain_clients) */
    uint64_t drain_deadline_ms;
    int exit_code;
    uint64_t status_ms;                 /* last STATUS= sent */
};

/* kv_server.c */
/* committed: the highest `committed` recorded by the checkpoints on disk;
 * layout: what kv_resize_read found (taken over, *layout emptied); tls: the
 * TLS port's context (kv_tls_load; taken over) or NULL. */
int kv_server_init(kv_server *s, const kv_config *cfg, uv_loop_t *loop, kv_dict *restored,
                   uint64_t world_line, uint64_t restored_version, const uint64_t *ckpts,
                   size_t nckpts, uint64_t committed, kv_layout_state *layout,
                   dpr_tls_ctx *tls);
/* One op of a stored DPR batch (batch_ops: u32 argc, then u32 length and
 * bytes per argument) decoded into s->scratch: *argc arguments. Returns
 * where the next op starts, or NULL when s->scratch cannot grow. */
const char *kv_server_batch_op(kv_server *s, const char *op, size_t *argc);
/* Why a write command may not run now (an error reply: MISCONF, OOM), or
 * NULL. */
const char *kv_server_write_refused(kv_server *s, const kv_command *cmd);
/* Runs until stopped; returns the exit status. */
int kv_server_run(kv_server *s);
void kv_server_stop_listening(kv_server *s);
/* The finder's registered workers of this shard's domain (ascending) as of
 * a DPR.SYNC answer at
 * at_ms (dpr_mono_ms): what batches are checked against. -ENOMEM keeps the
 * old list. */
int kv_server_set_workers(kv_server *s, const uint64_t *workers, size_t n, uint64_t at_ms);
void kv_server_close_clients(kv_server *s);
/* A planned stop's end, called until no client is left: every client that
 * sent nothing for KV_DRAIN_QUIET_MS (every one: now) gets the replies it
 * was sent, then the end of the stream (FIN); what it still sends is
 * discarded (nothing of it runs). The others are still answered (TRYAGAIN
 * while stopping). A client is closed when it closes its end;
 * kv_server_close_clients ends the rest. */
#define KV_DRAIN_QUIET_MS 30
void kv_server_drain_clients(kv_server *s, bool now);
/* Has every client been written (to its socket) the reply of each batch
 * that ran? A planned stop tells the finder it leaves only then: a batch
 * that ran, whose reply a kill of the stopping process then cut off, would
 * be sent again by its session to the next process on the same world-line
 * (it ran once already); while a reply is unwritten, a kill is the crash
 * path (a rollback) instead, which tells the session what survived. */
bool kv_server_replies_written(const kv_server *s);
/* used_memory as INFO shows it: glibc's allocated bytes (mallinfo2), at
 * least the data set's */
uint64_t kv_server_used_memory(const kv_server *s);
/* What the maxmemory check leaves out (INFO mem_not_counted_for_evict):
 * the change logs in memory, the open one and those waiting for their
 * writes (--checkpoint-log), as Redis leaves out its AOF buffer. */
uint64_t kv_server_memory_not_counted(const kv_server *s);
/* The cheap estimate the maxmemory check uses: the cron's last sample
 * without what is not counted, plus what the dataset grew (or shrank)
 * since. */
uint64_t kv_server_memory_estimate(const kv_server *s);

/* kv_dpr.c */
int kv_dpr_start(kv_server *s);
/* Seals the open version and starts its checkpoint. next_version: the
 * version to open (at least sealed + 1). -EBUSY: too many in progress. */
int kv_dpr_checkpoint(kv_server *s, uint64_t next_version);
void kv_dpr_reap(kv_server *s);          /* collect finished checkpoints */
int kv_dpr_logw_init(kv_server *s);      /* the change-log writer (kv_server_init) */
void kv_dpr_sync_now(kv_server *s);
/* SIGTERM: a planned stop (docs/dpr-kv.md, "SIGTERM"). Batches are answered
 * TRYAGAIN from now on (nothing of them runs), the open version is sealed
 * and checkpointed, reported, and the finder is told the worker leaves on
 * purpose (DPR.WORKER.LEAVE, once that checkpoint is in the cut); then the
 * clients are drained and the process exits 0. The next start resumes the
 * same world-line. */
void kv_dpr_begin_shutdown(kv_server *s);
/* From the cron (and events): the next step of the stop. */
void kv_dpr_shutdown_progress(kv_server *s);
void kv_dpr_status(kv_server *s, bool force); /* sd_notify STATUS= */
/* From the cron and after reaping: notices checkpoints starting or ending
 * to fail (log with MESSAGE_ID, STATUS). */
void kv_dpr_check_failing(kv_server *s);
/* Writes are refused while checkpoints fail (MISCONF): a checkpoint
 * process cannot write its file, or no checkpoint process can be started. */
static inline bool kv_dpr_refusing_writes(const kv_server *s)
{
    return s->fork_failing || kv_snap_failing(&s->snap, NULL) ||
           kv_logw_failing(&s->logw, NULL);
}
/* Checkpoints sealed and not yet durable (snapshots and change logs). */
static inline size_t kv_dpr_pending(const kv_server *s)
{
    return kv_snap_jobs(&s->snap) + kv_logw_jobs(&s->logw);
}
/* Why, while kv_dpr_refusing_writes (into *why). */
void kv_dpr_failing_reason(const kv_server *s, dpr_err *why);
/* The finder showed it does not know this worker (why: what it answered),
 * or showed that it does again (why NULL). Logs and STATUS on a change. */
void kv_dpr_finder_knows(kv_server *s, const char *why_not);
int kv_ckpts_add(kv_server *s, uint64_t v);

/* Everything this shard executed is in the cut: nothing in the open
 * version, no sealed version above the cut. */
bool kv_dpr_all_committed(const kv_server *s);

/* kv_info.c */
void kv_info_reply(kv_server *s, dpr_buf *out, size_t argc, const kv_arg *argv);
/* Failed checkpoints of every kind (snapshots, change-log writes, forks);
 * the last errors of the first two into *snap_last and *logw_last. */
uint64_t kv_info_checkpoint_failures(kv_server *s, dpr_err *snap_last, dpr_err *logw_last);

/* kv_metrics.c */
/* Starts the metrics endpoint when --metrics-address is set: 0, or a
 * negative errno (logged). */
int kv_metrics_start(kv_server *s);
/* The families of refused batches (by reason: worldline, stopping,
 * invalid) and refused writes (misconf, oom); dpr-redis' page has them too. */
void kv_metrics_refusals(dpr_buf *b, uint64_t worldline, uint64_t stopping, uint64_t invalid,
                         uint64_t misconf, uint64_t oom);
/* Closes it (before the loop's last handles are closed). */
void kv_metrics_stop(kv_server *s);
void kv_config_reply(kv_server *s, dpr_buf *out, size_t argc, const kv_arg *argv);
void kv_command_reply(dpr_buf *out, size_t argc, const kv_arg *argv);

#endif
