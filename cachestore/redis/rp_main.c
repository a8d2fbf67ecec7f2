/* rp_main.c - dpr-redis: settings (dpr-kv's flags and DPR_KV_* variables),
 * the state directory, registration with the finder, the checkpoint the
 * finder asks for loaded into a fresh redis-server, then the proxy. */
#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/err.h"
#include "common/fs.h"
#include "common/log.h"
#include "kv_config.h"
#include "kv_finder.h"
#include "kv_tls.h"
#include "kv_resize.h"
#include "rp_foreign.h"
#include "rp_proxy.h"
#include "rp_redis.h"
#include "rp_settings.h"

#define LOCK_WAIT_MS 10000
#define REDIS_START_MS 600000

static const char usage[] =
    "Usage: dpr-redis [options]\n"
    "\n"
    "An unmodified redis-server behind a DPR proxy: the proxy serves RESP2 and\n"
    "DPR.BATCH like dpr-kv, forwards every command to its redis-server child (no TCP\n"
    "port; a Unix socket in the state directory), checkpoints with BGSAVE into one\n"
    "RDB file per version, reports them to the DPR finder, and restores and rolls\n"
    "back as the finder says (docs/dpr-redis.md).\n"
    "\n"
    "It reads dpr-kv's settings; these are the ones it uses (each also from the\n"
    "environment variable named with it; a flag wins). Of dpr-kv's others,\n"
    "--seed-dir, --replica-socket and --checkpoint-mode log are accepted with a\n"
    "warning in the log and have no effect.\n"
    "redis-server is the one on PATH, or $DPR_REDIS_SERVER.\n"
    "\n"
    "  --listen ADDR:PORT          where to serve RESP (DPR_KV_LISTEN; default 127.0.0.1:6379;\n"
    "                              port 0 picks a free port, logged as 'listening on ...')\n"
    "  --port N                    the port of --listen's address (DPR_KV_PORT); 0: no\n"
    "                              plain port, TLS only (with --tls-port)\n"
    "  --tls-port N                serve RESP over TLS on this port of --listen's host\n"
    "                              too, as dpr-kv (DPR_KV_TLS_PORT; default 0: none)\n"
    "  --finder HOST:PORT[,...]    the DPR finder (DPR_KV_FINDER; required)\n"
    "  --finder-tls                talk to the finder over TLS (DPR_KV_FINDER_TLS) with\n"
    "                              --tls-cert-file, --tls-key-file and --tls-ca-cert-file\n"
    "  --tls-cert-file PATH        this node's certificate, PEM (DPR_KV_TLS_CERT_FILE)\n"
    "  --tls-key-file PATH         its private key, PEM (DPR_KV_TLS_KEY_FILE)\n"
    "  --tls-ca-cert-file PATH     the CA that clients' and the finder's certificates are\n"
    "                              checked against (DPR_KV_TLS_CA_CERT_FILE)\n"
    "  --tls-auth-clients yes|no|optional  a client certificate is required, not asked\n"
    "                              for, or checked when shown (DPR_KV_TLS_AUTH_CLIENTS;\n"
    "                              default yes)\n"
    "  --tls-crl-file PATH         revoked certificates, PEM (DPR_KV_TLS_CRL_FILE)\n"
    "  --domain NAME               the shard's DPR domain (DPR_KV_DOMAIN; default 'default')\n"
    "  --finder-token-file PATH    the worker's registration token (or DPR_KV_FINDER_TOKEN)\n"
    "  --worker ID                 this shard's worker id, the same across restarts\n"
    "                              (DPR_KV_WORKER; required)\n"
    "  --dir DIR                   state directory: checkpoints and Redis' socket (DPR_KV_DIR;\n"
    "                              default $STATE_DIRECTORY)\n"
    "  --checkpoint-interval-ms N  checkpoint period (DPR_KV_CHECKPOINT_INTERVAL_MS;\n"
    "                              default 100)\n"
    "  --sync-interval-ms N        how often to ask the finder (DPR_KV_SYNC_INTERVAL_MS;\n"
    "                              default: the checkpoint interval)\n"
    "  --max-clients N             clients served at once; more are refused\n"
    "                              (DPR_KV_MAX_CLIENTS; default 10000)\n"
    "  --maxmemory BYTES           redis-server's maxmemory, with the noeviction policy:\n"
    "                              above it, writes get Redis' OOM error (DPR_KV_MAXMEMORY;\n"
    "                              default 0 = no limit)\n"
    "  --metrics-address ADDR:PORT serve Prometheus metrics at http://ADDR:PORT/metrics\n"
    "                              (DPR_KV_METRICS_ADDRESS; default: none)\n"
    "  --instance NAME             the instance label of the metrics (DPR_KV_INSTANCE)\n"
    "  --max-request-bytes N       largest request or batch (DPR_KV_MAX_REQUEST_BYTES)\n"
    "  --finder-timeout-ms N       give up registering after N ms (DPR_KV_FINDER_TIMEOUT_MS;\n"
    "                              default 0 = wait forever)\n"
    "  --reset                     start empty when the finder does not know the checkpoints\n"
    "                              on disk, instead of refusing (DPR_KV_RESET=1)\n"
    "  --await-layout              serve no key until given a layout (DPR.LAYOUT SET or\n"
    "                              a resize): commands with keys get TRYAGAIN until\n"
    "                              then (DPR_KV_AWAIT_LAYOUT=1; the agent sets it)\n"
    "  --shutdown-timeout-ms N     how long SIGTERM may take for the last checkpoint,\n"
    "                              its report and DPR.WORKER.LEAVE\n"
    "                              (DPR_KV_SHUTDOWN_TIMEOUT_MS; default 30000)\n"
    "  --verbose                   debug logging (DPR_KV_VERBOSE=1)\n"
    "  --help                      this text\n"
    "  --version                   print the version and exit\n"
    "\n"
    "Logs go to stderr (redis-server's too). Under systemd (Type=notify) it sends\n"
    "READY=1 after recovery, WATCHDOG=1 when WatchdogSec= is set, and STATUS= lines.\n"
    "SIGTERM takes a last checkpoint, reports it, leaves the finder (a planned\n"
    "restart: no rollback) and exits 0. SIGHUP reads the TLS files again for new\n"
    "connections.\n"
    "\n"
    "Exit status: 0 clean stop; 1 runtime failure (redis-server died, the state\n"
    "directory unusable, no finder within --finder-timeout-ms, a TLS file that\n"
    "cannot be loaded); 2 bad usage; 78 a failure a restart cannot mend (the finder\n"
    "refused this worker's token, or fenced it; a damaged checkpoint of dpr-kv). A\n"
    "checkpoint that cannot be written is retried, writes refused meanwhile (MISCONF).\n"
    "\n"
    "Checkpoints of dpr-kv in --dir (ckpt-V.kv: the deployment's impl was switched)\n"
    "are recovered from: loaded into redis-server, saved as dpr-redis' own RDB\n"
    "checkpoint of the same version, and deleted.\n";

static int fail(const char *what, int r, int code)
{
    log_error("cannot recover: %s", what);
    sd_notifyf(0, "STATUS=failed: %s\nERRNO=%d", what, -r);
    return code;
}

int main(int argc, char **argv)
{
    static kv_config cfg;
    dpr_err err = DPR_ERR_INIT;
    kv_layout_state layout;
    dpr_tls_config tc;
    dpr_tls_ctx *tls = NULL; /* --tls-port's context */
    uint64_t *vers = NULL, *wls = NULL, world_line = 0, restore = 0, from = 0;
    uint64_t fwl = 0, fv = 0; /* the version of dpr-kv's converted, its world-line */
    rp_foreign fk = {0};
    ssize_t fidx;
    size_t n = 0, k = 0;
    char dbfile[128], msg[PATH_MAX + 300];
    pid_t redis = 0;
    int lock_fd = -1, kv_lock_fd = -1, r, code;

    kv_config_program = "dpr-redis";
    kv_config_usage = usage;
    switch (kv_config_parse(&cfg, argc, argv)) {
    case KV_CONFIG_EXIT_OK:
        return 0;
    case KV_CONFIG_EXIT_USAGE:
        return 2;
    case KV_CONFIG_RUN:
        break;
    }
    dpr_log_open("dpr-redis", cfg.verbose);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    log_info("starting: worker %" PRIu64 " of domain %s, dir %s, finder %s, checkpoint every "
             "%u ms, at most %zu clients, maxmemory %" PRIu64 " bytes (0: no limit)", cfg.worker,
             cfg.domain, cfg.dir, cfg.finder, cfg.checkpoint_interval_ms, cfg.max_clients,
             cfg.maxmemory);
    rp_settings_check(&cfg);
    r = rp_settings_absolute(&cfg, &err);
    if (r == 0)
        r = kv_tls_load(&cfg, &tls, &err); /* --tls-port: refused before registering */
    if (r < 0) {
        snprintf(msg, sizeof(msg), "cannot start the TLS port: %s", dpr_err_str(&err, r));
        return fail(msg, r, 1);
    }
    r = dpr_mkdir_p(cfg.dir, 0700, &err);
    if (r < 0)
        return fail(dpr_err_str(&err, r), r, 1);
    if (chdir(cfg.dir) < 0) {
        snprintf(msg, sizeof(msg), "cannot enter %s: %s", cfg.dir, strerror(errno));
        return fail(msg, -errno, 1);
    }
    /* dpr-kv's lock too: no dpr-kv, nor the checkpoint process of a killed
     * one, still writes here (a switch of impl, rp_foreign.h) */
    r = dpr_lock_file("dpr-redis.lock", LOCK_WAIT_MS, &lock_fd, &err);
    if (r == 0)
        r = dpr_lock_file("dpr-kv.lock", LOCK_WAIT_MS, &kv_lock_fd, &err);
    if (r < 0) {
        code = fail(dpr_err_str(&err, r), r, 1);
        goto out;
    }
    r = rp_ckpt_list(&vers, &wls, &n);
    if (r < 0) {
        snprintf(msg, sizeof(msg), "cannot list %s: %s", cfg.dir, strerror(-r));
        code = fail(msg, r, 1);
        goto out;
    }
    r = rp_foreign_scan(&fk, cfg.worker, n ? vers[n - 1] : 0, &err);
    if (r < 0) {
        code = fail(dpr_err_str(&err, r), r, r == -EBADMSG ? KV_EXIT_NO_RESTART : 1);
        goto out;
    }
    /* a shard that cannot know its layout must not disturb its domain
     * (read again by the proxy, rp_layout.c) */
    r = kv_resize_read(".", &layout, &err);
    kv_layout_state_free(&layout);
    if (r < 0) {
        code = fail(dpr_err_str(&err, r), r, r == -EBADMSG ? KV_EXIT_NO_RESTART : 1);
        goto out;
    }
    r = kv_finder_register(cfg.finder, kv_tls_finder(&cfg, &tc), cfg.domain, cfg.worker,
                           cfg.finder_token, cfg.finder_timeout_ms, &world_line, &restore, &err);
    if (r < 0) {
        snprintf(msg, sizeof(msg), "cannot register with the finder: %s", dpr_err_str(&err, r));
        code = fail(msg, r, r == -EACCES ? KV_EXIT_NO_RESTART : 1);
        goto out;
    }
    log_info("registered with finder %s in domain %s: world-line %" PRIu64 ", restore version "
             "%" PRIu64, cfg.finder, cfg.domain, world_line, restore);
    /* the newest checkpoint <= restore; a restore of 0 with checkpoints of
     * an older world-line: the finder rolled this worker back to nothing */
    for (size_t i = 0; i < n; i++)
        if (vers[i] <= restore)
            from = vers[i];
    fidx = rp_foreign_at_or_below(&fk, restore);
    if (fidx >= 0 && fk.files[fidx].version <= from)
        fidx = -1; /* dpr-redis' own is as new */
    if (restore > 0 && from == 0 && fidx < 0) {
        snprintf(msg, sizeof(msg), "the finder asks for version %" PRIu64 " and %s holds no "
                 "checkpoint at or below it", restore, cfg.dir);
        code = fail(msg, -ENOENT, 1);
        goto out;
    }
    if (restore == 0 && ((n > 0 && wls[n - 1] >= world_line) ||
                         (fk.n > 0 && fk.files[fk.n - 1].world_line >= world_line)) &&
        !cfg.reset) {
        snprintf(msg, sizeof(msg), "the finder does not know the checkpoints in %s (a new or "
                 "reset finder?); refusing to delete them (--reset starts empty)", cfg.dir);
        code = fail(msg, -EEXIST, 1);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (vers[i] <= restore) {
            vers[k++] = vers[i];
            continue;
        }
        rp_ckpt_name(vers[i], dbfile, sizeof(dbfile));
        log_info("deleting %s (a version lost in the rollback)", dbfile);
        if (unlink(dbfile) < 0)
            log_warning("cannot delete %s: %s", dbfile, strerror(errno));
    }
    (void)dpr_fsync_dir(".");
    if (from && fidx < 0)
        rp_ckpt_name(from, dbfile, sizeof(dbfile));
    else
        snprintf(dbfile, sizeof(dbfile), "empty.rdb");
    unlink("empty.rdb");
    r = rp_redis_start(dbfile, cfg.maxmemory, REDIS_START_MS, &redis, &err);
    if (r < 0) {
        code = fail(dpr_err_str(&err, r), r, 1);
        goto out;
    }
    if (fidx >= 0) {
        r = rp_foreign_restore(&fk, cfg.worker, (size_t)fidx, &fv, &fwl, &err);
        uint64_t *nv = r == 0 ? realloc(vers, (k + 1) * sizeof(*nv)) : NULL;
        if (r == 0 && !nv)
            r = dpr_err_set(&err, -ENOMEM, "out of memory");
        if (r < 0) {
            rp_redis_kill(redis);
            code = fail(dpr_err_str(&err, r), r, 1);
            goto out;
        }
        vers = nv;
        vers[k++] = fv;
        from = fv;
    }
    /* dpr-kv's files: older than the version restored, or lost */
    r = rp_foreign_remove(&fk, &err);
    if (r < 0) {
        rp_redis_kill(redis);
        code = fail(dpr_err_str(&err, r), r, 1);
        goto out;
    }
    rp_foreign_free(&fk);
    if (fidx >= 0)
        log_info("recovered dpr-kv's checkpoint %" PRIu64 " for version %" PRIu64 " on world-line "
                 "%" PRIu64 ", redis-server pid %ld", from, restore, world_line, (long)redis);
    else if (from)
        log_info("restored checkpoint %" PRIu64 " (%s) for version %" PRIu64 " on world-line %"
                 PRIu64 ", redis-server pid %ld", from, dbfile, restore, world_line, (long)redis);
    else
        log_info("recovered: world-line %" PRIu64 ", version %" PRIu64 " (nothing to restore), "
                 "redis-server pid %ld", world_line, restore, (long)redis);
    code = rp_proxy_run(&cfg, tls, world_line, restore, redis, vers, k);
    tls = NULL; /* the proxy's now */
out:
    rp_foreign_free(&fk);
    free(vers);
    free(wls);
    dpr_tls_ctx_free(tls);
    if (kv_lock_fd >= 0)
        close(kv_lock_fd);
    if (lock_fd >= 0)
        close(lock_fd);
    return code;
}
