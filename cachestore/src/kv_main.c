/* kv_main.c - dpr-kv: parse the configuration, recover, serve. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include "common/err.h"
#include "common/log.h"
#include "common/msgid.h"
#include "kv_config.h"
#include "kv_recover.h"
#include "kv_replica.h"
#include "kv_resize.h"
#include "kv_server.h"
#include "kv_tls.h"

int main(int argc, char **argv)
{
    static kv_config cfg;
    static kv_server srv;
    kv_recovery rec;
    kv_layout_state layout;
    dpr_tls_ctx *tls = NULL;
    dpr_err err = DPR_ERR_INIT;
    uv_loop_t *loop = uv_default_loop();
    int r, code;

    switch (kv_config_parse(&cfg, argc, argv)) {
    case KV_CONFIG_EXIT_OK:
        return 0;
    case KV_CONFIG_EXIT_USAGE:
        return 2;
    case KV_CONFIG_RUN:
        break;
    }
    dpr_log_open("dpr-kv", cfg.verbose);
    /* under the agent: every journal entry names its instance */
    if (getenv("DPR_INSTANCE")) {
        char field[96];
        if (snprintf(field, sizeof(field), "DPR_INSTANCE=%s", getenv("DPR_INSTANCE")) <
            (int)sizeof(field))
            (void)dpr_log_add_field(field);
    }
    signal(SIGPIPE, SIG_IGN);
    /* systemctl reload during recovery must not kill it (the loop's SIGHUP
     * handler, the TLS reload, comes once serving) */
    signal(SIGHUP, SIG_IGN);
    log_info("starting: worker %llu of domain %s, dir %s, finder %s%s, checkpoint every %u ms",
             (unsigned long long)cfg.worker, cfg.domain, cfg.dir, cfg.finder,
             cfg.finder_token[0] ? " (with a registration token)" : "",
             cfg.checkpoint_interval_ms);
    /* certificates before anything else: a shard that could not serve its
     * TLS port must not register with the finder */
    r = kv_tls_load(&cfg, &tls, &err);
    if (r < 0) {
        log_error("cannot start the TLS port: %s", dpr_err_str(&err, r));
        sd_notifyf(0, "STATUS=failed: cannot start the TLS port: %s\nERRNO=%d",
                   dpr_err_str(&err, r), -r);
        return 1;
    }
    /* the layout first: a shard that cannot tell which keys it owns must
     * not register (a registration of a known worker rolls its domain back) */
    r = kv_resize_read(cfg.dir, &layout, &err);
    if (r < 0) {
        const char *fields[] = {DPR_MSGID_FIELD(DPR_MSGID_RECOVERY_FAILED), NULL};
        dpr_log_fields(DPR_LOG_ERR, fields, "cannot recover: %s (before registering with the "
                       "finder: the other shards are not disturbed)", dpr_err_str(&err, r));
        sd_notifyf(0, "STATUS=failed: %s\nERRNO=%d", dpr_err_str(&err, r), -r);
        dpr_tls_ctx_free(tls);
        return r == -EBADMSG ? KV_EXIT_NO_RESTART : 1;
    }
    r = kv_recover(&cfg, &rec, &err);
    if (r < 0) {
        /* "failed: <reason>" is the state the agent shows (docs/dpr-kv.md,
         * "systemd"); whether the finder was disturbed is in the log */
        const char *fields[] = {DPR_MSGID_FIELD(DPR_MSGID_RECOVERY_FAILED), NULL};
        dpr_log_fields(DPR_LOG_ERR, fields, "cannot recover: %s (%s)", dpr_err_str(&err, r),
                       rec.registered ? "after registering with the finder"
                                      : "before registering with the finder: the other shards "
                                        "are not disturbed");
        if (r == -EACCES) /* the finder's message is long: say it shortly */
            sd_notifyf(0, "STATUS=failed: the finder refused to register worker %llu (it is "
                       "registered with another token; see the log)\nERRNO=%d",
                       (unsigned long long)cfg.worker, -r);
        else
            sd_notifyf(0, "STATUS=failed: %s\nERRNO=%d", dpr_err_str(&err, r), -r);
        kv_recovery_free(&rec);
        kv_layout_state_free(&layout);
        dpr_tls_ctx_free(tls);
        /* restarting cannot help a refused registration, a damaged
         * checkpoint or a dpr-redis checkpoint with data dpr-kv cannot hold
         * (-ENOTSUP): the unit's RestartPreventExitStatus= stops systemd */
        return r == -EACCES || r == -EBADMSG || r == -ENOTSUP ? KV_EXIT_NO_RESTART : 1;
    }
    r = kv_server_init(&srv, &cfg, loop, &rec.dict, rec.world_line, rec.restored, rec.ckpts,
                       rec.nckpts, rec.committed_max, &layout, tls);
    /* a dpr-redis checkpoint became a full image (kv_recover.h): the replica
     * nodes get it too, the base of the change logs that follow */
    if (r == 0 && rec.converted && srv.replica && kv_replica_ship(srv.replica, rec.converted) < 0)
        log_error("cannot ask for the copies of checkpoint %" PRIu64 ": out of memory",
                  rec.converted);
    kv_recovery_free(&rec);
    kv_layout_state_free(&layout); /* empty unless kv_server_init failed early */
    if (r < 0) {
        log_error("cannot start serving: %s", strerror(-r));
        sd_notifyf(0, "STATUS=failed: cannot start serving: %s\nERRNO=%d", strerror(-r), -r);
        return 1;
    }
    code = kv_server_run(&srv);
    log_info("exiting with status %d", code);
    return code;
}
