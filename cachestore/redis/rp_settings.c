/* rp_settings.c - see rp_settings.h. */
#include "rp_settings.h"

#include <errno.h>
#include <inttypes.h>

#include "common/log.h"

int rp_settings_check(const kv_config *cfg)
{
    int r = 0;

    if (cfg->tls_port) {
        /* clients told to use TLS would find no port: refuse, not ignore */
        log_error("--tls-port %u is not supported by dpr-redis (no TLS listener for clients); "
                  "serve plain RESP, or run dpr-kv", cfg->tls_port);
        r = -EINVAL;
    }
    if (cfg->seed_dir[0])
        log_warning("--seed-dir %s ignored: dpr-redis does not start from checkpoints copied "
                    "from another node (it starts from its own state directory, and fails if "
                    "the finder asks for a version it does not hold)", cfg->seed_dir);
    if (cfg->replica_socket[0])
        log_warning("--replica-socket %s ignored: dpr-redis does not copy its checkpoints to "
                    "other nodes; they are reported as soon as they are on this node's disk",
                    cfg->replica_socket);
    if (cfg->checkpoint_mode_set && cfg->checkpoint_log)
        log_warning("--checkpoint-mode log (or --checkpoint-log, --checkpoint-compact-bytes) "
                    "ignored: dpr-redis' checkpoints are full RDB images (BGSAVE)");
    else if (cfg->checkpoint_mode_set)
        log_info("checkpoint mode full: full RDB images (dpr-redis' only mode)");
    return r;
}
