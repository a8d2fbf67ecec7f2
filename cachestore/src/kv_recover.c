/* kv_recover.c - see kv_recover.h. */
#include "kv_recover.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/fs.h"
#include "common/log.h"
#include "kv_ckpt.h"
#include "kv_finder.h"
#include "kv_rdb.h"
#include "kv_tls.h"

#define LOCK_WAIT_MS 10000

/* Takes DIR/<name> (dpr-kv.lock, dpr-redis.lock); says once that it waits
 * when another process has it. */
static int lock_dir(const char *dir, const char *name, int *fd, dpr_err *err)
{
    char path[PATH_MAX];
    int r = dpr_path_join(path, sizeof(path), dir, name);

    if (r < 0)
        return dpr_err_set(err, r, "cannot lock %s: %s", dir, strerror(-r));
    r = dpr_lock_file(path, 0, fd, err);
    if (r == -EBUSY) {
        log_warning("%s is locked (%s: another dpr-kv or dpr-redis, or the checkpoint process "
                    "of a dpr-kv that was killed): waiting up to %d s",
                    dir, name, LOCK_WAIT_MS / 1000);
        r = dpr_lock_file(path, LOCK_WAIT_MS, fd, err);
    }
    if (r == -EBUSY)
        return dpr_err_set(err, r, "cannot lock %s (%s): another process is using it", dir,
                           name);
    return r;
}

/* Removes every listed checkpoint above `above`, then fsyncs the directory. */
static int remove_above(const kv_config *cfg, kv_recovery *rec, uint64_t above, dpr_err *err)
{
    size_t removed = 0;
    while (rec->nckpts > 0 && rec->ckpts[rec->nckpts - 1] > above) {
        uint64_t v = rec->ckpts[rec->nckpts - 1];
        int r = kv_ckpt_remove(cfg->dir, v);
        if (r < 0)
            return dpr_err_set(err, r, "cannot remove checkpoint %" PRIu64 " in %s: %s", v,
                               cfg->dir, strerror(-r));
        rec->nckpts--;
        removed++;
    }
    if (removed) {
        log_info("removed %zu checkpoint(s) above version %" PRIu64 " (lost versions)", removed,
                 above);
        int r = dpr_fsync_dir(cfg->dir);
        if (r < 0)
            return dpr_err_set(err, r, "cannot fsync %s: %s", cfg->dir, strerror(-r));
    }
    rec->committed_max = 0;
    for (size_t i = 0; i < rec->nckpts; i++)
        if (rec->committed[i] > rec->committed_max)
            rec->committed_max = rec->committed[i];
    return 0;
}

/*
 * Checks every checkpoint before anything is asked of the finder. Which
 * ones could be needed? The finder will ask for the newest checkpoint <= R,
 * its cut for this worker, and R can be anywhere at or above the cuts this
 * worker saw (a cut never goes back); garbage collection keeps exactly the
 * chain of the newest file at or below the last cut seen and everything
 * above it (kv_chain_prunable). So every file present may be needed: all
 * are checked, and the chains must be whole. The newest version, the one
 * asked for in the common case (everything durable was committed), is
 * built on the way (its full image and change logs: each file is checked
 * as it is applied), so that its files are not read twice.
 */
/* The newest checkpoint is dpr-redis' (kv_rdb.h): read it into the
 * keyspace (before registering: a key dpr-kv cannot hold is refused here). */
static int check_rdb(const kv_config *cfg, kv_recovery *rec, kv_ckpt_meta *newest,
                     dpr_err *err)
{
    const kv_rdb_file *f = &rec->rdb[rec->nrdb - 1];
    char path[PATH_MAX];
    int r = kv_rdb_path(path, sizeof(path), cfg->dir, f);

    if (r < 0)
        return dpr_err_set(err, r, "state directory path too long: %s", cfg->dir);
    r = kv_rdb_load(path, &rec->dict, err);
    if (r < 0)
        return r == -ENOMEM || r == -ENOTSUP ? r : -EIO;
    rec->dict_rdb = true;
    newest->version = f->version;
    newest->world_line = f->world_line;
    log_info("checked dpr-redis' checkpoint %" PRIu64 " in %s (world-line %" PRIu64
             ", %zu keys): the deployment switched from dpr-redis",
             f->version, cfg->dir, f->world_line, kv_dict_size(&rec->dict));
    return 0;
}

static int check_all(const kv_config *cfg, kv_recovery *rec, kv_ckpt_meta *newest, dpr_err *err)
{
    char path[PATH_MAX];
    kv_ckpt_meta m;
    size_t start;
    int r = 0;
    bool rdb_newest = rec->nrdb > 0 && (rec->nckpts == 0 || rec->rdb[rec->nrdb - 1].version >
                                                                rec->ckpts[rec->nckpts - 1]);

    rec->committed = calloc(rec->nckpts ? rec->nckpts : 1, sizeof(*rec->committed));
    if (!rec->committed)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    if (rec->nckpts == 0)
        return rdb_newest ? check_rdb(cfg, rec, newest, err) : 0;
    r = kv_chain_scan(cfg->dir, cfg->worker, rec->ckpts, rec->nckpts, &rec->files, err);
    if (r == 0)
        r = kv_chain_check(rec->files, rec->nckpts, cfg->dir, err);
    if (r < 0)
        return r == -ENOMEM || r == -EBADMSG ? r : -EIO;
    /* every file is verified; the newest one's chain is built unless an
     * RDB is newer (then that is read instead) */
    start = rdb_newest ? rec->nckpts : kv_chain_start(rec->files, rec->nckpts, rec->nckpts - 1);
    for (size_t k = 0; k < start; k++) {
        uint64_t v = rec->ckpts[k];
        r = kv_ckpt_path(path, sizeof(path), cfg->dir, v, 0);
        if (r < 0)
            return dpr_err_set(err, r, "state directory path too long: %s", cfg->dir);
        r = kv_ckpt_verify(path, cfg->worker, v, &m, err);
        if (r == -ENOMEM)
            return dpr_err_set(err, r, "out of memory loading checkpoint %" PRIu64, v);
        if (r < 0) {
            dpr_err_prefix(err, "checkpoint %" PRIu64 " cannot be used", v);
            return r == -EBADMSG ? r : -EIO;
        }
    }
    if (rdb_newest)
        r = check_rdb(cfg, rec, newest, err);
    else
        r = kv_chain_restore(cfg->dir, cfg->worker, rec->files, rec->nckpts, rec->nckpts - 1,
                             &rec->dict, newest, err);
    if (r < 0)
        return r == -ENOMEM || r == -EBADMSG || r == -ENOTSUP ? r : -EIO;
    for (size_t k = 0; k < rec->nckpts; k++) {
        rec->committed[k] = rec->files[k].committed;
        if (rec->committed[k] > rec->committed_max)
            rec->committed_max = rec->committed[k];
    }
    log_info("checked %zu checkpoint(s) in %s: newest %" PRIu64 " (world-line %" PRIu64
             ", %zu keys, from %zu file(s))%s",
             rec->nckpts, cfg->dir, newest->version, newest->world_line,
             kv_dict_size(&rec->dict), rec->nckpts - (rdb_newest ? 0 : start),
             rec->committed_max ? "" : ", none records a commit");
    return 0;
}

/* The oldest checkpoint that records committed >= c (for messages). */
static uint64_t recorded_by(const kv_recovery *rec, uint64_t c)
{
    for (size_t i = 0; i < rec->nckpts; i++)
        if (rec->committed[i] >= c)
            return rec->ckpts[i];
    return 0;
}

static int finder_lost_data(const kv_config *cfg, const kv_recovery *rec, uint64_t cut,
                            bool registered, dpr_err *err)
{
    log_warning("to recover: restore the finder's state, or start with --reset "
                "(DPR_KV_RESET=1) to delete the data in %s (docs/operations.md, \"The finder's "
                "state was lost\")",
                cfg->dir);
    return dpr_err_set(err, -ESTALE,
                       "finder %s has cut %" PRIu64 " for worker %" PRIu64 " of domain %s"
                       " but checkpoint %" PRIu64 " records version %" PRIu64
                       " committed: the finder lost its state (or "
                       "is another cluster's)%s",
                       cfg->finder, cut, cfg->worker, cfg->domain,
                       recorded_by(rec, rec->committed_max),
                       rec->committed_max, registered ? "" : "; not registering");
}

/* R == 0 but checkpoints exist: whose are they? */
static int check_fresh_start(const kv_config *cfg, kv_recovery *rec, const kv_ckpt_meta *m,
                             dpr_err *err)
{
    uint64_t newest = m->version;

    if (cfg->reset) {
        log_warning("--reset: deleting %zu checkpoint(s) in %s (newest: version %" PRIu64 ")",
                    rec->nckpts + rec->nrdb, cfg->dir, newest);
        return 0;
    }
    if (rec->committed_max > 0)
        return finder_lost_data(cfg, rec, 0, true, err);
    if (rec->world_line > m->world_line) {
        log_warning("the finder rolled worker %" PRIu64 " back to version 0 (world-line %" PRIu64
                    "): the %zu checkpoint(s) in %s were never committed",
                    cfg->worker, rec->world_line, rec->nckpts + rec->nrdb, cfg->dir);
        return 0;
    }
    log_warning("start with --reset (DPR_KV_RESET=1) to delete the data in %s, or point "
                "--finder at the finder of this cluster",
                cfg->dir);
    return dpr_err_set(err, -EEXIST,
                       "%s holds checkpoints up to version %" PRIu64 " (world-line %" PRIu64
                       ") but finder %s starts worker %" PRIu64 " empty at world-line %" PRIu64
                       ": a new or reset finder? Refusing to discard the data",
                       cfg->dir, newest, m->world_line, cfg->finder, cfg->worker, rec->world_line);
}

/* Version f of dpr-redis (rec->rdb[j]) is the one to restore: it goes
 * into rec->dict (it may be there already) and is written as dpr-kv's
 * full image of the same version, which is dpr-kv's from then on (the
 * next checkpoints, a change log's base, a rollback to it). */
static int restore_rdb(const kv_config *cfg, kv_recovery *rec, size_t j, dpr_err *err)
{
    const kv_rdb_file *f = &rec->rdb[j];
    kv_ckpt_meta m = {.worker = cfg->worker, .world_line = f->world_line,
                      .version = f->version, .created_ms = dpr_wall_ms()};
    char path[PATH_MAX];
    int r;

    if (!rec->dict_rdb || j != rec->nrdb - 1) {
        kv_dict_free(&rec->dict);
        r = kv_rdb_path(path, sizeof(path), cfg->dir, f);
        if (r < 0)
            return dpr_err_set(err, r, "state directory path too long: %s", cfg->dir);
        r = kv_rdb_load(path, &rec->dict, err);
        if (r < 0)
            return r == -ENOMEM || r == -ENOTSUP ? r : -EIO;
    }
    rec->dict_rdb = false;
    /* dpr-kv's files above it are above R: lost versions */
    r = remove_above(cfg, rec, f->version, err);
    if (r < 0)
        return r;
    r = kv_ckpt_write(cfg->dir, &m, &rec->dict, err);
    if (r < 0) {
        dpr_err_prefix(err, "cannot write dpr-redis' checkpoint %" PRIu64 " as dpr-kv's",
                       f->version);
        return r;
    }
    uint64_t *v = realloc(rec->ckpts, (rec->nckpts + 1) * sizeof(*v));
    if (v)
        rec->ckpts = v;
    uint64_t *c = v ? realloc(rec->committed, (rec->nckpts + 1) * sizeof(*c)) : NULL;
    if (c)
        rec->committed = c;
    kv_chain_file *cf = c ? realloc(rec->files, (rec->nckpts + 1) * sizeof(*cf)) : NULL;
    if (!cf)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    rec->files = cf;
    rec->ckpts[rec->nckpts] = f->version;
    rec->committed[rec->nckpts] = 0;
    rec->files[rec->nckpts] = (kv_chain_file){.version = f->version,
                                              .world_line = f->world_line};
    rec->nckpts++;
    rec->converted = f->version;
    log_notice("restored dpr-redis' checkpoint %" PRIu64 " (world-line %" PRIu64 ", %zu keys) "
               "for version %" PRIu64 ", written as dpr-kv's checkpoint %" PRIu64
               ": the deployment switched from dpr-redis",
               f->version, f->world_line, kv_dict_size(&rec->dict), rec->restored, f->version);
    return 0;
}

/* Deletes every dpr-redis checkpoint (recovery succeeded: the older ones are
 * covered by the version restored, the newer ones were lost). */
static int remove_rdb(const kv_config *cfg, kv_recovery *rec, dpr_err *err)
{
    char path[PATH_MAX];

    for (size_t j = 0; j < rec->nrdb; j++) {
        int r = kv_rdb_path(path, sizeof(path), cfg->dir, &rec->rdb[j]);
        if (r < 0 || (unlink(path) < 0 && errno != ENOENT))
            return dpr_err_set(err, r < 0 ? r : -errno, "cannot remove %s: %s", path,
                               strerror(r < 0 ? -r : errno));
    }
    if (rec->nrdb == 0)
        return 0;
    log_info("removed %zu checkpoint(s) of dpr-redis from %s", rec->nrdb, cfg->dir);
    rec->nrdb = 0;
    int r = dpr_fsync_dir(cfg->dir);
    return r < 0 ? dpr_err_set(err, r, "cannot fsync %s: %s", cfg->dir, strerror(-r)) : 0;
}

/* Puts the newest checkpoint <= R into rec->dict (it may be there already). */
static int restore(const kv_config *cfg, kv_recovery *rec, dpr_err *err)
{
    kv_ckpt_meta m;
    ssize_t i = (ssize_t)rec->nckpts - 1, j = (ssize_t)rec->nrdb - 1;
    int r;

    if (rec->restored < rec->committed_max && !cfg->reset)
        return finder_lost_data(cfg, rec, rec->restored, true, err);
    while (i >= 0 && rec->ckpts[i] > rec->restored)
        i--;
    while (j >= 0 && rec->rdb[j].version > rec->restored)
        j--;
    if (j >= 0 && (i < 0 || rec->rdb[j].version > rec->ckpts[i]))
        return restore_rdb(cfg, rec, (size_t)j, err);
    if (i < 0)
        return dpr_err_set(err, -ENOENT,
                           "the finder says worker %" PRIu64 " must restore version %" PRIu64
                           ", but %s holds no checkpoint at or below it%s: the data the cluster "
                           "committed is not here (wrong --dir?)",
                           cfg->worker, rec->restored, cfg->dir,
                           rec->nckpts ? "" : " (none at all)");
    uint64_t v = rec->ckpts[i];
    if ((size_t)i == rec->nckpts - 1 && !rec->dict_rdb) {
        log_info("restored checkpoint %" PRIu64 " (%zu keys) for version %" PRIu64, v,
                 kv_dict_size(&rec->dict), rec->restored);
        return 0;
    }
    /* the newest is above R (lost versions): build the one asked for instead */
    kv_dict_free(&rec->dict);
    r = kv_chain_restore(cfg->dir, cfg->worker, rec->files, rec->nckpts, (size_t)i, &rec->dict,
                         &m, err);
    if (r < 0) {
        dpr_err_prefix(err, "cannot restore version %" PRIu64, rec->restored);
        return r == -ENOMEM ? r : -EBADMSG;
    }
    log_info("restored checkpoint %" PRIu64 " (world-line %" PRIu64 ", %zu keys) for version "
             "%" PRIu64,
             v, m.world_line, kv_dict_size(&rec->dict), rec->restored);
    return 0;
}

/*
 * The state directory holds no checkpoint but --seed-dir is given: this
 * worker moved here from another node, and the seed holds its checkpoints
 * as copied there (the agent's replica copies). They become this
 * directory's, and recovery goes on as usual (every one is checked, the
 * finder says which to restore). Nothing to copy (no seed directory, or an
 * empty one): the start of a worker that has no checkpoints anywhere yet.
 */
static int take_seed(const kv_config *cfg, kv_recovery *rec, dpr_err *err)
{
    size_t copied = 0;
    int r = kv_ckpt_seed(cfg->dir, cfg->seed_dir, &copied, err);

    if (r == -ENOENT && copied == 0 && access(cfg->seed_dir, F_OK) < 0 && errno == ENOENT) {
        log_info("seed directory %s does not exist: no checkpoints to take over", cfg->seed_dir);
        return 0;
    }
    if (r < 0) {
        dpr_err_prefix(err, "cannot take over the checkpoints of --seed-dir");
        return r;
    }
    if (copied == 0) {
        log_info("seed directory %s holds no checkpoint: none to take over", cfg->seed_dir);
        return 0;
    }
    free(rec->ckpts);
    rec->ckpts = NULL;
    rec->nckpts = 0;
    r = kv_ckpt_list(cfg->dir, &rec->ckpts, &rec->nckpts);
    if (r < 0)
        return dpr_err_set(err, r, "cannot read state directory %s: %s", cfg->dir, strerror(-r));
    log_notice("took over %zu checkpoint(s) of worker %" PRIu64 " from %s (its previous "
               "node's copies), versions %" PRIu64 "..%" PRIu64,
               copied, cfg->worker, cfg->seed_dir, rec->nckpts ? rec->ckpts[0] : 0,
               rec->nckpts ? rec->ckpts[rec->nckpts - 1] : 0);
    return 0;
}

int kv_recover(const kv_config *cfg, kv_recovery *rec, dpr_err *err)
{
    kv_ckpt_meta newest;
    dpr_tls_config tc; /* --finder-tls */
    uint8_t seed[16];
    int r;

    memset(rec, 0, sizeof(*rec));
    memset(&newest, 0, sizeof(newest));
    rec->lock_fd = -1;
    rec->redis_lock_fd = -1;
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        for (size_t i = 0; i < sizeof(seed); i++) /* cannot happen on Linux >= 3.17 */
            seed[i] = (uint8_t)(rand() ^ (int)getpid());
    }
    kv_dict_init(&rec->dict, seed);
    r = dpr_mkdir_p(cfg->dir, 0700, err);
    if (r < 0) {
        dpr_err_prefix(err, "cannot create state directory %s", cfg->dir);
        return r;
    }
    r = lock_dir(cfg->dir, "dpr-kv.lock", &rec->lock_fd, err);
    if (r == 0)
        r = lock_dir(cfg->dir, "dpr-redis.lock", &rec->redis_lock_fd, err);
    if (r < 0)
        return r;
    r = kv_ckpt_remove_tmp(cfg->dir);
    if (r == 0)
        r = kv_ckpt_list(cfg->dir, &rec->ckpts, &rec->nckpts);
    if (r == 0)
        r = kv_rdb_list(cfg->dir, &rec->rdb, &rec->nrdb);
    if (r < 0)
        return dpr_err_set(err, r, "cannot read state directory %s: %s", cfg->dir, strerror(-r));
    if (rec->nckpts == 0 && rec->nrdb == 0 && cfg->seed_dir[0]) {
        r = take_seed(cfg, rec, err);
        if (r < 0)
            return r;
    }
    /* everything local first: a shard that cannot recover must not register */
    r = check_all(cfg, rec, &newest, err);
    if (r < 0)
        return r;
    if (rec->committed_max > 0 && !cfg->reset) {
        uint64_t wl = 0, cut = 0;
        r = kv_finder_query_cut(cfg->finder, kv_tls_finder(cfg, &tc), cfg->domain, cfg->worker,
                                cfg->finder_timeout_ms, &wl, &cut, err);
        if (r < 0) {
            dpr_err_prefix(err, "cannot ask the finder");
            return r;
        }
        if (cut < rec->committed_max)
            return finder_lost_data(cfg, rec, cut, false, err);
    }
    r = kv_finder_register(cfg->finder, kv_tls_finder(cfg, &tc), cfg->domain, cfg->worker,
                           cfg->finder_token,
                           cfg->finder_timeout_ms, &rec->world_line, &rec->restored, err);
    if (r < 0) {
        dpr_err_prefix(err, "cannot register with the finder");
        return r;
    }
    rec->registered = true;
    log_info("registered with finder %s in domain %s: world-line %" PRIu64 ", restore version "
             "%" PRIu64,
             cfg->finder, cfg->domain, rec->world_line, rec->restored);
    if (rec->restored == 0) {
        if (rec->nckpts > 0 || rec->nrdb > 0) {
            r = check_fresh_start(cfg, rec, &newest, err);
            if (r < 0)
                return r;
        }
        kv_dict_free(&rec->dict); /* start empty */
    } else {
        if (cfg->reset)
            log_warning("--reset ignored: the finder expects version %" PRIu64, rec->restored);
        r = restore(cfg, rec, err);
        if (r < 0)
            return r;
    }
    r = remove_above(cfg, rec, rec->restored, err);
    if (r == 0)
        r = remove_rdb(cfg, rec, err);
    return r;
}

void kv_recovery_free(kv_recovery *rec)
{
    kv_dict_free(&rec->dict);
    free(rec->ckpts);
    free(rec->committed);
    free(rec->files);
    free(rec->rdb);
    rec->rdb = NULL;
    rec->nrdb = 0;
    rec->files = NULL;
    rec->ckpts = NULL;
    rec->committed = NULL;
    rec->nckpts = 0;
    /* the lock fd stays open: the lock lasts as long as the process */
}
