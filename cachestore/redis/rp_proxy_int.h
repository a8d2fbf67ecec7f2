/*
 * rp_proxy_int.h - the proxy's state, shared by its modules (rp_proxy.c:
 * clients, the Redis link, batches, rollbacks; rp_save.c: checkpoints;
 * rp_finder.c: the finder link and a planned stop; rp_layout.c: layouts
 * and resizing). Private to cachestore/redis.
 */
#ifndef RP_PROXY_INT_H
#define RP_PROXY_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "common/buf.h"
#include "common/http.h"
#include "common/log.h"
#include "common/tls.h"
#include "dpr/worker.h"
#include "kv_config.h"
#include "kv_finder.h"
#include "kv_gate.h"
#include "kv_listen.h"
#include "kv_resp.h"
#include "rp_layout.h"

/* a write while the last save failed (rp_proxy.c, rp_layout.c: DPR.IMPORT) */
#define ERR_MISCONF                                                                             \
    "MISCONF dpr-redis cannot write checkpoints to disk. Commands that may modify the data "   \
    "set are disabled until a checkpoint succeeds. See 'INFO dpr' "                            \
    "(dpr_checkpoint_last_error) and the log"

typedef struct rp_proxy rp_proxy;
typedef struct rp_client rp_client;

enum slot_kind {
    SLOT_FORWARD,  /* Redis' reply goes to the client */
    SLOT_LOCAL,    /* the proxy's own reply, in its place in the order */
    SLOT_INTERNAL, /* the proxy's own command: the reply goes to cb */
    SLOT_IMPORT,   /* a RESTORE of DPR.IMPORT (rp_layout.c): count is the last one's */
};

typedef struct rp_slot {
    enum slot_kind kind;
    rp_client *c;
    char *local;
    size_t nlocal;
    bool close_after;
    uint64_t count;
    void (*cb)(rp_proxy *p, const char *reply, size_t n);
    struct rp_slot *next;
} rp_slot;

struct rp_client {
    uv_tcp_t tcp;
    rp_proxy *p;
    dpr_buf in, out;
    kv_parser parser;
    bool closing, gone, quitting, parked, in_batch, dirty, reading;
    bool throttled; /* input left unparsed: MAX_IN_FLIGHT commands in flight */
    kv_gate gate; /* its batch waits for the finder */
    size_t slots; /* slots still pointing here */
    uint32_t batch_want, batch_have;
    dpr_buf batch_hdr, batch_ops;
    char *import_err; /* the first error of the DPR.IMPORT in flight */
    dpr_tls_conn *tls; /* a client of the TLS port: its engine (c->in is plaintext) */
    dpr_buf raw;       /* TLS: ciphertext read, before the engine */
    bool tls_failed;   /* refused: the alert goes out, then the close */
    rp_client *next;
};

struct rp_proxy {
    const kv_config *cfg;
    uv_loop_t *loop;
    dpr_worker w;
    kv_finder *finder;
    rp_layout lay; /* the layout, resizes, the command table */
    kv_listen ports;          /* the plain and the TLS port (ports.bound: the address served) */
    dpr_tls_ctx *tls;         /* the TLS port's context (SIGHUP makes a new one) */
    dpr_tls_ctx *finder_tls;  /* --finder-tls: the finder link's */
    uint64_t tls_conns, tls_refused;
    dpr_log_limit tls_log;    /* refused TLS clients' lines: at most 20 a second */
    uv_pipe_t *redis;
    pid_t redis_pid;
    dpr_buf rin, rout;
    rp_slot *head, *tail;
    rp_client *clients;
    rp_client **dirty;
    size_t ndirty, dirty_cap;
    uv_timer_t ckpt_timer, poll_timer, sync_timer, watchdog_timer, stop_timer;
    uv_signal_t sigchld, sigterm, sigint, sighup;
    /* checkpoints */
    bool plain_dirty;   /* a plain command ran since the last seal */
    int saving;         /* 0 idle, 1 BGSAVE sent, 2 polling */
    bool poll_out;      /* an INFO persistence in flight */
    uint64_t saving_version, gen;
    uint64_t saving_ms, last_ckpt_ms; /* seal time; the last one's seal-to-durable */
    char saving_tmp[128];
    uint64_t *ckpts;
    size_t nckpts, ckpts_cap;
    /* finder */
    uint64_t cluster_max, syncs, synced_ms, finder_world_line;
    uint64_t *workers;
    size_t nworkers;
    /* counters */
    uint64_t batches, batches_refused, batches_invalid, rollbacks, checkpoints;
    uint64_t commands, conns, conns_rejected, writes_refused_oom, writes_refused_misconf;
    size_t nclients;
    dpr_http_server *metrics; /* --metrics-address */
    /* failed saves (ckpt_failed): how many, the last one's reason, and
     * whether the last save failed (writes refused meanwhile) */
    uint64_t ckpt_failures, ckpt_failing_version;
    uint64_t ckpt_retry_ms; /* no save before (mono ms), but the interval's */
    bool ckpt_failing;
    char ckpt_error[200];
    dpr_log_limit invalid_log; /* rate limit of their log lines */
    uint64_t restored, last_ckpt;
    uint64_t start_ms; /* dpr_run_id: this process (a planned restart is another) */
    int exit_code;
    bool stopping;     /* the loop ends (fatal or done) */
    /* a planned stop (SIGTERM): last checkpoint, its report, DPR.WORKER.LEAVE */
    bool planned, left, leave_failed;
    uint64_t leave_next_ms, stop_deadline_ms, batches_refused_stopping;
};

/* What rp_proxy.c lends its modules. */
rp_slot *rp_slot_push(rp_proxy *p, enum slot_kind kind, rp_client *c);
/* A reply of the proxy's own, in its place in the client's order. */
void rp_local_reply(rp_client *c, dpr_buf *b, bool close_after);
void rp_local_error(rp_client *c, const char *msg);
void rp_redis_command(rp_proxy *p, int argc, const char *const *argv, const size_t *lens);
void rp_redis_flush(rp_proxy *p);
/* A command of the proxy's own: Redis' reply goes to cb, in order. */
void rp_internal(rp_proxy *p, void (*cb)(rp_proxy *, const char *, size_t), int argc,
                 const char *const *argv);
/* Ends the process (logged: fmt with one %s, detail). */
void rp_fatal(rp_proxy *p, const char *fmt, const char *detail);
/* Clients that waited for a save go on. */
void rp_resume_parked(rp_proxy *p);
/* A planned stop, one step further (rp_finder.c): seal what ran since the
 * last checkpoint, wait until every checkpoint is durable and reported,
 * leave the finder, end the loop (exit 0). Nothing without a planned stop. */
void rp_stop_progress(rp_proxy *p);
/* The finder's world-line moved: Redis restarts from the newest checkpoint
 * at or below cut; every reply in flight is lost with its client. */
void rp_rollback(rp_proxy *p, uint64_t world_line, uint64_t cut);

#endif
