/* kv_main.c - dpr-kv: parse the configuration, recover, serve. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include "common/log.h"
#include "kv_config.h"
#include "kv_recover.h"
#include "kv_server.h"

int main(int argc, char **argv)
{
    static kv_config cfg;
    static kv_server srv;
    kv_recovery rec;
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
    log_info("starting: worker %llu, dir %s, finder %s, checkpoint every %u ms",
             (unsigned long long)cfg.worker, cfg.dir, cfg.finder, cfg.checkpoint_interval_ms);
    r = kv_recover(&cfg, &rec);
    if (r < 0) {
        sd_notifyf(0, "STATUS=start-up failed (see the log)\nERRNO=%d", -r);
        kv_recovery_free(&rec);
        return 1;
    }
    r = kv_server_init(&srv, &cfg, loop, &rec.dict, rec.world_line, rec.restored, rec.ckpts,
                       rec.nckpts);
    kv_recovery_free(&rec);
    if (r < 0) {
        log_error("cannot start serving: %s", strerror(-r));
        sd_notifyf(0, "STATUS=start-up failed: %s\nERRNO=%d", strerror(-r), -r);
        return 1;
    }
    code = kv_server_run(&srv);
    log_info("exiting with status %d", code);
    return code;
}
