/* kv_recover.c - see kv_recover.h. */
#include "kv_recover.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/err.h"
#include "common/fs.h"
#include "common/log.h"
#include "kv_ckpt.h"
#include "kv_finder.h"

#define LOCK_WAIT_MS 10000

/* Takes DIR/dpr-kv.lock; says once that it waits when another process has it. */
static int lock_dir(const char *dir, int *fd)
{
    char path[PATH_MAX];
    dpr_err err;
    int r = dpr_path_join(path, sizeof(path), dir, "dpr-kv.lock");

    if (r < 0) {
        log_error("cannot lock %s: %s", dir, strerror(-r));
        return r;
    }
    r = dpr_lock_file(path, 0, fd, &err);
    if (r == -EBUSY) {
        log_warning("%s is locked (another dpr-kv, or the checkpoint process of one that was "
                    "killed): waiting up to %d s",
                    dir, LOCK_WAIT_MS / 1000);
        r = dpr_lock_file(path, LOCK_WAIT_MS, fd, &err);
    }
    if (r < 0)
        log_error("cannot lock %s: %s", dir, r == -EBUSY ? "another dpr-kv is using it" : err.msg);
    return r;
}

/* Removes every listed checkpoint above `above`, then fsyncs the directory. */
static int remove_above(const kv_config *cfg, kv_recovery *rec, uint64_t above)
{
    size_t removed = 0;
    while (rec->nckpts > 0 && rec->ckpts[rec->nckpts - 1] > above) {
        uint64_t v = rec->ckpts[rec->nckpts - 1];
        int r = kv_ckpt_remove(cfg->dir, v);
        if (r < 0) {
            log_error("cannot remove checkpoint %" PRIu64 " in %s: %s", v, cfg->dir, strerror(-r));
            return r;
        }
        rec->nckpts--;
        removed++;
    }
    if (removed) {
        log_info("removed %zu checkpoint(s) above version %" PRIu64 " (lost versions)", removed,
                 above);
        int r = dpr_fsync_dir(cfg->dir);
        if (r < 0) {
            log_error("cannot fsync %s: %s", cfg->dir, strerror(-r));
            return r;
        }
    }
    return 0;
}

/* R == 0 but checkpoints exist: whose are they? */
static int check_fresh_start(const kv_config *cfg, kv_recovery *rec)
{
    char path[PATH_MAX];
    dpr_err err = DPR_ERR_INIT;
    kv_ckpt_meta m;
    uint64_t newest = rec->ckpts[rec->nckpts - 1];
    int r;

    r = kv_ckpt_path(path, sizeof(path), cfg->dir, newest, 0);
    if (r == 0)
        r = kv_ckpt_read_meta(path, &m, &err);
    if (r < 0 && !cfg->reset) {
        log_error("%s; refusing to start (--reset deletes the checkpoints)", dpr_err_str(&err, r));
        return -EBADMSG;
    }
    if (cfg->reset) {
        log_warning("--reset: deleting %zu checkpoint(s) in %s (newest: version %" PRIu64 ")",
                    rec->nckpts, cfg->dir, newest);
        return 0;
    }
    if (rec->world_line > m.world_line) {
        log_warning("the finder rolled worker %" PRIu64 " back to version 0 (world-line %" PRIu64
                    "): the %zu checkpoint(s) in %s were never committed",
                    cfg->worker, rec->world_line, rec->nckpts, cfg->dir);
        return 0;
    }
    log_error("%s holds checkpoints of worker %" PRIu64 " up to version %" PRIu64
              " (world-line %" PRIu64 "), but finder %s starts it empty at world-line %" PRIu64
              ": is it a new or reset finder? Refusing to discard the data; start with --reset "
              "(DPR_KV_RESET=1) to delete it, or point --finder at the finder of this cluster",
              cfg->dir, m.worker, newest, m.world_line, cfg->finder, rec->world_line);
    return -EEXIST;
}

static int restore(const kv_config *cfg, kv_recovery *rec)
{
    char path[PATH_MAX];
    dpr_err err = DPR_ERR_INIT;
    kv_ckpt_meta m;
    ssize_t i = (ssize_t)rec->nckpts - 1;
    int r;

    while (i >= 0 && rec->ckpts[i] > rec->restored)
        i--;
    if (i < 0) {
        log_error("the finder says worker %" PRIu64 " must restore version %" PRIu64
                  ", but %s holds no checkpoint at or below it%s: the data the cluster "
                  "committed is not here (wrong --dir?)",
                  cfg->worker, rec->restored, cfg->dir, rec->nckpts ? "" : " (none at all)");
        return -ENOENT;
    }
    uint64_t v = rec->ckpts[i];
    r = kv_ckpt_path(path, sizeof(path), cfg->dir, v, 0);
    if (r == 0)
        r = kv_ckpt_load(path, cfg->worker, v, &rec->dict, &m, &err);
    if (r < 0) {
        log_error("cannot restore version %" PRIu64 ": %s. Refusing to start with an empty or "
                  "older store; restore the file from a backup",
                  rec->restored, r == -ENOMEM ? "out of memory" : dpr_err_str(&err, r));
        return r == -ENOMEM ? r : -EBADMSG;
    }
    log_info("restored checkpoint %" PRIu64 " (world-line %" PRIu64 ", %zu keys) for version "
             "%" PRIu64,
             v, m.world_line, kv_dict_size(&rec->dict), rec->restored);
    return 0;
}

int kv_recover(const kv_config *cfg, kv_recovery *rec)
{
    dpr_err err;
    uint8_t seed[16];
    int r;

    memset(rec, 0, sizeof(*rec));
    rec->lock_fd = -1;
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        for (size_t i = 0; i < sizeof(seed); i++) /* cannot happen on Linux >= 3.17 */
            seed[i] = (uint8_t)(rand() ^ (int)getpid());
    }
    kv_dict_init(&rec->dict, seed);
    r = dpr_mkdir_p(cfg->dir, 0700, &err);
    if (r < 0) {
        log_error("cannot create state directory %s: %s", cfg->dir, err.msg);
        return r;
    }
    r = lock_dir(cfg->dir, &rec->lock_fd);
    if (r < 0)
        return r;
    r = kv_ckpt_remove_tmp(cfg->dir);
    if (r == 0)
        r = kv_ckpt_list(cfg->dir, &rec->ckpts, &rec->nckpts);
    if (r < 0) {
        log_error("cannot read state directory %s: %s", cfg->dir, strerror(-r));
        return r;
    }
    r = kv_finder_register(cfg->finder, cfg->worker, cfg->finder_timeout_ms, &rec->world_line,
                           &rec->restored, &err);
    if (r < 0) {
        log_error("cannot register with the finder: %s", err.msg);
        return r;
    }
    log_info("registered with finder %s: world-line %" PRIu64 ", restore version %" PRIu64,
             cfg->finder, rec->world_line, rec->restored);
    if (rec->restored == 0) {
        if (rec->nckpts > 0) {
            r = check_fresh_start(cfg, rec);
            if (r < 0)
                return r;
        }
    } else {
        if (cfg->reset)
            log_warning("--reset ignored: the finder expects version %" PRIu64, rec->restored);
        r = restore(cfg, rec);
        if (r < 0)
            return r;
    }
    return remove_above(cfg, rec, rec->restored);
}

void kv_recovery_free(kv_recovery *rec)
{
    kv_dict_free(&rec->dict);
    free(rec->ckpts);
    rec->ckpts = NULL;
    rec->nckpts = 0;
    /* the lock fd stays open: the lock lasts as long as the process */
}
