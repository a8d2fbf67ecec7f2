/* rp_settings.c - see rp_settings.h. */
#include "rp_settings.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"

void rp_settings_check(const kv_config *cfg)
{
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
}

static int absolute(char *path, size_t cap, const char *cwd, dpr_err *err)
{
    char abs[PATH_MAX];

    if (!path[0] || path[0] == '/')
        return 0;
    if ((size_t)snprintf(abs, sizeof(abs), "%s/%s", cwd, path) >= sizeof(abs) ||
        strlen(abs) >= cap)
        return dpr_err_set(err, -ENAMETOOLONG, "%s: path too long from %s", path, cwd);
    memcpy(path, abs, strlen(abs) + 1);
    return 0;
}

int rp_settings_absolute(kv_config *cfg, dpr_err *err)
{
    char cwd[PATH_MAX];
    char *files[] = {cfg->tls_cert_file, cfg->tls_key_file, cfg->tls_ca_cert_file,
                     cfg->tls_crl_file};
    int r = 0;

    if (!getcwd(cwd, sizeof(cwd)))
        return dpr_err_set(err, -errno, "cannot read the current directory: %s",
                           strerror(errno));
    for (size_t i = 0; r == 0 && i < sizeof(files) / sizeof(files[0]); i++)
        r = absolute(files[i], PATH_MAX, cwd, err);
    return r;
}
