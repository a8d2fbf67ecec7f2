/*
 * kv_config.h - dpr-kv's settings: command-line flags, each with an
 * environment variable (DPR_KV_*) for systemd units and instance files
 * (EnvironmentFile=). A flag beats its variable.
 */
#ifndef KV_CONFIG_H
#define KV_CONFIG_H

/* Exit status for failures a restart cannot mend (the finder refused this
 * worker's token, a damaged checkpoint): EX_CONFIG. The unit names it in
 * RestartPreventExitStatus=, so systemd stops at once instead of restarting
 * up to its start limit; the agent shows the reason (STATUS=failed: ...). */
#define KV_EXIT_NO_RESTART 78

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/tls.h"
#include "dpr/domain.h"

/* The finder's registration token rule (finder.h, DPR_FINDER_TOKEN_MAX):
 * 1..128 visible ASCII characters. */
#define KV_FINDER_TOKEN_MAX 128

typedef struct kv_config {
    char listen[300];          /* ADDR:PORT; port 0 picks a free one */
    int port;                  /* --port: -1 unset (listen's), 0 no plain listener */
    /* TLS (Redis' names, docs/tls.md): a listener on listen's host at
     * tls_port (0: none) with these files; SIGHUP loads them again */
    unsigned tls_port;
    char tls_cert_file[PATH_MAX];
    char tls_key_file[PATH_MAX];
    char tls_ca_cert_file[PATH_MAX];
    char tls_crl_file[PATH_MAX]; /* "": none */
    dpr_tls_verify tls_auth_clients; /* default yes, as Redis */
    bool finder_tls; /* --finder-tls: the finder link over TLS, with the files above */
    char finder[1024];         /* HOST:PORT[,HOST:PORT...] (common/finders.h) */
    /* the DPR domain this shard belongs to (dpr/domain.h): its world-lines,
     * cut and recovery are the domain's; every finder command names it and
     * batches of other domains are refused. --domain / DPR_KV_DOMAIN,
     * default DPR_DOMAIN_DEFAULT */
    char domain[DPR_DOMAIN_MAX + 1];
    uint64_t domain_id;        /* dpr_domain_id(domain) */
    /* presented in DPR.WORKER.ADD ("" none): --finder-token-file or
     * DPR_KV_FINDER_TOKEN; a secret, never logged */
    char finder_token[KV_FINDER_TOKEN_MAX + 1];
    uint64_t worker;
    bool worker_set;
    char dir[PATH_MAX];        /* state directory */
    /* "": none. Checkpoints of this worker copied from its previous node
     * (the agent's replica copies), copied into dir at start when dir
     * holds none (kv_recover.h, step 2) */
    char seed_dir[PATH_MAX];
    char replica_socket[PATH_MAX]; /* "": checkpoints are not copied (kv_replica.h) */
    char instance[64];         /* the agent's name of it; "": the dir's last component */
    unsigned checkpoint_interval_ms;
    unsigned sync_interval_ms;
    unsigned shutdown_timeout_ms;
    unsigned finder_timeout_ms; /* start-up registration; 0: wait forever */
    size_t max_clients;
    size_t max_request_bytes;
    uint64_t maxmemory;        /* bytes; 0: no limit (noeviction above it) */
    bool reset;
    bool await_layout;         /* no key served before a layout (kv_resize.c) */
    bool checkpoint_log;       /* checkpoints as change logs (docs/dpr-kv.md) */
    uint64_t compact_bytes;    /* change-log bytes before a full image, at least */
    bool checkpoint_mode_set;  /* one of the three above was given (dpr-redis warns) */
    char metrics_address[300]; /* HOST:PORT of the Prometheus endpoint; "": none */
    bool verbose;
} kv_config;

/* What main should do after parsing. */
enum kv_config_result { KV_CONFIG_RUN, KV_CONFIG_EXIT_OK, KV_CONFIG_EXIT_USAGE };

/* The program named in --version and in errors, and the text of --help
 * (NULL: dpr-kv's): dpr-redis takes the same settings (docs/dpr-redis.md). */
extern const char *kv_config_program;
extern const char *kv_config_usage;

/* Fills *c from defaults, the environment and argv; prints --help or the
 * error (to stdout / stderr). */
enum kv_config_result kv_config_parse(kv_config *c, int argc, char **argv);

#endif
